// Command bench measures what nriguard's egress programs cost, side by side
// in one run with the floor (a program that allows at once on the same
// hooks) and with its peers, nftables and iptables+ipset, holding the same
// random prefixes spread over the IPv4 and IPv6 address spaces, at 10,
// 1,000 and 100,000 prefixes: UDP sends to one destination (whose lookup is
// the deepest, or about the shallowest, in the policy's trie) and to two in
// turn, TCP connects, refused sends, TCP stream throughput; the CPU time of
// the measuring thread and the wall time, as ratios to no policy in paired
// rounds. Then kernel memory, attach latency and fork+exec. Run as root:
// make bench.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/cgroup"
	"github.com/nriguard/nriguard/policy"
)

var (
	rounds  = flag.Int("rounds", 15, "paired rounds; each figure is the median over them")
	sendN   = flag.Int("sends", 20000, "UDP sends per sample")
	connN   = flag.Int("connects", 1500, "TCP connect+close per sample")
	streamN = flag.Int("stream", 1500, "64 KiB TCP writes per sample")
	attachN = flag.Int("attaches", 200, "attach+detach cycles")
	execN   = flag.Int("execs", 300, "fork+exec per round and configuration")
	sizesF  = flag.String("sizes", "10,1000,100000", "policy sizes in prefixes")
	peersF  = flag.Bool("peers", true, "measure nftables and iptables+ipset beside nriguard (the same rules)")
	only    = flag.String("only", "", "run only these parts (datapath, delivery, memory, attach, run, exec), comma separated")
	// for a quick look at one change: the report's other figures are then 0
	workloadsF = flag.String("workloads", "", "measure only the datapath workloads whose name matches this regexp")
	configsF   = flag.String("configs", "", "measure only the configurations (beyond no policy and the floor) whose name matches this regexp")
)

const (
	udpPort, udpPort2, tcpPort, streamPort, deniedPort = 40053, 40054, 40080, 40081, 40099
	// a range of ports no one listens on, sent to in turn: every send a new
	// destination, more than any cache holds
	coldPorts, coldN = 41000, 4096
)

var cpuProfile = flag.String("cpuprofile", "", "write a CPU profile of the whole run here (go tool pprof)")

func main() {
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	if err := runBench(); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func want(part string) bool {
	return *only == "" || slices.Contains(strings.Split(*only, ","), part)
}

// size is one policy size: its prefixes, its destinations, its policy.
type size struct {
	n                   int
	prefixes            []netip.Prefix
	deep4, shallow4     netip.Addr
	deep6               netip.Addr
	depth4, depth6      [2]int
	policy              *policy.Egress
	compiled            *policy.Compiled
	compile, attachTime time.Duration
}

// config is what a measurement runs under: a network namespace and a cgroup.
type config struct {
	name string
	size *size // whose destinations it sends to
	ns   *netns
	cg   string
	tool string // none, floor, nriguard, nftables, ipset
}

func runBench() error {
	runtime.LockOSThread() // the measuring thread: one CPU, no migrations
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
	pid := os.Getpid()
	base := filepath.Join(root, fmt.Sprintf("nriguard-bench-%d", pid))
	pinRoot := fmt.Sprintf("/sys/fs/bpf/nriguard-bench-%d", pid)
	var cleanups []func()
	defer func() {
		cgroup.Move(home, pid)
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
		cgroup.Remove(base)
		os.RemoveAll(pinRoot)
	}()
	if err := os.MkdirAll(base, 0o755); err != nil {
		return err
	}
	var sizes []*size
	for _, s := range strings.Split(*sizesF, ",") {
		var n int
		fmt.Sscan(s, &n)
		sizes = append(sizes, newSize(n))
	}
	if want("datapath") {
		if err := datapath(sizes, base, pinRoot, home, &cleanups); err != nil {
			return err
		}
	}
	if want("delivery") {
		if err := delivery(base, pinRoot, home); err != nil {
			return err
		}
	}
	if want("memory") {
		if err := memory(sizes, base, pinRoot); err != nil {
			return err
		}
	}
	if want("attach") {
		if err := attachLatency(base, pinRoot); err != nil {
			return err
		}
	}
	if want("run") {
		if err := runDefault(base); err != nil {
			return err
		}
	}
	if want("exec") {
		return execBench(base, pinRoot, *execN)
	}
	return nil
}

func newSize(n int) *size {
	r := rand.New(rand.NewPCG(uint64(n), 7))
	s := &size{n: n, prefixes: spread(r, n)}
	s.deep4, s.shallow4, s.depth4 = destinations(r, s.prefixes, false)
	s.deep6, _, s.depth6 = destinations(r, s.prefixes, true)
	s.policy = benchPolicy(r, s.prefixes, []netip.Addr{s.deep4, s.shallow4, s.deep6},
		[]policy.PortRange{{Lo: udpPort, Hi: udpPort2}, {Lo: tcpPort, Hi: streamPort}, {Lo: coldPorts, Hi: coldPorts + coldN - 1}})
	t0 := time.Now()
	s.compiled = policy.Compile(policy.Enforce, s.policy)
	s.compile = time.Since(t0)
	return s
}

// sizedPolicy is a policy of n spread prefixes (attach latency).
func sizedPolicy(n int) *policy.Egress {
	r := rand.New(rand.NewPCG(uint64(n), 9))
	return benchPolicy(r, spread(r, n), nil, nil)
}

func datapath(sizes []*size, base, pinRoot, home string, cleanups *[]func()) error {
	var addrs []netip.Addr
	for _, s := range sizes {
		addrs = append(addrs, s.deep4, s.shallow4, s.deep6)
	}
	addrs = append(addrs, benchResolver)
	pid := os.Getpid()
	mkns := func(name string) (*netns, error) {
		ns, err := newNetns(fmt.Sprintf("ngb%d-%s", pid, name), addrs)
		if err == nil {
			*cleanups = append(*cleanups, ns.remove)
		}
		return ns, err
	}
	mkcg := func(name string) (string, error) {
		cg := filepath.Join(base, name)
		return cg, os.MkdirAll(cg, 0o755)
	}
	plain, err := mkns("plain")
	if err != nil {
		return err
	}
	none, err := mkcg("none")
	if err != nil {
		return err
	}
	largest := sizes[len(sizes)-1]
	configs := []*config{{name: "no policy", ns: plain, cg: none, tool: "none"}}
	floorCg, err := mkcg("floor")
	if err != nil {
		return err
	}
	closeFloor, err := floor(floorCg)
	if err != nil {
		return fmt.Errorf("floor programs: %w", err)
	}
	*cleanups = append(*cleanups, closeFloor)
	configs = append(configs, &config{name: "floor (allow at once)", size: largest, ns: plain, cg: floorCg, tool: "floor"})

	fmt.Printf("nriguard datapath benchmark: %d paired rounds; CPU time of the sending thread (and wall time)\n\n", *rounds)
	for _, s := range sizes {
		cg, err := mkcg(fmt.Sprintf("ng%d", s.n))
		if err != nil {
			return err
		}
		t0 := time.Now()
		a, err := bpf.Attach(bpf.Spec{ID: fmt.Sprintf("bench-%d", s.n), Cgroup: cg, Egress: s.compiled}, &bpf.Options{PinRoot: pinRoot})
		if err != nil {
			return err
		}
		s.attachTime = time.Since(t0)
		*cleanups = append(*cleanups, func() { a.Detach() })
		fmt.Printf("policy %6d prefixes: %6d classes, %6d port entries; compile %v, attach %v; an LPM trie would visit, IPv4 deepest %d, shallow %d, IPv6 deepest %d (nriguard searches: every address the same)\n",
			s.n, s.compiled.Classes, len(s.compiled.Ports), s.compile.Round(time.Millisecond), s.attachTime.Round(time.Millisecond),
			s.depth4[0], s.depth4[1], s.depth6[0])
		configs = append(configs, &config{name: fmt.Sprintf("nriguard %d", s.n), size: s, ns: plain, cg: cg, tool: "nriguard"})
	}
	// the largest policy without the packet path's backstop: what it costs
	{
		s := largest
		cg, err := mkcg("nobackstop")
		if err != nil {
			return err
		}
		a, err := bpf.Attach(bpf.Spec{ID: "bench-nobackstop", Cgroup: cg, Egress: s.compiled}, &bpf.Options{PinRoot: pinRoot})
		if err != nil {
			return err
		}
		a.Close()
		os.Remove(filepath.Join(a.Dir, "link_skb_egress"))
		*cleanups = append(*cleanups, func() { bpf.Detach(pinRoot, "bench-nobackstop") })
		configs = append(configs, &config{name: fmt.Sprintf("nriguard %d, no backstop", s.n), size: s, ns: plain, cg: cg, tool: "nriguard-nobackstop"})
	}
	// the largest policy with 1,000 of its rules about programs and users
	// (100 programs, 10 uid ranges), the benchmark's own flows allowed to
	// this program as root: every send goes the principal's way
	{
		s := largest
		c, err := qualifiedPolicy(s)
		if err != nil {
			return err
		}
		cg, err := mkcg("qualified")
		if err != nil {
			return err
		}
		a, err := bpf.Attach(bpf.Spec{ID: "bench-qualified", Cgroup: cg, Egress: c}, &bpf.Options{PinRoot: pinRoot})
		if err != nil {
			return err
		}
		*cleanups = append(*cleanups, func() { a.Detach() })
		fmt.Printf("policy %6d prefixes, 1,000 rules with qualifiers: %d classes, %d overrides, %d program files\n",
			s.n, c.Classes, len(c.Overrides), len(c.ProgramFiles))
		configs = append(configs, &config{name: fmt.Sprintf("nriguard %d, qualified", s.n), size: s, ns: plain, cg: cg, tool: "nriguard-qualified"})
	}
	// the largest policy with visibility on flows: a record per new flow,
	// and the steady state counts its packets
	{
		s := largest
		c := *s.compiled
		cg, err := mkcg("visibility")
		if err != nil {
			return err
		}
		a, err := bpf.Attach(bpf.Spec{ID: "bench-visibility", Cgroup: cg, Egress: &c, Visibility: policy.VisFlows}, &bpf.Options{PinRoot: pinRoot})
		if err != nil {
			return err
		}
		*cleanups = append(*cleanups, func() { a.Detach() })
		configs = append(configs, &config{name: fmt.Sprintf("nriguard %d, visibility", s.n), size: s, ns: plain, cg: cg, tool: "nriguard-visibility"})
	}
	// the largest policy with the benchmark's own destinations allowed by
	// DNS name (learned below), and the same without the name: the cost of
	// a flow to a learned address, and of the answer path
	var named, unnamed string
	for _, names := range []bool{true, false} {
		s := largest
		c, err := namedPolicy(s, names)
		if err != nil {
			return err
		}
		id := map[bool]string{true: "dnsname", false: "dnsnone"}[names]
		cg, err := mkcg(id)
		if err != nil {
			return err
		}
		a, err := bpf.Attach(bpf.Spec{ID: "bench-" + id, Cgroup: cg, Egress: c}, &bpf.Options{PinRoot: pinRoot})
		if err != nil {
			return err
		}
		*cleanups = append(*cleanups, func() { a.Detach() })
		if names {
			named = cg
			configs = append(configs, &config{name: fmt.Sprintf("nriguard %d, by DNS name", s.n), size: s, ns: plain, cg: cg, tool: "nriguard-dns"})
		} else {
			unnamed = cg
		}
	}
	if *peersF {
		for _, s := range sizes {
			ns, err := mkns(fmt.Sprintf("nft%d", s.n))
			if err != nil {
				return err
			}
			t0 := time.Now()
			if err := loadNft(ns, s.policy); err != nil {
				return fmt.Errorf("nftables: %w (make deps installs it)", err)
			}
			fmt.Printf("nftables %6d prefixes: nft -f %v\n", s.n, time.Since(t0).Round(time.Millisecond))
			configs = append(configs, &config{name: fmt.Sprintf("nftables %d", s.n), size: s, ns: ns, cg: none, tool: "nftables"})
			ns2, err := mkns(fmt.Sprintf("ips%d", s.n))
			if err != nil {
				return err
			}
			t0 = time.Now()
			if err := loadIpset(ns2, s.policy); err != nil {
				return fmt.Errorf("iptables+ipset: %w (make deps installs them)", err)
			}
			*cleanups = append(*cleanups, func() { removeIpset(ns2) })
			fmt.Printf("ipset    %6d prefixes: ipset restore and iptables %v\n", s.n, time.Since(t0).Round(time.Millisecond))
			configs = append(configs, &config{name: fmt.Sprintf("iptables+ipset %d", s.n), size: s, ns: ns2, cg: none, tool: "ipset"})
		}
	}
	for _, c := range configs {
		if c.size == nil {
			c.size = largest
		}
	}
	env := map[*netns]*servers{}
	for _, c := range configs {
		if env[c.ns] == nil {
			if err := c.ns.enter(); err != nil {
				return err
			}
			sv, err := startServers(addrs)
			if err != nil {
				return err
			}
			*cleanups = append(*cleanups, sv.stop)
			env[c.ns] = sv
		}
	}
	if err := plain.enter(); err != nil {
		return err
	}
	dns, err := startDNS([]netip.Addr{largest.deep4, largest.shallow4, largest.deep6})
	if err != nil {
		return err
	}
	*cleanups = append(*cleanups, dns.stop)
	ws := workloads()
	if *workloadsF != "" {
		re, err := regexp.Compile(*workloadsF)
		if err != nil {
			return fmt.Errorf("-workloads: %w", err)
		}
		ws = slices.DeleteFunc(ws, func(w workload) bool { return !re.MatchString(w.name) })
	}
	var configRe *regexp.Regexp
	if *configsF != "" {
		if configRe, err = regexp.Compile(*configsF); err != nil {
			return fmt.Errorf("-configs: %w", err)
		}
	}
	if configRe == nil || configRe.MatchString(fmt.Sprintf("nriguard %d, by DNS name", largest.n)) {
		if err := learn(named, none, largest.deep4); err != nil {
			return err
		}
	}
	results := map[string]map[string]*sample{} // workload -> config -> samples
	for _, w := range ws {
		results[w.name] = map[string]*sample{}
		for _, c := range configs {
			results[w.name][c.name] = &sample{}
		}
	}
	measure := func(w workload, c *config, s *size) (cpu, wall float64, err error) {
		if err := c.ns.enter(); err != nil {
			return 0, 0, err
		}
		if err := cgroup.Move(c.cg, os.Getpid()); err != nil {
			return 0, 0, err
		}
		defer cgroup.Move(none, os.Getpid())
		return w.run(s)
	}
	skip := func(w workload, c *config) bool {
		if configRe != nil && c.tool != "none" && c.tool != "floor" && !configRe.MatchString(c.name) {
			return true
		}
		return w.nriguardOnly && (c.tool == "nftables" || c.tool == "ipset")
	}
	// warm every path once
	for _, w := range ws {
		for _, c := range configs {
			if skip(w, c) {
				continue
			}
			if _, _, err := measure(w, c, c.size); err != nil {
				return fmt.Errorf("%s under %s: %w", w.name, c.name, err)
			}
		}
	}
	for r := range *rounds {
		for _, w := range ws {
			for _, k := range rand.Perm(len(configs) - 1) {
				c := configs[k+1]
				if skip(w, c) {
					continue
				}
				bc, bw, err := measure(w, configs[0], c.size)
				if err != nil {
					return err
				}
				cc, cw, err := measure(w, c, c.size)
				if err != nil {
					return fmt.Errorf("%s under %s: %w", w.name, c.name, err)
				}
				res := results[w.name][c.name]
				res.cpu, res.wall = append(res.cpu, cc), append(res.wall, cw)
				res.cpuRatio, res.wallRatio = append(res.cpuRatio, cc/bc), append(res.wallRatio, cw/bw)
				b := results[w.name][configs[0].name]
				b.cpu, b.wall = append(b.cpu, bc), append(b.wall, bw)
			}
		}
		fmt.Fprintf(os.Stderr, "\rround %d of %d", r+1, *rounds)
	}
	fmt.Fprintln(os.Stderr)
	dns.stop() // answerPath serves the lookups itself
	if *workloadsF == "" {
		if err := answerPath(plain, none, named, unnamed, largest.deep4); err != nil {
			return err
		}
	}
	cgroup.Move(home, os.Getpid())
	report(ws, configs, results, sizes)
	return nil
}

type sample struct{ cpu, wall, cpuRatio, wallRatio []float64 }

func median(xs []float64) float64 { return quantile(xs, 0.5) }

// quantile is the q-quantile of xs (nearest rank).
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}
