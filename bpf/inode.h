// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// A file as the kernel runs it: the inode's number, its superblock's
// device and its change time, read with CO-RE from minimal definitions.
// The exec program judges the file being exec'd; the egress programs the
// file the flow's process runs (its mm's exe_file).
#pragma once

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


// ctime_direct is ctime for an inode reached by direct loads through BTF
// (a program that holds a task's BTF pointer): no helper call each.
static __always_inline void ctime_direct(struct inode *ino, __s64 *sec, __u32 *nsec)
{
	if (bpf_core_field_exists(struct inode___v611, i_ctime_sec)) {
		struct inode___v611 *i = (void *)ino;
		*sec = i->i_ctime_sec;
		*nsec = i->i_ctime_nsec & 0x7fffffff;
	} else if (bpf_core_field_exists(struct inode___v66, __i_ctime)) {
		struct inode___v66 *i = (void *)ino;
		*sec = i->__i_ctime.tv_sec;
		*nsec = i->__i_ctime.tv_nsec;
	} else {
		struct inode___v51 *i = (void *)ino;
		*sec = i->i_ctime.tv_sec;
		*nsec = i->i_ctime.tv_nsec;
	}
}
