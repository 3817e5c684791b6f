package bpf

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// PinnedMemory adds up what the kernel charges (the memlock of fdinfo) for
// the maps pinned in an attachment's directory and the programs its links
// hold. Shared maps (the host-wide exec program's) are not counted.
func PinnedMemory(dir string) (int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		switch {
		case strings.HasPrefix(e.Name(), "map_") || e.Name() == pinMeta:
			m, err := ebpf.LoadPinnedMap(p, &ebpf.LoadPinOptions{ReadOnly: true})
			if err != nil {
				return 0, err
			}
			total += fdMemlock(m.FD())
			m.Close()
		case strings.HasPrefix(e.Name(), "link_"):
			l, err := link.LoadPinnedLink(p, nil)
			if err != nil {
				return 0, err
			}
			info, err := l.Info()
			if err == nil {
				var prog *ebpf.Program
				if prog, err = ebpf.NewProgramFromID(info.Program); err == nil {
					total += fdMemlock(prog.FD())
					prog.Close()
				}
			}
			l.Close()
			if err != nil {
				return 0, err
			}
		}
	}
	return total, nil
}

func fdMemlock(fd int) int64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", fd))
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "memlock:"); ok {
			var n int64
			fmt.Sscan(strings.TrimSpace(v), &n)
			return n
		}
	}
	return 0
}
