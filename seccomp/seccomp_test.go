package seccomp

import (
	"testing"

	ctrdseccomp "github.com/containerd/containerd/v2/contrib/seccomp"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// allows evaluates socket(domain, typ, 0) against a policy as runc loads it:
// rules for socket whose comparisons all hold apply (comparisons within a rule
// are ANDed); a refusing match wins over a permitting one; with no match,
// the default action decides.
func allows(p *rspec.LinuxSeccomp, domain, typ uint64) bool {
	if p == nil {
		return true
	}
	args := []uint64{domain, typ, 0}
	matched, refused := false, false
	for _, r := range p.Syscalls {
		found := false
		for _, n := range r.Names {
			found = found || n == "socket"
		}
		if !found {
			continue
		}
		holds := true
		for _, a := range r.Args {
			v := args[a.Index]
			switch a.Op {
			case rspec.OpEqualTo:
				holds = holds && v == a.Value
			case rspec.OpNotEqual:
				holds = holds && v != a.Value
			case rspec.OpLessThan:
				holds = holds && v < a.Value
			case rspec.OpLessEqual:
				holds = holds && v <= a.Value
			case rspec.OpGreaterThan:
				holds = holds && v > a.Value
			case rspec.OpGreaterEqual:
				holds = holds && v >= a.Value
			case rspec.OpMaskedEqual:
				holds = holds && v&a.Value == a.ValueTwo
			}
		}
		if holds {
			matched = true
			refused = refused || !permits(r.Action)
		}
	}
	if matched {
		return !refused
	}
	return permits(p.DefaultAction)
}

func TestDenyPacketSockets(t *testing.T) {
	allowAll := rspec.LinuxSyscall{Names: []string{"socket", "connect"}, Action: rspec.ActAllow}
	cases := map[string]*rspec.LinuxSeccomp{
		"unconfined":            nil,
		"containerd's default":  ctrdseccomp.DefaultProfile(&rspec.Spec{Process: &rspec.Process{Capabilities: &rspec.LinuxCapabilities{}}}),
		"default allow":         {DefaultAction: rspec.ActAllow, Syscalls: []rspec.LinuxSyscall{allowAll}},
		"default errno, all":    {DefaultAction: rspec.ActErrno, Syscalls: []rspec.LinuxSyscall{allowAll}},
		"a type condition only": {DefaultAction: rspec.ActErrno, Syscalls: []rspec.LinuxSyscall{{Names: []string{"socket"}, Action: rspec.ActAllow, Args: []rspec.LinuxSeccompArg{{Index: 1, Value: 3, Op: rspec.OpNotEqual}}}}},
		"older containerd default (socket != AF_VSOCK)": {DefaultAction: rspec.ActErrno, Syscalls: []rspec.LinuxSyscall{
			{Names: []string{"socket"}, Action: rspec.ActAllow, Args: []rspec.LinuxSeccompArg{{Index: 0, Value: 40, Op: rspec.OpNotEqual}}}}},
		"!= below AF_PACKET": {DefaultAction: rspec.ActErrno, Syscalls: []rspec.LinuxSyscall{
			{Names: []string{"socket"}, Action: rspec.ActAllow, Args: []rspec.LinuxSeccompArg{{Index: 0, Value: 3, Op: rspec.OpNotEqual}}}}},
		"ranges": {DefaultAction: rspec.ActErrno, Syscalls: []rspec.LinuxSyscall{
			{Names: []string{"socket"}, Action: rspec.ActAllow, Args: []rspec.LinuxSeccompArg{{Index: 0, Value: 20, Op: rspec.OpLessEqual}}},
			{Names: []string{"socket"}, Action: rspec.ActLog, Args: []rspec.LinuxSeccompArg{{Index: 0, Value: 10, Op: rspec.OpGreaterEqual}}},
			{Names: []string{"socket"}, Action: rspec.ActAllow, Args: []rspec.LinuxSeccompArg{{Index: 0, Value: 17, Op: rspec.OpEqualTo}}},
		}},
	}
	for name, before := range cases {
		after, ok := DenyPacketSockets(before)
		if !ok {
			t.Errorf("%s: not rewritten", name)
			continue
		}
		for domain := uint64(0); domain <= 50; domain++ {
			for _, typ := range []uint64{1, 2, 3} {
				want := allows(before, domain, typ)
				if domain == afPacket {
					want = false
				}
				if got := allows(after, domain, typ); got != want {
					t.Errorf("%s: socket(%d, %d): after %v, want %v", name, domain, typ, got, want)
				}
			}
		}
		// connect and the other syscalls are untouched
		if before != nil && len(after.Syscalls) < len(before.Syscalls) {
			t.Errorf("%s: rules lost: %d -> %d", name, len(before.Syscalls), len(after.Syscalls))
		}
	}
	if !allows(cases["containerd's default"], afPacket, 3) {
		t.Fatal("test premise: containerd's default profile allows AF_PACKET")
	}
	// Refused: comparisons that admit AF_PACKET but are not split here.
	odd := &rspec.LinuxSeccomp{DefaultAction: rspec.ActErrno, Syscalls: []rspec.LinuxSyscall{
		{Names: []string{"socket"}, Action: rspec.ActAllow, Args: []rspec.LinuxSeccompArg{{Index: 0, Value: 0x10, ValueTwo: 0x10, Op: rspec.OpMaskedEqual}}}}}
	if got, ok := DenyPacketSockets(odd); ok || got != odd {
		t.Errorf("a masked comparison must be reported, and the policy left alone")
	}
}
