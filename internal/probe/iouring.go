package probe

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// io_uring operations: what a program may try instead of the system calls
// seccomp and the cgroup hooks see.
//
//	iouring:setup               io_uring_setup alone
//	iouring:socket:KIND         socket() as IORING_OP_SOCKET (kinds as socket:)
//	iouring:connect:ADDR:PORT   a TCP connect as IORING_OP_CONNECT
//	iouring:sendto:ADDR:PORT    an unconnected UDP send as IORING_OP_SENDMSG
func iouring(arg string) error {
	op, rest, _ := strings.Cut(arg, ":")
	ring, err := newRing()
	if err != nil || op == "setup" {
		if ring != nil {
			ring.close()
		}
		return err
	}
	defer ring.close()
	switch op {
	case "socket":
		fam, typ, proto, err := socketKind(rest)
		if err != nil {
			return err
		}
		fd, err := ring.do(sqe{opcode: ioringOpSocket, fd: int32(fam), off: uint64(typ), len: uint32(proto)})
		if err == nil {
			unix.Close(int(fd))
		}
		return err
	case "connect", "sendto":
		ap, err := netip.ParseAddrPort(bracket(rest))
		if err != nil {
			return err
		}
		typ := unix.SOCK_STREAM
		if op == "sendto" {
			typ = unix.SOCK_DGRAM
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
		sa, salen := rawSockaddr(ap)
		if op == "connect" {
			_, err = ring.do(sqe{opcode: ioringOpConnect, fd: int32(fd), addr: uint64(uintptr(unsafe.Pointer(&sa[0]))), off: uint64(salen)})
			return err
		}
		payload := []byte("x")
		iov := unix.Iovec{Base: &payload[0], Len: 1}
		msg := unix.Msghdr{Name: &sa[0], Namelen: uint32(salen), Iov: &iov, Iovlen: 1}
		_, err = ring.do(sqe{opcode: ioringOpSendmsg, fd: int32(fd), addr: uint64(uintptr(unsafe.Pointer(&msg))), len: 1})
		return err
	}
	return fmt.Errorf("unknown io_uring operation %q", op)
}

const (
	ioringOpSendmsg = 9
	ioringOpWrite   = 23
	ioringOpConnect = 16
	ioringOpSocket  = 45

	ioringOffSQRing     = 0
	ioringOffCQRing     = 0x8000000
	ioringOffSQEs       = 0x10000000
	ioringEnterGetevent = 1
)

// sqe is the part of struct io_uring_sqe these operations set.
type sqe struct {
	opcode    uint8
	fd        int32
	off, addr uint64
	len       uint32
}

// ring is a one-entry io_uring.
type ring struct {
	fd           int
	sq, cq, sqes []byte
	p            [120]byte // struct io_uring_params
}

func u32(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }

func newRing() (*ring, error) {
	r := &ring{}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&r.p[0])), 0)
	if errno != 0 {
		return nil, errno
	}
	r.fd = int(fd)
	le := binary.LittleEndian
	sqEntries, cqEntries := le.Uint32(r.p[0:]), le.Uint32(r.p[4:])
	sqArray, cqCQEs := le.Uint32(r.p[40+24:]), le.Uint32(r.p[80+20:])
	var err error
	if r.sq, err = unix.Mmap(r.fd, ioringOffSQRing, int(sqArray+4*sqEntries), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		r.close()
		return nil, err
	}
	if r.cq, err = unix.Mmap(r.fd, ioringOffCQRing, int(cqCQEs+16*cqEntries), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		r.close()
		return nil, err
	}
	if r.sqes, err = unix.Mmap(r.fd, ioringOffSQEs, 64*int(sqEntries), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

// do submits one operation and waits for its result: the call's return
// value, or its error.
func (r *ring) do(s sqe) (int32, error) {
	le := binary.LittleEndian
	sqTail, sqMask, sqArray := le.Uint32(r.p[40+4:]), le.Uint32(r.p[40+8:]), le.Uint32(r.p[40+24:])
	cqHead, cqTail, cqMask, cqCQEs := le.Uint32(r.p[80:]), le.Uint32(r.p[80+4:]), le.Uint32(r.p[80+8:]), le.Uint32(r.p[80+20:])
	tail := *u32(r.sq, sqTail)
	idx := tail & *u32(r.sq, sqMask)
	e := r.sqes[64*idx : 64*idx+64]
	clear(e)
	e[0] = s.opcode
	le.PutUint32(e[4:], uint32(s.fd))
	le.PutUint64(e[8:], s.off)
	le.PutUint64(e[16:], s.addr)
	le.PutUint32(e[24:], s.len)
	*u32(r.sq, sqArray+4*idx) = idx
	*u32(r.sq, sqTail) = tail + 1
	if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), 1, 1, ioringEnterGetevent, 0, 0); errno != 0 {
		return 0, errno
	}
	head := *u32(r.cq, cqHead)
	if head == *u32(r.cq, cqTail) {
		return 0, fmt.Errorf("io_uring: no completion")
	}
	c := r.cq[cqCQEs+16*(head&*u32(r.cq, cqMask)):]
	res := int32(le.Uint32(c[8:]))
	*u32(r.cq, cqHead) = head + 1
	if res < 0 {
		return 0, unix.Errno(-res)
	}
	return res, nil
}

func (r *ring) close() {
	for _, m := range [][]byte{r.sq, r.cq, r.sqes} {
		if m != nil {
			unix.Munmap(m)
		}
	}
	unix.Close(r.fd)
}

// rawSockaddr is ap as the kernel's struct sockaddr_in or sockaddr_in6.
func rawSockaddr(ap netip.AddrPort) ([]byte, int) {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[2:], ap.Port())
	if ap.Addr().Is4() {
		binary.LittleEndian.PutUint16(b[0:], unix.AF_INET)
		a := ap.Addr().As4()
		copy(b[4:], a[:])
		return b, 16
	}
	binary.LittleEndian.PutUint16(b[0:], unix.AF_INET6)
	a := ap.Addr().As16()
	copy(b[8:], a[:])
	return b, 28
}
