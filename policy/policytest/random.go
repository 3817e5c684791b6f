// Package policytest makes random egress policies and the flows that probe
// them, for differential tests of the compiled tables and the datapath
// against the reference decision.
package policytest

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"

	"github.com/nriguard/nriguard/policy"
)

// Seeds are the address families' roots the random prefixes nest under, so
// that random rules overlap often.
var seeds = []netip.Addr{
	netip.MustParseAddr("10.0.0.0"),
	netip.MustParseAddr("10.1.2.0"),
	netip.MustParseAddr("192.0.2.0"),
	netip.MustParseAddr("2001:db8::"),
	netip.MustParseAddr("2001:db8:0:1::"),
}

var ports = []string{"22", "53", "80", "443", "80,443", "8000-8999", "1-1023", "8080-8090,9000"}

// Policy writes n random rules over the seed prefixes and a default.
func Policy(r *rand.Rand, n int) string {
	var b strings.Builder
	for range n {
		fmt.Fprintf(&b, "%s %s %s;", pick(r, "allow", "deny"), pick(r, "tcp", "udp", "any"), dest(r))
	}
	fmt.Fprintf(&b, "default %s", pick(r, "allow", "deny"))
	return b.String()
}

func dest(r *rand.Rand) string {
	if r.IntN(20) == 0 {
		if r.IntN(2) == 0 {
			return "any:" + ports[r.IntN(len(ports))]
		}
		return "any"
	}
	s := seeds[r.IntN(len(seeds))]
	bits := s.BitLen()
	p := netip.PrefixFrom(randomIn(r, netip.PrefixFrom(s, bits/2)), bits/2+r.IntN(bits/2+1)).Masked()
	text := p.String()
	if r.IntN(2) == 0 {
		return text
	}
	if s.Is6() {
		text = "[" + text + "]"
	}
	return text + ":" + ports[r.IntN(len(ports))]
}

// randomIn returns a random address inside p.
func randomIn(r *rand.Rand, p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		if r.IntN(2) == 1 {
			b[i/8] |= 0x80 >> (i % 8)
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Flow is one destination to judge.
type Flow struct {
	Proto policy.Proto
	Addr  netip.Addr
	Port  uint16
}

func (f Flow) String() string {
	return fmt.Sprintf("%v %s", f.Proto, netip.AddrPortFrom(f.Addr, f.Port))
}

// Flows returns n flows aimed at e's rules: addresses inside the rule
// prefixes (sometimes IPv4-mapped), ports on and next to the rule ports.
func Flows(r *rand.Rand, e *policy.Egress, n int) []Flow {
	out := make([]Flow, 0, n)
	for range n {
		f := Flow{Proto: policy.TCP, Port: uint16(r.IntN(65536))}
		if r.IntN(2) == 0 {
			f.Proto = policy.UDP
		}
		var rule *policy.Rule
		if len(e.Rules) > 0 && r.IntN(8) != 0 {
			rule = &e.Rules[r.IntN(len(e.Rules))]
		}
		switch {
		case rule != nil && !rule.AnyDest && rule.Name == "":
			f.Addr = randomIn(r, rule.Dest)
		default:
			f.Addr = randomIn(r, netip.PrefixFrom(seeds[r.IntN(len(seeds))], 8))
		}
		if rule != nil && len(rule.Ports) > 0 && r.IntN(4) != 0 {
			pr := rule.Ports[r.IntN(len(rule.Ports))]
			f.Port = []uint16{pr.Lo, pr.Hi, pr.Lo - 1, pr.Hi + 1}[r.IntN(4)]
		}
		if f.Addr.Is4() && r.IntN(5) == 0 {
			f.Addr = netip.AddrFrom16(f.Addr.As16())
		}
		out = append(out, f)
	}
	return out
}

// Patterns are the DNS names and wildcards random policies allow, and
// Questions the names asked that are worth trying against them.
var (
	Patterns  = []string{"api.example.com", "*.example.com", "cdn.example.net", "*.svc.cluster.local"}
	Questions = []string{"api.example.com", "www.example.com", "a.b.example.com", "example.com", "cdn.example.net",
		"x.svc.cluster.local", "svc.cluster.local", "other.org"}
)

// NamedPolicy is Policy with n allow rules by DNS name among the rules.
func NamedPolicy(r *rand.Rand, rules, names int) string {
	var b strings.Builder
	for range names {
		d := pick(r, Patterns...)
		if r.IntN(2) == 0 {
			d += ":" + ports[r.IntN(len(ports))]
		}
		fmt.Fprintf(&b, "allow %s %s;", pick(r, "tcp", "udp", "any"), d)
	}
	b.WriteString(Policy(r, rules))
	return b.String()
}

// Learned picks the names an address was learned for.
func Learned(r *rand.Rand) []string {
	var out []string
	for range r.IntN(3) {
		out = append(out, pick(r, Questions...))
	}
	return out
}

func pick(r *rand.Rand, s ...string) string { return s[r.IntN(len(s))] }

// Exes are the exe= patterns random qualified policies draw from.
var Exes = []string{"/usr/bin/curl", "/usr/bin/wget", "/app/", "/app/bin/server", "/bin/"}

var idRanges = []string{"0", "1000", "1000-1999", "65534", "0,1000-1001", "500-5000"}

// IDs are user and group ids worth trying against idRanges.
var IDs = []uint32{0, 1, 499, 500, 999, 1000, 1001, 1002, 1999, 2000, 5000, 5001, 65534, 65535}

// QualifiedPolicy is Policy with qualifiers (exe=, uid=, gid=) on about a
// third of the rules.
func QualifiedPolicy(r *rand.Rand, n int) string { return QualifiedPolicyWith(r, n, Exes) }

// QualifiedPolicyWith is QualifiedPolicy with exe= patterns drawn from exes.
func QualifiedPolicyWith(r *rand.Rand, n int, exes []string) string {
	var b strings.Builder
	for range n {
		fmt.Fprintf(&b, "%s %s %s", pick(r, "allow", "deny"), pick(r, "tcp", "udp", "any"), dest(r))
		if r.IntN(3) == 0 {
			if r.IntN(2) == 0 {
				fmt.Fprintf(&b, " exe=%s", pick(r, exes...))
			}
			if r.IntN(2) == 0 {
				fmt.Fprintf(&b, " uid=%s", pick(r, idRanges...))
			}
			if r.IntN(3) == 0 {
				fmt.Fprintf(&b, " gid=%s", pick(r, idRanges...))
			}
		}
		b.WriteString(";")
	}
	fmt.Fprintf(&b, "default %s", pick(r, "allow", "deny"))
	return b.String()
}

// Programs makes n random program classes: each the exe= patterns one file
// would satisfy.
func Programs(r *rand.Rand, n int) [][]string {
	var out [][]string
	for range n {
		var set []string
		for _, e := range Exes {
			if r.IntN(3) == 0 {
				set = append(set, e)
			}
		}
		out = append(out, set)
	}
	return out
}
