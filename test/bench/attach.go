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

// attachLatency measures bpf.Attach then Detach of policies of 10 and
// 1,000 prefixes, loading afresh and from a pool (as the plugin does).
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
	pool := bpf.NewPool(ev, 1)
	defer pool.Close()
	fmt.Printf("\n%-36s %10s %10s %10s\n", "attach+detach", "median", "p90", "max")
	for _, c := range []struct {
		n       int
		preload bool
	}{{10, false}, {1000, false}, {10, true}, {1000, true}} {
		n := c.n
		comp := policy.Compile(policy.Enforce, sizedPolicy(n))
		var ds []float64
		for range *attachN {
			opts := &bpf.Options{PinRoot: pinRoot, Events: ev}
			if c.preload {
				// untimed: wait until the pool has a set ready, as it has
				// when containers do not start back to back
				for pool.Ready() == 0 {
					if err := pool.Err(); err != nil {
						return err
					}
					time.Sleep(time.Millisecond)
				}
				opts.Pool = pool
			}
			t0 := time.Now()
			a, err := bpf.Attach(bpf.Spec{ID: "bench-attach", Cgroup: cg, Egress: comp}, opts)
			if err != nil {
				return err
			}
			if c.preload {
				// as the plugin does: the set goes back to the pool
				a.Close()
				err = pool.Detach(pinRoot, "bench-attach")
			} else {
				err = a.Detach()
			}
			if err != nil {
				return err
			}
			ds = append(ds, float64(time.Since(t0).Microseconds())/1000)
		}
		slices.Sort(ds)
		name := fmt.Sprintf("%d-prefix policy (%d runs)", n, len(ds))
		if c.preload {
			name = fmt.Sprintf("%d-prefix, pooled (%d runs)", n, len(ds))
		}
		fmt.Printf("%-36s %8.2fms %8.2fms %8.2fms\n", name, ds[len(ds)/2], ds[len(ds)*9/10], ds[len(ds)-1])
		if n == 10 && !c.preload {
			verdict := "met"
			if ds[len(ds)/2] >= 5 {
				verdict = "MISSED"
			}
			defer fmt.Printf("target: attach+detach median < 5 ms: %s\n", verdict)
		}
	}
	return nil
}
