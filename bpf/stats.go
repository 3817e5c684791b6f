package bpf

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
)

// ReadySlots counts, over every copy of the egress programs under root, the
// slots whose tables stand ready for the next containers (the pool).
func ReadySlots(root string) (int, error) {
	root = pinRootOr(root)
	copies, err := os.ReadDir(filepath.Join(root, dirEgress))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range copies {
		s, err := openEgressSet(filepath.Join(root, dirEgress, c.Name()), false, [3]uint32{})
		if err != nil {
			continue // being removed
		}
		st, err := s.states()
		s.Close()
		if err != nil {
			return 0, err
		}
		n += count(st, slotIdle)
	}
	return n, nil
}

// ExecRules counts the entries of the host-wide exec table under root: of
// ExecRulesMax (0 when no container has exec rules).
func ExecRules(root string) (int, error) {
	m, err := ebpf.LoadPinnedMap(filepath.Join(pinRootOr(root), dirExec, execPins[0]), &ebpf.LoadPinOptions{ReadOnly: true})
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	defer m.Close()
	n := 0
	var k execRuleKey
	var v execRuleValue
	it := m.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	return n, it.Err()
}

// DNSStats reads, over every shared copy of the egress programs under
// root, the addresses learned for DNS names (entries of the learned
// table, expired ones until their place is taken) and how many live ones
// names let go because they had reached their cap (of the policies in
// force).
func DNSStats(root string) (learned, evicted int, err error) {
	root = pinRootOr(root)
	copies, err := os.ReadDir(filepath.Join(root, dirEgress))
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	} else if err != nil {
		return 0, 0, err
	}
	ro := &ebpf.LoadPinOptions{ReadOnly: true}
	for _, c := range copies {
		dir := filepath.Join(root, dirEgress, c.Name())
		names, err := ebpf.LoadPinnedMap(filepath.Join(dir, "map_dns_names"), ro)
		if err != nil {
			continue // being removed
		}
		var nk egressNameKey
		var nv egressNameVal
		for it := names.Iterate(); it.Next(&nk, &nv); {
			evicted += int(nv.Evicted)
		}
		names.Close()
		addrs, err := ebpf.LoadPinnedMap(filepath.Join(dir, "map_dns_learned"), ro)
		if err != nil {
			continue
		}
		var lk egressLearnedKey
		var lv egressLearnedVal
		for it := addrs.Iterate(); it.Next(&lk, &lv); {
			learned++
		}
		addrs.Close()
	}
	return learned, evicted, nil
}
