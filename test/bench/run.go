package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// runBenchN is the connects of one run of the workload.
const runBenchN, runPrefixes = 5000, 3000

// runDefault measures what nriguard run's visibility costs a command: a loop
// of runBenchN TCP connects (each accepted and closed: runBenchN new flows)
// under a policy of runPrefixes spread prefixes that allows them, run
// without nriguard, under nriguard run --visibility off, and under its
// default, in paired rounds; the wall time of the whole command, and the
// CPU time of nriguard and the command together, as ratios to without.
func runDefault(base string) error {
	dir, err := os.MkdirTemp("", "nriguard-bench-run")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ng, probe := filepath.Join(dir, "nriguard"), filepath.Join(dir, "ngprobe")
	for _, b := range [][2]string{{ng, "./cmd/nriguard"}, {probe, "./test/ngprobe"}} {
		if out, err := exec.Command("go", "build", "-o", b[0], b[1]).CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v: %s", b[1], err, out)
		}
	}
	r := rand.New(rand.NewPCG(runPrefixes, 11))
	var rules []string
	for _, p := range spread(r, runPrefixes) {
		a := p.String()
		if p.Addr().Is6() {
			a = "[" + a + "]" // an IPv6 prefix with a port is bracketed
		}
		rules = append(rules, "allow tcp "+a+":443")
	}
	port := 40180
	rules = append(rules, fmt.Sprintf("allow tcp 127.0.0.1:%d", port))
	policyFile := filepath.Join(dir, "policy")
	if err := os.WriteFile(policyFile, []byte(strings.Join(rules, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	work := []string{probe, fmt.Sprintf("connectn:%d:127.0.0.1:%d", runBenchN, port)}
	configs := []struct {
		name string
		argv []string
	}{
		{"without nriguard", work},
		{"nriguard run --visibility off", append([]string{ng, "run", "--visibility", "off", "--egress-file", policyFile, "--"}, work...)},
		{"nriguard run (default visibility)", append([]string{ng, "run", "--egress-file", policyFile, "--"}, work...)},
	}
	// the command and nriguard on every CPU, as a user runs them (the
	// measuring thread, which forks them, is pinned to one)
	var pinned, all unix.CPUSet
	unix.SchedGetaffinity(0, &pinned)
	for c := 0; c < runtime.NumCPU(); c++ {
		all.Set(c)
	}
	unix.SchedSetaffinity(0, &all)
	defer unix.SchedSetaffinity(0, &pinned)
	wall := make([][]float64, len(configs))
	cpu := make([][]float64, len(configs))
	for round := 0; round < *rounds; round++ {
		for i, c := range configs {
			cmd := exec.Command(c.argv[0], c.argv[1:]...)
			cmd.Env = append(os.Environ(), "NRIGUARD_TEST_PROBE=1")
			var stderr strings.Builder
			cmd.Stderr = &stderr
			t0 := time.Now()
			out, err := cmd.Output()
			if err != nil || strings.TrimSpace(string(out)) != "ok" {
				return fmt.Errorf("%s: %v: %s %s", c.name, err, out, stderr.String())
			}
			wall[i] = append(wall[i], time.Since(t0).Seconds())
			ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			cpu[i] = append(cpu[i], time.Duration(ru.Utime.Nano()+ru.Stime.Nano()).Seconds())
		}
	}
	median := func(xs []float64) float64 {
		s := slices.Clone(xs)
		slices.Sort(s)
		return s[len(s)/2]
	}
	fmt.Printf("\nnriguard run: a loop of %d TCP connects (each a new flow) under a %d-prefix policy; %d paired rounds, medians\n", runBenchN, runPrefixes, *rounds)
	fmt.Printf("  %-36s %10s %8s %12s %8s\n", "", "wall", "ratio", "CPU (all)", "ratio")
	for i, c := range configs {
		fmt.Printf("  %-36s %9.3fs %7.3fx %11.3fs %7.3fx\n", c.name, median(wall[i]), median(wall[i])/median(wall[0]), median(cpu[i]), median(cpu[i])/median(cpu[0]))
	}
	return nil
}
