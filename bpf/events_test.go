package bpf_test

import (
	"testing"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/events"
	"github.com/nriguard/nriguard/internal/testenv"
	"github.com/nriguard/nriguard/policy"
)

// A record that does not decode is reported as such, and the stream goes
// on: the next denial still arrives.
func TestUndecodableRecordDoesNotEndTheStream(t *testing.T) {
	cg, a := attach(t, "allow tcp 10.1.2.3:8080", policy.Enforce)
	rd, err := bpf.NewEventReader(a.Events)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	testenv.WriteRingRecord(t, a.Events.Ring, []byte("garbage!")) // too short for a header
	testenv.WriteRingRecord(t, a.Events.Ring, make([]byte, 64))   // a header of no known kind
	expect(t, cg, "tcp:10.1.2.3:8081", "EPERM")                   // a real one after them
	recs := waitEvents(t, rd, 3)
	for i, want := range []events.Kind{events.KindDecodeError, events.KindDecodeError, events.KindConnect} {
		if recs[i].Kind != want {
			t.Errorf("record %d: %+v, want kind %s", i, recs[i], want)
		}
	}
	t.Logf("decode errors: %q, %q", recs[0].Error, recs[1].Error)
	if recs[0].Error == "" || recs[2].Port != 8081 {
		t.Errorf("records: %+v", recs)
	}
}
