/* SPDX-License-Identifier: MIT */
/*
 * A libkvmm KV cache that follows the simulation: every admission, step,
 * swap and completion of a kvmm manager is done for real on a host KV
 * cache, at a scaled-down shape (see real_scale()).
 */
#ifndef KVMM_BENCH_REAL_H
#define KVMM_BENCH_REAL_H

#include "sim.h"

struct real_config {
	struct sim_model model; /* full-scale shape */
	uint32_t chunk_bytes;	/* full-scale chunk */
	bool token_major;
	uint32_t scale; /* real bytes = simulated bytes / scale */
	uint32_t max_slots;
	uint32_t max_tokens;
	uint64_t budget_bytes;	  /* full scale */
	uint64_t dram_swap_bytes; /* full scale */
	uint32_t requests;
};

struct real_stats {
	const char *mode; /* "kernel" or "user" */
	uint64_t step_calls;
	double step_s, step_max_s; /* inside kvmm_kv_step */
	double swap_out_s, swap_in_s;
	uint64_t swap_outs, swap_ins;
	uint64_t flash_fallbacks;     /* flash swaps done to DRAM: the mode has no flash swap */
	char flash_fallback_why[400]; /* why the first one could not go to flash */
	uint64_t tokens_written, bytes_written;
	uint64_t verified_tokens, verify_errors;
	uint64_t peak_mapped_bytes; /* libkvmm's mapped_bytes, real (scaled-down) */
	int errors;
	char first_error[160];
};

struct real;

/*
 * The largest power of two <= @want that keeps the chunk at least a page
 * and a layer's K (or V) of one token at least 8 bytes at the scaled shape.
 */
uint32_t real_scale(const struct sim_model *m, uint32_t chunk_bytes, uint32_t want);

/* Opens libkvmm and creates the KV cache. 0 or a negative errno (with @why set). */
int real_open(const struct real_config *cfg, struct real **rp, char *why, int len);
/* The hooks for sim_run(). */
void real_backend(struct real *r, struct sim_backend *be);
void real_stats(struct real *r, struct real_stats *st);
void real_close(struct real *r);

#endif
