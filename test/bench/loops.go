package main

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// servers are a namespace's listeners: UDP sinks nobody reads (a send costs
// a loopback delivery, then a drop once the buffer is full) and TCP servers
// that read until the peer goes.
type servers struct{ fds []int }

func startServers(addrs []netip.Addr) (*servers, error) {
	sv := &servers{}
	for _, a := range addrs {
		for _, port := range []int{udpPort, udpPort2, deniedPort} {
			fd, err := unix.Socket(family(a), unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return nil, err
			}
			sv.fds = append(sv.fds, fd)
			if err := unix.Bind(fd, sockaddr(a, port)); err != nil {
				return nil, fmt.Errorf("udp sink %s: %w", a, err)
			}
		}
		for _, port := range []int{tcpPort, streamPort} {
			fd, err := unix.Socket(family(a), unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return nil, err
			}
			sv.fds = append(sv.fds, fd)
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			if err := unix.Bind(fd, sockaddr(a, port)); err != nil {
				return nil, fmt.Errorf("tcp server %s: %w", a, err)
			}
			if err := unix.Listen(fd, 4096); err != nil {
				return nil, err
			}
			go serve(fd, port == streamPort)
		}
	}
	return sv, nil
}

// serve accepts connections and closes them at once, or (stream) reads
// them until the peer goes, on a thread of its own.
func serve(fd int, stream bool) {
	runtime.LockOSThread()
	buf := make([]byte, 256<<10)
	for {
		c, _, err := unix.Accept(fd)
		if err != nil {
			return
		}
		for stream {
			if n, err := unix.Read(c, buf); n <= 0 || err != nil {
				break
			}
		}
		unix.Close(c)
	}
}

func (sv *servers) stop() {
	for _, fd := range sv.fds {
		unix.Shutdown(fd, unix.SHUT_RDWR)
		unix.Close(fd)
	}
}

func family(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func sockaddr(a netip.Addr, port int) unix.Sockaddr {
	if a.Is4() {
		return &unix.SockaddrInet4{Addr: a.As4(), Port: port}
	}
	return &unix.SockaddrInet6{Addr: a.As16(), Port: port}
}

// workload is one operation measured n times: its CPU time (of this
// thread) and wall time per operation, in ns.
type workload struct {
	name         string
	target       string // which figure a target reads
	run          func(s *size) (cpu, wall float64, err error)
	nriguardOnly bool // the peers judge by address alone: a refused port means nothing to them
}

// processCPU is the CPU time of the whole process: for TCP, where the
// server's side of every connection (its accept, its reads, the loopback
// deliveries it triggers) runs on the benchmark's other threads.
func processCPU() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

// timedProcess is timed with the process's CPU time.
func timedProcess(n int, f func() error) (cpu, wall float64, err error) {
	c0, w0 := processCPU(), time.Now()
	for range n {
		if err := f(); err != nil {
			return 0, 0, err
		}
	}
	return float64(processCPU()-c0) / float64(n), float64(time.Since(w0)) / float64(n), nil
}

func threadCPU() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

// timed runs f n times over and returns the cost per operation.
func timed(n int, f func() error) (cpu, wall float64, err error) {
	c0, w0 := threadCPU(), time.Now()
	for range n {
		if err := f(); err != nil {
			return 0, 0, err
		}
	}
	return float64(threadCPU()-c0) / float64(n), float64(time.Since(w0)) / float64(n), nil
}

// sends sends n one-byte datagrams from one unconnected socket to the
// destinations in turn. Refused sends (EPERM) count as sends.
func sends(n int, to ...unix.Sockaddr) (cpu, wall float64, err error) {
	fam := unix.AF_INET
	if _, v6 := to[0].(*unix.SockaddrInet6); v6 {
		fam = unix.AF_INET6
	}
	fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, 0, err
	}
	defer unix.Close(fd)
	b := []byte{1}
	i := 0
	return timed(n, func() error {
		err := unix.Sendto(fd, b, 0, to[i%len(to)])
		i++
		if err != nil && !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("sendto: %w", err)
		}
		return nil
	})
}

func workloads() []workload {
	return []workload{
		{"udp sendto, one destination, IPv4 deepest", "send", func(s *size) (float64, float64, error) {
			return sends(*sendN, sockaddr(s.deep4, udpPort))
		}, false},
		{"udp sendto, one destination, IPv4 shallow", "", func(s *size) (float64, float64, error) {
			return sends(*sendN, sockaddr(s.shallow4, udpPort))
		}, false},
		{"udp sendto, one destination, IPv6 deepest", "send6", func(s *size) (float64, float64, error) {
			return sends(*sendN, sockaddr(s.deep6, udpPort))
		}, false},
		{"udp sendto, two destinations in turn (every send a lookup), IPv4 deepest", "", func(s *size) (float64, float64, error) {
			return sends(*sendN, sockaddr(s.deep4, udpPort), sockaddr(s.deep4, udpPort2))
		}, false},
		{"udp sendto, a new destination every send (4,096 ports in turn: no cache helps), IPv4 deepest", "", func(s *size) (float64, float64, error) {
			var to []unix.Sockaddr
			for p := range coldN {
				to = append(to, sockaddr(s.deep4, coldPorts+p))
			}
			return sends(*sendN, to...)
		}, false},
		{"udp sendto refused (a port the policy does not allow), IPv4", "refused", func(s *size) (float64, float64, error) {
			return sends(*sendN, sockaddr(s.deep4, deniedPort))
		}, true},
		{"tcp connect+close, IPv4 deepest", "connect", func(s *size) (float64, float64, error) {
			to := sockaddr(s.deep4, tcpPort)
			return timedProcess(*connN, func() error {
				fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					return err
				}
				// a reset on close: no TIME_WAIT piles up
				unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
				err = unix.Connect(fd, to)
				unix.Close(fd)
				if err != nil {
					return fmt.Errorf("connect: %w", err)
				}
				return nil
			})
		}, false},
		{"tcp stream, 64 KiB writes, IPv4 deepest", "stream", func(s *size) (float64, float64, error) {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return 0, 0, err
			}
			defer unix.Close(fd)
			if err := unix.Connect(fd, sockaddr(s.deep4, streamPort)); err != nil {
				return 0, 0, fmt.Errorf("connect: %w", err)
			}
			buf := make([]byte, 64<<10)
			return timedProcess(*streamN, func() error {
				_, err := unix.Write(fd, buf)
				return err
			})
		}, false},
	}
}
