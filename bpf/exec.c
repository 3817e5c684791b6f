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
#define FMODE_WRITE 0x2

#include "nriguard.h"
#include "inode.h"

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
	__u32 cell; // 0: the file's entry; 1..: its cells (uid=, gid= rules)
};

// One table for the whole host: a container's rules are the entries with
// its cgroup's id. (Maps of maps, one per container, would cost a
// synchronize_rcu of ~10 ms per insert and delete in the bpf syscall.)
struct rule_key {
	__u64 cgroup;
	__u64 ino; // 0: not a file (below)
	__u32 dev;
	__u32 cell; // 0: the file's entry; 1..: its cells
};

// A file's entry: its verdict, its change time when the policy was
// attached, and in verdict's top bits (VERDICT_CELLS_SHIFT) how many cells
// it has. A cell is the verdict for the processes whose real uid and gid
// fall in its ranges (uid=, gid= rules): the first that holds decides. A
// key with ino 0 holds a cgroup's settings instead, in verdict: its default
// verdict and the index of its event ring (ng_verdict_bits).
struct rule_value {
	__s64 ctime_sec;
	__u32 ctime_nsec;
	__u32 verdict;
	__u32 uid_lo, uid_hi, gid_lo, gid_hi; // a cell's
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

// A search of a file's cells (bpf_loop: one lookup a step).
struct cell_search {
	struct rule_key k;
	__u32 uid, gid, verdict, n;
};

static long cell_step(__u64 i, struct cell_search *c)
{
	if (i >= c->n)
		return 1;
	c->k.cell = i + 1;
	struct rule_value *v = bpf_map_lookup_elem(&exec_rules, &c->k);
	if (v && v->uid_lo <= c->uid && c->uid <= v->uid_hi && v->gid_lo <= c->gid && c->gid <= v->gid_hi) {
		c->verdict = v->verdict;
		return 1;
	}
	return 0;
}

// The walk of the process's cgroup levels: what it found so far.
struct level_walk {
	struct file_key fk;
	__s64 csec;
	__u32 cnsec;
	__u32 depth;
	__u32 uid, gid;
	__u64 deny_cgid, audit_cgid, seen_cgid;
	__u32 deny_settings, audit_settings, deny_verdict, audit_verdict, seen_settings, seen_verdict;
};

// level_step judges the exec by one cgroup level's policy, if it has one:
// one lookup for a level that is not policed, two for one that is (more
// for a file with cells). It notes the innermost level that refuses, and
// the innermost that would, in audit mode.
static long level_step(__u64 i, struct level_walk *w)
{
	int level = i + 1;
	if (level > w->depth)
		return 1;
	struct rule_key k = { .cgroup = bpf_get_current_ancestor_cgroup_id(level) };
	struct rule_value *settings = bpf_map_lookup_elem(&exec_rules, &k);
	if (!settings)
		return 0;
	__u32 s = settings->verdict, def = s & ((1 << SETTINGS_RING_SHIFT) - 1);
	k.ino = w->fk.ino;
	k.dev = w->fk.dev;
	struct rule_value *v = bpf_map_lookup_elem(&exec_rules, &k);
	__u32 verdict = def;
	if (v) {
		__u32 cells = v->verdict >> VERDICT_CELLS_SHIFT;
		verdict = v->verdict & ((1u << VERDICT_CELLS_SHIFT) - 1);
		if ((v->ctime_sec != w->csec || v->ctime_nsec != w->cnsec) &&
		    (verdict & VERDICT_ACTION_MASK) == ACTION_ALLOW) {
			verdict = def; // changed since: not the file it allows
		} else if (cells) {
			struct cell_search c = { .k = k, .uid = w->uid, .gid = w->gid, .verdict = verdict, .n = cells };
			bpf_loop(MAX_CELLS, cell_step, &c, 0);
			verdict = c.verdict;
			if ((v->ctime_sec != w->csec || v->ctime_nsec != w->cnsec) &&
			    (verdict & VERDICT_ACTION_MASK) == ACTION_ALLOW)
				verdict = def;
		}
	}
	__u32 action = verdict & VERDICT_ACTION_MASK;
	if (s >> SETTINGS_VIS_EXECS_SHIFT) { // the innermost level that asks to see every exec
		w->seen_cgid = k.cgroup;
		w->seen_settings = s;
		w->seen_verdict = verdict;
	}
	if (action == ACTION_WOULD_DENY) {
		w->audit_cgid = k.cgroup;
		w->audit_settings = s;
		w->audit_verdict = verdict;
	} else if (action != ACTION_ALLOW) {
		w->deny_cgid = k.cgroup;
		w->deny_settings = s;
		w->deny_verdict = verdict;
	}
	return 0;
}

// judge returns 0 to let the exec go on, 1 to refuse it, after reporting.
// Every policed cgroup from the process's own up to the root must allow it.
// A file whose change time is not the one its entry recorded (rewritten, or
// a new file with a freed inode number) is not the file the policy named: it
// gets the cgroup's default, unless its entry refuses it. A file named by
// uid= or gid= rules has cells: the first whose ranges hold the process's
// real uid and gid decides.
// It runs on every exec on the host while any container has exec rules.
// The levels are walked with bpf_loop (the verifier checks one level, not
// each of 32), and one event is reported after the walk: reporting inside
// the loop made the verifier walk ~400,000 instructions.
static __always_inline int judge(struct linux_binprm *bprm, __u8 hook, struct task_struct *task)
{
	struct inode *ino = BPF_CORE_READ(bprm, file, f_inode);
	__u64 ug = bpf_get_current_uid_gid();
	struct level_walk w = {
		.fk = { .ino = BPF_CORE_READ(ino, i_ino), .dev = BPF_CORE_READ(ino, i_sb, s_dev) },
		.depth = BPF_CORE_READ(task, cgroups, dfl_cgrp, level),
		.uid = (__u32)ug,
		.gid = ug >> 32,
	};
	ctime(ino, &w.csec, &w.cnsec);
	bpf_loop(MAX_CGROUP_LEVEL, level_step, &w, 0);
	if (w.deny_cgid) {
		report_exec(w.deny_cgid, w.deny_settings >> SETTINGS_RING_SHIFT & SETTINGS_RING_MASK, hook,
			    w.deny_verdict, bprm, &w.fk, task);
		return 1;
	}
	if (w.audit_cgid)
		report_exec(w.audit_cgid, w.audit_settings >> SETTINGS_RING_SHIFT & SETTINGS_RING_MASK, hook,
			    w.audit_verdict, bprm, &w.fk, task);
	else if (w.seen_cgid) // visibility: an allowed exec
		report_exec(w.seen_cgid, w.seen_settings >> SETTINGS_RING_SHIFT & SETTINGS_RING_MASK, hook,
			    w.seen_verdict, bprm, &w.fk, task);
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

// The write guard (BPF LSM only): a process of a policed cgroup may not
// open for writing, or truncate, a file a policy of its cgroup (or of a
// policed ancestor) allows it to run. Every write path to a file's content
// needs a file opened for writing (write, pwrite, writable shared mappings,
// copy_file_range, splice, sendfile, fallocate, io_uring) or a truncate by
// path, whatever name it is reached by (a hard link is the same inode): so
// on this backend an allowed program stays the program its rule named,
// also where its change time would not show a write (a memory filesystem,
// coarse timestamps).

struct path {
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct qstr {
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct dentry {
	struct inode *d_inode;
	struct qstr d_name;
} __attribute__((preserve_access_index));

struct file___guard {
	struct inode *f_inode;
	unsigned int f_mode;
	struct path f_path;
} __attribute__((preserve_access_index));

// The walk of the writer's cgroup levels for a policy that allows the file.
struct guard_walk {
	struct file_key fk;
	__u32 depth;
	__u64 cgid; // the innermost level that allows it
	__u32 settings;
};

static long guard_step(__u64 i, struct guard_walk *w)
{
	int level = i + 1;
	if (level > w->depth)
		return 1;
	struct rule_key k = { .cgroup = bpf_get_current_ancestor_cgroup_id(level) };
	struct rule_value *settings = bpf_map_lookup_elem(&exec_rules, &k);
	if (!settings)
		return 0;
	k.ino = w->fk.ino;
	k.dev = w->fk.dev;
	struct rule_value *v = bpf_map_lookup_elem(&exec_rules, &k);
	// allowed to someone: its own verdict, or one of its cells (uid=, gid=)
	if (v && ((v->verdict & VERDICT_ACTION_MASK) == ACTION_ALLOW || (v->verdict >> VERDICT_CELLS_SHIFT))) {
		w->cgid = k.cgroup;
		w->settings = settings->verdict;
	}
	return 0;
}

// guarded refuses, and reports, a write to inode by the current process if
// a policy of its cgroup allows the file to run. The event names the file
// by its path where the hook allows bpf_d_path (file_open), else (the
// kernel refuses it in path_truncate) by its own name, from dentry.
static __always_inline int guarded(struct inode *inode, struct path *path, struct dentry *dentry)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct guard_walk w = {
		.fk = { .ino = inode->i_ino, .dev = inode->i_sb->s_dev },
		.depth = task->cgroups->dfl_cgrp->level,
	};
	if (!w.fk.ino)
		return 0;
	bpf_loop(MAX_CGROUP_LEVEL, guard_step, &w, 0);
	if (!w.cgid)
		return 0;
	__u32 ring_idx = w.settings >> SETTINGS_RING_SHIFT & SETTINGS_RING_MASK;
	void *ring = bpf_map_lookup_elem(&exec_rings, &ring_idx);
	struct exec_event *e = ring ? bpf_ringbuf_reserve(ring, sizeof(*e), 0) : 0;
	if (!e) {
		void *lost = bpf_map_lookup_elem(&exec_losts, &ring_idx);
		if (lost)
			count_lost(lost, EV_KIND_EXEC);
		return -EPERM;
	}
	fill_hdr(&e->h, w.cgid, EV_KIND_EXEC, HOOK_WRITE_LSM, ACTION_DENY | (LAYER_NONE << VERDICT_LAYER_SHIFT));
	e->ppid = task->real_parent->tgid;
	e->dev = w.fk.dev;
	e->ino = w.fk.ino;
	e->filename[0] = 0;
	if (path)
		bpf_d_path(path, e->filename, sizeof(e->filename));
	else
		bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), dentry->d_name.name);
	bpf_ringbuf_submit(e, 0);
	return -EPERM;
}

SEC("lsm/file_open")
int BPF_PROG(ng_guard_open, struct file *file, int ret)
{
	struct file___guard *f = (void *)file;
	if (ret || !(f->f_mode & FMODE_WRITE))
		return ret;
	return guarded(f->f_inode, &f->f_path, 0);
}

SEC("lsm/path_truncate")
int BPF_PROG(ng_guard_truncate, const struct path *path, int ret)
{
	if (ret)
		return ret;
	return guarded(path->dentry->d_inode, 0, path->dentry);
}

char __license[] SEC("license") = "GPL";
