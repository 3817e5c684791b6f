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

	notes chan events.Record // policy records, for ReportEvents

	mu   sync.Mutex
	cfg  *Config
	live map[uint64]Info // policy cgroup id -> the container, for events
	ids  map[string]uint64
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
	// (a runtime that starts the plugin itself must give it the time this
	// takes to register: install/containerd/nriguard.toml gives 15 s)
	if err := bpf.PrepareShared(opts.PinRoot, e.events, readySlots); err != nil {
		// each attach tries itself, and refuses its container if it cannot
		e.log.Warn("readying the egress programs ahead", "error", err)
	}
	e.ready = make(chan struct{}, 1)
	e.notes = make(chan events.Record, 256)
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
// which the rules' files are resolved, once: what is resolved is pinned
// with the attachment (Plan). An empty decision attaches nothing.
func (e *Engine) Attach(c Container, d *Decision, cgroupDir, rootDir string) error {
	if d.Empty() {
		return nil
	}
	return e.attach(c, d, cgroupDir, rootDir, "")
}

func (e *Engine) attach(c Container, d *Decision, cgroupDir, rootDir, late string) (err error) {
	if o := e.opts.Observer; o != nil {
		start := time.Now()
		defer func() { o.Attached(time.Since(start), err) }()
	}
	p, err := NewPlan(c, d, rootDir, late)
	if p != nil {
		for _, w := range p.Warnings {
			e.log.Warn(w, "container_id", c.ID)
		}
	}
	if err != nil {
		return err
	}
	be, _ := bpf.ExecBackend()
	if err := p.CheckBinding(be == bpf.BackendLSM, false); err != nil {
		return err
	}
	return e.Apply(p, cgroupDir)
}

// Apply attaches a plan to the container's cgroup and pins it with its
// record.
func (e *Engine) Apply(p *Plan, cgroupDir string) error {
	spec, err := p.Spec(cgroupDir, e.opts.Owner)
	if err != nil {
		return err
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
	e.name(a.CgroupID, p.Info())
	c, d := p.Container, p.Decision
	e.log.Info("attached", "container_id", c.ID, "container", c.Name, "pod", c.Pod, "namespace", c.Namespace,
		"cgroup", cgroupDir, "mode", d.ModeOf, "visibility", d.Visibility.String(), "layers", d.Layers, "kernel_memory", memory)
	return nil
}

// name makes events of the policed cgroup name the container.
func (e *Engine) name(cgid uint64, info Info) {
	e.mu.Lock()
	e.live[cgid], e.ids[info.ID] = info, cgid
	e.mu.Unlock()
}

// Adopt takes as its own an attachment another process made for c (the
// hook, on the hook path), so that its events name c; false if there is
// none.
func (e *Engine) Adopt(c Container) bool {
	_, err := e.adopt(c)
	if err != nil {
		return false
	}
	e.log.Info("attached by the hook", "container_id", c.ID, "container", c.Name, "pod", c.Pod, "namespace", c.Namespace)
	return true
}

// adopt names c's pinned attachment in events, with the rules its record
// names; it returns the plan the attachment was made from (nil for an
// attachment without a record). An error says there is no complete
// attachment of this pin version.
func (e *Engine) adopt(c Container) (*Plan, error) {
	cgid, err := bpf.Pinned(e.opts.PinRoot, c.ID)
	if err != nil {
		return nil, err
	}
	info := Info{ID: c.ID, Name: c.Name, Pod: c.Pod, Namespace: c.Namespace}
	var p *Plan
	data, err := bpf.ReadRecord(e.opts.PinRoot, c.ID)
	if err == nil && data != nil {
		p, err = planFromRecord(data)
	}
	if err != nil {
		// in force, but its rules cannot be named
		e.log.Warn("the record pinned with an attachment does not read: its events will not name their rules", "container_id", c.ID, "error", err)
		p = nil
	}
	if p != nil {
		info.rules = p.Rules
	}
	e.name(cgid, info)
	return p, nil
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

// Known is a container the runtime reports in a state other than stopped
// (created, running, paused), with what is needed to attach to it.
type Known struct {
	Container
	Pid     uint32 // 0: none known
	Running bool   // running or paused: its program has run
	// LabelsErr says why its labels (image labels) could not be read: its
	// decision cannot be made again.
	LabelsErr error
}

// Reconcile makes the pins match the containers the runtime knows, after a
// restart of nriguard or of the runtime:
//
//   - a container with an attachment is adopted from what was pinned for
//     it: nothing is resolved again inside it, so a file it changed since
//     its start stays what it was judged as then. If its decision now
//     differs (the node settings changed), the pinned policy stays in
//     force and that is reported.
//   - a running container without one, whose decision is not empty,
//     started while nriguard was away: it is attached now, late, and that
//     is reported (its seccomp policy could not be restricted, and its
//     files were resolved after it had run).
//   - this owner's attachments of containers the runtime no longer knows
//     are detached. A container the runtime still knows is never detached,
//     whether or not its labels can be read.
//
// What cannot be done is reported (a policy record, a log line naming the
// container), never silently skipped.
func (e *Engine) Reconcile(known []Known) (r Reconciled, errs error) {
	keep := map[string]bool{}
	for _, k := range known {
		keep[k.ID] = true
		switch did, err := e.reconcileOne(k); {
		case err != nil:
			errs = errors.Join(errs, fmt.Errorf("container %s: %w", k.ID, err))
		case did == adopted:
			r.Adopted = append(r.Adopted, k.ID)
		case did == attachedLate:
			r.Attached = append(r.Attached, k.ID)
		}
	}
	ids, err := bpf.List(e.opts.PinRoot)
	if err != nil {
		return r, errors.Join(errs, err)
	}
	for _, id := range ids {
		if keep[id] || bpf.OwnerOf(e.opts.PinRoot, id) != e.opts.Owner {
			continue
		}
		if err := e.Detach(id); err != nil {
			errs = errors.Join(errs, err)
			continue
		}
		r.Removed = append(r.Removed, id)
	}
	return r, errs
}

// Reconciled is what Reconcile did: the containers it adopted as they were
// pinned, those it attached late, and the ids it detached.
type Reconciled struct{ Adopted, Attached, Removed []string }

// What reconcileOne did with a container.
type reconciled int

const (
	nothing      reconciled = iota // nothing to do, or nothing that could be done (reported)
	adopted                        // its attachment adopted as pinned
	attachedLate                   // attached now: it started without its policy
)

// reconcileOne adopts or attaches one known container.
func (e *Engine) reconcileOne(k Known) (reconciled, error) {
	p, err := e.adopt(k.Container)
	var other *bpf.ErrOtherVersion
	switch {
	case errors.As(err, &other):
		e.Report(k.Container, events.ReasonUnadoptable, other.Error())
		return nothing, nil
	case err == nil:
		if k.LabelsErr != nil || p == nil {
			return adopted, nil // as pinned
		}
		d, derr := e.Decide(k.Container)
		if derr != nil {
			e.Report(k.Container, events.ReasonKept, "its labels are now refused ("+derr.Error()+"): the policy attached at its start stays in force")
		} else if d.Digest() != p.Decision.Digest() {
			e.Report(k.Container, events.ReasonKept, "its policy changed since its start (node settings): the policy attached then stays in force; restart it to apply the new one")
		}
		return adopted, nil
	}
	// no attachment
	if k.LabelsErr != nil {
		if k.Running {
			e.Report(k.Container, events.ReasonUndecided, "its labels cannot be read ("+k.LabelsErr.Error()+"): it runs without a policy")
		}
		return nothing, nil
	}
	d, err := e.Decide(k.Container)
	if err != nil {
		if k.Running {
			e.Report(k.Container, events.ReasonUndecided, "its labels are refused ("+err.Error()+"): it runs without a policy")
		}
		return nothing, err
	}
	if d.Empty() || !k.Running {
		return nothing, nil // a created container gets its policy when it starts
	}
	if k.Pid == 0 {
		e.Report(k.Container, events.ReasonUndecided, "the runtime gives no process for it: it runs without its policy")
		return nothing, nil
	}
	late := "it started while nriguard was away"
	if len(d.Egress()) > 0 {
		late += ": its seccomp policy could not be restricted, so sockets the cgroup hooks cannot judge (AF_PACKET, AF_VSOCK, io_uring...) are not refused for it"
	}
	if d.HasExec() || hasExe(d) {
		late += "; the files its rules name were resolved after it had run"
	}
	cg, err := cgroup.OfPid(int(k.Pid))
	if err == nil {
		err = e.attach(k.Container, d, cg, fmt.Sprintf("/proc/%d/root", k.Pid), late)
	}
	if err != nil {
		e.Report(k.Container, events.ReasonUndecided, "its policy could not be attached ("+err.Error()+"): it runs without it")
		return nothing, err
	}
	e.Report(k.Container, events.ReasonLate, late+"; restart it to have all of its policy")
	return attachedLate, nil
}

// hasExe tells whether an egress rule of d names programs.
func hasExe(d *Decision) bool {
	for _, e := range d.Egress() {
		for _, r := range e.Rules {
			if r.Quals.ExePattern() != "" {
				return true
			}
		}
	}
	return false
}

// Report says something about a container's policy that nriguard could not
// do as asked: a log line naming it, and a policy record in the event
// stream (a daemon's), which metrics count.
func (e *Engine) Report(c Container, reason, what string) {
	e.log.Warn(what, "reason", reason, "container_id", c.ID, "container", c.Name, "pod", c.Pod, "namespace", c.Namespace)
	if e.notes == nil {
		return
	}
	r := events.Record{V: events.Version, Time: time.Now(), Kind: events.KindPolicy, Reason: reason, Message: what,
		ContainerID: c.ID, Container: c.Name, Pod: c.Pod, Namespace: c.Namespace}
	select {
	case e.notes <- r:
	default: // a reader that has stopped reading: the log line says it
	}
}

// Policed counts the containers with a policy attached.
func (e *Engine) Policed() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.live)
}

// PinRoot is where the engine pins attachments.
func (e *Engine) PinRoot() string { return e.opts.PinRoot }

// NameRecord fills in the container of a record from the policed cgroup:
// the containers this engine attached or adopted.
func (e *Engine) NameRecord(r *events.Record) {
	if r.PolicyCgroup == 0 {
		return
	}
	e.mu.Lock()
	info, ok := e.live[r.PolicyCgroup]
	e.mu.Unlock()
	if ok {
		info.NameRecord(r)
	}
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
	var mu sync.Mutex // one writer at a time: the ring's reader, the policy records'
	var buf []byte
	var writeErr string
	write := func(rec *events.Record) {
		mu.Lock()
		defer mu.Unlock()
		buf = rec.AppendJSON(buf[:0])
		for _, f := range also {
			f(rec, buf)
		}
		if _, err := w.Write(buf); err != nil && err.Error() != writeErr {
			writeErr = err.Error()
			e.log.Error("writing events", "error", err)
		}
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case rec := <-e.notes:
				write(&rec)
			}
		}
	}()
	var rec events.Record
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
			e.NameRecord(&rec)
		}
		write(&rec)
	}
}

// observeOnly is the egress "policy" of a container that is observed, not
// policed: every flow and every socket allowed, and reported.
func observeOnly() *policy.Compiled {
	c := policy.Compile(policy.Enforce, &policy.Egress{Default: policy.Allow, Layer: policy.LayerDefault})
	c.Sockets = policy.Allowed // (no seccomp restriction either: nothing is refused)
	return c
}
