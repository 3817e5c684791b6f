package probe

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// reroute sends to ADDR:PORT with an option that routes the packet via VIA
// first: what a program inside a policed container may try to reach VIA
// although only ADDR is allowed. Listeners on ADDR and VIA are the
// probe's own.
func reroute(kind, arg string) error {
	viaText, dest, _ := strings.Cut(arg, ":")
	if strings.HasPrefix(arg, "[") {
		end := strings.Index(arg, "]:")
		viaText, dest = arg[1:end], arg[end+2:]
	}
	via, err := netip.ParseAddr(viaText)
	if err != nil {
		return fmt.Errorf("bad via %q: %v", viaText, err)
	}
	ap, err := netip.ParseAddrPort(bracket(dest))
	if err != nil {
		return fmt.Errorf("bad destination %q: %v", dest, err)
	}
	typ := unix.SOCK_DGRAM
	if strings.HasSuffix(kind, "tcp") {
		typ = unix.SOCK_STREAM
	}
	lfd, err := listener(ap, typ)
	if err != nil {
		return err
	}
	defer unix.Close(lfd)
	fd, err := unix.Socket(family(ap, false), typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var cmsg []byte
	switch kind {
	case "srh6", "srh6tcp":
		err = unix.SetsockoptString(fd, unix.IPPROTO_IPV6, unix.IPV6_RTHDR, string(srh(via, ap.Addr())))
	case "rh2cmsg6":
		// one control message: struct cmsghdr {len, level, type} + the header
		data := rh2(via)
		cmsg = make([]byte, unix.CmsgSpace(len(data)))
		binary.NativeEndian.PutUint64(cmsg[0:], uint64(unix.CmsgLen(len(data))))
		binary.NativeEndian.PutUint32(cmsg[8:], unix.IPPROTO_IPV6)
		binary.NativeEndian.PutUint32(cmsg[12:], unix.IPV6_RTHDR)
		copy(cmsg[unix.CmsgLen(0):], data)
	case "lsrr", "lsrrtcp":
		err = unix.SetsockoptString(fd, unix.IPPROTO_IP, unix.IP_OPTIONS, string(lsrr(via)))
	case "lsrrcmsg":
		data := lsrr(via)
		cmsg = make([]byte, unix.CmsgSpace(len(data)))
		binary.NativeEndian.PutUint64(cmsg[0:], uint64(unix.CmsgLen(len(data))))
		binary.NativeEndian.PutUint32(cmsg[8:], unix.IPPROTO_IP)
		binary.NativeEndian.PutUint32(cmsg[12:], unix.IP_RETOPTS)
		copy(cmsg[unix.CmsgLen(0):], data)
	}
	if err != nil {
		return fmt.Errorf("set the option: %w", err)
	}
	to := sockaddr(ap, false)
	if typ == unix.SOCK_DGRAM {
		return unix.Sendmsg(fd, []byte("x"), cmsg, to, 0)
	}
	unix.SetNonblock(fd, true)
	if err := unix.Connect(fd, to); err != nil && err != unix.EINPROGRESS {
		return err
	}
	unix.SetNonblock(lfd, true)
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cfd, _, err := unix.Accept(lfd); err == nil {
			unix.Close(cfd)
			return nil
		}
	}
	return unix.ETIMEDOUT
}

// srh is an IPv6 segment routing header (type 4) that sends the packet to
// via first and then to dest.
func srh(via, dest netip.Addr) []byte {
	b := make([]byte, 8+2*16)
	b[1] = 4 // length in 8-byte units, after the first 8
	b[2] = 4 // type: segment routing
	b[3] = 1 // segments left
	b[4] = 1 // last entry
	d, v := dest.As16(), via.As16()
	copy(b[8:], d[:]) // segments[0]: the last one
	copy(b[24:], v[:])
	return b
}

// rh2 is a type 2 routing header (Mobile IPv6) naming via.
func rh2(via netip.Addr) []byte {
	b := make([]byte, 8+16)
	b[1] = 2 // length
	b[2] = 2 // type 2
	b[3] = 1 // segments left
	v := via.As16()
	copy(b[8:], v[:])
	return b
}

// lsrr is an IPv4 loose source route option through via.
func lsrr(via netip.Addr) []byte {
	v := via.As4()
	return []byte{131, 7, 4, v[0], v[1], v[2], v[3], 0} // then an end-of-options byte
}
