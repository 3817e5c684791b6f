package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

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
// BPF LSM where a BPF LSM program loads, the SIGKILL backend otherwise.
func ExecBackend() (string, error) { return backend() }

func probeBackend() (string, error) {
	switch v := os.Getenv(BackendEnv); v {
	case BackendLSM, BackendKill:
		return v, nil
	case "":
	default:
		return "", fmt.Errorf("%s=%q: expected %s or %s", BackendEnv, v, BackendLSM, BackendKill)
	}
	if err := tryLoad(execProgNgExecLsm); err == nil {
		return BackendLSM, nil
	}
	if err := tryLoad(execProgNgExecKill); err != nil {
		return "", fmt.Errorf("no exec backend on this kernel: BPF LSM and tp_btf/sched_process_exec both fail to load: %w", err)
	}
	return BackendKill, nil
}

func tryLoad(prog string) error {
	o, err := loadExecProgram(prog)
	if err != nil {
		return err
	}
	o.close()
	return nil
}

// execGlobalObjs are the host-wide exec program's parts: the program, the map
// from cgroup id to the container's rules, and the one to its event ring.
type execGlobalObjs struct {
	program         *ebpf.Program
	policies, rings *ebpf.Map
}

func (o *execGlobalObjs) close() {
	if o.program != nil {
		o.program.Close()
	}
	if o.policies != nil {
		o.policies.Close()
	}
	if o.rings != nil {
		o.rings.Close()
	}
}

func loadExecProgram(name string) (*execGlobalObjs, error) {
	cs, err := execSpec()
	if err != nil {
		return nil, err
	}
	cs = cs.Copy()
	for n := range cs.Programs {
		if n != name {
			delete(cs.Programs, n)
		}
	}
	coll, err := ebpf.NewCollection(cs)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", name, err)
	}
	o := &execGlobalObjs{program: coll.DetachProgram(name), policies: coll.DetachMap(execMapExecPolicies), rings: coll.DetachMap(execMapExecRings)}
	coll.Close()
	return o, nil
}

// The host-wide exec program lives under <pin root>/_exec.
const execGlobalDir = "_exec"

// ExecLock is the lock that serialises changes to host-wide exec programs
// between processes (the daemon, nriguard run, hooks). bpffs holds no
// regular files, so it lives in /run; one lock serves every pin root.
const ExecLock = "/run/nriguard/exec.lock"

func lockExec(string) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(ExecLock), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(ExecLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// openExecGlobal returns the pinned global maps, loading, attaching and
// pinning the program first if create is set and it is not there.
func openExecGlobal(root string, create bool, be string) (*execGlobalObjs, error) {
	dir := filepath.Join(root, execGlobalDir)
	pol, err1 := ebpf.LoadPinnedMap(filepath.Join(dir, "map_exec_policies"), nil)
	rings, err2 := ebpf.LoadPinnedMap(filepath.Join(dir, "map_exec_rings"), nil)
	_, err3 := os.Stat(filepath.Join(dir, "link_exec"))
	if err1 == nil && err2 == nil && err3 == nil {
		return &execGlobalObjs{policies: pol, rings: rings}, nil
	}
	(&execGlobalObjs{policies: pol, rings: rings}).close()
	if !create {
		return nil, os.ErrNotExist
	}
	os.RemoveAll(dir) // incomplete: start over
	var err error
	if be == "" {
		if be, err = ExecBackend(); err != nil {
			return nil, err
		}
	}
	prog := execProgNgExecKill
	if be == BackendLSM {
		prog = execProgNgExecLsm
	}
	o, err := loadExecProgram(prog)
	if err != nil {
		return nil, err
	}
	var lk link.Link
	if be == BackendLSM {
		lk, err = link.AttachLSM(link.LSMOptions{Program: o.program})
	} else {
		lk, err = link.AttachTracing(link.TracingOptions{Program: o.program})
	}
	if err != nil {
		o.close()
		return nil, fmt.Errorf("attach the %s exec program: %w", be, err)
	}
	defer lk.Close()
	tmp := filepath.Join(root, fmt.Sprintf("tmp-%d-%s-exec", os.Getpid(), randomHex()))
	err = os.Mkdir(tmp, 0o700)
	for _, pin := range []struct {
		name string
		obj  interface{ Pin(string) error }
	}{{"link_exec", lk}, {"map_exec_policies", o.policies}, {"map_exec_rings", o.rings}} {
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
	o.program.Close()
	o.program = nil
	return o, nil
}

// Keys of a container's rule map that hold settings, as in exec.c.
var (
	keySettings = execFileKey{Dev: 0}
	keyLost     = execFileKey{Dev: 1}
)

// newExecRules makes a container's rule map: settings, lost counter, files.
func newExecRules(t *policy.ExecTable, mode policy.Mode) (*ebpf.Map, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Name: "ng_exec_rules", Type: ebpf.Hash, KeySize: 16, ValueSize: 8,
		MaxEntries: uint32(len(t.Files) + 2),
	})
	if err != nil {
		return nil, fmt.Errorf("exec rule map: %w", err)
	}
	keys := []execFileKey{keySettings, keyLost}
	vals := []uint64{verdictOf(t.Default) | uint64(mode)<<8, 0}
	for id, a := range t.Files {
		if id.Ino == 0 {
			continue // cannot be a file, and would collide with the settings
		}
		keys = append(keys, execFileKey{Ino: id.Ino, Dev: id.Dev})
		vals = append(vals, verdictOf(a))
	}
	if err := putAll(m, keys, vals); err != nil {
		m.Close()
		return nil, fmt.Errorf("fill exec rule map: %w", err)
	}
	return m, nil
}

func verdictOf(a policy.Action) uint64 {
	if a == policy.Allow {
		return verdictAllow
	}
	return verdictDeny
}

// publishExec points the host-wide program at a container's rules and ring
// (ring first, so that its first denial has somewhere to go).
func publishExec(root, be string, cgid uint64, rules, ring *ebpf.Map) error {
	unlock, err := lockExec(root)
	if err != nil {
		return err
	}
	defer unlock()
	g, err := openExecGlobal(root, true, be)
	if err != nil {
		return err
	}
	defer g.close()
	if err := g.rings.Put(cgid, ring); err != nil {
		return fmt.Errorf("exec rings: %w", err)
	}
	if err := g.policies.Put(cgid, rules); err != nil {
		g.rings.Delete(cgid)
		return fmt.Errorf("exec policies: %w", err)
	}
	return nil
}

// withdrawExec removes a cgroup's entries, and the host-wide program when no
// container is left: unlabelled hosts pay nothing.
func withdrawExec(root string, cgid uint64) error {
	unlock, err := lockExec(root)
	if err != nil {
		return err
	}
	defer unlock()
	g, err := openExecGlobal(root, false, "")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	defer g.close()
	if err := g.policies.Delete(cgid); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	if err := g.rings.Delete(cgid); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	var k uint64
	if err := g.policies.NextKey(nil, &k); errors.Is(err, ebpf.ErrKeyNotExist) {
		return os.RemoveAll(filepath.Join(root, execGlobalDir))
	}
	return nil
}

// ProbeExecBackend reports whether a backend's program loads on this kernel.
func ProbeExecBackend(be string) error {
	switch be {
	case BackendLSM:
		return tryLoad(execProgNgExecLsm)
	case BackendKill:
		return tryLoad(execProgNgExecKill)
	}
	return fmt.Errorf("unknown exec backend %q", be)
}
