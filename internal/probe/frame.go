package probe

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// frame: "DEV:ADDR:PORT": a UDP datagram to ADDR:PORT (IPv4), written as a
// whole Ethernet frame on DEV through socket(AF_INET, SOCK_PACKET), which
// the kernel makes a packet socket that no cgroup hook sees. The probe
// listens on ADDR:PORT itself: "ok" if the datagram arrived within 300 ms,
// ETIMEDOUT if it was sent and did not, else the errno of the socket or
// the send.
func frame(arg string) error {
	dev, dest, ok := strings.Cut(arg, ":")
	if !ok || len(dev) >= 14 {
		return fmt.Errorf("bad frame %q: want DEV:ADDR:PORT", arg)
	}
	ap, err := netip.ParseAddrPort(dest)
	if err != nil || !ap.Addr().Is4() {
		return fmt.Errorf("bad frame destination %q: want an IPv4 ADDR:PORT", dest)
	}
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(ln)
	if err := unix.Bind(ln, sockaddr(ap, false)); err != nil {
		return fmt.Errorf("listen on %s: %w", ap, err)
	}
	unix.SetsockoptTimeval(ln, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 300000})
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_PACKET|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// from an address not the host's (a local or loopback source arriving on
	// a device is a martian, dropped)
	pkt := udpFrame(netip.MustParseAddr("198.51.100.9"), ap, []byte("frame"))
	// struct sockaddr_pkt: family, device name, protocol
	var sa struct {
		family   uint16
		device   [14]byte
		protocol uint16
	}
	sa.family = unix.AF_PACKET
	copy(sa.device[:], dev)
	sa.protocol = htons(unix.ETH_P_IP)
	_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&pkt[0])), uintptr(len(pkt)), 0,
		uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	if e != 0 {
		return e
	}
	buf := make([]byte, 64)
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		n, _, err := unix.Recvfrom(ln, buf, 0)
		if err == nil && string(buf[:n]) == "frame" {
			return nil
		}
		if err != nil && err != unix.EINTR {
			break
		}
	}
	return unix.ETIMEDOUT
}

// udpFrame is an Ethernet frame (zero addresses, as loopback takes them)
// carrying an IPv4 UDP datagram from src to dst.
func udpFrame(src netip.Addr, dst netip.AddrPort, payload []byte) []byte {
	b := make([]byte, 14+20+8+len(payload))
	binary.BigEndian.PutUint16(b[12:], unix.ETH_P_IP)
	ip := b[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	ip[8], ip[9] = 64, unix.IPPROTO_UDP
	s, d := src.As4(), dst.Addr().As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := b[34:42]
	binary.BigEndian.PutUint16(udp[0:], 9999)
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload))) // checksum 0: none (IPv4)
	copy(b[42:], payload)
	return b
}
