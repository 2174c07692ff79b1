/* SPDX-License-Identifier: MIT */
/*
 * The budget and victim choice, for every device. Before memory is mapped
 * past the budget (or when the device itself runs out), one thing goes at
 * a time, cheapest first: memory whose fences have passed, memory mapped
 * ahead of a slot's need, a freed slot's memory (deferred reclamation;
 * behind its fence), a wait for the oldest fence, then, with
 * KVMM_KV_AUTO_SWAP, the lowest-priority, least recently stepped unpinned
 * slot swapped out to the device's policy tier, told to the engine
 * through evict_cb.
 */
#include <errno.h>

#include "kv.h"

bool kvmm_kv_charged(const struct kvmm_kv *kv, const struct kvmm_kv_slot *s)
{
	uint8_t where = s->state == KVMM_SLOT_IN_FLIGHT ? s->from : s->state;

	return kv->dev->charged & (1U << where);
}

/* Memory a lower-numbered slot shares with @s counts there (borrowed). */
uint64_t kvmm_kv_charge(const struct kvmm_kv *kv, const struct kvmm_kv_slot *s)
{
	if (!kvmm_kv_charged(kv, s))
		return 0;
	return (s->mapped - (s->borrowed < s->mapped ? s->borrowed : s->mapped)) * kv->geom.nparts;
}

void kvmm_kv_slot_set(struct kvmm_kv *kv, struct kvmm_kv_slot *s, uint8_t state, uint64_t mapped)
{
	bool was = kvmm_kv_charged(kv, s);

	kv->charged_bytes -= kvmm_kv_charge(kv, s);
	s->state = state;
	s->mapped = mapped;
	kv->charged_bytes += kvmm_kv_charge(kv, s);
	/* Who pays for shared chunks may change with it. */
	if (s->nshared && was != kvmm_kv_charged(kv, s))
		kvmm_kv_share_recharge(kv, (uint32_t)(s - kv->slots));
}

uint64_t kvmm_kv_held(const struct kvmm_kv *kv)
{
	return kv->charged_bytes + (kv->dev->draining ? kv->dev->draining(kv) : 0);
}

/* The freed slot holding the most memory, or -1. */
static int64_t kvmm_kv_reclaim_victim(const struct kvmm_kv *kv)
{
	int64_t best = -1;

	for (uint32_t i = 0; i < kv->cfg.max_slots; i++) {
		const struct kvmm_kv_slot *s = &kv->slots[i];

		if (s->state == KVMM_SLOT_FREE && s->mapped &&
		    (best < 0 || s->mapped > kv->slots[best].mapped))
			best = i;
	}
	return best;
}

/* The active slot holding the most memory mapped past its need, or -1. */
static int64_t kvmm_kv_ahead_victim(const struct kvmm_kv *kv)
{
	int64_t best = -1;

	for (uint32_t i = 0; i < kv->cfg.max_slots; i++) {
		const struct kvmm_kv_slot *s = &kv->slots[i], *b;

		if (s->state != KVMM_SLOT_ACTIVE || s->busy || s->mapped <= s->need)
			continue;
		b = best < 0 ? NULL : &kv->slots[best];
		if (!b || s->mapped - s->need > b->mapped - b->need)
			best = i;
	}
	return best;
}

/* Lowest priority, then least recently stepped; never pinned or stepping. */
static int64_t kvmm_kv_swap_victim(const struct kvmm_kv *kv)
{
	int64_t best = -1;

	for (uint32_t i = 0; i < kv->cfg.max_slots; i++) {
		const struct kvmm_kv_slot *s = &kv->slots[i], *b;

		if (s->state != KVMM_SLOT_ACTIVE || s->pins || kv->stepping[i] || !s->mapped)
			continue;
		if (best < 0) {
			best = i;
			continue;
		}
		b = &kv->slots[best];
		if (s->priority < b->priority ||
		    (s->priority == b->priority && s->last_step < b->last_step))
			best = i;
	}
	return best;
}

/* A freed slot's memory goes, behind its fence. */
static void kvmm_kv_reclaim(struct kvmm_kv *kv, uint32_t slot)
{
	struct kvmm_kv_slot *s = &kv->slots[slot];

	while (s->busy) /* the device finishes its batch first */
		pthread_cond_wait(&kv->cond, &kv->lock);
	if (s->state != KVMM_SLOT_FREE || !s->mapped)
		return; /* reused or reclaimed meanwhile: no longer a victim */
	kvmm_kv_release(kv, slot, 0, s->mapped, true);
	kv->st.reclaimed_bytes += s->mapped * kv->geom.nparts;
	kvmm_kv_slot_set(kv, s, KVMM_SLOT_FREE, 0);
	s->need = s->target = 0;
}

/* Frees one thing (see the top of the file); -ENOMEM when nothing is left. */
int kvmm_kv_make_room(struct kvmm_kv *kv)
{
	int64_t v;
	int ret;

	ret = kv->dev->settle ? kv->dev->settle(kv, false) : 0;
	if (ret)
		return ret < 0 ? ret : 0;
	v = kvmm_kv_ahead_victim(kv);
	if (v >= 0) { /* no kernel reads past seq_len + lookahead */
		struct kvmm_kv_slot *s = &kv->slots[v];

		kvmm_kv_release(kv, (uint32_t)v, s->need, s->mapped, false);
		kvmm_kv_slot_set(kv, s, s->state, s->need);
		s->target = s->need;
		return 0;
	}
	v = kvmm_kv_reclaim_victim(kv);
	if (v >= 0) {
		kvmm_kv_reclaim(kv, (uint32_t)v);
		return 0;
	}
	ret = kv->dev->settle ? kv->dev->settle(kv, true) : 0;
	if (ret)
		return ret < 0 ? ret : 0;
	if (!(kv->cfg.flags & KVMM_KV_AUTO_SWAP))
		return -ENOMEM;
	v = kvmm_kv_swap_victim(kv);
	if (v < 0)
		return -ENOMEM;
	if (kv->slots[v].busy) { /* the device maps it for a moment: then choose again */
		while (kv->slots[v].busy)
			pthread_cond_wait(&kv->cond, &kv->lock);
		return 0;
	}
	ret = kvmm_kv_swap_out_locked(kv, (uint32_t)v, kv->dev->policy_tier);
	if (ret)
		return ret == -EOPNOTSUPP ? -ENOMEM : ret;
	kv->st.policy_swap_outs++;
	if (kv->cfg.evict_cb)
		kv->cfg.evict_cb(kv->cfg.evict_arg, (uint32_t)v, kv->dev->policy_tier);
	return 0;
}

int kvmm_kv_room(struct kvmm_kv *kv, uint64_t need)
{
	if (!kv->cfg.budget_bytes)
		return 0;
	if (need > kv->cfg.budget_bytes)
		return -ENOMEM;
	while (kvmm_kv_held(kv) + need > kv->cfg.budget_bytes) {
		int ret = kvmm_kv_make_room(kv);

		if (ret)
			return ret;
	}
	return 0;
}

int kvmm_kv_grow_locked(struct kvmm_kv *kv, uint32_t slot, uint64_t from, uint64_t to, bool zero)
{
	for (;;) {
		int ret = kvmm_kv_room(kv, (to - from) * kv->geom.nparts);

		if (ret)
			return ret;
		ret = kv->dev->grow(kv, slot, from, to, zero);
		if (ret != -ENOMEM && ret != -EDQUOT)
			return ret;
		/* The device (or the GPU ledger) said no: free something, try again. */
		ret = kvmm_kv_make_room(kv);
		if (ret)
			return ret;
	}
}

int kvmm_kv_trim(struct kvmm_kv *kv, uint64_t keep_bytes)
{
	int ret = 0;

	if (!kv)
		return -EINVAL;
	pthread_mutex_lock(&kv->lock);
	for (;;) {
		uint64_t cached = 0;
		int64_t v = kvmm_kv_reclaim_victim(kv);

		for (uint32_t i = 0; i < kv->cfg.max_slots; i++)
			if (kv->slots[i].state == KVMM_SLOT_FREE)
				cached += kv->slots[i].mapped * kv->geom.nparts;
		if (cached <= keep_bytes || v < 0)
			break;
		kvmm_kv_reclaim(kv, (uint32_t)v);
	}
	if (kv->dev->settle) /* what already passed; the rest when it does */
		ret = kv->dev->settle(kv, false);
	pthread_mutex_unlock(&kv->lock);
	if (kv->dev->rest)
		kv->dev->rest(kv);
	return ret < 0 ? ret : 0;
}
