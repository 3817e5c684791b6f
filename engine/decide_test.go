package engine

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/nriguard/nriguard/policy"
)

func mustConfig(t *testing.T, y string) *Config {
	t.Helper()
	c, err := ParseConfig([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const nodeConfig = `
ceiling_egress: "deny any 169.254.169.254"
default_egress: "allow udp 10.96.0.10:53"
profiles:
  web:
    egress: "allow tcp any:443; allow udp 10.96.0.10:53"
exempt_namespaces: [kube-system]
`

// verdict compiles a decision the way Attach does and judges one flow.
func verdict(t *testing.T, d *Decision, proto policy.Proto, dest string, port uint16) policy.Action {
	t.Helper()
	if len(d.Egress()) == 0 {
		return policy.Allow
	}
	return policy.Compile(d.Mode, d.Egress()...).Lookup(proto, netip.MustParseAddr(dest), port).Action
}

func TestLayers(t *testing.T) {
	cfg := mustConfig(t, nodeConfig)
	pod := func(a map[string]string) Container {
		return Container{ID: "c1", Name: "web", Pod: "p", Namespace: "default", PodAnnotations: a}
	}
	cases := []struct {
		name   string
		c      Container
		proto  policy.Proto
		dest   string
		port   uint16
		want   policy.Action
		layers int
	}{
		{"unlabelled: node default and ceiling", pod(nil), policy.UDP, "10.96.0.10", 53, policy.Allow, 2},
		{"unlabelled: default denies the rest", pod(nil), policy.TCP, "1.1.1.1", 443, policy.Deny, 2},
		{"label cannot loosen the ceiling", pod(map[string]string{"egress.nriguard.io": "allow any any"}), policy.TCP, "169.254.169.254", 80, policy.Deny, 2},
		{"label replaces the default", pod(map[string]string{"egress.nriguard.io": "allow tcp any:443"}), policy.TCP, "1.1.1.1", 443, policy.Allow, 2},
		{"profile", pod(map[string]string{"profile.nriguard.io": "web"}), policy.TCP, "1.1.1.1", 443, policy.Allow, 2},
		{"profile and label intersect", pod(map[string]string{"profile.nriguard.io": "web", "egress.nriguard.io/container.web": "allow tcp 10.0.0.0/8"}), policy.TCP, "1.1.1.1", 443, policy.Deny, 3},
		{"profile and label intersect (both allow)", pod(map[string]string{"profile.nriguard.io": "web", "egress.nriguard.io/container.web": "allow tcp 10.0.0.0/8"}), policy.TCP, "10.1.1.1", 443, policy.Allow, 3},
		{"image tightens", Container{Name: "web", Namespace: "default", PodAnnotations: map[string]string{"profile.nriguard.io": "web"},
			ImageLabels: map[string]string{"egress.nriguard.io": "allow tcp 10.0.0.0/8:443"}}, policy.TCP, "1.1.1.1", 443, policy.Deny, 3},
		{"image cannot loosen", Container{Name: "web", Namespace: "default", PodAnnotations: map[string]string{"profile.nriguard.io": "web"},
			ImageLabels: map[string]string{"egress.nriguard.io": "allow tcp any:80,443"}}, policy.TCP, "1.1.1.1", 80, policy.Deny, 3},
		{"exempt namespace", Container{Name: "dns", Namespace: "kube-system"}, policy.TCP, "169.254.169.254", 80, policy.Allow, 0},
	}
	for _, c := range cases {
		d, err := Decide(cfg, c.c)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(d.Layers) != c.layers {
			t.Errorf("%s: %d layers %+v, want %d", c.name, len(d.Layers), d.Layers, c.layers)
		}
		if got := verdict(t, d, c.proto, c.dest, c.port); got != c.want {
			t.Errorf("%s: %v %s:%d got %v want %v", c.name, c.proto, c.dest, c.port, got, c.want)
		}
	}
}

func TestNoPolicyNoCost(t *testing.T) {
	d, err := Decide(mustConfig(t, ""), Container{Name: "x", Namespace: "default", PodAnnotations: map[string]string{"other": "1"}})
	if err != nil || !d.Empty() {
		t.Errorf("an unlabelled container on a node without defaults must be left alone: %+v %v", d, err)
	}
}

func TestDecideErrors(t *testing.T) {
	cfg := mustConfig(t, nodeConfig+"allow_audit_label: false\n")
	for _, c := range []struct {
		ann  map[string]string
		want string
	}{
		{map[string]string{"egress.nriguard.io/container.web": "allow tcp 10.0.0.0/8:443; allow tcp 10.0.0/33"},
			`egress.nriguard.io/container.web: rule 2 "allow tcp 10.0.0/33": invalid prefix length 33 (0-32)`},
		{map[string]string{"profile.nriguard.io": "db"}, `profile.nriguard.io: unknown profile "db": this node has web`},
		{map[string]string{"mode.nriguard.io/pod": "audit"}, `mode.nriguard.io/pod: audit mode may not be chosen by a label on this node (allow_audit_label: false)`},
		{map[string]string{"exec.nriguard.io": "allow bin/sh"}, `exec.nriguard.io: rule 1 "allow bin/sh": invalid path "bin/sh": expected an absolute path, as the container sees it`},
	} {
		_, err := Decide(cfg, Container{Name: "web", Namespace: "default", PodAnnotations: c.ann})
		if err == nil || err.Error() != c.want {
			t.Errorf("%v:\n got  %v\n want %s", c.ann, err, c.want)
		}
	}
	_, err := Decide(cfg, Container{Name: "web", ImageLabels: map[string]string{"egress.nriguard.io": "allow tcp"}})
	if err == nil || !strings.HasPrefix(err.Error(), "image label egress.nriguard.io: rule 1") {
		t.Errorf("image label error: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for y, want := range map[string]string{
		`ceiling_egress: "deny any 169.254.169.254/33"`: `config ceiling_egress: rule 1 "deny any 169.254.169.254/33": invalid prefix length 33 (0-32)`,
		"profiles:\n  web:\n    exec: \"allow x\"":      `config profiles.web.exec: rule 1 "allow x": invalid path "x": expected an absolute path, as the container sees it`,
		`ceiling: "x"`: `config: error unmarshaling JSON: while decoding JSON: json: unknown field "ceiling"`,
	} {
		if _, err := ParseConfig([]byte(y)); err == nil || err.Error() != want {
			t.Errorf("%q:\n got  %v\n want %s", y, err, want)
		}
	}
}

// The node's visibility holds for every policed container; a label may ask
// for more, never for less; a bad value names its key.
func TestVisibility(t *testing.T) {
	cfg := mustConfig(t, "visibility: execs\n")
	for ann, want := range map[string]policy.Visibility{"": policy.VisExecs, "flows": policy.VisBoth, "off": policy.VisExecs, "both": policy.VisBoth} {
		a := map[string]string{"egress.nriguard.io": "allow tcp 10.0.0.1:80"}
		if ann != "" {
			a["visibility.nriguard.io/container.web"] = ann
		}
		d, err := Decide(cfg, Container{Name: "web", PodAnnotations: a})
		if err != nil || d.Visibility != want {
			t.Errorf("node execs, label %q: %v, %v; want %v", ann, d.Visibility, err, want)
		}
	}
	_, err := Decide(cfg, Container{Name: "web", PodAnnotations: map[string]string{"visibility.nriguard.io": "everything"}})
	if err == nil || !strings.Contains(err.Error(), `visibility.nriguard.io: invalid visibility "everything"`) {
		t.Errorf("bad label: %v", err)
	}
	_, err = ParseConfig([]byte("visibility: lots\n"))
	if err == nil || !strings.Contains(err.Error(), `config visibility: invalid visibility "lots"`) {
		t.Errorf("bad setting: %v", err)
	}
}

// A container without a policy is observed only if its labels ask, or the
// node says that its visibility holds for every container.
func TestObservedUnpoliced(t *testing.T) {
	for _, c := range []struct {
		config string
		ann    map[string]string
		want   policy.Visibility
	}{
		{"visibility: both\n", nil, policy.VisOff},
		{"visibility: both\nvisibility_unpoliced: true\n", nil, policy.VisBoth},
		{"", map[string]string{"visibility.nriguard.io": "flows"}, policy.VisFlows},
	} {
		d, err := Decide(mustConfig(t, c.config), Container{Name: "web", PodAnnotations: c.ann})
		if err != nil || d.Visibility != c.want || d.Empty() != (c.want == policy.VisOff) || len(d.Layers) != 0 {
			t.Errorf("%q %v: visibility %v, empty %v, %v", c.config, c.ann, d.Visibility, d.Empty(), err)
		}
	}
}
