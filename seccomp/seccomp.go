// Package seccomp rewrites a container's seccomp policy (OCI form) so that
// a container under an egress policy can make only the sockets nriguard's
// hooks judge (TCP and UDP over IPv4 and IPv6) and the local ones every
// program needs (unix, netlink), on every path: socket(2), socketpair(2),
// and neither io_uring (whose IORING_OP_SOCKET seccomp never sees) nor the
// 32-bit socketcall(2) (whose arguments seccomp cannot read). Every other
// call is decided exactly as before. The NRI plugin and the runc wrapper
// use Restrict; nriguard run installs Filter itself.
package seccomp

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// A socket is judged by its family and its type: the kernel turns some
// pairs into another kind of socket before any cgroup hook sees them
// (socket(AF_INET, SOCK_PACKET, ...) is a packet socket, __sock_create), so
// the family alone says too little.
const (
	afUnix    = 1
	afInet    = 2
	afInet6   = 10
	afNetlink = 16

	sockStream = 1
	sockDgram  = 2
	// typeMask is the type without SOCK_NONBLOCK and SOCK_CLOEXEC
	// (SOCK_TYPE_MASK): the flags are the caller's to choose.
	typeMask = 0xf
)

// AllowedFamilies are the socket families a policed container may use.
var AllowedFamilies = []uint64{
	afUnix,    // any type: local
	afInet,    // stream and datagram only: the cgroup hooks judge them
	afInet6,   // likewise
	afNetlink, // routes, interfaces (changing them needs CAP_NET_ADMIN)
}

// judgedTypes are the types the cgroup hooks judge under AF_INET and
// AF_INET6; every other type there is refused (SOCK_PACKET, above, and
// SOCK_RAW, which the hooks would refuse anyway).
var judgedTypes = []uint64{sockStream, sockDgram}

// typed tells whether a family is allowed only for judgedTypes.
func typed(family uint64) bool { return family == afInet || family == afInet6 }

// SocketAllowed tells whether a policed container may make a socket of
// family and type (its flags included), by any call.
func SocketAllowed(family, typ uint64) bool {
	if !slices.Contains(AllowedFamilies, family) {
		return false
	}
	return !typed(family) || slices.Contains(judgedTypes, typ&typeMask)
}

// byDomain are the calls that make sockets, filtered on their first
// two arguments; refused are calls that are refused whatever their arguments.
var (
	byDomain = []string{"socket", "socketpair"}
	refused  = []string{"io_uring_setup", "socketcall"}
)

// refusal is a rule that refuses with the runtime's default errno, EPERM:
// ErrnoRet is left unset because some runtimes' NRI (CRI-O's NRI v0.11.0)
// crash converting a rule that sets it.
func refusal(name string, args ...rspec.LinuxSeccompArg) rspec.LinuxSyscall {
	return rspec.LinuxSyscall{Names: []string{name}, Action: rspec.ActErrno, Args: args}
}

func permits(a rspec.LinuxSeccompAction) bool { return a == rspec.ActAllow || a == rspec.ActLog }

// Restrict returns p changed so that the calls that make sockets are
// permitted only for the sockets SocketAllowed allows, and io_uring_setup and socketcall not
// at all; nil (no seccomp, "unconfined") becomes a policy that allows
// everything else. Every rule of p is kept, but for those names.
func Restrict(p *rspec.LinuxSeccomp) *rspec.LinuxSeccomp {
	if p == nil {
		p = &rspec.LinuxSeccomp{DefaultAction: rspec.ActAllow}
	}
	out := *p
	out.Syscalls = nil
	for _, r := range p.Syscalls {
		mine := slices.ContainsFunc(r.Names, func(n string) bool {
			return slices.Contains(byDomain, n) || slices.Contains(refused, n)
		})
		if !mine || !permits(r.Action) {
			out.Syscalls = append(out.Syscalls, r)
			continue
		}
		var others []string
		for _, n := range r.Names {
			switch {
			case slices.Contains(byDomain, n):
				out.Syscalls = append(out.Syscalls, onlyAllowed(r, n)...)
			case slices.Contains(refused, n):
				// dropped: a refusing default, or the rule below, refuses it
			default:
				others = append(others, n)
			}
		}
		if len(others) > 0 {
			rest := r
			rest.Names = others
			out.Syscalls = append(out.Syscalls, rest)
		}
	}
	if permits(p.DefaultAction) {
		for _, n := range byDomain {
			out.Syscalls = append(out.Syscalls, outsideAllowed(n)...)
		}
		for _, n := range refused {
			out.Syscalls = append(out.Syscalls, refusal(n))
		}
	}
	return &out
}

// onlyAllowed rewrites what a permitting rule says of name as rules that
// permit it only for allowed sockets, with one comparison per argument
// (runc turns several comparisons of one argument into separate rules, an
// OR). Under AF_INET and AF_INET6 the type is compared too; where the rule
// already compares the type, a judged type is permitted only if that
// comparison holds for it with any flags (fail closed).
func onlyAllowed(r rspec.LinuxSyscall, name string) []rspec.LinuxSyscall {
	rule := func(args ...rspec.LinuxSeccompArg) rspec.LinuxSyscall {
		n := r
		n.Names = []string{name}
		n.Args = args
		return n
	}
	// the rules that permit family d, given the rule's other comparisons
	forFamily := func(others []rspec.LinuxSeccompArg, d uint64) []rspec.LinuxSyscall {
		if !typed(d) {
			return []rspec.LinuxSyscall{rule(append(slices.Clone(others), familyIs(d))...)}
		}
		var out []rspec.LinuxSyscall
		for _, t := range judgedTypes {
			// a comparison of the type stays only where it holds for every
			// form of t (its flags): then the type's own comparison says it
			var kept []rspec.LinuxSeccompArg
			ok := true
			for _, a := range others {
				if a.Index != 1 {
					kept = append(kept, a)
					continue
				}
				for _, f := range typeForms(t) {
					ok = ok && holds(a, f)
				}
			}
			if ok {
				out = append(out, rule(append(kept, familyIs(d), typeIs(typeMask, t))...))
			}
		}
		return out
	}
	// The rule's conditions: all of them (AND), or, if an argument has
	// several, any one of them (OR, as runc loads it).
	count := map[uint]int{}
	for _, a := range r.Args {
		count[a.Index]++
	}
	or := false
	for _, n := range count {
		or = or || n > 1
	}
	var out []rspec.LinuxSyscall
	if !or {
		var others []rspec.LinuxSeccompArg
		var domain *rspec.LinuxSeccompArg
		for i, a := range r.Args {
			if a.Index == 0 {
				domain = &r.Args[i]
			} else {
				others = append(others, a)
			}
		}
		for _, d := range AllowedFamilies {
			if domain == nil || holds(*domain, d) {
				out = append(out, forFamily(others, d)...)
			}
		}
		return out
	}
	for _, a := range r.Args {
		for _, d := range AllowedFamilies {
			switch {
			case a.Index != 0:
				out = append(out, forFamily([]rspec.LinuxSeccompArg{a}, d)...)
			case holds(a, d):
				out = append(out, forFamily(nil, d)...)
			}
		}
	}
	return out
}

func familyIs(d uint64) rspec.LinuxSeccompArg {
	return rspec.LinuxSeccompArg{Index: 0, Value: d, Op: rspec.OpEqualTo}
}

func typeIs(mask, t uint64) rspec.LinuxSeccompArg {
	return rspec.LinuxSeccompArg{Index: 1, Value: mask, ValueTwo: t, Op: rspec.OpMaskedEqual}
}

// refusedTypes cover every type but judgedTypes under a typed family, as
// masked comparisons: 0, 3, and 4-7, 8-11, 12-15 by their top two bits.
var refusedTypes = [][2]uint64{{typeMask, 0}, {typeMask, 3}, {0xc, 4}, {0xc, 8}, {0xc, 12}}

// outsideAllowed refuses name for every socket but the allowed ones, one
// comparison per argument per rule.
func outsideAllowed(name string) []rspec.LinuxSyscall {
	arg := func(op rspec.LinuxSeccompOperator, v uint64) rspec.LinuxSeccompArg {
		return rspec.LinuxSeccompArg{Index: 0, Value: v, Op: op}
	}
	allowed := slices.Sorted(slices.Values(AllowedFamilies))
	out := []rspec.LinuxSyscall{refusal(name, arg(rspec.OpLessThan, allowed[0]))}
	for i := 0; i+1 < len(allowed); i++ {
		for d := allowed[i] + 1; d < allowed[i+1]; d++ {
			out = append(out, refusal(name, arg(rspec.OpEqualTo, d)))
		}
	}
	out = append(out, refusal(name, arg(rspec.OpGreaterThan, allowed[len(allowed)-1])))
	for _, d := range allowed {
		if typed(d) {
			for _, t := range refusedTypes {
				out = append(out, refusal(name, familyIs(d), typeIs(t[0], t[1])))
			}
		}
	}
	return out
}

// holds evaluates one comparison for a value of its argument.
func holds(a rspec.LinuxSeccompArg, v uint64) bool {
	switch a.Op {
	case rspec.OpEqualTo:
		return v == a.Value
	case rspec.OpNotEqual:
		return v != a.Value
	case rspec.OpLessThan:
		return v < a.Value
	case rspec.OpLessEqual:
		return v <= a.Value
	case rspec.OpGreaterThan:
		return v > a.Value
	case rspec.OpGreaterEqual:
		return v >= a.Value
	case rspec.OpMaskedEqual:
		return v&a.Value == a.ValueTwo
	}
	return false
}

// Allows evaluates a call whose first two arguments are arg0 and arg1 (the
// others 0) against a policy as runc loads it: a rule's comparisons must all
// hold, unless one argument has several, which runc adds as a rule each (so
// any one holding will do); a refusing match wins over a permitting one
// (libseccomp's precedence); with no match, the default decides.
func Allows(p *rspec.LinuxSeccomp, name string, arg0, arg1 uint64) bool {
	if p == nil {
		return true
	}
	args := []uint64{arg0, arg1, 0, 0, 0, 0}
	matched, refusedMatch := false, false
	for _, r := range p.Syscalls {
		if !slices.Contains(r.Names, name) {
			continue
		}
		count := map[uint]int{}
		for _, a := range r.Args {
			count[a.Index]++
		}
		or := false
		for _, n := range count {
			or = or || n > 1
		}
		match := !or
		for _, a := range r.Args {
			if a.Index >= uint(len(args)) {
				continue
			}
			if or {
				match = match || holds(a, args[a.Index])
			} else {
				match = match && holds(a, args[a.Index])
			}
		}
		if match {
			matched = true
			refusedMatch = refusedMatch || !permits(r.Action)
		}
	}
	if matched {
		return !refusedMatch
	}
	return permits(p.DefaultAction)
}

// typeForms are the values of the type argument the kernel takes for a
// type: with and without each flag.
func typeForms(t uint64) []uint64 {
	return []uint64{t, t | unix.SOCK_NONBLOCK, t | unix.SOCK_CLOEXEC, t | unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC}
}

// socketTypes are the types Check tries, in every form.
func socketTypes() []uint64 {
	var out []uint64
	for t := uint64(0); t <= typeMask; t++ {
		out = append(out, typeForms(t)...)
	}
	return out
}

// notable names the families a reader will look for in Check's message.
var notable = map[uint64]string{17: "AF_PACKET", 40: "AF_VSOCK", 44: "AF_XDP", 38: "AF_ALG", 30: "AF_TIPC", 29: "AF_CAN", 31: "AF_BLUETOOTH"}

// notableTypes names the types a reader will look for in Check's message.
var notableTypes = map[uint64]string{3: "SOCK_RAW", 5: "SOCK_SEQPACKET", 10: "SOCK_PACKET"}

// Check says what a container's policy lets it do that a container under an
// egress policy may not: socket families other than AllowedFamilies, types
// under AF_INET and AF_INET6 other than stream and datagram (by socket or
// socketpair), io_uring_setup, socketcall. nil means nothing: it is at least
// as strict as Restrict's.
func Check(p *rspec.LinuxSeccomp) error {
	var fams []uint64
	typesOf := map[uint64][]uint64{}
	for d := uint64(0); d < 64; d++ {
		for _, t := range socketTypes() {
			if SocketAllowed(d, t) || !slices.ContainsFunc(byDomain, func(n string) bool { return Allows(p, n, d, t) }) {
				continue
			}
			if !slices.Contains(AllowedFamilies, d) {
				fams = append(fams, d)
				break
			}
			if bare := t & typeMask; !slices.Contains(typesOf[d], bare) {
				typesOf[d] = append(typesOf[d], bare)
			}
		}
	}
	var extra []string
	if len(fams) > 0 {
		var named []string
		for _, d := range fams {
			if n, ok := notable[d]; ok {
				named = append(named, fmt.Sprintf("%s %d", n, d))
			}
		}
		e := "socket families " + ranges(fams)
		if len(named) > 0 {
			e += " (" + strings.Join(named, ", ") + ")"
		}
		extra = append(extra, e)
	}
	for _, d := range []uint64{afInet, afInet6} {
		ts := typesOf[d]
		if len(ts) == 0 {
			continue
		}
		slices.Sort(ts)
		var named []string
		for _, t := range ts {
			if n, ok := notableTypes[t]; ok {
				named = append(named, fmt.Sprintf("%s %d", n, t))
			}
		}
		e := fmt.Sprintf("socket types %s under %s (the kernel makes SOCK_PACKET a packet socket)", ranges(ts), map[uint64]string{afInet: "AF_INET", afInet6: "AF_INET6"}[d])
		if len(named) > 0 {
			e += ": " + strings.Join(named, ", ")
		}
		extra = append(extra, e)
	}
	for _, n := range refused {
		if Allows(p, n, 0, 0) {
			extra = append(extra, n)
		}
	}
	if len(extra) == 0 {
		return nil
	}
	return fmt.Errorf("its seccomp policy lets it make sockets the hooks cannot judge: %s", strings.Join(extra, "; "))
}

// ranges writes sorted numbers as "0, 3-9, 11".
func ranges(ns []uint64) string {
	var parts []string
	for i := 0; i < len(ns); {
		j := i
		for j+1 < len(ns) && ns[j+1] == ns[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, fmt.Sprint(ns[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", ns[i], ns[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}

// RestrictJSON is Restrict for a profile file as podman and docker write
// them, whose rules may carry fields the OCI form has not (includes and
// excludes by capability, comments, errnoRet): every rule is kept as it is
// written but for the names and comparisons Restrict changes.
func RestrictJSON(data []byte) ([]byte, error) {
	var profile map[string]any
	if err := json.Unmarshal(data, &profile); err != nil {
		return nil, err
	}
	var oci struct {
		DefaultAction rspec.LinuxSeccompAction `json:"defaultAction"`
		Syscalls      []rspec.LinuxSyscall     `json:"syscalls"`
	}
	if err := json.Unmarshal(data, &oci); err != nil {
		return nil, err
	}
	raw, _ := profile["syscalls"].([]any)
	if len(raw) != len(oci.Syscalls) {
		return nil, fmt.Errorf("syscalls: expected a list of rules")
	}
	var out []any
	for i, r := range oci.Syscalls {
		// one rule alone, under a default that permits nothing: what
		// Restrict makes of it
		for _, nr := range Restrict(&rspec.LinuxSeccomp{DefaultAction: rspec.ActErrno, Syscalls: []rspec.LinuxSyscall{r}}).Syscalls {
			m := map[string]any{}
			for k, v := range raw[i].(map[string]any) {
				m[k] = v
			}
			m["names"], m["args"] = nr.Names, nr.Args
			out = append(out, m)
		}
	}
	if permits(oci.DefaultAction) {
		for _, r := range Restrict(nil).Syscalls {
			out = append(out, r)
		}
	}
	profile["syscalls"] = out
	return json.MarshalIndent(profile, "", "  ")
}
