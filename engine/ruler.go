package engine

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/nriguard/nriguard/events"
	"github.com/nriguard/nriguard/policy"
)

// Ruler names the rule of a container's policy that decided an event: the
// rule as written in the layer the event names, or the layer's default.
// It asks the reference decisions again (the kernel's tables hold verdicts,
// not rules), so it costs what they do: a reader that names many events of
// large policies pays it per event.
type Ruler struct {
	egress   []*policy.Egress
	names    []policy.NameClass         // the compiled policy's DNS names, as events index them
	programs map[policy.FileID][]string // the exe= patterns that name a file
	exec     []execLayer
}

type execLayer struct {
	rules *policy.Exec
	table *policy.ExecTable // resolved, with the rules' positions
}

// NewRuler makes a Ruler from a container's egress layers and the program
// classes CompileEgress gave its files, and its exec layers with their
// resolved tables.
func NewRuler(egress []*policy.Egress, c *policy.Compiled, progs policy.Programs) *Ruler {
	rl := &Ruler{egress: egress, programs: map[policy.FileID][]string{}}
	if c != nil {
		rl.names = c.Names
		for id, f := range c.ProgramFiles { // (set before the compiled tables drop them)
			if f.Class > 0 && int(f.Class) <= len(progs) {
				rl.programs[id] = progs[f.Class-1]
			}
		}
	}
	return rl
}

// AddExec adds an exec layer and its resolved table.
func (rl *Ruler) AddExec(x *policy.Exec, t *policy.ExecTable) {
	rl.exec = append(rl.exec, execLayer{x, t})
}

// Rule fills r.Rule, if the record is a decision of a layer it knows and a
// rule of it agrees with the kernel's verdict.
func (rl *Ruler) Rule(r *events.Record) {
	if rl == nil || r.Verdict == "" {
		return
	}
	want := policy.Deny // the action of the rule to name: events are refusals, or allowed flows and execs
	if r.Verdict == events.Allowed {
		want = policy.Allow
	}
	if r.NameIndex > 0 {
		rl.nameRule(r)
		return
	}
	switch r.Kind {
	case events.KindFlow:
		if r.Phase != events.PhaseNew {
			return // counts: the flow's first record named its rule
		}
		fallthrough
	case events.KindConnect, events.KindSendmsg, events.KindPacket:
		e := layerNamed(rl.egress, r.Layer, func(e *policy.Egress) policy.Layer { return e.Layer })
		proto := policy.TCP
		if r.Proto == "udp" {
			proto = policy.UDP
		} else if r.Proto != "tcp" {
			return
		}
		addr, err := netip.ParseAddr(r.Dest)
		if e == nil || err != nil {
			return
		}
		pats := rl.programs[fileID(r.ExeFile)]
		who := policy.Principal{UID: r.UID, GID: r.GID, Exe: func(p string) bool { return slices.Contains(pats, p) }}
		m := e.DecideFor(proto, addr, r.Port, who)
		if m.Action != want {
			// the kernel judged otherwise than the file's exe= patterns
			// say: the file changed after attach, and the kernel judged it
			// as a program no exe= names
			who.Exe = nil
			if m = e.DecideFor(proto, addr, r.Port, who); m.Action != want {
				return // no rule of this layer agrees with the kernel: name none
			}
		}
		if m.Rule < 0 {
			r.Rule = "default " + e.Default.String()
		} else {
			r.Rule = e.Rules[m.Rule].Text
		}
	case events.KindExec:
		var l *execLayer
		for i := range rl.exec {
			if rl.exec[i].rules.Layer.String() == r.Layer || len(rl.exec) == 1 {
				l = &rl.exec[i]
				break
			}
		}
		if l == nil {
			return
		}
		pos := l.table.RuleFor(fileID(r.File), r.UID, r.GID)
		if pos > 0 && pos <= len(l.rules.Rules) && l.rules.Rules[pos-1].Action == want {
			r.Rule = l.rules.Rules[pos-1].Text
		} else if l.rules.Default == want {
			// (an allow rule's file changed after attach gets the default)
			r.Rule = "default " + l.rules.Default.String()
		}
	}
}

// nameRule fills a flow a DNS name let pass with that name, and the rule of
// the layer with names that gives it for the flow's protocol and port.
func (rl *Ruler) nameRule(r *events.Record) {
	if int(r.NameIndex) > len(rl.names) {
		return
	}
	r.DNSName = rl.names[r.NameIndex-1].Pattern
	if r.Phase != "" && r.Phase != events.PhaseNew {
		return // counts: the flow's first record named its rule
	}
	for _, e := range rl.egress {
		for _, ru := range e.Rules {
			if ru.Name == r.DNSName && (ru.Proto == policy.AnyProto || ru.Proto.String() == r.Proto) && ru.MatchesPort(r.Port) {
				r.Rule = ru.Text
				return
			}
		}
	}
}

// layerNamed is the layer an event names ("" when a policy has one).
func layerNamed[L any](ls []L, name string, layer func(L) policy.Layer) L {
	var zero L
	for _, l := range ls {
		if layer(l).String() == name {
			return l
		}
	}
	if len(ls) == 1 {
		return ls[0]
	}
	return zero
}

// fileID reads "major:minor:inode" as a FileID.
func fileID(s string) policy.FileID {
	f := strings.Split(s, ":")
	if len(f) != 3 {
		return policy.FileID{}
	}
	maj, _ := strconv.ParseUint(f[0], 10, 32)
	min, _ := strconv.ParseUint(f[1], 10, 32)
	ino, _ := strconv.ParseUint(f[2], 10, 64)
	return policy.FileID{Dev: uint32(maj<<20 | min), Ino: ino}
}

func (rl *Ruler) String() string {
	return fmt.Sprintf("ruler(%d egress, %d exec)", len(rl.egress), len(rl.exec))
}
