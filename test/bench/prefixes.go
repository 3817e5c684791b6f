package main

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/nriguard/nriguard/engine"
	"github.com/nriguard/nriguard/policy"
)

// spread draws n distinct random prefixes over the IPv4 and IPv6 unicast
// address spaces (one in ten IPv6), the lengths random too: /8-/32 and
// /16-/128. Spread out, they make an LPM trie as deep as such a policy
// really makes it (all inside 10/8, a lookup stops two nodes down).
func spread(r *rand.Rand, n int) []netip.Prefix {
	seen := map[netip.Prefix]bool{}
	var out []netip.Prefix
	for len(out) < n {
		var p netip.Prefix
		if r.IntN(10) == 0 {
			var b [16]byte
			for i := range b {
				b[i] = byte(r.UintN(256))
			}
			b[0] = 0x20 | b[0]&0x1f // global unicast, 2000::/3
			p = netip.PrefixFrom(netip.AddrFrom16(b), 16+r.IntN(113)).Masked()
		} else {
			var b [4]byte
			for i := range b {
				b[i] = byte(r.UintN(256))
			}
			b[0] = byte(1 + r.UintN(223)) // unicast: not 0/8, multicast or reserved
			if b[0] == 127 {
				continue // nor the loopback
			}
			p = netip.PrefixFrom(netip.AddrFrom4(b), 8+r.IntN(25)).Masked()
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// trie is a path-compressed binary trie of prefixes built as the kernel's
// BPF_MAP_TYPE_LPM_TRIE builds its own (kernel/bpf/lpm_trie.c): a node per
// prefix and one per branch point. It tells how many nodes a lookup visits.
type trie struct {
	root *node
}

type node struct {
	p     netip.Prefix
	child [2]*node
}

func bit(a netip.Addr, i int) int {
	b := a.AsSlice()
	return int(b[i/8]>>(7-i%8)) & 1
}

// common is the length of the common leading bits of two prefixes.
func common(a, b netip.Prefix) int {
	n := min(a.Bits(), b.Bits())
	x, y := a.Addr().AsSlice(), b.Addr().AsSlice()
	for i := 0; i < n; i++ {
		if x[i/8]>>(7-i%8)&1 != y[i/8]>>(7-i%8)&1 {
			return i
		}
	}
	return n
}

func (t *trie) insert(p netip.Prefix) {
	slot := &t.root
	for {
		n := *slot
		if n == nil {
			*slot = &node{p: p}
			return
		}
		m := common(n.p, p)
		switch {
		case m == n.p.Bits() && m == p.Bits():
			return // already there
		case m == n.p.Bits():
			slot = &n.child[bit(p.Addr(), m)]
		case m == p.Bits():
			nn := &node{p: p}
			nn.child[bit(n.p.Addr(), m)] = n
			*slot = nn
			return
		default:
			mid := &node{p: netip.PrefixFrom(p.Addr(), m).Masked()}
			mid.child[bit(n.p.Addr(), m)] = n
			mid.child[bit(p.Addr(), m)] = &node{p: p}
			*slot = mid
			return
		}
	}
}

// visits is how many nodes a lookup of a visits.
func (t *trie) visits(a netip.Addr) int {
	if !a.IsValid() {
		return 0
	}
	n, v := t.root, 0
	full := netip.PrefixFrom(a, a.BitLen())
	for n != nil {
		v++
		m := common(n.p, full)
		if m < n.p.Bits() || n.p.Bits() == a.BitLen() {
			return v
		}
		n = n.child[bit(a, n.p.Bits())]
	}
	return v
}

// destinations picks, in a family's prefixes, an address whose lookup is
// the deepest, and one whose lookup is about the shallowest (of a sample),
// once the rule allowing it (a /32 or /128) is in the trie too.
func destinations(r *rand.Rand, prefixes []netip.Prefix, v6 bool) (deep, shallow netip.Addr, depth [2]int) {
	t := &trie{}
	for _, p := range prefixes {
		if p.Addr().Is6() == v6 {
			t.insert(p)
		}
	}
	host := func(p netip.Prefix) netip.Addr {
		b := p.Addr().AsSlice()
		for i := p.Bits(); i < len(b)*8; i++ {
			if r.IntN(2) == 1 {
				b[i/8] |= 1 << (7 - i%8)
			}
		}
		a, _ := netip.AddrFromSlice(b)
		return a
	}
	best := -1
	for _, p := range prefixes {
		if p.Addr().Is6() != v6 {
			continue
		}
		if a := host(p); t.visits(a) > best {
			deep, best = a, t.visits(a)
		}
	}
	least := 1 << 30
	all := netip.PrefixFrom(netip.MustParseAddr("64.0.0.0"), 2) // unicast
	if v6 {
		all = netip.PrefixFrom(netip.MustParseAddr("2000::"), 3)
	}
	if best < 0 { // none of this family: any address is as deep as the /0
		deep = host(all)
	}
	for range 2000 {
		if a := host(all); t.visits(a) < least {
			shallow, least = a, t.visits(a)
		}
	}
	t.insert(netip.PrefixFrom(deep, deep.BitLen()))
	t.insert(netip.PrefixFrom(shallow, shallow.BitLen()))
	return deep, shallow, [2]int{t.visits(deep), t.visits(shallow)}
}

// benchPolicy is the policy of a size: the random prefixes, each allowing
// one protocol and port, and the rules allowing the benchmark's own flows
// (every destination it sends to, on the ports it uses), default deny.
func benchPolicy(r *rand.Rand, prefixes []netip.Prefix, own []netip.Addr, ports []policy.PortRange) *policy.Egress {
	e := &policy.Egress{Default: policy.Deny, Layer: policy.LayerLabel}
	for _, p := range prefixes {
		proto := []policy.Proto{policy.TCP, policy.UDP, policy.AnyProto}[r.IntN(3)]
		port := []uint16{53, 80, 443, 8443}[r.IntN(4)]
		e.Rules = append(e.Rules, policy.Rule{Action: policy.Allow, Proto: proto, Dest: p, Ports: []policy.PortRange{{Lo: port, Hi: port}}})
	}
	for _, a := range own {
		for _, pr := range ports {
			e.Rules = append(e.Rules, policy.Rule{Action: policy.Allow, Proto: policy.AnyProto, Dest: netip.PrefixFrom(a, a.BitLen()),
				Ports: []policy.PortRange{pr}})
		}
	}
	return e
}

// qualifiedPolicy is s's policy with qualifiers on 1,000 of its prefix rules
// (exe= one of 100 programs made in a directory of its own, uid= one of 10
// ranges) and on its own flows' rules (exe= this program, uid=0), compiled
// as a container's.
func qualifiedPolicy(s *size) (*policy.Compiled, error) {
	progDir, err := os.MkdirTemp("", "nriguard-bench-programs")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(progDir) // resolved to files when compiled: no longer needed
	var progs []string
	for i := range 100 {
		p := filepath.Join(progDir, fmt.Sprintf("prog%d", i))
		if err := os.WriteFile(p, []byte("\x7fELF not run"), 0o755); err != nil {
			return nil, err
		}
		progs = append(progs, p)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	e := &policy.Egress{Default: s.policy.Default, Layer: s.policy.Layer, Rules: slices.Clone(s.policy.Rules)}
	r := rand.New(rand.NewPCG(uint64(s.n), 11))
	own := len(e.Rules) - len(s.prefixes) // the benchmark's own rules come last
	for _, i := range r.Perm(len(s.prefixes))[:min(1000, len(s.prefixes))] {
		e.Rules[i].Quals = policy.Qualifiers{Exe: progs[r.IntN(len(progs))], UIDs: []policy.IDRange{{Lo: uint32(1000 * (1 + r.IntN(10))), Hi: uint32(1000*(1+r.IntN(10)) + 999)}}}
	}
	for i := len(s.prefixes); i < len(s.prefixes)+own; i++ {
		e.Rules[i].Quals = policy.Qualifiers{Exe: self, UIDs: []policy.IDRange{{Lo: 0, Hi: 0}}}
	}
	c, _, warnings, err := engine.CompileEgress(policy.Enforce, []*policy.Egress{e}, "/")
	if err == nil && len(warnings) > 0 {
		err = fmt.Errorf("qualified policy: %v", warnings)
	}
	return c, err
}
