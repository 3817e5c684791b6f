// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Who sends: the identity the qualifiers (exe=, uid=, gid=) are judged by,
// read from the current task.
#pragma once

// Who makes a flow: the process's real uid and gid and the file its memory
// was exec'd from (device, inode, change time; all 0 for a kernel thread).
struct ident {
	__u32 uid, gid;
	__u32 dev, nsec;
	__u64 ino;
	__s64 sec;
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
