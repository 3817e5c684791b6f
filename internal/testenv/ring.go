package testenv

import (
	"encoding/binary"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// WriteRingRecord puts data into ring as a program would: bpf_ringbuf_output
// from a socket filter run once with BPF_PROG_TEST_RUN. Tests use it to give
// readers records they cannot decode.
func WriteRingRecord(t testing.TB, ring *ebpf.Map, data []byte) {
	t.Helper()
	NeedRoot(t)
	data = append([]byte(nil), data...)
	for len(data)%8 != 0 {
		data = append(data, 0)
	}
	var insns asm.Instructions
	for i := 0; i < len(data); i += 8 {
		insns = append(insns,
			asm.LoadImm(asm.R1, int64(binary.NativeEndian.Uint64(data[i:])), asm.DWord),
			asm.StoreMem(asm.RFP, int16(i-len(data)), asm.R1, asm.DWord))
	}
	insns = append(insns,
		asm.LoadMapPtr(asm.R1, ring.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, int32(-len(data))),
		asm.Mov.Imm(asm.R3, int32(len(data))),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnRingbufOutput.Call(),
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SocketFilter, Instructions: insns, License: "GPL"})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	if _, err := prog.Run(&ebpf.RunOptions{Data: make([]byte, 14)}); err != nil {
		t.Fatal(err)
	}
}
