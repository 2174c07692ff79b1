/* SPDX-License-Identifier: MIT */
/*
 * Chunks of a kvmm_kv slot in the remote tier. A chunk's payload is the
 * slot's tokens [c * chunk_tokens, (c + 1) * chunk_tokens) of every layer,
 * K then V, each token's heads and dims dense:
 *     [layer][K, V][token][head][dim]
 * the same bytes whichever layout (layer-major, token-major) the cache
 * has, so caches of either layout share chunks. Publish gathers from the
 * slot's tensors, fetch scatters a verified payload into them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "remote.h"

struct rm_kv {
	uint32_t layers;
	uint64_t row;	 /* bytes of one token of one layer's K or V */
	uint32_t tokens; /* per chunk */
	uint64_t first;	 /* chunk number of item 0 */
	uint32_t slot;
	struct kvmm_kv_tensor t[]; /* 2 * layers: layer l's K at 2l, V at 2l + 1 */
};

/* Where token @tok of tensor @t starts in @slot. */
static char *rm_kv_row(const struct kvmm_kv_tensor *t, uint32_t slot, uint64_t tok)
{
	return (char *)t->base + slot * t->slot_stride_bytes + tok * t->token_stride_bytes;
}

/* Publish: slot -> @out; fetch: @in -> slot (the other one NULL). */
static int rm_kv_copy(struct rm_item *it, uint8_t *out, const uint8_t *in)
{
	const struct rm_kv *k = it->b->arg;
	uint32_t slot = k->slot;
	uint64_t tok0 = (k->first + it->idx) * k->tokens;

	for (uint32_t p = 0; p < 2 * k->layers; p++) {
		const struct kvmm_kv_tensor *t = &k->t[p];

		if (t->token_stride_bytes == k->row) {
			char *row = rm_kv_row(t, slot, tok0);
			uint64_t len = k->row * k->tokens;

			if (out)
				memcpy(out, row, len), out += len;
			else
				memcpy(row, in, len), in += len;
			continue;
		}
		for (uint32_t j = 0; j < k->tokens; j++) {
			char *row = rm_kv_row(t, slot, tok0 + j);

			if (out)
				memcpy(out, row, k->row), out += k->row;
			else
				memcpy(row, in, k->row), in += k->row;
		}
	}
	return 0;
}

static int rm_kv_fill(struct rm_item *it, uint8_t *dst)
{
	return rm_kv_copy(it, dst, NULL);
}

static int rm_kv_deliver(struct rm_item *it, const uint8_t *src)
{
	return rm_kv_copy(it, NULL, src);
}

/* Fetch: the leading run of hits. Publish: chunks the store holds. */
static int rm_kv_result(struct rm_batch *b)
{
	int n = 0;

	for (uint32_t i = 0; i < b->n; i++) {
		if (b->items[i].put) {
			n += b->items[i].result >= 0;
		} else {
			if (b->items[i].result != 1)
				break;
			n++;
		}
	}
	return n;
}

static void rm_kv_release(struct rm_batch *b)
{
	free(b->arg);
}

/*
 * Checks that @kv matches the handle's layout and that @slot is active with
 * at least @tokens tokens (its seq_len), then takes its tensors.
 */
static int rm_kv_prepare(struct kvmm_remote *r, struct kvmm_kv *kv, uint32_t slot, uint64_t tokens,
			 struct rm_kv **kp)
{
	const struct kvmm_remote_layout *l = rm_layout(r);
	struct rm_kv *k;
	int err = 0;

	if (kv->cfg.layers != l->layers || kv->cfg.kv_heads != l->kv_heads ||
	    kv->cfg.head_dim != l->head_dim || kv->cfg.dtype_bytes != l->dtype_bytes ||
	    slot >= kv->cfg.max_slots || tokens > kv->cfg.max_tokens)
		return -EINVAL;
	if (kv->cfg.device != KVMM_DEVICE_HOST)
		return -EOPNOTSUPP;
	pthread_mutex_lock(&kv->lock);
	if (kv->slots[slot].state != KVMM_SLOT_ACTIVE)
		err = -EAGAIN;
	else if (kv->slots[slot].seq_len < tokens)
		err = -ERANGE;
	pthread_mutex_unlock(&kv->lock);
	if (err)
		return err;
	k = calloc(1, sizeof(*k) + 2 * (size_t)l->layers * sizeof(k->t[0]));
	if (!k)
		return -ENOMEM;
	k->layers = l->layers;
	k->row = (uint64_t)l->kv_heads * l->head_dim * l->dtype_bytes;
	k->tokens = l->chunk_tokens;
	k->slot = slot;
	for (uint32_t p = 0; p < 2 * l->layers && !err; p++) {
		err = kvmm_kv_tensor(kv, p / 2, p % 2 ? KVMM_V : KVMM_K, &k->t[p]);
		if (!err && (k->t[p].head_stride_bytes != (uint64_t)l->head_dim * l->dtype_bytes ||
			     k->t[p].dim_stride_bytes != l->dtype_bytes))
			err = -EINVAL; /* a token's heads must be dense */
	}
	if (err) {
		free(k);
		return err;
	}
	*kp = k;
	return 0;
}

static int rm_kv_batch(struct kvmm_remote *r, struct kvmm_kv *kv, uint32_t slot, bool put,
		       const struct kvmm_hash256 *chunks, size_t first, size_t n,
		       uint32_t budget_ms, struct kvmm_op **opp)
{
	const struct kvmm_remote_layout *l;
	struct rm_batch *b;
	struct rm_kv *k;
	int err;

	if (!r || !kv || !chunks || n > UINT32_MAX || first + n < first)
		return -EINVAL;
	l = rm_layout(r);
	err = rm_kv_prepare(r, kv, slot, (uint64_t)(first + n) * l->chunk_tokens, &k);
	if (err)
		return err;
	k->first = first;
	b = rm_batch_new(r, (uint32_t)n, budget_ms);
	if (!b) {
		free(k);
		return -ENOMEM;
	}
	b->arg = k;
	b->release = rm_kv_release;
	b->result = rm_kv_result;
	for (uint32_t i = 0; i < n; i++) {
		size_t c = first + i;

		rm_item_init(b, i, &chunks[c], c ? &chunks[c - 1] : NULL);
		b->items[i].put = put;
		b->items[i].len = k->row * 2 * k->layers * k->tokens;
		b->items[i].fill = rm_kv_fill;
		b->items[i].deliver = rm_kv_deliver;
	}
	return rm_batch_submit(b, opp);
}

int kvmm_remote_fetch_kv(struct kvmm_remote *r, struct kvmm_kv *kv, uint32_t slot,
			 const struct kvmm_hash256 *chunks, size_t first, size_t n,
			 uint32_t budget_ms, struct kvmm_op **opp)
{
	return rm_kv_batch(r, kv, slot, false, chunks, first, n, budget_ms, opp);
}

int kvmm_remote_publish_kv(struct kvmm_remote *r, struct kvmm_kv *kv, uint32_t slot,
			   const struct kvmm_hash256 *chunks, size_t first, size_t n,
			   uint32_t budget_ms, struct kvmm_op **opp)
{
	return rm_kv_batch(r, kv, slot, true, chunks, first, n, budget_ms, opp);
}
