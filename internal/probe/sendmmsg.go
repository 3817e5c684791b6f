package probe

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// sendmmsgRaw sends a one-byte datagram to each destination in a single
// sendmmsg(2); x/sys/unix has no wrapper for it.
func sendmmsgRaw(fd int, dests []netip.AddrPort) (int, error) {
	payload := []byte("x")
	msgs := make([]mmsghdr, len(dests))
	names := make([]unix.RawSockaddrInet6, len(dests))
	iov := unix.Iovec{Base: &payload[0]}
	iov.SetLen(1)
	for i, d := range dests {
		if d.Addr().Is4() {
			sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&names[i]))
			sa.Family = unix.AF_INET
			sa.Addr = d.Addr().As4()
			sa.Port = d.Port()<<8 | d.Port()>>8
			msgs[i].hdr.Namelen = unix.SizeofSockaddrInet4
		} else {
			sa := &names[i]
			sa.Family = unix.AF_INET6
			sa.Addr = d.Addr().As16()
			sa.Port = d.Port()<<8 | d.Port()>>8
			msgs[i].hdr.Namelen = unix.SizeofSockaddrInet6
		}
		msgs[i].hdr.Name = (*byte)(unsafe.Pointer(&names[i]))
		msgs[i].hdr.Iov = &iov
		msgs[i].hdr.SetIovlen(1)
	}
	n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
