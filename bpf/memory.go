package bpf

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
)

// Memory is what the kernel charges (the memlock fdinfo reports: the maps'
// entries and the programs' images) for the objects pinned in dir and its
// subdirectories: an attachment's own maps (its tables, exec record, meta,
// record) and, for one with its own ring, its private copy of the egress
// programs; in the shared ring's directory, the ring and its counters.
// The programs of a shared copy are not an attachment's: SharedMemory
// counts them once.
func Memory(dir string) (int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		switch {
		case e.IsDir():
			n, err := Memory(p)
			if err != nil {
				return 0, err
			}
			total += n
		case strings.HasPrefix(e.Name(), "map_") || e.Name() == pinMeta || e.Name() == pinRecord || e.Name() == pinRing || e.Name() == pinLost:
			m, err := ebpf.LoadPinnedMap(p, &ebpf.LoadPinOptions{ReadOnly: true})
			if err != nil {
				return 0, err
			}
			total += fdMemlock(m.FD())
			m.Close()
		case strings.HasPrefix(e.Name(), "prog_"):
			prog, err := ebpf.LoadPinnedProgram(p, &ebpf.LoadPinOptions{ReadOnly: true})
			if err != nil {
				return 0, err
			}
			total += fdMemlock(prog.FD())
			prog.Close()
		}
	}
	return total, nil
}

// SharedMemory is what the kernel charges for what attachments under root
// share: the copies of the egress programs with the tables their idle
// slots keep, the host-wide exec program's maps, the shared ring (this pin
// version's: SharedPins has the others').
func SharedMemory(root string) (int64, error) {
	pins, err := SharedPins(root)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, p := range pins {
		if p.Version == PinVersion {
			total += p.Memory
		}
	}
	return total, nil
}

// sharedMemory is the memory of one shared directory; for copies of the
// egress programs, with the tables their idle slots keep.
func sharedMemory(dir string, egress bool) (int64, error) {
	total, err := Memory(dir)
	if os.IsNotExist(err) {
		return 0, nil // gone meanwhile
	} else if err != nil {
		return 0, err
	}
	if !egress {
		return total, nil
	}
	copies, _ := os.ReadDir(dir)
	for _, c := range copies {
		n, err := idleTables(filepath.Join(dir, c.Name()))
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// idleTables is the memory of the tables a copy's idle slots keep (the
// slots in use count as their attachments').
func idleTables(dir string) (int64, error) {
	s, err := openEgressSet(dir, false, [3]uint32{})
	if err != nil {
		return 0, nil // being removed
	}
	defer s.Close()
	st, err := s.states()
	if err != nil {
		return 0, err
	}
	var total int64
	for i, x := range st {
		if x.State != slotIdle && x.State != slotGone {
			continue
		}
		for _, outer := range []*ebpf.Map{s.V4Tables, s.V6Tables, s.PortTables} {
			var id ebpf.MapID
			if outer.Lookup(uint32(i), &id) != nil {
				continue
			}
			if m, err := ebpf.NewMapFromID(id); err == nil {
				total += fdMemlock(m.FD())
				m.Close()
			}
		}
	}
	return total, nil
}

func fdMemlock(fd int) int64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", fd))
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "memlock:"); ok {
			var n int64
			fmt.Sscan(strings.TrimSpace(v), &n)
			return n
		}
	}
	return 0
}

// Memory is what the kernel charges for this attachment's own objects, as
// Memory(a.Dir) would say, from the handles it still holds (call it before
// Close).
func (a *Attachment) Memory() int64 {
	var total int64
	for _, o := range a.objs {
		switch o := o.(type) {
		case *ebpf.Map:
			total += fdMemlock(o.FD())
		case *egressSet:
			for _, m := range append(slices.Collect(maps.Values(o.setMaps())), &o.Events, &o.LostEvents) {
				if *m != nil {
					total += fdMemlock((*m).FD())
				}
			}
			for _, l := range egressLinks {
				if p := *l.prog(&o.egressPrograms); p != nil {
					total += fdMemlock(p.FD())
				}
			}
		}
	}
	return total
}
