package bpf_test

import (
	"os"
	"testing"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/events"
	"github.com/nriguard/nriguard/internal/testenv"
	"github.com/nriguard/nriguard/policy"
)

// Attacks of the first class of the threat model (docs/policy.md): the
// address the hooks judge is not where the packet goes. Each case runs
// first without a policy, to show the attempt reaches its target, then
// under one that refuses the target.

// Unspecified destinations reach the local host: 0.0.0.0 at the socket's
// source address, or at 127.0.0.1; :: at ::1; ::ffff:0.0.0.0 as 0.0.0.0.
func TestAttackUnspecifiedDestination(t *testing.T) {
	cases := []struct{ policy, op string }{
		{"deny tcp 127.0.0.1:7001; default allow", "tcp:0.0.0.0:7001"},
		{"deny tcp 127.0.0.1:7002; default allow", "tcp6:[::ffff:0.0.0.0]:7002"},
		{"deny tcp [::1]:7003; default allow", "tcp:[::]:7003"},
		{"deny udp 127.0.0.1:7004; default allow", "udpsend:0.0.0.0:7004"},
		{"deny udp 127.0.0.1:7005; default allow", "udp:0.0.0.0:7005"},
		{"deny udp 127.0.0.1:7006; default allow", "udp6send:[::ffff:0.0.0.0]:7006"},
		{"deny udp [::1]:7007; default allow", "udpsend:[::]:7007"},
		// bound first: the kernel sends to the source address
		{"deny tcp 10.1.2.3:7008; default allow", "tcp:0.0.0.0:7008@10.1.2.3"},
		{"deny udp 10.1.2.3:7009; default allow", "udpsend:0.0.0.0:7009@10.1.2.3"},
		{"deny tcp 10.1.2.3:7010; default allow", "tcp6:[::ffff:0.0.0.0]:7010@10.1.2.3"},
		// a connected UDP socket sending elsewhere with sendto
		{"allow udp 10.1.9.9:53; deny udp 10.1.2.3; default allow", "udpredirect:10.1.9.9:53,10.1.2.3:7013"},
		// an allow list that names only another address
		{"allow tcp 10.1.9.9; allow udp 10.1.9.9", "tcp:0.0.0.0:7011"},
		{"allow tcp 10.1.9.9; allow udp 10.1.9.9", "udpsend:0.0.0.0:7012"},
	}
	for _, c := range cases {
		if got := testenv.Probe(t, testenv.NetNS(t), testenv.Cgroup(t), "", c.op); got[0] != "ok" {
			t.Errorf("%s without a policy: %s (the attack does not reach its target: fix the test)", c.op, got[0])
			continue
		}
		cg, _ := attach(t, c.policy, policy.Enforce)
		if got := testenv.Probe(t, testenv.NetNS(t), cg, "", c.op); got[0] != "EPERM" {
			t.Errorf("%s under %q: %s, want EPERM", c.op, c.policy, got[0])
		}
	}
}

// Options that send a packet elsewhere than its destination address: an
// IPv6 segment routing header (socket option, no capability needed), a
// type 2 routing header as ancillary data, an IPv4 loose source route. The
// packet path refuses them, for allow lists and deny lists alike.
func TestAttackReroutingOptions(t *testing.T) {
	for _, c := range []struct {
		policy, op string
		kernelMay  bool // the kernel may refuse the option itself (then there is nothing to get past)
	}{
		{"allow udp [2001:db8::1]:53", "srh6:[2001:db8:1::1]:[2001:db8::1]:53", false},
		{"deny any 2001:db8:1::/48; default allow", "srh6:[2001:db8:1::1]:[2001:db8::1]:53", false},
		{"allow udp [2001:db8::1]:53", "rh2cmsg6:[2001:db8:1::1]:[2001:db8::1]:53", true}, // (refused since 2.6.x without mobile IPv6)
		{"allow udp 10.1.2.3:53", "lsrr:10.1.9.9:10.1.2.3:53", false},
		{"deny any 10.1.9.9; default allow", "lsrr:10.1.9.9:10.1.2.3:53", false},
		{"allow udp 10.1.2.3:53", "lsrrcmsg:10.1.9.9:10.1.2.3:53", false},
	} {
		base := testenv.Probe(t, testenv.NetNS(t), testenv.Cgroup(t), "", c.op)[0]
		if base != "ok" {
			if c.kernelMay {
				t.Logf("%s without a policy: %s: this kernel refuses the option itself; nothing to get past", c.op, base)
			} else {
				t.Errorf("%s without a policy: %s: the attack does not reach its target, so the test proves nothing (fix the test)", c.op, base)
			}
			continue
		}
		cg, a := attach(t, c.policy, policy.Enforce)
		rd, err := bpf.NewEventReader(a.Events)
		if err != nil {
			t.Fatal(err)
		}
		if got := testenv.Probe(t, testenv.NetNS(t), cg, "", c.op); got[0] != "EPERM" {
			t.Errorf("%s under %q: %s, want EPERM", c.op, c.policy, got[0])
		}
		if e := waitEvents(t, rd, 1)[0]; e.Kind != events.KindPacket || e.Reason != "routing-option" || e.Verdict != "denied" {
			t.Errorf("%s: event %+v, want a packet refused for its routing option", c.op, e)
		}
		rd.Close()
	}
	// TCP: the connect is judged and allowed; its packets carry the option
	// and are dropped: it never connects (the probe gives up after 300 ms),
	// where without a policy it connects.
	for _, c := range []struct{ policy, op string }{
		{"allow tcp [2001:db8::1]:8080", "srh6tcp:[2001:db8:1::1]:[2001:db8::1]:8080"},
		{"allow tcp 10.1.2.3:8080", "lsrrtcp:10.1.9.9:10.1.2.3:8080"},
	} {
		if base := testenv.Probe(t, testenv.NetNS(t), testenv.Cgroup(t), "", c.op)[0]; base != "ok" {
			t.Errorf("%s without a policy: %s: the attack does not connect, so the test proves nothing (fix the test)", c.op, base)
			continue
		}
		cg, a := attach(t, c.policy, policy.Enforce)
		rd, err := bpf.NewEventReader(a.Events)
		if err != nil {
			t.Fatal(err)
		}
		if got := testenv.Probe(t, testenv.NetNS(t), cg, "", c.op)[0]; got != "ETIMEDOUT" {
			t.Errorf("%s under %q: %s, want ETIMEDOUT (its packets dropped)", c.op, c.policy, got)
		}
		if e := waitEvents(t, rd, 1)[0]; e.Kind != events.KindPacket || e.Reason != "routing-option" {
			t.Errorf("%s: event %+v, want a packet refused for its routing option", c.op, e)
		}
		rd.Close()
	}
}

// io_uring's connect, sendmsg and socket go through the same kernel paths
// as the system calls: the hooks judge them. (Containers under an egress
// policy cannot set up io_uring at all: seccomp, tested in cmd/nriguard and
// the e2e; this shows the hooks would hold anyway.)
func TestAttackIOUring(t *testing.T) {
	if got := testenv.Probe(t, "", testenv.Cgroup(t), "", "iouring:setup")[0]; got != "ok" {
		t.Skipf("io_uring_setup: %s: this kernel has no io_uring to test through", got)
	}
	cg, _ := attach(t, "allow tcp 10.1.2.3:8080; allow udp 10.1.2.3:53", policy.Enforce)
	expect(t, cg,
		"iouring:connect:10.1.2.3:8080", "ok",
		"iouring:connect:10.1.2.3:8081", "EPERM",
		"iouring:connect:0.0.0.0:8080", "EPERM", // the unspecified address is the loopback
		"iouring:sendto:10.1.2.3:53", "ok",
		"iouring:sendto:10.1.9.9:53", "EPERM",
		"iouring:socket:raw4", "EPERM",
		"iouring:socket:ping4", "EPERM",
		"iouring:socket:tcp", "ok",
	)
}

// A TCP socket the hooks never judged passes the packet path only if it
// was accepted here (its SYN-ACK left from a listener of the cgroup): a
// connection made before the policy was attached (a container that started
// while nriguard was away) is judged by its destination from then on, both
// ways; an accepted one answers its peer, also across a replaced policy.
func TestTCPNeverJudged(t *testing.T) {
	needPrograms(t)
	testenv.NeedRoot(t)
	root := pinRoot(t)
	ev, err := bpf.NewEventMaps()
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	opts := &bpf.Options{PinRoot: root, Events: ev} // a shared copy, as the daemon's
	put := func(id, cg, rules string) {
		a, err := bpf.Attach(bpf.Spec{ID: id, Cgroup: cg, Egress: compile(t, rules, policy.Enforce)}, opts)
		if err != nil {
			t.Fatal(err)
		}
		a.Close()
		t.Cleanup(func() { bpf.Detach(root, id) })
	}
	cg := testenv.Cgroup(t)
	first, second := twoSends(t, os.Args[0], cg, "tcpagain:10.1.2.3:7020", func() { put("late", cg, "allow tcp 10.1.9.9:80") })
	if first != "ok" || second != "ETIMEDOUT" {
		t.Errorf("a connection made before the policy: %q, then %q; want ok, then ETIMEDOUT (refused on the way out)", first, second)
	}
	cg = testenv.Cgroup(t)
	put("accepted", cg, "allow tcp 10.1.2.3:7021")
	first, second = twoSends(t, os.Args[0], cg, "tcpagain:10.1.2.3:7021", func() { put("accepted", cg, "allow tcp 10.1.2.3:7021; allow udp 10.1.9.9:53") })
	if first != "ok" || second != "ok" {
		t.Errorf("a connection accepted under the policy, across its replacement: %q, then %q; want ok, ok", first, second)
	}
}
