package probe

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"
)

// DNS operations (each prints one line of results, space-separated):
//
//	resolve:SERVER,NAME,TYPE,PORT[,N[,u]]  ask SERVER (port 53) for NAME's
//	    TYPE (a or aaaa) records from a connected UDP socket (u: an
//	    unconnected one, which takes an answer from any address); at once
//	    connect over TCP to each address of the answer on PORT, and print
//	    each result ("ok", or the errno: ENETUNREACH means allowed where
//	    nothing is routed). With N, do it N times and print
//	    "ANSWERED CONNECTS REFUSED": how many answers came, how many
//	    connects were made, how many were refused with EPERM.
//	connect:ADDR:PORT  one TCP connect, as resolve makes them
//	dnsserve:ADDR,ANSWER  a DNS server on ADDR port 53: print "ready",
//	    answer one A query with ANSWER, print "served"

// dnswait:ADDR:PORT  bind a UDP socket to ADDR:PORT, print "ready", wait
//
//	for one datagram (an answer nobody asked for), then connect to each
//	address in it on port 80 as resolve does
func dnsOp(kind, arg string) (string, error) {
	switch kind {
	case "resolve":
		return resolveOp(arg)
	case "dnswait":
		return dnsWait(arg)
	case "dnsserve":
		return dnsServe(arg)
	case "connect":
		ap, err := netip.ParseAddrPort(bracket(arg))
		if err != nil {
			return "", err
		}
		return result(connectOnce(ap)), nil
	}
	return "", fmt.Errorf("unknown operation %q", kind)
}

func resolveOp(arg string) (string, error) {
	f := strings.Split(arg, ",")
	if len(f) < 4 {
		return "", fmt.Errorf("bad resolve %q: want SERVER,NAME,TYPE,PORT[,N[,u]]", arg)
	}
	server, err := netip.ParseAddr(f[0])
	if err != nil {
		return "", err
	}
	qtype := dnsmessage.TypeA
	if f[2] == "aaaa" {
		qtype = dnsmessage.TypeAAAA
	}
	port, err := strconv.Atoi(f[3])
	if err != nil {
		return "", err
	}
	n := 1
	if len(f) > 4 {
		if n, err = strconv.Atoi(f[4]); err != nil {
			return "", err
		}
	}
	connected := len(f) < 6 || f[5] != "u"
	fd, err := unix.Socket(family(netip.AddrPortFrom(server, 53), false), unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	sa := sockaddr(netip.AddrPortFrom(server, 53), false)
	if connected {
		if err := unix.Connect(fd, sa); err != nil {
			return "", err
		}
	}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2})
	name := dnsmessage.MustNewName(strings.TrimSuffix(f[1], ".") + ".")
	var answered, connects, refused int
	var last []string
	buf := make([]byte, 4096)
	for range n {
		id := uint16(rand.Uint32())
		q := dnsmessage.Message{Header: dnsmessage.Header{ID: id, RecursionDesired: true},
			Questions: []dnsmessage.Question{{Name: name, Type: qtype, Class: dnsmessage.ClassINET}}}
		msg, err := q.Pack()
		if err != nil {
			return "", err
		}
		if connected {
			_, err = unix.Write(fd, msg)
		} else {
			err = unix.Sendto(fd, msg, 0, sa)
		}
		if err != nil {
			return "", err
		}
		var addrs []netip.Addr
		for {
			m, _, err := unix.Recvfrom(fd, buf, 0)
			if err == unix.EINTR { // the Go runtime's signals
				continue
			}
			if err != nil {
				if n == 1 {
					return result(err), nil
				}
				break
			}
			var a dnsmessage.Message
			if a.Unpack(buf[:m]) != nil || a.ID != id {
				continue // not the answer to this query
			}
			answered++
			for _, r := range a.Answers {
				switch b := r.Body.(type) {
				case *dnsmessage.AResource:
					addrs = append(addrs, netip.AddrFrom4(b.A))
				case *dnsmessage.AAAAResource:
					addrs = append(addrs, netip.AddrFrom16(b.AAAA))
				}
			}
			break
		}
		last = last[:0]
		for _, a := range addrs {
			r := result(connectOnce(netip.AddrPortFrom(a, uint16(port))))
			connects++
			if r == "EPERM" {
				refused++
			}
			last = append(last, r)
		}
	}
	if n > 1 {
		return fmt.Sprintf("%d %d %d", answered, connects, refused), nil
	}
	if len(last) == 0 {
		return "noaddress", nil
	}
	return strings.Join(last, " "), nil
}

// connectOnce makes a TCP connect and closes the socket; a connect still
// under way after 300 ms (nothing answers) counts as allowed.
func connectOnce(ap netip.AddrPort) error {
	fd, err := unix.Socket(family(ap, false), unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	err = unix.Connect(fd, sockaddr(ap, false))
	if !errors.Is(err, unix.EINPROGRESS) {
		return err
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	n, err := unix.Poll(pfd, 300)
	for err == unix.EINTR {
		n, err = unix.Poll(pfd, 300)
	}
	if n == 0 {
		return nil
	}
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if soerr != 0 {
		return unix.Errno(soerr)
	}
	return nil
}

// receiveOne binds a UDP socket to ap, prints "ready", and waits (5 s at
// most) for one datagram; msg is nil when none came (res says why).
func receiveOne(ap netip.AddrPort) (fd int, msg []byte, peer unix.Sockaddr, res string, err error) {
	fd, err = unix.Socket(family(ap, false), unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, nil, nil, "", err
	}
	if err := unix.Bind(fd, sockaddr(ap, false)); err != nil {
		unix.Close(fd)
		return -1, nil, nil, "", err
	}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5})
	fmt.Println("ready")
	buf := make([]byte, 4096)
	n, peer, err := unix.Recvfrom(fd, buf, 0)
	for err == unix.EINTR {
		n, peer, err = unix.Recvfrom(fd, buf, 0)
	}
	if err != nil {
		unix.Close(fd)
		return -1, nil, nil, result(err), nil
	}
	return fd, buf[:n], peer, "", nil
}

func dnsWait(arg string) (string, error) {
	ap, err := netip.ParseAddrPort(bracket(arg))
	if err != nil {
		return "", err
	}
	fd, msg, _, res, err := receiveOne(ap)
	if err != nil || msg == nil {
		return res, err
	}
	defer unix.Close(fd)
	var a dnsmessage.Message
	if err := a.Unpack(msg); err != nil {
		return "", err
	}
	var out []string
	for _, r := range a.Answers {
		if b, ok := r.Body.(*dnsmessage.AResource); ok {
			out = append(out, result(connectOnce(netip.AddrPortFrom(netip.AddrFrom4(b.A), 80))))
		}
	}
	if len(out) == 0 {
		return "noaddress", nil
	}
	return strings.Join(out, " "), nil
}

func dnsServe(arg string) (string, error) {
	at, ans, _ := strings.Cut(arg, ",")
	addr, err := netip.ParseAddr(at)
	if err != nil {
		return "", err
	}
	answer, err := netip.ParseAddr(ans)
	if err != nil {
		return "", err
	}
	fd, msg, peer, res, err := receiveOne(netip.AddrPortFrom(addr, 53))
	if err != nil || msg == nil {
		return res, err
	}
	defer unix.Close(fd)
	var q dnsmessage.Message
	if err := q.Unpack(msg); err != nil || len(q.Questions) != 1 {
		return "", fmt.Errorf("not a query: %v", err)
	}
	a := dnsmessage.Message{Header: dnsmessage.Header{ID: q.ID, Response: true}, Questions: q.Questions,
		Answers: []dnsmessage.Resource{{Header: dnsmessage.ResourceHeader{Name: q.Questions[0].Name, Class: dnsmessage.ClassINET, TTL: 60},
			Body: &dnsmessage.AResource{A: answer.As4()}}}}
	reply, err := a.Pack()
	if err != nil {
		return "", err
	}
	if err := unix.Sendto(fd, reply, 0, peer); err != nil {
		return result(err), nil
	}
	return "served", nil
}
