package probe

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// handoff: "MODE:PROTO:ADDR:PORT[:PATH]": a connected socket (PROTO tcp or
// udp) to a listener of its own on ADDR:PORT; one byte sent and received
// (the first result); then the socket is handed to another sender, who
// sends a byte on it without an address (write: no cgroup hook runs) and
// looks for it at the listener (the second result: ok, EPERM, or ETIMEDOUT
// if it did not arrive within 500 ms). MODE says to whom: exec (the
// program at PATH, exec'd with the sockets inherited), user (this process
// as uid and gid 65534), getfd (the program at PATH, started beside it,
// takes the sockets with pidfd_getfd).
func handoff(arg string) error {
	f := strings.SplitN(arg, ":", 3)
	if len(f) < 3 {
		return fmt.Errorf("bad handoff %q: want MODE:PROTO:ADDR:PORT[:PATH]", arg)
	}
	mode, proto, rest := f[0], f[1], f[2]
	host := "" // an IPv6 address is bracketed: its colons are not separators
	if end := strings.Index(rest, "]:"); strings.HasPrefix(rest, "[") && end > 0 {
		host, rest = rest[:end+1], rest[end+2:]
	} else if h, r, ok := strings.Cut(rest, ":"); ok {
		host, rest = h, r
	}
	port, path, _ := strings.Cut(rest, ":")
	ap, err := netip.ParseAddrPort(bracket(host + ":" + port))
	if err != nil {
		return err
	}
	typ := unix.SOCK_STREAM
	if proto == "udp" {
		typ = unix.SOCK_DGRAM
	}
	lfd, err := listener(ap, typ)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(family(ap, false), typ, 0) // (no CLOEXEC: inherited)
	if err != nil {
		return err
	}
	if err := unix.Connect(fd, sockaddr(ap, false)); err != nil {
		return err
	}
	peer := lfd // where a byte arrives
	if typ == unix.SOCK_STREAM {
		if peer, _, err = unix.Accept(lfd); err != nil {
			return fmt.Errorf("accept: %w", err)
		}
	}
	unix.SetsockoptTimeval(peer, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 500000})
	if _, err := unix.FcntlInt(uintptr(peer), unix.F_SETFD, 0); err != nil { // inherited too
		return err
	}
	fmt.Println(result(sendAndSee(fd, peer)))
	os.Stdout.Sync()
	switch mode {
	case "exec":
		return unix.Exec(path, []string{path, fmt.Sprintf("handoffsend:%d:%d", fd, peer)}, os.Environ())
	case "user":
		if err := do("user:65534:65534"); err != nil {
			return err
		}
		return sendAndSee(fd, peer)
	case "getfd":
		cmd := exec.Command(path, fmt.Sprintf("handoffgrab:%d:%d:%d", os.Getpid(), fd, peer))
		cmd.Env, cmd.Stdout, cmd.Stderr = os.Environ(), os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Run(); err != nil {
			return err
		}
		os.Exit(0) // its result was the second line: none of this one's

	}
	return fmt.Errorf("unknown handoff mode %q", mode)
}

// sendAndSee writes a byte on fd (no address) and reads it at peer.
func sendAndSee(fd, peer int) error {
	if _, err := unix.Write(fd, []byte("h")); err != nil {
		return err
	}
	buf := make([]byte, 1)
	if n, err := unix.Read(peer, buf); n != 1 || err != nil {
		return unix.ETIMEDOUT
	}
	return nil
}

// handoffSend: "FD:PEER": sendAndSee on inherited sockets.
func handoffSend(arg string) error {
	a, b, _ := strings.Cut(arg, ":")
	fd, err1 := strconv.Atoi(a)
	peer, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("bad handoffsend %q", arg)
	}
	return sendAndSee(fd, peer)
}

// handoffGrab: "PID:FD:PEER": takes another process's sockets with
// pidfd_getfd, then sendAndSee.
func handoffGrab(arg string) error {
	f := strings.Split(arg, ":")
	if len(f) != 3 {
		return fmt.Errorf("bad handoffgrab %q", arg)
	}
	pid, _ := strconv.Atoi(f[0])
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return err
	}
	defer unix.Close(pidfd)
	var fds [2]int
	for i, s := range f[1:] {
		n, _ := strconv.Atoi(s)
		if fds[i], err = unix.PidfdGetfd(pidfd, n, 0); err != nil {
			return err
		}
	}
	return sendAndSee(fds[0], fds[1])
}
