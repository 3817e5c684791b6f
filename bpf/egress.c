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

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_HOPOPTS 0
#define IPPROTO_ROUTING 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_DSTOPTS 60
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

#include "nriguard.h"
#include "inode.h"

// The headers the packet path reads, typed so that their fields are read
// whole (a copy out of a __u8 pointer is byte by byte).
struct ip4_hdr {
	__u8 ver_ihl, tos;
	__u16 len, id, frag; // frag: flags and offset, network order
	__u8 ttl, proto;
	__u16 check;
	__u32 saddr, daddr;
};

struct ip6_hdr {
	__u32 ver_flow;
	__u16 len;
	__u8 next, hops;
	__u32 saddr[4], daddr[4];
};

struct l4_ports {
	__u16 src, dst; // network order
};

struct mm_struct {
	struct file *exe_file;
} __attribute__((preserve_access_index));

struct task_struct {
	struct mm_struct *mm;
} __attribute__((preserve_access_index));

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
	__u64 start; // class << 17 | protocol (0 TCP, 1 UDP) << 16 | port
	__u32 verdict; // action | layer << VERDICT_LAYER_SHIFT
	__u32 pad;
};

// The loader may replace both with maps shared by all containers.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENT_RING_SIZE);
} events SEC(".maps");

struct lost_counters lost_events SEC(".maps");

// One copy of these programs serves every container of a size class: the
// loader attaches the same programs to each container's cgroup, and what
// differs between containers is found from the cgroup they are attached to.
//
// config is per policed cgroup (cgroup storage, one value shared by all six
// programs on a cgroup): which slot of the table maps holds its tables,
// and how to read them. The loader replaces it whole (the kernel swaps the
// value under RCU), so a program sees one policy or the next, never a mix.
// All zero, as it is between the first attach and the loader's write:
// deny everything (gen 0 is never a policy's).
struct config {
	__u64 cgroup; // the policed cgroup's id: events name it
	__u32 gen; // changes whenever a cgroup's policy does: cached verdicts of an older one do not count
	__u32 slot; // index of its tables in v4_tables, v6_tables, port_tables, principal_tables
	__u32 socket_verdict; // for sockets the hooks cannot judge (below); names the layer
	__u8 v4_steps, v6_steps, port_steps; // each table holds 1 << steps entries
	__u8 id_steps; // uid runs: 1 << (id_steps & 0xf) entries; gid runs: 1 << (id_steps >> 4)
	// nonzero: exe= qualifiers name programs, so who makes a flow includes
	// the file it runs (three pointer loads a uid/gid-only policy skips)
	__u8 reads_exe;
	__u8 visibility; // ng_visibility: VIS_FLOWS reports allowed flows and their counts
	__u8 names; // nonzero: rules name DNS names; ng_skb_ingress learns from answers
	__u8 pad[1];
	// Where uid and gid qualifiers cut the ids: a run's index is its
	// class. Padded with 0xffffffff.
	__u32 uid_runs[MAX_ID_RUNS];
	__u32 gid_runs[MAX_ID_RUNS];
};

struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_STORAGE);
	__type(key, __u64); // a cgroup id: one value for all attach types
	__type(value, struct config);
} config SEC(".maps");

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

// Who makes a flow, for the classes whose verdicts depend on it (tables
// compiled from rules with exe=, uid=, gid=): the container's program
// classes by file, and the overrides of its dependent classes, by slot.
struct pkey {
	__u32 kind; // PKEY_*
	__u32 a; // PKEY_EXE: the file's device; PKEY_OVERRIDE: the address class
	__u64 b; // PKEY_EXE: its inode; PKEY_OVERRIDE: program << 40 | uid class << 20 | gid class
};

struct pval {
	__s64 sec; // PKEY_EXE: the file's change time when the policy was attached
	__u32 nsec;
	__u32 class; // PKEY_EXE: the program class; PKEY_OVERRIDE: the class whose port runs apply
};

const struct pkey *const unused_pkey __attribute__((used)) = 0;
const struct pval *const unused_pval __attribute__((used)) = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, 1);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_HASH);
		__uint(map_flags, BPF_F_NO_PREALLOC);
		__type(key, struct pkey);
		__type(value, struct pval);
		__uint(max_entries, PRINCIPALS_MAX);
	});
} principal_tables SEC(".maps");

// NO_CLASS: the container's table is not there (a slot being set up or
// torn down): what is sought in it is denied.
#define NO_CLASS 0xffffffff
#define CLASS_DEPENDENT (1u << CLASS_DEPENDENT_SHIFT)
// a maker not made: the flow's class did not depend on it
#define NO_MAKER 0xffffffff

// Who makes a flow: the process's real uid and gid and the file its memory
// was exec'd from (device, inode, change time; all 0 for a kernel thread).
struct ident {
	__u32 uid, gid;
	__u32 dev, nsec;
	__u64 ino;
	__s64 sec;
};

// A flow's maker: who it is, and once its class depended on it, its
// classes (program NO_MAKER until then).
struct maker {
	struct ident id;
	__u32 program, uid, gid;
};

// read_ident reads who the current process is, with direct loads through
// the task's BTF (no helper call each): it runs at every send whose verdict
// depends on the sender. The executable only if the policy names programs:
// its loads cost ~90 ns a send here (make bench, docs/benchmarks.md).
static __always_inline void read_ident(__u8 reads_exe, struct ident *id)
{
	__u64 ug = bpf_get_current_uid_gid();
	__builtin_memset(id, 0, sizeof(*id));
	id->uid = (__u32)ug;
	id->gid = ug >> 32;
	if (!reads_exe)
		return;
	struct task_struct *t = bpf_get_current_task_btf();
	struct mm_struct *mm = t->mm;
	if (!mm)
		return;
	struct file *f = mm->exe_file;
	if (!f)
		return;
	struct inode *ino = f->f_inode;
	if (!ino)
		return;
	id->dev = ino->i_sb->s_dev;
	id->ino = ino->i_ino;
	ctime_direct(ino, &id->sec, &id->nsec);
}

static __always_inline int same_ident(const struct ident *a, const struct ident *b)
{
	return a->uid == b->uid && a->gid == b->gid && a->ino == b->ino && a->dev == b->dev && a->sec == b->sec &&
	       a->nsec == b->nsec;
}

// id_class is the run of ids (uid_runs or gid_runs) id falls in.
static __always_inline __u32 id_class(const __u32 *runs, __u32 steps, __u32 id)
{
	__u32 at = 0;
#pragma unroll
	for (int i = 0; i < 5; i++) { // MAX_ID_RUNS = 1 << 5
		if (i < steps) {
			__u32 probe = at + (1u << (steps - 1 - i));
			if (runs[probe & (MAX_ID_RUNS - 1)] <= id)
				at = probe;
		}
	}
	return at;
}

// make_maker finds the current process's classes: of its real uid and gid,
// and of the file its memory was exec'd from, if that file is one the
// policy names and has not changed since the policy was attached (else
// class 0: a program no exe= names).
static __always_inline void make_maker(const struct config *cfg, void *principals, struct maker *m)
{
	read_ident(cfg->reads_exe, &m->id);
	m->uid = id_class(cfg->uid_runs, cfg->id_steps & 0xf, m->id.uid);
	m->gid = id_class(cfg->gid_runs, cfg->id_steps >> 4, m->id.gid);
	m->program = 0;
	if (!m->id.ino)
		return;
	struct pkey k = { .kind = PKEY_EXE, .a = m->id.dev, .b = m->id.ino };
	struct pval *v = bpf_map_lookup_elem(principals, &k);
	if (v && v->sec == m->id.sec && v->nsec == m->id.nsec)
		m->program = v->class;
}

// effective is the class whose port runs apply to a dependent address
// class for the current process (m: its classes, once made; a NULL m means
// the maker is not known: the class's own runs, for someone no qualifier
// names).
static __always_inline __u32 effective(const struct config *cfg, __u32 class, struct maker *m)
{
	if (!(class & CLASS_DEPENDENT) || class == NO_CLASS)
		return class;
	class &= ~CLASS_DEPENDENT;
	if (!m)
		return class;
	__u32 slot = cfg->slot;
	void *principals = bpf_map_lookup_elem(&principal_tables, &slot);
	if (!principals)
		return class;
	make_maker(cfg, principals, m);
	struct pkey k = { .kind = PKEY_OVERRIDE, .a = class, .b = (__u64)m->program << 40 | (__u64)m->uid << 20 | m->gid };
	struct pval *v = bpf_map_lookup_elem(principals, &k);
	return v ? v->class : class;
}

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

// What a remembered verdict needs of its config to answer a send alone.
enum sv_flags {
	SV_FLOWS = 1, // config.visibility has VIS_FLOWS
	SV_NAMES = 2, // config.names
	SV_READS_EXE = 4, // config.reads_exe
};

static __always_inline __u8 sv_flags(const struct config *cfg)
{
	return ((cfg->visibility & VIS_FLOWS) ? SV_FLOWS : 0) | (cfg->names ? SV_NAMES : 0) |
	       (cfg->reads_exe ? SV_READS_EXE : 0);
}

// What the hooks last let a socket send to: the packet path trusts a packet
// to that destination without a lookup.
struct sock_verdict {
	__u64 epoch; // the copy's epoch when it was judged (read before the config)
	__u32 gen; // config.gen when it was judged: whose flow its counts are
	__u32 addr[4]; // IPv4 in addr[3]
	__u16 port; // network order
	__u8 family;
	__u8 proto;
	__u32 verdict; // allow, or would-deny
	// the verdict depended on who sent (a qualified rule): it answers only
	// a send by the same who (another process of the socket, or the same
	// after a change of user or exec, is judged as itself)
	__u8 dependent;
	__u8 flags; // sv_flags, of the config it was judged under
	__u8 pad[2];
	struct ident who;
	// visibility: what the socket sent to this destination since the last
	// record of its counts, and when the next is due (coarse monotonic ns)
	__u64 packets, bytes, report_at;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_verdict);
} sock_verdicts SEC(".maps");

static __always_inline void report_flow(const struct config *cfg, __u8 hook, __u32 verdict, __u8 family,
					__u8 proto, __u8 type, const void *addr, __u16 port, __u64 cookie)
{
	struct flow_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_lost(&lost_events, EV_KIND_FLOW); // never silent: user space reports it
		return;
	}
	fill_hdr(&e->h, cfg->cgroup, EV_KIND_FLOW, hook, verdict);
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
	e->reason = REASON_NONE;
	e->name = verdict >> VERDICT_NAME_SHIFT;
	struct task_struct *t = (void *)bpf_get_current_task();
	struct inode *ino = BPF_CORE_READ(t, mm, exe_file, f_inode);
	e->exe_dev = ino ? BPF_CORE_READ(ino, i_sb, s_dev) : 0;
	e->pad2 = 0;
	e->exe_ino = ino ? BPF_CORE_READ(ino, i_ino) : 0;
	e->cookie = cookie;
	e->packets = 0;
	e->bytes = 0;
	bpf_ringbuf_submit(e, 0);
}

// report_counts reports what a socket sent to the destination it was last
// judged for since the previous such record, and starts counting again. It
// may run where the sender is not current (a softirq): the record names
// the socket (its cookie), which the flow's first record names too.
static __always_inline void report_counts(const struct config *cfg, struct sock_verdict *c, __u8 hook,
					  __u64 cookie, __u64 cgroup_id)
{
	// taken whole (atomic exchange): of CPUs reporting at once, one gets
	// the counts, the others nothing
	__u64 packets = __sync_lock_test_and_set(&c->packets, 0), bytes = __sync_lock_test_and_set(&c->bytes, 0);
	c->report_at = bpf_ktime_get_coarse_ns() + FLOW_COUNT_INTERVAL_S * 1000000000ull;
	if (!packets && hook != HOOK_SOCK_RELEASE)
		return; // another CPU reported them
	struct flow_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_lost(&lost_events, EV_KIND_FLOW);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->h.ts_ns = bpf_ktime_get_boot_ns();
	e->h.cgroup_id = cgroup_id;
	e->h.policy_cgroup = cfg->cgroup;
	e->h.kind = EV_KIND_FLOW;
	e->h.hook = hook;
	e->h.action = c->verdict & VERDICT_ACTION_MASK; // allow, or in audit mode would-deny
	e->h.layer = (c->verdict >> VERDICT_LAYER_SHIFT) & VERDICT_LAYER_MASK;
	e->name = c->verdict >> VERDICT_NAME_SHIFT;
	if (c->family == AF_INET6)
		__builtin_memcpy(e->addr, c->addr, 16);
	else
		__builtin_memcpy(e->addr, &c->addr[3], 4);
	e->port = bpf_ntohs(c->port);
	e->family = c->family;
	e->proto = c->proto;
	e->cookie = cookie;
	e->packets = packets;
	e->bytes = bytes;
	bpf_ringbuf_submit(e, 0);
}

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
	__u64 block = (__u64)class << 17 | p << 16;
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

// lookup4 and lookup6 judge a destination for the process m stands for
// (NULL: unknown, judged as someone no qualifier names).
static __always_inline __u32 lookup4(const struct config *cfg, __u32 ip, __u32 proto, __u32 port_be, struct maker *m)
{
	__u32 v = verdict(cfg, effective(cfg, class4(cfg, ip), m), proto, port_be);
	if (v & VERDICT_NAMEABLE) {
		__u32 a[4] = { 0, 0, 0, ip };
		v = named(cfg, AF_INET, a, proto, port_be, v);
	}
	return v;
}

static __always_inline __u32 lookup6(const struct config *cfg, const __u32 *ip, __u32 proto, __u32 port_be,
				     struct maker *m)
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

// holds tells whether a socket's remembered verdict still holds: judged in
// this epoch, or (another cgroup's config changed since) under the config
// its cgroup still has, which brings it into this epoch.
static __always_inline int holds(struct sock_verdict *c, __u64 ep)
{
	if (c->epoch == ep)
		return 1;
	struct config *cfg = bpf_get_local_storage(&config, 0);
	if (!cfg->gen || c->gen != cfg->gen)
		return 0;
	c->epoch = ep;
	return 1;
}

// same tells whether a socket's remembered destination is this one.
static __always_inline int same(struct sock_verdict *c, __u8 family, __u8 proto, const __u32 *addr, __u16 port_be)
{
	return c->port == port_be && c->addr[3] == addr[3] && c->addr[0] == addr[0] && c->addr[1] == addr[1] &&
	       c->addr[2] == addr[2] && c->family == family && c->proto == proto;
}

// remember notes what a socket was let through to, for the packet path and
// for the socket's next send to the same destination.
// (cookie: the socket's, for the counts of the flow it replaces; 0 unless
// the cgroup asks for flows)
static __always_inline void remember(const struct config *cfg, __u64 ep, struct bpf_sock *sk, __u8 family,
				     __u8 proto, const __u32 *addr, __u16 port_be, __u32 v, const struct maker *m,
				     __u64 cookie)
{
	__u8 dependent = m && m->program != NO_MAKER;
	if (!sk)
		return;
	struct sock_verdict *c =
		bpf_sk_storage_get(&sock_verdicts, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!c)
		return; // the packet path then judges the socket's packets itself
	if (c->gen == cfg->gen && same(c, family, proto, addr, port_be) && c->verdict == v &&
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
	if (dependent)
		c->who = m->id;
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
	if (c && same(c, family, proto, addr, port_be) && holds(c, ep)) {
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
	struct maker m = { .program = NO_MAKER };
	__u32 v = family == AF_INET ? lookup4(cfg, addr[3], proto, port_be, &m) : lookup6(cfg, addr, proto, port_be, &m);
	__u32 action = v & VERDICT_ACTION_MASK;
	// refusals are reported; with visibility, so is a new flow allowed
	if (action != ACTION_ALLOW || (cfg->visibility & VIS_FLOWS))
		report_flow(cfg, hook, v, family, proto, type, family == AF_INET ? &addr[3] : addr,
			    bpf_ntohs((__u16)port_be), cookie);
	if (action == ACTION_DENY)
		return 0;
	remember(cfg, ep, sk, family, proto, addr, port_be, v, &m, (cfg->visibility & VIS_FLOWS) ? cookie : 0);
	note_last(l, ep, cookie, v, m.program != NO_MAKER, sv_flags(cfg), family, proto, addr, port_be);
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

// report_packet reports what the packet path stopped (or, in audit mode,
// let through). A packet may leave from a softirq or a timer, not from its
// sender, and a cgroup_skb program may not ask about the current task on
// every kernel (6.1 refuses bpf_get_current_pid_tgid there): the process is
// not named (pid 0), the user is the socket's owner, the cgroup the
// socket's.
static __always_inline void report_packet(const struct config *cfg, struct __sk_buff *skb, __u8 hook, __u32 v,
					  __u8 family, __u8 proto, const __u32 *addr, __u16 port_be, __u8 reason)
{
	struct flow_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_lost(&lost_events, EV_KIND_FLOW);
		return;
	}
	__builtin_memset(&e->h, 0, sizeof(e->h));
	e->h.ts_ns = bpf_ktime_get_boot_ns();
	e->h.cgroup_id = bpf_skb_cgroup_id(skb);
	e->h.policy_cgroup = cfg->cgroup;
	e->h.uid = bpf_get_socket_uid(skb);
	e->h.kind = EV_KIND_FLOW;
	e->h.hook = hook;
	e->h.action = v & VERDICT_ACTION_MASK;
	e->h.layer = (v >> VERDICT_LAYER_SHIFT) & VERDICT_LAYER_MASK;
	__builtin_memset(e->addr, 0, 16);
	if (family == AF_INET6)
		__builtin_memcpy(e->addr, addr, 16);
	else
		__builtin_memcpy(e->addr, &addr[3], 4);
	e->port = bpf_ntohs(port_be);
	e->family = family;
	e->proto = proto;
	e->type = 0;
	e->reason = reason;
	e->name = 0;
	e->exe_dev = 0;
	e->pad2 = 0;
	e->exe_ino = 0;
	e->cookie = bpf_get_socket_cookie(skb);
	e->packets = 0;
	e->bytes = 0;
	bpf_ringbuf_submit(e, 0);
}

// stop_packet reports a packet and, unless a policy in audit mode let it
// through, drops it.
static __always_inline int stop_packet(const struct config *cfg, struct __sk_buff *skb, __u32 v, __u8 family,
				       __u8 proto, const __u32 *addr, __u16 port_be, __u8 reason)
{
	if ((v & VERDICT_ACTION_MASK) == ACTION_ALLOW)
		return 1; // a container observed, not policed
	report_packet(cfg, skb, HOOK_SKB_EGRESS, v, family, proto, addr, port_be, reason);
	return (v & VERDICT_ACTION_MASK) == ACTION_WOULD_DENY;
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

#define MAX_EXT_HEADERS 6

// The backstop. Every packet a policed cgroup's sockets send passes here:
//  - one that carries IPv4 options or an IPv6 routing header, which send it
//    elsewhere than its destination address, is refused outright;
//  - one to the destination the hooks judged for its socket passes on the
//    socket's cached verdict;
//  - any other is judged here by its real destination (TCP sockets the
//    hooks never judged are accepted ones: they answer whoever connected).
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
		    c->addr[2] == addr[2] && (!l4 || c->port == port) && holds(c, ep)) {
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
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 1; // a request or time-wait socket: an answer to a connection that came in
	if (!c && sk->protocol == IPPROTO_TCP)
		return 1; // accepted, not connected: it answers its peer
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

#include "dns.h"

char __license[] SEC("license") = "Dual BSD/GPL";
