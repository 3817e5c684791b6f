package bpf

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/nriguard/nriguard/dnsanswer"
	"github.com/nriguard/nriguard/policy"
)

// enum returns the values of a C enum of nriguard.h, by name, from the
// compiled object's BTF: what the programs were built with.
func enum(t *testing.T, name string) map[string]uint64 {
	t.Helper()
	cs, err := egressSpec()
	if err != nil {
		t.Fatal(err)
	}
	var e *btf.Enum
	if err := cs.Types.TypeByName(name, &e); err != nil {
		t.Fatalf("enum %s: %v", name, err)
	}
	out := map[string]uint64{}
	for _, v := range e.Values {
		out[v.Name] = v.Value
	}
	return out
}

// The constants are written once, in C; the Go that mirrors what C cannot
// give (policy.Layer, the hook names) must agree with it.
func TestConstantsAgreeWithC(t *testing.T) {
	layers := enum(t, "ng_layer")
	for l := policy.LayerNone; l < policy.LayerDefault+1; l++ {
		name := "LAYER_" + strings.ToUpper(l.String())
		if l == policy.LayerNone {
			name = "LAYER_NONE"
		}
		if v, ok := layers[name]; !ok || v != uint64(l) {
			t.Errorf("policy.Layer %v = %d, C %s = %d (present: %v)", l, l, name, v, ok)
		}
	}
	if len(layers) != int(policy.LayerDefault)+1 {
		t.Errorf("C has %d layers, Go %d", len(layers), policy.LayerDefault+1)
	}
	for name, v := range enum(t, "ng_hook") {
		if hookKinds[egressNgHook(v)] == "" {
			t.Errorf("hook %s (%d) has no event kind name", name, v)
		}
	}
	for name, v := range enum(t, "ng_event_kind") {
		if name != "EV_KIND_MAX" && lostKindNames[uint32(v)] == "" {
			t.Errorf("event kind %s (%d) has no lost kind name", name, v)
		}
	}
	limits := enum(t, "ng_limits")
	if limits["MAX_ID_RUNS"] != policy.MaxIDRuns || limits["MAX_CELLS"] != policy.MaxConds {
		t.Errorf("C MAX_ID_RUNS %d, MAX_CELLS %d; Go policy.MaxIDRuns %d, MaxConds %d", limits["MAX_ID_RUNS"], limits["MAX_CELLS"], policy.MaxIDRuns, policy.MaxConds)
	}
	if limits["DNS_MAX_RECORDS"] != dnsanswer.MaxRecords || limits["DNS_MAX_NAME"] != dnsanswer.MaxNameWire || limits["DNS_MAX_LABELS"] != dnsanswer.MaxLabels {
		t.Errorf("C DNS_MAX_RECORDS %d, DNS_MAX_NAME %d, DNS_MAX_LABELS %d; Go dnsanswer %d, %d, %d", limits["DNS_MAX_RECORDS"], limits["DNS_MAX_NAME"],
			limits["DNS_MAX_LABELS"], dnsanswer.MaxRecords, dnsanswer.MaxNameWire, dnsanswer.MaxLabels)
	}
	if shift := enum(t, "ng_class_bits")["CLASS_DEPENDENT_SHIFT"]; 1<<shift != policy.Dependent {
		t.Errorf("C CLASS_DEPENDENT_SHIFT %d, Go policy.Dependent %#x", shift, policy.Dependent)
	}
}
