package bpf

import (
	"fmt"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/nriguard/nriguard/policy"
)

// Pool keeps a few copies of the egress programs loaded and verified ahead
// of need, so that attaching a container does not wait for the verifier
// (about 1.4 ms of a start's 2 ms). A daemon keeps one. Pool.Detach gives a
// stopped container's set back, emptied; the pool loads more, in the
// background, only when an Attach finds it empty: containers that come and
// go make the kernel load and free no programs at all. (Measured: loading
// in the background at every start still slowed starts on two cores, p90
// 2.2 ms against 1.0 ms without.) Idle sets are attached nowhere and are
// freed by Close or when the process exits.
type Pool struct {
	ev   *EventMaps
	size int
	sets chan *egressSet
	wake chan struct{}
	done chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  error
}

// NewPool keeps size sets writing to ev ready, loading them in the
// background.
func NewPool(ev *EventMaps, size int) *Pool {
	p := &Pool{ev: ev, size: size, sets: make(chan *egressSet, size), wake: make(chan struct{}, 1), done: make(chan struct{})}
	p.wg.Add(1)
	go p.fill()
	return p
}

func (p *Pool) fill() {
	defer p.wg.Done()
	for {
		for len(p.sets) < p.size {
			s, err := loadEgressSet(p.ev, [3]int{PoolTableCap, PoolTableCap, PoolTableCap})
			p.mu.Lock()
			p.err = err
			p.mu.Unlock()
			if err != nil {
				break // Attach loads its own, and reports why it cannot
			}
			select {
			case p.sets <- s:
			case <-p.done:
				s.Close()
				return
			}
		}
		select {
		case <-p.wake:
		case <-p.done:
			return
		}
	}
}

func (p *Pool) fits(ev *EventMaps, c *policy.Compiled) bool {
	sizes := tableSizes(c)
	return ev == p.ev && sizes[0] <= PoolTableCap && sizes[1] <= PoolTableCap && sizes[2] <= PoolTableCap
}

// take returns a ready set, or nil if none is ready. Stopped containers
// give their sets back (Detach), so the pool loads more only when it runs
// empty.
func (p *Pool) take() *egressSet {
	select {
	case s := <-p.sets:
		if len(p.sets) == 0 {
			p.wakeUp()
		}
		return s
	default:
		p.wakeUp()
		return nil
	}
}

func (p *Pool) wakeUp() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Err is why the last set could not be loaded (nil if it could).
func (p *Pool) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Ready is how many sets are loaded and waiting.
func (p *Pool) Ready() int { return len(p.sets) }

// Close stops loading and frees the idle sets.
func (p *Pool) Close() {
	close(p.done)
	p.wg.Wait()
	for {
		select {
		case s := <-p.sets:
			s.Close()
		default:
			return
		}
	}
}

// Detach detaches id like Detach, and keeps the egress programs and maps
// for the next container: emptied, attached nowhere. The host-wide exec
// program, if id was its last user, stays too (its creation takes tens of
// milliseconds); the daemon removes it with RemoveIdleExec after a while. Containers come and
// go without the kernel loading or freeing programs. Only sets that this
// pool could have made are kept (its ring, tries of its size); the rest go.
func (p *Pool) Detach(root, id string) error {
	root = pinRootOr(root)
	if err := checkID(id); err != nil {
		return fmt.Errorf("detach: %w", err)
	}
	set, links := p.reclaim(filepath.Join(root, id))
	// Take the programs off the cgroup now: removing the pins alone lets
	// the kernel release the links a moment later, and by then the set may
	// serve another container.
	for _, lk := range links {
		if set != nil && lk.Detach() != nil {
			set.Close()
			set = nil
		}
		defer lk.Close()
	}
	if err := detach(root, id, true); err != nil {
		if set != nil {
			set.Close()
		}
		return err
	}
	if set == nil {
		return nil
	}
	if err := set.empty(); err != nil {
		set.Close()
		return nil // the container is detached; the set is just not kept
	}
	select {
	case <-p.done: // closed: nothing will take it
		set.Close()
		return nil
	default:
	}
	select {
	case p.sets <- set:
	default:
		set.Close()
	}
	return nil
}

// reclaim gathers the egress set pinned in dir, if this pool can reuse it,
// and its links.
func (p *Pool) reclaim(dir string) (*egressSet, []link.Link) {
	m, err := readMeta(dir)
	if err != nil || m.Parts&partEgress == 0 {
		return nil, nil
	}
	s := &egressSet{}
	var links []link.Link
	ok := false
	defer func() {
		if !ok {
			s.Close()
			for _, lk := range links {
				lk.Close()
			}
		}
	}()
	for _, l := range egressLinks {
		lk, err := link.LoadPinnedLink(filepath.Join(dir, l.pin), nil)
		if err != nil {
			return nil, nil
		}
		links = append(links, lk)
		info, err := lk.Info()
		if err != nil {
			return nil, nil
		}
		if *l.prog(&s.egressPrograms), err = ebpf.NewProgramFromID(info.Program); err != nil {
			return nil, nil
		}
	}
	for name, m := range s.tables() {
		if *m, err = ebpf.LoadPinnedMap(filepath.Join(dir, name), nil); err != nil {
			return nil, nil
		}
		if (*m).MaxEntries() != PoolTableCap {
			return nil, nil // sized to one policy
		}
	}
	// The ring, lost counters, socket cache and globals are not pinned:
	// find them among the maps the programs use.
	info, err := s.NgSkbEgress.Info()
	if err != nil {
		return nil, nil
	}
	ids, _ := info.MapIDs()
	ringID, lostID := ringID(p.ev.Ring), ringID(p.ev.Lost)
	for _, id := range ids {
		mp, err := ebpf.NewMapFromID(id)
		if err != nil {
			return nil, nil
		}
		mi, err := mp.Info()
		switch {
		case err != nil:
			mp.Close()
		case id == ringID && s.Events == nil:
			s.Events = mp
		case id == lostID && s.LostEvents == nil:
			s.LostEvents = mp
		case mi.Name == ".bss" && s.bss == nil:
			s.bss = mp
		case mi.Name == egressMapSockVerdicts && s.SockVerdicts == nil:
			s.SockVerdicts = mp
		default:
			mp.Close()
		}
	}
	if s.Events == nil || s.LostEvents == nil || s.bss == nil || s.SockVerdicts == nil {
		return nil, nil // not writing to this pool's ring
	}
	ok = true
	return s, links
}
