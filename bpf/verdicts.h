// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// What a socket was let through to: its own storage, which the hooks write
// and the packet path (and the per-send check) read.
#pragma once

// What a remembered verdict needs of its config to answer a send alone.
enum sv_flags {
	SV_FLOWS = 1, // config.visibility has VIS_FLOWS
	SV_NAMES = 2, // config.names
	SV_READS_EXE = 4, // config.reads_exe
	SV_ACCEPTED = 8, // an accepted TCP socket: it answers its peer, whatever the policy
};

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
	__u64 cgroup; // of the policy that judged, when dependent: the per-send check names it
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
