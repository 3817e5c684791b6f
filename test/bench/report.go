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
	// the middle half of a configuration's ratios over the rounds: two
	// configurations whose middle halves overlap are not told apart
	iqr := func(w, c string) (float64, float64) {
		s := results[w][c]
		if s == nil || len(s.cpuRatio) == 0 {
			return math.NaN(), math.NaN()
		}
		return quantile(s.cpuRatio, 0.25), quantile(s.cpuRatio, 0.75)
	}
	for _, w := range ws {
		fmt.Printf("\n%s\n", w.name)
		fmt.Printf("  %-34s %12s %10s %16s %10s\n", "configuration", "CPU ns/op", "CPU ratio", "(middle half)", "wall ratio")
		for i, c := range configs {
			s := results[w.name][c.name]
			if i > 0 && len(s.cpuRatio) == 0 {
				continue
			}
			cr, wr := median(s.cpuRatio), median(s.wallRatio)
			lo, hi := iqr(w.name, c.name)
			if i == 0 {
				cr, wr, lo, hi = 1, 1, 1, 1
			}
			fmt.Printf("  %-34s %12.0f %9.3fx   %6.3f-%.3fx %9.3fx\n", c.name, median(s.cpu), cr, lo, hi, wr)
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
	// ahead: nriguard's middle half entirely below the peer's; behind:
	// entirely above; else too close to call in this run (noise)
	ahead, behind, close := 0, []string{}, []string{}
	for _, w := range ws {
		for _, s := range sizes {
			ngc := fmt.Sprintf("nriguard %d", s.n)
			ng := ratio(w.name, ngc)
			nlo, nhi := iqr(w.name, ngc)
			for _, peer := range []string{"nftables", "iptables+ipset"} {
				pc := fmt.Sprintf("%s %d", peer, s.n)
				p := ratio(w.name, pc)
				if math.IsNaN(p) {
					continue
				}
				plo, phi := iqr(w.name, pc)
				line := fmt.Sprintf("%s at %d: %.3fx (%.3f-%.3f) against %s's %.3fx (%.3f-%.3f)", w.name, s.n, ng, nlo, nhi, peer, p, plo, phi)
				switch {
				case nhi < plo:
					ahead++
				case nlo > phi:
					behind = append(behind, line)
				default:
					close = append(close, line)
				}
			}
		}
	}
	total := ahead + len(behind) + len(close)
	fmt.Printf("  ahead of nftables and iptables+ipset at every size and workload: %s (ahead in %d of %d, behind in %d, too close to call in %d)\n",
		verdict(ahead == total), ahead, total, len(behind), len(close))
	for _, b := range behind {
		fmt.Printf("    behind: %s\n", b)
	}
	for _, c := range close {
		fmt.Printf("    too close to call: %s\n", c)
	}
	q := fmt.Sprintf("nriguard %d, qualified", largest.n)
	for _, t := range []string{"send", "connect"} {
		w := byTarget[t]
		with, without := ratio(w, q), ratio(w, fmt.Sprintf("nriguard %d", largest.n))
		fmt.Printf("  with 1,000 rules about programs and users, %s at %d prefixes: %.3fx (the same policy unqualified: %.3fx): <= 1.05x %s\n",
			strings.Split(w, ",")[0], largest.n, with, without, verdict(with <= 1.05))
	}
	vis := fmt.Sprintf("nriguard %d, visibility", largest.n)
	for _, t := range []string{"send", "connect"} {
		w := byTarget[t]
		with, without := ratio(w, vis), ratio(w, fmt.Sprintf("nriguard %d", largest.n))
		fmt.Printf("  with visibility on flows, %s at %d prefixes: %.3fx (off: %.3fx): <= 1.05x %s\n",
			strings.Split(w, ",")[0], largest.n, with, without, verdict(with <= 1.05))
	}
	dn := fmt.Sprintf("nriguard %d, by DNS name", largest.n)
	for _, t := range []string{"send", "connect"} {
		w := byTarget[t]
		with, addr := ratio(w, dn), ratio(w, fmt.Sprintf("nriguard %d", largest.n))
		fmt.Printf("  to an address learned by DNS name, %s at %d prefixes: %.3fx (allowed by address: %.3fx): <= 1.05x %s\n",
			strings.Split(w, ",")[0], largest.n, with, addr, verdict(with <= 1.05))
	}
	nb := fmt.Sprintf("nriguard %d, no backstop", largest.n)
	for _, t := range []string{"stream", "send"} {
		w := byTarget[t]
		with, without := median(results[w][fmt.Sprintf("nriguard %d", largest.n)].cpu), median(results[w][nb].cpu)
		fmt.Printf("  the packet path's backstop, %s: %.3fx with it against without (CPU ns/op %.0f / %.0f): <= 1.05x %s\n",
			strings.Split(w, ",")[0], with/without, with, without, verdict(with/without <= 1.05))
	}
}
