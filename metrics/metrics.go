// Package metrics is the daemon's Prometheus endpoint: what the kernel
// decided and reported (from the record stream), and how attaching goes.
// Every metric is listed in docs/metrics.md.
package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nriguard/nriguard/events"
)

// Metrics holds the daemon's metrics in a registry of their own.
type Metrics struct {
	reg                     *prometheus.Registry
	decisions, flows, execs *prometheus.CounterVec
	flowPackets, flowBytes  *prometheus.CounterVec
	lost                    *prometheus.CounterVec
	policy                  *prometheus.CounterVec
	dns                     *prometheus.CounterVec
	decodeErrors            prometheus.Counter
	attach, detach          prometheus.Histogram
	attachFailures          prometheus.Counter
	features, execBackend   *prometheus.GaugeVec
}

// Gauges are read when scraped.
type Gauges struct {
	Policed      func() int // containers with an attachment
	ReadySlots   func() int // shared slots with tables ready for the next containers
	ExecRules    func() int // entries of the host-wide exec table
	ExecRulesMax int
	Readers      func() int // observe clients
	DNSLearned   func() int // addresses learned for DNS names
	DNSEvicted   func() int // of those, let go for their name's cap
}

var containerLabels = []string{"namespace", "pod", "container"}

// New registers the metrics, and gauges g reads.
func New(g Gauges) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	f := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nriguard_" + name, Help: help}, labels)
		m.reg.MustRegister(c)
		return c
	}
	m.decisions = f("decisions_total", "Refusals (verdict denied) and what audit mode let through (would-deny), by kind of record.", append([]string{"kind", "verdict"}, containerLabels...)...)
	m.flows = f("flows_total", "Flows a policy allowed (visibility: flows): sockets that reached a destination.", containerLabels...)
	m.flowPackets = f("flow_packets_total", "Packets allowed flows sent (visibility: flows).", containerLabels...)
	m.flowBytes = f("flow_bytes_total", "Bytes allowed flows sent, IP headers included (visibility: flows).", containerLabels...)
	m.execs = f("execs_total", "Execs in policed containers: refused ones always, allowed ones with visibility: execs.", append([]string{"verdict"}, containerLabels...)...)
	m.dns = f("dns_answers_ignored_total", "DNS answers to policed containers that taught nothing, by reason (dns-unsolicited, dns-resolver, dns-own-server, dns-truncated, dns-tcp).", append([]string{"reason"}, containerLabels...)...)
	m.policy = f("policy_reports_total", "What nriguard could not do as a container's labels ask, by reason (late, kept, undecided, unadoptable: docs/events.md, policy records).", "reason")
	m.lost = f("lost_events_total", "Records that found no room in a kernel ring, by kind (egress, exec).", "kind")
	m.decodeErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "nriguard_decode_errors_total", Help: "Ring records that did not decode."})
	buckets := []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1}
	m.attach = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "nriguard_attach_seconds", Help: "Time to decide, compile and attach a container's policy.", Buckets: buckets})
	m.detach = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "nriguard_detach_seconds", Help: "Time to detach a container's policy.", Buckets: buckets})
	m.attachFailures = prometheus.NewCounter(prometheus.CounterOpts{Name: "nriguard_attach_failures_total", Help: "Attaches that failed: their containers were refused."})
	m.features = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "nriguard_node_feature", Help: "1 if this node's kernel has the feature a guarantee rests on, 0 if not (nriguard status says what each guarantees)."}, []string{"feature"})
	m.execBackend = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "nriguard_exec_backend", Help: "1 for the exec backend the plugin uses: lsm (EPERM), sigkill (killed before its first instruction) or none."}, []string{"backend"})
	m.reg.MustRegister(m.decodeErrors, m.attach, m.detach, m.attachFailures, m.features, m.execBackend)
	gauge := func(name, help string, read func() int) {
		if read != nil {
			m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "nriguard_" + name, Help: help}, func() float64 { return float64(read()) }))
		}
	}
	gauge("policed_containers", "Containers with an attachment: a policy, or visibility alone (observed).", g.Policed)
	gauge("ready_slots", "Slots of the shared egress programs with tables ready for the next containers (the pool).", g.ReadySlots)
	gauge("exec_rules", "Entries of the host-wide exec table (counted at each scrape).", g.ExecRules)
	if g.ExecRulesMax > 0 {
		gauge("exec_rules_max", "Capacity of the host-wide exec table.", func() int { return g.ExecRulesMax })
	}
	gauge("observe_readers", "Readers following the record stream.", g.Readers)
	gauge("dns_learned_addresses", "Addresses learned for DNS names from trusted answers (counted at each scrape).", g.DNSLearned)
	gauge("dns_evicted_addresses", "Addresses a DNS name stopped answering for because it had learned 256 newer ones, for the policies in force.", g.DNSEvicted)
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// SetNode records what the node's kernel offers (bpf.Features, probed at
// start): each feature present or not, and the exec backend ("": none).
func (m *Metrics) SetNode(features map[string]bool, execBackend string) {
	for name, present := range features {
		v := 0.0
		if present {
			v = 1
		}
		m.features.WithLabelValues(name).Set(v)
	}
	if execBackend == "" {
		execBackend = "none"
	}
	m.execBackend.Reset()
	m.execBackend.WithLabelValues(execBackend).Set(1)
}

// Observe counts one record of the stream.
func (m *Metrics) Observe(r *events.Record) {
	c := []string{r.Namespace, r.Pod, r.Container}
	switch {
	case r.Kind == events.KindLost:
		m.lost.WithLabelValues(r.LostKind).Add(float64(r.Count))
	case r.Kind == events.KindDecodeError:
		m.decodeErrors.Inc()
	case r.Kind == events.KindPolicy:
		m.policy.WithLabelValues(r.Reason).Inc()
	case r.Kind == events.KindDNS:
		m.dns.WithLabelValues(append([]string{r.Reason}, c...)...).Inc()
	case r.Kind == events.KindFlow:
		if r.Phase == events.PhaseNew {
			m.flows.WithLabelValues(c...).Inc()
		}
		m.flowPackets.WithLabelValues(c...).Add(float64(r.Packets))
		m.flowBytes.WithLabelValues(c...).Add(float64(r.Bytes))
	case r.Kind == events.KindExec:
		m.execs.WithLabelValues(append([]string{r.Verdict}, c...)...).Inc()
		if r.Verdict != events.Allowed {
			m.decisions.WithLabelValues(append([]string{string(r.Kind), r.Verdict}, c...)...).Inc()
		}
	default:
		m.decisions.WithLabelValues(append([]string{string(r.Kind), r.Verdict}, c...)...).Inc()
	}
}

// Attached records an attach and how long it took.
func (m *Metrics) Attached(took time.Duration, err error) {
	if err != nil {
		m.attachFailures.Inc()
		return
	}
	m.attach.Observe(took.Seconds())
}

// Detached records a detach and how long it took.
func (m *Metrics) Detached(took time.Duration) { m.detach.Observe(took.Seconds()) }

// Forget removes a container's series: it is gone.
func (m *Metrics) Forget(namespace, pod, container string) {
	l := prometheus.Labels{"namespace": namespace, "pod": pod, "container": container}
	for _, v := range []*prometheus.CounterVec{m.decisions, m.flows, m.flowPackets, m.flowBytes, m.execs, m.dns} {
		v.DeletePartialMatch(l)
	}
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Serve serves /metrics on addr until ctx ends.
func Serve(ctx context.Context, addr string, m *Metrics) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
