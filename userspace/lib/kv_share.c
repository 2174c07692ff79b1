/* SPDX-License-Identifier: MIT */
/*
 * Prefix sharing in the slot core: kvmm_kv_share_prefix() and the
 * bookkeeping that keeps the budget, the stats and swaps right while
 * slots share chunks. The device maps the memory (host: kvmm_region_share
 * of every part; CUDA: one physical handle mapped at both addresses); the
 * core only records which slots map the same chunk.
 *
 * kv->ring links, for every chunk index i of a part, the slots whose chunk
 * i is the same memory (a circular list; a slot alone points to itself).
 * Sharing is always of a prefix, and a slot that gives up chunks gives up
 * a suffix, so every slot's partners at chunk i + 1 are among those at
 * chunk i: a slot's shared chunks are a prefix (nshared), the ring of its
 * chunk 0 holds every slot it shares anything with, and "a partner on the
 * device maps chunk i" holds for a prefix of chunks too.
 *
 * The budget counts a shared chunk once, under the lowest-numbered slot
 * whose state the device charges (the others have it borrowed). A slot
 * swapped out leaves on the device (keeps_shared devices) the prefix a
 * slot still there maps; when the last slot on the device gives a chunk
 * up, what the others kept goes down once (share_settle).
 */
#include <errno.h>
#include <stdlib.h>

#include "kv.h"

#define RING(kv, s, i) ((kv)->ring[(uint64_t)(s) * (kv)->nck + (i)])

/* On the device now, and staying: charged and not in flight. */
static bool kvmm_kv_holds(const struct kvmm_kv *kv, uint32_t x)
{
	const struct kvmm_kv_slot *s = &kv->slots[x];

	return s->state != KVMM_SLOT_IN_FLIGHT && (kv->dev->charged & (1U << s->state));
}

static int kvmm_kv_ring_init(struct kvmm_kv *kv)
{
	uint64_t n;

	if (kv->ring)
		return 0;
	kv->nck = kv->geom.slot_stride / kv->chunk_bytes;
	n = kv->nck * kv->cfg.max_slots;
	kv->ring = malloc(n * sizeof(*kv->ring));
	if (!kv->ring)
		return -ENOMEM;
	for (uint32_t s = 0; s < kv->cfg.max_slots; s++)
		for (uint64_t i = 0; i < kv->nck; i++)
			RING(kv, s, i) = s;
	return 0;
}

/* @slot and every slot it shares a chunk with, into @out; their count. */
static uint32_t kvmm_kv_share_group(const struct kvmm_kv *kv, uint32_t slot, uint32_t *out)
{
	uint32_t n = 0, x = slot;

	if (!kv->ring || !kv->slots[slot].nshared) {
		out[0] = slot;
		return 1;
	}
	do {
		out[n++] = x;
		x = RING(kv, x, 0);
	} while (x != slot);
	return n;
}

/* Chunks of @m that a lower-numbered charged slot counts. */
static uint64_t kvmm_kv_borrowed(const struct kvmm_kv *kv, uint32_t m)
{
	uint64_t n = 0;

	for (uint32_t i = 0; i < kv->slots[m].nshared; i++) {
		for (uint32_t x = RING(kv, m, i); x != m; x = RING(kv, x, i)) {
			if (x < m && kvmm_kv_charged(kv, &kv->slots[x])) {
				n++;
				break;
			}
		}
	}
	return n * kv->chunk_bytes;
}

static void kvmm_kv_recharge_set(struct kvmm_kv *kv, const uint32_t *v, uint32_t n)
{
	for (uint32_t k = 0; k < n; k++)
		kv->charged_bytes -= kvmm_kv_charge(kv, &kv->slots[v[k]]);
	for (uint32_t k = 0; k < n; k++)
		kv->slots[v[k]].borrowed = kvmm_kv_borrowed(kv, v[k]);
	for (uint32_t k = 0; k < n; k++)
		kv->charged_bytes += kvmm_kv_charge(kv, &kv->slots[v[k]]);
}

void kvmm_kv_share_recharge(struct kvmm_kv *kv, uint32_t slot)
{
	uint32_t *v = malloc(kv->cfg.max_slots * sizeof(*v)), n;

	if (!v) { /* no scratch: recount the slot alone (the budget may be off by its share) */
		kvmm_kv_recharge_set(kv, &slot, 1);
		return;
	}
	n = kvmm_kv_share_group(kv, slot, v);
	kvmm_kv_recharge_set(kv, v, n);
	free(v);
}

uint64_t kvmm_kv_share_held(const struct kvmm_kv *kv, uint32_t slot)
{
	uint32_t i;

	for (i = 0; kv->ring && i < kv->slots[slot].nshared; i++) {
		bool held = false;

		for (uint32_t x = RING(kv, slot, i); x != slot && !held; x = RING(kv, x, i))
			held = kvmm_kv_holds(kv, x);
		if (!held)
			break;
	}
	return (uint64_t)i * kv->chunk_bytes;
}

int64_t kvmm_kv_share_partner(const struct kvmm_kv *kv, uint32_t slot, uint32_t mask, uint64_t *nr)
{
	const struct kvmm_kv_slot *s = &kv->slots[slot];
	int64_t best = -1;

	*nr = 0;
	if (!kv->ring || !s->nshared)
		return -1;
	for (uint32_t x = RING(kv, slot, 0); x != slot; x = RING(kv, x, 0)) {
		const struct kvmm_kv_slot *p = &kv->slots[x];
		uint64_t n = 0;

		if (p->state == KVMM_SLOT_IN_FLIGHT || !(mask & (1U << p->state)))
			continue;
		/* The prefix of chunks x shares with slot. */
		while (n < s->nshared) {
			bool in = false;

			for (uint32_t y = RING(kv, slot, n); y != slot && !in; y = RING(kv, y, n))
				in = y == x;
			if (!in)
				break;
			n++;
		}
		if (n > *nr) {
			*nr = n;
			best = x;
		}
	}
	return best;
}

/* Whether some slot of chunk @i's ring (through @y) is on the device or in flight. */
static bool kvmm_kv_ring_live(const struct kvmm_kv *kv, uint32_t y, uint64_t i)
{
	uint32_t x = y;

	do {
		if (kv->slots[x].state == KVMM_SLOT_IN_FLIGHT || kvmm_kv_holds(kv, x))
			return true;
		x = RING(kv, x, i);
	} while (x != y);
	return false;
}

/* Chunks [from, to) of @y that no slot holds on the device: down, in runs. */
static void kvmm_kv_settle_chunks(struct kvmm_kv *kv, uint32_t y, uint64_t from, uint64_t to)
{
	uint64_t run = from;

	for (uint64_t i = from; i <= to; i++) {
		bool orphan = i < to && !kvmm_kv_ring_live(kv, y, i);

		if (orphan)
			continue;
		if (i > run)
			kv->dev->share_settle(kv, y, run * kv->chunk_bytes, i * kv->chunk_bytes);
		run = i + 1;
	}
}

void kvmm_kv_share_orphans(struct kvmm_kv *kv, uint32_t slot)
{
	if (kv->ring && kv->dev->share_settle && kv->slots[slot].nshared)
		kvmm_kv_settle_chunks(kv, slot, 0, kv->slots[slot].nshared);
}

/* How many leading chunks @p shares with someone. */
static uint32_t kvmm_kv_nshared_scan(const struct kvmm_kv *kv, uint32_t p)
{
	uint32_t i = 0;

	while (i < kv->nck && RING(kv, p, i) != p)
		i++;
	return i;
}

void kvmm_kv_share_leave(struct kvmm_kv *kv, uint32_t slot, uint64_t from)
{
	struct kvmm_kv_slot *s = &kv->slots[slot];
	uint32_t old = s->nshared, *v, *next, n;

	if (!kv->ring || old <= from)
		return;
	v = malloc(kv->cfg.max_slots * sizeof(*v));
	next = malloc((old - from) * sizeof(*next));
	if (!v || !next) { /* cannot fail: keep the bookkeeping in step, skip the settling */
		free(v);
		free(next);
		v = next = NULL;
	}
	n = v ? kvmm_kv_share_group(kv, slot, v) : 0;
	for (uint64_t i = from; i < old; i++) {
		uint32_t p = slot;

		while (RING(kv, p, i) != slot)
			p = RING(kv, p, i);
		RING(kv, p, i) = RING(kv, slot, i);
		if (next)
			next[i - from] = RING(kv, slot, i);
		RING(kv, slot, i) = slot;
	}
	s->nshared = (uint32_t)from;
	for (uint32_t k = 0; k < n; k++) {
		if (v[k] != slot)
			kv->slots[v[k]].nshared = kvmm_kv_nshared_scan(kv, v[k]);
	}
	if (v)
		kvmm_kv_recharge_set(kv, v, n);
	else
		kvmm_kv_recharge_set(kv, &slot, 1);
	/* What the others kept on the device because this slot held it. */
	for (uint64_t i = from; next && kv->dev->share_settle && i < old; i++) {
		uint32_t y = next[i - from];

		if (y != slot && !kvmm_kv_ring_live(kv, y, i))
			kv->dev->share_settle(kv, y, i * kv->chunk_bytes,
					      (i + 1) * kv->chunk_bytes);
	}
	free(v);
	free(next);
}

void kvmm_kv_release(struct kvmm_kv *kv, uint32_t slot, uint64_t from, uint64_t to, bool fenced)
{
	if (to > from)
		kv->dev->shrink(kv, slot, from, to, fenced);
	kvmm_kv_share_leave(kv, slot, from / kv->chunk_bytes);
}

/* @dst (alone) joins @src's chunks [0, nsh). */
static void kvmm_kv_share_join(struct kvmm_kv *kv, uint32_t dst, uint32_t src, uint32_t nsh)
{
	for (uint32_t i = 0; i < nsh; i++) {
		RING(kv, dst, i) = RING(kv, src, i);
		RING(kv, src, i) = dst;
	}
	kv->slots[dst].nshared = nsh;
	if (kv->slots[src].nshared < nsh)
		kv->slots[src].nshared = nsh;
}

/* Both slots active and @ntokens within the source, still (room may wait). */
static int kvmm_kv_share_check(const struct kvmm_kv *kv, uint32_t dst, uint32_t src,
			       uint32_t ntokens)
{
	const struct kvmm_kv_slot *d = &kv->slots[dst], *s = &kv->slots[src];

	if (d->state != KVMM_SLOT_ACTIVE || s->state != KVMM_SLOT_ACTIVE)
		return -EAGAIN;
	if (ntokens > s->seq_len)
		return -ERANGE;
	return d->pins ? -EBUSY : 0;
}

/* The device's share, making room for the tail chunk as step makes room. */
static int kvmm_kv_share_map(struct kvmm_kv *kv, uint32_t dst, uint32_t src, uint32_t ntokens,
			     uint64_t shared, uint64_t tail)
{
	for (;;) {
		int ret = kvmm_kv_room(kv, tail ? (uint64_t)kv->chunk_bytes * kv->geom.nparts : 0);

		if (!ret)
			ret = kvmm_kv_share_check(kv, dst, src, ntokens);
		if (ret)
			return ret;
		ret = kv->dev->share(kv, dst, src, shared, tail);
		if (ret != -ENOMEM && ret != -EDQUOT)
			return ret;
		ret = kvmm_kv_make_room(kv);
		if (ret)
			return ret;
	}
}

int kvmm_kv_share_prefix(struct kvmm_kv *kv, uint32_t dst, uint32_t src, uint32_t ntokens)
{
	struct kvmm_kv_slot *d, *s;
	uint64_t bytes, shared, tail, mapped;
	int ret;

	if (!kv || dst >= kv->cfg.max_slots || src >= kv->cfg.max_slots || dst == src || !ntokens ||
	    ntokens > kv->cfg.max_tokens)
		return -EINVAL;
	if (!kv->dev->share)
		return -EOPNOTSUPP;
	pthread_mutex_lock(&kv->lock);
	d = &kv->slots[dst];
	s = &kv->slots[src];
	while (d->busy || s->busy)
		pthread_cond_wait(&kv->cond, &kv->lock);
	ret = kvmm_kv_share_check(kv, dst, src, ntokens);
	if (!ret)
		ret = kvmm_kv_ring_init(kv);
	/* What dst held goes once the engine's last use of it is done. */
	if (!ret && kv->dev->fence && d->mapped)
		ret = kv->dev->fence(kv, dst);
	if (ret)
		goto out;
	bytes = (uint64_t)ntokens * kv->geom.part_tok;
	shared = bytes / kv->chunk_bytes * kv->chunk_bytes;
	tail = bytes - shared;
	kvmm_kv_release(kv, dst, 0, d->mapped, true);
	kvmm_kv_slot_set(kv, d, KVMM_SLOT_ACTIVE, 0);
	d->seq_len = 0;
	d->need = d->target = 0;
	/* Neither is a victim while room is made for the tail. */
	kv->stepping[dst] = kv->stepping[src] = 1;
	ret = kvmm_kv_share_map(kv, dst, src, ntokens, shared, tail);
	kv->stepping[dst] = kv->stepping[src] = 0;
	if (ret)
		goto out;
	mapped = shared + (tail ? kv->chunk_bytes : 0);
	kvmm_kv_slot_set(kv, d, KVMM_SLOT_ACTIVE, mapped);
	if (shared) {
		kvmm_kv_share_join(kv, dst, src, (uint32_t)(shared / kv->chunk_bytes));
		kvmm_kv_share_recharge(kv, dst);
	}
	d->seq_len = ntokens;
	d->need = d->target = mapped;
	d->last_step = ++kv->clock;
	kv->st.shares++;
	kv->st.share_copied_bytes += tail * kv->geom.nparts;
	kv->st.new_bytes += (mapped - shared) * kv->geom.nparts;
out:
	pthread_mutex_unlock(&kv->lock);
	return ret;
}

/* Chunks of @m a lower-numbered slot maps too: stats count them there. */
uint64_t kvmm_kv_share_dup(const struct kvmm_kv *kv, uint32_t m)
{
	uint64_t n = 0;

	for (uint32_t i = 0; kv->ring && i < kv->slots[m].nshared; i++) {
		for (uint32_t x = RING(kv, m, i); x != m; x = RING(kv, x, i)) {
			if (x < m) {
				n++;
				break;
			}
		}
	}
	return n;
}
