package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/nriguard/nriguard/policy"
)

// TableCap is the capacity of each table in the default size class: the
// tables of every policy with up to 1,024 runs of each kind live in one
// copy of the programs. A larger policy gets (or shares) a copy of its
// class: each table padded to its power of two.
const TableCap = 1024

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
		keys = append(keys, egressPkey{Kind: pkeyOverride, A: o.Class, B: principalKey(o.PrincipalClass)})
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
		ports[i] = egressPortRun{Start: uint64(r.Class)<<portClassShift | proto<<portProtoShift | uint64(r.Port), Verdict: verdictValue(r.Verdict)}
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

// padded is a table's entry i: past its end, its last entry; of an empty
// table, the zero entry (which denies).
func padded[R any](rs []R, i int) R {
	var zero R
	if len(rs) == 0 {
		return zero
	}
	return rs[min(i, len(rs)-1)]
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
