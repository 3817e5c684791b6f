package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/cgroup"
	"github.com/nriguard/nriguard/engine"
	"github.com/nriguard/nriguard/internal/testenv"
)

// statusJSON is nriguard status -o json as docs/install.md names its
// fields: decoded with no unknown field allowed, so that a field renamed
// or added without the docs fails here.
type statusJSON struct {
	V       int       `json:"v"`
	Time    time.Time `json:"time"`
	PinRoot string    `json:"pin_root"`
	Node    nodeJSON  `json:"node"`
	Plugin  struct {
		Running  bool            `json:"running"`
		Answered bool            `json:"answered"`
		Socket   string          `json:"socket"`
		Error    string          `json:"error"`
		Down     string          `json:"down"`
		Status   json.RawMessage `json:"status"`
	} `json:"plugin"`
	Attachments []attachmentJSON `json:"attachments"`
	Shared      []struct {
		Name    string `json:"name"`
		What    string `json:"what"`
		Version uint32 `json:"pin_version"`
		Copies  int    `json:"copies"`
		Memory  int64  `json:"kernel_memory"`
	} `json:"shared"`
	SharedMemory int64 `json:"shared_kernel_memory"`
}

type nodeJSON struct {
	Kernel        string `json:"kernel"`
	CgroupV2      string `json:"cgroup_v2"`
	Hybrid        bool   `json:"hybrid"`
	ExecBackend   string `json:"exec_backend"`
	ExecGuarantee string `json:"exec_guarantee"`
	Features      []struct {
		Name      string `json:"name"`
		Present   bool   `json:"present"`
		Detail    string `json:"detail"`
		Guarantee string `json:"guarantee"`
	} `json:"features"`
}

type attachmentJSON struct {
	ID             string   `json:"id"`
	Container      string   `json:"container"`
	Pod            string   `json:"pod"`
	Namespace      string   `json:"namespace"`
	Owner          string   `json:"owner"`
	PinVersion     uint32   `json:"pin_version"`
	OtherVersion   bool     `json:"other_version"`
	Complete       bool     `json:"complete"`
	CgroupID       uint64   `json:"cgroup_id"`
	Parts          []string `json:"parts"`
	Digest         string   `json:"digest"`
	DecisionDigest string   `json:"decision_digest"`
	Mode           string   `json:"mode"`
	ModeOf         string   `json:"mode_of"`
	Visibility     string   `json:"visibility"`
	Layers         []struct {
		Kind   string `json:"kind"`
		Layer  string `json:"layer"`
		Source string `json:"source"`
		Rules  int    `json:"rules"`
	} `json:"layers"`
	Attached *time.Time `json:"attached"`
	Late     string     `json:"late"`
	Memory   int64      `json:"kernel_memory"`
	Error    string     `json:"error"`
}

// status runs the built nriguard status and decodes its document.
func status(t *testing.T, args ...string) statusJSON {
	t.Helper()
	out, err := exec.Command(bin(t), append([]string{"status", "-o", "json"}, args...)...).Output()
	if err != nil {
		t.Fatalf("nriguard status: %v: %s", err, stderrOf(err))
	}
	var doc statusJSON
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("nriguard status -o json: %v:\n%s", err, out)
	}
	return doc
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// sleeper is a running container's init: a process in a cgroup of its own.
func sleeper(t *testing.T) (string, uint32) {
	t.Helper()
	cg := testenv.Cgroup(t)
	f, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("sleep", "3600")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cg, uint32(cmd.Process.Pid)
}

// With no plugin running, nriguard status reads everything from the pins:
// an attachment made at its container's start, one made late by
// reconciliation, and one pinned by another pin version, each as what it
// is; the node's features as this process finds them; and the plugin as
// down, saying what that means.
func TestStatusFromThePins(t *testing.T) {
	testenv.NeedRoot(t)
	root := fmt.Sprintf("/sys/fs/bpf/nriguard-statustest-%d", os.Getpid())
	cfg, err := engine.ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(cfg, engine.Options{PinRoot: root, Owner: bpf.OwnerNRI})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ids, _ := bpf.List(root)
		for _, id := range ids {
			eng.Detach(id)
		}
		os.RemoveAll(root)
	})
	// one pod's policy for both: the same decision, two attachments
	ann := map[string]string{"egress.nriguard.io": "allow tcp 10.1.2.3:8080", "exec.nriguard.io": "allow /bin/; allow /usr/bin/",
		"mode.nriguard.io": "audit", "visibility.nriguard.io": "flows"}
	webCg, webPid := sleeper(t)
	web := engine.Container{ID: "st-web", Name: "web", Pod: "shop", Namespace: "prod", PodAnnotations: ann}
	d, err := eng.Decide(web)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Second)
	if err := eng.Attach(web, d, webCg, "/"); err != nil {
		t.Fatal(err)
	}
	lateCg, latePid := sleeper(t)
	late := engine.Container{ID: "st-late", Name: "late", Pod: "shop", Namespace: "prod", PodAnnotations: ann}
	r, err := eng.Reconcile([]engine.Known{{Container: web, Pid: webPid, Running: true}, {Container: late, Pid: latePid, Running: true}})
	if err != nil || fmt.Sprint(r.Attached) != "[st-late]" {
		t.Fatalf("reconcile: %+v, %v: want st-late attached late", r, err)
	}
	testenv.PinV1Meta(t, root, "st-old", 4242, uint64(bpf.OwnerHook))

	doc := status(t, "--pin-root", root, "--socket", filepath.Join(t.TempDir(), "none.sock"))
	if doc.V != 1 || doc.PinRoot != root || time.Since(doc.Time) > time.Minute {
		t.Errorf("v %d, pin_root %q, time %v", doc.V, doc.PinRoot, doc.Time)
	}

	// the node, as this process finds it
	var u unix.Utsname
	unix.Uname(&u)
	cgRoot, _ := cgroup.Root()
	be, _ := bpf.ExecBackend()
	if n := doc.Node; n.Kernel != unix.ByteSliceToString(u.Release[:]) || n.CgroupV2 != cgRoot || n.ExecBackend != be || n.ExecGuarantee == "" {
		t.Errorf("node: %+v; want kernel %s, cgroup v2 at %s, exec backend %s", n, unix.ByteSliceToString(u.Release[:]), cgRoot, be)
	}
	features := map[string]bool{}
	for _, f := range doc.Node.Features {
		features[f.Name] = f.Present
		if f.Guarantee == "" || (!f.Present && f.Detail == "") {
			t.Errorf("feature %s: %+v: want its guarantee, and why it is missing", f.Name, f)
		}
	}
	_, btfErr := os.Stat("/sys/kernel/btf/vmlinux")
	for name, want := range map[string]bool{
		"kernel_floor": true, "cgroup_v2": true, "egress_hooks": true, "dns_learning": true, // what was just attached
		"btf":          btfErr == nil,
		"exec_sigkill": bpf.ProbeExecBackend(bpf.BackendKill) == nil,
		"exec_lsm":     bpf.ProbeExecBackend(bpf.BackendLSM) == nil,
	} {
		if got, ok := features[name]; !ok || got != want {
			t.Errorf("feature %s: present %v (listed %v), want %v", name, got, ok, want)
		}
	}
	if _, ok := features["bpf_lsm"]; !ok {
		t.Error("feature bpf_lsm not listed")
	}

	// the plugin
	if p := doc.Plugin; p.Running || p.Answered || !strings.Contains(p.Down, "refused") || len(p.Status) != 0 {
		t.Errorf("plugin: %+v; want it down, saying what that means", p)
	}

	// the attachments
	byID := map[string]attachmentJSON{}
	for _, a := range doc.Attachments {
		byID[a.ID] = a
	}
	if len(byID) != 3 {
		t.Fatalf("attachments %v: want st-web, st-late and st-old", slices.Sorted(maps.Keys(byID)))
	}
	hexDigest := regexp.MustCompile(`^[0-9a-f]{12}$`)
	for _, c := range []struct {
		id, name, cg string
		late         bool
	}{{"st-web", "web", webCg, false}, {"st-late", "late", lateCg, true}} {
		a := byID[c.id]
		cgid, _ := cgroup.ID(c.cg)
		if a.Container != c.name || a.Pod != "shop" || a.Namespace != "prod" || a.Owner != "nri" || a.PinVersion != bpf.PinVersion ||
			a.OtherVersion || !a.Complete || a.CgroupID != cgid || a.Error != "" {
			t.Errorf("%s: %+v: want container %s of prod/shop, the plugin's, this version's, complete, cgroup %d", c.id, a, c.name, cgid)
		}
		if fmt.Sprint(a.Parts) != "[egress exec]" || a.Mode != "audit" || !strings.Contains(a.ModeOf, "mode.nriguard.io") || a.Visibility != "flows" {
			t.Errorf("%s: parts %v, mode %q (%q), visibility %q; want egress and exec, audit from the pod annotation, flows", c.id, a.Parts, a.Mode, a.ModeOf, a.Visibility)
		}
		if len(a.Layers) != 2 || a.Layers[0].Kind != "egress" || a.Layers[0].Layer != "label" || a.Layers[0].Source != "pod annotation egress.nriguard.io" ||
			a.Layers[0].Rules != 1 || a.Layers[1].Kind != "exec" || a.Layers[1].Rules != 2 {
			t.Errorf("%s: layers %+v; want the pod's egress label (1 rule) and exec label (2 rules)", c.id, a.Layers)
		}
		if !hexDigest.MatchString(a.Digest) || !hexDigest.MatchString(a.DecisionDigest) {
			t.Errorf("%s: digest %q, decision digest %q: want 12 hex digits each", c.id, a.Digest, a.DecisionDigest)
		}
		if a.Attached == nil || a.Attached.Before(before.Truncate(time.Second)) || a.Attached.After(time.Now()) {
			t.Errorf("%s: attached %v, want since the test began", c.id, a.Attached)
		}
		if (a.Late != "") != c.late {
			t.Errorf("%s: late %q, want late: %v", c.id, a.Late, c.late)
		}
		if a.Memory <= 0 {
			t.Errorf("%s: kernel memory %d", c.id, a.Memory)
		}
	}
	if w, l := byID["st-web"], byID["st-late"]; w.DecisionDigest != l.DecisionDigest || w.Digest == l.Digest {
		t.Errorf("digests: web %s/%s, late %s/%s; want one decision, held in two cgroups", w.Digest, w.DecisionDigest, l.Digest, l.DecisionDigest)
	}
	if l := byID["st-late"].Late; !strings.Contains(l, "while nriguard was away") || !strings.Contains(l, "seccomp") {
		t.Errorf("late: %q, want why, and that its seccomp policy is not restricted", l)
	}
	if o := byID["st-old"]; !o.OtherVersion || o.PinVersion != 1 || o.Owner != "hook" || o.CgroupID != 4242 || o.Container != "" || o.Late != "" {
		t.Errorf("st-old: %+v; want pin version 1's attachment of cgroup 4242, the hook's", o)
	}

	// what they share: the ring the hooks' attachments report to, a copy
	// of the egress programs, the exec program
	shared := map[string]int64{}
	var sum int64
	for _, s := range doc.Shared {
		shared[s.Name] = s.Memory
		if s.Version == bpf.PinVersion {
			sum += s.Memory
		}
		if s.What == "" || s.Memory <= 0 {
			t.Errorf("shared %+v: want what it is and its memory", s)
		}
	}
	for _, name := range []string{"_events-v2", "_egress-v2", "_exec-v2"} {
		if _, ok := shared[name]; !ok {
			t.Errorf("shared pins %v: no %s", shared, name)
		}
	}
	if doc.SharedMemory != sum || sum <= 0 {
		t.Errorf("shared kernel memory %d, want the sum of this version's, %d", doc.SharedMemory, sum)
	}

	// for people: the same, with late and another version's set apart
	out, err := exec.Command(bin(t), "status", "--pin-root", root, "--socket", filepath.Join(t.TempDir(), "none.sock")).Output()
	if err != nil {
		t.Fatalf("nriguard status: %v: %s", err, stderrOf(err))
	}
	text := string(out)
	for _, want := range []string{"Plugin: DOWN", "3, 1 LATE, 1 OF ANOTHER PIN VERSION", "prod/shop/web", "LATE: these containers",
		"st-late prod/shop/late: it started while nriguard was away", "st-old: pin version 1", "egress:label exec:label"} {
		if !strings.Contains(text, want) {
			t.Errorf("text output lacks %q:\n%s", want, text)
		}
	}
	t.Logf("nriguard status:\n%s", text)
}

// Pins that cannot be read: status says so and exits 1.
func TestStatusUnreadablePins(t *testing.T) {
	testenv.NeedRoot(t)
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, nil, 0o600)
	cmd := exec.Command(bin(t), "status", "--pin-root", notDir, "--socket", filepath.Join(t.TempDir(), "none.sock"))
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "the pins cannot be read") {
		t.Errorf("status of a pin root that is a file: exit %d, %v: %s; want 1, saying why", cmd.ProcessState.ExitCode(), err, out)
	}
}
