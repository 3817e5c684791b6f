package bpf_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/cgroup"
	"github.com/nriguard/nriguard/events"
	"github.com/nriguard/nriguard/internal/testenv"
	"github.com/nriguard/nriguard/policy"
	"github.com/nriguard/nriguard/resolve"
)

// execFixture lays out programs the way images do: usrmerge's /bin ->
// usr/bin, symlinks, hard links, copies, scripts, a dynamic loader's name, a
// directory of tools. Every program is a copy of static busybox, which runs
// the applet its argv[0] names.
func execFixture(t *testing.T) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatalf("busybox (static) is needed for the exec fixture: %v", err)
	}
	dir, err := os.MkdirTemp("", "nriguard-exec")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	p := func(rel string) string { return filepath.Join(dir, rel) }
	for _, d := range []string{"usr/bin", "lib", "opt/tools/sub"} {
		must(t, os.MkdirAll(p(d), 0o755))
	}
	for _, f := range []string{"usr/bin/allowed", "usr/bin/other", "usr/bin/copy-of-allowed", "usr/bin/copy-of-other",
		"usr/bin/sh", "lib/ld-linux-x86-64.so.2", "opt/tools/a", "opt/tools/sub/b"} {
		copyFile(t, bb, p(f))
	}
	must(t, os.Symlink("usr/bin", p("bin")))
	must(t, os.Symlink("allowed", p("usr/bin/link-to-allowed")))
	must(t, os.Link(p("usr/bin/allowed"), p("usr/bin/hardlink-allowed")))
	must(t, os.Link(p("usr/bin/other"), p("usr/bin/hardlink-other")))
	must(t, os.WriteFile(p("usr/bin/script-ok.sh"), []byte("#!"+p("usr/bin/sh")+"\nexit 0\n"), 0o755))
	must(t, os.WriteFile(p("usr/bin/script-bad.sh"), []byte("#!"+p("usr/bin/other")+"\nexit 0\n"), 0o755))
	return dir
}

func copyFile(t *testing.T, from, to string) {
	in, err := os.Open(from)
	must(t, err)
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	must(t, err)
	_, err = io.Copy(out, in)
	must(t, err)
	must(t, out.Close())
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// backends runs f once per exec backend, each with a pin root of its own
// (the host-wide exec program is per pin root). A backend the kernel cannot
// load is skipped with the reason.
func backends(t *testing.T, f func(t *testing.T, opts *bpf.Options)) {
	needPrograms(t)
	for _, be := range []string{bpf.BackendKill, bpf.BackendLSM} {
		t.Run(be, func(t *testing.T) {
			if reason := backendUnavailable(be); reason != "" {
				if be == bpf.BackendKill || os.Getenv("NRIGUARD_REQUIRE_LSM") != "" {
					t.Fatal(reason) // the fallback must work everywhere; the VM must have LSM
				}
				t.Skip(reason)
			}
			root := fmt.Sprintf("/sys/fs/bpf/nriguard-test-%d-%s", os.Getpid(), be)
			t.Cleanup(func() { os.RemoveAll(root) })
			f(t, &bpf.Options{PinRoot: root, ExecBackend: be})
		})
	}
}

func backendUnavailable(be string) string {
	if err := bpf.ProbeExecBackend(be); err != nil {
		if be == bpf.BackendLSM {
			why := err.Error()
			if errors.Is(err, unix.EPERM) {
				why = "EPERM at load: the kernel is locked down"
			}
			return fmt.Sprintf("needs BPF LSM, which this kernel refuses (%s); make vmtest runs this under BPF LSM in a VM", why)
		}
		return fmt.Sprintf("tp_btf/sched_process_exec does not load on this kernel: %v", err)
	}
	return ""
}

func attachExec(t *testing.T, opts *bpf.Options, cg, rules string, mode policy.Mode) *bpf.Attachment {
	t.Helper()
	needPrograms(t)
	e, err := policy.ParseExec("exec.nriguard.io", rules)
	must(t, err)
	table, warnings, err := resolve.Exec("/", "exec.nriguard.io", e)
	must(t, err)
	for _, w := range warnings {
		t.Log(w)
	}
	a, err := bpf.Attach(bpf.Spec{ID: "x-" + filepath.Base(cg), Cgroup: cg, Exec: policy.IntersectExec(mode, table)}, opts)
	must(t, err)
	t.Cleanup(func() { a.Detach() })
	return a
}

// probeSelf is the test binary: every exec policy here allows it, since the
// probe itself is exec'd into the policed cgroup.
func probeSelf(t *testing.T) string {
	self, err := os.Executable()
	must(t, err)
	return self
}

// The exec table: both backends must give the same answers. Rows marked
// "known limit" pass by design and are documented in docs/policy.md.
func TestExecTable(t *testing.T) {
	backends(t, func(t *testing.T, opts *bpf.Options) {
		T := execFixture(t)
		p := func(rel string) string { return filepath.Join(T, rel) }
		allowlist := fmt.Sprintf("allow %s; allow %s; allow %s/; allow %s/; allow %s",
			p("bin/allowed"), p("usr/bin/sh"), p("opt/tools"), p("lib"), probeSelf(t))
		cg := testenv.Cgroup(t)
		attachExec(t, opts, cg, allowlist, policy.Enforce)
		rows := []struct{ op, want, why string }{
			{"exec:" + p("usr/bin/allowed"), "ran", "allowed through the usrmerge path /bin"},
			{"exec:" + p("bin/allowed"), "ran", "the path the rule names"},
			{"exec:" + p("usr/bin/other"), "denied", "not allowed: default deny"},
			{"exec:" + p("bin/other"), "denied", "through the symlinked directory"},
			{"exec:" + p("usr/bin/link-to-allowed"), "ran", "a symlink runs its target"},
			{"execin:" + p("usr/bin") + ":./allowed", "ran", "relative path"},
			{"execin:" + p("bin") + ":./other", "denied", "relative path through a symlinked directory"},
			{"exec:" + p("usr/bin/hardlink-allowed"), "ran", "a hard link is the same file"},
			{"exec:" + p("usr/bin/copy-of-allowed"), "denied", "a copy is another file"},
			{"exec:" + p("usr/bin/script-ok.sh"), "ran", "a script runs as its interpreter, which is allowed"},
			{"exec:" + p("usr/bin/script-bad.sh"), "denied", "its interpreter is not allowed"},
			{"exec:" + p("lib/ld-linux-x86-64.so.2"), "denied", "directory rules never allow a dynamic loader"},
			{"exec:" + p("opt/tools/a"), "ran", "directory rule"},
			{"exec:" + p("opt/tools/sub/b"), "ran", "directory rule, below"},
			{"memfd:" + p("usr/bin/allowed"), "denied", "fileless: a memfd is another file"},
			{"exec:" + p("usr/bin/allowed") + ":sh", "ran", "known limit: a multi-call binary runs whatever applet argv[0] names"},
		}
		var ops []string
		for _, r := range rows {
			ops = append(ops, r.op)
		}
		check := func(name, dir string) {
			got := testenv.Probe(t, "", dir, "", ops...)
			for i, r := range rows {
				if at(got, i) != r.want {
					t.Errorf("%s: %s: got %s, want %s (%s)", name, strings.TrimPrefix(r.op, T), at(got, i), r.want, r.why)
				}
			}
		}
		check("cgroup", cg)
		child := filepath.Join(cg, "child")
		must(t, os.Mkdir(child, 0o755))
		check("child cgroup", child)

		// A deny list, and its known limit: a copy of a denied program runs.
		cg2 := testenv.Cgroup(t)
		attachExec(t, opts, cg2, "deny "+p("usr/bin/other"), policy.Enforce)
		got := testenv.Probe(t, "", cg2, "", "exec:"+p("bin/other"), "exec:"+p("usr/bin/hardlink-other"),
			"exec:"+p("usr/bin/copy-of-other"), "exec:"+p("usr/bin/allowed"))
		if want := "denied denied ran ran"; strings.Join(got, " ") != want {
			t.Errorf("deny list: got %q, want %q (a copy of a denied program is a known limit)", got, want)
		}
	})
}

func TestExecAuditAndEvents(t *testing.T) {
	backends(t, func(t *testing.T, opts *bpf.Options) {
		T := execFixture(t)
		other := filepath.Join(T, "usr/bin/other")
		rules := fmt.Sprintf("allow %s; allow %s", filepath.Join(T, "usr/bin/allowed"), probeSelf(t))

		cg := testenv.Cgroup(t)
		a := attachExec(t, opts, cg, rules, policy.Enforce)
		ev := oneExecEvent(t, a, cg, "exec:"+other, "denied")
		want := "sigkill"
		if opts.ExecBackend == bpf.BackendLSM {
			want = "eperm"
		}
		cgid, _ := cgroup.ID(cg)
		if ev.Kind != "exec" || ev.Verdict != "denied" || ev.Filename != other || ev.Enforcement != want || ev.PolicyCgroup != cgid ||
			ev.PPID == 0 || ev.PID == 0 || ev.CgroupID == 0 || ev.File == "" {
			t.Errorf("enforce event: %+v", ev)
		}

		cg = testenv.Cgroup(t)
		a = attachExec(t, opts, cg, rules, policy.Audit)
		ev = oneExecEvent(t, a, cg, "exec:"+other, "ran")
		if ev.Verdict != "would-deny" || ev.Filename != other {
			t.Errorf("audit event: %+v", ev)
		}
	})
}

// oneExecEvent runs op in cg, checks its result and returns the one event.
func oneExecEvent(t *testing.T, a *bpf.Attachment, cg, op, want string) events.Record {
	t.Helper()
	rd, err := bpf.NewEventReader(a.Events)
	must(t, err)
	defer rd.Close()
	if got := testenv.Probe(t, "", cg, "", op); at(got, 0) != want {
		t.Fatalf("%s: got %q, want %s", op, got, want)
	}
	evs := waitEvents(t, rd, 1)
	time.Sleep(50 * time.Millisecond)
	if extra := rd.Drain(); len(extra) > 0 {
		t.Errorf("more events than the one exec: %+v", extra)
	}
	return evs[0]
}

// Detaching the last exec policy removes the host-wide program: an
// unlabelled host pays nothing.
func TestExecGlobalProgramGoesAway(t *testing.T) {
	backends(t, func(t *testing.T, opts *bpf.Options) {
		before := ourPrograms(t)
		cg := testenv.Cgroup(t)
		e, _ := policy.ParseExec("exec.nriguard.io", "allow "+probeSelf(t))
		table, _, err := resolve.Exec("/", "exec.nriguard.io", e)
		must(t, err)
		a, err := bpf.Attach(bpf.Spec{ID: "global", Cgroup: cg, Exec: table}, opts)
		must(t, err)
		b, err := bpf.Attach(bpf.Spec{ID: "global2", Cgroup: testenv.Cgroup(t), Exec: table}, opts)
		must(t, err)
		want := 1 // the exec program; with BPF LSM the write guard's two beside it
		if opts.ExecBackend == bpf.BackendLSM {
			want = 3
		}
		// counted by id: a program of an earlier test may still be going
		// away (slowly under an emulated CPU), which a count would mistake
		added := func() []ebpf.ProgramID {
			var ids []ebpf.ProgramID
			for _, id := range ourPrograms(t) {
				if !slices.Contains(before, id) {
					ids = append(ids, id)
				}
			}
			return ids
		}
		if got := added(); len(got) != want {
			t.Errorf("want %d host-wide exec programs for two containers: before %v, added %v", want, before, got)
		}
		must(t, a.Detach())
		if _, err := os.Stat(bpf.ExecDir(opts.PinRoot)); err != nil {
			t.Errorf("the exec program went away while a container still needs it: %v", err)
		}
		must(t, b.Detach())
		if _, err := os.Stat(bpf.ExecDir(opts.PinRoot)); !os.IsNotExist(err) {
			t.Errorf("exec program still pinned after the last detach: %v", err)
		}
		if !gone(func() bool { return len(added()) == 0 }) {
			t.Errorf("programs left loaded: %v", added())
		}
	})
}

// All containers' exec rules share one host table: each cgroup is judged by
// its own entries only, a replaced policy leaves none of its rules behind,
// and events a container's ring has no room for are counted.
func TestExecSharedTable(t *testing.T) {
	backends(t, func(t *testing.T, opts *bpf.Options) {
		T := execFixture(t)
		allowed, other := filepath.Join(T, "usr/bin/allowed"), filepath.Join(T, "usr/bin/other")
		self := probeSelf(t)
		cg1, cg2 := testenv.Cgroup(t), testenv.Cgroup(t)
		table := func(rules string) *policy.ExecTable {
			e, err := policy.ParseExec("exec.nriguard.io", rules)
			must(t, err)
			tb, _, err := resolve.Exec("/", "exec.nriguard.io", e)
			must(t, err)
			return tb
		}
		attach := func(id, cg, rules string, o *bpf.Options) *bpf.Attachment {
			a, err := bpf.Attach(bpf.Spec{ID: id, Cgroup: cg, Exec: table(rules)}, o)
			must(t, err)
			t.Cleanup(func() { a.Detach() })
			return a
		}
		probe := func(cg string) string {
			return strings.Join(testenv.Probe(t, "", cg, "", "exec:"+allowed, "exec:"+other), " ")
		}
		attach("shared-1", cg1, "allow "+allowed+"; allow "+self, opts)
		attach("shared-2", cg2, "allow "+other+"; allow "+self, opts)
		if got := probe(cg1); got != "ran denied" {
			t.Errorf("cgroup 1: got %q, want \"ran denied\"", got)
		}
		if got := probe(cg2); got != "denied ran" {
			t.Errorf("cgroup 2 must not be judged by cgroup 1's entries: got %q, want \"denied ran\"", got)
		}
		// Replace cgroup 1's policy: its allow of "allowed" must go.
		attach("shared-1", cg1, "allow "+other+"; allow "+self, opts)
		if got := probe(cg1); got != "denied ran" {
			t.Errorf("cgroup 1 after replace: got %q, want \"denied ran\"", got)
		}

		// A ring of one page, and 60 denials into it that nobody reads.
		ev, err := bpf.NewEventMapsSize(os.Getpagesize())
		must(t, err)
		defer ev.Close()
		small := *opts
		small.Events = ev
		cg3 := testenv.Cgroup(t)
		a := attach("shared-3", cg3, "allow "+self, &small)
		var ops []string
		for range 60 {
			ops = append(ops, "exec:"+other)
		}
		testenv.Probe(t, "", cg3, "", ops...)
		rd, err := bpf.NewEventReader(a.Events)
		must(t, err)
		defer rd.Close()
		got, lost, odd := tally(rd.Drain())
		if got+int(lost) != 60 || lost == 0 || len(odd) > 0 {
			t.Errorf("read %d exec events and counted %d lost (and %v); want them to add up to 60 with some lost", got, lost, odd)
		}
		// The other containers' events did not go there, and still arrive.
		if got := probe(cg2); got != "denied ran" {
			t.Errorf("cgroup 2 after the others: got %q", got)
		}
	})
}

// A policed cgroup inside another: an exec must pass both, and the one
// event names the policy that refused it (the innermost, if both do).
func TestExecNestedPolicies(t *testing.T) {
	backends(t, func(t *testing.T, opts *bpf.Options) {
		T := execFixture(t)
		allowed, other := filepath.Join(T, "usr/bin/allowed"), filepath.Join(T, "usr/bin/other")
		self := probeSelf(t)
		outer := testenv.Cgroup(t)
		inner := filepath.Join(outer, "inner")
		must(t, os.Mkdir(inner, 0o755))
		shared := *opts
		ev, err := bpf.NewEventMaps()
		must(t, err)
		defer ev.Close()
		shared.Events = ev
		attachExec(t, &shared, outer, "allow "+allowed+"; allow "+self, policy.Enforce)
		attachExec(t, &shared, inner, "allow "+other+"; allow "+self, policy.Enforce)
		rd, err := bpf.NewEventReader(*ev)
		must(t, err)
		defer rd.Close()
		outerID, _ := cgroup.ID(outer)
		innerID, _ := cgroup.ID(inner)
		for _, c := range []struct {
			file string
			by   uint64
		}{{allowed, innerID}, {other, outerID}, {filepath.Join(T, "usr/bin/copy-of-other"), innerID}} {
			if got := testenv.Probe(t, "", inner, "", "exec:"+c.file); at(got, 0) != "denied" {
				t.Errorf("%s in the inner cgroup: got %q, want denied", c.file, got)
				continue
			}
			e := waitEvents(t, rd, 1)[0]
			if e.PolicyCgroup != c.by || e.Filename != c.file {
				t.Errorf("%s: event from policy cgroup %d for %s, want %d", c.file, e.PolicyCgroup, e.Filename, c.by)
			}
		}
		time.Sleep(50 * time.Millisecond)
		if extra := rd.Drain(); len(extra) > 0 {
			t.Errorf("one event per refused exec, got more: %+v", extra)
		}
	})
}

// A daemon's detach (DetachKeep) keeps the exec program and its ring for
// the next container; RemoveIdle takes them away once unused.
func TestExecKeptForDaemon(t *testing.T) {
	backends(t, func(t *testing.T, opts *bpf.Options) {
		ev, err := bpf.NewEventMaps()
		must(t, err)
		defer ev.Close()
		o := *opts
		o.Events, o.Keep = ev, true
		e, _ := policy.ParseExec("exec.nriguard.io", "allow "+probeSelf(t))
		table, _, err := resolve.Exec("/", "exec.nriguard.io", e)
		must(t, err)
		execDir := bpf.ExecDir(opts.PinRoot)
		linkID := func() link.ID {
			lk, err := link.LoadPinnedLink(filepath.Join(execDir, "link_exec"), nil)
			must(t, err)
			defer lk.Close()
			info, err := lk.Info()
			must(t, err)
			return info.ID
		}
		a, err := bpf.Attach(bpf.Spec{ID: "kept", Cgroup: testenv.Cgroup(t), Exec: table}, &o)
		must(t, err)
		a.Close()
		first := linkID()
		must(t, bpf.DetachKeep(opts.PinRoot, "kept"))
		if _, err := os.Stat(execDir); err != nil {
			t.Fatalf("the daemon's last exec container took the exec program with it: %v", err)
		}
		cg := testenv.Cgroup(t)
		b, err := bpf.Attach(bpf.Spec{ID: "kept2", Cgroup: cg, Exec: table}, &o)
		must(t, err)
		b.Close()
		if linkID() != first {
			t.Errorf("the exec program was made again (link %d, was %d)", linkID(), first)
		}
		// still enforcing, and reporting to the kept ring
		rd, err := bpf.NewEventReader(*ev)
		must(t, err)
		defer rd.Close()
		other := filepath.Join(execFixture(t), "usr/bin/other")
		if got := testenv.Probe(t, "", cg, "", "exec:"+other); at(got, 0) != "denied" {
			t.Errorf("exec after the program was kept: got %q, want denied", got)
		}
		waitEvents(t, rd, 1)
		if removed, err := bpf.RemoveIdle(opts.PinRoot); removed || err != nil {
			t.Errorf("RemoveIdle with a container using it: removed %v, %v", removed, err)
		}
		must(t, bpf.DetachKeep(opts.PinRoot, "kept2"))
		if removed, err := bpf.RemoveIdle(opts.PinRoot); !removed || err != nil {
			t.Errorf("RemoveIdle when unused: removed %v, %v", removed, err)
		}
		if _, err := os.Stat(execDir); !os.IsNotExist(err) {
			t.Errorf("exec program still pinned: %v", err)
		}
	})
}

// In audit mode the ceiling's exec refusals hold; the label's are reported.
func TestExecAuditKeepsTheCeiling(t *testing.T) {
	backends(t, func(t *testing.T, opts *bpf.Options) {
		T := execFixture(t)
		other, copyOther := filepath.Join(T, "usr/bin/other"), filepath.Join(T, "usr/bin/copy-of-other")
		table := func(layer policy.Layer, rules string) *policy.ExecTable {
			e, err := policy.ParseExec("exec.nriguard.io", rules)
			must(t, err)
			e.Layer = layer
			tb, _, err := resolve.Exec("/", "exec.nriguard.io", e)
			must(t, err)
			return tb
		}
		cg := testenv.Cgroup(t)
		ev, err := bpf.NewEventMaps()
		must(t, err)
		defer ev.Close()
		o := *opts
		o.Events = ev
		spec := bpf.Spec{ID: "audit-ceiling", Cgroup: cg, Exec: policy.IntersectExec(policy.Audit,
			table(policy.LayerCeiling, "deny "+other),
			table(policy.LayerLabel, "allow "+probeSelf(t)))}
		a, err := bpf.Attach(spec, &o)
		must(t, err)
		defer a.Detach()
		rd, err := bpf.NewEventReader(*ev)
		must(t, err)
		defer rd.Close()
		if got := strings.Join(testenv.Probe(t, "", cg, "", "exec:"+other, "exec:"+copyOther), " "); got != "denied ran" {
			t.Errorf("got %q, want the ceiling's refusal enforced and the label's only reported", got)
		}
		for i, want := range []string{"denied ceiling", "would-deny label"} {
			e := waitEvents(t, rd, 1)[0]
			if got := e.Verdict + " " + e.Layer; got != want {
				t.Errorf("event %d: %s, want %s", i, got, want)
			}
		}
	})
}

// uid= and gid= on exec rules: a program allowed to one user only, denied to
// one group only; judged by the real uid and gid of the process that execs.
func TestExecQualifiers(t *testing.T) {
	backends(t, func(t *testing.T, opts *bpf.Options) {
		T := execFixture(t)
		cg := testenv.Cgroup(t)
		attachExec(t, opts, cg, fmt.Sprintf("allow %s; allow %s/usr/bin/allowed uid=65534; allow %s/usr/bin/other; deny %s/usr/bin/other gid=1000; default deny",
			probeSelf(t), T, T, T), policy.Enforce)
		allowed, other := "exec:"+T+"/usr/bin/allowed", "exec:"+T+"/usr/bin/other"
		for _, c := range []struct {
			ops  []string
			want string
		}{
			{[]string{allowed}, "denied"},                                    // root: not the user named
			{[]string{"user:65534:65534", allowed}, "ok ran"},                // the user named
			{[]string{"user:65534:1000", other}, "ok denied"},                // the group denied
			{[]string{"user:65534:65534", other}, "ok ran"},                  // another group
			{[]string{"user:1000:1000", allowed, other}, "ok denied denied"}, // neither
		} {
			if got := strings.Join(testenv.Probe(t, "", cg, "", c.ops...), " "); got != c.want {
				t.Errorf("%v: got %q, want %q", c.ops, got, c.want)
			}
		}
	})
}

// With visibility on execs, an allowed exec is reported too (verdict
// allowed, no enforcement); a refused one as before; without it, only the
// refusal.
func TestExecVisibility(t *testing.T) {
	backends(t, func(t *testing.T, opts *bpf.Options) {
		T := execFixture(t)
		allowed, other := filepath.Join(T, "usr/bin/allowed"), filepath.Join(T, "usr/bin/other")
		for _, execs := range []bool{true, false} {
			e, err := policy.ParseExec("exec.nriguard.io", fmt.Sprintf("allow %s; allow %s", allowed, probeSelf(t)))
			must(t, err)
			table, _, err := resolve.Exec("/", "exec.nriguard.io", e)
			must(t, err)
			x := policy.IntersectExec(policy.Enforce, table)
			vis := policy.VisOff
			if execs {
				vis = policy.VisExecs
			}
			cg := testenv.Cgroup(t)
			a, err := bpf.Attach(bpf.Spec{ID: "xv-" + filepath.Base(cg), Cgroup: cg, Exec: x, Visibility: vis}, opts)
			must(t, err)
			rd, err := bpf.NewEventReader(a.Events)
			must(t, err)
			got := testenv.Probe(t, "", cg, "", "exec:"+allowed, "exec:"+other)
			if strings.Join(got, " ") != "ran denied" {
				t.Errorf("execs %v: got %q, want ran denied", execs, got)
			}
			var seen []string
			for _, r := range append(waitEvents(t, rd, 1), rd.Drain()...) {
				if r.Kind == events.KindExec {
					seen = append(seen, filepath.Base(r.Filename)+":"+r.Verdict+":"+r.Enforcement)
				}
			}
			// the probe itself is exec'd into the cgroup: seen too
			want := []string{"other:denied:" + map[string]string{bpf.BackendKill: "sigkill", bpf.BackendLSM: "eperm"}[opts.ExecBackend]}
			if execs {
				want = []string{filepath.Base(probeSelf(t)) + ":allowed:", "allowed:allowed:", want[0]}
			}
			if !slices.Equal(seen, want) {
				t.Errorf("execs %v: records %q, want %q", execs, seen, want)
			}
			rd.Close()
			a.Detach()
		}
	})
}

// The exec backend nriguard picks by itself (bpf.ExecBackend: BPF LSM where
// its program loads, else the tracepoint and SIGKILL) is named in the log;
// make vmtest says which one each kernel must get
// (NRIGUARD_EXPECT_EXEC_BACKEND): BPF LSM where lsm= names bpf, the
// fallback where it does not.
func TestExecBackendChosen(t *testing.T) {
	needPrograms(t)
	testenv.NeedRoot(t)
	if v := os.Getenv(bpf.BackendEnv); v != "" {
		t.Skipf("%s=%s chooses the backend instead of the probe", bpf.BackendEnv, v)
	}
	be, err := bpf.ExecBackend()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("exec backend chosen on this kernel: %s", be)
	if want := os.Getenv("NRIGUARD_EXPECT_EXEC_BACKEND"); want != "" && be != want {
		t.Errorf("exec backend %s, want %s here", be, want)
	}
}
