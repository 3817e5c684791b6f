package bpf

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/nriguard/nriguard/policy"
)

var egressSpec = sync.OnceValues(loadEgress)

// generation numbers the policies a process gives egress sets (policy_gen);
// it starts at a random point so that two processes' numbers rarely meet.
var generation = func() *atomic.Uint32 {
	var g atomic.Uint32
	var b [4]byte
	rand.Read(b[:])
	g.Store(binary.NativeEndian.Uint32(b[:]))
	return &g
}()

// egressLinks says what attaches where, and under which name each link is
// pinned, in the order they are attached: sock_create first, so that from
// then on no unjudgeable socket can be made.
var egressLinks = []struct {
	pin    string
	attach ebpf.AttachType
	prog   func(*egressPrograms) **ebpf.Program
}{
	{"link_sock_create", ebpf.AttachCGroupInetSockCreate, func(p *egressPrograms) **ebpf.Program { return &p.NgSockCreate }},
	{"link_connect4", ebpf.AttachCGroupInet4Connect, func(p *egressPrograms) **ebpf.Program { return &p.NgConnect4 }},
	{"link_connect6", ebpf.AttachCGroupInet6Connect, func(p *egressPrograms) **ebpf.Program { return &p.NgConnect6 }},
	{"link_sendmsg4", ebpf.AttachCGroupUDP4Sendmsg, func(p *egressPrograms) **ebpf.Program { return &p.NgSendmsg4 }},
	{"link_sendmsg6", ebpf.AttachCGroupUDP6Sendmsg, func(p *egressPrograms) **ebpf.Program { return &p.NgSendmsg6 }},
	{"link_skb_egress", ebpf.AttachCGroupInetEgress, func(p *egressPrograms) **ebpf.Program { return &p.NgSkbEgress }},
}

// egressSet is one copy of the egress programs and the maps they use.
type egressSet struct {
	egressPrograms
	egressMaps
	bss *ebpf.Map // the globals: policy_cgroup, socket_verdict
}

func (s *egressSet) Close() error {
	s.egressPrograms.Close()
	s.egressMaps.Close()
	if s.bss != nil {
		s.bss.Close()
	}
	return nil
}

// tables are the maps an attachment pins, by pin name.
func (s *egressSet) tables() map[string]**ebpf.Map {
	return map[string]**ebpf.Map{pinV4: &s.V4Runs, pinV6: &s.V6Runs, pinPorts: &s.PortRuns}
}

// PoolTableCap is how many entries each table of a pooled set holds (they
// are arrays, allocated whole): a policy with more runs gets a set loaded
// for it.
const PoolTableCap = 1024

// steps is the power of two a table of n entries is padded to, as the
// number of halvings that search it.
func steps(n int) uint32 {
	var s uint32
	for 1<<s < n {
		s++
	}
	return s
}

// tableSizes are the entries a policy's three tables take, padded.
func tableSizes(c *policy.Compiled) [3]int {
	return [3]int{1 << steps(len(c.V4)), 1 << steps(len(c.V6)), 1 << steps(len(c.Ports))}
}

// setGlobals writes the programs' globals (.bss): a set loaded ahead, or
// used before by another container, learns whom it serves, how big its
// tables are, and a new generation, so that no socket's cached verdict of
// another policy counts.
func (s *egressSet) setGlobals(cgid uint64, sockets policy.Verdict, c *policy.Compiled) error {
	cs, err := egressSpec()
	if err != nil {
		return err
	}
	buf := make([]byte, cs.Maps[".bss"].ValueSize)
	put32 := func(name string, v uint32) { binary.NativeEndian.PutUint32(buf[cs.Variables[name].Offset:], v) }
	binary.NativeEndian.PutUint64(buf[cs.Variables[egressVarPolicyCgroup].Offset:], cgid)
	put32(egressVarSocketVerdict, verdictValue(sockets))
	put32(egressVarPolicyGen, generation.Add(1))
	if c != nil {
		put32(egressVarV4Steps, steps(len(c.V4)))
		put32(egressVarV6Steps, steps(len(c.V6)))
		put32(egressVarPortSteps, steps(len(c.Ports)))
	}
	if err := s.bss.Put(uint32(0), buf); err != nil {
		return fmt.Errorf("set the egress programs' globals: %w", err)
	}
	return nil
}

// loadEgressSet loads one copy of the egress programs, with tables of the
// given sizes, writing to ev (nil: its own ring).
func loadEgressSet(ev *EventMaps, sizes [3]int) (*egressSet, error) {
	cs, err := egressSpec()
	if err != nil {
		return nil, err
	}
	cs = cs.Copy()
	cs.Maps[egressMapV4Runs].MaxEntries = uint32(max(1, sizes[0]))
	cs.Maps[egressMapV6Runs].MaxEntries = uint32(max(1, sizes[1]))
	cs.Maps[egressMapPortRuns].MaxEntries = uint32(max(1, sizes[2]))
	co := ebpf.CollectionOptions{}
	if ev != nil {
		// A shared ring buffer is sized by whoever made it.
		cs.Maps[egressMapEvents].MaxEntries = ev.Ring.MaxEntries()
		co.MapReplacements = map[string]*ebpf.Map{egressMapEvents: ev.Ring, egressMapLostEvents: ev.Lost}
	}
	coll, err := ebpf.NewCollectionWithOptions(cs, co)
	if err != nil {
		return nil, fmt.Errorf("load egress programs: %w", err)
	}
	defer coll.Close()
	s := &egressSet{bss: coll.DetachMap(".bss")}
	if err := coll.Assign(&s.egressPrograms); err != nil {
		s.Close()
		return nil, err
	}
	if err := coll.Assign(&s.egressMaps); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// verdictValue is a verdict as the tables hold it (ng_verdict_bits).
func verdictValue(v policy.Verdict) uint32 {
	a := actionDeny // fail closed
	switch v.Action {
	case policy.Allow:
		a = actionAllow
	case policy.WouldDeny:
		a = actionWouldDeny
	}
	return uint32(a) | uint32(v.Layer)<<layerShift
}

// fill writes the compiled tables into the arrays, each padded to its
// power of two with copies of its last entry (so that a search that lands
// there finds the last run).
func (s *egressSet) fill(c *policy.Compiled) error {
	sizes := tableSizes(c)
	v4 := make([]egressRun4, sizes[0])
	for i := range v4 {
		r := c.V4[min(i, len(c.V4)-1)]
		v4[i] = egressRun4{Start: r.Start, Class: r.Class}
	}
	v6 := make([]egressRun6, sizes[1])
	for i := range v6 {
		r := c.V6[min(i, len(c.V6)-1)]
		v6[i] = egressRun6{Hi: r.Hi, Lo: r.Lo, Class: r.Class}
	}
	ports := make([]egressPortRun, sizes[2])
	for i := range ports {
		r := c.Ports[min(i, len(c.Ports)-1)]
		proto := uint64(0) // TCP
		if r.Proto == policy.UDP.IPProto() {
			proto = 1
		}
		ports[i] = egressPortRun{Start: uint64(r.Class)<<17 | proto<<16 | uint64(r.Port), Verdict: verdictValue(r.Verdict)}
	}
	if err := putArray(s.V4Runs, v4); err != nil {
		return fmt.Errorf("fill IPv4 runs: %w", err)
	}
	if err := putArray(s.V6Runs, v6); err != nil {
		return fmt.Errorf("fill IPv6 runs: %w", err)
	}
	if err := putArray(s.PortRuns, ports); err != nil {
		return fmt.Errorf("fill port runs: %w", err)
	}
	return nil
}

// putArray writes vals at indices 0.. of an array map, in one batch.
func putArray[V any](m *ebpf.Map, vals []V) error {
	keys := make([]uint32, len(vals))
	for i := range keys {
		keys[i] = uint32(i)
	}
	return putAll(m, keys, vals)
}

// empty resets the globals and clears the tables' first entries, for the
// next container: a search of one step finds an empty run, which denies.
func (s *egressSet) empty() error {
	if err := s.setGlobals(0, policy.Verdict{Action: policy.Deny}, &policy.Compiled{}); err != nil {
		return err
	}
	for _, m := range []*ebpf.Map{s.V4Runs, s.V6Runs, s.PortRuns} {
		zero := make([]byte, m.ValueSize())
		if err := m.Put(uint32(0), zero); err != nil {
			return err
		}
	}
	return nil
}

// attach attaches the programs to cgroup and pins the links and tables in
// dir; the links made so far are appended to *links even on failure.
func (s *egressSet) attach(cgroup, dir string, links *[]link.Link) error {
	for _, l := range egressLinks {
		lk, err := link.AttachCgroup(link.CgroupOptions{Path: cgroup, Attach: l.attach, Program: *l.prog(&s.egressPrograms)})
		if err != nil {
			return fmt.Errorf("attach %s: %w", l.pin, err)
		}
		*links = append(*links, lk)
		if err := lk.Pin(filepath.Join(dir, l.pin)); err != nil {
			return fmt.Errorf("pin %s: %w", l.pin, err)
		}
	}
	for name, m := range s.tables() {
		if err := (*m).Pin(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("pin %s: %w", name, err)
		}
	}
	return nil
}

// putAll writes keys and values in one batch where the map type supports it.
func putAll[K, V any](m *ebpf.Map, keys []K, vals []V) error {
	if len(keys) == 0 {
		return nil
	}
	_, err := m.BatchUpdate(keys, vals, nil)
	if !errors.Is(err, ebpf.ErrNotSupported) {
		return err
	}
	for i := range keys {
		if err := m.Put(&keys[i], &vals[i]); err != nil {
			return err
		}
	}
	return nil
}
