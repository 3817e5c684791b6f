package bpf

import (
	"errors"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// HostLock serialises changes to what attachments share (the host-wide
// exec set, the shared ring) between processes: the daemon, nriguard run,
// hooks. bpffs holds no regular files, so it lives in /run; one lock serves
// every pin root. An flock conflicts between open files, so it also
// serialises goroutines of one process.
const HostLock = "/run/nriguard/host.lock"

// DaemonLock is held, shared, by every running daemon (the NRI plugin) for
// its whole life: the shared ring it reads stays while one runs.
const DaemonLock = "/run/nriguard/daemon.lock"

func openLock(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	return os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
}

// WithHostLock runs f holding HostLock.
func WithHostLock(f func() error) error {
	lf, err := openLock(HostLock)
	if err != nil {
		return err
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		return err
	}
	return f()
}

// HoldDaemonLock marks this process as a running daemon until release.
func HoldDaemonLock() (release func(), err error) {
	lf, err := openLock(DaemonLock)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_SH); err != nil {
		lf.Close()
		return nil, err
	}
	return func() { lf.Close() }, nil
}

// DaemonRuns tells whether a daemon (the NRI plugin) runs: it is the reader
// of the pinned event ring, which has room for one.
func DaemonRuns() bool { return daemonRuns() }

// daemonRuns tells whether a daemon holds DaemonLock.
func daemonRuns() bool {
	lf, err := openLock(DaemonLock)
	if err != nil {
		return false
	}
	defer lf.Close()
	err = unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	return errors.Is(err, unix.EWOULDBLOCK)
}
