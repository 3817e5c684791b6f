package plugin_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	"github.com/sirupsen/logrus"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/engine"
	"github.com/nriguard/nriguard/internal/testenv"
	"github.com/nriguard/nriguard/plugin"
	"github.com/nriguard/nriguard/policy"
)

func compileRules(t testing.TB, rules string) *policy.Compiled {
	e, err := policy.ParseEgress("egress.nriguard.io", rules)
	must(t, err)
	return policy.Compile(policy.Enforce, e)
}

func TestMain(m *testing.M) {
	logrus.SetLevel(logrus.WarnLevel) // the in-process runtime side's chatter
	os.Exit(testenv.Main(m))
}

// runtime is NRI's own runtime side, in-process, on a real socket, with the
// containers it would report in Synchronize.
type runtime struct {
	t      testing.TB
	r      *adaptation.Adaptation
	sock   string
	synced chan struct{}

	mu   sync.Mutex
	pods map[string]*api.PodSandbox
	ctrs map[string]*api.Container

	syncFn   adaptation.SyncFn
	updateFn adaptation.UpdateFn
	dir      string
	conns    []net.Conn
	stops    []func() // the in-process plugins started on it
}

func newRuntime(t testing.TB) *runtime {
	t.Helper()
	testenv.NeedRoot(t)
	dir, err := os.MkdirTemp("", "nri") // short: unix socket paths are limited
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	rt := &runtime{t: t, sock: filepath.Join(dir, "nri.sock"), synced: make(chan struct{}, 16),
		pods: map[string]*api.PodSandbox{}, ctrs: map[string]*api.Container{}}
	sync := func(ctx context.Context, cb adaptation.SyncCB) error {
		rt.mu.Lock()
		var pods []*api.PodSandbox
		var ctrs []*api.Container
		for _, p := range rt.pods {
			pods = append(pods, p)
		}
		for _, c := range rt.ctrs {
			ctrs = append(ctrs, c)
		}
		rt.mu.Unlock()
		_, err := cb(ctx, pods, ctrs)
		rt.synced <- struct{}{}
		return err
	}
	update := func(context.Context, []*adaptation.ContainerUpdate) ([]*adaptation.ContainerUpdate, error) {
		return nil, nil
	}
	rt.syncFn, rt.updateFn, rt.dir = sync, update, dir
	rt.boot()
	t.Cleanup(func() { rt.r.Stop() })
	return rt
}

// dial connects a plugin and remembers the connection, so that restart can
// cut it as a runtime that exits does.
func (rt *runtime) dial(path string) (net.Conn, error) {
	c, err := net.Dial("unix", path)
	if err == nil {
		rt.mu.Lock()
		rt.conns = append(rt.conns, c)
		rt.mu.Unlock()
	}
	return c, err
}

// restart stops the runtime side, cuts its plugin connections and starts it
// again on the same socket.
func (rt *runtime) restart() {
	rt.r.Stop()
	rt.mu.Lock()
	for _, c := range rt.conns {
		c.Close()
	}
	rt.conns = nil
	rt.mu.Unlock()
	rt.boot()
}

// boot starts (or, after Stop, restarts) the runtime side on the socket.
func (rt *runtime) boot() {
	var err error
	// as containerd 2.x: the plugin binary takes the start path
	rt.r, err = adaptation.New("containerd", "v2.99.0-nriguard-test", rt.syncFn, rt.updateFn, adaptation.WithSocketPath(rt.sock),
		adaptation.WithPluginPath(filepath.Join(rt.dir, "plugins")), adaptation.WithPluginConfigPath(filepath.Join(rt.dir, "conf.d")))
	must(rt.t, err)
	must(rt.t, rt.r.Start())
}

func (rt *runtime) waitSync() {
	rt.t.Helper()
	select {
	case <-rt.synced:
	case <-time.After(30 * time.Second): // a cold machine's first load of the programs is slow
		rt.t.Fatal("the plugin never synchronized")
	}
}

// startPlugin runs the plugin in-process against rt and waits until it has
// synchronized.
func startPlugin(t testing.TB, rt *runtime, root, config string) *engine.Engine {
	return startPluginLinger(t, rt, root, config, 0)
}

func startPluginLinger(t testing.TB, rt *runtime, root, config string, linger time.Duration) *engine.Engine {
	t.Helper()
	return startPluginOn(t, rt, root, config, linger, plugin.PathStart, plugin.Hook{})
}

// startPluginOn starts the plugin on a path (the test runtime's name says
// nothing of its NRI).
func startPluginOn(t testing.TB, rt *runtime, root, config string, linger time.Duration, path plugin.Path, hook plugin.Hook) *engine.Engine {
	t.Helper()
	cfg, err := engine.ParseConfig([]byte(config))
	must(t, err)
	eng, err := engine.New(cfg, engine.Options{PinRoot: root, Owner: bpf.OwnerNRI, Daemon: true, Linger: linger, Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		p := plugin.New(eng, nil, slog.New(slog.DiscardHandler))
		p.ForcePath(path)
		p.SetHook(hook)
		plugin.Run(ctx, p,
			stub.WithSocketPath(rt.sock), stub.WithPluginName("nriguard"), stub.WithPluginIdx("10"),
			stub.WithDialer(rt.dial))
		close(done)
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done; eng.Close() }) }
	t.Cleanup(stop)
	rt.stops = append(rt.stops, stop)
	rt.waitSync()
	rt.waitRegistered()
	return eng
}

// stopPlugins stops the in-process plugins started on rt, as a plugin
// that exits (its attachments stay pinned).
func (rt *runtime) stopPlugins() {
	for _, stop := range rt.stops {
		stop()
	}
	rt.stops = nil
}

// waitRegistered waits until requests reach the plugin: the runtime adds a
// plugin to those it calls only after synchronizing it. A container with an
// invalid label is refused only by nriguard.
func (rt *runtime) waitRegistered() {
	rt.t.Helper()
	bad := &api.Container{Id: "readiness", Name: "r", Annotations: map[string]string{"egress.nriguard.io": "allow"}}
	for i := 0; ; i++ {
		_, err := rt.r.CreateContainer(context.Background(), &adaptation.CreateContainerRequest{Pod: &api.PodSandbox{Id: "p"}, Container: bad})
		if err != nil {
			return
		}
		if i > 3000 {
			rt.t.Fatal("the plugin never started handling requests")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pinRoot(t testing.TB) string {
	testenv.NeedRoot(t)
	root := fmt.Sprintf("/sys/fs/bpf/nriguard-plugintest-%d", os.Getpid())
	t.Cleanup(func() {
		ids, _ := bpf.List(root)
		for _, id := range ids {
			bpf.Detach(root, id)
		}
		os.RemoveAll(root)
	})
	return root
}

// ctr is a container as the runtime has it: a real cgroup with a real init
// process that has not run "the container's program" yet.
type ctr struct {
	pod  *api.PodSandbox
	c    *api.Container
	cg   string
	init *exec.Cmd
}

func (rt *runtime) newContainer(name string, podAnn, ann map[string]string) *ctr {
	t := rt.t
	t.Helper()
	cg := testenv.Cgroup(t)
	f, err := os.Open(cg)
	must(t, err)
	defer f.Close()
	init := exec.Command("sleep", "3600")
	init.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	must(t, init.Start())
	t.Cleanup(func() { init.Process.Kill(); init.Wait() })
	settle(t, init.Process.Pid)
	b := make([]byte, 32)
	rand.Read(b)
	id := hex.EncodeToString(b)
	pod := &api.PodSandbox{Id: "pod-" + id[:8], Name: "pod-" + name, Namespace: "default", Uid: id[:8], Annotations: podAnn}
	return &ctr{pod: pod, cg: cg, init: init, c: &api.Container{Id: id, PodSandboxId: pod.Id, Name: name,
		Annotations: ann, Pid: uint32(init.Process.Pid), Linux: &api.LinuxContainer{CgroupsPath: strings.TrimPrefix(cg, "/sys/fs/cgroup/unified")}}}
}

// settle waits until a container's init process is asleep, its start-up
// (the dynamic loader, libc) done: as a runtime's init waits, blocked, for
// the start, and takes no CPU from the plugin meanwhile.
func settle(t testing.TB, pid int) {
	t.Helper()
	for range 5000 {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		must(t, err)
		// "pid (comm) S ...": past the exec (comm) and asleep
		if _, rest, ok := strings.Cut(string(stat), "(sleep) "); ok && strings.HasPrefix(rest, "S") {
			return
		}
		time.Sleep(200 * time.Microsecond)
	}
	t.Fatalf("init %d did not settle", pid)
}

func (rt *runtime) create(c *ctr) error {
	_, err := rt.r.CreateContainer(context.Background(), &adaptation.CreateContainerRequest{Pod: c.pod, Container: c.c})
	return err
}

func (rt *runtime) start(c *ctr) error {
	err := rt.r.StartContainer(context.Background(), &adaptation.StartContainerRequest{Pod: c.pod, Container: c.c})
	if err == nil {
		rt.mu.Lock()
		c.c.State = api.ContainerState_CONTAINER_RUNNING
		rt.pods[c.pod.Id], rt.ctrs[c.c.Id] = c.pod, c.c
		rt.mu.Unlock()
	}
	return err
}

func (rt *runtime) stopAndRemove(c *ctr) {
	rt.t.Helper()
	rt.exited(c)
	_, err := rt.r.StopContainer(context.Background(), &adaptation.StopContainerRequest{Pod: c.pod, Container: c.c})
	must(rt.t, err)
	must(rt.t, rt.r.RemoveContainer(context.Background(), &adaptation.RemoveContainerRequest{Pod: c.pod, Container: c.c}))
}

// exited: the container's processes are gone and the runtime knows it.
func (rt *runtime) exited(c *ctr) {
	c.init.Process.Kill()
	c.init.Wait()
	rt.mu.Lock()
	delete(rt.ctrs, c.c.Id)
	rt.mu.Unlock()
	c.c.State = api.ContainerState_CONTAINER_STOPPED
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func pinned(root, id string) bool {
	_, err := os.Stat(filepath.Join(root, id))
	return err == nil
}

func probe(t testing.TB, c *ctr, ops ...string) string {
	return strings.Join(testenv.Probe(t, testenv.NetNS(t), c.cg, "", ops...), " ")
}

func TestLifecycle(t *testing.T) {
	rt, root := newRuntime(t), pinRoot(t)
	startPlugin(t, rt, root, "")
	c := rt.newContainer("web", map[string]string{"egress.nriguard.io/container.web": "allow tcp 10.1.2.3:8080"}, nil)
	must(t, rt.create(c))
	if pinned(root, c.c.Id) {
		t.Fatal("attached at create: the cgroup does not exist yet in a real runtime")
	}
	must(t, rt.start(c))
	if !pinned(root, c.c.Id) || bpf.OwnerOf(root, c.c.Id) != bpf.OwnerNRI {
		t.Fatal("not attached at start")
	}
	if got := probe(t, c, "tcp:10.1.2.3:8080", "tcp:10.1.2.3:8081"); got != "ok EPERM" {
		t.Errorf("in the container: got %q, want the policy enforced", got)
	}
	rt.stopAndRemove(c)
	if pinned(root, c.c.Id) {
		t.Error("pins left after stop and remove")
	}
	// The same cgroup, with no policy left on it.
	if got := probe(t, c, "tcp:10.1.2.3:8081"); got != "ok" {
		t.Errorf("after stop: got %q, want ok", got)
	}
}

func TestInvalidLabelRefused(t *testing.T) {
	rt, root := newRuntime(t), pinRoot(t)
	startPlugin(t, rt, root, "")
	c := rt.newContainer("web", map[string]string{"egress.nriguard.io/container.web": "allow tcp 10.0.0.0/8:443; allow tcp 10.0.0/33"}, nil)
	err := rt.create(c)
	want := `egress.nriguard.io/container.web: rule 2 "allow tcp 10.0.0/33": invalid prefix length 33 (0-32)`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("create: got %v, want an error containing %s", err, want)
	}
	t.Logf("the runtime says: %v", err)
}

func TestUnlabelledLeftAlone(t *testing.T) {
	rt, root := newRuntime(t), pinRoot(t)
	startPlugin(t, rt, root, "")
	c := rt.newContainer("plain", map[string]string{"other.example.com/x": "1"}, nil)
	must(t, rt.create(c))
	must(t, rt.start(c))
	if ids, _ := bpf.List(root); len(ids) != 0 {
		t.Errorf("an unlabelled container got pins: %v", ids)
	}
}

// A ceiling from the node config applies under every label; a profile is
// one more layer.
func TestLayersThroughThePlugin(t *testing.T) {
	rt, root := newRuntime(t), pinRoot(t)
	startPlugin(t, rt, root, `
ceiling_egress: "deny tcp 10.1.9.9"
profiles:
  api:
    egress: "allow tcp 10.1.0.0/16"
`)
	c := rt.newContainer("app", map[string]string{"profile.nriguard.io": "api"},
		map[string]string{"egress.nriguard.io": "allow tcp 10.1.9.9:80; allow tcp 10.1.2.3:8080"})
	must(t, rt.create(c))
	must(t, rt.start(c))
	// label ∩ profile ∩ ceiling
	if got := probe(t, c, "tcp:10.1.2.3:8080", "tcp:10.1.2.3:8081", "tcp:10.1.9.9:80"); got != "ok EPERM EPERM" {
		t.Errorf("got %q, want ok EPERM EPERM", got)
	}
}

func TestExecThroughThePlugin(t *testing.T) {
	rt, root := newRuntime(t), pinRoot(t)
	startPlugin(t, rt, root, "")
	self, _ := os.Executable()
	bb, err := exec.LookPath("busybox")
	must(t, err)
	c := rt.newContainer("app", map[string]string{"exec.nriguard.io": "allow " + self}, nil)
	must(t, rt.create(c))
	must(t, rt.start(c))
	if got := strings.Join(testenv.Probe(t, "", c.cg, "", "exec:"+bb), " "); got != "denied" {
		t.Errorf("busybox in a container that may run only the probe: got %q, want denied", got)
	}
}

// The plugin keeps the host-wide exec program after the last container with
// exec rules stops, and removes it when none has come for ExecLinger.
func TestExecProgramLingers(t *testing.T) {
	rt, root := newRuntime(t), pinRoot(t)
	startPluginLinger(t, rt, root, "", 400*time.Millisecond)
	self, _ := os.Executable()
	execDir := bpf.ExecDir(root)
	c := rt.newContainer("app", map[string]string{"exec.nriguard.io": "allow " + self}, nil)
	must(t, rt.create(c))
	must(t, rt.start(c))
	rt.stopAndRemove(c)
	if _, err := os.Stat(execDir); err != nil {
		t.Fatalf("exec program gone as soon as its last container stopped: %v", err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		if _, err := os.Stat(execDir); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("exec program still pinned 3 s after its last container stopped (linger 400 ms)")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// 100 containers created and started at once, then stopped at once.
func TestConcurrentContainers(t *testing.T) {
	rt, root := newRuntime(t), pinRoot(t)
	startPlugin(t, rt, root, "")
	const n = 100
	ctrs := make([]*ctr, n)
	for i := range ctrs {
		ctrs[i] = rt.newContainer(fmt.Sprintf("c%d", i), map[string]string{"egress.nriguard.io": fmt.Sprintf("allow tcp 10.1.2.3:%d", 9000+i)}, nil)
	}
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, c := range ctrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := rt.create(c); err != nil {
				errs <- err
				return
			}
			if err := rt.start(c); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d containers created and started concurrently in %v", n, time.Since(t0))
	ids, _ := bpf.List(root)
	if len(ids) != n {
		t.Fatalf("%d attachments, want %d", len(ids), n)
	}
	for _, i := range []int{0, 57, 99} {
		want := "ok EPERM"
		if got := probe(t, ctrs[i], fmt.Sprintf("tcp:10.1.2.3:%d", 9000+i), fmt.Sprintf("tcp:10.1.2.3:%d", 9100+i)); got != want {
			t.Errorf("container %d: got %q, want %q", i, got, want)
		}
	}
	for _, c := range ctrs {
		wg.Add(1)
		go func() { defer wg.Done(); rt.stopAndRemove(c) }()
	}
	wg.Wait()
	if ids, _ := bpf.List(root); len(ids) != 0 {
		t.Errorf("%d attachments left after stopping all", len(ids))
	}
}

// The real binary, killed outright while containers run: their policies hold;
// started again, it reconciles: attaches what it missed, removes what is
// stale, leaves the rest.
func TestPluginKilledAndRestarted(t *testing.T) {
	rt, root := newRuntime(t), pinRoot(t)
	bin := testenv.Nriguard(t)
	logs := filepath.Join(t.TempDir(), "plugin.log")
	t.Cleanup(func() {
		if t.Failed() { // what the plugin said, when it did not do its part
			out, _ := os.ReadFile(logs)
			t.Logf("the plugin's output:\n%s", out)
		}
	})
	startBinary := func() *exec.Cmd {
		out, err := os.OpenFile(logs, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		must(t, err)
		defer out.Close()
		cmd := exec.Command(bin, "plugin", "--socket", rt.sock, "--pin-root", root, "--config", "/nonexistent", "--observe-socket", "")
		cmd.Stdout, cmd.Stderr = out, out
		must(t, cmd.Start())
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		rt.waitSync()
		rt.waitRegistered()
		return cmd
	}
	plug := startBinary()
	label := map[string]string{"egress.nriguard.io": "allow tcp 10.1.2.3:8080"}
	a, b, c := rt.newContainer("a", label, nil), rt.newContainer("b", label, nil), rt.newContainer("c", label, nil)
	for _, x := range []*ctr{a, b} {
		must(t, rt.create(x))
		must(t, rt.start(x))
	}
	plug.Process.Kill()
	plug.Wait()
	if got := probe(t, a, "tcp:10.1.2.3:8081"); got != "EPERM" {
		t.Errorf("with the plugin dead, container a: got %q, want EPERM", got)
	}
	// While it is down: b exits (its stop goes to no plugin), c starts (this
	// runtime has no required-plugin check, so it starts without a policy).
	rt.exited(b)
	must(t, rt.start(c))
	if pinned(root, c.c.Id) || !pinned(root, b.c.Id) {
		t.Fatal("test setup: c must be unattached and b stale before the restart")
	}
	startBinary()
	if !pinned(root, c.c.Id) {
		t.Error("restart did not attach the container that started while it was down")
	}
	if pinned(root, b.c.Id) {
		t.Error("restart did not remove the pins of the container that exited while it was down")
	}
	if got := probe(t, a, "tcp:10.1.2.3:8080", "tcp:10.1.2.3:8081") + " " + probe(t, c, "tcp:10.1.2.3:8081"); got != "ok EPERM EPERM" {
		t.Errorf("after restart: got %q, want ok EPERM EPERM", got)
	}
}

// A container's files are resolved once, at its start: a file the container
// rewrites after that stays refused, whatever restarts (the plugin, the
// runtime): a restarted plugin adopts the container from what was pinned
// for it and resolves nothing inside it again.
func TestRestartsKeepTheIdentities(t *testing.T) {
	rt, root := newRuntime(t), pinRoot(t)
	startPlugin(t, rt, root, "")
	self, _ := os.Executable()
	bb, err := exec.LookPath("busybox")
	must(t, err)
	tool := filepath.Join(t.TempDir(), "tool")
	data, err := os.ReadFile(bb)
	must(t, err)
	must(t, os.WriteFile(tool, data, 0o755))
	label := map[string]string{"exec.nriguard.io": "allow " + self + "; allow " + tool,
		"egress.nriguard.io": "allow tcp 10.1.2.3:8080 exe=" + tool}
	c := rt.newContainer("app", label, nil)
	must(t, rt.create(c))
	must(t, rt.start(c))
	run := func() string { return strings.Join(testenv.Probe(t, "", c.cg, "", "exec:"+tool+":busybox"), " ") }
	if got := run(); got != "exit 1" && got != "ran" {
		t.Fatalf("the allowed tool before it is changed: %q, want it to run", got)
	}
	must(t, os.WriteFile(tool, data, 0o755)) // rewritten in place: another program now
	if got := run(); got != "denied" {
		t.Fatalf("the rewritten tool: %q, want denied", got)
	}
	rt.stopPlugins()
	startPlugin(t, rt, root, "")
	if got := run(); got != "denied" {
		t.Errorf("after a plugin restart, the rewritten tool: %q, want denied (the restart resolved it again)", got)
	}
	rt.stopPlugins()
	rt.restart()
	startPlugin(t, rt, root, "")
	if got := run(); got != "denied" {
		t.Errorf("after a runtime and plugin restart, the rewritten tool: %q, want denied", got)
	}
	if !pinned(root, c.c.Id) {
		t.Error("the container's attachment is gone")
	}
}

// The runtime restarts: the plugin reconnects by itself and new containers
// are covered.
func TestRuntimeRestart(t *testing.T) {
	rt, root := newRuntime(t), pinRoot(t)
	startPlugin(t, rt, root, "")
	rt.restart()
	rt.waitSync()
	rt.waitRegistered()
	c := rt.newContainer("late", map[string]string{"egress.nriguard.io": "allow tcp 10.1.2.3:8080"}, nil)
	must(t, rt.create(c))
	must(t, rt.start(c))
	if got := probe(t, c, "tcp:10.1.2.3:8081"); got != "EPERM" {
		t.Errorf("a container started after the runtime restarted: got %q, want EPERM", got)
	}
}

// Stale pins of another owner (an OCI hook's podman container, a nriguard
// run) are not the plugin's to remove.
func TestReconcileLeavesOthersAlone(t *testing.T) {
	rt, root := newRuntime(t), pinRoot(t)
	cg := testenv.Cgroup(t)
	spec := bpf.Spec{ID: "hook-owned", Cgroup: cg, Owner: bpf.OwnerHook, Egress: compileRules(t, "allow tcp 10.1.2.3:8080")}
	a, err := bpf.Attach(spec, &bpf.Options{PinRoot: root})
	must(t, err)
	a.Close()
	startPlugin(t, rt, root, "")
	if !pinned(root, "hook-owned") {
		t.Error("the plugin removed an attachment it does not own")
	}
}

// An exec rule that cannot be resolved in the container fails the start,
// and the message names the label key the rule came from.
func TestExecResolveErrorNamesTheKey(t *testing.T) {
	rt, root := newRuntime(t), pinRoot(t)
	startPlugin(t, rt, root, "")
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\n"), 0o755))
	c := rt.newContainer("app", map[string]string{"exec.nriguard.io/container.app": "allow " + dir + "/run.sh"}, nil)
	must(t, rt.create(c))
	err := rt.start(c)
	want := `exec.nriguard.io/container.app: rule 1 "allow ` + dir + `/run.sh": ` + dir + `/run.sh is a #! script`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("start: got %v, want an error containing %s", err, want)
	}
	if pinned(root, c.c.Id) {
		t.Error("a failed start left pins")
	}
}
