package policy

// Layer is where a container's rules come from. A container's policy is the
// intersection of its layers; the layer that refused a flow or a program is
// named in its event. The values are the programs' (ng_layer in
// bpf/nriguard.h; the bpf package's tests check that they agree).
type Layer uint8

const (
	LayerNone    Layer = iota // one policy of its own (nriguard run)
	LayerCeiling              // the node's ceiling: always enforced
	LayerProfile              // a node profile the workload picked
	LayerLabel                // the workload's annotations or labels
	LayerImage                // its image's labels
	LayerDefault              // the node's default, when the workload declares nothing
	numLayers
)

var layerNames = [numLayers]string{"", "ceiling", "profile", "label", "image", "default"}

func (l Layer) String() string {
	if l < numLayers {
		return layerNames[l]
	}
	return "unknown"
}

// Verdict is what compiled tables say of a flow or a program: the action
// and, for a denial, the layer that refused.
type Verdict struct {
	Action Action
	Layer  Layer
}

// Allowed is the verdict of a flow every layer lets pass.
var Allowed = Verdict{Action: Allow}

// refusal combines the denials of several layers: the ceiling, then the
// layer listed first in Layer's order, is named. So the result does not
// depend on the order the layers are given in.
func refusal(a, b Verdict) Verdict {
	switch {
	case a.Action != Deny:
		return b
	case b.Action != Deny:
		return a
	case b.Layer < a.Layer:
		return b
	}
	return a
}

// inMode turns a denial into what a container in mode gets: in audit mode
// a denial by anything but the node's ceiling is only reported.
func (v Verdict) inMode(m Mode) Verdict {
	if m == Audit && v.Action == Deny && v.Layer != LayerCeiling {
		v.Action = WouldDeny
	}
	return v
}
