package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/engine"
	"github.com/nriguard/nriguard/events"
	"github.com/nriguard/nriguard/observe"
	"github.com/nriguard/nriguard/policy"
	"github.com/nriguard/nriguard/profile"
)

// runProfile: nriguard profile --pod P [--namespace N] [--container C]
// [--for D | --since T] — the annotations that hold a workload to what it
// did (docs/profile.md).
func runProfile(args []string) int {
	fs := flag.NewFlagSet("profile", flag.ContinueOnError)
	var w profile.Workload
	fs.StringVar(&w.Pod, "pod", "", "the pod whose containers to profile")
	fs.StringVar(&w.Namespace, "namespace", "", "its namespace")
	fs.StringVar(&w.Container, "container", "", "one container of it (a name), or a container outside Kubernetes (its id: podman)")
	watch := fs.Duration("for", 0, "follow the plugin's stream this long and learn from what it shows")
	since := fs.String("since", "", "learn from the event log: records since this long ago (10m) or this time (RFC 3339)")
	logPath := fs.String("events", "", "the event log to read with --since (default: event_log of the node settings, else "+preregEvents+")")
	cfgPath := fs.String("config", engine.DefaultConfigPath, "node settings (for event_log)")
	socket := fs.String("socket", observe.DefaultSocket, "the plugin's observe socket (--for)")
	pinRoot := fs.String("pin-root", bpf.DefaultPinRoot, "where attachments are pinned (--for, with no plugin)")
	mergeAt := fs.Int("merge", 16, "this many destinations (same protocol, port and program) in one IPv4 /24 or IPv6 /64 become one rule on the prefix; 0: never")
	format := fs.String("o", "yaml", "output: yaml (pod annotations, for kubectl), flags (podman/nerdctl --annotation), json")
	diffEgress := fs.String("diff-egress", "", "compare with these egress rules (the workload's current policy): would add, never used")
	diffExec := fs.String("diff-exec", "", "compare with these exec rules")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(code int, f string, a ...any) int {
		fmt.Fprintf(os.Stderr, "nriguard profile: "+f+"\n", a...)
		return code
	}
	if w.Pod == "" && w.Container == "" {
		return fail(2, "expected --pod (with --namespace, --container) or --container")
	}
	if (*watch == 0) == (*since == "") {
		return fail(2, "expected one of --for (watch) and --since (read the event log)")
	}
	if !slices.Contains([]string{"yaml", "flags", "json"}, *format) {
		return fail(2, "-o %q: expected yaml, flags or json", *format)
	}
	var curEg *policy.Egress
	var curEx *policy.Exec
	var err error
	if *diffEgress != "" {
		if curEg, err = policy.ParseEgress("--diff-egress", *diffEgress); err != nil {
			return fail(2, "%v", err)
		}
	}
	if *diffExec != "" {
		if curEx, err = policy.ParseExec("--diff-exec", *diffExec); err != nil {
			return fail(2, "%v", err)
		}
	}
	l := profile.NewLearner(w)
	window := ""
	if *watch > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), *watch)
		defer cancel()
		ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		fmt.Fprintf(os.Stderr, "nriguard profile: watching for %v (interrupt to stop early)\n", *watch)
		learn := func(r *events.Record, _ []byte) { l.Add(r) }
		err := followSocket(ctx, *socket, observe.Filter{}, learn)
		if err != nil && ctx.Err() == nil {
			if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ECONNREFUSED) {
				return fail(1, "%v", err)
			}
			fmt.Fprintf(os.Stderr, "nriguard profile: no plugin serves %s: reading the pinned ring\n", *socket)
			followPinned(ctx, &eventPrinter{root: *pinRoot, out: learn}, "nriguard profile")
		}
		window = fmt.Sprintf("%v watched", *watch)
	} else {
		from, err := sinceTime(*since)
		if err != nil {
			return fail(2, "--since %q: %v", *since, err)
		}
		path := *logPath
		if path == "" {
			path = preregEvents
			if cfg, err := engine.LoadConfig(*cfgPath); err == nil && cfg.EventLog != "" {
				path = cfg.EventLog
			}
		}
		n, err := readLog(path, from, l)
		if err != nil {
			return fail(1, "%v", err)
		}
		window = fmt.Sprintf("%s since %s (%d records read)", path, from.Format(time.RFC3339), n)
	}
	ps := l.Profiles(profile.Options{MergeAt: *mergeAt})
	if len(ps) == 0 {
		return fail(1, "no records of %s in %s: nothing learned (is visibility on for it? docs/profile.md)", describe(w), window)
	}
	if l.Lost > 0 {
		fmt.Fprintf(os.Stderr, "nriguard profile: warning: %d records were lost in the window (anyone's): the profile may be incomplete\n", l.Lost)
	}
	for _, p := range ps {
		for _, n := range p.Notes {
			fmt.Fprintf(os.Stderr, "nriguard profile: %s: %s\n", name(p), n)
		}
		if p.Refused > 0 {
			fmt.Fprintf(os.Stderr, "nriguard profile: %s: %d refusals seen: not learned (what was refused did not happen)\n", name(p), p.Refused)
		}
	}
	printProfiles(os.Stdout, ps, *format, window)
	if curEg != nil || curEx != nil {
		for _, p := range ps {
			add, never := p.Diff(curEg, curEx)
			fmt.Printf("# %s against the current policy\n", name(p))
			for _, r := range add {
				fmt.Printf("#   would add:  %s\n", r)
			}
			for _, r := range never {
				fmt.Printf("#   never used: %s\n", r)
			}
		}
	}
	return 0
}

func describe(w profile.Workload) string {
	var parts []string
	for _, kv := range [][2]string{{"namespace", w.Namespace}, {"pod", w.Pod}, {"container", w.Container}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+" "+kv[1])
		}
	}
	return strings.Join(parts, ", ")
}

func name(p profile.Profile) string {
	if p.Pod != "" {
		return p.Namespace + "/" + p.Pod + "/" + p.Container
	}
	return p.ID
}

// sinceTime reads "10m" (that long ago) or an RFC 3339 time.
func sinceTime(s string) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, errors.New("expected a duration (10m) or an RFC 3339 time")
	}
	return t, nil
}

// readLog learns from the event log's records since from.
func readLog(path string, from time.Time, l *profile.Learner) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n, other := 0, 0
	defer func() {
		if other > 0 { // (nriguard run's stderr holds the command's too)
			fmt.Fprintf(os.Stderr, "nriguard profile: %s: %d lines that are not event records skipped\n", path, other)
		}
	}()
	for sc.Scan() {
		var r events.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.V == 0 {
			other++
			continue
		}
		if r.Time.Before(from) {
			continue
		}
		n++
		l.Add(&r)
	}
	return n, sc.Err()
}

// printProfiles writes the profiles as annotations.
func printProfiles(w io.Writer, ps []profile.Profile, format, window string) {
	switch format {
	case "json":
		out := map[string]map[string]string{}
		for _, p := range ps {
			out[name(p)] = p.Annotations()
		}
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Fprintf(w, "%s\n", b)
	case "flags":
		for _, p := range ps {
			fmt.Fprintf(w, "# %s: %d destinations, %d programs (%s)\n", name(p), p.Flows, len(p.Exec), window)
			var flags []string
			for _, k := range sortedKeys(p.Annotations()) {
				base, _, _ := strings.Cut(k, "/") // a container's own annotation
				flags = append(flags, "--annotation "+shellQuote(base+"="+p.Annotations()[k]))
			}
			fmt.Fprintln(w, strings.Join(flags, " "))
		}
	default:
		fmt.Fprintf(w, "# nriguard profile: %s\n", window)
		pods := map[string][]profile.Profile{}
		var order []string
		for _, p := range ps {
			k := p.Namespace + "/" + p.Pod
			if pods[k] == nil {
				order = append(order, k)
			}
			pods[k] = append(pods[k], p)
		}
		for i, k := range order {
			if i > 0 {
				fmt.Fprintln(w, "---")
			}
			if k == "/" {
				fmt.Fprintf(w, "# not in a pod: each container's own annotations (podman: -o flags)\nmetadata:\n  annotations:\n")
			} else {
				fmt.Fprintf(w, "# pod %s\nmetadata:\n  annotations:\n", k)
			}
			for _, p := range pods[k] {
				fmt.Fprintf(w, "    # %s: %d destinations, %d programs\n", name(p), p.Flows, len(p.Exec))
				a := p.Annotations()
				for _, key := range sortedKeys(a) {
					fmt.Fprintf(w, "    %s: %s\n", key, strconv.Quote(a[key]))
				}
			}
		}
	}
}

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
