package bpf

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/nriguard/nriguard/internal/testenv"
)

// Every program of the objects loads on this kernel by itself. Where one
// does not, the failure names the loader's message and what the program
// uses that this kernel lacks: helpers (probed for the program's own type),
// bpf_loop's callbacks, and the atomic operations other than add it uses. make vmtest runs
// it in each kernel of its matrix: this is the list of what an older kernel
// misses. The BPF LSM program may fail where the SIGKILL one loads (a
// locked-down kernel, as on the host): that is the fallback nriguard takes,
// and the test says so.
func TestEachProgramLoads(t *testing.T) {
	skipBelowFloor(t)
	testenv.NeedRoot(t)
	// Before 5.11 BPF memory is charged to RLIMIT_MEMLOCK (64 KiB by
	// default): raised for this test only, so that what the programs need
	// shows, whatever nriguard itself does about the limit.
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &old); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}); err != nil {
		t.Logf("RLIMIT_MEMLOCK stays %d: %v", old.Cur, err)
	}
	defer unix.Setrlimit(unix.RLIMIT_MEMLOCK, &old)

	failed := map[string]string{}
	for _, obj := range []struct {
		name string
		spec func() (*ebpf.CollectionSpec, error)
	}{{"egress", egressSpec}, {"exec", execSpec}, {"send", sendSpec}} {
		cs, err := obj.spec()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for n := range cs.Programs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			one := cs.Copy()
			for o := range one.Programs {
				if o != n {
					delete(one.Programs, o)
				}
			}
			coll, err := ebpf.NewCollection(one)
			if err == nil {
				coll.Close()
				continue
			}
			msg := strings.SplitN(err.Error(), "\n", 2)[0]
			if lacks := lacking(cs.Programs[n]); len(lacks) > 0 {
				msg += "; this kernel lacks: " + strings.Join(lacks, ", ")
			}
			failed[n] = msg
		}
	}
	// Where BPF LSM programs do not load (nor, then, the write guard and
	// the per-send check, LSM programs too), the SIGKILL backend stands in
	// and what the others give is said (docs/policy.md)
	if why, ok := failed[execProgNgExecLsm]; ok && failed[execProgNgExecKill] == "" {
		for _, n := range []string{execProgNgExecLsm, execProgNgGuardOpen, execProgNgGuardTruncate, sendProgNgSendSender} {
			t.Logf("%s does not load here (%s): the SIGKILL backend (%s) stands in, without the write guard and the per-send check", n, why, execProgNgExecKill)
			delete(failed, n)
		}
	}
	var names []string
	for n := range failed {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t.Errorf("%s does not load: %s", n, failed[n])
	}
}

// lacking lists what ps uses that this kernel refuses.
func lacking(ps *ebpf.ProgramSpec) []string {
	var out []string
	helpers := map[asm.BuiltinFunc]bool{}
	atomics := map[asm.AtomicOp]bool{}
	callbacks := 0
	for _, ins := range ps.Instructions {
		switch {
		case ins.IsBuiltinCall():
			helpers[asm.BuiltinFunc(ins.Constant)] = true
		case ins.OpCode.Class() == asm.StXClass && ins.OpCode.Mode() == asm.AtomicMode:
			if op := ins.OpCode.AtomicOp(); op != asm.AddAtomic {
				atomics[op] = true
			}
		case ins.OpCode.IsDWordLoad() && ins.Src == asm.PseudoFunc:
			callbacks++
		}
	}
	for h := range helpers {
		if why := helperRefused(ps, h); why != "" {
			out = append(out, fmt.Sprintf("helper %s for %s programs (%s)", h, ps.Type, why))
		}
	}
	sort.Strings(out)
	// (not probed alone: a lone exchange on the stack loads on Debian's
	// 5.10, where the programs' exchanges are refused as "BPF_STX uses
	// reserved fields")
	var ops []string
	for op := range atomics {
		ops = append(ops, op.String())
	}
	if len(ops) > 0 {
		sort.Strings(ops)
		out = append(out, "maybe atomics other than add ("+strings.Join(ops, ", ")+": 5.12+)")
	}
	if callbacks > 0 && slices.ContainsFunc(out, func(s string) bool { return strings.HasPrefix(s, "helper FnLoop ") }) {
		out = append(out, fmt.Sprintf("callbacks (%d functions passed to bpf_loop: their func_info is what the loader trips on)", callbacks))
	}
	return out
}

// helperRefused loads a program of ps's type and attach point that calls
// h, and returns the verifier's words if it does not know h there.
func helperRefused(ps *ebpf.ProgramSpec, h asm.BuiltinFunc) string {
	p, err := ebpf.NewProgramWithOptions(&ebpf.ProgramSpec{Type: ps.Type, AttachType: ps.AttachType, AttachTo: ps.AttachTo, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R1, 0), asm.Mov.Imm(asm.R2, 0), asm.Mov.Imm(asm.R3, 0), asm.Mov.Imm(asm.R4, 0),
			h.Call(), asm.Mov.Imm(asm.R0, 0), asm.Return()}}, ebpf.ProgramOptions{LogLevel: ebpf.LogLevelBranch})
	if err == nil {
		p.Close()
		return ""
	}
	// (other errors are about the zero arguments: the helper is known)
	for _, l := range strings.Split(fmt.Sprintf("%+v", err), "\n") {
		if strings.Contains(l, "unknown func") || strings.Contains(l, "invalid func") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}
