/* SPDX-License-Identifier: MIT */
/*
 * CUDA step: map what each slot needs now, and let the background mapper
 * map the next chunks before they are needed, so step returns without a
 * driver call when the mapper kept up. Memory leaves the GPU only after
 * the fence recorded behind its last reader has passed (settle).
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "cuda_kv.h"

#ifdef KVMM_HAVE_CUDA_H
static uint64_t kvmm_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* GPU memory the cache holds: slots on the GPU plus chunks still draining. */
uint64_t kvmm_cuda_gpu_bytes(const struct kvmm_cuda_kv *ck)
{
	uint64_t bytes = ck->fences.pending_chunks * ck->chunk;

	for (uint32_t i = 0; i < ck->cfg.max_slots; i++) {
		const struct kvmm_cuda_slot *s = &ck->slots[i];
		uint8_t where = s->state == KVMM_SLOT_IN_FLIGHT ? s->from : s->state;

		if (where == KVMM_SLOT_ACTIVE || where == KVMM_SLOT_FREE)
			bytes += s->mapped * ck->geom.nparts;
	}
	return bytes;
}

/* Maps [from, to) of every part of @slot; all parts or none. */
static int kvmm_cuda_map_parts(struct kvmm_cuda_kv *ck, uint32_t slot, uint64_t from, uint64_t to,
			       bool zero)
{
	uint64_t nr = (to - from) / ck->chunk;
	uint32_t p;
	int ret = 0;

	for (p = 0; p < ck->geom.nparts && !ret; p++)
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
	uint64_t nr = (to - from) / ck->chunk;
	int ret = 0;

	for (uint32_t p = 0; nr && p < ck->geom.nparts; p++) {
		int err =
		    kvmm_cuda_vmm_unmap(&ck->vmm, kvmm_cuda_part_chunk(ck, slot, p, from), nr);

		ret = ret ? ret : err;
	}
	return ret;
}

/* Queues [0, bytes) of every part of @slot to be unmapped once @ev passes. */
void kvmm_cuda_fence_slot(struct kvmm_cuda_kv *ck, uint32_t slot, CUevent ev, uint64_t bytes)
{
	struct kvmm_cuda_fence *f = calloc(1, sizeof(*f));
	uint64_t nr = bytes / ck->chunk;

	if (!nr) {
		free(f);
		ck->d->cuEventDestroy(ev);
		return;
	}
	if (!f) { /* no memory to defer: wait here instead */
		ck->d->cuEventSynchronize(ev);
		ck->d->cuEventDestroy(ev);
		kvmm_cuda_unmap_slot(ck, slot, 0, bytes);
		return;
	}
	f->event = ev;
	f->first = kvmm_cuda_part_chunk(ck, slot, 0, 0);
	f->nr = nr;
	f->count = ck->geom.nparts;
	f->stride = ck->geom.nparts > 1 ? ck->geom.region_bytes / ck->chunk : 0;
	for (uint64_t k = 0; k < f->count; k++)
		kvmm_cuda_vmm_drain(&ck->vmm, f->first + k * f->stride, nr);
	kvmm_cuda_fence_push(&ck->fences, f);
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
 * ck->lock held; the context is current.
 */
void kvmm_cuda_settle(struct kvmm_cuda_kv *ck, bool wait)
{
	struct kvmm_cuda_fence *done;

	if (!ck->fences.head)
		return;
	if (wait) {
		ck->d->cuEventSynchronize((CUevent)ck->fences.head->event);
		ck->cst.fences_waited++;
	}
	done = kvmm_cuda_fence_collect(&ck->fences, kvmm_cuda_event_passed, ck);
	kvmm_cuda_fence_release(ck, done);
}

/*
 * Waits for every pending fence, then unmaps behind them all (a failed
 * wait means the context is lost: no kernel runs any more). For destroy.
 */
void kvmm_cuda_settle_all(struct kvmm_cuda_kv *ck)
{
	struct kvmm_cuda_fence *all = ck->fences.head;

	for (struct kvmm_cuda_fence *f = all; f; f = f->next) {
		ck->d->cuEventSynchronize((CUevent)f->event);
		ck->cst.fences_waited++;
	}
	ck->fences.head = NULL;
	ck->fences.pending_chunks = 0;
	kvmm_cuda_fence_release(ck, all);
}

/* Waits for (and retires) the fences over @slot's chunks in [from, to). */
static void kvmm_cuda_settle_range(struct kvmm_cuda_kv *ck, uint32_t slot, uint64_t from,
				   uint64_t to)
{
	for (uint32_t p = 0; p < ck->geom.nparts; p++) {
		uint64_t first = kvmm_cuda_part_chunk(ck, slot, p, from);
		struct kvmm_cuda_fence *f;

		while ((f = kvmm_cuda_fence_find(&ck->fences, first, (to - from) / ck->chunk))) {
			kvmm_cuda_fence_remove(&ck->fences, f);
			ck->d->cuEventSynchronize((CUevent)f->event);
			ck->cst.fences_waited++;
			kvmm_cuda_fence_release(ck, f);
		}
	}
}

/* The freed slot holding the most GPU memory, or -1. */
static int64_t kvmm_cuda_reclaim_victim(const struct kvmm_cuda_kv *ck)
{
	int64_t best = -1;

	for (uint32_t i = 0; i < ck->cfg.max_slots; i++) {
		const struct kvmm_cuda_slot *s = &ck->slots[i];

		if (s->state == KVMM_SLOT_FREE && s->mapped &&
		    (best < 0 || s->mapped > ck->slots[best].mapped))
			best = i;
	}
	return best;
}

/* A freed slot's memory leaves behind its free event (the fence list). */
static void kvmm_cuda_reclaim(struct kvmm_cuda_kv *ck, uint32_t slot)
{
	struct kvmm_cuda_slot *s = &ck->slots[slot];

	while (s->busy) /* the mapper finishes its batch first */
		pthread_cond_wait(&ck->cond, &ck->lock);
	if (s->state != KVMM_SLOT_FREE)
		return; /* reused meanwhile: no longer a victim */

	ck->st.reclaimed_bytes += s->mapped * ck->geom.nparts;
	if (s->free_ev)
		kvmm_cuda_fence_slot(ck, slot, s->free_ev, s->mapped);
	else
		kvmm_cuda_unmap_slot(ck, slot, 0, s->mapped);
	s->free_ev = NULL;
	s->mapped = s->target = s->need = 0;
}

int kvmm_cuda_kv_trim(struct kvmm_cuda_kv *ck, uint64_t keep_bytes)
{
	if (!ck)
		return -EINVAL;
	pthread_mutex_lock(&ck->lock);
	kvmm_cuda_enter(ck);
	for (;;) {
		uint64_t cached = 0;
		int64_t v = kvmm_cuda_reclaim_victim(ck);

		for (uint32_t i = 0; i < ck->cfg.max_slots; i++)
			if (ck->slots[i].state == KVMM_SLOT_FREE)
				cached += ck->slots[i].mapped * ck->geom.nparts;
		if (cached <= keep_bytes || v < 0)
			break;
		kvmm_cuda_reclaim(ck, (uint32_t)v);
	}
	kvmm_cuda_settle(ck, false); /* the rest: the mapper polls, or the next need waits */
	kvmm_cuda_leave(ck);
	pthread_cond_signal(&ck->mapper_cond);
	pthread_mutex_unlock(&ck->lock);
	return 0;
}

/* Lowest priority, then least recently stepped; never pinned or stepping. */
static int64_t kvmm_cuda_swap_victim(const struct kvmm_cuda_kv *ck)
{
	int64_t best = -1;

	for (uint32_t i = 0; i < ck->cfg.max_slots; i++) {
		const struct kvmm_cuda_slot *s = &ck->slots[i], *b;

		if (s->state != KVMM_SLOT_ACTIVE || s->pins || ck->stepping[i] || !s->mapped)
			continue;
		if (best < 0) {
			best = i;
			continue;
		}
		b = &ck->slots[best];
		if (s->priority < b->priority ||
		    (s->priority == b->priority && s->last_step < b->last_step))
			best = i;
	}
	return best;
}

/* The slot holding the most memory mapped ahead of its need, or -1. */
static int64_t kvmm_cuda_ahead_victim(const struct kvmm_cuda_kv *ck)
{
	int64_t best = -1;

	for (uint32_t i = 0; i < ck->cfg.max_slots; i++) {
		const struct kvmm_cuda_slot *s = &ck->slots[i];

		if (s->state == KVMM_SLOT_ACTIVE && !s->busy && s->mapped > s->need &&
		    (best < 0 ||
		     s->mapped - s->need > ck->slots[best].mapped - ck->slots[best].need))
			best = i;
	}
	return best;
}

/*
 * Frees some GPU memory: retire passed fences, else drop chunks mapped
 * ahead (no kernel reads past seq_len + lookahead), else reclaim a freed slot
 * behind its free event, else wait for the oldest fence, else (auto-swap)
 * swap the coldest slot out to DRAM. -ENOMEM when nothing is left.
 */
static int kvmm_cuda_make_room(struct kvmm_cuda_kv *ck)
{
	uint64_t before = ck->fences.pending_chunks;
	int64_t v;
	int ret;

	kvmm_cuda_settle(ck, false);
	if (ck->fences.pending_chunks < before)
		return 0;
	v = kvmm_cuda_ahead_victim(ck);
	if (v >= 0) {
		struct kvmm_cuda_slot *s = &ck->slots[v];

		kvmm_cuda_unmap_slot(ck, (uint32_t)v, s->need, s->mapped);
		s->mapped = s->target = s->need;
		return 0;
	}
	v = kvmm_cuda_reclaim_victim(ck);
	if (v >= 0) {
		kvmm_cuda_reclaim(ck, (uint32_t)v);
		return 0;
	}
	if (ck->fences.head) {
		kvmm_cuda_settle(ck, true);
		return 0;
	}
	if (!(ck->cfg.flags & KVMM_KV_AUTO_SWAP))
		return -ENOMEM;
	v = kvmm_cuda_swap_victim(ck);
	if (v < 0)
		return -ENOMEM;
	if (ck->slots[v].busy) { /* the mapper is on it for a moment: then choose again */
		while (ck->slots[v].busy)
			pthread_cond_wait(&ck->cond, &ck->lock);
		return 0;
	}
	ret = kvmm_cuda_swap_out_locked(ck, (uint32_t)v);
	if (ret)
		return ret;
	ck->st.policy_swap_outs++;
	if (ck->cfg.evict_cb)
		ck->cfg.evict_cb(ck->cfg.evict_arg, (uint32_t)v, KVMM_TIER_HOST);
	return 0;
}

/*
 * Maps [from, to) of @slot now, freeing memory first when the budget, the
 * ledger (-EDQUOT) or the device (-ENOMEM) says no. ck->lock held, the
 * context current, @slot not busy.
 */
int kvmm_cuda_map_locked(struct kvmm_cuda_kv *ck, uint32_t slot, uint64_t from, uint64_t to,
			 bool zero)
{
	uint64_t need = (to - from) * ck->geom.nparts;
	int ret;

	kvmm_cuda_settle_range(ck, slot, from, to);
	for (;;) {
		if (ck->cfg.host_budget && kvmm_cuda_gpu_bytes(ck) + need > ck->cfg.host_budget) {
			if (need > ck->cfg.host_budget)
				return -ENOMEM;
			ret = kvmm_cuda_make_room(ck);
			if (ret)
				return ret;
			continue;
		}
		ret = kvmm_cuda_map_parts(ck, slot, from, to, zero);
		if (ret != -EDQUOT && ret != -ENOMEM)
			return ret;
		ret = kvmm_cuda_make_room(ck);
		if (ret)
			return ret == -ENOMEM ? -ENOMEM : ret;
	}
}

/* One slot's step; ck->lock held. Returns whether it had to block. */
static int kvmm_cuda_step_slot(struct kvmm_cuda_kv *ck, uint32_t slot, uint32_t seq_len,
			       bool *blocked)
{
	struct kvmm_cuda_slot *s = &ck->slots[slot];
	uint64_t tokens = (uint64_t)seq_len + ck->cfg.lookahead, need, ahead;
	int ret = 0;

	if (tokens > ck->cfg.max_tokens)
		tokens = ck->cfg.max_tokens;
	need = kvmm_cuda_part_bytes(ck, tokens);
	if (s->state == KVMM_SLOT_FREE)
		kvmm_cuda_activate_locked(ck, s);
	if (need > s->need) /* first: make_room must not trim what we map */
		s->need = need;
	if (need > s->mapped) {
		*blocked = true;
		while (s->busy) /* the mapper is on it: its chunks come first */
			pthread_cond_wait(&ck->cond, &ck->lock);
	}
	if (need > s->mapped) {
		kvmm_cuda_enter(ck);
		ret = kvmm_cuda_map_locked(ck, slot, s->mapped, need, true);
		kvmm_cuda_leave(ck);
		if (ret)
			return ret;
		ck->st.new_bytes += (need - s->mapped) * ck->geom.nparts;
		s->mapped = need;
	}

	ahead = need + ck->ahead;
	if (ahead > ck->geom.slot_stride)
		ahead = ck->geom.slot_stride;
	if (ck->mapper_on && ahead > s->target) {
		s->target = ahead;
		if (s->target > s->mapped)
			pthread_cond_signal(&ck->mapper_cond);
	}
	s->seq_len = seq_len;
	s->last_step = ++ck->clock;
	return 0;
}

int kvmm_cuda_kv_step(struct kvmm_cuda_kv *ck, uint32_t n, const uint32_t *slots,
		      const uint32_t *seq_lens)
{
	bool blocked = false;
	uint64_t t0 = 0;
	int ret = 0;

	if (!ck || (n && (!slots || !seq_lens)))
		return -EINVAL;
	pthread_mutex_lock(&ck->lock);
	for (uint32_t i = 0; i < n; i++) {
		if (slots[i] >= ck->cfg.max_slots || seq_lens[i] > ck->cfg.max_tokens) {
			ret = -EINVAL;
			goto out;
		}
		if (ck->slots[slots[i]].state != KVMM_SLOT_FREE &&
		    ck->slots[slots[i]].state != KVMM_SLOT_ACTIVE) {
			ret = -EAGAIN;
			goto out;
		}
	}
	t0 = kvmm_now_ns();
	for (uint32_t i = 0; i < n; i++)
		ck->stepping[slots[i]] = 1;
	for (uint32_t i = 0; i < n && !ret; i++)
		ret = kvmm_cuda_step_slot(ck, slots[i], seq_lens[i], &blocked);
	for (uint32_t i = 0; i < n; i++)
		ck->stepping[slots[i]] = 0;
	ck->cst.steps++;
	if (blocked) {
		ck->cst.step_blocked++;
		ck->cst.step_blocked_ns += kvmm_now_ns() - t0;
	}
out:
	pthread_mutex_unlock(&ck->lock);
	return ret;
}

/* Next slot with mapping to do after @from (round robin), or -1. */
static int64_t kvmm_cuda_mapper_pick(const struct kvmm_cuda_kv *ck, uint32_t from)
{
	for (uint32_t k = 1; k <= ck->cfg.max_slots; k++) {
		uint32_t i = (from + k) % ck->cfg.max_slots;
		const struct kvmm_cuda_slot *s = &ck->slots[i];

		if (s->state == KVMM_SLOT_ACTIVE && !s->busy && s->target > s->mapped)
			return i;
	}
	return -1;
}

/* Whether a chunk of @slot's [from, to) still waits on a fence. */
static bool kvmm_cuda_fenced(const struct kvmm_cuda_kv *ck, uint32_t slot, uint64_t from,
			     uint64_t to)
{
	for (uint32_t p = 0; p < ck->geom.nparts; p++) {
		if (kvmm_cuda_fence_find(&ck->fences, kvmm_cuda_part_chunk(ck, slot, p, from),
					 (to - from) / ck->chunk))
			return true;
	}
	return false;
}

/* Maps one batch of one slot without ck->lock; memory pressure stops it
 * (the step that really needs the memory makes room). Never waits on a
 * fence while holding ck->lock: such a slot is retried once it passed.
 * Returns whether it mapped anything. */
static bool kvmm_cuda_mapper_work(struct kvmm_cuda_kv *ck, uint32_t slot)
{
	struct kvmm_cuda_slot *s = &ck->slots[slot];
	uint64_t from = s->mapped, to = s->target;
	int ret;

	if (kvmm_cuda_fenced(ck, slot, from, to))
		return false;
	if (ck->cfg.host_budget &&
	    kvmm_cuda_gpu_bytes(ck) + (to - from) * ck->geom.nparts > ck->cfg.host_budget) {
		s->target = s->mapped;
		return false;
	}
	s->busy = true;
	pthread_mutex_unlock(&ck->lock);
	ret = kvmm_cuda_map_parts(ck, slot, from, to, true);
	pthread_mutex_lock(&ck->lock);
	s->busy = false;
	if (!ret) {
		s->mapped = to;
		ck->st.new_bytes += (to - from) * ck->geom.nparts;
		ck->cst.ahead_bytes += (to - from) * ck->geom.nparts;
	} else {
		s->target = s->mapped;
	}
	pthread_cond_broadcast(&ck->cond);
	return !ret;
}

static void *kvmm_cuda_mapper_main(void *arg)
{
	struct kvmm_cuda_kv *ck = arg;
	uint32_t last = 0;

	kvmm_cuda_enter(ck);
	pthread_mutex_lock(&ck->lock);
	while (!ck->stop) {
		int64_t i = kvmm_cuda_mapper_pick(ck, last);

		kvmm_cuda_settle(ck, false); /* poll fences between batches */
		if (i >= 0)
			last = (uint32_t)i;
		if (i >= 0 && kvmm_cuda_mapper_work(ck, last))
			continue;
		if (ck->fences.head) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 200000; /* poll pending fences every 200 us */
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&ck->mapper_cond, &ck->lock, &ts);
		} else {
			pthread_cond_wait(&ck->mapper_cond, &ck->lock);
		}
	}
	pthread_mutex_unlock(&ck->lock);
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
	pthread_mutex_lock(&ck->lock);
	ck->stop = true;
	pthread_cond_signal(&ck->mapper_cond);
	pthread_mutex_unlock(&ck->lock);
	pthread_join(ck->mapper, NULL);
	ck->mapper_started = false;
}
#endif
