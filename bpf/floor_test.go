package bpf

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// skipBelowFloor: the internal tests' needPrograms.
func skipBelowFloor(t *testing.T) {
	t.Helper()
	if err := KernelFloor(); err != nil {
		t.Skipf("needs nriguard's programs: %v", err)
	}
}

// The floor's probes agree with the kernel's version (Debian's kernels, as
// make vmtest boots them: a distribution that backports bpf_loop differs),
// and below it each loader refuses with the probes' message, not a
// verifier's log.
func TestKernelFloor(t *testing.T) {
	if unix.Geteuid() != 0 {
		t.Skip("needs root: the probes load programs")
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	release := string(bytes.TrimRight(u.Release[:], "\x00"))
	var major, minor int
	if _, err := fmt.Sscanf(release, "%d.%d", &major, &minor); err != nil {
		t.Fatalf("kernel release %q: %v", release, err)
	}
	below := major < 5 || major == 5 && minor < 17
	err := KernelFloor()
	t.Logf("kernel %s: %v", release, err)
	if below != (err != nil) {
		t.Fatalf("kernel %s, floor: %v; want it refused exactly below 5.17", release, err)
	}
	if !below {
		return
	}
	if !errors.Is(err, ErrKernelFloor) || !strings.Contains(err.Error(), "bpf_loop (Linux 5.17)") {
		t.Errorf("floor: %v, want ErrKernelFloor naming bpf_loop", err)
	}
	if major == 5 && minor < 11 && !strings.Contains(err.Error(), "bpf_ktime_get_coarse_ns (Linux 5.11)") {
		t.Errorf("floor on %s: %v, want bpf_ktime_get_coarse_ns named", release, err)
	}
	if _, err := loadEgressSet(nil, [3]uint32{TableCap, TableCap, TableCap}, true, 1); !errors.Is(err, ErrKernelFloor) {
		t.Errorf("egress programs below the floor: %v, want ErrKernelFloor", err)
	}
	if _, err := loadExecPrograms(execProgNgExecKill); !errors.Is(err, ErrKernelFloor) {
		t.Errorf("exec program below the floor: %v, want ErrKernelFloor", err)
	}
}
