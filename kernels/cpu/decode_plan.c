/*
 * The CPU decode's split/merge plan. Each item is a range of one entry's
 * cache tokens over every KV head. A thread walks an item in passes of one
 * softmax block (ATTN_BLOCK tokens) over a group of KV heads, so the K and
 * V rows it reads at any time lie in a few adjacent pages (one token's
 * heads are adjacent in both kvmm layouts) instead of one head's rows at a
 * stride of all the heads for the whole item: that pattern wastes most of
 * each DRAM page, and the hardware prefetcher, which stays inside a page,
 * cannot follow it.
 *
 *   heads    KV heads per pass: a pass's K and V rows and the next pass's,
 *            prefetched beside them, take at most half of L2 (so with
 *            2 MiB of L2 all 8 heads of a 128-dim f16 cache go in one pass).
 *   prefetch each head's rows one pass ahead, spread over the pass's
 *            scoring loop, into L2: inside a pass the rows of one head are
 *            a stride apart, which the hardware prefetcher does not follow.
 *   chunk    tokens per item: enough items for every thread to take
 *            ITEMS_PER_THREAD (uneven lengths still balance), never so few
 *            tokens that the item's partial state (written, then read by the
 *            merge) is more than 1/MERGE_SHARE of the K/V bytes it reads;
 *            a multiple of ATTN_BLOCK so every softmax block is whole.
 * Only the shape, the lengths, the thread count and the cache sizes go in.
 * docs/benchmarks.md has the measurements behind the pass shape (passes of
 * one block over all heads against longer passes and one head at a time).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "cpu.h"

#define ITEMS_PER_THREAD 4  /* items each thread can take */
#define MERGE_SHARE	 64 /* partials move at most 1/64 of the bytes an item reads */

static int64_t div_up(int64_t a, int64_t b)
{
	return (a + b - 1) / b;
}

/* KV heads per pass: two passes' K and V rows (this one, the prefetched next) in L2 / 2. */
static int plan_heads(const struct kvmm_attn_params *p, int64_t row_bytes,
		      const struct attn_caches *c)
{
	int64_t per_head = 2 * 2 * ATTN_BLOCK * row_bytes, h;

	if (c->l2 <= 0)
		return p->kv_heads;
	h = c->l2 / 2 / per_head;
	return h < 1 ? 1 : h > p->kv_heads ? p->kv_heads : (int)h;
}

static int32_t plan_chunk(const struct kvmm_attn_params *p, int threads, int64_t token_bytes)
{
	int64_t total = 0, longest = 0, partial, least, want;

	for (int b = 0; b < p->batch; b++) {
		total += p->seq_lens[b];
		longest = p->seq_lens[b] > longest ? p->seq_lens[b] : longest;
	}
	/* [q_heads][D] outputs plus a max and a sum per head, f32. */
	partial = (int64_t)p->q_heads * (p->head_dim + 2) * 4;
	least = div_up(partial * MERGE_SHARE, token_bytes);
	want = div_up(total, (int64_t)threads * ITEMS_PER_THREAD);
	want = want > least ? want : least;
	want = div_up(want, ATTN_BLOCK) * ATTN_BLOCK;
	if (want >= longest)
		return longest > 0 ? (int32_t)longest : 1;
	return (int32_t)want;
}

int attn_plan_make(const struct kvmm_attn_params *p, const struct kvmm_attn_cpu_opts *opts,
		   const struct attn_caches *caches, struct attn_plan *plan)
{
	int64_t row_bytes = (int64_t)p->head_dim * (int64_t)kvmm_attn_dtype_size(p->k.dtype);
	int64_t n = 0;
	int i = 0;

	*plan = (struct attn_plan){.threads = attn_threads(opts)};
	plan->heads = plan_heads(p, row_bytes, caches);
	plan->prefetch = ATTN_BLOCK;
	if (opts && opts->chunk_tokens > 0)
		plan->chunk = opts->chunk_tokens;
	else
		plan->chunk = plan_chunk(p, plan->threads, 2 * p->kv_heads * row_bytes);
	for (int b = 0; b < p->batch; b++)
		n += div_up(p->seq_lens[b], plan->chunk);
	if (n > INT32_MAX / 2)
		return -EINVAL;
	plan->items = malloc(sizeof(*plan->items) * (size_t)(n ? n : 1));
	plan->first = malloc(sizeof(*plan->first) * ((size_t)p->batch + 1));
	if (!plan->items || !plan->first) {
		attn_plan_free(plan);
		return -ENOMEM;
	}
	for (int b = 0; b < p->batch; b++) {
		plan->first[b] = i;
		for (int32_t s = 0; s < p->seq_lens[b]; s += plan->chunk) {
			int32_t e =
			    p->seq_lens[b] - s > plan->chunk ? s + plan->chunk : p->seq_lens[b];

			plan->items[i++] = (struct attn_item){b, s, e, -1};
		}
	}
	plan->first[p->batch] = i;
	plan->nitems = i;
	return 0;
}

void attn_plan_free(struct attn_plan *plan)
{
	free(plan->items);
	free(plan->first);
	plan->items = NULL;
	plan->first = NULL;
}
