package bpf

import (
	"sync"

	"github.com/nriguard/nriguard/policy"
)

// PoolTrieCap is what each trie of a pooled set can hold. The tries are not
// preallocated, so the cap costs nothing; a policy that needs more gets a
// set loaded for it.
const PoolTrieCap = 1 << 20

// Pool keeps a few copies of the egress programs loaded and verified ahead
// of need, so that attaching a container does not wait for the verifier
// (about 1.4 ms of a start's 2 ms). A daemon keeps one; each Attach that
// takes a set wakes the pool to load another. Idle sets are attached
// nowhere and are freed by Close or when the process exits.
type Pool struct {
	ev   *EventMaps
	size int
	sets chan *egressObjects
	wake chan struct{}
	done chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  error
}

// NewPool keeps size sets writing to ev ready, loading them in the
// background.
func NewPool(ev *EventMaps, size int) *Pool {
	p := &Pool{ev: ev, size: size, sets: make(chan *egressObjects, size), wake: make(chan struct{}, 1), done: make(chan struct{})}
	p.wg.Add(1)
	go p.fill()
	return p
}

func (p *Pool) fill() {
	defer p.wg.Done()
	for {
		for len(p.sets) < p.size {
			s, err := loadEgressSet(p.ev, PoolTrieCap, PoolTrieCap, PoolTrieCap)
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
	return ev == p.ev && len(c.V4) <= PoolTrieCap && len(c.V6) <= PoolTrieCap && len(c.Ports) <= PoolTrieCap
}

// take returns a ready set, or nil if none is ready, and has the pool load
// another.
func (p *Pool) take() *egressObjects {
	defer func() {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}()
	select {
	case s := <-p.sets:
		return s
	default:
		return nil
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
