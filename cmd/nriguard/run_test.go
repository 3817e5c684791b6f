package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/cgroup"
	"github.com/nriguard/nriguard/internal/testenv"
)

func TestMain(m *testing.M) {
	if !testenv.IsProbe() {
		before = leftovers()
	}
	os.Exit(testenv.Main(m))
}

// before holds what an earlier process left (a nriguard run killed with its
// machine): the tests judge only what they leave themselves.
var before map[string]bool

// leftovers are the run-* pins and cgroups on this machine.
func leftovers() map[string]bool {
	left := map[string]bool{}
	ids, _ := bpf.List("")
	for _, id := range ids {
		if strings.HasPrefix(id, "run-") {
			left["pins "+id] = true
		}
	}
	root, _ := cgroup.Root()
	dirs, _ := filepath.Glob(filepath.Join(root, "nriguard", "run-*"))
	for _, d := range dirs {
		left["cgroup "+d] = true
	}
	return left
}

// bin is the real nriguard binary (testenv builds it once).
func bin(t *testing.T) string { return testenv.Nriguard(t) }

var (
	probeOnce sync.Once
	probePath string
)

// probeBin is this test binary copied beside the built nriguard, where any
// user can run it (--user runs the probe as nobody).
func probeBin(t *testing.T) string {
	testenv.NeedRoot(t)
	probeOnce.Do(func() {
		self, _ := os.Executable()
		data, err := os.ReadFile(self)
		if err == nil {
			probePath = filepath.Join(filepath.Dir(bin(t)), "probe")
			err = os.WriteFile(probePath, data, 0o755)
		}
		if err != nil {
			probePath = ""
		}
	})
	if probePath == "" {
		t.Fatal("could not copy the probe beside the nriguard binary")
	}
	return probePath
}

type runResult struct {
	code   int
	stdout []string
	events []map[string]any // refusals, losses
	seen   []map[string]any // what visibility reports: allowed flows and execs
	other  []string         // stderr lines that are not records
}

// nriguardRun runs "nriguard run ARGS -- <this test binary as the probe> OPS".
func nriguardRun(t *testing.T, args []string, ops ...string) runResult {
	t.Helper()
	full := append(append([]string{"run"}, args...), "--", probeBin(t))
	cmd := exec.Command(bin(t), append(full, ops...)...)
	cmd.Env = append(os.Environ(), "NRIGUARD_TEST_PROBE=1")
	return runCmd(t, cmd)
}

func runCmd(t *testing.T, cmd *exec.Cmd) runResult {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := runResult{code: cmd.ProcessState.ExitCode()}
	if err != nil && r.code < 0 {
		t.Fatalf("%v: %v", cmd.Args, err)
	}
	if s := strings.TrimSpace(out.String()); s != "" {
		r.stdout = strings.Split(s, "\n")
	}
	sc := bufio.NewScanner(&errb)
	for sc.Scan() {
		var ev map[string]any
		if json.Unmarshal(sc.Bytes(), &ev) == nil {
			if ev["verdict"] == "allowed" || ev["kind"] == "flow" { // (a flow audit let through is counted as would-deny)
				r.seen = append(r.seen, ev)
			} else {
				r.events = append(r.events, ev)
			}
		} else {
			r.other = append(r.other, sc.Text())
		}
	}
	return r
}

func TestRunEnforces(t *testing.T) {
	// The probe listens itself: pick two free ports.
	allowed, denied := freePort(t), freePort(t)
	r := nriguardRun(t, []string{"--egress", fmt.Sprintf("allow tcp 127.0.0.1:%d", allowed)},
		fmt.Sprintf("tcp:127.0.0.1:%d", allowed), fmt.Sprintf("tcp:127.0.0.1:%d", denied),
		"socket:raw4", "socket:packet", "sleep:300") // alive while its event is read: the event names its program
	want := []string{"ok", "EPERM", "EPERM", "EPERM", "ok"}
	if strings.Join(r.stdout, ",") != strings.Join(want, ",") || r.code != 0 {
		t.Fatalf("got %q exit %d (stderr %q), want %q exit 0", r.stdout, r.code, r.other, want)
	}
	if len(r.events) != 1 {
		t.Fatalf("want one event (the denied connect; raw and packet fail for lack of CAP_NET_RAW before any hook), got %v", r.events)
	}
	ev := r.events[0]
	if ev["verdict"] != "denied" || ev["kind"] != "connect" || ev["dest"] != "127.0.0.1" || ev["port"] != float64(denied) || ev["uid"] != float64(0) {
		t.Errorf("event: %v", ev)
	}
	// the program, as a path and a file, and the rule that decided
	if ev["exe"] != probeBin(t) || ev["exe_file"] == nil || ev["rule"] != "default deny" {
		t.Errorf("event names exe %v (%v), rule %v; want %s, its file, default deny", ev["exe"], ev["exe_file"], ev["rule"], probeBin(t))
	}
	assertNothingLeft(t)
}

// Rules about programs and users, through nriguard run (exe= resolved on
// the host): the probe binary may reach a port as root, not as another
// user; the event names the rule that refused.
func TestRunQualifiers(t *testing.T) {
	port := freePort(t)
	rules := fmt.Sprintf("allow tcp 127.0.0.1:%d exe=%s uid=0; deny tcp 127.0.0.1:%d exe=/usr/bin/; default deny", port, probeBin(t), port)
	r := nriguardRun(t, []string{"--egress", rules}, fmt.Sprintf("tcp:127.0.0.1:%d", port))
	if strings.Join(r.stdout, ",") != "ok" || r.code != 0 {
		t.Fatalf("the named program as root: %q exit %d (%q)", r.stdout, r.code, r.other)
	}
	r = nriguardRun(t, []string{"--user", "65534:65534", "--egress", rules}, fmt.Sprintf("tcp:127.0.0.1:%d", port), "sleep:300")
	if strings.Join(r.stdout, ",") != "EPERM,ok" || len(r.events) != 1 {
		t.Fatalf("the named program as nobody: %q, events %v", r.stdout, r.events)
	}
	if ev := r.events[0]; ev["rule"] != "default deny" || ev["uid"] != float64(65534) || ev["exe"] != probeBin(t) {
		t.Errorf("event %v: want the default's refusal of uid 65534 running %s", ev, probeBin(t))
	}
	assertNothingLeft(t)
}

func TestRunAuditAndUser(t *testing.T) {
	r := nriguardRun(t, []string{"--mode", "audit", "--user", "65534:65534", "--egress", "allow udp 127.0.0.1:53"},
		fmt.Sprintf("tcp:127.0.0.1:%d", freePort(t)))
	if r.code != 0 || len(r.stdout) != 1 || r.stdout[0] != "ok" {
		t.Fatalf("audit mode must let the connect through: %q exit %d %q", r.stdout, r.code, r.other)
	}
	if len(r.events) != 1 || r.events[0]["verdict"] != "would-deny" || r.events[0]["uid"] != float64(65534) {
		t.Fatalf("want one would-deny event from uid 65534, got %v", r.events)
	}
	assertNothingLeft(t)
}

func TestRunExitStatusAndCleanup(t *testing.T) {
	// Exit status passes through; a background process left behind is ended.
	cmd := exec.Command(bin(t), "run", "--egress", "deny any 169.254.169.254", "--", "sh", "-c", "sleep 300 & exit 7")
	start := time.Now()
	r := runCmd(t, cmd)
	if r.code != 7 {
		t.Errorf("exit %d, want 7 (stderr %q)", r.code, r.other)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v: the background sleep was not ended", d)
	}
	r = runCmd(t, exec.Command(bin(t), "run", "--egress", "deny any 169.254.169.254", "--", "sh", "-c", "kill -9 $$"))
	if r.code != 128+9 {
		t.Errorf("killed by SIGKILL: exit %d, want 137", r.code)
	}
	assertNothingLeft(t)
}

func TestRunRejectsBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--egress", "allow tcp 10.0.0.0/8:443; allow tcp 10.0.0/33", "--", "true"},
			`nriguard run: --egress: rule 2 "allow tcp 10.0.0/33": invalid prefix length 33 (0-32)`},
		{[]string{"--egress", "allow tcp 10.0.0.0/8", "--mode", "log", "--", "true"},
			`nriguard run: --mode: invalid mode "log": expected enforce or audit`},
		{[]string{"--egress", "allow tcp 10.0.0.0/8", "--user", "no-such-user", "--", "true"},
			`nriguard run: --user: no user "no-such-user": expected a user name, UID or UID:GID`},
		{[]string{"--egress", "allow tcp 10.0.0.0/8"},
			`nriguard run: expected a command after the options`},
	} {
		r := runCmd(t, exec.Command(bin(t), append([]string{"run"}, c.args...)...))
		if r.code != 2 || len(r.other) == 0 || !strings.HasPrefix(r.other[0], c.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and %q", c.args, r.code, r.other, c.want)
		}
	}
	assertNothingLeft(t)
}

// A program on tmpfs cannot be bound to its content on the SIGKILL backend
// (a write through a shared mapping changes no time of the file: the exec
// hook would take new bytes for the allowed program), nor one on an
// overlay for a command on the host (it can reach the layers): the policy
// is refused, saying why. With BPF LSM the write guard refuses such writes,
// and only the overlay is refused (make vmtest runs the guard).
func TestRunRefusesProgramsItCannotBind(t *testing.T) {
	testenv.NeedRoot(t)
	shm, err := os.MkdirTemp("/dev/shm", "nriguard-run")
	if err != nil {
		t.Skipf("needs /dev/shm (tmpfs): %v", err)
	}
	defer os.RemoveAll(shm)
	tool := filepath.Join(shm, "tool")
	data, err := os.ReadFile(probeBin(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tool, data, 0o755); err != nil {
		t.Fatal(err)
	}
	be, err := bpf.ExecBackend()
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--exec", "allow " + tool}, {"--egress", "allow tcp 127.0.0.1:9 exe=" + tool}} {
		r := runCmd(t, exec.Command(bin(t), append(append([]string{"run"}, args...), "--", "true")...))
		if be == bpf.BackendLSM && args[0] == "--exec" {
			if strings.Contains(strings.Join(r.other, "\n"), "memory filesystem") {
				t.Errorf("%q with BPF LSM (the write guard): refused: %q", args, r.other)
			}
			continue
		}
		if r.code != 2 || !strings.Contains(strings.Join(r.other, "\n"), "is on a memory filesystem (tmpfs)") ||
			!strings.Contains(strings.Join(r.other, "\n"), "rule 1") {
			t.Errorf("%q on the %s backend: exit %d, stderr %q; want exit 2 naming the rule and tmpfs", args, be, r.code, r.other)
		}
	}
	assertNothingLeft(t)
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// assertNothingLeft: no run-* pins and no run-* cgroups but those there
// before the tests began.
func assertNothingLeft(t *testing.T) {
	t.Helper()
	for l := range leftovers() {
		if !before[l] {
			t.Errorf("left behind: %s", l)
		}
	}
}

// nriguard killed outright leaves its pins enforcing; a new process detaches
// them knowing only the id.
func TestRunKilledThenDetach(t *testing.T) {
	port := freePort(t)
	cmd := exec.Command(bin(t), "run", "--egress", "allow udp 127.0.0.1:53", "--", "sleep", "300")
	// (a file, not a pipe: the command, left running, holds it open)
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("run-%d", cmd.Process.Pid)
	root, _ := cgroup.Root()
	cg := filepath.Join(root, "nriguard", id)
	defer cgroup.Remove(cg)
	pins := filepath.Join(bpf.DefaultPinRoot, id)
	for i := 0; ; i++ {
		if _, err := os.Stat(filepath.Join(pins, "meta")); err == nil {
			break
		}
		if i > 3000 { // 30 s: a cold machine's first load of the programs is slow
			cmd.Process.Kill()
			cmd.Wait()
			out, _ := os.ReadFile(stderr.Name())
			t.Fatalf("nriguard run never pinned its attachment; it printed %q", out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	probe := fmt.Sprintf("tcp:127.0.0.1:%d", port)
	if got := testenv.Probe(t, "", cg, "", probe); got[0] != "EPERM" {
		t.Fatalf("with nriguard gone the pins must keep enforcing: got %q", got)
	}
	if r := runCmd(t, exec.Command(bin(t), "detach", id)); r.code != 0 {
		t.Fatalf("nriguard detach: exit %d %q", r.code, r.other)
	}
	if _, err := os.Stat(pins); !os.IsNotExist(err) {
		t.Errorf("pins still there after detach: %v", err)
	}
	if got := testenv.Probe(t, "", cg, "", probe); got[0] != "ok" {
		t.Errorf("after detach: got %q, want ok", got)
	}
}

func TestRunExec(t *testing.T) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatalf("busybox (static) is needed: %v", err)
	}
	dir := t.TempDir()
	for _, p := range []string{"a/sh", "a/echo", "b/echo"} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
		data, _ := os.ReadFile(bb)
		if err := os.WriteFile(filepath.Join(dir, p), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script := fmt.Sprintf("%s/a/echo allowed; %s/b/echo nope; echo status $?", dir, dir)
	r := runCmd(t, exec.Command(bin(t), "run", "--exec", "allow "+dir+"/a/", "--", dir+"/a/sh", "-c", script))
	if strings.Join(r.stdout, ",") != "allowed,status 137" || r.code != 0 {
		t.Errorf("got %q exit %d (stderr %q): want the copy outside the allowed directory killed", r.stdout, r.code, r.other)
	}
	if len(r.events) != 1 || r.events[0]["kind"] != "exec" || r.events[0]["filename"] != dir+"/b/echo" {
		t.Errorf("want one exec event for %s/b/echo, got %v", dir, r.events)
	}
	// The command itself is judged: a denied command never runs.
	r = runCmd(t, exec.Command(bin(t), "run", "--exec", "allow "+dir+"/a/", "--", dir+"/b/echo", "hello"))
	if len(r.stdout) != 0 || r.code != 137 {
		t.Errorf("denied command: stdout %q exit %d, want nothing and 137", r.stdout, r.code)
	}
	assertNothingLeft(t)
}

// Every refusal ends up printed or counted lost: the reader is stopped while
// 100,000 sends are refused (the ring holds about 10,900), then the command
// exits and nriguard run drains the ring and reports the losses.
func TestRunPrintsOrCountsEveryRefusal(t *testing.T) {
	const n = 100000
	r := nriguardRun(t, []string{"--egress", "deny udp 127.0.0.1:9"}, fmt.Sprintf("flood:%d:127.0.0.1:9", n))
	if r.code != 0 || len(r.stdout) != 1 || r.stdout[0] != fmt.Sprintf("refused %d of %d", n, n) {
		t.Fatalf("probe: %q exit %d (stderr %q)", r.stdout, r.code, r.other)
	}
	printed, lost := 0, 0
	for _, ev := range r.events {
		switch ev["kind"] {
		case "sendmsg":
			printed++
		case "lost":
			if ev["lost_kind"] != "egress" {
				t.Errorf("lost record of kind %v", ev["lost_kind"])
			}
			lost += int(ev["count"].(float64))
		default:
			t.Errorf("unexpected record %v", ev)
		}
	}
	if printed+lost != n || lost == 0 {
		t.Errorf("printed %d, counted %d lost: %d in all, want %d with some lost", printed, lost, printed+lost, n)
	}
	t.Logf("printed %d, lost %d", printed, lost)
	assertNothingLeft(t)
}

// A reader of the events that goes away (a pipe into head) does not make
// nriguard run die before it cleans up.
func TestRunSurvivesAClosedStderr(t *testing.T) {
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	rd.Close()
	cmd := exec.Command(bin(t), "run", "--egress", "allow udp 127.0.0.1:53", "--", probeBin(t), fmt.Sprintf("tcp:127.0.0.1:%d", freePort(t)))
	cmd.Env = append(os.Environ(), "NRIGUARD_TEST_PROBE=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, wr
	err = cmd.Run()
	wr.Close()
	if err != nil || strings.TrimSpace(out.String()) != "EPERM" {
		t.Errorf("with stderr closed: %v, stdout %q; want exit 0 and EPERM", err, out.String())
	}
	assertNothingLeft(t)
}

// Under an egress policy nriguard run's command may make only TCP and UDP
// sockets over IPv4 and IPv6, unix and netlink ones, by any call: the
// families the cgroup hooks never see are refused (AF_PACKET, AF_VSOCK,
// AF_XDP...), and the types the kernel turns into them (AF_INET with
// SOCK_PACKET), and so is io_uring, whose socket operation seccomp cannot
// see.
func TestRunSocketFamilies(t *testing.T) {
	ops := []string{"socket:tcp", "socket:udp6", "socket:unix", "socket:netlink", "socketpair:unix",
		"socket:packet", "socket:packetdgram", "socket:vsock", "socket:xdp", "socket:alg", "socket:tipc", "socket:can",
		"iouring:setup", "iouring:socket:packet", "socket:sockpacket", "socket:sockpacket6", "socket:raw4"}
	want := "ok ok ok ok ok EPERM EPERM EPERM EPERM EPERM EPERM EPERM EPERM EPERM EPERM EPERM EPERM"
	// the premise: without nriguard, as root, these are not all refused
	base := testenv.Probe(t, "", testenv.Cgroup(t), "", ops...)
	t.Logf("without a policy: %s", strings.Join(base, " "))
	r := nriguardRun(t, []string{"--egress", "allow tcp 10.0.0.0/8"}, ops...)
	if got := strings.Join(r.stdout, " "); got != want || r.code != 0 {
		t.Errorf("got  %s (exit %d, %q)\nwant %s", got, r.code, r.other, want)
	}
	// exec rules alone do not restrict sockets
	r = nriguardRun(t, []string{"--exec", "allow " + probeBin(t)}, "socket:vsock", "iouring:setup")
	if got := strings.Join(r.stdout, " "); got != strings.Join(base[7:8], " ")+" "+base[12] {
		t.Errorf("exec rules only: %s, want as without a policy: %s %s", got, base[7], base[12])
	}
	assertNothingLeft(t)
}

// What the command leaves running is killed before the last events are
// read: every refusal it made is printed or counted lost.
func TestRunAccountsForLeftovers(t *testing.T) {
	count := filepath.Join(t.TempDir(), "refused")
	r := nriguardRun(t, []string{"--visibility", "off", "--egress", "allow tcp 10.0.0.0/8"},
		"bg:sendloop:"+count+":127.0.0.1:9", "sleep:300")
	if r.code != 0 {
		t.Fatalf("exit %d: %q", r.code, r.other)
	}
	data, err := os.ReadFile(count)
	if err != nil {
		t.Fatalf("the leftover never refused a send: %v", err)
	}
	made, _ := strconv.Atoi(string(data))
	reported := 0
	for _, ev := range r.events {
		switch {
		case ev["kind"] == "sendmsg" && ev["verdict"] == "denied":
			reported++
		case ev["kind"] == "lost":
			reported += int(ev["count"].(float64))
		}
	}
	// (the last refusal may be killed before it is written down)
	if made == 0 || reported != made && reported != made+1 {
		t.Errorf("the leftover made %d refused sends; nriguard run reported %d (printed or lost)", made, reported)
	}
	assertNothingLeft(t)
}

// A policy larger than one argument may be (128 KiB) comes from a file or
// standard input; its errors name the file and the line.
func TestRunRulesFromAFile(t *testing.T) {
	allowed, denied := freePort(t), freePort(t)
	var b strings.Builder
	b.WriteString("# 20,000 networks and the probe's port\n")
	for i := range 20000 {
		fmt.Fprintf(&b, "allow tcp 10.%d.%d.0/24:443\n", i/256, i%256)
	}
	fmt.Fprintf(&b, "allow tcp 127.0.0.1:%d\n", allowed)
	if b.Len() <= 128<<10 {
		t.Fatalf("the policy is %d bytes: too small to need a file", b.Len())
	}
	file := filepath.Join(t.TempDir(), "egress.rules")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ops := []string{fmt.Sprintf("tcp:127.0.0.1:%d", allowed), fmt.Sprintf("tcp:127.0.0.1:%d", denied)}
	r := nriguardRun(t, []string{"--egress-file", file}, ops...)
	if strings.Join(r.stdout, ",") != "ok,EPERM" || r.code != 0 {
		t.Errorf("from a file: got %q exit %d (stderr %q), want ok, EPERM", r.stdout, r.code, r.other)
	}
	cmd := exec.Command(bin(t), append([]string{"run", "--egress-file", "-", "--", probeBin(t)}, ops...)...)
	cmd.Env = append(os.Environ(), "NRIGUARD_TEST_PROBE=1")
	cmd.Stdin = strings.NewReader(b.String())
	if r := runCmd(t, cmd); strings.Join(r.stdout, ",") != "ok,EPERM" || r.code != 0 {
		t.Errorf("from standard input: got %q exit %d (stderr %q), want ok, EPERM", r.stdout, r.code, r.other)
	}
	bad := filepath.Join(t.TempDir(), "bad.rules")
	os.WriteFile(bad, []byte("allow tcp 10.0.0.0/8:443\n# a comment\nallow tcp 10.0.0/33\n"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--egress-file", bad}, "nriguard run: " + bad + `:3: rule 2 "allow tcp 10.0.0/33": invalid prefix length 33 (0-32)`},
		{[]string{"--egress-file", bad, "--egress", "allow tcp 10.0.0.0/8"}, "nriguard run: --egress and --egress-file both given: give one"},
		{[]string{"--exec-file", filepath.Join(t.TempDir(), "none")}, "nriguard run: --exec-file: read rules: open "},
	} {
		r := runCmd(t, exec.Command(bin(t), append(append([]string{"run"}, c.args...), "--", "true")...))
		if r.code != 2 || len(r.other) == 0 || !strings.HasPrefix(r.other[0], c.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and %q", c.args, r.code, r.other, c.want)
		}
	}
	assertNothingLeft(t)
}

// By default nriguard run shows what the command reaches and runs: each new
// flow (with its program) and its counts, each exec; --visibility off
// prints refusals only.
func TestRunVisibility(t *testing.T) {
	port := freePort(t)
	r := nriguardRun(t, []string{"--egress", "allow udp 127.0.0.1:9; allow tcp 127.0.0.1:" + fmt.Sprint(port)},
		"sendn:500:127.0.0.1:9", fmt.Sprintf("tcp:127.0.0.1:%d", port), "sleep:300")
	if r.code != 0 || strings.Join(r.stdout, ",") != "ok,ok,ok" {
		t.Fatalf("probe: %q exit %d (stderr %q)", r.stdout, r.code, r.other)
	}
	var execs, udpNew int
	var packets float64
	for _, ev := range r.seen {
		switch {
		case ev["kind"] == "exec":
			execs++
		case ev["kind"] == "flow" && ev["proto"] == "udp" && ev["phase"] == "new":
			udpNew++
			if ev["exe"] != probeBin(t) || ev["port"] != float64(9) {
				t.Errorf("new flow record: %v", ev)
			}
		case ev["kind"] == "flow" && ev["proto"] == "udp":
			packets += ev["packets"].(float64)
		}
	}
	if execs != 1 || udpNew != 1 || packets != 500 || len(r.events) != 0 {
		t.Errorf("execs %d (want 1: the probe), new udp flows %d (want 1), packets %v (want 500), refusals %v; records %v", execs, udpNew, packets, r.events, r.seen)
	}
	r = nriguardRun(t, []string{"--visibility", "off", "--egress", "allow udp 127.0.0.1:9"}, "sendn:5:127.0.0.1:9")
	if r.code != 0 || len(r.seen) != 0 {
		t.Errorf("--visibility off: exit %d, printed %v", r.code, r.seen)
	}
	r = nriguardRun(t, []string{"--visibility", "some", "--egress", "allow udp 127.0.0.1:9"}, "sendn:5:127.0.0.1:9")
	if r.code != 2 || !strings.Contains(strings.Join(r.other, "\n"), `--visibility: invalid visibility "some": expected off, flows, execs or both`) {
		t.Errorf("bad --visibility: exit %d, %q", r.code, r.other)
	}
}

// Rules by DNS name through nriguard run: the address a lookup's answer
// gives is allowed at once, another is not, and the flow record names the
// name. The DNS server is this test, on the host's loopback.
func TestRunDNSNames(t *testing.T) {
	testenv.NeedRoot(t)
	pc, err := net.ListenPacket("udp", "127.0.0.53:53")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 512)
		for {
			n, peer, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var q dnsmessage.Message
			if q.Unpack(buf[:n]) != nil || len(q.Questions) != 1 {
				continue
			}
			a := dnsmessage.Message{Header: dnsmessage.Header{ID: q.ID, Response: true}, Questions: q.Questions,
				Answers: []dnsmessage.Resource{{Header: dnsmessage.ResourceHeader{Name: q.Questions[0].Name, Class: dnsmessage.ClassINET, TTL: 60},
					Body: &dnsmessage.AResource{A: [4]byte{198, 51, 100, 44}}}}} // (never a loopback address)
			if msg, err := a.Pack(); err == nil {
				pc.WriteTo(msg, peer)
			}
		}
	}()
	port := freePort(t)
	r := nriguardRun(t, []string{"--egress", fmt.Sprintf("allow udp 127.0.0.53:53; allow tcp *.run.test:%d", port)},
		fmt.Sprintf("connect:198.51.100.44:%d", port), fmt.Sprintf("resolve:127.0.0.53,api.run.test,a,%d", port),
		fmt.Sprintf("connect:198.51.100.45:%d", port), "sleep:300")
	// allowed: the connect is under way, or the host's network answers it
	// (unreachable, or refused where a closed network resets every
	// connection), but not EPERM
	if len(r.stdout) != 4 || r.stdout[0] != "EPERM" || !slices.Contains([]string{"ok", "ENETUNREACH", "EHOSTUNREACH", "ECONNREFUSED", "ETIMEDOUT"}, r.stdout[1]) ||
		r.stdout[2] != "EPERM" || r.stdout[3] != "ok" || r.code != 0 {
		t.Fatalf("got %q exit %d (stderr %q), want EPERM, ok (or unreachable, refused), EPERM, ok", r.stdout, r.code, r.other)
	}
	named := false
	for _, ev := range r.seen {
		if ev["kind"] == "flow" && ev["phase"] == "new" && ev["dest"] == "198.51.100.44" {
			named = ev["dns_name"] == "*.run.test" && ev["rule"] == fmt.Sprintf("allow tcp *.run.test:%d", port)
			if !named {
				t.Errorf("the flow to the learned address: %v, want dns_name *.run.test and its rule", ev)
			}
		}
	}
	if !named {
		t.Errorf("no flow record for the connect to the learned address: %v", r.seen)
	}
	assertNothingLeft(t)
}
