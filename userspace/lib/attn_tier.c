/* SPDX-License-Identifier: MIT */
/*
 * The attention kernels' tier interface (struct kvmm_attn_tier,
 * include/kvmm/attention.h) over host regions, so a CPU decode runs on KV
 * that is partly on flash: fetch starts an asynchronous prefetch of the
 * flash chunks of a range (user mode: the io_uring store; kernel mode:
 * KVMM_IOC_PREFETCH and KVMM_IOC_WAIT on a worker), acquire waits for it
 * and pins the range (a pin makes the range resident first, reading back
 * what an evict took meanwhile, and keeps evicts off it), release unpins.
 *
 * Each chunk is fetched by the range that holds its first byte, so ranges
 * that share a chunk (items of a plan meet mid-chunk) never queue two reads
 * of it. Stateless apart from the region list: any number of calls may use
 * one tier at once.
 */
#include <errno.h>
#include <stdlib.h>

#include <kvmm/attention.h>

#include "internal.h"

struct kvmm_attn_regions {
	int n;
	struct kvmm_region *r[];
};

/* The region holding [addr, addr + len), or NULL. */
static struct kvmm_region *kvmm_tier_find(const struct kvmm_attn_regions *t, const void *addr,
					  size_t len)
{
	uintptr_t a = (uintptr_t)addr;

	for (int i = 0; i < t->n; i++) {
		uintptr_t b = (uintptr_t)t->r[i]->base;

		if (a >= b && len <= t->r[i]->bytes && a - b <= t->r[i]->bytes - len)
			return t->r[i];
	}
	return NULL;
}

/* Chunks [*first, *first + *nr) touched by the range. */
static void kvmm_tier_chunks(const struct kvmm_region *r, const void *addr, size_t len,
			     uint64_t *first, uint64_t *nr)
{
	uint64_t off = (uintptr_t)addr - (uintptr_t)r->base;

	*first = off / r->chunk_bytes;
	*nr = (off + len + r->chunk_bytes - 1) / r->chunk_bytes - *first;
}

static int kvmm_tier_fetch(void *arg, const void *addr, size_t len, void **ticket)
{
	struct kvmm_region *r = kvmm_tier_find(arg, addr, len);
	uint64_t first, nr, start;
	uint8_t *st;
	int ret, flash = 0;

	*ticket = NULL;
	if (!r)
		return -EINVAL;
	if (!len)
		return 1;
	kvmm_tier_chunks(r, addr, len, &first, &nr);
	st = malloc(nr);
	if (!st)
		return -ENOMEM;
	ret = kvmm_region_query(r, first, nr, st);
	for (uint64_t i = 0; !ret && i < nr; i++)
		flash |= (st[i] & KVMM_STATE_MASK) == KVMM_STATE_FLASH;
	free(st);
	if (ret)
		return ret;
	if (!flash)
		return 1;
	/* A chunk that starts before the range is the earlier range's to fetch. */
	start = ((uintptr_t)addr - (uintptr_t)r->base) % r->chunk_bytes ? first + 1 : first;
	if (start >= first + nr)
		return 0; /* all of it is being read for the range before */
	ret = kvmm_region_prefetch(r, start * r->chunk_bytes, (first + nr - start) * r->chunk_bytes,
				   (struct kvmm_op **)ticket);
	return ret ? ret : 0;
}

static int kvmm_tier_acquire(void *arg, const void *addr, size_t len, void *ticket)
{
	struct kvmm_region *r = kvmm_tier_find(arg, addr, len);
	uint64_t first, nr;
	int ret = ticket ? kvmm_wait(ticket) : 0;

	/* A failed read is the caller's answer: the chunk stays on flash. */
	if (ret || !len)
		return ret;
	if (!r)
		return -EINVAL;
	kvmm_tier_chunks(r, addr, len, &first, &nr);
	return kvmm_region_pin(r, first * r->chunk_bytes, nr * r->chunk_bytes);
}

static void kvmm_tier_release(void *arg, const void *addr, size_t len)
{
	struct kvmm_region *r = kvmm_tier_find(arg, addr, len);
	uint64_t first, nr;

	if (!r || !len)
		return;
	kvmm_tier_chunks(r, addr, len, &first, &nr);
	kvmm_region_unpin(r, first * r->chunk_bytes, nr * r->chunk_bytes);
}

static void kvmm_tier_drop(void *arg, void *ticket)
{
	(void)arg;
	if (ticket)
		kvmm_wait(ticket);
}

int kvmm_attn_tier_regions(struct kvmm_region *const *regions, int n, struct kvmm_attn_tier *tier)
{
	struct kvmm_attn_regions *t;

	if (!regions || n <= 0 || !tier)
		return -EINVAL;
	for (int i = 0; i < n; i++)
		if (!regions[i])
			return -EINVAL;
	t = malloc(sizeof(*t) + sizeof(t->r[0]) * (size_t)n);
	if (!t)
		return -ENOMEM;
	t->n = n;
	for (int i = 0; i < n; i++)
		t->r[i] = regions[i];
	*tier = (struct kvmm_attn_tier){
	    .fetch = kvmm_tier_fetch,
	    .acquire = kvmm_tier_acquire,
	    .release = kvmm_tier_release,
	    .drop = kvmm_tier_drop,
	    .arg = t,
	};
	return 0;
}

void kvmm_attn_tier_free(struct kvmm_attn_tier *tier)
{
	if (!tier)
		return;
	free(tier->arg);
	tier->arg = NULL;
}
