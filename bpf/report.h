// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Reporting: the event ring (and the counters of records that found no
// room in it), and the records the programs write to it.
#pragma once

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
