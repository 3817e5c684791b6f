// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// What nriguard's programs and its Go side agree on, written once: bpf2go
// turns these enums and structs into Go (-type, see gen.go), and the Go
// side uses nothing else.
#pragma once

// Which program reported an event.
enum ng_hook {
	HOOK_CONNECT4 = 1,
	HOOK_CONNECT6 = 2,
	HOOK_SENDMSG4 = 3,
	HOOK_SENDMSG6 = 4,
	HOOK_SOCK_CREATE = 5,
	HOOK_EXEC_KILL = 6, // tp_btf/sched_process_exec + SIGKILL
	HOOK_EXEC_LSM = 7, // lsm/bprm_check_security, EPERM
	HOOK_SKB_EGRESS = 8, // cgroup_skb/egress: the packet path's backstop
	HOOK_SOCK_RELEASE = 9, // cgroup/sock_release: a flow's last counts
	HOOK_FLOW_COUNT = 10, // a flow's counts since its last record (the packet path, or a new destination)
	HOOK_SKB_INGRESS = 11, // cgroup_skb/ingress: DNS answers that teach nothing
	HOOK_WRITE_LSM = 12, // lsm/file_open, lsm/path_truncate: a write to a program a policy allows, EPERM
	HOOK_SEND_LSM = 13, // lsm/socket_sendmsg: a send on a flow allowed for another sender, EPERM
};

// What a policed cgroup reports besides refusals (config.visibility in
// egress.c, exec settings' SETTINGS_VIS_EXECS bit).
enum ng_visibility {
	VIS_FLOWS = 1, // a record per new flow, and its counts
	VIS_EXECS = 2, // a record per exec, allowed ones too
};

// Why the packet path stopped a packet (flow_event.reason).
enum ng_reason {
	REASON_NONE = 0,
	// its real destination is not the one the hooks judged, and the policy
	// refuses it (or it has no port to judge)
	REASON_DESTINATION = 1,
	// it carries IPv4 options or an IPv6 routing header, which would send
	// it elsewhere than its destination address
	REASON_ROUTING_OPTION = 2,
	// DNS answers that teach nothing (HOOK_SKB_INGRESS): no query of the
	// receiving socket to that address has that id
	REASON_DNS_UNSOLICITED = 3,
	// the answer's sender is not a resolver the policy allows (udp, port 53)
	REASON_DNS_RESOLVER = 4,
	// truncated (TC): the client asks again over TCP, which teaches nothing
	REASON_DNS_TRUNCATED = 5,
	// sent by a DNS server in a policed container (its own, or its pod's)
	REASON_DNS_OWN = 6,
	// a connection to a DNS server over TCP (its SYN-ACK): its answers
	// teach nothing
	REASON_DNS_TCP = 7,
	// a send on a flow a rule allowed for another program or user (the
	// per-send check, HOOK_SEND_LSM)
	REASON_OTHER_SENDER = 8,
};

// Which record follows the header; also the index of the lost counter a
// record that found no room in the ring is counted in.
enum ng_event_kind {
	EV_KIND_FLOW = 1,
	EV_KIND_EXEC = 2,
	EV_KIND_MAX = 3, // entries of every lost counter array
};

// What a table entry says. A verdict value in a table is an action in its
// low byte and the layer that decided in the next one (ng_verdict_bits).
enum ng_action {
	ACTION_ALLOW = 1,
	ACTION_DENY = 2,
	// denied by a policy in audit mode: let through and reported
	ACTION_WOULD_DENY = 3,
};

// The layer of a container's policy that decided (policy.Layer in Go).
enum ng_layer {
	LAYER_NONE = 0,
	LAYER_CEILING = 1,
	LAYER_PROFILE = 2,
	LAYER_LABEL = 3,
	LAYER_IMAGE = 4,
	LAYER_DEFAULT = 5,
};

enum ng_verdict_bits {
	VERDICT_ACTION_MASK = 0xff,
	VERDICT_LAYER_SHIFT = 8,
	VERDICT_LAYER_MASK = 0xff,
	// exec settings (a cgroup's entry with ino 0): its default verdict in
	// the low 16 bits, the index of its event ring above
	SETTINGS_RING_SHIFT = 16,
	SETTINGS_RING_MASK = 0x7fff,
	// exec settings: report allowed execs too (visibility: execs)
	SETTINGS_VIS_EXECS_SHIFT = 31,
	// a file's entry in the exec table: how many cells follow it, above
	// its verdict
	VERDICT_CELLS_SHIFT = 24,
	// egress port runs: only the default of the layer with DNS names
	// refuses, so an address learned for one of its names may pass
	// (policy.PortRun.Nameable)
	VERDICT_NAMEABLE = 1 << 16,
	// a verdict a DNS name gave: the name's index in the policy's names,
	// plus one, above this shift (flow_event.name)
	VERDICT_NAME_SHIFT = 17,
};

// An address class whose verdicts depend on who makes the flow has this
// bit set in the runs (policy.Dependent).
enum ng_class_bits {
	CLASS_DEPENDENT_SHIFT = 31,
};

// Bit layouts of the keys the loader packs and the programs take apart.
enum ng_layout {
	// a port run's start (tables.h): class << PORT_CLASS_SHIFT | protocol
	// (0 TCP, 1 UDP) << PORT_PROTO_SHIFT | port
	PORT_CLASS_SHIFT = 17,
	PORT_PROTO_SHIFT = 16,
	// an override's key in a principal table (principals.h, pkey.b):
	// program class << PRINCIPAL_PROGRAM_SHIFT | uid class <<
	// PRINCIPAL_UID_SHIFT | gid class
	PRINCIPAL_PROGRAM_SHIFT = 40,
	PRINCIPAL_UID_SHIFT = 20,
	// config.id_steps: the uid runs' steps in the low bits (ID_STEPS_MASK),
	// the gid runs' above ID_STEPS_GID_SHIFT
	ID_STEPS_GID_SHIFT = 4,
	ID_STEPS_MASK = 0xf,
};
// The kinds of entry of a container's principal table (principals.h).
enum ng_pkey_kind {
	PKEY_EXE = 1, // a file the policy's exe= qualifiers name -> its program class
	PKEY_OVERRIDE = 2, // (address class, program, uid, gid classes) -> the class that applies
};

enum ng_limits {
	// Every event ring has this size: rings put in exec_rings must match
	// the template's.
	EVENT_RING_SIZE = 1 << 20,
	// Exec rules of all policed cgroups under one pin root.
	EXEC_RULES_MAX = 1 << 18,
	// exec_rings slots; index 0 is "none"
	MAX_RINGS = 64,
	// entries of one container's principal table
	PRINCIPALS_MAX = 1 << 18,
	// uid runs, and gid runs, of one policy (policy.MaxIDRuns)
	MAX_ID_RUNS = 32,
	// cells of one file in the exec table (policy.MaxConds)
	MAX_CELLS = 8,
	// a flow's counts are reported at its first packet after this many
	// seconds since the last report, and when its socket is closed
	FLOW_COUNT_INTERVAL_S = 10,
	// DNS answers (dnsanswer in Go holds the same limits): answer records
	// read, the question's name in wire form without its final zero, labels
	// of an owner name skipped before a pointer
	DNS_MAX_RECORDS = 16,
	DNS_MAX_NAME = 254,
	DNS_MAX_LABELS = 32,
	// the names of all policies of a copy of the programs, and the
	// addresses learned for them
	DNS_NAMES_MAX = 1 << 16,
	DNS_LEARNED_MAX = 1 << 18,
	// names one learned address answers for (the soonest to expire makes
	// room), and queries a socket awaits answers to
	DNS_SLOTS = 4,
	DNS_QUERIES = 8,
	// addresses one name answers for at once (a power of two): its 256
	// most recently learned
	DNS_NAME_CAP = 256,
	// a learned address lets new flows start for its TTL (at most
	// DNS_MAX_TTL_S) and this much longer
	DNS_GRACE_S = 5,
	// where policed containers' own DNS servers sent answers (an LRU
	// table: preallocated, about 100 bytes an entry in every copy)
	DNS_OWN_ANSWERS = 1 << 12,
	DNS_MAX_TTL_S = 86400,
};

// Every record starts with this header, so that user space can tell a
// record's kind before decoding it.
struct event_hdr {
	__u64 ts_ns; // CLOCK_BOOTTIME
	__u64 cgroup_id; // the cgroup v2 the process is in
	__u64 policy_cgroup; // the policed cgroup whose policy decided: the container's
	__u32 pid; // tgid
	__u32 tid;
	__u32 uid;
	__u32 gid;
	__u8 comm[16];
	__u8 kind; // ng_event_kind
	__u8 hook; // ng_hook
	__u8 action; // ng_action: ACTION_DENY or ACTION_WOULD_DENY
	__u8 layer; // ng_layer
	__u8 pad[4];
};

struct flow_event {
	struct event_hdr h;
	__u8 addr[16]; // 4 bytes for AF_INET
	__u16 port; // host order
	__u8 family;
	__u8 proto;
	__u8 type; // socket type
	__u8 reason; // ng_reason (the packet path)
	__u16 name; // the DNS name that allowed the flow: its index in the policy's names + 1; 0 none
	// the file the process runs (its memory's exe_file): kernel device
	// encoding and inode; 0 when the process is not known (the packet path)
	__u32 exe_dev;
	__u32 pad2;
	__u64 exe_ino;
	// visibility: the socket (its cookie) and, in count records (hook
	// skb_egress with action allow, sock_release), what it sent to this
	// destination since the previous record
	__u64 cookie;
	__u64 packets, bytes;
};

struct exec_event {
	struct event_hdr h;
	__u32 ppid;
	__u32 dev; // kernel encoding: major << 20 | minor
	__u64 ino;
	char filename[256]; // as passed to execve
};

// An array of EV_KIND_MAX counters: records of each kind that found no
// room in the ring they were meant for. Every ring has one.
struct lost_counters {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, EV_KIND_MAX);
};

static __always_inline void count_lost(void *lost, __u32 kind)
{
	__u64 *n = bpf_map_lookup_elem(lost, &kind);
	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline void fill_hdr(struct event_hdr *h, __u64 policy_cgroup, __u8 kind, __u8 hook,
				     __u32 verdict)
{
	__u64 id = bpf_get_current_pid_tgid(), ug = bpf_get_current_uid_gid();
	h->ts_ns = bpf_ktime_get_boot_ns();
	h->cgroup_id = bpf_get_current_cgroup_id();
	h->policy_cgroup = policy_cgroup;
	h->pid = id >> 32;
	h->tid = (__u32)id;
	h->uid = (__u32)ug;
	h->gid = ug >> 32;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
	h->kind = kind;
	h->hook = hook;
	h->action = verdict & VERDICT_ACTION_MASK;
	h->layer = (verdict >> VERDICT_LAYER_SHIFT) & VERDICT_LAYER_MASK;
	__builtin_memset(h->pad, 0, sizeof(h->pad));
}

// Emit the types into BTF so that bpf2go generates their Go mirrors.
const struct flow_event *const unused_flow_event __attribute__((used)) = 0;
const struct exec_event *const unused_exec_event __attribute__((used)) = 0;
const struct event_hdr *const unused_event_hdr __attribute__((used)) = 0;
const enum ng_hook unused_hook __attribute__((used)) = 0;
const enum ng_event_kind unused_event_kind __attribute__((used)) = 0;
const enum ng_action unused_action __attribute__((used)) = 0;
const enum ng_class_bits unused_class_bits __attribute__((used)) = 0;
const enum ng_pkey_kind unused_pkey_kind __attribute__((used)) = 0;
const enum ng_layout unused_layout __attribute__((used)) = 0;
const enum ng_layer unused_layer __attribute__((used)) = 0;
const enum ng_verdict_bits unused_verdict_bits __attribute__((used)) = 0;
const enum ng_limits unused_limits __attribute__((used)) = 0;
const enum ng_reason unused_reason __attribute__((used)) = 0;
const enum ng_visibility unused_visibility __attribute__((used)) = 0;
