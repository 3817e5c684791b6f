package policy

import (
	"path"
	"strings"
)

// ExecRule is one "allow|deny PATH" line of an exec value.
type ExecRule struct {
	Action Action
	// Path is absolute, as the container sees its own filesystem, without
	// the trailing slash of a directory rule.
	Path string
	Dir  bool // "PATH/": every program below the directory
	// Quals: the users and groups the rule is about (uid=, gid=); none:
	// everyone.
	Quals Qualifiers
	Pos   int
	Text  string
}

// Exec is a parsed exec value: which programs a container may run.
type Exec struct {
	Layer           Layer // as Egress.Layer
	Rules           []ExecRule
	Default         Action
	DefaultExplicit bool
}

// ParseExec parses an exec value:
//
//	rule = ("allow" | "deny") PATH | "default" ("allow" | "deny")
//
// PATH is absolute; a trailing "/" makes it a directory rule. The default
// follows the egress rule: only allows deny by default, only denies allow.
func ParseExec(key, value string) (*Exec, error) {
	e := &Exec{}
	var err error
	e.Default, e.DefaultExplicit, err = parseRules(key, value, func(l *ruleList, seg segment, f []string) (Action, error) {
		a, ok := parseAction(f[0])
		if !ok {
			return a, l.errorf(seg, `expected "allow", "deny" or "default" at the start, got %q`, f[0])
		}
		if len(f) < 2 {
			return a, l.errorf(seg, "expected %s PATH with one absolute path (a trailing / for a directory)", f[0])
		}
		p := f[1]
		if msg := checkProgramPath(p); msg != "" {
			return a, l.errorf(seg, "%s", msg)
		}
		r := ExecRule{Action: a, Dir: strings.HasSuffix(p, "/"), Pos: seg.pos, Text: seg.text, Path: path.Clean(p)}
		if len(f) > 2 {
			if _, _, found := strings.Cut(f[2], "="); !found {
				return a, l.errorf(seg, "expected %s PATH with one absolute path (a trailing / for a directory), then qualifiers NAME=VALUE (uid=, gid=), got %q", f[0], f[2])
			}
			var err error
			if r.Quals, err = l.parseQualifiers(seg, f[2:], false); err != nil {
				return a, err
			}
		}
		if r.Path == "/" {
			r.Dir = true
		}
		e.Rules = append(e.Rules, r)
		return a, nil
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// FileID identifies an executable file as the kernel sees it at exec: the
// device of its superblock (kernel encoding, major<<20 | minor) and its
// inode number.
type FileID struct {
	Dev uint32
	Ino uint64
}

// Stamp is what binds a file's identity to its content: its change time
// when the policy was attached. Writing to the file, or making a new one
// that gets its inode number, changes it.
type Stamp struct {
	Sec  int64
	Nsec uint32
}

// Weakness is why a file's change time may not follow its content: where
// its filesystem lets a write leave it alone. An allow rule that names such
// a file can bind it to its content only where writes to it are refused
// (the BPF LSM backend).
type Weakness struct {
	Path string // as the rule's resolution reached it
	Why  string // WeakShm or WeakOverlay
}

// Weaknesses.
const (
	// tmpfs, ramfs, hugetlbfs: a page read and then written through a
	// shared mapping changes no time of the file
	WeakShm = "shm"
	// an overlay: a write to a layer's file from outside the overlay (where
	// the layers are reachable: the host) leaves the overlay's cached times
	WeakOverlay = "overlay"
)

// Explain says what the weakness lets a writer do, in words.
func (w Weakness) Explain() string {
	switch w.Why {
	case WeakShm:
		return w.Path + " is on a memory filesystem (tmpfs), where a write through a shared mapping does not change the file's change time"
	case WeakOverlay:
		return w.Path + " is on an overlay, whose layers a process of the host can write without changing the overlay's change time"
	}
	return w.Path + ": " + w.Why
}

// ExecTable is an exec policy resolved against one container's filesystem:
// the verdict for each file the rules name, with its stamp, and the default
// for the rest. A file whose stamp no longer matches is judged as a file the
// rules do not name, except that a denied one stays denied.
type ExecTable struct {
	Default Verdict
	Files   map[FileID]Verdict
	Stamps  map[FileID]Stamp
	// Conds are, for a file uid= or gid= rules name, the verdicts for the
	// users and groups they name, where those differ from Files': the
	// first cell that holds the running process's real uid and gid decides.
	Conds map[FileID][]CondVerdict
	// Rules are, for a layer's table, the position of the rule that decided
	// each file for anyone (0: the default), for naming it in events; not
	// enforced, and not kept by IntersectExec.
	Rules map[FileID]int
	// Weak are the files whose change time may not follow their content
	// (Weakness), as resolved; not enforced, not kept by IntersectExec.
	Weak map[FileID]Weakness
}

// CondVerdict is a verdict for the processes whose real uid and gid fall
// in a cell.
type CondVerdict struct {
	UIDs, GIDs IDRange
	Verdict    Verdict
	Rule       int // the position of the rule that decided (a layer's table)
}

// CondAction is a layer's CondVerdict before it names the layer.
type CondAction struct {
	UIDs, GIDs IDRange
	Action     Action
	Rule       int
}

// MaxConds bounds the cells of one file: the exec program tries them in
// turn.
const MaxConds = 8

// SetConds records a layer's cells (resolve.Exec makes them).
func (t *ExecTable) SetConds(layer Layer, conds map[FileID][]CondAction) {
	if len(conds) == 0 {
		return
	}
	t.Conds = map[FileID][]CondVerdict{}
	for id, cs := range conds {
		for _, c := range cs {
			v := Allowed
			if c.Action == Deny {
				v = Verdict{Action: Deny, Layer: layer}
			}
			t.Conds[id] = append(t.Conds[id], CondVerdict{c.UIDs, c.GIDs, v, c.Rule})
		}
	}
}

// RuleFor is the position of the rule of a layer's table that decides a
// file run by a process of uid and gid (0: the default).
func (t *ExecTable) RuleFor(id FileID, uid, gid uint32) int {
	for _, c := range t.Conds[id] {
		if c.UIDs.Lo <= uid && uid <= c.UIDs.Hi && c.GIDs.Lo <= gid && gid <= c.GIDs.Hi {
			return c.Rule
		}
	}
	return t.Rules[id]
}

// VerdictFor is what a table says of a file run by a process of uid and gid.
func (t *ExecTable) VerdictFor(id FileID, uid, gid uint32) Verdict {
	for _, c := range t.Conds[id] {
		if c.UIDs.Lo <= uid && uid <= c.UIDs.Hi && c.GIDs.Lo <= gid && gid <= c.GIDs.Hi {
			return c.Verdict
		}
	}
	if v, ok := t.Files[id]; ok {
		return v
	}
	return t.Default
}

// NewExecTable is the table of one layer: what its rules resolved to, with
// denials naming the layer, and the files' stamps.
func NewExecTable(layer Layer, def Action, files map[FileID]Action, stamps map[FileID]Stamp) *ExecTable {
	v := func(a Action) Verdict {
		if a == Deny {
			return Verdict{Action: Deny, Layer: layer}
		}
		return Allowed
	}
	t := &ExecTable{Default: v(def), Files: make(map[FileID]Verdict, len(files)), Stamps: map[FileID]Stamp{}}
	for id, a := range files {
		t.Files[id] = v(a)
		t.Stamps[id] = stamps[id]
	}
	return t
}

// IntersectExec combines the resolved tables of a container's layers for
// mode: a program runs only if every table lets it run (in audit mode, only
// the ceiling's refusals are enforced; the others are reported).
func IntersectExec(mode Mode, tables ...*ExecTable) *ExecTable {
	out := &ExecTable{Default: Allowed, Files: map[FileID]Verdict{}, Stamps: map[FileID]Stamp{}}
	for _, t := range tables {
		out.Default = refusal(out.Default, t.Default)
	}
	verdict := func(t *ExecTable, id FileID) Verdict {
		if v, ok := t.Files[id]; ok {
			return v
		}
		return t.Default
	}
	for _, t := range tables {
		for id := range t.Files {
			if _, done := out.Files[id]; done {
				continue
			}
			v := Allowed
			for _, u := range tables {
				v = refusal(v, verdict(u, id))
			}
			out.Files[id] = v.inMode(mode)
		}
	}
	out.Default = out.Default.inMode(mode)
	// the cells of every file some layer has cells for: cut where any
	// layer's cells do, each cell's verdict every layer's there
	for _, t := range tables {
		for id := range t.Conds {
			if _, done := out.Conds[id]; done {
				continue
			}
			var uids, gids []IDRange
			for _, u := range tables {
				for _, c := range u.Conds[id] {
					uids, gids = append(uids, c.UIDs), append(gids, c.GIDs)
				}
			}
			base := verdict(out, id)
			if _, named := out.Files[id]; !named {
				base = out.Default
			}
			var cells []CondVerdict
			for _, uc := range Cells(uids) {
				for _, gc := range Cells(gids) {
					v := Allowed
					for _, u := range tables {
						v = refusal(v, u.VerdictFor(id, uc.Lo, gc.Lo))
					}
					if v = v.inMode(mode); v != base {
						cells = append(cells, CondVerdict{UIDs: uc, GIDs: gc, Verdict: v})
					}
				}
			}
			if len(cells) > 0 {
				if out.Conds == nil {
					out.Conds = map[FileID][]CondVerdict{}
				}
				out.Conds[id] = cells
				out.Files[id] = base // the cells need the file's entry
			}
		}
	}
	for id, v := range out.Files {
		if v == out.Default && len(out.Conds[id]) == 0 {
			delete(out.Files, id)
			continue
		}
		for _, t := range tables {
			if st, ok := t.Stamps[id]; ok {
				out.Stamps[id] = st
			}
		}
	}
	return out
}
