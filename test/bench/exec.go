package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/cgroup"
	"github.com/nriguard/nriguard/policy"
	"github.com/nriguard/nriguard/resolve"
)

// execBench measures fork+exec+wait of static busybox "true" in rounds. Per
// round and configuration the exec policy is attached fresh, so that "no
// program" really has no host-wide exec program loaded; each round's
// figures are compared with that round's baseline.
func execBench(base, pinRoot string, execN int) error {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("exec benchmark needs static busybox: %w", err)
	}
	dir, err := os.MkdirTemp("", "nriguard-bench-exec")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	prog := filepath.Join(dir, "true")
	data, err := os.ReadFile(bb)
	if err != nil {
		return err
	}
	if err := os.WriteFile(prog, data, 0o755); err != nil {
		return err
	}
	// Other allowed programs: distinct files, so distinct map entries.
	if err := os.MkdirAll(filepath.Join(dir, "others"), 0o755); err != nil {
		return err
	}
	for i := range 999 {
		if err := os.WriteFile(filepath.Join(dir, "others", fmt.Sprint(i)), []byte("\x7fELF"), 0o755); err != nil {
			return err
		}
	}
	self, _ := os.Executable()
	tables := map[string]*policy.ExecTable{}
	for _, n := range []int{10, 1000} {
		text := fmt.Sprintf("allow %s; allow %s", prog, self)
		for i := range n - 2 {
			text += fmt.Sprintf("; allow %s/others/%d", dir, i)
		}
		e, err := policy.ParseExec("bench", text)
		if err != nil {
			return err
		}
		t, _, err := resolve.Exec("/", "bench", e)
		if err != nil {
			return err
		}
		tables[fmt.Sprint(n)] = t
	}
	cgNone := filepath.Join(base, "exec-none")
	cgPol := filepath.Join(base, "exec-policed")
	for _, d := range []string{cgNone, cgPol} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	home, _ := cgroup.OfPid(os.Getpid())
	defer cgroup.Move(home, os.Getpid())

	configs := []string{"no program", "unpoliced, program loaded", "10 paths", "1000 paths"}
	results := make([][]float64, len(configs))
	run := func() (float64, error) {
		t0 := time.Now()
		for range execN {
			pid, err := syscall.ForkExec(prog, []string{"true"}, &syscall.ProcAttr{})
			if err != nil {
				return 0, err
			}
			var ws syscall.WaitStatus
			syscall.Wait4(pid, &ws, 0, nil)
			if ws.ExitStatus() != 0 {
				return 0, fmt.Errorf("true exited %v", ws)
			}
		}
		return float64(time.Since(t0).Nanoseconds()) / float64(execN), nil
	}
	for round := range *rounds + 1 { // round 0 warms up
		for ci, name := range configs {
			var att *bpf.Attachment
			cg := cgNone
			switch ci {
			case 1: // a policy elsewhere keeps the host-wide program loaded
				att, err = bpf.Attach(bpf.Spec{ID: "bench-exec", Cgroup: cgPol, Exec: tables["10"]}, &bpf.Options{PinRoot: pinRoot})
			case 2, 3:
				cg = cgPol
				att, err = bpf.Attach(bpf.Spec{ID: "bench-exec", Cgroup: cgPol, Exec: tables[name[:len(name)-6]]}, &bpf.Options{PinRoot: pinRoot})
			}
			if err != nil {
				return err
			}
			cgroup.Move(cg, os.Getpid())
			ns, err := run()
			cgroup.Move(home, os.Getpid())
			if att != nil {
				att.Detach()
			}
			if err != nil {
				return fmt.Errorf("exec in %s: %w", name, err)
			}
			if round > 0 {
				results[ci] = append(results[ci], ns)
			}
		}
	}
	be, _ := bpf.ExecBackend()
	fmt.Printf("\n%-18s %-28s %12s %10s   (exec backend: %s; ratio: median of paired rounds)\n", "operation", "exec policy", "ns/op", "ratio", be)
	worst := 0.0
	for ci, name := range configs {
		m := median(results[ci])
		var paired []float64 // each round against that round's baseline
		for r := range results[ci] {
			paired = append(paired, results[ci][r]/results[0][r])
		}
		ratio := median(paired)
		fmt.Printf("%-18s %-28s %12.0f %9.3fx\n", "fork+exec+wait", name, m, ratio)
		if ci > 0 && ratio > worst {
			worst = ratio
		}
	}
	verdict := "met"
	if worst > 1.05 {
		verdict = "MISSED"
	}
	fmt.Printf("target: fork+exec overhead at 10 and 1,000 paths <= 1.05x: %s (worst %.3fx)\n", verdict, worst)
	return nil
}
