package policy

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// The datapath decides a flow with two searches in sorted arrays, so its
// cost grows with neither the rule count nor where the prefixes lie:
//
//  1. the destination address among the starts of the runs of addresses
//     that share a class gives the class: that of the most specific named
//     prefix that contains it;
//  2. (class, protocol, port) among the starts of the runs of ports that
//     share a verdict gives the verdict.
//
// The compiler resolves, for every named prefix P, the complete answer for
// every protocol and port: rules on P first, then rules on the prefixes that
// contain P from longest to shortest, then the default — exactly Decide's
// "most specific matching prefix" order. Prefixes whose answers are equal
// share a class, so a thousand "allow tcp X:443" rules need one port table.
// The prefixes then become runs: the address space cut where the most
// specific prefix changes, each run the class of its most specific prefix.

// Run4 starts a run of IPv4 addresses of one class: from Start (as a
// number) up to the next run's.
type Run4 struct {
	Start uint32
	Class uint32
}

// Run6 is Run4 for IPv6: Start is Hi<<64 | Lo.
type Run6 struct {
	Hi, Lo uint64
	Class  uint32
}

// PortRun starts a run of ports with one verdict, for a class and a
// protocol: from Port up to the next run's of the same class and protocol
// (every class and protocol has a run at port 0).
type PortRun struct {
	Class   uint32
	Proto   uint8 // 6 (TCP) or 17 (UDP)
	Port    uint16
	Verdict Verdict
	// Nameable: only the default of the layer with DNS names refuses, so a
	// name that layer allows the flow to decides instead (Names).
	Nameable bool
}

// NameClass is a DNS name (or wildcard) the rules of a policy allow, and the
// class whose port runs say which protocols and ports the addresses
// learned for it may be reached on (allow, or deny where its rules do not
// reach).
type NameClass struct {
	Pattern string
	Class   uint32
}

// Compiled is an egress policy as lookup tables, each sorted by its start.
type Compiled struct {
	V4      []Run4
	V6      []Run6
	Ports   []PortRun
	Classes int
	// Sockets is the verdict for the sockets the datapath cannot judge by
	// destination (raw, ping, SCTP...): denied by the layers' policy, or in
	// audit mode without a ceiling, only reported.
	Sockets Verdict

	// Who makes a flow matters only under rules with qualifiers (exe=,
	// uid=, gid=). An address class marked Dependent has, besides its own
	// port runs (for a principal no qualifier names), an Override per
	// principal class a qualifier names: the class whose port runs apply.
	// A principal class is (program class, uid class, gid class): the
	// program class of a file is given to CompileFor (Programs); uid and gid
	// classes are runs of ids cut where a qualifier's ranges begin and end.
	UIDRuns, GIDRuns []IDRun
	Programs         int // program classes, class 0 (no exe= pattern) included
	Overrides        []Override
	// ProgramFiles are the files exe= patterns name in the container, with
	// their stamps and program classes (set after CompileFor, by whoever
	// resolved the patterns).
	ProgramFiles map[FileID]ProgramFile

	// Names are the DNS names allow rules give (of one layer only), sorted:
	// an address learned for one decides a flow its port runs call
	// Nameable.
	Names []NameClass
	// Resolvers are the addresses whose DNS answers teach the names'
	// addresses: those an unqualified allow rule of the names' layer gives
	// exactly (a /32 or /128) on udp port 53, and that the whole policy
	// lets the container reach there.
	Resolvers []netip.Addr
}

// MaxNames bounds the DNS names of a policy (the datapath's tables are
// shared by the containers of a copy of its programs).
const MaxNames = 64

// ProgramFile is a file an exe= pattern names: its program class, for as
// long as its stamp holds.
type ProgramFile struct {
	Stamp Stamp
	Class uint32
}

// HasPrincipals tells whether the tables look at who makes a flow.
func (c *Compiled) HasPrincipals() bool { return len(c.Overrides) > 0 }

// Dependent marks an address class (in Run4.Class, Run6.Class) whose
// verdicts depend on who makes the flow: look its Overrides up first.
const Dependent = 1 << 31

// IDRun starts a run of user or group ids of one class (the run's index).
type IDRun struct{ Start uint32 }

// PrincipalClass is who makes a flow, as the tables class it: the class of
// the program it runs (Programs; 0: a file no exe= names), of its uid
// (UIDRuns) and of its gid (GIDRuns). The datapath keys its overrides by
// it (bpf packs it as nriguard.h's ng_layout says).
type PrincipalClass struct {
	Program, UID, GID uint32
}

// Override is the class whose port runs apply to a principal class on a
// dependent address class.
type Override struct {
	Class uint32 // the dependent address class
	PrincipalClass
	Effective uint32
}

// Programs lists the program classes a policy's exe= qualifiers make: each
// the set of patterns (Qualifiers.ExePattern) some file satisfies, in the
// order the classes are numbered from 1. Class 0, no pattern, is implicit.
type Programs [][]string

// MaxIDRuns bounds the uid runs, and the gid runs, of a policy: the
// datapath searches them in its cgroup's settings.
const MaxIDRuns = 32

var transports = [...]Proto{TCP, UDP}

// interval is a run of ports [lo, hi] with one verdict (nameable: see
// PortRun).
type interval struct {
	lo, hi   int
	v        Verdict
	nameable bool
}

// Compile compiles the intersection of one or more policies (node ceiling,
// profile, labels, image...) for a container in mode: a flow passes only if
// every layer lets it pass; in audit mode, a flow only a layer other than
// the ceiling refuses is let through and reported (WouldDeny). Rules with
// exe= qualifiers hold for no program (CompileFor knows the programs); a
// policy CompileFor refuses compiles to tables that deny everything.
func Compile(mode Mode, layers ...*Egress) *Compiled {
	c, err := CompileFor(mode, nil, layers...)
	if err != nil {
		return &Compiled{V4: []Run4{{}}, V6: []Run6{{}}, Ports: []PortRun{
			{Proto: TCP.IPProto(), Verdict: Verdict{Action: Deny}}, {Proto: UDP.IPProto(), Verdict: Verdict{Action: Deny}}},
			Classes: 1, Sockets: Verdict{Action: Deny}}
	}
	return c
}

// CompileFor is Compile knowing the program classes of the files the exe=
// qualifiers name.
//
// It is still two lookups in the kernel: for an address whose most specific
// prefix among all layers is P, each layer's matching prefixes are exactly
// its prefixes that contain P, so P's table is the intersection of each
// layer's resolved table at P. Where qualified rules sit on P's chain, the
// table also depends on the principal: P's class is Dependent, and each
// principal class that some of those rules hold for gets the class of the
// table resolved for it.
func CompileFor(mode Mode, progs Programs, layers ...*Egress) (*Compiled, error) {
	k, err := gather(mode, progs, layers)
	if err != nil {
		return nil, err
	}
	for _, p := range k.prefixes() {
		k.classify(p)
	}
	if err := k.nameClasses(); err != nil {
		return nil, err
	}
	k.finish()
	return k.c, nil
}

// compiler is CompileFor at work: the layers' rules by prefix, and the
// tables made so far.
type compiler struct {
	mode         Mode
	progs        Programs
	layers       []*Egress
	byPrefix     []map[netip.Prefix][]*Rule // per layer: its rules by the prefix they name
	names        int                        // the layer with DNS names, or -1
	union        map[netip.Prefix]bool      // every named prefix, and the /0s
	lens4, lens6 []int                      // prefix lengths in use, longest first
	classOf      map[string]uint32          // a table's key -> its class
	v4, v6       []prefixClass
	c            *Compiled
	// of the prefix being classified: each layer's rules on its chain, and
	// the qualified ones among them
	chains    [][][]*Rule
	qualified []*Rule
}

// gather is the first stage: every prefix the layers name (and the /0s,
// which always exist so that every lookup finds a class), the uid and gid
// runs the qualifiers cut, the layer with DNS names, the verdict for
// sockets the hooks cannot judge, and the prefix lengths in use.
func gather(mode Mode, progs Programs, layers []*Egress) (*compiler, error) {
	k := &compiler{mode: mode, progs: progs, layers: layers, names: -1, classOf: map[string]uint32{},
		byPrefix: make([]map[netip.Prefix][]*Rule, len(layers)), chains: make([][][]*Rule, len(layers)),
		union: map[netip.Prefix]bool{
			netip.PrefixFrom(netip.IPv4Unspecified(), 0): true,
			netip.PrefixFrom(netip.IPv6Unspecified(), 0): true,
		}}
	sockets := Verdict{Action: Deny, Layer: numLayers}
	var uids, gids []IDRange
	for i, e := range layers {
		if e.HasNames() {
			if e.Layer == LayerCeiling {
				return nil, fmt.Errorf("the node's ceiling gives DNS names: a ceiling may name addresses only")
			}
			if k.names >= 0 {
				return nil, fmt.Errorf("DNS names are given by the %s and the %s layers: a container's policy may name them in one layer only", layers[k.names].Layer, e.Layer)
			}
			k.names = i
		}
		k.byPrefix[i] = map[netip.Prefix][]*Rule{}
		for j := range e.Rules {
			r := &e.Rules[j]
			for _, p := range r.prefixes() {
				k.byPrefix[i][p] = append(k.byPrefix[i][p], r)
				k.union[p] = true
			}
			uids, gids = append(uids, r.Quals.UIDs...), append(gids, r.Quals.GIDs...)
		}
		sockets = refusal(sockets, Verdict{Action: Deny, Layer: e.Layer})
	}
	k.c = &Compiled{Sockets: sockets.inMode(mode), Programs: len(progs) + 1}
	var err error
	if k.c.UIDRuns, err = idRuns("uid", uids); err != nil {
		return nil, err
	}
	if k.c.GIDRuns, err = idRuns("gid", gids); err != nil {
		return nil, err
	}
	// the only lengths an ancestor of a prefix can have
	seen := map[[2]int]bool{}
	for p := range k.union {
		fam := 4
		if p.Addr().Is6() {
			fam = 6
		}
		if key := [2]int{p.Bits(), fam}; !seen[key] {
			seen[key] = true
			if fam == 4 {
				k.lens4 = append(k.lens4, key[0])
			} else {
				k.lens6 = append(k.lens6, key[0])
			}
		}
	}
	slices.SortFunc(k.lens4, func(a, b int) int { return b - a })
	slices.SortFunc(k.lens6, func(a, b int) int { return b - a })
	return k, nil
}

// prefixes are the named prefixes in order.
func (k *compiler) prefixes() []netip.Prefix {
	ps := make([]netip.Prefix, 0, len(k.union))
	for p := range k.union {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if x := a.Addr().Compare(b.Addr()); x != 0 {
			return x
		}
		return a.Bits() - b.Bits()
	})
	return ps
}

// intern gives a table its class, adding its port runs the first time.
func (k *compiler) intern(key string, tables *[len(transports)][]interval) uint32 {
	class, ok := k.classOf[key]
	if !ok {
		class = uint32(len(k.classOf))
		k.classOf[key] = class
		for i, proto := range transports {
			for _, iv := range tables[i] {
				k.c.Ports = append(k.c.Ports, PortRun{Class: class, Proto: proto.IPProto(), Port: uint16(iv.lo), Verdict: iv.v, Nameable: iv.nameable})
			}
		}
	}
	return class
}

// chainsOf finds, for each layer, its rules on the prefixes that contain p
// (longest first), and the qualified rules among them.
func (k *compiler) chainsOf(p netip.Prefix) {
	lens := k.lens4
	if p.Addr().Is6() {
		lens = k.lens6
	}
	k.qualified = k.qualified[:0]
	for li := range k.layers {
		k.chains[li] = k.chains[li][:0]
		for _, n := range lens {
			if n > p.Bits() {
				continue
			}
			if rules := k.byPrefix[li][netip.PrefixFrom(p.Addr(), n).Masked()]; len(rules) > 0 {
				k.chains[li] = append(k.chains[li], rules)
				for _, r := range rules {
					if r.Quals.Any() {
						k.qualified = append(k.qualified, r)
					}
				}
			}
		}
	}
}

// tablesFor is the table of the prefix whose chains are found, for one
// principal (nil: one no qualifier names): each layer's resolved, and
// intersected; and its key.
func (k *compiler) tablesFor(w *Principal) ([len(transports)][]interval, string) {
	var tables [len(transports)][]interval
	for li, l := range k.layers {
		for i, proto := range transports {
			t := resolve(k.chains[li], proto, l.Default, l.Layer, w, li == k.names)
			if li == 0 {
				tables[i] = t
			} else {
				tables[i] = intersect(tables[i], t)
			}
		}
	}
	for i := range transports {
		tables[i] = inMode(tables[i], k.mode)
	}
	return tables, tableKey(&tables)
}

// representative stands for every principal of a principal class: its
// program's patterns, the first id of its uid and gid runs.
func (k *compiler) representative(pc PrincipalClass) *Principal {
	p := &Principal{UID: k.c.UIDRuns[pc.UID].Start, GID: k.c.GIDRuns[pc.GID].Start}
	if pc.Program > 0 {
		pats := k.progs[pc.Program-1]
		p.Exe = func(pattern string) bool { return slices.Contains(pats, pattern) }
	}
	return p
}

// classify is the second stage, for each prefix: the class of its table,
// and if qualified rules on its chain make it depend on who sends, a
// dependent class with the overrides of the principal classes they hold
// for.
func (k *compiler) classify(p netip.Prefix) {
	k.chainsOf(p)
	base, baseKey := k.tablesFor(nil)
	class := k.intern(baseKey, &base)
	if len(k.qualified) > 0 {
		if overrides := k.overrides(class); len(overrides) > 0 {
			class = k.dependent(baseKey, &base, overrides)
		}
	}
	if p.Addr().Is4() {
		k.v4 = append(k.v4, prefixClass{p, class})
	} else {
		k.v6 = append(k.v6, prefixClass{p, class})
	}
}

// overrides are, for every principal class some of the qualified rules on
// the chain hold for, the class of the table resolved for it where that
// differs from the base class (principal classes for which the same rules
// hold share it).
func (k *compiler) overrides(base uint32) []Override {
	var out []Override
	effective := map[string]uint32{} // by which qualified rules hold
	var holding []byte
	for pc := range k.c.Programs {
		for uc := range k.c.UIDRuns {
			for gc := range k.c.GIDRuns {
				who := PrincipalClass{uint32(pc), uint32(uc), uint32(gc)}
				w := k.representative(who)
				holding = holding[:0]
				any := false
				for _, r := range k.qualified {
					h := r.Quals.holds(w)
					holding = append(holding, byte(boolInt(h)))
					any = any || h
				}
				if !any {
					continue
				}
				eff, ok := effective[string(holding)]
				if !ok {
					t, key := k.tablesFor(w)
					eff = k.intern(key, &t)
					effective[string(holding)] = eff
				}
				if eff != base {
					out = append(out, Override{PrincipalClass: who, Effective: eff})
				}
			}
		}
	}
	return out
}

// dependent is the class of a table whose overrides these are: equal
// tables with equal overrides share one.
func (k *compiler) dependent(baseKey string, base *[len(transports)][]interval, overrides []Override) uint32 {
	var key strings.Builder
	key.WriteString("dependent:")
	key.WriteString(baseKey)
	for _, o := range overrides {
		fmt.Fprintf(&key, "/%d,%d,%d=%d", o.Program, o.UID, o.GID, o.Effective)
	}
	if class, ok := k.classOf[key.String()]; ok {
		return class | Dependent
	}
	class := k.intern(key.String(), base)
	for _, o := range overrides {
		o.Class = class
		k.c.Overrides = append(k.c.Overrides, o)
	}
	return class | Dependent
}

// nameClasses is the third stage: each DNS name's port runs, allow where
// its rules reach, else deny.
func (k *compiler) nameClasses() error {
	if k.names < 0 {
		return nil
	}
	l := k.layers[k.names]
	byName := map[string][]*Rule{}
	for j := range l.Rules {
		if r := &l.Rules[j]; r.Name != "" {
			byName[r.Name] = append(byName[r.Name], r)
		}
	}
	for n, rules := range byName {
		var t [len(transports)][]interval
		for i, proto := range transports {
			t[i] = resolve([][]*Rule{rules}, proto, Deny, l.Layer, nil, false)
		}
		k.c.Names = append(k.c.Names, NameClass{Pattern: n, Class: k.intern("name:"+tableKey(&t), &t)})
	}
	slices.SortFunc(k.c.Names, func(a, b NameClass) int { return strings.Compare(a.Pattern, b.Pattern) })
	if len(k.c.Names) > MaxNames {
		return fmt.Errorf("the %s layer names %d DNS names: at most %d", l.Layer, len(k.c.Names), MaxNames)
	}
	return nil
}

// finish is the last stage: the address runs, everything in the order the
// datapath searches it, and the resolvers of the layer with names.
func (k *compiler) finish() {
	c := k.c
	c.Classes = len(k.classOf)
	for _, r := range runs(k.v4) {
		c.V4 = append(c.V4, Run4{Start: uint32(be128(r.start)[1]), Class: r.class})
	}
	for _, r := range runs(k.v6) {
		x := be128(r.start)
		c.V6 = append(c.V6, Run6{Hi: x[0], Lo: x[1], Class: r.class})
	}
	slices.SortFunc(c.Ports, func(a, b PortRun) int {
		return cmp.Or(cmp.Compare(a.Class, b.Class), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port))
	})
	slices.SortFunc(c.Overrides, func(a, b Override) int {
		return cmp.Or(cmp.Compare(a.Class, b.Class), cmp.Compare(a.Program, b.Program), cmp.Compare(a.UID, b.UID), cmp.Compare(a.GID, b.GID))
	})
	if k.names < 0 {
		return
	}
	// a resolver is an address the names' layer allows exactly on udp 53,
	// which the whole policy lets through
	for _, r := range k.layers[k.names].Rules {
		if r.Action == Allow && r.Proto != TCP && r.Name == "" && !r.AnyDest && r.Dest.Bits() == r.Dest.Addr().BitLen() &&
			!r.Quals.Any() && r.MatchesPort(53) && c.Lookup(UDP, r.Dest.Addr(), 53).Action == Allow && !slices.Contains(c.Resolvers, r.Dest.Addr()) {
			c.Resolvers = append(c.Resolvers, r.Dest.Addr())
		}
	}
	slices.SortFunc(c.Resolvers, netip.Addr.Compare)
}

// tableKey writes a port table as a key: equal tables, equal keys.
func tableKey(tables *[len(transports)][]interval) string {
	var key strings.Builder
	for i := range transports {
		for _, iv := range tables[i] {
			key.WriteString(strconv.Itoa(iv.lo))
			key.WriteByte(iv.v.Action.String()[0])
			key.WriteString(strconv.Itoa(int(iv.v.Layer)))
			if iv.nameable {
				key.WriteByte('n')
			}
		}
		key.WriteByte('|')
	}
	return key.String()
}

// idRuns cuts the id space where a qualifier's ranges begin and end: every
// id of a run is named by the same ranges.
func idRuns(what string, ranges []IDRange) ([]IDRun, error) {
	cuts := map[uint32]bool{0: true}
	for _, r := range ranges {
		cuts[r.Lo] = true
		if r.Hi < ^uint32(0) {
			cuts[r.Hi+1] = true
		}
	}
	if len(cuts) > MaxIDRuns {
		return nil, fmt.Errorf("the %s= ranges of the policy cut the ids into %d runs: at most %d", what, len(cuts), MaxIDRuns)
	}
	out := make([]IDRun, 0, len(cuts))
	for id := range cuts {
		out = append(out, IDRun{id})
	}
	slices.SortFunc(out, func(a, b IDRun) int { return cmp.Compare(a.Start, b.Start) })
	return out, nil
}

type prefixClass struct {
	p     netip.Prefix
	class uint32
}

type run struct {
	start netip.Addr
	class uint32
}

// runs cuts an address family's space where the most specific of the
// prefixes (sorted by address, then length; the /0 first) changes, and gives
// each run its class. A walk with a stack of the prefixes that contain the
// current address: a prefix begins a run at its first address, and where it
// ends, the prefix that contains it resumes.
func runs(pcs []prefixClass) []run {
	var out []run
	emit := func(a netip.Addr, class uint32) {
		n := len(out)
		if n > 0 && out[n-1].start == a {
			out, n = out[:n-1], n-1 // a longer prefix that starts here wins
		}
		if n > 0 && out[n-1].class == class {
			return
		}
		out = append(out, run{a, class})
	}
	var stack []prefixClass
	resume := func() { // the top prefix ends: the one below it resumes
		top := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if next := lastAddr(top.p).Next(); next.IsValid() && len(stack) > 0 {
			emit(next, stack[len(stack)-1].class)
		}
	}
	for _, pc := range pcs {
		for len(stack) > 0 && !stack[len(stack)-1].p.Contains(pc.p.Addr()) {
			resume()
		}
		stack = append(stack, pc)
		emit(pc.p.Addr(), pc.class)
	}
	for len(stack) > 0 {
		resume()
	}
	return out
}

// lastAddr is the last address of a prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// be128 is an address as a 128-bit number (an IPv4 one in the low word).
func be128(a netip.Addr) [2]uint64 {
	if a.Is4() {
		b := a.As4()
		return [2]uint64{0, uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return [2]uint64{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// intersect combines two port tables: a port is allowed only where both
// allow it.
func intersect(a, b []interval) []interval {
	var out []interval
	for i, j := 0, 0; i < len(a) && j < len(b); {
		lo := max(a[i].lo, b[j].lo)
		hi := min(a[i].hi, b[j].hi)
		// a name may still let it pass if only its layer's default refuses;
		// that default is named only if nothing else refuses (combine)
		v := refusal(a[i].v, b[j].v)
		switch {
		case a[i].nameable && b[j].v.Action == Deny:
			v = b[j].v
		case b[j].nameable && a[i].v.Action == Deny:
			v = a[i].v
		}
		nameable := a[i].nameable && b[j].v.Action == Allow || b[j].nameable && a[i].v.Action == Allow
		if n := len(out); n > 0 && out[n-1].v == v && out[n-1].nameable == nameable {
			out[n-1].hi = hi
		} else {
			out = append(out, interval{lo, hi, v, nameable})
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
	return decideLayers(mode, layers, proto, addr, port, nil)
}

// DecideLayersFor is DecideLayers for a flow made by who.
func DecideLayersFor(mode Mode, layers []*Egress, proto Proto, addr netip.Addr, port uint16, who Principal) Verdict {
	return decideLayers(mode, layers, proto, addr, port, &who)
}

// DecideLayersLearned is DecideLayers for a flow to an address the
// datapath learned for the DNS names learned.
func DecideLayersLearned(mode Mode, layers []*Egress, proto Proto, addr netip.Addr, port uint16, learned []string) Verdict {
	return combine(mode, layers, func(e *Egress) Match { return e.DecideLearned(proto, addr, port, learned) })
}

func decideLayers(mode Mode, layers []*Egress, proto Proto, addr netip.Addr, port uint16, who *Principal) Verdict {
	return combine(mode, layers, func(e *Egress) Match { return e.decide(proto, addr, port, who) })
}

// combine intersects the layers' decisions. The default of the layer with
// DNS names is named only if no other layer refuses: it is what a name
// could have undone, another layer's refusal is not.
func combine(mode Mode, layers []*Egress, decide func(*Egress) Match) Verdict {
	v, soft := Allowed, Allowed
	for _, e := range layers {
		m := decide(e)
		if m.Action != Deny {
			continue
		}
		if m.Rule < 0 && e.HasNames() {
			soft = Verdict{Action: Deny, Layer: e.Layer}
		} else {
			v = refusal(v, Verdict{Action: Deny, Layer: e.Layer})
		}
	}
	if v.Action != Deny {
		v = soft
	}
	return v.inMode(mode)
}

// resolve computes the verdict for every port of proto given the rules of a
// prefix and its ancestors, most specific first. It sweeps the port range
// once, keeping per level how many allow and deny rules cover the port.
// names: the layer has DNS names, which decide in place of a default deny.
func resolve(chain [][]*Rule, proto Proto, def Action, layer Layer, who *Principal, names bool) []interval {
	type event struct {
		at, level int
		kind      int // 0 allow, 1 deny, 2 qualified allow, 3 qualified deny
		delta     int
	}
	var events []event
	for level, rules := range chain {
		for _, r := range rules {
			if r.Proto != AnyProto && r.Proto != proto || !r.Quals.holds(who) {
				continue
			}
			ranges := r.Ports
			if len(ranges) == 0 {
				ranges = []PortRange{{0, 65535}}
			}
			for _, pr := range ranges {
				// counted apart: on a level, a rule about who beats one about
				// everyone, then deny beats allow
				kind := boolInt(r.Action == Deny) + 2*boolInt(r.Quals.Any())
				events = append(events, event{int(pr.Lo), level, kind, 1}, event{int(pr.Hi) + 1, level, kind, -1})
			}
		}
	}
	slices.SortFunc(events, func(a, b event) int { return a.at - b.at })
	counts := make([][4]int, len(chain)) // [level][kind]
	var out []interval
	denied := Verdict{Action: Deny, Layer: layer}
	verdict := func() (v Verdict, byDefault bool) {
		for _, c := range counts {
			switch {
			case c[3] > 0:
				return denied, false
			case c[2] > 0:
				return Allowed, false
			case c[1] > 0:
				return denied, false
			case c[0] > 0:
				return Allowed, false
			}
		}
		if def == Deny {
			return denied, true
		}
		return Allowed, true
	}
	for i, at := 0, 0; at <= 65535; {
		for i < len(events) && events[i].at == at {
			ev := events[i]
			counts[ev.level][ev.kind] += ev.delta
			i++
		}
		next := 65536
		if i < len(events) {
			next = events[i].at
		}
		v, byDefault := verdict()
		nameable := names && byDefault && v.Action == Deny
		if n := len(out); n > 0 && out[n-1].v == v && out[n-1].nameable == nameable {
			out[n-1].hi = next - 1
		} else {
			out = append(out, interval{at, next - 1, v, nameable})
		}
		at = next
	}
	return out
}

// Lookup answers a flow the way the datapath does, from the tables alone,
// for a sender no qualifier names: the last address run that starts at or
// before the address, then the last port run at or before (class,
// protocol, port). A miss (no run: impossible with the compiler's tables)
// denies, as the datapath does.
func (c *Compiled) Lookup(proto Proto, addr netip.Addr, port uint16) Verdict {
	return c.lookup(proto, addr, port, nil)
}

// Sender is who makes a flow as the datapath sees it: its program's class
// (the file's, from CompileFor's Programs; 0 for a file no exe= names, or
// one changed since) and its user and group.
type Sender struct {
	Program  uint32
	UID, GID uint32
}

// LookupFor is Lookup for a flow made by m: on a Dependent class, the
// override of m's principal class, if any, picks the port runs.
func (c *Compiled) LookupFor(proto Proto, addr netip.Addr, port uint16, m Sender) Verdict {
	return c.lookup(proto, addr, port, &m)
}

func (c *Compiled) lookup(proto Proto, addr netip.Addr, port uint16, m *Sender) Verdict {
	v, _ := c.lookupRun(proto, addr, port, m)
	return v
}

func (c *Compiled) lookupRun(proto Proto, addr netip.Addr, port uint16, m *Sender) (Verdict, bool) {
	failClosed := Verdict{Action: Deny}
	addr = addr.Unmap()
	var class uint32
	x := be128(addr)
	if addr.Is4() {
		i, _ := slices.BinarySearchFunc(c.V4, uint32(x[1]), func(r Run4, a uint32) int { return cmp.Compare(r.Start, a) - boolInt(r.Start == a) })
		if i == 0 {
			return failClosed, false
		}
		class = c.V4[i-1].Class
	} else {
		i, _ := slices.BinarySearchFunc(c.V6, x, func(r Run6, a [2]uint64) int {
			return cmp.Or(cmp.Compare(r.Hi, a[0]), cmp.Compare(r.Lo, a[1])) - boolInt(r.Hi == a[0] && r.Lo == a[1])
		})
		if i == 0 {
			return failClosed, false
		}
		class = c.V6[i-1].Class
	}
	if class&Dependent != 0 {
		class &^= Dependent
		if m != nil {
			want := Override{Class: class, PrincipalClass: PrincipalClass{m.Program, idClass(c.UIDRuns, m.UID), idClass(c.GIDRuns, m.GID)}}
			if i, ok := slices.BinarySearchFunc(c.Overrides, want, func(o, w Override) int {
				return cmp.Or(cmp.Compare(o.Class, w.Class), cmp.Compare(o.Program, w.Program), cmp.Compare(o.UID, w.UID), cmp.Compare(o.GID, w.GID))
			}); ok {
				class = c.Overrides[i].Effective
			}
		}
	}
	return c.portRun(class, proto, port)
}

// portRun finds the verdict of a class for a protocol and port.
func (c *Compiled) portRun(class uint32, proto Proto, port uint16) (Verdict, bool) {
	want := PortRun{Class: class, Proto: proto.IPProto(), Port: port}
	i, _ := slices.BinarySearchFunc(c.Ports, want, func(r, w PortRun) int {
		return cmp.Or(cmp.Compare(r.Class, w.Class), cmp.Compare(r.Proto, w.Proto), cmp.Compare(r.Port, w.Port)) - boolInt(r.Class == w.Class && r.Proto == w.Proto && r.Port == w.Port)
	})
	if i == 0 || c.Ports[i-1].Class != class || c.Ports[i-1].Proto != proto.IPProto() {
		return Verdict{Action: Deny}, false
	}
	return c.Ports[i-1].Verdict, c.Ports[i-1].Nameable
}

// LookupLearned is Lookup for a flow to an address the datapath learned for
// the DNS names learned (as asked, lower case), as the datapath answers it:
// where the tables call the flow Nameable, a name that matches one of
// Names lets it pass if that name's port runs allow it.
func (c *Compiled) LookupLearned(proto Proto, addr netip.Addr, port uint16, learned []string) Verdict {
	v, nameable := c.lookupRun(proto, addr, port, nil)
	if !nameable {
		return v
	}
	for _, n := range c.Names {
		for _, l := range learned {
			if NameMatches(n.Pattern, l) {
				if w, _ := c.portRun(n.Class, proto, port); w.Action == Allow {
					return Allowed
				}
			}
		}
	}
	return v
}

// idClass is the run an id falls in.
func idClass(runs []IDRun, id uint32) uint32 {
	i, _ := slices.BinarySearchFunc(runs, id, func(r IDRun, id uint32) int { return cmp.Compare(r.Start, id) - boolInt(r.Start == id) })
	return uint32(max(i-1, 0))
}

// boolInt makes a search count an equal element among those before the
// value: the last run that starts at or before it is the one before the
// index found.
func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
