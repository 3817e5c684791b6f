package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/events"
	"github.com/nriguard/nriguard/observe"
)

// runObserve: nriguard observe [filters] [-o json|table] — follow the NRI
// plugin's record stream (its observe socket), as Hubble's and Tetragon's
// CLIs follow theirs; on a host where no plugin serves one (the OCI hook
// only), read the pinned ring itself, as nriguard events does.
func runObserve(args []string) int {
	fs := flag.NewFlagSet("observe", flag.ContinueOnError)
	socket := fs.String("socket", observe.DefaultSocket, "the plugin's observe socket")
	pinRoot := fs.String("pin-root", bpf.DefaultPinRoot, "where attachments are pinned (when no plugin serves the stream)")
	var f observe.Filter
	fs.StringVar(&f.Namespace, "namespace", "", "only records of this Kubernetes namespace")
	fs.StringVar(&f.Pod, "pod", "", "only records of this pod")
	fs.StringVar(&f.Container, "container", "", "only records of this container (name or id)")
	fs.StringVar(&f.Verdict, "verdict", "", "only records with this verdict: denied, would-deny, allowed")
	fs.StringVar(&f.Kind, "kind", "", "only records of this kind: connect, sendmsg, socket, packet, exec, flow")
	format := fs.String("o", "json", "output: json (the event schema, one a line) or table")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *format != "json" && *format != "table" {
		fmt.Fprintf(os.Stderr, "nriguard observe: -o %q: expected json or table\n", *format)
		return 2
	}
	out := printer(*format, os.Stdout)
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	err := followSocket(ctx, *socket, f, out)
	if err == nil || ctx.Err() != nil {
		return 0
	}
	if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ECONNREFUSED) {
		fmt.Fprintln(os.Stderr, "nriguard observe:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "nriguard observe: no plugin serves %s: reading the pinned ring (one reader at a time)\n", *socket)
	return followPinned(ctx, &eventPrinter{root: *pinRoot, out: func(r *events.Record, line []byte) {
		if f.Match(r) {
			out(r, line)
		}
	}}, "nriguard observe")
}

// followSocket streams the plugin's records that f asks for until ctx ends
// or the plugin goes.
func followSocket(ctx context.Context, path string, f observe.Filter, out func(*events.Record, []byte)) error {
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://nriguard/v1/events?"+f.Values().Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := append(sc.Bytes(), '\n')
		var r events.Record
		if err := json.Unmarshal(line, &r); err != nil {
			return fmt.Errorf("a line of the stream: %w", err)
		}
		out(&r, line)
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return errors.New("the plugin closed the stream")
}

// printer writes records as JSON lines, or as a table for people.
func printer(format string, w io.Writer) func(*events.Record, []byte) {
	if format == "json" {
		return func(_ *events.Record, line []byte) { w.Write(line) }
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%-12s %-8s %-10s %-40s %-28s %s\n", "TIME", "KIND", "VERDICT", "CONTAINER", "PROCESS", "WHAT")
	bw.Flush()
	return func(r *events.Record, _ []byte) {
		fmt.Fprintf(bw, "%-12s %-8s %-10s %-40s %-28s %s\n", r.Time.Local().Format("15:04:05.000"), r.Kind, r.Verdict,
			trim(containerOf(r), 40), trim(processOf(r), 28), whatOf(r))
		bw.Flush()
	}
}

func containerOf(r *events.Record) string {
	switch {
	case r.Container != "" && r.Pod != "":
		return r.Namespace + "/" + r.Pod + "/" + r.Container
	case r.Container != "":
		return r.Container
	case len(r.ContainerID) > 12:
		return r.ContainerID[:12]
	}
	return r.ContainerID
}

func processOf(r *events.Record) string {
	if r.Kind == events.KindLost || r.Kind == events.KindDecodeError {
		return ""
	}
	name := r.Comm
	if r.Exe != "" {
		name = r.Exe
	}
	if r.PID == 0 {
		return fmt.Sprintf("uid %d", r.UID)
	}
	return fmt.Sprintf("%s[%d] uid %d", name, r.PID, r.UID)
}

func whatOf(r *events.Record) string {
	var s string
	switch r.Kind {
	case events.KindExec:
		s = r.Filename
	case events.KindLost:
		return fmt.Sprintf("%d %s records lost", r.Count, r.LostKind)
	case events.KindDecodeError:
		return r.Error
	case events.KindSocket:
		s = r.Proto + " " + r.SockType + " socket"
	default:
		s = fmt.Sprintf("%s %s", r.Proto, net.JoinHostPort(r.Dest, fmt.Sprint(r.Port)))
	}
	if r.Phase != "" && r.Phase != events.PhaseNew {
		s += fmt.Sprintf(" %s: %d packets, %d bytes", r.Phase, r.Packets, r.Bytes)
	}
	if r.Rule != "" {
		s += "  (" + r.Rule + ")"
	}
	if r.Reason != "" {
		s += "  " + r.Reason
	}
	return s
}

func trim(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
