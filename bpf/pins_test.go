package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/nriguard/nriguard/internal/testenv"
)

// An attachment pinned by a nriguard of another pin version (here version
// 1, whose meta began with its digest) is never read as this version's:
// Pinned and ReadRecord say which version it is, its owner is still known
// (so that its owner's reconcile can remove it when its container is gone),
// and detaching it removes it and the shared pins of its version that
// nothing uses any more, but not this version's.
func TestOtherVersionPins(t *testing.T) {
	skipBelowFloor(t)
	testenv.NeedRoot(t)
	root := fmt.Sprintf("/sys/fs/bpf/nriguard-pintest-%d", os.Getpid())
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := ensurePinRoot(root); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "old")
	for _, d := range []string{dir, filepath.Join(root, "_egress", "r1-1024-1024-1024-0"), filepath.Join(root, "_exec"), filepath.Join(root, dirEvents)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: metaV1Size, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	v1 := make([]byte, metaV1Size)
	binary.LittleEndian.PutUint64(v1[32:], 4242)             // cgroup
	binary.LittleEndian.PutUint64(v1[48:], uint64(OwnerNRI)) // owner
	if err := m.Put(uint32(0), v1); err != nil {
		t.Fatal(err)
	}
	if err := m.Pin(filepath.Join(dir, pinMeta)); err != nil {
		t.Fatal(err)
	}
	var other *ErrOtherVersion
	if _, err := Pinned(root, "old"); !errors.As(err, &other) || other.Version != 1 || other.Cgroup != 4242 {
		t.Fatalf("Pinned: %v, want version 1's attachment of cgroup 4242", err)
	}
	if _, err := ReadRecord(root, "old"); !errors.As(err, &other) {
		t.Errorf("ReadRecord: %v, want ErrOtherVersion", err)
	}
	if OwnerOf(root, "old") != OwnerNRI {
		t.Errorf("owner of version 1's attachment: %v, want the NRI plugin", OwnerOf(root, "old"))
	}
	if err := Detach(root, "old"); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"old", "_egress", "_exec"} {
		if _, err := os.Stat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("%s left after its last attachment of version 1 went: %v", gone, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, dirEvents)); err != nil {
		t.Errorf("this version's %s removed: %v", dirEvents, err)
	}
}
