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
