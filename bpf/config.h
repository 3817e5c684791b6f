// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// A policed cgroup's config: what the programs on it read first.
#pragma once

// One copy of these programs serves every container of a size class: the
// loader attaches the same programs to each container's cgroup, and what
// differs between containers is found from the cgroup they are attached to.
//
// config is per policed cgroup (cgroup storage, one value shared by all the
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
	__u8 id_steps; // uid runs: 1 << (id_steps & ID_STEPS_MASK) entries; gid runs: 1 << (id_steps >> ID_STEPS_GID_SHIFT)
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
