// Package testenv gives tests real kernel objects to work with: a network
// namespace with addresses of its own, cgroup v2 directories, and a way to
// run the socket probe as a process born inside a cgroup.
package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/nriguard/nriguard/cgroup"
	"github.com/nriguard/nriguard/internal/probe"
)

const probeEnv = "NRIGUARD_TEST_PROBE"

// Addresses on the test namespace's loopback: probes can listen on and
// connect to them. Nothing else is routed there, so connects to other
// addresses fail fast with ENETUNREACH unless a policy refuses them first.
var Addresses = []string{"10.1.2.3/32", "10.1.9.9/32", "192.0.2.1/32", "2001:db8::1/128", "2001:db8:1::1/128"}

// Main is called from a test package's TestMain: in a probe child it runs
// the probe and exits; otherwise it runs the tests, removes the network
// namespace if a test made one, and returns the tests' exit code.
func Main(m *testing.M) int {
	if os.Getenv(probeEnv) != "" {
		if len(os.Args) > 1 && os.Args[1] == probe.ExecveatArg {
			os.Exit(probe.Execveat())
		}
		probe.Run(os.Args[1:], os.Stdin, os.Stdout)
		os.Exit(0)
	}
	if os.Geteuid() != 0 {
		return m.Run() // the tests that need root skip themselves (NeedRoot)
	}
	_, err := os.Stat("/run/nriguard")
	hadRun := err == nil
	_, err = os.Stat("/sys/fs/bpf/nriguard")
	hadPins := err == nil
	defer func() {
		if netnsName != "" {
			exec.Command("ip", "netns", "del", netnsName).Run()
		}
		removeBuilt()
		if !hadRun {
			os.RemoveAll("/run/nriguard") // the host lock the tests made
		}
		if !hadPins {
			os.Remove("/sys/fs/bpf/nriguard") // the pin root nriguard run made, if empty
		}
	}()
	return m.Run()
}

// NeedRoot skips a test that cannot run without root, saying why in one
// line. Every helper here that makes kernel objects calls it.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads BPF programs, makes cgroups and network namespaces")
	}
}

// IsProbe tells whether this process is a probe child.
func IsProbe() bool { return os.Getenv(probeEnv) != "" }

var (
	netnsOnce sync.Once
	netnsName string
	netnsErr  error
)

// NetNS returns the tests' network namespace, made on first use: loopback
// up with Addresses on it, ping sockets and TCP fast open enabled.
func NetNS(t testing.TB) string {
	t.Helper()
	NeedRoot(t)
	netnsOnce.Do(func() {
		name := fmt.Sprintf("ngtest%d", os.Getpid())
		if netnsErr = makeNetNS(name); netnsErr != nil {
			exec.Command("ip", "netns", "del", name).Run()
			return
		}
		netnsName = name
	})
	if netnsErr != nil {
		t.Fatalf("test network namespace: %v", netnsErr)
	}
	return netnsName
}

func makeNetNS(name string) error {
	cmds := [][]string{
		{"ip", "netns", "add", name},
		{"ip", "-n", name, "link", "set", "lo", "up"},
		// ping sockets are off by default; TCP fast open for client and server
		{"ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647", "net.ipv4.tcp_fastopen=3"},
		// the rerouting attacks' premise: without a policy their packets
		// reach the final hop. By default a source route and a segment
		// routing header are refused on receipt, and the next hop's lookup
		// refuses a local source on lo (accept_local): that proves nothing.
		{"ip", "netns", "exec", name, "sysctl", "-qw",
			"net.ipv4.conf.all.accept_source_route=1", "net.ipv4.conf.lo.accept_source_route=1",
			"net.ipv4.conf.all.accept_local=1", "net.ipv4.conf.lo.accept_local=1",
			"net.ipv6.conf.all.seg6_enabled=1", "net.ipv6.conf.lo.seg6_enabled=1"},
	}
	for _, a := range Addresses {
		cmds = append(cmds, []string{"ip", "-n", name, "addr", "add", a, "dev", "lo"})
	}
	for _, c := range cmds {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(c, " "), err, out)
		}
	}
	return nil
}

var cgroupSeq atomic.Int64

// Cgroup makes a fresh cgroup v2 directory, removed (with anything still in
// it) when the test ends.
func Cgroup(t testing.TB) string {
	t.Helper()
	NeedRoot(t)
	root, err := cgroup.Root()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "nriguard-test", fmt.Sprintf("%s-%d-%d", sanitize(t.Name()), os.Getpid(), cgroupSeq.Add(1)))
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cgroup.Remove(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		os.Remove(filepath.Dir(dir)) // the shared parent, once empty
	})
	return dir
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' || r == '.' {
			return '_'
		}
		return r
	}, s)
}

// Probe runs the probe with ops in network namespace ns, as a process born
// in cgroup dir (clone3 CLONE_INTO_CGROUP: it runs no instruction outside),
// and returns its result lines.
func Probe(t testing.TB, ns, dir, stdin string, ops ...string) []string {
	t.Helper()
	return ProbeWith(t, os.Args[0], ns, dir, stdin, ops...)
}

// ProbeWith is Probe run from another copy of the test binary, bin: another
// program, as the kernel sees it.
func ProbeWith(t testing.TB, bin, ns, dir, stdin string, ops ...string) []string {
	t.Helper()
	NeedRoot(t)
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// ns "" runs in the host's network namespace (and sees its /sys).
	cmd := exec.Command(bin, ops...)
	if ns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", ns, bin}, ops...)...)
	}
	cmd.Env = append(os.Environ(), probeEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("probe %v: %v: %s", ops, err, errb.String())
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if out.Len() == 0 {
		lines = nil
	}
	return lines
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Nriguard builds the nriguard binary once per test process and returns its
// path, for tests that must run (and kill) the real thing.
func Nriguard(t testing.TB) string {
	t.Helper()
	NeedRoot(t)
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "nriguard-bin")
		if err != nil {
			buildErr = err
			return
		}
		os.Chmod(dir, 0o755)
		buildPath = filepath.Join(dir, "nriguard")
		cmd := exec.Command("go", "build", "-o", buildPath, "github.com/nriguard/nriguard/cmd/nriguard")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// removeBuilt removes what Nriguard built.
func removeBuilt() {
	if buildPath != "" {
		os.RemoveAll(filepath.Dir(buildPath))
	}
}

// EmulatedEnv is set (to 1) by make vmtest's VM init: the CPU is emulated
// (qemu TCG), tens of times slower than the host's.
const EmulatedEnv = "NRIGUARD_EMULATED"

// Emulated tells whether the tests run on an emulated CPU (EmulatedEnv).
func Emulated() bool { return os.Getenv(EmulatedEnv) == "1" }

// Count is how many times a test repeats a check: full, or under an
// emulated CPU the smaller emulated, which it says in the test's log. The
// check itself is the same; only the number of rounds changes.
func Count(t testing.TB, full, emulated int) int {
	t.Helper()
	if !Emulated() || emulated >= full {
		return full
	}
	t.Logf("emulated CPU (%s=1): %d rounds instead of %d", EmulatedEnv, emulated, full)
	return emulated
}
