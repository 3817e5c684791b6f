package profile

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/nriguard/nriguard/events"
	"github.com/nriguard/nriguard/policy"
)

func web(r events.Record) *events.Record {
	r.Namespace, r.Pod, r.Container, r.ContainerID = "prod", "shop", "web", "c1"
	return &r
}

// What a container did becomes rules that allow exactly that: the rules
// parse, allow every flow and program learned, and refuse others.
func TestLearnAndEnforce(t *testing.T) {
	l := NewLearner(Workload{Namespace: "prod", Pod: "shop"})
	for _, r := range []*events.Record{
		web(events.Record{Kind: events.KindExec, Verdict: events.Allowed, Filename: "/usr/bin/curl", File: "0:52:7"}),
		web(events.Record{Kind: events.KindExec, Verdict: events.Allowed, Filename: "/bin/sh", File: "0:52:8"}),
		// curl had gone when the record was read: its file names it
		web(events.Record{Kind: events.KindFlow, Phase: "new", Verdict: events.Allowed, Proto: "tcp", Dest: "10.0.0.7", Port: 443, ExeFile: "0:52:7"}),
		web(events.Record{Kind: events.KindFlow, Phase: "count", Verdict: events.Allowed, Proto: "tcp", Dest: "10.0.0.7", Port: 443, Packets: 9}),
		web(events.Record{Kind: events.KindFlow, Phase: "new", Verdict: events.Allowed, Proto: "udp", Dest: "10.96.0.10", Port: 53, Exe: "/bin/sh"}),
		web(events.Record{Kind: events.KindFlow, Phase: "new", Verdict: events.Allowed, Proto: "udp", Dest: "10.96.0.10", Port: 53, Exe: "/usr/bin/curl"}),
		web(events.Record{Kind: events.KindFlow, Phase: "new", Verdict: events.Allowed, Proto: "tcp", Dest: "2001:db8::1", Port: 80}),
		// audit mode: what a draft policy would have refused is learned too
		web(events.Record{Kind: events.KindConnect, Verdict: events.WouldDeny, Proto: "tcp", Dest: "10.0.0.8", Port: 8080, Exe: "/usr/bin/curl"}),
		// refused in enforce mode: it did not happen
		web(events.Record{Kind: events.KindConnect, Verdict: events.Denied, Proto: "tcp", Dest: "10.0.0.9", Port: 22}),
		// another pod
		{Kind: events.KindFlow, Phase: "new", Verdict: events.Allowed, Proto: "tcp", Dest: "10.0.0.99", Port: 1, Namespace: "prod", Pod: "other", Container: "x", ContainerID: "c2"},
		{Kind: events.KindLost, LostKind: "egress", Count: 3},
	} {
		l.Add(r)
	}
	ps := l.Profiles(Options{})
	if len(ps) != 1 {
		t.Fatalf("profiles %+v", ps)
	}
	p := ps[0]
	want := []string{"allow tcp 10.0.0.7:443 exe=/usr/bin/curl", "allow tcp 10.0.0.8:8080 exe=/usr/bin/curl", "allow tcp [2001:db8::1]:80", "allow udp 10.96.0.10:53"}
	if !slices.Equal(p.Egress, want) || !slices.Equal(p.Exec, []string{"allow /bin/sh", "allow /usr/bin/curl"}) || p.Refused != 1 || l.Lost != 3 {
		t.Fatalf("egress %q\nexec %q\nrefused %d lost %d", p.Egress, p.Exec, p.Refused, l.Lost)
	}
	ann := p.Annotations()
	eg, err := policy.ParseEgress("egress.nriguard.io/container.web", ann["egress.nriguard.io/container.web"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := policy.ParseExec("exec.nriguard.io/container.web", ann["exec.nriguard.io/container.web"]); err != nil {
		t.Fatal(err)
	}
	curl := policy.Principal{Exe: func(p string) bool { return p == "/usr/bin/curl" }}
	for _, c := range []struct {
		proto policy.Proto
		dest  string
		port  uint16
		who   policy.Principal
		want  policy.Action
	}{
		{policy.TCP, "10.0.0.7", 443, curl, policy.Allow},
		{policy.TCP, "10.0.0.7", 443, policy.Principal{}, policy.Deny}, // another program
		{policy.UDP, "10.96.0.10", 53, policy.Principal{}, policy.Allow},
		{policy.TCP, "10.0.0.9", 22, curl, policy.Deny}, // refused, never learned
		{policy.TCP, "10.0.0.7", 444, curl, policy.Deny},
	} {
		if m := eg.DecideFor(c.proto, netip.MustParseAddr(c.dest), c.port, c.who); m.Action != c.want {
			t.Errorf("%v %s:%d: %v, want %v", c.proto, c.dest, c.port, m.Action, c.want)
		}
	}
}

// Neighbours become a prefix only as many as MergeAt say so.
func TestMerge(t *testing.T) {
	l := NewLearner(Workload{})
	for i := range 5 {
		l.Add(web(events.Record{Kind: events.KindFlow, Phase: "new", Verdict: events.Allowed, Proto: "tcp", Dest: fmt.Sprintf("10.1.2.%d", i+1), Port: 443}))
	}
	l.Add(web(events.Record{Kind: events.KindFlow, Phase: "new", Verdict: events.Allowed, Proto: "tcp", Dest: "10.1.3.1", Port: 443}))
	if got := l.Profiles(Options{MergeAt: 5})[0].Egress; !slices.Equal(got, []string{"allow tcp 10.1.2.0/24:443", "allow tcp 10.1.3.1:443"}) {
		t.Errorf("merge at 5: %q", got)
	}
	if got := l.Profiles(Options{MergeAt: 6})[0].Egress; len(got) != 6 {
		t.Errorf("merge at 6: %q", got)
	}
}

// Diff says what a policy would refuse of what the workload did, and which
// of its allow rules nothing used.
func TestDiff(t *testing.T) {
	l := NewLearner(Workload{})
	l.Add(web(events.Record{Kind: events.KindFlow, Phase: "new", Verdict: events.Allowed, Proto: "tcp", Dest: "10.0.0.7", Port: 443, Exe: "/usr/bin/curl"}))
	l.Add(web(events.Record{Kind: events.KindFlow, Phase: "new", Verdict: events.Allowed, Proto: "udp", Dest: "10.96.0.10", Port: 53, Exe: "/bin/sh"}))
	l.Add(web(events.Record{Kind: events.KindExec, Verdict: events.Allowed, Filename: "/usr/bin/curl"}))
	eg, _ := policy.ParseEgress("k", "allow tcp 10.0.0.0/8:443 exe=/usr/bin/; allow tcp 192.0.2.1:22")
	ex, _ := policy.ParseExec("k", "allow /bin/")
	add, never := l.Profiles(Options{})[0].Diff(eg, ex)
	if !slices.Equal(add, []string{"allow /usr/bin/curl", "allow udp 10.96.0.10:53 exe=/bin/sh"}) ||
		!slices.Equal(never, []string{"allow /bin/", "allow tcp 192.0.2.1:22"}) {
		t.Errorf("would add %q\nnever used %q", add, never)
	}
	if s := strings.Join(add, ""); strings.Contains(s, "10.0.0.7") {
		t.Error("a flow the policy allows is in would add")
	}
}

// A container whose flows were not seen (or that reached nothing) gets no
// egress rules, and a note: nriguard cannot tell the two apart, and
// "default deny" would cut a workload whose flows were only not seen.
func TestNothingReached(t *testing.T) {
	l := NewLearner(Workload{})
	l.Add(web(events.Record{Kind: events.KindExec, Verdict: events.Allowed, Filename: "/bin/true"}))
	l.Add(web(events.Record{Kind: events.KindExec, Verdict: events.Allowed, Filename: "./x"}))
	l.Add(web(events.Record{Kind: events.KindExec, Verdict: events.Allowed, Filename: "/proc/self/exe"}))
	p := l.Profiles(Options{})[0]
	if _, ok := p.Annotations()["egress.nriguard.io/container.web"]; ok {
		t.Errorf("egress rules learned from no flow: %v", p.Annotations())
	}
	if len(p.Notes) != 3 || !strings.Contains(p.Notes[0], `"./x": not an absolute path`) || !strings.Contains(p.Notes[1], "/proc/self/exe") ||
		!strings.Contains(p.Notes[2], "no flow records") || len(p.Exec) != 1 {
		t.Errorf("notes %q, exec %q", p.Notes, p.Exec)
	}
}

// Without a policy to compare with, there is nothing to say.
func TestDiffWithNothing(t *testing.T) {
	l := NewLearner(Workload{})
	l.Add(web(events.Record{Kind: events.KindFlow, Phase: "new", Verdict: events.Allowed, Proto: "tcp", Dest: "10.0.0.7", Port: 443}))
	l.Add(web(events.Record{Kind: events.KindExec, Verdict: events.Allowed, Filename: "/usr/bin/curl"}))
	if add, never := l.Profiles(Options{})[0].Diff(nil, nil); len(add)+len(never) != 0 {
		t.Errorf("%q %q", add, never)
	}
}

// A #! script is learned as its interpreter, the file the kernel runs and
// exec rules name (a rule naming the script is refused).
func TestScriptLearnedAsInterpreter(t *testing.T) {
	l := NewLearner(Workload{})
	l.Add(web(events.Record{Kind: events.KindExec, Verdict: events.Allowed, Filename: "/docker-entrypoint.sh", Exe: "/bin/dash", File: "0:52:9"}))
	if got := l.Profiles(Options{})[0].Exec; !slices.Equal(got, []string{"allow /bin/dash"}) {
		t.Errorf("exec %q", got)
	}
}
