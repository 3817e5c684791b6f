package main

import (
	"fmt"
	"math"
	"strings"
)

// report prints, per workload, every configuration's cost per operation
// and its ratios to no policy (medians of the paired rounds), then the
// targets of docs/benchmarks.md, met or missed.
func report(ws []workload, configs []*config, results map[string]map[string]*sample, sizes []*size) {
	ratio := func(w, c string) float64 {
		if s := results[w][c]; s != nil && len(s.cpuRatio) > 0 {
			return median(s.cpuRatio)
		}
		return math.NaN()
	}
	for _, w := range ws {
		fmt.Printf("\n%s\n", w.name)
		fmt.Printf("  %-34s %12s %10s %10s\n", "configuration", "CPU ns/op", "CPU ratio", "wall ratio")
		for i, c := range configs {
			s := results[w.name][c.name]
			if i > 0 && len(s.cpuRatio) == 0 {
				continue
			}
			cr, wr := median(s.cpuRatio), median(s.wallRatio)
			if i == 0 {
				cr, wr = 1, 1
			}
			fmt.Printf("  %-34s %12.0f %9.3fx %9.3fx\n", c.name, median(s.cpu), cr, wr)
		}
	}

	fmt.Printf("\ntargets (CPU time ratios, medians of %d paired rounds)\n", *rounds)
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	byTarget := map[string]string{}
	for _, w := range ws {
		if w.target != "" {
			byTarget[w.target] = w.name
		}
	}
	floorName := configs[1].name
	largest := sizes[len(sizes)-1]
	for _, t := range []struct {
		target string
		limit  float64
		what   string
	}{{"send", 1.03, "allowed UDP sendto, IPv4"}, {"send6", 1.03, "allowed UDP sendto, IPv6"}, {"connect", 1.01, "TCP connect+close"}} {
		w := byTarget[t.target]
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, s := range sizes {
			r := ratio(w, fmt.Sprintf("nriguard %d", s.n))
			lo, hi = math.Min(lo, r), math.Max(hi, r)
			fmt.Printf("  %-26s at %6d prefixes: %.3fx (floor %.3fx): <= %.2fx %s, within 0.02 of the floor %s\n", t.what, s.n, r,
				ratio(w, floorName), t.limit, verdict(r <= t.limit), verdict(r-ratio(w, floorName) <= 0.02))
		}
		fmt.Printf("  %-26s flat from %d to %d prefixes: spread %.3f: %s\n", t.what, sizes[0].n, largest.n, hi-lo, verdict(hi-lo <= 0.02))
	}
	for _, s := range sizes {
		c := fmt.Sprintf("nriguard %d", s.n)
		refused, allowed := median(results[byTarget["refused"]][c].cpu), median(results[byTarget["send"]][c].cpu)
		fmt.Printf("  a refused send costs less than an allowed one at %6d prefixes: %.0f ns against %.0f ns: %s\n", s.n, refused, allowed, verdict(refused < allowed))
	}
	ahead, behind := 0, []string{}
	for _, w := range ws {
		for _, s := range sizes {
			ng := ratio(w.name, fmt.Sprintf("nriguard %d", s.n))
			for _, peer := range []string{"nftables", "iptables+ipset"} {
				p := ratio(w.name, fmt.Sprintf("%s %d", peer, s.n))
				if math.IsNaN(p) {
					continue
				}
				if ng < p {
					ahead++
				} else {
					behind = append(behind, fmt.Sprintf("%s at %d: %.3fx against %s's %.3fx", w.name, s.n, ng, peer, p))
				}
			}
		}
	}
	fmt.Printf("  ahead of nftables and iptables+ipset at every size and workload: %s (%d of %d)\n", verdict(len(behind) == 0), ahead, ahead+len(behind))
	for _, b := range behind {
		fmt.Printf("    behind: %s\n", b)
	}
	nb := fmt.Sprintf("nriguard %d, no backstop", largest.n)
	for _, t := range []string{"stream", "send"} {
		w := byTarget[t]
		with, without := median(results[w][fmt.Sprintf("nriguard %d", largest.n)].cpu), median(results[w][nb].cpu)
		fmt.Printf("  the packet path's backstop, %s: %.3fx with it against without (CPU ns/op %.0f / %.0f): <= 1.05x %s\n",
			strings.Split(w, ",")[0], with/without, with, without, verdict(with/without <= 1.05))
	}
}
