/* SPDX-License-Identifier: MIT */
/*
 * kvmm-bench: one command for kvmm's benchmarks.
 *   main.c      subcommands and common options
 *   sysinfo.c   the machine, kernel and kvmm mode recorded with each result
 *   progress.c  progress lines on stderr for anything longer than 2 s
 *   micro.c     alloc, fault, swap, attn: the microbenchmark programs, run or wrapped
 *   kv_step.c   alloc's KV cache part: step() time per active slot
 *   serve/      the trace-driven serving simulator (serve/sim.h)
 */
#ifndef KVMM_BENCH_H
#define KVMM_BENCH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "../common/json.h"

struct kvmm_ctx;

struct bench_opts {
	bool json;
	bool quiet; /* no progress lines */
};

struct bench_sys {
	char cpu[128];
	int cores;
	uint64_t ram_bytes;
	char kernel[200];
	char date[32];	      /* UTC, ISO 8601 */
	char kvmm_module[64]; /* "loaded, version X" or "not loaded" */
	char kvmm_mode[16];   /* what libkvmm picks here: kernel or user */
};

void bench_sys_get(struct bench_sys *s);
void bench_sys_json(struct jw *w, const struct bench_sys *s);
void bench_sys_print(FILE *f, const struct bench_sys *s);

struct progress {
	const char *label;
	double start, last;
	bool tty, quiet, shown;
};

void progress_init(struct progress *p, const char *label, bool quiet);
/* Prints "label: done/total unit (N %), S s" once 2 s have passed, then every 0.5 s (tty) or 5 s.
 */
void progress_update(struct progress *p, uint64_t done, uint64_t total, const char *unit);
void progress_end(struct progress *p);

/* kv_step.c: kvmm_kv_step() ns per active slot, KV_STEP_VARIANTS caches
 * (layout, chunk size, memory reused or not) at KV_STEP_POINTS sizes. */
#define KV_STEP_POINTS	 4
#define KV_STEP_VARIANTS 4
struct kv_step_result {
	int rounds;
	double ns_per_slot[KV_STEP_VARIANTS][KV_STEP_POINTS];
};
int kv_step_run(struct kvmm_ctx *ctx, int rounds, bool quiet, struct kv_step_result *r);
void kv_step_print(FILE *f, const struct kv_step_result *r);
void kv_step_json(struct jw *w, const struct kv_step_result *r);

/* Subcommands; argv[0] is the subcommand's name. */
int bench_serve(const struct bench_opts *o, int argc, char **argv);
int bench_alloc(const struct bench_opts *o, int argc, char **argv);
int bench_fault(const struct bench_opts *o, int argc, char **argv);
int bench_swap(const struct bench_opts *o, int argc, char **argv);
int bench_attn(const struct bench_opts *o, int argc, char **argv);
int bench_all(const struct bench_opts *o, int argc, char **argv);

/* Directory of the running kvmm-bench, to find the programs it wraps. */
const char *bench_self_dir(void);

#endif
