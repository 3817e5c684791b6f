package cgroup

import "testing"

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
