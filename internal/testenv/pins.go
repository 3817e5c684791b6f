package testenv

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
)

// PinV1Meta pins, as attachment id under root, the meta a nriguard of pin
// version 1 pinned (80 bytes that began with the digest, then the cgroup
// id at 32 and the owner at 48: bpf's metaV1Size): an attachment of
// another pin version, as an upgrade finds it.
func PinV1Meta(t testing.TB, root, id string, cgroup, owner uint64) {
	t.Helper()
	NeedRoot(t)
	dir := filepath.Join(root, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 80, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	v1 := make([]byte, 80)
	binary.LittleEndian.PutUint64(v1[32:], cgroup)
	binary.LittleEndian.PutUint64(v1[48:], owner)
	if err := m.Put(uint32(0), v1); err != nil {
		t.Fatal(err)
	}
	if err := m.Pin(filepath.Join(dir, "meta")); err != nil {
		t.Fatal(err)
	}
}
