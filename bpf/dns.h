// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Rules by DNS name: their maps, the lookup of learned addresses, the
// packet path's notes, and learning the addresses from answers (the Go
// reference is package dnsanswer, docs/design.md "DNS names").
//
// ng_skb_ingress runs on every packet a policed cgroup's sockets receive,
// before the socket can read it: an answer's addresses are in the
// cgroup's table before the program that asked sees them, so its first
// connect is judged with them. An answer teaches only if
//  - it comes from UDP port 53 of a resolver the policy names (dns_resolvers),
//    without IP options, and not to where a DNS server in a policed
//    container sent answers (the packet path notes them);
//  - the receiving socket sent a query with its id to that address (the
//    packet path noted it), which the answer takes off;
//  - it is a standard answer to one question of class IN and type A or
//    AAAA, whose name (letters, digits, '-' and '_') is one the policy allows,
//    or one label more than a wildcard's, compared in lower case;
// and then teaches the A and AAAA records among its first DNS_MAX_RECORDS
// answer records (never the host's own or special addresses: learnable). Answers that fail the first checks, truncated ones, and
// connections to a DNS server over TCP (which teach nothing) are reported;
// every packet passes: this is not an ingress policy.
#pragma once

// Rules by DNS name (docs/design.md, "DNS names"). The names a policy
// allows, in wire form and lower case (a wildcard's: the name after "*.",
// wild set), by cgroup and policy generation: each with the class whose
// port runs say where its addresses may be reached, and its index in the
// policy's names (events name it).
struct name_key {
	__u64 cgroup;
	__u32 gen;
	__u8 wild;
	__u8 len;
	__u8 pad[2];
	// zero past len; room for a label's copy past DNS_MAX_NAME
	__u8 name[DNS_MAX_NAME + 66];
};

struct name_val {
	__u32 class;
	__u32 index;
	// the kernel's: how many addresses the name was given (numbering
	// them in its ring, dns_rings), and how many live ones it let go
	// because it had DNS_NAME_CAP
	__u64 next;
	__u64 evicted;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct name_key);
	__type(value, struct name_val);
	__uint(max_entries, DNS_NAMES_MAX);
} dns_names SEC(".maps");

// The addresses learned from trusted answers to questions a policy's names
// match, by cgroup and generation: for which names, until when.
struct learned_key {
	__u64 cgroup;
	__u32 gen;
	__u32 family;
	__u32 addr[4]; // IPv4 in addr[3]
};

struct learned_slot {
	__u64 expires; // coarse monotonic ns; 0: empty
	__u32 class;
	__u32 index;
	__u32 seq; // its number among the name's addresses (name_val.next)
	__u32 pad;
};

struct learned_val {
	struct learned_slot s[DNS_SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct learned_key);
	__type(value, struct learned_val);
	__uint(max_entries, DNS_LEARNED_MAX);
} dns_learned SEC(".maps");

// The resolvers a cgroup's policy names (policy.Compiled.Resolvers), by
// cgroup and generation: only their answers teach.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct learned_key);
	__type(value, __u8);
	__uint(max_entries, DNS_NAMES_MAX);
} dns_resolvers SEC(".maps");

// Each name's last DNS_NAME_CAP addresses, by their number modulo the cap:
// a name's new address takes the place of its oldest, which stops
// answering for it.
struct ring_key {
	__u64 cgroup;
	__u32 gen;
	__u32 index; // the name's
	__u32 slot;
	__u32 pad;
};

struct ring_val {
	struct learned_key k;
	__u32 seq;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ring_key);
	__type(value, struct ring_val);
	__uint(max_entries, DNS_LEARNED_MAX);
} dns_rings SEC(".maps");

// named judges a flow the tables refuse only by the default of the layer
// with names (VERDICT_NAMEABLE): a name an unexpired learning of the
// address stands for, whose port runs allow the flow, lets it pass.
static __always_inline __u32 named(const struct config *cfg, __u32 family, const __u32 *addr, __u32 proto,
				   __u32 port_be, __u32 v)
{
	v &= ~VERDICT_NAMEABLE;
	struct learned_key k = { .cgroup = cfg->cgroup, .gen = cfg->gen, .family = family };
	__builtin_memcpy(k.addr, addr, 16);
	struct learned_val *l = bpf_map_lookup_elem(&dns_learned, &k);
	if (!l)
		return v;
	__u64 now = bpf_ktime_get_coarse_ns();
#pragma unroll
	for (int i = 0; i < DNS_SLOTS; i++) {
		if (l->s[i].expires <= now)
			continue;
		__u32 w = verdict(cfg, l->s[i].class, proto, port_be);
		if ((w & VERDICT_ACTION_MASK) == ACTION_ALLOW)
			return ACTION_ALLOW | (l->s[i].index + 1) << VERDICT_NAME_SHIFT;
	}
	return v;
}

// The DNS queries a socket awaits answers to: sent to which address, with
// which id (the packet path notes them; ng_skb_ingress takes each answer
// off). Only sockets that ask have this storage.
struct dns_query {
	__u32 addr[4];
	__u16 id;
	__u8 family;
	__u8 used;
};

struct sock_queries {
	struct dns_query q[DNS_QUERIES];
	__u32 next;
	__u32 pad;
	__u64 reported; // when an unsolicited answer to it was last reported
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_queries);
} sock_queries SEC(".maps");

// note_query notes a DNS query a socket sends (UDP to port 53), over the
// oldest of the queries it awaits.
static __always_inline void note_query(struct __sk_buff *skb, struct bpf_sock *sk, __u8 family, const __u32 *addr,
				       __u32 l4off)
{
	__u16 id;
	if (bpf_skb_load_bytes(skb, l4off + 8, &id, 2))
		return; // no DNS header: nothing to answer
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return;
	struct sock_queries *q = bpf_sk_storage_get(&sock_queries, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!q)
		return; // its answer will teach nothing, and be reported
	__u32 i = q->next++ & (DNS_QUERIES - 1);
	__builtin_memcpy(q->q[i].addr, addr, 16);
	q->q[i].id = id;
	q->q[i].family = family;
	q->q[i].used = 1;
}

// Where policed containers' DNS servers send answers (from UDP port 53):
// an answer to such an address and port teaches nothing, whatever the
// policy trusts (ng_skb_ingress). Not by id: one datagram may carry many
// answers (UDP_SEGMENT), and one answer may reach many sockets (broadcast).
struct own_answer {
	__u32 family;
	__u16 port; // the answer's destination port
	__u16 pad;
	__u32 addr[4]; // its destination
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct own_answer);
	__type(value, __u8);
	__uint(max_entries, DNS_OWN_ANSWERS);
} own_answers SEC(".maps");

static __always_inline void note_answer(__u8 family, const __u32 *addr, __u16 port)
{
	struct own_answer k = { .family = family, .port = port };
	__builtin_memcpy(k.addr, addr, 16);
	__u8 one = 1;
	bpf_map_update_elem(&own_answers, &k, &one, BPF_ANY);
}

struct dns_hdr {
	__u16 id, flags, qdcount, ancount, nscount, arcount;
};

// Per CPU (the program runs in softirq: one at a time on a CPU): the
// question's name as a key for dns_names, and the wildcard's (the name
// after its first label).
struct dns_scratch {
	struct name_key exact, wild;
	struct learned_val zero; // never written: a new address's first value
	struct ring_val ring;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct dns_scratch);
	__uint(max_entries, 1);
} dns_scratch SEC(".maps");

struct question {
	struct __sk_buff *skb;
	struct name_key *k;
	__u32 off; // the next label's length byte
	__u32 first; // the first label's length
	int done; // 1: read to the final zero; -1: refused
};

// copy_label copies one label of the question into its key, in lower case.
static long copy_label(__u64 i, struct question *q)
{
	__u8 n;
	if (bpf_skb_load_bytes(q->skb, q->off, &n, 1))
		goto bad;
	if (n == 0) {
		q->off++;
		q->done = 1;
		return 1;
	}
	if (n < 1 || n > 63) // a pointer, or a label type no one uses
		goto bad;
	__u32 pos = q->k->len;
	if (pos + 1 + n > DNS_MAX_NAME)
		goto bad;
	pos &= 0xff; // (the verifier's bound: the buffer has room for n more)
	__u8 *dst = &q->k->name[pos];
	dst[0] = n;
	// (written so that the verifier sees a length of 1 to 64)
	if (bpf_skb_load_bytes(q->skb, q->off + 1, dst + 1, ((n - 1) & 63) + 1))
		goto bad;
	for (int j = 1; j <= 63; j++) { // lower case; what no rule's name has refused
		if (j > n)
			break;
		__u8 c = dst[j];
		if (c >= 'A' && c <= 'Z')
			dst[j] = c + ('a' - 'A');
		else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
			goto bad;
	}
	if (i == 0)
		q->first = n;
	q->k->len = pos + 1 + n;
	q->off += 1 + n;
	return 0;
bad:
	q->done = -1;
	return 1;
}

struct records {
	struct __sk_buff *skb;
	const struct config *cfg;
	struct dns_scratch *s;
	struct name_val *names[2]; // the exact name's, the wildcard's
	__u32 off, end;
	__u64 now;
};

// learn_slot records that an address stands for a name until expires: in
// the name's slot, else an empty or expired one, else the one that expires
// soonest. It returns the slot, plus DNS_SLOTS if the name is new there.
static __always_inline int learn_slot(struct learned_val *l, const struct name_val *n, __u64 expires, __u64 now)
{
	int soonest = 0;
#pragma unroll
	for (int i = 0; i < DNS_SLOTS; i++) {
		if (l->s[i].expires > now && l->s[i].index == n->index && l->s[i].class == n->class) {
			if (l->s[i].expires < expires)
				l->s[i].expires = expires;
			return i;
		}
	}
#pragma unroll
	for (int i = 0; i < DNS_SLOTS; i++) {
		if (l->s[i].expires < l->s[soonest].expires)
			soonest = i;
	}
	soonest &= DNS_SLOTS - 1;
	l->s[soonest].class = n->class;
	l->s[soonest].index = n->index;
	l->s[soonest].expires = expires;
	return soonest + DNS_SLOTS;
}

// next_seq numbers a name's new address (a compare-and-swap: the programs
// are built for BPF v1, where an atomic add returns nothing).
static __always_inline __u32 next_seq(struct name_val *n)
{
	__u64 seq = n->next;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u64 was = __sync_val_compare_and_swap(&n->next, seq, seq + 1);
		if (was == seq)
			break;
		seq = was; // another CPU took it (four at once: two may share one)
	}
	return seq;
}

// cap_name gives a name's new address (its seq-th) the place in the name's
// ring of the address DNS_NAME_CAP before it, which stops answering for the
// name (counted) and, answering for no name, leaves the table.
static __always_inline void cap_name(struct records *r, struct name_val *n, const struct learned_key *k, __u32 seq,
				     __u64 now)
{
	struct ring_key rk = { .cgroup = k->cgroup, .gen = k->gen, .index = n->index, .slot = seq & (DNS_NAME_CAP - 1) };
	struct ring_val *old = bpf_map_lookup_elem(&dns_rings, &rk);
	if (old) {
		struct learned_val *ol = bpf_map_lookup_elem(&dns_learned, &old->k);
		if (ol) {
			int live = 0, gone = 0;
#pragma unroll
			for (int i = 0; i < DNS_SLOTS; i++) {
				if (ol->s[i].index == n->index && ol->s[i].seq == old->seq && ol->s[i].expires) {
					gone = ol->s[i].expires > now;
					ol->s[i].expires = 0;
				}
				live |= ol->s[i].expires > now;
			}
			if (gone)
				__sync_fetch_and_add(&n->evicted, 1);
			if (!live)
				bpf_map_delete_elem(&dns_learned, &old->k);
		}
	}
	r->s->ring.k = *k;
	r->s->ring.seq = seq;
	bpf_map_update_elem(&dns_rings, &rk, &r->s->ring, BPF_ANY);
}

static __always_inline void learn(struct records *r, __u32 family, const __u32 *addr, __u32 ttl)
{
	struct learned_key k = { .cgroup = r->cfg->cgroup, .gen = r->cfg->gen, .family = family };
	__builtin_memcpy(k.addr, addr, 16);
	if (ttl > DNS_MAX_TTL_S)
		ttl = DNS_MAX_TTL_S;
	__u64 expires = r->now + (__u64)(ttl + DNS_GRACE_S) * 1000000000ull;
	struct learned_val *l = bpf_map_lookup_elem(&dns_learned, &k);
	if (!l) {
		bpf_map_update_elem(&dns_learned, &k, &r->s->zero, BPF_NOEXIST);
		l = bpf_map_lookup_elem(&dns_learned, &k);
		if (!l)
			return; // the table is full: the name's addresses stay refused
	}
#pragma unroll
	for (int i = 0; i < 2; i++) {
		struct name_val *n = r->names[i];
		if (!n)
			continue;
		int at = learn_slot(l, n, expires, r->now);
		if (at >= DNS_SLOTS) { // new for the name: numbered, and held to its cap
			__u32 seq = next_seq(n);
			l->s[at & (DNS_SLOTS - 1)].seq = seq;
			cap_name(r, n, &k, seq, r->now);
		}
	}
}

// learnable tells whether an answer's address may be learned: never the
// host's own (loopback, unspecified), link-local (the cloud's metadata
// service), multicast, broadcast or reserved ones, nor IPv4 written as IPv6:
// a name's rule is no way to open those (an address rule is).
static __always_inline int learnable(__u32 family, const __u32 *a)
{
	if (family == AF_INET) {
		__u32 ip = bpf_ntohl(a[3]);
		__u8 first = ip >> 24;
		return first != 0 && first != 127 && first < 224 && (ip >> 16) != 0xa9fe; // 169.254/16
	}
	__u32 w0 = bpf_ntohl(a[0]);
	if ((w0 >> 24) == 0xff || (w0 >> 22) == (0xfe80 >> 6))
		return 0; // multicast, link-local
	return a[0] || a[1] || (a[2] && a[2] != bpf_htonl(0xffff)); // not ::/96 (::, ::1, ...), not mapped
}

struct rr {
	__u16 type, class;
	__u32 ttl;
	__u16 rdlen;
} __attribute__((packed));

// read_record reads one answer record and learns the address it gives.
static long read_record(__u64 i, struct records *r)
{
	int end = 0;
	for (int j = 0; j <= DNS_MAX_LABELS; j++) { // the owner name
		__u8 n;
		if (bpf_skb_load_bytes(r->skb, r->off, &n, 1))
			return 1;
		if (n == 0) {
			r->off += 1;
			end = 1;
			break;
		}
		if ((n & 0xc0) == 0xc0) {
			r->off += 2;
			end = 1;
			break;
		}
		if (n & 0xc0)
			return 1;
		r->off += 1 + n;
	}
	struct rr rr;
	if (!end || bpf_skb_load_bytes(r->skb, r->off, &rr, sizeof(rr)))
		return 1;
	r->off += sizeof(rr);
	__u32 rdlen = bpf_ntohs(rr.rdlen);
	if (r->off + rdlen > r->end)
		return 1;
	if (rr.class == bpf_htons(1)) {
		__u32 addr[4] = {};
		if (rr.type == bpf_htons(1) && rdlen == 4) {
			if (!bpf_skb_load_bytes(r->skb, r->off, &addr[3], 4) && learnable(AF_INET, addr))
				learn(r, AF_INET, addr, bpf_ntohl(rr.ttl));
		} else if (rr.type == bpf_htons(28) && rdlen == 16) {
			if (!bpf_skb_load_bytes(r->skb, r->off, addr, 16) && learnable(AF_INET6, addr))
				learn(r, AF_INET6, addr, bpf_ntohl(rr.ttl));
		}
	}
	r->off += rdlen;
	return 0;
}

// answer_from reports an answer that teaches nothing.
static __always_inline void answer_from(const struct config *cfg, struct __sk_buff *skb, __u8 family,
					const __u32 *src, __u8 reason)
{
	__u8 proto = reason == REASON_DNS_TCP ? IPPROTO_TCP : IPPROTO_UDP;
	report_packet(cfg, skb, HOOK_SKB_INGRESS, ACTION_ALLOW, family, proto, src, bpf_htons(53), reason);
}

// learn_from reads a packet a policed cgroup's socket receives: an
// answer that teaches is learned from, one that does not is reported.
static __always_inline int learn_from(struct __sk_buff *skb)
{
	struct config *cfg = bpf_get_local_storage(&config, 0);
	if (!cfg->names)
		return 1;
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	__u32 src[4] = {}, dst[4] = {}, off;
	__u8 family, proto;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct ip4_hdr *ip = data; // (egress.c's typed headers)
		// (options: not read, and an answer with them teaches nothing; a
		// fragmented datagram arrives here whole)
		if ((void *)(ip + 1) > end || (ip->ver_ihl & 0xf) != 5)
			return 1;
		family = AF_INET;
		proto = ip->proto;
		src[3] = ip->saddr;
		dst[3] = ip->daddr;
		off = 20;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ip6_hdr *ip6 = data;
		if ((void *)(ip6 + 1) > end)
			return 1;
		family = AF_INET6;
		proto = ip6->next; // (extension headers: not read)
		__builtin_memcpy(src, ip6->saddr, 16);
		__builtin_memcpy(dst, ip6->daddr, 16);
		off = 40;
	} else {
		return 1;
	}
	if (proto != IPPROTO_UDP && proto != IPPROTO_TCP)
		return 1;
	__u16 ports[2];
	if (bpf_skb_load_bytes(skb, off, ports, 4) || ports[0] != bpf_htons(53))
		return 1;
	if (proto == IPPROTO_TCP) { // DNS over TCP teaches nothing: said once a connection (its SYN-ACK)
		__u8 flags;
		if (!bpf_skb_load_bytes(skb, off + 13, &flags, 1) && (flags & 0x12) == 0x12)
			answer_from(cfg, skb, family, src, REASON_DNS_TCP);
		return 1;
	}
	off += 8;
	struct dns_hdr h;
	if (bpf_skb_load_bytes(skb, off, &h, sizeof(h)))
		return 1;
	if ((bpf_ntohs(h.flags) & 0xf800) != 0x8000)
		return 1; // not a standard answer
	struct bpf_sock *sk = skb->sk;
	if (sk)
		sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 1;

	// the socket asked that address that question
	struct sock_queries *q = bpf_sk_storage_get(&sock_queries, sk, 0, 0);
	int asked = 0;
	if (q) {
#pragma unroll
		for (int i = 0; i < DNS_QUERIES; i++) {
			struct dns_query *d = &q->q[i];
			if (d->used && d->id == h.id && d->family == family && d->addr[3] == src[3] && d->addr[0] == src[0] &&
			    d->addr[1] == src[1] && d->addr[2] == src[2]) {
				d->used = 0; // one answer per query
				asked = 1;
				break;
			}
		}
	}
	if (!asked) {
		// reported to a socket that asks, once a second at most: anyone can
		// send one of these, and the ring is every container's
		__u64 now = bpf_ktime_get_coarse_ns();
		if (q && now - q->reported >= 1000000000ull) {
			q->reported = now;
			answer_from(cfg, skb, family, src, REASON_DNS_UNSOLICITED);
		}
		return 1;
	}
	// not from a DNS server a policed container runs
	struct own_answer own = { .family = family, .port = ports[1] };
	__builtin_memcpy(own.addr, dst, 16);
	if (bpf_map_lookup_elem(&own_answers, &own)) {
		answer_from(cfg, skb, family, src, REASON_DNS_OWN);
		return 1;
	}
	// from a resolver the policy names
	struct learned_key rk = { .cgroup = cfg->cgroup, .gen = cfg->gen, .family = family };
	__builtin_memcpy(rk.addr, src, 16);
	if (!bpf_map_lookup_elem(&dns_resolvers, &rk)) {
		answer_from(cfg, skb, family, src, REASON_DNS_RESOLVER);
		return 1;
	}
	if (bpf_ntohs(h.flags) & 0x0200) {
		answer_from(cfg, skb, family, src, REASON_DNS_TRUNCATED);
		return 1;
	}
	if (h.qdcount != bpf_htons(1))
		return 1;

	// the question, as keys of dns_names
	__u32 zero = 0;
	struct dns_scratch *s = bpf_map_lookup_elem(&dns_scratch, &zero);
	if (!s)
		return 1;
	__builtin_memset(&s->exact, 0, sizeof(s->exact));
	struct question qn = { .skb = skb, .k = &s->exact, .off = off + sizeof(h) };
	bpf_loop(DNS_MAX_NAME / 2 + 1, copy_label, &qn, 0);
	if (qn.done != 1 || s->exact.len == 0)
		return 1;
	__u16 qtc[2];
	if (bpf_skb_load_bytes(skb, qn.off, qtc, 4) || qtc[1] != bpf_htons(1) ||
	    (qtc[0] != bpf_htons(1) && qtc[0] != bpf_htons(28)))
		return 1;
	s->exact.cgroup = cfg->cgroup;
	s->exact.gen = cfg->gen;
	struct records r = { .skb = skb, .cfg = cfg, .s = s, .off = qn.off + 4, .end = skb->len, .now = bpf_ktime_get_coarse_ns() };
	r.names[0] = bpf_map_lookup_elem(&dns_names, &s->exact);
	__u32 rest = (s->exact.len - (qn.first + 1)) & 0xff; // (the verifier's bound)
	if (qn.first + 1 < s->exact.len) {
		__builtin_memset(&s->wild, 0, sizeof(s->wild));
		s->wild.cgroup = cfg->cgroup;
		s->wild.gen = cfg->gen;
		s->wild.wild = 1;
		s->wild.len = rest;
		__u32 from = (qn.first + 1) & 0x7f;
		if (bpf_probe_read_kernel(s->wild.name, rest, &s->exact.name[from]) == 0)
			r.names[1] = bpf_map_lookup_elem(&dns_names, &s->wild);
	}
	if (!r.names[0] && !r.names[1])
		return 1; // a name no rule gives
	bpf_loop(bpf_ntohs(h.ancount) < DNS_MAX_RECORDS ? bpf_ntohs(h.ancount) : DNS_MAX_RECORDS, read_record, &r, 0);
	return 1;
}
