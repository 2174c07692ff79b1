/* SPDX-License-Identifier: MIT */
/*
 * The prefix index (include/kvmm/prefix.h): block hash -> the slot that
 * holds that block, with the slots' own block lists beside it.
 *
 * Blocks live in an open-addressing table (linear probing, deletion by
 * backward shift, so lookups never walk tombstones), at most half full.
 * Each entry counts the slots that hold its block and names one of them;
 * when that one leaves and others remain, the entry is pointed at another
 * (found through the slots' block lists: block i of a chain is always at
 * position i). Cached slots (no users) sit on an LRU list, oldest first.
 * Everything is under one mutex: a lookup costs a hash probe per block.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <kvmm/prefix.h>

#define PX_NONE UINT32_MAX
/* Slot numbers index an array: bounded so a wild number cannot make it huge. */
#define PX_MAX_SLOT (1U << 24)

struct px_entry {
	struct kvmm_block_hash h;
	uint64_t block;	  /* position in its chain */
	uint32_t slot;	  /* one slot holding it */
	uint32_t holders; /* slots holding it; 0: the table entry is free */
};

struct px_slot {
	struct kvmm_block_hash *hashes; /* its blocks, in chain order */
	size_t n, cap;
	uint32_t users;
	uint32_t prev, next; /* LRU links while cached */
	bool live;
};

struct kvmm_prefix {
	pthread_mutex_t lock;
	struct kvmm_prefix_config cfg;
	struct px_entry *tab;
	size_t tab_size; /* a power of two */
	size_t nent;
	struct px_slot *slots;
	size_t nslots; /* allocated records */
	uint32_t lru_head, lru_tail;
	struct kvmm_prefix_stats st;
};

static bool px_eq(const struct kvmm_block_hash *a, const struct kvmm_block_hash *b)
{
	return a->lo == b->lo && a->hi == b->hi;
}

static size_t px_home(const struct kvmm_prefix *px, const struct kvmm_block_hash *h)
{
	/* Hashes from elsewhere may be structured: mix both halves. */
	uint64_t x = h->lo ^ (h->hi * 0x9e3779b97f4a7c15ULL);

	x ^= x >> 29;
	return (size_t)x & (px->tab_size - 1);
}

static struct px_entry *px_find(const struct kvmm_prefix *px, const struct kvmm_block_hash *h)
{
	size_t i = px_home(px, h);

	for (;; i = (i + 1) & (px->tab_size - 1)) {
		struct px_entry *e = &px->tab[i];

		if (!e->holders)
			return NULL;
		if (px_eq(&e->h, h))
			return e;
	}
}

/* Put a new entry in; the table has room (px_reserve). */
static struct px_entry *px_put(struct kvmm_prefix *px, const struct kvmm_block_hash *h,
			       uint64_t block, uint32_t slot)
{
	size_t i = px_home(px, h);

	while (px->tab[i].holders)
		i = (i + 1) & (px->tab_size - 1);
	px->tab[i] = (struct px_entry){.h = *h, .block = block, .slot = slot, .holders = 1};
	px->nent++;
	return &px->tab[i];
}

/* Remove @e, shifting back the entries of its probe run that follow it. */
static void px_del(struct kvmm_prefix *px, struct px_entry *e)
{
	size_t mask = px->tab_size - 1, hole = (size_t)(e - px->tab), i = hole;

	for (;;) {
		size_t home;

		i = (i + 1) & mask;
		if (!px->tab[i].holders)
			break;
		home = px_home(px, &px->tab[i].h);
		/* Move it into the hole unless its home lies in (hole, i]. */
		if (((i - home) & mask) >= ((i - hole) & mask)) {
			px->tab[hole] = px->tab[i];
			hole = i;
		}
	}
	px->tab[hole].holders = 0;
	px->nent--;
}

/* Room for @more entries at most half full; -ENOMEM leaves the table as it was. */
static int px_reserve(struct kvmm_prefix *px, size_t more)
{
	size_t size = px->tab_size, old_size = px->tab_size;
	struct px_entry *old = px->tab, *tab;

	while ((px->nent + more) * 2 > size)
		size *= 2;
	if (size == old_size)
		return 0;
	tab = calloc(size, sizeof(*tab));
	if (!tab)
		return -ENOMEM;
	px->tab = tab;
	px->tab_size = size;
	px->nent = 0;
	for (size_t i = 0; i < old_size; i++) {
		struct px_entry *e;

		if (!old[i].holders)
			continue;
		e = px_put(px, &old[i].h, old[i].block, old[i].slot);
		e->holders = old[i].holders;
	}
	free(old);
	return 0;
}

static void px_lru_del(struct kvmm_prefix *px, uint32_t slot)
{
	struct px_slot *s = &px->slots[slot];

	if (s->prev != PX_NONE)
		px->slots[s->prev].next = s->next;
	else
		px->lru_head = s->next;
	if (s->next != PX_NONE)
		px->slots[s->next].prev = s->prev;
	else
		px->lru_tail = s->prev;
	s->prev = s->next = PX_NONE;
}

static void px_lru_add_tail(struct kvmm_prefix *px, uint32_t slot)
{
	struct px_slot *s = &px->slots[slot];

	s->next = PX_NONE;
	s->prev = px->lru_tail;
	if (px->lru_tail != PX_NONE)
		px->slots[px->lru_tail].next = slot;
	else
		px->lru_head = slot;
	px->lru_tail = slot;
}

static struct px_slot *px_slot(struct kvmm_prefix *px, uint32_t slot)
{
	return slot < px->nslots && px->slots[slot].live ? &px->slots[slot] : NULL;
}

/* Another live slot than @gone holding block @block with hash @h. */
static uint32_t px_other_holder(struct kvmm_prefix *px, uint32_t gone, uint64_t block,
				const struct kvmm_block_hash *h)
{
	for (uint32_t t = 0; t < px->nslots; t++) {
		const struct px_slot *s = &px->slots[t];

		if (t != gone && s->live && s->n > block && px_eq(&s->hashes[block], h))
			return t;
	}
	return PX_NONE;
}

/* @slot leaves the index; returns how many blocks left with it. */
static uint64_t px_drop_slot(struct kvmm_prefix *px, uint32_t slot)
{
	struct px_slot *s = &px->slots[slot];
	uint64_t gone = 0;

	if (!s->users) {
		px_lru_del(px, slot);
		px->st.cached_slots--;
	}
	for (size_t i = 0; i < s->n; i++) {
		struct px_entry *e = px_find(px, &s->hashes[i]);

		if (!e)
			continue; /* cannot happen: every held block is indexed */
		if (--e->holders == 0) {
			px_del(px, e);
			gone++;
		} else if (e->slot == slot) {
			e->slot = px_other_holder(px, slot, i, &e->h);
		}
	}
	free(s->hashes);
	*s = (struct px_slot){.prev = PX_NONE, .next = PX_NONE};
	px->st.slots--;
	px->st.blocks = px->nent;
	return gone;
}

int kvmm_prefix_create(const struct kvmm_prefix_config *cfg, struct kvmm_prefix **pxp)
{
	struct kvmm_prefix *px;

	if (!cfg || !pxp || cfg->size < sizeof(*cfg) || !cfg->block_tokens)
		return -EINVAL;
	px = calloc(1, sizeof(*px));
	if (!px)
		return -ENOMEM;
	px->tab_size = 64;
	px->tab = calloc(px->tab_size, sizeof(*px->tab));
	if (!px->tab) {
		free(px);
		return -ENOMEM;
	}
	px->cfg = *cfg;
	px->cfg.size = sizeof(px->cfg);
	px->lru_head = px->lru_tail = PX_NONE;
	pthread_mutex_init(&px->lock, NULL);
	*pxp = px;
	return 0;
}

void kvmm_prefix_destroy(struct kvmm_prefix *px)
{
	if (!px)
		return;
	for (size_t i = 0; i < px->nslots; i++)
		free(px->slots[i].hashes);
	free(px->slots);
	free(px->tab);
	pthread_mutex_destroy(&px->lock);
	free(px);
}

long kvmm_prefix_hash(const struct kvmm_prefix *px, const struct kvmm_block_hash *parent,
		      const uint32_t *tokens, size_t ntokens, struct kvmm_block_hash *out)
{
	size_t bt, nblocks;
	struct kvmm_block_hash prev;
	XXH3_state_t state;

	if (!px || (ntokens && (!tokens || !out)))
		return -EINVAL;
	bt = px->cfg.block_tokens;
	nblocks = ntokens / bt;
	if (parent) {
		prev = *parent;
	} else {
		/* The chain's root: the seed alone. */
		XXH128_hash_t root = XXH3_128bits_withSeed("kvmm prefix", 11, px->cfg.seed);

		prev = (struct kvmm_block_hash){.lo = root.low64, .hi = root.high64};
	}
	XXH3_INITSTATE(&state);
	for (size_t b = 0; b < nblocks; b++) {
		XXH128_hash_t d;

		XXH3_128bits_reset(&state);
		XXH3_128bits_update(&state, &prev, sizeof(prev));
		XXH3_128bits_update(&state, tokens + b * bt, bt * sizeof(*tokens));
		d = XXH3_128bits_digest(&state);
		prev = (struct kvmm_block_hash){.lo = d.low64, .hi = d.high64};
		out[b] = prev;
	}
	return (long)nblocks;
}

/* Make the slot table and @slot's block list big enough; -ENOMEM changes nothing visible. */
static int px_slot_room(struct kvmm_prefix *px, uint32_t slot, size_t n)
{
	struct px_slot *s;

	if (slot >= px->nslots) {
		size_t want = px->nslots ? px->nslots : 16;
		struct px_slot *slots;

		while (want <= slot)
			want *= 2;
		slots = realloc(px->slots, want * sizeof(*slots));
		if (!slots)
			return -ENOMEM;
		for (size_t i = px->nslots; i < want; i++)
			slots[i] = (struct px_slot){.prev = PX_NONE, .next = PX_NONE};
		px->slots = slots;
		px->nslots = want;
	}
	s = &px->slots[slot];
	if (n > s->cap) {
		size_t cap = s->cap ? s->cap : 8;
		struct kvmm_block_hash *h;

		while (cap < n)
			cap *= 2;
		h = realloc(s->hashes, cap * sizeof(*h));
		if (!h)
			return -ENOMEM;
		s->hashes = h;
		s->cap = cap;
	}
	return 0;
}

/* Undo the holds an insert took on hashes[from..to). */
static void px_unhold(struct kvmm_prefix *px, uint32_t slot, const struct kvmm_block_hash *hashes,
		      size_t from, size_t to)
{
	for (size_t i = from; i < to; i++) {
		struct px_entry *e = px_find(px, &hashes[i]);

		if (e && --e->holders == 0)
			px_del(px, e);
		else if (e && e->slot == slot)
			e->slot = px_other_holder(px, slot, i, &e->h);
	}
}

int kvmm_prefix_insert(struct kvmm_prefix *px, uint32_t slot, const struct kvmm_block_hash *hashes,
		       size_t n)
{
	uint32_t *evicted = NULL;
	size_t nevicted = 0, have, fresh = 0, i;
	struct px_slot *s;
	int err = 0;

	if (!px || (n && !hashes) || slot >= PX_MAX_SLOT)
		return -EINVAL;
	pthread_mutex_lock(&px->lock);
	s = px_slot(px, slot);
	have = s ? s->n : 0;
	for (i = 0; i < have && i < n; i++)
		if (!px_eq(&s->hashes[i], &hashes[i])) {
			err = -EINVAL; /* not how this slot's sequence began */
			goto out;
		}
	for (i = have; i < n; i++) {
		struct px_entry *e = px_find(px, &hashes[i]);

		if (e && e->block != i) {
			err = -EEXIST;
			goto out;
		}
		fresh += !e;
	}
	/* Room under max_blocks: evict cached slots, oldest first. */
	while (px->cfg.max_blocks && px->nent + fresh > px->cfg.max_blocks) {
		uint32_t victim = px->lru_head;
		uint32_t *grown;

		if (victim == slot)
			victim = px->slots[victim].next;
		if (!px->cfg.evicted || victim == PX_NONE) {
			err = -ENOSPC;
			goto out;
		}
		grown = realloc(evicted, (nevicted + 1) * sizeof(*evicted));
		if (!grown) {
			err = -ENOMEM;
			goto out;
		}
		evicted = grown;
		evicted[nevicted++] = victim;
		px->st.evicted_blocks += px_drop_slot(px, victim);
		px->st.evictions++;
		/* A block of this insert may have left with it. */
		fresh = 0;
		for (i = have; i < n; i++)
			fresh += !px_find(px, &hashes[i]);
	}
	err = px_reserve(px, fresh);
	if (!err)
		err = px_slot_room(px, slot, n);
	if (err)
		goto out;
	s = &px->slots[slot];
	for (i = have; i < n; i++) {
		struct px_entry *e = px_find(px, &hashes[i]);

		if (e && e->block != i) {
			/* The same hash twice in this chain. */
			px_unhold(px, slot, hashes, have, i);
			err = -EEXIST;
			goto out;
		}
		if (e) {
			e->holders++;
			if (e->slot == PX_NONE)
				e->slot = slot;
		} else {
			px_put(px, &hashes[i], i, slot);
			px->st.inserted_blocks++;
		}
	}
	if (n > have) {
		memcpy(s->hashes + have, hashes + have, (n - have) * sizeof(*hashes));
		s->n = n;
	}
	if (!s->live) {
		s->live = true;
		s->users = 1;
		px->st.slots++;
	} else if (!s->users) {
		px_lru_del(px, slot);
		px->st.cached_slots--;
		s->users = 1;
	}
	px->st.blocks = px->nent;
out:
	pthread_mutex_unlock(&px->lock);
	for (i = 0; i < nevicted; i++)
		px->cfg.evicted(px->cfg.arg, evicted[i]);
	free(evicted);
	return err;
}

int kvmm_prefix_lookup(struct kvmm_prefix *px, const struct kvmm_block_hash *hashes, size_t n,
		       uint32_t *slots, size_t *matched)
{
	size_t i;

	if (!px || !matched || (n && (!hashes || !slots)))
		return -EINVAL;
	pthread_mutex_lock(&px->lock);
	for (i = 0; i < n; i++) {
		struct px_entry *e = px_find(px, &hashes[i]);

		if (!e || e->block != i)
			break;
		slots[i] = e->slot;
		if (!px->slots[e->slot].users && px->lru_tail != e->slot) {
			px_lru_del(px, e->slot);
			px_lru_add_tail(px, e->slot);
		}
	}
	*matched = i;
	px->st.lookups++;
	px->st.lookup_blocks += n;
	px->st.hit_blocks += i;
	pthread_mutex_unlock(&px->lock);
	return 0;
}

int kvmm_prefix_release(struct kvmm_prefix *px, uint32_t slot)
{
	struct px_slot *s;
	int err = 0;

	if (!px)
		return -EINVAL;
	pthread_mutex_lock(&px->lock);
	s = px_slot(px, slot);
	if (!s)
		err = -ENOENT;
	else if (!s->users)
		err = -EINVAL;
	else if (--s->users == 0) {
		px_lru_add_tail(px, slot);
		px->st.cached_slots++;
	}
	pthread_mutex_unlock(&px->lock);
	return err;
}

int kvmm_prefix_acquire(struct kvmm_prefix *px, uint32_t slot)
{
	struct px_slot *s;
	int err = 0;

	if (!px)
		return -EINVAL;
	pthread_mutex_lock(&px->lock);
	s = px_slot(px, slot);
	if (!s) {
		err = -ENOENT;
	} else {
		if (!s->users) {
			px_lru_del(px, slot);
			px->st.cached_slots--;
		}
		s->users++;
	}
	pthread_mutex_unlock(&px->lock);
	return err;
}

int kvmm_prefix_remove(struct kvmm_prefix *px, uint32_t slot)
{
	int err = 0;

	if (!px)
		return -EINVAL;
	pthread_mutex_lock(&px->lock);
	if (px_slot(px, slot))
		px_drop_slot(px, slot);
	else
		err = -ENOENT;
	pthread_mutex_unlock(&px->lock);
	return err;
}

int kvmm_prefix_evict(struct kvmm_prefix *px, uint32_t *slot)
{
	int err = 0;

	if (!px || !slot)
		return -EINVAL;
	pthread_mutex_lock(&px->lock);
	if (px->lru_head == PX_NONE) {
		err = -ENOENT;
	} else {
		*slot = px->lru_head;
		px->st.evicted_blocks += px_drop_slot(px, *slot);
		px->st.evictions++;
	}
	pthread_mutex_unlock(&px->lock);
	return err;
}

int kvmm_prefix_slot_blocks(struct kvmm_prefix *px, uint32_t slot, size_t *nblocks)
{
	struct px_slot *s;
	int err = 0;

	if (!px || !nblocks)
		return -EINVAL;
	pthread_mutex_lock(&px->lock);
	s = px_slot(px, slot);
	if (s)
		*nblocks = s->n;
	else
		err = -ENOENT;
	pthread_mutex_unlock(&px->lock);
	return err;
}

int kvmm_prefix_stats(struct kvmm_prefix *px, struct kvmm_prefix_stats *st)
{
	if (!px || !st)
		return -EINVAL;
	pthread_mutex_lock(&px->lock);
	*st = px->st;
	pthread_mutex_unlock(&px->lock);
	return 0;
}
