package bpf

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// Event is one decision the programs reported: a denial, or in audit mode a
// flow that would have been denied. It marshals to the JSON lines nriguard
// prints.
type Event struct {
	Time     time.Time `json:"time"`
	Kind     string    `json:"kind"`            // connect, sendmsg, socket, exec
	Verdict  string    `json:"verdict"`         // denied, would-deny
	Proto    string    `json:"proto,omitempty"` // tcp, udp, raw, icmp, ...
	Dest     string    `json:"dest,omitempty"`
	Port     uint16    `json:"port,omitempty"`
	Family   string    `json:"family,omitempty"` // ipv4, ipv6
	SockType string    `json:"sock_type,omitempty"`
	// exec events
	Filename string `json:"filename,omitempty"` // as passed to execve
	File     string `json:"file,omitempty"`     // the file run, as dev:inode
	PPID     uint32 `json:"ppid,omitempty"`
	// How a denied exec was stopped: "eperm" (BPF LSM) or "sigkill" (the
	// program was killed before its first instruction).
	Enforcement string `json:"enforcement,omitempty"`
	PID         uint32 `json:"pid"`
	TID         uint32 `json:"tid"`
	UID         uint32 `json:"uid"`
	GID         uint32 `json:"gid"`
	Comm        string `json:"comm"`
	CgroupID    uint64 `json:"cgroup_id"`
	// PolicyCgroup is the cgroup whose policy decided (the container's);
	// CgroupID may be a child of it.
	PolicyCgroup uint64 `json:"policy_cgroup"`
}

var hookKinds = map[uint8]string{1: "connect", 2: "connect", 3: "sendmsg", 4: "sendmsg", 5: "socket", 6: "exec", 7: "exec"}

var verdicts = map[uint8]string{2: "denied", 3: "would-deny"}

var protoNames = map[uint8]string{0: "ip", 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp", 136: "udplite", 255: "raw"}

var sockTypes = map[uint8]string{1: "stream", 2: "dgram", 3: "raw", 4: "rdm", 5: "seqpacket"}

// bootOffset turns CLOCK_BOOTTIME stamps into wall-clock time.
func bootOffset() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return time.Duration(time.Now().UnixNano() - ts.Nano())
}

const (
	evKindFlow   = 1
	evKindExec   = 2
	hookExecKill = 6
)

// DecodeEvent parses one ring-buffer record.
func DecodeEvent(raw []byte, offset time.Duration) (Event, error) {
	var h egressEventHdr
	if len(raw) < binary.Size(h) {
		return Event{}, fmt.Errorf("short event: %d bytes", len(raw))
	}
	binary.Decode(raw, binary.NativeEndian, &h)
	e := Event{
		Time:         time.Unix(0, int64(h.TsNs)+int64(offset)),
		Kind:         hookKinds[h.Hook],
		Verdict:      verdicts[h.Verdict],
		PID:          h.Pid,
		TID:          h.Tid,
		UID:          h.Uid,
		GID:          h.Gid,
		Comm:         cstring(h.Comm[:]),
		CgroupID:     h.CgroupId,
		PolicyCgroup: h.PolicyCgroup,
	}
	switch h.Kind {
	case evKindFlow:
		var r egressFlowEvent
		if _, err := binary.Decode(raw, binary.NativeEndian, &r); err != nil {
			return Event{}, fmt.Errorf("flow event: %w", err)
		}
		e.Proto, e.Port, e.SockType = name(protoNames, r.Proto), r.Port, sockTypes[r.Type]
		switch r.Family {
		case 2:
			e.Family = "ipv4"
			if e.Kind != "socket" {
				e.Dest = netip.AddrFrom4([4]byte(r.Addr[:4])).String()
			}
		case 10:
			e.Family = "ipv6"
			if e.Kind != "socket" {
				e.Dest = netip.AddrFrom16(r.Addr).String()
			}
		}
		if r.Type == 3 && e.Proto == "ip" {
			e.Proto = "raw"
		}
	case evKindExec:
		var r egressExecEvent
		if _, err := binary.Decode(raw, binary.NativeEndian, &r); err != nil {
			return Event{}, fmt.Errorf("exec event: %w", err)
		}
		e.Filename = cstring(r.Filename[:])
		e.File = fmt.Sprintf("%d:%d:%d", r.Dev>>20, r.Dev&(1<<20-1), r.Ino)
		e.PPID = r.Ppid
		e.Enforcement = "eperm"
		if h.Hook == hookExecKill {
			e.Enforcement = "sigkill"
		}
	default:
		return Event{}, fmt.Errorf("unknown event kind %d", h.Kind)
	}
	return e, nil
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

// EventReader reads events from a ring buffer.
type EventReader struct {
	rd         *ringbuf.Reader
	lost       *ebpf.Map
	execTable  *ebpf.Map
	execCgroup uint64
	offset     time.Duration
	rec        ringbuf.Record
}

// NewEventReader reads m's events.
func NewEventReader(m EventMaps) (*EventReader, error) {
	rd, err := ringbuf.NewReader(m.Ring)
	if err != nil {
		return nil, err
	}
	return &EventReader{rd: rd, lost: m.Lost, execTable: m.execTable, execCgroup: m.execCgroup, offset: bootOffset()}, nil
}

// Read blocks for the next event. It returns os.ErrDeadlineExceeded after
// SetDeadline's time and ringbuf.ErrClosed after Close.
func (r *EventReader) Read() (Event, error) {
	if err := r.rd.ReadInto(&r.rec); err != nil {
		return Event{}, err
	}
	return DecodeEvent(r.rec.RawSample, r.offset)
}

// SetDeadline bounds Read; a zero time means no bound.
func (r *EventReader) SetDeadline(t time.Time) { r.rd.SetDeadline(t) }

// Drain returns the events already in the buffer without waiting.
func (r *EventReader) Drain() []Event {
	r.rd.SetDeadline(time.Now())
	defer r.rd.SetDeadline(time.Time{})
	var out []Event
	for r.rd.ReadInto(&r.rec) == nil {
		if e, err := DecodeEvent(r.rec.RawSample, r.offset); err == nil {
			out = append(out, e)
		}
	}
	return out
}

// Lost is how many events the programs dropped because the ring buffer was
// full.
func (r *EventReader) Lost() uint64 {
	var n, x uint64
	if r.lost != nil {
		r.lost.Lookup(uint32(0), &n)
	}
	if r.execTable != nil {
		r.execTable.Lookup(lostKey(r.execCgroup), &x)
	}
	return n + x
}

// Close stops the reader.
func (r *EventReader) Close() error { return r.rd.Close() }
