package seccomp

import (
	"encoding/binary"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	ctrdseccomp "github.com/containerd/containerd/v2/contrib/seccomp"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

func allows(p *rspec.LinuxSeccomp, name string, arg0 uint64) bool { return Allows(p, name, arg0, 1) }

func TestRestrict(t *testing.T) {
	allowAll := rspec.LinuxSyscall{Names: []string{"socket", "socketpair", "connect", "io_uring_setup"}, Action: rspec.ActAllow}
	arg := func(i uint, v uint64, op rspec.LinuxSeccompOperator) rspec.LinuxSeccompArg {
		return rspec.LinuxSeccompArg{Index: i, Value: v, Op: op}
	}
	cases := map[string]*rspec.LinuxSeccomp{
		"unconfined":            nil,
		"containerd's default":  ctrdseccomp.DefaultProfile(&rspec.Spec{Process: &rspec.Process{Capabilities: &rspec.LinuxCapabilities{}}}),
		"default allow":         {DefaultAction: rspec.ActAllow, Syscalls: []rspec.LinuxSyscall{allowAll}},
		"default errno, all":    {DefaultAction: rspec.ActErrno, Syscalls: []rspec.LinuxSyscall{allowAll}},
		"a type condition only": {DefaultAction: rspec.ActErrno, Syscalls: []rspec.LinuxSyscall{{Names: []string{"socket"}, Action: rspec.ActAllow, Args: []rspec.LinuxSeccompArg{arg(1, 3, rspec.OpNotEqual)}}}},
		"older containerd (socket != AF_VSOCK)": {DefaultAction: rspec.ActErrno, Syscalls: []rspec.LinuxSyscall{
			{Names: []string{"socket", "socketcall"}, Action: rspec.ActAllow, Args: []rspec.LinuxSeccompArg{arg(0, 40, rspec.OpNotEqual)}}}},
		"ranges and log": {DefaultAction: rspec.ActErrno, Syscalls: []rspec.LinuxSyscall{
			{Names: []string{"socket"}, Action: rspec.ActAllow, Args: []rspec.LinuxSeccompArg{arg(0, 9, rspec.OpLessEqual)}},
			{Names: []string{"socket"}, Action: rspec.ActLog, Args: []rspec.LinuxSeccompArg{arg(0, 12, rspec.OpGreaterEqual)}},
		}},
		"masked": {DefaultAction: rspec.ActErrno, Syscalls: []rspec.LinuxSyscall{
			{Names: []string{"socket"}, Action: rspec.ActAllow, Args: []rspec.LinuxSeccompArg{{Index: 0, Value: 0x2, ValueTwo: 0x2, Op: rspec.OpMaskedEqual}}}}},
		"two comparisons on one argument (OR)": {DefaultAction: rspec.ActErrno, Syscalls: []rspec.LinuxSyscall{
			{Names: []string{"socket"}, Action: rspec.ActAllow, Args: []rspec.LinuxSeccompArg{arg(0, 2, rspec.OpEqualTo), arg(0, 17, rspec.OpEqualTo)}}}},
		"refusing rules kept": {DefaultAction: rspec.ActAllow, Syscalls: []rspec.LinuxSyscall{
			{Names: []string{"socket"}, Action: rspec.ActErrno, Args: []rspec.LinuxSeccompArg{arg(0, 10, rspec.OpEqualTo)}}}},
	}
	for name, before := range cases {
		after := Restrict(before)
		for _, call := range []string{"socket", "socketpair"} {
			for domain := uint64(0); domain <= 50; domain++ {
				for _, typ := range socketTypes() {
					want := Allows(before, call, domain, typ) && SocketAllowed(domain, typ)
					if got := Allows(after, call, domain, typ); got != want {
						t.Errorf("%s: %s(%d, %#x): after %v, want %v", name, call, domain, typ, got, want)
					}
				}
			}
			if allows(after, call, 1<<32+17) || allows(after, call, 1<<63) {
				t.Errorf("%s: %s with a huge domain is allowed", name, call)
			}
		}
		for _, call := range []string{"io_uring_setup", "socketcall"} {
			if allows(after, call, 0) {
				t.Errorf("%s: %s allowed", name, call)
			}
		}
		for _, call := range []string{"connect", "read", "bind"} {
			if allows(after, call, 3) != allows(before, call, 3) {
				t.Errorf("%s: %s changed", name, call)
			}
		}
		for _, r := range after.Syscalls {
			if r.ErrnoRet != nil && (before == nil || !slices.ContainsFunc(before.Syscalls, func(b rspec.LinuxSyscall) bool { return b.ErrnoRet == r.ErrnoRet })) {
				t.Errorf("%s: a rule of nriguard's sets ErrnoRet (CRI-O's NRI crashes on it): %+v", name, r)
			}
		}
	}
	// the premise: containerd's default lets containers make AF_PACKET sockets
	if !allows(cases["containerd's default"], "socket", 17) {
		t.Fatal("test premise: containerd's default profile allows AF_PACKET")
	}
	for name, p := range cases {
		if err := Check(Restrict(p)); err != nil {
			t.Errorf("%s, restricted: %v", name, err)
		}
	}
	if err := Check(cases["containerd's default"]); err == nil || !strings.Contains(err.Error(), "17") ||
		!strings.Contains(err.Error(), "under AF_INET (the kernel makes SOCK_PACKET a packet socket): SOCK_RAW 3, SOCK_SEQPACKET 5, SOCK_PACKET 10") {
		t.Errorf("containerd's default profile passes the check: %v", err)
	}
	// a profile that refuses AF_PACKET by family, as the old rewrite did,
	// still lets socket(AF_INET, SOCK_PACKET) make a packet socket
	familyOnly := &rspec.LinuxSeccomp{DefaultAction: rspec.ActErrno, Syscalls: []rspec.LinuxSyscall{
		{Names: []string{"socket"}, Action: rspec.ActAllow, Args: []rspec.LinuxSeccompArg{arg(0, 2, rspec.OpEqualTo)}}}}
	if err := Check(familyOnly); err == nil || !strings.Contains(err.Error(), "SOCK_PACKET") {
		t.Errorf("AF_INET of any type passes the check: %v", err)
	}
	if !Allows(Restrict(nil), "socket", 2, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC) ||
		Allows(Restrict(nil), "socket", 2, unix.SOCK_PACKET) || Allows(Restrict(nil), "socket", 10, unix.SOCK_PACKET|unix.SOCK_CLOEXEC) ||
		Allows(Restrict(nil), "socket", 2, unix.SOCK_RAW) || !Allows(Restrict(nil), "socket", 1, unix.SOCK_SEQPACKET) {
		t.Error("the unconfined policy, restricted: TCP with flags refused, or SOCK_PACKET/SOCK_RAW under AF_INET allowed, or a unix seqpacket refused")
	}
}

// The evaluator: runc's semantics for rules, precedence and defaults.
func TestAllows(t *testing.T) {
	arg := func(i uint, v uint64, op rspec.LinuxSeccompOperator) rspec.LinuxSeccompArg {
		return rspec.LinuxSeccompArg{Index: i, Value: v, Op: op}
	}
	p := &rspec.LinuxSeccomp{DefaultAction: rspec.ActErrno, Syscalls: []rspec.LinuxSyscall{
		{Names: []string{"socket"}, Action: rspec.ActAllow, Args: []rspec.LinuxSeccompArg{arg(0, 2, rspec.OpEqualTo), arg(1, 1, rspec.OpEqualTo)}},   // AND
		{Names: []string{"socket"}, Action: rspec.ActAllow, Args: []rspec.LinuxSeccompArg{arg(0, 10, rspec.OpEqualTo), arg(0, 16, rspec.OpEqualTo)}}, // OR
		{Names: []string{"socket"}, Action: rspec.ActErrno, Args: []rspec.LinuxSeccompArg{arg(0, 16, rspec.OpEqualTo)}},                              // refusal wins
	}}
	for _, c := range []struct {
		arg0 uint64
		want bool
	}{{2, true}, {10, true}, {16, false}, {1, false}} {
		if got := Allows(p, "socket", c.arg0, 1); got != c.want {
			t.Errorf("socket(%d): %v, want %v", c.arg0, got, c.want)
		}
	}
	if Allows(p, "socket", 2, 2) {
		t.Error("AND: socket(2, 2) allowed")
	}
	if Allows(p, "read", 0, 0) || !Allows(nil, "socket", 40, 1) {
		t.Error("defaults")
	}
}

// The filter nriguard run installs, run in x/net/bpf's interpreter over
// seccomp_data for each ABI: the same allow list as Restrict.
func TestFilter(t *testing.T) {
	raw, err := Filter()
	if err != nil {
		t.Fatal(err)
	}
	var ins []bpf.Instruction
	for _, r := range raw {
		ins = append(ins, r.Disassemble())
	}
	vm, err := bpf.NewVM(ins)
	if err != nil {
		t.Fatal(err)
	}
	run := func(arch, nr uint32, arg0 uint64, arg1 ...uint64) bool {
		// The kernel loads seccomp_data's words natively; the interpreter
		// loads packets' words big endian: write each word so that it
		// reads back as the kernel would load it.
		data := make([]byte, 64)
		binary.BigEndian.PutUint32(data[0:], nr)
		binary.BigEndian.PutUint32(data[4:], arch)
		binary.BigEndian.PutUint32(data[16:], uint32(arg0))     // args[0], low half
		binary.BigEndian.PutUint32(data[20:], uint32(arg0>>32)) // high half
		typ := uint64(unix.SOCK_STREAM)
		if len(arg1) > 0 {
			typ = arg1[0]
		}
		binary.BigEndian.PutUint32(data[24:], uint32(typ)) // args[1]
		n, err := vm.Run(data)
		if err != nil {
			t.Fatal(err)
		}
		// the VM returns the verdict as the "packet length" it keeps
		return uint32(n) == unix.SECCOMP_RET_ALLOW
	}
	for arch, c := range calls {
		for _, nr := range []uint32{c.socket, c.socketpair} {
			for d := uint64(0); d <= 50; d++ {
				for _, typ := range socketTypes() {
					if got, want := run(arch, nr, d, typ), SocketAllowed(d, typ); got != want {
						t.Errorf("arch %#x call %d family %d type %#x: allowed %v, want %v", arch, nr, d, typ, got, want)
					}
				}
			}
			if run(arch, nr, 1<<32|2) {
				t.Errorf("arch %#x call %d: a family with high bits set passes", arch, nr)
			}
		}
		if run(arch, c.ioUringSetup, 0) {
			t.Errorf("arch %#x: io_uring_setup allowed", arch)
		}
		if c.socketcall != 0 && run(arch, c.socketcall, 1) {
			t.Errorf("arch %#x: socketcall allowed", arch)
		}
		if !run(arch, 0, 0) || !run(arch, 1, 0) {
			t.Errorf("arch %#x: other calls refused", arch)
		}
	}
	if run(auditArchX8664, x32Bit|41, 2) {
		t.Error("an x32 call passes")
	}
	if !run(0xdeadbeef, 41, 17) {
		t.Error("another ABI's calls are judged by x86_64 numbers")
	}
}

// A profile as podman and docker write it keeps what the OCI form has not
// (rules by capability, comments, errnoRet), and is restricted as Restrict
// restricts.
func TestRestrictJSON(t *testing.T) {
	in := `{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,"archMap":[{"architecture":"SCMP_ARCH_X86_64"}],
	  "syscalls":[
	    {"names":["read","socketcall","socketpair"],"action":"SCMP_ACT_ALLOW","args":[],"comment":"c","includes":{},"excludes":{}},
	    {"names":["socket"],"action":"SCMP_ACT_ALLOW","args":[{"index":2,"value":9,"valueTwo":0,"op":"SCMP_CMP_NE"}],"includes":{},"excludes":{"caps":["CAP_AUDIT_WRITE"]}},
	    {"names":["bpf"],"action":"SCMP_ACT_ALLOW","args":[],"includes":{"caps":["CAP_SYS_ADMIN"]}}]}`
	out, err := RestrictJSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	var p rspec.LinuxSeccomp
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	if err := Check(&p); err != nil {
		t.Errorf("restricted: %v", err)
	}
	if !Allows(&p, "socket", 2, 1) || !Allows(&p, "socketpair", 1, 1) || !Allows(&p, "read", 0, 0) {
		t.Error("allowed families or other calls lost")
	}
	s := string(out)
	for _, want := range []string{`"defaultErrnoRet": 38`, `"archMap"`, `"comment": "c"`, `"CAP_AUDIT_WRITE"`, `"CAP_SYS_ADMIN"`} {
		if !strings.Contains(s, want) {
			t.Errorf("lost %s:\n%s", want, s)
		}
	}
}
