package bpf_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/cgroup"
	"github.com/nriguard/nriguard/dnsanswer"
	"github.com/nriguard/nriguard/events"
	"github.com/nriguard/nriguard/internal/testenv"
	"github.com/nriguard/nriguard/policy"
)

// udpIn opens a UDP socket bound to ap inside network namespace ns.
func udpIn(t *testing.T, ns string, ap netip.AddrPort) int {
	t.Helper()
	type res struct {
		fd  int
		err error
	}
	c := make(chan res)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		nsfd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			c <- res{-1, err}
			return
		}
		defer unix.Close(nsfd)
		if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
			c <- res{-1, err}
			return
		}
		fam, sa := unix.AF_INET, unix.Sockaddr(&unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
		if ap.Addr().Is6() {
			fam, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
		}
		fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			if err = unix.Bind(fd, sa); err != nil {
				unix.Close(fd)
			}
		}
		c <- res{fd, err}
	}()
	r := <-c
	if r.err != nil {
		t.Fatalf("udp socket at %v in %s: %v", ap, ns, r.err)
	}
	t.Cleanup(func() {
		unix.Shutdown(r.fd, unix.SHUT_RDWR) // wakes the server's recvfrom
		unix.Close(r.fd)
	})
	return r.fd
}

// dnsServer answers queries on 10.1.2.3:53 of the test namespace with what
// answer writes for them; from, if set, sends the answers instead (another
// source address).
type dnsServer struct {
	fd, from int
	mu       sync.Mutex
	answer   func(q dnsmessage.Question, h dnsmessage.Header) []byte
	sent     [][]byte // every answer sent
}

var testResolver = netip.MustParseAddr("10.1.2.3")

func startDNS(t *testing.T, answer func(q dnsmessage.Question, h dnsmessage.Header) []byte) *dnsServer {
	s := &dnsServer{fd: udpIn(t, testenv.NetNS(t), netip.AddrPortFrom(testResolver, 53)), answer: answer}
	s.from = s.fd
	go func() {
		buf := make([]byte, 4096)
		for {
			n, peer, err := unix.Recvfrom(s.fd, buf, 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n == 0 {
				return // shut down
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			s.mu.Lock()
			msg := s.answer(q, h)
			s.sent = append(s.sent, msg)
			from := s.from
			s.mu.Unlock()
			if msg != nil {
				unix.Sendto(from, msg, 0, peer)
			}
		}
	}()
	return s
}

// answerWith writes an answer to q with records, through dnsmessage (with
// compression, as resolvers write them).
func answerWith(q dnsmessage.Question, h dnsmessage.Header, truncated bool, rrs ...dnsmessage.Resource) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Truncated: truncated, RecursionAvailable: true})
	b.EnableCompression()
	b.StartQuestions()
	b.Question(q)
	b.StartAnswers()
	for _, r := range rrs {
		switch body := r.Body.(type) {
		case *dnsmessage.AResource:
			b.AResource(r.Header, *body)
		case *dnsmessage.AAAAResource:
			b.AAAAResource(r.Header, *body)
		case *dnsmessage.CNAMEResource:
			b.CNAMEResource(r.Header, *body)
		case *dnsmessage.TXTResource:
			b.TXTResource(r.Header, *body)
		}
	}
	msg, _ := b.Finish()
	return msg
}

func rrA(name dnsmessage.Name, ttl uint32, addr string) dnsmessage.Resource {
	a := netip.MustParseAddr(addr)
	if a.Is6() {
		return dnsmessage.Resource{Header: dnsmessage.ResourceHeader{Name: name, Class: dnsmessage.ClassINET, TTL: ttl}, Body: &dnsmessage.AAAAResource{AAAA: a.As16()}}
	}
	return dnsmessage.Resource{Header: dnsmessage.ResourceHeader{Name: name, Class: dnsmessage.ClassINET, TTL: ttl}, Body: &dnsmessage.AResource{A: a.As4()}}
}

const dnsPolicy = "allow udp 10.1.2.3:53; allow tcp api.example.com:80; allow tcp *.example.org:80,443; allow tcp [2001:db8:7::/48]:22; deny tcp 192.0.2.66; default deny"

// A connect to an address is allowed once a trusted answer to a question
// a rule names gave it, and only on the rule's ports; the names' rules
// decide only where no address rule does.
func TestDNSNamesLearned(t *testing.T) {
	cg, _ := attach(t, dnsPolicy, policy.Enforce)
	edge := dnsmessage.MustNewName("edge.cdn.example.net.")
	startDNS(t, func(q dnsmessage.Question, h dnsmessage.Header) []byte {
		switch strings.ToLower(q.Name.String()) {
		case "api.example.com.":
			if q.Type == dnsmessage.TypeAAAA {
				return answerWith(q, h, false, rrA(q.Name, 60, "2001:db8:5::10"))
			}
			return answerWith(q, h, false, dnsmessage.Resource{Header: dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60},
				Body: &dnsmessage.CNAMEResource{CNAME: edge}}, rrA(edge, 30, "192.0.2.10"), rrA(edge, 30, "192.0.2.11"))
		case "x.example.org.", "y.example.org.":
			return answerWith(q, h, false, rrA(q.Name, 60, "192.0.2.30"))
		case "a.b.example.org.", "example.org.", "other.example.net.":
			return answerWith(q, h, false, rrA(q.Name, 60, "192.0.2.40"))
		case "denied.example.org.":
			return answerWith(q, h, false, rrA(q.Name, 60, "192.0.2.66"))
		case "trunc.example.org.":
			return answerWith(q, h, true, rrA(q.Name, 60, "192.0.2.50"))
		case "v6.example.org.":
			return answerWith(q, h, false, rrA(q.Name, 60, "2001:db8:7::1"))
		case "local.example.org.": // never learned: the host's own, link-local, multicast
			if q.Type == dnsmessage.TypeAAAA {
				return answerWith(q, h, false, rrA(q.Name, 60, "::1"), rrA(q.Name, 60, "fe80::1"), rrA(q.Name, 60, "::ffff:192.0.2.77"), rrA(q.Name, 60, "2001:db8:5::11"))
			}
			return answerWith(q, h, false, rrA(q.Name, 60, "127.0.0.1"), rrA(q.Name, 60, "169.254.169.254"), rrA(q.Name, 60, "0.0.0.0"),
				rrA(q.Name, 60, "224.0.0.1"), rrA(q.Name, 60, "192.0.2.78"))
		}
		return answerWith(q, h, false)
	})
	expect(t, cg,
		"connect:192.0.2.10:80", "EPERM", // not learned yet
		"resolve:10.1.2.3,other.example.net,a,80", "EPERM", // a name no rule gives
		"resolve:10.1.2.3,api.example.com,a,80", "ENETUNREACH ENETUNREACH", // CNAME chain, two addresses
		"connect:192.0.2.10:80", "ENETUNREACH",
		"connect:192.0.2.10:443", "EPERM", // not the rule's port
		"connect:192.0.2.40:80", "EPERM",
		"resolve:10.1.2.3,API.Example.COM,aaaa,80", "ENETUNREACH", // AAAA, names compared in lower case
		"resolve:10.1.2.3,x.example.org,a,443", "ENETUNREACH", // one label more than the wildcard
		"resolve:10.1.2.3,a.b.example.org,a,80", "EPERM", // two labels more
		"resolve:10.1.2.3,example.org,a,80", "EPERM", // the wildcard's own name
		"resolve:10.1.2.3,denied.example.org,a,80", "EPERM", // an address rule decides first
		"resolve:10.1.2.3,trunc.example.org,a,80", "EPERM", // truncated: teaches nothing
		"resolve:10.1.2.3,v6.example.org,a,22", "ENETUNREACH", // allowed by its address anyway
		"resolve:10.1.2.3,nothing.example.org,a,80", "noaddress",
		"resolve:10.1.2.3,local.example.org,a,80", "EPERM EPERM EPERM EPERM ENETUNREACH",
		"resolve:10.1.2.3,local.example.org,aaaa,80", "EPERM EPERM EPERM ENETUNREACH",
	)
	// another container's policy learned nothing from this one's answers
	cg2, _ := attach(t, dnsPolicy, policy.Enforce)
	expect(t, cg2, "connect:192.0.2.10:80", "EPERM")
}

// Answers that a trusted resolver did not send to the socket that asked
// teach nothing, and are reported.
func TestDNSForgedAnswers(t *testing.T) {
	cg, a := attach(t, dnsPolicy, policy.Enforce)
	rd, err := bpf.NewEventReader(a.Events)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	s := startDNS(t, func(q dnsmessage.Question, h dnsmessage.Header) []byte {
		return answerWith(q, h, false, rrA(q.Name, 60, "192.0.2.20"))
	})
	ns := testenv.NetNS(t)
	// from another address than the one asked (the client takes it: its
	// socket is not connected)
	s.mu.Lock()
	s.from = udpIn(t, ns, netip.MustParseAddrPort("10.1.9.9:53"))
	s.mu.Unlock()
	expect(t, cg, "resolve:10.1.2.3,x.example.org,a,80,1,u", "EPERM")

	// to a socket that never asked
	f, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "dnswait:10.1.2.3:5300")
	cmd.Env = append(os.Environ(), "NRIGUARD_TEST_PROBE=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	lines.Scan() // ready
	var h dnsmessage.Header
	h.ID = 4242
	q := dnsmessage.Question{Name: dnsmessage.MustNewName("y.example.org."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}
	forged := answerWith(q, h, false, rrA(q.Name, 60, "192.0.2.21"))
	if err := unix.Sendto(s.fd, forged, 0, &unix.SockaddrInet4{Port: 5300, Addr: [4]byte{10, 1, 2, 3}}); err != nil {
		t.Fatal(err)
	}
	lines.Scan()
	if got := lines.Text(); got != "EPERM" {
		t.Errorf("a connect to the address of an answer nobody asked for: %q, want EPERM", got)
	}
	cmd.Wait()

	// reported where the socket had asked (not to one that never did:
	// anyone can send those, and the ring is every container's)
	want := map[string]bool{"10.1.9.9 dns-unsolicited": false}
	deadline := time.Now().Add(2 * time.Second)
	var r events.Record
	for time.Now().Before(deadline) {
		rd.SetDeadline(time.Now().Add(200 * time.Millisecond))
		if rd.Read(&r) != nil {
			continue
		}
		if r.Kind == events.KindDNS {
			want[r.Dest+" "+r.Reason] = true
		}
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("no dns record %q", k)
		}
	}
}

// The addresses are in the table before the program that asked reads the
// answer: a connect made at once after each of 10,000 lookups (1,000 under
// an emulated CPU), each to an address never given before, is allowed every
// time.
func TestDNSNoRace(t *testing.T) {
	n := testenv.Count(t, 10000, 1000)
	cg, _ := attach(t, dnsPolicy, policy.Enforce)
	var seq uint32
	startDNS(t, func(q dnsmessage.Question, h dnsmessage.Header) []byte {
		seq++
		a := netip.AddrFrom4([4]byte{198, 18, byte(seq >> 8), byte(seq)})
		return answerWith(q, h, false, rrA(q.Name, 300, a.String()))
	})
	got := testenv.Probe(t, testenv.NetNS(t), cg, "", fmt.Sprintf("resolve:10.1.2.3,race.example.org,a,80,%d", n))
	if want := fmt.Sprintf("%d %d 0", n, n); len(got) != 1 || got[0] != want {
		t.Fatalf("%d lookups, each followed by a connect: %q answered, connected, refused; want %q", n, got, want)
	}
}

// A learned address lets new connections start for its TTL and the grace
// (5 s) only.
func TestDNSTTL(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a TTL to run out (6 s)")
	}
	cg, _ := attach(t, dnsPolicy, policy.Enforce)
	startDNS(t, func(q dnsmessage.Question, h dnsmessage.Header) []byte {
		return answerWith(q, h, false, rrA(q.Name, 0, "192.0.2.60"))
	})
	expect(t, cg, "resolve:10.1.2.3,short.example.org,a,80", "ENETUNREACH")
	time.Sleep(6 * time.Second)
	expect(t, cg, "connect:192.0.2.60:80", "EPERM")
}

// The kernel learns what package dnsanswer, the reference, reads from the
// same answers: random answers of A, AAAA, CNAME and TXT records, more or
// fewer than the kernel reads.
func TestDNSMatchesReference(t *testing.T) {
	cg, _ := attach(t, dnsPolicy, policy.Enforce)
	r := rand.New(rand.NewPCG(11, 12))
	var n int
	var mu sync.Mutex
	var last []byte
	startDNS(t, func(q dnsmessage.Question, h dnsmessage.Header) []byte {
		mu.Lock()
		defer mu.Unlock()
		var rrs []dnsmessage.Resource
		owner := q.Name
		for range r.IntN(dnsanswer.MaxRecords + 6) {
			n++
			switch r.IntN(5) {
			case 0:
				c := dnsmessage.MustNewName(fmt.Sprintf("c%d.cdn.example.net.", n))
				rrs = append(rrs, dnsmessage.Resource{Header: dnsmessage.ResourceHeader{Name: owner, Class: dnsmessage.ClassINET, TTL: 60}, Body: &dnsmessage.CNAMEResource{CNAME: c}})
				owner = c
			case 1:
				rrs = append(rrs, dnsmessage.Resource{Header: dnsmessage.ResourceHeader{Name: owner, Class: dnsmessage.ClassINET, TTL: 60}, Body: &dnsmessage.TXTResource{TXT: []string{strings.Repeat("x", r.IntN(200))}}})
			default:
				rrs = append(rrs, rrA(owner, 60, netip.AddrFrom4([4]byte{198, 19, byte(n >> 8), byte(n)}).String()))
			}
		}
		last = answerWith(q, h, false, rrs...)
		return last
	})
	for i := range 60 {
		name := fmt.Sprintf("r%d.example.org", i)
		got := testenv.Probe(t, testenv.NetNS(t), cg, "", "resolve:10.1.2.3,"+name+",a,80")
		mu.Lock()
		msg := last
		mu.Unlock()
		ref, err := dnsanswer.Parse(msg)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for range ref.Addrs {
			want = append(want, "ENETUNREACH")
		}
		// the probe connects to every A record; those past the reference's
		// are refused
		var p dnsmessage.Parser
		p.Start(msg)
		p.SkipAllQuestions()
		all, _ := p.AllAnswers()
		for range countA(all) - len(ref.Addrs) {
			want = append(want, "EPERM")
		}
		w := strings.Join(want, " ")
		if w == "" {
			w = "noaddress"
		}
		if len(got) != 1 || got[0] != w {
			t.Fatalf("answer %d (%d records): kernel %q, reference %q", i, len(all), got, w)
		}
	}
}

func countA(rrs []dnsmessage.Resource) int {
	n := 0
	for _, r := range rrs {
		if _, ok := r.Body.(*dnsmessage.AResource); ok {
			n++
		}
	}
	return n
}

// A flow a DNS name let pass is reported with the name's index, which
// readers turn into the name (engine.Ruler); the flow's counts carry it
// too.
func TestDNSFlowRecordsNameTheName(t *testing.T) {
	c := compile(t, dnsPolicy, policy.Enforce)
	cg, a := attachCompiled(t, c, policy.VisFlows)
	rd, err := bpf.NewEventReader(a.Events)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	startDNS(t, func(q dnsmessage.Question, h dnsmessage.Header) []byte {
		return answerWith(q, h, false, rrA(q.Name, 60, "192.0.2.31"))
	})
	expect(t, cg, "resolve:10.1.2.3,z.example.org,a,80", "ENETUNREACH")
	want := -1
	for i, n := range c.Names {
		if n.Pattern == "*.example.org" {
			want = i + 1
		}
	}
	var r events.Record
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		rd.SetDeadline(time.Now().Add(200 * time.Millisecond))
		if rd.Read(&r) != nil {
			continue
		}
		if r.Kind == events.KindFlow && r.Phase == "new" && r.Dest == "192.0.2.31" {
			if int(r.NameIndex) != want {
				t.Fatalf("flow to a learned address: name index %d, want %d (*.example.org)", r.NameIndex, want)
			}
			return
		}
	}
	t.Fatal("no flow record for the connect to the learned address")
}

// What was learned survives the plugin's end: the maps are pinned, and
// attaching the same policy again (a restarted plugin) keeps them.
func TestDNSLearnedSurvivesRestart(t *testing.T) {
	cg := testenv.Cgroup(t)
	opts := sharedCopy(t) // the plugin's way
	root := opts.PinRoot
	spec := bpf.Spec{ID: "dnsrestart", Cgroup: cg, Egress: compile(t, dnsPolicy, policy.Enforce)}
	a, err := bpf.Attach(spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	startDNS(t, func(q dnsmessage.Question, h dnsmessage.Header) []byte {
		return answerWith(q, h, false, rrA(q.Name, 60, "192.0.2.32"))
	})
	expect(t, cg, "resolve:10.1.2.3,w.example.org,a,80", "ENETUNREACH")
	a.Close() // the plugin goes; the pins stay
	if a, err = bpf.Attach(spec, opts); err != nil {
		t.Fatal(err)
	}
	defer bpf.Detach(root, "dnsrestart")
	a.Close()
	expect(t, cg, "connect:192.0.2.32:80", "ENETUNREACH")
}

// A container that goes takes its names and what was learned for them out
// of the copy of the programs it shared; a replaced policy starts afresh.
func TestDNSDetachForgets(t *testing.T) {
	opts := sharedCopy(t)
	root := opts.PinRoot
	cg, other := testenv.Cgroup(t), testenv.Cgroup(t)
	cgid, _ := cgroup.ID(cg)
	for i, c := range []string{cg, other} {
		a, err := bpf.Attach(bpf.Spec{ID: fmt.Sprintf("dnsforget%d", i), Cgroup: c, Egress: compile(t, dnsPolicy, policy.Enforce)}, opts)
		if err != nil {
			t.Fatal(err)
		}
		a.Close()
		defer bpf.Detach(root, fmt.Sprintf("dnsforget%d", i))
	}
	startDNS(t, func(q dnsmessage.Question, h dnsmessage.Header) []byte {
		return answerWith(q, h, false, rrA(q.Name, 60, "192.0.2.33"))
	})
	expect(t, cg, "resolve:10.1.2.3,v.example.org,a,80", "ENETUNREACH")
	count := func() (names, learned int) {
		sets, _ := filepath.Glob(filepath.Join(bpf.EgressDir(root), "*"))
		for _, dir := range sets {
			// (an address learned is in the name's ring too)
			for file, n := range map[string]*int{"map_dns_names": &names, "map_dns_resolvers": &names, "map_dns_learned": &learned, "map_dns_rings": &learned} {
				m, err := ebpf.LoadPinnedMap(filepath.Join(dir, file), nil)
				if err != nil {
					t.Fatal(err)
				}
				var k []byte
				var v []byte
				for it := m.Iterate(); it.Next(&k, &v); {
					if binary.NativeEndian.Uint64(k) == cgid {
						*n++
					}
				}
				m.Close()
			}
		}
		return
	}
	if names, learned := count(); names != 3 || learned != 2 {
		t.Fatalf("attached: %d names and resolvers, %d addresses (and ring places) of the cgroup, want 3 and 2", names, learned)
	}
	// replaced: the new policy's names only, nothing learned
	if a, err := bpf.Attach(bpf.Spec{ID: "dnsforget0", Cgroup: cg, Egress: compile(t, "allow udp 10.1.2.3:53; allow tcp api.example.com", policy.Enforce)}, opts); err != nil {
		t.Fatal(err)
	} else {
		a.Close()
	}
	if names, learned := count(); names != 2 || learned != 0 {
		t.Fatalf("replaced: %d names and resolvers, %d addresses of the cgroup, want 2 and 0 (v.example.org's rule is gone)", names, learned)
	}
	expect(t, cg, "connect:192.0.2.33:80", "EPERM")
	if err := bpf.Detach(root, "dnsforget0"); err != nil {
		t.Fatal(err)
	}
	if names, learned := count(); names != 0 || learned != 0 {
		t.Fatalf("detached: %d names and %d addresses of the cgroup left, want none", names, learned)
	}
}

// A policy that names DNS names replacing one that did not gets the answer
// path too, on a private copy of the programs and on a shared one (where
// the old attachment's links stay).
func TestDNSNamesAddedByReplace(t *testing.T) {
	needPrograms(t)
	t.Run("private", func(t *testing.T) { testNamesAddedByReplace(t, &bpf.Options{PinRoot: pinRoot(t)}) })
	t.Run("shared", func(t *testing.T) { testNamesAddedByReplace(t, sharedCopy(t)) })
}

func testNamesAddedByReplace(t *testing.T, opts *bpf.Options) {
	cg := testenv.Cgroup(t)
	for _, rules := range []string{"allow udp 10.1.2.3:53; allow tcp 192.0.2.0/24:22", dnsPolicy} {
		a, err := bpf.Attach(bpf.Spec{ID: "dnsreplace", Cgroup: cg, Egress: compile(t, rules, policy.Enforce)}, opts)
		if err != nil {
			t.Fatal(err)
		}
		a.Close()
	}
	defer bpf.Detach(opts.PinRoot, "dnsreplace")
	startDNS(t, func(q dnsmessage.Question, h dnsmessage.Header) []byte {
		return answerWith(q, h, false, rrA(q.Name, 60, "192.0.2.34"))
	})
	expect(t, cg, "resolve:10.1.2.3,u.example.org,a,80", "ENETUNREACH")
	expect(t, cg, "connect:192.0.2.34:8443", "EPERM", "connect:192.0.2.35:80", "EPERM")
}

// An answer from a DNS server a policed container runs teaches nothing,
// even from an address the policy trusts as a resolver.
func TestDNSOwnServer(t *testing.T) {
	cg, a := attach(t, "allow udp 10.1.9.9; allow tcp *.example.org:80; default deny", policy.Enforce)
	rd, err := bpf.NewEventReader(a.Events)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	f, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("ip", "netns", "exec", testenv.NetNS(t), os.Args[0], "dnsserve:10.1.9.9,192.0.2.70")
	cmd.Env = append(os.Environ(), "NRIGUARD_TEST_PROBE=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	lines := bufio.NewScanner(out)
	lines.Scan() // ready
	expect(t, cg, "resolve:10.1.9.9,own.example.org,a,80", "EPERM")
	lines.Scan()
	if lines.Text() != "served" {
		t.Fatalf("the container's DNS server: %q, want served", lines.Text())
	}
	var r events.Record
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		rd.SetDeadline(time.Now().Add(200 * time.Millisecond))
		if rd.Read(&r) == nil && r.Kind == events.KindDNS && r.Reason == "dns-own-server" && r.Dest == "10.1.9.9" {
			return
		}
	}
	t.Error("no dns record with reason dns-own-server")
}

// A name answers for its 256 most recently learned addresses: the 257th
// takes the place of the first, which is refused from then on and counted.
func TestDNSNameCap(t *testing.T) {
	opts := sharedCopy(t)
	root := opts.PinRoot
	cg := testenv.Cgroup(t)
	a, err := bpf.Attach(bpf.Spec{ID: "dnscap", Cgroup: cg, Egress: compile(t, dnsPolicy, policy.Enforce)}, opts)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	defer bpf.Detach(root, "dnscap")
	var n uint32
	startDNS(t, func(q dnsmessage.Question, h dnsmessage.Header) []byte {
		n++
		return answerWith(q, h, false, rrA(q.Name, 300, netip.AddrFrom4([4]byte{198, 18, byte(n >> 8), byte(n)}).String()))
	})
	if got := testenv.Probe(t, testenv.NetNS(t), cg, "", "resolve:10.1.2.3,many.example.org,a,80,300"); len(got) != 1 || got[0] != "300 300 0" {
		t.Fatalf("300 lookups of one name, each a new address: %q, want \"300 300 0\"", got)
	}
	expect(t, cg,
		"connect:198.18.0.1:80", "EPERM", // the first: its place went to the 257th
		"connect:198.18.0.44:80", "EPERM",
		"connect:198.18.0.45:80", "ENETUNREACH", // the 256 last
		"connect:198.18.1.44:80", "ENETUNREACH")
	learned, evicted, err := bpf.DNSStats(root)
	if err != nil {
		t.Fatal(err)
	}
	if learned != 256 {
		t.Errorf("addresses learned: %d, want 256 (the first 44 left the table with their place)", learned)
	}
	if evicted != 44 {
		t.Errorf("addresses let go for the cap: %d counted, want 44", evicted)
	}
}

// A replaced policy keeps what was learned for the names it still has:
// flows to those addresses go on, new ones may start; a name it dropped
// lets nothing through any more.
func TestDNSReplaceCarriesLearned(t *testing.T) {
	opts := sharedCopy(t)
	root := opts.PinRoot
	cg := testenv.Cgroup(t)
	put := func(rules string) {
		a, err := bpf.Attach(bpf.Spec{ID: "dnscarry", Cgroup: cg, Egress: compile(t, rules, policy.Enforce)}, opts)
		if err != nil {
			t.Fatal(err)
		}
		a.Close()
	}
	put(dnsPolicy)
	defer bpf.Detach(root, "dnscarry")
	startDNS(t, func(q dnsmessage.Question, h dnsmessage.Header) []byte {
		if strings.HasPrefix(q.Name.String(), "api.") {
			return answerWith(q, h, false, rrA(q.Name, 60, "192.0.2.90"))
		}
		return answerWith(q, h, false, rrA(q.Name, 60, "192.0.2.91"))
	})
	expect(t, cg, "resolve:10.1.2.3,api.example.com,a,80", "ENETUNREACH", "resolve:10.1.2.3,k.example.org,a,80", "ENETUNREACH")
	// the same names and one more rule; then without the wildcard
	put(dnsPolicy + "; allow tcp 192.0.2.200")
	expect(t, cg, "connect:192.0.2.90:80", "ENETUNREACH", "connect:192.0.2.91:80", "ENETUNREACH")
	put("allow udp 10.1.2.3:53; allow tcp api.example.com:80; default deny")
	expect(t, cg, "connect:192.0.2.90:80", "ENETUNREACH", "connect:192.0.2.91:80", "EPERM")
}

// DNS over TCP teaches nothing, and a connection to a DNS server over TCP
// is reported once.
func TestDNSOverTCPReported(t *testing.T) {
	cg, a := attach(t, "allow any 10.1.2.3:53; allow tcp api.example.com; default deny", policy.Enforce)
	rd, err := bpf.NewEventReader(a.Events)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	expect(t, cg, "tcp:10.1.2.3:53", "ok") // (the probe listens there itself, then connects)
	var r events.Record
	n := 0
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		rd.SetDeadline(time.Now().Add(200 * time.Millisecond))
		if rd.Read(&r) == nil && r.Kind == events.KindDNS && r.Reason == "dns-tcp" && r.Dest == "10.1.2.3" && r.Proto == "tcp" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("a TCP connection to a DNS server: %d dns-tcp records, want 1", n)
	}
}

// An answer from an address the policy lets the container ask, but does not
// name exactly as its resolver, teaches nothing and is reported.
func TestDNSResolverNamedExactly(t *testing.T) {
	cg, a := attach(t, "allow udp 10.1.2.0/24:53; allow tcp *.example.org:80; default deny", policy.Enforce)
	rd, err := bpf.NewEventReader(a.Events)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	startDNS(t, func(q dnsmessage.Question, h dnsmessage.Header) []byte {
		return answerWith(q, h, false, rrA(q.Name, 60, "192.0.2.95"))
	})
	expect(t, cg, "resolve:10.1.2.3,n.example.org,a,80", "EPERM")
	var r events.Record
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		rd.SetDeadline(time.Now().Add(200 * time.Millisecond))
		if rd.Read(&r) == nil && r.Kind == events.KindDNS && r.Reason == "dns-resolver" && r.Dest == "10.1.2.3" {
			return
		}
	}
	t.Error("no dns record with reason dns-resolver")
}
