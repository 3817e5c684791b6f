// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Who makes a flow (exe=, uid=, gid= qualifiers): the sender's identity,
// its classes, and the class whose port runs apply to it.
#pragma once

// Who makes a flow, for the classes whose verdicts depend on it (tables
// compiled from rules with exe=, uid=, gid=): the container's program
// classes by file, and the overrides of its dependent classes, by slot.
struct pkey {
	__u32 kind; // PKEY_*
	__u32 a; // PKEY_EXE: the file's device; PKEY_OVERRIDE: the address class
	__u64 b; // PKEY_EXE: its inode; PKEY_OVERRIDE: the principal (ng_layout)
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

#define CLASS_DEPENDENT (1u << CLASS_DEPENDENT_SHIFT)
// a sender not classified: the flow's class did not depend on it
#define NO_SENDER 0xffffffff

// A flow's sender: who it is, and once its class depended on it, its
// classes (program NO_SENDER until then).
struct sender {
	struct ident id;
	__u32 program, uid, gid;
};

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

// classify_sender finds the current process's classes: of its real uid and gid,
// and of the file its memory was exec'd from, if that file is one the
// policy names and has not changed since the policy was attached (else
// class 0: a program no exe= names).
static __always_inline void classify_sender(const struct config *cfg, void *principals, struct sender *m)
{
	read_ident(cfg->reads_exe, &m->id);
	m->uid = id_class(cfg->uid_runs, cfg->id_steps & ID_STEPS_MASK, m->id.uid);
	m->gid = id_class(cfg->gid_runs, cfg->id_steps >> ID_STEPS_GID_SHIFT, m->id.gid);
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
// the sender is not known: the class's own runs, for someone no qualifier
// names).
static __always_inline __u32 effective(const struct config *cfg, __u32 class, struct sender *m)
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
	classify_sender(cfg, principals, m);
	struct pkey k = { .kind = PKEY_OVERRIDE,
			  .a = class,
			  .b = (__u64)m->program << PRINCIPAL_PROGRAM_SHIFT | (__u64)m->uid << PRINCIPAL_UID_SHIFT | m->gid };
	struct pval *v = bpf_map_lookup_elem(principals, &k);
	return v ? v->class : class;
}
