package policy

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

const key = "egress.nriguard.io/container.web"

func TestParseErrors(t *testing.T) {
	cases := []struct{ value, want string }{
		{"allow tcp 10.0.0.0/8:443; allow tcp 10.0.0/33",
			`egress.nriguard.io/container.web: rule 2 "allow tcp 10.0.0/33": invalid prefix length 33 (0-32)`},
		{"allow tcp [2001:db8::/129]:80",
			`egress.nriguard.io/container.web: rule 1 "allow tcp [2001:db8::/129]:80": invalid prefix length 129 (0-128)`},
		{"allow tcp 10.0.0/8",
			`egress.nriguard.io/container.web: rule 1 "allow tcp 10.0.0/8": invalid destination "10.0.0/8": expected an IPv4 address, a CIDR or "any"`},
		{"permit tcp 10.0.0.0/8",
			`egress.nriguard.io/container.web: rule 1 "permit tcp 10.0.0.0/8": expected "allow", "deny" or "default" at the start, got "permit"`},
		{"allow icmp 10.0.0.0/8",
			`egress.nriguard.io/container.web: rule 1 "allow icmp 10.0.0.0/8": invalid protocol "icmp": expected tcp, udp or any`},
		{"allow tcp",
			`egress.nriguard.io/container.web: rule 1 "allow tcp": expected allow PROTO DEST[:PORTS] with PROTO tcp, udp or any`},
		{"allow tcp 10.0.0.1:70000",
			`egress.nriguard.io/container.web: rule 1 "allow tcp 10.0.0.1:70000": invalid port "70000": expected a number 0-65535, a range a-b or a comma list`},
		{"allow tcp 10.0.0.1:90-80",
			`egress.nriguard.io/container.web: rule 1 "allow tcp 10.0.0.1:90-80": invalid port range "90-80": the first port is above the second`},
		{"allow tcp 10.0.0.1:",
			`egress.nriguard.io/container.web: rule 1 "allow tcp 10.0.0.1:": invalid destination "10.0.0.1:": expected ports after ':'`},
		{"allow tcp api.example.com:443; deny tcp evil.example.com; default deny",
			`egress.nriguard.io/container.web: rule 2 "deny tcp evil.example.com": a deny rule cannot name a DNS name (evil.example.com): the same host is reached by its address, which the name does not cover; deny addresses, or allow names under "default deny"`},
		{"allow tcp api.example.com:443 uid=0",
			`egress.nriguard.io/container.web: rule 1 "allow tcp api.example.com:443 uid=0": qualifiers (exe=, uid=, gid=) on a rule by DNS name are not supported: give the name's rule to everyone, or use addresses`},
		{"allow tcp localhost:80",
			`egress.nriguard.io/container.web: rule 1 "allow tcp localhost:80": invalid DNS name "localhost": expected a dot: names are absolute, no search domain is added (e.g. api.example.com)`},
		{"allow tcp *.com",
			`egress.nriguard.io/container.web: rule 1 "allow tcp *.com": invalid DNS name "*.com": a wildcard needs a name of two labels or more after "*." (e.g. *.example.com)`},
		{"allow tcp a.*.example.com",
			`egress.nriguard.io/container.web: rule 1 "allow tcp a.*.example.com": invalid DNS name "a.*.example.com": "*" may only be the whole first label (*.example.com)`},
		{"allow tcp api..example.com",
			`egress.nriguard.io/container.web: rule 1 "allow tcp api..example.com": invalid DNS name "api..example.com": empty label`},
		{"allow tcp -api.example.com",
			`egress.nriguard.io/container.web: rule 1 "allow tcp -api.example.com": invalid DNS name "-api.example.com": label "-api" starts or ends with '-'`},
		{"allow tcp api.exa$mple.com",
			`egress.nriguard.io/container.web: rule 1 "allow tcp api.exa$mple.com": invalid DNS name "api.exa$mple.com": label "exa$mple" has '$': expected letters, digits, '-' or '_'`},
		{"allow tcp 10.0.0.256",
			`egress.nriguard.io/container.web: rule 1 "allow tcp 10.0.0.256": invalid destination "10.0.0.256": expected an IPv4 address, a CIDR or "any"`},
		{"allow tcp 10.0.0.1/8",
			`egress.nriguard.io/container.web: rule 1 "allow tcp 10.0.0.1/8": 10.0.0.1/8 has host bits set: did you mean 10.0.0.0/8?`},
		{"allow tcp [10.0.0.1]:80",
			`egress.nriguard.io/container.web: rule 1 "allow tcp [10.0.0.1]:80": invalid destination "[10.0.0.1]:80": brackets are for IPv6 addresses`},
		{"allow tcp 10.0.0.1 user=1000",
			`egress.nriguard.io/container.web: rule 1 "allow tcp 10.0.0.1 user=1000": unknown qualifier "user": expected exe=, uid= or gid=`},
		{"allow tcp 10.0.0.1 extra",
			`egress.nriguard.io/container.web: rule 1 "allow tcp 10.0.0.1 extra": unexpected "extra" after the destination: expected nothing more, or a qualifier NAME=VALUE (exe=, uid=, gid=)`},
		{"allow tcp 10.0.0.1 uid=1000 extra",
			`egress.nriguard.io/container.web: rule 1 "allow tcp 10.0.0.1 uid=1000 extra": unexpected "extra": expected a qualifier NAME=VALUE (exe=, uid=, gid=)`},
		{"allow tcp 10.0.0.1 uid=root",
			`egress.nriguard.io/container.web: rule 1 "allow tcp 10.0.0.1 uid=root": uid=: invalid id "root": expected a number, a range a-b or a comma list of those (names are not looked up: give the number)`},
		{"allow tcp 10.0.0.1 gid=2000-1000",
			`egress.nriguard.io/container.web: rule 1 "allow tcp 10.0.0.1 gid=2000-1000": gid=: invalid range "2000-1000": the first id is above the second`},
		{"allow tcp 10.0.0.1 uid=1 uid=2",
			`egress.nriguard.io/container.web: rule 1 "allow tcp 10.0.0.1 uid=1 uid=2": qualifier uid= given twice: give one, with a comma list if need be`},
		{"allow tcp 10.0.0.1 exe=curl",
			`egress.nriguard.io/container.web: rule 1 "allow tcp 10.0.0.1 exe=curl": exe=: invalid path "curl": expected an absolute path, as the container sees it`},
		{"allow tcp 10.0.0.1 uid=4294967296",
			`egress.nriguard.io/container.web: rule 1 "allow tcp 10.0.0.1 uid=4294967296": uid=: invalid id "4294967296": expected a number, a range a-b or a comma list of those (names are not looked up: give the number)`},
		{"allow tcp 10.0.0.0/8; deny tcp 10.1.0.0/16",
			`egress.nriguard.io/container.web: mixes allow and deny rules without a default: add "default allow" or "default deny"`},
		{"default allow; default deny",
			`egress.nriguard.io/container.web: rule 2 "default deny": default given twice`},
		{"default maybe",
			`egress.nriguard.io/container.web: rule 1 "default maybe": expected "default allow" or "default deny"`},
		{" ; \n # nothing here",
			`egress.nriguard.io/container.web: no rules: expected rules such as "allow tcp 10.0.0.0/8:443" separated by ';' or newlines`},
		{"allow tcp fe80::1%eth0",
			`egress.nriguard.io/container.web: rule 1 "allow tcp fe80::1%eth0": invalid destination "fe80::1%eth0": expected an IPv6 address, a CIDR or "any"`},
	}
	for _, c := range cases {
		_, err := ParseEgress(key, c.value)
		if err == nil {
			t.Errorf("%q: no error, want %s", c.value, c.want)
			continue
		}
		if err.Error() != c.want {
			t.Errorf("%q:\n got  %s\n want %s", c.value, err, c.want)
		}
	}
}

func TestParseNames(t *testing.T) {
	e, err := ParseEgress(key, "allow tcp API.Example.COM.:443; allow any *.svc.cluster.local; allow udp x_y.example.org:53,5353")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name  string
		ports []PortRange
	}{{"api.example.com", []PortRange{{443, 443}}}, {"*.svc.cluster.local", nil}, {"x_y.example.org", []PortRange{{53, 53}, {5353, 5353}}}}
	for i, w := range want {
		r := e.Rules[i]
		if r.Name != w.name || r.AnyDest || r.Dest.IsValid() || !slices.Equal(r.Ports, w.ports) {
			t.Errorf("rule %d: name %q any %v dest %v ports %v, want %q %v", i+1, r.Name, r.AnyDest, r.Dest, r.Ports, w.name, w.ports)
		}
	}
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"api.example.com", "api.example.com", true},
		{"api.example.com", "www.example.com", false},
		{"*.example.com", "api.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "a.b.example.com", false},
		{"*.example.com", ".example.com", false},
		{"*.example.com", "xexample.com", false},
	} {
		if got := NameMatches(tc.pattern, tc.name); got != tc.want {
			t.Errorf("NameMatches(%q, %q) = %v", tc.pattern, tc.name, got)
		}
	}
	// a name decides only where no address rule does
	e, _ = ParseEgress(key, "allow tcp api.example.com:443; deny any 169.254.0.0/16; allow tcp 10.0.0.0/8:22; default deny")
	for _, tc := range []struct {
		addr string
		port uint16
		want Action
	}{
		{"192.0.2.1", 443, Allow}, {"192.0.2.1", 80, Deny}, {"169.254.169.254", 443, Deny}, {"10.1.1.1", 443, Allow}, {"10.1.1.1", 22, Allow},
	} {
		if got := e.DecideLearned(TCP, netip.MustParseAddr(tc.addr), tc.port, []string{"api.example.com"}); got.Action != tc.want {
			t.Errorf("%s:%d learned for api.example.com: %v, want %v", tc.addr, tc.port, got.Action, tc.want)
		}
	}
}

func TestParseForms(t *testing.T) {
	e, err := ParseEgress(key, `allow tcp 10.0.0.0/8:443; allow udp 10.96.0.10:53
		allow tcp [2001:db8::/32]:8000-8999   # comment
		allow any 2001:db8:1::/48
		allow tcp any:80,443,1000-1002
		allow udp [::ffff:192.0.2.0/120]:53
		allow tcp [::1]`)
	if err != nil {
		t.Fatal(err)
	}
	if e.Default != Deny || e.DefaultExplicit {
		t.Errorf("only allows: default %v explicit %v, want implicit deny", e.Default, e.DefaultExplicit)
	}
	if len(e.Rules) != 7 {
		t.Fatalf("got %d rules", len(e.Rules))
	}
	want := []struct {
		proto Proto
		dest  string
		ports []PortRange
	}{
		{TCP, "10.0.0.0/8", []PortRange{{443, 443}}},
		{UDP, "10.96.0.10/32", []PortRange{{53, 53}}},
		{TCP, "2001:db8::/32", []PortRange{{8000, 8999}}},
		{AnyProto, "2001:db8:1::/48", nil},
		{TCP, "any", []PortRange{{80, 80}, {443, 443}, {1000, 1002}}},
		{UDP, "192.0.2.0/24", []PortRange{{53, 53}}}, // mapped becomes IPv4
		{TCP, "::1/128", nil},
	}
	for i, w := range want {
		r := e.Rules[i]
		dest := "any"
		if !r.AnyDest {
			dest = r.Dest.String()
		}
		if r.Proto != w.proto || dest != w.dest || len(r.Ports) != len(w.ports) || r.Pos != i+1 {
			t.Errorf("rule %d: got %v %s %v pos %d", i+1, r.Proto, dest, r.Ports, r.Pos)
			continue
		}
		for j := range w.ports {
			if r.Ports[j] != w.ports[j] {
				t.Errorf("rule %d ports: got %v want %v", i+1, r.Ports, w.ports)
			}
		}
	}
	e, err = ParseEgress(key, "deny any 169.254.169.254")
	if err != nil || e.Default != Allow {
		t.Errorf("only denies: default %v err %v, want implicit allow", e.Default, err)
	}
}

// The examples of docs/policy.md, decided by the reference.
func TestDecideContract(t *testing.T) {
	cases := []struct {
		policy string
		proto  Proto
		dest   string
		port   uint16
		want   Action
	}{
		{"allow tcp 10.0.0.0/8:443", TCP, "10.1.2.3", 443, Allow},
		{"allow tcp 10.0.0.0/8:443", TCP, "10.1.2.3", 80, Deny},
		{"allow tcp 10.0.0.0/8:443", UDP, "10.1.2.3", 443, Deny},
		{"allow tcp 10.0.0.0/8:443", TCP, "::ffff:10.1.2.3", 443, Allow},
		// most specific prefix decides, whichever comes first
		{"allow tcp 10.0.0.0/8; deny any 10.1.0.0/16; default deny", TCP, "10.1.2.3", 443, Deny},
		{"deny any 10.1.0.0/16; allow tcp 10.0.0.0/8; default deny", TCP, "10.2.0.1", 443, Allow},
		{"deny tcp 10.0.0.0/8:22; allow any 10.1.0.0/16; default deny", TCP, "10.1.2.3", 22, Allow},
		// a more specific prefix that does not match the port leaves it to the shorter one
		{"deny tcp 10.0.0.0/8; allow tcp 10.1.0.0/16:443; default allow", TCP, "10.1.2.3", 80, Deny},
		// same prefix: deny beats allow
		{"allow tcp 10.0.0.0/8; deny tcp 10.0.0.0/8:22; default allow", TCP, "10.1.1.1", 22, Deny},
		{"allow tcp 10.0.0.0/8; deny tcp 10.0.0.0/8:22; default allow", TCP, "10.1.1.1", 23, Allow},
		// no match: the default
		{"deny any 169.254.169.254", TCP, "1.1.1.1", 443, Allow},
		{"deny any 169.254.169.254", UDP, "169.254.169.254", 53, Deny},
		{"allow any any:53; default deny", UDP, "2001:db8::1", 53, Allow},
		{"allow tcp 0.0.0.0/0", TCP, "2001:db8::1", 80, Deny},              // an IPv4 /0 says nothing of IPv6
		{"deny tcp ::/0; default allow", TCP, "::ffff:1.2.3.4", 80, Allow}, // mapped is judged as IPv4
	}
	for _, c := range cases {
		e, err := ParseEgress(key, c.policy)
		if err != nil {
			t.Fatal(err)
		}
		addr := netip.MustParseAddr(c.dest)
		if got := e.Decide(c.proto, addr, c.port); got.Action != c.want {
			t.Errorf("%q %v %s:%d: got %v want %v", c.policy, c.proto, c.dest, c.port, got.Action, c.want)
		}
		if got := Compile(Enforce, e).Lookup(c.proto, addr, c.port).Action; got != c.want {
			t.Errorf("compiled %q %v %s:%d: got %v want %v", c.policy, c.proto, c.dest, c.port, got, c.want)
		}
	}
}

func TestParseMode(t *testing.T) {
	for v, want := range map[string]Mode{"enforce": Enforce, "audit": Audit, " audit ": Audit} {
		if m, err := ParseMode("mode.nriguard.io", v); err != nil || m != want {
			t.Errorf("%q: %v %v", v, m, err)
		}
	}
	if _, err := ParseMode("mode.nriguard.io", "log"); err == nil || !strings.Contains(err.Error(), `mode.nriguard.io: invalid mode "log": expected enforce or audit`) {
		t.Errorf("got %v", err)
	}
}

// Rules from a file: an error names the file and the line, and the rule's
// position among the rules.
func TestRuleFileErrors(t *testing.T) {
	text := "# egress for the web tier\nallow tcp 10.0.0.0/8:443\n\nallow tcp 10.1.0.0/16:80; allow tcp 10.0.0/33\n"
	_, err := ParseEgressFile("/etc/nriguard/web.rules", text)
	want := `/etc/nriguard/web.rules:4: rule 3 "allow tcp 10.0.0/33": invalid prefix length 33 (0-32)`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	_, err = ParseExecFile("-", "allow /bin/sh\nallow bin/ls\n")
	want = `<stdin>:2: rule 2 "allow bin/ls": `
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v, want it to start with %s", err, want)
	}
	// a label's errors are as they were: the key, no line
	_, err = ParseEgress("egress.nriguard.io", "allow tcp 10.0.0.0/8:443\nallow tcp 10.0.0/33")
	want = `egress.nriguard.io: rule 2 "allow tcp 10.0.0/33": invalid prefix length 33 (0-32)`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func TestQualifiers(t *testing.T) {
	e, err := ParseEgress(key, "allow tcp 10.0.0.0/8:443 exe=/usr/bin/curl uid=0,1000-1999 gid=50; allow udp 10.96.0.10:53 exe=/app/")
	if err != nil {
		t.Fatal(err)
	}
	q := e.Rules[0].Quals
	if q.Exe != "/usr/bin/curl" || q.ExeDir || len(q.UIDs) != 2 || q.UIDs[1] != (IDRange{1000, 1999}) || len(q.GIDs) != 1 {
		t.Errorf("rule 1 qualifiers: %+v", q)
	}
	if got := q.String(); got != "exe=/usr/bin/curl uid=0,1000-1999 gid=50" {
		t.Errorf("String: %q", got)
	}
	if q := e.Rules[1].Quals; q.ExePattern() != "/app/" || !q.ExeDir {
		t.Errorf("rule 2 qualifiers: %+v", q)
	}
	x, err := ParseExec("exec.nriguard.io", "allow /usr/bin/apt-get uid=0; allow /bin/")
	if err != nil || len(x.Rules[0].Quals.UIDs) != 1 || x.Rules[1].Quals.Any() {
		t.Errorf("exec qualifiers: %+v %v", x, err)
	}
	_, err = ParseExec("exec.nriguard.io", "allow /bin/sh exe=/bin/sh")
	want := `exec.nriguard.io: rule 1 "allow /bin/sh exe=/bin/sh": exe= on an exec rule: the rule names the program itself (qualifiers here: uid=, gid=)`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

// On the same prefix a rule about the flow's sender beats one about
// everyone; a more specific prefix still beats both.
func TestDecideWithQualifiers(t *testing.T) {
	e, err := ParseEgress(key, `deny tcp 10.0.0.0/8
allow tcp 10.0.0.0/8 exe=/usr/bin/curl
deny tcp 10.1.0.0/16
allow tcp 10.2.0.0/16:443 uid=1000-1999
default allow`)
	if err != nil {
		t.Fatal(err)
	}
	curl := func(p string) bool { return p == "/usr/bin/curl" }
	for _, c := range []struct {
		addr string
		port uint16
		who  *Principal
		want Action
	}{
		{"10.9.9.9", 80, nil, Deny},                                // nobody in particular
		{"10.9.9.9", 80, &Principal{Exe: curl}, Allow},             // curl, on the same /8
		{"10.1.2.3", 80, &Principal{Exe: curl}, Deny},              // a longer prefix denies everyone
		{"10.2.0.1", 443, &Principal{UID: 1500}, Allow},            // the user, on a longer prefix
		{"10.2.0.1", 443, &Principal{UID: 2000}, Deny},             // another user: the /8's deny
		{"10.2.0.1", 443, &Principal{UID: 2000, Exe: curl}, Allow}, // curl: the /8's qualified allow
		{"192.0.2.1", 80, &Principal{UID: 1500, Exe: curl}, Allow}, // the default
	} {
		var got Action
		if c.who == nil {
			got = e.Decide(TCP, netip.MustParseAddr(c.addr), c.port).Action
		} else {
			got = e.DecideFor(TCP, netip.MustParseAddr(c.addr), c.port, *c.who).Action
		}
		if got != c.want {
			t.Errorf("%s:%d by %+v: %v, want %v", c.addr, c.port, c.who, got, c.want)
		}
	}
}

func TestParseVisibility(t *testing.T) {
	for in, want := range map[string]Visibility{"off": VisOff, "": VisOff, " flows": VisFlows, "execs": VisExecs, "both": VisBoth} {
		if got, err := ParseVisibility("visibility.nriguard.io", in); err != nil || got != want {
			t.Errorf("%q: %v, %v; want %v", in, got, err, want)
		}
	}
	_, err := ParseVisibility("visibility.nriguard.io", "all")
	if err == nil || err.Error() != `visibility.nriguard.io: invalid visibility "all": expected off, flows, execs or both` {
		t.Errorf("bad value: %v", err)
	}
}
