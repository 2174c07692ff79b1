/* SPDX-License-Identifier: MIT */
/*
 * The CUDA device of the slot core: create (device checks, pool, VA range,
 * staging, shadow regions, mapper), destroy, the slots' fences, the
 * engine's stream and the driver counters; its table, kvmm_kv_cuda_device.
 */
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
				  ck->kv->cfg.device_index, ck->cc_major, ck->cc_minor,
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
	if ((int)ck->kv->cfg.device_index >= count)
		return -ENODEV;
	ret = kvmm_cuda_err(d->cuDeviceGet(&ck->dev, (int)ck->kv->cfg.device_index));
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
	ret = kvmm_cuda_enter(ck);
	if (ret)
		return ret;
	ret = kvmm_cuda_err(
	    d->cuMemGetAllocationGranularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
	kvmm_cuda_leave(ck);
	if (ret)
		return ret;
	if (!gran || gran % ck->kv->ctx->page_size) {
		kvmm_cuda_set_why("CUDA device %u: allocation granularity %zu is not a multiple of "
				  "the %u-byte host page",
				  ck->kv->cfg.device_index, gran, (unsigned)ck->kv->ctx->page_size);
		return -EOPNOTSUPP;
	}
	ck->gran = gran;
	return 0;
}

/* Waits for @s (NULL: nothing) on the host; whether that worked. */
static bool kvmm_cuda_sync_ok(const struct kvmm_cuda_kv *ck, CUstream s, bool have)
{
	return !have || ck->d->cuStreamSynchronize(s) == CUDA_SUCCESS;
}

/*
 * Before destroy unmaps anything, the GPU is done with all of it: the
 * kernels the engine queued before the call (an event recorded now on its
 * stream: they may read any slot, active or freed), every pending fence
 * (in any order), every slot's own event, then the cache's streams (zero
 * fills, staging copies, per-layer records). Any of these failing means
 * the context is lost or an event unknown: the whole context is then
 * synchronized, and whatever that returns the memory goes (a lost context
 * runs nothing more).
 */
static void kvmm_cuda_quiesce(struct kvmm_cuda_kv *ck)
{
	const struct kvmm_cuda_drv *d = ck->d;
	CUevent ev = NULL;
	bool ok = d->cuEventCreate(&ev, KVMM_CUDA_EVENT_FLAGS) == CUDA_SUCCESS;

	ok = ok && d->cuEventRecord(ev, ck->stream) == CUDA_SUCCESS &&
	     d->cuEventSynchronize(ev) == CUDA_SUCCESS;
	if (ev)
		d->cuEventDestroy(ev);
	if (kvmm_cuda_wait_all(ck))
		ok = false;
	for (uint32_t s = 0; ck->slots && s < ck->kv->cfg.max_slots; s++) {
		if (ck->slots[s].ev && d->cuEventSynchronize(ck->slots[s].ev) != CUDA_SUCCESS)
			ok = false;
	}
	ok = kvmm_cuda_sync_ok(ck, ck->vmm.stream, ck->vmm_ok && ck->vmm.stream) && ok;
	ok = kvmm_cuda_sync_ok(ck, ck->copy.stream, ck->copy_ok && ck->copy.stream) && ok;
	if (!ok)
		d->cuCtxSynchronize();
}

static void kvmm_cuda_destroy(struct kvmm_kv *kv)
{
	struct kvmm_cuda_kv *ck = kvmm_cuda_kv_of(kv);

	if (!ck)
		return;
	kvmm_cuda_mapper_stop(ck);
	/* Without the context current no wait can be made: the mapped memory
	 * and staging (which DMA may still reach) stay until the process
	 * exits, when the driver frees them; only the pool's idle chunks go. */
	if (ck->cuctx && kvmm_cuda_enter(ck)) {
		if (ck->pool_ok)
			kvmm_cuda_pool_fini(&ck->pool);
		ck->d->cuDevicePrimaryCtxRelease(ck->dev);
	} else if (ck->cuctx) {
		kvmm_cuda_quiesce(ck);
		kvmm_cuda_release_all(ck);
		for (uint32_t s = 0; ck->slots && s < kv->cfg.max_slots; s++) {
			struct kvmm_cuda_slot *sl = &ck->slots[s];

			if (sl->ev)
				ck->d->cuEventDestroy(sl->ev);
			for (uint32_t l = 0; sl->layer_ev && l < kv->cfg.layers; l++) {
				if (sl->layer_ev[l])
					ck->d->cuEventDestroy(sl->layer_ev[l]);
			}
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
	for (uint32_t s = 0; ck->slots && s < kv->cfg.max_slots; s++)
		free(ck->slots[s].layer_ev);
	kvmm_kv_regions_destroy(kv);
	pthread_mutex_destroy(&ck->copy_lock);
	pthread_cond_destroy(&ck->mapper_cond);
	free(ck->slots);
	free(ck);
	kv->dev_data = NULL;
}

/* The mapper and how far ahead it maps, from the environment. */
static void kvmm_cuda_tuning(struct kvmm_cuda_kv *ck)
{
	uint64_t on = 1, chunks = 1;

	kvmm_env_u64("KVMM_CUDA_MAPPER", &on);
	kvmm_env_u64("KVMM_CUDA_AHEAD_CHUNKS", &chunks);
	ck->mapper_on = on != 0;
	ck->kv->ahead = ck->mapper_on ? (chunks > 1024 ? 1024 : chunks) * ck->kv->chunk_bytes : 0;
}

/*
 * The ledger's index for this GPU (kernel mode): its place among the
 * host's NVIDIA GPUs in PCI order, so processes with different
 * CUDA_VISIBLE_DEVICES charge the same entry for the same GPU. Where sysfs
 * does not list the device as one (the driver stand-in; a container
 * without /sys/bus/pci), the CUDA ordinal.
 */
static int kvmm_cuda_ledger_gpu(struct kvmm_cuda_kv *ck, uint32_t *gpu)
{
	char busid[32];
	int idx = -1;

	if (ck->d->cuDeviceGetPCIBusId(busid, sizeof(busid), ck->dev) == CUDA_SUCCESS)
		idx = kvmm_cuda_ledger_index("/sys", busid);
	if (idx < 0)
		idx = (int)ck->kv->cfg.device_index;
	if (idx >= KVMM_MAX_GPUS) {
		kvmm_cuda_set_why("CUDA device %u is GPU %d of the host: the kvmm.ko ledger "
				  "knows %d",
				  ck->kv->cfg.device_index, idx, KVMM_MAX_GPUS);
		return -EINVAL;
	}
	*gpu = (uint32_t)idx;
	return 0;
}

static int kvmm_cuda_init(struct kvmm_cuda_kv *ck)
{
	struct kvmm_kv *kv = ck->kv;
	uint32_t gpu = 0;
	uint64_t chunk;
	int ret = kvmm_cuda_device(ck);

	if (!ret)
		ret = kvmm_cuda_chunk_size(kv->cfg.chunk_bytes, ck->gran, &chunk);
	if (!ret)
		ret = kvmm_cuda_shadow_chunk(chunk, kv->ctx->page_size, &ck->shadow_chunk);
	if (!ret)
		ret = kvmm_kv_geometry(&kv->cfg, chunk, &kv->geom); /* the host's, at GPU chunks */
	if (ret)
		return ret;
	if (kv->ctx->mode == KVMM_MODE_KERNEL)
		ret = kvmm_cuda_ledger_gpu(ck, &gpu);
	if (ret)
		return ret;
	kv->chunk_bytes = kv->cfg.chunk_bytes = (uint32_t)chunk;
	kvmm_cuda_tuning(ck);
	ck->slots = calloc(kv->cfg.max_slots, sizeof(*ck->slots));
	if (!ck->slots)
		return -ENOMEM;
	ret = kvmm_cuda_enter(ck);
	if (ret)
		return ret;
	ret = kvmm_cuda_pool_init(&ck->pool, ck->d, ck->cuctx, ck->dev, chunk,
				  kv->ctx->mode == KVMM_MODE_KERNEL ? kv->ctx->dev_fd : -1, gpu);
	ck->pool_ok = !ret;
	if (!ret) {
		ret = kvmm_cuda_vmm_init(&ck->vmm, ck->d, &ck->pool, ck->dev, kv->geom.va_bytes,
					 chunk);
		ck->vmm_ok = true; /* fini undoes a partial init */
	}
	if (!ret) {
		ret = kvmm_cuda_copy_init(&ck->copy, ck->d, ck->dev, kv->ctx->staging_node);
		ck->copy_ok = true;
	}
	kvmm_cuda_leave(ck);
	if (ret)
		return ret;
	kv->va = (uintptr_t)ck->vmm.va;
	ret = kvmm_kv_regions_create(kv, ck->shadow_chunk, ck->copy.node, false);
	if (!ret && ck->mapper_on)
		ret = kvmm_cuda_mapper_start(ck);
	return ret;
}

static int kvmm_cuda_create(struct kvmm_kv *kv)
{
	struct kvmm_cuda_kv *ck;
	int ret;

	if (kv->ctx->mode == KVMM_MODE_KERNEL && kv->cfg.device_index >= KVMM_MAX_GPUS)
		return -EINVAL; /* the ledger has no entry for it */
	ck = calloc(1, sizeof(*ck));
	if (!ck)
		return -ENOMEM;
	kv->dev_data = ck;
	ck->kv = kv;
	pthread_mutex_init(&ck->copy_lock, NULL);
	pthread_cond_init(&ck->mapper_cond, NULL);
	ret = kvmm_cuda_drv_get(&ck->d);
	return ret ? ret : kvmm_cuda_init(ck);
}

/* Everything queued on the engine's stream so far comes before the slot's event. */
static int kvmm_cuda_fence(struct kvmm_kv *kv, uint32_t slot)
{
	struct kvmm_cuda_kv *ck = kvmm_cuda_kv_of(kv);
	struct kvmm_cuda_slot *sl = &ck->slots[slot];
	int ret = kvmm_cuda_enter(ck);

	if (ret)
		return ret;
	if (!sl->ev)
		ret = kvmm_cuda_err(ck->d->cuEventCreate(&sl->ev, KVMM_CUDA_EVENT_FLAGS));
	if (!ret)
		ret = kvmm_cuda_err(ck->d->cuEventRecord(sl->ev, ck->stream));
	kvmm_cuda_leave(ck);
	return ret;
}

/* The engine's stream must be one of the cache's context (the primary
 * context of its device): its events are recorded there. NULL, the
 * legacy stream, always is. */
static int kvmm_cuda_set_stream(struct kvmm_kv *kv, void *stream)
{
	struct kvmm_cuda_kv *ck = kvmm_cuda_kv_of(kv);
	CUcontext owner = NULL;
	int ret = 0;

	if (stream) {
		ret = kvmm_cuda_enter(ck);
		if (ret)
			return ret;
		if (ck->d->cuStreamGetCtx((CUstream)stream, &owner) != CUDA_SUCCESS) {
			kvmm_cuda_set_why("kvmm_kv_set_stream: %p is not a CUDA stream", stream);
			ret = -EINVAL;
		} else if (owner != ck->cuctx) {
			kvmm_cuda_set_why(
			    "kvmm_kv_set_stream: the stream belongs to another context "
			    "than the primary context of CUDA device %u",
			    kv->cfg.device_index);
			ret = -EINVAL;
		}
		kvmm_cuda_leave(ck);
		if (ret)
			return ret;
	}
	pthread_mutex_lock(&kv->lock);
	ck->stream = (CUstream)stream;
	pthread_mutex_unlock(&kv->lock);
	return 0;
}

static void kvmm_cuda_rest(struct kvmm_kv *kv)
{
	kvmm_cuda_pool_rest(&kvmm_cuda_kv_of(kv)->pool);
}

static int kvmm_cuda_stats(struct kvmm_kv *kv, struct kvmm_kv_cuda_stats *st)
{
	struct kvmm_cuda_kv *ck = kvmm_cuda_kv_of(kv);

	pthread_mutex_lock(&kv->lock);
	*st = ck->cst;
	st->steps = kv->steps.calls;
	st->step_blocked = kv->steps.blocked;
	st->step_blocked_ns = kv->steps.blocked_ns;
	st->draining_bytes = kvmm_cuda_draining(kv);
	pthread_mutex_unlock(&kv->lock);
	pthread_mutex_lock(&ck->vmm.lock);
	st->maps = ck->vmm.maps;
	st->unmaps = ck->vmm.unmaps;
	st->set_access = ck->vmm.set_access;
	pthread_mutex_unlock(&ck->vmm.lock);
	pthread_mutex_lock(&ck->pool.lock);
	st->pool_creates = ck->pool.creates;
	st->pool_releases = ck->pool.releases;
	st->pool_refusals = ck->pool.refusals;
	st->release_failures = ck->pool.release_failures;
	pthread_mutex_unlock(&ck->pool.lock);
	st->chunk_bytes = kv->chunk_bytes;
	st->granularity = ck->gran;
	st->cc_major = (uint32_t)ck->cc_major;
	st->cc_minor = (uint32_t)ck->cc_minor;
	st->zero_read_only = ck->vmm.zero_ro;
	return 0;
}

const struct kvmm_kv_device kvmm_kv_cuda_device = {
    .policy_tier = KVMM_TIER_HOST,
    /* GPU memory: slots on the GPU (plus chunks draining, kvmm_cuda_draining). */
    .charged = 1U << KVMM_SLOT_FREE | 1U << KVMM_SLOT_ACTIVE,
    .times_steps = true, /* step_blocked_ns */
    .create = kvmm_cuda_create,
    .destroy = kvmm_cuda_destroy,
    .grow = kvmm_cuda_grow,
    .shrink = kvmm_cuda_shrink,
    .fence = kvmm_cuda_fence,
    .copy_out = kvmm_cuda_copy_out,
    .copy_in = kvmm_cuda_copy_in,
    .settle = kvmm_cuda_settle_fences,
    .draining = kvmm_cuda_draining,
    .map_ahead = kvmm_cuda_map_ahead,
    .set_stream = kvmm_cuda_set_stream,
    .layer_wait = kvmm_cuda_layer_wait,
    .cuda_stats = kvmm_cuda_stats,
    .rest = kvmm_cuda_rest,
    .share = kvmm_cuda_share,
    .share_below = kvmm_cuda_share_below,
};
#endif
