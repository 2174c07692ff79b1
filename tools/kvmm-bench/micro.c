/* SPDX-License-Identifier: MIT */
/*
 * kvmm-bench alloc, fault, swap, attn and all. alloc runs here (libkvmm;
 * its KV cache step part is kv_step.c);
 * the others run the programs that measure them: kvmm-bench-swap and
 * kvmm-bench-attn beside this binary (or in PATH), and bench_fault of the
 * kvmm.ko test suite where the module is loaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <kvmm/kvmm.h>
#include <linux/kvmm.h>

#include "../common/fmt.h"
#include "bench.h"

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------ alloc */

struct alloc_row {
	uint32_t chunk_bytes;
	double ensure_gbs, discard_gbs, ensure_us_per_chunk;
};

static int alloc_one(struct kvmm_ctx *ctx, uint64_t bytes, uint32_t chunk, int rounds,
		     struct alloc_row *row, struct progress *p, int *done, int total)
{
	struct kvmm_region_config rc = KVMM_REGION_CONFIG_INIT;
	struct kvmm_region *r;
	double best_e = 1e30, best_d = 1e30;
	int ret;

	rc.bytes = bytes;
	rc.chunk_bytes = chunk;
	ret = kvmm_region_create(ctx, &rc, &r);
	if (ret)
		return ret;
	for (int i = 0; i < rounds && !ret; i++) {
		double t0 = now_s(), t1;

		ret = kvmm_region_ensure(r, 0, bytes);
		t1 = now_s();
		if (!ret)
			ret = kvmm_region_discard(r, 0, bytes);
		best_e = t1 - t0 < best_e ? t1 - t0 : best_e;
		best_d = now_s() - t1 < best_d ? now_s() - t1 : best_d;
		progress_update(p, (uint64_t)++ * done, (uint64_t)total, "rounds");
	}
	kvmm_region_destroy(r);
	row->chunk_bytes = chunk;
	row->ensure_gbs = (double)bytes / best_e / 1e9;
	row->discard_gbs = (double)bytes / best_d / 1e9;
	row->ensure_us_per_chunk = best_e / ((double)bytes / chunk) * 1e6;
	return ret;
}

/* Anonymous memory touched a page at a time: what a plain allocation costs. */
static double anon_gbs(uint64_t bytes, int rounds)
{
	double best = 1e30;

	for (int i = 0; i < rounds; i++) {
		char *m =
		    mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		double t0 = now_s();

		if (m == MAP_FAILED)
			return 0;
		for (uint64_t o = 0; o < bytes; o += 4096)
			m[o] = 1;
		best = now_s() - t0 < best ? now_s() - t0 : best;
		munmap(m, bytes);
	}
	return (double)bytes / best / 1e9;
}

int bench_alloc(const struct bench_opts *o, int argc, char **argv)
{
	static const struct option lo[] = {{"bytes", 1, 0, 'b'}, {"rounds", 1, 0, 'r'}, {0}};
	static const uint32_t chunks[] = {4096, 65536, 2u << 20};
	struct alloc_row rows[3];
	struct kv_step_result steps;
	struct kvmm_config kc = KVMM_CONFIG_INIT;
	struct kvmm_ctx *ctx;
	struct bench_sys sys;
	struct progress p;
	uint64_t bytes = 256ULL << 20, v;
	int rounds = 3, c, done = 0, ret;
	double anon;
	char b[32];

	optind = 1;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (c == 'b' && !parse_bytes(optarg, &v) && v >= (2u << 20) && !(v % (2u << 20))) {
			bytes = v;
		} else if (c == 'r' && !parse_u64(optarg, &v) && v >= 1 && v <= 100) {
			rounds = (int)v;
		} else {
			fprintf(stderr, "usage: kvmm-bench alloc [--bytes N (multiple of 2M)] "
					"[--rounds N]\n");
			return 2;
		}
	}
	ret = kvmm_open(&ctx, &kc);
	if (ret) {
		fprintf(stderr, "kvmm-bench alloc: kvmm_open: %s\n", kvmm_strerror(ret));
		return 1;
	}
	bench_sys_get(&sys);
	progress_init(&p, "alloc", o->quiet);
	for (int i = 0; i < 3 && !ret; i++)
		ret = alloc_one(ctx, bytes, chunks[i], rounds, &rows[i], &p, &done, 3 * rounds);
	progress_end(&p);
	anon = anon_gbs(bytes, rounds);
	if (!ret)
		ret = kv_step_run(ctx, rounds, o->quiet, &steps);
	if (ret) {
		fprintf(stderr, "kvmm-bench alloc: %s\n", kvmm_strerror(ret));
		kvmm_close(ctx);
		return 1;
	}
	if (o->json) {
		struct jw w;

		jw_init(&w, stdout);
		jw_obj(&w, NULL);
		jw_str(&w, "benchmark", "alloc");
		bench_sys_json(&w, &sys);
		jw_obj(&w, "parameters");
		jw_str(&w, "mode", kvmm_mode(ctx) == KVMM_MODE_KERNEL ? "kernel" : "user");
		jw_u64(&w, "region_bytes", bytes);
		jw_u64(&w, "rounds", (uint64_t)rounds);
		jw_end(&w);
		jw_arr(&w, "results");
		for (int i = 0; i < 3; i++) {
			jw_obj(&w, NULL);
			jw_u64(&w, "chunk_bytes", rows[i].chunk_bytes);
			jw_f64(&w, "ensure_gb_per_s", rows[i].ensure_gbs);
			jw_f64(&w, "ensure_us_per_chunk", rows[i].ensure_us_per_chunk);
			jw_f64(&w, "discard_gb_per_s", rows[i].discard_gbs);
			jw_end(&w);
		}
		jw_end(&w);
		jw_f64(&w, "anonymous_touch_gb_per_s", anon);
		kv_step_json(&w, &steps);
		jw_end(&w);
	} else {
		printf("kvmm-bench alloc: %s region, libkvmm %s mode, best of %d rounds\n",
		       fmt_bytes(b, sizeof(b), bytes),
		       kvmm_mode(ctx) == KVMM_MODE_KERNEL ? "kernel" : "user", rounds);
		bench_sys_print(stdout, &sys);
		printf("\n%-10s %12s %14s %13s\n", "chunk", "ensure GB/s", "ensure us/chunk",
		       "discard GB/s");
		for (int i = 0; i < 3; i++)
			printf("%-10s %12.2f %14.1f %13.2f\n",
			       fmt_bytes(b, sizeof(b), rows[i].chunk_bytes), rows[i].ensure_gbs,
			       rows[i].ensure_us_per_chunk, rows[i].discard_gbs);
		printf("anonymous memory touched page by page: %.2f GB/s\n", anon);
		kv_step_print(stdout, &steps);
	}
	kvmm_close(ctx);
	return 0;
}

/* --------------------------------------------------------------- wrappers */

/* The first of @names that exists and is executable, in @dirs then PATH. */
static const char *find_prog(const char *name, const char *const *extra, char *buf, size_t len)
{
	const char *path = getenv("PATH");

	snprintf(buf, len, "%s/%s", bench_self_dir(), name);
	if (!access(buf, X_OK))
		return buf;
	/* In the build tree: build/bin/kvmm-bench beside build/tools/<name>. */
	snprintf(buf, len, "%s/../tools/%s", bench_self_dir(), name);
	if (!access(buf, X_OK))
		return buf;
	for (; extra && *extra; extra++) {
		snprintf(buf, len, "%s", *extra);
		if (!access(buf, X_OK))
			return buf;
	}
	while (path && *path) {
		size_t n = strcspn(path, ":");

		snprintf(buf, len, "%.*s/%s", (int)n, path, name);
		if (n && !access(buf, X_OK))
			return buf;
		path += n + (path[n] == ':');
	}
	return NULL;
}

static void skipped(const struct bench_opts *o, const char *bench, const char *why)
{
	if (o->json) {
		struct bench_sys sys;
		struct jw w;

		bench_sys_get(&sys);
		jw_init(&w, stdout);
		jw_obj(&w, NULL);
		jw_str(&w, "benchmark", bench);
		bench_sys_json(&w, &sys);
		jw_bool(&w, "skipped", true);
		jw_str(&w, "reason", why);
		jw_end(&w);
	} else {
		printf("kvmm-bench %s: skipped: %s\n", bench, why);
	}
}

/*
 * Runs @prog with @argv (its --json added in JSON mode). Human mode: the
 * machine line, then its output as it comes. JSON mode: its document
 * wrapped with the machine and the command.
 */
static int wrap(const struct bench_opts *o, const char *bench, const char *prog, int argc,
		char **argv, bool pass_json)
{
	char **av = calloc((size_t)argc + 3, sizeof(*av));
	struct bench_sys sys;
	int pipefd[2], status, n = 0;
	char *out = NULL;
	size_t len = 0, cap = 0;
	pid_t pid;

	if (!av)
		return 1;
	av[n++] = (char *)prog;
	for (int i = 1; i < argc; i++)
		av[n++] = argv[i];
	if (o->json && pass_json)
		av[n++] = "--json";
	bench_sys_get(&sys);
	if (!o->json) {
		printf("kvmm-bench %s: running %s", bench, prog);
		for (int i = 1; i < argc; i++)
			printf(" %s", argv[i]);
		printf("\n");
		bench_sys_print(stdout, &sys);
		fflush(stdout);
	}
	if (o->json && pipe(pipefd)) {
		free(av);
		return 1;
	}
	pid = fork();
	if (pid == 0) {
		if (o->json) {
			dup2(pipefd[1], STDOUT_FILENO);
			close(pipefd[0]);
			close(pipefd[1]);
		}
		execv(prog, av);
		fprintf(stderr, "kvmm-bench %s: %s: %s\n", bench, prog, strerror(errno));
		_exit(127);
	}
	free(av);
	if (pid < 0)
		return 1;
	if (o->json) {
		char buf[4096];
		ssize_t r;

		close(pipefd[1]);
		while ((r = read(pipefd[0], buf, sizeof(buf))) > 0) {
			if (len + (size_t)r + 1 > cap) {
				char *p = realloc(out, cap = 2 * (len + (size_t)r + 1));

				if (!p)
					break;
				out = p;
			}
			memcpy(out + len, buf, (size_t)r);
			len += (size_t)r;
		}
		close(pipefd[0]);
	}
	waitpid(pid, &status, 0);
	if (o->json) {
		struct jw w;

		if (out)
			out[len] = 0;
		jw_init(&w, stdout);
		jw_obj(&w, NULL);
		jw_str(&w, "benchmark", bench);
		bench_sys_json(&w, &sys);
		jw_str(&w, "program", prog);
		jw_arr(&w, "arguments");
		for (int i = 1; i < argc; i++)
			jw_str(&w, NULL, argv[i]);
		jw_end(&w);
		jw_i64(&w, "exit_status", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		if (out && len && pass_json)
			jw_raw(&w, "result", out);
		else
			jw_str(&w, "output", out ? out : "");
		jw_end(&w);
		free(out);
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int bench_fault(const struct bench_opts *o, int argc, char **argv)
{
	static const char *const where[] = {"/bench/bench_fault", NULL};
	char buf[4096], alt[4096];
	const char *prog;

	if (access(KVMM_DEVICE_PATH, F_OK)) {
		skipped(o, "fault",
			"needs kvmm.ko loaded (/dev/kvmm); on a machine that cannot load it, "
			"'make bench-kmod' runs this benchmark in QEMU");
		return 0;
	}
	snprintf(alt, sizeof(alt), "%s/../kmod/bench_fault", bench_self_dir());
	prog = find_prog("bench_fault", where, buf, sizeof(buf));
	if (!prog && !access(alt, X_OK))
		prog = alt;
	if (!prog) {
		skipped(o, "fault", "bench_fault not built ('make kmod-tests' builds it)");
		return 0;
	}
	return wrap(o, "fault", prog, argc, argv, false);
}

int bench_swap(const struct bench_opts *o, int argc, char **argv)
{
	char buf[4096];
	const char *prog = find_prog("kvmm-bench-swap", NULL, buf, sizeof(buf));

	if (!prog) {
		skipped(o, "swap", "kvmm-bench-swap not found beside kvmm-bench or in PATH");
		return 0;
	}
	return wrap(o, "swap", prog, argc, argv, true);
}

int bench_attn(const struct bench_opts *o, int argc, char **argv)
{
	char buf[4096];
	const char *prog = find_prog("kvmm-bench-attn", NULL, buf, sizeof(buf));

	if (!prog) {
		skipped(o, "attn", "kvmm-bench-attn not found beside kvmm-bench or in PATH");
		return 0;
	}
	return wrap(o, "attn", prog, argc, argv, true);
}

/* Runs one benchmark with its stdout in a temporary file; returns the text (malloc'ed). */
static char *captured(int (*fn)(const struct bench_opts *, int, char **),
		      const struct bench_opts *o, const char *name, int *rc)
{
	char *av[] = {(char *)name, NULL}, *text = NULL;
	FILE *tmp = tmpfile();
	int saved;
	long len;

	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	if (!tmp || saved < 0) {
		*rc = 1;
		if (tmp)
			fclose(tmp);
		return NULL;
	}
	dup2(fileno(tmp), STDOUT_FILENO);
	*rc = fn(o, 1, av);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	len = ftell(tmp);
	if (len > 0 && (text = calloc(1, (size_t)len + 1))) {
		rewind(tmp);
		if (fread(text, 1, (size_t)len, tmp) != (size_t)len)
			text[0] = 0;
	}
	fclose(tmp);
	return text;
}

int bench_all(const struct bench_opts *o, int argc, char **argv)
{
	static int (*const fns[])(const struct bench_opts *, int, char **) = {
	    bench_serve, bench_alloc, bench_fault, bench_swap, bench_attn};
	static const char *const names[] = {"serve", "alloc", "fault", "swap", "attn"};
	struct jw w;
	int failed = 0;

	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: kvmm-bench all   (each benchmark with its defaults)\n");
		return 2;
	}
	if (o->json) {
		jw_init(&w, stdout);
		jw_arr(&w, NULL);
	}
	for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
		int rc = 0;

		if (!o->quiet)
			fprintf(stderr, "kvmm-bench all: %s\n", names[i]);
		if (o->json) {
			/* Each result is one array element, or an object saying it failed. */
			char *text = captured(fns[i], o, names[i], &rc);

			if (text && text[0] && !rc) {
				jw_raw(&w, NULL, text);
			} else {
				jw_obj(&w, NULL);
				jw_str(&w, "benchmark", names[i]);
				jw_i64(&w, "exit_status", rc);
				jw_str(&w, "output", text ? text : "");
				jw_end(&w);
			}
			free(text);
		} else {
			if (i)
				printf("\n");
			fflush(stdout);
			rc = fns[i](o, 1, (char *[]){(char *)names[i], NULL});
			fflush(stdout);
		}
		if (rc) {
			failed++;
			fprintf(stderr, "kvmm-bench all: %s failed (exit %d)\n", names[i], rc);
		}
	}
	if (o->json)
		jw_end(&w);
	return failed ? 1 : 0;
}
