package bpf

import (
	"errors"

	"github.com/cilium/ebpf"
)

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

func closeAll(ms []*ebpf.Map) {
	for _, m := range ms {
		if m != nil {
			m.Close()
		}
	}
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
