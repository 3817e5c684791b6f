package main

import (
	"fmt"

	"golang.org/x/sys/unix"
)

var loopback = [4]byte{127, 0, 0, 1}

// tcpServer accepts and closes connections on a loopback port.
func tcpServer() (port int, stop func(), err error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: loopback}); err != nil {
		return 0, nil, err
	}
	if err := unix.Listen(fd, 4096); err != nil {
		return 0, nil, err
	}
	sa, _ := unix.Getsockname(fd)
	go func() {
		for {
			c, _, err := unix.Accept(fd)
			if err != nil {
				return
			}
			unix.Close(c)
		}
	}()
	return sa.(*unix.SockaddrInet4).Port, func() { unix.Shutdown(fd, unix.SHUT_RDWR); unix.Close(fd) }, nil
}

// udpSink is a bound UDP socket nobody reads: sends to it cost a loopback
// delivery and are dropped once its buffer is full.
func udpSink() (port, fd int, err error) {
	fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, 0, err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: loopback}); err != nil {
		return 0, 0, err
	}
	sa, _ := unix.Getsockname(fd)
	return sa.(*unix.SockaddrInet4).Port, fd, nil
}

// connectLoop opens, connects and closes n TCP sockets. SO_LINGER 0 closes
// with a reset, so no TIME_WAIT piles up and exhausts the ports.
func connectLoop(n, port int) error {
	to := &unix.SockaddrInet4{Addr: loopback, Port: port}
	for range n {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		err = unix.Connect(fd, to)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
	}
	return nil
}

// sendLoop sends n one-byte datagrams from an unconnected socket: each one
// is judged by the sendmsg4 hook.
func sendLoop(n, _ int, port int) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	to := &unix.SockaddrInet4{Addr: loopback, Port: port}
	b := []byte{1}
	for range n {
		if err := unix.Sendto(fd, b, 0, to); err != nil {
			return fmt.Errorf("sendto: %w", err)
		}
	}
	return nil
}
