package bpf

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/nriguard/nriguard/cgroup"
)

// Feature is something of the kernel one of nriguard's guarantees rests
// on: whether this node has it, and what holds (or does not) because of
// it, in words.
type Feature struct {
	Name      string `json:"name"` // stable: a metric label and a JSON key
	Present   bool   `json:"present"`
	Detail    string `json:"detail,omitempty"` // what was found, or why it is missing
	Guarantee string `json:"guarantee"`
}

// NodeFeatures is what this node's kernel offers nriguard.
type NodeFeatures struct {
	Kernel   string `json:"kernel"`    // uname's release
	CgroupV2 string `json:"cgroup_v2"` // the v2 hierarchy's mount point ("": none)
	Hybrid   bool   `json:"hybrid"`    // v1 controllers mounted beside it
	// ExecBackend is what exec rules are enforced with here (BackendLSM or
	// BackendKill; "": none), ExecGuarantee what that means.
	ExecBackend   string    `json:"exec_backend"`
	ExecGuarantee string    `json:"exec_guarantee"`
	Features      []Feature `json:"features"`
}

// A featureProbe finds one feature. A kernel fallback, or a feature a new
// guarantee rests on, is one more entry in featureProbes.
type featureProbe struct {
	name string
	// check says whether the node has it, and what was found or why not;
	// an error, that it cannot tell.
	check func(*probing) (bool, string, error)
	// the guarantee with it, without, and when it is not known (""
	// for a feature check always tells)
	with, without, unknown string
}

// probing is what several probes share, found once.
type probing struct {
	egress func() (egress, names error) // whether the egress programs load
	pinned bool                         // a copy of them is pinned: they loaded
	lsms   []string                     // the active LSMs (nil: unknown)
	lsmErr error
}

// loaded says how the egress programs were seen to load.
func (p *probing) loaded() string {
	if p.pinned {
		return "loaded (a copy is pinned)"
	}
	return "load"
}

// What each guarantee rests on (docs/install.md, "Watching": nriguard
// status prints them).
var featureProbes = []featureProbe{
	{
		name: "kernel_floor",
		check: func(*probing) (bool, string, error) {
			if err := KernelFloor(); err != nil {
				return false, err.Error(), nil
			}
			names := make([]string, len(floorProbes))
			for i, f := range floorProbes {
				names[i] = f.what
			}
			return true, strings.Join(names, ", "), nil
		},
		with:    "the helpers nriguard's programs call are there",
		without: "nriguard's programs cannot load: a container with a policy is refused, none runs unprotected",
	},
	{
		name: "cgroup_v2",
		check: func(*probing) (bool, string, error) {
			l, err := cgroup.CurrentLayout()
			if err != nil {
				return false, err.Error(), nil
			}
			return true, l.String(), nil
		},
		with:    "a container's policy is attached to its cgroup v2 directory and holds every process in it and in its child cgroups (a child cannot override it)",
		without: "no policy can be attached: every attach fails, and the container is refused",
	},
	{
		name: "egress_hooks",
		check: func(p *probing) (bool, string, error) {
			if err, _ := p.egress(); err != nil {
				return false, err.Error(), nil
			}
			return true, "cgroup sock_create, connect4/6, sendmsg4/6, sock_release and cgroup_skb/egress programs " + p.loaded(), nil
		},
		with:    "a denied connect, sendto/sendmsg or socket() fails with EPERM before a packet exists; the packet path (cgroup_skb/egress) stops packets whose real destination is not the one judged",
		without: "no egress policy can be attached: a container with egress rules is refused",
	},
	{
		name: "dns_learning",
		check: func(p *probing) (bool, string, error) {
			switch egress, names := p.egress(); {
			case egress != nil && names == nil:
				return false, "it loads, but the egress programs it needs do not", nil
			case names != nil:
				return false, names.Error(), nil
			}
			return true, "the cgroup_skb/ingress program " + p.loaded(), nil
		},
		with: "rules by DNS name: the addresses are learned in the kernel (cgroup_skb/ingress) from the answers the container's own lookups get from the resolver its policy names, before the program that asked reads them",
		// (it is one object with the egress programs: without it they do not load either)
		without: "rules by DNS name cannot be enforced, and the egress programs, loaded with it, cannot be attached: a container with egress rules is refused",
	},
	{
		name: "btf",
		check: func(*probing) (bool, string, error) {
			if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
				return false, err.Error(), nil
			}
			return true, "/sys/kernel/btf/vmlinux", nil
		},
		with:    "the exec program reads the file being executed from the kernel's own structures (CO-RE against the kernel's BTF)",
		without: "exec rules cannot be enforced: the exec program does not load, and a container with exec rules is refused",
	},
	{
		name: "bpf_lsm",
		check: func(p *probing) (bool, string, error) {
			if p.lsmErr != nil {
				return false, "", p.lsmErr
			}
			return slices.Contains(p.lsms, "bpf"), "active LSMs: " + strings.Join(p.lsms, ","), nil
		},
		with:    "BPF LSM programs run at the kernel's security hooks",
		without: "BPF LSM programs never run here, even where they load: exec denials cannot fail with EPERM",
		unknown: "whether BPF LSM programs run here is not known: the exec backend is chosen by what loads",
	},
	{
		name: "exec_lsm",
		check: func(*probing) (bool, string, error) {
			if err := ProbeExecBackend(BackendLSM); err != nil {
				return false, err.Error(), nil
			}
			return true, "lsm/bprm_check_security loads, and BPF LSM is active", nil
		},
		with:    "a denied exec fails with EPERM: the program never runs",
		without: "exec rules cannot make execve fail with EPERM",
	},
	{
		name: "exec_sigkill",
		check: func(*probing) (bool, string, error) {
			if err := ProbeExecBackend(BackendKill); err != nil {
				return false, err.Error(), nil
			}
			return true, "tp_btf/sched_process_exec with bpf_send_signal loads", nil
		},
		with:    "a denied program is killed (SIGKILL) once execve has succeeded, before its first instruction: its parent sees it die of signal 9",
		without: "exec rules cannot be enforced by killing the program",
	},
}

// execGuarantees say what each exec backend guarantees.
var execGuarantees = map[string]string{
	BackendLSM:  "lsm (lsm/bprm_check_security): a denied exec fails with EPERM; the program never runs",
	BackendKill: "sigkill (tp_btf/sched_process_exec): a denied program is killed once execve has succeeded, before its first instruction",
	"":          "none: exec rules cannot be enforced on this kernel, and a container with exec rules is refused",
}

// Features probes this node, loading (and unloading) nriguard's programs
// to see which load: it needs root. A copy of the egress programs pinned
// under pinRoot has loaded already (loading one takes seconds of the
// verifier's time on some kernels): it is not loaded again. What one probe
// cannot find is said in its Detail; Features itself does not fail.
func Features(pinRoot string) NodeFeatures {
	var n NodeFeatures
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		n.Kernel = string(bytes.TrimRight(u.Release[:], "\x00"))
	}
	if l, err := cgroup.CurrentLayout(); err == nil {
		n.CgroupV2, n.Hybrid = l.V2, l.Hybrid()
	}
	p := &probing{pinned: pinnedCopy(pinRootOr(pinRoot))}
	p.egress = sync.OnceValues(func() (error, error) {
		if p.pinned {
			return nil, nil
		}
		return probeEgress()
	})
	p.lsms, p.lsmErr = activeLSMs()
	for _, fp := range featureProbes {
		f := Feature{Name: fp.name, Guarantee: fp.without}
		present, detail, err := fp.check(p)
		switch {
		case err != nil:
			f.Detail, f.Guarantee = "unknown: "+err.Error(), fp.unknown
		case present:
			f.Present, f.Detail, f.Guarantee = true, detail, fp.with
		default:
			f.Detail = detail
		}
		n.Features = append(n.Features, f)
	}
	n.ExecBackend, _ = ExecBackend()
	n.ExecGuarantee = execGuarantees[n.ExecBackend]
	return n
}

// probeEgress loads a copy of the egress programs (one slot, the default
// size class) and unloads it. If it does not load, it loads the DNS
// program and the others apart, to say which fails.
func probeEgress() (egress, names error) {
	if err := KernelFloor(); err != nil {
		return err, err
	}
	load := func(keep func(string) bool) error {
		cs, err := sizedEgressSpec([3]uint32{TableCap, TableCap, TableCap}, true, 1)
		if err != nil {
			return err
		}
		for name := range cs.Programs {
			if !keep(name) {
				delete(cs.Programs, name)
			}
		}
		coll, err := ebpf.NewCollection(cs)
		if err != nil {
			return fmt.Errorf("load egress programs: %w", err)
		}
		coll.Close()
		return nil
	}
	if err := load(func(string) bool { return true }); err == nil {
		return nil, nil
	}
	return load(func(n string) bool { return n != egressProgNgSkbIngress }), load(func(n string) bool { return n == egressProgNgSkbIngress })
}

// pinnedCopy tells whether a complete copy of this version's egress
// programs is pinned under root: they loaded on this kernel.
func pinnedCopy(root string) bool {
	copies, _ := os.ReadDir(filepath.Join(root, dirEgress))
	for _, c := range copies {
		complete := true
		for _, l := range egressLinks {
			if _, err := os.Stat(filepath.Join(root, dirEgress, c.Name(), progPin(l.pin))); err != nil {
				complete = false
				break
			}
		}
		if complete {
			return true
		}
	}
	return false
}
