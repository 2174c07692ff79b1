/* SPDX-License-Identifier: MIT */
/*
 * kvmmctl get / set / knobs: the sysfs knobs of kvmm.ko, what each means
 * and accepts, checked here before the kernel sees a value, and the
 * kernel's refusal explained when it says no.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/fmt.h"
#include "../common/json.h"
#include "kvmmctl.h"

static const struct knob knobs[] = {
    {"version", false, "", "module release"},
    {"abi_version", false, "", "KVMM_ABI_VERSION the module implements"},
    {"pool_limit_bytes", true, "bytes",
     "DRAM pool limit; bytes (suffixes K, M, G, T accepted), at most the machine's RAM; "
     "below the current usage it only stops further allocation"},
    {"pool_used_bytes", false, "bytes", "bytes of chunks allocated from the pool now"},
    {"pool_high_wmark_pct", true, "percent",
     "reclaim to flash starts above this percentage of the pool limit; "
     "0..100 and above pool_low_wmark_pct"},
    {"pool_low_wmark_pct", true, "percent",
     "reclaim stops below this percentage of the pool limit; 0..100 and below "
     "pool_high_wmark_pct"},
    {"default_chunk_bytes", true, "bytes",
     "chunk size of regions created with 0; a power of two from 4 KiB to 2 MiB"},
    {"regions", false, "count", "live regions"},
    {"refault_window_ms", true, "ms",
     "a chunk touched again this soon after eviction is held back from eviction; "
     "0..3600000"},
    {"default_backing", true, "path",
     "flash backing file of regions without their own; an absolute path of a regular "
     "file or block device the kernel can open, or \"none\""},
    {"flash_bytes", false, "bytes", "bytes of flash slots in use by all regions"},
};

static const struct {
	const char *name, *help;
} counters[] = {
    {"faults", "CPU faults handled (each maps a whole chunk)"},
    {"zero_fills", "chunks allocated and zero-filled"},
    {"discards", "chunks freed by DISCARD"},
    {"fault_failures", "faults answered with SIGBUS because the pool was full"},
    {"ensure_failures", "ENSURE/PIN calls that failed for lack of memory"},
    {"bytes_read", "bytes copied out by pread"},
    {"bytes_written", "bytes copied in by pwrite"},
    {"regions_created", "regions created since load"},
    {"evictions", "chunks moved out of DRAM to flash (written or dropped)"},
    {"clean_drops", "evicted chunks dropped without a write (flash copy current)"},
    {"flash_bytes_written", "bytes written to flash"},
    {"prefetches", "chunks read back by PREFETCH or ENSURE"},
    {"fault_backs", "chunks read back because a CPU fault touched them"},
    {"flash_bytes_read", "bytes read from flash"},
    {"refaults", "chunks touched again within refault_window_ms of their eviction"},
    {"csum_failures", "read-backs whose crc32c did not match"},
    {"io_errors", "failed flash reads and writes"},
    {"buffered_ios", "flash I/Os done buffered because direct I/O was refused"},
    {"reclaim_runs", "runs of the reclaim worker"},
    {"shrinker_scans", "scans by the memory shrinker"},
    {"merged_ios", "flash I/Os that moved several chunks in adjacent slots at once"},
    {"merged_retries", "merged flash I/Os that failed and were retried chunk by chunk"},
    {"cow_copies", "shared chunks copied because a sharer wrote to them"},
    {"shared_bytes", "memory of shared chunks now, each counted once"},
};

const char *knob_counter_help(const char *counter)
{
	for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
		if (!strcmp(counters[i].name, counter))
			return counters[i].help;
	}
	return "kvmm counter";
}

/* Per-GPU, per-node and counter knobs are matched by pattern. */
static bool knob_indexed(const char *name, const char *prefix, const char *suffix, int max)
{
	size_t pl = strlen(prefix), sl = strlen(suffix), nl = strlen(name);
	char *end;
	long v;

	if (nl <= pl + sl || strncmp(name, prefix, pl) || strcmp(name + nl - sl, suffix))
		return false;
	if (name[pl] < '0' || name[pl] > '9')
		return false;
	v = strtol(name + pl, &end, 10);
	return end == name + nl - sl && v >= 0 && v < max;
}

const struct knob *knob_find(const char *name)
{
	static const struct knob gpu_budget = {
	    "gpus/gpuN_budget_bytes", true, "bytes",
	    "GPU N's budget in the host-wide ledger; bytes (suffixes accepted) or \"max\" "
	    "(unlimited); below the current charges it signals pressure"};
	static const struct knob gpu_charged = {"gpus/gpuN_charged_bytes", false, "bytes",
						"bytes charged on GPU N by all clients"};
	static const struct knob node_used = {"nodes/nodeN_used_bytes", false, "bytes",
					      "pool bytes placed on NUMA node N"};
	static const struct knob counter = {"stats/COUNTER", false, "count",
					    "a counter since the module was loaded"};

	for (size_t i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++) {
		if (!strcmp(knobs[i].name, name))
			return &knobs[i];
	}
	if (knob_indexed(name, "gpus/gpu", "_budget_bytes", KVMM_MAX_GPUS))
		return &gpu_budget;
	if (knob_indexed(name, "gpus/gpu", "_charged_bytes", KVMM_MAX_GPUS))
		return &gpu_charged;
	if (knob_indexed(name, "nodes/node", "_used_bytes", 1 << 16))
		return &node_used;
	if (!strncmp(name, "stats/", 6) && name[6] && !strchr(name + 6, '/'))
		return &counter;
	return NULL;
}

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/*
 * Checks @val for @k and writes the form the kernel takes into @out.
 * Return: NULL, or why the value is refused.
 */
static const char *knob_check(const struct knob *k, const char *val, char *out, size_t len)
{
	uint64_t v;
	int ret;

	if (!strcmp(k->unit, "path")) {
		if (strcmp(val, "none") && val[0] != '/')
			return "not an absolute path or \"none\"";
		snprintf(out, len, "%s", val);
		return NULL;
	}
	if (!strcmp(k->unit, "bytes")) {
		if (strstr(k->name, "budget") && !strcmp(val, "max")) {
			snprintf(out, len, "max");
			return NULL;
		}
		ret = parse_bytes(val, &v);
	} else {
		ret = parse_u64(val, &v);
	}
	if (ret == -ERANGE)
		return "out of range";
	if (ret)
		return "not a number";
	if (!strcmp(k->name, "default_chunk_bytes") && (!is_pow2(v) || v < 4096 || v > (2u << 20)))
		return "not a power of two from 4096 to 2097152";
	if (!strcmp(k->unit, "percent") && v > 100)
		return "above 100";
	if (!strcmp(k->name, "refault_window_ms") && v > 3600000)
		return "above 3600000";
	snprintf(out, len, "%llu", (unsigned long long)v);
	return NULL;
}

static const char *errno_name(int err)
{
	switch (err) {
	case EINVAL:
		return "EINVAL";
	case EPERM:
		return "EPERM";
	case EACCES:
		return "EACCES";
	case ENOENT:
		return "ENOENT";
	case EBUSY:
		return "EBUSY";
	case ENOMEM:
		return "ENOMEM";
	case ERANGE:
		return "ERANGE";
	case ENODEV:
		return "ENODEV";
	case EIO:
		return "EIO";
	default:
		return "errno";
	}
}

/* Knob names are paths below /sys/kernel/kvmm: no "..", no leading "/". */
static bool knob_name_ok(const char *name)
{
	if (!*name || name[0] == '/' || strstr(name, ".."))
		return false;
	for (const char *p = name; *p; p++) {
		if (!(*p == '_' || *p == '/' || (*p >= 'a' && *p <= 'z') ||
		      (*p >= '0' && *p <= '9')))
			return false;
	}
	return true;
}

int cmd_get(const struct ctl *c, int argc, char **argv)
{
	char buf[4096];
	const struct knob *k;
	int ret;

	if (argc != 2) {
		fprintf(stderr, "usage: kvmmctl get KNOB   (kvmmctl knobs lists them)\n");
		return CTL_USAGE;
	}
	k = knob_find(argv[1]);
	if (!knob_name_ok(argv[1])) {
		fprintf(stderr, "kvmmctl: unknown knob '%s' (kvmmctl knobs lists them)\n", argv[1]);
		return CTL_ERR;
	}
	if (!ctl_loaded(c))
		return ctl_no_module(c);
	ret = ctl_read(c, argv[1], buf, sizeof(buf));
	if (ret == -ENOENT || ret == -EISDIR) {
		fprintf(stderr, "kvmmctl: unknown knob '%s' (kvmmctl knobs lists them)\n", argv[1]);
		return CTL_ERR;
	}
	if (ret) {
		fprintf(stderr, "kvmmctl: get %s: %s\n", argv[1], strerror(-ret));
		return CTL_ERR;
	}
	if (c->json) {
		struct jw w;

		jw_init(&w, stdout);
		jw_obj(&w, NULL);
		jw_str(&w, "knob", argv[1]);
		jw_str(&w, "value", buf);
		jw_str(&w, "unit", k ? k->unit : "");
		jw_bool(&w, "writable", k && k->writable);
		jw_end(&w);
	} else {
		printf("%s\n", buf);
	}
	return CTL_OK;
}

int cmd_set(const struct ctl *c, int argc, char **argv)
{
	char val[4096], old[4096] = "";
	const struct knob *k;
	const char *why;
	int ret;

	if (argc != 3) {
		fprintf(stderr, "usage: kvmmctl set KNOB VALUE   (kvmmctl knobs lists them)\n");
		return CTL_USAGE;
	}
	k = knob_find(argv[1]);
	if (!k) {
		fprintf(stderr, "kvmmctl: unknown knob '%s' (kvmmctl knobs lists them)\n", argv[1]);
		return CTL_ERR;
	}
	if (!k->writable) {
		fprintf(stderr, "kvmmctl: %s is read-only (%s)\n", argv[1], k->help);
		return CTL_ERR;
	}
	why = knob_check(k, argv[2], val, sizeof(val));
	if (why) {
		fprintf(stderr, "kvmmctl: bad value '%s' for %s: %s\nkvmmctl: accepted: %s\n",
			argv[2], argv[1], why, k->help);
		return CTL_ERR;
	}
	if (!ctl_loaded(c))
		return ctl_no_module(c);
	if (!ctl_exists(c, argv[1])) {
		fprintf(stderr, "kvmmctl: unknown knob '%s': this module has no such file\n",
			argv[1]);
		return CTL_ERR;
	}
	ctl_read(c, argv[1], old, sizeof(old));
	ret = ctl_write(c, argv[1], val);
	if (ret == -EACCES || ret == -EPERM) {
		fprintf(stderr, "kvmmctl: set %s: %s (%s): writing sysfs needs root\n", argv[1],
			strerror(-ret), errno_name(-ret));
		return CTL_ERR;
	}
	if (ret) {
		fprintf(stderr,
			"kvmmctl: the kernel refused %s=%s: %s (%s)\nkvmmctl: accepted: %s\n",
			argv[1], val, strerror(-ret), errno_name(-ret), k->help);
		return CTL_ERR;
	}
	if (c->json) {
		struct jw w;

		jw_init(&w, stdout);
		jw_obj(&w, NULL);
		jw_str(&w, "knob", argv[1]);
		jw_str(&w, "old", old);
		jw_str(&w, "value", val);
		jw_end(&w);
	} else {
		printf("%s: %s -> %s\n", argv[1], old, val);
	}
	return CTL_OK;
}

static void knob_print(const struct ctl *c, struct jw *w, const struct knob *k)
{
	if (c->json) {
		jw_obj(w, NULL);
		jw_str(w, "knob", k->name);
		jw_bool(w, "writable", k->writable);
		jw_str(w, "unit", k->unit);
		jw_str(w, "help", k->help);
		jw_end(w);
	} else {
		printf("%-24s %-2s %-7s %s\n", k->name, k->writable ? "rw" : "r", k->unit, k->help);
	}
}

/* kvmmctl knobs: every knob with its mode, unit and meaning. */
int cmd_knobs(const struct ctl *c, int argc, char **argv)
{
	/* One of each family matched by pattern in knob_find(). */
	static const char *const patterns[] = {"gpus/gpu0_budget_bytes", "gpus/gpu0_charged_bytes",
					       "nodes/node0_used_bytes", "stats/faults"};
	struct jw w;

	(void)argc;
	(void)argv;
	if (c->json) {
		jw_init(&w, stdout);
		jw_arr(&w, NULL);
	}
	for (size_t i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++)
		knob_print(c, &w, &knobs[i]);
	for (size_t i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++)
		knob_print(c, &w, knob_find(patterns[i]));
	if (c->json)
		jw_end(&w);
	return CTL_OK;
}
