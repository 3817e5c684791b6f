package metrics

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/nriguard/nriguard/events"
)

// scrape reads the endpoint as Prometheus would: over HTTP, with its text
// parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// value is the value of the series of family name with these labels (nil:
// absent).
func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) *float64 {
	f := fams[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.Metric {
		for _, l := range m.Label {
			if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
				continue next
			}
		}
		var v float64
		switch {
		case m.Counter != nil:
			v = m.Counter.GetValue()
		case m.Gauge != nil:
			v = m.Gauge.GetValue()
		case m.Histogram != nil:
			v = float64(m.Histogram.GetSampleCount())
		}
		return &v
	}
	return nil
}

func TestMetrics(t *testing.T) {
	m := New(Gauges{Policed: func() int { return 3 }, ReadySlots: func() int { return 32 }, ExecRules: func() int { return 7 }, ExecRulesMax: 1 << 18, Readers: func() int { return 2 },
		DNSLearned: func() int { return 5 }, DNSEvicted: func() int { return 1 }})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	web := func(r events.Record) events.Record {
		r.Namespace, r.Pod, r.Container = "prod", "shop", "web"
		return r
	}
	for _, r := range []events.Record{
		web(events.Record{Kind: events.KindConnect, Verdict: events.Denied}),
		web(events.Record{Kind: events.KindConnect, Verdict: events.Denied}),
		web(events.Record{Kind: events.KindSendmsg, Verdict: events.WouldDeny}),
		web(events.Record{Kind: events.KindFlow, Verdict: events.Allowed, Phase: "new"}),
		web(events.Record{Kind: events.KindFlow, Verdict: events.Allowed, Phase: "count", Packets: 10, Bytes: 1000}),
		web(events.Record{Kind: events.KindExec, Verdict: events.Allowed}),
		web(events.Record{Kind: events.KindExec, Verdict: events.Denied}),
		web(events.Record{Kind: events.KindDNS, Reason: "dns-unsolicited"}),
		{Kind: events.KindLost, LostKind: "egress", Count: 12},
		{Kind: events.KindDecodeError},
		web(events.Record{Kind: events.KindPolicy, Reason: events.ReasonLate}),
	} {
		m.Observe(&r)
	}
	m.SetNode(map[string]bool{"bpf_lsm": true}, "lsm")
	m.SetNode(map[string]bool{"bpf_lsm": false, "exec_sigkill": true}, "sigkill") // probed again: one backend
	m.Attached(3*time.Millisecond, nil)
	m.Attached(0, http.ErrAbortHandler)
	m.Detached(time.Millisecond)
	c := map[string]string{"namespace": "prod", "pod": "shop", "container": "web"}
	with := func(kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range c {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	fams := scrape(t, srv.URL)
	for _, w := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"nriguard_decisions_total", with("kind", "connect", "verdict", "denied"), 2},
		{"nriguard_decisions_total", with("kind", "sendmsg", "verdict", "would-deny"), 1},
		{"nriguard_decisions_total", with("kind", "exec", "verdict", "denied"), 1},
		{"nriguard_flows_total", c, 1},
		{"nriguard_flow_packets_total", c, 10},
		{"nriguard_flow_bytes_total", c, 1000},
		{"nriguard_execs_total", with("verdict", "allowed"), 1},
		{"nriguard_execs_total", with("verdict", "denied"), 1},
		{"nriguard_lost_events_total", map[string]string{"kind": "egress"}, 12},
		{"nriguard_decode_errors_total", nil, 1},
		{"nriguard_policy_reports_total", map[string]string{"reason": "late"}, 1},
		{"nriguard_attach_seconds", nil, 1},
		{"nriguard_attach_failures_total", nil, 1},
		{"nriguard_detach_seconds", nil, 1},
		{"nriguard_policed_containers", nil, 3},
		{"nriguard_ready_slots", nil, 32},
		{"nriguard_exec_rules", nil, 7},
		{"nriguard_exec_rules_max", nil, 1 << 18},
		{"nriguard_observe_readers", nil, 2},
		{"nriguard_dns_answers_ignored_total", with("reason", "dns-unsolicited"), 1},
		{"nriguard_dns_learned_addresses", nil, 5},
		{"nriguard_dns_evicted_addresses", nil, 1},
		{"nriguard_node_feature", map[string]string{"feature": "bpf_lsm"}, 0},
		{"nriguard_node_feature", map[string]string{"feature": "exec_sigkill"}, 1},
		{"nriguard_exec_backend", map[string]string{"backend": "sigkill"}, 1},
	} {
		if got := value(fams, w.name, w.labels); got == nil || *got != w.want {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.want)
		}
	}
	if got := value(fams, "nriguard_exec_backend", map[string]string{"backend": "lsm"}); got != nil {
		t.Errorf("nriguard_exec_backend{backend=lsm} = %v after the backend became sigkill", *got)
	}
	// the container goes: its series with it
	m.Forget("prod", "shop", "web")
	fams = scrape(t, srv.URL)
	for _, name := range []string{"nriguard_decisions_total", "nriguard_flows_total", "nriguard_execs_total", "nriguard_dns_answers_ignored_total"} {
		if got := value(fams, name, c); got != nil {
			t.Errorf("%s of a container that went: %v", name, *got)
		}
	}
}
