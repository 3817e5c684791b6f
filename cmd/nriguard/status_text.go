package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/engine"
	"github.com/nriguard/nriguard/events"
	"github.com/nriguard/nriguard/observe"
)

// printStatus writes the status document for people: the node, the
// plugin, the attachments (late ones and another version's set apart),
// what they share.
func printStatus(w io.Writer, d *statusDoc) {
	printNode(w, &d.Node)
	fmt.Fprintln(w)
	printPlugin(w, &d.Plugin, d.PinRoot)
	fmt.Fprintln(w)
	printAttachments(w, d)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Shared pins: %s\n", size(d.SharedMemory))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, p := range d.Shared {
		what := p.What
		if p.Copies > 0 {
			what = fmt.Sprintf("%s (%d)", what, p.Copies)
		}
		if p.Version != bpf.PinVersion {
			what += fmt.Sprintf(" [pin version %d: goes with that version's last attachment]", p.Version)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", p.Name, size(p.Memory), what)
	}
	tw.Flush()
}

func printNode(w io.Writer, n *bpf.NodeFeatures) {
	fmt.Fprintln(w, "Node")
	cg := "none found"
	if n.CgroupV2 != "" {
		cg = n.CgroupV2 + " (pure v2)"
		if n.Hybrid {
			cg = n.CgroupV2 + " (hybrid: cgroup v1 controllers mounted beside it)"
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  kernel\t%s\n", n.Kernel)
	fmt.Fprintf(tw, "  cgroup v2\t%s\n", cg)
	fmt.Fprintf(tw, "  exec backend\t%s\n", n.ExecGuarantee)
	tw.Flush()
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  FEATURE\tPRESENT\tWHAT HOLDS")
	for _, f := range n.Features {
		line := f.Guarantee
		if !f.Present && f.Detail != "" {
			line += " (" + f.Detail + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", f.Name, yesNo(f.Present), line)
	}
	tw.Flush()
}

func printPlugin(w io.Writer, p *pluginStatus, pinRoot string) {
	switch {
	case p.Status != nil:
		s := p.Status
		fmt.Fprintf(w, "Plugin: running, version %s, pid %d, since %s (%s)\n", s.Version, s.PID,
			s.Started.UTC().Format(time.DateTime), time.Since(s.Started).Round(time.Second))
		rt := "not connected to a runtime"
		if s.Runtime.Name != "" {
			rt = fmt.Sprintf("%s %s, %s path", s.Runtime.Name, s.Runtime.Version, s.Runtime.Path)
			if !s.Runtime.Connected {
				rt += " (disconnected)"
			}
		}
		be := s.ExecBackend
		if be == "" {
			be = "none (" + s.ExecBackendError + ")"
		}
		fmt.Fprintf(w, "  runtime: %s; exec backend: %s; policed containers: %d\n", rt, be, s.Policed)
		if s.PinRoot != pinRoot {
			fmt.Fprintf(w, "  it pins under %s, not %s\n", s.PinRoot, pinRoot)
		}
		fmt.Fprintf(w, "  events lost since start: %s\n", lostLine(s.Lost))
		printPolicyNotes(w, s.Policy)
	case p.Running:
		fmt.Fprintf(w, "Plugin: running, not answering: %s\n", p.Error)
	default:
		fmt.Fprintln(w, "Plugin: DOWN")
		fmt.Fprintf(w, "  %s\n", p.Down)
		if p.Error != "" {
			fmt.Fprintf(w, "  (%s: %s)\n", p.Socket, p.Error)
		}
	}
}

func lostLine(lost map[string]uint64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(lost)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, lost[k]))
	}
	return strings.Join(parts, ", ")
}

// policyReasons are the reasons of policy records, in the order they are
// shown.
var policyReasons = []string{events.ReasonLate, events.ReasonKept, events.ReasonUndecided, events.ReasonUnadoptable}

func printPolicyNotes(w io.Writer, notes map[string][]observe.PolicyNote) {
	var counts []string
	for _, r := range policyReasons {
		counts = append(counts, fmt.Sprintf("%s %d", r, len(notes[r])))
	}
	fmt.Fprintf(w, "  containers in policy records since start: %s\n", strings.Join(counts, ", "))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range policyReasons {
		for _, n := range notes[r] {
			fmt.Fprintf(tw, "    %s\t%s\t%s\n", r, nameOf(n.Namespace, n.Pod, n.Container, n.ContainerID), n.Message)
		}
	}
	tw.Flush()
}

func printAttachments(w io.Writer, d *statusDoc) {
	var late, other []engine.AttachmentStatus
	for _, a := range d.Attachments {
		if a.Late != "" {
			late = append(late, a)
		}
		if a.OtherVersion {
			other = append(other, a)
		}
	}
	fmt.Fprintf(w, "Attachments under %s: %d", d.PinRoot, len(d.Attachments))
	if len(late) > 0 {
		fmt.Fprintf(w, ", %d LATE", len(late))
	}
	if len(other) > 0 {
		fmt.Fprintf(w, ", %d OF ANOTHER PIN VERSION", len(other))
	}
	fmt.Fprintln(w)
	if len(d.Attachments) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tCONTAINER\tOWNER\tMODE\tVISIBILITY\tLAYERS\tDIGEST\tATTACHED\tMEMORY\tNOTE")
	for _, a := range d.Attachments {
		attached := "-"
		if a.Attached != nil {
			attached = a.Attached.UTC().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", short(a.ID), nameOf(a.Namespace, a.Pod, a.Container, ""),
			a.Owner, dash(a.Mode), dash(a.Visibility), layersOf(a.Layers), dash(a.Digest), attached, size(a.Memory), noteOf(a))
	}
	tw.Flush()
	if len(late) > 0 {
		fmt.Fprintln(w, "  LATE: these containers ran before their policy was attached; restart them to have all of it:")
		for _, a := range late {
			fmt.Fprintf(w, "    %s %s: %s\n", short(a.ID), nameOf(a.Namespace, a.Pod, a.Container, ""), a.Late)
		}
	}
	if len(other) > 0 {
		fmt.Fprintln(w, "  OTHER PIN VERSION: in force, but this nriguard reads neither their records nor their events; restart them to bring them under this version:")
		for _, a := range other {
			fmt.Fprintf(w, "    %s: pin version %d (this one reads %d), owner %s, cgroup %d\n", a.ID, a.PinVersion, bpf.PinVersion, a.Owner, a.CgroupID)
		}
	}
}

func noteOf(a engine.AttachmentStatus) string {
	var notes []string
	if a.Late != "" {
		notes = append(notes, "LATE")
	}
	if a.OtherVersion {
		notes = append(notes, fmt.Sprintf("PIN VERSION %d", a.PinVersion))
	} else if !a.Complete {
		notes = append(notes, "INCOMPLETE")
	}
	if a.Error != "" {
		notes = append(notes, "error: "+a.Error)
	}
	return strings.Join(notes, "; ")
}

// layersOf says an attachment's layers briefly: egress:ceiling+label
// exec:label (their sources are in -o json).
func layersOf(layers []engine.LayerStatus) string {
	byKind := map[string][]string{}
	var kinds []string
	for _, l := range layers {
		if _, ok := byKind[l.Kind]; !ok {
			kinds = append(kinds, l.Kind)
		}
		name := l.Layer
		if name == "" {
			name = "own"
		}
		byKind[l.Kind] = append(byKind[l.Kind], name)
	}
	var out []string
	for _, k := range kinds {
		out = append(out, k+":"+strings.Join(byKind[k], "+"))
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, " ")
}

func nameOf(namespace, pod, container, id string) string {
	var parts []string
	for _, p := range []string{namespace, pod, container} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	switch {
	case len(parts) > 0 && id != "":
		return strings.Join(parts, "/") + " (" + short(id) + ")"
	case len(parts) > 0:
		return strings.Join(parts, "/")
	case id != "":
		return short(id)
	}
	return "-"
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func size(n int64) string {
	switch {
	case n >= 10<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}
