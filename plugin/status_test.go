package plugin_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/events"
	"github.com/nriguard/nriguard/internal/testenv"
)

// pluginStatusJSON is the plugin's GET /v1/status as nriguard status -o
// json shows it under plugin.status (docs/install.md), decoded with no
// unknown field allowed.
type pluginStatusJSON struct {
	Version          string    `json:"version"`
	Started          time.Time `json:"started"`
	PID              int       `json:"pid"`
	PinRoot          string    `json:"pin_root"`
	ExecBackend      string    `json:"exec_backend"`
	ExecBackendError string    `json:"exec_backend_error"`
	Runtime          struct {
		Connected bool   `json:"connected"`
		Name      string `json:"name"`
		Version   string `json:"version"`
		Path      string `json:"path"`
	} `json:"runtime"`
	Policed int               `json:"policed"`
	Lost    map[string]uint64 `json:"lost"`
	Policy  map[string][]struct {
		ContainerID string    `json:"container_id"`
		Container   string    `json:"container"`
		Pod         string    `json:"pod"`
		Namespace   string    `json:"namespace"`
		Message     string    `json:"message"`
		Time        time.Time `json:"time"`
		Count       int       `json:"count"`
	} `json:"policy"`
}

type statusDoc struct {
	Plugin struct {
		Running  bool            `json:"running"`
		Answered bool            `json:"answered"`
		Error    string          `json:"error"`
		Down     string          `json:"down"`
		Status   json.RawMessage `json:"status"`
	} `json:"plugin"`
	Attachments []struct {
		ID           string `json:"id"`
		Container    string `json:"container"`
		Late         string `json:"late"`
		OtherVersion bool   `json:"other_version"`
	} `json:"attachments"`
}

// The real plugin, asked by nriguard status over its observe socket, says
// which runtime it serves, how many records the kernel lost since it
// started (exactly what its lost records counted: with the event log's
// refusals, every refused send), and which containers its policy records
// named, by reason: one that started while it was away (late), one whose
// labels are refused (undecided), one pinned by another pin version
// (unadoptable). Killed, it is reported down.
func TestStatusFromThePlugin(t *testing.T) {
	rt, root := newRuntime(t), pinRoot(t)
	bin := testenv.Nriguard(t)
	dir := t.TempDir()
	sock := filepath.Join(rt.dir, "observe.sock") // short: a unix socket's path
	eventLog := filepath.Join(dir, "events.jsonl")
	config := filepath.Join(dir, "config.yaml")
	must(t, os.WriteFile(config, []byte("event_log: "+eventLog+"\n"), 0o600))
	logs := filepath.Join(dir, "plugin.log")
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := os.ReadFile(logs)
			t.Logf("the plugin's output:\n%s", out)
		}
	})

	// while no plugin runs: one starts without its policy, one with labels
	// that are refused, one still held by another version's pins
	label := map[string]string{"egress.nriguard.io": "allow tcp 10.1.2.3:8080"}
	late := rt.newContainer("late", label, nil)
	bad := rt.newContainer("bad", map[string]string{"egress.nriguard.io": "allow tcp 10.0.0.0/33"}, nil)
	old := rt.newContainer("old", label, nil)
	testenv.PinV1Meta(t, root, old.c.Id, 4242, uint64(bpf.OwnerNRI))
	for _, c := range []*ctr{late, bad, old} {
		must(t, rt.start(c))
	}

	out, err := os.OpenFile(logs, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	must(t, err)
	plug := exec.Command(bin, "plugin", "--socket", rt.sock, "--pin-root", root, "--config", config, "--observe-socket", sock)
	plug.Stdout, plug.Stderr = out, out
	must(t, plug.Start())
	out.Close()
	t.Cleanup(func() { plug.Process.Kill(); plug.Wait() })
	rt.waitSync()
	rt.waitRegistered()

	web := rt.newContainer("web", label, nil)
	must(t, rt.create(web))
	must(t, rt.start(web))
	// the plugin stopped while the container's sends are refused: its
	// ring overflows
	const sends = 20000
	must(t, plug.Process.Signal(syscall.SIGSTOP))
	got := probe(t, web, fmt.Sprintf("sendall:%d:10.1.9.9:9", sends))
	must(t, plug.Process.Signal(syscall.SIGCONT))
	if got != fmt.Sprintf("refused %d of %d", sends, sends) {
		t.Fatalf("the probe: %q, want every send refused", got)
	}

	var st pluginStatusJSON
	var doc statusDoc
	var reported int
	for deadline := time.Now().Add(20 * time.Second); ; {
		doc = runStatus(t, bin, root, sock)
		if !doc.Plugin.Answered {
			t.Fatalf("the plugin did not answer: %+v", doc.Plugin)
		}
		dec := json.NewDecoder(bytes.NewReader(doc.Plugin.Status))
		dec.DisallowUnknownFields()
		st = pluginStatusJSON{}
		must(t, dec.Decode(&st))
		reported = refusals(t, eventLog, web.c.Id)
		if st.Lost[events.LostEgress] > 0 && int(st.Lost[events.LostEgress])+reported == sends {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lost %v + %d refusals in the event log != %d sends", st.Lost, reported, sends)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%d sends: %d reported, %d lost", sends, reported, st.Lost[events.LostEgress])

	be, _ := bpf.ExecBackend()
	if st.Version != "dev" || st.PID != plug.Process.Pid || st.PinRoot != root || st.ExecBackend != be || time.Since(st.Started) > time.Minute {
		t.Errorf("status %+v: want version dev, pid %d, pin root %s, exec backend %s, started now", st, plug.Process.Pid, root, be)
	}
	if r := st.Runtime; !r.Connected || r.Name != "containerd" || r.Version != "v2.99.0-nriguard-test" || r.Path != "start" {
		t.Errorf("runtime %+v: want connected to the test's containerd 2.x, on the start path", r)
	}
	if st.Policed != 2 || st.Lost[events.LostExec] != 0 {
		t.Errorf("policed %d, lost %v: want web and late policed, no exec record lost", st.Policed, st.Lost)
	}
	for reason, want := range map[string]*ctr{events.ReasonLate: late, events.ReasonUndecided: bad, events.ReasonUnadoptable: old} {
		notes := st.Policy[reason]
		if len(notes) != 1 || notes[0].ContainerID != want.c.Id || notes[0].Container != want.c.Name || notes[0].Pod != want.pod.Name ||
			notes[0].Namespace != "default" || notes[0].Message == "" || notes[0].Count != 1 {
			t.Errorf("policy records %s: %+v; want one naming %s", reason, notes, want.c.Name)
		}
	}
	if notes, ok := st.Policy[events.ReasonKept]; !ok || len(notes) != 0 {
		t.Errorf("policy records kept: %+v, want listed and empty", notes)
	}
	attached := map[string]bool{}
	for _, a := range doc.Attachments {
		attached[a.ID] = true
		if (a.ID == late.c.Id) != (a.Late != "") || (a.ID == old.c.Id) != a.OtherVersion {
			t.Errorf("attachment %+v: late or of another version where it should not be", a)
		}
	}
	if len(attached) != 3 || !attached[web.c.Id] || !attached[late.c.Id] || !attached[old.c.Id] {
		t.Errorf("attachments %v: want web, late and old", attached)
	}

	// it said once, at start, what the node offers
	var features map[string]any
	for deadline := time.Now().Add(10 * time.Second); features == nil && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		data, _ := os.ReadFile(logs)
		for _, line := range strings.Split(string(data), "\n") {
			var l struct {
				Msg      string
				Features map[string]any
			}
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "node features" {
				features = l.Features
			}
		}
	}
	if features["egress_hooks"] != true || features["cgroup_v2"] != true || len(features) < 7 {
		t.Errorf("the plugin's node features log line: features %v, want each named, the egress hooks and cgroup v2 present", features)
	}

	// killed, its socket left behind: down
	plug.Process.Kill()
	plug.Wait()
	doc = runStatus(t, bin, root, sock)
	if p := doc.Plugin; p.Running || p.Answered || p.Down == "" || p.Error != "" {
		t.Errorf("plugin killed: %+v; want it down and no other error", p)
	}
}

func runStatus(t *testing.T, bin, root, sock string) statusDoc {
	t.Helper()
	out, err := exec.Command(bin, "status", "-o", "json", "--pin-root", root, "--socket", sock).Output()
	if err != nil {
		t.Fatalf("nriguard status: %v", err)
	}
	var doc statusDoc
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return doc
}

// refusals counts the refused sends of container id in the event log.
func refusals(t *testing.T, path, id string) int {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return 0
	}
	must(t, err)
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if !strings.Contains(sc.Text(), id) {
			continue
		}
		var r events.Record
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.ContainerID == id && r.Kind == events.KindSendmsg && r.Verdict == events.Denied {
			n++
		}
	}
	return n
}
