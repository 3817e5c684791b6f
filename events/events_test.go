package events

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// AppendJSON writes what encoding/json would, for any record.
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	strs := []string{"", string(KindLost), string(KindDecodeError), string(KindPolicy), "curl", "a\"b\\c", "<&>", "tab\there", "\x00\x1f\x7f", "é ü 中", "\xff\xfe bad utf8", "\u2028\u2029", "/usr/bin/x y"}
	s := func() string { return strs[r.IntN(len(strs))] }
	n := func() uint64 {
		if r.IntN(3) == 0 {
			return 0
		}
		return r.Uint64() >> r.IntN(64)
	}
	for range 5000 {
		rec := Record{
			V: Version, Time: time.Unix(int64(r.Uint32()), int64(r.IntN(1e9))).UTC(), Kind: Kind(s()), Verdict: s(), Layer: s(),
			ContainerID: s(), Container: s(), Pod: s(), Namespace: s(),
			PID: uint32(n()), TID: uint32(n()), PPID: uint32(n()), UID: uint32(n()), GID: uint32(n()), Comm: s(),
			CgroupID: n(), PolicyCgroup: n(), Proto: s(), Dest: s(), Port: uint16(n()), Family: s(), SockType: s(),
			Reason: s(), Filename: s(), File: s(), Enforcement: s(), LostKind: s(), Count: n(), Error: s(), Message: s(),
		}
		want, err := json.Marshal(&rec)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, '\n')
		if !rec.AboutAProcess() { // no process: no uid and gid
			want = regexp.MustCompile(`,"uid":\d+,"gid":\d+`).ReplaceAll(want, nil)
		}
		if got := rec.AppendJSON(nil); !bytes.Equal(got, want) {
			t.Fatalf("record %+v\n got  %s\n want %s", rec, got, want)
		}
	}
}

var kinds = []Kind{KindConnect, KindSendmsg, KindSocket, KindPacket, KindExec, KindWrite, KindFlow, KindDNS, KindPolicy, KindLost, KindDecodeError}

// docs/events.md shows an example of every kind; each one decodes into a
// Record with no unknown field and is written back byte for byte, so the
// docs and the code cannot drift apart.
func TestDocumentedExamples(t *testing.T) {
	doc, err := os.ReadFile("../docs/events.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```json\n(.*?)```").FindAllSubmatch(doc, -1)
	seen := map[Kind]bool{}
	for _, b := range blocks {
		for _, line := range strings.Split(strings.TrimSpace(string(b[1])), "\n") {
			dec := json.NewDecoder(strings.NewReader(line))
			dec.DisallowUnknownFields()
			var rec Record
			if err := dec.Decode(&rec); err != nil {
				t.Errorf("docs/events.md example does not decode strictly: %v\n%s", err, line)
				continue
			}
			if rec.V != Version {
				t.Errorf("example with v %d, want %d: %s", rec.V, Version, line)
			}
			if got := strings.TrimSpace(string(rec.AppendJSON(nil))); got != line {
				t.Errorf("example is not what nriguard writes:\n doc  %s\n code %s", line, got)
			}
			seen[rec.Kind] = true
		}
	}
	for _, k := range kinds {
		if !seen[k] {
			t.Errorf("docs/events.md has no example of kind %q", k)
		}
	}
}
