// SPDX-License-Identifier: GPL-2.0
/*
 * Chunks: their memory, their place on the region's LRU, and their moves
 * between DRAM and flash.
 *
 * Every function here that takes a region and a chunk runs under the
 * region's lock (see region.c for the lock order), except where it says
 * otherwise. A move sets the chunk WRITING or READING under the lock, builds
 * an I/O, and leaves submission to the caller after it drops the lock
 * (kvmm_io_submit_all), because submission and checksums may sleep for
 * long. While a chunk is in flight its pages belong to the I/O: nothing maps
 * them (they were unmapped before a write; a read's pages are new), pread
 * and pwrite wait, and DISCARD waits.
 *
 * Completion runs on a worker: it takes the region lock, settles the chunk
 * (RESIDENT or FLASH), bumps io_seq and wakes io_wait, where faults and
 * ioctls waiting for that region's I/O re-check their chunk.
 */
#include <linux/memcontrol.h>
#include <linux/mm.h>
#include <linux/page_counter.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include "compat.h"
#include "kvmm.h"

/* ---- memory ------------------------------------------------------------ */

/*
 * resident_chunks counts chunks of the table that hold pages: a chunk from
 * kvmm_chunk_new() counts only once installed.
 */
static void kvmm_chunk_put_pages(struct kvmm_region *r, struct kvmm_chunk *c)
{
	kvmm_pool_free_pages(c->pages, kvmm_chunk_pages(r));
	kvfree(c->pages);
	c->pages = NULL;
	kvmm_pool_uncharge(kvmm_chunk_bytes(r));
}

static void kvmm_chunk_free_pages(struct kvmm_region *r, struct kvmm_chunk *c)
{
	lockdep_assert_held(&r->lock);
	kvmm_chunk_put_pages(r, c);
	atomic64_dec(&r->resident_chunks);
}

/*
 * Room for @bytes more in @memcg and every ancestor with a limit, leaving a
 * headroom there: kvmm's chunks are not on the LRU, so memcg reclaim cannot
 * take them back, and the page tables that map a chunk are charged to the
 * faulting task after the chunk, where a failed charge is an OOM kill and
 * not an error kvmm could answer by evicting. Without the headroom a cgroup
 * filled with chunks up to memory.max OOM-killed its tenant on the next
 * page table. Racy by nature (other charges come and go): the headroom is
 * what absorbs them.
 */
static bool kvmm_memcg_room(struct mem_cgroup *memcg, u64 bytes)
{
	unsigned long nr = bytes >> PAGE_SHIFT;

	/* The root's max is PAGE_COUNTER_MAX: no limit to keep room under. */
	for (; memcg; memcg = parent_mem_cgroup(memcg)) {
		unsigned long max = READ_ONCE(memcg->memory.max);
		unsigned long head = max_t(unsigned long, KVMM_MEMCG_HEADROOM >> PAGE_SHIFT,
					   max / 128);

		if (max == PAGE_COUNTER_MAX)
			continue;
		if (page_counter_read(&memcg->memory) + nr + head > max)
			return false;
	}
	return true;
}

/*
 * Give @c pages; the pool is charged by the caller. The pages and their
 * array are charged to the region creator's memory cgroup, whoever faults.
 */
static int kvmm_chunk_alloc_pages(struct kvmm_region *r, struct kvmm_chunk *c,
				  bool zero)
{
	struct mem_cgroup *old;
	int err = -ENOMEM;

	if (!kvmm_memcg_room(r->memcg, kvmm_chunk_bytes(r)))
		return -ENOMEM;
	old = set_active_memcg(r->memcg);

	c->pages = kvcalloc(kvmm_chunk_pages(r), sizeof(*c->pages),
			    KVMM_GFP_ACCOUNT);
	if (!c->pages)
		goto out;
	if (kvmm_pool_alloc_pages(kvmm_region_nid(r), r->chunk_order, c->pages,
				  zero)) {
		kvfree(c->pages);
		c->pages = NULL;
		goto out;
	}
	err = 0;
out:
	set_active_memcg(old);
	return err;
}

/*
 * Keep @c on the lists that match its state: the region's LRU while
 * resident and unpinned, the shrinker's list_lru while it could be dropped
 * without I/O (its flash copy is current). Call after every change of its
 * state, pins or dirtiness.
 */
void kvmm_chunk_lru_update(struct kvmm_region *r, struct kvmm_chunk *c)
{
	bool want = c->where == KVMM_CS_RESIDENT && !c->pins;
	bool clean = want && !c->dirty && c->slot != KVMM_NO_SLOT && !r->dying;

	lockdep_assert_held(&r->lock);
	if (clean && !c->on_clean) {
		c->clean_nid = page_to_nid(c->pages[0]);
		kvmm_list_lru_add(&kvmm_clean_lru, &c->clean, c->clean_nid);
	} else if (!clean && c->on_clean) {
		kvmm_list_lru_del(&kvmm_clean_lru, &c->clean, c->clean_nid);
	}
	c->on_clean = clean;

	if (want)
		list_move_tail(&c->lru, &r->lru);
	else if (c->on_lru)
		list_del_init(&c->lru);
	c->on_lru = want;
}

/*
 * A new chunk @idx with zeroed pages, not yet in the table: the pool is
 * charged by the caller, and the charge is returned here on failure. Takes
 * no region lock, so a fault can allocate and zero while other faults of the
 * region go on; kvmm_chunk_install() enters it.
 */
struct kvmm_chunk *kvmm_chunk_new(struct kvmm_region *r, unsigned long idx)
{
	struct mem_cgroup *memcg;
	struct kvmm_chunk *c;

	/*
	 * Per-chunk metadata counts in the creator's memory cgroup too. It
	 * lives on the node its pages will most likely come from, which is
	 * the node the shrinker's list_lru files it under before 6.8.
	 */
	memcg = set_active_memcg(r->memcg);
	c = kzalloc_node(sizeof(*c), KVMM_GFP_ACCOUNT,
			 r->nid == KVMM_NUMA_LOCAL ? numa_node_id() : r->nid);
	set_active_memcg(memcg);
	if (!c)
		goto uncharge;
	INIT_LIST_HEAD(&c->lru);
	INIT_LIST_HEAD(&c->clean);
	INIT_LIST_HEAD(&c->aliases);
	c->r = r;
	c->idx = idx;
	c->slot = KVMM_NO_SLOT;
	c->dirty = true;
	c->where = KVMM_CS_RESIDENT;
	if (kvmm_chunk_alloc_pages(r, c, true)) {
		kfree(c);
		goto uncharge;
	}
	return c;

uncharge:
	kvmm_pool_uncharge(kvmm_chunk_bytes(r));
	return ERR_PTR(-ENOMEM);
}

/* Free a chunk from kvmm_chunk_new() that never entered the table. */
void kvmm_chunk_free_new(struct kvmm_region *r, struct kvmm_chunk *c)
{
	kvmm_chunk_put_pages(r, c);
	kfree(c);
}

/* Enter a chunk from kvmm_chunk_new() in the table (freed on failure). */
struct kvmm_chunk *kvmm_chunk_install(struct kvmm_region *r,
				      struct kvmm_chunk *c)
{
	struct mem_cgroup *memcg;
	int err;

	lockdep_assert_held(&r->lock);
	memcg = set_active_memcg(r->memcg);
	err = xa_err(xa_store(&r->chunks, c->idx, c, KVMM_GFP_ACCOUNT));
	set_active_memcg(memcg);
	if (err) {
		kvmm_chunk_free_new(r, c);
		return ERR_PTR(err);
	}
	atomic64_inc(&r->resident_chunks);
	kvmm_chunk_lru_update(r, c);
	atomic64_inc(&r->zero_fills);
	atomic64_inc(&kvmm_stats.zero_fills);
	return c;
}

/*
 * Give chunk @idx memory under the lock: charge the pool unless @charged,
 * allocate zeroed pages and enter it in the table.
 */
struct kvmm_chunk *kvmm_chunk_populate(struct kvmm_region *r,
				       unsigned long idx, bool charged)
{
	struct kvmm_chunk *c;

	lockdep_assert_held(&r->lock);
	if (!charged && kvmm_pool_charge(kvmm_chunk_bytes(r)))
		return ERR_PTR(-ENOMEM);
	c = kvmm_chunk_new(r, idx);
	return IS_ERR(c) ? c : kvmm_chunk_install(r, c);
}

/*
 * Forget a chunk that is not in flight: its pages, its flash slot, its
 * table entry. The caller has removed it from every mapping.
 */
void kvmm_chunk_remove(struct kvmm_region *r, struct kvmm_chunk *c)
{
	lockdep_assert_held(&r->lock);
	WARN_ON(c->where == KVMM_CS_WRITING || c->where == KVMM_CS_READING);
	xa_erase(&r->chunks, c->idx);
	if (c->on_lru)
		list_del(&c->lru);
	if (c->on_clean)
		kvmm_list_lru_del(&kvmm_clean_lru, &c->clean, c->clean_nid);
	if (c->pages)
		kvmm_chunk_free_pages(r, c);
	else
		atomic64_dec(&r->flash_chunks);
	if (c->slot != KVMM_NO_SLOT) {
		kvmm_store_free(r->store, c->slot, r->chunk_order);
		atomic64_dec(&r->slot_chunks);
	}
	kfree(c);
}

/* Someone (pread/pwrite) holds page references: the data may change. */
bool kvmm_chunk_busy(struct kvmm_region *r, struct kvmm_chunk *c)
{
	unsigned int i;

	lockdep_assert_held(&r->lock);
	for (i = 0; i < kvmm_chunk_pages(r); i++)
		if (page_count(c->pages[i]) != 1)
			return true;
	return false;
}

/* ---- batches ----------------------------------------------------------- */

/*
 * A batch lives on the heap and is reference-counted, so a caller that a
 * fatal signal interrupts can leave while its I/Os are still in flight:
 * the last of them frees it.
 */
struct kvmm_io_batch *kvmm_io_batch_new(void)
{
	struct kvmm_io_batch *batch = kmalloc(sizeof(*batch), GFP_KERNEL);

	if (!batch)
		return NULL;
	refcount_set(&batch->ref, 1);
	atomic_set(&batch->pending, 1);
	batch->err = 0;
	atomic64_set(&batch->written, 0);
	init_completion(&batch->done);
	return batch;
}

static void kvmm_io_batch_unref(struct kvmm_io_batch *batch)
{
	if (refcount_dec_and_test(&batch->ref))
		kfree(batch);
}

static void kvmm_io_batch_put(struct kvmm_io_batch *batch, int err,
			      u64 written)
{
	if (!batch)
		return;
	if (err)
		cmpxchg(&batch->err, 0, err);
	atomic64_add(written, &batch->written);
	if (atomic_dec_and_test(&batch->pending))
		complete(&batch->done);
	kvmm_io_batch_unref(batch);
}

/*
 * Wait for every I/O added to @batch and drop the caller's reference;
 * returns the first error, or -EINTR when @killable and a fatal signal
 * came first (the I/Os go on and settle their chunks).
 */
int kvmm_io_batch_wait(struct kvmm_io_batch *batch, bool killable)
{
	int err = 0;

	if (atomic_dec_and_test(&batch->pending))
		complete(&batch->done);
	if (killable)
		err = wait_for_completion_killable(&batch->done) ? -EINTR : 0;
	else
		wait_for_completion(&batch->done);
	err = err ?: READ_ONCE(batch->err);
	kvmm_io_batch_unref(batch);
	return err;
}

/*
 * Reclaim's wait: at most @timeout, so one stalled store cannot stop
 * reclaim for everyone, and with @killable (a system call reclaiming for
 * its cgroup) ended by a fatal signal. Returns the bytes its writes moved
 * to flash, -ETIMEDOUT or -EINTR (the I/Os go on).
 */
s64 kvmm_io_batch_wait_timeout(struct kvmm_io_batch *batch,
			       unsigned long timeout, bool killable)
{
	long left;
	s64 ret;

	if (atomic_dec_and_test(&batch->pending))
		complete(&batch->done);
	if (killable)
		left = wait_for_completion_killable_timeout(&batch->done, timeout);
	else
		left = wait_for_completion_timeout(&batch->done, timeout);
	ret = left > 0 ? atomic64_read(&batch->written) :
	      left < 0 ? -EINTR : completion_done(&batch->done) ?
	      atomic64_read(&batch->written) : -ETIMEDOUT;
	kvmm_io_batch_unref(batch);
	return ret;
}

/* A task waiting for the I/O of one chunk (keyed wakeups on chunk_wait). */
struct kvmm_chunk_waiter {
	unsigned long key;	/* chunk index + 1 */
	struct wait_queue_entry wq;
};

static int kvmm_chunk_wake(struct wait_queue_entry *wq, unsigned int mode,
			   int sync, void *key)
{
	struct kvmm_chunk_waiter *w = container_of(wq, struct kvmm_chunk_waiter, wq);

	if (key && (unsigned long)key != w->key)
		return 0;
	return autoremove_wake_function(wq, mode, sync, key);
}

/*
 * Sleep until an I/O of chunk @idx of @r completes after @seq was read
 * (under the lock): only that chunk's completion wakes the caller. Returns
 * 0, or -EINTR on a fatal signal.
 */
int kvmm_chunk_wait_io(struct kvmm_region *r, unsigned long idx,
		       unsigned long seq)
{
	struct kvmm_chunk_waiter w = { .key = idx + 1 };
	int err = 0;

	init_wait(&w.wq);
	w.wq.func = kvmm_chunk_wake;
	for (;;) {
		prepare_to_wait(&r->chunk_wait, &w.wq, TASK_KILLABLE);
		if (READ_ONCE(r->io_seq) != seq)
			break;
		if (fatal_signal_pending(current)) {
			err = -EINTR;
			break;
		}
		schedule();
	}
	finish_wait(&r->chunk_wait, &w.wq);
	return err;
}

/* ---- moves -------------------------------------------------------------- */

static struct kvmm_io *kvmm_io_alloc(struct kvmm_region *r,
				     struct kvmm_chunk *c,
				     struct kvmm_io_batch *batch, bool write)
{
	struct kvmm_io *io;

	io = kzalloc(struct_size(io, bvec, kvmm_chunk_pages(r)), GFP_NOIO);
	if (!io)
		return NULL;
	io->r = r;
	io->c = c;
	io->batch = batch;
	io->write = write;
	io->c_idx = c->idx;
	INIT_LIST_HEAD(&io->node);
	INIT_LIST_HEAD(&io->run);
	return io;
}

/* The I/O now in flight pins the region and counts in its batch. */
static void kvmm_io_start(struct kvmm_io *io, struct list_head *ios)
{
	lockdep_assert_held(&io->r->lock);
	kref_get(&io->r->ref);
	atomic_inc(&io->r->inflight);
	/* The store and the module stay until the I/O is finished. */
	io->store = io->r->store;
	kref_get(&io->store->ref);
	atomic_inc(&io->store->inflight);
	__module_get(THIS_MODULE);
	if (io->batch) {
		refcount_inc(&io->batch->ref);
		atomic_inc(&io->batch->pending);
	}
	list_add_tail(&io->node, ios);
}

static struct kvmm_store *kvmm_region_backing(struct kvmm_region *r)
{
	lockdep_assert_held(&r->lock);

	if (!r->store)
		r->store = kvmm_store_get_default();
	return r->store;
}

/*
 * Move a resident chunk out of DRAM: drop it if its flash copy is current,
 * else prepare a write of it to its slot (allocated here) and queue the I/O
 * on @ios. 0 when done or queued, -EBUSY when pinned or in use, -ENODEV
 * without a backing store, -EAGAIN when the store must grow first (see
 * kvmm_store_grow()), -ENOSPC/-ENOMEM when no slot or I/O could be had.
 */
int kvmm_chunk_evict(struct kvmm_region *r, struct kvmm_chunk *c,
		     struct kvmm_io_batch *batch, struct list_head *ios)
{
	struct kvmm_store *b;
	struct kvmm_io *io;
	int err;

	lockdep_assert_held(&r->lock);
	if (c->where != KVMM_CS_RESIDENT || r->dying)
		return 0;
	if (c->pins || kvmm_chunk_busy(r, c))
		return -EBUSY;
	b = kvmm_region_backing(r);
	if (!b)
		return -ENODEV;

	if (!c->dirty && c->slot != KVMM_NO_SLOT) {
		kvmm_region_unmap(r, c->idx, 1);
		kvmm_chunk_free_pages(r, c);
		c->where = KVMM_CS_FLASH;
		c->evicted_at = jiffies;
		kvmm_chunk_lru_update(r, c);
		atomic64_inc(&r->flash_chunks);
		atomic64_inc(&r->evictions);
		atomic64_inc(&r->clean_drops);
		atomic64_inc(&kvmm_stats.evictions);
		atomic64_inc(&kvmm_stats.clean_drops);
		return 0;
	}

	io = kvmm_io_alloc(r, c, batch, true);
	if (!io)
		return -ENOMEM;
	if (c->slot == KVMM_NO_SLOT) {
		err = kvmm_store_alloc(b, r->chunk_order, &c->slot);
		if (err) {
			kfree(io);
			return err;
		}
		atomic64_inc(&r->slot_chunks);
	}
	/* No PTE may write to the pages while they go to flash. */
	kvmm_region_unmap(r, c->idx, 1);
	c->where = KVMM_CS_WRITING;
	kvmm_chunk_lru_update(r, c);
	kvmm_io_start(io, ios);
	return 0;
}

/*
 * Prepare reading a flash chunk back into new pages; the pool is charged
 * by the caller (and uncharged here on failure).
 */
int kvmm_chunk_read_back(struct kvmm_region *r, struct kvmm_chunk *c,
			 struct kvmm_io_batch *batch, bool by_fault,
			 struct list_head *ios)
{
	struct kvmm_io *io;

	lockdep_assert_held(&r->lock);
	if (WARN_ON(c->where != KVMM_CS_FLASH) || r->dying)
		goto uncharge;
	io = kvmm_io_alloc(r, c, batch, false);
	if (!io)
		goto uncharge;
	if (kvmm_chunk_alloc_pages(r, c, false)) {
		kfree(io);
		goto uncharge;
	}
	atomic64_inc(&r->resident_chunks);
	atomic64_dec(&r->flash_chunks);
	io->by_fault = by_fault;
	c->io_err = 0;
	c->where = KVMM_CS_READING;
	kvmm_io_start(io, ios);
	return 0;

uncharge:
	kvmm_pool_uncharge(kvmm_chunk_bytes(r));
	return -ENOMEM;
}

/*
 * Merged I/O: chunks of one region whose slots follow each other move in one
 * flash I/O (a bio_vec over all their pages), up to KVMM_IO_RUN_PAGES, as
 * swap writes clusters. Each chunk keeps its own io (checksum, batch,
 * completion); the first io of a run carries the I/O. A merged I/O that
 * fails is tried again chunk by chunk, so one bad sector fails one chunk,
 * and until then every chunk's data stays where it was.
 */

static bool kvmm_io_continues(struct kvmm_io *last, struct kvmm_io *next,
			      unsigned int run_pages)
{
	unsigned int nr = kvmm_chunk_pages(last->r);

	return !next->solo && next->r == last->r && next->write == last->write &&
	       next->store == last->store &&
	       next->c->slot == last->c->slot + nr &&
	       run_pages + nr <= KVMM_IO_RUN_PAGES;
}

/*
 * Move the ios at the head of @ios that continue @head's run onto it. An io
 * the failure hook picks fails alone and ends the run (its slot is a gap).
 */
static void kvmm_io_gather(struct kvmm_io *head, struct list_head *ios)
{
	unsigned int nr = kvmm_chunk_pages(head->r), pages = nr;
	struct kvmm_io *last = head, *next;

	if (head->solo)
		return;
	while (!list_empty(ios)) {
		next = list_first_entry(ios, struct kvmm_io, node);
		if (!kvmm_io_continues(last, next, pages))
			break;
		list_del_init(&next->node);
		if (kvmm_io_inject_failure()) {
			kvmm_io_complete(next, -EIO);
			break;
		}
		list_add_tail(&next->node, &head->run);
		last = next;
		pages += nr;
	}
	head->run_pages = pages > nr ? pages : 0;
}

static void kvmm_io_fill(struct bio_vec *bvec, struct kvmm_io *io)
{
	unsigned int i, nr = kvmm_chunk_pages(io->r);

	for (i = 0; i < nr; i++)
		bvec_set_page(&bvec[i], io->c->pages[i], PAGE_SIZE, 0);
}

static void kvmm_io_submit_one(struct kvmm_io *io)
{
	unsigned int nr = kvmm_chunk_pages(io->r), i = nr;
	loff_t pos = (loff_t)io->c->slot << PAGE_SHIFT;
	struct kvmm_io *m, *tmp;

	if (!io->run_pages) {
		kvmm_io_fill(io->bvec, io);
		kvmm_flash_submit(io->store, io, io->bvec, nr, pos);
		return;
	}
	if (kvmm_io_inject_merged_failure()) {
		kvmm_io_complete(io, -EIO);
		return;
	}
	io->run_bvec = kmalloc_array(io->run_pages, sizeof(*io->run_bvec),
				     GFP_NOIO | __GFP_NOWARN);
	if (!io->run_bvec) {
		/* No vector for the run: its chunks go one by one. */
		io->run_pages = 0;
		list_for_each_entry_safe(m, tmp, &io->run, node) {
			list_del_init(&m->node);
			kvmm_io_fill(m->bvec, m);
			kvmm_flash_submit(m->store, m, m->bvec, nr,
					  (loff_t)m->c->slot << PAGE_SHIFT);
		}
		kvmm_io_fill(io->bvec, io);
		kvmm_flash_submit(io->store, io, io->bvec, nr, pos);
		return;
	}
	kvmm_io_fill(io->run_bvec, io);
	list_for_each_entry(m, &io->run, node) {
		kvmm_io_fill(io->run_bvec + i, m);
		i += nr;
	}
	atomic64_inc(&kvmm_stats.merged_ios);
	kvmm_flash_submit(io->store, io, io->run_bvec, io->run_pages, pos);
}

/*
 * Checksum and submit a write on a worker, so the checksums of a batch are
 * computed on every CPU at once. The chunk is WRITING: its slot and pages
 * are stable.
 */
static void kvmm_io_write_start(struct work_struct *work)
{
	struct kvmm_io *io = container_of(work, struct kvmm_io, start);
	struct kvmm_store *b = io->store;	/* @io may be gone after submit */
	unsigned int nofs = memalloc_nofs_save();
	unsigned int nr = kvmm_chunk_pages(io->r);
	struct kvmm_io *m;

	io->crc = kvmm_flash_crc(io->c->pages, nr);
	list_for_each_entry(m, &io->run, node)
		m->crc = kvmm_flash_crc(m->c->pages, nr);
	kvmm_io_submit_one(io);
	memalloc_nofs_restore(nofs);
	kvmm_store_work_done(b);
}

static void kvmm_io_read_start(struct work_struct *work)
{
	struct kvmm_io *io = container_of(work, struct kvmm_io, start);
	struct kvmm_store *b = io->store;	/* @io may be gone after submit */
	unsigned int nofs = memalloc_nofs_save();

	kvmm_io_submit_one(io);
	memalloc_nofs_restore(nofs);
	kvmm_store_work_done(b);
}

static void kvmm_io_queue_start(struct kvmm_io *io)
{
	INIT_WORK(&io->start, io->write ? kvmm_io_write_start :
					  kvmm_io_read_start);
	kvmm_store_queue(io->store, io, &io->start);
}

/*
 * Submit what kvmm_chunk_evict/read_back queued, merging runs of adjacent
 * slots. Call without the region lock. Writes always start on the I/O
 * workers (checksums first); reads start here, or on the workers too with
 * @async, for callers that hold mmap_lock and so must not enter the
 * filesystem.
 */
void kvmm_io_submit(struct list_head *ios, bool async)
{
	unsigned int nofs = memalloc_nofs_save();
	struct kvmm_io *io;

	while (!list_empty(ios)) {
		io = list_first_entry(ios, struct kvmm_io, node);
		list_del_init(&io->node);
		if (kvmm_io_inject_failure()) {
			kvmm_io_complete(io, -EIO);
			continue;
		}
		kvmm_io_gather(io, ios);
		if (io->write || async)
			kvmm_io_queue_start(io);
		else
			kvmm_io_submit_one(io);
	}
	memalloc_nofs_restore(nofs);
}

void kvmm_io_submit_all(struct list_head *ios)
{
	kvmm_io_submit(ios, false);
}

/* ---- completion --------------------------------------------------------- */

static void kvmm_io_write_done(struct kvmm_region *r, struct kvmm_chunk *c,
			       struct kvmm_io *io, int err)
{
	lockdep_assert_held(&r->lock);

	if (err) {
		/*
		 * The pages were never changed: the chunk is simply resident
		 * again. Its slot holds nothing usable now, so give it back.
		 */
		kvmm_store_free(r->store, c->slot, r->chunk_order);
		atomic64_dec(&r->slot_chunks);
		c->slot = KVMM_NO_SLOT;
		c->where = KVMM_CS_RESIDENT;
		c->dirty = true;
		atomic64_inc(&r->io_errors);
		atomic64_inc(&kvmm_stats.io_errors);
		kvmm_chunk_lru_update(r, c);
		return;
	}
	kvmm_chunk_free_pages(r, c);
	c->crc = io->crc;
	c->dirty = false;
	c->where = KVMM_CS_FLASH;
	c->evicted_at = jiffies;
	atomic64_inc(&r->flash_chunks);
	atomic64_inc(&r->evictions);
	atomic64_add(kvmm_chunk_bytes(r), &r->flash_bytes_written);
	atomic64_inc(&kvmm_stats.evictions);
	atomic64_add(kvmm_chunk_bytes(r), &kvmm_stats.flash_bytes_written);
}

static int kvmm_io_read_done(struct kvmm_region *r, struct kvmm_chunk *c,
			     struct kvmm_io *io, int err)
{
	lockdep_assert_held(&r->lock);

	if (!err && kvmm_flash_crc(c->pages, kvmm_chunk_pages(r)) != c->crc) {
		err = -EIO;
		atomic64_inc(&r->csum_failures);
		atomic64_inc(&kvmm_stats.csum_failures);
	} else if (err) {
		atomic64_inc(&r->io_errors);
		atomic64_inc(&kvmm_stats.io_errors);
	}
	if (err) {
		/* Never expose what was read: the flash copy stays the truth. */
		kvmm_chunk_free_pages(r, c);
		c->where = KVMM_CS_FLASH;
		c->io_err = err;
		atomic64_inc(&r->flash_chunks);
		return err;
	}
	c->where = KVMM_CS_RESIDENT;
	c->dirty = false;
	kvmm_chunk_lru_update(r, c);
	atomic64_add(kvmm_chunk_bytes(r), &r->flash_bytes_read);
	atomic64_add(kvmm_chunk_bytes(r), &kvmm_stats.flash_bytes_read);
	if (io->by_fault) {
		atomic64_inc(&r->fault_backs);
		atomic64_inc(&kvmm_stats.fault_backs);
	} else {
		atomic64_inc(&r->prefetches);
		atomic64_inc(&kvmm_stats.prefetches);
	}
	return 0;
}

static void kvmm_io_finish_chunk(struct kvmm_io *io, long res);

/*
 * A merged I/O ended: settle every chunk of it, or, when it failed, try each
 * again alone (nothing of theirs has changed: a failed write leaves the
 * pages, a failed read's pages were never exposed).
 */
static void kvmm_io_finish_run(struct kvmm_io *head, long res)
{
	long len = (long)head->run_pages << PAGE_SHIFT;
	long one = kvmm_chunk_bytes(head->r);
	bool ok = res == len;
	struct kvmm_io *m, *tmp;
	LIST_HEAD(run);

	kvmm_flash_io_done(head, ok);
	head->iocb.ki_filp = NULL;	/* watchers were told, once */
	kfree(head->run_bvec);
	head->run_bvec = NULL;
	head->run_pages = 0;
	list_splice_init(&head->run, &run);
	list_add(&head->node, &run);
	if (!ok)
		atomic64_inc(&kvmm_stats.merged_retries);
	list_for_each_entry_safe(m, tmp, &run, node) {
		list_del_init(&m->node);
		if (ok) {
			kvmm_io_finish_chunk(m, one);
		} else {
			m->solo = true;
			if (kvmm_io_inject_failure())
				kvmm_io_complete(m, -EIO);
			else
				kvmm_io_queue_start(m);
		}
	}
}

/* Settle the chunk(s) of a finished I/O. Process context, without r->lock. */
void kvmm_io_finish(struct kvmm_io *io, long res)
{
	if (io->run_pages)
		kvmm_io_finish_run(io, res);
	else
		kvmm_io_finish_chunk(io, res);
}

static void kvmm_io_finish_chunk(struct kvmm_io *io, long res)
{
	struct kvmm_store *store = io->store;
	struct kvmm_region *r = io->r;
	struct kvmm_chunk *c = io->c;
	long len = kvmm_chunk_bytes(r);
	int err = res == len ? 0 : res < 0 ? res : -EIO;
	bool orphan;

	kvmm_flash_io_done(io, !err);
	mutex_lock(&r->lock);
	if (io->write)
		kvmm_io_write_done(r, c, io, err);
	else
		err = kvmm_io_read_done(r, c, io, err);
	/* A shared chunk whose last sharer left while it moved goes now. */
	orphan = r->is_home && kvmm_home_orphan(r, c);
	r->io_seq++;
	/* Settled and no longer in flight in one step, as WAIT and STAT see it. */
	atomic_dec(&r->inflight);
	mutex_unlock(&r->lock);

	/* Waiters for this chunk only; region-wide ones (poll, WAIT). */
	__wake_up(&r->chunk_wait, TASK_NORMAL, 0, (void *)(io->c_idx + 1));
	wake_up_all(&r->io_wait);
	kvmm_io_batch_put(io->batch, err,
			  !err && io->write ? kvmm_chunk_bytes(r) : 0);
	kvmm_store_progress(store);
	atomic_dec(&store->inflight);
	kvmm_store_put(store);
	kfree(io);
	if (orphan)
		kvmm_region_put(r);	/* the chunk's */
	kvmm_region_put(r);
	/* On kvmm's I/O workers: module exit drains them before unloading. */
	module_put(THIS_MODULE);
}

static void kvmm_io_done(struct work_struct *work)
{
	struct kvmm_io *io = container_of(work, struct kvmm_io, work);

	kvmm_io_finish(io, io->res);
}

/* I/O completion from any context, interrupts included. */
void kvmm_io_complete(struct kvmm_io *io, long res)
{
	io->res = res;
	kvmm_io_queue_done(io, kvmm_io_done);
}
