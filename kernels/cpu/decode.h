/* Internal to the CPU decode: one call's job, shared by decode.c and decode_tier.c. */
#ifndef KVMM_KERNELS_CPU_DECODE_H
#define KVMM_KERNELS_CPU_DECODE_H

#include <stdatomic.h>

#include "cpu.h"

struct attn_job {
	const struct kvmm_attn_params *p;
	const struct kvmm_attn_cpu_opts *opts;
	const float *q; /* [batch][q_heads][dim], times scale*log2(e) */
	struct attn_plan plan;
	struct attn_queue queue;
	int g;
	float *po, *pm, *pl; /* per item: [q_heads][dim], [q_heads], [q_heads] */
	void (*chunk)(const struct attn_chunk *c);
	atomic_int err; /* first error of any thread; 0 */
	atomic_int local, remote;
	atomic_llong wait_ns, compute_ns;
	/* tier only (decode_tier.c) */
	const struct kvmm_attn_tier *tier;
	void **ticket; /* [nitems] per range: 2 per item (K, V) */
	char *fetched; /* [nitems] 1: was not resident when the call began */
	int nfetched;
};

/* Bytes item i reads in K (which 0) or V (1): [*addr, *addr + *len). */
void attn_item_range(const struct attn_job *job, int i, int which, const char **addr, size_t *len);

/*
 * Tier (decode_tier.c). begin: fetch every item's ranges in plan order and
 * fill rank[] with the resident items first, then the others in plan
 * order. acquire/release bracket an item's compute; drop consumes the
 * tickets of an item that will not run.
 */
int attn_tier_begin(struct attn_job *job, int *rank);
int attn_tier_acquire(struct attn_job *job, int i);
void attn_tier_release(struct attn_job *job, int i);
void attn_tier_drop(struct attn_job *job, int i);
void attn_tier_end(struct attn_job *job);

#endif /* KVMM_KERNELS_CPU_DECODE_H */
