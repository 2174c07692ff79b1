/* SPDX-License-Identifier: MIT */
/*
 * kvmm-bench alloc, KV cache part: the time kvmm_kv_step() takes per
 * active slot in a decode loop, with 1, 16, 256 and 1024 slots, all
 * active. Every size does the same work: sequences grow by one token per
 * step, N sequences of 256Ki/N tokens, so the same 256 MiB is mapped in
 * the same chunks at every size (and the kernel's page zeroing costs the
 * same). A budget is set, large enough never to evict, so the policy's
 * accounting runs on every growth. Flat means a step costs O(slots it
 * steps): nothing in it grows with the number of slots in the cache.
 *
 * Variants: layer-major and token-major at 64 KiB chunks; token-major at
 * 4 KiB chunks (a chunk every 4 tokens: growth at its cheapest, so the
 * step's own work weighs most); and token-major at 64 KiB with the memory
 * of ended sequences reused instead of released, where step maps nothing
 * after the first round: the core's own cost, in which a call's fixed
 * cost shows at one slot.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include <kvmm/kvmm.h>

#include "bench.h"

/* Every size does the same decode work: KV_STEP_SLOT_STEPS slot-steps, one
 * token each, so the same bytes are mapped (256 MiB) whatever the size. */
#define KV_STEP_SLOT_STEPS (256U << 10)
#define KV_STEP_MAX	   1024 /* the largest size */

static const uint32_t kv_step_active[KV_STEP_POINTS] = {1, 16, 256, 1024};

static const struct kv_step_variant {
	uint32_t layout, chunk;
	bool reuse; /* ended sequences' memory stays for the next round */
	const char *name;
} kv_step_variants[KV_STEP_VARIANTS] = {
    {KVMM_LAYOUT_LAYER_MAJOR, 64 << 10, false, "layer-major 64K"},
    {KVMM_LAYOUT_TOKEN_MAJOR, 64 << 10, false, "token-major 64K"},
    {KVMM_LAYOUT_TOKEN_MAJOR, 4 << 10, false, "token-major 4K"},
    {KVMM_LAYOUT_TOKEN_MAJOR, 64 << 10, true, "reused 64K"},
};

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

/* One decode round: every slot from 1 to @tokens, one token per step; ns
 * spent in step. The sequences end; unless @reuse their memory goes, so
 * the next round maps anew. */
static int kv_step_round(struct kvmm_kv *kv, uint32_t n, uint32_t tokens, bool reuse,
			 uint32_t *slots, uint32_t *lens, uint64_t *ns)
{
	uint64_t t0 = now_ns();
	int ret = 0;

	for (uint32_t tok = 1; tok <= tokens && !ret; tok++) {
		for (uint32_t i = 0; i < n; i++)
			lens[i] = tok;
		ret = kvmm_kv_step(kv, n, slots, lens);
	}
	*ns = now_ns() - t0;
	for (uint32_t i = 0; i < n && !ret; i++)
		ret = kvmm_kv_free_slot(kv, slots[i]);
	return ret || reuse ? ret : kvmm_kv_trim(kv, 0);
}

static int kv_step_variant(struct kvmm_ctx *ctx, const struct kv_step_variant *v, int rounds,
			   double *ns_per_slot, struct progress *p, uint64_t *done, uint64_t total)
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
		struct kvmm_kv_config c =
		    kv_step_config(v->layout, v->chunk, n, KV_STEP_SLOT_STEPS / n);

		best[k] = UINT64_MAX;
		ret = kvmm_kv_create(ctx, &c, &kv[k]);
	}
	/* Round by round across the sizes, so each size sees the same load on
	 * a shared machine; the best round of each counts. */
	for (int r = 0; r < rounds && !ret; r++) {
		for (int k = 0; k < KV_STEP_POINTS && !ret; k++) {
			uint32_t n = kv_step_active[k];
			uint64_t ns;

			ret = kv_step_round(kv[k], n, KV_STEP_SLOT_STEPS / n, v->reuse, slots, lens,
					    &ns);
			best[k] = ns < best[k] ? ns : best[k];
		}
		progress_update(p, ++*done, total, "rounds");
	}
	for (int k = 0; k < KV_STEP_POINTS; k++) {
		ns_per_slot[k] = (double)best[k] / KV_STEP_SLOT_STEPS;
		if (kv[k])
			kvmm_kv_destroy(kv[k]);
	}
	free(slots);
	free(lens);
	return ret;
}

int kv_step_run(struct kvmm_ctx *ctx, int rounds, bool quiet, struct kv_step_result *r)
{
	struct progress p;
	uint64_t done = 0;
	int ret = 0;

	r->rounds = rounds;
	progress_init(&p, "alloc kv step", quiet);
	for (int v = 0; v < KV_STEP_VARIANTS && !ret; v++)
		ret = kv_step_variant(ctx, &kv_step_variants[v], rounds, r->ns_per_slot[v], &p,
				      &done, (uint64_t)KV_STEP_VARIANTS * rounds);
	progress_end(&p);
	return ret;
}

/* Slowest size over fastest. */
static double kv_step_spread(const double *ns)
{
	double lo = ns[0], hi = ns[0];

	for (int k = 1; k < KV_STEP_POINTS; k++) {
		lo = ns[k] < lo ? ns[k] : lo;
		hi = ns[k] > hi ? ns[k] : hi;
	}
	return hi / lo;
}

void kv_step_print(FILE *f, const struct kv_step_result *r)
{
	fprintf(f,
		"\nkvmm_kv_step() per active slot, host cache of N slots, all active (2 layers x "
		"2 KV heads x 64, fp16, budget set): each sequence 256Ki/N tokens, one token per "
		"step, 256 MiB mapped at every N; best of %d rounds, ns per slot per step\n",
		r->rounds);
	fprintf(f, "%-8s", "slots");
	for (int v = 0; v < KV_STEP_VARIANTS; v++)
		fprintf(f, " %16s", kv_step_variants[v].name);
	fprintf(f, "\n");
	for (int k = 0; k < KV_STEP_POINTS; k++) {
		fprintf(f, "%-8u", kv_step_active[k]);
		for (int v = 0; v < KV_STEP_VARIANTS; v++)
			fprintf(f, " %16.1f", r->ns_per_slot[v][k]);
		fprintf(f, "\n");
	}
	fprintf(f, "%-8s", "max/min");
	for (int v = 0; v < KV_STEP_VARIANTS; v++)
		fprintf(f, " %15.2fx", kv_step_spread(r->ns_per_slot[v]));
	fprintf(f, "\ntarget: flat, at most 1.20x, where steps map memory; \"reused\" maps "
		   "nothing after round 1 (the core's own cost; at 1 slot a call's fixed "
		   "cost is all of it)\n");
}

void kv_step_json(struct jw *w, const struct kv_step_result *r)
{
	jw_arr(w, "kv_step");
	for (int v = 0; v < KV_STEP_VARIANTS; v++) {
		const struct kv_step_variant *kv = &kv_step_variants[v];

		for (int k = 0; k < KV_STEP_POINTS; k++) {
			jw_obj(w, NULL);
			jw_str(w, "layout", kv->layout ? "token-major" : "layer-major");
			jw_u64(w, "chunk_bytes", kv->chunk);
			jw_bool(w, "memory_reused", kv->reuse);
			jw_u64(w, "active_slots", kv_step_active[k]);
			jw_f64(w, "step_ns_per_slot", r->ns_per_slot[v][k]);
			jw_end(w);
		}
	}
	jw_end(w);
}
