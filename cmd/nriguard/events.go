package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/engine"
	"github.com/nriguard/nriguard/events"
)

// runEvents: nriguard events [--pin-root R] — print the events of every
// attachment that reports to the pinned shared ring (the OCI hook's, and
// the NRI plugin's when it is not running) as JSON lines. It follows the
// pin: the ring goes with the last hook attachment, and the next one makes
// another. A ring has one reader: the running NRI plugin already is one.
func runEvents(args []string) int {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	pinRoot := fs.String("pin-root", bpf.DefaultPinRoot, "where attachments are pinned")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	return followPinned(ctx, &eventPrinter{root: *pinRoot}, "nriguard events")
}

// followPinned prints the pinned shared ring's records until ctx ends,
// following the pin from ring to ring.
func followPinned(ctx context.Context, p *eventPrinter, who string) int {
	for ctx.Err() == nil {
		if bpf.DaemonRuns() {
			fmt.Fprintln(os.Stderr, who+": the NRI plugin runs and reads the pinned ring (a ring has one reader): follow its stream with nriguard observe")
			return 1
		}
		maps, err := bpf.OpenSharedEvents(p.root)
		if errors.Is(err, os.ErrNotExist) {
			select { // nothing attached yet: wait for the first
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		} else if err != nil {
			fmt.Fprintln(os.Stderr, who+":", err)
			return 1
		}
		err = p.follow(ctx, maps)
		maps.Close()
		if err != nil {
			fmt.Fprintln(os.Stderr, who+":", err)
			return 1
		}
	}
	return 0
}

type eventPrinter struct {
	root  string
	namer *engine.PinnedNamer
	buf   []byte
	out   func(r *events.Record, line []byte) // nil: the line to stdout
}

// follow prints one ring's records until ctx ends or the pin names another
// ring, then what is left in it.
func (p *eventPrinter) follow(ctx context.Context, maps *bpf.EventMaps) error {
	rd, err := bpf.NewEventReader(*maps)
	if err != nil {
		return err
	}
	defer rd.Close()
	id := maps.RingID()
	if p.namer == nil {
		p.namer = engine.NewPinnedNamer(p.root)
	}
	p.namer.Forget() // ids may name other cgroups now
	var rec events.Record
	checked := time.Now()
	for ctx.Err() == nil {
		if time.Since(checked) > time.Second {
			if checked = time.Now(); bpf.DaemonRuns() {
				return nil // the plugin is back: it reads the ring (followPinned says so)
			}
		}
		rd.SetDeadline(time.Now().Add(time.Second))
		err := rd.Read(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if bpf.SharedEventsID(p.root) != id {
				break // replaced, or gone with the last attachment
			}
			p.namer.Forget() // a quiet second: look at the pins afresh
			continue
		} else if err != nil {
			return err
		}
		p.print(&rec)
	}
	for _, r := range rd.Drain() {
		p.print(&r)
	}
	return nil
}

// print names the container from the pins (attachments made since the
// last look are looked up again) and writes the record.
func (p *eventPrinter) print(r *events.Record) {
	p.namer.NameRecord(r)
	p.buf = r.AppendJSON(p.buf[:0])
	if p.out != nil {
		p.out(r, p.buf)
		return
	}
	os.Stdout.Write(p.buf)
}
