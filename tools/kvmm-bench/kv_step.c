/* SPDX-License-Identifier: MIT */
/*
 * kvmm-bench alloc, KV cache part: the time kvmm_kv_step() takes per
 * active slot in a decode loop, with 1, 16, 256 and 1024 slots, all
 * active. Every size does the same work: sequences grow by one token per
 * step, N sequences of 256Ki/N tokens, so the same 256 MiB is mapped in
 * the same chunks at every size (and the kernel's page zeroing costs the
 * same). Three variants: layer-major and token-major at 64 KiB chunks, and
 * token-major at 4 KiB chunks, where a step maps a chunk every 4 tokens. A budget is set, large
 * enough never to evict, so the policy's accounting runs on every growth. Flat means a step costs
 * O(slots it steps): nothing in it grows with the number of slots in the cache.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include <kvmm/kvmm.h>

#include "bench.h"

/* Every size does the same decode work: KV_STEP_SLOT_STEPS slot-steps, one
 * token each, so the same bytes are mapped (256 MiB) whatever the size. */
#define KV_STEP_SLOT_STEPS (256U << 10)

static const uint32_t kv_step_active[KV_STEP_POINTS] = {1, 16, 256, 1024};
#define KV_STEP_MAX 1024 /* the largest size */

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

/* A small model, @slots sequences of @tokens in @chunk chunks: growth is
 * cheap enough for the step's own work to show. */
static struct kvmm_kv_config kv_step_config(uint32_t layout, uint32_t chunk, uint32_t slots,
					    uint32_t tokens)
{
	struct kvmm_kv_config c = KVMM_KV_CONFIG_INIT;
	uint64_t token_bytes;

	c.layers = 2;
	c.kv_heads = 2;
	c.head_dim = 64;
	c.dtype_bytes = 2;
	c.max_slots = slots;
	c.max_tokens = tokens;
	c.chunk_bytes = chunk;
	c.layout = layout;
	/* Room for every slot plus a chunk per part: checked, never enforced. */
	token_bytes = 2ULL * c.layers * c.kv_heads * c.head_dim * c.dtype_bytes;
	c.budget_bytes = (uint64_t)slots * (tokens * token_bytes + 2ULL * c.layers * c.chunk_bytes);
	return c;
}

/* One decode round: every slot from 1 to @tokens, one token per step; ns spent in step. */
static int kv_step_round(struct kvmm_kv *kv, uint32_t n, uint32_t tokens, uint32_t *slots,
			 uint32_t *lens, uint64_t *ns)
{
	uint64_t t0 = now_ns();
	int ret = 0;

	for (uint32_t tok = 1; tok <= tokens && !ret; tok++) {
		for (uint32_t i = 0; i < n; i++)
			lens[i] = tok;
		ret = kvmm_kv_step(kv, n, slots, lens);
	}
	*ns = now_ns() - t0;
	/* The sequences end and their memory goes: the next round maps anew. */
	for (uint32_t i = 0; i < n && !ret; i++)
		ret = kvmm_kv_free_slot(kv, slots[i]);
	return ret ? ret : kvmm_kv_trim(kv, 0);
}

int kv_step_measure(struct kvmm_ctx *ctx, uint32_t layout, uint32_t chunk, int rounds,
		    struct kv_step_row *rows, struct progress *p, uint64_t *done, uint64_t total)
{
	struct kvmm_kv *kv[KV_STEP_POINTS] = {0};
	uint64_t best[KV_STEP_POINTS];
	uint32_t *slots = calloc(KV_STEP_MAX, sizeof(*slots));
	uint32_t *lens = calloc(KV_STEP_MAX, sizeof(*lens));
	int ret = slots && lens ? 0 : -ENOMEM;

	for (uint32_t i = 0; !ret && i < KV_STEP_MAX; i++)
		slots[i] = i;
	for (int k = 0; k < KV_STEP_POINTS && !ret; k++) {
		uint32_t n = kv_step_active[k];
		struct kvmm_kv_config c = kv_step_config(layout, chunk, n, KV_STEP_SLOT_STEPS / n);

		best[k] = UINT64_MAX;
		ret = kvmm_kv_create(ctx, &c, &kv[k]);
	}
	/* Round by round across the sizes, so each size sees the same load on
	 * a shared machine; the best round of each counts. */
	for (int r = 0; r < rounds && !ret; r++) {
		for (int k = 0; k < KV_STEP_POINTS && !ret; k++) {
			uint32_t n = kv_step_active[k];
			uint64_t ns;

			ret = kv_step_round(kv[k], n, KV_STEP_SLOT_STEPS / n, slots, lens, &ns);
			best[k] = ns < best[k] ? ns : best[k];
		}
		progress_update(p, ++*done, total, "rounds");
	}
	for (int k = 0; k < KV_STEP_POINTS; k++) {
		rows[k].active_slots = kv_step_active[k];
		rows[k].layout = layout;
		rows[k].chunk_bytes = chunk;
		rows[k].ns_per_slot = (double)best[k] / KV_STEP_SLOT_STEPS;
		if (kv[k])
			kvmm_kv_destroy(kv[k]);
	}
	free(slots);
	free(lens);
	return ret;
}
