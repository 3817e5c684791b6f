package policy_test

import (
	"math/rand/v2"
	"net/netip"
	"slices"
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
		"deny tcp 10.0.0.0/8; allow tcp 10.0.0.0/8:443 exe=/usr/bin/curl uid=0,1000-1999 gid=50; default allow",
		"allow udp 10.96.0.10:53 exe=/app/ ; allow any any uid=65534", "allow tcp 1.2.3.4 uid=1-0", "allow tcp 1.2.3.4 exe=x",
		"allow tcp api.example.com:443; allow any *.example.com:80,8000-8999; deny tcp 10.0.0.0/8:443; default deny",
		"allow tcp Example.COM.; deny any 192.0.2.0/24; default deny", "allow tcp *.x", "deny tcp a.example.com",
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
		// to addresses learned for DNS names
		for i, fl := range flows {
			learned := [][]string{nil, {"api.example.com"}, {"www.example.com", "example.com"}}[i%3]
			want := e.DecideLearned(fl.Proto, fl.Addr, fl.Port, learned).Action
			if got := c.LookupLearned(fl.Proto, fl.Addr, fl.Port, learned).Action; got != want {
				t.Fatalf("%q flow %v learned for %q: compiled %v, reference %v", s, fl, learned, got, want)
			}
		}
		// with programs and users: two program classes over the policy's
		// exe= patterns, and a few senders
		var pats []string
		for _, r := range e.Rules {
			if p := r.Quals.ExePattern(); p != "" {
				pats = append(pats, p)
			}
		}
		progs := policy.Programs{pats, pats[:len(pats)/2]}
		cq, err := policy.CompileFor(policy.Enforce, progs, e)
		if err != nil {
			return // too many uid runs: refused with a message
		}
		for _, fl := range flows {
			for _, m := range []policy.Sender{{}, {Program: 1, UID: 1000, GID: 50}, {Program: 2, UID: 0}, {UID: 65534, GID: 65534}} {
				who := policy.Principal{UID: m.UID, GID: m.GID}
				if m.Program > 0 {
					set := progs[m.Program-1]
					who.Exe = func(p string) bool { return slices.Contains(set, p) }
				}
				want := e.DecideFor(fl.Proto, fl.Addr, fl.Port, who).Action
				if got := cq.LookupFor(fl.Proto, fl.Addr, fl.Port, m).Action; got != want {
					t.Fatalf("%q flow %v by %+v: compiled %v, reference %v", s, fl, m, got, want)
				}
			}
		}
	})
}
