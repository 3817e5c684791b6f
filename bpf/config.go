package bpf

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync/atomic"

	"github.com/nriguard/nriguard/policy"
)

// generation numbers the policies a process gives cgroups (config.gen, never
// 0); it starts at a random point so that two processes' numbers rarely
// meet.
var generation = func() *atomic.Uint32 {
	var g atomic.Uint32
	var b [4]byte
	rand.Read(b[:])
	g.Store(binary.NativeEndian.Uint32(b[:]))
	return &g
}()

// configure makes a slot's tables the policy of a cgroup the programs are
// attached to: one write, which the kernel swaps in whole.
func (s *egressSet) configure(cgid uint64, slot uint32, c *policy.Compiled, vis policy.Visibility) error {
	gen := generation.Add(1)
	for gen == 0 {
		gen = generation.Add(1)
	}
	cfg := egressConfig{
		Cgroup: cgid, Gen: gen, Slot: slot, SocketVerdict: verdictValue(c.Sockets),
		V4Steps: uint8(steps(len(c.V4))), V6Steps: uint8(steps(len(c.V6))), PortSteps: uint8(steps(len(c.Ports))),
		IdSteps: uint8(steps(len(c.UIDRuns)) | steps(len(c.GIDRuns))<<idStepsGIDShift),
	}
	if c.Programs > 1 { // class 0 is every program no exe= names
		cfg.ReadsExe = 1
	}
	if vis&policy.VisFlows != 0 {
		cfg.Visibility = visFlows
	}
	var old egressConfig
	if s.Config.Lookup(cgid, &old) != nil || old.Names == 0 {
		old.Gen = 0 // nothing learned to carry, nothing named to forget
	}
	if len(c.Names) > 0 {
		cfg.Names = 1
		if err := s.putNames(cgid, gen, old.Gen, c); err != nil {
			s.forgetNames(cgid, gen, true)
			return err
		}
	}
	// where uid and gid qualifiers cut the ids, padded with ids no process
	// has, so that a search never ends in the padding
	for i := range cfg.UidRuns {
		cfg.UidRuns[i], cfg.GidRuns[i] = ^uint32(0), ^uint32(0)
		if i < len(c.UIDRuns) {
			cfg.UidRuns[i] = c.UIDRuns[i].Start
		}
		if i < len(c.GIDRuns) {
			cfg.GidRuns[i] = c.GIDRuns[i].Start
		}
	}
	if err := s.Config.Put(cgid, cfg); err != nil {
		if cfg.Names != 0 {
			s.forgetNames(cgid, gen, true)
		}
		return fmt.Errorf("configure the egress programs: %w", err)
	}
	if err := s.nextEpoch(); err != nil {
		return err
	}
	if old.Gen != 0 { // the names and addresses of the policy it replaces
		return s.forgetNames(cgid, gen, false)
	}
	return nil
}

// nextEpoch follows every write of a config: a verdict a socket remembers
// then holds only once its config is read again (decide, holds). Under the
// host lock: one writer.
func (s *egressSet) nextEpoch() error {
	var e uint64
	if err := s.Epoch.Lookup(uint32(0), &e); err != nil {
		return fmt.Errorf("read the egress epoch: %w", err)
	}
	if err := s.Epoch.Put(uint32(0), e+1); err != nil {
		return fmt.Errorf("make remembered verdicts stale: %w", err)
	}
	return nil
}

// unconfigure leaves a cgroup's config all zero (deny), should the
// programs ever be attached to it again (the kernel may have freed it),
// and forgets its names and what was learned for them (slot: its tables').
func (s *egressSet) unconfigure(cgid uint64, slot uint32) {
	var old egressConfig
	live := s.Config.Lookup(cgid, &old) == nil // (gone with the cgroup, it says nothing)
	s.Config.Put(cgid, egressConfig{})
	s.nextEpoch()
	if live && old.Names == 0 {
		return // nothing named, nothing learned
	}
	if live {
		s.barrier(slot) // no program still learns under the old config
	}
	s.forgetNames(cgid, 0, false)
}
