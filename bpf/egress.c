//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// nriguard egress datapath for one container:
//  - cgroup sock_addr hooks judge every connect and every unconnected send
//    against the container's own tables, and refuse with EPERM;
//  - a sock_create hook refuses the sockets those hooks cannot judge;
//  - a cgroup_skb egress program is the backstop: it judges where each
//    packet really goes, for the few ways a packet can go elsewhere than
//    the address the hooks judged (rerouting IP options and routing headers,
//    which it refuses; unspecified destinations the kernel turns into a
//    local one). A per-socket cache of what the hooks judged makes an
//    established flow cost it one lookup.
// The tables are built in Go (policy.Compile); see docs/design.md.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#include "nriguard.h" // what the programs and the Go side agree on
#include "inode.h" // a file's identity, in every kernel's layout
#include "packet.h" // headers, protocol numbers
#include "ring.h" // the event ring
#include "config.h" // a policed cgroup's config
#include "tables.h" // the policy's tables and their searches
#include "sender.h" // who sends
#include "principals.h" // the sender's classes
#include "verdicts.h" // what a socket was let through to
#include "cache.h" // the socket cache
#include "report.h" // the records the programs write
#include "dns.h" // rules by DNS name

// lookup4 and lookup6 judge a destination for the process m stands for
// (NULL: unknown, judged as someone no qualifier names).
static __always_inline __u32 lookup4(const struct config *cfg, __u32 ip, __u32 proto, __u32 port_be, struct sender *m)
{
	__u32 v = verdict(cfg, effective(cfg, class4(cfg, ip), m), proto, port_be);
	if (v & VERDICT_NAMEABLE) {
		__u32 a[4] = { 0, 0, 0, ip };
		v = named(cfg, AF_INET, a, proto, port_be, v);
	}
	return v;
}

static __always_inline __u32 lookup6(const struct config *cfg, const __u32 *ip, __u32 proto, __u32 port_be,
				     struct sender *m)
{
	__u32 v = verdict(cfg, effective(cfg, class6(cfg, ip), m), proto, port_be);
	if (v & VERDICT_NAMEABLE)
		v = named(cfg, AF_INET6, ip, proto, port_be, v);
	return v;
}

static __always_inline int passes(__u32 v)
{
	return (v & VERDICT_ACTION_MASK) != ACTION_DENY;
}

// decide judges a destination and turns the verdict into the hook's return
// value: denials are reported, and what passes is remembered. A socket that
// sends to the destination it last sent to (a connected flow, a client
// talking to one server) is answered from its own storage, whatever the
// size of the policy, and without reading the config while the epoch holds.
static __always_inline int decide(struct bpf_sock_addr *ctx, struct bpf_sock *sk, __u32 proto, __u32 type,
				  __u8 hook, __u8 family, const __u32 *addr, __u32 port_be)
{
	__u64 ep = current_epoch(); // before the config: a config read after is as new as it
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct last_flow *l = last_flow();
	if (is_last(l, ep, cookie, family, proto, addr, port_be, 1))
		return 1;
	struct sock_verdict *c = sk ? bpf_sk_storage_get(&sock_verdicts, sk, 0, 0) : 0;
	if (c && same_dest(c, family, proto, addr, port_be) && verdict_holds(c, ep)) {
		int hit = !c->dependent;
		if (!hit) { // a verdict about its sender: this send's must be the same who
			struct ident id;
			read_ident(c->flags & SV_READS_EXE, &id);
			hit = same_ident(&c->who, &id);
		}
		if (hit) {
			if ((c->verdict & VERDICT_ACTION_MASK) == ACTION_WOULD_DENY)
				report_flow(bpf_get_local_storage(&config, 0), hook, c->verdict, family, proto, type,
					    family == AF_INET ? &addr[3] : addr, bpf_ntohs((__u16)port_be), cookie);
			note_last(l, ep, cookie, c->verdict, c->dependent, c->flags, family, proto, addr, port_be);
			return 1;
		}
	}
	struct config *cfg = bpf_get_local_storage(&config, 0);
	if (!cfg->gen)
		return 0; // no policy written yet: deny
	struct sender m = { .program = NO_SENDER };
	__u32 v = family == AF_INET ? lookup4(cfg, addr[3], proto, port_be, &m) : lookup6(cfg, addr, proto, port_be, &m);
	__u32 action = v & VERDICT_ACTION_MASK;
	// refusals are reported; with visibility, so is a new flow allowed
	if (action != ACTION_ALLOW || (cfg->visibility & VIS_FLOWS))
		report_flow(cfg, hook, v, family, proto, type, family == AF_INET ? &addr[3] : addr,
			    bpf_ntohs((__u16)port_be), cookie);
	if (action == ACTION_DENY)
		return 0;
	remember(cfg, ep, sk, family, proto, addr, port_be, v, &m, (cfg->visibility & VIS_FLOWS) ? cookie : 0);
	note_last(l, ep, cookie, v, m.program != NO_SENDER, sv_flags(cfg), family, proto, addr, port_be);
	return 1;
}

// The kernel sends to 0.0.0.0 (also as ::ffff:0.0.0.0) at the source
// address the message or the socket has, or at 127.0.0.1 if none: judge
// that, not the unspecified address.
static __always_inline __u32 real_ip4(struct bpf_sock_addr *ctx, struct bpf_sock *sk, __u32 ip, __u8 hook)
{
	if (ip)
		return ip;
	if (hook == HOOK_SENDMSG4 && ctx->msg_src_ip4)
		return ctx->msg_src_ip4;
	if (hook == HOOK_SENDMSG6 && ctx->msg_src_ip6[3] && ctx->msg_src_ip6[2] == bpf_htonl(0xffff))
		return ctx->msg_src_ip6[3];
	if (sk && sk->src_ip4)
		return sk->src_ip4;
	return bpf_htonl(0x7f000001);
}

static __always_inline int judge4(struct bpf_sock_addr *ctx, __u8 hook)
{
	struct bpf_sock *sk = ctx->sk;
	__u32 addr[4] = {}, port = ctx->user_port, proto = ctx->protocol, type = ctx->type;
	addr[3] = real_ip4(ctx, sk, ctx->user_ip4, hook);
	return decide(ctx, sk, proto, type, hook, AF_INET, addr, port);
}

static __always_inline int judge6(struct bpf_sock_addr *ctx, __u8 hook)
{
	struct bpf_sock *sk = ctx->sk;
	__u32 ip[4], port = ctx->user_port, proto = ctx->protocol, type = ctx->type;
	ip[0] = ctx->user_ip6[0];
	ip[1] = ctx->user_ip6[1];
	ip[2] = ctx->user_ip6[2];
	ip[3] = ctx->user_ip6[3];
	// ::ffff:a.b.c.d reaches IPv4 hosts through an IPv6 socket: judge it by
	// the IPv4 rules, or it would slip past them.
	if (ip[0] == 0 && ip[1] == 0 && ip[2] == bpf_htonl(0xffff)) {
		__u32 addr[4] = {};
		addr[3] = real_ip4(ctx, sk, ip[3], hook);
		return decide(ctx, sk, proto, type, hook, AF_INET, addr, port);
	}
	// :: is ::1 to the kernel (TCP and UDP alike)
	if ((ip[0] | ip[1] | ip[2] | ip[3]) == 0)
		ip[3] = bpf_htonl(1);
	return decide(ctx, sk, proto, type, hook, AF_INET6, ip, port);
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
	__u32 type = sk->type, proto = sk->protocol, family = sk->family;
	struct config *cfg = bpf_get_local_storage(&config, 0);
	if (!cfg->gen)
		return 0;
	if ((type == SOCK_STREAM && proto == IPPROTO_TCP) || (type == SOCK_DGRAM && proto == IPPROTO_UDP))
		return 1;
	__u8 none[16] = {};
	__u32 v = cfg->socket_verdict;
	if ((v & VERDICT_ACTION_MASK) == ACTION_ALLOW)
		return 1; // a container observed, not policed
	report_flow(cfg, HOOK_SOCK_CREATE, v, family, proto, type, none, 0, bpf_get_socket_cookie(sk));
	return (v & VERDICT_ACTION_MASK) == ACTION_WOULD_DENY;
}

#define MAX_EXT_HEADERS 6

// The backstop. Every packet a policed cgroup's sockets send passes here:
//  - one that carries IPv4 options or an IPv6 routing header, which send it
//    elsewhere than its destination address, is refused outright;
//  - one to the destination the hooks judged for its socket passes on the
//    socket's cached verdict;
//  - any other is judged here by its real destination; a TCP socket the
//    hooks never judged passes only if it was accepted (its connection's
//    SYN-ACK left from a listener here): it answers whoever connected.
SEC("cgroup_skb/egress")
int ng_skb_egress(struct __sk_buff *skb)
{
	__u64 ep = current_epoch(); // before the config, as decide reads them
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	__u32 addr[4] = {};
	__u8 family, proto;
	__u32 l4off = 20; // where it starts
	int l4 = 0; // the TCP/UDP header is in this packet
	int rerouted = 0; // IP options, a routing header, or more extension headers than anyone sends
	struct l4_ports ports = {};
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct ip4_hdr *ip = data;
		if ((void *)(ip + 1) > end)
			return 1; // not an IP header we can read: nothing to judge
		family = AF_INET;
		proto = ip->proto;
		addr[3] = ip->daddr;
		if ((ip->ver_ihl & 0xf) != 5) {
			rerouted = 1; // options
		} else if (!(ip->frag & bpf_htons(0x1fff))) { // fragment offset 0: the L4 header follows
			struct l4_ports *p = (void *)(ip + 1);
			if ((void *)(p + 1) <= end) {
				ports = *p;
				l4 = 1;
			} else if (!bpf_skb_load_bytes(skb, 20, &ports, 4)) { // not in the linear part
				l4 = 1;
			}
		}
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ip6_hdr *ip6 = data;
		if ((void *)(ip6 + 1) > end)
			return 1;
		family = AF_INET6;
		__builtin_memcpy(addr, ip6->daddr, 16);
		__u8 next = ip6->next;
		__u32 off = 40;
		int first = 1;
#pragma unroll
		for (int i = 0; i < MAX_EXT_HEADERS; i++) {
			if (next != IPPROTO_HOPOPTS && next != IPPROTO_DSTOPTS && next != IPPROTO_FRAGMENT)
				break;
			__u8 ext[4];
			if (bpf_skb_load_bytes(skb, off, ext, sizeof(ext)))
				return 1;
			if (next == IPPROTO_FRAGMENT) {
				if (((ext[2] << 8 | ext[3]) & 0xfff8) != 0)
					first = 0; // not the first fragment: no L4 header
				off += 8;
			} else {
				off += (ext[1] + 1) * 8;
			}
			next = ext[0];
		}
		proto = next;
		l4off = off;
		if (next == IPPROTO_HOPOPTS || next == IPPROTO_DSTOPTS || next == IPPROTO_FRAGMENT ||
		    next == IPPROTO_ROUTING) {
			rerouted = 1;
		} else if (first && (proto == IPPROTO_TCP || proto == IPPROTO_UDP)) {
			struct l4_ports *p = (void *)(ip6 + 1);
			if (off == 40 && (void *)(p + 1) <= end) { // no extension header: read in place
				ports = *p;
				l4 = 1;
			} else if (!bpf_skb_load_bytes(skb, off, &ports, 4)) {
				l4 = 1;
			}
		}
	} else {
		return 1;
	}
	__u16 sport = ports.src, port = ports.dst;
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		l4 = 0;
	struct bpf_sock *sk = skb->sk;
	struct sock_verdict *c = 0;
	__u64 cookie = 0;
	if (!rerouted) {
		if (l4 && proto == IPPROTO_UDP && sport == bpf_htons(53))
			note_answer(family, addr, port); // a DNS server in a policed container
		if (!sk)
			return 1;
		cookie = bpf_get_socket_cookie(skb);
		struct last_flow *l = last_flow();
		if (is_last(l, ep, cookie, family, proto, addr, port, l4))
			return 1; // the message its hook just judged, or the flow's next packet
		// (the helper finds nothing on a request or time-wait socket)
		c = bpf_sk_storage_get(&sock_verdicts, sk, 0, 0);
		if (c && c->family == family && c->addr[3] == addr[3] && c->addr[0] == addr[0] && c->addr[1] == addr[1] &&
		    c->addr[2] == addr[2] && (!l4 || c->port == port) && verdict_holds(c, ep)) {
			if (c->flags & SV_FLOWS) { // the flow's counts: a write to a line just read
				__sync_fetch_and_add(&c->packets, 1);
				__sync_fetch_and_add(&c->bytes, skb->len);
				if (bpf_ktime_get_coarse_ns() >= c->report_at)
					report_counts(bpf_get_local_storage(&config, 0), c, HOOK_FLOW_COUNT, cookie,
						      bpf_skb_cgroup_id(skb));
			}
			if ((c->flags & SV_NAMES) && l4 && proto == IPPROTO_UDP && port == bpf_htons(53))
				note_query(skb, sk, family, addr, l4off);
			if (l4)
				note_last(l, ep, cookie, c->verdict, c->dependent, c->flags, family, proto, addr, port);
			return 1; // what the hooks judged (or, in audit mode, reported)
		}
	}
	struct config *cfg = bpf_get_local_storage(&config, 0);
	if (!cfg->gen)
		return 0; // no policy written yet: deny
	if (rerouted) // sent elsewhere than its destination address
		return stop_packet(cfg, skb, cfg->socket_verdict, family, proto, addr, 0, REASON_ROUTING_OPTION);
	if (!sk)
		return 1;
	// (the kernel runs this program for full sockets only: a SYN-ACK is its
	// listener's, a time-wait socket's answers never get here)
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 1;
	if (sk->protocol == IPPROTO_TCP && l4 && (!c || sk->state == BPF_TCP_LISTEN)) {
		struct accept_key k = {};
		accept_key_of(&k, data, end, family, sport, port);
		if (sk->state == BPF_TCP_LISTEN) { // a SYN-ACK: note the connection it answers
			__u8 one = 1;
			bpf_map_update_elem(&accepting, &k, &one, BPF_ANY);
			return 1;
		}
		if (bpf_map_lookup_elem(&accepting, &k)) {
			// accepted: it answers its peer, from now on without a look here
			c = bpf_sk_storage_get(&sock_verdicts, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
			if (c) {
				c->epoch = ep;
				c->gen = cfg->gen;
				c->flags = SV_ACCEPTED;
				c->verdict = ACTION_ALLOW;
				c->family = family;
				c->proto = proto;
				c->port = port;
				__builtin_memcpy(c->addr, addr, 16);
			}
			bpf_map_delete_elem(&accepting, &k);
			return 1;
		}
		// never judged, and not accepted: judged below by its destination
	}
	if (!l4) // no port to judge it by: as a socket the hooks cannot judge
		return stop_packet(cfg, skb, cfg->socket_verdict, family, proto, addr, port, REASON_DESTINATION);
	// no process here to judge: a dependent class answers for someone no
	// qualifier names
	__u32 v = family == AF_INET ? lookup4(cfg, addr[3], proto, port, 0) : lookup6(cfg, addr, proto, port, 0);
	if (!passes(v))
		return stop_packet(cfg, skb, v, family, proto, addr, port, REASON_DESTINATION);
	if ((v & VERDICT_ACTION_MASK) == ACTION_WOULD_DENY)
		report_packet(cfg, skb, HOOK_SKB_EGRESS, v, family, proto, addr, port, REASON_DESTINATION);
	remember(cfg, ep, sk, family, proto, addr, port, v, 0, cfg->visibility & VIS_FLOWS ? cookie : 0);
	if (cfg->names && proto == IPPROTO_UDP && port == bpf_htons(53))
		note_query(skb, sk, family, addr, l4off);
	return 1;
}

// A socket's end: the last counts of the flow it was judged for, when the
// cgroup's policy asks for flows.
SEC("cgroup/sock_release")
int ng_sock_release(struct bpf_sock *sk)
{
	struct config *cfg = bpf_get_local_storage(&config, 0);
	if (!(cfg->visibility & VIS_FLOWS))
		return 1;
	struct sock_verdict *c = bpf_sk_storage_get(&sock_verdicts, sk, 0, 0);
	if (c && c->gen == cfg->gen)
		report_counts(cfg, c, HOOK_SOCK_RELEASE, bpf_get_socket_cookie(sk), 0);
	return 1;
}

// Answers to a policed cgroup's DNS queries: attached only to cgroups whose
// policy names DNS names (dns.h).
SEC("cgroup_skb/ingress")
int ng_skb_ingress(struct __sk_buff *skb)
{
	return learn_from(skb);
}

char __license[] SEC("license") = "Dual BSD/GPL";
