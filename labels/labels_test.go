package labels

import "testing"

func TestMostSpecificWins(t *testing.T) {
	pod := map[string]string{
		"egress.nriguard.io":                "pod-bare",
		"egress.nriguard.io/pod":            "pod-scope",
		"egress.nriguard.io/container.web":  "web-only",
		"egress.nriguard.io/container.side": "side-only",
	}
	cases := []struct {
		name string
		src  Sources
		want string
		as   string
	}{
		{"container key on pod", Sources{Container: "web", Pod: pod, Own: []map[string]string{{Egress: "own"}}}, "web-only", "egress.nriguard.io/container.web"},
		{"own annotation", Sources{Container: "db", Pod: pod, Own: []map[string]string{{Egress: "own"}}}, "own", "egress.nriguard.io"},
		{"own label after annotation", Sources{Container: "db", Pod: pod, Own: []map[string]string{{}, {Egress: "label"}}}, "label", "egress.nriguard.io"},
		{"pod scope", Sources{Container: "db", Pod: pod}, "pod-scope", "egress.nriguard.io/pod"},
		{"pod bare", Sources{Container: "db", Pod: map[string]string{Egress: "pod-bare"}}, "pod-bare", "egress.nriguard.io"},
	}
	for _, c := range cases {
		v, as, ok := c.src.Lookup(Egress)
		if !ok || v != c.want || as != c.as {
			t.Errorf("%s: got %q as %q (%v), want %q as %q", c.name, v, as, ok, c.want, c.as)
		}
	}
	if _, _, ok := (Sources{Container: "x", Pod: map[string]string{"other": "1"}}).Lookup(Egress); ok {
		t.Error("found a key that is not there")
	}
}
