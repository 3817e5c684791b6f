package bpf

import (
	"github.com/nriguard/nriguard/events"
	"github.com/nriguard/nriguard/policy"
)

// The constants nriguard.h defines, as bpf2go generated them, under the
// names the rest of the package uses.
const (
	// EventRingSize is the size of every event ring buffer: one shared by
	// several attachments must have it too.
	EventRingSize = int(egressNgLimitsEVENT_RING_SIZE)
	// ExecRulesMax bounds the exec rules of all containers under a pin root.
	// The table is not preallocated; its buckets cost 16 bytes per possible
	// entry (4 MiB) while any exec policy exists.
	ExecRulesMax = int(egressNgLimitsEXEC_RULES_MAX)
	maxRings     = uint32(egressNgLimitsMAX_RINGS) // exec_rings slots; 0 is "none"
	lostKinds    = uint32(egressNgEventKindEV_KIND_MAX)

	evKindFlow = uint8(egressNgEventKindEV_KIND_FLOW)
	evKindExec = uint8(egressNgEventKindEV_KIND_EXEC)

	actionAllow     = uint8(egressNgActionACTION_ALLOW)
	actionDeny      = uint8(egressNgActionACTION_DENY)
	actionWouldDeny = uint8(egressNgActionACTION_WOULD_DENY)

	pkeyExe      = uint32(egressNgPkeyKindPKEY_EXE)
	pkeyOverride = uint32(egressNgPkeyKindPKEY_OVERRIDE)
	maxIDRuns    = int(egressNgLimitsMAX_ID_RUNS)
	maxCells     = int(egressNgLimitsMAX_CELLS)
	cellsShift   = uint(egressNgVerdictBitsVERDICT_CELLS_SHIFT)

	layerShift      = uint(egressNgVerdictBitsVERDICT_LAYER_SHIFT)
	verdictNameable = uint32(egressNgVerdictBitsVERDICT_NAMEABLE)
	dnsNameCap      = uint64(egressNgLimitsDNS_NAME_CAP)
	ringShift       = uint(egressNgVerdictBitsSETTINGS_RING_SHIFT)
	ringMask        = uint64(egressNgVerdictBitsSETTINGS_RING_MASK)
	visExecsShift   = uint(egressNgVerdictBitsSETTINGS_VIS_EXECS_SHIFT)

	visFlows = uint8(egressNgVisibilityVIS_FLOWS)

	portClassShift  = uint(egressNgLayoutPORT_CLASS_SHIFT)
	portProtoShift  = uint(egressNgLayoutPORT_PROTO_SHIFT)
	idStepsGIDShift = uint(egressNgLayoutID_STEPS_GID_SHIFT)
)

// principalKey is an override's key in a principal table: who makes a
// flow, as its classes (ng_layout).
func principalKey(p policy.PrincipalClass) uint64 {
	return uint64(p.Program)<<egressNgLayoutPRINCIPAL_PROGRAM_SHIFT | uint64(p.UID)<<egressNgLayoutPRINCIPAL_UID_SHIFT | uint64(p.GID)
}

// hookKinds names each program's events (events.Kind*).
var hookKinds = map[egressNgHook]events.Kind{
	egressNgHookHOOK_CONNECT4:     "connect",
	egressNgHookHOOK_CONNECT6:     "connect",
	egressNgHookHOOK_SENDMSG4:     "sendmsg",
	egressNgHookHOOK_SENDMSG6:     "sendmsg",
	egressNgHookHOOK_SOCK_CREATE:  "socket",
	egressNgHookHOOK_EXEC_KILL:    "exec",
	egressNgHookHOOK_EXEC_LSM:     "exec",
	egressNgHookHOOK_SKB_EGRESS:   "packet",
	egressNgHookHOOK_SOCK_RELEASE: "flow",
	egressNgHookHOOK_FLOW_COUNT:   "flow",
	egressNgHookHOOK_SKB_INGRESS:  "dns",
	egressNgHookHOOK_WRITE_LSM:    events.KindWrite,
	egressNgHookHOOK_SEND_LSM:     events.KindSendmsg,
}

// reasons names why the packet path stopped a packet.
var reasons = map[uint8]string{
	uint8(egressNgReasonREASON_DESTINATION):     "destination",
	uint8(egressNgReasonREASON_ROUTING_OPTION):  "routing-option",
	uint8(egressNgReasonREASON_DNS_UNSOLICITED): "dns-unsolicited",
	uint8(egressNgReasonREASON_DNS_RESOLVER):    "dns-resolver",
	uint8(egressNgReasonREASON_DNS_TRUNCATED):   "dns-truncated",
	uint8(egressNgReasonREASON_DNS_OWN):         "dns-own-server",
	uint8(egressNgReasonREASON_OTHER_SENDER):    "other-sender",
	uint8(egressNgReasonREASON_DNS_TCP):         "dns-tcp",
}
