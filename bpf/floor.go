package bpf

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
)

// ErrKernelFloor: this kernel lacks what nriguard's programs use. Loading
// them there would fail with a verifier's log (or, for a helper a program
// type gained later, with "unknown func"); the loaders refuse first with
// one message naming what is missing (docs/kernels.md).
var ErrKernelFloor = errors.New("this kernel lacks what nriguard's programs use")

// floorProbes are what the programs use that kernels from 5.10 on may lack,
// each probed in the program type that uses it. (Atomic exchange, 5.12,
// is not probed: every kernel with bpf_loop has it.)
var floorProbes = []struct {
	what, since string
	probe       func() error // ebpf.ErrNotSupported: missing
}{
	{"bpf_loop", "5.17", helper(ebpf.CGroupSockAddr, asm.FnLoop)},
	{"bpf_get_current_task_btf in cgroup programs", "5.11", helper(ebpf.CGroupSockAddr, asm.FnGetCurrentTaskBtf)},
	{"bpf_ktime_get_coarse_ns", "5.11", helper(ebpf.CGroupSockAddr, asm.FnKtimeGetCoarseNs)},
	{"bpf_get_current_ancestor_cgroup_id in tp_btf programs", "5.11", tracingHelper(asm.FnGetCurrentAncestorCgroupId)},
}

var floor = sync.OnceValue(func() error {
	var missing []string
	for _, p := range floorProbes {
		// a probe that cannot tell (an error but ErrNotSupported) leaves
		// it to the loader's own error
		if err := p.probe(); errors.Is(err, ebpf.ErrNotSupported) {
			missing = append(missing, fmt.Sprintf("%s (Linux %s)", p.what, p.since))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s; nothing is attached here (docs/kernels.md)", ErrKernelFloor, strings.Join(missing, ", "))
	}
	return nil
})

// KernelFloor says whether this kernel has what nriguard's programs use: nil,
// or an error wrapping ErrKernelFloor that names each missing feature and
// the Linux version that brought it. Probed once.
func KernelFloor() error { return floor() }

func helper(pt ebpf.ProgramType, fn asm.BuiltinFunc) func() error {
	return func() error { return features.HaveProgramHelper(pt, fn) }
}

// tracingHelper probes a helper in a tp_btf program (features cannot:
// tracing programs need a target), as the exec backend's program calls it.
func tracingHelper(fn asm.BuiltinFunc) func() error {
	return func() error {
		p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: "sched_process_exec",
			License: "GPL",
			Instructions: asm.Instructions{
				asm.Mov.Imm(asm.R1, 1),
				fn.Call(),
				asm.Mov.Imm(asm.R0, 0),
				asm.Return(),
			},
		})
		if err == nil {
			p.Close()
			return nil
		}
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) && strings.Contains(fmt.Sprintf("%+v", verr), "unknown func") {
			return fmt.Errorf("%v: %w", err, ebpf.ErrNotSupported)
		}
		return err
	}
}
