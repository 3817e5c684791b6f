package plugin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/engine"
	"github.com/nriguard/nriguard/labels"
	"github.com/nriguard/nriguard/oci"
	"github.com/nriguard/nriguard/plugin"
	"github.com/nriguard/nriguard/seccomp"
)

func TestPathFor(t *testing.T) {
	for _, c := range []struct {
		runtime, version string
		want             plugin.Path
	}{
		{"containerd", "v2.4.2", plugin.PathStart},
		{"containerd", "2.0.0-rc.1", plugin.PathStart},
		{"containerd", "v1.7.35", plugin.PathHook},
		{"containerd", "1.6.0", plugin.PathHook},
		{"containerd", "", plugin.PathHook},
		{"cri-o", "1.35.2", plugin.PathHook},
		{"nriguard-test", "v0", plugin.PathHook},
	} {
		if got, why := plugin.PathFor(c.runtime, c.version); got != c.want || why == "" {
			t.Errorf("%s %s: %v (%q), want %v", c.runtime, c.version, got, why, c.want)
		}
	}
}

// The hook path (CRI-O, containerd 1.7): CreateContainer leaves the
// decision and adds nriguard's createRuntime hook; the hook, as the runtime
// runs it, attaches the plugin's decision, and only if the container's
// seccomp policy keeps its sockets to those the cgroup hooks judge.
func TestHookPath(t *testing.T) {
	rt, root := newRuntime(t), pinRoot(t)
	handoff := t.TempDir()
	hook := plugin.Hook{Binary: "/usr/local/bin/nriguard", PinRoot: root, HandoffDir: handoff}
	startPluginOn(t, rt, root, "", 0, plugin.PathHook, hook)

	c := rt.newContainer("web", map[string]string{"egress.nriguard.io/container.web": "allow tcp 10.1.2.3:8080"}, nil)
	resp, err := rt.r.CreateContainer(context.Background(), &adaptation.CreateContainerRequest{Pod: c.pod, Container: c.c})
	must(t, err)
	adj := resp.GetAdjust()
	hooks := adj.GetHooks().GetCreateRuntime()
	if len(hooks) != 1 || hooks[0].Path != hook.Binary || strings.Join(hooks[0].Args, " ") !=
		"/usr/local/bin/nriguard hook --pin-root "+root+" --handoff "+handoff+" createRuntime" {
		t.Fatalf("createRuntime hooks %v: want nriguard's", hooks)
	}
	if adj.GetAnnotations()[labels.RestrictSockets] != "true" {
		t.Errorf("annotations %v: want %s for nriguard-runc", adj.GetAnnotations(), labels.RestrictSockets)
	}
	if adj.GetLinux().GetSeccompPolicy() != nil {
		t.Error("a seccomp adjustment on the hook path: CRI-O's NRI v0.11 crashes on rules with an errno, containerd 1.7 drops it")
	}
	if pinned(root, c.c.Id) {
		t.Fatal("attached at create")
	}

	// The runtime runs the hook: first on a bundle whose seccomp policy lets
	// the container make any socket (the runtime's binary is not nriguard-runc).
	state := func(sc *rspec.LinuxSeccomp) *bytes.Buffer {
		bundle := t.TempDir()
		data, _ := json.Marshal(rspec.Spec{Version: "1.2.0", Root: &rspec.Root{Path: "/"}, Linux: &rspec.Linux{Seccomp: sc}})
		must(t, os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600))
		st, _ := json.Marshal(rspec.State{Version: "1.2.0", ID: c.c.Id, Pid: c.init.Process.Pid, Bundle: bundle})
		return bytes.NewBuffer(st)
	}
	eng, err := engine.New(&engine.Config{}, engine.Options{PinRoot: root, Owner: bpf.OwnerNRI})
	must(t, err)
	err = oci.HookHandoff(eng, handoff, "createRuntime", state(nil))
	if err == nil || !strings.Contains(err.Error(), "has an egress policy, but") || !strings.Contains(err.Error(), "nriguard-runc") {
		t.Fatalf("hook on an unrestricted container: %v; want a refusal that says what to do", err)
	}
	if pinned(root, c.c.Id) {
		t.Fatal("the refused container was attached")
	}
	if _, err := os.Stat(filepath.Join(handoff, c.c.Id)); err == nil {
		t.Error("a refused container's decision stayed behind")
	}
	// made again, restricted as nriguard-runc or nriguard's profile leaves it
	must(t, rt.create(c))
	must(t, oci.HookHandoff(eng, handoff, "createRuntime", state(seccomp.Restrict(nil))))
	if !pinned(root, c.c.Id) || bpf.OwnerOf(root, c.c.Id) != bpf.OwnerNRI {
		t.Fatal("the hook did not attach as the plugin's")
	}
	if _, err := os.Stat(filepath.Join(handoff, c.c.Id)); err == nil {
		t.Error("the hook left the decision behind")
	}
	must(t, rt.start(c))
	if got := probe(t, c, "tcp:10.1.2.3:8080", "tcp:10.1.2.3:8081"); got != "ok EPERM" {
		t.Errorf("in the container: got %q, want the policy enforced", got)
	}
	rt.stopAndRemove(c)
	if pinned(root, c.c.Id) {
		t.Error("pins left after stop and remove")
	}

	// A container handed off whose hook never ran (a runtime that does not
	// run OCI hooks): StartContainer says so.
	c2 := rt.newContainer("web", map[string]string{"egress.nriguard.io/container.web": "allow tcp 10.1.2.3:8080"}, nil)
	must(t, rt.create(c2))
	if err := rt.start(c2); err == nil || !strings.Contains(err.Error(), "without nriguard's hook attaching") {
		t.Errorf("start without the hook: %v, want an error", err)
	}
	// An unlabelled container: no hook, no decision.
	c3 := rt.newContainer("plain", nil, nil)
	resp, err = rt.r.CreateContainer(context.Background(), &adaptation.CreateContainerRequest{Pod: c3.pod, Container: c3.c})
	must(t, err)
	if len(resp.GetAdjust().GetHooks().GetCreateRuntime()) != 0 {
		t.Error("a hook for a container without a policy")
	}
	entries, _ := os.ReadDir(handoff)
	if len(entries) != 0 {
		t.Errorf("decisions left behind: %v", entries)
	}
	_ = time.Second
}
