// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// The event ring the programs report to, and the counters of records that
// found no room in it.
#pragma once

// The loader may replace both with maps shared by all containers.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENT_RING_SIZE);
} events SEC(".maps");

struct lost_counters lost_events SEC(".maps");
