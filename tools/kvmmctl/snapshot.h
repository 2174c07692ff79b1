/* SPDX-License-Identifier: MIT */
/* One read of everything kvmm.ko exposes in sysfs, for status, top and metrics. */
#ifndef KVMMCTL_SNAPSHOT_H
#define KVMMCTL_SNAPSHOT_H

#include "kvmmctl.h"

#define SNAP_MAX_ENTRIES 64

struct snap_entry {
	char name[64];
	uint64_t value;
};

struct snapshot {
	bool loaded;		/* /sys/kernel/kvmm exists */
	bool in_proc_modules;	/* kvmm listed in /proc/modules */
	bool modules_supported; /* this kernel can load modules */
	bool dev_present;	/* /dev/kvmm exists */
	int dev_err;		/* 0, or -errno of opening /dev/kvmm */
	bool have_ioc_version;
	struct kvmm_version ioc_version;
	bool userfaultfd;
	char module_file[256]; /* "" when modprobe would not find one */
	char version[32];
	uint64_t abi_version;
	const char *mode; /* "kernel", "user" or "unavailable": what libkvmm would use */
	uint64_t pool_limit_bytes, pool_used_bytes;
	uint64_t high_wmark_pct, low_wmark_pct;
	uint64_t default_chunk_bytes, regions, refault_window_ms, flash_bytes;
	char default_backing[256];
	int nr_nodes;
	struct snap_entry nodes[SNAP_MAX_ENTRIES]; /* name: "0", "1", ... */
	int nr_gpus;
	struct {
		int index;
		uint64_t budget_bytes; /* KVMM_BUDGET_UNLIMITED for "max" */
		uint64_t charged_bytes;
	} gpus[KVMM_MAX_GPUS];
	int nr_counters;
	struct snap_entry counters[SNAP_MAX_ENTRIES];
};

/* Fills @s; never fails (what cannot be read stays zero). */
void snapshot_take(const struct ctl *c, struct snapshot *s);
/* The value of stats/@name, or 0. */
uint64_t snapshot_counter(const struct snapshot *s, const char *name);

#endif
