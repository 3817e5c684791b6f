package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/cgroup"
	"github.com/nriguard/nriguard/events"
	"github.com/nriguard/nriguard/policy"
	"github.com/nriguard/nriguard/resolve"
)

// Options configure an Engine.
type Options struct {
	PinRoot string    // bpf.DefaultPinRoot when empty
	Owner   bpf.Owner // what this process's attachments are marked as
	Log     *slog.Logger
	// Daemon is set for a process that lives beside its containers and
	// reads their events (the NRI plugin): it opens the shared event ring at
	// start and keeps it while it runs. Otherwise (the OCI hook) the ring
	// is made by the first attachment and goes with the last.
	Daemon bool
	// Linger: how long a daemon keeps the programs containers share (the
	// copies of the egress programs, the host-wide exec program) after
	// their last container, for the next one. Default 1 minute.
	Linger time.Duration
	// Observer, if set, hears of every attach and detach (metrics).
	Observer Observer
}

// Observer hears how attaching goes.
type Observer interface {
	Attached(took time.Duration, err error)
	Detached(c Info, took time.Duration)
}

// readySlots is how many slots of the shared egress programs a daemon has
// tables ready in at start (48 KiB each): the containers of a burst take
// them without waiting for the kernel to put tables in place.
const readySlots = 32

// Engine decides and attaches policies and reports what they decide.
type Engine struct {
	opts    Options
	log     *slog.Logger
	events  *bpf.EventMaps // a daemon's shared ring
	release func()         // the daemon lock
	stop    chan struct{}
	ready   chan struct{} // wakes keepReady
	idle    sync.WaitGroup
	used    atomic.Int64 // unix nanoseconds of the last attach or detach

	mu   sync.Mutex
	cfg  *Config
	live map[uint64]Info // policy cgroup id -> the container, for events
	ids  map[string]uint64
}

// Info names a container in events and logs.
type Info struct {
	ID, Name, Pod, Namespace string
	rules                    *Ruler // names the rules that decide its events
}

// New makes an engine. A daemon's events go to one ring buffer pinned under
// the pin root, so that containers attached by an earlier run keep
// reporting to the next one.
func New(cfg *Config, opts Options) (*Engine, error) {
	if opts.PinRoot == "" {
		opts.PinRoot = bpf.DefaultPinRoot
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{opts: opts, log: opts.Log, cfg: cfg, live: map[uint64]Info{}, ids: map[string]uint64{}}
	if !opts.Daemon {
		return e, nil
	}
	var err error
	if e.release, err = bpf.HoldDaemonLock(); err != nil {
		return nil, err
	}
	if e.events, err = bpf.SharedEvents(opts.PinRoot); err != nil {
		e.release()
		return nil, err
	}
	// before the runtime can send a container: the first does not wait
	if err := bpf.PrepareShared(opts.PinRoot, e.events, readySlots); err != nil {
		// each attach tries itself, and refuses its container if it cannot
		e.log.Warn("readying the egress programs ahead", "error", err)
	}
	e.ready = make(chan struct{}, 1)
	if opts.Linger == 0 {
		e.opts.Linger = time.Minute
	}
	e.stop = make(chan struct{})
	e.idle.Add(2)
	go e.removeIdle()
	go e.keepReady()
	return e, nil
}

func (e *Engine) wakeReady() {
	if e.ready == nil {
		return
	}
	select {
	case e.ready <- struct{}{}:
	default:
	}
}

// keepReady keeps the shared egress programs loaded, readySlots slots with
// tables ready, and the slots of containers that went ready to be refilled:
// at start, and after each attach and detach.
func (e *Engine) keepReady() {
	defer e.idle.Done()
	for {
		select {
		case <-e.stop:
			return
		case <-e.ready:
		}
		if err := bpf.PrepareShared(e.opts.PinRoot, e.events, readySlots); err != nil {
			// each attach tries itself, and refuses its container if it cannot
			e.log.Warn("readying the egress programs ahead", "error", err)
		}
	}
}

// removeIdle removes the shared programs once no container has needed them
// for Linger.
func (e *Engine) removeIdle() {
	defer e.idle.Done()
	t := time.NewTicker(e.opts.Linger / 4)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		}
		if time.Since(time.Unix(0, e.used.Load())) < e.opts.Linger {
			continue
		}
		if removed, err := bpf.RemoveIdle(e.opts.PinRoot); err != nil {
			e.log.Warn("removing idle programs", "error", err)
		} else if removed {
			e.log.Info("removed programs no container has needed for a while", "after", e.opts.Linger)
		}
	}
}

// Close removes the shared programs and the shared ring if no container
// needs them; attachments stay pinned and in force.
func (e *Engine) Close() {
	if e.opts.Daemon {
		close(e.stop)
		e.idle.Wait()
		bpf.RemoveIdle(e.opts.PinRoot)
		e.events.Close()
		e.release()
		bpf.RemoveSharedEvents(e.opts.PinRoot)
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
func (e *Engine) Attach(c Container, d *Decision, cgroupDir, rootDir string) (err error) {
	if d.Empty() {
		return nil
	}
	if o := e.opts.Observer; o != nil {
		start := time.Now()
		defer func() { o.Attached(time.Since(start), err) }()
	}
	spec := bpf.Spec{ID: c.ID, Cgroup: cgroupDir, Owner: e.opts.Owner}
	rules := &Ruler{}
	if eg := d.Egress(); len(eg) > 0 {
		compiled, rl, warnings, err := CompileEgress(d.Mode, eg, rootDir)
		for _, w := range warnings {
			e.log.Warn(w, "container_id", c.ID)
		}
		if err != nil {
			return err
		}
		compiled.Visibility = d.Visibility
		spec.Egress, rules = compiled, rl
	} else if d.Visibility&policy.VisFlows != 0 {
		spec.Egress = observeOnly(d.Visibility)
	}
	if d.HasExec() {
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
			rules.AddExec(l.Exec, t)
		}
		spec.Exec = policy.IntersectExec(d.Mode, tables...)
	}
	if d.Visibility&policy.VisExecs != 0 {
		if spec.Exec == nil { // a policed container without exec rules: every exec allowed, and seen
			spec.Exec = &policy.ExecTable{Default: policy.Allowed}
		}
		spec.Exec.Execs = true
	}
	e.used.Store(time.Now().UnixNano())
	a, err := bpf.Attach(spec, &bpf.Options{PinRoot: e.opts.PinRoot, Events: e.events, Keep: e.opts.Daemon, SharedEvents: !e.opts.Daemon})
	if err != nil {
		return err
	}
	memory := a.Memory()
	a.Close() // the pins keep it; this process needs no handles
	if spec.Egress != nil {
		e.wakeReady()
	}
	info := Info{ID: c.ID, Name: c.Name, Pod: c.Pod, Namespace: c.Namespace, rules: rules}
	e.mu.Lock()
	e.live[a.CgroupID], e.ids[c.ID] = info, a.CgroupID
	e.mu.Unlock()
	e.log.Info("attached", "container_id", c.ID, "container", c.Name, "pod", c.Pod, "namespace", c.Namespace,
		"cgroup", cgroupDir, "mode", d.ModeOf, "visibility", d.Visibility.String(), "layers", d.Layers, "kernel_memory", memory)
	return nil
}

// Adopt takes as its own an attachment another process made for c (the
// hook, on the hook path), so that its events name c; false if there is
// none.
func (e *Engine) Adopt(c Container) bool {
	cgid, ok := bpf.CgroupOf(e.opts.PinRoot, c.ID)
	if !ok {
		return false
	}
	e.mu.Lock()
	e.live[cgid], e.ids[c.ID] = Info{ID: c.ID, Name: c.Name, Pod: c.Pod, Namespace: c.Namespace}, cgid
	e.mu.Unlock()
	e.log.Info("attached by the hook", "container_id", c.ID, "container", c.Name, "pod", c.Pod, "namespace", c.Namespace)
	return true
}

// Detach removes whatever is attached for the container id. Outside a
// daemon, the shared ring goes with the last attachment.
func (e *Engine) Detach(id string) error {
	var err error
	start := time.Now()
	if e.opts.Daemon {
		e.used.Store(time.Now().UnixNano())
		err = bpf.DetachKeep(e.opts.PinRoot, id) // the shared programs stay for the next container
	} else {
		err = bpf.Detach(e.opts.PinRoot, id)
	}
	e.wakeReady()
	e.mu.Lock()
	info, known := Info{ID: id}, false
	if cgid, ok := e.ids[id]; ok {
		info, known = e.live[cgid], true
		delete(e.live, cgid)
		delete(e.ids, id)
	}
	e.mu.Unlock()
	if err != nil {
		return err
	}
	if o := e.opts.Observer; o != nil && known {
		o.Detached(info, time.Since(start))
	}
	e.log.Info("detached", "container_id", id)
	if !e.opts.Daemon {
		if _, err := bpf.RemoveSharedEvents(e.opts.PinRoot); err != nil {
			e.log.Warn("removing the shared event ring", "error", err)
		}
	}
	return nil
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
		_, had := bpf.CgroupOf(e.opts.PinRoot, r.ID)
		cg, err := cgroup.OfPid(int(r.Pid))
		if err == nil {
			err = e.Attach(r.Container, d, cg, fmt.Sprintf("/proc/%d/root", r.Pid))
		}
		if err != nil {
			errs = errors.Join(errs, fmt.Errorf("container %s: %w", r.ID, err))
			continue
		}
		if !had && len(d.Egress()) > 0 {
			// it started while nriguard was away: too late for its seccomp policy
			e.log.Warn("a running container got its egress policy late: its seccomp policy could not be restricted, "+
				"so sockets the cgroup hooks cannot judge (AF_PACKET, AF_VSOCK, io_uring...) are not refused for it; restart it to have them refused",
				"container_id", r.ID, "container", r.Name, "pod", r.Pod)
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

// Policed counts the containers with a policy attached.
func (e *Engine) Policed() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.live)
}

// PinRoot is where the engine pins attachments.
func (e *Engine) PinRoot() string { return e.opts.PinRoot }

// name fills in the container of a record from the policed cgroup.
func (e *Engine) name(r *events.Record) {
	if r.PolicyCgroup == 0 {
		return
	}
	e.mu.Lock()
	info, ok := e.live[r.PolicyCgroup]
	e.mu.Unlock()
	if !ok {
		return
	}
	r.ContainerID, r.Container, r.Pod, r.Namespace = info.ID, info.Name, info.Pod, info.Namespace
	info.rules.Rule(r)
}

// ReportEvents writes a daemon's events as JSON lines (the events schema)
// until ctx ends: decisions named with their container, and records of
// their own for losses and for ring records that do not decode, after which
// it goes on.
// Each record, named, also goes to every also (the observe stream, metrics).
func (e *Engine) ReportEvents(ctx context.Context, w io.Writer, also ...func(*events.Record, []byte)) error {
	if e.events == nil {
		return errors.New("report events: not a daemon: no shared ring")
	}
	rd, err := bpf.NewEventReader(*e.events)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		rd.Close()
	}()
	var rec events.Record
	var buf []byte
	var writeErr string
	for {
		if err := rd.Read(&rec); errors.Is(err, ringbuf.ErrClosed) {
			return nil
		} else if err != nil {
			e.log.Error("reading events", "error", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		switch rec.Kind {
		case events.KindLost:
			e.log.Warn("events lost: the ring buffer was full", "kind", rec.LostKind, "count", rec.Count)
		case events.KindDecodeError:
			e.log.Warn("an event record did not decode", "error", rec.Error)
		default:
			e.name(&rec)
		}
		buf = rec.AppendJSON(buf[:0])
		for _, f := range also {
			f(&rec, buf)
		}
		if _, err := w.Write(buf); err != nil && err.Error() != writeErr {
			writeErr = err.Error()
			e.log.Error("writing events", "error", err)
		}
	}
}

// observeOnly is the egress "policy" of a container that is observed, not
// policed: every flow and every socket allowed, and reported.
func observeOnly(v policy.Visibility) *policy.Compiled {
	c := policy.Compile(policy.Enforce, &policy.Egress{Default: policy.Allow, Layer: policy.LayerDefault})
	c.Sockets = policy.Allowed // (no seccomp restriction either: nothing is refused)
	c.Visibility = v
	return c
}
