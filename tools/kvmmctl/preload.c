/* SPDX-License-Identifier: MIT */
/*
 * The LD_PRELOAD shim's regions, for kvmmctl regions: each process under
 * libkvmm-preload.so keeps a registry file (one per pid) in
 * $KVMM_PRELOAD_REGISTRY or /tmp/kvmm-preload-UID, with a "process" line
 * and one "region" line per routed region, as key=value words (read by
 * registry.c, which skips the files of processes that are gone).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/fmt.h"
#include "../common/json.h"
#include "kvmmctl.h"

struct reg_out {
	struct jw *w; /* JSON, or NULL for the table */
	bool quiet;   /* only count */
	int processes, regions;
};

static void one_file(void *arg, const char *pid, const char *text)
{
	struct reg_out *o = arg;
	char comm[64], mode[16], rule[64], pool[64], call[16], a[32], b[32], c[32], d[32];
	const char *line = text, *proc = reg_line(text, "process");

	if (!proc || !ctl_registry_alive(pid, reg_u64(proc, "start")))
		return; /* not a registry file, or its process is gone */
	reg_word(proc, "comm", comm, sizeof(comm));
	reg_word(proc, "mode", mode, sizeof(mode));
	o->processes++;
	if (o->quiet)
		return;
	if (o->w) {
		jw_obj(o->w, NULL);
		jw_i64(o->w, "pid", strtol(pid, NULL, 10));
		jw_str(o->w, "comm", comm);
		jw_str(o->w, "mode", mode);
		jw_u64(o->w, "routed", reg_u64(proc, "routed"));
		jw_u64(o->w, "reserved_bytes", reg_u64(proc, "reserved_bytes"));
		jw_u64(o->w, "resident_bytes", reg_u64(proc, "resident_bytes"));
		jw_u64(o->w, "resident_peak_bytes", reg_u64(proc, "resident_peak_bytes"));
		jw_u64(o->w, "flash_bytes", reg_u64(proc, "flash_bytes"));
		jw_u64(o->w, "zero_elided_bytes", reg_u64(proc, "zero_elided_bytes"));
		jw_u64(o->w, "fallbacks", reg_u64(proc, "fallbacks"));
		jw_arr(o->w, "regions");
	}
	for (; *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : line + strlen(line)) {
		if (strncmp(line, "region ", 7))
			continue;
		reg_word(line, "rule", rule, sizeof(rule));
		reg_word(line, "pool", pool, sizeof(pool));
		reg_word(line, "call", call, sizeof(call));
		o->regions++;
		if (o->w) {
			jw_obj(o->w, NULL);
			jw_u64(o->w, "id", reg_u64(line, "id"));
			jw_u64(o->w, "kvmm_id", reg_u64(line, "kvmm_id"));
			jw_str(o->w, "rule", rule);
			jw_str(o->w, "pool", pool);
			jw_str(o->w, "call", call);
			jw_u64(o->w, "size_bytes", reg_u64(line, "bytes"));
			jw_u64(o->w, "asked_bytes", reg_u64(line, "asked_bytes"));
			jw_u64(o->w, "chunk_bytes", reg_u64(line, "chunk_bytes"));
			jw_u64(o->w, "resident_bytes", reg_u64(line, "resident_bytes"));
			jw_u64(o->w, "flash_bytes", reg_u64(line, "flash_bytes"));
			jw_end(o->w);
			continue;
		}
		if (o->regions == 1)
			printf("\nLD_PRELOAD shim regions (libkvmm-preload.so):\n"
			       "%7s %-16s %-6s %-12s %-10s %-7s %10s %9s %10s %10s %7s\n",
			       "PID", "COMM", "MODE", "RULE", "POOL", "CALL", "SIZE", "CHUNK",
			       "RESIDENT", "FLASH", "KVMM-ID");
		printf("%7s %-16s %-6s %-12s %-10s %-7s %10s %9s %10s %10s %7llu\n", pid, comm,
		       mode, rule, pool, call, fmt_bytes(a, sizeof(a), reg_u64(line, "bytes")),
		       fmt_bytes(b, sizeof(b), reg_u64(line, "chunk_bytes")),
		       fmt_bytes(c, sizeof(c), reg_u64(line, "resident_bytes")),
		       fmt_bytes(d, sizeof(d), reg_u64(line, "flash_bytes")),
		       (unsigned long long)reg_u64(line, "kvmm_id"));
	}
	if (o->w) {
		jw_end(o->w);
		jw_end(o->w);
	}
}

int ctl_preload_regions(struct jw *w, bool print)
{
	struct reg_out o = {.w = w, .quiet = !print};

	if (w && print)
		jw_arr(w, "preload");
	ctl_registry_each("KVMM_PRELOAD_REGISTRY", "kvmm-preload", one_file, &o);
	if (w && print)
		jw_end(w);
	return o.processes;
}
