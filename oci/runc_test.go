package oci

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
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
	t.Setenv(ConfigEnv, "/dev/null") // no node settings
	dir := t.TempDir()
	spec := `{"ociVersion":"1.2.0","process":{"args":["sh"],"someFutureField":1,
	    "capabilities":{"bounding":["CAP_CHOWN","CAP_NET_RAW"],"effective":["CAP_NET_RAW","CAP_KILL"],"permitted":["CAP_NET_RAW"]}},
	  "root":{"path":"rootfs"},
	  "annotations":{"egress.nriguard.io":"allow tcp 10.0.0.0/8"},
	  "hooks":{"createRuntime":[{"path":"/usr/bin/other"}]},"vendorExtension":{"x":true}}`
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(spec), 0o600)
	if err := addHooks(dir); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	data, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	json.Unmarshal(data, &got)
	process := got["process"].(map[string]any)
	if got["vendorExtension"] == nil || process["someFutureField"] == nil {
		t.Errorf("fields nriguard does not know were lost: %s", data)
	}
	caps, _ := json.Marshal(process["capabilities"])
	if string(caps) != `{"bounding":["CAP_CHOWN"],"effective":["CAP_KILL"]}` {
		t.Errorf("an egress policy takes CAP_NET_RAW away, and nothing else: %s", caps)
	}
	seccomp, _ := got["linux"].(map[string]any)["seccomp"].(map[string]any)
	if seccomp == nil || seccomp["defaultAction"] != "SCMP_ACT_ALLOW" || len(seccomp["syscalls"].([]any)) < 10 {
		t.Errorf("an egress policy brings the socket allow list: %v", got["linux"])
	}
	hooks := got["hooks"].(map[string]any)
	cr := hooks["createRuntime"].([]any)
	if len(cr) != 2 || cr[0].(map[string]any)["path"] != "/usr/bin/other" || len(hooks["poststop"].([]any)) != 1 {
		t.Errorf("hooks: %v", hooks)
	}

	// A container with no policy is left exactly as it was.
	plain := `{"ociVersion":"1.2.0","annotations":{"other":"x"}}`
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(plain), 0o600)
	if err := addHooks(dir); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "config.json")); string(data) != plain {
		t.Errorf("an unannotated spec was rewritten: %s", data)
	}

	// A node ceiling reaches it, though; and an invalid annotation gets the
	// hooks, which refuse the container saying why.
	conf := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(conf, []byte("ceiling_egress: deny any 169.254.169.254\n"), 0o600)
	t.Setenv(ConfigEnv, conf)
	for _, s := range []string{plain, `{"ociVersion":"1.2.0","annotations":{"egress.nriguard.io":"allow tcp 10.0.0/33"}}`} {
		os.WriteFile(filepath.Join(dir, "config.json"), []byte(s), 0o600)
		if err := addHooks(dir); err != nil {
			t.Fatal(err)
		}
		if data, _ := os.ReadFile(filepath.Join(dir, "config.json")); !strings.Contains(string(data), `"createRuntime"`) {
			t.Errorf("%s: no hooks added: %s", s, data)
		}
	}
}

// A process run in a container (runc exec) gets no capability its init was
// not given: containerd writes it from a spec that never saw the wrapper's
// changes.
func TestBoundExec(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "c1"), 0o700)
	os.WriteFile(filepath.Join(root, "c1/state.json"), []byte(`{"id":"c1","config":{"capabilities":{"Bounding":["CAP_CHOWN","CAP_KILL"]}}}`), 0o600)
	proc := filepath.Join(t.TempDir(), "process.json")
	os.WriteFile(proc, []byte(`{"args":["sh"],"cwd":"/","capabilities":{"bounding":["CAP_CHOWN","CAP_NET_RAW"],"effective":["CAP_NET_RAW"]},"x":1}`), 0o600)
	args := []string{"--root", root, "--log", "l.json", "exec", "--process", proc, "--detach", "--pid-file", "p", "c1"}
	r, p, id, ok := runcExec(args)
	if !ok || r != root || p != proc || id != "c1" {
		t.Fatalf("runcExec: %q %q %q %v", r, p, id, ok)
	}
	if err := boundExec(r, p, id); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(proc)
	if !strings.Contains(string(data), `"capabilities":{"bounding":["CAP_CHOWN"]}`) || !strings.Contains(string(data), `"x":1`) {
		t.Errorf("process.json: %s", data)
	}
	if _, _, _, ok := runcExec([]string{"--root", root, "create", "--bundle", "b", "c1"}); ok {
		t.Error("create taken for exec")
	}
}

// A container the NRI plugin marked (its runtime takes no seccomp
// adjustment): the wrapper restricts it and takes CAP_NET_RAW away, whatever
// its annotations say of a policy, and adds no hooks: the plugin's hook
// attaches it.
func TestAddHooksMarkedByThePlugin(t *testing.T) {
	t.Setenv(ConfigEnv, "/dev/null")
	dir := t.TempDir()
	spec := `{"ociVersion":"1.2.0","process":{"args":["sh"],"capabilities":{"bounding":["CAP_CHOWN","CAP_NET_RAW"]}},
	  "root":{"path":"rootfs"},"annotations":{"restrict-sockets.nriguard.io":"true"},
	  "hooks":{"createRuntime":[{"path":"/usr/local/bin/nriguard","args":["nriguard","hook","--handoff","/run/nriguard/handoff","createRuntime"]}]}}`
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(spec), 0o600)
	if err := addHooks(dir); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Process struct{ Capabilities struct{ Bounding []string } }
		Linux   struct{ Seccomp *struct{ Syscalls []any } }
		Hooks   struct{ CreateRuntime, Poststop []any }
	}
	data, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	json.Unmarshal(data, &got)
	if got.Linux.Seccomp == nil || len(got.Linux.Seccomp.Syscalls) < 10 {
		t.Errorf("no restricted seccomp policy: %s", data)
	}
	if strings.Join(got.Process.Capabilities.Bounding, ",") != "CAP_CHOWN" {
		t.Errorf("bounding set %v: want CAP_NET_RAW taken away", got.Process.Capabilities.Bounding)
	}
	if len(got.Hooks.CreateRuntime) != 1 || len(got.Hooks.Poststop) != 0 {
		t.Errorf("hooks %+v: want only the plugin's", got.Hooks)
	}
}
