package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/policy"
)

// attachLatency measures bpf.Attach then Detach of policies of 10, 1,000
// and 100,000 prefixes: with programs of their own (nriguard run: each
// attach loads a private copy), and as a daemon does it (attachments that
// share a ring share a copy per size class: after the first, an attach
// loads nothing; the copy stays between containers).
func attachLatency(base, pinRoot string) error {
	cg := filepath.Join(base, "attach")
	if err := os.MkdirAll(cg, 0o755); err != nil {
		return err
	}
	ev, err := bpf.NewEventMaps()
	if err != nil {
		return err
	}
	defer ev.Close()
	defer bpf.RemoveIdle(pinRoot)
	fmt.Printf("\n%-40s %10s %10s %10s\n", "attach+detach", "median", "p90", "max")
	for _, c := range []struct {
		n      int
		shared bool
	}{{10, false}, {1000, false}, {10, true}, {1000, true}, {100000, true}} {
		comp := policy.Compile(policy.Enforce, sizedPolicy(c.n))
		var ds []float64
		runs := *attachN
		if c.n >= 100000 {
			runs = max(1, runs/10)
		}
		for range runs {
			opts := &bpf.Options{PinRoot: pinRoot}
			if c.shared {
				opts.Events, opts.Keep = ev, true
			}
			t0 := time.Now()
			a, err := bpf.Attach(bpf.Spec{ID: "bench-attach", Cgroup: cg, Egress: comp}, opts)
			if err != nil {
				return err
			}
			a.Close()
			if c.shared {
				err = bpf.DetachKeep(pinRoot, "bench-attach")
			} else {
				err = bpf.Detach(pinRoot, "bench-attach")
			}
			if err != nil {
				return err
			}
			ds = append(ds, float64(time.Since(t0).Microseconds())/1000)
		}
		first := ds[0]
		slices.Sort(ds)
		name := fmt.Sprintf("%d prefixes, own programs (%d runs)", c.n, len(ds))
		if c.shared {
			name = fmt.Sprintf("%d prefixes, shared (%d runs)", c.n, len(ds))
		}
		fmt.Printf("%-40s %8.2fms %8.2fms %8.2fms", name, ds[len(ds)/2], ds[len(ds)*9/10], ds[len(ds)-1])
		if c.shared {
			fmt.Printf("  (the first, which loaded the copy: %.2fms)", first)
		}
		fmt.Println()
	}
	return nil
}
