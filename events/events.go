// Package events is nriguard's one event schema: what the kernel decided,
// about which process and container, and what could not be reported. Every
// path that prints events (nriguard run, the NRI plugin, nriguard events)
// writes these records as JSON lines; docs/events.md documents them, with
// an example of each kind that the tests decode strictly.
package events

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// Version is the schema version every record carries ("v"). Fields may be
// added within a version; none is removed or changes meaning.
const Version = 1

// Kind is what a record is about.
type Kind string

// Kinds of record.
const (
	KindConnect Kind = "connect" // a connect() (TCP, connected UDP, TCP fast open)
	KindSendmsg Kind = "sendmsg" // an unconnected UDP message
	KindSocket  Kind = "socket"  // a socket() of a type the policy cannot judge
	KindExec    Kind = "exec"    // an exec
	// KindWrite is a write to a program a policy allows, refused (BPF LSM:
	// docs/policy.md, "What the program is").
	KindWrite Kind = "write"
	// KindPacket is a packet the packet path stopped: its real destination
	// was not the one judged at connect or send, or it carried options that
	// reroute it (Reason says which).
	KindPacket Kind = "packet"
	// KindFlow is visibility (docs/events.md): a flow a policy allowed
	// (Phase new, with its process), and then what its socket sent to that
	// destination (Phase count, 10 s apart at most while it sends and when
	// the socket turns to another destination; end when it is closed).
	KindFlow Kind = "flow"
	// KindDNS is a DNS answer to a policed container that taught nothing
	// (docs/policy.md, "Rules by DNS name"): Dest is its sender; Reason says
	// why (dns-unsolicited, dns-resolver, dns-truncated). The answer itself
	// was delivered.
	KindDNS Kind = "dns"
	// KindPolicy is nriguard's own word about a container's policy: what it
	// could not do as the container's labels ask (Reason says what,
	// Message says why, in words).
	KindPolicy Kind = "policy"
	// KindLost says how many records of LostKind found no room in a ring
	// buffer since the last such record: they are not coming.
	KindLost Kind = "lost"
	// KindDecodeError is a ring record that could not be read; the stream
	// goes on after it.
	KindDecodeError Kind = "decode_error"
)

// Phase is where a flow record stands in its flow.
type Phase string

// Phases of flow records.
const (
	PhaseNew   Phase = "new"   // the flow's first record, with its process
	PhaseCount Phase = "count" // what it sent since its last record
	PhaseEnd   Phase = "end"   // its socket was closed
)

// Verdicts of decisions.
const (
	Allowed   = "allowed"    // let through (flow and exec records: visibility)
	Denied    = "denied"     // refused
	WouldDeny = "would-deny" // refused by a policy in audit mode: let through
)

// Reasons of policy records.
const (
	// ReasonLate: the container ran before its policy was attached (it
	// started while nriguard was away): its seccomp policy could not be
	// restricted, and its files were resolved after it had run.
	ReasonLate = "late"
	// ReasonKept: its decision changed since its start (node settings); the
	// policy attached then stays in force.
	ReasonKept = "kept"
	// ReasonUndecided: it runs, and its policy could not be decided or
	// attached: it runs without it.
	ReasonUndecided = "undecided"
	// ReasonUnadoptable: its attachment was pinned by a nriguard of another
	// pin version: in force, but its events are not read.
	ReasonUnadoptable = "unadoptable"
)

// Lost kinds.
const (
	LostEgress = "egress" // connect, sendmsg and socket records
	LostExec   = "exec"
)

// Record is one event. Fields that do not apply to a kind are left out.
type Record struct {
	V       int       `json:"v"`
	Time    time.Time `json:"time"`
	Kind    Kind      `json:"kind"`
	Verdict string    `json:"verdict,omitempty"`
	// Layer is the layer of the container's policy that refused: ceiling,
	// profile, label, image or default; absent when the policy is one
	// (nriguard run) or the reader cannot know.
	Layer string `json:"layer,omitempty"`

	// The container, when the reader knows it (for nriguard run, ContainerID
	// is run-<pid>).
	ContainerID string `json:"container_id,omitempty"`
	Container   string `json:"container,omitempty"`
	Pod         string `json:"pod,omitempty"`
	Namespace   string `json:"namespace,omitempty"`

	// The process. UID and GID are written in every record but lost and
	// decode_error ones (0 is root). PID 0 (left out) means the process is
	// not known: a packet sent from a softirq, where UID is the socket's
	// owner.
	PID  uint32 `json:"pid,omitempty"`
	TID  uint32 `json:"tid,omitempty"`
	PPID uint32 `json:"ppid,omitempty"` // exec
	UID  uint32 `json:"uid"`
	GID  uint32 `json:"gid"`
	Comm string `json:"comm,omitempty"`
	// CgroupID is the process's cgroup; PolicyCgroup the policed one whose
	// policy decided (the container's: CgroupID may be a child of it).
	CgroupID     uint64 `json:"cgroup_id,omitempty"`
	PolicyCgroup uint64 `json:"policy_cgroup,omitempty"`

	// connect, sendmsg, socket
	Proto    string `json:"proto,omitempty"` // tcp, udp, raw, icmp, ...
	Dest     string `json:"dest,omitempty"`
	Port     uint16 `json:"port,omitempty"`
	Family   string `json:"family,omitempty"` // ipv4, ipv6
	SockType string `json:"sock_type,omitempty"`
	// packet: why it was stopped: "destination" (its real destination is
	// refused) or "routing-option" (IPv4 options, an IPv6 routing header);
	// dns: why the answer taught nothing
	Reason string `json:"reason,omitempty"`
	// connect, sendmsg, flow: the DNS name (a rule's, as written) whose
	// learned address let the flow pass; NameIndex is its index in the
	// policy's names plus one, as the kernel reports it (not written), for
	// readers that know the policy to fill DNSName
	DNSName   string `json:"dns_name,omitempty"`
	NameIndex uint16 `json:"-"`
	// connect, sendmsg, socket, flow: the program the process runs, as the
	// path it has inside its container (read from /proc/<pid>/exe while the
	// process lives, and only if it is still that file) and as the file
	// (major:minor:inode, as exec records' file). exec: Exe only, the
	// program the kernel runs (a #! script's interpreter).
	Exe     string `json:"exe,omitempty"`
	ExeFile string `json:"exe_file,omitempty"`
	// Rule is the rule that decided, as written in its layer (or "default
	// deny"), when the reader knows the container's policy.
	Rule string `json:"rule,omitempty"`

	// exec
	Filename string `json:"filename,omitempty"` // as passed to execve
	File     string `json:"file,omitempty"`     // the file run: major:minor:inode
	// Enforcement says how a denied exec was stopped: eperm (BPF LSM) or
	// sigkill (killed before its first instruction).
	Enforcement string `json:"enforcement,omitempty"`

	// flow: new, count or end; the socket (its cookie: the records of one
	// flow share it); what it sent since the flow's previous record
	Phase   Phase  `json:"phase,omitempty"`
	Socket  uint64 `json:"socket,omitempty"`
	Packets uint64 `json:"packets,omitempty"`
	Bytes   uint64 `json:"bytes,omitempty"`

	// lost
	LostKind string `json:"lost_kind,omitempty"`
	Count    uint64 `json:"count,omitempty"`

	// decode_error
	Error string `json:"error,omitempty"`

	// policy: what nriguard could not do, in words
	Message string `json:"message,omitempty"`
}

// AppendJSON appends r as one line of JSON, as encoding/json would write it
// but for uid and gid in records about no process (the tests hold it to
// that), without reflection: a daemon writes many.
func (r *Record) AppendJSON(b []byte) []byte {
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(r.V), 10)
	b = append(b, `,"time":"`...)
	b = r.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = str(b, "kind", string(r.Kind), false)
	b = str(b, "verdict", r.Verdict, true)
	b = str(b, "layer", r.Layer, true)
	b = str(b, "container_id", r.ContainerID, true)
	b = str(b, "container", r.Container, true)
	b = str(b, "pod", r.Pod, true)
	b = str(b, "namespace", r.Namespace, true)
	b = uint(b, "pid", uint64(r.PID), true)
	b = uint(b, "tid", uint64(r.TID), true)
	b = uint(b, "ppid", uint64(r.PPID), true)
	if r.AboutAProcess() {
		b = uint(b, "uid", uint64(r.UID), false)
		b = uint(b, "gid", uint64(r.GID), false)
	}
	b = str(b, "comm", r.Comm, true)
	b = uint(b, "cgroup_id", r.CgroupID, true)
	b = uint(b, "policy_cgroup", r.PolicyCgroup, true)
	b = str(b, "proto", r.Proto, true)
	b = str(b, "dest", r.Dest, true)
	b = uint(b, "port", uint64(r.Port), true)
	b = str(b, "family", r.Family, true)
	b = str(b, "sock_type", r.SockType, true)
	b = str(b, "reason", r.Reason, true)
	b = str(b, "dns_name", r.DNSName, true)
	b = str(b, "exe", r.Exe, true)
	b = str(b, "exe_file", r.ExeFile, true)
	b = str(b, "rule", r.Rule, true)
	b = str(b, "filename", r.Filename, true)
	b = str(b, "file", r.File, true)
	b = str(b, "enforcement", r.Enforcement, true)
	b = str(b, "phase", string(r.Phase), true)
	b = uint(b, "socket", r.Socket, true)
	b = uint(b, "packets", r.Packets, true)
	b = uint(b, "bytes", r.Bytes, true)
	b = str(b, "lost_kind", r.LostKind, true)
	b = uint(b, "count", r.Count, true)
	b = str(b, "error", r.Error, true)
	b = str(b, "message", r.Message, true)
	return append(b, '}', '\n')
}

// AboutAProcess tells whether the record is about what a process did (and
// so has its uid and gid): not lost, decode_error or policy records.
func (r *Record) AboutAProcess() bool {
	return r.Kind != KindLost && r.Kind != KindDecodeError && r.Kind != KindPolicy
}

func uint(b []byte, name string, v uint64, omitEmpty bool) []byte {
	if omitEmpty && v == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendUint(b, v, 10)
}

func str(b []byte, name, v string, omitEmpty bool) []byte {
	if omitEmpty && v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return quote(b, v)
}

const hex = "0123456789abcdef"

// quote writes s as a JSON string the way encoding/json does (HTML-safe
// escapes, invalid UTF-8 as U+FFFD): comm and filename come from processes.
func quote(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
