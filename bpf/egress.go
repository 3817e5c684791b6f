package bpf

import (
	"cmp"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/nriguard/nriguard/dnsanswer"
	"github.com/nriguard/nriguard/policy"
)

var egressSpec = sync.OnceValues(loadEgress)

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

// TableCap is the capacity of each table in the default size class: the
// tables of every policy with up to 1,024 runs of each kind live in one
// copy of the programs. A larger policy gets (or shares) a copy of its
// class: each table padded to its power of two.
const TableCap = 1024

// setSlots is how many containers one copy serves (kubelet's default is
// 110 pods a node); a class has more copies if need be (a var for tests).
var setSlots uint32 = 1024

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

// sizeClass is the capacity of the tables of the copy that serves c.
func sizeClass(c *policy.Compiled) [3]uint32 {
	var caps [3]uint32
	for i, n := range tableSizes(c) {
		caps[i] = uint32(max(n, TableCap))
	}
	return caps
}

// loadEgressSet loads one copy of the egress programs with tables of the
// given capacity and slots for as many containers, writing to ev (nil: a
// ring of its own).
func loadEgressSet(ev *EventMaps, caps [3]uint32, slots uint32) (*egressSet, error) {
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

// slotState is what a slot holds. A container's slot keeps its tables when
// it goes: the next container refills them in place, which costs array
// writes only, where putting tables in or out of a slot makes the kernel
// wait for every running BPF program (synchronize_rcu) each time.
type slotState struct {
	State uint32
	_     uint32
	Since int64 // unix nanoseconds it entered the state: the longest idle is reused first
}

const (
	slotEmpty    = iota // no tables
	slotUsed            // a container's
	slotGone            // tables of a container that went: a program that read its config may still be running
	slotIdle            // tables no running program reads: refilled at once for the next container
	slotReadying        // being given tables ahead of need, without the host lock
)

// readyingStale: a slot being readied for longer was left so by a process
// that died; it counts as empty.
const readyingStale = time.Minute

// idleBudget bounds the memory of the tables a copy keeps for containers to
// come (gone and idle slots).
const idleBudget = 4 << 20

// states reads every slot's state.
func (s *egressSet) states() ([]slotState, error) {
	st := make([]slotState, int(s.slots.ValueSize())/binary.Size(slotState{}))
	if err := s.slots.Lookup(uint32(0), st); err != nil {
		return nil, fmt.Errorf("egress slots: %w", err)
	}
	return st, nil
}

func (s *egressSet) setStates(st []slotState) error {
	if err := s.slots.Put(uint32(0), st); err != nil {
		return fmt.Errorf("egress slots: %w", err)
	}
	return nil
}

// used counts the slots in use.
func (s *egressSet) used() (int, error) {
	st, err := s.states()
	return count(st, slotUsed), err
}

func count(st []slotState, states ...uint32) int {
	n := 0
	for _, x := range st {
		if slices.Contains(states, x.State) {
			n++
		}
	}
	return n
}

var errFull = errors.New("all slots of the egress programs are in use")

// take finds a slot and marks it used: an idle one (the longest idle),
// whose tables are refilled (reuse); else a gone one, once no program can
// read it any more (one wait for all gone slots); else an empty one, which
// gets tables. The caller holds the host lock.
func (s *egressSet) take() (slot uint32, reuse bool, err error) {
	st, err := s.states()
	if err != nil {
		return 0, false, err
	}
	pick := func() int {
		now := time.Now().UnixNano()
		best, gone, empty := -1, -1, -1
		for i, x := range st {
			switch {
			case x.State == slotIdle && (best < 0 || x.Since < st[best].Since):
				best = i
			case x.State == slotGone && gone < 0:
				gone = i
			case (x.State == slotEmpty || x.State == slotReadying && now-x.Since > int64(readyingStale)) && empty < 0:
				empty = i
			}
		}
		if best < 0 && gone >= 0 {
			if s.fence(st, gone) == nil {
				best = gone
			}
		}
		if best < 0 {
			best = empty
		}
		return best
	}
	best := pick()
	if best < 0 {
		return 0, false, fmt.Errorf("%w (%d)", errFull, len(st))
	}
	reuse = st[best].State == slotIdle
	st[best] = slotState{State: slotUsed}
	return uint32(best), reuse, s.setStates(st)
}

// fence waits until no program that may have read a gone slot runs, and
// marks the gone slots of st idle (not written back: the caller does).
// at is a gone slot, whose table the wait is made with.
func (s *egressSet) fence(st []slotState, at int) error {
	if err := s.barrier(uint32(at)); err != nil {
		return err
	}
	for i := range st {
		if st[i].State == slotGone {
			st[i].State = slotIdle
		}
	}
	return nil
}

// give marks a slot gone, its tables kept for a later container; past the
// budget, the tables of the longest gone or idle are taken out. It returns
// how many slots are still used. No cgroup's config may name the slot any
// more.
func (s *egressSet) give(slot uint32) (int, error) {
	st, err := s.states()
	if err != nil {
		return 0, err
	}
	now := time.Now().UnixNano()
	if int(slot) < len(st) {
		st[slot] = slotState{State: slotGone, Since: now}
	}
	var kept []int
	for i, x := range st {
		if x.State == slotIdle || x.State == slotGone {
			kept = append(kept, i)
		}
	}
	if keep := max(1, idleBudget/s.tableBytes()); len(kept) > keep {
		slices.SortFunc(kept, func(a, b int) int { return cmp.Compare(st[a].Since, st[b].Since) })
		for _, i := range kept[:len(kept)-keep] {
			if err := s.clear(uint32(i)); err != nil {
				return 0, err
			}
			st[i] = slotState{}
		}
	}
	return count(st, slotUsed), s.setStates(st)
}

// reserve marks empty slots as being readied, until n slots are idle, gone
// or being readied, and returns them with the gone slots. The caller holds
// the host lock.
func (s *egressSet) reserve(n int) (readying, gone []uint32, err error) {
	st, err := s.states()
	if err != nil {
		return nil, nil, err
	}
	have := count(st, slotIdle, slotGone, slotReadying)
	now := time.Now().UnixNano()
	for i := range st {
		switch {
		case st[i].State == slotGone:
			gone = append(gone, uint32(i))
		case st[i].State == slotEmpty && have < n:
			st[i] = slotState{State: slotReadying, Since: now}
			readying = append(readying, uint32(i))
			have++
		}
	}
	if len(readying) == 0 {
		return nil, gone, nil
	}
	return readying, gone, s.setStates(st)
}

// readied marks slots that now have tables, and gone slots no program
// reads any more, idle. The caller holds the host lock.
func (s *egressSet) readied(readied, fenced []uint32) error {
	st, err := s.states()
	if err != nil {
		return err
	}
	for _, i := range readied {
		if int(i) < len(st) && st[i].State == slotReadying {
			st[i] = slotState{State: slotIdle}
		}
	}
	for _, i := range fenced {
		if int(i) < len(st) && st[i].State == slotGone {
			st[i].State = slotIdle
		}
	}
	return s.setStates(st)
}

// barrier returns once every program that was running when it was called
// has ended: it writes a slot's IPv4 table back in its place, and the
// kernel waits for running programs (synchronize_rcu) after any update of
// a map of maps. Without tables there is nothing to wait for.
func (s *egressSet) barrier(slot uint32) error {
	var id ebpf.MapID
	if err := s.V4Tables.Lookup(slot, &id); errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	m, err := ebpf.NewMapFromID(id)
	if err != nil {
		return err
	}
	defer m.Close()
	return s.V4Tables.Put(slot, m)
}

// clear takes a slot's tables out (the caller marks it empty).
func (s *egressSet) clear(slot uint32) error {
	for _, m := range []*ebpf.Map{s.V4Tables, s.V6Tables, s.PortTables} {
		if err := m.Delete(slot); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}

// tableBytes is what a slot's tables take.
func (s *egressSet) tableBytes() int {
	return int(s.caps[0])*binary.Size(egressRun4{}) + int(s.caps[1])*binary.Size(egressRun6{}) + int(s.caps[2])*binary.Size(egressPortRun{})
}

// tables returns a container's tables for a slot, filled with c's runs:
// an idle slot's, refilled in place, or new ones put in the slot.
func (s *egressSet) tables(slot uint32, reuse bool, c *policy.Compiled) ([3]*ebpf.Map, error) {
	var t [3]*ebpf.Map
	outer := []*ebpf.Map{s.V4Tables, s.V6Tables, s.PortTables}
	var err error
	if reuse {
		for i, m := range outer {
			var id ebpf.MapID
			if err = m.Lookup(slot, &id); err == nil {
				t[i], err = ebpf.NewMapFromID(id)
			}
			if err != nil {
				closeAll(t[:])
				return t, fmt.Errorf("egress table %s of slot %d: %w", tablePins[i], slot, err)
			}
		}
		if err := fillTables(t, c); err != nil {
			closeAll(t[:])
			return t, err
		}
		return t, nil
	}
	cs, err := egressSpec()
	if err != nil {
		return t, err
	}
	for i, name := range []string{egressMapV4Tables, egressMapV6Tables, egressMapPortTables} {
		spec := cs.Maps[name].InnerMap.Copy()
		spec.MaxEntries = s.caps[i]
		if t[i], err = ebpf.NewMap(spec); err != nil {
			closeAll(t[:])
			return t, fmt.Errorf("egress table %s: %w", tablePins[i], err)
		}
	}
	if err := fillTables(t, c); err != nil {
		closeAll(t[:])
		return t, err
	}
	for i, m := range outer {
		if err := m.Put(slot, t[i]); err != nil {
			closeAll(t[:])
			return t, fmt.Errorf("egress table %s into slot %d: %w", tablePins[i], slot, err)
		}
	}
	return t, nil
}

// principals gives a slot the principal table c needs (nil if it needs
// none): the slot's own, emptied, or a new one put in the slot. It holds
// the files exe= names, with their program classes, and the overrides of
// c's dependent classes.
func (s *egressSet) principals(slot uint32, c *policy.Compiled) (*ebpf.Map, error) {
	if !c.HasPrincipals() {
		return nil, nil
	}
	var keys []egressPkey
	var vals []egressPval
	for id, f := range c.ProgramFiles {
		keys = append(keys, egressPkey{Kind: pkeyExe, A: id.Dev, B: id.Ino})
		vals = append(vals, egressPval{Sec: f.Stamp.Sec, Nsec: f.Stamp.Nsec, Class: f.Class})
	}
	for _, o := range c.Overrides {
		keys = append(keys, egressPkey{Kind: pkeyOverride, A: o.Class, B: uint64(o.Program)<<40 | uint64(o.UID)<<20 | uint64(o.GID)})
		vals = append(vals, egressPval{Class: o.Effective})
	}
	if len(keys) > int(egressNgLimitsPRINCIPALS_MAX) {
		return nil, fmt.Errorf("the policy's qualifiers need %d principal entries: at most %d", len(keys), egressNgLimitsPRINCIPALS_MAX)
	}
	var id ebpf.MapID
	var m *ebpf.Map
	err := s.PrincipalTables.Lookup(slot, &id)
	fresh := errors.Is(err, ebpf.ErrKeyNotExist)
	switch {
	case fresh:
		cs, err := egressSpec()
		if err != nil {
			return nil, err
		}
		if m, err = ebpf.NewMap(cs.Maps[egressMapPrincipalTables].InnerMap.Copy()); err != nil {
			return nil, fmt.Errorf("principal table: %w", err)
		}
	case err != nil:
		return nil, err
	default:
		if m, err = ebpf.NewMapFromID(id); err != nil {
			return nil, err
		}
		if err := emptyMap[egressPkey](m); err != nil {
			m.Close()
			return nil, err
		}
	}
	if err := putAll(m, keys, vals); err != nil {
		m.Close()
		return nil, fmt.Errorf("fill the principal table: %w", err)
	}
	if fresh {
		if err := s.PrincipalTables.Put(slot, m); err != nil {
			m.Close()
			return nil, fmt.Errorf("principal table into slot %d: %w", slot, err)
		}
	}
	return m, nil
}

// emptyMap deletes every entry of a hash map.
func emptyMap[K any](m *ebpf.Map) error {
	var keys []K
	var k K
	var v []byte
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	if err := it.Err(); err != nil {
		return err
	}
	if len(keys) == 0 {
		return nil
	}
	if _, err := m.BatchDelete(keys, nil); err == nil {
		return nil
	}
	for i := range keys {
		m.Delete(&keys[i])
	}
	return nil
}

// fillTables writes c's runs into a container's tables, each padded to its
// power of two with copies of its last entry (so that a search that lands
// there finds the last run). What lies beyond is never read: a search
// stays within 1 << steps.
func fillTables(t [3]*ebpf.Map, c *policy.Compiled) error {
	sizes := tableSizes(c)
	v4 := make([]egressRun4, sizes[0])
	for i := range v4 {
		r := padded(c.V4, i)
		v4[i] = egressRun4{Start: r.Start, Class: r.Class}
	}
	v6 := make([]egressRun6, sizes[1])
	for i := range v6 {
		r := padded(c.V6, i)
		v6[i] = egressRun6{Hi: r.Hi, Lo: r.Lo, Class: r.Class}
	}
	ports := make([]egressPortRun, sizes[2])
	for i := range ports {
		r := padded(c.Ports, i)
		proto := uint64(0) // TCP
		if r.Proto == policy.UDP.IPProto() {
			proto = 1
		}
		ports[i] = egressPortRun{Start: uint64(r.Class)<<17 | proto<<16 | uint64(r.Port), Verdict: verdictValue(r.Verdict)}
		if r.Nameable {
			ports[i].Verdict |= verdictNameable
		}
	}
	for i, err := range []error{putArray(t[0], v4), putArray(t[1], v6), putArray(t[2], ports)} {
		if err != nil {
			return fmt.Errorf("fill egress table %s: %w", tablePins[i], err)
		}
	}
	return nil
}

// configure makes a slot's tables the policy of a cgroup the programs are
// attached to: one write, which the kernel swaps in whole.
func (s *egressSet) configure(cgid uint64, slot uint32, c *policy.Compiled) error {
	gen := generation.Add(1)
	for gen == 0 {
		gen = generation.Add(1)
	}
	cfg := egressConfig{
		Cgroup: cgid, Gen: gen, Slot: slot, SocketVerdict: verdictValue(c.Sockets),
		V4Steps: uint8(steps(len(c.V4))), V6Steps: uint8(steps(len(c.V6))), PortSteps: uint8(steps(len(c.Ports))),
		IdSteps: uint8(steps(len(c.UIDRuns)) | steps(len(c.GIDRuns))<<4),
	}
	if c.Programs > 1 { // class 0 is every program no exe= names
		cfg.ReadsExe = 1
	}
	if c.Visibility&policy.VisFlows != 0 {
		cfg.Visibility = visFlows
	}
	var old egressConfig
	if s.Config.Lookup(cgid, &old) != nil || old.Names == 0 {
		old.Gen = 0 // nothing learned to carry, nothing named to forget
	}
	if len(c.Names) > 0 {
		cfg.Names = 1
		if err := s.putNames(cgid, gen, old.Gen, c); err != nil {
			s.forget(cgid, gen, true)
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
			s.forget(cgid, gen, true)
		}
		return fmt.Errorf("configure the egress programs: %w", err)
	}
	if err := s.nextEpoch(); err != nil {
		return err
	}
	if old.Gen != 0 { // the names and addresses of the policy it replaces
		return s.forget(cgid, gen, false)
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
	s.forget(cgid, 0, false)
}

// putNames writes the DNS names of a cgroup's policy and its resolvers,
// under the generation its config will have, and carries over what the
// policy it replaces (generation old, 0 if none) learned for the names they
// share: flows open to those addresses go on. The caller forgets what
// it wrote if it fails.
func (s *egressSet) putNames(cgid uint64, gen, old uint32, c *policy.Compiled) error {
	byPattern := map[string]int{}
	keys := make([]egressNameKey, len(c.Names))
	vals := make([]egressNameVal, len(c.Names))
	for i, n := range c.Names {
		byPattern[n.Pattern] = i
		k := egressNameKey{Cgroup: cgid, Gen: gen}
		name, wild := strings.CutPrefix(n.Pattern, "*.")
		if wild {
			k.Wild = 1
		}
		w, err := dnsanswer.Wire(name)
		if err != nil {
			return err
		}
		k.Len = uint8(len(w))
		copy(k.Name[:], w)
		keys[i], vals[i] = k, egressNameVal{Class: n.Class, Index: uint32(i)}
	}
	var rkeys []egressLearnedKey
	for _, a := range c.Resolvers {
		rkeys = append(rkeys, learnedKey(cgid, gen, a))
	}
	if err := putAll(s.DnsResolvers, rkeys, make([]uint8, len(rkeys))); err != nil {
		return fmt.Errorf("the policy's DNS resolvers (%d): %w", len(rkeys), err)
	}
	if old != 0 {
		if err := s.carry(cgid, gen, old, byPattern, vals); err != nil {
			return err
		}
	}
	if err := putAll(s.DnsNames, keys, vals); err != nil {
		return fmt.Errorf("the policy's DNS names (%d): %w", len(keys), err)
	}
	return nil
}

// carry copies the live addresses generation old of cgid learned for names
// that the new policy (its names by pattern, vals) has too, numbering them
// afresh in the names' rings (vals' Next).
func (s *egressSet) carry(cgid uint64, gen, old uint32, byPattern map[string]int, vals []egressNameVal) error {
	oldName := map[uint32]int{} // old index -> new index
	var nk egressNameKey
	var nv egressNameVal
	it := s.DnsNames.Iterate()
	for it.Next(&nk, &nv) {
		if nk.Cgroup == cgid && nk.Gen == old {
			if i, ok := byPattern[patternOf(&nk)]; ok {
				oldName[nv.Index] = i
			}
		}
	}
	if err := it.Err(); err != nil || len(oldName) == 0 {
		return err
	}
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts) // the programs' clock
	now := uint64(ts.Nano())
	var lk egressLearnedKey
	var lv egressLearnedVal
	var keys []egressLearnedKey
	var learned []egressLearnedVal
	var rkeys []egressRingKey
	var rvals []egressRingVal
	it = s.DnsLearned.Iterate()
	for it.Next(&lk, &lv) {
		if lk.Cgroup != cgid || lk.Gen != old {
			continue
		}
		var nv egressLearnedVal
		n := 0
		for _, sl := range lv.S {
			i, ok := oldName[sl.Index]
			if !ok || sl.Expires <= now || vals[i].Next >= dnsNameCap {
				continue
			}
			seq := uint32(vals[i].Next)
			vals[i].Next++
			nv.S[n].Expires, nv.S[n].Class, nv.S[n].Index, nv.S[n].Seq = sl.Expires, vals[i].Class, vals[i].Index, seq
			n++
			k := lk
			k.Gen = gen
			rkeys = append(rkeys, egressRingKey{Cgroup: cgid, Gen: gen, Index: vals[i].Index, Slot: seq})
			rvals = append(rvals, egressRingVal{K: k, Seq: seq})
		}
		if n > 0 {
			k := lk
			k.Gen = gen
			keys, learned = append(keys, k), append(learned, nv)
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	if err := putAll(s.DnsLearned, keys, learned); err != nil {
		return fmt.Errorf("carry %d learned addresses: %w", len(keys), err)
	}
	if err := putAll(s.DnsRings, rkeys, rvals); err != nil {
		return fmt.Errorf("carry %d learned addresses: %w", len(rkeys), err)
	}
	return nil
}

// patternOf is the rule's name a key of dns_names holds.
func patternOf(k *egressNameKey) string {
	var labels []string
	w := k.Name[:min(int(k.Len), len(k.Name))]
	for len(w) > 0 && int(w[0]) < len(w) {
		labels = append(labels, string(w[1:1+w[0]]))
		w = w[1+w[0]:]
	}
	p := strings.Join(labels, ".")
	if k.Wild != 0 {
		p = "*." + p
	}
	return p
}

func learnedKey(cgid uint64, gen uint32, a netip.Addr) egressLearnedKey {
	k := egressLearnedKey{Cgroup: cgid, Gen: gen, Family: unix.AF_INET}
	b := a.As16()
	if a.Is4() {
		k.Addr[3] = binary.NativeEndian.Uint32(b[12:])
	} else {
		k.Family = unix.AF_INET6
		for i := range k.Addr {
			k.Addr[i] = binary.NativeEndian.Uint32(b[4*i:])
		}
	}
	return k
}

// forget deletes a cgroup's DNS names, resolvers and learned addresses:
// those of generation gen if only, else those of every other generation.
func (s *egressSet) forget(cgid uint64, gen uint32, only bool) error {
	drop := func(c uint64, g uint32) bool { return c == cgid && (g == gen) == only }
	return errors.Join(
		dropKeys(s.DnsNames, func(k *egressNameKey) bool { return drop(k.Cgroup, k.Gen) }),
		dropKeys(s.DnsResolvers, func(k *egressLearnedKey) bool { return drop(k.Cgroup, k.Gen) }),
		dropKeys(s.DnsLearned, func(k *egressLearnedKey) bool { return drop(k.Cgroup, k.Gen) }),
		dropKeys(s.DnsRings, func(k *egressRingKey) bool { return drop(k.Cgroup, k.Gen) }))
}

// dropKeys deletes the entries of a hash map whose keys match.
func dropKeys[K any](m *ebpf.Map, match func(*K) bool) error {
	var k K
	var v []byte
	var keys []K
	it := m.Iterate()
	for it.Next(&k, &v) {
		if match(&k) {
			keys = append(keys, k)
		}
	}
	for i := range keys {
		if err := m.Delete(&keys[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return it.Err()
}

// attach attaches the programs to a cgroup and pins the links in dir;
// the links made so far are appended to *links even on failure. The
// cgroup's config is written as soon as the first program is on it (until
// then the programs deny everything).
func (s *egressSet) attach(cgroup, dir string, cgid uint64, slot uint32, c *policy.Compiled, links *[]link.Link) error {
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
			if err := s.configure(cgid, slot, c); err != nil {
				return err
			}
		}
	}
	return nil
}

// padded is a table's entry i: past its end, its last entry; of an empty
// table, the zero entry (which denies).
func padded[R any](rs []R, i int) R {
	var zero R
	if len(rs) == 0 {
		return zero
	}
	return rs[min(i, len(rs)-1)]
}

func closeAll(ms []*ebpf.Map) {
	for _, m := range ms {
		if m != nil {
			m.Close()
		}
	}
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

// putArray writes vals at indices 0.. of an array map, in one batch.
func putArray[V any](m *ebpf.Map, vals []V) error {
	keys := make([]uint32, len(vals))
	for i := range keys {
		keys[i] = uint32(i)
	}
	return putAll(m, keys, vals)
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
