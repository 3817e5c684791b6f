package seccomp

import (
	"fmt"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// What the filter looks at, per ABI (seccomp_data: nr at 0, arch at 4,
// args[0] at 16, args[1] at 24, little endian).
const (
	auditArchX8664 = 0xc000003e
	auditArchI386  = 0x40000003
	x32Bit         = 0x40000000 // x32 ABI calls on x86_64
)

var calls = map[uint32]struct{ socket, socketpair, ioUringSetup, socketcall uint32 }{
	auditArchX8664: {41, 53, 425, 0},
	auditArchI386:  {359, 360, 425, 102},
}

// program is a classic BPF program with forward jumps to labels.
type program struct {
	ins    []bpf.Instruction
	labels map[string]int
	jumps  map[int][2]string // instruction -> labels if true, if false ("": next)
}

func (p *program) add(i bpf.Instruction)   { p.ins = append(p.ins, i) }
func (p *program) label(name string)       { p.labels[name] = len(p.ins) }
func (p *program) load(off uint32)         { p.add(bpf.LoadAbsolute{Off: off, Size: 4}) }
func (p *program) ret(v uint32)            { p.add(bpf.RetConstant{Val: v}) }
func (p *program) jeq(v uint32, to string) { p.jump(bpf.JumpEqual, v, to, "") }
func (p *program) jump(c bpf.JumpTest, v uint32, t, f string) {
	p.jumps[len(p.ins)] = [2]string{t, f}
	p.add(bpf.JumpIf{Cond: c, Val: v})
}

func (p *program) assemble() ([]bpf.RawInstruction, error) {
	skip := func(at int, to string) (uint8, error) {
		if to == "" {
			return 0, nil
		}
		n := p.labels[to] - at - 1
		if n < 0 || n > 255 {
			return 0, fmt.Errorf("jump to %s out of range", to)
		}
		return uint8(n), nil
	}
	for at, to := range p.jumps {
		j := p.ins[at].(bpf.JumpIf)
		var err error
		if j.SkipTrue, err = skip(at, to[0]); err != nil {
			return nil, err
		}
		if j.SkipFalse, err = skip(at, to[1]); err != nil {
			return nil, err
		}
		p.ins[at] = j
	}
	return bpf.Assemble(p.ins)
}

// Filter is the classic BPF seccomp program nriguard run installs for its
// command: what Restrict makes of an unconfined container's policy, for
// x86_64 and its 32-bit ABI (whose socketcall(2) hides a socket's family),
// and x32 calls refused. Other calls, and other ABIs, pass.
func Filter() ([]bpf.RawInstruction, error) {
	const (
		deny  = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
		allow = unix.SECCOMP_RET_ALLOW
	)
	p := &program{labels: map[string]int{}, jumps: map[int][2]string{}}
	p.load(4)
	p.jeq(auditArchX8664, "x86_64")
	p.jeq(auditArchI386, "i386")
	p.ret(allow)
	for _, abi := range []struct {
		name string
		arch uint32
	}{{"x86_64", auditArchX8664}, {"i386", auditArchI386}} {
		c := calls[abi.arch]
		p.label(abi.name)
		p.load(0)
		if abi.arch == auditArchX8664 {
			p.jump(bpf.JumpGreaterOrEqual, x32Bit, "deny", "")
		} else {
			p.jeq(c.socketcall, "deny")
		}
		p.jeq(c.ioUringSetup, "deny")
		p.jeq(c.socket, "family")
		p.jeq(c.socketpair, "family")
		p.ret(allow)
	}
	p.label("family")
	p.load(20) // the high half: the family is an int, and no allowed one sets it
	p.jump(bpf.JumpNotEqual, 0, "deny", "")
	p.load(16)
	for _, f := range AllowedFamilies {
		if typed(f) {
			p.jeq(uint32(f), "type")
		} else {
			p.jeq(uint32(f), "allow")
		}
	}
	p.label("deny")
	p.ret(deny)
	p.label("type") // AF_INET, AF_INET6: stream and datagram only
	p.load(24)      // args[1], the low half (the kernel refuses high bits)
	p.add(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: typeMask})
	for _, t := range judgedTypes {
		p.jeq(uint32(t), "allow")
	}
	p.ret(deny)
	p.label("allow")
	p.ret(allow)
	return p.assemble()
}

// Install installs Filter for the calling thread and what it execs. The
// caller must hold CAP_SYS_ADMIN or have set no_new_privs.
func Install() error {
	raw, err := Filter()
	if err != nil {
		return fmt.Errorf("seccomp filter: %w", err)
	}
	filters := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filters[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filters)), Filter: &filters[0]}
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)), 0, 0); err != nil {
		return fmt.Errorf("install the seccomp filter: %w", err)
	}
	return nil
}
