package policy_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/nriguard/nriguard/policy"
	"github.com/nriguard/nriguard/policy/policytest"
)

// The compiled tables must answer every flow as the reference does.
func TestCompileMatchesDecide(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		text := policytest.Policy(r, 1+r.IntN(30))
		e, err := policy.ParseEgress("egress.nriguard.io", text)
		if err != nil {
			t.Fatalf("generated policy does not parse: %v", err)
		}
		c := policy.Compile(policy.Enforce, e)
		for _, f := range policytest.Flows(r, e, 200) {
			want := e.Decide(f.Proto, f.Addr, f.Port).Action
			if got := c.Lookup(f.Proto, f.Addr, f.Port).Action; got != want {
				t.Fatalf("policy %d %q\nflow %v: compiled %v, reference %v", i, text, f, got, want)
			}
		}
	}
}

// Equal answers share a class: many prefixes with the same rule need one
// port table.
func TestCompileSharesClasses(t *testing.T) {
	text := ""
	for i := range 1000 {
		text += fmt.Sprintf("allow tcp 10.%d.%d.0/24:443;", i/256, i%256)
	}
	e, err := policy.ParseEgress("egress.nriguard.io", text)
	if err != nil {
		t.Fatal(err)
	}
	c := policy.Compile(policy.Enforce, e)
	// runs: 0.0.0.0 (the /0's class), then the thousand /24s, adjacent and
	// of one class, are one run, and the /0 resumes after them
	if len(c.V4) != 3 || c.Classes != 2 {
		t.Errorf("got %d IPv4 runs in %d classes, want 3 in 2: %v", len(c.V4), c.Classes, c.V4)
	}
}

// Layers intersect: the compiled tables of several random policies, from
// random layers, in both modes, answer every flow as the reference does:
// "every layer allows it", the refusing layer named, audit enforcing only
// the ceiling.
func TestCompileLayersMatchesDecide(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 400 {
		var layers []*policy.Egress
		var texts []string
		for range 1 + r.IntN(3) {
			text := policytest.Policy(r, 1+r.IntN(20))
			e, err := policy.ParseEgress("egress.nriguard.io", text)
			if err != nil {
				t.Fatal(err)
			}
			e.Layer = policy.Layer(1 + r.IntN(5))
			layers, texts = append(layers, e), append(texts, fmt.Sprintf("%v: %s", e.Layer, text))
		}
		mode := policy.Mode(r.IntN(2))
		c := policy.Compile(mode, layers...)
		var all policy.Egress
		for _, e := range layers {
			all.Rules = append(all.Rules, e.Rules...)
		}
		for _, f := range policytest.Flows(r, &all, 300) {
			want := policy.DecideLayers(mode, layers, f.Proto, f.Addr, f.Port)
			if got := c.Lookup(f.Proto, f.Addr, f.Port); got != want {
				t.Fatalf("layers %d (%v) %q\nflow %v: compiled %v, reference %v", i, mode, texts, f, got, want)
			}
		}
	}
}

// A learned address answers as the reference says: names decide only where
// their layer's address rules do not, and every other layer still must
// let the flow pass.
func TestCompileNamesMatchDecide(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for i := range 400 {
		var layers []*policy.Egress
		var texts []string
		n := 1 + r.IntN(3)
		named := r.IntN(n)
		for l := range n {
			text := policytest.Policy(r, r.IntN(12))
			if l == named {
				text = policytest.NamedPolicy(r, r.IntN(12), 1+r.IntN(4))
			}
			e, err := policy.ParseEgress("egress.nriguard.io", text)
			if err != nil {
				t.Fatal(err)
			}
			e.Layer = policy.Layer(1 + r.IntN(5))
			if l == named { // names are refused in the ceiling
				e.Layer = policy.Layer(2 + r.IntN(4))
			}
			layers, texts = append(layers, e), append(texts, fmt.Sprintf("%v: %s", e.Layer, text))
		}
		mode := policy.Mode(r.IntN(2))
		c, err := policy.CompileFor(mode, nil, layers...)
		if err != nil {
			t.Fatal(err)
		}
		var all policy.Egress
		for _, e := range layers {
			all.Rules = append(all.Rules, e.Rules...)
		}
		for _, f := range policytest.Flows(r, &all, 300) {
			learned := policytest.Learned(r)
			want := policy.DecideLayersLearned(mode, layers, f.Proto, f.Addr, f.Port, learned)
			if got := c.LookupLearned(f.Proto, f.Addr, f.Port, learned); got != want {
				t.Fatalf("layers %d (%v) %q\nflow %v learned for %q: compiled %v, reference %v", i, mode, texts, f, learned, got, want)
			}
			// an address learned for nothing is judged as any other
			if got, want := c.LookupLearned(f.Proto, f.Addr, f.Port, nil), policy.DecideLayers(mode, layers, f.Proto, f.Addr, f.Port); got != want {
				t.Fatalf("layers %d %q\nflow %v learned for nothing: compiled %v, reference %v", i, texts, f, got, want)
			}
		}
	}
}

func TestNamesInOneLayerOnly(t *testing.T) {
	a, _ := policy.ParseEgress("a", "allow tcp api.example.com:443")
	b, _ := policy.ParseEgress("b", "allow tcp *.example.org")
	a.Layer, b.Layer = policy.LayerLabel, policy.LayerImage
	_, err := policy.CompileFor(policy.Enforce, nil, a, b)
	if err == nil || !strings.Contains(err.Error(), "one layer only") {
		t.Fatalf("names in two layers: %v, want a refusal", err)
	}
}

// In audit mode only what the ceiling refuses is refused.
func TestAuditEnforcesTheCeiling(t *testing.T) {
	ceiling, _ := policy.ParseEgress("config ceiling_egress", "deny any 169.254.169.254")
	ceiling.Layer = policy.LayerCeiling
	label, _ := policy.ParseEgress("egress.nriguard.io", "allow tcp 10.0.0.0/8:443")
	label.Layer = policy.LayerLabel
	c := policy.Compile(policy.Audit, ceiling, label)
	for _, tc := range []struct {
		dest string
		port uint16
		want policy.Verdict
	}{
		{"169.254.169.254", 80, policy.Verdict{Action: policy.Deny, Layer: policy.LayerCeiling}},
		{"10.1.2.3", 443, policy.Allowed},
		{"10.1.2.3", 80, policy.Verdict{Action: policy.WouldDeny, Layer: policy.LayerLabel}},
	} {
		if got := c.Lookup(policy.TCP, netip.MustParseAddr(tc.dest), tc.port); got != tc.want {
			t.Errorf("%s:%d: got %+v, want %+v", tc.dest, tc.port, got, tc.want)
		}
	}
	if c.Sockets != (policy.Verdict{Action: policy.Deny, Layer: policy.LayerCeiling}) {
		t.Errorf("raw sockets under an egress ceiling in audit mode: %+v, want refused by the ceiling", c.Sockets)
	}
	if c := policy.Compile(policy.Audit, label); c.Sockets.Action != policy.WouldDeny {
		t.Errorf("raw sockets in audit mode without a ceiling: %+v, want would-deny", c.Sockets)
	}
}

// The runs at the ends of the address spaces, and prefixes that end where
// others do: every address of a sample decided as the reference does.
func TestRunsAtTheEdges(t *testing.T) {
	text := `allow tcp 255.255.255.0/24:1; deny tcp 255.255.255.255:1; allow tcp 128.0.0.0/1:2; allow tcp 0.0.0.0/1:3;
		allow tcp 10.0.0.0/8:4; allow tcp 10.255.255.0/24:5; allow tcp 10.255.255.255:6; allow tcp 11.0.0.0:7;
		allow tcp [ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120]:8; allow tcp [::]:9; allow tcp [8000::/1]:10; default deny`
	e, err := policy.ParseEgress("k", text)
	if err != nil {
		t.Fatal(err)
	}
	c := policy.Compile(policy.Enforce, e)
	for _, a := range []string{"0.0.0.0", "0.0.0.1", "9.255.255.255", "10.0.0.0", "10.255.254.255", "10.255.255.0", "10.255.255.254",
		"10.255.255.255", "11.0.0.0", "11.0.0.1", "127.255.255.255", "128.0.0.0", "255.255.254.255", "255.255.255.0", "255.255.255.254",
		"255.255.255.255", "::", "::1", "7fff::", "8000::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:feff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00",
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"} {
		for port := uint16(0); port <= 11; port++ {
			addr := netip.MustParseAddr(a)
			want := e.Decide(policy.TCP, addr, port).Action
			if got := c.Lookup(policy.TCP, addr, port).Action; got != want {
				t.Errorf("%s:%d: compiled %v, reference %v", a, port, got, want)
			}
		}
	}
}

// With qualifiers, the tables answer every flow by every principal as the
// reference does: random layers, programs, users and groups, both modes.
func TestCompileQualifiersMatchDecide(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 300 {
		var layers []*policy.Egress
		var texts []string
		for range 1 + r.IntN(3) {
			text := policytest.QualifiedPolicy(r, 1+r.IntN(15))
			e, err := policy.ParseEgress("egress.nriguard.io", text)
			if err != nil {
				t.Fatal(err)
			}
			e.Layer = policy.Layer(1 + r.IntN(5))
			layers, texts = append(layers, e), append(texts, fmt.Sprintf("%v: %s", e.Layer, text))
		}
		progs := policy.Programs(policytest.Programs(r, r.IntN(4)))
		mode := policy.Mode(r.IntN(2))
		c, err := policy.CompileFor(mode, progs, layers...)
		if err != nil {
			t.Fatal(err)
		}
		var all policy.Egress
		for _, e := range layers {
			all.Rules = append(all.Rules, e.Rules...)
		}
		for _, f := range policytest.Flows(r, &all, 100) {
			for range 4 {
				m := policy.Sender{Program: uint32(r.IntN(len(progs) + 1)), UID: policytest.IDs[r.IntN(len(policytest.IDs))], GID: policytest.IDs[r.IntN(len(policytest.IDs))]}
				who := policy.Principal{UID: m.UID, GID: m.GID}
				if m.Program > 0 {
					pats := progs[m.Program-1]
					who.Exe = func(p string) bool { return slices.Contains(pats, p) }
				}
				want := policy.DecideLayersFor(mode, layers, f.Proto, f.Addr, f.Port, who)
				if got := c.LookupFor(f.Proto, f.Addr, f.Port, m); got != want {
					t.Fatalf("layers %d (%v) %q programs %q\nflow %v by %+v: compiled %v, reference %v", i, mode, texts, progs, f, m, got, want)
				}
			}
			// no principal: the reference for anyone
			want := policy.DecideLayers(mode, layers, f.Proto, f.Addr, f.Port)
			if got := c.Lookup(f.Proto, f.Addr, f.Port); got != want {
				t.Fatalf("layers %d %q\nflow %v by nobody: compiled %v, reference %v", i, texts, f, got, want)
			}
		}
	}
}

// A resolver is an address a rule of the names' layer gives exactly, for
// everyone, on udp 53, that the whole policy lets the container reach.
func TestResolvers(t *testing.T) {
	parse := func(layer policy.Layer, v string) *policy.Egress {
		e, err := policy.ParseEgress("k", v)
		if err != nil {
			t.Fatal(err)
		}
		e.Layer = layer
		return e
	}
	for _, tc := range []struct {
		layers []*policy.Egress
		want   string
	}{
		{[]*policy.Egress{parse(policy.LayerLabel, "allow udp 10.96.0.10:53; allow any [2001:db8::53]; allow any 10.0.0.0/8; allow tcp 10.96.0.11:53; allow tcp a.example.com")}, "[10.96.0.10 2001:db8::53]"},
		{[]*policy.Egress{parse(policy.LayerLabel, "allow udp 10.96.0.10:53 uid=0; allow udp 10.96.0.12:5353; allow tcp a.example.com")}, "[]"},
		{[]*policy.Egress{parse(policy.LayerCeiling, "deny any 10.96.0.10"), parse(policy.LayerLabel, "allow udp 10.96.0.10:53; allow udp 10.96.0.13; allow tcp a.example.com")}, "[10.96.0.13]"},
		{[]*policy.Egress{parse(policy.LayerLabel, "allow udp 10.96.0.10:53; allow tcp 10.0.0.0/8")}, "[]"}, // no names: no resolvers
	} {
		c, err := policy.CompileFor(policy.Enforce, nil, tc.layers...)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(c.Resolvers); got != tc.want {
			t.Errorf("%v: resolvers %s, want %s", tc.layers[len(tc.layers)-1], got, tc.want)
		}
	}
	var many strings.Builder
	for i := range policy.MaxNames + 1 {
		fmt.Fprintf(&many, "allow tcp n%d.example.com;", i)
	}
	if _, err := policy.CompileFor(policy.Enforce, nil, parse(policy.LayerLabel, many.String())); err == nil || !strings.Contains(err.Error(), "at most 64") {
		t.Errorf("65 names: %v, want a refusal", err)
	}
}
