/* SPDX-License-Identifier: MIT */
/*
 * kvmm-bench: kvmm's benchmarks behind one command.
 *
 *     kvmm-bench serve            serving simulator: managers compared on one trace
 *     kvmm-bench alloc            libkvmm region ensure/discard and KV step throughput
 *     kvmm-bench fault            first-touch faults of kvmm.ko (needs the module)
 *     kvmm-bench swap             flash swap throughput (kvmm-bench-swap)
 *     kvmm-bench attn             attention kernels (kvmm-bench-attn)
 *     kvmm-bench all              all of them, as in docs/benchmarks.md
 *     kvmm-bench --json serve     any of them as JSON
 */
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

static const struct {
	const char *name;
	int (*fn)(const struct bench_opts *o, int argc, char **argv);
	const char *help;
} cmds[] = {
    {"serve", bench_serve, "trace-driven serving simulator (kvmm-bench serve --help)"},
    {"alloc", bench_alloc, "libkvmm: region ensure/discard and KV cache step throughput"},
    {"fault", bench_fault, "kvmm.ko first-touch faults against anonymous memory"},
    {"swap", bench_swap, "flash tier swap throughput (wraps kvmm-bench-swap)"},
    {"attn", bench_attn, "attention kernels (wraps kvmm-bench-attn)"},
    {"all", bench_all, "every benchmark above"},
};

const char *bench_self_dir(void)
{
	static char dir[PATH_MAX];
	ssize_t n;

	if (dir[0])
		return dir;
	n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
	if (n <= 0) {
		snprintf(dir, sizeof(dir), ".");
		return dir;
	}
	dir[n] = 0;
	return dirname(dir);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: kvmm-bench [--json] [--quiet] COMMAND [OPTIONS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-6s %s\n", cmds[i].name, cmds[i].help);
	fprintf(f, "\nEvery result records the machine, kernel, kvmm mode and parameters.\n"
		   "See kvmm-bench(1).\n");
}

int main(int argc, char **argv)
{
	struct bench_opts o = {0};
	int i = 1;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--json")) {
			o.json = true;
		} else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) {
			o.quiet = true;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "kvmm-bench: unknown option %s\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (i == argc) {
		usage(stderr);
		return 2;
	}
	/* --json and --quiet may also follow the command. */
	for (int j = i + 1; j < argc; j++) {
		bool json = !strcmp(argv[j], "--json");

		if (json || !strcmp(argv[j], "--quiet")) {
			*(json ? &o.json : &o.quiet) = true;
			memmove(&argv[j], &argv[j + 1], (size_t)(argc - j) * sizeof(*argv));
			argc--;
			j--;
		}
	}
	for (size_t k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++) {
		if (!strcmp(argv[i], cmds[k].name))
			return cmds[k].fn(&o, argc - i, argv + i);
	}
	fprintf(stderr, "kvmm-bench: unknown command '%s'\n", argv[i]);
	usage(stderr);
	return 2;
}
