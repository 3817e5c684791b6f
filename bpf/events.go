package bpf

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
)

// EventMaps are a ring buffer the programs write events to and its lost
// counters: per event kind, how many records found no room in it. Every
// program that writes to the ring counts its losses there.
type EventMaps struct {
	Ring, Lost *ebpf.Map
	id         uint32 // the ring's map id, once asked
}

// ringID is the ring's map id: shared copies of the egress programs are
// found by it.
func (m *EventMaps) ringID() uint32 {
	if m.id == 0 {
		m.id = uint32(ringID(m.Ring))
	}
	return m.id
}

// NewEventMaps makes a ring buffer and its lost counters.
func NewEventMaps() (*EventMaps, error) { return NewEventMapsSize(EventRingSize) }

// NewEventMapsSize makes a ring buffer of size bytes (a power of two, at
// least a page) and its lost counters.
func NewEventMapsSize(size int) (*EventMaps, error) {
	ring, err := ebpf.NewMap(&ebpf.MapSpec{Name: "ng_events", Type: ebpf.RingBuf, MaxEntries: uint32(size)})
	if err != nil {
		return nil, err
	}
	lost, err := ebpf.NewMap(lostSpec())
	if err != nil {
		ring.Close()
		return nil, err
	}
	return &EventMaps{Ring: ring, Lost: lost}, nil
}

func lostSpec() *ebpf.MapSpec {
	return &ebpf.MapSpec{Name: "ng_lost", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: lostKinds}
}

// Close closes this process's handles.
func (m *EventMaps) Close() {
	m.Ring.Close()
	m.Lost.Close()
}

// SharedEvents returns the event ring buffer and lost counters pinned under
// root/_events, making and pinning them first if they are not there (or not
// of this version's shape). A daemon that restarts reads the ring its
// containers' programs still write.
func SharedEvents(root string) (*EventMaps, error) {
	root = pinRootOr(root)
	if m, err := openSharedEvents(root); err == nil {
		return m, nil
	}
	if err := ensurePinRoot(root); err != nil {
		return nil, err
	}
	ev, err := NewEventMaps()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(root, dirEvents)
	os.RemoveAll(dir)
	err = os.Mkdir(dir, 0o700)
	if err == nil {
		err = ev.Ring.Pin(filepath.Join(dir, pinRing))
	}
	if err == nil {
		err = ev.Lost.Pin(filepath.Join(dir, pinLost))
	}
	if err != nil {
		os.RemoveAll(dir)
		ev.Close()
		return nil, fmt.Errorf("pin shared events: %w", err)
	}
	return ev, nil
}

// OpenSharedEvents returns the pinned shared ring without making one:
// os.ErrNotExist if there is none.
func OpenSharedEvents(root string) (*EventMaps, error) { return openSharedEvents(pinRootOr(root)) }

func openSharedEvents(root string) (*EventMaps, error) {
	dir := filepath.Join(root, dirEvents)
	ring, err := ebpf.LoadPinnedMap(filepath.Join(dir, pinRing), nil)
	if err != nil {
		return nil, os.ErrNotExist
	}
	lost, err := ebpf.LoadPinnedMap(filepath.Join(dir, pinLost), nil)
	if err != nil || lost.MaxEntries() != lostKinds || ring.MaxEntries() != uint32(EventRingSize) {
		ring.Close()
		lost.Close()
		return nil, os.ErrNotExist
	}
	return &EventMaps{Ring: ring, Lost: lost}, nil
}

// RemoveSharedEvents unpins the shared ring if no attachment and no exec
// program is left under root to write to it and no daemon runs (DaemonLock),
// and reports whether it did. Readers that hold it open go on reading what
// it has.
func RemoveSharedEvents(root string) (removed bool, err error) {
	root = pinRootOr(root)
	err = WithHostLock(func() error {
		if daemonRuns() {
			return nil
		}
		ids, err := List(root)
		if err != nil || len(ids) > 0 {
			return err
		}
		if _, err := os.Stat(filepath.Join(root, dirExec)); err == nil {
			return nil
		}
		if _, err := os.Stat(filepath.Join(root, dirEvents)); err != nil {
			return nil
		}
		removed = true
		return os.RemoveAll(filepath.Join(root, dirEvents))
	})
	return removed, err
}

// ringID identifies a ring (to tell whether a pin still names the ring a
// reader reads).
func ringID(m *ebpf.Map) ebpf.MapID {
	info, err := m.Info()
	if err != nil {
		return 0
	}
	id, _ := info.ID()
	return id
}

// SharedEventsID is the id of the ring pinned under root, or 0.
func SharedEventsID(root string) ebpf.MapID {
	m, err := ebpf.LoadPinnedMap(filepath.Join(pinRootOr(root), dirEvents, pinRing), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return 0
	}
	defer m.Close()
	return ringID(m)
}

// RingID identifies the ring (SharedEventsID tells whether a pin still
// names it).
func (m *EventMaps) RingID() ebpf.MapID { return ringID(m.Ring) }
