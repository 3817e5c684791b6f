//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// nriguard egress datapath: cgroup sock_addr hooks that judge every connect
// and every unconnected send of one container against its own tries, and a
// sock_create hook that refuses the sockets those hooks cannot judge.
// The tables are built in Go (policy.Compile); see docs/design.md.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17

#include "nriguard.h"

struct v4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

// (class, protocol, port), matched on the first 40 + 0..16 bits.
struct port_key {
	__u32 prefixlen;
	__u32 class; // big endian, so that it is matched first
	__u8 proto;
	__u8 port[2]; // big endian
	__u8 pad;
};

// The loader may replace both with maps shared by all containers.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENT_RING_SIZE);
} events SEC(".maps");

struct lost_counters lost_events SEC(".maps");

// Set by the loader before the programs are attached (not at load: a
// daemon loads sets ahead of the containers they will serve).
// The id of the cgroup this copy is attached to.
volatile __u64 policy_cgroup;
// The verdict for sockets the hooks cannot judge (below): denied, or in
// audit mode without a node ceiling, would-deny. It names the layer.
volatile __u32 socket_verdict;

static __always_inline void report_flow(__u8 hook, __u32 verdict, __u8 family, __u8 proto, __u8 type,
					const void *addr, __u16 port)
{
	struct flow_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_lost(&lost_events, EV_KIND_FLOW); // never silent: user space reports it
		return;
	}
	fill_hdr(&e->h, policy_cgroup, EV_KIND_FLOW, hook, verdict);
	if (family == AF_INET6) {
		__builtin_memcpy(e->addr, addr, 16);
	} else {
		__builtin_memset(e->addr, 0, 16);
		__builtin_memcpy(e->addr, addr, 4);
	}
	e->port = port;
	e->family = family;
	e->proto = proto;
	e->type = type;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	bpf_ringbuf_submit(e, 0);
}

// Sizes are caps (no preallocation): the loader sets them to what the
// policy needs, or to PoolTrieCap for a set loaded ahead.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct v4_key);
	__type(value, __u32); // class
	__uint(max_entries, 1);
} v4_prefixes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct v6_key);
	__type(value, __u32); // class
	__uint(max_entries, 1);
} v6_prefixes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct port_key);
	__type(value, __u32); // action | layer << VERDICT_LAYER_SHIFT
	__uint(max_entries, 1);
} ports SEC(".maps");


// verdict looks up the port table of a class. A miss cannot happen with a
// table from the compiler; if it does, the flow is denied (fail closed).
static __always_inline __u32 verdict(__u32 *class, __u32 proto, __u32 port_be)
{
	if (!class || (proto != IPPROTO_TCP && proto != IPPROTO_UDP))
		return ACTION_DENY;
	struct port_key k = {
		.prefixlen = 56,
		.class = bpf_htonl(*class),
		.proto = proto,
	};
	__builtin_memcpy(k.port, &port_be, 2);
	__u32 *v = bpf_map_lookup_elem(&ports, &k);
	return v ? *v : ACTION_DENY;
}

// decide turns a verdict into the hook's return value, reporting denials.
static __always_inline int decide(__u32 v, __u8 hook, __u8 family, __u8 proto, __u8 type,
				  const void *addr, __u32 port_be)
{
	__u32 action = v & VERDICT_ACTION_MASK;
	if (action == ACTION_ALLOW)
		return 1;
	report_flow(hook, v, family, proto, type, addr, bpf_ntohs((__u16)port_be));
	return action == ACTION_WOULD_DENY;
}

static __always_inline int judge4(struct bpf_sock_addr *ctx, __u8 hook)
{
	__u32 ip = ctx->user_ip4, port = ctx->user_port, proto = ctx->protocol;
	struct v4_key k = { .prefixlen = 32 };
	__builtin_memcpy(k.addr, &ip, 4);
	__u32 v = verdict(bpf_map_lookup_elem(&v4_prefixes, &k), proto, port);
	return decide(v, hook, AF_INET, proto, ctx->type, &ip, port);
}

static __always_inline int judge6(struct bpf_sock_addr *ctx, __u8 hook)
{
	__u32 ip[4], port = ctx->user_port, proto = ctx->protocol;
	ip[0] = ctx->user_ip6[0];
	ip[1] = ctx->user_ip6[1];
	ip[2] = ctx->user_ip6[2];
	ip[3] = ctx->user_ip6[3];
	__u32 v;
	// ::ffff:a.b.c.d reaches IPv4 hosts through an IPv6 socket: judge it by
	// the IPv4 rules, or it would slip past them.
	if (ip[0] == 0 && ip[1] == 0 && ip[2] == bpf_htonl(0xffff)) {
		struct v4_key k = { .prefixlen = 32 };
		__builtin_memcpy(k.addr, &ip[3], 4);
		v = verdict(bpf_map_lookup_elem(&v4_prefixes, &k), proto, port);
		return decide(v, hook, AF_INET, proto, ctx->type, &ip[3], port);
	}
	struct v6_key k = { .prefixlen = 128 };
	__builtin_memcpy(k.addr, ip, 16);
	v = verdict(bpf_map_lookup_elem(&v6_prefixes, &k), proto, port);
	return decide(v, hook, AF_INET6, proto, ctx->type, ip, port);
}

SEC("cgroup/connect4")
int ng_connect4(struct bpf_sock_addr *ctx)
{
	return judge4(ctx, HOOK_CONNECT4);
}

SEC("cgroup/connect6")
int ng_connect6(struct bpf_sock_addr *ctx)
{
	return judge6(ctx, HOOK_CONNECT6);
}

// Unconnected UDP: every sendto/sendmsg/sendmmsg message with an address.
SEC("cgroup/sendmsg4")
int ng_sendmsg4(struct bpf_sock_addr *ctx)
{
	return judge4(ctx, HOOK_SENDMSG4);
}

SEC("cgroup/sendmsg6")
int ng_sendmsg6(struct bpf_sock_addr *ctx)
{
	return judge6(ctx, HOOK_SENDMSG6);
}

// Only TCP stream and UDP datagram sockets pass through the hooks above.
// Raw IP, ICMP (ping), SCTP, MPTCP and UDP-Lite sockets would carry traffic
// the policy cannot judge, so a policed cgroup may not create them.
SEC("cgroup/sock_create")
int ng_sock_create(struct bpf_sock *sk)
{
	__u32 type = sk->type, proto = sk->protocol;
	if ((type == SOCK_STREAM && proto == IPPROTO_TCP) || (type == SOCK_DGRAM && proto == IPPROTO_UDP))
		return 1;
	__u8 none[16] = {};
	__u32 v = socket_verdict;
	report_flow(HOOK_SOCK_CREATE, v, sk->family, proto, type, none, 0);
	return (v & VERDICT_ACTION_MASK) == ACTION_WOULD_DENY;
}

char __license[] SEC("license") = "Dual BSD/GPL";
