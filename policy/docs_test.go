package policy_test

import (
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/nriguard/nriguard/policy"
)

// The examples of docs/policy.md's "How a flow is decided" are the
// reference's answers, every row.
func TestPolicyDocExamples(t *testing.T) {
	data, err := os.ReadFile("../docs/policy.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| (`[^`]*`|the same) \\| (tcp|udp) (\\S+)( by .*| in .*)? \\| (allow|deny) \\|")
	exe := regexp.MustCompile("`(/[^`]*)`")
	uid := regexp.MustCompile(`uid (\d+)`)
	gid := regexp.MustCompile(`group (\d+)`)
	var text string
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if m[1] != "the same" {
			text = strings.Trim(m[1], "`")
		}
		e, err := policy.ParseEgress("doc", text)
		if err != nil {
			t.Errorf("%q: %v", text, err)
			continue
		}
		ap, err := netip.ParseAddrPort(m[3])
		if err != nil {
			t.Errorf("%q: %v", m[3], err)
			continue
		}
		proto := policy.TCP
		if m[2] == "udp" {
			proto = policy.UDP
		}
		who := policy.Principal{}
		if x := exe.FindStringSubmatch(m[4]); x != nil {
			path := x[1]
			if strings.Contains(m[4], "copy of") {
				path = "/tmp/curl"
			}
			who.Exe = func(p string) bool { return p == path || strings.HasSuffix(p, "/") && strings.HasPrefix(path, p) }
		} else if strings.Contains(m[4], "curl") {
			who.Exe = func(p string) bool { return p == "/usr/bin/curl" }
		}
		if x := uid.FindStringSubmatch(m[4]); x != nil {
			v, _ := strconv.Atoi(x[1])
			who.UID = uint32(v)
		}
		if x := gid.FindStringSubmatch(m[4]); x != nil {
			v, _ := strconv.Atoi(x[1])
			who.GID = uint32(v)
		}
		got := e.DecideFor(proto, ap.Addr(), ap.Port(), who).Action.String()
		if got != m[5] {
			t.Errorf("%s\n  reference says %s", line, got)
		}
		n++
	}
	if n < 15 {
		t.Fatalf("only %d example rows found: the table moved?", n)
	}
}
