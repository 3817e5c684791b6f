package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/nriguard/nriguard/dnsanswer"
	"github.com/nriguard/nriguard/policy"
	"golang.org/x/sys/unix"
)

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

// forgetNames deletes a cgroup's DNS names, resolvers and learned addresses:
// those of generation gen if only, else those of every other generation.
func (s *egressSet) forgetNames(cgid uint64, gen uint32, only bool) error {
	drop := func(c uint64, g uint32) bool { return c == cgid && (g == gen) == only }
	return errors.Join(
		dropKeys(s.DnsNames, func(k *egressNameKey) bool { return drop(k.Cgroup, k.Gen) }),
		dropKeys(s.DnsResolvers, func(k *egressLearnedKey) bool { return drop(k.Cgroup, k.Gen) }),
		dropKeys(s.DnsLearned, func(k *egressLearnedKey) bool { return drop(k.Cgroup, k.Gen) }),
		dropKeys(s.DnsRings, func(k *egressRingKey) bool { return drop(k.Cgroup, k.Gen) }))
}
