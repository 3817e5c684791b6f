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
	Pos  int
	Text string
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
		if len(f) != 2 {
			return a, l.errorf(seg, "expected %s PATH with one absolute path (a trailing / for a directory)", f[0])
		}
		p := f[1]
		if !strings.HasPrefix(p, "/") {
			return a, l.errorf(seg, "invalid path %q: expected an absolute path, as the container sees it", p)
		}
		for _, part := range strings.Split(p, "/") {
			if part == ".." || part == "." {
				return a, l.errorf(seg, "invalid path %q: expected no . or .. components", p)
			}
		}
		r := ExecRule{Action: a, Dir: strings.HasSuffix(p, "/"), Pos: seg.pos, Text: seg.text, Path: path.Clean(p)}
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

// ExecTable is an exec policy resolved against one container's filesystem:
// the verdict for each file the rules name, with its stamp, and the default
// for the rest. A file whose stamp no longer matches is judged as a file the
// rules do not name, except that a denied one stays denied.
type ExecTable struct {
	Default Verdict
	Files   map[FileID]Verdict
	Stamps  map[FileID]Stamp
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
	for id, v := range out.Files {
		if v == out.Default {
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
