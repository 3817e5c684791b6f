// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Events shared by nriguard's programs: one record layout, one ring buffer,
// one counter of the records the ring buffer had no room for.
#pragma once

#define EV_DENIED 2
#define EV_WOULD_DENY 3

#define EV_KIND_FLOW 1

// Mirrored by bpf.Event in Go; keep the two in step.
struct event {
	__u64 ts_ns; // CLOCK_BOOTTIME
	__u64 cgroup_id; // the cgroup v2 the process is in
	__u32 pid; // tgid
	__u32 tid;
	__u32 uid;
	__u32 gid;
	__u8 comm[16];
	__u8 addr[16]; // 4 bytes for AF_INET
	__u16 port; // host order
	__u8 kind; // EV_KIND_*
	__u8 hook; // HOOK_* of the program
	__u8 verdict; // EV_DENIED or EV_WOULD_DENY
	__u8 family;
	__u8 proto;
	__u8 type; // socket type
};

// The loader may replace both with maps shared by all containers.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} lost_events SEC(".maps");

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&lost_events, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline void report_flow(__u8 hook, __u8 verdict, __u8 family, __u8 proto, __u8 type,
					const void *addr, __u16 port)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_lost(); // never silent: user space reports the count
		return;
	}
	__u64 id = bpf_get_current_pid_tgid(), ug = bpf_get_current_uid_gid();
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->uid = (__u32)ug;
	e->gid = ug >> 32;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (family == AF_INET6) {
		__builtin_memcpy(e->addr, addr, 16);
	} else {
		__builtin_memset(e->addr, 0, 16);
		__builtin_memcpy(e->addr, addr, 4);
	}
	e->port = port;
	e->kind = EV_KIND_FLOW;
	e->hook = hook;
	e->verdict = verdict;
	e->family = family;
	e->proto = proto;
	e->type = type;
	bpf_ringbuf_submit(e, 0);
}

// Emits struct event into BTF so that bpf2go can generate its Go mirror.
const struct event *const unused_event __attribute__((used)) = 0;
