package engine

import (
	"fmt"
	"log/slog"
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
	Kind   string         `json:"kind"`   // egress or exec
	Layer  policy.Layer   `json:"-"`      // ceiling, profile, label, image, default
	Source string         `json:"source"` // e.g. "pod annotation egress.nriguard.io/container.web"
	Key    string         `json:"-"`      // what errors about its rules name
	Text   string         `json:"rules"`
	Egress *policy.Egress `json:"-"` // set for egress layers
	Exec   *policy.Exec   `json:"-"` // set for exec layers
}

// LogValue keeps a large layer's rules out of logs: its rule count
// instead.
func (l Layer) LogValue() slog.Value {
	rules := any(l.Text)
	if len(l.Text) > 200 {
		n := 0
		if l.Egress != nil {
			n = len(l.Egress.Rules)
		} else if l.Exec != nil {
			n = len(l.Exec.Rules)
		}
		rules = fmt.Sprintf("(%d rules)", n)
	}
	return slog.GroupValue(slog.String("kind", l.Kind), slog.String("source", l.Source), slog.Any("rules", rules))
}

// Decision is a container's effective policy: its layers and its mode.
type Decision struct {
	Layers []Layer     `json:"layers"`
	Mode   policy.Mode `json:"-"`
	ModeOf string      `json:"mode"`
	// Visibility: what it reports besides refusals, the node's setting and
	// what its labels add
	Visibility policy.Visibility `json:"-"`
}

// Egress returns the egress layers' policies.
func (d *Decision) Egress() []*policy.Egress {
	var out []*policy.Egress
	for _, l := range d.Layers {
		if l.Egress != nil {
			out = append(out, l.Egress)
		}
	}
	return out
}

// HasExec tells whether any layer has exec rules.
func (d *Decision) HasExec() bool {
	for _, l := range d.Layers {
		if l.Exec != nil {
			return true
		}
	}
	return false
}

// Empty tells whether nothing applies: the container is left alone.
func (d *Decision) Empty() bool { return len(d.Layers) == 0 && d.Visibility == policy.VisOff }

// kind is one kind of rules a container can be held to. Decide gathers the
// layers of each kind the same way, so a new kind is one more entry here.
type kind struct {
	name  string // "egress", as in the config's ceiling_egress
	label string // the label key
	// node settings of this kind
	ceiling, def func(*Config) string
	profile      func(Profile) string
	// parse parses a value into the layer.
	parse func(key, text string, l *Layer) error
}

var kinds = []kind{
	{
		name: "egress", label: labels.Egress,
		ceiling: func(c *Config) string { return c.CeilingEgress },
		def:     func(c *Config) string { return c.DefaultEgress },
		profile: func(p Profile) string { return p.Egress },
		parse: func(key, text string, l *Layer) (err error) {
			l.Egress, err = policy.ParseEgress(key, text)
			if err == nil {
				l.Egress.Layer = l.Layer
			}
			return err
		},
	},
	{
		name: "exec", label: labels.Exec,
		ceiling: func(c *Config) string { return c.CeilingExec },
		def:     func(c *Config) string { return c.DefaultExec },
		profile: func(p Profile) string { return p.Exec },
		parse: func(key, text string, l *Layer) (err error) {
			l.Exec, err = policy.ParseExec(key, text)
			if err == nil {
				l.Exec.Layer = l.Layer
			}
			return err
		},
	},
}

// Decide gathers a container's layers from every source: for each kind of
// rules, the node's ceiling; then what the workload declares (its profile,
// its labels, its image's labels), or else the node's default. An invalid
// value is an error naming its key, the rule and what was expected, so that
// the runtime refuses the container with it.
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
	var profile *Profile
	var profileName, profileSource string
	if v, key, where, ok := src.LookupWhere(labels.Profile); ok {
		name := strings.TrimSpace(v)
		p, found := cfg.Profiles[name]
		if !found {
			return nil, fmt.Errorf("%s: unknown profile %q: this node has %s", key, name, cfg.profileNames())
		}
		profile, profileName, profileSource = &p, name, fmt.Sprintf("profile %s (%s %s)", name, where, key)
	}
	for _, k := range kinds {
		add := func(layer policy.Layer, source, key, text string) error {
			l := Layer{Kind: k.name, Layer: layer, Source: source, Key: key, Text: text}
			switch p := cfg.parsed[key].(type) { // a node setting, parsed once
			case *policy.Egress:
				l.Egress = p
			case *policy.Exec:
				l.Exec = p
			default:
				if err := k.parse(key, text, &l); err != nil {
					return err
				}
			}
			d.Layers = append(d.Layers, l)
			return nil
		}
		if v := k.ceiling(cfg); v != "" {
			if err := add(policy.LayerCeiling, "node ceiling", "config ceiling_"+k.name, v); err != nil {
				return nil, err
			}
		}
		own := false // does the workload declare rules of this kind?
		if profile != nil && k.profile(*profile) != "" {
			own = true
			if err := add(policy.LayerProfile, profileSource, "config profiles."+profileName+"."+k.name, k.profile(*profile)); err != nil {
				return nil, err
			}
		}
		if v, key, where, ok := src.LookupWhere(k.label); ok {
			own = true
			if err := add(policy.LayerLabel, where+" "+key, key, v); err != nil {
				return nil, err
			}
		}
		// An image can declare what it needs; as one more layer it can only
		// tighten what the node and the pod set.
		if v, ok := c.ImageLabels[k.label]; ok && cfg.imageLabels() {
			own = true
			if err := add(policy.LayerImage, "image label "+k.label, "image label "+k.label, v); err != nil {
				return nil, err
			}
		}
		if v := k.def(cfg); v != "" && !own {
			if err := add(policy.LayerDefault, "node default", "config default_"+k.name, v); err != nil {
				return nil, err
			}
		}
	}
	node, err := policy.ParseVisibility("config visibility", cfg.Visibility)
	if err != nil {
		return nil, err
	}
	if v, key, _, ok := src.LookupWhere(labels.Visibility); ok {
		if d.Visibility, err = policy.ParseVisibility(key, v); err != nil {
			return nil, err
		}
	}
	if len(d.Layers) > 0 || cfg.VisibilityUnpoliced {
		d.Visibility |= node // more only: the node's setting stays
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
		if m == policy.Audit {
			d.ModeOf += "; the node ceiling is enforced"
		}
	}
	return d, nil
}
