/* SPDX-License-Identifier: MIT */
/*
 * KV cache: layers x {K,V} as plain strided tensors over host regions,
 * mapped chunk by chunk as sequences grow (vAttention without a GPU yet).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cuda_kv.h"
#include "kv.h"

static int kvmm_kv_check(const struct kvmm_ctx *ctx, struct kvmm_kv_config *c)
{
	if (!c->layers || !c->kv_heads || !c->head_dim || !c->max_slots || !c->max_tokens)
		return -EINVAL;
	if (c->dtype_bytes != 1 && c->dtype_bytes != 2 && c->dtype_bytes != 4)
		return -EINVAL;
	if (c->device != KVMM_DEVICE_HOST || c->device_index)
		return -EINVAL;
	if (!c->chunk_bytes)
		c->chunk_bytes = ctx->chunk_bytes;
	if (c->chunk_bytes < ctx->page_size || c->chunk_bytes > KVMM_CHUNK_MAX ||
	    (c->chunk_bytes & (c->chunk_bytes - 1)))
		return -EINVAL;
	if (c->layout > KVMM_LAYOUT_TOKEN_MAJOR || (c->flags & ~KVMM_KV_AUTO_SWAP))
		return -EINVAL;
	if (c->evict_cb && !(c->flags & KVMM_KV_AUTO_SWAP))
		return -EINVAL;
	return 0;
}

int kvmm_kv_geometry(const struct kvmm_kv_config *c, uint64_t chunk, struct kvmm_kv_geom *g)
{
	bool lm = c->layout == KVMM_LAYOUT_LAYER_MAJOR;
	uint64_t v;

	g->elem_tok = (uint64_t)c->kv_heads * c->head_dim * c->dtype_bytes;
	g->nparts = lm ? 2 * c->layers : 1;
	g->nr_regions = lm ? 2 * c->layers : c->max_slots;
	if (__builtin_mul_overflow(g->elem_tok, lm ? 1 : 2ULL * c->layers, &g->part_tok))
		return -EOVERFLOW;
	if (__builtin_mul_overflow(g->part_tok, (uint64_t)c->max_tokens, &v) || v > (1ULL << 40))
		return -EOVERFLOW;
	g->slot_stride = kvmm_round_up(v, chunk);
	if (__builtin_mul_overflow(g->slot_stride, lm ? (uint64_t)c->max_slots : 1,
				   &g->region_bytes) ||
	    g->region_bytes > (1ULL << 40))
		return -EOVERFLOW;
	if (__builtin_mul_overflow(g->region_bytes, (uint64_t)g->nr_regions, &g->va_bytes) ||
	    g->va_bytes > (1ULL << 46))
		return -EOVERFLOW;
	return 0;
}

/* One PROT_NONE reservation, chunk aligned; regions are mapped into it. */
static int kvmm_kv_reserve(struct kvmm_kv *kv)
{
	uint64_t extra = kv->chunk_bytes;
	char *p = mmap(NULL, kv->geom.va_bytes + extra, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint64_t head;

	if (p == MAP_FAILED)
		return -ENOMEM;
	head = kvmm_round_up((uintptr_t)p, kv->chunk_bytes) - (uintptr_t)p;
	if (head)
		munmap(p, head);
	if (extra - head)
		munmap(p + head + kv->geom.va_bytes, extra - head);
	kv->va = p + head;
	return 0;
}

static void kvmm_kv_free(struct kvmm_kv *kv)
{
	for (uint32_t i = 0; kv->regions && i < kv->geom.nr_regions; i++) {
		if (kv->regions[i])
			kvmm_region_destroy(kv->regions[i]);
	}
	for (uint32_t s = 0; kv->slots && s < kv->cfg.max_slots; s++)
		free(kv->slots[s].host_copy);
	if (kv->va)
		munmap(kv->va, kv->geom.va_bytes);
	pthread_mutex_destroy(&kv->lock);
	pthread_cond_destroy(&kv->idle);
	free(kv->regions);
	free(kv->slots);
	free(kv->stepping);
	free(kv);
}

int kvmm_kv_create(struct kvmm_ctx *ctx, const struct kvmm_kv_config *cfg, struct kvmm_kv **kvp)
{
	struct kvmm_kv *kv;
	int ret;

	if (!ctx || !cfg || !kvp)
		return -EINVAL;
	if (cfg->size < offsetof(struct kvmm_kv_config, evict_arg) + sizeof(cfg->evict_arg) ||
	    cfg->size > sizeof(struct kvmm_kv_config))
		return -EINVAL;
	kv = calloc(1, sizeof(*kv));
	if (!kv)
		return -ENOMEM;
	pthread_mutex_init(&kv->lock, NULL);
	pthread_cond_init(&kv->idle, NULL);
	kv->ctx = ctx;
	memcpy(&kv->cfg, cfg, cfg->size);
	if (kv->cfg.device == KVMM_DEVICE_CUDA) {
		ret = kvmm_cuda_kv_create(ctx, &kv->cfg, &kv->gpu);
		if (ret)
			goto fail;
		*kvp = kv;
		return 0;
	}
	ret = kvmm_kv_check(ctx, &kv->cfg);
	kv->chunk_bytes = kv->cfg.chunk_bytes;
	if (!ret)
		ret = kvmm_kv_geometry(&kv->cfg, kv->chunk_bytes, &kv->geom);
	if (ret)
		goto fail;
	ret = -ENOMEM;
	kv->regions = calloc(kv->geom.nr_regions, sizeof(*kv->regions));
	kv->slots = calloc(kv->cfg.max_slots, sizeof(*kv->slots));
	kv->stepping = calloc(kv->cfg.max_slots, 1);
	if (!kv->regions || !kv->slots || !kv->stepping)
		goto fail;
	ret = kvmm_kv_reserve(kv);
	if (ret)
		goto fail;
	for (uint32_t i = 0; i < kv->geom.nr_regions; i++) {
		struct kvmm_region_config rc = KVMM_REGION_CONFIG_INIT;

		rc.bytes = kv->geom.region_bytes;
		rc.chunk_bytes = kv->chunk_bytes;
		rc.addr = kv->va + (uint64_t)i * kv->geom.region_bytes;
		ret = kvmm_region_create(ctx, &rc, &kv->regions[i]);
		if (ret)
			goto fail;
	}
	pthread_rwlock_wrlock(&ctx->regions_lock);
	ctx->nr_kv++;
	pthread_rwlock_unlock(&ctx->regions_lock);
	*kvp = kv;
	return 0;
fail:
	kvmm_kv_free(kv);
	return ret;
}

int kvmm_kv_destroy(struct kvmm_kv *kv)
{
	struct kvmm_ctx *ctx;

	if (!kv)
		return -EINVAL;
	if (kv->gpu) {
		int ret = kvmm_cuda_kv_destroy(kv->gpu);

		if (!ret)
			kvmm_kv_free(kv);
		return ret;
	}
	/* Swaps still queued or running finish first. */
	pthread_mutex_lock(&kv->lock);
	while (kv->in_flight)
		pthread_cond_wait(&kv->idle, &kv->lock);
	pthread_mutex_unlock(&kv->lock);
	ctx = kv->ctx;
	kvmm_kv_free(kv);
	pthread_rwlock_wrlock(&ctx->regions_lock);
	ctx->nr_kv--;
	pthread_rwlock_unlock(&ctx->regions_lock);
	return 0;
}

int kvmm_kv_tensor(struct kvmm_kv *kv, uint32_t layer, enum kvmm_kv_which which,
		   struct kvmm_kv_tensor *t)
{
	uint64_t dt;

	KVMM_KV_CUDA(kv, kvmm_cuda_kv_tensor(kv->gpu, layer, which, t));
	if (!kv || !t || layer >= kv->cfg.layers || (which != KVMM_K && which != KVMM_V))
		return -EINVAL;
	dt = kv->cfg.dtype_bytes;
	memset(t, 0, sizeof(*t));
	if (kv->cfg.layout == KVMM_LAYOUT_LAYER_MAJOR)
		t->base = kvmm_region_base(kv->regions[2 * layer + which]);
	else
		t->base = kv->va + (2ULL * layer + which) * kv->geom.elem_tok;
	t->slot_stride_bytes = kv->geom.slot_stride;
	t->token_stride_bytes = kv->geom.part_tok;
	t->head_stride_bytes = (uint64_t)kv->cfg.head_dim * dt;
	t->dim_stride_bytes = dt;
	t->slot_stride = t->slot_stride_bytes / dt;
	t->token_stride = t->token_stride_bytes / dt;
	t->head_stride = t->head_stride_bytes / dt;
	t->dim_stride = 1;
	return 0;
}

/* A free slot becomes active; whatever it still has mapped is reused. */
static void kvmm_kv_activate(struct kvmm_kv *kv, struct kvmm_kv_slot *s)
{
	kv->st.reused_bytes += s->mapped * kv->geom.nparts;
	s->state = KVMM_SLOT_ACTIVE;
	s->seq_len = 0;
	s->last_step = ++kv->clock;
}

int kvmm_kv_alloc_slot(struct kvmm_kv *kv, uint32_t expected_tokens, uint32_t *slotp)
{
	uint64_t need;
	int64_t best = -1;

	KVMM_KV_CUDA(kv, kvmm_cuda_kv_alloc_slot(kv->gpu, expected_tokens, slotp));
	if (!kv || !slotp || expected_tokens > kv->cfg.max_tokens)
		return -EINVAL;
	need = kvmm_kv_part_bytes(kv, expected_tokens);
	pthread_mutex_lock(&kv->lock);
	for (uint32_t i = 0; i < kv->cfg.max_slots; i++) {
		const struct kvmm_kv_slot *s = &kv->slots[i];

		if (s->state != KVMM_SLOT_FREE)
			continue;
		if (best < 0 || kvmm_kv_better_fit(s->mapped, kv->slots[best].mapped, need))
			best = i;
	}
	if (best >= 0)
		kvmm_kv_activate(kv, &kv->slots[best]);
	pthread_mutex_unlock(&kv->lock);
	if (best < 0)
		return -ENOSPC;
	*slotp = best;
	return 0;
}

/* Maps each part of @slot from s->mapped up to @want bytes. */
static int kvmm_kv_grow(struct kvmm_kv *kv, uint32_t slot, uint64_t want)
{
	struct kvmm_kv_slot *s = &kv->slots[slot];
	uint64_t off;
	uint32_t p;
	int ret = 0;

	for (p = 0; p < kv->geom.nparts; p++) {
		struct kvmm_region *r = kvmm_kv_part(kv, slot, p, &off);

		ret = kvmm_region_ensure(r, off + s->mapped, want - s->mapped);
		if (ret)
			break;
	}
	if (!ret) {
		kv->st.new_bytes += (want - s->mapped) * kv->geom.nparts;
		s->mapped = want;
		return 0;
	}
	/* All parts keep one length: undo the parts already grown. */
	while (p--) {
		struct kvmm_region *r = kvmm_kv_part(kv, slot, p, &off);

		kvmm_region_discard(r, off + s->mapped, want - s->mapped);
	}
	return ret;
}

int kvmm_kv_step(struct kvmm_kv *kv, uint32_t n, const uint32_t *slots, const uint32_t *seq_lens)
{
	int ret = 0;

	KVMM_KV_CUDA(kv, kvmm_cuda_kv_step(kv->gpu, n, slots, seq_lens));
	if (!kv || (n && (!slots || !seq_lens)))
		return -EINVAL;
	pthread_mutex_lock(&kv->lock);
	for (uint32_t i = 0; i < n; i++) {
		if (slots[i] >= kv->cfg.max_slots || seq_lens[i] > kv->cfg.max_tokens) {
			ret = -EINVAL;
			goto out;
		}
		if (kv->slots[slots[i]].state != KVMM_SLOT_FREE &&
		    kv->slots[slots[i]].state != KVMM_SLOT_ACTIVE) {
			ret = -EAGAIN;
			goto out;
		}
	}
	for (uint32_t i = 0; i < n; i++)
		kv->stepping[slots[i]] = 1;
	for (uint32_t i = 0; i < n; i++) {
		struct kvmm_kv_slot *s = &kv->slots[slots[i]];
		uint64_t tokens = (uint64_t)seq_lens[i] + kv->cfg.lookahead;
		uint64_t want;

		if (tokens > kv->cfg.max_tokens)
			tokens = kv->cfg.max_tokens;
		want = kvmm_kv_part_bytes(kv, tokens);
		if (s->state == KVMM_SLOT_FREE)
			kvmm_kv_activate(kv, s);
		if (want > s->mapped) {
			if (kv->cfg.host_budget) {
				ret = kvmm_kv_make_room(kv, (want - s->mapped) * kv->geom.nparts,
							kv->stepping);
				if (ret)
					break;
			}
			ret = kvmm_kv_grow(kv, slots[i], want);
			if (ret)
				break;
		}
		s->seq_len = seq_lens[i];
		s->last_step = ++kv->clock;
	}
	for (uint32_t i = 0; i < n; i++)
		kv->stepping[slots[i]] = 0;
out:
	pthread_mutex_unlock(&kv->lock);
	return ret;
}

static int kvmm_kv_slot_arg(struct kvmm_kv *kv, uint32_t slot)
{
	return !kv || slot >= kv->cfg.max_slots ? -EINVAL : 0;
}

int kvmm_kv_free_slot(struct kvmm_kv *kv, uint32_t slot)
{
	struct kvmm_kv_slot *s;
	int ret = kvmm_kv_slot_arg(kv, slot);

	KVMM_KV_CUDA(kv, kvmm_cuda_kv_free_slot(kv->gpu, slot));
	if (ret)
		return ret;
	pthread_mutex_lock(&kv->lock);
	s = &kv->slots[slot];
	if (s->state == KVMM_SLOT_ACTIVE) {
		/* Memory stays mapped: the next sequence here reuses it. */
		s->state = KVMM_SLOT_FREE;
		s->seq_len = 0;
		s->pins = 0;
		s->priority = 0;
	} else {
		ret = -EINVAL;
	}
	pthread_mutex_unlock(&kv->lock);
	return ret;
}

int kvmm_kv_pin_slot(struct kvmm_kv *kv, uint32_t slot)
{
	int ret = kvmm_kv_slot_arg(kv, slot);

	KVMM_KV_CUDA(kv, kvmm_cuda_kv_pin_slot(kv->gpu, slot));
	if (ret)
		return ret;
	pthread_mutex_lock(&kv->lock);
	if (kv->slots[slot].state == KVMM_SLOT_ACTIVE)
		kv->slots[slot].pins++;
	else
		ret = -EINVAL;
	pthread_mutex_unlock(&kv->lock);
	return ret;
}

int kvmm_kv_unpin_slot(struct kvmm_kv *kv, uint32_t slot)
{
	int ret = kvmm_kv_slot_arg(kv, slot);

	KVMM_KV_CUDA(kv, kvmm_cuda_kv_unpin_slot(kv->gpu, slot));
	if (ret)
		return ret;
	pthread_mutex_lock(&kv->lock);
	if (kv->slots[slot].pins)
		kv->slots[slot].pins--;
	else
		ret = -EINVAL;
	pthread_mutex_unlock(&kv->lock);
	return ret;
}

int kvmm_kv_set_priority(struct kvmm_kv *kv, uint32_t slot, int32_t priority)
{
	int ret = kvmm_kv_slot_arg(kv, slot);

	KVMM_KV_CUDA(kv, kvmm_cuda_kv_set_priority(kv->gpu, slot, priority));
	if (ret)
		return ret;
	pthread_mutex_lock(&kv->lock);
	kv->slots[slot].priority = priority;
	pthread_mutex_unlock(&kv->lock);
	return 0;
}

int kvmm_kv_slot_state(struct kvmm_kv *kv, uint32_t slot)
{
	int ret = kvmm_kv_slot_arg(kv, slot);

	KVMM_KV_CUDA(kv, kvmm_cuda_kv_slot_state(kv->gpu, slot));
	if (ret)
		return ret;
	pthread_mutex_lock(&kv->lock);
	ret = kv->slots[slot].state;
	pthread_mutex_unlock(&kv->lock);
	return ret;
}

int kvmm_kv_stats(struct kvmm_kv *kv, struct kvmm_kv_stats *st)
{
	KVMM_KV_CUDA(kv, kvmm_cuda_kv_stats(kv->gpu, st));
	if (!kv || !st)
		return -EINVAL;
	pthread_mutex_lock(&kv->lock);
	*st = kv->st;
	st->mapped_bytes = st->used_bytes = st->host_bytes = st->flash_bytes = 0;
	st->active_slots = st->free_slots = 0;
	for (uint32_t i = 0; i < kv->cfg.max_slots; i++) {
		const struct kvmm_kv_slot *s = &kv->slots[i];
		uint64_t bytes = s->mapped * kv->geom.nparts;

		switch (s->state) {
		case KVMM_SLOT_FREE:
			st->free_slots++;
			st->mapped_bytes += bytes;
			break;
		case KVMM_SLOT_ACTIVE:
			st->active_slots++;
			st->mapped_bytes += bytes;
			st->used_bytes +=
			    (uint64_t)s->seq_len * kv->geom.part_tok * kv->geom.nparts;
			break;
		case KVMM_SLOT_HOST:
			st->host_bytes += bytes;
			break;
		case KVMM_SLOT_FLASH:
			st->flash_bytes += bytes;
			break;
		default: /* in flight: counted where it came from */
			if (s->from == KVMM_SLOT_HOST)
				st->host_bytes += bytes;
			else if (s->from == KVMM_SLOT_FLASH)
				st->flash_bytes += bytes;
			else
				st->mapped_bytes += bytes;
			break;
		}
	}
	st->waste_bytes = st->mapped_bytes - st->used_bytes;
	pthread_mutex_unlock(&kv->lock);
	return 0;
}
