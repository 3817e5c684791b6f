// Package seccomp rewrites a container's seccomp policy (OCI form) so that
// it refuses what the cgroup hooks cannot judge, and decides every other
// call exactly as before. The NRI plugin and the runc wrapper both use it.
package seccomp

import (
	"slices"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// AF_PACKET sockets send frames that never pass the cgroup inet hooks, so a
// container under an egress policy must not make them. Without CAP_NET_RAW
// the kernel refuses them; containerd's default capabilities include it, and
// no runtime lets a plugin take a capability away. What NRI (and the OCI
// spec, for the runc wrapper) does allow is the container's seccomp policy:
// DenyPacketSockets rewrites it to refuse socket(AF_PACKET, ...) with EPERM
// and to decide every other call exactly as before.
const afPacket = 17

var errnoEPERM = uint(1)

// denyRule refuses socket(AF_PACKET, ...) with EPERM.
func denyRule() rspec.LinuxSyscall {
	return rspec.LinuxSyscall{Names: []string{"socket"}, Action: rspec.ActErrno, ErrnoRet: &errnoEPERM,
		Args: []rspec.LinuxSeccompArg{{Index: 0, Value: afPacket, Op: rspec.OpEqualTo}}}
}

func permits(a rspec.LinuxSeccompAction) bool { return a == rspec.ActAllow || a == rspec.ActLog }

// DenyPacketSockets returns p changed to refuse AF_PACKET sockets; nil (no
// seccomp, "unconfined") becomes a policy that allows everything else. ok is
// false when a rule restricts socket() in a way this cannot rewrite exactly
// (runc ORs comparisons on one argument, so a rewrite is a set of rules with
// one comparison each; masked comparisons and very wide gaps have none
// here); p is then returned unchanged.
func DenyPacketSockets(p *rspec.LinuxSeccomp) (_ *rspec.LinuxSeccomp, ok bool) {
	if p == nil {
		return &rspec.LinuxSeccomp{DefaultAction: rspec.ActAllow, Syscalls: []rspec.LinuxSyscall{denyRule()}}, true
	}
	out := *p
	out.Syscalls = nil
	for _, r := range p.Syscalls {
		if !slices.Contains(r.Names, "socket") || !permits(r.Action) {
			out.Syscalls = append(out.Syscalls, r)
			continue
		}
		// Take socket out of the rule; the rest of its names keep it as is.
		if others := slices.DeleteFunc(slices.Clone(r.Names), func(n string) bool { return n == "socket" }); len(others) > 0 {
			rest := r
			rest.Names = others
			out.Syscalls = append(out.Syscalls, rest)
		}
		split, ok := withoutPacket(r)
		if !ok {
			return p, false
		}
		out.Syscalls = append(out.Syscalls, split...)
	}
	if permits(p.DefaultAction) {
		out.Syscalls = append(out.Syscalls, denyRule())
	}
	return &out, true
}

// withoutPacket rewrites one permitting rule for socket so that it no longer
// matches domain AF_PACKET, as rules with one comparison per argument.
func withoutPacket(r rspec.LinuxSyscall) ([]rspec.LinuxSyscall, bool) {
	rule := func(args ...rspec.LinuxSeccompArg) rspec.LinuxSyscall {
		n := r
		n.Names = []string{"socket"}
		n.Args = args
		return n
	}
	eq := func(v uint64) rspec.LinuxSeccompArg {
		return rspec.LinuxSeccompArg{Index: 0, Value: v, Op: rspec.OpEqualTo}
	}
	var domain *rspec.LinuxSeccompArg
	var others []rspec.LinuxSeccompArg
	for i := range r.Args {
		if r.Args[i].Index == 0 {
			if domain != nil {
				return nil, false // several comparisons on the domain: runc ORs them
			}
			domain = &r.Args[i]
		} else {
			others = append(others, r.Args[i])
		}
	}
	if domain == nil {
		// Any domain: add "domain != AF_PACKET" to the rule's conditions.
		return []rspec.LinuxSyscall{rule(append(others, rspec.LinuxSeccompArg{Index: 0, Value: afPacket, Op: rspec.OpNotEqual})...)}, true
	}
	// with: the rule for socket with these domain comparisons and its others.
	with := func(a rspec.LinuxSeccompArg) rspec.LinuxSyscall { return rule(append(slices.Clone(others), a)...) }
	v := domain.Value
	var out []rspec.LinuxSyscall
	switch domain.Op {
	case rspec.OpEqualTo:
		if v != afPacket {
			out = append(out, with(*domain))
		}
	case rspec.OpLessThan, rspec.OpLessEqual:
		hi := v // exclusive upper bound
		if domain.Op == rspec.OpLessEqual {
			hi = v + 1
		}
		if hi <= afPacket {
			return []rspec.LinuxSyscall{with(*domain)}, true
		}
		out = append(out, with(rspec.LinuxSeccompArg{Index: 0, Value: afPacket, Op: rspec.OpLessThan}))
		for d := uint64(afPacket + 1); d < hi; d++ {
			out = append(out, with(eq(d)))
		}
	case rspec.OpGreaterThan, rspec.OpGreaterEqual:
		lo := v // inclusive lower bound
		if domain.Op == rspec.OpGreaterThan {
			lo = v + 1
		}
		if lo > afPacket {
			return []rspec.LinuxSyscall{with(*domain)}, true
		}
		out = append(out, with(rspec.LinuxSeccompArg{Index: 0, Value: afPacket, Op: rspec.OpGreaterThan}))
		for d := lo; d < afPacket; d++ {
			out = append(out, with(eq(d)))
		}
	case rspec.OpNotEqual:
		if v == afPacket {
			return []rspec.LinuxSyscall{with(*domain)}, true
		}
		// Every domain but v and AF_PACKET: below the lower, above the
		// higher, and each one between (older containerd profiles allow
		// socket with "domain != AF_VSOCK (40)").
		a, b := min(v, afPacket), max(v, afPacket)
		if b-a > 256 {
			return nil, false
		}
		out = append(out, with(rspec.LinuxSeccompArg{Index: 0, Value: a, Op: rspec.OpLessThan}),
			with(rspec.LinuxSeccompArg{Index: 0, Value: b, Op: rspec.OpGreaterThan}))
		for d := a + 1; d < b; d++ {
			out = append(out, with(eq(d)))
		}
	default:
		return nil, false // masked comparisons
	}
	return out, true
}
