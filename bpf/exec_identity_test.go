package bpf_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/events"
	"github.com/nriguard/nriguard/internal/testenv"
	"github.com/nriguard/nriguard/policy"
	"github.com/nriguard/nriguard/resolve"
)

var idSeq int

// attachExecIn resolves rules inside root and attaches them to a fresh
// cgroup; the probe itself (outside root) is allowed by a second layer.
func attachExecIn(t *testing.T, opts *bpf.Options, root, rules string) string {
	t.Helper()
	needPrograms(t)
	cg := testenv.Cgroup(t)
	e, err := policy.ParseExec("exec.nriguard.io", rules)
	must(t, err)
	e.Layer = policy.LayerLabel
	inside, _, err := resolve.Exec(root, "exec.nriguard.io", e)
	must(t, err)
	idSeq++
	a, err := bpf.Attach(bpf.Spec{ID: fmt.Sprintf("id-%d-%d", os.Getpid(), idSeq), Cgroup: cg, Exec: policy.IntersectExec(policy.Enforce, inside)}, opts)
	must(t, err)
	t.Cleanup(func() { a.Detach() })
	return cg
}

// rewrite replaces a file's content in place: same inode, new bytes.
func rewrite(t *testing.T, path, from string) {
	t.Helper()
	src, err := os.ReadFile(from)
	must(t, err)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	must(t, err)
	_, err = f.Write(src)
	must(t, err)
	must(t, f.Close())
}

func ino(t *testing.T, path string) uint64 {
	var st unix.Stat_t
	must(t, unix.Stat(path, &st))
	return st.Ino
}

// A program is the file as it was when the policy was attached: rewritten
// in place (same inode), or deleted and made again (perhaps with the freed
// inode number), an allowed program is another program and is refused; a
// denied one stays denied.
func TestExecFileChangedAfterAttach(t *testing.T) {
	backends(t, func(t *testing.T, opts *bpf.Options) {
		T := execFixture(t)
		p := func(rel string) string { return filepath.Join(T, rel) }
		cg := testenv.Cgroup(t)
		attachExec(t, opts, cg, fmt.Sprintf("allow %s; allow %s; allow %s", p("usr/bin/allowed"), p("usr/bin/copy-of-allowed"), probeSelf(t)), policy.Enforce)
		if got := strings.Join(testenv.Probe(t, "", cg, "", "exec:"+p("usr/bin/allowed"), "exec:"+p("usr/bin/copy-of-allowed")), " "); got != "ran ran" {
			t.Fatalf("before: %q", got)
		}
		before := ino(t, p("usr/bin/allowed"))
		rewrite(t, p("usr/bin/allowed"), p("usr/bin/other"))
		if ino(t, p("usr/bin/allowed")) != before {
			t.Fatal("the rewrite changed the inode: fix the test")
		}
		if got := testenv.Probe(t, "", cg, "", "exec:"+p("usr/bin/allowed"))[0]; got != "denied" {
			t.Errorf("an allowed program rewritten in place: %s, want denied", got)
		}
		// deleted and made again: on ext4 the new file often gets the freed inode
		old := ino(t, p("usr/bin/copy-of-allowed"))
		must(t, os.Remove(p("usr/bin/copy-of-allowed")))
		reused := false
		for i := 0; i < 20 && !reused; i++ {
			name := p(fmt.Sprintf("usr/bin/new%d", i))
			copyFile(t, p("usr/bin/other"), name)
			if ino(t, name) == old {
				must(t, os.Rename(name, p("usr/bin/copy-of-allowed")))
				reused = true
			}
		}
		if !reused {
			copyFile(t, p("usr/bin/other"), p("usr/bin/copy-of-allowed"))
		}
		t.Logf("the new file got the freed inode number: %v", reused)
		if got := testenv.Probe(t, "", cg, "", "exec:"+p("usr/bin/copy-of-allowed"))[0]; got != "denied" {
			t.Errorf("a new file in place of an allowed one (inode reused: %v): %s, want denied", reused, got)
		}

		// a deny list: the denied file, rewritten, stays denied
		cg = testenv.Cgroup(t)
		attachExec(t, opts, cg, "deny "+p("usr/bin/other"), policy.Enforce)
		rewrite(t, p("usr/bin/other"), p("usr/bin/sh"))
		if got := testenv.Probe(t, "", cg, "", "exec:"+p("usr/bin/other"), "exec:"+p("usr/bin/sh")); strings.Join(got, " ") != "denied ran" {
			t.Errorf("deny list after the denied file changed: %q, want denied ran", got)
		}
	})
}

// mount mounts a filesystem for the test: one that cannot be mounted
// fails it (make vmtest loads overlayfs into each kernel: a case that
// cannot run there is a gap, not a skip).
func mount(t *testing.T, source, target, fstype, data string) {
	t.Helper()
	must(t, os.MkdirAll(target, 0o755))
	if err := unix.Mount(source, target, fstype, 0, data); err != nil {
		t.Fatalf("mount %s on %s: %v (make vmtest: is the kernel's %s module in the initramfs?)", fstype, target, err, fstype)
	}
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
}

// Where the file the kernel runs is not what stat says: an overlay (its
// layers on another filesystem, or the same), a bind mount, tmpfs. Rules
// resolved through each must match what the exec hook sees.
func TestExecIdentityAcrossFilesystems(t *testing.T) {
	backends(t, func(t *testing.T, opts *bpf.Options) {
		base := execFixture(t)
		for _, c := range []struct {
			name  string
			setup func(t *testing.T, dir string) string // returns the root to run from
		}{
			{"overlay, upper on tmpfs, lower on the fixture's filesystem", func(t *testing.T, dir string) string {
				mount(t, "tmpfs", filepath.Join(dir, "up"), "tmpfs", "")
				must(t, os.MkdirAll(filepath.Join(dir, "up/upper"), 0o755))
				must(t, os.MkdirAll(filepath.Join(dir, "up/work"), 0o755))
				mount(t, "overlay", filepath.Join(dir, "merged"), "overlay",
					fmt.Sprintf("lowerdir=%s,upperdir=%s/up/upper,workdir=%s/up/work", base, dir, dir))
				return filepath.Join(dir, "merged")
			}},
			{"overlay, all layers on one filesystem", func(t *testing.T, dir string) string {
				must(t, os.MkdirAll(filepath.Join(dir, "upper"), 0o755))
				must(t, os.MkdirAll(filepath.Join(dir, "work"), 0o755))
				mount(t, "overlay", filepath.Join(dir, "merged"), "overlay",
					fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work", base, dir, dir))
				return filepath.Join(dir, "merged")
			}},
			{"bind mount", func(t *testing.T, dir string) string {
				target := filepath.Join(dir, "bound")
				must(t, os.MkdirAll(target, 0o755))
				if err := unix.Mount(base, target, "", unix.MS_BIND, ""); err != nil {
					t.Fatalf("bind mount: %v", err)
				}
				t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
				return target
			}},
			{"tmpfs", func(t *testing.T, dir string) string {
				target := filepath.Join(dir, "tmp")
				mount(t, "tmpfs", target, "tmpfs", "")
				for _, d := range []string{"usr/bin"} {
					must(t, os.MkdirAll(filepath.Join(target, d), 0o755))
				}
				for _, f := range []string{"usr/bin/other", "usr/bin/allowed"} {
					copyFile(t, filepath.Join(base, f), filepath.Join(target, f))
				}
				return target
			}},
		} {
			t.Run(c.name, func(t *testing.T) {
				dir, err := os.MkdirTemp("", "nriguard-fs")
				must(t, err)
				t.Cleanup(func() { os.RemoveAll(dir) })
				root := c.setup(t, dir)
				other, allowed := filepath.Join(root, "usr/bin/other"), filepath.Join(root, "usr/bin/allowed")
				cg := attachExecIn(t, opts, root, "deny /usr/bin/other")
				if got := strings.Join(testenv.Probe(t, "", cg, "", "exec:"+other, "exec:"+allowed), " "); got != "denied ran" {
					t.Errorf("deny /usr/bin/other: %q, want denied ran", got)
				}
				// written through the mount (an overlay copies it up): still denied
				rewrite(t, other, allowed)
				if got := testenv.Probe(t, "", cg, "", "exec:"+other)[0]; got != "denied" {
					t.Errorf("after a write through the mount: %s, want denied", got)
				}
			})
		}
	})
}

// A program a policy allows, written by a process of its container by
// every write path there is: with BPF LSM the write is refused (the write
// guard: the open for writing, or the truncate, fails with EPERM) and the
// program still runs; on the SIGKILL backend the write happens and the file
// is not the program the rule named any more (its change time moved).
func TestAllowedProgramWrittenEveryWay(t *testing.T) {
	needPrograms(t)
	backends(t, func(t *testing.T, opts *bpf.Options) {
		T := execFixture(t)
		p := func(rel string) string { return filepath.Join(T, rel) }
		for _, method := range []string{"write", "pwrite", "mmap", "copyrange", "splice", "sendfile", "fallocate", "truncate", "link", "iouring"} {
			t.Run(method, func(t *testing.T) {
				if method == "mmap" && opts.ExecBackend == bpf.BackendKill && onShm(T) {
					t.Skip("the fixture is on tmpfs or ramfs (make vmtest's root): a mapped write there keeps the change time, so the SIGKILL backend cannot tell the file changed; nriguard refuses to bind a rule to such a file there (policy.WeakShm, TestRunRefusesProgramsItCannotBind)")
				}
				file := p("usr/bin/w-" + method)
				copyFile(t, p("usr/bin/allowed"), file)
				cg := testenv.Cgroup(t)
				a := attachExec(t, opts, cg, fmt.Sprintf("allow %s; allow %s", file, probeSelf(t)), policy.Enforce)
				rd, err := bpf.NewEventReader(a.Events)
				must(t, err)
				defer rd.Close()
				got := testenv.Probe(t, "", cg, "", "overwrite:"+method+":"+file+":"+p("usr/bin/other"), "exec:"+file)
				want := "ok denied" // the write happens; the file is another program now
				if opts.ExecBackend == bpf.BackendLSM {
					want = "EPERM ran" // the write is refused; the program runs
					if method == "link" {
						// the write through the new name is refused, but the
						// link itself moved the inode's change time: the file
						// is no longer the one bound, and is refused (closed)
						want = "EPERM denied"
					}
				}
				if strings.Join(got, " ") != want {
					t.Errorf("%s of an allowed program from its container, then exec: %q, want %q", method, got, want)
				}
				// the refused write is reported, naming the file: its path
				// where it was opened, its own name where it was truncated
				if opts.ExecBackend == bpf.BackendLSM && (method == "write" || method == "truncate") {
					name := file
					if method == "truncate" {
						name = filepath.Base(file)
					}
					if ev := waitEvents(t, rd, 1)[0]; ev.Kind != events.KindWrite || ev.Verdict != "denied" || ev.Filename != name {
						t.Errorf("%s: event %+v, want a refused write naming %s", method, ev, name)
					}
				}
			})
		}
		// a file the policy only refuses may be written (it stays refused)
		cg := testenv.Cgroup(t)
		copyFile(t, p("usr/bin/other"), p("usr/bin/w-denied"))
		attachExec(t, opts, cg, fmt.Sprintf("deny %s; allow %s; default allow", p("usr/bin/w-denied"), probeSelf(t)), policy.Enforce)
		if got := strings.Join(testenv.Probe(t, "", cg, "", "overwrite:write:"+p("usr/bin/w-denied")+":"+p("usr/bin/allowed"), "exec:"+p("usr/bin/w-denied")), " "); got != "ok denied" {
			t.Errorf("a denied file written from its container, then exec: %q, want ok denied", got)
		}
	})
}

// onShm says whether dir is on a memory filesystem (tmpfs, ramfs), where a
// write through a mapping leaves the change time.
func onShm(dir string) bool {
	var fs unix.Statfs_t
	return unix.Statfs(dir, &fs) == nil && (fs.Type == unix.TMPFS_MAGIC || fs.Type == unix.RAMFS_MAGIC)
}
