// Package profile learns a container's least-privilege policy from what it
// did: the flows and execs nriguard reported for it (visibility, or audit
// mode's would-deny records), written back as the rules that allow exactly
// that (docs/profile.md).
package profile

import (
	"cmp"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"

	"github.com/nriguard/nriguard/events"
	"github.com/nriguard/nriguard/policy"
)

// Workload names whose records are learned: every field given must match.
type Workload struct {
	Namespace, Pod, Container string // Container: a name or an id
}

func (w Workload) match(r *events.Record) bool {
	return (w.Namespace == "" || w.Namespace == r.Namespace) && (w.Pod == "" || w.Pod == r.Pod) &&
		(w.Container == "" || w.Container == r.Container || w.Container == r.ContainerID)
}

// Options say how rules are written.
type Options struct {
	// MergeAt: as many destinations (same protocol, port and program) in
	// one IPv4 /24 or IPv6 /64 become one rule on that prefix; 0 never.
	MergeAt int
}

// dest is a destination reached: protocol, address and port.
type dest struct {
	proto string
	addr  netip.Addr
	port  uint16
}

// sender is who reached a destination: the program ("" unknown) and user.
type sender struct {
	exe      string
	uid, gid uint32
}

// container is what one container did.
type container struct {
	key      Workload // as the records name it
	id       string
	dests    map[dest]map[sender]bool // -> who reached it
	programs map[string]bool          // exec'd, as the paths passed to execve
	files    map[string]string        // exe_file -> path, from exec records
	refused  int                      // refusals in enforce mode: not learned
	ignored  []string                 // what could not be learned, said once each
}

// Learner gathers the records of a workload.
type Learner struct {
	w          Workload
	containers map[string]*container // by container id
	Lost       uint64                // records the kernel or a reader lost in the window: anyone's
	Records    int                   // records of the workload learned from
}

// NewLearner learns from the records of w.
func NewLearner(w Workload) *Learner {
	return &Learner{w: w, containers: map[string]*container{}}
}

// Add learns from one record, if it is the workload's and says what it did.
func (l *Learner) Add(r *events.Record) {
	if r.Kind == events.KindLost {
		l.Lost += r.Count
		return
	}
	if !l.w.match(r) || r.ContainerID == "" {
		return
	}
	c := l.containers[r.ContainerID]
	if c == nil {
		c = &container{key: Workload{r.Namespace, r.Pod, r.Container}, id: r.ContainerID,
			dests: map[dest]map[sender]bool{}, programs: map[string]bool{}, files: map[string]string{}}
		l.containers[r.ContainerID] = c
	}
	if r.Verdict == events.Denied {
		c.refused++ // it did not happen: not learned
		return
	}
	switch r.Kind {
	case events.KindExec:
		l.Records++
		if strings.HasPrefix(r.Filename, "/proc/") {
			// the runtime's own re-exec (runc's /proc/self/exe) as it
			// enters the container: not a program of the image
			c.ignore(fmt.Sprintf("exec of %s: a file under /proc, not learned", r.Filename))
			return
		}
		if !path.IsAbs(r.Filename) && r.Exe == "" {
			c.ignore(fmt.Sprintf("exec of %q: not an absolute path", r.Filename))
			return
		}
		prog := path.Clean(r.Filename)
		if r.Exe != "" && r.Exe != prog {
			// a #! script (or a link): exec rules name the file the kernel
			// runs, the interpreter, and refuse a script
			prog = r.Exe
		}
		c.programs[prog] = true
		if r.File != "" {
			c.files[r.File] = prog
		}
	case events.KindFlow, events.KindConnect, events.KindSendmsg:
		if r.Kind == events.KindFlow && r.Phase != events.PhaseNew {
			return // counts: the flow was learned from its first record
		}
		a, err := netip.ParseAddr(r.Dest)
		if err != nil || (r.Proto != "tcp" && r.Proto != "udp") {
			return
		}
		l.Records++
		d := dest{r.Proto, a.Unmap(), r.Port}
		if c.dests[d] == nil {
			c.dests[d] = map[sender]bool{}
		}
		exe := r.Exe
		if exe == "" {
			exe = c.files[r.ExeFile] // the process had gone: its file, as an exec named it
		}
		c.dests[d][sender{exe, r.UID, r.GID}] = true
	case events.KindSocket:
		c.ignore(fmt.Sprintf("a %s %s socket: no rule allows it (only TCP and UDP flows are judged)", r.Proto, r.SockType))
	}
}

func (c *container) ignore(s string) {
	if !slices.Contains(c.ignored, s) {
		c.ignored = append(c.ignored, s)
	}
}

// Profile is a container's learned policy.
type Profile struct {
	Workload
	ID      string
	Egress  []string // rules, one a destination (ports never joined: podman splits values at commas)
	Exec    []string
	Flows   int // destinations learned
	Refused int // refusals seen (enforce mode): not learned
	Notes   []string

	reached  map[dest]map[sender]bool
	programs map[string]bool
}

// Profiles writes what each container did as rules: exact destinations,
// exe= where one known program reached a destination, prefixes where
// MergeAt neighbours say so; the programs exec'd.
func (l *Learner) Profiles(o Options) []Profile {
	var out []Profile
	for _, c := range l.containers {
		p := Profile{Workload: c.key, ID: c.id, Refused: c.refused, Notes: slices.Clone(c.ignored), Flows: len(c.dests),
			reached: c.dests, programs: c.programs}
		type group struct {
			proto string
			port  uint16
			exe   string
		}
		byGroup := map[group][]netip.Addr{}
		for d, senders := range c.dests {
			exes := map[string]bool{}
			for m := range senders {
				exes[m.exe] = true
			}
			exe := ""
			if len(exes) == 1 {
				for e := range exes {
					exe = e // "" when not known: no qualifier
				}
			}
			g := group{d.proto, d.port, exe}
			byGroup[g] = append(byGroup[g], d.addr)
		}
		for g, addrs := range byGroup {
			for _, pfx := range merge(addrs, o.MergeAt) {
				r := fmt.Sprintf("allow %s %s:%d", g.proto, hostOf(pfx), g.port)
				if g.exe != "" {
					r += " exe=" + g.exe
				}
				p.Egress = append(p.Egress, r)
			}
		}
		slices.Sort(p.Egress)
		for prog := range c.programs {
			p.Exec = append(p.Exec, "allow "+prog)
		}
		slices.Sort(p.Exec)
		if len(c.programs) == 0 {
			p.Notes = append(p.Notes, "no exec records: no exec rules learned (visibility: execs, or both)")
		}
		if len(c.dests) == 0 {
			p.Notes = append(p.Notes, "no flow records: no egress rules learned (nothing reached, or visibility: flows was off)")
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Profile) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Pod, b.Pod), cmp.Compare(a.Container, b.Container), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// hostOf writes a prefix as a rule's destination: an address alone, or a
// prefix; IPv6 in brackets.
func hostOf(p netip.Prefix) string {
	s := p.Addr().String()
	if p.IsSingleIP() {
		if p.Addr().Is6() {
			return "[" + s + "]"
		}
		return s
	}
	if p.Addr().Is6() {
		return "[" + p.String() + "]"
	}
	return p.String()
}

// merge turns addresses into prefixes: single addresses, except that at
// least at addresses in one IPv4 /24 (IPv6 /64) become that prefix.
func merge(addrs []netip.Addr, at int) []netip.Prefix {
	slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	byNet := map[netip.Prefix][]netip.Addr{}
	var nets []netip.Prefix
	for _, a := range addrs {
		bits := 24
		if a.Is6() {
			bits = 64
		}
		n, _ := a.Prefix(bits)
		if byNet[n] == nil {
			nets = append(nets, n)
		}
		byNet[n] = append(byNet[n], a)
	}
	var out []netip.Prefix
	for _, n := range nets {
		if at > 0 && len(byNet[n]) >= at {
			out = append(out, n)
			continue
		}
		for _, a := range byNet[n] {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

// Annotations are a profile as pod annotations (scoped to its container)
// when it has a pod, else as a container's own.
func (p Profile) Annotations() map[string]string {
	suffix := ""
	if p.Pod != "" && p.Container != "" {
		suffix = "/container." + p.Container
	}
	out := map[string]string{}
	if len(p.Egress) > 0 { // (none: it reached nothing, or its flows were not seen; no rules either way)
		out["egress.nriguard.io"+suffix] = strings.Join(p.Egress, "; ")
	}
	if len(p.Exec) > 0 {
		out["exec.nriguard.io"+suffix] = strings.Join(p.Exec, "; ")
	}
	return out
}

// Diff compares what the workload did with a policy it is (or would be)
// held to: flows and programs the policy refuses (would add), and allow
// rules nothing used (never used). Either policy may be nil: not compared.
func (p Profile) Diff(eg *policy.Egress, ex *policy.Exec) (wouldAdd, neverUsed []string) {
	used := map[int]bool{}
	for d, senders := range p.reached {
		for m := range senders {
			if eg == nil {
				break
			}
			exe := m.exe
			proto := policy.TCP
			if d.proto == "udp" {
				proto = policy.UDP
			}
			who := policy.Principal{UID: m.uid, GID: m.gid, Exe: func(pattern string) bool {
				return exe != "" && (pattern == exe || strings.HasSuffix(pattern, "/") && strings.HasPrefix(exe, pattern))
			}}
			m := eg.DecideFor(proto, d.addr, d.port, who)
			if m.Action != policy.Allow {
				wouldAdd = append(wouldAdd, fmt.Sprintf("allow %s %s:%d%s", d.proto, hostOf(netip.PrefixFrom(d.addr, d.addr.BitLen())), d.port, qual(exe)))
			} else if m.Rule >= 0 {
				used[m.Rule] = true
			}
		}
	}
	if eg != nil {
		for i, r := range eg.Rules {
			if r.Action == policy.Allow && !used[i] {
				neverUsed = append(neverUsed, r.Text)
			}
		}
	}
	usedExec := map[int]bool{}
	for prog := range p.programs {
		if ex == nil {
			break
		}
		at := execRuleFor(ex, prog)
		if at >= 0 && ex.Rules[at].Action == policy.Allow {
			usedExec[at] = true
		} else if at >= 0 || ex.Default != policy.Allow {
			wouldAdd = append(wouldAdd, "allow "+prog)
		}
	}
	if ex != nil {
		for i, r := range ex.Rules {
			if r.Action == policy.Allow && !usedExec[i] {
				neverUsed = append(neverUsed, r.Text)
			}
		}
	}
	slices.Sort(wouldAdd)
	slices.Sort(neverUsed)
	return wouldAdd, neverUsed
}

func qual(exe string) string {
	if exe == "" {
		return ""
	}
	return " exe=" + exe
}

// execRuleFor is the rule of ex that decides prog, by path as exec rules
// are written (docs/policy.md): a rule naming the path beats a directory
// rule, a deeper directory a shallower one, deny an allow on the same; -1:
// the default. Rules about some users only (uid=, gid=) are left out: the
// profile does not say who exec'd. (The kernel decides by file: a link and
// its target are one program there, two paths here.)
func execRuleFor(ex *policy.Exec, prog string) int {
	at, best := -1, -1
	for i, r := range ex.Rules {
		if len(r.Quals.UIDs) > 0 || len(r.Quals.GIDs) > 0 {
			continue
		}
		spec := -1
		switch {
		case !r.Dir && r.Path == prog:
			spec = len(prog) + 1 // a file beats any directory above it
		case r.Dir && strings.HasPrefix(prog, r.Path+"/"):
			spec = len(r.Path)
		}
		if spec > best || spec == best && spec >= 0 && r.Action == policy.Deny {
			at, best = i, spec
		}
	}
	return at
}
