// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// The tables of a policy (policy.Compiled): runs of addresses that share a
// class, runs of ports that share a verdict, and the binary searches that
// judge a destination with them.
#pragma once

// The tables (policy.Compiled): runs of addresses that share a class, and
// runs of ports that share a verdict, each array sorted by its start and
// padded to a power of two with copies of its last entry.
struct run4 {
	__u32 start; // the address as a number
	__u32 class;
};

struct run6 {
	__u64 hi, lo; // the address as a 128-bit number
	__u32 class;
	__u32 pad;
};

struct port_run {
	__u64 start; // class << PORT_CLASS_SHIFT | protocol (0 TCP, 1 UDP) << PORT_PROTO_SHIFT | port
	__u32 verdict; // action | layer << VERDICT_LAYER_SHIFT
	__u32 pad;
};

// The tables (policy.Compiled) of each container, by slot: runs of
// addresses that share a class, and runs of ports that share a verdict,
// each sorted by its start and padded to a power of two with copies of its
// last entry. Every table of one copy has the same capacity (the loader
// sets it: PoolTableCap, or a larger class), so that the verifier inlines
// their lookups.
// (clang writes types met only behind the inner maps' pointers as forward
// declarations: these make it write them whole)
const struct run4 *const unused_run4 __attribute__((used)) = 0;
const struct run6 *const unused_run6 __attribute__((used)) = 0;
const struct port_run *const unused_port_run __attribute__((used)) = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, 1);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_ARRAY);
		__type(key, __u32);
		__type(value, struct run4);
		__uint(max_entries, 1);
	});
} v4_tables SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, 1);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_ARRAY);
		__type(key, __u32);
		__type(value, struct run6);
		__uint(max_entries, 1);
	});
} v6_tables SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, 1);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_ARRAY);
		__type(key, __u32);
		__type(value, struct port_run);
		__uint(max_entries, 1);
	});
} port_tables SEC(".maps");

// NO_CLASS: the container's table is not there (a slot being set up or
// torn down): what is sought in it is denied.
#define NO_CLASS 0xffffffff

// A search of a table: the index of the last entry that starts at or before
// the key, in steps halvings of the table (bpf_loop: the verifier checks one
// step, not every path through all of them; the table's lookups are
// inlined). Its cost is the steps' alone: not where the prefixes lie, not
// which key is sought.
struct search {
	__u64 hi, lo; // the key (hi only for IPv6)
	void *table; // the container's table (an inner map)
	__u32 at, steps;
};

static long step4(__u64 i, struct search *s)
{
	__u32 probe = s->at + (1u << (s->steps - 1 - i));
	struct run4 *r = bpf_map_lookup_elem(s->table, &probe);
	if (r && r->start <= s->lo)
		s->at = probe;
	return 0;
}

static long step6(__u64 i, struct search *s)
{
	__u32 probe = s->at + (1u << (s->steps - 1 - i));
	struct run6 *r = bpf_map_lookup_elem(s->table, &probe);
	if (r && (r->hi < s->hi || (r->hi == s->hi && r->lo <= s->lo)))
		s->at = probe;
	return 0;
}

static long step_port(__u64 i, struct search *s)
{
	__u32 probe = s->at + (1u << (s->steps - 1 - i));
	struct port_run *r = bpf_map_lookup_elem(s->table, &probe);
	if (r && r->start <= s->lo)
		s->at = probe;
	return 0;
}


static __always_inline __u32 class4(const struct config *cfg, __u32 ip)
{
	struct search s = { .lo = bpf_ntohl(ip), .steps = cfg->v4_steps };
	__u32 slot = cfg->slot;
	s.table = bpf_map_lookup_elem(&v4_tables, &slot);
	if (!s.table)
		return NO_CLASS;
	bpf_loop(s.steps, step4, &s, 0);
	struct run4 *r = bpf_map_lookup_elem(s.table, &s.at);
	return r ? r->class : NO_CLASS;
}

static __always_inline __u32 class6(const struct config *cfg, const __u32 *ip)
{
	struct search s = {
		.hi = (__u64)bpf_ntohl(ip[0]) << 32 | bpf_ntohl(ip[1]),
		.lo = (__u64)bpf_ntohl(ip[2]) << 32 | bpf_ntohl(ip[3]),
		.steps = cfg->v6_steps,
	};
	__u32 slot = cfg->slot;
	s.table = bpf_map_lookup_elem(&v6_tables, &slot);
	if (!s.table)
		return NO_CLASS;
	bpf_loop(s.steps, step6, &s, 0);
	struct run6 *r = bpf_map_lookup_elem(s.table, &s.at);
	return r ? r->class : NO_CLASS;
}

// verdict finds the verdict of a class for a protocol and port. A protocol
// the tables do not have, a missing table, or a run of another class found
// (impossible with the compiler's tables), is denied: fail closed.
static __always_inline __u32 verdict(const struct config *cfg, __u32 class, __u32 proto, __u32 port_be)
{
	__u64 p;
	if (proto == IPPROTO_TCP)
		p = 0;
	else if (proto == IPPROTO_UDP)
		p = 1;
	else
		return cfg->socket_verdict; // what the tables cannot judge: as its socket (allow when observed)
	if (class == NO_CLASS)
		return ACTION_DENY;
	__u64 block = (__u64)class << PORT_CLASS_SHIFT | p << PORT_PROTO_SHIFT;
	struct search s = { .lo = block | bpf_ntohs((__u16)port_be), .steps = cfg->port_steps };
	__u32 slot = cfg->slot;
	s.table = bpf_map_lookup_elem(&port_tables, &slot);
	if (!s.table)
		return ACTION_DENY;
	bpf_loop(s.steps, step_port, &s, 0);
	struct port_run *r = bpf_map_lookup_elem(s.table, &s.at);
	if (!r || r->start < block)
		return ACTION_DENY;
	__u32 action = r->verdict & VERDICT_ACTION_MASK;
	if (action != ACTION_ALLOW && action != ACTION_WOULD_DENY)
		return (r->verdict & ~VERDICT_ACTION_MASK) | ACTION_DENY; // an empty table
	return r->verdict;
}
