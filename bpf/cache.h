// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// The socket cache: what a socket was let through to (its own storage, and
// the flow last let through on each CPU), the copy's epoch that says a
// remembered verdict still holds, and the connections accepted here.
#pragma once

// The copy's epoch: the loader adds one whenever it writes or clears a
// cgroup's config. A socket's remembered verdict holds while its cgroup's
// config is the one it was judged under (gen); while the epoch is the one
// it was judged in, that is known without reading the config, whose storage
// is two more cache lines a send, often cold (~40 ns each here). This is an
// array map's value: the lookup is inlined.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} epoch SEC(".maps");

static __always_inline __u64 current_epoch(void)
{
	__u32 zero = 0;
	__u64 *e = bpf_map_lookup_elem(&epoch, &zero);
	return e ? *e : 0;
}

static __always_inline __u8 sv_flags(const struct config *cfg)
{
	return ((cfg->visibility & VIS_FLOWS) ? SV_FLOWS : 0) | (cfg->names ? SV_NAMES : 0) |
	       (cfg->reads_exe ? SV_READS_EXE : 0);
}

// (report.h, which needs struct sock_verdict)
static __always_inline void report_counts(const struct config *cfg, struct sock_verdict *c, __u8 hook,
					  __u64 cookie, __u64 cgroup_id);

// verdict_holds tells whether a socket's remembered verdict still holds:
// judged in this epoch, or (another cgroup's config changed since) under
// the config its cgroup still has, which brings it into this epoch; an
// accepted socket's always does.
static __always_inline int verdict_holds(struct sock_verdict *c, __u64 ep)
{
	if (c->epoch == ep)
		return 1;
	if (c->flags & SV_ACCEPTED) {
		c->epoch = ep;
		return 1;
	}
	struct config *cfg = bpf_get_local_storage(&config, 0);
	if (!cfg->gen || c->gen != cfg->gen)
		return 0;
	c->epoch = ep;
	return 1;
}

// same_dest tells whether a socket's remembered destination is this one.
static __always_inline int same_dest(struct sock_verdict *c, __u8 family, __u8 proto, const __u32 *addr, __u16 port_be)
{
	return c->port == port_be && c->addr[3] == addr[3] && c->addr[0] == addr[0] && c->addr[1] == addr[1] &&
	       c->addr[2] == addr[2] && c->family == family && c->proto == proto;
}

// remember notes what a socket was let through to, for the packet path and
// for the socket's next send to the same destination.
// (cookie: the socket's, for the counts of the flow it replaces; 0 unless
// the cgroup asks for flows)
static __always_inline void remember(const struct config *cfg, __u64 ep, struct bpf_sock *sk, __u8 family,
				     __u8 proto, const __u32 *addr, __u16 port_be, __u32 v, const struct sender *m,
				     __u64 cookie)
{
	__u8 dependent = m && m->program != NO_SENDER;
	if (!sk)
		return;
	struct sock_verdict *c =
		bpf_sk_storage_get(&sock_verdicts, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!c)
		return; // the packet path then judges the socket's packets itself
	if (c->gen == cfg->gen && same_dest(c, family, proto, addr, port_be) && c->verdict == v &&
	    c->dependent == dependent && (!dependent || same_ident(&c->who, &m->id))) {
		if (c->epoch != ep)
			c->epoch = ep;
		return; // the same as the last send: leave the cache line clean
	}
	if ((cfg->visibility & VIS_FLOWS) && c->gen == cfg->gen && c->packets)
		report_counts(cfg, c, HOOK_FLOW_COUNT, cookie, 0); // the flow it had before this one
	__sync_lock_test_and_set(&c->packets, 0);
	__sync_lock_test_and_set(&c->bytes, 0);
	c->report_at = bpf_ktime_get_coarse_ns() + FLOW_COUNT_INTERVAL_S * 1000000000ull;
	c->epoch = ep;
	c->gen = cfg->gen;
	c->flags = sv_flags(cfg);
	c->verdict = v;
	c->dependent = dependent;
	if (dependent) {
		c->who = m->id;
		c->cgroup = cfg->cgroup;
	}
	c->family = family;
	c->proto = proto;
	c->port = port_be;
	c->addr[0] = addr[0];
	c->addr[1] = addr[1];
	c->addr[2] = addr[2];
	c->addr[3] = addr[3];
}

// The flow last let through on this CPU by a verdict that needs nothing
// more (allow, whoever sends; no counts, no DNS query to note): the packet
// of a message the hook just judged, and the socket's next message, pass
// on it without the socket's storage, two cache lines often cold. Keyed by
// the socket's cookie (never reused) and good in one epoch only.
//
// A program may be interrupted on its CPU (a softirq's packet path, or a
// preempting task on a preemptible kernel) by another that reads or writes
// the entry: seq (odd while it is written) makes a read that overlapped a
// write a miss, and a write that would overlap another not happen, so no
// entry is ever a mix of two flows.
struct last_flow {
	__u64 seq;
	__u64 epoch;
	__u64 cookie;
	__u32 addr[4];
	__u16 port;
	__u8 family;
	__u8 proto;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct last_flow);
} last_flows SEC(".maps");

static __always_inline struct last_flow *last_flow(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&last_flows, &zero);
}

#define compiler_barrier() asm volatile("" ::: "memory")

// is_last tells whether a send is the flow last let through on this CPU.
static __always_inline int is_last(const struct last_flow *l, __u64 ep, __u64 cookie, __u8 family, __u8 proto,
				   const __u32 *addr, __u16 port_be, int l4)
{
	if (!l)
		return 0;
	__u64 seq = *(volatile const __u64 *)&l->seq;
	if (seq & 1)
		return 0;
	compiler_barrier();
	int hit = l->cookie == cookie && l->epoch == ep && (!l4 || l->port == port_be) && l->addr[3] == addr[3] &&
		  l->addr[0] == addr[0] && l->addr[1] == addr[1] && l->addr[2] == addr[2] && l->family == family &&
		  l->proto == proto;
	compiler_barrier();
	return hit && *(volatile const __u64 *)&l->seq == seq;
}

// note_last makes a flow the last let through, if its verdict needs
// nothing more to answer a send.
static __always_inline void note_last(struct last_flow *l, __u64 ep, __u64 cookie, __u32 v, __u8 dependent,
				      __u8 flags, __u8 family, __u8 proto, const __u32 *addr, __u16 port_be)
{
	if (!l || (v & VERDICT_ACTION_MASK) != ACTION_ALLOW || dependent || (flags & SV_FLOWS) ||
	    ((flags & SV_NAMES) && proto == IPPROTO_UDP && port_be == bpf_htons(53)))
		return;
	__u64 seq = *(volatile __u64 *)&l->seq;
	if (seq & 1)
		return; // this program interrupted a write of the entry
	*(volatile __u64 *)&l->seq = seq + 1;
	compiler_barrier();
	l->epoch = ep;
	l->cookie = cookie;
	l->port = port_be;
	l->family = family;
	l->proto = proto;
	__builtin_memcpy(l->addr, addr, 16);
	compiler_barrier();
	*(volatile __u64 *)&l->seq = seq + 2;
}

// The connections a policed cgroup's listeners answered (SYN-ACK), by
// 4-tuple, until their accepted socket's first packet: a TCP socket the
// hooks never judged is trusted as accepted only if it is one of these.
// Any other (connected before the policy was attached, or whose verdict
// could not be stored) is judged by its destination like any packet.
struct accept_key {
	__u32 local[4], remote[4];
	__u16 lport, rport;
	__u8 family;
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 2048);
	__type(key, struct accept_key);
	__type(value, __u8);
} accepting SEC(".maps");

// accept_key_of is a packet's connection, seen from this side.
static __always_inline void accept_key_of(struct accept_key *k, void *data, void *end, __u8 family, __u16 sport,
					  __u16 dport)
{
	k->family = family;
	k->lport = sport;
	k->rport = dport;
	if (family == AF_INET) {
		struct ip4_hdr *ip = data;
		if ((void *)(ip + 1) > end)
			return;
		k->local[3] = ip->saddr;
		k->remote[3] = ip->daddr;
	} else {
		struct ip6_hdr *ip6 = data;
		if ((void *)(ip6 + 1) > end)
			return;
		__builtin_memcpy(k->local, ip6->saddr, 16);
		__builtin_memcpy(k->remote, ip6->daddr, 16);
	}
}
