/* SPDX-License-Identifier: MIT */
/*
 * The serving simulator behind `kvmm-bench serve`.
 *
 *   trace.c    seeded request traces: Poisson arrivals, prompt and output
 *              lengths from fixed, uniform or lognormal distributions
 *   model.c    KV-cache shapes of known models (bytes per token)
 *   manager.c  how many bytes each memory manager holds for a sequence
 *   sched.c    iteration-level continuous batching over one manager and a
 *              memory budget, with preemption (recompute or swap)
 *   real.c     the same decisions carried out on a libkvmm KV cache
 *   serve.c    the command line and one run per manager
 *   report.c   the tables and the JSON document
 *   plot.c     time series and gnuplot scripts
 *
 * All sizes are bytes at the model's full scale; simulated time is in
 * seconds from a simple cost model (sched.c); real time is measured.
 */
#ifndef KVMM_BENCH_SIM_H
#define KVMM_BENCH_SIM_H

#include <stdbool.h>
#include <stdint.h>

/* ------------------------------------------------------------------ trace */

enum sim_dist_kind { SIM_DIST_FIXED, SIM_DIST_UNIFORM, SIM_DIST_LOGNORMAL };

/*
 * A length distribution in tokens. fixed: a. uniform: integers in [a, b].
 * lognormal: median a, sigma b (of the underlying normal), clipped to
 * [lo, hi].
 */
struct sim_dist {
	enum sim_dist_kind kind;
	double a, b;
	uint32_t lo, hi;
};

struct sim_trace_config {
	uint64_t seed;
	uint32_t requests;
	double rate_per_s; /* Poisson arrival rate; 0: everything arrives at t = 0 */
	struct sim_dist prompt, output;
	uint32_t max_context; /* the preset's context limit in tokens */
	/*
	 * Shared prefixes: each prompt starts with one of share_groups
	 * prefixes of share_tokens tokens (drawn uniformly; 1: a system
	 * prompt every request has), followed by its own prompt. 0: none.
	 */
	uint32_t share_tokens, share_groups;
};

struct sim_request {
	uint32_t id;
	double arrival_s;
	uint32_t prompt_tokens; /* the shared prefix included */
	uint32_t output_tokens; /* tokens generated, >= 1 */
	uint32_t share_tokens;	/* leading tokens shared with the group's other requests */
	uint32_t share_group;
};

/*
 * Fills @cfg with a named preset (chat, long-context, batch-offline,
 * system-prompt, few-shot); -1 if unknown.
 */
int sim_trace_preset(const char *name, struct sim_trace_config *cfg);
/* "fixed:N", "uniform:A:B", "lognormal:MEDIAN:SIGMA[:LO:HI]"; -1 if malformed. */
int sim_dist_parse(const char *s, struct sim_dist *d);
/* Writes a description such as "lognormal(median 400, sigma 1.0) in [8, 6144]". */
void sim_dist_describe(const struct sim_dist *d, char *buf, int len);
/* Generates cfg->requests requests sorted by arrival; returns malloc'ed array or NULL. */
struct sim_request *sim_trace_generate(const struct sim_trace_config *cfg);

/* ------------------------------------------------------------------ model */

struct sim_model {
	char name[32];
	uint32_t layers, kv_heads, head_dim, dtype_bytes;
};

/* Known names: llama-3-8b, llama-3-70b-tp8, mistral-7b, qwen2.5-7b. */
int sim_model_find(const char *name, struct sim_model *m);
/* "LAYERS:KV_HEADS:HEAD_DIM:DTYPE_BYTES"; -1 if malformed. */
int sim_model_parse(const char *s, struct sim_model *m);
/* Bytes of one token over all layers, K and V. */
uint64_t sim_model_token_bytes(const struct sim_model *m);
const char *sim_model_list(void);

/* ---------------------------------------------------------------- manager */

enum sim_manager_kind {
	SIM_STATIC,	/* reserves max_context tokens per request at admission */
	SIM_PAGED,	/* ideal paged allocator: blocks of block_tokens tokens */
	SIM_KVMM_LAYER, /* kvmm layer-major: 2*layers regions, chunk-granular per slot */
	SIM_KVMM_TOKEN, /* kvmm token-major: one region per slot, chunk-granular */
};

struct sim_manager {
	enum sim_manager_kind kind;
	uint32_t block_tokens; /* SIM_PAGED */
	uint32_t chunk_bytes;  /* SIM_KVMM_* */
	uint32_t max_context;  /* SIM_STATIC: tokens reserved per request */
	/*
	 * Prefix sharing (paged: prefix caching's shared blocks; kvmm: the
	 * same physical chunks mapped into every request's range): the
	 * whole units of a shared prefix are held once per group, and kept
	 * as a cache while memory allows once no request uses them.
	 */
	bool share;
};

/* Bytes @mgr holds for a sequence of @tokens tokens of model @m. */
uint64_t sim_manager_bytes(const struct sim_manager *mgr, const struct sim_model *m,
			   uint64_t tokens);
/*
 * Of a shared prefix of @tokens tokens, the bytes @mgr can share (whole
 * blocks or chunks; the partial unit at its end is each request's own)
 * and, in *@saved, the prefill tokens a request that finds them skips.
 */
uint64_t sim_manager_shared_bytes(const struct sim_manager *mgr, const struct sim_model *m,
				  uint64_t tokens, uint64_t *saved);
/* "static", "paged-16", "kvmm-layer-2MiB", "kvmm-token-2MiB", "+prefix" when sharing. */
void sim_manager_name(const struct sim_manager *mgr, char *buf, int len);
/* Whether the manager swaps preempted requests (kvmm) or recomputes them. */
bool sim_manager_swaps(const struct sim_manager *mgr);

/* --------------------------------------------------------------- schedule */

struct sim_costs {
	double iter_base_s;	/* fixed time of one decode iteration */
	double hbm_bytes_per_s; /* KV bytes read per second by decode */
	double prefill_tok_per_s;
	double dram_bytes_per_s;  /* swap bandwidth to and from DRAM */
	double flash_bytes_per_s; /* swap bandwidth to and from flash */
};

struct sim_config {
	struct sim_model model;
	struct sim_manager mgr;
	uint64_t budget_bytes;	     /* fast-tier (GPU) memory for the KV cache */
	uint64_t dram_swap_bytes;    /* DRAM for swapped-out requests; past it, flash */
	uint32_t max_batch;	     /* running requests at most */
	uint32_t max_prefill_tokens; /* prompt tokens admitted per iteration at most */
	uint32_t max_context;	     /* tokens per request at most (prompt + output) */
	struct sim_costs costs;
	uint32_t sample_every; /* record a time-series sample every N iterations (0: none) */
};

/* Hooks through which a real KV cache follows the simulation (real.c). */
struct sim_backend {
	void *ctx;
	/* A request was admitted (or resumed after recompute) with @tokens tokens. */
	int (*admit)(void *ctx, uint32_t req, uint32_t tokens);
	/* One iteration: these requests now hold these token counts. */
	int (*step)(void *ctx, uint32_t n, const uint32_t *reqs, const uint32_t *tokens);
	void (*finish)(void *ctx, uint32_t req);
	/* Preempted and dropped for recompute (static, paged). */
	void (*drop)(void *ctx, uint32_t req);
	/* Swapped out to DRAM (flash false) or flash, and back in. */
	int (*swap_out)(void *ctx, uint32_t req, bool flash);
	int (*swap_in)(void *ctx, uint32_t req);
};

struct sim_sample {
	double t_s;
	uint32_t running;
	uint64_t held_bytes, used_bytes;
};

struct sim_result {
	uint32_t requests, finished;
	uint64_t iterations;
	uint32_t peak_running;
	double mean_running; /* over iterations with work */
	uint64_t peak_held_bytes;
	double waste_mean_pct; /* (held - used) / held, mean over iterations */
	double waste_p99_pct;  /* 99th percentile over iterations */
	uint64_t preemptions;
	uint64_t recomputed_tokens;    /* prefill redone after preemption (recompute managers) */
	uint64_t prefill_tokens;       /* prompt tokens computed at first admission */
	uint64_t prefill_saved_tokens; /* prompt tokens found shared and not computed */
	uint64_t prefix_hits, prefix_misses; /* first admissions with a shared prefix */
	uint64_t prefix_evictions;	     /* cached prefixes dropped for room */
	uint64_t swap_out_dram_bytes, swap_in_dram_bytes;
	uint64_t swap_out_flash_bytes, swap_in_flash_bytes;
	uint64_t swap_outs_dram, swap_outs_flash;
	double swap_time_s;	    /* simulated time spent swapping */
	double recompute_time_s;    /* simulated time spent recomputing */
	double swap_as_recompute_s; /* what recomputing the swapped requests would have cost */
	uint64_t peak_dram_swap_bytes, peak_flash_swap_bytes;
	uint64_t output_tokens;
	double sim_time_s;
	double throughput_tok_s; /* output tokens per simulated second */
	double mean_latency_s;	 /* arrival to last token */
	int backend_errors;	 /* hook calls that failed */
	uint32_t nr_samples;
	struct sim_sample *samples; /* malloc'ed; sim_result_free() */
};

/* Progress callback: @done of @total requests finished. */
typedef void (*sim_progress_fn)(void *arg, uint32_t done, uint32_t total);

/*
 * Runs the trace through the scheduler. @be may be NULL (accounting only).
 * Return: 0, or -EINVAL when a request can never fit the budget alone.
 */
int sim_run(const struct sim_config *cfg, const struct sim_request *reqs, uint32_t n,
	    const struct sim_backend *be, sim_progress_fn progress, void *parg,
	    struct sim_result *res);
void sim_result_free(struct sim_result *res);

#endif
