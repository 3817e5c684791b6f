package cgroup

import (
	"bufio"
	"io"
	"os"
	"strings"
)

// Layout is how cgroups are mounted on this host: where the v2 hierarchy
// is, and the v1 hierarchies beside it on a hybrid host. nriguard attaches
// to v2 directories only; the v1 ones are the runtime's controllers.
type Layout struct {
	V2 string   // the v2 hierarchy's mount point
	V1 []string // v1 hierarchies' mount points (none on a pure v2 host)
}

// Hybrid tells whether v1 hierarchies are mounted beside the v2 one.
func (l Layout) Hybrid() bool { return len(l.V1) > 0 }

// String says it in words: "/sys/fs/cgroup (pure v2)".
func (l Layout) String() string {
	if l.Hybrid() {
		return l.V2 + " (hybrid: cgroup v1 controllers mounted beside it)"
	}
	return l.V2 + " (pure v2)"
}

// CurrentLayout reads the layout from the mount table.
func CurrentLayout() (Layout, error) {
	root, err := Root()
	if err != nil {
		return Layout{}, err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return Layout{}, err
	}
	defer f.Close()
	return Layout{V2: root, V1: v1Mounts(f)}, nil
}

// v1Mounts lists the mount points of cgroup (v1) file systems in a
// mountinfo table.
func v1Mounts(r io.Reader) []string {
	var out []string
	s := bufio.NewScanner(r)
	for s.Scan() {
		// id parent maj:min root mountpoint opts ... - fstype source superopts
		left, right, ok := strings.Cut(s.Text(), " - ")
		if !ok || !strings.HasPrefix(right, "cgroup ") {
			continue
		}
		if fields := strings.Fields(left); len(fields) >= 5 {
			out = append(out, fields[4])
		}
	}
	return out
}
