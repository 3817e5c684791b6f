package engine

import (
	"testing"

	"github.com/nriguard/nriguard/events"
	"github.com/nriguard/nriguard/policy"
)

// The rule an event names agrees with the kernel's verdict: a flow the
// kernel refused is never put down to an allow rule. A file an exe= rule
// names that changed after attach is refused by the kernel as a program no
// exe= names; the event names the rule that refused it as such.
func TestRulerAgreesWithTheVerdict(t *testing.T) {
	e, err := policy.ParseEgress("nriguard.io/egress", "default deny; allow tcp 10.0.0.1:80 exe=/bin/tool; deny tcp 10.0.0.2:80")
	if err != nil {
		t.Fatal(err)
	}
	tool := policy.FileID{Dev: 8<<20 | 1, Ino: 42}
	rl := &Ruler{egress: []*policy.Egress{e}, programs: map[policy.FileID][]string{tool: {"/bin/tool"}}}
	for _, c := range []struct {
		dest, exeFile, want string
	}{
		{"10.0.0.1", "8:1:42", "default deny"}, // the tool's file, refused: it had changed
		{"10.0.0.1", "8:1:43", "default deny"},
		{"10.0.0.2", "8:1:42", "deny tcp 10.0.0.2:80"},
		{"10.0.0.3", "8:1:42", "default deny"},
	} {
		r := &events.Record{Kind: events.KindConnect, Verdict: events.Denied, Proto: "tcp", Dest: c.dest, Port: 80, ExeFile: c.exeFile}
		rl.Rule(r)
		if r.Rule != c.want {
			t.Errorf("%s by %s: rule %q, want %q", c.dest, c.exeFile, r.Rule, c.want)
		}
	}
}

// An allowed flow's first record names the rule that allowed it.
func TestRulerNamesTheAllowingRule(t *testing.T) {
	e, err := policy.ParseEgress("nriguard.io/egress", "default deny; allow tcp 10.0.0.0/8:80; allow tcp 10.0.0.1:80 uid=1000")
	if err != nil {
		t.Fatal(err)
	}
	rl := &Ruler{egress: []*policy.Egress{e}}
	for uid, want := range map[uint32]string{0: "allow tcp 10.0.0.0/8:80", 1000: "allow tcp 10.0.0.1:80 uid=1000"} {
		r := &events.Record{Kind: events.KindFlow, Phase: "new", Verdict: events.Allowed, Proto: "tcp", Dest: "10.0.0.1", Port: 80, UID: uid}
		rl.Rule(r)
		if r.Rule != want {
			t.Errorf("uid %d: rule %q, want %q", uid, r.Rule, want)
		}
	}
}

// An exec refused although an allow rule names its file (the file changed
// after attach: the kernel gave it the default) is put down to the
// default, never to the allow rule.
func TestRulerExecAgreesWithTheVerdict(t *testing.T) {
	x, err := policy.ParseExec("exec.nriguard.io", "allow /bin/tool; deny /bin/bad; default deny")
	if err != nil {
		t.Fatal(err)
	}
	tool, bad := policy.FileID{Dev: 8<<20 | 1, Ino: 42}, policy.FileID{Dev: 8<<20 | 1, Ino: 43}
	rl := &Ruler{}
	rl.AddExec(x, &policy.ExecTable{Rules: map[policy.FileID]int{tool: 1, bad: 2}})
	for file, want := range map[string]string{"8:1:42": "default deny", "8:1:43": "deny /bin/bad"} {
		r := &events.Record{Kind: events.KindExec, Verdict: events.Denied, File: file}
		rl.Rule(r)
		if r.Rule != want {
			t.Errorf("%s: rule %q, want %q", file, r.Rule, want)
		}
	}
}
