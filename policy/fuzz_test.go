package policy_test

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/nriguard/nriguard/policy"
	"github.com/nriguard/nriguard/policy/policytest"
)

// FuzzParseEgress: the parser never panics, every error names the key, and
// whatever parses compiles to tables that agree with the reference.
func FuzzParseEgress(f *testing.F) {
	for _, s := range []string{
		"allow tcp 10.0.0.0/8:443; allow udp 10.96.0.10:53; allow tcp [2001:db8::/32]:8000-8999; deny any 169.254.169.254; default deny",
		"deny any 169.254.169.254",
		"allow any any:53\nallow tcp [::ffff:10.0.0.0/104]:1-1023,8080 # c",
		"default allow; deny udp 0.0.0.0/0; deny tcp ::/0:0-65535",
		"allow tcp 10.0.0/33", "allow tcp [::1", "allow tcp 1.2.3.4:5-", "allow tcp 1.2.3.4 uid=0",
	} {
		f.Add(s)
	}
	const key = "egress.nriguard.io/pod"
	f.Fuzz(func(t *testing.T, s string) {
		e, err := policy.ParseEgress(key, s)
		if err != nil {
			if got := err.Error(); len(got) < len(key) || got[:len(key)] != key {
				t.Fatalf("error does not name the key: %s", got)
			}
			return
		}
		if e.Default != policy.Allow && e.Default != policy.Deny {
			t.Fatalf("parsed with default %v", e.Default)
		}
		if len(e.Rules) > 64 {
			return // keep each input cheap: Lookup is linear
		}
		c := policy.Compile(policy.Enforce, e)
		r := rand.New(rand.NewPCG(uint64(len(s)), 7))
		flows := policytest.Flows(r, e, 64)
		flows = append(flows, policytest.Flow{Proto: policy.TCP, Addr: netip.MustParseAddr("::1"), Port: 0})
		for _, fl := range flows {
			want := e.Decide(fl.Proto, fl.Addr, fl.Port).Action
			if got := c.Lookup(fl.Proto, fl.Addr, fl.Port).Action; got != want {
				t.Fatalf("%q flow %v: compiled %v, reference %v", s, fl, got, want)
			}
		}
	})
}
