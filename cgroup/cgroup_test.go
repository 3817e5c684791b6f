package cgroup

import (
	"strings"
	"testing"
)

func TestRelPath(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"/kubepods/besteffort/poduid-x/crio-abc", "/kubepods/besteffort/poduid-x/crio-abc"},
		{"/k8s.io/abc", "/k8s.io/abc"},
		{"kubepods-besteffort-pod12.slice:crio:abc", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/crio-abc.scope"},
		{"system.slice:docker:abc", "/system.slice/docker-abc.scope"},
		{"-.slice:crio:abc", "/crio-abc.scope"},
	} {
		if got, err := relPath(c.in); err != nil || got != c.want {
			t.Errorf("%q: %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "a:b", "relative/path"} {
		if _, err := relPath(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestV1Mounts(t *testing.T) {
	hybrid := `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	if got := v1Mounts(strings.NewReader(hybrid)); len(got) != 1 || got[0] != "/sys/fs/cgroup/cpu" {
		t.Errorf("hybrid: %v, want the cpu hierarchy alone", got)
	}
	pure := "35 24 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
	if got := v1Mounts(strings.NewReader(pure)); len(got) != 0 {
		t.Errorf("pure v2: %v, want none", got)
	}
}
