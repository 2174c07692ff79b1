/* SPDX-License-Identifier: MIT */
/*
 * kvmmctl: watch and tune kvmm.ko.
 *
 *     kvmmctl status                 module, pool, tiers, GPU ledger, counters
 *     kvmmctl regions                every live region
 *     kvmmctl top -d 1 -n 5          the same, refreshed, sorted by usage
 *     kvmmctl get pool_limit_bytes
 *     kvmmctl set pool_limit_bytes 64G
 *     kvmmctl metrics                Prometheus text
 *     kvmmctl format /dev/nvme1n1    make a block device a kvmm flash store
 *     kvmmctl park 4242 --to flash   park the GPU memory of a process under the shim
 *     kvmmctl --json status          any of them as JSON
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmmctl.h"

#define KVMMCTL_VERSION "0.1.0"

static const struct {
	const char *name;
	int (*fn)(const struct ctl *c, int argc, char **argv);
	const char *help;
} cmds[] = {
    {"status", cmd_status, "module, version, mode, pool, tiers, GPU budgets, counters"},
    {"regions", cmd_regions,
     "every live region: owner, size, chunk, bytes per tier; the LD_PRELOAD shim's with their "
     "rules"},
    {"top", cmd_top, "regions refreshed (--interval S, --count N, --sort KEY)"},
    {"get", cmd_get, "KNOB: print one sysfs knob"},
    {"set", cmd_set, "KNOB VALUE: change a knob (checked; the kernel's refusal explained)"},
    {"knobs", cmd_knobs, "every knob, whether it is writable, its unit and what it accepts"},
    {"remote", cmd_remote,
     "the remote tier (Redis/Valkey) of each process: hits, misses, bytes, latency, errors"},
    {"metrics", cmd_metrics, "everything in the Prometheus text format"},
    {"format", cmd_format, "PATH [--force]: write the store header onto a device for flash"},
    {"park", cmd_park,
     "PID [--tag T] [--to host|flash|discard]: release a shim process's GPU memory"},
    {"unpark", cmd_unpark, "PID [--tag T]: map it again at the same addresses"},
};

int ctl_no_module(const struct ctl *c)
{
	fprintf(stderr,
		"kvmmctl: kvmm.ko is not loaded (%s missing); load it with 'modprobe kvmm' "
		"('kvmmctl status' shows what is known)\n",
		c->sysfs);
	return CTL_NOMODULE;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: kvmmctl [--json] COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-8s %s\n", cmds[i].name, cmds[i].help);
	fprintf(f, "\noptions:\n  --json     JSON output\n  --help     this text\n"
		   "  --version  kvmmctl's version and ABI\n"
		   "\nexit status: 0 ok, 1 failed, 2 usage, 3 kvmm.ko not loaded.\n"
		   "environment: KVMMCTL_SYSFS (default /sys/kernel/kvmm), "
		   "KVMMCTL_DEV (default /dev/kvmm).\nSee kvmmctl(8).\n");
}

int main(int argc, char **argv)
{
	struct ctl c = {
	    .sysfs = getenv("KVMMCTL_SYSFS") ? getenv("KVMMCTL_SYSFS") : "/sys/kernel/kvmm",
	    .dev = getenv("KVMMCTL_DEV") ? getenv("KVMMCTL_DEV") : KVMM_DEVICE_PATH,
	};
	int i = 1;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--json") || !strcmp(argv[i], "-j")) {
			c.json = true;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return CTL_OK;
		} else if (!strcmp(argv[i], "--version")) {
			printf("kvmmctl %s (kvmm ABI %d)\n", KVMMCTL_VERSION, KVMM_ABI_VERSION);
			return CTL_OK;
		} else {
			fprintf(stderr, "kvmmctl: unknown option %s\n", argv[i]);
			usage(stderr);
			return CTL_USAGE;
		}
	}
	if (i == argc) {
		usage(stderr);
		return CTL_USAGE;
	}
	/* --json may also follow the command. */
	for (int j = i + 1; j < argc; j++) {
		if (!strcmp(argv[j], "--json")) {
			c.json = true;
			memmove(&argv[j], &argv[j + 1], (size_t)(argc - j) * sizeof(*argv));
			argc--;
			j--;
		}
	}
	for (size_t k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++) {
		if (!strcmp(argv[i], cmds[k].name))
			return cmds[k].fn(&c, argc - i, argv + i);
	}
	fprintf(stderr, "kvmmctl: unknown command '%s'\n", argv[i]);
	usage(stderr);
	return CTL_USAGE;
}
