package bpf

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/nriguard/nriguard/cgroup"
	"github.com/nriguard/nriguard/policy"
)

// Spec says what to hold one cgroup to. The mode is in the tables: a
// policy in audit mode compiles to would-deny verdicts.
type Spec struct {
	ID     string            // the pin directory's name: a container id, or run-<pid>
	Cgroup string            // the cgroup v2 directory
	Egress *policy.Compiled  // nil: no egress policy
	Exec   *policy.ExecTable // nil: no exec policy
	Owner  Owner
	// Visibility is what the cgroup reports besides refusals: its allowed
	// flows (with Egress) and execs (with Exec).
	Visibility policy.Visibility
	// Record is pinned with the attachment, for whoever adopts it later
	// (ReadRecord); bpf does not read it.
	Record []byte
}

// Owner says which kind of nriguard process made an attachment, so that
// each reconciles only its own: the NRI plugin must not remove what an OCI
// hook attached to a podman container it never hears of.
type Owner uint64

// String names the kind of process.
func (o Owner) String() string {
	switch o {
	case OwnerRun:
		return "nriguard run"
	case OwnerNRI:
		return "NRI plugin"
	case OwnerHook:
		return "OCI hook"
	}
	return "?"
}

const (
	OwnerRun  Owner = 1 // nriguard run
	OwnerNRI  Owner = 2 // the NRI plugin
	OwnerHook Owner = 3 // the OCI hook
)

// Options tune an attach.
type Options struct {
	PinRoot string // DefaultPinRoot when empty
	// Events, when set, is shared by every attachment (one reader for all
	// containers); otherwise each attachment has its own.
	Events *EventMaps
	// ExecBackend picks the exec backend when this pin root has no exec
	// program yet (BackendLSM or BackendKill); empty: ExecBackend().
	ExecBackend string
	// Keep leaves what attachments share (the copies of the egress
	// programs, the exec program) in place when a failed attach was their
	// only user: a daemon's, which removes them after a while (RemoveIdle).
	Keep bool
	// SharedEvents, when Events is nil, reports to the ring pinned under
	// the pin root (_events), made if it is not there: what OCI hooks do,
	// whose processes end before any event.
	SharedEvents bool
}

func (o *Options) get() Options {
	if o == nil {
		return Options{PinRoot: DefaultPinRoot}
	}
	out := *o
	out.PinRoot = pinRootOr(o.PinRoot)
	return out
}

// Attachment is one cgroup's programs, links and maps. The pins keep them in
// force after the process that attached them exits.
type Attachment struct {
	ID, Dir  string
	CgroupID uint64 // of the cgroup it holds: events name it as policy_cgroup
	// Events is where its programs report (its own ring, or Options.Events).
	Events EventMaps
	root   string
	objs   []interface{ Close() error }
	links  []link.Link
}

// meta is what detach and reconciliation need to know of an attachment:
// what it enforces, where, which parts it has and who made it.
type meta struct {
	Version uint32 // PinVersion: first, in every version
	_       uint32
	Digest  [32]byte
	Cgroup  uint64
	Parts   uint64
	Owner   Owner
	// the copy of the egress programs: the id of the ring of a shared one
	// (0: the attachment's own, in egress/), its tables' capacity, the slot
	Ring uint32
	Slot uint32
	Caps [3]uint32
	Copy uint32 // which copy of its size class
}

const (
	partEgress = 1 << iota
	partExec
	partNames // the egress policy names DNS names: ng_skb_ingress is attached too
)

func (s Spec) meta(cgid uint64) meta {
	m := meta{Version: PinVersion, Cgroup: cgid, Owner: s.Owner}
	h := sha256.New()
	binary.Write(h, binary.LittleEndian, cgid)
	if s.Egress != nil {
		m.Parts |= partEgress
		if len(s.Egress.Names) > 0 {
			m.Parts |= partNames
		}
		d := s.Egress.Digest()
		h.Write(d[:])
	}
	if s.Exec != nil {
		m.Parts |= partExec
		d := s.Exec.Digest()
		h.Write(d[:])
	}
	binary.Write(h, binary.LittleEndian, m.Parts)
	binary.Write(h, binary.LittleEndian, uint64(s.Visibility))
	copy(m.Digest[:], h.Sum(nil))
	return m
}

// Attach holds spec.Cgroup to spec's policy and pins everything under
// <PinRoot>/<ID>. Attaching the same spec twice is a no-op; attaching a
// different policy for the same id replaces the old one without a gap (both
// are in force for a moment, and a flow must pass both). A failure leaves
// nothing attached or pinned. It holds the host lock: what attachments
// share (the exec program, the shared ring) changes under it.
func Attach(spec Spec, opts *Options) (a *Attachment, err error) {
	err = WithHostLock(func() error {
		a, err = attach(spec, opts)
		return err
	})
	return a, err
}

// attaching is an attach under way: what it attaches, where, the
// attachment it replaces, and the steps to undo if it does not commit.
type attaching struct {
	spec Spec
	o    Options
	cgid uint64
	old  *meta  // the attachment pinned under the same id, if any
	dir  string // where the attachment is pinned once it holds
	tmp  string // where it is pinned until then
	undo []func()
}

// onUndo adds a step to take back if the attach fails.
func (x *attaching) onUndo(f func()) { x.undo = append(x.undo, f) }

// rollback takes back what the attach did, last step first; after commit
// it does nothing.
func (x *attaching) rollback() {
	for i := len(x.undo) - 1; i >= 0; i-- {
		x.undo[i]()
	}
	x.undo = nil
}

func (x *attaching) commit() { x.undo = nil }

// hadExec tells whether the replaced attachment held this cgroup's exec
// rules: then the new ones are written over them, not withdrawn on failure.
func (x *attaching) hadExec() bool {
	return x.old != nil && x.old.Parts&partExec != 0 && x.old.Cgroup == x.cgid
}

func attach(spec Spec, opts *Options) (*Attachment, error) {
	o := opts.get()
	if err := checkID(spec.ID); err != nil {
		return nil, fmt.Errorf("attach: %w", err)
	}
	if spec.Egress == nil && spec.Exec == nil {
		return nil, fmt.Errorf("attach %s: nothing to attach (no egress or exec policy)", spec.ID)
	}
	if err := ensurePinRoot(o.PinRoot); err != nil {
		return nil, err
	}
	cgid, err := cgroup.ID(spec.Cgroup)
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", spec.ID, err)
	}
	m := spec.meta(cgid)
	x := &attaching{spec: spec, o: o, cgid: cgid, dir: filepath.Join(o.PinRoot, spec.ID), tmp: tmpDir(o.PinRoot, spec.ID)}
	a := &Attachment{ID: spec.ID, Dir: x.dir, CgroupID: cgid, root: o.PinRoot}
	old, err := readMeta(x.dir)
	var other *ErrOtherVersion
	switch {
	case errors.As(err, &other):
		return nil, fmt.Errorf("attach %s: %w: detach it first (nriguard detach %s)", spec.ID, err, spec.ID)
	case err == nil && old.Digest == m.Digest && old.Owner == m.Owner && complete(x.dir, m.Parts):
		return a, nil // attached already
	case err == nil:
		x.old = &old
	}
	fail := func(err error) (*Attachment, error) {
		return nil, fmt.Errorf("attach %s to %s: %w", spec.ID, spec.Cgroup, err)
	}
	defer x.rollback()
	x.onUndo(a.close)
	if x.o.Events == nil && x.o.SharedEvents {
		ev, err := SharedEvents(o.PinRoot)
		if err != nil {
			return fail(err)
		}
		a.objs = append(a.objs, ev.Ring, ev.Lost)
		x.o.Events = ev
	}
	if err := os.Mkdir(x.tmp, 0o700); err != nil {
		return fail(err)
	}
	x.onUndo(func() { os.RemoveAll(x.tmp) })
	var eg *egressPart
	if spec.Egress != nil {
		if eg, err = a.attachEgress(x); err != nil {
			return fail(err)
		}
		m.Slot, m.Caps, m.Copy = eg.slot, eg.set.caps, eg.copy
		if eg.shared {
			m.Ring = x.o.Events.ringID()
		}
	} else if err := a.ownEvents(x.o.Events); err != nil {
		return fail(err)
	}
	if spec.Exec != nil {
		if err := a.attachExec(x); err != nil {
			return fail(err)
		}
	}
	if err := a.pinMeta(x.tmp, m); err != nil {
		return fail(err)
	}
	if err := a.pinRecord(x.tmp, spec.Record); err != nil {
		return fail(err)
	}
	if eg != nil {
		if err := eg.commit(); err != nil {
			return fail(err)
		}
	}
	// The new policy is in force: now retire the old one and take the name.
	if x.old != nil && x.old.Parts&partExec != 0 && (spec.Exec == nil || x.old.Cgroup != cgid) {
		withdrawPinned(o.PinRoot, x.dir, x.old.Cgroup, false)
	}
	if x.old != nil && x.old.Parts&partEgress != 0 {
		if eg != nil && eg.reused {
			eg.set.giveBack(x.old.Slot) // the same copy and cgroup: the links stay
		} else {
			releaseEgress(o.PinRoot, x.dir, *x.old, o.Keep)
		}
	}
	if err := os.RemoveAll(x.dir); err != nil {
		return fail(fmt.Errorf("replace %s: %w", x.dir, err))
	}
	if err := os.Rename(x.tmp, x.dir); err != nil {
		return fail(err)
	}
	x.commit()
	return a, nil
}

// attachExec makes the attachment's record of its exec rules, pins it and
// publishes the rules in the host-wide table.
func (a *Attachment) attachExec(x *attaching) error {
	record, err := newExecRecord(x.spec.Exec)
	if err != nil {
		return err
	}
	a.objs = append(a.objs, record)
	if err := record.Pin(filepath.Join(x.tmp, pinExecRecord)); err != nil {
		return err
	}
	var oldRecord *ebpf.Map
	if x.hadExec() {
		if oldRecord, err = ebpf.LoadPinnedMap(filepath.Join(x.dir, pinExecRecord), nil); err == nil {
			defer oldRecord.Close()
		}
	}
	target := execTarget{root: x.o.PinRoot, backend: x.o.ExecBackend, cgid: x.cgid, events: a.Events}
	if err := publishExec(target, x.spec.Exec, x.spec.Visibility&policy.VisExecs != 0, record, oldRecord); err != nil {
		return err
	}
	if !x.hadExec() {
		x.onUndo(func() { withdrawExec(x.o.PinRoot, x.cgid, record, x.o.Keep) })
	}
	return nil
}

// ownEvents gives an exec-only attachment its event ring and lost counters.
func (a *Attachment) ownEvents(shared *EventMaps) error {
	if shared != nil {
		a.Events = *shared
		return nil
	}
	ev, err := NewEventMaps()
	if err != nil {
		return err
	}
	a.objs = append(a.objs, ev.Ring, ev.Lost)
	a.Events = *ev
	return nil
}

func (a *Attachment) pinMeta(dir string, m meta) error {
	mm, err := ebpf.NewMap(&ebpf.MapSpec{Name: "ng_meta", Type: ebpf.Array, KeySize: 4, ValueSize: uint32(binary.Size(m)), MaxEntries: 1})
	if err != nil {
		return err
	}
	a.objs = append(a.objs, mm)
	if err := mm.Put(uint32(0), m); err != nil {
		return err
	}
	return mm.Pin(filepath.Join(dir, pinMeta))
}

// ErrOtherVersion is an attachment pinned by a nriguard of another pin
// version: it stays in force, but this one cannot read it.
type ErrOtherVersion struct {
	ID      string
	Version uint32 // 1: before versions
	// what version 1's meta says (0 for other versions)
	Owner  Owner
	Cgroup uint64
}

func (e *ErrOtherVersion) Error() string {
	return fmt.Sprintf("%s was pinned by a nriguard of pin version %d (this one reads version %d): "+
		"it stays in force; restart the container to bring it under this version", e.ID, e.Version, PinVersion)
}

// metaV1Size is the size of version 1's meta, which began with its digest
// (then the cgroup id, parts and owner).
const metaV1Size = 80

func readMeta(dir string) (meta, error) {
	var v meta
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, pinMeta), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return v, err
	}
	defer m.Close()
	if m.ValueSize() != uint32(binary.Size(v)) {
		raw := make([]byte, m.ValueSize())
		if err := m.Lookup(uint32(0), &raw); err != nil || len(raw) < 8 {
			return v, fmt.Errorf("%s: meta of %d bytes: %v", dir, len(raw), err)
		}
		other := &ErrOtherVersion{ID: filepath.Base(dir), Version: binary.LittleEndian.Uint32(raw)}
		if len(raw) == metaV1Size {
			other.Version = 1
			other.Cgroup = binary.LittleEndian.Uint64(raw[32:])
			other.Owner = Owner(binary.LittleEndian.Uint64(raw[48:]))
		}
		return v, other
	}
	if err := m.Lookup(uint32(0), &v); err != nil {
		return v, err
	}
	if v.Version != PinVersion {
		return v, &ErrOtherVersion{ID: filepath.Base(dir), Version: v.Version}
	}
	return v, nil
}

// recordChunk is the size of a record map's values: a record is pinned as
// an array of them, its length in the first eight bytes.
const recordChunk = 4096

func (a *Attachment) pinRecord(dir string, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	full := binary.LittleEndian.AppendUint64(nil, uint64(len(data)))
	full = append(full, data...)
	n := (len(full) + recordChunk - 1) / recordChunk
	rm, err := ebpf.NewMap(&ebpf.MapSpec{Name: "ng_record", Type: ebpf.Array, KeySize: 4, ValueSize: recordChunk, MaxEntries: uint32(n)})
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	a.objs = append(a.objs, rm)
	full = append(full, make([]byte, n*recordChunk-len(full))...)
	for i := range n {
		if err := rm.Put(uint32(i), full[i*recordChunk:(i+1)*recordChunk]); err != nil {
			return fmt.Errorf("record: %w", err)
		}
	}
	return rm.Pin(filepath.Join(dir, pinRecord))
}

// ReadRecord returns what was pinned as id's Spec.Record: nil if nothing
// was, ErrOtherVersion if another version pinned id.
func ReadRecord(root, id string) ([]byte, error) {
	dir := filepath.Join(pinRootOr(root), id)
	if _, err := readMeta(dir); err != nil {
		return nil, err
	}
	rm, err := ebpf.LoadPinnedMap(filepath.Join(dir, pinRecord), &ebpf.LoadPinOptions{ReadOnly: true})
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	defer rm.Close()
	if rm.ValueSize() != recordChunk {
		return nil, fmt.Errorf("%s: record of %d-byte chunks, want %d", id, rm.ValueSize(), recordChunk)
	}
	var full []byte
	chunk := make([]byte, recordChunk)
	for i := range rm.MaxEntries() {
		if err := rm.Lookup(i, &chunk); err != nil {
			return nil, err
		}
		full = append(full, chunk...)
	}
	size := binary.LittleEndian.Uint64(full)
	if size > uint64(len(full)-8) {
		return nil, fmt.Errorf("%s: record of %d bytes in %d", id, size, len(full)-8)
	}
	return full[8 : 8+size], nil
}

// complete reports whether every pin of an attachment's parts is there.
func complete(dir string, parts uint64) bool {
	var names []string
	if parts&partEgress != 0 {
		for _, l := range egressLinks {
			if !l.names || parts&partNames != 0 {
				names = append(names, l.pin)
			}
		}
	}
	if parts&partExec != 0 {
		names = append(names, pinExecRecord)
	}
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			return false
		}
	}
	return true
}

// Close releases this process's handles; the pins keep the policy in force.
func (a *Attachment) Close() error {
	a.close()
	return nil
}

func (a *Attachment) close() {
	for _, l := range a.links {
		l.Close()
	}
	for i := len(a.objs) - 1; i >= 0; i-- {
		a.objs[i].Close()
	}
	a.links, a.objs = nil, nil
}

// Detach removes the attachment's pins and releases its handles: the
// programs leave the cgroup and the maps are freed.
func (a *Attachment) Detach() error {
	err := Detach(a.root, a.ID)
	a.close()
	return err
}

// Detach removes what any process pinned for id under root (DefaultPinRoot
// when empty): its programs off the cgroup, its slot in the shared egress
// programs and its entries in the host-wide exec maps, then its pins, which
// hold the last references to its links and maps, so nothing stays
// attached. What it was the last user of goes too. Detaching what is not
// there is fine.
func Detach(root, id string) error { return detach(pinRootOr(root), id, false) }

// DetachKeep is Detach for a daemon: the copies of the egress programs and
// the exec program stay for the next container even when id was their last
// user (RemoveIdle removes them).
func DetachKeep(root, id string) error { return detach(pinRootOr(root), id, true) }

func detach(root, id string, keep bool) error {
	if err := checkID(id); err != nil {
		return fmt.Errorf("detach: %w", err)
	}
	return WithHostLock(func() error { return detachLocked(root, id, keep) })
}

func detachLocked(root, id string, keep bool) error {
	dir := filepath.Join(root, id)
	m, err := readMeta(dir) // (another version's: its directory is removed, and its links with it)
	if err == nil && m.Parts&partEgress != 0 {
		if err := releaseEgress(root, dir, m, keep); err != nil {
			return fmt.Errorf("detach %s: %w", id, err)
		}
	}
	if err == nil && m.Parts&partExec != 0 {
		if err := withdrawPinned(root, dir, m.Cgroup, keep); err != nil {
			return fmt.Errorf("detach %s: %w", id, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("detach %s: %w", id, err)
	}
	var other *ErrOtherVersion
	if errors.As(err, &other) {
		// its slot and exec entries are in shared pins of its version:
		// those go with the last attachment of that version
		removeOtherShared(root)
	}
	return nil
}

// removeOtherShared removes the shared pins of other pin versions (_egress,
// _events, _exec of version 1; _*-vN) that no attachment of that version
// still uses.
func removeOtherShared(root string) {
	used := map[uint32]bool{}
	ids, _ := List(root)
	for _, id := range ids {
		var other *ErrOtherVersion
		if _, err := readMeta(filepath.Join(root, id)); errors.As(err, &other) {
			used[other.Version] = true
		}
	}
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		version, ok := sharedVersion(e.Name())
		if ok && version != PinVersion && !used[version] {
			os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
}

// sharedVersion is the pin version of a shared directory's name.
func sharedVersion(name string) (uint32, bool) {
	for _, base := range []string{"_egress", "_events", "_exec"} {
		if name == base {
			return 1, true
		}
		if rest, ok := strings.CutPrefix(name, base+"-v"); ok {
			v, err := strconv.ParseUint(rest, 10, 32)
			return uint32(v), err == nil
		}
	}
	return 0, false
}

// OwnerOf tells which kind of process attached id (0 if unknown).
func OwnerOf(root, id string) Owner {
	m, err := readMeta(filepath.Join(pinRootOr(root), id))
	var other *ErrOtherVersion
	if errors.As(err, &other) {
		return other.Owner
	} else if err != nil {
		return 0
	}
	return m.Owner
}

// Pinned is the cgroup id a complete attachment of this pin version
// holds; an error says why there is none (ErrOtherVersion: one of another
// version).
func Pinned(root, id string) (uint64, error) {
	dir := filepath.Join(pinRootOr(root), id)
	m, err := readMeta(dir)
	if err != nil {
		return 0, err
	}
	if !complete(dir, m.Parts) {
		return 0, fmt.Errorf("%s: the attachment is incomplete", id)
	}
	return m.Cgroup, nil
}

// CgroupOf is the cgroup id an attachment holds, if it is complete.
func CgroupOf(root, id string) (uint64, bool) {
	dir := filepath.Join(pinRootOr(root), id)
	m, err := readMeta(dir)
	if err != nil || !complete(dir, m.Parts) {
		return 0, false
	}
	return m.Cgroup, true
}

// CgroupOwners maps policed cgroup ids to the ids pinned under root, from
// their meta maps: what a reader needs to name the container of an event.
func CgroupOwners(root string) map[uint64]string {
	root = pinRootOr(root)
	ids, _ := List(root)
	out := make(map[uint64]string, len(ids))
	for _, id := range ids {
		if m, err := readMeta(filepath.Join(root, id)); err == nil {
			out[m.Cgroup] = id
		}
	}
	return out
}
