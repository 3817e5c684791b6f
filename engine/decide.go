package engine

import (
	"fmt"
	"strings"

	"github.com/nriguard/nriguard/labels"
	"github.com/nriguard/nriguard/policy"
)

// Container is what the engine needs to know of one container.
type Container struct {
	ID        string
	Name      string // within its pod
	Pod       string
	Namespace string
	// PodAnnotations, Annotations and Labels are the runtime's; ImageLabels
	// are those of the container's image config.
	PodAnnotations, Annotations, Labels, ImageLabels map[string]string
}

// Layer is one source of rules for a container. A flow or exec passes only
// if every layer lets it pass.
type Layer struct {
	Source string         `json:"source"` // e.g. "pod annotation egress.nriguard.io/container.web"
	Key    string         `json:"-"`      // what errors about its rules name
	Egress *policy.Egress `json:"-"`
	Exec   *policy.Exec   `json:"-"`
	Text   string         `json:"rules"`
}

// Decision is a container's effective policy: its layers and its mode.
type Decision struct {
	Layers []Layer          `json:"layers"`
	Mode   policy.Mode      `json:"-"`
	ModeOf string           `json:"mode"`
	Egress []*policy.Egress `json:"-"`
	Exec   []*policy.Exec   `json:"-"`
}

// Empty tells whether nothing applies: the container is left alone.
func (d *Decision) Empty() bool { return len(d.Egress) == 0 && len(d.Exec) == 0 }

// Decide gathers a container's layers from every source. An invalid value
// is an error naming its key, the rule and what was expected, so that the
// runtime refuses the container with it.
func Decide(cfg *Config, c Container) (*Decision, error) {
	d := &Decision{ModeOf: "enforce (default)"}
	if cfg.exempt(c.Namespace) {
		return d, nil
	}
	src := labels.Sources{
		Container: c.Name,
		Pod:       c.PodAnnotations,
		Own:       []map[string]string{c.Annotations, c.Labels},
		OwnNames:  []string{"container annotation", "container label"},
	}
	addEgress := func(source, key, text string) error {
		e, err := policy.ParseEgress(key, text)
		if err != nil {
			return err
		}
		d.Layers = append(d.Layers, Layer{Source: source, Key: key, Egress: e, Text: text})
		d.Egress = append(d.Egress, e)
		return nil
	}
	addExec := func(source, key, text string) error {
		x, err := policy.ParseExec(key, text)
		if err != nil {
			return err
		}
		d.Layers = append(d.Layers, Layer{Source: source, Key: key, Exec: x, Text: text})
		d.Exec = append(d.Exec, x)
		return nil
	}
	if cfg.CeilingEgress != "" {
		if err := addEgress("node ceiling", "config ceiling_egress", cfg.CeilingEgress); err != nil {
			return nil, err
		}
	}
	if cfg.CeilingExec != "" {
		if err := addExec("node ceiling", "config ceiling_exec", cfg.CeilingExec); err != nil {
			return nil, err
		}
	}
	// What the workload declares: its profile, its labels, its image.
	var ownEgress, ownExec bool
	if v, key, where, ok := src.LookupWhere(labels.Profile); ok {
		name := strings.TrimSpace(v)
		p, found := cfg.Profiles[name]
		if !found {
			return nil, fmt.Errorf("%s: unknown profile %q: this node has %s", key, name, cfg.profileNames())
		}
		source := fmt.Sprintf("profile %s (%s %s)", name, where, key)
		if p.Egress != "" {
			ownEgress = true
			if err := addEgress(source, "config profiles."+name+".egress", p.Egress); err != nil {
				return nil, err
			}
		}
		if p.Exec != "" {
			ownExec = true
			if err := addExec(source, "config profiles."+name+".exec", p.Exec); err != nil {
				return nil, err
			}
		}
	}
	if v, key, where, ok := src.LookupWhere(labels.Egress); ok {
		ownEgress = true
		if err := addEgress(where+" "+key, key, v); err != nil {
			return nil, err
		}
	}
	if v, key, where, ok := src.LookupWhere(labels.Exec); ok {
		ownExec = true
		if err := addExec(where+" "+key, key, v); err != nil {
			return nil, err
		}
	}
	if cfg.imageLabels() {
		// An image can declare what it needs; as one more layer it can only
		// tighten what the node and the pod set.
		if v, ok := c.ImageLabels[labels.Egress]; ok {
			ownEgress = true
			if err := addEgress("image label "+labels.Egress, "image label "+labels.Egress, v); err != nil {
				return nil, err
			}
		}
		if v, ok := c.ImageLabels[labels.Exec]; ok {
			ownExec = true
			if err := addExec("image label "+labels.Exec, "image label "+labels.Exec, v); err != nil {
				return nil, err
			}
		}
	}
	if !ownEgress && cfg.DefaultEgress != "" {
		if err := addEgress("node default", "config default_egress", cfg.DefaultEgress); err != nil {
			return nil, err
		}
	}
	if !ownExec && cfg.DefaultExec != "" {
		if err := addExec("node default", "config default_exec", cfg.DefaultExec); err != nil {
			return nil, err
		}
	}
	if v, key, where, ok := src.LookupWhere(labels.Mode); ok {
		m, err := policy.ParseMode(key, v)
		if err != nil {
			return nil, err
		}
		if m == policy.Audit && !cfg.allowAuditLabel() {
			return nil, fmt.Errorf("%s: audit mode may not be chosen by a label on this node (allow_audit_label: false)", key)
		}
		d.Mode, d.ModeOf = m, fmt.Sprintf("%s (%s %s)", m, where, key)
	}
	return d, nil
}
