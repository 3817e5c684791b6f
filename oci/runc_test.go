package oci

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestRuncBundle(t *testing.T) {
	for _, c := range []struct {
		args   []string
		bundle string
		ok     bool
	}{
		{[]string{"--root", "/run/x", "--log", "l.json", "create", "--bundle", "/b", "--pid-file", "p", "id"}, "/b", true},
		{[]string{"create", "-b", "/b2", "id"}, "/b2", true},
		{[]string{"--systemd-cgroup", "run", "--bundle=/b3", "id"}, "/b3", true},
		{[]string{"--root", "/run/x", "start", "id"}, "", false},
		{[]string{"delete", "--force", "id"}, "", false},
		{[]string{"--root", "/r", "exec", "--process", "p.json", "create"}, "", false}, // "create" as an id
		{[]string{"--debug", "exec", "create"}, "", false},
		{[]string{"--debug", "--log=/l", "create", "id"}, "", true},
	} {
		got, ok := runcBundle(c.args)
		if c.ok && c.bundle == "" {
			c.bundle, _ = os.Getwd() // no --bundle: the working directory
		}
		if ok != c.ok || (ok && got != c.bundle) {
			t.Errorf("%q: got %q %v, want %q %v", c.args, got, ok, c.bundle, c.ok)
		}
	}
}

func TestAddHooksKeepsTheSpec(t *testing.T) {
	dir := t.TempDir()
	spec := `{"ociVersion":"1.2.0","process":{"args":["sh"],"someFutureField":1},"root":{"path":"rootfs"},
	  "annotations":{"egress.nriguard.io/pod":"allow tcp 10.0.0.0/8"},
	  "hooks":{"createRuntime":[{"path":"/usr/bin/other"}]},"vendorExtension":{"x":true}}`
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(spec), 0o600)
	if err := addHooks(dir); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	data, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	json.Unmarshal(data, &got)
	if got["vendorExtension"] == nil || got["process"].(map[string]any)["someFutureField"] == nil {
		t.Errorf("fields nriguard does not know were lost: %s", data)
	}
	seccomp, _ := got["linux"].(map[string]any)["seccomp"].(map[string]any)
	if seccomp == nil || seccomp["defaultAction"] != "SCMP_ACT_ALLOW" || len(seccomp["syscalls"].([]any)) != 1 {
		t.Errorf("an egress label must bring the AF_PACKET seccomp rule: %v", got["linux"])
	}
	hooks := got["hooks"].(map[string]any)
	cr := hooks["createRuntime"].([]any)
	if len(cr) != 2 || cr[0].(map[string]any)["path"] != "/usr/bin/other" || len(hooks["poststop"].([]any)) != 1 {
		t.Errorf("hooks: %v", hooks)
	}

	// A container without nriguard annotations is left exactly as it was.
	plain := `{"ociVersion":"1.2.0","annotations":{"other":"x"}}`
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(plain), 0o600)
	if err := addHooks(dir); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "config.json")); string(data) != plain {
		t.Errorf("an unannotated spec was rewritten: %s", data)
	}
}
