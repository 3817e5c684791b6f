package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/nriguard/nriguard/events"
	"github.com/nriguard/nriguard/policy"
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

var protoNames = map[uint8]string{0: "ip", 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp", 136: "udplite", 255: "raw"}

var sockTypes = map[uint8]string{1: "stream", 2: "dgram", 3: "raw", 4: "rdm", 5: "seqpacket"}

var lostKindNames = map[uint32]string{uint32(evKindFlow): events.LostEgress, uint32(evKindExec): events.LostExec}

// bootOffset turns CLOCK_BOOTTIME stamps into wall-clock time.
func bootOffset() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return time.Duration(time.Now().UnixNano() - ts.Nano())
}

// decodeAs copies a record into its Go twin: the records are nriguard.h's
// structs in this machine's byte order, and bpf2go lays their Go twins out
// as C does (padding included; TestDecodeAsLayout checks it), so a copy
// reads them, without reflection per record. It returns the bytes read.
func decodeAs[T any](raw []byte, v *T) (int, error) {
	n := int(unsafe.Sizeof(*v))
	if len(raw) < n {
		return 0, fmt.Errorf("%d bytes, want %d", len(raw), n)
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(v)), n), raw)
	return n, nil
}

// decodeEvent fills r from one ring record.
func decodeEvent(raw []byte, offset time.Duration, r *events.Record) error {
	var h egressEventHdr
	if _, err := decodeAs(raw, &h); err != nil {
		return fmt.Errorf("a record of %d bytes: %w", len(raw), err)
	}
	*r = events.Record{
		V:            events.Version,
		Time:         time.Unix(0, int64(h.TsNs)+int64(offset)),
		Kind:         hookKinds[egressNgHook(h.Hook)],
		Layer:        policy.Layer(h.Layer).String(),
		PID:          h.Pid,
		TID:          h.Tid,
		UID:          h.Uid,
		GID:          h.Gid,
		Comm:         cstring(h.Comm[:]),
		CgroupID:     h.CgroupId,
		PolicyCgroup: h.PolicyCgroup,
	}
	switch h.Action {
	case actionDeny:
		r.Verdict = events.Denied
	case actionWouldDeny:
		r.Verdict = events.WouldDeny
	case actionAllow: // visibility: a flow or an exec let through
		r.Verdict = events.Allowed
		if h.Kind == evKindFlow {
			switch egressNgHook(h.Hook) {
			case egressNgHookHOOK_CONNECT4, egressNgHookHOOK_CONNECT6, egressNgHookHOOK_SENDMSG4, egressNgHookHOOK_SENDMSG6:
				r.Kind, r.Phase = events.KindFlow, "new"
			case egressNgHookHOOK_FLOW_COUNT, egressNgHookHOOK_SOCK_RELEASE, egressNgHookHOOK_SKB_INGRESS:
			default:
				return fmt.Errorf("an allowed flow record from hook %d", h.Hook)
			}
		}
	default:
		return fmt.Errorf("a record with unknown action %d", h.Action)
	}
	if r.Kind == "" {
		return fmt.Errorf("a record from unknown hook %d", h.Hook)
	}
	switch egressNgHook(h.Hook) {
	case egressNgHookHOOK_FLOW_COUNT:
		r.Phase = "count"
	case egressNgHookHOOK_SOCK_RELEASE:
		r.Phase = "end"
	}
	switch h.Kind {
	case evKindFlow:
		var f egressFlowEvent
		if _, err := decodeAs(raw, &f); err != nil {
			return fmt.Errorf("flow record of %d bytes: %w", len(raw), err)
		}
		r.Proto, r.Port, r.SockType = name(protoNames, f.Proto), f.Port, sockTypes[f.Type]
		switch f.Family {
		case unix.AF_INET:
			r.Family = "ipv4"
			if r.Kind != events.KindSocket {
				r.Dest = netip.AddrFrom4([4]byte(f.Addr[:4])).String()
			}
		case unix.AF_INET6:
			r.Family = "ipv6"
			if r.Kind != events.KindSocket {
				r.Dest = netip.AddrFrom16(f.Addr).String()
			}
		}
		if f.Type == unix.SOCK_RAW && r.Proto == "ip" {
			r.Proto = "raw"
		}
		r.Reason = reasons[f.Reason]
		r.NameIndex = f.Name
		if r.Kind == events.KindDNS {
			r.Verdict = "" // an answer reported, not a flow judged
		}
		if f.ExeIno != 0 {
			r.ExeFile = fileName(f.ExeDev, f.ExeIno)
			r.Exe = exePaths.path(r.PID, f.ExeIno)
		}
		r.Socket, r.Packets, r.Bytes = f.Cookie, f.Packets, f.Bytes
		if r.Kind == events.KindFlow || r.Verdict == events.WouldDeny { // (a flow audit lets through is counted too)
			flowMakers.note(r)
		}
	case evKindExec:
		var x egressExecEvent
		if _, err := decodeAs(raw, &x); err != nil {
			return fmt.Errorf("exec record of %d bytes: %w", len(raw), err)
		}
		r.Filename = cstring(x.Filename[:])
		r.File = fileName(x.Dev, x.Ino)
		// the program that runs: for a #! script its interpreter, which is
		// the file judged (the script's path is in Filename)
		r.Exe = exePaths.path(r.PID, x.Ino)
		r.PPID = x.Ppid
		if r.Verdict == events.Allowed {
			break
		}
		r.Enforcement = "eperm"
		if egressNgHook(h.Hook) == egressNgHookHOOK_EXEC_KILL {
			r.Enforcement = "sigkill"
		}
	default:
		return fmt.Errorf("a record of unknown kind %d", h.Kind)
	}
	return nil
}

// fileName writes a file as events name it, major:minor:inode, from the
// kernel's device encoding (major << 20 | minor).
func fileName(dev uint32, ino uint64) string {
	b := make([]byte, 0, 32)
	b = strconv.AppendUint(b, uint64(dev>>20), 10)
	b = append(b, ':')
	b = strconv.AppendUint(b, uint64(dev&(1<<20-1)), 10)
	b = append(b, ':')
	return string(strconv.AppendUint(b, ino, 10))
}

func cstring[T int8 | uint8](b []T) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}

func name(m map[uint8]string, v uint8) string {
	if s, ok := m[v]; ok {
		return s
	}
	return fmt.Sprint(v)
}

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
	return &EventReader{rd: rd, lost: m.Lost, offset: bootOffset()}, nil
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
			if err := decodeEvent(er.rec.RawSample, er.offset, r); err != nil {
				*r = events.Record{V: events.Version, Time: time.Now(), Kind: events.KindDecodeError, Error: err.Error()}
			}
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

// RingID identifies the ring (SharedEventsID tells whether a pin still
// names it).
func (m *EventMaps) RingID() ebpf.MapID { return ringID(m.Ring) }

// exePaths remembers the path of the program a process runs, by pid and
// inode, so that a process's flood of events reads /proc once.
var exePaths = &exeCache{m: map[exeKey]string{}}

type exeKey struct {
	pid uint32
	ino uint64
}

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

// flowMakers remembers who made each flow a reader saw begin, by socket, so
// that its count records (made where the sender may not be current: a
// softirq) name the process and user too. Bounded: past flowMakersMax
// flows, the oldest half is forgotten, and their counts name no process.
var flowMakers = &makerCache{m: map[uint64]events.Record{}}

const flowMakersMax = 1 << 16

type makerCache struct {
	mu  sync.Mutex
	m   map[uint64]events.Record
	gen []uint64 // sockets in the order their flows began
}

// note records a new flow's maker, or fills a count record from it.
func (c *makerCache) note(r *events.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch r.Phase {
	case "new", "": // "": a would-deny flow's record
		if r.PID == 0 {
			return // (the packet path's: it does not know the process)
		}
		if _, ok := c.m[r.Socket]; !ok {
			if len(c.gen) >= flowMakersMax {
				for _, s := range c.gen[:flowMakersMax/2] {
					delete(c.m, s)
				}
				c.gen = append(c.gen[:0], c.gen[flowMakersMax/2:]...)
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
		if r.Phase == "end" {
			delete(c.m, r.Socket) // (its place in gen goes with the next trim)
		}
	}
}
