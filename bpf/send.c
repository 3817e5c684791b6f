//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// The per-send check (BPF LSM only): a flow a rule allowed for its sender
// (exe=, uid=, gid=) is that sender's. A connected socket's sends run no
// cgroup hook (TCP, connected UDP), so without this another program or
// user holding the socket — after an exec, or the socket handed over with
// SCM_RIGHTS or pidfd_getfd — would send on the first one's allowance.
// Here every send on a socket whose remembered verdict depended on its
// sender is refused unless it comes from the same sender (program file,
// uid, gid); it must connect a socket of its own, which the hooks judge.
// Sockets whose verdict did not depend on the sender return at the first
// lookup. One program per copy of the egress programs (it reads that
// copy's sockets' storage), loaded and attached only to a copy whose
// policies have qualifiers; there is no per-cgroup LSM hook on every
// kernel, so it runs on every send of the host while attached.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "nriguard.h"
#include "inode.h"
#include "packet.h"
#include "ring.h" // the copy's: the loader puts them in
#include "sender.h"
#include "verdicts.h" // the copy's: the loader puts it in

#define EPERM 1

struct socket {
	struct sock *sk;
} __attribute__((preserve_access_index));

SEC("lsm/socket_sendmsg")
int BPF_PROG(ng_send_sender, struct socket *sock, void *msg, int size, int ret)
{
	if (ret)
		return ret;
	struct sock *sk = sock->sk;
	if (!sk)
		return 0;
	struct sock_verdict *c = bpf_sk_storage_get(&sock_verdicts, sk, 0, 0);
	if (!c || !c->dependent)
		return 0;
	struct ident id;
	read_ident(c->flags & SV_READS_EXE, &id);
	if (same_ident(&c->who, &id))
		return 0;
	struct flow_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_lost(&lost_events, EV_KIND_FLOW);
		return -EPERM;
	}
	fill_hdr(&e->h, c->cgroup, EV_KIND_FLOW, HOOK_SEND_LSM, ACTION_DENY | (c->verdict & ~VERDICT_ACTION_MASK & 0xff00));
	__builtin_memset(e->addr, 0, 16);
	if (c->family == AF_INET6)
		__builtin_memcpy(e->addr, c->addr, 16);
	else
		__builtin_memcpy(e->addr, &c->addr[3], 4);
	e->port = bpf_ntohs(c->port);
	e->family = c->family;
	e->proto = c->proto;
	e->type = 0;
	e->reason = REASON_OTHER_SENDER;
	e->name = 0;
	e->exe_dev = id.dev;
	e->pad2 = 0;
	e->exe_ino = id.ino;
	e->cookie = 0;
	e->packets = 0;
	e->bytes = 0;
	bpf_ringbuf_submit(e, 0);
	return -EPERM;
}

char __license[] SEC("license") = "GPL";
