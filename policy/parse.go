package policy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Error is a problem in a label value. It names the label key, the rule's
// position (1-based, 0 when the problem is the value as a whole) and what was
// expected, e.g.
//
//	egress.nriguard.io/container.web: rule 2 "allow tcp 10.0.0/33": invalid prefix length 33 (0-32)
type Error struct {
	Key  string
	Pos  int
	Rule string
	Msg  string
	// Line is the rule's line in the value (from 1); File says that Key
	// names a file, whose errors read FILE:LINE.
	Line int
	File bool
}

func (e *Error) Error() string {
	where := e.Key
	if e.File && e.Line > 0 {
		where = fmt.Sprintf("%s:%d", e.Key, e.Line)
	}
	if e.Pos == 0 {
		return fmt.Sprintf("%s: %s", where, e.Msg)
	}
	return fmt.Sprintf("%s: rule %d %q: %s", where, e.Pos, e.Rule, e.Msg)
}

// segment is one rule of a value, as written.
type segment struct {
	pos, line int
	text      string
}

// splitRules cuts a value into rules at ';' and newlines, drops '#' comments
// (to the end of the line) and empty rules, and numbers what is left from 1.
func splitRules(value string) []segment {
	var out []segment
	for n, line := range strings.Split(value, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		for _, s := range strings.Split(line, ";") {
			s = strings.Join(strings.Fields(s), " ")
			if s == "" {
				continue
			}
			out = append(out, segment{pos: len(out) + 1, line: n + 1, text: s})
		}
	}
	return out
}

// ruleList is the part of the grammar that egress and exec values share:
// "default allow|deny" lines and the rule that picks a default when none is
// written (only allows: deny; only denies: allow; both: an error).
type ruleList struct {
	key             string
	def             Action
	defaultExplicit bool
	allows, denies  int
}

// parseDefault handles a "default ..." rule; ok reports whether seg was one.
func (l *ruleList) parseDefault(seg segment, fields []string) (ok bool, err error) {
	if fields[0] != "default" {
		return false, nil
	}
	if len(fields) != 2 || (fields[1] != "allow" && fields[1] != "deny") {
		return true, l.errorf(seg, `expected "default allow" or "default deny"`)
	}
	if l.defaultExplicit {
		return true, l.errorf(seg, "default given twice")
	}
	l.defaultExplicit = true
	l.def = Allow
	if fields[1] == "deny" {
		l.def = Deny
	}
	return true, nil
}

func (l *ruleList) count(a Action) {
	if a == Allow {
		l.allows++
	} else {
		l.denies++
	}
}

// finish returns the default, applying the implicit-default rule.
func (l *ruleList) finish(nsegs int) (Action, error) {
	if nsegs == 0 {
		return NoAction, &Error{Key: l.key, Msg: `no rules: expected rules such as "allow tcp 10.0.0.0/8:443" separated by ';' or newlines`}
	}
	if l.defaultExplicit {
		return l.def, nil
	}
	switch {
	case l.allows > 0 && l.denies > 0:
		return NoAction, &Error{Key: l.key, Msg: `mixes allow and deny rules without a default: add "default allow" or "default deny"`}
	case l.allows > 0:
		return Deny, nil
	case l.denies > 0:
		return Allow, nil
	}
	return NoAction, &Error{Key: l.key, Msg: "no rules"} // unreachable: a default-less value has rules
}

func (l *ruleList) errorf(seg segment, format string, args ...any) *Error {
	return &Error{Key: l.key, Pos: seg.pos, Line: seg.line, Rule: seg.text, Msg: fmt.Sprintf(format, args...)}
}

// ParseEgress parses an egress value (the text of label key, which is only
// used in error messages).
//
//	rule    = action proto dest [qualifier...] | "default" action
//	action  = "allow" | "deny"
//	proto   = "tcp" | "udp" | "any"
//	dest    = ( "any" | addr | addr "/" len | "[" v6 [ "/" len ] "]" | name | "*." name ) [ ":" ports ]
//	ports   = range { "," range };  range = port [ "-" port ]
//	qualifier = name "=" value      (reserved: uid=, exe= come later)
func ParseEgress(key, value string) (*Egress, error) {
	e := &Egress{}
	var err error
	e.Default, e.DefaultExplicit, err = parseRules(key, value, func(l *ruleList, seg segment, f []string) (Action, error) {
		r, err := l.parseEgressRule(seg, f)
		e.Rules = append(e.Rules, r)
		return r.Action, err
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// parseRules walks a value: it cuts it into rules, takes "default" rules
// itself, hands every other rule to rule, and returns the default.
func parseRules(key, value string, rule func(l *ruleList, seg segment, f []string) (Action, error)) (Action, bool, error) {
	segs := splitRules(value)
	l := ruleList{key: key}
	for _, seg := range segs {
		f := strings.Fields(seg.text)
		if ok, err := l.parseDefault(seg, f); ok {
			if err != nil {
				return NoAction, false, err
			}
			continue
		}
		a, err := rule(&l, seg, f)
		if err != nil {
			return NoAction, false, err
		}
		l.count(a)
	}
	def, err := l.finish(len(segs))
	return def, l.defaultExplicit, err
}

func parseAction(s string) (Action, bool) {
	switch s {
	case "allow":
		return Allow, true
	case "deny":
		return Deny, true
	}
	return NoAction, false
}

func (l *ruleList) parseEgressRule(seg segment, f []string) (Rule, error) {
	r := Rule{Pos: seg.pos, Text: seg.text}
	var ok bool
	if r.Action, ok = parseAction(f[0]); !ok {
		return r, l.errorf(seg, `expected "allow", "deny" or "default" at the start, got %q`, f[0])
	}
	if len(f) < 3 {
		return r, l.errorf(seg, "expected %s PROTO DEST[:PORTS] with PROTO tcp, udp or any", f[0])
	}
	switch f[1] {
	case "tcp":
		r.Proto = TCP
	case "udp":
		r.Proto = UDP
	case "any":
		r.Proto = AnyProto
	default:
		return r, l.errorf(seg, "invalid protocol %q: expected tcp, udp or any", f[1])
	}
	if err := parseDest(&r, f[2]); err != "" {
		return r, l.errorf(seg, "%s", err)
	}
	if r.Name != "" && r.Action == Deny {
		return r, l.errorf(seg, "a deny rule cannot name a DNS name (%s): the same host is reached by its address, which the name does not cover; deny addresses, or allow names under \"default deny\"", r.Name)
	}
	if len(f) > 3 {
		if _, _, found := strings.Cut(f[3], "="); !found {
			return r, l.errorf(seg, "unexpected %q after the destination: expected nothing more, or a qualifier NAME=VALUE (exe=, uid=, gid=)", f[3])
		}
		if r.Name != "" {
			return r, l.errorf(seg, "qualifiers (exe=, uid=, gid=) on a rule by DNS name are not supported: give the name's rule to everyone, or use addresses")
		}
		var err error
		if r.Quals, err = l.parseQualifiers(seg, f[3:], true); err != nil {
			return r, err
		}
	}
	return r, nil
}

// parseDest fills r's destination and ports from s; it returns a message
// for the user, or "" when s is valid.
func parseDest(r *Rule, s string) string {
	host, ports := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return fmt.Sprintf("invalid destination %q: missing ']'", s)
		}
		host, ports = s[1:end], s[end+1:]
		if ports != "" {
			if ports[0] != ':' {
				return fmt.Sprintf("invalid destination %q: expected ':' and ports after ']'", s)
			}
			ports = ports[1:]
			if ports == "" {
				return fmt.Sprintf("invalid destination %q: expected ports after ':'", s)
			}
		}
		if !strings.Contains(host, ":") {
			return fmt.Sprintf("invalid destination %q: brackets are for IPv6 addresses", s)
		}
	case strings.Count(s, ":") == 1:
		host, ports, _ = strings.Cut(s, ":")
		if ports == "" {
			return fmt.Sprintf("invalid destination %q: expected ports after ':'", s)
		}
	}
	if host == "any" {
		r.AnyDest = true
	} else if name, msg, ok := parseName(host); ok {
		if msg != "" {
			return msg
		}
		r.Name = name
	} else {
		p, msg := parsePrefix(host)
		if msg != "" {
			return msg
		}
		r.Dest = p
	}
	if ports != "" {
		pr, msg := parsePorts(ports)
		if msg != "" {
			return msg
		}
		r.Ports = pr
	}
	return ""
}

// MaxNameLen bounds a DNS name in a rule (in presentation form, without the
// final dot): the datapath compares names of up to this many bytes.
const MaxNameLen = 253

// parseName reads s as a DNS name or wildcard if it looks like one (its
// last label has a letter: no address does); msg is "" when it is valid.
// The name is returned in lower case, without a final dot.
func parseName(s string) (name, msg string, ok bool) {
	t := strings.TrimSuffix(s, ".")
	last := t[strings.LastIndexByte(t, '.')+1:]
	if strings.ContainsAny(s, "/:[]") || !strings.ContainsFunc(last, func(c rune) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }) {
		return "", "", false
	}
	t = strings.ToLower(t)
	bad := func(why string) (string, string, bool) {
		return "", fmt.Sprintf("invalid DNS name %q: %s", s, why), true
	}
	if len(t) > MaxNameLen {
		return bad(fmt.Sprintf("%d bytes long (at most %d)", len(t), MaxNameLen))
	}
	labels := strings.Split(t, ".")
	if len(labels) < 2 {
		return bad("expected a dot: names are absolute, no search domain is added (e.g. api.example.com)")
	}
	for i, l := range labels {
		switch {
		case l == "*" && i == 0:
			if len(labels) < 3 {
				return bad("a wildcard needs a name of two labels or more after \"*.\" (e.g. *.example.com)")
			}
			continue
		case strings.Contains(l, "*"):
			return bad("\"*\" may only be the whole first label (*.example.com)")
		case l == "":
			return bad("empty label")
		case len(l) > 63:
			return bad(fmt.Sprintf("label %q is longer than 63 bytes", l))
		case strings.HasPrefix(l, "-") || strings.HasSuffix(l, "-"):
			return bad(fmt.Sprintf("label %q starts or ends with '-'", l))
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return bad(fmt.Sprintf("label %q has %q: expected letters, digits, '-' or '_'", l, c))
			}
		}
	}
	return t, "", true
}

// parsePrefix parses an address or CIDR. Mapped IPv6 (::ffff:a.b.c.d/len
// with len >= 96) becomes the IPv4 prefix it denotes.
func parsePrefix(s string) (netip.Prefix, string) {
	addrText, lenText, hasLen := strings.Cut(s, "/")
	v6 := strings.Contains(addrText, ":")
	maxBits := 32
	if v6 {
		maxBits = 128
	}
	bits := maxBits
	if hasLen {
		n, err := strconv.Atoi(lenText)
		if err != nil || lenText == "" || lenText[0] == '+' || lenText[0] == '-' {
			return netip.Prefix{}, fmt.Sprintf("invalid prefix length %q (0-%d)", lenText, maxBits)
		}
		if n > maxBits {
			return netip.Prefix{}, fmt.Sprintf("invalid prefix length %d (0-%d)", n, maxBits)
		}
		bits = n
	}
	addr, err := netip.ParseAddr(addrText)
	if err != nil || addr.Zone() != "" {
		kind := "IPv4"
		if v6 {
			kind = "IPv6"
		}
		return netip.Prefix{}, fmt.Sprintf("invalid destination %q: expected an %s address, a CIDR or \"any\"", s, kind)
	}
	p := netip.PrefixFrom(addr, bits)
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Sprintf("%s has host bits set: did you mean %s?", s, p.Masked())
	}
	if addr.Is4In6() && bits >= 96 {
		p = netip.PrefixFrom(addr.Unmap(), bits-96)
	}
	return p, ""
}

func parsePorts(s string) ([]PortRange, string) {
	var out []PortRange
	for _, part := range strings.Split(s, ",") {
		loText, hiText, isRange := strings.Cut(part, "-")
		lo, ok := parsePort(loText)
		if !ok {
			return nil, fmt.Sprintf("invalid port %q: expected a number 0-65535, a range a-b or a comma list", part)
		}
		hi := lo
		if isRange {
			if hi, ok = parsePort(hiText); !ok {
				return nil, fmt.Sprintf("invalid port %q: expected a number 0-65535, a range a-b or a comma list", part)
			}
			if hi < lo {
				return nil, fmt.Sprintf("invalid port range %q: the first port is above the second", part)
			}
		}
		out = append(out, PortRange{Lo: lo, Hi: hi})
	}
	return out, ""
}

func parsePort(s string) (uint16, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > 65535 {
		return 0, false
	}
	return uint16(n), true
}

// Mode says whether a policy blocks or only reports.
type Mode uint8

const (
	Enforce Mode = iota
	Audit
)

func (m Mode) String() string {
	if m == Audit {
		return "audit"
	}
	return "enforce"
}

// ParseMode parses a mode.nriguard.io value.
func ParseMode(key, value string) (Mode, error) {
	switch strings.TrimSpace(value) {
	case "enforce", "":
		return Enforce, nil
	case "audit":
		return Audit, nil
	}
	return Enforce, &Error{Key: key, Msg: fmt.Sprintf("invalid mode %q: expected enforce or audit", value)}
}
