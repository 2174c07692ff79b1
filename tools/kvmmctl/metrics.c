/* SPDX-License-Identifier: MIT */
/*
 * kvmmctl metrics: everything in the Prometheus text exposition format
 * (version 0.0.4): # HELP and # TYPE before each family, kvmm_ prefix,
 * base units in the names (bytes, seconds, ratio), counters end in _total.
 * Usable as a node_exporter textfile or behind any HTTP wrapper.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot.h"

void ctl_metric_family(const char *name, const char *type, const char *help)
{
	printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void gauge(const char *name, const char *help, double v)
{
	ctl_metric_family(name, "gauge", help);
	printf("%s %.10g\n", name, v);
}

/* Label values: backslash, double quote and newline escaped. */
void ctl_label_value(const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			printf("\\%c", *s);
		else if (*s == '\n')
			printf("\\n");
		else
			putchar(*s);
	}
}

/* stats/flash_bytes_written -> kvmm_flash_written_bytes_total. */
static void counter_name(const char *stat, char *out, size_t len)
{
	char base[64];
	const char *p = strstr(stat, "bytes");

	if (p) {
		size_t pre = (size_t)(p - stat);
		const char *post = p + 5;

		snprintf(base, sizeof(base), "%.*s%s", (int)pre, stat,
			 *post == '_' ? post + 1 : post);
		while (strlen(base) && base[strlen(base) - 1] == '_')
			base[strlen(base) - 1] = 0;
		snprintf(out, len, "kvmm_%s_bytes_total", base);
	} else {
		snprintf(out, len, "kvmm_%s_total", stat);
	}
}

static void regions(const struct ctl *c)
{
	static const struct {
		const char *name, *help;
		size_t off;
	} fields[] = {
	    {"kvmm_region_size_bytes", "Virtual size of the region.",
	     offsetof(struct kvmm_region_info, size)},
	    {"kvmm_region_resident_bytes", "Bytes of the region in DRAM.",
	     offsetof(struct kvmm_region_info, resident_bytes)},
	    {"kvmm_region_pinned_bytes", "Bytes of the region pinned.",
	     offsetof(struct kvmm_region_info, pinned_bytes)},
	    {"kvmm_region_flash_bytes", "Bytes of flash slots the region holds.",
	     offsetof(struct kvmm_region_info, flash_bytes)},
	    {"kvmm_region_flash_only_bytes", "Bytes of the region on flash only.",
	     offsetof(struct kvmm_region_info, flash_resident_bytes)},
	    {"kvmm_region_shared_bytes",
	     "Bytes of the region reading memory shared with other ranges (counted once in "
	     "kvmm_shared_bytes).",
	     offsetof(struct kvmm_region_info, shared_bytes)},
	};
	struct kvmm_region_info *r = NULL;
	int n = ctl_region_list(c, &r);

	if (n < 0)
		return;
	for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
		ctl_metric_family(fields[f].name, "gauge", fields[f].help);
		for (int i = 0; i < n; i++) {
			printf("%s{id=\"%u\",pid=\"%d\",comm=\"", fields[f].name, r[i].id,
			       r[i].owner_pid);
			ctl_label_value(r[i].owner_comm);
			printf("\"} %llu\n",
			       (unsigned long long)*(const uint64_t *)((const char *)&r[i] +
								       fields[f].off));
		}
	}
	ctl_metric_family("kvmm_region_chunk_bytes", "gauge", "Chunk size of the region.");
	for (int i = 0; i < n; i++)
		printf("kvmm_region_chunk_bytes{id=\"%u\"} %u\n", r[i].id, r[i].chunk_bytes);
	free(r);
}

int cmd_metrics(const struct ctl *c, int argc, char **argv)
{
	struct snapshot s;
	char name[96];

	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: kvmmctl metrics\n");
		return CTL_USAGE;
	}
	snapshot_take(c, &s);
	gauge("kvmm_module_loaded", "Whether kvmm.ko is loaded (1) or not (0).", s.loaded);
	/* The remote tier is userspace: its handles are shown with or without the module. */
	ctl_remote_metrics();
	if (!s.loaded)
		return CTL_OK;
	ctl_metric_family("kvmm_info", "gauge",
			  "Module release and ABI version; the value is always 1.");
	printf("kvmm_info{version=\"");
	ctl_label_value(s.version);
	printf("\",abi=\"%llu\",mode=\"%s\"} 1\n", (unsigned long long)s.abi_version, s.mode);
	gauge("kvmm_pool_limit_bytes", "DRAM pool limit.", (double)s.pool_limit_bytes);
	gauge("kvmm_pool_used_bytes", "DRAM pool bytes in use.", (double)s.pool_used_bytes);
	gauge("kvmm_pool_high_watermark_ratio", "Reclaim starts above this fraction of the limit.",
	      (double)s.high_wmark_pct / 100.0);
	gauge("kvmm_pool_low_watermark_ratio", "Reclaim stops below this fraction of the limit.",
	      (double)s.low_wmark_pct / 100.0);
	gauge("kvmm_default_chunk_bytes", "Chunk size of regions created with 0.",
	      (double)s.default_chunk_bytes);
	gauge("kvmm_regions", "Live regions.", (double)s.regions);
	gauge("kvmm_refault_window_seconds", "Refault window.", (double)s.refault_window_ms / 1e3);
	gauge("kvmm_flash_used_bytes", "Bytes of flash slots in use.", (double)s.flash_bytes);
	ctl_metric_family("kvmm_node_used_bytes", "gauge", "Pool bytes placed on a NUMA node.");
	for (int i = 0; i < s.nr_nodes; i++)
		printf("kvmm_node_used_bytes{node=\"%s\"} %llu\n", s.nodes[i].name,
		       (unsigned long long)s.nodes[i].value);
	ctl_metric_family("kvmm_gpu_budget_bytes", "gauge",
			  "GPU budget in the host-wide ledger (+Inf: none).");
	for (int i = 0; i < s.nr_gpus; i++) {
		if (s.gpus[i].budget_bytes == KVMM_BUDGET_UNLIMITED)
			printf("kvmm_gpu_budget_bytes{gpu=\"%d\"} +Inf\n", s.gpus[i].index);
		else
			printf("kvmm_gpu_budget_bytes{gpu=\"%d\"} %llu\n", s.gpus[i].index,
			       (unsigned long long)s.gpus[i].budget_bytes);
	}
	ctl_metric_family("kvmm_gpu_charged_bytes", "gauge",
			  "Bytes charged on a GPU by all clients.");
	for (int i = 0; i < s.nr_gpus; i++)
		printf("kvmm_gpu_charged_bytes{gpu=\"%d\"} %llu\n", s.gpus[i].index,
		       (unsigned long long)s.gpus[i].charged_bytes);
	for (int i = 0; i < s.nr_counters; i++) {
		counter_name(s.counters[i].name, name, sizeof(name));
		ctl_metric_family(name, "counter", knob_counter_help(s.counters[i].name));
		printf("%s %llu\n", name, (unsigned long long)s.counters[i].value);
	}
	regions(c);
	return CTL_OK;
}
