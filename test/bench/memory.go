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
// each size, side by side: a container's attachment as a daemon makes it
// (its tables, links and meta, the copy of the programs of its size class
// already loaded) beside the memlock fdinfo reports for it; the copy
// itself, charged once per size class; and nftables' and ipset's sets of
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
	ev, err := bpf.NewEventMaps()
	if err != nil {
		return err
	}
	defer ev.Close()
	defer bpf.RemoveIdle(pinRoot)
	fmt.Printf("\nkernel memory charged to a memory cgroup (%s), median of three\n", m.usage)
	fmt.Printf("  %-10s %14s %14s %14s %14s %14s\n", "prefixes", "a container", "(its memlock)", "the copy, once", "nftables", "iptables+ipset")
	for _, s := range sizes {
		// k containers of this size as a daemon attaches them, and all of
		// it removed after (the copy of the programs too); a memory cgroup
		// is charged in batches of pages, so one container's cost is the
		// difference between 1 and 1+n, divided by n.
		opts := &bpf.Options{PinRoot: pinRoot, Events: ev, Keep: true}
		var memlock int64
		containers := func(k int) (int64, error) {
			return m.charge(func() (func(), error) {
				var ids []string
				undo := func() {
					for _, id := range ids {
						bpf.Detach(pinRoot, id)
					}
					bpf.RemoveIdle(pinRoot)
				}
				for i := range k {
					id := fmt.Sprintf("bench-mem-%d", i)
					a, err := bpf.Attach(bpf.Spec{ID: id, Cgroup: filepath.Join(base, fmt.Sprintf("mem%d", i)), Egress: s.compiled}, opts)
					if err != nil {
						undo()
						return nil, err
					}
					ids = append(ids, id)
					memlock = a.Memory()
					a.Close()
				}
				return undo, nil
			})
		}
		const n = 16
		for i := range 1 + n { // made outside the measure: a cgroup is charged too
			if err := os.MkdirAll(filepath.Join(base, fmt.Sprintf("mem%d", i)), 0o755); err != nil {
				return err
			}
		}
		one, err := containers(1)
		if err != nil {
			return err
		}
		many, err := containers(1 + n)
		if err != nil {
			return err
		}
		ng := (many - one) / n
		copyCharge := one - ng
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
		fmt.Printf("  %-10d %11d KiB %11d KiB %11d KiB %11d KiB %11d KiB\n", s.n, ng/1024, memlock/1024, copyCharge/1024, nft/1024, ipset/1024)
	}
	return nil
}
