// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// What the programs read of packets and of the kernel: protocol numbers,
// typed headers, and the few kernel structs read through BTF (CO-RE).
#pragma once

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_HOPOPTS 0
#define IPPROTO_ROUTING 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_DSTOPTS 60
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

// The headers the packet path reads, typed so that their fields are read
// whole (a copy out of a __u8 pointer is byte by byte).
struct ip4_hdr {
	__u8 ver_ihl, tos;
	__u16 len, id, frag; // frag: flags and offset, network order
	__u8 ttl, proto;
	__u16 check;
	__u32 saddr, daddr;
};

struct ip6_hdr {
	__u32 ver_flow;
	__u16 len;
	__u8 next, hops;
	__u32 saddr[4], daddr[4];
};

struct l4_ports {
	__u16 src, dst; // network order
};

struct mm_struct {
	struct file *exe_file;
} __attribute__((preserve_access_index));

struct task_struct {
	struct mm_struct *mm;
} __attribute__((preserve_access_index));
