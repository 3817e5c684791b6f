package bpf_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/engine"
	"github.com/nriguard/nriguard/internal/testenv"
	"github.com/nriguard/nriguard/policy"
	"github.com/nriguard/nriguard/policy/policytest"
)

// programs copies this test binary to two paths anyone can run: two
// programs, as the kernel sees them (a copy is another file).
func programs(t *testing.T) (dir, a, b string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "ngprog")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	self, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	for _, name := range []string{"a", "b"} {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		self.Seek(0, 0)
		if _, err := io.Copy(f, self); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	return dir, filepath.Join(dir, "a"), filepath.Join(dir, "b")
}

// attachQualified compiles rules with their exe= patterns resolved on this
// host, and attaches them to a fresh cgroup, on the suite's shared copy of
// the programs.
func attachQualified(t *testing.T, rules string, mode policy.Mode) (string, *bpf.Attachment) {
	return attachQualifiedWith(t, rules, mode, true)
}

// attachQualifiedWith is attachQualified on the suite's shared copy (as the
// daemon attaches) if shared, else on programs of its own.
func attachQualifiedWith(t *testing.T, rules string, mode policy.Mode, shared bool) (string, *bpf.Attachment) {
	t.Helper()
	needPrograms(t)
	e, err := policy.ParseEgress("egress.nriguard.io", rules)
	if err != nil {
		t.Fatal(err)
	}
	e.Layer = policy.LayerLabel
	c, _, warnings, err := engine.CompileEgress(mode, []*policy.Egress{e}, "/")
	if err != nil || len(warnings) > 0 {
		t.Fatalf("compile: %v %q", err, warnings)
	}
	if !c.HasPrincipals() {
		t.Fatal("no principal tables compiled")
	}
	cg := testenv.Cgroup(t)
	o := &bpf.Options{PinRoot: pinRoot(t)}
	if shared {
		o = sharedCopy(t)
		// another container shares the copy, as in the daemon
		other := testenv.Cgroup(t)
		b, err := bpf.Attach(bpf.Spec{ID: "q-" + filepath.Base(other), Cgroup: other, Egress: compile(t, "allow tcp 10.9.9.9:1", policy.Enforce)}, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Detach() })
	}
	a, err := bpf.Attach(bpf.Spec{ID: "q-" + filepath.Base(cg), Cgroup: cg, Egress: c}, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Detach() })
	return cg, a
}

// Rules about programs and users hold for those programs and users, and
// for no one else: another program (a copy of an allowed one), another
// user, on connect and unconnected UDP, IPv4 and IPv6, from a child cgroup.
func TestQualifiersInTheKernel(t *testing.T) {
	t.Run("own", func(t *testing.T) { testQualifiersInTheKernel(t, false) })
	t.Run("shared", func(t *testing.T) { testQualifiersInTheKernel(t, true) })
}

func testQualifiersInTheKernel(t *testing.T, shared bool) {
	dir, a, b := programs(t)
	cg, _ := attachQualifiedWith(t, fmt.Sprintf(`allow tcp 10.1.2.3:8080 exe=%s
allow tcp 10.1.2.3:8081 uid=65534
deny tcp 10.1.9.9 exe=%s
allow tcp 10.1.9.9
allow udp 10.1.2.3:5353 exe=%s/ uid=0
allow tcp [2001:db8::1]:443 exe=%s gid=65534
default deny`, a, b, dir, b), policy.Enforce, shared)
	ns := testenv.NetNS(t)
	child := filepath.Join(cg, "child")
	if err := os.Mkdir(child, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what, bin, cg string
		ops           []string
		want          string
	}{
		{"the named program", a, cg, []string{"tcp:10.1.2.3:8080"}, "ok"},
		{"its copy: another program", b, cg, []string{"tcp:10.1.2.3:8080"}, "EPERM"},
		{"the test binary itself", os.Args[0], cg, []string{"tcp:10.1.2.3:8080"}, "EPERM"},
		{"the named program, from a child cgroup", a, child, []string{"tcp:10.1.2.3:8080"}, "ok"},
		{"the named user", b, cg, []string{"user:65534:65534", "tcp:10.1.2.3:8081"}, "ok ok"},
		{"another user", b, cg, []string{"tcp:10.1.2.3:8081"}, "EPERM"},
		{"a program denied where everyone else is allowed", b, cg, []string{"tcp:10.1.9.9:80"}, "EPERM"},
		{"everyone else", a, cg, []string{"tcp:10.1.9.9:80"}, "ok"},
		{"UDP: a program below the directory, as root", a, cg, []string{"udpsend:10.1.2.3:5353"}, "ok"},
		{"UDP: the same program as another user", a, cg, []string{"user:65534:65534", "udpsend:10.1.2.3:5353"}, "ok EPERM"},
		{"IPv6: the program in the group", b, cg, []string{"user:0:65534", "tcp:[2001:db8::1]:443"}, "ok ok"},
		{"IPv6: the program in another group", b, cg, []string{"tcp:[2001:db8::1]:443"}, "EPERM"},
	} {
		got := strings.Join(testenv.ProbeWith(t, c.bin, ns, c.cg, "", c.ops...), " ")
		if got != c.want {
			t.Errorf("%s (%s %v): got %q, want %q", c.what, filepath.Base(c.bin), c.ops, got, c.want)
		}
	}
	// A program changed after the policy was attached is not the program it
	// named: it loses the allowance (fail closed).
	if err := os.Chmod(a, 0o775); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(testenv.ProbeWith(t, a, ns, cg, "", "tcp:10.1.2.3:8080"), " "); got != "EPERM" {
		t.Errorf("the named program, changed since: got %q, want EPERM", got)
	}
}

// One socket, two users: a send the socket's cache let through for one
// user is judged again for the next: a socket handed to (or kept across a
// change to) another user gets that user's verdict.
func TestQualifiersJudgeTheSender(t *testing.T) {
	cg, _ := attachQualified(t, "allow udp 10.1.2.3:5353 uid=0; default deny", policy.Enforce)
	got := testenv.Probe(t, testenv.NetNS(t), cg, "", "udpagain:10.1.2.3:5353@65534:65534")
	if !slices.Equal(got, []string{"ok", "EPERM"}) {
		t.Fatalf("as root, then as nobody on the same socket: %q, want ok then EPERM", got)
	}
}

// One socket, two programs: the named program sends, then execs another
// that keeps the socket; the socket's cached verdict was about the first
// program, and the second is judged as itself.
func TestQualifiersJudgeTheProgramAfterExec(t *testing.T) {
	_, a, b := programs(t)
	cg, _ := attachQualified(t, fmt.Sprintf("allow udp 10.1.2.3:5353 exe=%s; default deny", a), policy.Enforce)
	ns := testenv.NetNS(t)
	if got := testenv.ProbeWith(t, a, ns, cg, "", "udpagain:10.1.2.3:5353>"+b); !slices.Equal(got, []string{"ok", "EPERM"}) {
		t.Errorf("the named program, then another exec'd on its socket: %q, want ok then EPERM", got)
	}
	// (and the other way: the test holds, it is not a refusal of every exec)
	if got := testenv.ProbeWith(t, a, ns, cg, "", "udpagain:10.1.2.3:5353>"+a); !slices.Equal(got, []string{"ok", "ok"}) {
		t.Errorf("the named program, then itself again: %q, want ok ok", got)
	}
}

// A verdict a socket remembers holds while its cgroup's policy does: other
// containers' policies written to the same copy of the programs (a start,
// a replacement, a stop) make its next send look again, and a flow a
// qualified rule allowed goes on, connected (the packet path, which cannot
// name the sender, finds the socket's verdict still good) and not.
func TestRememberedVerdictsOutliveOtherPolicies(t *testing.T) {
	_, a, _ := programs(t)
	cg, _ := attachQualifiedWith(t, fmt.Sprintf("allow udp 10.1.2.3:5353 exe=%s; default deny", a), policy.Enforce, true)
	o := sharedCopy(t) // the same copy
	others := func() {
		other := testenv.Cgroup(t)
		for _, rules := range []string{"allow tcp 10.9.9.9:1", "allow tcp 10.9.9.9:2"} {
			b, err := bpf.Attach(bpf.Spec{ID: "o-" + filepath.Base(other), Cgroup: other, Egress: compile(t, rules, policy.Enforce)}, o)
			if err != nil {
				t.Fatal(err)
			}
			b.Close()
		}
		if err := bpf.Detach(o.PinRoot, "o-"+filepath.Base(other)); err != nil {
			t.Fatal(err)
		}
	}
	for _, op := range []string{"udpagain", "udpconnagain"} {
		if first, second := twoSends(t, a, cg, op+":10.1.2.3:5353", others); first != "ok" || second != "ok" {
			t.Errorf("%s: the allowed program's sends before and after other policies changed: %q, %q; want ok, ok", op, first, second)
		}
	}
}

// In audit mode a qualified rule's refusal is reported, naming the
// process, and let through.
func TestQualifiersInAuditMode(t *testing.T) {
	_, a, _ := programs(t)
	cg, att := attachQualified(t, fmt.Sprintf("allow tcp 10.1.2.3:8080 exe=%s; default deny", a), policy.Audit)
	rd, err := bpf.NewEventReader(att.Events)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	if got := testenv.Probe(t, testenv.NetNS(t), cg, "", "tcp:10.1.2.3:8080"); !slices.Equal(got, []string{"ok"}) {
		t.Fatalf("in audit mode: %q", got)
	}
	if e := waitEvents(t, rd, 1)[0]; e.Verdict != "would-deny" || e.Port != 8080 {
		t.Errorf("event %+v, want a would-deny of port 8080", e)
	}
}

// The kernel against the reference, with qualifiers: random policies whose
// rules name the two programs, their directory, users and groups; flows
// from each program as several users.
func TestQualifiedRulesMatchReference(t *testing.T) {
	dir, a, b := programs(t)
	r := rand.New(rand.NewPCG(21, 22))
	ns := testenv.NetNS(t)
	for round := range 4 {
		text := policytest.QualifiedPolicyWith(r, 200, []string{a, b, dir + "/"})
		e, err := policy.ParseEgress("egress.nriguard.io", text)
		if err != nil {
			t.Fatal(err)
		}
		cg, _ := attachQualified(t, text, policy.Enforce)
		var in strings.Builder
		var flows []policytest.Flow
		for _, f := range policytest.Flows(r, e, 300) {
			if f.Port == 0 || f.Port < 1024 && f.Proto == policy.UDP {
				continue // UDP refuses port 0; the probe may not bind low ports as nobody
			}
			flows = append(flows, f)
			fmt.Fprintf(&in, "%v %s %d\n", f.Proto, f.Addr, f.Port)
		}
		for _, bin := range []string{a, b, os.Args[0]} {
			for _, id := range []uint32{0, 1000, 65534} {
				got := testenv.ProbeWith(t, bin, ns, cg, in.String(), fmt.Sprintf("user:%d:%d", id, id), "batch")
				if len(got) != len(flows)+1 {
					t.Fatalf("%d results for %d flows", len(got), len(flows))
				}
				who := policy.Principal{UID: id, GID: id, Exe: func(p string) bool {
					return p == bin || strings.HasSuffix(p, "/") && strings.HasPrefix(bin, p)
				}}
				for i, f := range flows {
					want := "allow"
					if e.DecideFor(f.Proto, f.Addr, f.Port, who).Action == policy.Deny {
						want = "deny"
					}
					if got[i+1] != want {
						t.Errorf("round %d, %s as %d, flow %v: kernel %s, reference %s", round, filepath.Base(bin), id, f, got[i+1], want)
					}
				}
			}
		}
	}
}

// A flow a rule allowed for its sender is that sender's, whatever holds the
// socket afterwards: another program it execs, another user it becomes,
// another process that takes it with pidfd_getfd; over TCP and connected
// UDP, IPv4 and IPv6. With BPF LSM each of their sends is refused (the
// per-send check); without, a connected socket's sends run no hook and the
// allowance goes with the socket (docs/policy.md, "Who sends": the test
// says what it sees and skips).
func TestAllowanceStaysWithTheSender(t *testing.T) {
	_, a, b := programs(t)
	ns := testenv.NetNS(t)
	for _, proto := range []string{"tcp", "udp"} {
		for _, dst := range []string{"10.1.2.3:7030", "[2001:db8::1]:7031"} {
			cg, _ := attachQualified(t, fmt.Sprintf("allow %s %s exe=%s; default deny", proto, dst, a), policy.Enforce)
			for _, c := range []struct{ mode, path string }{{"exec", b}, {"user", ""}, {"getfd", b}} {
				op := fmt.Sprintf("handoff:%s:%s:%s", c.mode, proto, dst)
				if c.path != "" {
					op += ":" + c.path
				}
				got := strings.Join(testenv.ProbeWith(t, a, ns, cg, "", op), " ")
				if !bpf.SendCheck() {
					t.Logf("%s %s to %s, without BPF LSM: %q (the allowance went with the socket)", proto, c.mode, dst, got)
					continue
				}
				if got != "ok EPERM" {
					t.Errorf("%s allowed for %s, then %s: %q, want ok EPERM", proto, filepath.Base(a), c.mode, got)
				}
			}
		}
	}
	if !bpf.SendCheck() {
		t.Skip("needs BPF LSM, which this kernel refuses, for the per-send check (make vmtest runs it)")
	}
}
