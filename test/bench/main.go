// Command bench measures what nriguard's egress programs cost, side by side
// in one run: TCP connect+close and UDP sendto on loopback from a cgroup with
// no program and from cgroups held to policies of 10, 1,000 and 100,000
// prefixes, as ratios; and attach+detach latency. Run as root: make bench.
//
// The process moves itself between the cgroups and measures in interleaved
// rounds, so drift on the machine falls on every configuration alike; each
// figure is the median of the rounds.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/cgroup"
	"github.com/nriguard/nriguard/policy"
)

var (
	rounds  = flag.Int("rounds", 21, "rounds; each figure is the median over them")
	connN   = flag.Int("connects", 1500, "TCP connect+close per round and configuration")
	sendN   = flag.Int("sends", 20000, "UDP sendto per round and configuration")
	attachN = flag.Int("attaches", 200, "attach+detach cycles")
	execN   = flag.Int("execs", 300, "fork+exec per round and configuration")
	sizes   = flag.String("sizes", "10,1000,100000", "policy sizes in prefixes")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type config struct {
	name string
	cg   string
	att  *bpf.Attachment
}

func run() error {
	// One CPU for the measuring thread: no migrations between samples.
	runtime.LockOSThread()
	var cpus unix.CPUSet
	cpus.Set(runtime.NumCPU() - 1)
	unix.SchedSetaffinity(0, &cpus)
	root, err := cgroup.Root()
	if err != nil {
		return err
	}
	home, err := cgroup.OfPid(os.Getpid())
	if err != nil {
		return err
	}
	base := filepath.Join(root, fmt.Sprintf("nriguard-bench-%d", os.Getpid()))
	pinRoot := fmt.Sprintf("/sys/fs/bpf/nriguard-bench-%d", os.Getpid())
	var configs []*config
	defer func() {
		cgroup.Move(home, os.Getpid())
		for _, c := range configs {
			if c.att != nil {
				c.att.Detach()
			}
		}
		cgroup.Remove(base)
		os.RemoveAll(pinRoot)
	}()

	tcpPort, stopTCP, err := tcpServer()
	if err != nil {
		return err
	}
	defer stopTCP()
	udpPort, udpFD, err := udpSink()
	if err != nil {
		return err
	}
	defer unix.Close(udpFD)

	fmt.Printf("nriguard egress benchmark: %d rounds, %d connects and %d sends per round and configuration\n\n", *rounds, *connN, *sendN)
	configs = append(configs, &config{name: "none"})
	for _, s := range strings.Split(*sizes, ",") {
		var n int
		fmt.Sscan(s, &n)
		c := &config{name: s}
		e := randomPolicy(n, tcpPort, udpPort)
		t0 := time.Now()
		comp := policy.Compile(policy.Enforce, e)
		compileTime := time.Since(t0)
		c.cg = filepath.Join(base, "p"+s)
		if err := os.MkdirAll(c.cg, 0o755); err != nil {
			return err
		}
		t0 = time.Now()
		c.att, err = bpf.Attach(bpf.Spec{ID: "bench-" + s, Cgroup: c.cg, Egress: comp}, &bpf.Options{PinRoot: pinRoot})
		if err != nil {
			return err
		}
		fmt.Printf("policy %7s prefixes: %6d classes, %7d port entries; compile %v, attach %v, kernel memory (maps and programs) %s\n",
			s, comp.Classes, len(comp.Ports), compileTime.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond), kib(pinnedMemory(c.att)))
		configs = append(configs, c)
	}
	configs[0].cg = filepath.Join(base, "none")
	if err := os.MkdirAll(configs[0].cg, 0o755); err != nil {
		return err
	}

	ops := []struct {
		name string
		n    int
		fn   func(n int) error
	}{
		{"tcp connect+close", *connN, func(n int) error { return connectLoop(n, tcpPort) }},
		{"udp sendto", *sendN, func(n int) error { return sendLoop(n, udpFD, udpPort) }},
	}
	results := make([][][]float64, len(ops)) // [op][config][round] ns/op
	for i := range ops {
		results[i] = make([][]float64, len(configs))
	}
	for i, op := range ops { // warm up each path once
		for _, c := range configs {
			cgroup.Move(c.cg, os.Getpid())
			if err := op.fn(op.n / 10); err != nil {
				return fmt.Errorf("%s in %s: %w", ops[i].name, c.name, err)
			}
		}
	}
	// Each round measures every policy right after a fresh baseline (no
	// program), in random order: a ratio compares two samples taken
	// moments apart, so drift on the machine cancels out. Figures are the
	// medians over the rounds.
	ratios := make([][][]float64, len(ops)) // [op][config][round]
	for i := range ops {
		ratios[i] = make([][]float64, len(configs))
	}
	measure := func(i, ci int) (float64, error) {
		if err := cgroup.Move(configs[ci].cg, os.Getpid()); err != nil {
			return 0, err
		}
		t0 := time.Now()
		if err := ops[i].fn(ops[i].n); err != nil {
			return 0, fmt.Errorf("%s in %s: %w", ops[i].name, configs[ci].name, err)
		}
		ns := float64(time.Since(t0).Nanoseconds()) / float64(ops[i].n)
		results[i][ci] = append(results[i][ci], ns)
		return ns, nil
	}
	for range *rounds {
		for i := range ops {
			for _, k := range rand.Perm(len(configs) - 1) {
				ci := k + 1
				base, err := measure(i, 0)
				if err != nil {
					return err
				}
				ns, err := measure(i, ci)
				if err != nil {
					return err
				}
				ratios[i][ci] = append(ratios[i][ci], ns/base)
			}
		}
	}
	cgroup.Move(home, os.Getpid())

	fmt.Printf("\n%-18s %-16s %12s %10s   (ratio: median of %d paired rounds)\n", "operation", "policy", "ns/op", "ratio", *rounds)
	worst := 0.0
	for i, op := range ops {
		for ci, c := range configs {
			label, ratio := c.name+" prefixes", 1.0
			if ci == 0 {
				label = "no program"
			} else {
				ratio = median(ratios[i][ci])
			}
			fmt.Printf("%-18s %-16s %12.0f %9.3fx\n", op.name, label, median(results[i][ci]), ratio)
			if strings.HasSuffix(c.name, "100000") && ratio > worst {
				worst = ratio
			}
		}
	}
	verdict := "met"
	if worst > 1.05 {
		verdict = "MISSED"
	}
	fmt.Printf("target: overhead at 100,000 prefixes <= 1.05x: %s (worst %.3fx)\n", verdict, worst)

	if err := attachLatency(base, pinRoot); err != nil {
		return err
	}
	return execBench(base, pinRoot, *execN)
}

// randomPolicy allows the benchmark's own flows among n random prefixes, so
// that every measured connect and send is looked up and allowed.
func randomPolicy(n, tcpPort, udpPort int) *policy.Egress {
	r := rand.New(rand.NewPCG(uint64(n), 1))
	e := &policy.Egress{Default: policy.Deny}
	add := func(p netip.Prefix, proto policy.Proto, port uint16) {
		e.Rules = append(e.Rules, policy.Rule{Action: policy.Allow, Proto: proto, Dest: p, Ports: []policy.PortRange{{Lo: port, Hi: port}}})
	}
	add(netip.MustParsePrefix("127.0.0.1/32"), policy.TCP, uint16(tcpPort))
	add(netip.MustParsePrefix("127.0.0.1/32"), policy.UDP, uint16(udpPort))
	seen := map[netip.Prefix]bool{}
	for len(seen) < n-2 {
		var p netip.Prefix
		if r.IntN(10) == 0 {
			var b [16]byte
			b[0], b[1] = 0x20, 0x01
			for i := 2; i < 16; i++ {
				b[i] = byte(r.UintN(256))
			}
			p = netip.PrefixFrom(netip.AddrFrom16(b), 48+r.IntN(81)).Masked()
		} else {
			a := netip.AddrFrom4([4]byte{10, byte(r.UintN(256)), byte(r.UintN(256)), byte(r.UintN(256))})
			p = netip.PrefixFrom(a, 16+r.IntN(17)).Masked()
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		proto := []policy.Proto{policy.TCP, policy.UDP, policy.AnyProto}[r.IntN(3)]
		add(p, proto, []uint16{53, 80, 443, 8443}[r.IntN(4)])
	}
	return e
}

func attachLatency(base, pinRoot string) error {
	cg := filepath.Join(base, "attach")
	if err := os.MkdirAll(cg, 0o755); err != nil {
		return err
	}
	ev, err := bpf.NewEventMaps()
	if err != nil {
		return err
	}
	defer ev.Ring.Close()
	defer ev.Lost.Close()
	pool := bpf.NewPool(ev, 1)
	defer pool.Close()
	fmt.Printf("\n%-36s %10s %10s %10s\n", "attach+detach", "median", "p90", "max")
	for _, c := range []struct {
		n       int
		preload bool
	}{{10, false}, {1000, false}, {10, true}, {1000, true}} {
		n := c.n
		comp := policy.Compile(policy.Enforce, randomPolicy(n, 1, 2))
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

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func kib(n int64) string { return fmt.Sprintf("%d KiB", n/1024) }

func pinnedMemory(a *bpf.Attachment) int64 {
	n, _ := bpf.PinnedMemory(a.Dir)
	return n
}
