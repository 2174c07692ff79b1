/* SPDX-License-Identifier: MIT */
/*
 * CUDA slot swaps through the host shadow regions. Out: the copy stream
 * waits for an event on the engine's stream, copies the slot down, and
 * only then are its GPU chunks unmapped (for KVMM_TIER_FLASH the shadow
 * then evicts to flash, checksummed). In: chunks are mapped, flash chunks
 * read back part by part, and each layer's event is published as soon as
 * its copies are queued. A failed move leaves the data where it was.
 */
#include <errno.h>
#include <stdlib.h>

#include "cuda_kv.h"

#ifdef KVMM_HAVE_CUDA_H
struct kvmm_cuda_swap {
	struct kvmm_cuda_kv *ck;
	uint32_t slot;
	uint8_t to;	 /* KVMM_SLOT_* on success */
	uint8_t from;	 /* KVMM_SLOT_* it left */
	uint64_t bytes;	 /* per part: the data that moves */
	uint64_t mapped; /* per part: GPU chunks to unmap after a swap-out */
	CUevent ev;	 /* swap-out: after the engine's last use */
};

static CUdeviceptr kvmm_cuda_part_va(const struct kvmm_cuda_kv *ck, uint32_t slot, uint32_t p)
{
	return ck->vmm.va + kvmm_cuda_part_chunk(ck, slot, p, 0) * ck->chunk;
}

static void kvmm_cuda_shadow_discard(struct kvmm_cuda_kv *ck, uint32_t slot, uint64_t bytes)
{
	uint64_t off;

	for (uint32_t p = 0; bytes && p < ck->geom.nparts; p++) {
		struct kvmm_region *r = kvmm_cuda_shadow(ck, slot, p, &off);

		kvmm_region_discard(r, off, bytes);
	}
}

/* GPU -> shadow (-> flash); the context is current. */
static int kvmm_cuda_out_io(struct kvmm_cuda_swap *j)
{
	struct kvmm_cuda_kv *ck = j->ck;
	uint64_t off;
	int ret, err;

	if (!j->bytes)
		return 0;
	pthread_mutex_lock(&ck->copy_lock);
	ret = kvmm_cuda_copy_after(&ck->copy, j->ev);
	for (uint32_t p = 0; p < ck->geom.nparts && !ret; p++) {
		struct kvmm_region *r = kvmm_cuda_shadow(ck, j->slot, p, &off);

		ret = kvmm_region_ensure(r, off, j->bytes);
		if (!ret)
			ret = kvmm_cuda_copy_d2h(&ck->copy, (char *)kvmm_region_base(r) + off,
						 kvmm_cuda_part_va(ck, j->slot, p), j->bytes);
	}
	err = kvmm_cuda_copy_drain(&ck->copy);
	pthread_mutex_unlock(&ck->copy_lock);
	ret = ret ? ret : err;
	if (!ret && j->to == KVMM_SLOT_FLASH) {
		/* Every part's shadow in one batch of writes, as host slots do. */
		struct kvmm_range_span *v = calloc(ck->geom.nparts, sizeof(*v));

		for (uint32_t p = 0; v && p < ck->geom.nparts; p++) {
			v[p].r = kvmm_cuda_shadow(ck, j->slot, p, &v[p].offset);
			v[p].length = j->bytes;
		}
		ret = v ? kvmm_region_evict_many(v, ck->geom.nparts) : -ENOMEM;
		free(v);
	}
	if (ret)
		kvmm_cuda_shadow_discard(ck, j->slot, j->bytes);
	return ret;
}

/* After a swap-out's I/O; ck->lock held. The copies ran behind j->ev, so
 * every kernel before the swap call is done: the chunks go at once. */
static void kvmm_cuda_out_finish(struct kvmm_cuda_swap *j, int ret)
{
	struct kvmm_cuda_kv *ck = j->ck;
	struct kvmm_cuda_slot *s = &ck->slots[j->slot];

	if (ret) {
		s->state = KVMM_SLOT_ACTIVE;
		return;
	}
	kvmm_cuda_unmap_slot(ck, j->slot, 0, j->mapped);
	s->state = j->to;
	s->mapped = j->bytes;
	s->target = 0;
	ck->st.swap_outs++;
}

/* Sets up a swap-out of an active, idle slot; ck->lock held, context current. */
static int kvmm_cuda_out_begin(struct kvmm_cuda_kv *ck, uint32_t slot, uint8_t to,
			       struct kvmm_cuda_swap *j)
{
	struct kvmm_cuda_slot *s = &ck->slots[slot];
	uint64_t tokens = (uint64_t)s->seq_len + ck->cfg.lookahead;
	int ret;

	if (tokens > ck->cfg.max_tokens)
		tokens = ck->cfg.max_tokens;
	*j = (struct kvmm_cuda_swap){.ck = ck, .slot = slot, .to = to, .mapped = s->mapped};
	/* What step made resident moves; chunks mapped ahead are just dropped. */
	j->bytes = kvmm_cuda_part_bytes(ck, tokens);
	if (j->bytes > s->mapped)
		j->bytes = s->mapped;
	ret = kvmm_cuda_err(ck->d->cuEventCreate(&j->ev, CU_EVENT_DISABLE_TIMING));
	if (!ret)
		ret = kvmm_cuda_err(ck->d->cuEventRecord(j->ev, ck->stream));
	if (ret) {
		if (j->ev)
			ck->d->cuEventDestroy(j->ev);
		return ret;
	}
	s->from = s->state;
	s->state = KVMM_SLOT_IN_FLIGHT;
	return 0;
}

/* The policy's synchronous swap-out to DRAM; ck->lock held, context current. */
int kvmm_cuda_swap_out_locked(struct kvmm_cuda_kv *ck, uint32_t slot)
{
	struct kvmm_cuda_swap j;
	int ret = kvmm_cuda_out_begin(ck, slot, KVMM_SLOT_HOST, &j);

	if (ret)
		return ret;
	ret = kvmm_cuda_out_io(&j);
	kvmm_cuda_out_finish(&j, ret);
	ck->d->cuEventDestroy(j.ev);
	return ret;
}

static int kvmm_cuda_out_job(void *arg)
{
	struct kvmm_cuda_swap *j = arg;
	struct kvmm_cuda_kv *ck = j->ck;
	int ret;

	kvmm_cuda_enter(ck);
	ret = kvmm_cuda_out_io(j);
	pthread_mutex_lock(&ck->lock);
	kvmm_cuda_out_finish(j, ret);
	ck->in_flight--;
	pthread_cond_broadcast(&ck->cond);
	pthread_mutex_unlock(&ck->lock);
	ck->d->cuEventDestroy(j->ev);
	kvmm_cuda_leave(ck);
	free(j);
	return ret;
}

/* Maps the slot's chunks for a swap-in, making room under ck->lock only
 * when the budget, the ledger or the device asks for it. */
static int kvmm_cuda_in_map(struct kvmm_cuda_swap *j)
{
	struct kvmm_cuda_kv *ck = j->ck;
	uint64_t nr = j->bytes / ck->chunk;
	uint32_t p;
	bool tight;
	int ret = 0;

	pthread_mutex_lock(&ck->lock);
	tight = ck->cfg.host_budget &&
		kvmm_cuda_gpu_bytes(ck) + j->bytes * ck->geom.nparts > ck->cfg.host_budget;
	if (tight || ck->fences.head) {
		ret = kvmm_cuda_map_locked(ck, j->slot, 0, j->bytes, false);
		pthread_mutex_unlock(&ck->lock);
		return ret;
	}
	pthread_mutex_unlock(&ck->lock);
	for (p = 0; p < ck->geom.nparts && !ret; p++)
		ret = kvmm_cuda_vmm_map(&ck->vmm, kvmm_cuda_part_chunk(ck, j->slot, p, 0), nr,
					false); /* the copies overwrite every byte */
	if (ret) {
		while (p--)
			kvmm_cuda_vmm_unmap(&ck->vmm, kvmm_cuda_part_chunk(ck, j->slot, p, 0), nr);
		if (ret == -EDQUOT || ret == -ENOMEM) {
			pthread_mutex_lock(&ck->lock);
			ret = kvmm_cuda_map_locked(ck, j->slot, 0, j->bytes, false);
			pthread_mutex_unlock(&ck->lock);
		}
	}
	return ret;
}

static void kvmm_cuda_publish(struct kvmm_cuda_kv *ck, struct kvmm_cuda_slot *s, uint32_t ready)
{
	pthread_mutex_lock(&ck->progress_lock);
	s->layers_ready = ready;
	pthread_cond_broadcast(&ck->progress_cond);
	pthread_mutex_unlock(&ck->progress_lock);
}

/* Shadow (<- flash) -> GPU, publishing each layer as its copies queue. */
static int kvmm_cuda_in_io(struct kvmm_cuda_swap *j)
{
	struct kvmm_cuda_kv *ck = j->ck;
	struct kvmm_cuda_slot *s = &ck->slots[j->slot];
	bool lm = ck->cfg.layout == KVMM_LAYOUT_LAYER_MAJOR;
	uint64_t off;
	int ret = 0, err;

	pthread_mutex_lock(&ck->copy_lock);
	for (uint32_t p = 0; p < ck->geom.nparts && !ret; p++) {
		struct kvmm_region *r = kvmm_cuda_shadow(ck, j->slot, p, &off);
		uint32_t ready = lm ? (p + 1) / 2 : ck->cfg.layers;

		if (j->from == KVMM_SLOT_FLASH)
			ret = kvmm_region_ensure(r, off, j->bytes); /* -EIO: bad read or checksum */
		if (!ret)
			ret = kvmm_cuda_copy_h2d(&ck->copy, kvmm_cuda_part_va(ck, j->slot, p),
						 (char *)kvmm_region_base(r) + off, j->bytes);
		if (ret || (lm && p % 2 == 0))
			continue; /* a layer is ready once both its K and V are queued */
		for (uint32_t l = lm ? ready - 1 : 0; l < ready && !ret; l++)
			ret = kvmm_cuda_err(ck->d->cuEventRecord(s->layer_ev[l], ck->copy.stream));
		if (!ret)
			kvmm_cuda_publish(ck, s, ready);
	}
	err = kvmm_cuda_copy_drain(&ck->copy);
	pthread_mutex_unlock(&ck->copy_lock);
	return ret ? ret : err;
}

static int kvmm_cuda_in_job(void *arg)
{
	struct kvmm_cuda_swap *j = arg;
	struct kvmm_cuda_kv *ck = j->ck;
	struct kvmm_cuda_slot *s = &ck->slots[j->slot];
	bool mapped = false;
	int ret = 0;

	kvmm_cuda_enter(ck);
	if (j->bytes) {
		ret = kvmm_cuda_in_map(j);
		mapped = !ret;
		if (!ret)
			ret = kvmm_cuda_in_io(j);
	}
	if (!ret)
		kvmm_cuda_shadow_discard(ck, j->slot, j->bytes);
	pthread_mutex_lock(&ck->lock);
	if (!ret) {
		s->state = KVMM_SLOT_ACTIVE;
		s->target = s->mapped = s->need = j->bytes;
		s->last_step = ++ck->clock;
		ck->st.swap_ins++;
	} else {
		if (mapped) {
			/* The engine may have started on published layers: unmap behind it. */
			CUevent ev = NULL;

			if (!ck->d->cuEventCreate(&ev, CU_EVENT_DISABLE_TIMING) &&
			    !ck->d->cuEventRecord(ev, ck->stream))
				kvmm_cuda_fence_slot(ck, j->slot, ev, j->bytes);
			else if (!ck->d->cuStreamSynchronize(ck->stream))
				kvmm_cuda_unmap_slot(ck, j->slot, 0, j->bytes);
		}
		s->state = j->from;
	}
	ck->in_flight--;
	pthread_cond_broadcast(&ck->cond);
	pthread_cond_signal(&ck->mapper_cond);
	pthread_mutex_unlock(&ck->lock);
	pthread_mutex_lock(&ck->progress_lock);
	s->swapping_in = false;
	s->swap_err = ret;
	pthread_cond_broadcast(&ck->progress_cond);
	pthread_mutex_unlock(&ck->progress_lock);
	kvmm_cuda_leave(ck);
	free(j);
	return ret;
}

static int kvmm_cuda_layer_events(struct kvmm_cuda_kv *ck, struct kvmm_cuda_slot *s)
{
	if (s->layer_ev)
		return 0;
	s->layer_ev = calloc(ck->cfg.layers, sizeof(*s->layer_ev));
	if (!s->layer_ev)
		return -ENOMEM;
	for (uint32_t l = 0; l < ck->cfg.layers; l++) {
		int ret =
		    kvmm_cuda_err(ck->d->cuEventCreate(&s->layer_ev[l], CU_EVENT_DISABLE_TIMING));

		if (ret)
			return ret; /* the events made are kept and freed with the cache */
	}
	return 0;
}

int kvmm_cuda_kv_swap_out(struct kvmm_cuda_kv *ck, uint32_t slot, enum kvmm_tier tier,
			  struct kvmm_op **opp)
{
	struct kvmm_cuda_slot *s;
	struct kvmm_cuda_swap *j;
	int ret;

	if (!ck || slot >= ck->cfg.max_slots || (tier != KVMM_TIER_HOST && tier != KVMM_TIER_FLASH))
		return -EINVAL;
	j = malloc(sizeof(*j));
	if (!j)
		return -ENOMEM;
	pthread_mutex_lock(&ck->lock);
	s = &ck->slots[slot];
	while (s->busy)
		pthread_cond_wait(&ck->cond, &ck->lock);
	if (s->state != KVMM_SLOT_ACTIVE || s->pins) {
		pthread_mutex_unlock(&ck->lock);
		free(j);
		return -EAGAIN;
	}
	kvmm_cuda_enter(ck);
	ret = kvmm_cuda_out_begin(ck, slot,
				  tier == KVMM_TIER_HOST ? KVMM_SLOT_HOST : KVMM_SLOT_FLASH, j);
	if (!ret) {
		ck->in_flight++;
		ret = kvmm_worker_submit(ck->ctx, kvmm_cuda_out_job, j, opp);
		if (ret) {
			ck->in_flight--;
			s->state = s->from;
			ck->d->cuEventDestroy(j->ev);
		}
	}
	kvmm_cuda_leave(ck);
	pthread_mutex_unlock(&ck->lock);
	if (ret)
		free(j);
	return ret;
}

int kvmm_cuda_kv_swap_in(struct kvmm_cuda_kv *ck, uint32_t slot, struct kvmm_op **opp)
{
	struct kvmm_cuda_slot *s;
	struct kvmm_cuda_swap *j;
	int ret;

	if (!ck || slot >= ck->cfg.max_slots)
		return -EINVAL;
	j = malloc(sizeof(*j));
	if (!j)
		return -ENOMEM;
	pthread_mutex_lock(&ck->lock);
	s = &ck->slots[slot];
	if (s->state != KVMM_SLOT_HOST && s->state != KVMM_SLOT_FLASH) {
		pthread_mutex_unlock(&ck->lock);
		free(j);
		return -EAGAIN;
	}
	kvmm_cuda_enter(ck);
	ret = kvmm_cuda_layer_events(ck, s);
	kvmm_cuda_leave(ck);
	if (!ret) {
		*j = (struct kvmm_cuda_swap){.ck = ck,
					     .slot = slot,
					     .to = KVMM_SLOT_ACTIVE,
					     .from = s->state,
					     .bytes = s->mapped};
		pthread_mutex_lock(&ck->progress_lock);
		s->swapping_in = true;
		s->layers_ready = 0;
		s->swap_err = 0;
		pthread_mutex_unlock(&ck->progress_lock);
		s->from = s->state;
		s->state = KVMM_SLOT_IN_FLIGHT;
		ck->in_flight++;
		ret = kvmm_worker_submit(ck->ctx, kvmm_cuda_in_job, j, opp);
		if (ret) {
			ck->in_flight--;
			s->state = s->from;
			pthread_mutex_lock(&ck->progress_lock);
			s->swapping_in = false;
			pthread_mutex_unlock(&ck->progress_lock);
		}
	}
	pthread_mutex_unlock(&ck->lock);
	if (ret)
		free(j);
	return ret;
}

int kvmm_cuda_kv_swap_in_wait_layer(struct kvmm_cuda_kv *ck, uint32_t slot, uint32_t layer,
				    void *stream)
{
	struct kvmm_cuda_slot *s;
	CUevent ev = NULL;
	int ret;

	if (!ck || slot >= ck->cfg.max_slots || layer >= ck->cfg.layers)
		return -EINVAL;
	s = &ck->slots[slot];
	pthread_mutex_lock(&ck->progress_lock);
	while (s->swapping_in && s->layers_ready <= layer)
		pthread_cond_wait(&ck->progress_cond, &ck->progress_lock);
	if (s->swapping_in)
		ev = s->layer_ev[layer];
	ret = s->swap_err;
	pthread_mutex_unlock(&ck->progress_lock);
	if (ev) {
		kvmm_cuda_enter(ck);
		ret = kvmm_cuda_err(stream ? ck->d->cuStreamWaitEvent((CUstream)stream, ev, 0)
					   : ck->d->cuEventSynchronize(ev));
		kvmm_cuda_leave(ck);
		return ret;
	}
	if (ret)
		return ret;
	return kvmm_cuda_kv_slot_state(ck, slot) == KVMM_SLOT_ACTIVE ? 0 : -EAGAIN;
}
#endif
