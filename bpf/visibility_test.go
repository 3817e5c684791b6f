package bpf_test

import (
	"path/filepath"
	"testing"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/events"
	"github.com/nriguard/nriguard/internal/testenv"
	"github.com/nriguard/nriguard/policy"
)

// With visibility on flows, an allowed flow is one record when it begins
// (with its process) and its counts after: a socket that sends 1,000
// datagrams to one destination makes a "new" record and counts that add
// up to exactly 1,000 packets, the last when it is closed; a TCP connect
// is a flow too; refusals are reported as before. Without it, nothing of
// the allowed flows is reported.
func TestVisibilityFlows(t *testing.T) {
	for _, vis := range []policy.Visibility{policy.VisFlows, policy.VisOff} {
		t.Run(vis.String(), func(t *testing.T) {
			cg, rd := attachSeen(t, "allow udp 10.1.2.3:5353; allow tcp 10.1.2.3:8080", policy.Enforce, vis)
			expect(t, cg, "sendn:1000:10.1.2.3:5353", "ok", "tcp:10.1.2.3:8080", "ok", "udpsend:10.1.9.9:53", "EPERM")
			if vis == policy.VisOff {
				evs := waitEvents(t, rd, 1)
				if evs[0].Verdict != events.Denied {
					t.Errorf("got %+v, want the refusal", evs[0])
				}
				if extra := rd.Drain(); len(extra) > 0 {
					t.Errorf("visibility off reported %+v", extra)
				}
				return
			}
			var udpNew, tcpNew, denied int
			var packets, bytes uint64
			var ended bool
			var sock uint64
			for _, e := range append(waitEvents(t, rd, 4), rd.Drain()...) {
				switch {
				case e.Kind == events.KindFlow && e.Phase == "new" && e.Proto == "udp":
					udpNew++
					sock = e.Socket
					if e.PID == 0 || e.Comm == "" || e.Dest != "10.1.2.3" || e.Port != 5353 || e.Verdict != events.Allowed || e.Socket == 0 {
						t.Errorf("new flow record: %+v", e)
					}
				case e.Kind == events.KindFlow && e.Phase == "new" && e.Proto == "tcp":
					tcpNew++
				case e.Kind == events.KindFlow && e.Proto == "udp":
					if e.Socket != sock || e.PID == 0 {
						t.Errorf("count record of another socket, or without its maker: %+v (flow's socket %d)", e, sock)
					}
					packets += e.Packets
					bytes += e.Bytes
					ended = ended || e.Phase == "end"
				case e.Verdict == events.Denied:
					denied++
				}
			}
			if udpNew != 1 || tcpNew < 1 || denied != 1 {
				t.Errorf("new udp flows %d (want 1), new tcp flows %d (want >= 1: the probe's own connect), refusals %d (want 1)", udpNew, tcpNew, denied)
			}
			if packets != 1000 || !ended {
				t.Errorf("counts: %d packets (want 1000), %d bytes; ended %v", packets, bytes, ended)
			}
		})
	}
}

// In audit mode a flow the policy would refuse is let through, reported at
// each send, and counted: its count records say would-deny.
func TestVisibilityAuditCounts(t *testing.T) {
	cg, rd := attachSeen(t, "allow udp 10.1.2.3:5353", policy.Audit, policy.VisFlows)
	expect(t, cg, "sendn:100:10.1.9.9:53", "ok")
	var sends int
	var packets uint64
	var end bool
	for _, e := range append(waitEvents(t, rd, 100), rd.Drain()...) {
		switch {
		case e.Kind == events.KindSendmsg && e.Verdict == events.WouldDeny:
			sends++
		case e.Kind == events.KindFlow && e.Phase != "new":
			if e.Verdict != events.WouldDeny {
				t.Errorf("count record of a flow audit let through: %+v", e)
			}
			packets += e.Packets
			end = end || e.Phase == "end"
		}
	}
	if sends != 100 || packets != 100 || !end {
		t.Errorf("would-deny sends %d (want 100), packets counted %d (want 100), end %v", sends, packets, end)
	}
}

// attachSeen attaches rules with visibility vis to a fresh cgroup (on the
// suite's shared copy), with a reader of the attachment's events.
func attachSeen(t *testing.T, rules string, mode policy.Mode, vis policy.Visibility) (string, *bpf.EventReader) {
	t.Helper()
	cg := testenv.Cgroup(t)
	c := compile(t, rules, mode)
	a, err := bpf.Attach(bpf.Spec{ID: "v-" + filepath.Base(cg), Cgroup: cg, Egress: c, Visibility: vis}, sharedCopy(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Detach() })
	rd, err := bpf.NewEventReader(a.Events)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	return cg, rd
}
