package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/cgroup"
	"github.com/nriguard/nriguard/policy"
)

// memcg is a memory cgroup the benchmark charges things to: v2's memory
// controller where it is enabled, else v1's (hybrid hosts).
type memcg struct{ dir, usage string }

func newMemcg(name string) (*memcg, error) {
	if root, err := cgroup.Root(); err == nil {
		if data, _ := os.ReadFile(filepath.Join(root, "cgroup.controllers")); strings.Contains(string(data), "memory") {
			os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("+memory"), 0)
			dir := filepath.Join(root, name)
			if err := os.Mkdir(dir, 0o755); err == nil {
				if _, err := os.Stat(filepath.Join(dir, "memory.current")); err == nil {
					return &memcg{dir, "memory.current"}, nil
				}
				os.Remove(dir)
			}
		}
	}
	dir := filepath.Join("/sys/fs/cgroup/memory", name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("no memory cgroup to measure in: %w", err)
	}
	return &memcg{dir, "memory.usage_in_bytes"}, nil
}

func (m *memcg) read() int64 {
	data, _ := os.ReadFile(filepath.Join(m.dir, m.usage))
	n, _ := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	return n
}

// charge runs f with this process in the memory cgroup and returns what the
// cgroup was charged meanwhile (median of three tries, undone between).
func (m *memcg) charge(f func() (undo func(), err error)) (int64, error) {
	home, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, err
	}
	var back string
	for _, line := range strings.Split(string(home), "\n") {
		if f := strings.SplitN(line, ":", 3); len(f) == 3 && (strings.Contains(f[1], "memory") || (m.usage == "memory.current" && f[1] == "")) {
			back = f[2]
		}
	}
	var deltas []int64
	for range 3 {
		if err := os.WriteFile(filepath.Join(m.dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
			return 0, err
		}
		time.Sleep(50 * time.Millisecond)
		before := m.read()
		undo, err := f()
		after := m.read()
		os.WriteFile(filepath.Join(filepath.Dir(m.dir), back, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0)
		if undo != nil {
			undo()
		}
		if err != nil {
			return 0, err
		}
		deltas = append(deltas, after-before)
		time.Sleep(200 * time.Millisecond) // freeing is deferred (RCU)
	}
	slices.Sort(deltas)
	return deltas[1], nil
}

func (m *memcg) remove() {
	for range 50 {
		if os.Remove(m.dir) == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// memory reports what the kernel charges a memory cgroup for a policy of
// each size: nriguard's attachment (tries, programs, maps) beside what the
// fdinfo of its maps and programs says, and nftables' and ipset's sets of
// the same prefixes.
func memory(sizes []*size, base, pinRoot string) error {
	m, err := newMemcg(fmt.Sprintf("nriguard-bench-mem-%d", os.Getpid()))
	if err != nil {
		return err
	}
	defer m.remove()
	cg := filepath.Join(base, "mem")
	if err := os.MkdirAll(cg, 0o755); err != nil {
		return err
	}
	fmt.Printf("\nkernel memory charged to a memory cgroup (%s), median of three\n", m.usage)
	fmt.Printf("  %-10s %14s %14s %14s %14s\n", "prefixes", "nriguard", "(its memlock)", "nftables", "iptables+ipset")
	for _, s := range sizes {
		var memlock int64
		ng, err := m.charge(func() (func(), error) {
			a, err := bpf.Attach(bpf.Spec{ID: "bench-mem", Cgroup: cg, Egress: s.compiled}, &bpf.Options{PinRoot: pinRoot})
			if err != nil {
				return nil, err
			}
			memlock, _ = bpf.PinnedMemory(a.Dir)
			return func() { a.Detach() }, nil
		})
		if err != nil {
			return err
		}
		peer := func(load func(*netns, *policy.Egress) error) (int64, error) {
			return m.charge(func() (func(), error) {
				ns, err := newNetns(fmt.Sprintf("ngbm%d", os.Getpid()), nil)
				if err != nil {
					return nil, err
				}
				if err := load(ns, s.policy); err != nil {
					ns.remove()
					return nil, err
				}
				return func() { removeIpset(ns); ns.remove() }, nil
			})
		}
		nft, ipset := int64(-1), int64(-1)
		if *peersF {
			if nft, err = peer(loadNft); err != nil {
				return err
			}
			if ipset, err = peer(loadIpset); err != nil {
				return err
			}
		}
		fmt.Printf("  %-10d %11d KiB %11d KiB %11d KiB %11d KiB\n", s.n, ng/1024, memlock/1024, nft/1024, ipset/1024)
	}
	return nil
}
