package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/engine"
	"github.com/nriguard/nriguard/observe"
)

// statusVersion is the version of status's JSON document: fields may be
// added within it, never removed or given another meaning.
const statusVersion = 1

// statusDoc is what nriguard status -o json prints (docs/install.md,
// "Watching").
type statusDoc struct {
	V            int                       `json:"v"`
	Time         time.Time                 `json:"time"`
	PinRoot      string                    `json:"pin_root"`
	Node         bpf.NodeFeatures          `json:"node"`
	Plugin       pluginStatus              `json:"plugin"`
	Attachments  []engine.AttachmentStatus `json:"attachments"`
	Shared       []bpf.SharedPin           `json:"shared"`
	SharedMemory int64                     `json:"shared_kernel_memory"` // this pin version's shared pins
}

// pluginStatus is whether the NRI plugin runs, and what it says of itself.
type pluginStatus struct {
	Running  bool   `json:"running"`  // a process holds the daemon lock, or its socket answered
	Answered bool   `json:"answered"` // its observe socket answered GET /v1/status
	Socket   string `json:"socket"`
	Error    string `json:"error,omitempty"` // why it did not answer
	// Down says, when no plugin runs, what that means for containers.
	Down   string          `json:"down,omitempty"`
	Status *observe.Status `json:"status,omitempty"`
}

// pluginDown is what a node without a running plugin does.
const pluginDown = "no nriguard plugin runs: what is attached stays in force (pinned), but nothing reads the events of what the plugin attached; " +
	"on containerd 2.x with nriguard's drop-in, new containers are refused until it returns; on containerd 1.7, CRI-O and other runtimes " +
	"they start without their policy, and get it late when it returns (reported as late); podman, nerdctl and ctr (the OCI hook) are not affected"

// runStatus: nriguard status [--pin-root R] [--socket S] [-o text|json]
func runStatus(args []string) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	pinRoot := fs.String("pin-root", bpf.DefaultPinRoot, "where attachments are pinned")
	socket := fs.String("socket", observe.DefaultSocket, "the plugin's observe socket")
	format := fs.String("o", "text", "output: text, or json (a document for scripts: docs/install.md)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *format != "text" && *format != "json" {
		fmt.Fprintf(os.Stderr, "nriguard status: -o %q: expected text or json\n", *format)
		return 2
	}
	doc := statusDoc{V: statusVersion, Time: time.Now().UTC(), PinRoot: *pinRoot}
	var err error
	if doc.Attachments, err = engine.Attachments(*pinRoot); err != nil {
		fmt.Fprintln(os.Stderr, "nriguard status: the pins cannot be read:", err)
		return 1
	}
	if doc.Shared, err = bpf.SharedPins(*pinRoot); err != nil {
		fmt.Fprintln(os.Stderr, "nriguard status: the shared pins cannot be read:", err)
		return 1
	}
	for _, p := range doc.Shared {
		if p.Version == bpf.PinVersion {
			doc.SharedMemory += p.Memory
		}
	}
	doc.Node = bpf.Features(*pinRoot)
	doc.Plugin = askPlugin(*socket)
	if *format == "json" {
		out, _ := json.MarshalIndent(doc, "", "  ")
		os.Stdout.Write(append(out, '\n'))
		return 0
	}
	printStatus(os.Stdout, &doc)
	return 0
}

// askPlugin asks the plugin for its status on its observe socket.
func askPlugin(socket string) pluginStatus {
	p := pluginStatus{Running: bpf.DaemonRuns(), Socket: socket}
	st, err := getStatus(socket)
	switch {
	case err == nil:
		p.Running, p.Answered, p.Status = true, true, st
	case p.Running:
		p.Error = fmt.Sprintf("a plugin runs (it holds %s) but did not answer on %s: %v", bpf.DaemonLock, socket, err)
	default:
		p.Down = pluginDown
		// (no socket, or one a killed plugin left: nothing more to say)
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ECONNREFUSED) {
			p.Error = err.Error()
		}
	}
	return p
}

func getStatus(socket string) (*observe.Status, error) {
	if _, err := os.Stat(socket); err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	resp, err := hc.Get("http://nriguard/v1/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("%s: %s (a plugin older than nriguard status?)", resp.Status, strings.TrimSpace(string(b)))
	}
	var st observe.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("GET /v1/status: %w", err)
	}
	return &st, nil
}
