// Package probe performs real socket operations and reports how the kernel
// answered, one line per operation. Tests run it as a child process inside
// a policed cgroup (and a network namespace they made) to see a connect,
// send or socket() allowed or refused.
//
// Operations (each one argument):
//
//	tcp:ADDR:PORT       listen on ADDR:PORT, connect to it, exchange a byte
//	tcp6:ADDR:PORT      the same through an IPv6 socket (ADDR may be ::ffff:a.b.c.d)
//	udp:ADDR:PORT       connected UDP: connect, send, receive
//	udpredirect:A:P,B:Q connected UDP to A:P, then sendto B:Q on that socket
//	udpagain:ADDR:PORT  unconnected UDP: send, print the result, wait for a
//	                    line on stdin, send again on the same socket
//	                    (ADDR:PORT@UID:GID: become that user instead of waiting)
//	udpconnagain:ADDR:PORT  the same on a connected UDP socket (send, not sendto),
//	                    with a listener on ADDR:PORT
//	udpsend:ADDR:PORT   unconnected UDP: sendto from an unbound socket, receive
//	udp6send:ADDR:PORT  the same through an IPv6 socket
//	sendmmsg:A:P,B:Q    one sendmmsg with a message to each; prints how many went
//	tcpagain:ADDR:PORT  TCP to a listener of its own, a byte each way, print the
//	                    result, wait for a line on stdin, a byte each way again
//	tfo:ADDR:PORT       TCP fast open: sendto(MSG_FASTOPEN) without connect
//	cgroup:DIR          move this process into cgroup DIR
//	user:UID:GID        become that user and group (no supplementary groups)
//	sleep:MS            stay alive MS milliseconds
//	OP:ADDR:PORT@SRC    any of the above from a socket bound to SRC first
//	srh6:VIA:ADDR:PORT  UDP to ADDR with an IPv6 segment routing header via VIA
//	                    (socket option); rh2cmsg6: a type 2 routing header as
//	                    ancillary data; lsrr: IPv4 loose source route (option;
//	                    lsrrcmsg: as ancillary data, IP_RETOPTS);
//	                    srh6tcp, lsrrtcp: a TCP connect with the same, "ok" if
//	                    it connected within 300 ms, "ETIMEDOUT" otherwise
//	udpfd:FD:ADDR:PORT  one send on an inherited socket (udpagain:ADDR:PORT>PROBE execs it)
//	sendn:N:ADDR:PORT   N unconnected UDP sends of 100 bytes from one socket, then close
//	connectn:N:ADDR:PORT  N TCP connects to a listener of its own, each accepted
//	                    and both ends closed
//	sendloop:FILE:ADDR:PORT  unconnected UDP sends until killed, writing how
//	                    many were refused to FILE after each
//	bg:OP               OP in a copy of the probe that outlives this one
//	flood:N:ADDR:PORT   stop the parent (SIGSTOP), make N unconnected UDP
//	                    sends, continue the parent; prints how many were refused
//	sendall:N:ADDR:PORT N unconnected UDP sends, refused or not; prints how
//	                    many were refused
//	socket:KIND         raw4 raw6 ping4 ping6 packet packetdgram sockpacket
//	                    (AF_INET, SOCK_PACKET) sockpacket6 sctp mptcp tcp
//	                    udp6 unix netlink vsock xdp alg tipc bluetooth can
//	frame:DEV:ADDR:PORT a UDP datagram to ADDR:PORT (on lo: a local address
//	                    not loopback) as a raw frame on DEV
//	                    through socket(AF_INET, SOCK_PACKET), received by the
//	                    probe itself: "ok" if it arrived
//	socketpair:KIND     socketpair(2) of a family (unix, tipc...)
//	iouring:...         see iouring.go
//	resolve:..., dnswait:..., connect:...   see dns.go
//	exec:PATH, execin:DIR:PATH, memfd:SRC   see exec.go
//	handoff:MODE:PROTO:ADDR:PORT[:PATH]  see handoff.go: a connected socket
//	                    handed to another program or user, who sends on it
//	overwrite:METHOD:PATH:FROM  see overwrite.go: a file's bytes replaced by
//	                    one write path (write, mmap, splice, io_uring...)
//	batch               flows "tcp|udp ADDR PORT" on stdin: allow or deny each
//
// A result is "ok", an errno name such as "EPERM", or for batch "allow"/"deny".
package probe

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Run performs ops and writes one result line each to w.
func Run(ops []string, stdin io.Reader, w io.Writer) {
	for _, op := range ops {
		if op == "batch" {
			batch(stdin, w)
			continue
		}
		kind, arg, _ := strings.Cut(op, ":")
		if kind == "resolve" || kind == "dnswait" || kind == "connect" || kind == "dnsserve" {
			res, err := dnsOp(kind, arg)
			if err != nil {
				res = result(err)
			}
			fmt.Fprintln(w, res)
			continue
		}
		if kind == "exec" || kind == "execin" || kind == "memfd" {
			res, err := execOp(kind, arg)
			if err != nil {
				res = result(err)
			}
			fmt.Fprintln(w, res)
			continue
		}
		fmt.Fprintln(w, result(do(op)))
	}
}

// sent is sendmmsg's outcome when the call itself succeeded.
type sent struct{ n, of int }

func (s sent) Error() string { return fmt.Sprintf("sent %d of %d", s.n, s.of) }

func result(err error) string {
	if err == nil {
		return "ok"
	}
	if s, ok := err.(sent); ok {
		return s.Error()
	}
	if r, ok := err.(refused); ok {
		return r.Error()
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return "error: " + err.Error()
}

func do(op string) error {
	kind, arg, _ := strings.Cut(op, ":")
	switch kind {
	case "socket":
		return socket(arg)
	case "socketpair":
		return socketpairOp(arg)
	case "iouring":
		return iouring(arg)
	case "sendmmsg":
		return sendmmsg(arg)
	case "udpredirect":
		return udpRedirect(arg)
	case "udpagain":
		return udpAgain(arg, false)
	case "udpconnagain":
		return udpAgain(arg, true)
	case "tcpagain":
		return tcpAgain(arg)
	case "udpfd":
		// send once on an inherited socket: "FD:ADDR:PORT"
		fdText, dest, _ := strings.Cut(arg, ":")
		fd, err := strconv.Atoi(fdText)
		if err != nil {
			return fmt.Errorf("bad fd %q", fdText)
		}
		ap, err := netip.ParseAddrPort(bracket(dest))
		if err != nil {
			return err
		}
		return unix.Sendto(fd, []byte("x"), 0, sockaddr(ap, false))
	case "cgroup":
		// move this process into another cgroup, e.g. a child of its own
		return os.WriteFile(filepath.Join(arg, "cgroup.procs"), []byte("0"), 0)
	case "sleep":
		// stay alive a while (MS milliseconds): a reader of events may look
		// at this process
		ms, err := strconv.Atoi(arg)
		if err != nil {
			return fmt.Errorf("bad sleep %q: want milliseconds", arg)
		}
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return nil
	case "user":
		// become another user (UID:GID) for the operations that follow
		u, g, _ := strings.Cut(arg, ":")
		uid, err1 := strconv.Atoi(u)
		gid, err2 := strconv.Atoi(g)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("bad user %q: want UID:GID", arg)
		}
		if err := syscall.Setgroups(nil); err != nil {
			return err
		}
		if err := syscall.Setgid(gid); err != nil {
			return err
		}
		return syscall.Setuid(uid)
	case "flood":
		return flood(arg, true)
	case "sendall":
		return flood(arg, false)
	case "sendn":
		return sendN(arg)
	case "connectn":
		return connectN(arg)
	case "overwrite":
		return overwrite(arg)
	case "handoff":
		return handoff(arg)
	case "handoffsend":
		return handoffSend(arg)
	case "handoffgrab":
		return handoffGrab(arg)
	case "srh6", "rh2cmsg6", "lsrr", "lsrrcmsg", "srh6tcp", "lsrrtcp":
		return reroute(kind, arg)
	case "frame":
		return frame(arg)
	case "bg":
		// run OP in a copy of this probe that outlives it
		self, err := os.Executable()
		if err != nil {
			return err
		}
		cmd := exec.Command(self, arg)
		cmd.Env = os.Environ()
		return cmd.Start()
	case "sendloop":
		return sendLoop(arg)
	}
	arg, src, _ := strings.Cut(arg, "@")
	if src != "" {
		a, err := netip.ParseAddr(strings.Trim(src, "[]"))
		if err != nil {
			return fmt.Errorf("bad source %q: %v", src, err)
		}
		bindTo = a
		defer func() { bindTo = netip.Addr{} }()
	}
	ap, err := netip.ParseAddrPort(bracket(arg))
	if err != nil {
		return fmt.Errorf("bad address %q: %v", arg, err)
	}
	switch kind {
	case "tcp":
		return tcpRoundTrip(ap, false, false)
	case "tcp6":
		return tcpRoundTrip(ap, true, false)
	case "tfo":
		return tcpRoundTrip(ap, false, true)
	case "udp":
		return udpRoundTrip(ap, false, true)
	case "udpsend":
		return udpRoundTrip(ap, false, false)
	case "udp6send":
		return udpRoundTrip(ap, true, false)
	}
	return fmt.Errorf("unknown operation %q", op)
}

// bracket turns "::1:80" style text (last colon = port) into "[::1]:80".
func bracket(s string) string {
	if strings.HasPrefix(s, "[") || strings.Count(s, ":") < 2 {
		return s
	}
	i := strings.LastIndexByte(s, ':')
	return "[" + s[:i] + "]" + s[i:]
}

func sockaddr(ap netip.AddrPort, v6 bool) unix.Sockaddr {
	if v6 || ap.Addr().Is6() {
		return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
	}
	return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
}

func family(ap netip.AddrPort, v6 bool) int {
	if v6 || ap.Addr().Is6() {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

// listener binds the real (unmapped) address so that mapped connects reach it.
func listener(ap netip.AddrPort, typ int) (int, error) {
	la := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	fd, err := unix.Socket(family(la, false), typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("listener: %w", err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, sockaddr(la, false)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("listener bind %s: %w", la, err)
	}
	if typ == unix.SOCK_STREAM {
		if err := unix.Listen(fd, 16); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("listener: %w", err)
		}
	}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2})
	return fd, nil
}

// bindTo, when valid, is the address client sockets are bound to before
// they connect or send.
var bindTo netip.Addr

// client makes the client socket of an operation.
func client(ap netip.AddrPort, v6 bool, typ int) (int, error) {
	fd, err := unix.Socket(family(ap, v6), typ|unix.SOCK_CLOEXEC, 0)
	if err != nil || !bindTo.IsValid() {
		return fd, err
	}
	src := bindTo
	if family(ap, v6) == unix.AF_INET6 && src.Is4() {
		src = netip.AddrFrom16(src.As16()) // ::ffff:a.b.c.d
	}
	if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(src, 0), v6)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind %s: %w", src, err)
	}
	return fd, nil
}

func tcpRoundTrip(ap netip.AddrPort, v6, fastOpen bool) error {
	lfd, err := listener(ap, unix.SOCK_STREAM)
	if err != nil {
		return err
	}
	defer unix.Close(lfd)
	if fastOpen {
		unix.SetsockoptInt(lfd, unix.IPPROTO_TCP, unix.TCP_FASTOPEN, 16)
	}
	fd, err := client(ap, v6, unix.SOCK_STREAM)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if fastOpen {
		err = unix.Sendto(fd, []byte("x"), unix.MSG_FASTOPEN, sockaddr(ap, v6))
	} else if err = unix.Connect(fd, sockaddr(ap, v6)); err == nil {
		_, err = unix.Write(fd, []byte("x"))
	}
	if err != nil {
		return err
	}
	cfd, _, err := unix.Accept(lfd)
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	defer unix.Close(cfd)
	buf := make([]byte, 1)
	if n, err := unix.Read(cfd, buf); n != 1 {
		return fmt.Errorf("nothing arrived: %v", err)
	}
	return nil
}

// tcpAgain: a TCP connection from this probe to a listener of its own on
// ADDR:PORT and a byte each way; the result; then, after a line on stdin,
// a byte each way again on the same connection: "ok", or ETIMEDOUT if one
// did not arrive within 500 ms (a packet refused on its way out is
// retransmitted, not failed).
func tcpAgain(arg string) error {
	ap, err := netip.ParseAddrPort(bracket(arg))
	if err != nil {
		return err
	}
	lfd, err := listener(ap, unix.SOCK_STREAM)
	if err != nil {
		return err
	}
	defer unix.Close(lfd)
	fd, err := client(ap, false, unix.SOCK_STREAM)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, sockaddr(ap, false)); err != nil {
		return err
	}
	cfd, _, err := unix.Accept(lfd)
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	defer unix.Close(cfd)
	for _, s := range []int{fd, cfd} {
		unix.SetsockoptTimeval(s, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 500000})
	}
	exchange := func() error {
		buf := make([]byte, 1)
		for _, p := range [][2]int{{fd, cfd}, {cfd, fd}} {
			if _, err := unix.Write(p[0], []byte("x")); err != nil {
				return err
			}
			if n, err := unix.Read(p[1], buf); n != 1 {
				if err == unix.EAGAIN || err == nil {
					return unix.ETIMEDOUT
				}
				return err
			}
		}
		return nil
	}
	fmt.Println(result(exchange()))
	bufio.NewReader(os.Stdin).ReadString('\n')
	return exchange()
}

func udpRoundTrip(ap netip.AddrPort, v6, connected bool) error {
	lfd, err := listener(ap, unix.SOCK_DGRAM)
	if err != nil {
		return err
	}
	defer unix.Close(lfd)
	fd, err := client(ap, v6, unix.SOCK_DGRAM)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if connected {
		if err := unix.Connect(fd, sockaddr(ap, v6)); err != nil {
			return err
		}
		_, err = unix.Write(fd, []byte("x"))
	} else {
		err = unix.Sendto(fd, []byte("x"), 0, sockaddr(ap, v6))
	}
	if err != nil {
		return err
	}
	buf := make([]byte, 8)
	if n, _, err := unix.Recvfrom(lfd, buf, 0); n != 1 {
		return fmt.Errorf("nothing arrived: %v", err)
	}
	return nil
}

// sendmmsg sends one datagram to each destination in one call. The kernel
// judges each message; it returns how many went before the first refusal,
// or the refusal itself when the first one is refused.
func sendmmsg(arg string) error {
	var dests []netip.AddrPort
	for _, s := range strings.Split(arg, ",") {
		ap, err := netip.ParseAddrPort(bracket(s))
		if err != nil {
			return err
		}
		dests = append(dests, ap)
	}
	for _, d := range dests {
		lfd, err := listener(d, unix.SOCK_DGRAM)
		if err != nil {
			return err
		}
		defer unix.Close(lfd)
	}
	fd, err := unix.Socket(family(dests[0], false), unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	n, err := sendmmsgRaw(fd, dests)
	if err != nil {
		return err
	}
	return sent{n, len(dests)}
}

// udpRedirect connects a UDP socket to one destination and sends to
// another on it: the message goes to the second.
func udpRedirect(arg string) error {
	first, second, _ := strings.Cut(arg, ",")
	a, err := netip.ParseAddrPort(bracket(first))
	if err != nil {
		return err
	}
	b, err := netip.ParseAddrPort(bracket(second))
	if err != nil {
		return err
	}
	lfd, err := listener(b, unix.SOCK_DGRAM)
	if err != nil {
		return err
	}
	defer unix.Close(lfd)
	fd, err := client(a, false, unix.SOCK_DGRAM)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, sockaddr(a, false)); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if err := unix.Sendto(fd, []byte("x"), 0, sockaddr(b, false)); err != nil {
		return err
	}
	buf := make([]byte, 8)
	if n, _, err := unix.Recvfrom(lfd, buf, 0); n != 1 {
		return fmt.Errorf("nothing arrived: %v", err)
	}
	return nil
}

// udpAgain sends twice from one socket, with a pause the caller ends, in
// which it may change the policy: the second send must be judged by the new
// one, not by what the socket remembers of the old.
func udpAgain(arg string, connected bool) error {
	// "ADDR:PORT" or "ADDR:PORT@UID:GID": before the second send, become
	// that user instead of waiting for a line; "ADDR:PORT>PATH": exec the
	// probe at PATH instead, which makes the second send on the socket it
	// inherits (udpfd)
	arg, prog, ex := strings.Cut(arg, ">")
	arg, user, su := strings.Cut(arg, "@")
	ap, err := netip.ParseAddrPort(bracket(arg))
	if err != nil {
		return err
	}
	fd, err := unix.Socket(family(ap, false), unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	send := func() error { return unix.Sendto(fd, []byte("x"), 0, sockaddr(ap, false)) }
	if connected {
		// a listener: else the first datagram's port unreachable fails the
		// second send (ECONNREFUSED) before it is made
		if l, err := unix.Socket(family(ap, false), unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err == nil {
			defer unix.Close(l)
			unix.Bind(l, sockaddr(ap, false))
		}
		if err := unix.Connect(fd, sockaddr(ap, false)); err != nil {
			return err
		}
		send = func() error { _, err := unix.Write(fd, []byte("x")); return err }
	}
	fmt.Println(result(send()))
	if ex {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil { // kept across exec
			return err
		}
		os.Stdout.Sync()
		return unix.Exec(prog, []string{prog, fmt.Sprintf("udpfd:%d:%s", fd, arg)}, os.Environ())
	}
	if su {
		if err := do("user:" + user); err != nil {
			return err
		}
	} else {
		bufio.NewReader(os.Stdin).ReadString('\n')
	}
	return send()
}

// refused is flood's outcome.
type refused struct{ n, of int }

func (r refused) Error() string { return fmt.Sprintf("refused %d of %d", r.n, r.of) }

// countAndSocket reads "N:ADDR:PORT" and opens an unconnected UDP socket
// for ADDR's family.
func countAndSocket(arg string) (n, fd int, to unix.Sockaddr, err error) {
	nText, dest, _ := strings.Cut(arg, ":")
	if n, err = strconv.Atoi(nText); err != nil {
		return 0, -1, nil, fmt.Errorf("bad count %q", nText)
	}
	ap, err := netip.ParseAddrPort(bracket(dest))
	if err != nil {
		return 0, -1, nil, err
	}
	if fd, err = unix.Socket(family(ap, false), unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
		return 0, -1, nil, err
	}
	return n, fd, sockaddr(ap, false), nil
}

// sendN sends N datagrams of 100 bytes to one destination from one socket,
// then closes it: "ok", or the first error.
func sendN(arg string) error {
	n, fd, to, err := countAndSocket(arg)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for range n {
		if err := unix.Sendto(fd, make([]byte, 100), 0, to); err != nil {
			return err
		}
	}
	return nil
}

// sendLoop sends until it is killed, and after each refused send writes
// how many were refused so far to a file: what whoever killed it must have
// reported.
func sendLoop(arg string) error {
	file, dest, ok := strings.Cut(arg, ":")
	ap, err := netip.ParseAddrPort(bracket(dest))
	if !ok || err != nil {
		return fmt.Errorf("bad sendloop %q: want FILE:ADDR:PORT", arg)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(family(ap, false), unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	to := sockaddr(ap, false)
	var buf [20]byte
	for n := 1; ; {
		if err := unix.Sendto(fd, []byte("x"), 0, to); errors.Is(err, unix.EPERM) {
			f.WriteAt(strconv.AppendInt(buf[:0], int64(n), 10), 0)
			n++
		}
	}
}

// connectN makes n TCP connections to a listener of its own on ADDR:PORT,
// accepting and closing each: a workload of many short flows.
func connectN(arg string) error {
	nText, dest, _ := strings.Cut(arg, ":")
	n, err := strconv.Atoi(nText)
	if err != nil {
		return fmt.Errorf("bad count %q", nText)
	}
	ap, err := netip.ParseAddrPort(bracket(dest))
	if err != nil {
		return err
	}
	lfd, err := listener(ap, unix.SOCK_STREAM)
	if err != nil {
		return err
	}
	defer unix.Close(lfd)
	to := sockaddr(ap, false)
	for range n {
		fd, err := unix.Socket(family(ap, false), unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		// closed with a reset: no TIME_WAIT to run out of ports with
		unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		if err := unix.Connect(fd, to); err != nil {
			unix.Close(fd)
			return err
		}
		cfd, _, err := unix.Accept(lfd)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		unix.Close(cfd)
	}
	return nil
}

// flood makes n sends while its parent (the reader of their events, for
// nriguard run) is stopped, so that the ring fills and overflows.
func flood(arg string, stopParent bool) error {
	n, fd, to, err := countAndSocket(arg)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if stopParent {
		parent := os.Getppid()
		unix.Kill(parent, unix.SIGSTOP)
		defer unix.Kill(parent, unix.SIGCONT)
	}
	r := refused{of: n}
	for range n {
		if err := unix.Sendto(fd, []byte("x"), 0, to); errors.Is(err, unix.EPERM) {
			r.n++
		}
	}
	return r
}

// socketKind is what a kind of socket is made with.
func socketKind(kind string) (fam, typ, proto int, err error) {
	switch kind {
	case "raw4":
		fam, typ, proto = unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW
	case "raw6":
		fam, typ, proto = unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_RAW
	case "ping4":
		fam, typ, proto = unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP
	case "ping6":
		fam, typ, proto = unix.AF_INET6, unix.SOCK_DGRAM, unix.IPPROTO_ICMPV6
	case "packet":
		fam, typ, proto = unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL))
	case "sctp":
		fam, typ, proto = unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_SCTP
	case "mptcp":
		fam, typ, proto = unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_MPTCP
	case "tcp":
		fam, typ, proto = unix.AF_INET, unix.SOCK_STREAM, 0
	case "udp6":
		fam, typ, proto = unix.AF_INET6, unix.SOCK_DGRAM, 0
	case "unix":
		fam, typ, proto = unix.AF_UNIX, unix.SOCK_STREAM, 0
	case "netlink":
		fam, typ, proto = unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE
	case "sockpacket": // a packet socket by another name (__sock_create)
		fam, typ, proto = unix.AF_INET, unix.SOCK_PACKET, int(htons(unix.ETH_P_ALL))
	case "sockpacket6":
		fam, typ, proto = unix.AF_INET6, unix.SOCK_PACKET, int(htons(unix.ETH_P_ALL))
	case "packetdgram":
		fam, typ, proto = unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_ALL))
	case "vsock":
		fam, typ, proto = unix.AF_VSOCK, unix.SOCK_STREAM, 0
	case "xdp":
		fam, typ, proto = unix.AF_XDP, unix.SOCK_RAW, 0
	case "alg":
		fam, typ, proto = unix.AF_ALG, unix.SOCK_SEQPACKET, 0
	case "tipc":
		fam, typ, proto = unix.AF_TIPC, unix.SOCK_RDM, 0
	case "bluetooth":
		fam, typ, proto = unix.AF_BLUETOOTH, unix.SOCK_STREAM, 0
	case "can":
		fam, typ, proto = unix.AF_CAN, unix.SOCK_RAW, 1
	default:
		return 0, 0, 0, fmt.Errorf("unknown socket kind %q", kind)
	}
	return fam, typ, proto, nil
}

func socket(kind string) error {
	fam, typ, proto, err := socketKind(kind)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(fam, typ|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return err
	}
	unix.Close(fd)
	return nil
}

// socketpairOp makes a pair of sockets of a family: unix, or others that
// have pairs.
func socketpairOp(kind string) error {
	fam, typ, proto, err := socketKind(kind)
	if err != nil {
		return err
	}
	fds, err := unix.Socketpair(fam, typ|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return err
	}
	unix.Close(fds[0])
	unix.Close(fds[1])
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// batch judges many flows without a peer: a nonblocking connect (TCP) or a
// sendto (UDP) to an address with no route fails with ENETUNREACH (or
// succeeds) when the policy lets it through, and with EPERM when it does not,
// because the hooks run before routing.
func batch(stdin io.Reader, w io.Writer) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	s := bufio.NewScanner(stdin)
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) != 3 {
			fmt.Fprintln(bw, "error: want PROTO ADDR PORT")
			continue
		}
		addr, err1 := netip.ParseAddr(f[1])
		port, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil {
			fmt.Fprintln(bw, "error: bad flow")
			continue
		}
		ap := netip.AddrPortFrom(addr, uint16(port))
		typ := unix.SOCK_STREAM
		if f[0] == "udp" {
			typ = unix.SOCK_DGRAM
		}
		fd, err := unix.Socket(family(ap, false), typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			fmt.Fprintln(bw, "error:", err)
			continue
		}
		if typ == unix.SOCK_STREAM {
			err = unix.Connect(fd, sockaddr(ap, false))
		} else {
			err = unix.Sendto(fd, []byte("x"), 0, sockaddr(ap, false))
		}
		unix.Close(fd)
		if errors.Is(err, unix.EPERM) {
			fmt.Fprintln(bw, "deny")
		} else {
			fmt.Fprintln(bw, "allow")
		}
	}
}
