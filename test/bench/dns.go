package main

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"

	"github.com/nriguard/nriguard/cgroup"
	"github.com/nriguard/nriguard/policy"
)

// The benchmark's resolver, in every namespace it makes, and the name its
// answers give the destinations of the policy "by DNS name".
var (
	benchResolver = netip.MustParseAddr("10.53.53.53")
	benchName     = dnsmessage.MustNewName("bench.nriguard.test.")
)

// namedPolicy is s's policy with the benchmark's own destinations allowed
// by DNS name instead of by address (unless !names: not at all), and its
// resolver allowed.
func namedPolicy(s *size, names bool) (*policy.Compiled, error) {
	e := &policy.Egress{Default: policy.Deny, Layer: policy.LayerLabel}
	e.Rules = append(e.Rules, s.policy.Rules[:len(s.prefixes)]...)
	e.Rules = append(e.Rules, policy.Rule{Action: policy.Allow, Proto: policy.UDP, Dest: netip.PrefixFrom(benchResolver, 32), Ports: []policy.PortRange{{Lo: 53, Hi: 53}}})
	if names {
		e.Rules = append(e.Rules, policy.Rule{Action: policy.Allow, Proto: policy.AnyProto, Name: "bench.nriguard.test",
			Ports: []policy.PortRange{{Lo: udpPort, Hi: udpPort2}, {Lo: tcpPort, Hi: streamPort}, {Lo: coldPorts, Hi: coldPorts + coldN - 1}}})
	}
	return policy.CompileFor(policy.Enforce, nil, e)
}

// dnsServer answers every query on the resolver address of the namespace
// the calling thread is in with answers (A and AAAA), TTL one day.
type dnsServer struct {
	fd   int
	done chan struct{} // closed when the serving thread has closed fd
}

func startDNS(answers []netip.Addr) (*dnsServer, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, sockaddr(benchResolver, 53)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("dns server: %w", err)
	}
	d := &dnsServer{fd, make(chan struct{})}
	go func() {
		runtime.LockOSThread()
		// the thread closes the socket itself: closed under its recvfrom,
		// the address would stay bound until the call returns
		defer close(d.done)
		defer unix.Close(fd)
		buf := make([]byte, 512)
		for {
			n, peer, err := unix.Recvfrom(fd, buf, 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n == 0 {
				return
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
			b := dnsmessage.NewBuilder(buf[:0], dnsmessage.Header{ID: h.ID, Response: true})
			b.EnableCompression()
			b.StartQuestions()
			b.Question(q)
			b.StartAnswers()
			rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 86400}
			for _, a := range answers {
				if a.Is4() && q.Type == dnsmessage.TypeA {
					b.AResource(rh, dnsmessage.AResource{A: a.As4()})
				} else if a.Is6() && q.Type == dnsmessage.TypeAAAA {
					b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.As16()})
				}
			}
			msg, _ := b.Finish()
			unix.Sendto(fd, msg, 0, peer)
		}
	}()
	return d, nil
}

func (d *dnsServer) stop() {
	if d.fd >= 0 {
		unix.Shutdown(d.fd, unix.SHUT_RDWR)
		<-d.done
		d.fd = -1
	}
}

// lookups asks the resolver for benchName n times (type A) from one
// connected socket, each time waiting for the answer.
func lookups(n int, qtype dnsmessage.Type) (cpu, wall float64, err error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, 0, err
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, sockaddr(benchResolver, 53)); err != nil {
		return 0, 0, err
	}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2})
	buf := make([]byte, 512)
	var id uint16
	return timedProcess(n, func() error {
		id++
		q := dnsmessage.Message{Header: dnsmessage.Header{ID: id}, Questions: []dnsmessage.Question{{Name: benchName, Type: qtype, Class: dnsmessage.ClassINET}}}
		msg, err := q.AppendPack(buf[:0])
		if err != nil {
			return err
		}
		if _, err := unix.Write(fd, msg); err != nil {
			return fmt.Errorf("query: %w", err)
		}
		for {
			_, err := unix.Read(fd, buf)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return fmt.Errorf("answer: %w", err)
			}
			return nil
		}
	})
}

// learn makes the cgroup cg learn the benchmark's destinations by name:
// lookups from inside it, then a send that only the learned address allows.
func learn(cg, home string, to netip.Addr) error {
	if err := cgroup.Move(cg, os.Getpid()); err != nil {
		return err
	}
	defer cgroup.Move(home, os.Getpid())
	for _, t := range []dnsmessage.Type{dnsmessage.TypeA, dnsmessage.TypeAAAA} {
		if _, _, err := lookups(1, t); err != nil {
			return err
		}
	}
	fd, err := unix.Socket(family(to), unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, []byte{1}, 0, sockaddr(to, udpPort)); err != nil {
		return fmt.Errorf("a send to %s, learned by name: %w", to, err)
	}
	return nil
}

// answerPath measures DNS lookups from cgroups with no policy, with the
// policy by name but without its names (no answer program), and with it,
// paired as the datapath's rounds are. The measuring thread is the client
// and the server both (the server's socket belongs to no policed cgroup):
// its CPU time holds the query, the answer's loopback delivery to the
// client and what the programs do with both.
func answerPath(ns *netns, none, named, unnamed string, answer netip.Addr) error {
	if err := ns.enter(); err != nil {
		return err
	}
	srv, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(srv)
	if err := unix.Bind(srv, sockaddr(benchResolver, 53)); err != nil {
		return fmt.Errorf("dns server: %w", err)
	}
	q := dnsmessage.Question{Name: benchName, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}
	query, err := (&dnsmessage.Message{Questions: []dnsmessage.Question{q}}).Pack()
	if err != nil {
		return err
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{Response: true})
	b.EnableCompression()
	b.StartQuestions()
	b.Question(q)
	b.StartAnswers()
	b.AResource(dnsmessage.ResourceHeader{Name: benchName, Class: dnsmessage.ClassINET, TTL: 86400}, dnsmessage.AResource{A: answer.As4()})
	reply, err := b.Finish()
	if err != nil {
		return err
	}
	configs := []struct{ name, cg string }{{"no policy", none}, {"policy, no DNS names", unnamed}, {"policy with DNS names", named}}
	res := make([]sample, len(configs))
	n := *sendN / 4
	run := func(cg string) (float64, float64, error) {
		if err := cgroup.Move(cg, os.Getpid()); err != nil {
			return 0, 0, err
		}
		defer cgroup.Move(none, os.Getpid())
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return 0, 0, err
		}
		defer unix.Close(fd)
		if err := unix.Connect(fd, sockaddr(benchResolver, 53)); err != nil {
			return 0, 0, err
		}
		buf := make([]byte, 512)
		var id uint16
		return timed(n, func() error {
			id++
			binary.BigEndian.PutUint16(query, id)
			if _, err := unix.Write(fd, query); err != nil {
				return fmt.Errorf("query: %w", err)
			}
			_, from, err := unix.Recvfrom(srv, buf, 0)
			if err != nil {
				return fmt.Errorf("server: %w", err)
			}
			binary.BigEndian.PutUint16(reply, id)
			if err := unix.Sendto(srv, reply, 0, from); err != nil {
				return fmt.Errorf("answer: %w", err)
			}
			if _, err := unix.Read(fd, buf); err != nil {
				return fmt.Errorf("client: %w", err)
			}
			return nil
		})
	}
	for _, c := range configs { // warm
		if _, _, err := run(c.cg); err != nil {
			return fmt.Errorf("lookups under %s: %w", c.name, err)
		}
	}
	for range *rounds {
		for i := 1; i < len(configs); i++ {
			bc, bw, err := run(none)
			if err != nil {
				return err
			}
			cc, cw, err := run(configs[i].cg)
			if err != nil {
				return err
			}
			res[i].cpu, res[i].wall = append(res[i].cpu, cc), append(res[i].wall, cw)
			res[i].cpuRatio, res[i].wallRatio = append(res[i].cpuRatio, cc/bc), append(res[i].wallRatio, cw/bw)
			res[0].cpu, res[0].wall = append(res[0].cpu, bc), append(res[0].wall, bw)
		}
	}
	fmt.Printf("\nDNS lookups answered: query, answer and its delivery on loopback, in one thread (its CPU time; %d lookups a sample)\n", n)
	fmt.Printf("  %-34s %12s %10s %16s %10s %14s\n", "configuration", "CPU ns/op", "CPU ratio", "(middle half)", "wall ratio", "answers/s")
	for i, c := range configs {
		s := res[i]
		cr, wr, lo, hi := 1.0, 1.0, 1.0, 1.0
		if i > 0 {
			cr, wr, lo, hi = median(s.cpuRatio), median(s.wallRatio), quantile(s.cpuRatio, 0.25), quantile(s.cpuRatio, 0.75)
		}
		fmt.Printf("  %-34s %12.0f %9.3fx   %6.3f-%.3fx %9.3fx %14.0f\n", c.name, median(s.cpu), cr, lo, hi, wr, float64(time.Second)/median(s.wall))
	}
	return nil
}
