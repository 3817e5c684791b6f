package probe

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// overwrite: "METHOD:PATH:FROM": puts FROM's bytes into the file at PATH
// (same inode) by one write path: write, pwrite, mmap (a shared writable
// mapping, its pages read first: on a memory filesystem that write changes
// no time of the file), copyrange (copy_file_range), splice, sendfile,
// fallocate (then a write), truncate (by path, then a write), link (through
// a hard link made beside it), iouring (IORING_OP_WRITE). "ok", or the errno
// of the step that failed.
func overwrite(arg string) error {
	method, rest, _ := strings.Cut(arg, ":")
	path, from, ok := strings.Cut(rest, ":")
	if !ok {
		return fmt.Errorf("bad overwrite %q: want METHOD:PATH:FROM", arg)
	}
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if method == "link" {
		alias := filepath.Join(filepath.Dir(path), ".alias-"+filepath.Base(path))
		if err := unix.Link(path, alias); err != nil {
			return err
		}
		defer unix.Unlink(alias)
		path, method = alias, "write"
	}
	if method == "truncate" {
		if err := unix.Truncate(path, 0); err != nil {
			return err
		}
		method = "write"
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if int64(len(data)) > st.Size && method != "write" && method != "pwrite" && method != "fallocate" {
		if err := unix.Ftruncate(fd, int64(len(data))); err != nil {
			return err
		}
	}
	full := func(n int, err error) error {
		if err == nil && n != len(data) {
			return fmt.Errorf("wrote %d of %d bytes", n, len(data))
		}
		return err
	}
	// a source fd for the paths that copy between files
	src := func() (int, error) { return unix.Open(from, unix.O_RDONLY|unix.O_CLOEXEC, 0) }
	switch method {
	case "write":
		return full(unix.Write(fd, data))
	case "pwrite":
		return full(unix.Pwrite(fd, data, 0))
	case "mmap":
		m, err := unix.Mmap(fd, 0, len(data), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			return err
		}
		var read byte
		for i := 0; i < len(m); i += 4096 {
			read += m[i] // read first: the pages are mapped without a write fault
		}
		runtime.KeepAlive(read) // (the reads are not compiled away)
		copy(m, data)
		unix.Msync(m, unix.MS_SYNC)
		return unix.Munmap(m)
	case "fallocate":
		if err := unix.Fallocate(fd, 0, 0, int64(len(data))); err != nil {
			return err
		}
		return full(unix.Pwrite(fd, data, 0))
	case "copyrange", "splice", "sendfile":
		in, err := src()
		if err != nil {
			return err
		}
		defer unix.Close(in)
		switch method {
		case "copyrange":
			var off int64
			return full(unix.CopyFileRange(in, nil, fd, &off, len(data), 0))
		case "sendfile":
			return full(unix.Sendfile(fd, in, nil, len(data)))
		}
		var p [2]int
		if err := unix.Pipe(p[:]); err != nil {
			return err
		}
		defer unix.Close(p[0])
		defer unix.Close(p[1])
		for done := 0; done < len(data); {
			n, err := unix.Splice(in, nil, p[1], nil, len(data)-done, 0)
			if err != nil {
				return err
			}
			if _, err := unix.Splice(p[0], nil, fd, nil, int(n), 0); err != nil {
				return err
			}
			done += int(n)
		}
		return nil
	case "iouring":
		r, err := newRing()
		if err != nil {
			return err
		}
		defer r.close()
		n, err := r.do(sqe{opcode: ioringOpWrite, fd: int32(fd), addr: uint64(uintptr(unsafe.Pointer(&data[0]))), len: uint32(len(data))})
		return full(int(n), err)
	}
	return fmt.Errorf("unknown write path %q", method)
}
