/* SPDX-License-Identifier: MIT */
/* CUDA KV cache: create, destroy, tensors, slot life cycle and stats. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <linux/kvmm.h>

#include "cuda_kv.h"
#include "cuda_plan.h"

#ifdef KVMM_HAVE_CUDA_H
static int kvmm_cuda_attr(const struct kvmm_cuda_kv *ck, CUdevice_attribute a, int *v)
{
	*v = 0;
	return kvmm_cuda_err(ck->d->cuDeviceGetAttribute(v, a, ck->dev));
}

/* What the backend needs of the device, asked of the driver, not assumed. */
static int kvmm_cuda_device_check(struct kvmm_cuda_kv *ck)
{
	int vmm, uva, ret;

	ret = kvmm_cuda_attr(ck, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, &ck->cc_major);
	if (!ret)
		ret =
		    kvmm_cuda_attr(ck, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, &ck->cc_minor);
	if (!ret)
		ret = kvmm_cuda_attr(ck, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED,
				     &vmm);
	if (!ret)
		ret = kvmm_cuda_attr(ck, CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING, &uva);
	if (ret)
		return ret;
	if (!vmm || !uva) {
		kvmm_cuda_set_why("CUDA device %u (compute capability %d.%d) has no %s, which a "
				  "CUDA KV cache needs",
				  ck->cfg.device_index, ck->cc_major, ck->cc_minor,
				  !vmm ? "virtual memory management (cuMemCreate, cuMemMap)"
				       : "unified addressing (cuMemAddressReserve)");
		return -EOPNOTSUPP;
	}
	return 0;
}

static int kvmm_cuda_device(struct kvmm_cuda_kv *ck)
{
	const struct kvmm_cuda_drv *d = ck->d;
	CUmemAllocationProp prop;
	size_t gran = 0;
	int count = 0, ret;

	ret = kvmm_cuda_err(d->cuDeviceGetCount(&count));
	if (ret)
		return ret;
	if ((int)ck->cfg.device_index >= count)
		return -ENODEV;
	ret = kvmm_cuda_err(d->cuDeviceGet(&ck->dev, (int)ck->cfg.device_index));
	if (!ret)
		ret = kvmm_cuda_device_check(ck);
	if (!ret)
		ret = kvmm_cuda_err(d->cuDevicePrimaryCtxRetain(&ck->cuctx, ck->dev));
	if (ret)
		return ret;
	memset(&prop, 0, sizeof(prop));
	prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	prop.location.id = ck->dev;
	kvmm_cuda_enter(ck);
	ret = kvmm_cuda_err(
	    d->cuMemGetAllocationGranularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
	kvmm_cuda_leave(ck);
	if (ret)
		return ret;
	if (!gran || gran % ck->ctx->page_size) {
		kvmm_cuda_set_why("CUDA device %u: allocation granularity %zu is not a multiple of "
				  "the %u-byte host page",
				  ck->cfg.device_index, gran, (unsigned)ck->ctx->page_size);
		return -EOPNOTSUPP;
	}
	ck->gran = gran;
	return kvmm_cuda_chunk_size(ck->cfg.chunk_bytes, gran, &ck->chunk);
}

static int kvmm_cuda_shadow_create(struct kvmm_cuda_kv *ck)
{
	ck->shadow = calloc(ck->geom.nr_regions, sizeof(*ck->shadow));
	if (!ck->shadow)
		return -ENOMEM;
	for (uint32_t i = 0; i < ck->geom.nr_regions; i++) {
		struct kvmm_region_config rc = KVMM_REGION_CONFIG_INIT;
		int ret;

		rc.bytes = ck->geom.region_bytes;
		rc.chunk_bytes = ck->shadow_chunk;
		rc.numa_node = ck->copy.node;
		ret = kvmm_region_create(ck->ctx, &rc, &ck->shadow[i]);
		if (ret)
			return ret;
	}
	return 0;
}

static void kvmm_cuda_kv_free(struct kvmm_cuda_kv *ck)
{
	kvmm_cuda_mapper_stop(ck);
	if (ck->cuctx) {
		kvmm_cuda_enter(ck);
		/* Kernels may still read freed slots: their memory goes only
		 * after every fence and free event has passed. */
		kvmm_cuda_settle_all(ck);
		for (uint32_t s = 0; ck->slots && s < ck->cfg.max_slots; s++) {
			struct kvmm_cuda_slot *sl = &ck->slots[s];

			if (sl->free_ev) {
				ck->d->cuEventSynchronize(sl->free_ev);
				ck->d->cuEventDestroy(sl->free_ev);
			}
			for (uint32_t l = 0; sl->layer_ev && l < ck->cfg.layers; l++) {
				if (sl->layer_ev[l])
					ck->d->cuEventDestroy(sl->layer_ev[l]);
			}
			free(sl->layer_ev);
		}
		if (ck->vmm_ok)
			kvmm_cuda_vmm_fini(&ck->vmm);
		if (ck->copy_ok)
			kvmm_cuda_copy_fini(&ck->copy);
		if (ck->pool_ok)
			kvmm_cuda_pool_fini(&ck->pool);
		kvmm_cuda_leave(ck);
		ck->d->cuDevicePrimaryCtxRelease(ck->dev);
	}
	for (uint32_t i = 0; ck->shadow && i < ck->geom.nr_regions; i++) {
		if (ck->shadow[i])
			kvmm_region_destroy(ck->shadow[i]);
	}
	pthread_mutex_destroy(&ck->lock);
	pthread_mutex_destroy(&ck->copy_lock);
	pthread_mutex_destroy(&ck->progress_lock);
	pthread_cond_destroy(&ck->progress_cond);
	pthread_cond_destroy(&ck->cond);
	pthread_cond_destroy(&ck->mapper_cond);
	free(ck->shadow);
	free(ck->slots);
	free(ck->stepping);
	free(ck);
}

/* The mapper and how far ahead it maps, from the environment. */
static void kvmm_cuda_tuning(struct kvmm_cuda_kv *ck)
{
	uint64_t on = 1, chunks = 1;

	kvmm_env_u64("KVMM_CUDA_MAPPER", &on);
	kvmm_env_u64("KVMM_CUDA_AHEAD_CHUNKS", &chunks);
	ck->mapper_on = on != 0;
	ck->ahead = (chunks > 1024 ? 1024 : chunks) * ck->chunk;
}

static int kvmm_cuda_kv_init(struct kvmm_cuda_kv *ck)
{
	int ret = kvmm_cuda_device(ck);

	if (!ret)
		ret = kvmm_cuda_shadow_chunk(ck->chunk, ck->ctx->page_size, &ck->shadow_chunk);
	if (!ret)
		ret = kvmm_kv_geometry(&ck->cfg, ck->chunk, &ck->geom); /* as kv.c's, GPU chunks */
	if (ret)
		return ret;
	ck->cfg.chunk_bytes = (uint32_t)ck->chunk;
	kvmm_cuda_tuning(ck);
	ck->slots = calloc(ck->cfg.max_slots, sizeof(*ck->slots));
	ck->stepping = calloc(ck->cfg.max_slots, 1);
	if (!ck->slots || !ck->stepping)
		return -ENOMEM;
	kvmm_cuda_enter(ck);
	ret = kvmm_cuda_pool_init(&ck->pool, ck->d, ck->cuctx, ck->dev, ck->chunk,
				  ck->ctx->mode == KVMM_MODE_KERNEL ? ck->ctx->dev_fd : -1);
	ck->pool_ok = !ret;
	if (!ret) {
		ret = kvmm_cuda_vmm_init(&ck->vmm, ck->d, &ck->pool, ck->dev, ck->geom.va_bytes,
					 ck->chunk);
		ck->vmm_ok = true; /* fini undoes a partial init */
	}
	if (!ret) {
		ret = kvmm_cuda_copy_init(&ck->copy, ck->d, ck->dev, ck->ctx->staging_node);
		ck->copy_ok = true;
	}
	kvmm_cuda_leave(ck);
	if (!ret)
		ret = kvmm_cuda_shadow_create(ck);
	if (!ret && ck->mapper_on)
		ret = kvmm_cuda_mapper_start(ck);
	return ret;
}

int kvmm_cuda_kv_create(struct kvmm_ctx *ctx, const struct kvmm_kv_config *cfg,
			struct kvmm_cuda_kv **ckp)
{
	struct kvmm_cuda_kv *ck;
	int ret = kvmm_cuda_config_check(cfg);

	if (ret)
		return ret;
	if (ctx->mode == KVMM_MODE_KERNEL && cfg->device_index >= KVMM_MAX_GPUS)
		return -EINVAL; /* the ledger has no entry for it */
	ck = calloc(1, sizeof(*ck));
	if (!ck)
		return -ENOMEM;
	ck->ctx = ctx;
	ck->cfg = *cfg;
	pthread_mutex_init(&ck->lock, NULL);
	pthread_mutex_init(&ck->copy_lock, NULL);
	pthread_mutex_init(&ck->progress_lock, NULL);
	pthread_cond_init(&ck->progress_cond, NULL);
	pthread_cond_init(&ck->cond, NULL);
	pthread_cond_init(&ck->mapper_cond, NULL);
	ret = kvmm_cuda_drv_get(&ck->d);
	if (!ret)
		ret = kvmm_cuda_kv_init(ck);
	if (ret) {
		kvmm_cuda_kv_free(ck);
		return ret;
	}
	pthread_rwlock_wrlock(&ctx->regions_lock);
	ctx->nr_kv++;
	pthread_rwlock_unlock(&ctx->regions_lock);
	*ckp = ck;
	return 0;
}

int kvmm_cuda_kv_destroy(struct kvmm_cuda_kv *ck)
{
	struct kvmm_ctx *ctx;

	if (!ck)
		return -EINVAL;
	/* Swaps still queued or running finish first, as for a host cache. */
	pthread_mutex_lock(&ck->lock);
	while (ck->in_flight)
		pthread_cond_wait(&ck->cond, &ck->lock);
	pthread_mutex_unlock(&ck->lock);
	ctx = ck->ctx;
	kvmm_cuda_kv_free(ck);
	pthread_rwlock_wrlock(&ctx->regions_lock);
	ctx->nr_kv--;
	pthread_rwlock_unlock(&ctx->regions_lock);
	return 0;
}

int kvmm_cuda_kv_tensor(struct kvmm_cuda_kv *ck, uint32_t layer, enum kvmm_kv_which which,
			struct kvmm_kv_tensor *t)
{
	uint64_t dt, base;

	if (!ck || !t || layer >= ck->cfg.layers || (which != KVMM_K && which != KVMM_V))
		return -EINVAL;
	dt = ck->cfg.dtype_bytes;
	memset(t, 0, sizeof(*t));
	if (ck->cfg.layout == KVMM_LAYOUT_LAYER_MAJOR)
		base = (2ULL * layer + which) * ck->geom.region_bytes;
	else
		base = (2ULL * layer + which) * ck->geom.elem_tok;
	t->base = (void *)(uintptr_t)(ck->vmm.va + base);
	t->slot_stride_bytes = ck->geom.slot_stride;
	t->token_stride_bytes = ck->geom.part_tok;
	t->head_stride_bytes = (uint64_t)ck->cfg.head_dim * dt;
	t->dim_stride_bytes = dt;
	t->slot_stride = t->slot_stride_bytes / dt;
	t->token_stride = t->token_stride_bytes / dt;
	t->head_stride = t->head_stride_bytes / dt;
	t->dim_stride = 1;
	return 0;
}

int kvmm_cuda_kv_set_stream(struct kvmm_cuda_kv *ck, void *stream)
{
	if (!ck)
		return -EINVAL;
	pthread_mutex_lock(&ck->lock);
	ck->stream = (CUstream)stream;
	pthread_mutex_unlock(&ck->lock);
	return 0;
}

void kvmm_cuda_activate_locked(struct kvmm_cuda_kv *ck, struct kvmm_cuda_slot *s)
{
	ck->st.reused_bytes += s->mapped * ck->geom.nparts;
	s->state = KVMM_SLOT_ACTIVE;
	s->seq_len = 0;
	s->need = 0;
	s->last_step = ++ck->clock;
}

int kvmm_cuda_kv_alloc_slot(struct kvmm_cuda_kv *ck, uint32_t expected_tokens, uint32_t *slotp)
{
	uint64_t need;
	int64_t best = -1;

	if (!ck || !slotp || expected_tokens > ck->cfg.max_tokens)
		return -EINVAL;
	need = kvmm_cuda_part_bytes(ck, expected_tokens);
	pthread_mutex_lock(&ck->lock);
	for (uint32_t i = 0; i < ck->cfg.max_slots; i++) {
		const struct kvmm_cuda_slot *s = &ck->slots[i];

		if (s->state != KVMM_SLOT_FREE || s->busy)
			continue;
		if (best < 0 || kvmm_kv_better_fit(s->mapped, ck->slots[best].mapped, need))
			best = i;
	}
	if (best >= 0)
		kvmm_cuda_activate_locked(ck, &ck->slots[best]);
	pthread_mutex_unlock(&ck->lock);
	if (best < 0)
		return -ENOSPC;
	*slotp = (uint32_t)best;
	return 0;
}

static int kvmm_cuda_slot_arg(struct kvmm_cuda_kv *ck, uint32_t slot)
{
	return !ck || slot >= ck->cfg.max_slots ? -EINVAL : 0;
}

int kvmm_cuda_kv_free_slot(struct kvmm_cuda_kv *ck, uint32_t slot)
{
	struct kvmm_cuda_slot *s;
	int ret = kvmm_cuda_slot_arg(ck, slot);

	if (ret)
		return ret;
	pthread_mutex_lock(&ck->lock);
	s = &ck->slots[slot];
	if (s->state != KVMM_SLOT_ACTIVE) {
		pthread_mutex_unlock(&ck->lock);
		return -EINVAL;
	}
	/* Memory stays mapped for reuse; the event fences a later reclaim. */
	kvmm_cuda_enter(ck);
	if (!s->free_ev)
		ret = kvmm_cuda_err(ck->d->cuEventCreate(&s->free_ev, CU_EVENT_DISABLE_TIMING));
	if (!ret)
		ret = kvmm_cuda_err(ck->d->cuEventRecord(s->free_ev, ck->stream));
	kvmm_cuda_leave(ck);
	if (!ret) {
		s->state = KVMM_SLOT_FREE;
		s->seq_len = 0;
		s->pins = 0;
		s->priority = 0;
		s->target = s->mapped;
	}
	pthread_mutex_unlock(&ck->lock);
	return ret;
}

int kvmm_cuda_kv_pin_slot(struct kvmm_cuda_kv *ck, uint32_t slot)
{
	int ret = kvmm_cuda_slot_arg(ck, slot);

	if (ret)
		return ret;
	pthread_mutex_lock(&ck->lock);
	if (ck->slots[slot].state == KVMM_SLOT_ACTIVE)
		ck->slots[slot].pins++;
	else
		ret = -EINVAL;
	pthread_mutex_unlock(&ck->lock);
	return ret;
}

int kvmm_cuda_kv_unpin_slot(struct kvmm_cuda_kv *ck, uint32_t slot)
{
	int ret = kvmm_cuda_slot_arg(ck, slot);

	if (ret)
		return ret;
	pthread_mutex_lock(&ck->lock);
	if (ck->slots[slot].pins)
		ck->slots[slot].pins--;
	else
		ret = -EINVAL;
	pthread_mutex_unlock(&ck->lock);
	return ret;
}

int kvmm_cuda_kv_set_priority(struct kvmm_cuda_kv *ck, uint32_t slot, int32_t priority)
{
	int ret = kvmm_cuda_slot_arg(ck, slot);

	if (ret)
		return ret;
	pthread_mutex_lock(&ck->lock);
	ck->slots[slot].priority = priority;
	pthread_mutex_unlock(&ck->lock);
	return 0;
}

int kvmm_cuda_kv_slot_state(struct kvmm_cuda_kv *ck, uint32_t slot)
{
	int ret = kvmm_cuda_slot_arg(ck, slot);

	if (ret)
		return ret;
	pthread_mutex_lock(&ck->lock);
	ret = ck->slots[slot].state;
	pthread_mutex_unlock(&ck->lock);
	return ret;
}

int kvmm_cuda_kv_stats(struct kvmm_cuda_kv *ck, struct kvmm_kv_stats *st)
{
	if (!ck || !st)
		return -EINVAL;
	pthread_mutex_lock(&ck->lock);
	*st = ck->st;
	st->mapped_bytes = st->used_bytes = st->host_bytes = st->flash_bytes = 0;
	st->active_slots = st->free_slots = 0;
	for (uint32_t i = 0; i < ck->cfg.max_slots; i++) {
		const struct kvmm_cuda_slot *s = &ck->slots[i];
		uint64_t bytes = s->mapped * ck->geom.nparts;
		uint8_t where = s->state == KVMM_SLOT_IN_FLIGHT ? s->from : s->state;

		if (s->state == KVMM_SLOT_FREE)
			st->free_slots++;
		if (s->state == KVMM_SLOT_ACTIVE) {
			st->active_slots++;
			st->used_bytes +=
			    (uint64_t)s->seq_len * ck->geom.part_tok * ck->geom.nparts;
		}
		if (where == KVMM_SLOT_HOST)
			st->host_bytes += bytes;
		else if (where == KVMM_SLOT_FLASH)
			st->flash_bytes += bytes;
		else
			st->mapped_bytes += bytes;
	}
	st->waste_bytes = st->mapped_bytes - st->used_bytes;
	pthread_mutex_unlock(&ck->lock);
	return 0;
}

int kvmm_cuda_kv_cuda_stats(struct kvmm_cuda_kv *ck, struct kvmm_kv_cuda_stats *st)
{
	if (!ck || !st)
		return -EINVAL;
	pthread_mutex_lock(&ck->lock);
	*st = ck->cst;
	st->draining_bytes = ck->fences.pending_chunks * ck->chunk;
	pthread_mutex_unlock(&ck->lock);
	pthread_mutex_lock(&ck->vmm.lock);
	st->maps = ck->vmm.maps;
	st->unmaps = ck->vmm.unmaps;
	st->set_access = ck->vmm.set_access;
	pthread_mutex_unlock(&ck->vmm.lock);
	pthread_mutex_lock(&ck->pool.lock);
	st->pool_creates = ck->pool.creates;
	st->pool_releases = ck->pool.releases;
	st->pool_refusals = ck->pool.refusals;
	pthread_mutex_unlock(&ck->pool.lock);
	st->chunk_bytes = ck->chunk;
	st->granularity = ck->gran;
	st->cc_major = (uint32_t)ck->cc_major;
	st->cc_minor = (uint32_t)ck->cc_minor;
	return 0;
}
#endif
