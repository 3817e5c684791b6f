package bpf

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/nriguard/nriguard/policy"
)

var egressSpec = sync.OnceValues(loadEgress)

// egressLinks says what attaches where, and under which name each link is
// pinned, in the order they are attached: sock_create first, so that from
// then on no unjudgeable socket can be made.
// (names: only for a policy that names DNS names; once attached, it stays
// until the attachment goes)
var egressLinks = []struct {
	pin    string
	attach ebpf.AttachType
	prog   func(*egressPrograms) **ebpf.Program
	names  bool
}{
	{"link_sock_create", ebpf.AttachCGroupInetSockCreate, func(p *egressPrograms) **ebpf.Program { return &p.NgSockCreate }, false},
	{"link_connect4", ebpf.AttachCGroupInet4Connect, func(p *egressPrograms) **ebpf.Program { return &p.NgConnect4 }, false},
	{"link_connect6", ebpf.AttachCGroupInet6Connect, func(p *egressPrograms) **ebpf.Program { return &p.NgConnect6 }, false},
	{"link_sendmsg4", ebpf.AttachCGroupUDP4Sendmsg, func(p *egressPrograms) **ebpf.Program { return &p.NgSendmsg4 }, false},
	{"link_sendmsg6", ebpf.AttachCGroupUDP6Sendmsg, func(p *egressPrograms) **ebpf.Program { return &p.NgSendmsg6 }, false},
	{"link_skb_egress", ebpf.AttachCGroupInetEgress, func(p *egressPrograms) **ebpf.Program { return &p.NgSkbEgress }, false},
	{"link_sock_release", ebpf.AttachCgroupInetSockRelease, func(p *egressPrograms) **ebpf.Program { return &p.NgSockRelease }, false},
	{"link_skb_ingress", ebpf.AttachCGroupInetIngress, func(p *egressPrograms) **ebpf.Program { return &p.NgSkbIngress }, true},
}

// egressSet is one loaded copy of the egress programs and the maps they
// share: each policed cgroup's config (cgroup storage), the table maps with
// a slot per container, the socket cache and the event ring. One copy
// serves every container whose tables fit its capacity and that reports to
// its ring: attaching a container loads no program.
type egressSet struct {
	egressPrograms
	egressMaps
	slots *ebpf.Map // the state of each slot: one value, an array of slotState
	caps  [3]uint32 // the capacity of each of a slot's tables
}

func (s *egressSet) Close() error {
	s.egressPrograms.Close()
	s.egressMaps.Close()
	if s.slots != nil {
		s.slots.Close()
	}
	return nil
}

// setSlots is how many containers one copy serves (kubelet's default is
// 110 pods a node); a class has more copies if need be (a var for tests).
var setSlots uint32 = 1024

// loadEgressSet loads one copy of the egress programs with tables of the
// given capacity and slots for as many containers, writing to ev (nil: a
// ring of its own). Only a copy for policies that name DNS names has room
// in its DNS maps: their buckets are most of a copy's memory (4 MiB each
// for the learned addresses and their rings), and a copy without names
// never reads them.
func loadEgressSet(ev *EventMaps, caps [3]uint32, names bool, slots uint32) (*egressSet, error) {
	if err := KernelFloor(); err != nil {
		return nil, err
	}
	cs, err := sizedEgressSpec(caps, names, slots)
	if err != nil {
		return nil, err
	}
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
	s := &egressSet{caps: caps}
	if err := coll.Assign(&s.egressPrograms); err != nil {
		s.Close()
		return nil, err
	}
	if err := coll.Assign(&s.egressMaps); err != nil {
		s.Close()
		return nil, err
	}
	if s.slots, err = ebpf.NewMap(&ebpf.MapSpec{Name: "ng_slots", Type: ebpf.Array, KeySize: 4, ValueSize: slots * uint32(binary.Size(slotState{})), MaxEntries: 1}); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// sizedEgressSpec is a copy of the egress programs' spec with tables of
// capacity caps and slots for as many containers, with room in its DNS
// maps only where its policies name DNS names.
func sizedEgressSpec(caps [3]uint32, names bool, slots uint32) (*ebpf.CollectionSpec, error) {
	cs, err := egressSpec()
	if err != nil {
		return nil, err
	}
	cs = cs.Copy()
	for i, name := range []string{egressMapV4Tables, egressMapV6Tables, egressMapPortTables} {
		cs.Maps[name].MaxEntries = slots
		cs.Maps[name].InnerMap.MaxEntries = caps[i]
	}
	cs.Maps[egressMapPrincipalTables].MaxEntries = slots // one per slot too
	if !names {
		for _, name := range []string{egressMapDnsNames, egressMapDnsLearned, egressMapDnsRings, egressMapDnsResolvers, egressMapOwnAnswers} {
			cs.Maps[name].MaxEntries = 1
		}
	}
	return cs, nil
}

// setMaps are the maps a set pins, by name.
func (s *egressSet) setMaps() map[string]**ebpf.Map {
	return map[string]**ebpf.Map{
		"map_config": &s.Config, "map_v4_tables": &s.V4Tables, "map_v6_tables": &s.V6Tables,
		"map_port_tables": &s.PortTables, "map_principal_tables": &s.PrincipalTables,
		"map_sock_verdicts": &s.SockVerdicts, "map_epoch": &s.Epoch, "map_slots": &s.slots,
		"map_dns_names": &s.DnsNames, "map_dns_learned": &s.DnsLearned, "map_dns_rings": &s.DnsRings,
		"map_dns_resolvers": &s.DnsResolvers,
		// (not read here: pinned so that what they take is counted, Memory)
		"map_own_answers": &s.OwnAnswers, "map_dns_scratch": &s.DnsScratch, "map_last_flows": &s.LastFlows,
	}
}

func progPin(l string) string { return "prog_" + strings.TrimPrefix(l, "link_") }

// pin pins the set in dir (made here).
func (s *egressSet) pin(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	for name, m := range s.setMaps() {
		if err := (*m).Pin(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("pin %s: %w", name, err)
		}
	}
	for _, l := range egressLinks {
		if err := (*l.prog(&s.egressPrograms)).Pin(filepath.Join(dir, progPin(l.pin))); err != nil {
			return fmt.Errorf("pin %s: %w", l.pin, err)
		}
	}
	return nil
}

// openEgressSet opens the set pinned in dir, whose tables have capacity
// caps; with its maps only, not its programs, if !programs (enough to give
// up a slot).
func openEgressSet(dir string, programs bool, caps [3]uint32) (*egressSet, error) {
	s := &egressSet{caps: caps}
	var err error
	for name, m := range s.setMaps() {
		if *m, err = ebpf.LoadPinnedMap(filepath.Join(dir, name), nil); err != nil {
			s.Close()
			return nil, err
		}
	}
	if programs {
		for _, l := range egressLinks {
			if *l.prog(&s.egressPrograms), err = ebpf.LoadPinnedProgram(filepath.Join(dir, progPin(l.pin)), nil); err != nil {
				s.Close()
				return nil, err
			}
		}
	}
	return s, nil
}

// attach attaches the programs to a cgroup and pins the links in dir;
// the links made so far are appended to *links even on failure. The
// cgroup's config is written as soon as the first program is on it (until
// then the programs deny everything).
func (s *egressSet) attach(cgroup, dir string, cgid uint64, slot uint32, c *policy.Compiled, vis policy.Visibility, links *[]link.Link) error {
	for i, l := range egressLinks {
		if l.names && len(c.Names) == 0 {
			continue
		}
		lk, err := link.AttachCgroup(link.CgroupOptions{Path: cgroup, Attach: l.attach, Program: *l.prog(&s.egressPrograms)})
		if err != nil {
			return fmt.Errorf("attach %s: %w", l.pin, err)
		}
		*links = append(*links, lk)
		if err := lk.Pin(filepath.Join(dir, l.pin)); err != nil {
			return fmt.Errorf("pin %s: %w", l.pin, err)
		}
		if i == 0 {
			if err := s.configure(cgid, slot, c, vis); err != nil {
				return err
			}
		}
	}
	return nil
}
