package bpf

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// lsmFile lists the active LSMs, in the order the kernel calls them.
var lsmFile = "/sys/kernel/security/lsm"

// lsmActive says whether BPF LSM programs run on this kernel. A kernel
// built with BPF LSM loads and attaches lsm/ programs whatever its boot's
// lsm= list says, and then never calls them (measured on Debian's 6.1
// booted without bpf in lsm=: every exec the LSM backend should have
// refused ran). So the LSM backend is usable only where bpf is known to
// be among the active LSMs.
func lsmActive() error {
	lsms, err := activeLSMs()
	if err != nil {
		return fmt.Errorf("cannot tell whether BPF LSM programs run here: %w", err)
	}
	if !slices.Contains(lsms, "bpf") {
		return fmt.Errorf("BPF LSM programs load but never run here: bpf is not among the active LSMs (%s; boot with lsm=%s,bpf)",
			strings.Join(lsms, ","), strings.Join(lsms, ","))
	}
	return nil
}

// activeLSMs lists the kernel's active security modules: from securityfs
// where it is mounted, else from lsm_list_modules (Linux 6.8), which needs
// nothing mounted (a container's /sys, or a host that never mounted
// securityfs, has no /sys/kernel/security/lsm).
func activeLSMs() ([]string, error) {
	data, err := os.ReadFile(lsmFile)
	if err == nil {
		return strings.Split(strings.TrimSpace(string(data)), ","), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	ids := make([]uint64, 64)
	size := uint32(len(ids) * 8)
	n, _, errno := unix.Syscall(unix.SYS_LSM_LIST_MODULES, uintptr(unsafe.Pointer(&ids[0])), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("securityfs is not mounted at /sys/kernel/security, and lsm_list_modules: %w", errno)
	}
	var names []string
	for _, id := range ids[:n] {
		name, ok := lsmNames[id]
		if !ok {
			name = fmt.Sprintf("lsm-%d", id)
		}
		names = append(names, name)
	}
	return names, nil
}

// lsmNames are the LSM ids of include/uapi/linux/lsm.h.
var lsmNames = map[uint64]string{
	100: "capability", 101: "selinux", 102: "smack", 103: "tomoyo", 104: "apparmor", 105: "yama",
	106: "loadpin", 107: "safesetid", 108: "lockdown", 109: "bpf", 110: "landlock", 111: "ima", 112: "evm", 113: "ipe",
}
