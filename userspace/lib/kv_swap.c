/* SPDX-License-Identifier: MIT */
/*
 * Slot swaps. The I/O runs without kv->lock (the slot is marked
 * KVMM_SLOT_IN_FLIGHT so nothing else touches it); the bookkeeping after
 * it takes the lock. A failed move leaves the data where it was.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_kv.h"
#include "kv.h"

struct kvmm_swap_job {
	struct kvmm_kv *kv;
	uint32_t slot;
	uint8_t to;	 /* KVMM_SLOT_* the slot goes to on success */
	uint64_t mapped; /* bytes per part */
	void *host_copy;
	bool stuck; /* a failed swap-out could not bring every chunk back */
};

/* Copies each part into one DRAM buffer, then drops the parts' memory. */
static int kvmm_swap_out_host(struct kvmm_swap_job *j)
{
	struct kvmm_kv *kv = j->kv;
	uint64_t off;
	char *buf;

	if (!j->mapped)
		return 0;
	buf = malloc(j->mapped * kv->geom.nparts);
	if (!buf)
		return -ENOMEM;
	for (uint32_t p = 0; p < kv->geom.nparts; p++) {
		struct kvmm_region *r = kvmm_kv_part(kv, j->slot, p, &off);

		memcpy(buf + p * j->mapped, (char *)kvmm_region_base(r) + off, j->mapped);
	}
	for (uint32_t p = 0; p < kv->geom.nparts; p++) {
		struct kvmm_region *r = kvmm_kv_part(kv, j->slot, p, &off);

		kvmm_region_discard(r, off, j->mapped);
	}
	j->host_copy = buf;
	return 0;
}

static int kvmm_swap_in_host(struct kvmm_swap_job *j)
{
	struct kvmm_kv *kv = j->kv;
	uint64_t off;
	uint32_t p;
	int ret = 0;

	for (p = 0; j->mapped && p < kv->geom.nparts; p++) {
		struct kvmm_region *r = kvmm_kv_part(kv, j->slot, p, &off);

		ret = kvmm_region_ensure(r, off, j->mapped);
		if (ret)
			break;
		memcpy((char *)kvmm_region_base(r) + off, (char *)j->host_copy + p * j->mapped,
		       j->mapped);
	}
	if (ret) {
		while (p--) {
			struct kvmm_region *r = kvmm_kv_part(kv, j->slot, p, &off);

			kvmm_region_discard(r, off, j->mapped);
		}
		return ret;
	}
	free(j->host_copy);
	j->host_copy = NULL;
	return 0;
}

/* The slot's part of every region, as one batch (one queue for all layers). */
static struct kvmm_range_span *kvmm_swap_spans(struct kvmm_swap_job *j)
{
	struct kvmm_kv *kv = j->kv;
	struct kvmm_range_span *v = calloc(kv->geom.nparts, sizeof(*v));

	for (uint32_t p = 0; v && p < kv->geom.nparts; p++) {
		v[p].r = kvmm_kv_part(kv, j->slot, p, &v[p].offset);
		v[p].length = j->mapped;
	}
	return v;
}

/*
 * Out: evict every part; on failure bring back what already went out, so
 * the slot stays usable. In: ensure every part; each is tried, so one bad
 * chunk does not hold back the rest.
 */
static int kvmm_swap_flash(struct kvmm_swap_job *j, bool out)
{
	uint32_t n = j->kv->geom.nparts;
	struct kvmm_range_span *v;
	int ret;

	if (!j->mapped)
		return 0;
	v = kvmm_swap_spans(j);
	if (!v)
		return -ENOMEM;
	if (out) {
		ret = kvmm_region_evict_many(v, n);
		if (ret && kvmm_region_ensure_many(v, n))
			j->stuck = true; /* partly on flash: swap_in retries */
	} else {
		ret = kvmm_region_ensure_many(v, n);
	}
	free(v);
	return ret;
}

static int kvmm_swap_io(struct kvmm_swap_job *j)
{
	switch (j->to) {
	case KVMM_SLOT_HOST:
		return kvmm_swap_out_host(j);
	case KVMM_SLOT_FLASH:
		return kvmm_swap_flash(j, true);
	default:
		return j->host_copy ? kvmm_swap_in_host(j) : kvmm_swap_flash(j, false);
	}
}

/* Bookkeeping after the I/O; kv->lock held. */
static void kvmm_swap_finish(struct kvmm_swap_job *j, int ret)
{
	struct kvmm_kv_slot *s = &j->kv->slots[j->slot];
	bool in = j->to == KVMM_SLOT_ACTIVE;

	if (!ret) {
		s->state = j->to;
		s->host_copy = j->host_copy;
		if (in) {
			j->kv->st.swap_ins++;
			s->last_step = ++j->kv->clock;
		} else {
			j->kv->st.swap_outs++;
		}
	} else if (in) {
		s->state = s->from; /* still swapped out; nothing lost */
	} else {
		/* Out failed: active again, unless part of it stayed on flash. */
		s->state = j->stuck ? KVMM_SLOT_FLASH : KVMM_SLOT_ACTIVE;
	}
}

static int kvmm_swap_job_run(void *arg)
{
	struct kvmm_swap_job *j = arg;
	struct kvmm_kv *kv = j->kv;
	int ret = kvmm_swap_io(j);

	pthread_mutex_lock(&kv->lock);
	kvmm_swap_finish(j, ret);
	if (!--kv->in_flight)
		pthread_cond_broadcast(&kv->idle);
	pthread_mutex_unlock(&kv->lock);
	free(j);
	return ret;
}

static int kvmm_swap_check_tier(enum kvmm_tier tier)
{
	if (tier != KVMM_TIER_HOST && tier != KVMM_TIER_FLASH)
		return -EINVAL;
	return 0;
}

/* Synchronous swap-out for the policy, with kv->lock held. */
int kvmm_kv_swap_out_locked(struct kvmm_kv *kv, uint32_t slot, enum kvmm_tier tier)
{
	struct kvmm_kv_slot *s = &kv->slots[slot];
	struct kvmm_swap_job j = {
	    .kv = kv,
	    .slot = slot,
	    .to = tier == KVMM_TIER_HOST ? KVMM_SLOT_HOST : KVMM_SLOT_FLASH,
	    .mapped = s->mapped,
	};
	int ret = kvmm_swap_check_tier(tier);

	if (ret)
		return ret;
	s->from = s->state;
	s->state = KVMM_SLOT_IN_FLIGHT;
	ret = kvmm_swap_io(&j);
	kvmm_swap_finish(&j, ret);
	return ret;
}

static int kvmm_swap_start(struct kvmm_kv *kv, uint32_t slot, int to, struct kvmm_op **opp)
{
	struct kvmm_kv_slot *s = &kv->slots[slot];
	struct kvmm_swap_job *j;
	int ret;

	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	*j = (struct kvmm_swap_job){.kv = kv, .slot = slot, .to = to, .mapped = s->mapped};
	if (to == KVMM_SLOT_ACTIVE)
		j->host_copy = s->host_copy;
	s->from = s->state;
	s->state = KVMM_SLOT_IN_FLIGHT;
	kv->in_flight++;
	ret = kvmm_worker_submit(kv->ctx, kvmm_swap_job_run, j, opp);
	if (ret) {
		s->state = s->from;
		kv->in_flight--;
		free(j);
	}
	return ret;
}

int kvmm_kv_swap_out(struct kvmm_kv *kv, uint32_t slot, enum kvmm_tier tier, struct kvmm_op **opp)
{
	struct kvmm_kv_slot *s;
	int ret;

	KVMM_KV_CUDA(kv, kvmm_cuda_kv_swap_out(kv->gpu, slot, tier, opp));
	if (!kv || slot >= kv->cfg.max_slots)
		return -EINVAL;
	ret = kvmm_swap_check_tier(tier);
	if (ret)
		return ret;
	pthread_mutex_lock(&kv->lock);
	s = &kv->slots[slot];
	if (s->state != KVMM_SLOT_ACTIVE || s->pins)
		ret = -EAGAIN;
	else
		ret = kvmm_swap_start(
		    kv, slot, tier == KVMM_TIER_HOST ? KVMM_SLOT_HOST : KVMM_SLOT_FLASH, opp);
	pthread_mutex_unlock(&kv->lock);
	return ret;
}

int kvmm_kv_swap_in(struct kvmm_kv *kv, uint32_t slot, struct kvmm_op **opp)
{
	struct kvmm_kv_slot *s;
	int ret;

	KVMM_KV_CUDA(kv, kvmm_cuda_kv_swap_in(kv->gpu, slot, opp));
	if (!kv || slot >= kv->cfg.max_slots)
		return -EINVAL;
	pthread_mutex_lock(&kv->lock);
	s = &kv->slots[slot];
	if (s->state != KVMM_SLOT_HOST && s->state != KVMM_SLOT_FLASH)
		ret = -EAGAIN;
	else
		ret = kvmm_swap_start(kv, slot, KVMM_SLOT_ACTIVE, opp);
	pthread_mutex_unlock(&kv->lock);
	return ret;
}
