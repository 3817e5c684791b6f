package policy

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// The datapath decides a flow with two longest-prefix-match lookups, so its
// cost does not grow with the rule count:
//
//  1. the destination address in a trie of every prefix the rules name (plus
//     the /0s) gives a class: the most specific named prefix that contains it;
//  2. (class, protocol, port) in a second trie gives the verdict.
//
// The compiler resolves, for every named prefix P, the complete answer for
// every protocol and port: rules on P first, then rules on the prefixes that
// contain P from longest to shortest, then the default — exactly Decide's
// "most specific matching prefix" order. Prefixes whose answers are equal
// share a class, so a thousand "allow tcp X:443" rules need one port table.

// PrefixClass maps a destination prefix to its class.
type PrefixClass struct {
	Prefix netip.Prefix
	Class  uint32
}

// PortEntry is one entry of the port trie: ports whose first Bits bits equal
// Port's get Verdict, for the class and IP protocol. Bits 0 is the class's
// base verdict for that protocol; longer entries are its exceptions.
type PortEntry struct {
	Class   uint32
	Proto   uint8 // 6 (TCP) or 17 (UDP)
	Port    uint16
	Bits    uint8 // 0-16
	Verdict Verdict
}

// Compiled is an egress policy as lookup tables.
type Compiled struct {
	V4, V6  []PrefixClass
	Ports   []PortEntry
	Classes int
	// Sockets is the verdict for the sockets the datapath cannot judge by
	// destination (raw, ping, SCTP...): denied by the layers' policy, or in
	// audit mode without a ceiling, only reported.
	Sockets Verdict
}

var transports = [...]Proto{TCP, UDP}

// interval is a run of ports [lo, hi] with one verdict.
type interval struct {
	lo, hi int
	v      Verdict
}

// Compile compiles the intersection of one or more policies (node ceiling,
// profile, labels, image...) for a container in mode: a flow passes only if
// every layer lets it pass; in audit mode, a flow only a layer other than
// the ceiling refuses is let through and reported (WouldDeny).
//
// It is still two lookups in the kernel: for an address whose most specific
// prefix among all layers is P, each layer's matching prefixes are exactly
// its prefixes that contain P, so P's table is the intersection of each
// layer's resolved table at P.
func Compile(mode Mode, layers ...*Egress) *Compiled {
	type layer struct {
		e        *Egress
		byPrefix map[netip.Prefix][]*Rule
	}
	ls := make([]layer, len(layers))
	// Every named prefix of every layer, and the /0s, which always exist so
	// that every lookup finds a class.
	union := map[netip.Prefix]bool{
		netip.PrefixFrom(netip.IPv4Unspecified(), 0): true,
		netip.PrefixFrom(netip.IPv6Unspecified(), 0): true,
	}
	sockets := Verdict{Action: Deny, Layer: numLayers}
	for i, e := range layers {
		ls[i] = layer{e, map[netip.Prefix][]*Rule{}}
		for j := range e.Rules {
			for _, p := range e.Rules[j].prefixes() {
				ls[i].byPrefix[p] = append(ls[i].byPrefix[p], &e.Rules[j])
				union[p] = true
			}
		}
		sockets = refusal(sockets, Verdict{Action: Deny, Layer: e.Layer})
	}
	// Prefix lengths in use, per family, longest first: the only lengths an
	// ancestor can have.
	var lens4, lens6 []int
	seen := map[[2]int]bool{}
	for p := range union {
		fam := 4
		if p.Addr().Is6() {
			fam = 6
		}
		if k := [2]int{p.Bits(), fam}; !seen[k] {
			seen[k] = true
			if fam == 4 {
				lens4 = append(lens4, k[0])
			} else {
				lens6 = append(lens6, k[0])
			}
		}
	}
	slices.SortFunc(lens4, func(a, b int) int { return b - a })
	slices.SortFunc(lens6, func(a, b int) int { return b - a })

	c := &Compiled{Sockets: sockets.inMode(mode)}
	classOf := map[string]uint32{}
	prefixes := make([]netip.Prefix, 0, len(union))
	for p := range union {
		prefixes = append(prefixes, p)
	}
	slices.SortFunc(prefixes, func(a, b netip.Prefix) int {
		if x := a.Addr().Compare(b.Addr()); x != 0 {
			return x
		}
		return a.Bits() - b.Bits()
	})
	var chain [][]*Rule
	for _, p := range prefixes {
		lens := lens4
		if p.Addr().Is6() {
			lens = lens6
		}
		var tables [len(transports)][]interval
		for li, l := range ls {
			chain = chain[:0]
			for _, n := range lens {
				if n > p.Bits() {
					continue
				}
				if rules := l.byPrefix[netip.PrefixFrom(p.Addr(), n).Masked()]; len(rules) > 0 {
					chain = append(chain, rules)
				}
			}
			for i, proto := range transports {
				t := resolve(chain, proto, l.e.Default, l.e.Layer)
				if li == 0 {
					tables[i] = t
				} else {
					tables[i] = intersect(tables[i], t)
				}
			}
		}
		var key strings.Builder
		for i := range transports {
			tables[i] = inMode(tables[i], mode)
			for _, iv := range tables[i] {
				key.WriteString(strconv.Itoa(iv.lo))
				key.WriteByte(iv.v.Action.String()[0])
				key.WriteString(strconv.Itoa(int(iv.v.Layer)))
			}
			key.WriteByte('|')
		}
		class, ok := classOf[key.String()]
		if !ok {
			class = uint32(len(classOf))
			classOf[key.String()] = class
			for i, proto := range transports {
				c.Ports = appendPortEntries(c.Ports, class, proto.IPProto(), tables[i])
			}
		}
		pc := PrefixClass{Prefix: p, Class: class}
		if p.Addr().Is4() {
			c.V4 = append(c.V4, pc)
		} else {
			c.V6 = append(c.V6, pc)
		}
	}
	c.Classes = len(classOf)
	return c
}

// intersect combines two port tables: a port is allowed only where both
// allow it.
func intersect(a, b []interval) []interval {
	var out []interval
	for i, j := 0, 0; i < len(a) && j < len(b); {
		lo := max(a[i].lo, b[j].lo)
		hi := min(a[i].hi, b[j].hi)
		v := refusal(a[i].v, b[j].v)
		if n := len(out); n > 0 && out[n-1].v == v {
			out[n-1].hi = hi
		} else {
			out = append(out, interval{lo, hi, v})
		}
		if a[i].hi == hi {
			i++
		}
		if b[j].hi == hi {
			j++
		}
	}
	return out
}

// inMode applies a container's mode to a resolved table.
func inMode(t []interval, m Mode) []interval {
	for i := range t {
		t[i].v = t[i].v.inMode(m)
	}
	return t
}

// DecideLayers is the reference decision for a container's layers in mode:
// a flow passes only if every layer lets it pass; a refusal names the
// ceiling if it refuses, else the first refusing layer in Layer's order; in
// audit mode only the ceiling's refusals are enforced.
func DecideLayers(mode Mode, layers []*Egress, proto Proto, addr netip.Addr, port uint16) Verdict {
	v := Allowed
	for _, e := range layers {
		if e.Decide(proto, addr, port).Action == Deny {
			v = refusal(v, Verdict{Action: Deny, Layer: e.Layer})
		}
	}
	return v.inMode(mode)
}

// resolve computes the verdict for every port of proto given the rules of a
// prefix and its ancestors, most specific first. It sweeps the port range
// once, keeping per level how many allow and deny rules cover the port.
func resolve(chain [][]*Rule, proto Proto, def Action, layer Layer) []interval {
	type event struct {
		at, level int
		deny      bool
		delta     int
	}
	var events []event
	for level, rules := range chain {
		for _, r := range rules {
			if r.Proto != AnyProto && r.Proto != proto {
				continue
			}
			ranges := r.Ports
			if len(ranges) == 0 {
				ranges = []PortRange{{0, 65535}}
			}
			for _, pr := range ranges {
				d := r.Action == Deny
				events = append(events, event{int(pr.Lo), level, d, 1}, event{int(pr.Hi) + 1, level, d, -1})
			}
		}
	}
	slices.SortFunc(events, func(a, b event) int { return a.at - b.at })
	counts := make([][2]int, len(chain)) // [level]{allows, denies}
	var out []interval
	denied := Verdict{Action: Deny, Layer: layer}
	verdict := func() Verdict {
		for _, c := range counts {
			if c[1] > 0 {
				return denied
			}
			if c[0] > 0 {
				return Allowed
			}
		}
		if def == Deny {
			return denied
		}
		return Allowed
	}
	for i, at := 0, 0; at <= 65535; {
		for i < len(events) && events[i].at == at {
			ev := events[i]
			if ev.deny {
				counts[ev.level][1] += ev.delta
			} else {
				counts[ev.level][0] += ev.delta
			}
			i++
		}
		next := 65536
		if i < len(events) {
			next = events[i].at
		}
		v := verdict()
		if n := len(out); n > 0 && out[n-1].v == v {
			out[n-1].hi = next - 1
		} else {
			out = append(out, interval{at, next - 1, v})
		}
		at = next
	}
	return out
}

// appendPortEntries writes one class's table for one protocol: a base entry
// with the verdict that covers the most ports, and the runs of the other
// verdicts cut into aligned power-of-two blocks (at most 31 per run).
func appendPortEntries(dst []PortEntry, class uint32, proto uint8, ivs []interval) []PortEntry {
	covered := map[Verdict]int{}
	base := ivs[0].v
	for _, iv := range ivs {
		covered[iv.v] += iv.hi - iv.lo + 1
		if covered[iv.v] > covered[base] {
			base = iv.v
		}
	}
	dst = append(dst, PortEntry{Class: class, Proto: proto, Verdict: base})
	for _, iv := range ivs {
		if iv.v == base {
			continue
		}
		for lo := iv.lo; lo <= iv.hi; {
			size := 1
			for lo%(size*2) == 0 && lo+size*2-1 <= iv.hi && size < 65536 {
				size *= 2
			}
			bits := 16
			for s := size; s > 1; s /= 2 {
				bits--
			}
			dst = append(dst, PortEntry{Class: class, Proto: proto, Port: uint16(lo), Bits: uint8(bits), Verdict: iv.v})
			lo += size
		}
	}
	return dst
}

// Lookup answers a flow the way the datapath does, from the tables alone. It
// is slow and for tests: the kernel's tries do this in the datapath.
func (c *Compiled) Lookup(proto Proto, addr netip.Addr, port uint16) Verdict {
	addr = addr.Unmap()
	table := c.V4
	if addr.Is6() {
		table = c.V6
	}
	class, bestBits := uint32(0), -1
	for _, pc := range table {
		if pc.Prefix.Contains(addr) && pc.Prefix.Bits() > bestBits {
			class, bestBits = pc.Class, pc.Prefix.Bits()
		}
	}
	failClosed := Verdict{Action: Deny} // as the datapath does on a miss
	if bestBits < 0 {
		return failClosed
	}
	v, best := failClosed, -1
	for _, pe := range c.Ports {
		if pe.Class != class || pe.Proto != proto.IPProto() || int(pe.Bits) <= best {
			continue
		}
		if pe.Bits == 0 || port>>(16-pe.Bits) == pe.Port>>(16-pe.Bits) {
			v, best = pe.Verdict, int(pe.Bits)
		}
	}
	return v
}
