/* SPDX-License-Identifier: MIT */
/*
 * Slot swaps, for every device. The slot is marked KVMM_SLOT_IN_FLIGHT so
 * nothing else touches it; the device's copy_out/copy_in move the data
 * without kv->lock; the bookkeeping after it takes the lock. What moves
 * is what step made resident (seq_len + lookahead); memory mapped ahead of
 * that is dropped. A failed move leaves the data where it was.
 */
#include <errno.h>
#include <stdlib.h>

#include "kv.h"

/* A swap to a tier leaves the slot in the state of the same value. */
_Static_assert(KVMM_TIER_HOST == KVMM_SLOT_HOST && KVMM_TIER_FLASH == KVMM_SLOT_FLASH,
	       "tiers are the states they leave a slot in");

static bool kvmm_kv_tier_ok(enum kvmm_tier tier)
{
	return tier == KVMM_TIER_HOST || tier == KVMM_TIER_FLASH;
}

/* Sets up @j to move an active, idle slot down to @tier; kv->lock held. */
static int kvmm_kv_out_begin(struct kvmm_kv *kv, uint32_t slot, uint8_t tier,
			     struct kvmm_kv_swap *j)
{
	struct kvmm_kv_slot *s = &kv->slots[slot];
	uint64_t bytes = kvmm_kv_step_bytes(kv, s->seq_len);
	int ret;

	*j = (struct kvmm_kv_swap){
	    .kv = kv,
	    .slot = slot,
	    .to = tier,
	    .from = s->state,
	    .bytes = bytes < s->mapped ? bytes : s->mapped,
	    .mapped = s->mapped,
	};
	/* Shared chunks stay where a slot on the device still maps them; to
	 * a host cache's DRAM tier all of them stay (they are DRAM already). */
	if (kv->dev->keeps_shared && s->nshared) {
		j->keep = tier == KVMM_SLOT_HOST ? (uint64_t)s->nshared * kv->chunk_bytes
						 : kvmm_kv_share_held(kv, slot);
		if (j->keep > j->bytes)
			j->keep = j->bytes;
	}
	/* The copy starts after the engine's last use of the slot. */
	ret = kv->dev->fence ? kv->dev->fence(kv, slot) : 0;
	if (ret)
		return ret;
	s->from = s->state;
	kvmm_kv_slot_set(kv, s, KVMM_SLOT_IN_FLIGHT, s->mapped);
	if (s->nshared && kv->dev->share_below)
		kv->dev->share_below(j);
	return 0;
}

/* Bookkeeping after the move; kv->lock held. */
static void kvmm_kv_swap_finish(struct kvmm_kv_swap *j, int ret)
{
	struct kvmm_kv *kv = j->kv;
	struct kvmm_kv_slot *s = &kv->slots[j->slot];

	if (j->to != KVMM_SLOT_ACTIVE) {
		if (!ret) {
			kvmm_kv_slot_set(kv, s, j->to, j->bytes);
			s->need = s->target = 0;
			s->kept = j->keep;
			/* Shared chunks past what moved were released with the rest. */
			kvmm_kv_share_leave(kv, j->slot, j->bytes / kv->chunk_bytes);
			kvmm_kv_share_orphans(kv, j->slot);
			kv->st.swap_outs++;
		} else { /* active again, unless part of it stayed below */
			kvmm_kv_slot_set(kv, s, j->stuck ? KVMM_SLOT_FLASH : KVMM_SLOT_ACTIVE,
					 s->mapped);
		}
	} else if (!ret) {
		kvmm_kv_slot_set(kv, s, KVMM_SLOT_ACTIVE, j->bytes);
		s->kept = 0;
		s->need = s->target = j->bytes;
		s->last_step = ++kv->clock;
		kv->st.swap_ins++;
	} else {
		kvmm_kv_slot_set(kv, s, j->from, s->mapped); /* still swapped out; nothing lost */
	}
}

/* A swap-in makes room in the budget first, as step does. */
static int kvmm_kv_swap_io(struct kvmm_kv_swap *j)
{
	struct kvmm_kv *kv = j->kv;
	int ret = 0;

	if (j->to != KVMM_SLOT_ACTIVE)
		return kv->dev->copy_out(j);
	/* What a slot on the device already holds for it costs nothing. */
	if (j->bytes > j->keep && !(kv->dev->charged & (1U << j->from))) {
		pthread_mutex_lock(&kv->lock);
		ret = kvmm_kv_room(kv, (j->bytes - j->keep) * kv->geom.nparts);
		pthread_mutex_unlock(&kv->lock);
	}
	return ret ? ret : kv->dev->copy_in(j);
}

static void kvmm_kv_swap_in_end(struct kvmm_kv *kv, uint32_t slot, int ret)
{
	struct kvmm_kv_slot *s = &kv->slots[slot];

	pthread_mutex_lock(&kv->progress_lock);
	s->swapping_in = false;
	s->swap_err = ret;
	pthread_cond_broadcast(&kv->progress_cond);
	pthread_mutex_unlock(&kv->progress_lock);
}

void kvmm_kv_publish(struct kvmm_kv *kv, uint32_t slot, uint32_t ready)
{
	pthread_mutex_lock(&kv->progress_lock);
	kv->slots[slot].layers_ready = ready;
	pthread_cond_broadcast(&kv->progress_cond);
	pthread_mutex_unlock(&kv->progress_lock);
}

static int kvmm_kv_swap_run(void *arg)
{
	struct kvmm_kv_swap *j = arg;
	struct kvmm_kv *kv = j->kv;
	int ret = kvmm_kv_swap_io(j);

	pthread_mutex_lock(&kv->lock);
	kvmm_kv_swap_finish(j, ret);
	kv->in_flight--;
	pthread_cond_broadcast(&kv->cond);
	pthread_mutex_unlock(&kv->lock);
	if (j->to == KVMM_SLOT_ACTIVE) /* the slot is active first: waiters see it */
		kvmm_kv_swap_in_end(kv, j->slot, ret);
	free(j);
	return ret;
}

/* Queues a copy of @move (its slot in flight) on the context's worker;
 * kv->lock held. On failure the slot is back where it was. */
static int kvmm_kv_swap_start(struct kvmm_kv *kv, const struct kvmm_kv_swap *move,
			      struct kvmm_op **opp)
{
	struct kvmm_kv_slot *s = &kv->slots[move->slot];
	bool in = move->to == KVMM_SLOT_ACTIVE;
	struct kvmm_kv_swap *j = malloc(sizeof(*j));
	int ret;

	if (!j) {
		kvmm_kv_slot_set(kv, s, move->from, s->mapped);
		return -ENOMEM;
	}
	*j = *move;
	if (in) {
		pthread_mutex_lock(&kv->progress_lock);
		s->swapping_in = true;
		s->layers_ready = 0;
		s->swap_err = 0;
		pthread_mutex_unlock(&kv->progress_lock);
	}
	kv->in_flight++;
	ret = kvmm_worker_submit(kv->ctx, kvmm_kv_swap_run, j, opp);
	if (ret) {
		kv->in_flight--;
		kvmm_kv_slot_set(kv, s, j->from, s->mapped);
		if (in)
			kvmm_kv_swap_in_end(kv, j->slot, 0);
		free(j);
	}
	return ret;
}

/* The policy's synchronous swap-out, with kv->lock held. */
int kvmm_kv_swap_out_locked(struct kvmm_kv *kv, uint32_t slot, uint8_t tier)
{
	struct kvmm_kv_swap j;
	int ret = kvmm_kv_out_begin(kv, slot, tier, &j);

	if (ret)
		return ret;
	ret = kv->dev->copy_out(&j);
	kvmm_kv_swap_finish(&j, ret);
	return ret;
}

int kvmm_kv_swap_out(struct kvmm_kv *kv, uint32_t slot, enum kvmm_tier tier, struct kvmm_op **opp)
{
	struct kvmm_kv_slot *s;
	struct kvmm_kv_swap j;
	int ret;

	if (!kv || slot >= kv->cfg.max_slots || !kvmm_kv_tier_ok(tier))
		return -EINVAL;
	pthread_mutex_lock(&kv->lock);
	s = &kv->slots[slot];
	while (s->busy)
		pthread_cond_wait(&kv->cond, &kv->lock);
	if (s->state != KVMM_SLOT_ACTIVE || s->pins)
		ret = -EAGAIN;
	else
		ret = kvmm_kv_out_begin(kv, slot, (uint8_t)tier, &j);
	if (!ret)
		ret = kvmm_kv_swap_start(kv, &j, opp);
	pthread_mutex_unlock(&kv->lock);
	return ret;
}

int kvmm_kv_swap_in(struct kvmm_kv *kv, uint32_t slot, struct kvmm_op **opp)
{
	struct kvmm_kv_slot *s;
	int ret = -EAGAIN;

	if (!kv || slot >= kv->cfg.max_slots)
		return -EINVAL;
	pthread_mutex_lock(&kv->lock);
	s = &kv->slots[slot];
	if (s->state == KVMM_SLOT_HOST || s->state == KVMM_SLOT_FLASH) {
		struct kvmm_kv_swap j = {
		    .kv = kv,
		    .slot = slot,
		    .to = KVMM_SLOT_ACTIVE,
		    .from = s->state,
		    .bytes = s->mapped,
		    .mapped = s->mapped,
		    /* kept on the device at swap-out, or (CUDA) mapped by a
		     * slot there now: the device maps that instead of copying */
		    .keep = kv->dev->keeps_shared ? s->kept : kvmm_kv_share_held(kv, slot),
		};

		s->from = s->state;
		kvmm_kv_slot_set(kv, s, KVMM_SLOT_IN_FLIGHT, s->mapped);
		ret = kvmm_kv_swap_start(kv, &j, opp);
	}
	pthread_mutex_unlock(&kv->lock);
	return ret;
}
