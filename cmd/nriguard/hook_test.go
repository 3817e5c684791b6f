package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/internal/testenv"
	"github.com/nriguard/nriguard/policy"
	"github.com/nriguard/nriguard/seccomp"
)

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Split(strings.TrimSpace(l.b.String()), "\n")
}

// wait waits until n lines contain s.
func (l *lockedBuffer) wait(t *testing.T, s string, n int) {
	t.Helper()
	for i := 0; i < 500; i++ {
		c := 0
		for _, line := range l.lines() {
			if strings.Contains(line, s) {
				c++
			}
		}
		if c >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %d lines with %s in %q", n, s, l.lines())
}

func hook(t *testing.T, root, stage, state string) runResult {
	t.Helper()
	cmd := exec.Command(bin(t), "hook", "--config", "/dev/null", "--pin-root", root, stage)
	cmd.Stdin = strings.NewReader(state)
	return runCmd(t, cmd)
}

// A refused hook call makes nothing; the shared ring the hook's attachments
// report to goes away with the last of them.
func TestHookLeavesNothing(t *testing.T) {
	root := fmt.Sprintf("/sys/fs/bpf/nriguard-hooktest-%d", os.Getpid())
	t.Cleanup(func() { os.RemoveAll(root) })
	if r := hook(t, root, "createRuntime", "{}"); r.code != 1 || !strings.Contains(strings.Join(r.other, " "), "the container state has no id") {
		t.Errorf("empty state: exit %d %q", r.code, r.other)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("a refused call left %s behind: %v", root, err)
	}

	// A container: a cgroup with its init process, a bundle with annotations.
	cg := testenv.Cgroup(t)
	f, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	init := exec.Command("sleep", "60")
	init.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	if err := init.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { init.Process.Kill(); init.Wait() }()
	bundle := t.TempDir()
	spec := `{"ociVersion":"1.2.0","root":{"path":"/"},"annotations":{"egress.nriguard.io":"allow tcp 10.0.0.0/8:443"}}`
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	state, _ := json.Marshal(map[string]any{"ociVersion": "1.2.0", "id": "hooked", "status": "creating", "pid": init.Process.Pid, "bundle": bundle})
	// Unconfined: it could make sockets the hooks never see; too late to
	// change its seccomp policy, so it is refused, saying why.
	if r := hook(t, root, "createRuntime", string(state)); r.code != 1 || !strings.Contains(strings.Join(r.other, " "), "AF_VSOCK 40") {
		t.Errorf("unconfined egress container: exit %d %q, want refused naming AF_VSOCK", r.code, r.other)
	}
	if left, _ := os.ReadDir(root); len(left) != 0 {
		t.Errorf("a refused container left %v", left)
	}
	sc, _ := json.Marshal(seccomp.Restrict(nil))
	spec = `{"ociVersion":"1.2.0","root":{"path":"/"},"linux":{"seccomp":` + string(sc) + `},"annotations":{"egress.nriguard.io":"allow tcp 10.0.0.0/8:443"}}`
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := hook(t, root, "createRuntime", string(state)); r.code != 0 {
		t.Fatalf("createRuntime: exit %d %q", r.code, r.other)
	}
	for _, p := range []string{filepath.Join(root, "hooked/meta"), filepath.Join(bpf.EventsDir(root), "ring")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("after createRuntime: %v", err)
		}
	}
	if r := hook(t, root, "poststop", string(state)); r.code != 0 {
		t.Fatalf("poststop: exit %d %q", r.code, r.other)
	}
	if left, _ := os.ReadDir(root); len(left) != 0 {
		t.Errorf("after the last container's poststop, %s holds %v", root, left)
	}
}

// nriguard events reads the hooks' shared ring as one stream: a record it
// cannot decode does not end it, and when the ring goes with the last
// attachment and the next one makes another, it follows.
func TestEventsFollowsTheSharedRing(t *testing.T) {
	root := fmt.Sprintf("/sys/fs/bpf/nriguard-eventstest-%d", os.Getpid())
	t.Cleanup(func() { os.RemoveAll(root) })
	cg := testenv.Cgroup(t)
	attach := func(id string) *bpf.Attachment {
		e, _ := policy.ParseEgress("egress.nriguard.io", "allow tcp 10.1.2.3:8080")
		a, err := bpf.Attach(bpf.Spec{ID: id, Cgroup: cg, Egress: policy.Compile(policy.Enforce, e), Owner: bpf.OwnerHook},
			&bpf.Options{PinRoot: root, SharedEvents: true})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := attach("first")
	var out lockedBuffer
	cmd := exec.Command(bin(t), "events", "--pin-root", root)
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	testenv.WriteRingRecord(t, a.Events.Ring, []byte("garbage!"))
	deny := func() {
		if got := testenv.Probe(t, testenv.NetNS(t), cg, "", "tcp:10.1.2.3:8081"); got[0] != "EPERM" {
			t.Fatalf("denied connect: %q", got)
		}
	}
	deny()
	out.wait(t, `"kind":"connect"`, 1)
	if lines := out.lines(); !strings.Contains(lines[0], `"kind":"decode_error"`) || !strings.Contains(lines[1], `"container_id":"first"`) {
		t.Errorf("got %q, want a decode error, then the denial of first", lines)
	}
	a.Close()
	if err := bpf.Detach(root, "first"); err != nil {
		t.Fatal(err)
	}
	if removed, err := bpf.RemoveSharedEvents(root); !removed || err != nil {
		t.Fatalf("the last attachment is gone, the ring stays: %v %v", removed, err)
	}
	b := attach("second")
	defer b.Detach()
	deny()
	out.wait(t, `"container_id":"second"`, 1)
}
