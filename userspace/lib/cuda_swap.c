/* SPDX-License-Identifier: MIT */
/*
 * CUDA slot moves for the slot core, through the host shadow regions. Out:
 * the copy stream waits for the slot's fence (an event on the engine's
 * stream), copies the slot down, and only then are its GPU chunks
 * unmapped (for KVMM_TIER_FLASH the shadow then evicts to flash,
 * checksummed). In: chunks are mapped, flash chunks read back part by
 * part, and each layer's event is published as soon as its copies are
 * queued. A failed move leaves the data where it was.
 */
#include <errno.h>
#include <stdlib.h>

#include "cuda_kv.h"

#ifdef KVMM_HAVE_CUDA_H
static CUdeviceptr kvmm_cuda_part_va(const struct kvmm_cuda_kv *ck, uint32_t slot, uint32_t p)
{
	return ck->vmm.va + kvmm_kv_part_va(ck->kv, slot, p);
}

static void kvmm_cuda_shadow_discard(struct kvmm_kv *kv, uint32_t slot, uint64_t bytes)
{
	uint64_t off;

	for (uint32_t p = 0; bytes && p < kv->geom.nparts; p++) {
		struct kvmm_region *r = kvmm_kv_part(kv, slot, p, &off);

		kvmm_region_discard(r, off, bytes);
	}
}

/*
 * Shared chunks that a swapped-out slot's shadow already holds (a slot
 * sharing them went down first) are shared from that shadow, not copied
 * again: each shared chunk moves down once. Under kv->lock, as the swap-out
 * starts, so that slot stays down meanwhile; j->below gets the bytes per
 * part so shared.
 */
void kvmm_cuda_share_below(struct kvmm_kv_swap *j)
{
	struct kvmm_kv *kv = j->kv;
	uint64_t nr, from = 0, doff, soff;
	int64_t y;

	y = kvmm_kv_share_partner(kv, j->slot, 1U << KVMM_SLOT_HOST | 1U << KVMM_SLOT_FLASH, &nr);
	if (y >= 0) {
		from = nr * kv->chunk_bytes < j->bytes ? nr * kv->chunk_bytes : j->bytes;
		for (uint32_t p = 0; from && p < kv->geom.nparts; p++) {
			struct kvmm_region *rd = kvmm_kv_part(kv, j->slot, p, &doff);
			struct kvmm_region *rs = kvmm_kv_part(kv, (uint32_t)y, p, &soff);

			if (kvmm_region_share(rd, doff, rs, soff, from)) {
				kvmm_cuda_shadow_discard(kv, j->slot, from); /* copy it all then */
				from = 0;
			}
		}
	}
	j->below = from;
}

/* GPU -> shadow (-> flash); the context is current. */
static int kvmm_cuda_out_io(struct kvmm_kv_swap *j)
{
	struct kvmm_kv *kv = j->kv;
	struct kvmm_cuda_kv *ck = kvmm_cuda_kv_of(kv);
	uint64_t off, from;
	int ret, err;

	if (!j->bytes)
		return 0;
	from = j->below;
	pthread_mutex_lock(&ck->copy_lock);
	ret = kvmm_cuda_copy_after(&ck->copy, ck->slots[j->slot].ev);
	for (uint32_t p = 0; p < kv->geom.nparts && !ret && from < j->bytes; p++) {
		struct kvmm_region *r = kvmm_kv_part(kv, j->slot, p, &off);

		ret = kvmm_region_ensure(r, off + from, j->bytes - from);
		if (!ret)
			ret = kvmm_cuda_copy_d2h(
			    &ck->copy, (char *)kvmm_region_base(r) + off + from,
			    kvmm_cuda_part_va(ck, j->slot, p) + from, j->bytes - from);
	}
	err = kvmm_cuda_copy_drain(&ck->copy);
	pthread_mutex_unlock(&ck->copy_lock);
	ret = ret ? ret : err;
	if (!ret && j->to == KVMM_SLOT_FLASH) {
		/* Every part's shadow in one batch of writes, as host slots do. */
		struct kvmm_range_span *v = calloc(kv->geom.nparts, sizeof(*v));

		for (uint32_t p = 0; v && p < kv->geom.nparts; p++) {
			v[p].r = kvmm_kv_part(kv, j->slot, p, &v[p].offset);
			v[p].length = j->bytes;
		}
		ret = v ? kvmm_region_evict_many(v, kv->geom.nparts) : -ENOMEM;
		free(v);
	}
	if (ret)
		kvmm_cuda_shadow_discard(kv, j->slot, j->bytes);
	return ret;
}

/* The copies ran behind the slot's fence, so every kernel queued before
 * the swap call is done: the chunks go at once. */
int kvmm_cuda_copy_out(struct kvmm_kv_swap *j)
{
	struct kvmm_cuda_kv *ck = kvmm_cuda_kv_of(j->kv);
	int ret = kvmm_cuda_enter(ck), mode;

	if (ret)
		return ret;
	mode = kvmm_cuda_capture_relax(ck->d); /* on the context's worker */
	ret = kvmm_cuda_out_io(j);
	if (!ret)
		kvmm_cuda_unmap_slot(ck, j->slot, 0, j->mapped);
	kvmm_cuda_capture_restore(ck->d, mode);
	kvmm_cuda_leave(ck);
	return ret;
}

/*
 * Maps the slot's chunks for a swap-in: first the shared prefix a slot on
 * the GPU still maps (its handles, mapped here too: nothing to copy; j->keep
 * becomes its length), then the rest, under kv->lock (the core's growth,
 * making room) only when the budget, a fence, the ledger or the device
 * asks for it.
 */
static int kvmm_cuda_in_map(struct kvmm_kv_swap *j)
{
	struct kvmm_kv *kv = j->kv;
	struct kvmm_cuda_kv *ck = kvmm_cuda_kv_of(kv);
	uint64_t nr;
	int64_t z;
	bool tight;
	int ret = 0;

	pthread_mutex_lock(&kv->lock);
	z = kvmm_kv_share_partner(kv, j->slot, kv->dev->charged, &nr);
	j->keep = z < 0 ? 0 : nr * kv->chunk_bytes < j->bytes ? nr * kv->chunk_bytes : j->bytes;
	if (j->keep)
		ret = kvmm_cuda_share_parts(ck, j->slot, (uint32_t)z, j->keep);
	if (ret)
		j->keep = 0; /* then copy it all */
	tight = kv->cfg.budget_bytes &&
		kvmm_kv_held(kv) + (j->bytes - j->keep) * kv->geom.nparts > kv->cfg.budget_bytes;
	if (j->keep < j->bytes && (tight || ck->fences.head)) {
		ret = kvmm_kv_grow_locked(kv, j->slot, j->keep, j->bytes, false);
		if (ret)
			kvmm_cuda_unmap_slot(ck, j->slot, 0, j->keep);
		pthread_mutex_unlock(&kv->lock);
		return ret;
	}
	pthread_mutex_unlock(&kv->lock);
	if (j->keep == j->bytes)
		return 0;
	/* The copies overwrite every byte: no zero fill. */
	ret = kvmm_cuda_map_parts(ck, j->slot, j->keep, j->bytes, false);
	if (ret == -EDQUOT || ret == -ENOMEM) {
		pthread_mutex_lock(&kv->lock);
		ret = kvmm_kv_grow_locked(kv, j->slot, j->keep, j->bytes, false);
		pthread_mutex_unlock(&kv->lock);
	}
	if (ret) {
		pthread_mutex_lock(&kv->lock);
		kvmm_cuda_unmap_slot(ck, j->slot, 0, j->keep);
		pthread_mutex_unlock(&kv->lock);
	}
	return ret;
}

/* Shadow (<- flash) -> GPU, publishing each layer as its copies queue. */
static int kvmm_cuda_in_io(struct kvmm_kv_swap *j)
{
	struct kvmm_kv *kv = j->kv;
	struct kvmm_cuda_kv *ck = kvmm_cuda_kv_of(kv);
	struct kvmm_cuda_slot *sl = &ck->slots[j->slot];
	bool lm = kv->cfg.layout == KVMM_LAYOUT_LAYER_MAJOR;
	uint64_t off;
	int ret = 0, err;

	uint64_t k = j->keep, n = j->bytes - j->keep; /* [0, keep) is mapped shared */

	pthread_mutex_lock(&ck->copy_lock);
	for (uint32_t p = 0; p < kv->geom.nparts && !ret; p++) {
		struct kvmm_region *r = kvmm_kv_part(kv, j->slot, p, &off);
		uint32_t ready = lm ? (p + 1) / 2 : kv->cfg.layers;

		if (n && j->from == KVMM_SLOT_FLASH) /* -EIO: bad read or checksum */
			ret = kvmm_region_ensure(r, off + k, n);
		if (!ret && n)
			ret = kvmm_cuda_copy_h2d(&ck->copy, kvmm_cuda_part_va(ck, j->slot, p) + k,
						 (char *)kvmm_region_base(r) + off + k, n);
		if (ret || (lm && p % 2 == 0))
			continue; /* a layer is ready once both its K and V are queued */
		for (uint32_t l = lm ? ready - 1 : 0; l < ready && !ret; l++)
			ret = kvmm_cuda_err(ck->d->cuEventRecord(sl->layer_ev[l], ck->copy.stream));
		if (!ret)
			kvmm_kv_publish(kv, j->slot, ready);
	}
	err = kvmm_cuda_copy_drain(&ck->copy);
	pthread_mutex_unlock(&ck->copy_lock);
	return ret ? ret : err;
}

static int kvmm_cuda_layer_events(struct kvmm_cuda_kv *ck, struct kvmm_cuda_slot *sl)
{
	uint32_t layers = ck->kv->cfg.layers;

	if (!sl->layer_ev)
		sl->layer_ev = calloc(layers, sizeof(*sl->layer_ev));
	if (!sl->layer_ev)
		return -ENOMEM;
	for (uint32_t l = 0; l < layers; l++) {
		int ret = sl->layer_ev[l] ? 0
					  : kvmm_cuda_err(ck->d->cuEventCreate(
						&sl->layer_ev[l], KVMM_CUDA_EVENT_FLAGS));

		if (ret)
			return ret; /* the events made are kept and freed with the cache */
	}
	return 0;
}

/* The engine may have started on published layers: unmap behind it. */
static void kvmm_cuda_in_undo(struct kvmm_kv_swap *j)
{
	struct kvmm_kv *kv = j->kv;
	struct kvmm_cuda_kv *ck = kvmm_cuda_kv_of(kv);
	struct kvmm_cuda_slot *sl = &ck->slots[j->slot];
	int ret = 0;

	pthread_mutex_lock(&kv->lock);
	if (!sl->ev)
		ret = kvmm_cuda_err(ck->d->cuEventCreate(&sl->ev, KVMM_CUDA_EVENT_FLAGS));
	if (!ret)
		ret = kvmm_cuda_err(ck->d->cuEventRecord(sl->ev, ck->stream));
	if (!ret) {
		kvmm_cuda_fence_slot(ck, j->slot, sl->ev, j->bytes);
		sl->ev = NULL;
	} else if (!ck->d->cuStreamSynchronize(ck->stream)) {
		kvmm_cuda_unmap_slot(ck, j->slot, 0, j->bytes);
	}
	pthread_mutex_unlock(&kv->lock);
}

int kvmm_cuda_copy_in(struct kvmm_kv_swap *j)
{
	struct kvmm_cuda_kv *ck = kvmm_cuda_kv_of(j->kv);
	bool mapped = false;
	int ret = kvmm_cuda_enter(ck), mode;

	if (ret)
		return ret;
	mode = kvmm_cuda_capture_relax(ck->d); /* on the context's worker */
	ret = kvmm_cuda_layer_events(ck, &ck->slots[j->slot]);
	if (!ret && j->bytes) {
		ret = kvmm_cuda_in_map(j);
		mapped = !ret;
		if (!ret)
			ret = kvmm_cuda_in_io(j);
	}
	if (!ret)
		kvmm_cuda_shadow_discard(j->kv, j->slot, j->bytes);
	else if (mapped)
		kvmm_cuda_in_undo(j);
	kvmm_cuda_capture_restore(ck->d, mode);
	kvmm_cuda_leave(ck);
	return ret;
}

int kvmm_cuda_layer_wait(struct kvmm_kv *kv, uint32_t slot, uint32_t layer, void *stream)
{
	struct kvmm_cuda_kv *ck = kvmm_cuda_kv_of(kv);
	CUevent ev = ck->slots[slot].layer_ev[layer]; /* published: recorded */
	int ret = kvmm_cuda_enter(ck);

	if (ret)
		return ret;
	ret = kvmm_cuda_err(stream ? ck->d->cuStreamWaitEvent((CUstream)stream, ev, 0)
				   : ck->d->cuEventSynchronize(ev));
	kvmm_cuda_leave(ck);
	return ret;
}
#endif
