/* SPDX-License-Identifier: MIT */
/*
 * CUDA memory ops for the slot core: grow (map chunks), shrink (unmap now,
 * or behind the slot's fence), the fence list and its settling, and the
 * background mapper, which maps the next chunks before a step needs them
 * so step returns without a driver call when it kept up. Memory leaves
 * the GPU only after the fence recorded behind its last reader has passed.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "cuda_kv.h"

#ifdef KVMM_HAVE_CUDA_H
static uint64_t kvmm_cuda_chunks(const struct kvmm_cuda_kv *ck, uint64_t bytes)
{
	return bytes / ck->kv->chunk_bytes;
}

/* Maps [from, to) of every part of @slot; all parts or none. */
int kvmm_cuda_map_parts(struct kvmm_cuda_kv *ck, uint32_t slot, uint64_t from, uint64_t to,
			bool zero)
{
	uint64_t nr = kvmm_cuda_chunks(ck, to - from);
	uint32_t p;
	int ret = 0;

	for (p = 0; p < ck->kv->geom.nparts && !ret; p++)
		ret =
		    kvmm_cuda_vmm_map(&ck->vmm, kvmm_cuda_part_chunk(ck, slot, p, from), nr, zero);
	if (ret) {
		while (p--)
			kvmm_cuda_vmm_unmap(&ck->vmm, kvmm_cuda_part_chunk(ck, slot, p, from), nr);
	}
	return ret;
}

int kvmm_cuda_unmap_slot(struct kvmm_cuda_kv *ck, uint32_t slot, uint64_t from, uint64_t to)
{
	uint64_t nr = kvmm_cuda_chunks(ck, to - from);
	int ret = 0;

	for (uint32_t p = 0; nr && p < ck->kv->geom.nparts; p++) {
		int err =
		    kvmm_cuda_vmm_unmap(&ck->vmm, kvmm_cuda_part_chunk(ck, slot, p, from), nr);

		ret = ret ? ret : err;
	}
	return ret;
}

/* Queues [0, bytes) of every part of @slot to be unmapped once @ev passes;
 * kv->lock held. The mapper polls the list. */
void kvmm_cuda_fence_slot(struct kvmm_cuda_kv *ck, uint32_t slot, CUevent ev, uint64_t bytes)
{
	const struct kvmm_kv_geom *g = &ck->kv->geom;
	struct kvmm_cuda_fence *f = calloc(1, sizeof(*f));
	uint64_t nr = kvmm_cuda_chunks(ck, bytes);

	if (!nr) {
		free(f);
		ck->d->cuEventDestroy(ev);
		return;
	}
	if (!f) { /* no memory to defer: wait here instead */
		if (ck->d->cuEventSynchronize(ev) == CUDA_SUCCESS) {
			ck->d->cuEventDestroy(ev);
			kvmm_cuda_unmap_slot(ck, slot, 0, bytes);
			return;
		}
		/* Not known to have passed: the memory stays mapped (and
		 * charged); destroy's wait decides when it may go. */
		ck->cst.fence_errors++;
		ck->d->cuEventDestroy(ev);
		return;
	}
	f->event = ev;
	f->first = kvmm_cuda_part_chunk(ck, slot, 0, 0);
	f->nr = nr;
	f->count = g->nparts;
	f->stride = g->nparts > 1 ? kvmm_cuda_chunks(ck, g->region_bytes) : 0;
	for (uint64_t k = 0; k < f->count; k++)
		kvmm_cuda_vmm_drain(&ck->vmm, f->first + k * f->stride, nr);
	kvmm_cuda_fence_push(&ck->fences, f);
	pthread_cond_signal(&ck->mapper_cond);
}

static int kvmm_cuda_event_passed(void *arg, void *event)
{
	const struct kvmm_cuda_kv *ck = arg;
	CUresult r = ck->d->cuEventQuery((CUevent)event);

	return r == CUDA_SUCCESS ? 1 : r == CUDA_ERROR_NOT_READY ? 0 : -1;
}

static void kvmm_cuda_fence_release(struct kvmm_cuda_kv *ck, struct kvmm_cuda_fence *f)
{
	while (f) {
		struct kvmm_cuda_fence *next = f->next;

		for (uint64_t k = 0; k < f->count; k++)
			kvmm_cuda_vmm_unmap(&ck->vmm, f->first + k * f->stride, f->nr);
		ck->d->cuEventDestroy((CUevent)f->event);
		free(f);
		f = next;
	}
}

/*
 * Unmaps the chunks whose fence has passed; with @wait, first waits on the
 * host for the oldest pending fence (that event only, never the device).
 * A fence whose event cannot be queried or waited for (a lost context, a
 * bad handle) stays listed, its memory mapped: nothing shows that the
 * kernels before it are done. kv->lock held; the context is current.
 * Return: 0; -EIO an event query or wait failed.
 */
static int kvmm_cuda_settle(struct kvmm_cuda_kv *ck, bool wait)
{
	struct kvmm_cuda_fence *done;
	int err = 0;

	if (!ck->fences.head)
		return 0;
	if (wait) {
		ck->cst.fences_waited++;
		if (ck->d->cuEventSynchronize((CUevent)ck->fences.head->event) != CUDA_SUCCESS)
			err = -EIO;
	}
	done = kvmm_cuda_fence_collect(&ck->fences, kvmm_cuda_event_passed, ck, &err);
	kvmm_cuda_fence_release(ck, done);
	if (err)
		ck->cst.fence_errors++;
	return err ? -EIO : 0;
}

int kvmm_cuda_settle_fences(struct kvmm_kv *kv, bool wait)
{
	struct kvmm_cuda_kv *ck = kvmm_cuda_kv_of(kv);
	uint64_t before = ck->fences.pending_chunks;
	int ret;

	if (!ck->fences.head)
		return 0;
	ret = kvmm_cuda_enter(ck);
	if (ret)
		return ret;
	ret = kvmm_cuda_settle(ck, wait);
	kvmm_cuda_leave(ck);
	if (ret)
		return ret;
	return wait || ck->fences.pending_chunks < before;
}

uint64_t kvmm_cuda_draining(const struct kvmm_kv *kv)
{
	const struct kvmm_cuda_kv *ck = kv->dev_data;

	return ck->fences.pending_chunks * kv->chunk_bytes;
}

/* Waits for every pending fence, in any order (they are listed in
 * reclaim order, not the order they were recorded). For destroy.
 * Return: 0; -EIO a wait failed. */
int kvmm_cuda_wait_all(struct kvmm_cuda_kv *ck)
{
	int ret = 0;

	for (struct kvmm_cuda_fence *f = ck->fences.head; f; f = f->next) {
		ck->cst.fences_waited++;
		if (ck->d->cuEventSynchronize((CUevent)f->event) != CUDA_SUCCESS) {
			ck->cst.fence_errors++;
			ret = -EIO;
		}
	}
	return ret;
}

/* Unmaps behind every fence and destroys their events; for destroy, once
 * nothing can read the memory any more. */
void kvmm_cuda_release_all(struct kvmm_cuda_kv *ck)
{
	struct kvmm_cuda_fence *all = ck->fences.head;

	ck->fences.head = NULL;
	ck->fences.pending_chunks = 0;
	kvmm_cuda_fence_release(ck, all);
}

/* Waits for (and retires) the fences over @slot's chunks in [from, to).
 * Return: 0; -EIO a wait failed (that fence stays, its memory mapped). */
static int kvmm_cuda_settle_range(struct kvmm_cuda_kv *ck, uint32_t slot, uint64_t from,
				  uint64_t to)
{
	for (uint32_t p = 0; p < ck->kv->geom.nparts; p++) {
		uint64_t first = kvmm_cuda_part_chunk(ck, slot, p, from);
		struct kvmm_cuda_fence *f;

		while ((f = kvmm_cuda_fence_find(&ck->fences, first,
						 kvmm_cuda_chunks(ck, to - from)))) {
			ck->cst.fences_waited++;
			if (ck->d->cuEventSynchronize((CUevent)f->event) != CUDA_SUCCESS) {
				ck->cst.fence_errors++;
				return -EIO;
			}
			kvmm_cuda_fence_remove(&ck->fences, f);
			kvmm_cuda_fence_release(ck, f);
		}
	}
	return 0;
}

/* Whether a chunk of @slot's [from, to) still waits on a fence. */
bool kvmm_cuda_fenced(const struct kvmm_cuda_kv *ck, uint32_t slot, uint64_t from, uint64_t to)
{
	for (uint32_t p = 0; p < ck->kv->geom.nparts; p++) {
		if (kvmm_cuda_fence_find(&ck->fences, kvmm_cuda_part_chunk(ck, slot, p, from),
					 kvmm_cuda_chunks(ck, to - from)))
			return true;
	}
	return false;
}

/* A reused slot's chunks may still drain behind an old fence: that first. */
int kvmm_cuda_grow(struct kvmm_kv *kv, uint32_t slot, uint64_t from, uint64_t to, bool zero)
{
	struct kvmm_cuda_kv *ck = kvmm_cuda_kv_of(kv);
	int ret;

	ret = kvmm_cuda_enter(ck);
	if (ret)
		return ret;
	ret = kvmm_cuda_settle_range(ck, slot, from, to);
	if (!ret)
		ret = kvmm_cuda_map_parts(ck, slot, from, to, zero);
	kvmm_cuda_leave(ck);
	return ret;
}

/* A freed slot's memory leaves behind its free event (the fence list);
 * memory past a slot's need, which no kernel reads, leaves at once. */
void kvmm_cuda_shrink(struct kvmm_kv *kv, uint32_t slot, uint64_t from, uint64_t to, bool fenced)
{
	struct kvmm_cuda_kv *ck = kvmm_cuda_kv_of(kv);
	struct kvmm_cuda_slot *sl = &ck->slots[slot];
	/* Without the context current: the unmaps are context-free VMM calls,
	 * and a fence is only listed (its event waits for a later settle). */
	bool in = !kvmm_cuda_enter(ck);

	if (fenced && !from && sl->ev) {
		kvmm_cuda_fence_slot(ck, slot, sl->ev, to);
		sl->ev = NULL; /* the fence list owns it now */
	} else {
		kvmm_cuda_unmap_slot(ck, slot, from, to);
	}
	if (in)
		kvmm_cuda_leave(ck);
}

/* [0, nr chunks) of every part of @dst map @src's handles (kv->lock held,
 * so @src keeps them meanwhile); all parts or none. */
int kvmm_cuda_share_parts(struct kvmm_cuda_kv *ck, uint32_t dst, uint32_t src, uint64_t bytes)
{
	uint64_t nr = kvmm_cuda_chunks(ck, bytes);
	uint32_t p;
	int ret = 0;

	for (p = 0; nr && p < ck->kv->geom.nparts && !ret; p++)
		ret = kvmm_cuda_vmm_share(&ck->vmm, kvmm_cuda_part_chunk(ck, dst, p, 0),
					  kvmm_cuda_part_chunk(ck, src, p, 0), nr);
	if (ret) {
		while (p--)
			kvmm_cuda_vmm_unmap(&ck->vmm, kvmm_cuda_part_chunk(ck, dst, p, 0), nr);
	}
	return ret;
}

/*
 * Prefix sharing: @dst maps @src's handles for [0, @shared) of every part
 * (the same GPU memory at two addresses) and a zeroed chunk of its own
 * after them, into which the GPU copies @src's next @tail bytes on the
 * engine's stream: behind the kernels that wrote them, before any that
 * reads @dst. What @dst held drains behind its fence first.
 */
int kvmm_cuda_share(struct kvmm_kv *kv, uint32_t dst, uint32_t src, uint64_t shared, uint64_t tail)
{
	struct kvmm_cuda_kv *ck = kvmm_cuda_kv_of(kv);
	uint64_t end = shared + (tail ? kv->chunk_bytes : 0);
	int ret = kvmm_cuda_enter(ck);

	if (ret)
		return ret;
	ret = kvmm_cuda_settle_range(ck, dst, 0, end);
	if (!ret)
		ret = kvmm_cuda_share_parts(ck, dst, src, shared);
	if (!ret && tail) {
		ret = kvmm_cuda_map_parts(ck, dst, shared, end, true);
		for (uint32_t p = 0; !ret && p < kv->geom.nparts; p++) {
			CUdeviceptr d = ck->vmm.va + kvmm_kv_part_va(kv, dst, p) + shared;
			CUdeviceptr s = ck->vmm.va + kvmm_kv_part_va(kv, src, p) + shared;

			ret = kvmm_cuda_err(ck->d->cuMemcpyDtoDAsync(d, s, tail, ck->stream));
		}
		if (ret) { /* copies queued into dst finish before it is unmapped */
			ck->d->cuStreamSynchronize(ck->stream);
			kvmm_cuda_unmap_slot(ck, dst, 0, end);
		}
	}
	kvmm_cuda_leave(ck);
	return ret;
}

void kvmm_cuda_map_ahead(struct kvmm_kv *kv)
{
	pthread_cond_signal(&kvmm_cuda_kv_of(kv)->mapper_cond);
}

/* Next slot with mapping to do after @from (round robin), or -1. */
static int64_t kvmm_cuda_mapper_pick(const struct kvmm_kv *kv, uint32_t from)
{
	for (uint32_t k = 1; k <= kv->cfg.max_slots; k++) {
		uint32_t i = (from + k) % kv->cfg.max_slots;
		const struct kvmm_kv_slot *s = &kv->slots[i];

		if (s->state == KVMM_SLOT_ACTIVE && !s->busy && s->target > s->mapped)
			return i;
	}
	return -1;
}

/* Maps one batch of one slot without kv->lock; memory pressure stops it
 * (the step that really needs the memory makes room). Never waits on a
 * fence while holding kv->lock: such a slot is retried once it passed.
 * Returns whether it mapped anything. */
static bool kvmm_cuda_mapper_work(struct kvmm_cuda_kv *ck, uint32_t slot)
{
	struct kvmm_kv *kv = ck->kv;
	struct kvmm_kv_slot *s = &kv->slots[slot];
	uint64_t from = s->mapped, to = s->target, bytes = (to - from) * kv->geom.nparts;
	int ret;

	if (kvmm_cuda_fenced(ck, slot, from, to))
		return false;
	if (kv->cfg.budget_bytes && kvmm_kv_held(kv) + bytes > kv->cfg.budget_bytes) {
		s->target = s->mapped;
		return false;
	}
	s->busy = true;
	pthread_mutex_unlock(&kv->lock);
	ret = kvmm_cuda_map_parts(ck, slot, from, to, true);
	pthread_mutex_lock(&kv->lock);
	s->busy = false;
	if (!ret) {
		kvmm_kv_slot_set(kv, s, s->state, to);
		kv->st.new_bytes += bytes;
		ck->cst.ahead_bytes += bytes;
	} else {
		s->target = s->mapped;
	}
	pthread_cond_broadcast(&kv->cond);
	return !ret;
}

static void *kvmm_cuda_mapper_main(void *arg)
{
	struct kvmm_cuda_kv *ck = arg;
	struct kvmm_kv *kv = ck->kv;
	uint32_t last = 0;
	bool in = !kvmm_cuda_enter(ck), lost = !in;

	kvmm_cuda_capture_relax(ck->d); /* the thread's own: never given back */
	pthread_mutex_lock(&kv->lock);
	while (!ck->stop) {
		int64_t i = lost ? -1 : kvmm_cuda_mapper_pick(kv, last);

		/* Poll fences between batches; a failed query (a lost context)
		 * ends the mapper's work: steps report the error themselves. */
		if (!lost && kvmm_cuda_settle(ck, false))
			lost = true;
		if (i >= 0)
			last = (uint32_t)i;
		if (i >= 0 && kvmm_cuda_mapper_work(ck, last))
			continue;
		if (ck->fences.head && !lost) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 200000; /* poll pending fences every 200 us */
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&ck->mapper_cond, &kv->lock, &ts);
		} else {
			pthread_cond_wait(&ck->mapper_cond, &kv->lock);
		}
	}
	pthread_mutex_unlock(&kv->lock);
	if (in)
		kvmm_cuda_leave(ck);
	return NULL;
}

int kvmm_cuda_mapper_start(struct kvmm_cuda_kv *ck)
{
	int err = pthread_create(&ck->mapper, NULL, kvmm_cuda_mapper_main, ck);

	if (err)
		return -err;
	ck->mapper_started = true;
	return 0;
}

void kvmm_cuda_mapper_stop(struct kvmm_cuda_kv *ck)
{
	if (!ck->mapper_started)
		return;
	pthread_mutex_lock(&ck->kv->lock);
	ck->stop = true;
	pthread_cond_signal(&ck->mapper_cond);
	pthread_mutex_unlock(&ck->kv->lock);
	pthread_join(ck->mapper, NULL);
	ck->mapper_started = false;
}
#endif
