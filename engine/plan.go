package engine

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/policy"
	"github.com/nriguard/nriguard/resolve"
)

// A Plan is what a decision attaches to one container: its rules compiled
// into the kernel's tables, with the files they name resolved once, at the
// container's first attach. The plan's record is pinned with the
// attachment, so that whoever adopts it later builds the same plan from it
// (planFromRecord) without resolving again. Every path that attaches —
// the NRI plugin, the OCI hook, nriguard run — makes one with NewPlan.
type Plan struct {
	Container Container // its ID, Name, Pod and Namespace
	Decision  *Decision
	Egress    *policy.Compiled  // nil: no egress policy (or visibility)
	Exec      *policy.ExecTable // nil: no exec policy (or visibility)
	Rules     *Ruler            // names the rules that decide its events
	Warnings  []string          // rules that name no file
	rec       record
}

// NewPlan resolves d's rules inside root (the container's root as this
// process can open it: /proc/<pid>/root) and compiles them. late, if not
// empty, says why the container has already run (recorded and reported).
func NewPlan(c Container, d *Decision, root, late string) (*Plan, error) {
	p := &Plan{Container: c, Decision: d, rec: record{V: recordVersion, Decision: textOf(c, d), Late: late}}
	var err error
	if eg := d.Egress(); len(eg) > 0 {
		var w []string
		p.rec.Programs, w, err = resolvePrograms(eg, root)
		p.Warnings = append(p.Warnings, w...)
		if err != nil {
			return nil, err
		}
	}
	for _, l := range d.Layers {
		if l.Exec == nil {
			continue
		}
		t, w, err := resolve.Exec(root, l.Key, l.Exec)
		p.Warnings = append(p.Warnings, w...)
		if err != nil {
			return nil, err
		}
		p.rec.Exec = append(p.rec.Exec, t)
	}
	return p, p.compile()
}

// planFromRecord is the plan an attachment was made from, from what was
// pinned with it: nothing is resolved.
func planFromRecord(data []byte) (*Plan, error) {
	rec, err := decodeRecord(data)
	if err != nil {
		return nil, err
	}
	c, d, err := rec.Decision.parse()
	if err != nil {
		return nil, err
	}
	p := &Plan{Container: c, Decision: d, rec: *rec}
	return p, p.compile()
}

// compile makes the tables from the decision and the recorded identities.
func (p *Plan) compile() error {
	d := p.Decision
	p.Rules = &Ruler{}
	if eg := d.Egress(); len(eg) > 0 {
		c, rl, err := compileEgress(d.Mode, eg, p.rec.Programs)
		if err != nil {
			return err
		}
		p.Egress, p.Rules = c, rl
	} else if d.Visibility&policy.VisFlows != 0 {
		p.Egress = observeOnly()
	}
	var tables []*policy.ExecTable
	i := 0
	for _, l := range d.Layers {
		if l.Exec == nil {
			continue
		}
		if i >= len(p.rec.Exec) {
			return errors.New("the record has fewer exec tables than the decision has layers")
		}
		tables = append(tables, p.rec.Exec[i])
		p.Rules.AddExec(l.Exec, p.rec.Exec[i])
		i++
	}
	if len(tables) > 0 {
		p.Exec = policy.IntersectExec(d.Mode, tables...)
	}
	if d.Visibility&policy.VisExecs != 0 && (p.Egress != nil || p.Exec != nil) && p.Exec == nil {
		p.Exec = &policy.ExecTable{Default: policy.Allowed} // without exec rules: every exec allowed, and seen
	}
	return nil
}

// CheckBinding refuses a plan whose rules allow a file that nriguard
// cannot bind to its content (policy.Weakness). Where writes to the
// programs exec rules allow are refused from the container (guarded: the
// BPF LSM backend's write guard), only an overlay's file, and only for a
// command on the host, whose layers it can reach (host); elsewhere, and
// for exe= programs (which the guard does not know), a file on a memory
// filesystem too. The error
// names the label, the rule and why.
func (p *Plan) CheckBinding(guarded, host bool) error {
	refusedIf := func(guarded bool) func(policy.Weakness) bool {
		return func(w policy.Weakness) bool {
			if w.Why == "" {
				return false
			}
			if w.Why == policy.WeakOverlay {
				return host
			}
			return !guarded
		}
	}
	refused := refusedIf(guarded)
	backend := "with BPF LSM"
	if !guarded {
		backend = "without BPF LSM (the tracepoint and SIGKILL backend), where writes to it cannot be refused"
	}
	i := 0
	for _, l := range p.Decision.Layers {
		if l.Exec == nil {
			continue
		}
		t := p.rec.Exec[i]
		i++
		for id, w := range t.Weak {
			if !refused(w) || !allows(t, id) {
				continue
			}
			pos := t.Rules[id]
			rule := "a qualified rule"
			if pos > 0 && pos <= len(l.Exec.Rules) {
				rule = fmt.Sprintf("rule %d %q", pos, l.Exec.Rules[pos-1].Text)
			}
			return fmt.Errorf("%s: %s allows a file nriguard cannot bind to its content on this node, %s: %s; name a file on another filesystem (docs/policy.md, \"What the program is\")",
				l.Key, rule, backend, w.Explain())
		}
	}
	backend = "for an exe= rule (writes to it are not refused)"
	for _, f := range p.rec.Programs {
		if !refusedIf(false)(f.Weak) {
			continue
		}
		for _, l := range p.Decision.Egress() {
			for _, r := range l.Rules {
				if slices.Contains(f.Patterns, r.Quals.ExePattern()) {
					return fmt.Errorf("%s: rule %d %q names a program nriguard cannot bind to its content on this node, %s: %s; name a file on another filesystem (docs/policy.md, \"What the program is\")",
						layerKey(p.Decision, l), r.Pos, r.Text, backend, f.Weak.Explain())
				}
			}
		}
	}
	return nil
}

// allows tells whether a layer's table lets id run for anyone.
func allows(t *policy.ExecTable, id policy.FileID) bool {
	if t.Files[id].Action == policy.Allow {
		return true
	}
	for _, c := range t.Conds[id] {
		if c.Verdict.Action == policy.Allow {
			return true
		}
	}
	return false
}

// layerKey is the key of the layer whose egress rules e are.
func layerKey(d *Decision, e *policy.Egress) string {
	for _, l := range d.Layers {
		if l.Egress == e {
			return l.Key
		}
	}
	return "egress"
}

// Late says why the container had run before its policy was attached
// ("" if it had not).
func (p *Plan) Late() string { return p.rec.Late }

// Spec is what bpf attaches for the plan to cgroupDir, its record
// included.
func (p *Plan) Spec(cgroupDir string, owner bpf.Owner) (bpf.Spec, error) {
	if p.rec.Attached.IsZero() {
		p.rec.Attached = time.Now().UTC().Truncate(time.Second)
	}
	data, err := p.rec.encode()
	if err != nil {
		return bpf.Spec{}, fmt.Errorf("record: %w", err)
	}
	return bpf.Spec{ID: p.Container.ID, Cgroup: cgroupDir, Egress: p.Egress, Exec: p.Exec, Visibility: p.Decision.Visibility, Owner: owner, Record: data}, nil
}

// Info names the plan's container, and the rules that decide, in events.
func (p *Plan) Info() Info {
	c := p.Container
	return Info{ID: c.ID, Name: c.Name, Pod: c.Pod, Namespace: c.Namespace, rules: p.Rules}
}
