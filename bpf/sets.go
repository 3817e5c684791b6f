package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/nriguard/nriguard/policy"
)

// Where the copies of the egress programs live. Attachments that report to
// one ring (the shared one of a daemon and the OCI hooks) share a copy per
// size class (and DNS names or not), pinned under <root>/_egress-vN/r<ring>-<caps>[-names]-<n>: the first
// container of a class loads it, the others only fill their tables and
// attach. An attachment with a ring of its own (nriguard run) has a private
// copy with one slot, pinned in its own directory (egress/).

func sharedSetDir(root string, ring uint32, caps [3]uint32, names bool, n uint32) string {
	dns := ""
	if names {
		dns = "-names"
	}
	return filepath.Join(root, dirEgress, fmt.Sprintf("r%d-%d-%d-%d%s-%d", ring, caps[0], caps[1], caps[2], dns, n))
}

// maxCopies bounds the copies of one size class (setSlots containers
// each).
const maxCopies = 64

// setDir is where the copy an attachment uses is pinned.
func (m meta) setDir(root, dir string) string {
	if m.Ring == 0 {
		return filepath.Join(dir, dirPrivateSet)
	}
	return sharedSetDir(root, m.Ring, m.Caps, m.Parts&partNames != 0, m.Copy)
}

// egressPart is an attachment's share of a copy: its slot and tables.
type egressPart struct {
	set     *egressSet
	shared  bool
	dir     string // of the set
	slot    uint32
	tables  [3]*ebpf.Map
	reused  bool   // the links of the attachment it replaces serve it
	copy    uint32 // which copy of its size class, if shared
	cgid    uint64
	compile *policy.Compiled
	vis     policy.Visibility
}

// attachEgress gives the cgroup a slot in a copy of the programs with its
// tables, and attaches the programs, unless the attachment it replaces has
// the same copy on the same cgroup: then its links are pinned again and
// the switch is left to commit. Its undo goes with x. The caller holds the
// host lock.
func (a *Attachment) attachEgress(x *attaching) (e *egressPart, err error) {
	spec, cgid, o, dir, tmp := x.spec, x.cgid, x.o, x.dir, x.tmp
	e = &egressPart{cgid: cgid, compile: spec.Egress, vis: spec.Visibility}
	caps, names := sizeClass(spec.Egress), len(spec.Egress.Names) > 0
	var reuse bool
	if o.Events != nil {
		e.shared = true
		a.Events = *o.Events
		// the first copy of the class with a free slot
		for e.copy = 0; ; e.copy++ {
			if e.set, e.dir, err = sharedSet(o.PinRoot, o.Events, caps, names, e.copy); err != nil {
				return nil, err
			}
			e.slot, reuse, err = e.set.takeSlot()
			if !errors.Is(err, errFull) || e.copy+1 == maxCopies {
				break
			}
		}
		if err != nil {
			return nil, err
		}
	} else {
		if e.set, err = loadEgressSet(nil, caps, names, 1); err != nil {
			return nil, err
		}
		e.dir = filepath.Join(tmp, dirPrivateSet)
		a.Events = EventMaps{Ring: e.set.Events, Lost: e.set.LostEvents}
	}
	if !e.shared {
		a.objs = append(a.objs, e.set)
		if err := e.set.pin(e.dir); err != nil {
			return nil, err
		}
		// its own ring too: Memory counts it
		if err := e.set.Events.Pin(filepath.Join(e.dir, "map_events")); err != nil {
			return nil, err
		}
		if err := e.set.LostEvents.Pin(filepath.Join(e.dir, "map_lost_events")); err != nil {
			return nil, err
		}
	}
	if !e.shared {
		if e.slot, reuse, err = e.set.takeSlot(); err != nil {
			return nil, err
		}
	}
	e.reused = x.old != nil && e.shared && x.old.Parts&partEgress != 0 && x.old.Cgroup == cgid && x.old.setDir(o.PinRoot, dir) == e.dir
	x.onUndo(func() { e.undo(a.links, o.Keep) })
	if spec.Egress.HasPrincipals() {
		if err := e.set.ensureSendCheck(e.dir, a.Events); err != nil {
			return nil, err
		}
	}
	if e.tables, err = e.set.tables(e.slot, reuse, spec.Egress); err != nil {
		return nil, err
	}
	for i, t := range e.tables {
		a.objs = append(a.objs, t)
		if err := t.Pin(filepath.Join(tmp, tablePins[i])); err != nil {
			return nil, err
		}
	}
	pt, err := e.set.principals(e.slot, spec.Egress)
	if err != nil {
		return nil, err
	}
	if pt != nil {
		a.objs = append(a.objs, pt)
		if err := pt.Pin(filepath.Join(tmp, pinPrincipals)); err != nil {
			return nil, err
		}
	}
	if !e.reused {
		return e, e.set.attach(spec.Cgroup, tmp, cgid, e.slot, spec.Egress, spec.Visibility, &a.links)
	}
	for _, l := range egressLinks {
		lk, err := link.LoadPinnedLink(filepath.Join(dir, l.pin), nil)
		if l.names && errors.Is(err, os.ErrNotExist) {
			if len(spec.Egress.Names) == 0 {
				continue
			}
			// the first policy of the cgroup to name DNS names
			lk, err = link.AttachCgroup(link.CgroupOptions{Path: spec.Cgroup, Attach: l.attach, Program: *l.prog(&e.set.egressPrograms)})
		}
		if err == nil {
			a.links = append(a.links, lk)
			err = lk.Pin(filepath.Join(tmp, l.pin))
		}
		if err != nil {
			return nil, fmt.Errorf("keep %s: %w", l.pin, err)
		}
	}
	return e, nil
}

// commit puts the new tables in force where the links are the old
// attachment's: the cgroup's config names the new slot.
func (e *egressPart) commit() error {
	if !e.reused {
		return nil
	}
	return e.set.configure(e.cgid, e.slot, e.compile, e.vis)
}

// undo takes back what attachEgress did: the programs off the cgroup
// (unless they were the old attachment's, which stays in force), the slot
// given back, and a shared copy nobody uses removed unless kept.
func (e *egressPart) undo(links []link.Link, keep bool) {
	if !e.reused {
		for _, lk := range links {
			lk.Detach()
		}
		e.set.unconfigure(e.cgid, e.slot)
	}
	if n, err := e.set.giveBack(e.slot); e.shared && err == nil && n == 0 && !keep {
		removeSet(e.dir)
	}
}

// sharedSet returns the copy for ev's ring and a size class pinned under
// root, loading and pinning it first if there is none. The caller holds
// the host lock, and does not close it.
func sharedSet(root string, ev *EventMaps, caps [3]uint32, names bool, n uint32) (*egressSet, string, error) {
	dir := sharedSetDir(root, ev.ringID(), caps, names, n)
	if s, err := openShared(dir, true, caps); err == nil {
		return s, dir, nil
	}
	removeSet(dir) // incomplete: start over
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return nil, "", err
	}
	s, err := loadEgressSet(ev, caps, names, setSlots)
	if err != nil {
		os.Remove(filepath.Dir(dir)) // (if no copy is there: a failure leaves nothing)
		return nil, "", err
	}
	tmp := tmpDir(root, "egress")
	err = s.pin(tmp)
	if err == nil {
		err = os.Rename(tmp, dir)
	}
	if err != nil {
		os.RemoveAll(tmp)
		os.Remove(filepath.Dir(dir))
		s.Close()
		return nil, "", fmt.Errorf("pin the egress programs: %w", err)
	}
	s.Close()
	s, err = openShared(dir, true, caps)
	return s, dir, err
}

// openSets are this process's handles on the shared copies it opened, so
// that an attach or detach does not open a dozen pins again: valid while
// the copy's slot map is the one pinned (a copy removed and made again has
// another inode). Used under the host lock only.
var openSets = map[string]openSet{}

type openSet struct {
	set      *egressSet
	ino      uint64
	programs bool
}

// openShared opens the shared copy pinned in dir, or returns this
// process's open handles on it. The caller holds the host lock, and does
// not close it.
func openShared(dir string, programs bool, caps [3]uint32) (*egressSet, error) {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "map_slots"), &st); err != nil {
		closeOpenSet(dir)
		return nil, err
	}
	if o, ok := openSets[dir]; ok && o.ino == st.Ino && (o.programs || !programs) {
		return o.set, nil
	}
	closeOpenSet(dir)
	s, err := openEgressSet(dir, programs, caps)
	if err != nil {
		return nil, err
	}
	openSets[dir] = openSet{s, st.Ino, programs}
	return s, nil
}

// closeOpenSet closes this process's handles on the copy in dir, if it
// has some.
func closeOpenSet(dir string) {
	if o, ok := openSets[dir]; ok {
		o.set.Close()
		delete(openSets, dir)
	}
}

// releaseEgress takes an attachment (pinned in dir) off its copy of the
// programs: the programs off the cgroup, its config cleared, its slot
// given back; a shared copy nobody uses any more goes unless kept. The
// caller holds the host lock.
func releaseEgress(root, dir string, m meta, keep bool) error {
	for _, l := range egressLinks {
		// Detached now: removing the pins alone lets the kernel release
		// the links a moment later.
		if lk, err := link.LoadPinnedLink(filepath.Join(dir, l.pin), nil); err == nil {
			lk.Detach()
			lk.Close()
		}
	}
	setDir := m.setDir(root, dir)
	var s *egressSet
	var err error
	if m.Ring == 0 {
		if s, err = openEgressSet(setDir, false, m.Caps); err == nil {
			defer s.Close()
		}
	} else {
		s, err = openShared(setDir, false, m.Caps)
	}
	if err != nil {
		return nil // gone with its programs
	}
	s.unconfigure(m.Cgroup, m.Slot)
	n, err := s.giveBack(m.Slot)
	if err != nil {
		return err
	}
	if m.Ring != 0 && n == 0 && !keep {
		return removeSet(setDir)
	}
	return nil
}

// RemoveIdle removes what a daemon kept for its next container (DetachKeep):
// the copies of the egress programs that serve no container, and the exec
// program if no container has exec rules. It reports whether it removed
// anything.
func RemoveIdle(root string) (bool, error) {
	root = pinRootOr(root)
	removed := false
	err := WithHostLock(func() error {
		entries, err := os.ReadDir(filepath.Join(root, dirEgress))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		for _, ent := range entries {
			dir := filepath.Join(root, dirEgress, ent.Name())
			s, err := openShared(dir, false, [3]uint32{})
			if err != nil {
				removeSet(dir) // incomplete
				continue
			}
			n, err := s.used()
			if err == nil && n == 0 {
				if err := removeSet(dir); err != nil {
					return err
				}
				removed = true
			}
		}
		r, err := removeIdleExec(root)
		removed = removed || r
		return err
	})
	return removed, err
}

// removeSet unpins a shared copy (its programs go with their last link),
// and _egress/ with its last copy.
func removeSet(dir string) error {
	closeOpenSet(dir)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	os.Remove(filepath.Dir(dir)) // fails while other copies are there
	return nil
}

// PrepareShared loads the copy of the egress programs that serves policies
// of the default size class with ev's ring, if it is not there yet; gives
// empty slots tables until ready have some; and waits for the slots of
// containers that went to be read by no program any more: a daemon does it
// at start and after each attach and detach, so that its containers wait
// neither for the verifier nor for the kernel, which waits for running
// programs whenever tables go in or out of a slot. The host lock is not
// held while it waits, so attaches and detaches go on meanwhile.
func PrepareShared(root string, ev *EventMaps, ready int) error {
	root = pinRootOr(root)
	if err := ensurePinRoot(root); err != nil {
		return err
	}
	caps := [3]uint32{TableCap, TableCap, TableCap}
	var dir string
	var readying, gone []uint32
	s := &egressSet{caps: caps}
	defer s.Close()
	err := WithHostLock(func() error {
		shared, d, err := sharedSet(root, ev, caps, false, 0)
		if err != nil {
			return err
		}
		dir = d
		if readying, gone, err = shared.reserve(ready); err != nil || len(readying)+len(gone) == 0 {
			return err
		}
		// handles of its own for the table maps: the shared ones may be
		// closed meanwhile
		for _, m := range []struct{ to, from **ebpf.Map }{{&s.V4Tables, &shared.V4Tables}, {&s.V6Tables, &shared.V6Tables}, {&s.PortTables, &shared.PortTables}} {
			if *m.to, err = (*m.from).Clone(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || len(readying)+len(gone) == 0 {
		return err
	}
	if len(gone) > 0 && s.barrier(gone[0]) != nil {
		gone = nil
	}
	empty := policy.Compile(policy.Enforce)
	for i, slot := range readying {
		t, err := s.tables(slot, false, empty)
		if err != nil {
			readying = readying[:i] // the rest count as empty once stale
			break
		}
		closeAll(t[:])
	}
	return WithHostLock(func() error {
		shared, err := openShared(dir, false, caps)
		if err != nil {
			return nil // removed meanwhile
		}
		return shared.readied(readying, gone)
	})
}
