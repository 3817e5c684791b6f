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
	return map[string]**ebpf.Map{pinV4: &s.V4Prefixes, pinV6: &s.V6Prefixes, pinPorts: &s.Ports}
}

// setGlobals writes the programs' globals (.bss): a set loaded ahead, or
// used before by another container, learns whom it serves, and a new
// generation, so that no socket's cached verdict of another policy counts.
func (s *egressSet) setGlobals(cgid uint64, sockets policy.Verdict) error {
	cs, err := egressSpec()
	if err != nil {
		return err
	}
	buf := make([]byte, cs.Maps[".bss"].ValueSize)
	binary.NativeEndian.PutUint64(buf[cs.Variables[egressVarPolicyCgroup].Offset:], cgid)
	binary.NativeEndian.PutUint32(buf[cs.Variables[egressVarSocketVerdict].Offset:], verdictValue(sockets))
	binary.NativeEndian.PutUint32(buf[cs.Variables[egressVarPolicyGen].Offset:], generation.Add(1))
	if err := s.bss.Put(uint32(0), buf); err != nil {
		return fmt.Errorf("set the egress programs' globals: %w", err)
	}
	return nil
}

// loadEgressSet loads one copy of the egress programs, with tries that hold
// up to the given numbers of entries, writing to ev (nil: its own ring).
func loadEgressSet(ev *EventMaps, v4, v6, ports int) (*egressSet, error) {
	cs, err := egressSpec()
	if err != nil {
		return nil, err
	}
	cs = cs.Copy()
	cs.Maps[egressMapV4Prefixes].MaxEntries = uint32(max(1, v4))
	cs.Maps[egressMapV6Prefixes].MaxEntries = uint32(max(1, v6))
	cs.Maps[egressMapPorts].MaxEntries = uint32(max(1, ports))
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

// fill writes the compiled tables into the tries.
func (s *egressSet) fill(c *policy.Compiled) error {
	k4 := make([]egressV4Key, len(c.V4))
	v4 := make([]uint32, len(c.V4))
	for i, pc := range c.V4 {
		k4[i] = egressV4Key{Prefixlen: uint32(pc.Prefix.Bits()), Addr: pc.Prefix.Addr().As4()}
		v4[i] = pc.Class
	}
	k6 := make([]egressV6Key, len(c.V6))
	v6 := make([]uint32, len(c.V6))
	for i, pc := range c.V6 {
		k6[i] = egressV6Key{Prefixlen: uint32(pc.Prefix.Bits()), Addr: pc.Prefix.Addr().As16()}
		v6[i] = pc.Class
	}
	kp := make([]egressPortKey, len(c.Ports))
	vp := make([]uint32, len(c.Ports))
	for i, pe := range c.Ports {
		kp[i] = egressPortKey{Prefixlen: 40 + uint32(pe.Bits), Proto: pe.Proto}
		// The key's class and port are big endian so the trie matches them
		// from their first bit; Class is read natively, so swap it here.
		kp[i].Class = binary.NativeEndian.Uint32(binary.BigEndian.AppendUint32(nil, pe.Class))
		binary.BigEndian.PutUint16(kp[i].Port[:], pe.Port)
		vp[i] = verdictValue(pe.Verdict)
	}
	if err := putAll(s.V4Prefixes, k4, v4); err != nil {
		return fmt.Errorf("fill IPv4 prefixes: %w", err)
	}
	if err := putAll(s.V6Prefixes, k6, v6); err != nil {
		return fmt.Errorf("fill IPv6 prefixes: %w", err)
	}
	if err := putAll(s.Ports, kp, vp); err != nil {
		return fmt.Errorf("fill port table: %w", err)
	}
	return nil
}

// empty takes every entry out of the tries and resets the globals, for the
// next container.
func (s *egressSet) empty() error {
	if err := s.setGlobals(0, policy.Verdict{Action: policy.Deny}); err != nil {
		return err
	}
	if err := emptyMap[egressV4Key](s.V4Prefixes); err != nil {
		return err
	}
	if err := emptyMap[egressV6Key](s.V6Prefixes); err != nil {
		return err
	}
	if err := emptyMap[egressDestKey](s.DestVerdicts); err != nil {
		return err
	}
	return emptyMap[egressPortKey](s.Ports)
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

// emptyMap deletes a map's entries a batch at a time (small batches: a
// container's tries mostly hold a few dozen entries, and this runs at
// every stop).
func emptyMap[K any](m *ebpf.Map) error {
	const chunk = 256
	keys, vals := make([]K, chunk), make([]uint32, chunk)
	for {
		var c ebpf.MapBatchCursor
		n, err := m.BatchLookup(&c, keys, vals, nil)
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
		if n == 0 {
			return nil
		}
		if _, err := m.BatchDelete(keys[:n], nil); err != nil {
			return err
		}
	}
}
