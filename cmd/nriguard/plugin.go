package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	"github.com/sirupsen/logrus"

	"github.com/nriguard/nriguard/bpf"
	"github.com/nriguard/nriguard/engine"
	"github.com/nriguard/nriguard/events"
	"github.com/nriguard/nriguard/labels"
	"github.com/nriguard/nriguard/metrics"
	"github.com/nriguard/nriguard/observe"
	"github.com/nriguard/nriguard/plugin"
)

// Where a pre-registered plugin writes, having no stdout or stderr.
const (
	preregLog    = "/var/log/nriguard/nriguard.log"
	preregEvents = "/var/log/nriguard/events.jsonl"
)

// runPlugin: nriguard plugin [--socket S] [--name N] [--idx I] [--config F]
func runPlugin(args []string) int {
	fs := flag.NewFlagSet("plugin", flag.ContinueOnError)
	socket := fs.String("socket", "/var/run/nri/nri.sock", "the runtime's NRI socket (external mode)")
	name := fs.String("name", "nriguard", "plugin name (external mode)")
	idx := fs.String("idx", "10", "plugin index: order among plugins (external mode)")
	cfgPath := fs.String("config", engine.DefaultConfigPath, "node settings (YAML); the NRI plugin configuration, when given, replaces it")
	logPath := fs.String("log", "", "log file (default stderr; "+preregLog+" when started by the runtime)")
	pinRoot := fs.String("pin-root", bpf.DefaultPinRoot, "where attachments are pinned")
	debug := fs.Bool("debug", false, "log every event")
	linger := fs.Duration("linger", time.Minute, "how long the programs containers share stay loaded after the last container that needed them, for the next one")
	observeSocket := fs.String("observe-socket", observe.DefaultSocket, "serve the record stream to nriguard observe on this unix socket, root only (\"\": not served)")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9964 (default: metrics_addr of the node settings; none: off)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	preregistered := os.Getenv(api.PluginSocketEnvVar) != ""
	logOut := io.Writer(os.Stderr)
	if *logPath == "" && preregistered {
		*logPath = preregLog
	}
	if *logPath != "" {
		f, err := openAppend(*logPath)
		if err != nil {
			fmt.Fprintln(os.Stderr, "nriguard plugin:", err)
			return 1
		}
		defer f.Close()
		logOut = f
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: level}))
	// The NRI stub logs through logrus: into the same place, as JSON.
	logrus.SetOutput(logOut)
	logrus.SetFormatter(&logrus.JSONFormatter{})

	cfg, err := engine.LoadConfig(*cfgPath)
	if err != nil {
		log.Error("config", "error", err)
		fmt.Fprintln(os.Stderr, "nriguard plugin:", err)
		return 1
	}
	if *metricsAddr == "" {
		*metricsAddr = cfg.MetricsAddr
	}
	hub := observe.NewHub()
	var eng *engine.Engine
	var met *metrics.Metrics
	var observer engine.Observer
	if *metricsAddr != "" {
		met = metrics.New(metrics.Gauges{
			Policed:      func() int { return eng.Policed() },
			ReadySlots:   func() int { n, _ := bpf.ReadySlots(*pinRoot); return n },
			ExecRules:    func() int { n, _ := bpf.ExecRules(*pinRoot); return n },
			ExecRulesMax: bpf.ExecRulesMax,
			Readers:      hub.Readers,
			DNSLearned:   func() int { n, _, _ := bpf.DNSStats(*pinRoot); return n },
			DNSEvicted:   func() int { _, n, _ := bpf.DNSStats(*pinRoot); return n },
		})
		observer = attachMetrics{met}
	}
	eng, err = engine.New(cfg, engine.Options{PinRoot: *pinRoot, Owner: bpf.OwnerNRI, Log: log, Daemon: true, Linger: *linger, Observer: observer})
	if err != nil {
		log.Error("start", "error", err)
		fmt.Fprintln(os.Stderr, "nriguard plugin:", err)
		return 1
	}
	defer eng.Close()
	started := time.Now()
	be, beErr := bpf.ExecBackend()
	log.Info("starting", "version", version, "preregistered", preregistered, "exec_backend", be, "exec_backend_error", beErr)
	go func() { // (it loads programs to see which load: not before the runtime hears of the plugin)
		node := bpf.Features(*pinRoot)
		logFeatures(log, node)
		if met != nil {
			met.SetNode(featureMap(node), node.ExecBackend)
		}
	}()

	var images plugin.ImageLabeler
	if cfg.HonoursImageLabels() {
		if _, err := os.Stat(cfg.Containerd.Socket); err == nil {
			ci := labels.NewContainerdImages(cfg.Containerd.Socket, cfg.Containerd.Namespace)
			defer ci.Close()
			images = ci
		} else {
			log.Warn("image labels are not read: no containerd socket", "socket", cfg.Containerd.Socket)
		}
	}

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	sink := &eventSink{eng: eng, fallback: preregEvents, preregistered: preregistered}
	defer sink.close()
	tracker := observe.NewTracker()
	also := []func(*events.Record, []byte){hub.Publish, tracker.Observe}
	if met != nil {
		also = append(also, func(r *events.Record, _ []byte) { met.Observe(r) })
		go func() {
			if err := metrics.Serve(ctx, *metricsAddr, met); err != nil {
				log.Error("metrics are not served", "addr", *metricsAddr, "error", err)
			}
		}()
	}
	plug := plugin.New(eng, images, log)
	status := func() observe.Status {
		st := observe.Status{Version: version, Started: started, PID: os.Getpid(), PinRoot: *pinRoot,
			ExecBackend: be, Policed: eng.Policed()}
		if beErr != nil {
			st.ExecBackendError = beErr.Error()
		}
		c := plug.Connection()
		st.Runtime = observe.Runtime{Connected: c.Connected, Name: c.Runtime, Version: c.Version}
		if c.Runtime != "" {
			st.Runtime.Path = c.Path.String()
		}
		tracker.Fill(&st)
		return st
	}
	if *observeSocket != "" {
		go func() {
			if err := observe.Serve(ctx, *observeSocket, observe.Handler(hub, status)); err != nil {
				log.Error("the record stream is not served", "socket", *observeSocket, "error", err)
			}
		}()
	}
	go func() {
		if err := eng.ReportEvents(ctx, sink, also...); err != nil {
			log.Error("events are not reported", "error", err)
		}
	}()

	var opts []stub.Option
	if !preregistered {
		opts = append(opts, stub.WithSocketPath(*socket), stub.WithPluginName(*name), stub.WithPluginIdx(*idx))
	}
	if err := plugin.Run(ctx, plug, opts...); err != nil {
		log.Error("stopped", "error", err)
		return 1
	}
	log.Info("stopped: attachments stay pinned and in force")
	return 0
}

func openAppend(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
}

// eventSink writes event lines where the config in force says: event_log,
// or stdout (a pre-registered plugin has none: it uses a file).
type eventSink struct {
	eng           *engine.Engine
	fallback      string
	preregistered bool
	mu            sync.Mutex
	path          string
	f             *os.File
}

func (s *eventSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	path := s.eng.Config().EventLog
	if path == "" && s.preregistered {
		path = s.fallback
	}
	if path == "" || path == "-" {
		return os.Stdout.Write(p)
	}
	if s.f == nil || s.path != path {
		if s.f != nil {
			s.f.Close()
		}
		f, err := openAppend(path)
		if err != nil {
			return 0, err
		}
		s.f, s.path = f, path
	}
	return s.f.Write(p)
}

func (s *eventSink) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		s.f.Close()
	}
}

// attachMetrics counts attaches and detaches, and forgets a container's
// series when it goes.
type attachMetrics struct{ m *metrics.Metrics }

func (a attachMetrics) Attached(took time.Duration, err error) { a.m.Attached(took, err) }

func (a attachMetrics) Detached(c engine.Info, took time.Duration) {
	a.m.Detached(took)
	a.m.Forget(c.Namespace, c.Pod, c.Name)
}

// logFeatures says once, at start, what the node's kernel offers and so
// which guarantees hold here (nriguard status says it in words).
func logFeatures(log *slog.Logger, n bpf.NodeFeatures) {
	var present, missing []any
	for _, f := range n.Features {
		present = append(present, slog.Bool(f.Name, f.Present))
		if !f.Present {
			missing = append(missing, slog.String(f.Name, f.Detail+": "+f.Guarantee))
		}
	}
	log.Info("node features", "kernel", n.Kernel, "cgroup_v2", n.CgroupV2, "hybrid", n.Hybrid,
		"exec_backend", n.ExecBackend, "exec", n.ExecGuarantee, slog.Group("features", present...), slog.Group("missing", missing...))
}

func featureMap(n bpf.NodeFeatures) map[string]bool {
	m := map[string]bool{}
	for _, f := range n.Features {
		m[f.Name] = f.Present
	}
	return m
}
