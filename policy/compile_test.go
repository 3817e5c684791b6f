package policy_test

import (
	"fmt"
	"math/rand/v2"
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
		c := policy.Compile(e)
		for _, f := range policytest.Flows(r, e, 200) {
			want := e.Decide(f.Proto, f.Addr, f.Port).Action
			if got := c.Lookup(f.Proto, f.Addr, f.Port); got != want {
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
	c := policy.Compile(e)
	if len(c.V4) != 1001 || c.Classes != 2 {
		t.Errorf("got %d v4 prefixes in %d classes, want 1001 in 2", len(c.V4), c.Classes)
	}
}

// Layers intersect: the compiled tables of several random policies answer
// every flow as "every layer allows it".
func TestCompileLayersMatchesDecide(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 200 {
		var layers []*policy.Egress
		var texts []string
		for range 1 + r.IntN(3) {
			text := policytest.Policy(r, 1+r.IntN(20))
			e, err := policy.ParseEgress("egress.nriguard.io", text)
			if err != nil {
				t.Fatal(err)
			}
			layers, texts = append(layers, e), append(texts, text)
		}
		c := policy.CompileLayers(layers...)
		var all policy.Egress
		for _, e := range layers {
			all.Rules = append(all.Rules, e.Rules...)
		}
		for _, f := range policytest.Flows(r, &all, 300) {
			want := policy.DecideLayers(layers, f.Proto, f.Addr, f.Port)
			if got := c.Lookup(f.Proto, f.Addr, f.Port); got != want {
				t.Fatalf("layers %d %q\nflow %v: compiled %v, reference %v", i, texts, f, got, want)
			}
		}
	}
}
