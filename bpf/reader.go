package bpf

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/nriguard/nriguard/events"
	"golang.org/x/sys/unix"
)

// EventReader reads the records of one ring and its lost counters as one
// stream of events.Record: decisions, a decode_error for each record that
// does not decode (the stream goes on), and a lost record whenever a
// counter grew (checked every lostCheck, and whenever the ring is empty).
// Only Close ends it.
type EventReader struct {
	rd       *ringbuf.Reader
	lost     *ebpf.Map
	offset   time.Duration
	rec      ringbuf.Record
	deadline atomic.Int64      // unix nanoseconds; 0: none. Set from any goroutine.
	seen     [lostKinds]uint64 // counters as last reported
	checked  time.Time
	pending  []events.Record
	// what it learns of the processes behind records (enrich)
	exePaths exeCache
	senders  flowSenders
}

// lostCheck is how often the lost counters are read while records flow.
const lostCheck = 100 * time.Millisecond

// NewEventReader reads m's events. Losses that happened before it starts
// are reported in its first records.
func NewEventReader(m EventMaps) (*EventReader, error) {
	rd, err := ringbuf.NewReader(m.Ring)
	if err != nil {
		return nil, err
	}
	return &EventReader{rd: rd, lost: m.Lost, offset: bootOffset(), exePaths: exeCache{m: map[exeKey]string{}},
		senders: flowSenders{m: map[uint64]events.Record{}}}, nil
}

// Read fills r with the next record, waiting for one. It returns
// os.ErrDeadlineExceeded after SetDeadline's time once the ring is empty
// (within lostCheck of it, if the deadline is set while Read waits), and
// ringbuf.ErrClosed after Close.
func (er *EventReader) Read(r *events.Record) error {
	for {
		var deadline time.Time
		if d := er.deadline.Load(); d != 0 {
			deadline = time.Unix(0, d)
		}
		if len(er.pending) > 0 {
			*r = er.pending[0]
			er.pending = er.pending[1:]
			return nil
		}
		if time.Since(er.checked) >= lostCheck {
			er.checkLost()
			continue
		}
		wait := time.Now().Add(lostCheck)
		if !deadline.IsZero() && deadline.Before(wait) {
			wait = deadline
		}
		er.rd.SetDeadline(wait)
		err := er.rd.ReadInto(&er.rec)
		switch {
		case err == nil:
			exeIno, err := decodeEvent(er.rec.RawSample, er.offset, r)
			if err != nil {
				*r = events.Record{V: events.Version, Time: time.Now(), Kind: events.KindDecodeError, Error: err.Error()}
				return nil
			}
			er.enrich(r, exeIno)
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			er.checkLost()
			if len(er.pending) == 0 && !deadline.IsZero() && !time.Now().Before(deadline) {
				return os.ErrDeadlineExceeded
			}
		default:
			return err
		}
	}
}

// SetDeadline bounds Read; a zero time means no bound.
func (er *EventReader) SetDeadline(t time.Time) {
	if t.IsZero() {
		er.deadline.Store(0)
	} else {
		er.deadline.Store(t.UnixNano())
	}
}

// checkLost queues a lost record for every counter that grew.
func (er *EventReader) checkLost() {
	er.checked = time.Now()
	if er.lost == nil {
		return
	}
	for k := uint32(1); k < lostKinds; k++ {
		var n uint64
		if er.lost.Lookup(k, &n) != nil || n <= er.seen[k] {
			continue
		}
		er.pending = append(er.pending, events.Record{V: events.Version, Time: er.checked, Kind: events.KindLost,
			LostKind: lostKindNames[k], Count: n - er.seen[k]})
		er.seen[k] = n
	}
}

// Drain returns what the ring holds now, and the losses counted so far,
// without waiting: what a reader that is about to stop still owes.
func (er *EventReader) Drain() []events.Record {
	saved := er.deadline.Load()
	defer er.deadline.Store(saved)
	er.SetDeadline(time.Now())
	var out []events.Record
	var r events.Record
	for er.Read(&r) == nil {
		out = append(out, r)
	}
	er.checkLost()
	out = append(out, er.pending...)
	er.pending = nil
	return out
}

// Close stops the reader.
func (er *EventReader) Close() error { return er.rd.Close() }

// enrich adds to a decoded record what the ring's bytes do not say: the
// path of the program its process ran (exeIno, from /proc while the process
// lives), and for a flow's count records, the process that made the flow
// (from its new record).
func (er *EventReader) enrich(r *events.Record, exeIno uint64) {
	if exeIno != 0 {
		r.Exe = er.exePaths.path(r.PID, exeIno)
	}
	if r.Kind == events.KindFlow || r.Verdict == events.WouldDeny { // (a flow audit lets through is counted too)
		er.senders.note(r)
	}
}

type exeKey struct {
	pid uint32
	ino uint64
}

// exeCache remembers the path of the program a process runs, by pid and
// inode, so that a process's flood of events reads /proc once.
type exeCache struct {
	mu sync.Mutex
	m  map[exeKey]string
}

// path is the path /proc/<pid>/exe names, as the process sees it, if that
// is still the file with inode ino (the process may have exec'd since, or
// be gone, and its pid reused): else "".
func (c *exeCache) path(pid uint32, ino uint64) string {
	if pid == 0 {
		return ""
	}
	k := exeKey{pid, ino}
	c.mu.Lock()
	p, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return p
	}
	link := fmt.Sprintf("/proc/%d/exe", pid)
	if fd, err := unix.Open(link, unix.O_PATH|unix.O_CLOEXEC, 0); err == nil {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", fd))
		unix.Close(fd)
		if strings.Contains(string(data), fmt.Sprintf("\nino:\t%d\n", ino)) {
			p, _ = os.Readlink(link)
			p = strings.TrimSuffix(p, " (deleted)")
		}
	}
	c.mu.Lock()
	if len(c.m) >= 4096 {
		clear(c.m)
	}
	c.m[k] = p
	c.mu.Unlock()
	return p
}

// flowSenders remembers who made each flow a reader saw begin, by socket,
// so that its count records (made where the sender may not be current: a
// softirq) name the process and user too. Bounded: past flowSendersMax
// flows, the oldest half is forgotten, and their counts name no process.
type flowSenders struct {
	mu  sync.Mutex
	m   map[uint64]events.Record
	gen []uint64 // sockets in the order their flows began
}

const flowSendersMax = 1 << 16

// note records a new flow's sender, or fills a count record from it.
func (c *flowSenders) note(r *events.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch r.Phase {
	case "new", "": // "": a would-deny flow's record
		if r.PID == 0 {
			return // (the packet path's: it does not know the process)
		}
		if _, ok := c.m[r.Socket]; !ok {
			if len(c.gen) >= flowSendersMax {
				for _, s := range c.gen[:flowSendersMax/2] {
					delete(c.m, s)
				}
				c.gen = append(c.gen[:0], c.gen[flowSendersMax/2:]...)
			}
			c.gen = append(c.gen, r.Socket)
		}
		c.m[r.Socket] = events.Record{PID: r.PID, TID: r.TID, UID: r.UID, GID: r.GID, Comm: r.Comm, CgroupID: r.CgroupID, Exe: r.Exe, ExeFile: r.ExeFile}
	default:
		if m, ok := c.m[r.Socket]; ok {
			r.PID, r.TID, r.UID, r.GID, r.Comm, r.Exe, r.ExeFile = m.PID, m.TID, m.UID, m.GID, m.Comm, m.Exe, m.ExeFile
			if r.CgroupID == 0 {
				r.CgroupID = m.CgroupID
			}
		}
		if r.Phase == events.PhaseEnd {
			delete(c.m, r.Socket) // (its place in gen goes with the next trim)
		}
	}
}
