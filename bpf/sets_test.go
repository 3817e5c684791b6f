package bpf

import (
	"encoding/binary"
	"fmt"
	"os"
	"reflect"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/nriguard/nriguard/cgroup"
	"github.com/nriguard/nriguard/internal/testenv"
	"github.com/nriguard/nriguard/policy"
)

// Programs on a cgroup whose config is not written yet (or was cleared)
// deny everything: between the first attach and the loader's write, and
// after a detach, nothing is let through on stale settings.
func TestUnconfiguredCgroupIsDenied(t *testing.T) {
	skipBelowFloor(t)
	testenv.NeedRoot(t)
	s, err := loadEgressSet(nil, [3]uint32{TableCap, TableCap, TableCap}, false, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cg := testenv.Cgroup(t)
	for _, l := range egressLinks[1:] { // not sock_create: the probe needs its socket
		lk, err := link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: l.attach, Program: *l.prog(&s.egressPrograms)})
		if err != nil {
			t.Fatal(err)
		}
		defer lk.Close()
	}
	ops := []string{"tcp:10.1.2.3:8080", "udpsend:10.1.2.3:53"}
	if got := testenv.Probe(t, testenv.NetNS(t), cg, "", ops...); got[0] != "EPERM" || got[1] != "EPERM" {
		t.Errorf("no config: got %q, want EPERM for both", got)
	}
	// configured with a slot whose tables are not there: denied too
	cgid, err := cgroup.ID(cg)
	if err != nil {
		t.Fatal(err)
	}
	c := policy.Compile(policy.Enforce)
	if err := s.configure(cgid, 3, c, policy.VisOff); err != nil {
		t.Fatal(err)
	}
	if got := testenv.Probe(t, testenv.NetNS(t), cg, "", ops...); got[0] != "EPERM" || got[1] != "EPERM" {
		t.Errorf("an empty slot: got %q, want EPERM for both", got)
	}
	e, _ := policy.ParseEgress("test", "allow tcp 10.1.2.3:8080; allow udp 10.1.2.3:53")
	c = policy.Compile(policy.Enforce, e)
	if slot, reuse, err := s.takeSlot(); err != nil || slot != 0 || reuse {
		t.Fatalf("take: slot %d, reuse %v, %v; want slot 0, new", slot, reuse, err)
	}
	tables, err := s.tables(0, false, c)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(tables[:])
	// slot 3 has no tables: still denied
	if err := s.configure(cgid, 3, c, policy.VisOff); err != nil {
		t.Fatal(err)
	}
	if got := testenv.Probe(t, testenv.NetNS(t), cg, "", ops...); got[0] != "EPERM" || got[1] != "EPERM" {
		t.Errorf("configured with a slot without tables: got %q, want EPERM for both", got)
	}
	if err := s.configure(cgid, 0, c, policy.VisOff); err != nil {
		t.Fatal(err)
	}
	if got := testenv.Probe(t, testenv.NetNS(t), cg, "", ops...); got[0] != "ok" || got[1] != "ok" {
		t.Errorf("configured: got %q, want ok for both", got)
	}
	s.unconfigure(cgid, 0)
	if got := testenv.Probe(t, testenv.NetNS(t), cg, "", ops...); got[0] != "EPERM" || got[1] != "EPERM" {
		t.Errorf("cleared: got %q, want EPERM for both", got)
	}
}

// A slot given up keeps its tables for a later container, which refills
// them in place once no program reads them any more. Tables kept past the
// budget are taken out.
func TestSlotsReused(t *testing.T) {
	skipBelowFloor(t)
	testenv.NeedRoot(t)
	big := [3]uint32{1 << 17, 1 << 17, 1 << 17} // 6 MiB of tables a slot: the budget keeps one idle
	s, err := loadEgressSet(nil, big, false, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := policy.Compile(policy.Enforce)
	take := func(wantReuse bool) uint32 {
		t.Helper()
		slot, reuse, err := s.takeSlot()
		if err != nil {
			t.Fatal(err)
		}
		if reuse != wantReuse {
			t.Errorf("slot %d: reuse %v, want %v", slot, reuse, wantReuse)
		}
		tables, err := s.tables(slot, reuse, c)
		if err != nil {
			t.Fatal(err)
		}
		closeAll(tables[:])
		return slot
	}
	give := func(slot uint32) {
		t.Helper()
		if _, err := s.giveBack(slot); err != nil {
			t.Fatal(err)
		}
	}
	a, b := take(false), take(false)
	give(a)
	if st, _ := s.states(); st[a].State != slotGone {
		t.Errorf("a slot given up is %d, want gone (%d): a program may still read it", st[a].State, slotGone)
	}
	if c := take(true); c != a {
		t.Errorf("took slot %d, want %d, the gone one once no program reads it", c, a)
	}
	if c := take(false); c == a || c == b {
		t.Errorf("took slot %d with %d and %d in use, want the third", c, a, b)
	}
	if _, _, err := s.takeSlot(); err == nil {
		t.Error("took a slot when all were in use")
	}
	if n, _ := s.used(); n != 3 {
		t.Errorf("%d slots used, want 3", n)
	}
	// all three go; past the budget, the older idle tables are taken out
	for _, slot := range []uint32{0, 1, 2} {
		give(slot)
	}
	st, _ := s.states()
	idle, empty := 0, 0
	for _, x := range st {
		switch x.State {
		case slotIdle, slotGone:
			idle++
		case slotEmpty:
			empty++
		}
	}
	var id ebpf.MapID
	if idle != 1 || empty != 2 || s.V4Tables.Lookup(uint32(2), &id) != nil {
		t.Errorf("after all went: %d idle, %d empty, slot 2's tables kept: %v; want 1, 2, kept", idle, empty, s.V4Tables.Lookup(uint32(2), &id))
	}
}

// A copy full, the next container of its class gets another copy.
func TestFullCopyGetsAnother(t *testing.T) {
	skipBelowFloor(t)
	testenv.NeedRoot(t)
	defer func(n uint32) { setSlots = n }(setSlots)
	setSlots = 2
	ev, err := NewEventMaps()
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	root := fmt.Sprintf("/sys/fs/bpf/nriguard-full-%d", os.Getpid())
	defer os.Remove(root)
	e, _ := policy.ParseEgress("test", "allow tcp 10.1.2.3:8080")
	c := policy.Compile(policy.Enforce, e)
	var copies []uint32
	for i := range 3 {
		cg := testenv.Cgroup(t)
		id := fmt.Sprintf("full-%d", i)
		a, err := Attach(Spec{ID: id, Cgroup: cg, Egress: c}, &Options{PinRoot: root, Events: ev})
		if err != nil {
			t.Fatal(err)
		}
		defer Detach(root, id)
		m, _ := readMeta(a.Dir)
		a.Close()
		copies = append(copies, m.Copy)
		if got := testenv.Probe(t, testenv.NetNS(t), cg, "", "tcp:10.1.2.3:8080", "tcp:10.1.2.3:8081"); got[0] != "ok" || got[1] != "EPERM" {
			t.Errorf("container %d: got %q, want ok, EPERM", i, got)
		}
	}
	if copies[0] != 0 || copies[1] != 0 || copies[2] != 1 {
		t.Errorf("copies %v, want 0, 0, 1", copies)
	}
}

// decodeAs reads records by copying them into their Go twins: that is
// binary.Decode's reading only if the twins have C's layout, padding and
// all. Random bytes decode the same both ways.
func TestDecodeAsLayout(t *testing.T) {
	raw := make([]byte, 512)
	for i := range raw {
		raw[i] = byte(i*7 + 3)
	}
	check := func(name string, a, b any, na, nb int, err error) {
		t.Helper()
		if err != nil || na != nb || !reflect.DeepEqual(a, b) {
			t.Errorf("%s: decodeAs %+v (%d bytes), binary.Decode %+v (%d bytes, %v)", name, a, na, b, nb, err)
		}
	}
	var h1, h2 egressEventHdr
	n1, _ := decodeAs(raw, &h1)
	n2, err := binary.Decode(raw, binary.NativeEndian, &h2)
	check("event_hdr", h1, h2, n1, n2, err)
	var f1, f2 egressFlowEvent
	n1, _ = decodeAs(raw, &f1)
	n2, err = binary.Decode(raw, binary.NativeEndian, &f2)
	check("flow_event", f1, f2, n1, n2, err)
	var x1, x2 egressExecEvent
	n1, _ = decodeAs(raw, &x1)
	n2, err = binary.Decode(raw, binary.NativeEndian, &x2)
	check("exec_event", x1, x2, n1, n2, err)
	if _, err := decodeAs(raw[:10], &f1); err == nil {
		t.Error("a short record decoded")
	}
}
