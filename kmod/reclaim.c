// SPDX-License-Identifier: GPL-2.0
/*
 * Reclaim: keeping the DRAM pool under its watermarks by moving cold chunks
 * to flash, and giving memory back to the kernel under system pressure.
 *
 * - A worker on an unbound reclaim workqueue runs when the pool passes its
 *   high watermark (or when a charge cannot be met) and evicts until usage
 *   is under the low watermark: regions of the lowest priority first, the
 *   least recently faulted or ensured chunks of a region first. Chunks that
 *   refaulted soon after an eviction are held back in a first pass.
 * - kvmm_pool_charge_reclaim() is direct reclaim: a fault, ENSURE, PREFETCH
 *   or pwrite that would take the pool past its high watermark waits for a
 *   worker run; it goes up to the limit only when a run frees nothing, and
 *   fails only when even that is full.
 * - The shrinker only trylocks. It drops clean chunks (whose flash copy is
 *   current) at once and asks the worker to write out dirty ones, since the
 *   shrinker may run in contexts that must not wait for I/O. What it asks
 *   for is kept per node, and the worker takes it from that node's chunks
 *   only: pressure on one node moves nothing that lives on another.
 */
#include <linux/jiffies.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/shrinker.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include "compat.h"
#include "kvmm.h"

unsigned int kvmm_high_wmark_pct = 95;
unsigned int kvmm_low_wmark_pct = 85;
unsigned int kvmm_refault_window_ms = 1000;

static struct workqueue_struct *kvmm_reclaim_wq;
static struct work_struct kvmm_reclaim_work;
static DECLARE_WAIT_QUEUE_HEAD(kvmm_pool_wait);
static atomic64_t kvmm_reclaim_gen;	/* bumped when a run ends */
static atomic64_t kvmm_reclaim_want;	/* bytes asked for beyond watermarks */
static atomic64_t *kvmm_reclaim_node_want;	/* [nr_node_ids]: the shrinker's asks */
static u64 kvmm_reclaim_last_freed;	/* bytes the last run moved out */
static struct shrinker *kvmm_shrinker;

void kvmm_reclaim_kick(void)
{
	/* Without a flash store there is nowhere to move chunks to. */
	if (kvmm_reclaim_wq && atomic_read(&kvmm_nr_stores))
		queue_work(kvmm_reclaim_wq, &kvmm_reclaim_work);
}

void kvmm_reclaim_wake_waiters(void)
{
	if (wq_has_sleeper(&kvmm_pool_wait))
		wake_up_all(&kvmm_pool_wait);
}

static u64 kvmm_pool_high(void)
{
	return div_u64(kvmm_pool_limit() * READ_ONCE(kvmm_high_wmark_pct), 100);
}

/*
 * Charge @bytes for a chunk someone is waiting for (a fault, ENSURE,
 * PREFETCH, pwrite). With a flash store, demand above the high watermark
 * waits for a reclaim run first, so usage stays under the high mark while
 * reclaim keeps up; the room between the high mark and the limit is used
 * only when a run frees nothing (everything pinned or busy). Fails with
 * -ENOMEM when the limit is reached and a run could free nothing, -EINTR
 * on a fatal signal. Never call with a region lock held: reclaim needs it.
 */
int kvmm_pool_charge_reclaim(u64 bytes)
{
	int tries;

	if (bytes > kvmm_pool_limit())
		return -ENOMEM;
	for (tries = 0; tries < 64; tries++) {
		bool stuck;
		s64 gen;

		if (!atomic_read(&kvmm_nr_stores))
			return kvmm_pool_charge(bytes);
		if (kvmm_pool_used() + bytes <= kvmm_pool_high() &&
		    !kvmm_pool_charge(bytes))
			return 0;
		gen = atomic64_read(&kvmm_reclaim_gen);
		atomic64_add(bytes, &kvmm_reclaim_want);
		kvmm_reclaim_kick();
		if (wait_event_killable(kvmm_pool_wait,
					atomic64_read(&kvmm_reclaim_gen) != gen ||
					kvmm_pool_used() + bytes <= kvmm_pool_high()))
			return -EINTR;
		stuck = atomic64_read(&kvmm_reclaim_gen) != gen &&
			!READ_ONCE(kvmm_reclaim_last_freed);
		if (stuck)
			return kvmm_pool_charge(bytes);
	}
	return kvmm_pool_charge(bytes);
}

/*
 * Charge @bytes at once if that needs no reclaim: below the high watermark,
 * or below the limit when there is no store to reclaim to (-ENOMEM when
 * even that is full). -EAGAIN when the caller would have to wait for
 * reclaim (kvmm_pool_charge_reclaim()).
 */
int kvmm_pool_charge_nowait(u64 bytes)
{
	if (!atomic_read(&kvmm_nr_stores))
		return kvmm_pool_charge(bytes);
	if (kvmm_pool_used() + bytes <= kvmm_pool_high() &&
	    !kvmm_pool_charge(bytes))
		return 0;
	return -EAGAIN;
}

static int kvmm_region_cmp_priority(const void *a, const void *b)
{
	const struct kvmm_region *ra = *(struct kvmm_region * const *)a;
	const struct kvmm_region *rb = *(struct kvmm_region * const *)b;

	return ra->priority < rb->priority ? -1 : ra->priority > rb->priority;
}

/* How long reclaim waits for one region's writes before moving on. */
#define KVMM_RECLAIM_STORE_TIMEOUT KVMM_STORE_STALL

/*
 * Evict up to @target bytes from @r's LRU; returns the bytes actually moved
 * out (clean drops, and writes that completed), not what was planned. The
 * wait for one region's writes (or its store's growth) is bounded, and a
 * store with I/O in flight that finished none for KVMM_STORE_STALL is
 * skipped (kvmm_store_stalled), so one hung store stalls only the regions
 * on it. With @nid other than NUMA_NO_NODE only chunks on that node move.
 * From a system call (@killable) a fatal signal ends the waits.
 */
static u64 kvmm_reclaim_region(struct kvmm_region *r, u64 target, int nid,
			       bool hold, bool killable)
{
	u64 bytes = kvmm_chunk_bytes(r), planned = 0, freed = 0;
	struct kvmm_io_batch *batch;
	struct kvmm_chunk *c, *tmp;
	int grows;

	for (grows = 0; grows < 4 && planned < target; grows++) {
		struct kvmm_store *grow = NULL;
		unsigned int seen = 0;
		LIST_HEAD(ios);
		s64 written;

		if (killable && fatal_signal_pending(current))
			break;
		batch = kvmm_io_batch_new();
		if (!batch)
			break;
		mutex_lock(&r->lock);
		/* r->store changes only under the lock (SET_BACKING). */
		if (r->store && kvmm_store_stalled(r->store)) {
			mutex_unlock(&r->lock);
			kvmm_io_batch_wait_timeout(batch, 0, false);
			break;
		}
		list_for_each_entry_safe(c, tmp, &r->lru, lru) {
			int err;

			if (planned >= target || r->dying)
				break;
			if (!(++seen % 256))
				cond_resched();
			if (hold && time_before(jiffies, c->hold_until))
				continue;
			/* On r->lru a chunk is resident: c->pages is set. */
			if (nid != NUMA_NO_NODE && page_to_nid(c->pages[0]) != nid)
				continue;
			err = kvmm_chunk_evict(r, c, batch, &ios);
			if (err == -EAGAIN) {
				grow = r->store;
				kref_get(&grow->ref);
				break;
			}
			if (err == -ENODEV || err == -ENOSPC)
				break;
			if (err)
				continue;
			planned += bytes;
			if (c->where == KVMM_CS_FLASH)	/* dropped clean, no I/O */
				freed += bytes;
		}
		mutex_unlock(&r->lock);
		kvmm_io_submit_all(&ios);
		written = kvmm_io_batch_wait_timeout(batch, KVMM_RECLAIM_STORE_TIMEOUT,
						     killable);
		if (written < 0) {
			pr_warn_ratelimited("kvmm: region %u: its backing store did not finish writes in %u s; reclaim goes on without it\n",
					    r->id, KVMM_RECLAIM_STORE_TIMEOUT / HZ);
			if (grow)
				kvmm_store_put(grow);
			break;
		}
		freed += written;
		if (!grow)
			break;
		/* The store's file needs room: grow it with no region lock held. */
		written = kvmm_store_grow_wait(grow, r, KVMM_RECLAIM_STORE_TIMEOUT);
		if (written == -ETIMEDOUT)
			pr_warn_ratelimited("kvmm: region %u: its backing store did not grow in %u s; reclaim goes on without it\n",
					    r->id, KVMM_RECLAIM_STORE_TIMEOUT / HZ);
		if (written)
			grows = 4;
		kvmm_store_put(grow);
	}
	return freed;
}

/*
 * Evict up to @target bytes from every region, or @memcg's regions only;
 * from node @nid's chunks only unless it is NUMA_NO_NODE.
 */
static u64 kvmm_reclaim_run(u64 target, struct mem_cgroup *memcg, int nid)
{
	bool killable = !(current->flags & PF_KTHREAD);
	struct kvmm_region **snap, *r;
	unsigned int n = 0, i, pass;
	u64 freed = 0;

	mutex_lock(&kvmm_regions_lock);
	snap = kvmalloc_array(max(kvmm_nr_regions + kvmm_nr_homes, 1U),
			      sizeof(*snap), GFP_KERNEL);
	if (snap) {
		list_for_each_entry(r, &kvmm_regions, node) {
			if (memcg && r->memcg != memcg)
				continue;
			/* A home being freed is still listed until its free. */
			if (!kref_get_unless_zero(&r->ref))
				continue;
			snap[n++] = r;
		}
	}
	mutex_unlock(&kvmm_regions_lock);
	if (!snap)
		return 0;

	sort(snap, n, sizeof(*snap), kvmm_region_cmp_priority, NULL);
	for (pass = 0; pass < 2 && freed < target; pass++)
		for (i = 0; i < n && freed < target; i++)
			freed += kvmm_reclaim_region(snap[i], target - freed,
						     nid, pass == 0, killable);
	for (i = 0; i < n; i++)
		kvmm_region_put(snap[i]);
	kvfree(snap);
	return freed;
}

static void kvmm_reclaim_fn(struct work_struct *work)
{
	u64 limit = kvmm_pool_limit(), used = kvmm_pool_used();
	u64 low = div_u64(limit * READ_ONCE(kvmm_low_wmark_pct), 100);
	u64 want = atomic64_xchg(&kvmm_reclaim_want, 0);
	u64 target = max(used > low ? used - low : 0, want), freed = 0;
	unsigned int nofs;
	bool ran = false;
	int nid;

	nofs = memalloc_nofs_save();
	if (target) {
		freed = kvmm_reclaim_run(target, NULL, NUMA_NO_NODE);
		ran = true;
	}
	for_each_node(nid) {
		u64 node_want = atomic64_xchg(&kvmm_reclaim_node_want[nid], 0);

		if (node_want) {
			freed += kvmm_reclaim_run(node_want, NULL, nid);
			ran = true;
		}
	}
	memalloc_nofs_restore(nofs);
	if (ran)
		atomic64_inc(&kvmm_stats.reclaim_runs);
	WRITE_ONCE(kvmm_reclaim_last_freed, freed);
	atomic64_inc(&kvmm_reclaim_gen);
	wake_up_all(&kvmm_pool_wait);
}

/*
 * A chunk allocation for @r failed although the pool had room: most likely
 * its creator's memory cgroup is at memory.max. Move up to @bytes of that
 * cgroup's coldest chunks to flash (its own tenants pay, no other cgroup),
 * waiting for the writes. Returns the bytes moved out; 0 without a store.
 * Never call with a region lock held.
 */
u64 kvmm_reclaim_memcg(struct kvmm_region *r, u64 bytes)
{
	unsigned int nofs;
	u64 freed;

	if (!r->memcg || !atomic_read(&kvmm_nr_stores))
		return 0;
	nofs = memalloc_nofs_save();
	freed = kvmm_reclaim_run(bytes, r->memcg, NUMA_NO_NODE);
	memalloc_nofs_restore(nofs);
	return freed;
}

/* ---- shrinker ---------------------------------------------------------- */

/* Resident chunks with a current flash copy: dropped without I/O. */
struct list_lru kvmm_clean_lru;

/* What the shrinker could free on sc->nid: clean chunks, nothing else. */
static unsigned long kvmm_shrink_count(struct shrinker *s,
				       struct shrink_control *sc)
{
	return list_lru_shrink_count(&kvmm_clean_lru, sc);
}

/* What one walk of the clean list did. */
struct kvmm_shrink_walk {
	unsigned long freed;	/* chunks dropped */
	unsigned long spared;	/* refaulted chunks given their second chance */
};

/*
 * Drop one clean chunk. Called under the list_lru node lock; the region
 * lock is only tried (the shrinker may run under any region's lock), and
 * the node lock is dropped around the drop, which unmaps and may sleep, as
 * binder_alloc's shrinker does.
 */
static enum lru_status kvmm_shrink_isolate(struct list_head *item,
					   struct list_lru_one *list,
					   spinlock_t *lock, void *arg)
	__must_hold(lock)
{
	struct kvmm_chunk *c = container_of(item, struct kvmm_chunk, clean);
	struct kvmm_shrink_walk *walk = arg;
	struct kvmm_region *r = c->r;
	LIST_HEAD(none);

	if (!mutex_trylock(&r->lock))
		return LRU_SKIP;
	if (r->dying || !kref_get_unless_zero(&r->ref)) {
		mutex_unlock(&r->lock);
		return LRU_SKIP;
	}
	/*
	 * Just refaulted: keep it in this time (as the worker's first pass
	 * does), but only once: a second chance, so that a node short of
	 * memory can still drop it on the next walk instead of OOM-killing.
	 */
	if (time_before(jiffies, c->hold_until)) {
		c->hold_until = jiffies;
		walk->spared++;
		mutex_unlock(&r->lock);
		kvmm_region_put_deferred(r);
		return LRU_ROTATE;
	}
	list_lru_isolate(list, item);
	c->on_clean = false;
	spin_unlock(lock);

	if (!kvmm_chunk_evict(r, c, NULL, &none) && c->where == KVMM_CS_FLASH) {
		walk->freed++;
		kvmm_account_reclaimed_pages(kvmm_chunk_pages(r));
	}
	else
		kvmm_chunk_lru_update(r, c);	/* busy: back on the list */
	mutex_unlock(&r->lock);
	kvmm_region_put_deferred(r);

	spin_lock(lock);
	return LRU_REMOVED_RETRY;
}

/*
 * Drop up to nr_to_scan clean chunks of node sc->nid, taken from the
 * list_lru in O(nr_to_scan); dirty ones are the reclaim worker's, which is
 * asked for what could not be dropped on that node (the shrinker must not
 * wait for I/O).
 */
static unsigned long kvmm_shrink_scan(struct shrinker *s,
				      struct shrink_control *sc)
{
	struct kvmm_shrink_walk walk = {};
	unsigned long nr = sc->nr_to_scan;

	atomic64_inc(&kvmm_stats.shrinker_scans);
	list_lru_shrink_walk(&kvmm_clean_lru, sc, kvmm_shrink_isolate, &walk);
	if (walk.freed < nr) {
		atomic64_add((u64)(nr - walk.freed) << PAGE_SHIFT,
			     &kvmm_reclaim_node_want[sc->nid]);
		kvmm_reclaim_kick();
	}
	/*
	 * Chunks that used their second chance can go on the next batch of
	 * the same scan: stop only when the walk made no progress at all.
	 */
	if (!walk.freed && !walk.spared)
		return SHRINK_STOP;
	return walk.freed;
}

int kvmm_reclaim_init(void)
{
	int err;

	INIT_WORK(&kvmm_reclaim_work, kvmm_reclaim_fn);
	kvmm_reclaim_node_want = kcalloc(nr_node_ids,
					 sizeof(*kvmm_reclaim_node_want),
					 GFP_KERNEL);
	if (!kvmm_reclaim_node_want)
		return -ENOMEM;
	kvmm_reclaim_wq = alloc_workqueue("kvmm_reclaim",
					  WQ_UNBOUND | WQ_MEM_RECLAIM, 1);
	if (!kvmm_reclaim_wq) {
		kfree(kvmm_reclaim_node_want);
		return -ENOMEM;
	}
	err = list_lru_init(&kvmm_clean_lru);
	if (err) {
		destroy_workqueue(kvmm_reclaim_wq);
		kvmm_reclaim_wq = NULL;
		kfree(kvmm_reclaim_node_want);
		return err;
	}
	kvmm_shrinker = kvmm_shrinker_create("kvmm", kvmm_shrink_count,
					     kvmm_shrink_scan);
	if (IS_ERR(kvmm_shrinker)) {
		list_lru_destroy(&kvmm_clean_lru);
		destroy_workqueue(kvmm_reclaim_wq);
		kvmm_reclaim_wq = NULL;
		kfree(kvmm_reclaim_node_want);
		return PTR_ERR(kvmm_shrinker);
	}
	return 0;
}

void kvmm_reclaim_exit(void)
{
	kvmm_shrinker_destroy(kvmm_shrinker);
	destroy_workqueue(kvmm_reclaim_wq);
	kvmm_reclaim_wq = NULL;
	list_lru_destroy(&kvmm_clean_lru);
	kfree(kvmm_reclaim_node_want);
}
