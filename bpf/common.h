// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Event records shared by nriguard's programs. Every record starts with the
// same header, so user space can tell a record's kind before decoding it.
#pragma once

#define EV_DENIED 2
#define EV_WOULD_DENY 3

#define EV_KIND_FLOW 1
#define EV_KIND_EXEC 2

// Ring buffers are all this size: one that is an inner map of exec_rings
// must match the template's size.
#define EVENT_RING_SIZE (1 << 20)

// Mirrored by bpf.Event in Go; keep the two in step.
struct event_hdr {
	__u64 ts_ns; // CLOCK_BOOTTIME
	__u64 cgroup_id; // the cgroup v2 the process is in
	__u64 policy_cgroup; // the policed cgroup whose policy decided: the container's
	__u32 pid; // tgid
	__u32 tid;
	__u32 uid;
	__u32 gid;
	__u8 comm[16];
	__u8 kind; // EV_KIND_*
	__u8 hook; // HOOK_* of the program
	__u8 verdict; // EV_DENIED or EV_WOULD_DENY
	__u8 pad[5];
};

struct flow_event {
	struct event_hdr h;
	__u8 addr[16]; // 4 bytes for AF_INET
	__u16 port; // host order
	__u8 family;
	__u8 proto;
	__u8 type; // socket type
	__u8 pad[3];
};

struct exec_event {
	struct event_hdr h;
	__u32 ppid;
	__u32 dev; // kernel encoding: major << 20 | minor
	__u64 ino;
	char filename[256]; // as passed to execve
};

static __always_inline void fill_hdr(struct event_hdr *h, __u64 policy_cgroup, __u8 kind, __u8 hook,
				     __u8 verdict)
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
	h->verdict = verdict;
	__builtin_memset(h->pad, 0, sizeof(h->pad));
}

// Emit the record types into BTF so that bpf2go generates their Go mirrors.
const struct flow_event *const unused_flow_event __attribute__((used)) = 0;
const struct exec_event *const unused_exec_event __attribute__((used)) = 0;
const struct event_hdr *const unused_event_hdr __attribute__((used)) = 0;
