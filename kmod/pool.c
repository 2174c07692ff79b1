// SPDX-License-Identifier: GPL-2.0
/*
 * The DRAM pool: every page behind a region comes from here.
 *
 * The pool is a byte budget, not a cache of free pages: a chunk is charged
 * against pool_limit_bytes before its pages are taken from the page
 * allocator, and uncharged when they are given back. Charging first means
 * an ENSURE can reserve a whole range at once and fail with nothing done.
 * Pages are allocated zeroed (no data crosses tenants) unless they are about
 * to be filled from flash, and without the OOM killer: a pool that cannot
 * grow fails the request (or waits for reclaim), never kills a process.
 */
#include <linux/gfp.h>
#include <linux/math64.h>
#include <linux/mm.h>
#include <linux/nodemask.h>
#include <linux/slab.h>
#include "kvmm.h"

static atomic64_t pool_used;
static u64 pool_limit;
static atomic64_t *node_used;	/* bytes per node, nr_node_ids entries */

int kvmm_pool_init(u64 limit_bytes)
{
	node_used = kcalloc(nr_node_ids, sizeof(*node_used), GFP_KERNEL);
	if (!node_used)
		return -ENOMEM;
	WRITE_ONCE(pool_limit, limit_bytes);
	return 0;
}

void kvmm_pool_exit(void)
{
	WARN_ON(atomic64_read(&pool_used));
	kfree(node_used);
}

u64 kvmm_pool_limit(void)
{
	return READ_ONCE(pool_limit);
}

/* A new limit below the current usage only stops further growth. */
int kvmm_pool_set_limit(u64 bytes)
{
	if (bytes > (u64)totalram_pages() << PAGE_SHIFT)
		return -EINVAL;
	WRITE_ONCE(pool_limit, bytes);
	return 0;
}

u64 kvmm_pool_used(void)
{
	return atomic64_read(&pool_used);
}

u64 kvmm_pool_node_used(int nid)
{
	return atomic64_read(&node_used[nid]);
}

/* Charge without waiting; above the high watermark, start reclaim. */
int kvmm_pool_charge(u64 bytes)
{
	u64 limit = READ_ONCE(pool_limit);
	s64 used = atomic64_read(&pool_used);

	/* Never over the limit, not even for a moment a reader could see. */
	do {
		if (used + bytes > limit)
			return -ENOMEM;
	} while (!atomic64_try_cmpxchg(&pool_used, &used, used + bytes));
	used += bytes;
	if (used > div_u64(limit * READ_ONCE(kvmm_high_wmark_pct), 100))
		kvmm_reclaim_kick();
	return 0;
}

void kvmm_pool_uncharge(u64 bytes)
{
	WARN_ON_ONCE(atomic64_sub_return(bytes, &pool_used) < 0);
	kvmm_reclaim_wake_waiters();
}

static gfp_t kvmm_pool_gfp(int nid, bool zero)
{
	/*
	 * Charged to the active memory cgroup (the region creator's); past its
	 * memory.max the allocation fails (RETRY_MAYFAIL/NORETRY never invoke
	 * the memcg OOM killer) and kvmm evicts or refuses.
	 */
	gfp_t gfp = GFP_HIGHUSER | __GFP_NOWARN | __GFP_RETRY_MAYFAIL |
		    __GFP_ACCOUNT;

	/* Pages about to be filled from flash need no zeroing. */
	if (zero)
		gfp |= __GFP_ZERO;
	/* An explicit node is a strict placement, like MPOL_BIND. */
	if (nid != NUMA_NO_NODE)
		gfp |= __GFP_THISNODE;
	return gfp;
}

/*
 * Fill @pages with 1 << @order zeroed pages (charged to the active memory
 * cgroup), preferably one physically
 * contiguous block split into order-0 pages (fewer TLB-unfriendly scatter,
 * cheaper I/O later), else single pages. Callers have charged the pool.
 */
int kvmm_pool_alloc_pages(int nid, unsigned int order, struct page **pages,
			  bool zero)
{
	unsigned int nr = 1U << order, i;
	gfp_t gfp = kvmm_pool_gfp(nid, zero);
	struct page *page;

	if (nid == NUMA_NO_NODE)
		nid = numa_node_id();

	if (order) {
		page = alloc_pages_node(nid, (gfp & ~__GFP_RETRY_MAYFAIL) |
					__GFP_NORETRY, order);
		if (page) {
			split_page(page, order);
			for (i = 0; i < nr; i++)
				pages[i] = page + i;
			goto account;
		}
	}

	for (i = 0; i < nr; i++) {
		pages[i] = alloc_pages_node(nid, gfp, 0);
		if (!pages[i]) {
			while (i--)
				__free_page(pages[i]);
			return -ENOMEM;
		}
	}
account:
	for (i = 0; i < nr; i++)
		atomic64_add(PAGE_SIZE, &node_used[page_to_nid(pages[i])]);
	return 0;
}

/*
 * Drop the pool's reference on each page. A reader or writer copying
 * through pread()/pwrite() may hold its own for a moment; the page is
 * freed when that goes.
 */
void kvmm_pool_free_pages(struct page **pages, unsigned int nr)
{
	unsigned int i;

	for (i = 0; i < nr; i++) {
		atomic64_sub(PAGE_SIZE, &node_used[page_to_nid(pages[i])]);
		put_page(pages[i]);
	}
}
