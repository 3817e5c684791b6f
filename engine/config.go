// Package engine turns what a runtime tells about a container into its
// effective policy and keeps that policy attached to the container's cgroup.
// The NRI plugin and the OCI hook both drive it, so there is one copy of the
// policy and loader logic.
package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/nriguard/nriguard/policy"
)

// DefaultConfigPath is where the node settings live unless told otherwise.
const DefaultConfigPath = "/etc/nriguard/config.yaml"

// Config is the node's settings (/etc/nriguard/config.yaml, or the NRI
// plugin configuration). Every field may be left out.
type Config struct {
	// Ceiling rules always apply, to every container that is not exempt:
	// no label can loosen them (e.g. "deny any 169.254.169.254").
	CeilingEgress string `json:"ceiling_egress,omitempty"`
	CeilingExec   string `json:"ceiling_exec,omitempty"`
	// Default rules apply to containers whose labels, profile and image set
	// nothing for that kind of rule. Off when empty: unlabelled containers
	// are left alone.
	DefaultEgress string `json:"default_egress,omitempty"`
	DefaultExec   string `json:"default_exec,omitempty"`
	// Each policy setting may instead name a file (an absolute path) that
	// holds its rules, one a line: for policies too large to write inline.
	// It is read when the settings are (at start, or NRI's Configure).
	CeilingEgressFile string `json:"ceiling_egress_file,omitempty"`
	CeilingExecFile   string `json:"ceiling_exec_file,omitempty"`
	DefaultEgressFile string `json:"default_egress_file,omitempty"`
	DefaultExecFile   string `json:"default_exec_file,omitempty"`
	// Profiles are named policies a label can pick: profile.nriguard.io: web.
	Profiles map[string]Profile `json:"profiles,omitempty"`
	// ImageLabels: whether egress/exec labels in an image's config are
	// honoured (they can only tighten). Default true.
	ImageLabels *bool `json:"image_labels,omitempty"`
	// ExemptNamespaces are Kubernetes namespaces nriguard leaves alone.
	ExemptNamespaces []string `json:"exempt_namespaces,omitempty"`
	// AllowAuditLabel: whether mode.nriguard.io: audit may be chosen by a
	// label. Default true; false refuses such containers.
	AllowAuditLabel *bool `json:"allow_audit_label,omitempty"`
	// Visibility is what every policed container reports besides
	// refusals: off (the default), flows, execs or both. A pod may ask for
	// more (visibility.nriguard.io), never for less.
	Visibility string `json:"visibility,omitempty"`
	// VisibilityUnpoliced: the node's visibility holds for containers with
	// no policy too (each gets programs that allow everything and report).
	// A label asking for visibility makes its container observed either way.
	VisibilityUnpoliced bool `json:"visibility_unpoliced,omitempty"`
	// MetricsAddr serves Prometheus metrics at http://MetricsAddr/metrics
	// (docs/metrics.md); "" (the default) serves none. The plugin's
	// --metrics-addr, when given, wins.
	MetricsAddr string `json:"metrics_addr,omitempty"`
	// EventLog is where events go as JSON lines: a file, or "" for stdout.
	EventLog string `json:"event_log,omitempty"`
	// Containerd is where image labels are read from.
	Containerd ContainerdConfig `json:"containerd,omitempty"`

	// parsed holds each policy setting parsed once, by the key its errors
	// name ("config ceiling_egress"), its layer set: Decide uses it rather
	// than parse a large ceiling again for every container.
	parsed map[string]any
}

// Profile is a named policy.
type Profile struct {
	Egress     string `json:"egress,omitempty"`
	Exec       string `json:"exec,omitempty"`
	EgressFile string `json:"egress_file,omitempty"`
	ExecFile   string `json:"exec_file,omitempty"`
}

// ContainerdConfig says how to reach containerd's image store.
type ContainerdConfig struct {
	Socket    string `json:"socket,omitempty"`    // default /run/containerd/containerd.sock
	Namespace string `json:"namespace,omitempty"` // default k8s.io
}

func (c *Config) imageLabels() bool { return c.ImageLabels == nil || *c.ImageLabels }

// HonoursImageLabels tells whether image labels are read at all.
func (c *Config) HonoursImageLabels() bool { return c.imageLabels() }
func (c *Config) allowAuditLabel() bool    { return c.AllowAuditLabel == nil || *c.AllowAuditLabel }

// ParseConfig reads node settings, reads the files they name, and checks
// every policy in them, naming the setting in errors ("config
// ceiling_egress: rule 1 ...", "config ceiling_egress_file:
// /etc/nriguard/ceiling.rules:12: rule 12 ...").
func ParseConfig(data []byte) (*Config, error) {
	c := &Config{parsed: map[string]any{}}
	if err := yaml.UnmarshalStrict(data, c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if _, err := policy.ParseVisibility("config visibility", c.Visibility); err != nil {
		return nil, err
	}
	// one policy setting: inline, or from a file, not both
	setting := func(key string, inline, file *string, layer policy.Layer, exec bool) error {
		if *file != "" {
			if strings.TrimSpace(*inline) != "" {
				return fmt.Errorf("config: %s and %s_file both set: set one", key, key)
			}
			if !filepath.IsAbs(*file) {
				return fmt.Errorf("config %s_file: %q: expected an absolute path", key, *file)
			}
			text, err := policy.ReadRules(*file)
			if err != nil {
				return fmt.Errorf("config %s_file: %w", key, err)
			}
			*inline = text
		}
		if strings.TrimSpace(*inline) == "" {
			return nil
		}
		name := "config " + key // what Decide names it
		var parsed any
		var err error
		switch {
		case exec && *file != "":
			parsed, err = parseExec(policy.ParseExecFile(*file, *inline))
		case exec:
			parsed, err = parseExec(policy.ParseExec(name, *inline))
		case *file != "":
			parsed, err = parseEgress(policy.ParseEgressFile(*file, *inline))
		default:
			parsed, err = parseEgress(policy.ParseEgress(name, *inline))
		}
		if err != nil {
			if *file != "" {
				return fmt.Errorf("config %s_file: %w", key, err)
			}
			return err
		}
		switch p := parsed.(type) {
		case *policy.Egress:
			p.Layer = layer
		case *policy.Exec:
			p.Layer = layer
		}
		c.parsed[name] = parsed
		return nil
	}
	for _, f := range []struct {
		key          string
		inline, file *string
		layer        policy.Layer
		exec         bool
	}{
		{"ceiling_egress", &c.CeilingEgress, &c.CeilingEgressFile, policy.LayerCeiling, false},
		{"ceiling_exec", &c.CeilingExec, &c.CeilingExecFile, policy.LayerCeiling, true},
		{"default_egress", &c.DefaultEgress, &c.DefaultEgressFile, policy.LayerDefault, false},
		{"default_exec", &c.DefaultExec, &c.DefaultExecFile, policy.LayerDefault, true},
	} {
		if err := setting(f.key, f.inline, f.file, f.layer, f.exec); err != nil {
			return nil, err
		}
	}
	names := make([]string, 0, len(c.Profiles))
	for n := range c.Profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := c.Profiles[n]
		if err := setting("profiles."+n+".egress", &p.Egress, &p.EgressFile, policy.LayerProfile, false); err != nil {
			return nil, err
		}
		if err := setting("profiles."+n+".exec", &p.Exec, &p.ExecFile, policy.LayerProfile, true); err != nil {
			return nil, err
		}
		c.Profiles[n] = p
	}
	if c.Containerd.Socket == "" {
		c.Containerd.Socket = "/run/containerd/containerd.sock"
	}
	if c.Containerd.Namespace == "" {
		c.Containerd.Namespace = "k8s.io"
	}
	return c, nil
}

func parseEgress(e *policy.Egress, err error) (any, error) { return e, err }
func parseExec(x *policy.Exec, err error) (any, error)     { return x, err }

// LoadConfig reads the config file; a missing file is the empty config.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return ParseConfig(nil)
	} else if err != nil {
		return nil, err
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func (c *Config) exempt(ns string) bool { return ns != "" && slices.Contains(c.ExemptNamespaces, ns) }

func (c *Config) profileNames() string {
	var names []string
	for n := range c.Profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
