package bpf

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"
	"unsafe"

	"github.com/nriguard/nriguard/events"
	"github.com/nriguard/nriguard/policy"
	"golang.org/x/sys/unix"
)

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

// decodeEvent fills r from one ring record, from its bytes alone; exeIno
// is the inode of the program the process ran, which the reader turns into
// a path (enrich).
func decodeEvent(raw []byte, offset time.Duration, r *events.Record) (exeIno uint64, err error) {
	var h egressEventHdr
	if _, err := decodeAs(raw, &h); err != nil {
		return 0, fmt.Errorf("a record of %d bytes: %w", len(raw), err)
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
				r.Kind, r.Phase = events.KindFlow, events.PhaseNew
			case egressNgHookHOOK_FLOW_COUNT, egressNgHookHOOK_SOCK_RELEASE, egressNgHookHOOK_SKB_INGRESS:
			default:
				return 0, fmt.Errorf("an allowed flow record from hook %d", h.Hook)
			}
		}
	default:
		return 0, fmt.Errorf("a record with unknown action %d", h.Action)
	}
	if r.Kind == "" {
		return 0, fmt.Errorf("a record from unknown hook %d", h.Hook)
	}
	switch egressNgHook(h.Hook) {
	case egressNgHookHOOK_FLOW_COUNT:
		r.Phase = events.PhaseCount
	case egressNgHookHOOK_SOCK_RELEASE:
		r.Phase = events.PhaseEnd
	}
	switch h.Kind {
	case evKindFlow:
		var f egressFlowEvent
		if _, err := decodeAs(raw, &f); err != nil {
			return 0, fmt.Errorf("flow record of %d bytes: %w", len(raw), err)
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
			exeIno = f.ExeIno
		}
		r.Socket, r.Packets, r.Bytes = f.Cookie, f.Packets, f.Bytes
	case evKindExec:
		var x egressExecEvent
		if _, err := decodeAs(raw, &x); err != nil {
			return 0, fmt.Errorf("exec record of %d bytes: %w", len(raw), err)
		}
		r.Filename = cstring(x.Filename[:])
		r.File = fileName(x.Dev, x.Ino)
		r.PPID = x.Ppid
		if r.Kind == events.KindWrite { // the file written, not the writer's program
			r.Enforcement = "eperm"
			break
		}
		// the program that runs: for a #! script its interpreter, which is
		// the file judged (the script's path is in Filename)
		exeIno = x.Ino
		if r.Verdict == events.Allowed {
			break
		}
		r.Enforcement = "eperm"
		if egressNgHook(h.Hook) == egressNgHookHOOK_EXEC_KILL {
			r.Enforcement = "sigkill"
		}
	default:
		return 0, fmt.Errorf("a record of unknown kind %d", h.Kind)
	}
	return exeIno, nil
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
