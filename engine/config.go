// Package engine turns what a runtime tells about a container into its
// effective policy and keeps that policy attached to the container's cgroup.
// The NRI plugin and the OCI hook both drive it, so there is one copy of the
// policy and loader logic.
package engine

import (
	"fmt"
	"os"
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
	// EventLog is where events go as JSON lines: a file, or "" for stdout.
	EventLog string `json:"event_log,omitempty"`
	// Containerd is where image labels are read from.
	Containerd ContainerdConfig `json:"containerd,omitempty"`
}

// Profile is a named policy.
type Profile struct {
	Egress string `json:"egress,omitempty"`
	Exec   string `json:"exec,omitempty"`
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

// ParseConfig reads node settings and checks every policy in them, naming
// the setting in errors ("config ceiling_egress: rule 1 ...").
func ParseConfig(data []byte) (*Config, error) {
	c := &Config{}
	if err := yaml.UnmarshalStrict(data, c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	check := func(key, v string, parse func(string, string) error) error {
		if strings.TrimSpace(v) == "" {
			return nil
		}
		return parse("config "+key, v)
	}
	egress := func(k, v string) error { _, err := policy.ParseEgress(k, v); return err }
	exec := func(k, v string) error { _, err := policy.ParseExec(k, v); return err }
	for _, f := range []struct {
		key, val string
		parse    func(string, string) error
	}{
		{"ceiling_egress", c.CeilingEgress, egress}, {"ceiling_exec", c.CeilingExec, exec},
		{"default_egress", c.DefaultEgress, egress}, {"default_exec", c.DefaultExec, exec},
	} {
		if err := check(f.key, f.val, f.parse); err != nil {
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
		if err := check("profiles."+n+".egress", p.Egress, egress); err != nil {
			return nil, err
		}
		if err := check("profiles."+n+".exec", p.Exec, exec); err != nil {
			return nil, err
		}
	}
	if c.Containerd.Socket == "" {
		c.Containerd.Socket = "/run/containerd/containerd.sock"
	}
	if c.Containerd.Namespace == "" {
		c.Containerd.Namespace = "k8s.io"
	}
	return c, nil
}

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
