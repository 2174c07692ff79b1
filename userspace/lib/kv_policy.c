/* SPDX-License-Identifier: MIT */
/*
 * Budget policy: before step maps more memory than host_budget allows,
 * release freed slots' memory (deferred reclamation), then, with
 * KVMM_KV_AUTO_SWAP, swap out the lowest-priority, least recently stepped
 * unpinned slots to flash and tell the engine through evict_cb.
 */
#include <errno.h>

#include "cuda_kv.h"
#include "kv.h"

/* DRAM the cache holds: mapped memory plus swapped-to-host copies. */
uint64_t kvmm_kv_resident(const struct kvmm_kv *kv)
{
	uint64_t bytes = 0;

	for (uint32_t i = 0; i < kv->cfg.max_slots; i++) {
		const struct kvmm_kv_slot *s = &kv->slots[i];

		if (s->state != KVMM_SLOT_FLASH)
			bytes += s->mapped * kv->geom.nparts;
	}
	return bytes;
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

/* Lowest priority, then least recently stepped; never pinned or stepping. */
static int64_t kvmm_kv_swap_victim(const struct kvmm_kv *kv, const uint8_t *stepping)
{
	int64_t best = -1;

	for (uint32_t i = 0; i < kv->cfg.max_slots; i++) {
		const struct kvmm_kv_slot *s = &kv->slots[i], *b;

		if (s->state != KVMM_SLOT_ACTIVE || s->pins || stepping[i] || !s->mapped)
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

static void kvmm_kv_reclaim(struct kvmm_kv *kv, uint32_t slot)
{
	struct kvmm_kv_slot *s = &kv->slots[slot];
	uint64_t off;

	for (uint32_t p = 0; p < kv->geom.nparts; p++) {
		struct kvmm_region *r = kvmm_kv_part(kv, slot, p, &off);

		kvmm_region_discard(r, off, s->mapped);
	}
	kv->st.reclaimed_bytes += s->mapped * kv->geom.nparts;
	s->mapped = 0;
}

int kvmm_kv_trim(struct kvmm_kv *kv, uint64_t keep_bytes)
{
	KVMM_KV_CUDA(kv, kvmm_cuda_kv_trim(kv->gpu, keep_bytes));
	if (!kv)
		return -EINVAL;
	pthread_mutex_lock(&kv->lock);
	for (;;) {
		uint64_t cached = 0;
		int64_t v;

		for (uint32_t i = 0; i < kv->cfg.max_slots; i++)
			if (kv->slots[i].state == KVMM_SLOT_FREE)
				cached += kv->slots[i].mapped * kv->geom.nparts;
		v = kvmm_kv_reclaim_victim(kv);
		if (cached <= keep_bytes || v < 0)
			break;
		kvmm_kv_reclaim(kv, v);
	}
	pthread_mutex_unlock(&kv->lock);
	return 0;
}

int kvmm_kv_make_room(struct kvmm_kv *kv, uint64_t need, const uint8_t *stepping)
{
	if (need > kv->cfg.host_budget)
		return -ENOMEM;
	while (kvmm_kv_resident(kv) + need > kv->cfg.host_budget) {
		int64_t v = kvmm_kv_reclaim_victim(kv);
		int ret;

		if (v >= 0) {
			kvmm_kv_reclaim(kv, v);
			continue;
		}
		if (!(kv->cfg.flags & KVMM_KV_AUTO_SWAP))
			return -ENOMEM;
		v = kvmm_kv_swap_victim(kv, stepping);
		if (v < 0)
			return -ENOMEM;
		ret = kvmm_kv_swap_out_locked(kv, v, KVMM_TIER_FLASH);
		if (ret)
			return ret == -EOPNOTSUPP ? -ENOMEM : ret;
		kv->st.policy_swap_outs++;
		if (kv->cfg.evict_cb)
			kv->cfg.evict_cb(kv->cfg.evict_arg, v, KVMM_TIER_FLASH);
	}
	return 0;
}
