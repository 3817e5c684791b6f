// Package policy holds nriguard's policy model: the rules a label declares,
// the reference decision that defines what they mean, and the compiler that
// turns them into the lookup tables the BPF datapath consults.
package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Action is what a rule or a default does with a flow.
type Action uint8

const (
	NoAction Action = iota // no default given
	Allow
	Deny
	// WouldDeny is a compiled verdict, never a rule's: denied by a layer
	// in audit mode, so let through and reported.
	WouldDeny
)

func (a Action) String() string {
	switch a {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	case WouldDeny:
		return "would-deny"
	}
	return "none"
}

// Proto is the transport protocol a rule applies to.
type Proto uint8

const (
	AnyProto Proto = iota
	TCP
	UDP
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return "any"
}

// IPProto is the IANA protocol number, as the kernel reports it.
func (p Proto) IPProto() uint8 {
	switch p {
	case TCP:
		return 6
	case UDP:
		return 17
	}
	return 0
}

// PortRange is an inclusive range of ports.
type PortRange struct{ Lo, Hi uint16 }

func (r PortRange) contains(p uint16) bool { return r.Lo <= p && p <= r.Hi }

// Rule is one "allow|deny proto dest[:ports]" line.
type Rule struct {
	Action Action
	Proto  Proto
	// AnyDest is set for "any": the rule covers every IPv4 and IPv6 address.
	AnyDest bool
	// Dest is the destination prefix when AnyDest is false. IPv4-mapped IPv6
	// prefixes are stored as IPv4: mapped destinations are judged as IPv4.
	Dest netip.Prefix
	// Name is a DNS name (lower case, no final dot) or a wildcard
	// ("*.example.com": one label more) instead of an address: the rule
	// matches the addresses the datapath learned for a matching name
	// (docs/policy.md, "Rules by DNS name"). Dest and AnyDest are unset.
	Name  string
	Ports []PortRange // empty means every port
	Quals Qualifiers  // whom the rule is about (none: everyone)
	Pos   int         // 1-based position among the rules of the value
	Text  string      // the rule as written
}

// Egress is a parsed egress value.
type Egress struct {
	// Layer says where the rules come from (set by whoever gathers a
	// container's layers; LayerNone for nriguard run's own rules).
	Layer Layer
	Rules []Rule
	// Default is the verdict when no rule matches; never NoAction after Parse.
	Default Action
	// DefaultExplicit tells whether "default ..." was written.
	DefaultExplicit bool
}

// prefixes returns the prefixes a rule covers: "any" is both /0s.
func (r *Rule) prefixes() []netip.Prefix {
	if r.Name != "" {
		return nil
	}
	if r.AnyDest {
		return []netip.Prefix{netip.PrefixFrom(netip.IPv4Unspecified(), 0), netip.PrefixFrom(netip.IPv6Unspecified(), 0)}
	}
	return []netip.Prefix{r.Dest}
}

// MatchesPort tells whether port is among the rule's.
func (r *Rule) MatchesPort(port uint16) bool {
	if len(r.Ports) == 0 {
		return true
	}
	for _, pr := range r.Ports {
		if pr.contains(port) {
			return true
		}
	}
	return false
}

// Match is the outcome of judging one flow against one policy.
type Match struct {
	Action Action
	// Rule is the index in Egress.Rules of the rule that decided, or -1 when
	// the default did.
	Rule int
}

// Decide is the reference decision, written straight from the contract in
// docs/policy.md, for a flow whose sender no qualifier names: among the
// rules that match the protocol, destination and port, the one with the
// most specific prefix decides; on the same prefix a deny beats an allow;
// no match gives the default. It is linear in the rule count and exists to
// define (and test) what the compiled tables must do.
func (e *Egress) Decide(proto Proto, addr netip.Addr, port uint16) Match {
	return e.decide(proto, addr, port, nil)
}

// DecideFor is Decide for a flow made by who: rules whose qualifiers do not
// hold for who do not match; on the same prefix a rule about who (a
// qualified one) beats a rule about everyone, then a deny beats an allow.
func (e *Egress) DecideFor(proto Proto, addr netip.Addr, port uint16, who Principal) Match {
	return e.decide(proto, addr, port, &who)
}

func (e *Egress) decide(proto Proto, addr netip.Addr, port uint16, who *Principal) Match {
	addr = addr.Unmap()
	best := -1
	var bestRank [3]int // prefix bits, qualified, deny
	for i := range e.Rules {
		r := &e.Rules[i]
		if r.Proto != AnyProto && r.Proto != proto {
			continue
		}
		bits := 0
		if r.Name != "" {
			continue // an address by itself matches no name rule
		}
		if !r.AnyDest {
			if !r.Dest.Contains(addr) {
				continue
			}
			bits = r.Dest.Bits()
		}
		if !r.MatchesPort(port) || !r.Quals.holds(who) {
			continue
		}
		rank := [3]int{bits, boolInt(r.Quals.Any()), boolInt(r.Action == Deny)}
		if best < 0 || slices.Compare(rank[:], bestRank[:]) > 0 {
			best, bestRank = i, rank
		}
	}
	if best < 0 {
		return Match{Action: e.Default, Rule: -1}
	}
	return Match{Action: e.Rules[best].Action, Rule: best}
}

// DecideLearned is Decide for a flow to an address the datapath learned
// for the DNS names learned (names as asked, lower case): a name rule that
// matches one of them and the flow's protocol and port decides, but only
// where no address rule matches (in the default's place). So an address
// rule, a deny above all, is never undone by what a DNS answer says.
func (e *Egress) DecideLearned(proto Proto, addr netip.Addr, port uint16, learned []string) Match {
	m := e.decide(proto, addr, port, nil)
	if m.Rule >= 0 {
		return m
	}
	for i := range e.Rules {
		r := &e.Rules[i]
		if r.Name == "" || (r.Proto != AnyProto && r.Proto != proto) || !r.MatchesPort(port) {
			continue
		}
		for _, n := range learned {
			if NameMatches(r.Name, n) {
				return Match{Action: r.Action, Rule: i}
			}
		}
	}
	return m
}

// HasNames tells whether some rule names a DNS name.
func (e *Egress) HasNames() bool {
	for i := range e.Rules {
		if e.Rules[i].Name != "" {
			return true
		}
	}
	return false
}

// NameMatches tells whether a name rule's pattern matches a name (both in
// lower case, without a final dot): equal, or for "*.suffix" a name of
// exactly one label more than suffix.
func NameMatches(pattern, name string) bool {
	suffix, wild := strings.CutPrefix(pattern, "*.")
	if !wild {
		return pattern == name
	}
	first, rest, ok := strings.Cut(name, ".")
	return ok && first != "" && rest == suffix
}

// String renders the policy back in the label grammar, one rule a line.
func (e *Egress) String() string {
	var b strings.Builder
	for _, r := range e.Rules {
		b.WriteString(r.Text)
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "default %s", e.Default)
	return b.String()
}
