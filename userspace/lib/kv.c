/* SPDX-License-Identifier: MIT */
/*
 * KV cache: layers x {K,V} as plain strided tensors over a device's
 * memory, mapped chunk by chunk as sequences grow (vAttention). This file
 * is the slot core's public side: create, tensors, the slot life cycle,
 * pins, priorities, per-layer swap-in waits and stats, the same for every
 * device (kv.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv.h"

static uint64_t kvmm_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* What any device needs of a config; the device checks its chunk size. */
static int kvmm_kv_check(const struct kvmm_kv_config *c)
{
	if (!c->layers || !c->kv_heads || !c->head_dim || !c->max_slots || !c->max_tokens)
		return -EINVAL;
	if (c->dtype_bytes != 1 && c->dtype_bytes != 2 && c->dtype_bytes != 4)
		return -EINVAL;
	if (c->device == KVMM_DEVICE_HOST
		? c->device_index != 0
		: c->device != KVMM_DEVICE_CUDA || c->device_index > INT32_MAX)
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

int kvmm_kv_regions_create(struct kvmm_kv *kv, uint32_t chunk, int node, bool at_va)
{
	kv->regions = calloc(kv->geom.nr_regions, sizeof(*kv->regions));
	if (!kv->regions)
		return -ENOMEM;
	for (uint32_t i = 0; i < kv->geom.nr_regions; i++) {
		struct kvmm_region_config rc = KVMM_REGION_CONFIG_INIT;
		int ret;

		rc.bytes = kv->geom.region_bytes;
		rc.chunk_bytes = chunk;
		rc.numa_node = node;
		if (at_va)
			rc.addr = (void *)(kv->va + (uint64_t)i * kv->geom.region_bytes);
		ret = kvmm_region_create(kv->ctx, &rc, &kv->regions[i]);
		if (ret)
			return ret;
	}
	return 0;
}

void kvmm_kv_regions_destroy(struct kvmm_kv *kv)
{
	for (uint32_t i = 0; kv->regions && i < kv->geom.nr_regions; i++) {
		if (kv->regions[i])
			kvmm_region_destroy(kv->regions[i]);
	}
	free(kv->regions);
	kv->regions = NULL;
}

static void kvmm_kv_free(struct kvmm_kv *kv)
{
	pthread_mutex_destroy(&kv->lock);
	pthread_cond_destroy(&kv->cond);
	pthread_mutex_destroy(&kv->progress_lock);
	pthread_cond_destroy(&kv->progress_cond);
	free(kv->slots);
	free(kv->stepping);
	free(kv->ring);
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
	pthread_cond_init(&kv->cond, NULL);
	pthread_mutex_init(&kv->progress_lock, NULL);
	pthread_cond_init(&kv->progress_cond, NULL);
	kv->ctx = ctx;
	memcpy(&kv->cfg, cfg, cfg->size);
	kv->dev = kv->cfg.device == KVMM_DEVICE_CUDA ? &kvmm_kv_cuda_device : &kvmm_kv_host_device;
	ret = kvmm_kv_check(&kv->cfg);
	if (!ret) {
		kv->slots = calloc(kv->cfg.max_slots, sizeof(*kv->slots));
		kv->stepping = calloc(kv->cfg.max_slots, 1);
		ret = kv->slots && kv->stepping ? kv->dev->create(kv) : -ENOMEM;
		if (ret)
			kv->dev->destroy(kv); /* undoes what create got done */
	}
	if (ret) {
		kvmm_kv_free(kv);
		return ret;
	}
	pthread_rwlock_wrlock(&ctx->regions_lock);
	ctx->nr_kv++;
	pthread_rwlock_unlock(&ctx->regions_lock);
	*kvp = kv;
	return 0;
}

int kvmm_kv_destroy(struct kvmm_kv *kv)
{
	struct kvmm_ctx *ctx;

	if (!kv)
		return -EINVAL;
	/* Swaps still queued or running finish first. */
	pthread_mutex_lock(&kv->lock);
	while (kv->in_flight)
		pthread_cond_wait(&kv->cond, &kv->lock);
	pthread_mutex_unlock(&kv->lock);
	ctx = kv->ctx;
	kv->dev->destroy(kv);
	kvmm_kv_free(kv);
	pthread_rwlock_wrlock(&ctx->regions_lock);
	ctx->nr_kv--;
	pthread_rwlock_unlock(&ctx->regions_lock);
	return 0;
}

int kvmm_kv_tensor(struct kvmm_kv *kv, uint32_t layer, enum kvmm_kv_which which,
		   struct kvmm_kv_tensor *t)
{
	uint64_t dt, base;

	if (!kv || !t || layer >= kv->cfg.layers || (which != KVMM_K && which != KVMM_V))
		return -EINVAL;
	dt = kv->cfg.dtype_bytes;
	memset(t, 0, sizeof(*t));
	if (kv->cfg.layout == KVMM_LAYOUT_LAYER_MAJOR)
		base = (2ULL * layer + which) * kv->geom.region_bytes;
	else
		base = (2ULL * layer + which) * kv->geom.elem_tok;
	t->base = (void *)(kv->va + base);
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

/* A free slot becomes active; whatever it still has mapped is reused,
 * except memory it shares with other slots, which a new sequence must not
 * write: that goes (all of it, so parts keep one length). */
static void kvmm_kv_activate(struct kvmm_kv *kv, struct kvmm_kv_slot *s)
{
	if (s->nshared) {
		kvmm_kv_release(kv, (uint32_t)(s - kv->slots), 0, s->mapped, true);
		kvmm_kv_slot_set(kv, s, s->state, 0);
		s->target = 0;
	}
	kv->st.reused_bytes += s->mapped * kv->geom.nparts;
	kvmm_kv_slot_set(kv, s, KVMM_SLOT_ACTIVE, s->mapped);
	s->seq_len = 0;
	s->need = 0;
	s->last_step = ++kv->clock;
}

/* Best fit for a slot that needs @need bytes per part: the smallest mapping
 * that holds it, else the largest. True when @cand beats @best. */
static bool kvmm_kv_better_fit(uint64_t cand, uint64_t best, uint64_t need)
{
	return best >= need ? (cand >= need && cand < best) : cand > best;
}

int kvmm_kv_alloc_slot(struct kvmm_kv *kv, uint32_t expected_tokens, uint32_t *slotp)
{
	uint64_t need;
	int64_t best = -1;

	if (!kv || !slotp || expected_tokens > kv->cfg.max_tokens)
		return -EINVAL;
	need = kvmm_kv_part_bytes(kv, expected_tokens);
	pthread_mutex_lock(&kv->lock);
	for (uint32_t i = 0; i < kv->cfg.max_slots; i++) {
		const struct kvmm_kv_slot *s = &kv->slots[i];

		if (s->state != KVMM_SLOT_FREE || s->busy)
			continue;
		if (best < 0 || kvmm_kv_better_fit(s->mapped, kv->slots[best].mapped, need))
			best = i;
	}
	if (best >= 0)
		kvmm_kv_activate(kv, &kv->slots[best]);
	pthread_mutex_unlock(&kv->lock);
	if (best < 0)
		return -ENOSPC;
	*slotp = (uint32_t)best;
	return 0;
}

/* A step that needs @need bytes per part of @slot, maps them; kv->lock
 * held. *t0 is set when the step first blocks. */
static int kvmm_kv_step_need(struct kvmm_kv *kv, uint32_t slot, uint64_t need, uint64_t *t0)
{
	struct kvmm_kv_slot *s = &kv->slots[slot];
	int ret;

	if (need > s->need) /* first: making room must not trim what this step maps */
		s->need = need;
	if (need > s->mapped) {
		if (!*t0) /* 1 where the device does not time steps: blocked, no clock read */
			*t0 = kv->dev->times_steps ? kvmm_now_ns() : 1;
		while (s->busy) /* the device maps it now: its chunks come first */
			pthread_cond_wait(&kv->cond, &kv->lock);
	}
	if (need > s->mapped) {
		ret = kvmm_kv_grow_locked(kv, slot, s->mapped, need, true);
		if (ret)
			return ret;
		kv->st.new_bytes += (need - s->mapped) * kv->geom.nparts;
		kvmm_kv_slot_set(kv, s, s->state, need);
	}
	if (kv->ahead) {
		uint64_t ahead = need + kv->ahead;

		if (ahead > kv->geom.slot_stride)
			ahead = kv->geom.slot_stride;
		if (ahead > s->target) {
			s->target = ahead;
			if (s->target > s->mapped)
				kv->dev->map_ahead(kv);
		}
	}
	return 0;
}

static int kvmm_kv_step_slot(struct kvmm_kv *kv, uint32_t slot, uint32_t seq_len, uint64_t *t0)
{
	struct kvmm_kv_slot *s = &kv->slots[slot];
	uint64_t tokens = (uint64_t)seq_len + kv->cfg.lookahead, bytes;
	int ret;

	if (tokens > kv->cfg.max_tokens)
		tokens = kv->cfg.max_tokens;
	bytes = tokens * kv->geom.part_tok;
	if (s->state == KVMM_SLOT_FREE)
		kvmm_kv_activate(kv, s);
	/* Most steps stay inside the chunks of the last one: nothing to round
	 * up or map (s->need and s->mapped are whole chunks). */
	if (bytes > s->need || bytes > s->mapped || kv->ahead) {
		ret = kvmm_kv_step_need(kv, slot, kvmm_round_up(bytes, kv->chunk_bytes), t0);
		if (ret)
			return ret;
	}
	s->seq_len = seq_len;
	s->last_step = ++kv->clock;
	return 0;
}

int kvmm_kv_step(struct kvmm_kv *kv, uint32_t n, const uint32_t *slots, const uint32_t *seq_lens)
{
	bool mark;
	uint64_t t0 = 0;
	int ret = 0;

	if (!kv || (n && (!slots || !seq_lens)))
		return -EINVAL;
	mark = kv->cfg.flags & KVMM_KV_AUTO_SWAP;
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
	/* Only the auto-swap policy asks which slots this step holds. */
	for (uint32_t i = 0; mark && i < n; i++)
		kv->stepping[slots[i]] = 1;
	for (uint32_t i = 0; i < n && !ret; i++)
		ret = kvmm_kv_step_slot(kv, slots[i], seq_lens[i], &t0);
	for (uint32_t i = 0; mark && i < n; i++)
		kv->stepping[slots[i]] = 0;
	kv->steps.calls++;
	if (t0) {
		kv->steps.blocked++;
		if (kv->dev->times_steps)
			kv->steps.blocked_ns += kvmm_now_ns() - t0;
	}
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

	if (ret)
		return ret;
	pthread_mutex_lock(&kv->lock);
	s = &kv->slots[slot];
	if (s->state != KVMM_SLOT_ACTIVE)
		ret = -EINVAL;
	else if (kv->dev->fence) /* a later reclaim waits for the slot's last reader */
		ret = kv->dev->fence(kv, slot);
	if (!ret) {
		/* Memory stays mapped: the next sequence here reuses it. */
		kvmm_kv_slot_set(kv, s, KVMM_SLOT_FREE, s->mapped);
		s->seq_len = 0;
		s->pins = 0;
		s->priority = 0;
		s->target = s->mapped;
	}
	pthread_mutex_unlock(&kv->lock);
	return ret;
}

int kvmm_kv_pin_slot(struct kvmm_kv *kv, uint32_t slot)
{
	int ret = kvmm_kv_slot_arg(kv, slot);

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

	if (ret)
		return ret;
	pthread_mutex_lock(&kv->lock);
	ret = kv->slots[slot].state;
	pthread_mutex_unlock(&kv->lock);
	return ret;
}

int kvmm_kv_stats(struct kvmm_kv *kv, struct kvmm_kv_stats *st)
{
	if (!kv || !st)
		return -EINVAL;
	pthread_mutex_lock(&kv->lock);
	*st = kv->st;
	st->mapped_bytes = st->used_bytes = st->host_bytes = st->flash_bytes = 0;
	st->active_slots = st->free_slots = 0;
	for (uint32_t i = 0; i < kv->cfg.max_slots; i++) {
		const struct kvmm_kv_slot *s = &kv->slots[i];
		/* A chunk shared with a lower-numbered slot is counted there. */
		uint64_t dup = kvmm_kv_share_dup(kv, i) * kv->chunk_bytes;
		uint64_t bytes =
		    (s->mapped - (dup < s->mapped ? dup : s->mapped)) * kv->geom.nparts;
		/* A slot in flight is counted where it came from. */
		uint8_t where = s->state == KVMM_SLOT_IN_FLIGHT ? s->from : s->state;

		st->shared_bytes +=
		    ((uint64_t)s->nshared * kv->chunk_bytes - dup) * kv->geom.nparts;
		if (s->state == KVMM_SLOT_FREE)
			st->free_slots++;
		if (s->state == KVMM_SLOT_ACTIVE) {
			uint64_t used = (uint64_t)s->seq_len * kv->geom.part_tok;

			st->active_slots++;
			st->used_bytes += (used - (dup < used ? dup : used)) * kv->geom.nparts;
		}
		if (where == KVMM_SLOT_HOST)
			st->host_bytes += bytes;
		else if (where == KVMM_SLOT_FLASH)
			st->flash_bytes += bytes;
		else
			st->mapped_bytes += bytes;
	}
	st->waste_bytes = st->mapped_bytes > st->used_bytes ? st->mapped_bytes - st->used_bytes : 0;
	pthread_mutex_unlock(&kv->lock);
	return 0;
}

int kvmm_kv_set_stream(struct kvmm_kv *kv, void *stream)
{
	if (!kv || !kv->dev->set_stream)
		return -EINVAL; /* a host cache has no stream to order behind */
	return kv->dev->set_stream(kv, stream);
}

int kvmm_kv_swap_in_wait_layer(struct kvmm_kv *kv, uint32_t slot, uint32_t layer, void *stream)
{
	struct kvmm_kv_slot *s;
	bool swapping;
	int ret;

	if (kvmm_kv_slot_arg(kv, slot) || layer >= kv->cfg.layers)
		return -EINVAL;
	s = &kv->slots[slot];
	pthread_mutex_lock(&kv->progress_lock);
	while (s->swapping_in && s->layers_ready <= layer)
		pthread_cond_wait(&kv->progress_cond, &kv->progress_lock);
	swapping = s->swapping_in;
	ret = s->swap_err;
	pthread_mutex_unlock(&kv->progress_lock);
	if (swapping) /* the layer is published: its copies are queued */
		return kv->dev->layer_wait ? kv->dev->layer_wait(kv, slot, layer, stream) : 0;
	if (ret)
		return ret;
	return kvmm_kv_slot_state(kv, slot) == KVMM_SLOT_ACTIVE ? 0 : -EAGAIN;
}

int kvmm_kv_cuda_stats(struct kvmm_kv *kv, struct kvmm_kv_cuda_stats *st)
{
	if (!kv || !st || !kv->dev->cuda_stats)
		return -EINVAL; /* a host cache makes no driver calls */
	return kv->dev->cuda_stats(kv, st);
}
