// Package plugin is nriguard's NRI plugin: containerd and CRI-O call it for
// every container, and it gives each one its policy before the container's
// first instruction runs.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/cgroup"
	"github.com/nriguard/nriguard/engine"
	"github.com/nriguard/nriguard/labels"
)

// ImageLabeler reads the labels of a container's image.
type ImageLabeler interface {
	Labels(ctx context.Context, ref string) (map[string]string, error)
}

// Plugin handles NRI events with the engine.
type Plugin struct {
	eng    *engine.Engine
	images ImageLabeler // nil: image labels are not read
	log    *slog.Logger
	hook   Hook
	path   Path
	forced bool // path set by ForcePath, not by the runtime
	conn   connection
}

// Hook is how the runtime runs nriguard's OCI hook on the hook path.
type Hook struct {
	Binary     string // the nriguard executable (default: this one)
	PinRoot    string // its --pin-root (default bpf.DefaultPinRoot)
	HandoffDir string // where decisions are left for it (default engine.DefaultHandoffDir)
}

// New makes a plugin. images may be nil when the runtime's image store
// cannot be reached (CRI-O without containerd).
func New(eng *engine.Engine, images ImageLabeler, log *slog.Logger) *Plugin {
	p := &Plugin{eng: eng, images: images, log: log, path: PathHook}
	p.SetHook(Hook{})
	return p
}

// SetHook says how the runtime is to run nriguard's hook.
func (p *Plugin) SetHook(h Hook) {
	if h.Binary == "" {
		h.Binary, _ = os.Executable()
	}
	if h.PinRoot == "" {
		h.PinRoot = bpf.DefaultPinRoot
	}
	if h.HandoffDir == "" {
		h.HandoffDir = engine.DefaultHandoffDir
	}
	p.hook = h
}

// ForcePath takes a path whatever the runtime says (tests).
func (p *Plugin) ForcePath(path Path) { p.path, p.forced = path, true }

// Configure learns which runtime this is, and so the path its containers
// take, and takes the node settings from the NRI plugin configuration, when
// the runtime passes one (a pre-registered plugin's <name>.conf).
func (p *Plugin) Configure(_ context.Context, config, runtime, version string) (api.EventMask, error) {
	if !p.forced {
		var why string
		p.path, why = PathFor(runtime, version)
		p.log.Info("connected", "runtime", runtime, "version", version, "path", p.path.String(), "why", why)
	} else {
		p.log.Info("connected", "runtime", runtime, "version", version, "path", p.path.String())
	}
	p.conn.set(Connection{Connected: true, Runtime: runtime, Version: version, Path: p.path})
	if config == "" {
		return 0, nil
	}
	cfg, err := engine.ParseConfig([]byte(config))
	if err != nil {
		return 0, err
	}
	p.eng.SetConfig(cfg)
	return 0, nil
}

// Synchronize reconciles the pins with the containers the runtime knows:
// on every (re)connection, after a restart of nriguard or of the runtime.
// Every container that has not stopped is passed on, also when its labels
// cannot be read: its attachment stays (engine.Reconcile).
func (p *Plugin) Synchronize(ctx context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	podOf := map[string]*api.PodSandbox{}
	for _, pod := range pods {
		podOf[pod.GetId()] = pod
	}
	var known []engine.Known
	for _, c := range ctrs {
		state := c.GetState()
		if state == api.ContainerState_CONTAINER_STOPPED {
			continue
		}
		ec, err := p.container(ctx, podOf[c.GetPodSandboxId()], c)
		running := state == api.ContainerState_CONTAINER_RUNNING || state == api.ContainerState_CONTAINER_PAUSED
		known = append(known, engine.Known{Container: ec, Pid: p.pidOf(c), Running: running, LabelsErr: err})
	}
	p.sweepHandoffs()
	r, err := p.eng.Reconcile(known)
	p.log.Info("synchronized", "known", len(known), "adopted", len(r.Adopted), "attached", len(r.Attached), "removed", len(r.Removed))
	if err != nil {
		p.log.Error("synchronize", "error", err)
	}
	return nil, nil
}

// CreateContainer checks the container's policy: an invalid one fails the
// creation with the parser's message, which the user sees (crictl create,
// kubectl describe). A container under an egress policy also gets a seccomp
// policy that lets it make only the sockets the hooks judge (and unix and
// netlink ones): AF_PACKET, AF_VSOCK, AF_XDP... never reach the cgroup hooks.
func (p *Plugin) CreateContainer(ctx context.Context, pod *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	ec, err := p.container(ctx, pod, c)
	var d *engine.Decision
	if err == nil {
		d, err = p.eng.Decide(ec)
	}
	if err != nil {
		p.log.Warn("refused", "container_id", c.GetId(), "container", c.GetName(), "pod", pod.GetName(), "error", err)
		return nil, nil, fmt.Errorf("nriguard: %w", err)
	}
	if p.path == PathHook {
		if d.Empty() {
			return nil, nil, nil
		}
		adj, err := p.handOff(ec, d)
		if err != nil {
			p.log.Error("refused: cannot hand the decision to the hook", "container_id", c.GetId(), "error", err)
			return nil, nil, fmt.Errorf("nriguard: %w", err)
		}
		return adj, nil, nil
	}
	if len(d.Egress()) == 0 {
		return nil, nil, nil
	}
	return socketAdjustment(c), nil, nil
}

// handOff leaves the decision for nriguard's OCI hook and asks the runtime
// to run it at createRuntime: it attaches, and refuses the container if its
// seccomp policy lets it make sockets the cgroup hooks cannot judge. Under
// an egress policy the container is marked for nriguard-runc, which
// restricts that policy where the runtime's binary is nriguard-runc.
func (p *Plugin) handOff(ec engine.Container, d *engine.Decision) (*api.ContainerAdjustment, error) {
	if err := engine.WriteHandoff(p.hook.HandoffDir, ec, d); err != nil {
		return nil, err
	}
	adj := &api.ContainerAdjustment{}
	if len(d.Egress()) > 0 {
		adj.AddAnnotation(labels.RestrictSockets, "true")
	}
	adj.AddHooks(&api.Hooks{CreateRuntime: []*api.Hook{{
		Path: p.hook.Binary,
		Args: []string{p.hook.Binary, "hook", "--pin-root", p.hook.PinRoot, "--handoff", p.hook.HandoffDir, "createRuntime"},
	}}})
	return adj, nil
}

// StartContainer attaches the policy. The cgroup holds only the container's
// init process, which has not run the container's program yet; if the attach
// fails, the error fails the start: no container runs unprotected.
func (p *Plugin) StartContainer(ctx context.Context, pod *api.PodSandbox, c *api.Container) error {
	if p.path == PathHook {
		return p.checkHooked(ctx, pod, c)
	}
	t0 := time.Now()
	ec, err := p.container(ctx, pod, c)
	if err != nil {
		return fmt.Errorf("nriguard: %w", err)
	}
	d, err := p.eng.Decide(ec)
	if err != nil {
		return fmt.Errorf("nriguard: %w", err)
	}
	if d.Empty() {
		return nil
	}
	cg, err := p.cgroupOf(c)
	if err == nil {
		err = p.eng.Attach(ec, d, cg, fmt.Sprintf("/proc/%d/root", c.GetPid()))
	}
	if err != nil {
		p.log.Error("attach failed: the container will not start", "container_id", c.GetId(), "error", err)
		return fmt.Errorf("nriguard: %w", err)
	}
	p.log.Debug("started", "container_id", c.GetId(), "took", time.Since(t0))
	return nil
}

// checkHooked: on the hook path the hook attached before the container's
// program could run, or the runtime stopped the container. A container
// with a policy and no attachment now got past that: say so (CRI-O ignores
// the error, so the log is what shows it).
func (p *Plugin) checkHooked(ctx context.Context, pod *api.PodSandbox, c *api.Container) error {
	engine.RemoveHandoff(p.hook.HandoffDir, c.GetId()) // the hook's, if it never ran
	ec, err := p.container(ctx, pod, c)
	var d *engine.Decision
	if err == nil {
		d, err = p.eng.Decide(ec)
	}
	if err != nil {
		return fmt.Errorf("nriguard: %w", err)
	}
	if d.Empty() {
		return nil
	}
	if !p.eng.Adopt(ec) {
		p.log.Error("the hook did not attach: the container runs without its policy", "container_id", c.GetId(), "container", c.GetName())
		return fmt.Errorf("nriguard: container %s started without nriguard's hook attaching its policy", c.GetId())
	}
	return nil
}

// StopContainer tears the container's policy down: its processes are gone.
func (p *Plugin) StopContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	engine.RemoveHandoff(p.hook.HandoffDir, c.GetId())
	return nil, p.eng.Detach(c.GetId())
}

// RemoveContainer makes sure nothing is left, also when Stop never came.
func (p *Plugin) RemoveContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	engine.RemoveHandoff(p.hook.HandoffDir, c.GetId())
	return p.eng.Detach(c.GetId())
}

// pidOf is a running container's init pid. CRI-O reports pid 0: then a
// process of the container's cgroup (linux.cgroups_path) stands for it.
func (p *Plugin) pidOf(c *api.Container) uint32 {
	if c.GetPid() != 0 {
		return c.GetPid()
	}
	dir, err := cgroup.FromPath(c.GetLinux().GetCgroupsPath())
	if err != nil {
		return 0
	}
	pids, _ := cgroup.Procs(dir)
	if len(pids) == 0 {
		return 0
	}
	return uint32(pids[0])
}

// sweepHandoffs removes decisions left for hooks that never ran (a
// container the runtime gave up before running its hook), after a while.
func (p *Plugin) sweepHandoffs() {
	entries, _ := os.ReadDir(p.hook.HandoffDir)
	for _, e := range entries {
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > handoffStale {
			engine.RemoveHandoff(p.hook.HandoffDir, e.Name())
		}
	}
}

// handoffStale: a decision older than this was never taken by a hook.
const handoffStale = 10 * time.Minute

// cgroupOf finds the container's cgroup v2 directory: that of its init
// process, which the runtime has just put there.
func (p *Plugin) cgroupOf(c *api.Container) (string, error) {
	if c.GetPid() == 0 {
		return "", errors.New("the runtime gave no process id for the container")
	}
	return cgroup.OfPid(int(c.GetPid()))
}

func (p *Plugin) container(ctx context.Context, pod *api.PodSandbox, c *api.Container) (engine.Container, error) {
	ec := engine.Container{
		ID:             c.GetId(),
		Name:           c.GetName(),
		Pod:            pod.GetName(),
		Namespace:      pod.GetNamespace(),
		PodAnnotations: pod.GetAnnotations(),
		Annotations:    c.GetAnnotations(),
		Labels:         c.GetLabels(),
	}
	if p.images == nil || !p.eng.Config().HonoursImageLabels() {
		return ec, nil
	}
	ref := labels.ImageName(c.GetAnnotations())
	if ref == "" {
		return ec, nil
	}
	l, err := p.images.Labels(ctx, ref)
	if err != nil {
		// An image may declare a policy: not knowing it, do not run it.
		return ec, err
	}
	ec.ImageLabels = l
	return ec, nil
}

// Run connects to the runtime and serves until ctx ends. An external plugin
// reconnects (with backoff) when the runtime restarts; a pre-registered one,
// started by the runtime on a socket it was handed, exits instead, and the
// runtime starts it again.
func Run(ctx context.Context, p *Plugin, opts ...stub.Option) error {
	opts = append(opts,
		stub.WithOnClose(func() {
			p.conn.closed()
			p.log.Warn("connection to the runtime closed")
		}),
		// Fail closed: a runtime that supports failure policies refuses a
		// container when nriguard times out or is gone.
		stub.WithFailurePolicy(&api.FailurePolicy{FailRequest: true}),
	)
	preregistered := os.Getenv(api.PluginSocketEnvVar) != ""
	backoff := 100 * time.Millisecond
	for {
		s, err := stub.New(p, opts...)
		if err != nil {
			return err
		}
		started := time.Now()
		err = s.Run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if preregistered {
			return fmt.Errorf("connection to the runtime lost: %v", err)
		}
		if time.Since(started) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		p.log.Warn("reconnecting", "error", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}
