package observe

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nriguard/nriguard/events"
)

// reader follows the stream at path with filter q, counting what it gets.
type reader struct {
	got, lost, other int
	kinds            map[events.Kind]int
	done             chan struct{}
}

func follow(t *testing.T, path, q string, wait <-chan struct{}) (*reader, func()) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://nriguard/v1/events?"+q, nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	r := &reader{kinds: map[events.Kind]int{}, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if wait != nil {
			<-wait // a reader that does not keep up
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var rec events.Record
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				r.other++
				continue
			}
			if rec.Kind == events.KindLost && rec.LostKind == LostObserve {
				r.lost += int(rec.Count)
				continue
			}
			r.got++
			r.kinds[rec.Kind]++
		}
	}()
	return r, func() { cancel(); resp.Body.Close(); <-r.done }
}

// Several readers see the same stream; each gets what its filter asks for;
// one that does not keep up loses its own records, counted, and no one
// else's: for each, what it got and what it was told it lost add up to
// what was published for it.
func TestReadersAndLosses(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "observe.sock")
	hub := NewHub()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Serve(ctx, path, hub)
	for i := 0; ; i++ {
		if _, err := os.Stat(path); err == nil {
			break
		}
		if i > 100 {
			t.Fatal("no socket")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", st.Mode().Perm())
	}
	hold := make(chan struct{})
	all, stopAll := follow(t, path, "", nil)
	flows, stopFlows := follow(t, path, "kind=flow&namespace=prod", nil)
	slow, stopSlow := follow(t, path, "", hold)
	for hub.Readers() < 3 {
		time.Sleep(time.Millisecond)
	}
	const n = 40000
	wantFlows := 0
	for i := range n {
		r := events.Record{V: 1, Time: time.Now(), Kind: events.KindConnect, Verdict: events.Denied, Namespace: "prod", Port: uint16(i)}
		if i%4 == 0 {
			r.Kind, r.Verdict, r.Phase = events.KindFlow, events.Allowed, "new"
			wantFlows++
		}
		if i%8 == 0 {
			r.Namespace = "dev"
			if r.Kind == events.KindFlow {
				wantFlows--
			}
		}
		hub.Publish(&r, r.AppendJSON(nil))
		if i%1000 == 0 {
			time.Sleep(2 * time.Millisecond) // a steady stream the fast readers keep up with
		}
	}
	time.Sleep(300 * time.Millisecond) // the last loss reports go out
	close(hold)
	time.Sleep(300 * time.Millisecond)
	stopAll()
	stopFlows()
	stopSlow()
	if all.got+all.lost != n || all.other != 0 {
		t.Errorf("reader of everything: got %d + lost %d != %d (%d unreadable)", all.got, all.lost, n, all.other)
	}
	if flows.got+flows.lost != wantFlows || flows.kinds[events.KindConnect] != 0 {
		t.Errorf("reader of prod flows: got %d + lost %d != %d; kinds %v", flows.got, flows.lost, wantFlows, flows.kinds)
	}
	if slow.got+slow.lost != n || slow.lost == 0 {
		t.Errorf("slow reader: got %d + lost %d != %d, or lost nothing", slow.got, slow.lost, n)
	}
	t.Logf("everything: %d got, %d lost; prod flows: %d got, %d lost; slow: %d got, %d lost", all.got, all.lost, flows.got, flows.lost, slow.got, slow.lost)
}
