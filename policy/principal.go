package policy

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Qualifiers restrict a rule to some principals: the program that makes the
// flow or runs (exe=), its user (uid=) and its group (gid=). All those
// given must hold; a rule without any holds for everyone.
type Qualifiers struct {
	// Exe is a program as exec rules name one: an absolute path as the
	// container sees it, without the trailing "/" of ExeDir (every program
	// below the directory). Resolved to the files the kernel runs.
	Exe    string
	ExeDir bool
	UIDs   []IDRange // empty: any user
	GIDs   []IDRange // empty: any group
}

// IDRange is an inclusive range of user or group ids.
type IDRange struct{ Lo, Hi uint32 }

// Any tells whether the rule is qualified at all.
func (q *Qualifiers) Any() bool { return q.Exe != "" || len(q.UIDs) > 0 || len(q.GIDs) > 0 }

// ExePattern is the exe= value as a key: the path, with "/" for a
// directory.
func (q *Qualifiers) ExePattern() string {
	if q.ExeDir && q.Exe != "/" {
		return q.Exe + "/"
	}
	return q.Exe
}

// Principal is who makes a flow or runs a program: the program (which of
// the policy's exe= patterns it is, as resolved to files), the user and
// the group.
type Principal struct {
	// Exe reports whether the program is one the exe= pattern (as
	// ExePattern writes it) names; nil: none.
	Exe      func(pattern string) bool
	UID, GID uint32
}

// Holds tells whether every qualifier holds for who; nil (the reference
// decision for anyone, Decide) holds for no qualifier.
func (q *Qualifiers) Holds(who *Principal) bool { return q.holds(who) }

func (q *Qualifiers) holds(who *Principal) bool {
	if !q.Any() {
		return true
	}
	if who == nil {
		return false
	}
	if q.Exe != "" && (who.Exe == nil || !who.Exe(q.ExePattern())) {
		return false
	}
	return inRanges(q.UIDs, who.UID) && inRanges(q.GIDs, who.GID)
}

func inRanges(rs []IDRange, id uint32) bool {
	if len(rs) == 0 {
		return true
	}
	return slices.ContainsFunc(rs, func(r IDRange) bool { return r.Lo <= id && id <= r.Hi })
}

// String writes the qualifiers as the grammar does.
func (q *Qualifiers) String() string {
	var parts []string
	if q.Exe != "" {
		parts = append(parts, "exe="+q.ExePattern())
	}
	for _, f := range []struct {
		name string
		rs   []IDRange
	}{{"uid", q.UIDs}, {"gid", q.GIDs}} {
		if len(f.rs) == 0 {
			continue
		}
		var vs []string
		for _, r := range f.rs {
			if r.Lo == r.Hi {
				vs = append(vs, strconv.FormatUint(uint64(r.Lo), 10))
			} else {
				vs = append(vs, fmt.Sprintf("%d-%d", r.Lo, r.Hi))
			}
		}
		parts = append(parts, f.name+"="+strings.Join(vs, ","))
	}
	return strings.Join(parts, " ")
}

// parseQualifiers reads the NAME=VALUE words after a rule's destination (or
// program). exe says whether exe= is allowed (egress rules) or not (exec
// rules, where the program is the rule's own path).
func (l *ruleList) parseQualifiers(seg segment, words []string, exe bool) (Qualifiers, error) {
	var q Qualifiers
	seen := map[string]bool{}
	for _, w := range words {
		name, value, found := strings.Cut(w, "=")
		if !found {
			return q, l.errorf(seg, "unexpected %q: expected a qualifier NAME=VALUE (exe=, uid=, gid=)", w)
		}
		if seen[name] {
			return q, l.errorf(seg, "qualifier %s= given twice: give one, with a comma list if need be", name)
		}
		seen[name] = true
		switch name {
		case "exe":
			if !exe {
				return q, l.errorf(seg, "exe= on an exec rule: the rule names the program itself (qualifiers here: uid=, gid=)")
			}
			if msg := checkProgramPath(value); msg != "" {
				return q, l.errorf(seg, "exe=: %s", msg)
			}
			q.Exe, q.ExeDir = path.Clean(value), strings.HasSuffix(value, "/") || path.Clean(value) == "/"
		case "uid", "gid":
			rs, msg := parseIDs(value)
			if msg != "" {
				return q, l.errorf(seg, "%s=: %s", name, msg)
			}
			if name == "uid" {
				q.UIDs = rs
			} else {
				q.GIDs = rs
			}
		default:
			expected := "exe=, uid= or gid="
			if !exe {
				expected = "uid= or gid="
			}
			return q, l.errorf(seg, "unknown qualifier %q: expected %s", name, expected)
		}
	}
	return q, nil
}

// checkProgramPath checks a program path as exec rules take it.
func checkProgramPath(p string) string {
	if !strings.HasPrefix(p, "/") {
		return fmt.Sprintf("invalid path %q: expected an absolute path, as the container sees it", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." || part == "." {
			return fmt.Sprintf("invalid path %q: expected no . or .. components", p)
		}
	}
	return ""
}

// parseIDs parses "0", "1000-1999" or a comma list of those. Names are not
// looked up: a user name may stand for different ids in different images.
func parseIDs(s string) ([]IDRange, string) {
	var out []IDRange
	for _, part := range strings.Split(s, ",") {
		loText, hiText, isRange := strings.Cut(part, "-")
		lo, err := strconv.ParseUint(loText, 10, 32)
		hi := lo
		if err == nil && isRange {
			hi, err = strconv.ParseUint(hiText, 10, 32)
		}
		if err != nil || loText == "" || loText[0] == '+' {
			return nil, fmt.Sprintf("invalid id %q: expected a number, a range a-b or a comma list of those (names are not looked up: give the number)", part)
		}
		if hi < lo {
			return nil, fmt.Sprintf("invalid range %q: the first id is above the second", part)
		}
		out = append(out, IDRange{uint32(lo), uint32(hi)})
	}
	return out, ""
}

// Cells cuts the id space where ranges begin and end: every id of a cell
// is named by the same ranges. The first cell starts at 0, the last ends at
// the largest id.
func Cells(ranges []IDRange) []IDRange {
	runs, _ := idRuns("", ranges)
	if runs == nil { // more cuts than MaxIDRuns: cut anyway
		cuts := map[uint32]bool{0: true}
		for _, r := range ranges {
			cuts[r.Lo] = true
			if r.Hi < ^uint32(0) {
				cuts[r.Hi+1] = true
			}
		}
		for c := range cuts {
			runs = append(runs, IDRun{c})
		}
		slices.SortFunc(runs, func(a, b IDRun) int { return int(int64(a.Start) - int64(b.Start)) })
	}
	out := make([]IDRange, len(runs))
	for i, r := range runs {
		out[i].Lo = r.Start
		out[i].Hi = ^uint32(0)
		if i+1 < len(runs) {
			out[i].Hi = runs[i+1].Start - 1
		}
	}
	return out
}
