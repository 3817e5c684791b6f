package engine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/events"
	"github.com/nriguard/nriguard/internal/testenv"
)

// lockedBuffer is a writer the reporting goroutine and the test share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// records parses what was written so far.
func (l *lockedBuffer) records(t *testing.T) []events.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []events.Record
	sc := bufio.NewScanner(bytes.NewReader(l.b.Bytes()))
	for sc.Scan() {
		var r events.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("not a record: %s: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

func daemon(t *testing.T) *Engine {
	t.Helper()
	testenv.NeedRoot(t)
	root := fmt.Sprintf("/sys/fs/bpf/nriguard-enginetest-%d", os.Getpid())
	eng, err := New(mustConfig(t, ""), Options{PinRoot: root, Owner: bpf.OwnerNRI, Daemon: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ids, _ := bpf.List(root)
		for _, id := range ids {
			eng.Detach(id)
		}
		eng.Close()
		os.RemoveAll(root)
	})
	return eng
}

func attachLabelled(t *testing.T, eng *Engine, ann map[string]string) (string, Container) {
	t.Helper()
	cg := testenv.Cgroup(t)
	c := Container{ID: "c-" + strings.ReplaceAll(t.Name(), "/", "-"), Name: "web", Pod: "shop", Namespace: "prod", PodAnnotations: ann}
	d, err := eng.Decide(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Attach(c, d, cg, "/"); err != nil {
		t.Fatal(err)
	}
	return cg, c
}

func report(t *testing.T, eng *Engine) *lockedBuffer {
	out := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- eng.ReportEvents(ctx, out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ReportEvents: %v", err)
		}
	})
	return out
}

// until waits for the records to satisfy ok.
func until(t *testing.T, out *lockedBuffer, ok func([]events.Record) bool) []events.Record {
	t.Helper()
	for i := 0; ; i++ {
		recs := out.records(t)
		if ok(recs) {
			return recs
		}
		if i > 500 {
			t.Fatalf("records so far: %+v", recs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A ring record the daemon cannot decode is reported, and reporting goes
// on: the denial after it still arrives, named with its container.
func TestReportingGoesOnAfterABadRecord(t *testing.T) {
	eng := daemon(t)
	cg, _ := attachLabelled(t, eng, map[string]string{"egress.nriguard.io": "allow tcp 10.1.2.3:8080"})
	out := report(t, eng)
	testenv.WriteRingRecord(t, eng.events.Ring, []byte("garbage!"))
	if got := testenv.Probe(t, testenv.NetNS(t), cg, "", "tcp:10.1.2.3:8081"); got[0] != "EPERM" {
		t.Fatalf("denied connect: %q", got)
	}
	recs := until(t, out, func(r []events.Record) bool { return len(r) >= 2 })
	if recs[0].Kind != events.KindDecodeError || recs[0].Error == "" {
		t.Errorf("first record: %+v, want a decode error", recs[0])
	}
	if r := recs[1]; r.Kind != events.KindConnect || r.Container != "web" || r.Pod != "shop" || r.Namespace != "prod" || r.Layer != "label" || r.Port != 8081 {
		t.Errorf("second record: %+v, want the denied connect of web/shop/prod by its label", r)
	}
}

// Exec events that did not fit in the daemon's ring are reported by the
// daemon: decisions printed plus losses counted equal the refused execs.
func TestDaemonReportsLostExecEvents(t *testing.T) {
	eng := daemon(t)
	self, _ := os.Executable()
	cg, _ := attachLabelled(t, eng, map[string]string{"exec.nriguard.io": "allow " + self})
	// The ring (1 MiB) holds about 3,000 exec records; nobody reads yet.
	const n = 3500
	ops := make([]string, n)
	for i := range ops {
		ops[i] = "exec:/bin/true"
	}
	got := testenv.Probe(t, "", cg, "", ops...)
	if len(got) != n || got[0] != "denied" || got[n-1] != "denied" {
		t.Fatalf("execs: %d results, first %q", len(got), got[0])
	}
	out := report(t, eng)
	count := func(r []events.Record) (execs int, lost uint64) {
		for _, x := range r {
			switch {
			case x.Kind == events.KindExec:
				execs++
			case x.Kind == events.KindLost && x.LostKind == events.LostExec:
				lost += x.Count
			}
		}
		return
	}
	recs := until(t, out, func(r []events.Record) bool {
		execs, lost := count(r)
		return execs+int(lost) >= n
	})
	execs, lost := count(recs)
	if execs+int(lost) != n || lost == 0 {
		t.Errorf("%d exec records and %d counted lost; want %d in all, some lost", execs, lost, n)
	}
	t.Logf("%d exec records, %d lost", execs, lost)
}

// A container with no policy whose label asks to be seen is observed: every
// flow, socket and exec allowed, and its flows and execs reported, named.
func TestObservedNotPoliced(t *testing.T) {
	eng := daemon(t)
	cg, _ := attachLabelled(t, eng, map[string]string{"visibility.nriguard.io": "both"})
	out := report(t, eng)
	// (a raw socket, and a datagram carrying an IPv4 source route: what a
	// policy refuses outright passes here)
	if got := strings.Join(testenv.Probe(t, testenv.NetNS(t), cg, "", "tcp:10.1.2.3:8081", "socket:raw4", "udpsend:10.1.2.3:53",
		"lsrr:127.0.0.2:127.0.0.1:18093"), " "); got != "ok ok ok ok" {
		t.Fatalf("observed container: %q, want everything allowed", got)
	}
	recs := until(t, out, func(r []events.Record) bool {
		var flow, exec bool
		for _, x := range r {
			flow = flow || x.Kind == events.KindFlow && x.Phase == "new" && x.Port == 8081 && x.Container == "web"
			exec = exec || x.Kind == events.KindExec && x.Verdict == events.Allowed && x.Container == "web"
		}
		return flow && exec
	})
	for _, r := range recs {
		if r.Verdict != events.Allowed {
			t.Errorf("an observed container had a refusal: %+v", r)
		}
	}
}
