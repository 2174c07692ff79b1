/* SPDX-License-Identifier: MIT */
/* kvmmctl status: the module, its pool, tiers, GPU ledger and counters. */
#include <stdio.h>
#include <string.h>

#include "../common/fmt.h"
#include "../common/json.h"
#include "snapshot.h"

static double pct(uint64_t part, uint64_t whole)
{
	return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

static void status_json(const struct snapshot *s)
{
	struct jw w;

	jw_init(&w, stdout);
	jw_obj(&w, NULL);
	jw_obj(&w, "module");
	jw_bool(&w, "loaded", s->loaded);
	jw_bool(&w, "in_proc_modules", s->in_proc_modules);
	jw_bool(&w, "modules_supported", s->modules_supported);
	jw_str(&w, "module_file", s->module_file[0] ? s->module_file : NULL);
	jw_bool(&w, "device_present", s->dev_present);
	jw_i64(&w, "device_errno", -s->dev_err);
	if (s->loaded) {
		jw_str(&w, "version", s->version);
		jw_u64(&w, "abi_version", s->abi_version);
	}
	if (s->have_ioc_version) {
		jw_u64(&w, "page_size_bytes", s->ioc_version.page_size);
	}
	jw_end(&w);
	jw_str(&w, "mode", s->mode);
	jw_bool(&w, "userfaultfd", s->userfaultfd);
	if (s->loaded) {
		jw_obj(&w, "pool");
		jw_u64(&w, "limit_bytes", s->pool_limit_bytes);
		jw_u64(&w, "used_bytes", s->pool_used_bytes);
		jw_u64(&w, "high_wmark_pct", s->high_wmark_pct);
		jw_u64(&w, "low_wmark_pct", s->low_wmark_pct);
		jw_arr(&w, "nodes");
		for (int i = 0; i < s->nr_nodes; i++) {
			jw_obj(&w, NULL);
			jw_str(&w, "node", s->nodes[i].name);
			jw_u64(&w, "used_bytes", s->nodes[i].value);
			jw_end(&w);
		}
		jw_end(&w);
		jw_end(&w);
		jw_obj(&w, "flash");
		jw_u64(&w, "used_bytes", s->flash_bytes);
		jw_str(&w, "default_backing", s->default_backing);
		jw_end(&w);
		jw_u64(&w, "regions", s->regions);
		jw_u64(&w, "default_chunk_bytes", s->default_chunk_bytes);
		jw_u64(&w, "refault_window_ms", s->refault_window_ms);
		jw_arr(&w, "gpus");
		for (int i = 0; i < s->nr_gpus; i++) {
			jw_obj(&w, NULL);
			jw_i64(&w, "gpu", s->gpus[i].index);
			if (s->gpus[i].budget_bytes == KVMM_BUDGET_UNLIMITED)
				jw_null(&w, "budget_bytes");
			else
				jw_u64(&w, "budget_bytes", s->gpus[i].budget_bytes);
			jw_u64(&w, "charged_bytes", s->gpus[i].charged_bytes);
			jw_end(&w);
		}
		jw_end(&w);
		jw_obj(&w, "counters");
		for (int i = 0; i < s->nr_counters; i++)
			jw_u64(&w, s->counters[i].name, s->counters[i].value);
		jw_end(&w);
	}
	jw_end(&w);
}

static void status_not_loaded(const struct snapshot *s)
{
	printf("module          not loaded (no /sys/kernel/kvmm)\n");
	printf("  /proc/modules %s\n", !s->modules_supported
					   ? "missing: this kernel cannot load modules"
				       : s->in_proc_modules ? "lists kvmm (sysfs missing?)"
							    : "does not list kvmm");
	printf("  kvmm.ko       %s\n",
	       s->module_file[0] ? s->module_file : "not installed for this kernel");
	printf("  load it with  modprobe kvmm  (or insmod kmod/kvmm.ko after make module)\n");
	printf("mode            %s%s\n", s->mode,
	       !strcmp(s->mode, "user") ? " (libkvmm without the module: userfaultfd regions)"
					: " (no kvmm.ko and no userfaultfd)");
}

static void status_human(const struct snapshot *s)
{
	char a[32], b[32];

	if (!s->loaded) {
		status_not_loaded(s);
		return;
	}
	printf("module          loaded, version %s, abi %llu%s\n", s->version,
	       (unsigned long long)s->abi_version,
	       s->abi_version == KVMM_ABI_VERSION ? "" : " (kvmmctl speaks another abi)");
	printf("device          /dev/kvmm %s\n", s->have_ioc_version ? "ok"
						 : s->dev_present    ? strerror(-s->dev_err)
								     : "missing");
	printf("mode            %s (what libkvmm uses here)\n", s->mode);
	printf("pool            %s used of %s (%.1f %%)\n",
	       fmt_bytes(a, sizeof(a), s->pool_used_bytes),
	       fmt_bytes(b, sizeof(b), s->pool_limit_bytes),
	       pct(s->pool_used_bytes, s->pool_limit_bytes));
	printf("watermarks      high %llu %% (%s), low %llu %% (%s)\n",
	       (unsigned long long)s->high_wmark_pct,
	       fmt_bytes(a, sizeof(a), s->pool_limit_bytes / 100 * s->high_wmark_pct),
	       (unsigned long long)s->low_wmark_pct,
	       fmt_bytes(b, sizeof(b), s->pool_limit_bytes / 100 * s->low_wmark_pct));
	for (int i = 0; i < s->nr_nodes; i++)
		printf("  node %-9s %s\n", s->nodes[i].name,
		       fmt_bytes(a, sizeof(a), s->nodes[i].value));
	printf("flash           %s in use, default backing %s\n",
	       fmt_bytes(a, sizeof(a), s->flash_bytes), s->default_backing);
	printf("regions         %llu live, default chunk %s\n", (unsigned long long)s->regions,
	       fmt_bytes(a, sizeof(a), s->default_chunk_bytes));
	printf("refault window  %llu ms\n", (unsigned long long)s->refault_window_ms);
	printf("gpus            ");
	{
		int shown = 0;

		for (int i = 0; i < s->nr_gpus; i++) {
			if (s->gpus[i].budget_bytes == KVMM_BUDGET_UNLIMITED &&
			    !s->gpus[i].charged_bytes)
				continue;
			printf("%sgpu%d %s charged of %s", shown++ ? "\n                " : "",
			       s->gpus[i].index, fmt_bytes(a, sizeof(a), s->gpus[i].charged_bytes),
			       s->gpus[i].budget_bytes == KVMM_BUDGET_UNLIMITED
				   ? "no budget"
				   : fmt_bytes(b, sizeof(b), s->gpus[i].budget_bytes));
		}
		printf("%s\n", shown ? "" : "no budget set, nothing charged");
	}
	printf("counters\n");
	for (int i = 0; i < s->nr_counters; i++)
		printf("  %-22s %llu%s\n", s->counters[i].name,
		       (unsigned long long)s->counters[i].value,
		       strstr(s->counters[i].name, "bytes") ? " B" : "");
}

int cmd_status(const struct ctl *c, int argc, char **argv)
{
	struct snapshot s;

	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: kvmmctl status\n");
		return CTL_USAGE;
	}
	snapshot_take(c, &s);
	if (c->json)
		status_json(&s);
	else
		status_human(&s);
	return CTL_OK;
}
