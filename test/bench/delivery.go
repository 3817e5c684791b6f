package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/cgroup"
	"github.com/nriguard/nriguard/events"
	"github.com/nriguard/nriguard/observe"
	"github.com/nriguard/nriguard/policy"
)

// delivery measures the way from the kernel to readers, as the daemon
// runs it: a reader thread decodes each ring record, writes it as a JSON
// line to a sink (/dev/null, through a buffer) and hands it to the observe
// hub, which one real client follows over its unix socket. It counts
// every record so that delivered + lost == attempts is checked, and the
// latency from the kernel's timestamp to the reader.
func delivery(base, pinRoot, home string) error {
	cg := filepath.Join(base, "delivery")
	if err := os.MkdirAll(cg, 0o755); err != nil {
		return err
	}
	e, err := policy.ParseEgress("bench", "deny udp 127.0.0.1:9; allow udp 127.0.0.1:10; default deny")
	if err != nil {
		return err
	}
	c := policy.Compile(policy.Enforce, e)
	ev, err := bpf.NewEventMaps()
	if err != nil {
		return err
	}
	defer ev.Close()
	a, err := bpf.Attach(bpf.Spec{ID: "bench-delivery", Cgroup: cg, Egress: c, Visibility: policy.VisFlows}, &bpf.Options{PinRoot: pinRoot, Events: ev})
	if err != nil {
		return err
	}
	defer a.Detach()

	hub := observe.NewHub()
	sock := filepath.Join(os.TempDir(), fmt.Sprintf("nriguard-bench-%d.sock", os.Getpid()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go observe.Serve(ctx, sock, hub)
	cl := &observer{}
	if err := cl.follow(ctx, sock); err != nil {
		return err
	}
	for hub.Readers() < 1 {
		time.Sleep(time.Millisecond)
	}
	r, err := startReader(*ev, hub)
	if err != nil {
		return err
	}
	defer r.stop()

	if err := cgroup.Move(cg, os.Getpid()); err != nil {
		return err
	}
	defer cgroup.Move(home, os.Getpid())
	fmt.Printf("\nevent delivery: the reader decodes, writes JSON to a sink and feeds one observe client over its socket\n")
	fmt.Printf("  %-34s %9s %9s %8s %8s %11s %11s %9s %9s\n", "workload", "attempts", "records", "lost", "observe", "records/s", "reader CPU", "p50", "p99")
	type phase struct {
		name     string
		attempts int
		records  int // records each attempt makes
		send     func(n int) error
	}
	for _, p := range []phase{
		{"flood of denied sends", 300000, 1, func(n int) error { return sendMany(n, 9, false, 0) }},
		{"new flows (a socket each)", 50000, 2, func(n int) error { return sendMany(n, 10, true, 0) }},
		{"denied sends, 20,000/s", 20000, 1, func(n int) error { return sendMany(n, 9, false, 20000) }},
	} {
		r.reset()
		cl.reset()
		t0 := time.Now()
		if err := p.send(p.attempts); err != nil {
			return err
		}
		want := p.attempts * p.records
		for deadline := time.Now().Add(30 * time.Second); r.accounted() < want && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		wall := r.lastAt().Sub(t0)
		time.Sleep(300 * time.Millisecond) // the observe client catches up
		got, lost, published, lat, cpu := r.snapshot()
		cgot, clost := cl.snapshot()
		ok := "delivered + lost == attempts"
		if got+lost != want || cgot+clost != published {
			ok = fmt.Sprintf("MISMATCH: want %d, reader %d+%d, observe %d+%d of %d", want, got, lost, cgot, clost, published)
		}
		slices.Sort(lat)
		pct := func(q float64) time.Duration {
			if len(lat) == 0 {
				return 0
			}
			return lat[int(q*float64(len(lat)-1))]
		}
		fmt.Printf("  %-34s %9d %9d %8d %8d %11.0f %9.2fµs %9v %9v  %s\n", p.name, p.attempts, got, lost, cgot,
			float64(got)/wall.Seconds(), float64(cpu.Nanoseconds())/float64(max(got, 1))/1000, pct(0.5).Round(time.Microsecond), pct(0.99).Round(time.Microsecond), ok)
	}
	return backlog(base, pinRoot, home, c)
}

// backlog measures what one core can read: 400,000 refusals wait in a 64
// MiB ring, then a reader drains them through the JSON sink (no observe
// client: the hub with no reader costs nothing), on one CPU.
func backlog(base, pinRoot, home string, c *policy.Compiled) error {
	const n = 400000
	cg := filepath.Join(base, "backlog")
	if err := os.MkdirAll(cg, 0o755); err != nil {
		return err
	}
	ev, err := bpf.NewEventMapsSize(64 << 20)
	if err != nil {
		return err
	}
	defer ev.Close()
	a, err := bpf.Attach(bpf.Spec{ID: "bench-backlog", Cgroup: cg, Egress: c}, &bpf.Options{PinRoot: pinRoot, Events: ev})
	if err != nil {
		return err
	}
	defer a.Detach()
	if err := cgroup.Move(cg, os.Getpid()); err != nil {
		return err
	}
	err = sendMany(n, 9, false, 0)
	cgroup.Move(home, os.Getpid())
	if err != nil {
		return err
	}
	r, err := startReader(*ev, observe.NewHub())
	if err != nil {
		return err
	}
	defer r.stop()
	t0 := time.Now()
	for deadline := t0.Add(30 * time.Second); r.accounted() < n && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	wall := r.lastAt().Sub(t0)
	got, lost, _, _, cpu := r.snapshot()
	ok := "delivered + lost == attempts"
	if got+lost != n {
		ok = fmt.Sprintf("MISMATCH: want %d, got %d + lost %d", n, got, lost)
	}
	fmt.Printf("  %-34s %9d %9d %8d %8s %11.0f %9.2fµs %9s %9s  %s\n", "a backlog drained (64 MiB ring)", n, got, lost, "-",
		float64(got)/wall.Seconds(), float64(cpu.Nanoseconds())/float64(max(got, 1))/1000, "-", "-", ok)
	fmt.Printf("  target: >= 500,000 records/s through the JSON sink on one core: %s\n", map[bool]string{true: "met", false: "MISSED"}[float64(got)/wall.Seconds() >= 500000])
	return nil
}

// sendMany sends n datagrams to 127.0.0.1:port: from one socket, or from a
// new socket each (a new flow each); at most rate a second if rate > 0.
func sendMany(n, port int, newSocket bool, rate int) error {
	to := &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
	fd := -1
	start := time.Now()
	for i := range n {
		if fd < 0 || newSocket {
			if fd >= 0 {
				unix.Close(fd)
			}
			var err error
			if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
				return err
			}
		}
		if err := unix.Sendto(fd, []byte("x"), 0, to); err != nil && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.ECONNREFUSED) {
			return err
		}
		if rate > 0 && i%100 == 99 {
			if d := time.Duration(i+1) * time.Second / time.Duration(rate); time.Since(start) < d {
				time.Sleep(d - time.Since(start))
			}
		}
	}
	if fd >= 0 {
		unix.Close(fd)
	}
	return nil
}

// reader is the daemon's reading loop on a thread of its own.
type reader struct {
	rd   *bpf.EventReader
	hub  *observe.Hub
	done chan struct{}

	tid atomic.Int32 // the reader's thread: its CPU time is read from /proc

	mu        sync.Mutex
	got       int
	lost      int
	published int // records handed to the observe hub (losses included)
	lat       []time.Duration
	cpu0      time.Duration
	last      time.Time
}

// cpu is the reader thread's CPU time so far.
func (r *reader) cpuTime() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/schedstat", r.tid.Load()))
	if err != nil {
		return 0
	}
	var ns int64
	fmt.Sscan(string(b), &ns)
	return time.Duration(ns)
}

func startReader(ev bpf.EventMaps, hub *observe.Hub) (*reader, error) {
	rd, err := bpf.NewEventReader(ev)
	if err != nil {
		return nil, err
	}
	r := &reader{rd: rd, hub: hub, done: make(chan struct{})}
	go r.loop()
	return r, nil
}

func (r *reader) loop() {
	defer close(r.done)
	runtime.LockOSThread()
	var cpus unix.CPUSet
	cpus.Set(0) // the sender has the last CPU
	unix.SchedSetaffinity(0, &cpus)
	r.tid.Store(int32(unix.Gettid()))
	r.mu.Lock()
	r.cpu0 = r.cpuTime() // (a thread Go reuses has run before)
	r.mu.Unlock()
	null, _ := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	defer null.Close()
	sink := bufio.NewWriterSize(null, 64<<10)
	var rec events.Record
	var buf []byte
	for {
		if err := r.rd.Read(&rec); err != nil {
			return
		}
		now := time.Now()
		buf = rec.AppendJSON(buf[:0])
		sink.Write(buf)
		r.hub.Publish(&rec, buf)
		r.mu.Lock()
		r.published++
		if rec.Kind == events.KindLost {
			r.lost += int(rec.Count)
		} else {
			r.got++
			r.lat = append(r.lat, now.Sub(rec.Time))
		}
		r.last = now
		r.mu.Unlock()
	}
}

func (r *reader) reset() {
	r.mu.Lock()
	r.got, r.lost, r.published, r.lat, r.last, r.cpu0 = 0, 0, 0, nil, time.Time{}, r.cpuTime()
	r.mu.Unlock()
}

func (r *reader) accounted() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got + r.lost
}

func (r *reader) lastAt() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

func (r *reader) snapshot() (got, lost, published int, lat []time.Duration, cpu time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got, r.lost, r.published, slices.Clone(r.lat), r.cpuTime() - r.cpu0
}

func (r *reader) stop() {
	r.rd.Close()
	<-r.done
}

// observer is one observe client.
type observer struct {
	got, lost atomic.Int64
}

func (o *observer) follow(ctx context.Context, sock string) error {
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i > 200 {
			return errors.New("no observe socket")
		}
		time.Sleep(5 * time.Millisecond)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://nriguard/v1/events", nil)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		lost := []byte(`"lost_kind":"observe","count":`)
		for sc.Scan() {
			line := sc.Bytes()
			if i := bytes.Index(line, lost); i >= 0 {
				var n int64
				fmt.Sscan(string(line[i+len(lost):len(line)-1]), &n)
				o.lost.Add(n)
				continue
			}
			o.got.Add(1) // (the kernel's lost records too: they were published)
		}
	}()
	return nil
}

func (o *observer) reset() { o.got.Store(0); o.lost.Store(0) }

func (o *observer) snapshot() (int, int) { return int(o.got.Load()), int(o.lost.Load()) }
