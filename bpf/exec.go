package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/nriguard/nriguard/policy"
)

// Exec backends: how a denied exec is stopped on this kernel.
const (
	// BackendLSM refuses the exec with EPERM (lsm/bprm_check_security).
	BackendLSM = "lsm"
	// BackendKill kills the new program before its first instruction
	// (tp_btf/sched_process_exec + bpf_send_signal(SIGKILL)).
	BackendKill = "sigkill"
)

// BackendEnv forces a backend (tests, or an operator who knows better).
const BackendEnv = "NRIGUARD_EXEC_BACKEND"

var execSpec = sync.OnceValues(loadExec)

var backend = sync.OnceValues(probeBackend)

// ExecBackend returns the exec backend this kernel supports, probing once:
// BPF LSM where a BPF LSM program loads and BPF LSM is known to be active,
// the SIGKILL backend otherwise.
func ExecBackend() (string, error) { return backend() }

func probeBackend() (string, error) {
	switch v := os.Getenv(BackendEnv); v {
	case BackendLSM, BackendKill:
		return v, nil
	case "":
	default:
		return "", fmt.Errorf("%s=%q: expected %s or %s", BackendEnv, v, BackendLSM, BackendKill)
	}
	if err := ProbeExecBackend(BackendLSM); err == nil {
		return BackendLSM, nil
	}
	if err := tryLoad(execProgNgExecKill); err != nil {
		return "", fmt.Errorf("no exec backend on this kernel: BPF LSM and tp_btf/sched_process_exec both fail to load: %w", err)
	}
	return BackendKill, nil
}

func tryLoad(prog string) error {
	o, err := loadExecPrograms(prog)
	if err != nil {
		return err
	}
	o.close()
	return nil
}

// execGlobalObjs are the host-wide exec program's parts: the program, the
// table of every container's rules, the rings events go to with their lost
// counters, and the registry of those rings.
type execGlobalObjs struct {
	programs                   []*ebpf.Program // the backend's program; with BPF LSM, the write guard's too
	rules, rings, losts, users *ebpf.Map       // users: the registry (ringUse by index)
}

// backendPrograms are what each backend loads and attaches, in order, with
// the names their links are pinned under.
var backendPrograms = map[string][]struct{ prog, pin string }{
	BackendLSM:  {{execProgNgExecLsm, pinExecLink}, {execProgNgGuardOpen, "link_guard_open"}, {execProgNgGuardTruncate, "link_guard_truncate"}},
	BackendKill: {{execProgNgExecKill, pinExecLink}},
}

// ringUse is an entry of the ring registry: which ring an index of
// exec_rings holds, and how many policed cgroups' settings name it.
type ringUse struct {
	ID    uint32 // the ring's map id; 0: free
	Users uint32
}

func (o *execGlobalObjs) close() {
	for _, p := range o.programs {
		p.Close()
	}
	for _, m := range []*ebpf.Map{o.rules, o.rings, o.losts, o.users} {
		m.Close()
	}
}

// loadExecPrograms loads the named programs of exec.c, which share its
// maps.
func loadExecPrograms(names ...string) (*execGlobalObjs, error) {
	if err := KernelFloor(); err != nil {
		return nil, err
	}
	cs, err := execSpec()
	if err != nil {
		return nil, err
	}
	cs = cs.Copy()
	for n := range cs.Programs {
		if !slices.Contains(names, n) {
			delete(cs.Programs, n)
		}
	}
	coll, err := ebpf.NewCollection(cs)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", strings.Join(names, ", "), err)
	}
	o := &execGlobalObjs{rules: coll.DetachMap(execMapExecRules), rings: coll.DetachMap(execMapExecRings), losts: coll.DetachMap(execMapExecLosts)}
	for _, n := range names {
		o.programs = append(o.programs, coll.DetachProgram(n))
	}
	coll.Close()
	return o, nil
}

// openExecGlobal returns the pinned global maps, loading, attaching and
// pinning the program first if create is set and it is not there.
func openExecGlobal(root string, create bool, be string) (*execGlobalObjs, error) {
	dir := filepath.Join(root, dirExec)
	var ms [4]*ebpf.Map
	var err error
	for i, p := range execPins {
		if ms[i], err = ebpf.LoadPinnedMap(filepath.Join(dir, p), nil); err != nil {
			break
		}
	}
	if err == nil {
		_, err = os.Stat(filepath.Join(dir, pinExecLink))
	}
	o := &execGlobalObjs{rules: ms[0], rings: ms[1], losts: ms[2], users: ms[3]}
	if err == nil {
		return o, nil
	}
	o.close()
	if !create {
		return nil, os.ErrNotExist
	}
	os.RemoveAll(dir) // incomplete: start over
	if be == "" {
		if be, err = ExecBackend(); err != nil {
			return nil, err
		}
	}
	progs, ok := backendPrograms[be]
	if !ok {
		return nil, fmt.Errorf("unknown exec backend %q: expected %s or %s", be, BackendLSM, BackendKill)
	}
	var names []string
	for _, p := range progs {
		names = append(names, p.prog)
	}
	if o, err = loadExecPrograms(names...); err != nil {
		return nil, err
	}
	if o.users, err = ebpf.NewMap(&ebpf.MapSpec{Name: "ng_ring_users", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: maxRings}); err != nil {
		o.close()
		return nil, err
	}
	type pinned struct {
		name string
		obj  interface{ Pin(string) error }
	}
	var pins []pinned
	for i, p := range o.programs {
		var lk link.Link
		if be == BackendLSM {
			lk, err = link.AttachLSM(link.LSMOptions{Program: p})
		} else {
			lk, err = link.AttachTracing(link.TracingOptions{Program: p})
		}
		if err != nil { // (the links made so far go with their deferred closes)
			o.close()
			return nil, fmt.Errorf("attach the %s exec program %s: %w", be, progs[i].prog, err)
		}
		defer lk.Close()
		pins = append(pins, pinned{progs[i].pin, lk})
	}
	pins = append(pins, pinned{execPins[0], o.rules}, pinned{execPins[1], o.rings}, pinned{execPins[2], o.losts}, pinned{execPins[3], o.users})
	tmp := tmpDir(root, "exec")
	err = os.Mkdir(tmp, 0o700)
	for _, pin := range pins {
		if err == nil {
			err = pin.obj.Pin(filepath.Join(tmp, pin.name))
		}
	}
	if err == nil {
		err = os.Rename(tmp, dir)
	}
	if err != nil {
		os.RemoveAll(tmp)
		o.close()
		return nil, fmt.Errorf("pin the exec program: %w", err)
	}
	for _, p := range o.programs {
		p.Close()
	}
	o.programs = nil
	return o, nil
}

// registry reads the ring registry.
func (o *execGlobalObjs) registry() ([]ringUse, error) {
	keys, vals := make([]uint32, maxRings), make([]ringUse, maxRings)
	var c ebpf.MapBatchCursor
	n, err := o.users.BatchLookup(&c, keys, vals, nil)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil, fmt.Errorf("exec ring registry: %w", err)
	}
	out := make([]ringUse, maxRings)
	for i := range n {
		if keys[i] < maxRings {
			out[keys[i]] = vals[i]
		}
	}
	return out, nil
}

// useRing returns the index of a ring in exec_rings, putting it and its
// lost counters there first if it is not (the costly updates: the kernel
// waits for running programs), and counts one more user.
func (o *execGlobalObjs) useRing(ev EventMaps) (uint32, error) {
	id := ringID(ev.Ring)
	reg, err := o.registry()
	if err != nil {
		return 0, err
	}
	idx := uint32(0)
	for i := uint32(1); i < maxRings; i++ {
		if reg[i].ID == uint32(id) {
			idx = i
			break
		}
		if idx == 0 && reg[i].ID == 0 {
			idx = i
		}
	}
	if idx == 0 {
		return 0, fmt.Errorf("exec: all %d event rings are in use", maxRings-1)
	}
	u := reg[idx]
	if u.ID != uint32(id) {
		if err := o.losts.Put(idx, ev.Lost); err != nil {
			return 0, fmt.Errorf("exec lost counters: %w", err)
		}
		if err := o.rings.Put(idx, ev.Ring); err != nil {
			o.losts.Delete(idx)
			return 0, fmt.Errorf("exec rings: %w", err)
		}
		u = ringUse{ID: uint32(id)}
	}
	u.Users++
	return idx, o.users.Put(idx, u)
}

// dropRing counts one user less of a ring index; a ring nobody uses any
// more leaves exec_rings.
func (o *execGlobalObjs) dropRing(idx uint32) error {
	if idx == 0 || idx >= maxRings {
		return nil
	}
	var u ringUse
	if err := o.users.Lookup(idx, &u); err != nil {
		return err
	}
	if u.Users > 1 {
		u.Users--
		return o.users.Put(idx, u)
	}
	if err := o.rings.Delete(idx); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	if err := o.losts.Delete(idx); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return o.users.Put(idx, ringUse{})
}

// settingsKey is the key of the host table that holds a cgroup's settings.
func settingsKey(cgid uint64) execRuleKey { return execRuleKey{Cgroup: cgid} }

// ringOf is the index of the ring a cgroup's settings name.
func ringOf(settings execRuleValue) uint32 { return settings.Verdict >> ringShift & uint32(ringMask) }

// newExecRecord makes a container's own record of its rules, (dev, inode)
// -> verdict: what the host table gets, and what to take out of it again.
func newExecRecord(t *policy.ExecTable) (*ebpf.Map, error) {
	var keys []execFileKey
	var vals []execRuleValue
	for id, v := range t.Files {
		if id.Ino == 0 {
			continue // cannot be a file, and would collide with the settings
		}
		st := t.Stamps[id]
		cells := t.Conds[id]
		if len(cells) > maxCells {
			return nil, fmt.Errorf("the uid= and gid= exec rules cut the users of file %d:%d into %d cases: at most %d", id.Dev, id.Ino, len(cells), maxCells)
		}
		keys = append(keys, execFileKey{Ino: id.Ino, Dev: id.Dev})
		vals = append(vals, execRuleValue{CtimeSec: st.Sec, CtimeNsec: st.Nsec, Verdict: verdictValue(v) | uint32(len(cells))<<cellsShift})
		for i, c := range cells {
			keys = append(keys, execFileKey{Ino: id.Ino, Dev: id.Dev, Cell: uint32(i + 1)})
			vals = append(vals, execRuleValue{Verdict: verdictValue(c.Verdict), UidLo: c.UIDs.Lo, UidHi: c.UIDs.Hi, GidLo: c.GIDs.Lo, GidHi: c.GIDs.Hi})
		}
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Name: "ng_exec_rules", Type: ebpf.Hash, KeySize: uint32(binary.Size(execFileKey{})), ValueSize: uint32(binary.Size(execRuleValue{})),
		MaxEntries: uint32(max(1, len(keys))),
	})
	if err != nil {
		return nil, fmt.Errorf("exec rule map: %w", err)
	}
	if err := putAll(m, keys, vals); err != nil {
		m.Close()
		return nil, fmt.Errorf("fill exec rule map: %w", err)
	}
	return m, nil
}

// fileKeys reads a record's keys and values.
func fileKeys(rec *ebpf.Map) ([]execFileKey, []execRuleValue, error) {
	n := int(rec.MaxEntries())
	keys, vals := make([]execFileKey, n), make([]execRuleValue, n)
	var c ebpf.MapBatchCursor
	got, err := rec.BatchLookup(&c, keys, vals, nil)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil, nil, fmt.Errorf("read exec rules: %w", err)
	}
	return keys[:got], vals[:got], nil
}

// execTarget is where a cgroup's exec rules go: the host-wide exec set
// under a pin root (loaded for backend if it is not there), and the ring
// its events go to.
type execTarget struct {
	root, backend string
	cgid          uint64
	events        EventMaps
}

// publishExec puts a container's rules (rec, made from t) into the host
// table, then its
// settings, which make the program judge its cgroup: its files first, so
// that no allowed program is refused for a moment. Rules a replaced policy
// of the same cgroup had and this one has not are taken out after. The
// caller holds the host lock.
func publishExec(to execTarget, t *policy.ExecTable, execs bool, rec, old *ebpf.Map) error {
	cgid := to.cgid
	g, err := openExecGlobal(to.root, true, to.backend)
	if err != nil {
		return err
	}
	defer g.close()
	fk, fv, err := fileKeys(rec)
	if err != nil {
		return err
	}
	keys := make([]execRuleKey, len(fk))
	for i, k := range fk {
		keys[i] = execRuleKey{Cgroup: cgid, Ino: k.Ino, Dev: k.Dev, Cell: k.Cell}
	}
	if err := putAll(g.rules, keys, fv); err != nil {
		withdrawFiles(g, cgid, rec)
		return fmt.Errorf("exec rules: %w", err)
	}
	idx, err := g.useRing(to.events)
	if err != nil {
		withdrawFiles(g, cgid, rec)
		return err
	}
	var prev execRuleValue
	hadPrev := g.rules.Lookup(settingsKey(cgid), &prev) == nil
	settings := execRuleValue{Verdict: verdictValue(t.Default) | idx<<ringShift}
	if execs {
		settings.Verdict |= 1 << visExecsShift
	}
	if err := g.rules.Put(settingsKey(cgid), settings); err != nil {
		g.dropRing(idx)
		withdrawFiles(g, cgid, rec)
		return fmt.Errorf("exec settings: %w", err)
	}
	if hadPrev {
		g.dropRing(ringOf(prev))
	}
	if old != nil {
		// what the replaced policy allowed or denied and this one does not
		// name falls back to this one's default
		ok, _, _ := fileKeys(old)
		var stale []execRuleKey
		for _, k := range ok {
			var v execRuleValue
			if rec.Lookup(k, &v) != nil {
				stale = append(stale, execRuleKey{Cgroup: cgid, Ino: k.Ino, Dev: k.Dev, Cell: k.Cell})
			}
		}
		deleteAll(g.rules, stale)
	}
	return nil
}

// withdrawFiles takes a record's files of cgid out of the host table.
func withdrawFiles(g *execGlobalObjs, cgid uint64, rec *ebpf.Map) {
	fk, _, _ := fileKeys(rec)
	keys := make([]execRuleKey, len(fk))
	for i, k := range fk {
		keys[i] = execRuleKey{Cgroup: cgid, Ino: k.Ino, Dev: k.Dev, Cell: k.Cell}
	}
	deleteAll(g.rules, keys)
}

func deleteAll(m *ebpf.Map, keys []execRuleKey) {
	if len(keys) == 0 {
		return
	}
	if _, err := m.BatchDelete(keys, nil); err == nil {
		return
	}
	for _, k := range keys {
		m.Delete(k)
	}
}

// withdrawExec stops judging a cgroup (its settings go first) and takes its
// rules out, and removes the host-wide program when no container is left:
// unlabelled hosts pay nothing. With keep (a daemon, which removes it after
// a while: RemoveIdle), the program and the ring stay for the next
// container. rec may be nil if the record is lost; the files then stay
// until the set goes. The caller holds the host lock.
func withdrawExec(root string, cgid uint64, rec *ebpf.Map, keep bool) error {
	g, err := openExecGlobal(root, false, "")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	defer g.close()
	var settings execRuleValue
	if err := g.rules.Lookup(settingsKey(cgid), &settings); err != nil {
		return nil // not published (or withdrawn already)
	}
	if err := g.rules.Delete(settingsKey(cgid)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	if rec != nil {
		withdrawFiles(g, cgid, rec)
	}
	idx := ringOf(settings)
	if reg, err := g.registry(); err == nil && idx < maxRings && reg[idx].Users <= 1 && others(reg, idx) == 0 {
		u := reg[idx]
		if keep {
			// keep the ring in exec_rings too: taking it out is the costly
			// update, and the daemon's next container writes to it again
			u.Users = 0
			return g.users.Put(idx, u)
		}
		// the last policed cgroup: the whole set goes, rings and all,
		// without a costly update
		return os.RemoveAll(filepath.Join(root, dirExec))
	}
	return g.dropRing(idx)
}

// removeIdleExec removes the host-wide exec program and its maps under root
// if no container has exec rules (a daemon that kept them, calls it after a
// while without any), and reports whether it did. The caller holds the host
// lock.
func removeIdleExec(root string) (bool, error) {
	g, err := openExecGlobal(root, false, "")
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	defer g.close()
	reg, err := g.registry()
	if err != nil || others(reg, 0) != 0 {
		return false, err
	}
	return true, os.RemoveAll(filepath.Join(root, dirExec))
}

// others counts the users of the rings in reg but idx (0: of all, as index
// 0 is never a ring).
func others(reg []ringUse, idx uint32) uint32 {
	var n uint32
	for i, u := range reg {
		if uint32(i) != idx {
			n += u.Users
		}
	}
	return n
}

// ProbeExecBackend reports whether a backend can enforce exec rules on
// this kernel: whether its program loads, and for BPF LSM whether LSM
// programs run here at all (lsmActive).
func ProbeExecBackend(be string) error {
	switch be {
	case BackendLSM:
		if err := tryLoad(execProgNgExecLsm); err != nil {
			return err
		}
		return lsmActive()
	case BackendKill:
		return tryLoad(execProgNgExecKill)
	}
	return fmt.Errorf("unknown exec backend %q", be)
}

// withdrawPinned takes the exec rules recorded in an attachment's directory
// for cgid out of the host table. The caller holds the host lock.
func withdrawPinned(root, dir string, cgid uint64, keep bool) error {
	rec, err := ebpf.LoadPinnedMap(filepath.Join(dir, pinExecRecord), nil)
	if err == nil {
		defer rec.Close()
	} else {
		rec = nil
	}
	return withdrawExec(root, cgid, rec, keep)
}
