package bpf

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cilium/ebpf"
)

// slotState is what a slot holds. A container's slot keeps its tables when
// it goes: the next container refills them in place, which costs array
// writes only, where putting tables in or out of a slot makes the kernel
// wait for every running BPF program (synchronize_rcu) each time.
type slotState struct {
	State uint32
	_     uint32
	Since int64 // unix nanoseconds it entered the state: the longest idle is reused first
}

// readyingStale: a slot being readied for longer was left so by a process
// that died; it counts as empty.
const readyingStale = time.Minute

// idleBudget bounds the memory of the tables a copy keeps for containers to
// come (gone and idle slots).
const idleBudget = 4 << 20

// states reads every slot's state.
func (s *egressSet) states() ([]slotState, error) {
	st := make([]slotState, int(s.slots.ValueSize())/binary.Size(slotState{}))
	if err := s.slots.Lookup(uint32(0), st); err != nil {
		return nil, fmt.Errorf("egress slots: %w", err)
	}
	return st, nil
}

func (s *egressSet) setStates(st []slotState) error {
	if err := s.slots.Put(uint32(0), st); err != nil {
		return fmt.Errorf("egress slots: %w", err)
	}
	return nil
}

// used counts the slots in use.
func (s *egressSet) used() (int, error) {
	st, err := s.states()
	return count(st, slotUsed), err
}

func count(st []slotState, states ...uint32) int {
	n := 0
	for _, x := range st {
		if slices.Contains(states, x.State) {
			n++
		}
	}
	return n
}

var errFull = errors.New("all slots of the egress programs are in use")

// takeSlot finds a slot and marks it used: an idle one (the longest idle),
// whose tables are refilled (reuse); else a gone one, once no program can
// read it any more (one wait for all gone slots); else an empty one, which
// gets tables. The caller holds the host lock.
func (s *egressSet) takeSlot() (slot uint32, reuse bool, err error) {
	st, err := s.states()
	if err != nil {
		return 0, false, err
	}
	pick := func() int {
		now := time.Now().UnixNano()
		best, gone, empty := -1, -1, -1
		for i, x := range st {
			switch {
			case x.State == slotIdle && (best < 0 || x.Since < st[best].Since):
				best = i
			case x.State == slotGone && gone < 0:
				gone = i
			case (x.State == slotEmpty || x.State == slotReadying && now-x.Since > int64(readyingStale)) && empty < 0:
				empty = i
			}
		}
		if best < 0 && gone >= 0 {
			if s.fence(st, gone) == nil {
				best = gone
			}
		}
		if best < 0 {
			best = empty
		}
		return best
	}
	best := pick()
	if best < 0 {
		return 0, false, fmt.Errorf("%w (%d)", errFull, len(st))
	}
	reuse = st[best].State == slotIdle
	st[best] = slotState{State: slotUsed}
	return uint32(best), reuse, s.setStates(st)
}

// fence waits until no program that may have read a gone slot runs, and
// marks the gone slots of st idle (not written back: the caller does).
// at is a gone slot, whose table the wait is made with.
func (s *egressSet) fence(st []slotState, at int) error {
	if err := s.barrier(uint32(at)); err != nil {
		return err
	}
	for i := range st {
		if st[i].State == slotGone {
			st[i].State = slotIdle
		}
	}
	return nil
}

// giveBack marks a slot gone, its tables kept for a later container; past the
// budget, the tables of the longest gone or idle are taken out. It returns
// how many slots are still used. No cgroup's config may name the slot any
// more.
func (s *egressSet) giveBack(slot uint32) (int, error) {
	st, err := s.states()
	if err != nil {
		return 0, err
	}
	now := time.Now().UnixNano()
	if int(slot) < len(st) {
		st[slot] = slotState{State: slotGone, Since: now}
	}
	var kept []int
	for i, x := range st {
		if x.State == slotIdle || x.State == slotGone {
			kept = append(kept, i)
		}
	}
	if keep := max(1, idleBudget/s.tableBytes()); len(kept) > keep {
		slices.SortFunc(kept, func(a, b int) int { return cmp.Compare(st[a].Since, st[b].Since) })
		for _, i := range kept[:len(kept)-keep] {
			if err := s.clear(uint32(i)); err != nil {
				return 0, err
			}
			st[i] = slotState{}
		}
	}
	return count(st, slotUsed), s.setStates(st)
}

// reserve marks empty slots as being readied, until n slots are idle, gone
// or being readied, and returns them with the gone slots. The caller holds
// the host lock.
func (s *egressSet) reserve(n int) (readying, gone []uint32, err error) {
	st, err := s.states()
	if err != nil {
		return nil, nil, err
	}
	have := count(st, slotIdle, slotGone, slotReadying)
	now := time.Now().UnixNano()
	for i := range st {
		switch {
		case st[i].State == slotGone:
			gone = append(gone, uint32(i))
		case st[i].State == slotEmpty && have < n:
			st[i] = slotState{State: slotReadying, Since: now}
			readying = append(readying, uint32(i))
			have++
		}
	}
	if len(readying) == 0 {
		return nil, gone, nil
	}
	return readying, gone, s.setStates(st)
}

// readied marks slots that now have tables, and gone slots no program
// reads any more, idle. The caller holds the host lock.
func (s *egressSet) readied(readied, fenced []uint32) error {
	st, err := s.states()
	if err != nil {
		return err
	}
	for _, i := range readied {
		if int(i) < len(st) && st[i].State == slotReadying {
			st[i] = slotState{State: slotIdle}
		}
	}
	for _, i := range fenced {
		if int(i) < len(st) && st[i].State == slotGone {
			st[i].State = slotIdle
		}
	}
	return s.setStates(st)
}

// barrier returns once every program that was running when it was called
// has ended: it writes a slot's IPv4 table back in its place, and the
// kernel waits for running programs (synchronize_rcu) after any update of
// a map of maps. Without tables there is nothing to wait for.
func (s *egressSet) barrier(slot uint32) error {
	var id ebpf.MapID
	if err := s.V4Tables.Lookup(slot, &id); errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	m, err := ebpf.NewMapFromID(id)
	if err != nil {
		return err
	}
	defer m.Close()
	return s.V4Tables.Put(slot, m)
}

// clear takes a slot's tables out (the caller marks it empty).
func (s *egressSet) clear(slot uint32) error {
	for _, m := range []*ebpf.Map{s.V4Tables, s.V6Tables, s.PortTables} {
		if err := m.Delete(slot); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}

const (
	slotEmpty    = iota // no tables
	slotUsed            // a container's
	slotGone            // tables of a container that went: a program that read its config may still be running
	slotIdle            // tables no running program reads: refilled at once for the next container
	slotReadying        // being given tables ahead of need, without the host lock
)
