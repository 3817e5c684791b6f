package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/nriguard/nriguard/bpf"
)

// runEvents: nriguard events [--pin-root R] — print the events of every
// attachment that reports to the pinned shared ring (the OCI hook's, and
// the NRI plugin's when it is not running) as JSON lines. A ring has one
// reader: the running NRI plugin already is one.
func runEvents(args []string) int {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	pinRoot := fs.String("pin-root", bpf.DefaultPinRoot, "where attachments are pinned")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	maps, err := bpf.SharedEvents(*pinRoot)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nriguard events:", err)
		return 1
	}
	rd, err := bpf.NewEventReader(*maps)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nriguard events:", err)
		return 1
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	go func() { <-ctx.Done(); rd.Close() }()
	enc := json.NewEncoder(os.Stdout)
	owners := bpf.CgroupOwners(*pinRoot)
	lost := rd.Lost()
	for {
		ev, err := rd.Read()
		if err != nil {
			return 0
		}
		id, ok := owners[ev.PolicyCgroup]
		if !ok { // attached since we looked
			owners = bpf.CgroupOwners(*pinRoot)
			id = owners[ev.PolicyCgroup]
		}
		enc.Encode(struct {
			bpf.Event
			ID string `json:"container_id,omitempty"`
		}{ev, id})
		if n := rd.Lost(); n != lost {
			enc.Encode(map[string]uint64{"lost_events": n})
			lost = n
		}
	}
}
