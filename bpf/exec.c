//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// nriguard exec control: which programs a container may run. One program
// for the whole host (exec hooks cannot be attached per cgroup on every
// kernel) judges the exec'ing process by the rules of its cgroup and of
// every policed ancestor, in exec_rules: keyed by cgroup id and the
// executed file's (device, inode) as resolved by user space.
//
// Two backends, loaded one at a time (see docs/design.md):
//  - ng_exec_lsm on lsm/bprm_check_security refuses the exec with EPERM;
//  - ng_exec_kill on tp_btf/sched_process_exec, where BPF LSM is not
//    available, kills the new program with SIGKILL before its first
//    instruction.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#define EPERM 1
#define SIGKILL 9
#define MAX_CGROUP_LEVEL 32

#include "nriguard.h"

// Only the fields nriguard reads; CO-RE relocates them against the kernel.
struct super_block {
	__u32 s_dev;
} __attribute__((preserve_access_index));

struct inode {
	unsigned long i_ino;
	struct super_block *i_sb;
} __attribute__((preserve_access_index));

// The inode's change time, as each kernel spells it: CO-RE picks the one
// the running kernel has (6.11+, 6.6-6.10, before).
struct timespec64 {
	__s64 tv_sec;
	long tv_nsec;
} __attribute__((preserve_access_index));

struct inode___v611 {
	__s64 i_ctime_sec;
	__u32 i_ctime_nsec;
} __attribute__((preserve_access_index));

struct inode___v66 {
	struct timespec64 __i_ctime;
} __attribute__((preserve_access_index));

struct inode___v51 {
	struct timespec64 i_ctime;
} __attribute__((preserve_access_index));

struct file {
	struct inode *f_inode;
} __attribute__((preserve_access_index));

struct linux_binprm {
	struct file *file;
	const char *filename;
	char buf[256];
} __attribute__((preserve_access_index));

struct cgroup {
	int level;
} __attribute__((preserve_access_index));

struct css_set {
	struct cgroup *dfl_cgrp;
} __attribute__((preserve_access_index));

struct task_struct {
	int tgid;
	struct task_struct *real_parent;
	struct css_set *cgroups;
} __attribute__((preserve_access_index));

struct file_key {
	__u64 ino;
	__u32 dev; // kernel encoding: major << 20 | minor
	__u32 pad;
};

// One table for the whole host: a container's rules are the entries with
// its cgroup's id. (Maps of maps, one per container, would cost a
// synchronize_rcu of ~10 ms per insert and delete in the bpf syscall.)
struct rule_key {
	__u64 cgroup;
	__u64 ino; // 0: not a file (below)
	__u32 dev;
	__u32 pad;
};

// A file's entry: its verdict, and its change time when the policy was
// attached. A key with ino 0 holds a cgroup's settings instead, in verdict:
// its default verdict and the index of its event ring (ng_verdict_bits).
struct rule_value {
	__s64 ctime_sec;
	__u32 ctime_nsec;
	__u32 verdict;
};

// Emitted whole into BTF (the map definitions only point at them).
const struct file_key unused_file_key __attribute__((used)) = {};
const struct rule_key unused_rule_key __attribute__((used)) = {};
const struct rule_value unused_rule_value __attribute__((used)) = {};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct rule_key);
	__type(value, struct rule_value);
	__uint(max_entries, EXEC_RULES_MAX);
} exec_rules SEC(".maps");

struct event_ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENT_RING_SIZE);
};

// The rings events go to, and beside each its lost counters, by the index a
// container's settings name: in practice one, the daemon's, registered once
// (see exec.go).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, MAX_RINGS);
	__array(values, struct event_ring);
} exec_rings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, MAX_RINGS);
	__array(values, struct lost_counters);
} exec_losts SEC(".maps");

// ctime reads an inode's change time, however this kernel lays it out.
static __always_inline void ctime(struct inode *ino, __s64 *sec, __u32 *nsec)
{
	if (bpf_core_field_exists(struct inode___v611, i_ctime_sec)) {
		struct inode___v611 *i = (void *)ino;
		*sec = BPF_CORE_READ(i, i_ctime_sec);
		// 6.13+ keeps a flag in the top bit (I_CTIME_QUERIED, multigrain
		// timestamps); nanoseconds never reach it
		*nsec = BPF_CORE_READ(i, i_ctime_nsec) & 0x7fffffff;
	} else if (bpf_core_field_exists(struct inode___v66, __i_ctime)) {
		struct inode___v66 *i = (void *)ino;
		*sec = BPF_CORE_READ(i, __i_ctime.tv_sec);
		*nsec = BPF_CORE_READ(i, __i_ctime.tv_nsec);
	} else {
		struct inode___v51 *i = (void *)ino;
		*sec = BPF_CORE_READ(i, i_ctime.tv_sec);
		*nsec = BPF_CORE_READ(i, i_ctime.tv_nsec);
	}
}

static __always_inline void report_exec(__u64 cgid, __u32 ring_idx, __u8 hook, __u32 verdict,
					struct linux_binprm *bprm, struct file_key *fk,
					struct task_struct *task)
{
	void *ring = bpf_map_lookup_elem(&exec_rings, &ring_idx);
	struct exec_event *e = ring ? bpf_ringbuf_reserve(ring, sizeof(*e), 0) : 0;
	if (!e) {
		void *lost = bpf_map_lookup_elem(&exec_losts, &ring_idx);
		if (lost)
			count_lost(lost, EV_KIND_EXEC);
		return;
	}
	fill_hdr(&e->h, cgid, EV_KIND_EXEC, hook, verdict);
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->dev = fk->dev;
	e->ino = fk->ino;
	bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), BPF_CORE_READ(bprm, filename));
	bpf_ringbuf_submit(e, 0);
}

// judge returns 0 to let the exec go on, 1 to refuse it, after reporting.
// Every policed cgroup from the process's own up to the root must allow it.
// A file whose change time is not the one its entry recorded (rewritten, or
// a new file with a freed inode number) is not the file the policy named: it
// gets the cgroup's default, unless its entry refuses it.
// It runs on every exec on the host while any container has exec rules:
// it walks only the levels the process's cgroup has, with one lookup for
// a level that is not policed and two for one that is.
//
// The loop only notes the innermost level that refuses (and the innermost
// that would, in audit mode); one event is reported after it. Reporting
// inside the loop made the verifier walk ~400,000 instructions (0.35 s at
// every load of this program).
static __always_inline int judge(struct linux_binprm *bprm, __u8 hook, struct task_struct *task)
{
	struct inode *ino = BPF_CORE_READ(bprm, file, f_inode);
	struct file_key fk = {
		.ino = BPF_CORE_READ(ino, i_ino),
		.dev = BPF_CORE_READ(ino, i_sb, s_dev),
	};
	__s64 csec;
	__u32 cnsec;
	ctime(ino, &csec, &cnsec);
	int depth = BPF_CORE_READ(task, cgroups, dfl_cgrp, level);
	__u64 deny_cgid = 0, audit_cgid = 0;
	__u32 deny_settings = 0, audit_settings = 0, deny_verdict = 0, audit_verdict = 0;
	for (int level = 1; level <= MAX_CGROUP_LEVEL; level++) {
		if (level > depth)
			break;
		struct rule_key k = { .cgroup = bpf_get_current_ancestor_cgroup_id(level) };
		struct rule_value *settings = bpf_map_lookup_elem(&exec_rules, &k);
		if (!settings)
			continue;
		__u32 s = settings->verdict, def = s & ((1 << SETTINGS_RING_SHIFT) - 1);
		k.ino = fk.ino;
		k.dev = fk.dev;
		struct rule_value *v = bpf_map_lookup_elem(&exec_rules, &k);
		__u32 verdict = def;
		if (v) {
			verdict = v->verdict;
			if ((v->ctime_sec != csec || v->ctime_nsec != cnsec) &&
			    (verdict & VERDICT_ACTION_MASK) == ACTION_ALLOW)
				verdict = def; // changed since: not the file it allows
		}
		__u32 action = verdict & VERDICT_ACTION_MASK;
		if (action == ACTION_ALLOW)
			continue;
		if (action == ACTION_WOULD_DENY) {
			audit_cgid = k.cgroup;
			audit_settings = s;
			audit_verdict = verdict;
		} else {
			deny_cgid = k.cgroup;
			deny_settings = s;
			deny_verdict = verdict;
		}
	}
	if (deny_cgid) {
		report_exec(deny_cgid, deny_settings >> SETTINGS_RING_SHIFT & SETTINGS_RING_MASK, hook,
			    deny_verdict, bprm, &fk, task);
		return 1;
	}
	if (audit_cgid)
		report_exec(audit_cgid, audit_settings >> SETTINGS_RING_SHIFT & SETTINGS_RING_MASK, hook,
			    audit_verdict, bprm, &fk, task);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(ng_exec_kill, struct task_struct *p, int old_pid, struct linux_binprm *bprm)
{
	// The new image is in place but has not run: SIGKILL is delivered on the
	// way back to user space, so not one of its instructions runs.
	if (judge(bprm, HOOK_EXEC_KILL, p))
		bpf_send_signal(SIGKILL);
	return 0;
}

SEC("lsm/bprm_check_security")
int BPF_PROG(ng_exec_lsm, struct linux_binprm *bprm, int ret)
{
	if (ret)
		return ret;
	// A #! script is judged at the next round, as its interpreter: the file
	// the kernel actually runs, as the SIGKILL backend sees it.
	if (bprm->buf[0] == '#' && bprm->buf[1] == '!')
		return 0;
	if (judge(bprm, HOOK_EXEC_LSM, bpf_get_current_task_btf()))
		return -EPERM;
	return 0;
}

char __license[] SEC("license") = "GPL";
