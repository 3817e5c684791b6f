package bpf

import (
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/nriguard/nriguard/cgroup"
	"github.com/nriguard/nriguard/internal/testenv"
)

// Features says of each feature what loading nriguard's programs on this
// kernel shows, and in words what holds with it or without it; the exec
// backend is LSM only where BPF LSM is active (make vmtest boots a kernel
// with it and one without).
func TestFeatures(t *testing.T) {
	testenv.NeedRoot(t)
	n := Features(fmt.Sprintf("/sys/fs/bpf/nriguard-featurestest-%d", os.Getpid())) // no copy pinned there: the probe loads one
	got := map[string]Feature{}
	for _, f := range n.Features {
		got[f.Name] = f
		if f.Guarantee == "" || f.Detail == "" {
			t.Errorf("%s: %+v: want what it guarantees and what was found", f.Name, f)
		}
	}
	set, err := loadEgressSet(nil, [3]uint32{TableCap, TableCap, TableCap}, true, 1)
	if err == nil {
		set.Close()
	}
	_, btfErr := os.Stat("/sys/kernel/btf/vmlinux")
	_, cgErr := cgroup.Root()
	lsms, lsmErr := activeLSMs()
	for name, want := range map[string]bool{
		"kernel_floor": KernelFloor() == nil,
		"cgroup_v2":    cgErr == nil,
		"egress_hooks": err == nil,
		"dns_learning": err == nil,
		"btf":          btfErr == nil,
		"bpf_lsm":      lsmErr == nil && slices.Contains(lsms, "bpf"),
		"exec_lsm":     ProbeExecBackend(BackendLSM) == nil,
		"exec_sigkill": ProbeExecBackend(BackendKill) == nil,
	} {
		if f, ok := got[name]; !ok || f.Present != want {
			t.Errorf("%s: %+v, want present: %v", name, f, want)
		}
	}
	if be, _ := ExecBackend(); n.ExecBackend != be || n.ExecGuarantee != execGuarantees[be] {
		t.Errorf("exec backend %q (%q), want %q", n.ExecBackend, n.ExecGuarantee, be)
	}
	// an LSM program loads wherever the kernel has BPF LSM, and runs only
	// where it is active: the backend that would refuse nothing is never chosen
	if n.ExecBackend == BackendLSM && os.Getenv(BackendEnv) == "" && !got["bpf_lsm"].Present {
		t.Errorf("exec backend lsm, but BPF LSM is not active (%s): its program would never run", got["bpf_lsm"].Detail)
	}
	t.Logf("kernel %s, cgroup v2 %s (hybrid %v), exec backend %s, active LSMs %v (%v)", n.Kernel, n.CgroupV2, n.Hybrid, n.ExecBackend, lsms, lsmErr)
	for _, f := range n.Features {
		t.Logf("%-13s %-5v %s", f.Name, f.Present, f.Detail)
	}
}
