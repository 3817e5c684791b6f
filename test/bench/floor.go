package main

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// floor attaches, to cg, a program that allows at once on every hook
// nriguard's egress set uses: what any cgroup program there costs, the
// least nriguard could cost.
func floor(cg string) (func(), error) {
	var progs []*ebpf.Program
	var links []link.Link
	closeAll := func() {
		for _, l := range links {
			l.Close()
		}
		for _, p := range progs {
			p.Close()
		}
	}
	for _, h := range []struct {
		typ    ebpf.ProgramType
		attach ebpf.AttachType
	}{
		{ebpf.CGroupSock, ebpf.AttachCGroupInetSockCreate},
		{ebpf.CGroupSockAddr, ebpf.AttachCGroupInet4Connect},
		{ebpf.CGroupSockAddr, ebpf.AttachCGroupInet6Connect},
		{ebpf.CGroupSockAddr, ebpf.AttachCGroupUDP4Sendmsg},
		{ebpf.CGroupSockAddr, ebpf.AttachCGroupUDP6Sendmsg},
		{ebpf.CGroupSKB, ebpf.AttachCGroupInetEgress},
		{ebpf.CGroupSock, ebpf.AttachCgroupInetSockRelease},
	} {
		p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: h.typ, AttachType: h.attach, License: "GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()}})
		if err != nil {
			closeAll()
			return nil, err
		}
		progs = append(progs, p)
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: h.attach, Program: p})
		if err != nil {
			closeAll()
			return nil, err
		}
		links = append(links, l)
	}
	return closeAll, nil
}
