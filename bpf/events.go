package bpf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// Event is one decision the programs reported: a denial, or in audit mode a
// flow that would have been denied. It marshals to the JSON lines nriguard
// prints.
type Event struct {
	Time     time.Time `json:"time"`
	Kind     string    `json:"kind"`    // connect, sendmsg, socket
	Verdict  string    `json:"verdict"` // denied, would-deny
	Proto    string    `json:"proto"`   // tcp, udp, raw, icmp, ...
	Dest     string    `json:"dest,omitempty"`
	Port     uint16    `json:"port,omitempty"`
	Family   string    `json:"family"` // ipv4, ipv6
	SockType string    `json:"sock_type,omitempty"`
	PID      uint32    `json:"pid"`
	TID      uint32    `json:"tid"`
	UID      uint32    `json:"uid"`
	GID      uint32    `json:"gid"`
	Comm     string    `json:"comm"`
	CgroupID uint64    `json:"cgroup_id"`
}

var hookKinds = map[uint8]string{1: "connect", 2: "connect", 3: "sendmsg", 4: "sendmsg", 5: "socket"}

var verdicts = map[uint8]string{2: "denied", 3: "would-deny"}

var protoNames = map[uint8]string{0: "ip", 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp", 136: "udplite", 255: "raw"}

var sockTypes = map[uint8]string{1: "stream", 2: "dgram", 3: "raw", 4: "rdm", 5: "seqpacket"}

// bootOffset turns CLOCK_BOOTTIME stamps into wall-clock time.
func bootOffset() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return time.Duration(time.Now().UnixNano() - ts.Nano())
}

// DecodeEvent parses one ring-buffer record.
func DecodeEvent(raw []byte, offset time.Duration) (Event, error) {
	var r egressEvent
	if len(raw) < int(unsafe.Sizeof(r)) {
		return Event{}, fmt.Errorf("short event: %d bytes", len(raw))
	}
	if err := binary.Read(bytes.NewReader(raw), binary.NativeEndian, &r); err != nil {
		return Event{}, err
	}
	e := Event{
		Time:     time.Unix(0, int64(r.TsNs)+int64(offset)),
		Kind:     hookKinds[r.Hook],
		Verdict:  verdicts[r.Verdict],
		Proto:    name(protoNames, r.Proto),
		Port:     r.Port,
		PID:      r.Pid,
		TID:      r.Tid,
		UID:      r.Uid,
		GID:      r.Gid,
		Comm:     string(bytes.TrimRight(r.Comm[:], "\x00")),
		CgroupID: r.CgroupId,
		SockType: sockTypes[r.Type],
	}
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
	return e, nil
}

func name(m map[uint8]string, v uint8) string {
	if s, ok := m[v]; ok {
		return s
	}
	return fmt.Sprint(v)
}

// EventReader reads events from a ring buffer.
type EventReader struct {
	rd     *ringbuf.Reader
	lost   *ebpf.Map
	offset time.Duration
	rec    ringbuf.Record
}

// NewEventReader reads m's events.
func NewEventReader(m EventMaps) (*EventReader, error) {
	rd, err := ringbuf.NewReader(m.Ring)
	if err != nil {
		return nil, err
	}
	return &EventReader{rd: rd, lost: m.Lost, offset: bootOffset()}, nil
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
	var n uint64
	if r.lost != nil {
		r.lost.Lookup(uint32(0), &n)
	}
	return n
}

// Close stops the reader.
func (r *EventReader) Close() error { return r.rd.Close() }
