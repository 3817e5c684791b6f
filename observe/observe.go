// Package observe serves the daemon's stream of records (events, flows,
// execs, losses) to any number of readers: HTTP on a unix socket, one JSON
// line a record (docs/events.md), filtered by what each reader asks for.
// A reader too slow to keep up loses its own records, counted and told to
// it as a lost record; the others and the event log lose nothing.
package observe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nriguard/nriguard/events"
)

// DefaultSocket is where the NRI plugin serves the stream.
const DefaultSocket = "/run/nriguard/observe.sock"

// LostObserve is the lost_kind of records a reader lost because it did
// not keep up: the kernel did not lose them, this reader did.
const LostObserve = "observe"

// clientBuffer is how many records a reader may be behind before it loses
// records.
const clientBuffer = 8192

// Filter is what a reader asks for: every field given must match.
type Filter struct {
	Namespace, Pod, Container, Verdict, Kind string
}

// FilterFrom reads a filter from query parameters.
func FilterFrom(q url.Values) Filter {
	return Filter{Namespace: q.Get("namespace"), Pod: q.Get("pod"), Container: q.Get("container"), Verdict: q.Get("verdict"), Kind: q.Get("kind")}
}

// Values writes f as query parameters.
func (f Filter) Values() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"namespace": f.Namespace, "pod": f.Pod, "container": f.Container, "verdict": f.Verdict, "kind": f.Kind} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

// Match tells whether r is one the filter asks for. Losses match every
// filter: a reader must know what it did not get.
func (f Filter) Match(r *events.Record) bool {
	if r.Kind == events.KindLost || r.Kind == events.KindDecodeError {
		return true
	}
	return (f.Namespace == "" || f.Namespace == r.Namespace) && (f.Pod == "" || f.Pod == r.Pod) &&
		(f.Container == "" || f.Container == r.Container || f.Container == r.ContainerID) &&
		(f.Verdict == "" || f.Verdict == r.Verdict) && (f.Kind == "" || f.Kind == string(r.Kind))
}

// Hub hands each published record to the readers whose filter it matches.
type Hub struct {
	mu      sync.Mutex
	clients map[*client]struct{}
}

type client struct {
	filter Filter
	lines  chan []byte
	mu     sync.Mutex
	lost   uint64 // records dropped since the reader was last told
}

// NewHub makes a hub with no readers.
func NewHub() *Hub { return &Hub{clients: map[*client]struct{}{}} }

// Publish hands r, written as line, to every reader that asks for it,
// without waiting for any: a reader whose buffer is full loses it, counted.
func (h *Hub) Publish(r *events.Record, line []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		if !c.filter.Match(r) {
			continue
		}
		select {
		case c.lines <- append([]byte(nil), line...):
		default:
			c.mu.Lock()
			c.lost++
			c.mu.Unlock()
		}
	}
}

// Readers is how many readers follow the stream.
func (h *Hub) Readers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.clients)
}

func (h *Hub) add(f Filter) *client {
	c := &client{filter: f, lines: make(chan []byte, clientBuffer)}
	h.mu.Lock()
	h.clients[c] = struct{}{}
	h.mu.Unlock()
	return c
}

func (h *Hub) remove(c *client) {
	h.mu.Lock()
	delete(h.clients, c)
	h.mu.Unlock()
}

// takeLost returns and clears what the reader lost.
func (c *client) takeLost() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.lost
	c.lost = 0
	return n
}

// ServeHTTP streams records as JSON lines: GET /v1/events?namespace=&pod=
// &container=&verdict=&kind=.
func (h *Hub) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != "/v1/events" || req.Method != http.MethodGet {
		http.Error(w, "GET /v1/events[?namespace=N&pod=P&container=C&verdict=V&kind=K]", http.StatusNotFound)
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	c := h.add(FilterFrom(req.URL.Query()))
	defer h.remove(c)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var buf []byte
	for {
		select {
		case <-req.Context().Done():
			return
		case line := <-c.lines:
			buf = append(buf[:0], line...)
			for more := true; more && len(buf) < 64<<10; { // what else is waiting, in one write
				select {
				case l := <-c.lines:
					buf = append(buf, l...)
				default:
					more = false
				}
			}
			if _, err := w.Write(buf); err != nil {
				return
			}
			fl.Flush()
		case <-tick.C:
		}
		if n := c.takeLost(); n > 0 {
			r := events.Record{V: events.Version, Time: time.Now(), Kind: events.KindLost, LostKind: LostObserve, Count: n}
			if _, err := w.Write(r.AppendJSON(nil)); err != nil {
				return
			}
			fl.Flush()
		}
	}
}

// Serve serves h (the hub, or Handler's hub and status) on a unix socket
// at path that only root may use, until ctx ends. A socket left by an
// earlier run is replaced.
func Serve(ctx context.Context, path string, h http.Handler) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// (connecting needs write permission on the socket: under any umask
	// that keeps others from writing, nobody else can in between)
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("observe: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return fmt.Errorf("observe: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
		os.Remove(path)
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
