package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/cgroup"
	"github.com/nriguard/nriguard/policy"
	"github.com/nriguard/nriguard/resolve"
)

// Options configure an Engine.
type Options struct {
	PinRoot string    // bpf.DefaultPinRoot when empty
	Owner   bpf.Owner // what this process's attachments are marked as
	Log     *slog.Logger
	// Events, when set, receives events as JSON lines.
	Events io.Writer
	// Preload is how many copies of the egress programs to keep loaded
	// ahead of need (a daemon's: containers start without waiting for the
	// verifier). 0: load each container's when it is attached. With it, the
	// host-wide exec program stays ExecLinger (default 1 minute) after the
	// last container with exec rules, for the next one.
	Preload    int
	ExecLinger time.Duration
}

// Engine decides and attaches policies and reports what they decide.
type Engine struct {
	opts   Options
	log    *slog.Logger
	events *bpf.EventMaps
	pool   *bpf.Pool
	stop   chan struct{}
	idle   sync.WaitGroup
	used   atomic.Int64 // unix nanoseconds of the last attach or detach

	mu   sync.Mutex
	cfg  *Config
	live map[uint64]Info // policy cgroup id -> the container, for events
	ids  map[string]uint64
}

// Info names a container in events and logs.
type Info struct {
	ID        string `json:"container_id"`
	Name      string `json:"container,omitempty"`
	Pod       string `json:"pod,omitempty"`
	Namespace string `json:"namespace,omitempty"`
}

// New makes an engine. Its events go to one ring buffer pinned under the pin
// root, so that containers attached by an earlier run keep reporting to the
// next one.
func New(cfg *Config, opts Options) (*Engine, error) {
	if opts.PinRoot == "" {
		opts.PinRoot = bpf.DefaultPinRoot
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	ev, err := bpf.SharedEvents(opts.PinRoot)
	if err != nil {
		return nil, err
	}
	e := &Engine{opts: opts, log: opts.Log, events: ev, cfg: cfg, live: map[uint64]Info{}, ids: map[string]uint64{}}
	if opts.Preload > 0 {
		e.pool = bpf.NewPool(ev, opts.Preload)
		if opts.ExecLinger == 0 {
			e.opts.ExecLinger = time.Minute
		}
		e.stop = make(chan struct{})
		e.idle.Add(1)
		go e.removeIdleExec()
	}
	return e, nil
}

// removeIdleExec removes the host-wide exec program once no container has
// used it for ExecLinger.
func (e *Engine) removeIdleExec() {
	defer e.idle.Done()
	t := time.NewTicker(e.opts.ExecLinger / 4)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		}
		if time.Since(time.Unix(0, e.used.Load())) < e.opts.ExecLinger {
			continue
		}
		if removed, err := bpf.RemoveIdleExec(e.opts.PinRoot); err != nil {
			e.log.Warn("removing the idle exec program", "error", err)
		} else if removed {
			e.log.Info("removed the exec program: no container has had exec rules for a while", "after", e.opts.ExecLinger)
		}
	}
}

// Close frees the programs loaded ahead, and the exec program if no
// container needs it; attachments stay pinned and in force.
func (e *Engine) Close() {
	if e.pool != nil {
		close(e.stop)
		e.idle.Wait()
		bpf.RemoveIdleExec(e.opts.PinRoot)
		e.pool.Close()
	}
}

// SetConfig replaces the node settings (NRI's Configure).
func (e *Engine) SetConfig(cfg *Config) {
	e.mu.Lock()
	e.cfg = cfg
	e.mu.Unlock()
}

// Config returns the node settings in force.
func (e *Engine) Config() *Config {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cfg
}

// Decide is Decide with the engine's settings.
func (e *Engine) Decide(c Container) (*Decision, error) { return Decide(e.Config(), c) }

// Attach holds the container's cgroup to its decision. rootDir is the
// container's root as this process can open it (/proc/<pid>/root), against
// which exec rules are resolved. An empty decision attaches nothing.
func (e *Engine) Attach(c Container, d *Decision, cgroupDir, rootDir string) error {
	if d.Empty() {
		return nil
	}
	spec := bpf.Spec{ID: c.ID, Cgroup: cgroupDir, Mode: d.Mode, Owner: e.opts.Owner}
	if len(d.Egress) > 0 {
		spec.Egress = policy.CompileLayers(d.Egress...)
	}
	if len(d.Exec) > 0 {
		var tables []*policy.ExecTable
		for _, l := range d.Layers {
			if l.Exec == nil {
				continue
			}
			t, warnings, err := resolve.Exec(rootDir, l.Key, l.Exec)
			for _, w := range warnings {
				e.log.Warn(w, "container_id", c.ID)
			}
			if err != nil {
				return err
			}
			tables = append(tables, t)
		}
		spec.Exec = policy.IntersectExec(tables...)
	}
	e.used.Store(time.Now().UnixNano())
	a, err := bpf.Attach(spec, &bpf.Options{PinRoot: e.opts.PinRoot, Events: e.events, Pool: e.pool})
	if err != nil {
		return err
	}
	a.Close() // the pins keep it; this process needs no handles
	info := Info{ID: c.ID, Name: c.Name, Pod: c.Pod, Namespace: c.Namespace}
	e.mu.Lock()
	e.live[a.CgroupID], e.ids[c.ID] = info, a.CgroupID
	e.mu.Unlock()
	e.log.Info("attached", "container_id", c.ID, "container", c.Name, "pod", c.Pod, "namespace", c.Namespace,
		"cgroup", cgroupDir, "mode", d.ModeOf, "layers", d.Layers)
	return nil
}

// Detach removes whatever is attached for the container id.
func (e *Engine) Detach(id string) error {
	var err error
	if e.pool != nil {
		e.used.Store(time.Now().UnixNano())
		err = e.pool.Detach(e.opts.PinRoot, id) // keeps its programs for the next container
	} else {
		err = bpf.Detach(e.opts.PinRoot, id)
	}
	e.mu.Lock()
	if cgid, ok := e.ids[id]; ok {
		delete(e.live, cgid)
		delete(e.ids, id)
	}
	e.mu.Unlock()
	if err == nil {
		e.log.Info("detached", "container_id", id)
	}
	return err
}

// Running is a container the runtime reports as running, with what is needed
// to attach to it.
type Running struct {
	Container
	Pid uint32
}

// Reconcile makes the pins match the running containers: it attaches what is
// missing (attaching what is already there is a no-op) and detaches what
// this owner attached for containers that are gone. It returns what it did.
func (e *Engine) Reconcile(running []Running) (attached, removed []string, errs error) {
	keep := map[string]bool{}
	for _, r := range running {
		keep[r.ID] = true
		d, err := e.Decide(r.Container)
		if err != nil || d.Empty() || r.Pid == 0 {
			if err != nil {
				errs = errors.Join(errs, fmt.Errorf("container %s: %w", r.ID, err))
			}
			continue
		}
		cg, err := cgroup.OfPid(int(r.Pid))
		if err == nil {
			err = e.Attach(r.Container, d, cg, fmt.Sprintf("/proc/%d/root", r.Pid))
		}
		if err != nil {
			errs = errors.Join(errs, fmt.Errorf("container %s: %w", r.ID, err))
			continue
		}
		attached = append(attached, r.ID)
	}
	ids, err := bpf.List(e.opts.PinRoot)
	if err != nil {
		return attached, removed, errors.Join(errs, err)
	}
	for _, id := range ids {
		if keep[id] || bpf.OwnerOf(e.opts.PinRoot, id) != e.opts.Owner {
			continue
		}
		if err := e.Detach(id); err != nil {
			errs = errors.Join(errs, err)
			continue
		}
		removed = append(removed, id)
	}
	return attached, removed, errs
}

// event is what the event log says: the decision and who it was about.
type event struct {
	bpf.Event
	Info
}

// ReportEvents writes events as JSON lines until ctx ends.
func (e *Engine) ReportEvents(ctx context.Context, w io.Writer) error {
	rd, err := bpf.NewEventReader(*e.events)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		rd.Close()
	}()
	enc := json.NewEncoder(w)
	var lostSeen uint64
	for {
		ev, err := rd.Read()
		if err != nil {
			return nil // closed
		}
		e.mu.Lock()
		info := e.live[ev.PolicyCgroup]
		e.mu.Unlock()
		enc.Encode(event{ev, info})
		if n := rd.Lost(); n != lostSeen {
			e.log.Warn("events lost: the ring buffer was full", "lost_total", n)
			lostSeen = n
		}
	}
}
