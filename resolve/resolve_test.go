package resolve

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nriguard/nriguard/policy"
)

// fixture lays out a container root the way images do: usrmerge's /bin ->
// usr/bin, symlinks (one pointing out of the root), a hard link, a script,
// a dynamic loader, a non-executable file, a directory of tools.
func fixture(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	p := func(rel string) string { return filepath.Join(root, rel) }
	for _, d := range []string{"usr/bin", "lib64", "opt/tools/sub", "etc"} {
		must(t, os.MkdirAll(p(d), 0o755))
	}
	for _, f := range []string{"usr/bin/curl", "usr/bin/nc", "lib64/ld-linux-x86-64.so.2", "opt/tools/a", "opt/tools/sub/b"} {
		must(t, os.WriteFile(p(f), []byte("\x7fELF not really"), 0o755))
	}
	must(t, os.WriteFile(p("etc/passwd"), []byte("root:x:0:0::/:/bin/sh\n"), 0o644))
	must(t, os.WriteFile(p("opt/tools/readme"), []byte("not a program"), 0o644))
	must(t, os.WriteFile(p("opt/tools/run.sh"), []byte("#!/bin/sh\nexit 0\n"), 0o755))
	must(t, os.Symlink("usr/bin", p("bin")))
	must(t, os.Symlink("curl", p("usr/bin/curl-link")))
	must(t, os.Link(p("usr/bin/curl"), p("usr/bin/curl-hard")))
	must(t, os.Symlink("/../../../../../usr/bin/nc", p("usr/bin/escape"))) // stays inside: the root's nc
	return root
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func id(t *testing.T, path string) policy.FileID {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Stat(path, &st))
	return policy.FileID{Dev: uint32(unix.Major(st.Dev))<<20 | uint32(unix.Minor(st.Dev)), Ino: st.Ino}
}

func resolve(t *testing.T, root, rules string) (*policy.ExecTable, []string, error) {
	t.Helper()
	e, err := policy.ParseExec("exec.nriguard.io", rules)
	must(t, err)
	e.Layer = policy.LayerLabel
	return Exec(root, "exec.nriguard.io", e)
}

func TestResolvesAsTheContainerSeesIt(t *testing.T) {
	root := fixture(t)
	p := func(rel string) string { return filepath.Join(root, rel) }
	table, warnings, err := resolve(t, root, "allow /bin/curl; allow /opt/tools/; deny /usr/bin/escape; default deny")
	if err != nil || len(warnings) != 0 {
		t.Fatalf("%v %q", err, warnings)
	}
	deny := policy.Verdict{Action: policy.Deny, Layer: policy.LayerLabel}
	for path, want := range map[string]policy.Verdict{
		"usr/bin/curl":      policy.Allowed, // through /bin -> usr/bin
		"usr/bin/curl-hard": policy.Allowed, // the same file
		"opt/tools/a":       policy.Allowed, // directory rule, recursively
		"opt/tools/sub/b":   policy.Allowed,
		"usr/bin/nc":        deny, // the link out of the root resolved inside it
	} {
		if got, ok := table.Files[id(t, p(path))]; !ok || got != want {
			t.Errorf("%s: %+v (in table: %v), want %+v", path, got, ok, want)
		}
	}
	for _, path := range []string{"opt/tools/readme", "opt/tools/run.sh", "lib64/ld-linux-x86-64.so.2"} {
		if _, ok := table.Files[id(t, p(path))]; ok {
			t.Errorf("%s is in the table: directory rules take only programs, never scripts or loaders", path)
		}
	}
	if table.Default != deny || len(table.Files) != 4 {
		t.Errorf("default %+v, %d files: %+v", table.Default, len(table.Files), table.Files)
	}
}

// A file rule beats a directory rule; a deeper directory beats a shallower
// one; on a tie deny wins. A loader is allowed only by a rule naming it.
func TestMostSpecificRuleWins(t *testing.T) {
	root := fixture(t)
	p := func(rel string) string { return filepath.Join(root, rel) }
	table, _, err := resolve(t, root, "allow /opt/; deny /opt/tools/sub/; allow /opt/tools/sub/b; allow /lib64/ld-linux-x86-64.so.2; deny /bin/curl; allow /usr/bin/curl-hard; default deny")
	must(t, err)
	deny := policy.Verdict{Action: policy.Deny, Layer: policy.LayerLabel}
	for path, want := range map[string]policy.Verdict{
		"opt/tools/a":                policy.Allowed,
		"opt/tools/sub/b":            policy.Allowed, // file rule over the deeper deny
		"lib64/ld-linux-x86-64.so.2": policy.Allowed, // named
		"usr/bin/curl":               deny,           // two file rules on one file: deny wins
	} {
		if got := table.Files[id(t, p(path))]; got != want {
			t.Errorf("%s: %+v, want %+v", path, got, want)
		}
	}
}

func TestResolveErrorsNameTheRule(t *testing.T) {
	root := fixture(t)
	for rules, want := range map[string]string{
		"allow /opt/tools/run.sh":                  `exec.nriguard.io: rule 1 "allow /opt/tools/run.sh": /opt/tools/run.sh is a #! script: a script runs as its interpreter, which is what is judged; name the interpreter instead`,
		"allow /usr/bin":                           `exec.nriguard.io: rule 1 "allow /usr/bin": /usr/bin is a directory: write /usr/bin/ for every program below it`,
		"allow /usr/bin/curl; allow /etc/passwd/x": `exec.nriguard.io: rule 2 "allow /etc/passwd/x": cannot open /etc/passwd/x in the container: not a directory`,
	} {
		_, _, err := resolve(t, root, rules)
		if err == nil || !strings.HasPrefix(err.Error(), want[:strings.LastIndex(want, ":")]) {
			t.Errorf("%q:\n got  %v\n want %s", rules, err, want)
		}
	}
	// A missing program is a warning: a pod-wide rule may name what only
	// some images have.
	table, warnings, err := resolve(t, root, "allow /no/such/program; allow /no/dir/")
	if err != nil || len(warnings) != 2 || len(table.Files) != 0 {
		t.Errorf("missing: %v %q %v", err, warnings, table.Files)
	}
	if !strings.Contains(warnings[0], `exec.nriguard.io: rule 1 "allow /no/such/program": /no/such/program does not exist in the container`) {
		t.Errorf("warning: %q", warnings[0])
	}
}

func TestRootMustExist(t *testing.T) {
	_, _, err := resolve(t, filepath.Join(t.TempDir(), "gone"), "allow /bin/sh")
	if err == nil || !strings.HasPrefix(err.Error(), "exec.nriguard.io: open the container's root") {
		t.Errorf("got %v", err)
	}
}

// Every file in the table carries its change time: what the kernel compares
// at exec to tell the file from one written or made since.
func TestStamps(t *testing.T) {
	root := fixture(t)
	table, _, err := resolve(t, root, "allow /usr/bin/curl; deny /opt/tools/; default deny")
	must(t, err)
	for _, rel := range []string{"usr/bin/curl", "opt/tools/a", "opt/tools/sub/b"} {
		p := filepath.Join(root, rel)
		var stx unix.Statx_t
		must(t, unix.Statx(unix.AT_FDCWD, p, 0, unix.STATX_CTIME, &stx))
		want := policy.Stamp{Sec: stx.Ctime.Sec, Nsec: stx.Ctime.Nsec}
		if got, ok := table.Stamps[id(t, p)]; !ok || got != want || want.Sec == 0 {
			t.Errorf("%s: stamp %+v (%v), want %+v", rel, got, ok, want)
		}
	}
	if mountInfoOf("/proc/42/root") != "/proc/42/mountinfo" || mountInfoOf("/proc/42/root/var/lib/x/merged") != "/proc/42/mountinfo" || mountInfoOf("/proc/42/rootx") != "/proc/self/mountinfo" || mountInfoOf("/") != "/proc/self/mountinfo" || mountInfoOf("/proc/x/root") != "/proc/self/mountinfo" {
		t.Error("mountInfoOf")
	}
}

// uid= and gid= exec rules: cells of users and groups where the verdict
// differs from everyone else's, the most specific rule still first.
func TestExecQualifiers(t *testing.T) {
	root := fixture(t)
	tab, _, err := resolve(t, root, "allow /usr/bin/curl uid=0; allow /opt/tools/; deny /opt/tools/a uid=1000-1999 gid=50; deny /usr/bin/ uid=0; default deny")
	must(t, err)
	curl, a, b := id(t, root+"/usr/bin/curl"), id(t, root+"/opt/tools/a"), id(t, root+"/opt/tools/sub/b")
	for _, c := range []struct {
		file     policy.FileID
		uid, gid uint32
		want     policy.Action
	}{
		{curl, 0, 0, policy.Allow},   // the file rule about root beats the directory's
		{curl, 1000, 0, policy.Deny}, // everyone else: the default
		{a, 1500, 50, policy.Deny},   // the qualified deny on the file
		{a, 1500, 51, policy.Allow},  // another group: the directory's allow
		{a, 0, 50, policy.Allow},     // another user
		{b, 1500, 50, policy.Allow},  // not the file
	} {
		if got := tab.VerdictFor(c.file, c.uid, c.gid).Action; got != c.want {
			t.Errorf("%v by %d:%d: %v, want %v", c.file, c.uid, c.gid, got, c.want)
		}
	}
	if len(tab.Conds[curl]) != 1 || tab.Conds[curl][0].UIDs != (policy.IDRange{Lo: 0, Hi: 0}) {
		t.Errorf("curl's cells: %+v, want one, for uid 0", tab.Conds[curl])
	}
	// layers intersect cell by cell
	ceil, err := policy.ParseExec("config ceiling_exec", "deny /usr/bin/curl uid=0-10; default allow")
	must(t, err)
	ceil.Layer = policy.LayerCeiling
	ct, _, err := Exec(root, "config ceiling_exec", ceil)
	must(t, err)
	both := policy.IntersectExec(policy.Enforce, ct, tab)
	for _, c := range []struct {
		uid  uint32
		want policy.Verdict
	}{
		{0, policy.Verdict{Action: policy.Deny, Layer: policy.LayerCeiling}},
		{11, policy.Verdict{Action: policy.Deny, Layer: policy.LayerLabel}},
	} {
		if got := both.VerdictFor(curl, c.uid, 0); got != c.want {
			t.Errorf("curl by uid %d, both layers: %+v, want %+v", c.uid, got, c.want)
		}
	}
}

// exe= patterns resolve as exec rules do: for every file, the patterns
// that name it.
func TestPrograms(t *testing.T) {
	root := fixture(t)
	files, stamps, _, warnings, err := Programs(root, "egress.nriguard.io", []string{"/bin/curl", "/usr/bin/", "/nowhere"})
	must(t, err)
	curl, nc := id(t, root+"/usr/bin/curl"), id(t, root+"/usr/bin/nc")
	if strings.Join(files[curl], ",") != "/bin/curl,/usr/bin/" || strings.Join(files[nc], ",") != "/usr/bin/" {
		t.Errorf("curl %v, nc %v", files[curl], files[nc])
	}
	if _, ok := stamps[curl]; !ok || len(warnings) != 1 {
		t.Errorf("stamps %v, warnings %q: want curl's stamp and one warning (/nowhere)", stamps, warnings)
	}
}

var sink byte

// A file whose change time may not follow its content is told apart when
// it is resolved: on tmpfs (where, as checked here, a write through a
// shared mapping of pages read first changes no time of the file), not on
// an ordinary disk filesystem.
func TestWeakness(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "nriguard-weak")
	if err != nil {
		t.Skipf("needs /dev/shm (tmpfs): %v", err)
	}
	defer os.RemoveAll(shm)
	prog := filepath.Join(shm, "tool")
	must(t, os.WriteFile(prog, []byte("\x7fELF one program"), 0o755))
	var before, after unix.Stat_t
	must(t, unix.Stat(prog, &before))
	// the premise: a mapped write after a read fault leaves the times
	fd, err := unix.Open(prog, unix.O_RDWR, 0)
	must(t, err)
	m, err := unix.Mmap(fd, 0, 16, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	must(t, err)
	sink += m[0] // read first: the page is mapped without a write fault
	copy(m, "\x7fELF other prog!")
	unix.Munmap(m)
	unix.Close(fd)
	must(t, unix.Stat(prog, &after))
	data, _ := os.ReadFile(prog)
	if string(data) != "\x7fELF other prog!" || after.Ctim != before.Ctim {
		t.Logf("on this kernel a mapped write to tmpfs changed the change time (%v -> %v): the weakness is a precaution here", before.Ctim, after.Ctim)
	} else {
		t.Logf("premise holds: new content %q, change time %v as before", data, after.Ctim)
	}
	e, err := policy.ParseExec("exec.nriguard.io", "allow /tool")
	must(t, err)
	table, _, err := Exec(shm, "exec.nriguard.io", e)
	must(t, err)
	if len(table.Weak) != 1 {
		t.Fatalf("a file on tmpfs: weaknesses %v, want one", table.Weak)
	}
	for _, w := range table.Weak {
		if w.Why != policy.WeakShm || w.Path != "/tool" || !strings.Contains(w.Explain(), "memory filesystem") {
			t.Errorf("a file on tmpfs: %+v (%s)", w, w.Explain())
		}
	}
	root := fixture(t)
	var fs unix.Statfs_t
	must(t, unix.Statfs(root, &fs))
	if fs.Type == tmpfsMagic {
		t.Skip("the test's temporary directory is on tmpfs: no disk filesystem to compare with")
	}
	e, err = policy.ParseExec("exec.nriguard.io", "allow /usr/bin/curl")
	must(t, err)
	table, _, err = Exec(root, "exec.nriguard.io", e)
	must(t, err)
	if len(table.Weak) != 0 {
		t.Errorf("a file on a disk filesystem with fine change times: weaknesses %v, want none", table.Weak)
	}
}
