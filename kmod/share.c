// SPDX-License-Identifier: GPL-2.0
/*
 * Shared chunks (KVMM_IOC_SHARE): one chunk's memory read through several
 * ranges, of one region or of several, without copying.
 *
 * A shared chunk moves out of its region into that region's home: a
 * region with no file and no mapping of its own, on kvmm_regions (so
 * reclaim sees it), with the same chunk size, node, priority, store and
 * cgroups as the region it came from, so the memory stays charged where it
 * was allocated. Every range that reads it has a struct kvmm_alias in its
 * region's ->shared table; the alias is what a fault, pread, QUERY and
 * EVICT of that range find. All moves of a shared chunk (eviction, read-back,
 * checksums, merged I/O) are the ordinary ones of chunk.c, run on the home:
 * one write to flash, one read back, whoever touched it. Unmapping a home
 * chunk unmaps every alias of it (kvmm_home_unmap()).
 *
 * Sharers map it read-only. A write through any of them (a store, which
 * ->pfn_mkwrite turns into a write fault, or pwrite) first copies the chunk
 * into a new chunk of that region alone (kvmm_alias_break()), charged to
 * that region's cgroup, and drops the alias. A chunk whose last alias goes
 * is freed, or, with I/O in flight, when that I/O ends (kvmm_home_orphan()).
 *
 * Locks: a home's lock has its own lockdep class and is taken under the
 * lock of a region with a file, never the other way round, and never two
 * homes' at once. Each home chunk holds a reference on its home, and the
 * region it came from holds one while ->home points to it; references
 * dropped under a lock are dropped deferred (the free takes
 * kvmm_regions_lock).
 */
#include <linux/file.h>
#include <linux/highmem.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include "compat.h"
#include "kvmm.h"

struct kvmm_region *kvmm_alias_lock_home(struct kvmm_alias *a)
{
	struct kvmm_region *h = a->hc->r;	/* fixed once an alias exists */

	mutex_lock(&h->lock);
	return h;
}

/*
 * Home chunk @c has no alias left: free it unless its I/O is in flight (the
 * completion calls this again). True when it was freed: the caller drops
 * the chunk's reference on @h after unlocking @h.
 */
bool kvmm_home_orphan(struct kvmm_region *h, struct kvmm_chunk *c)
{
	lockdep_assert_held(&h->lock);
	if (!list_empty(&c->aliases) || kvmm_chunk_in_flight(c))
		return false;
	atomic64_sub(kvmm_chunk_bytes(h), &kvmm_stats.shared_bytes);
	kvmm_chunk_remove(h, c);
	return true;
}

/* Unmap home chunk @idx from every range that shares it. */
void kvmm_home_unmap(struct kvmm_region *h, unsigned long idx)
{
	struct kvmm_chunk *c = xa_load(&h->chunks, idx);
	struct kvmm_alias *a;

	lockdep_assert_held(&h->lock);
	if (!c)
		return;
	list_for_each_entry(a, &c->aliases, node) {
		unmap_mapping_range(a->r->inode->i_mapping,
				    (loff_t)a->idx << a->r->chunk_shift,
				    kvmm_chunk_bytes(a->r), 1);
		cond_resched();
	}
}

/*
 * Forget alias @a of @r; both locks held, @r's PTEs of it already zapped
 * (or none). True when the caller must drop a reference on the home after
 * unlocking it (see kvmm_home_orphan()).
 */
bool kvmm_alias_unlink(struct kvmm_region *r, struct kvmm_alias *a)
{
	struct kvmm_chunk *hc = a->hc;

	lockdep_assert_held(&r->lock);
	lockdep_assert_held(&hc->r->lock);
	list_del(&a->node);
	hc->nr_aliases--;
	xa_erase(&r->shared, a->idx);
	atomic64_dec(&r->shared_chunks);
	kfree(a);
	return kvmm_home_orphan(hc->r, hc);
}

/* kvmm_alias_unlink() taking the home's lock; r->lock held. */
void kvmm_alias_drop(struct kvmm_region *r, struct kvmm_alias *a)
{
	struct kvmm_region *h = kvmm_alias_lock_home(a);
	bool put = kvmm_alias_unlink(r, a);

	mutex_unlock(&h->lock);
	if (put)
		kvmm_region_put_deferred(h);
}

/* Drop every alias of @r (its last file is closing); r->lock held. */
void kvmm_region_drop_aliases(struct kvmm_region *r)
{
	struct kvmm_alias *a;
	unsigned long idx;

	lockdep_assert_held(&r->lock);
	xa_for_each(&r->shared, idx, a) {
		kvmm_alias_drop(r, a);
		cond_resched();
	}
}

/*
 * Copy-on-write: chunk @a->idx of @r gets its own copy of the shared chunk,
 * in @fresh (from kvmm_chunk_new(r, a->idx): charged, zeroed), which
 * replaces the alias. The shared chunk is resident. r->lock and the home's
 * lock held. 0 (@fresh is @r's now; *@put as for kvmm_alias_unlink()) or
 * -ENOMEM (nothing changed, @fresh still the caller's).
 */
int kvmm_alias_break(struct kvmm_region *r, struct kvmm_alias *a,
		     struct kvmm_chunk *fresh, bool *put)
{
	struct kvmm_chunk *hc = a->hc;
	struct mem_cgroup *memcg;
	unsigned int i;
	int err;

	lockdep_assert_held(&r->lock);
	lockdep_assert_held(&hc->r->lock);
	if (WARN_ON_ONCE(hc->where != KVMM_CS_RESIDENT))
		return -EAGAIN;
	fresh->idx = a->idx;
	memcg = set_active_memcg(r->memcg);
	err = xa_err(xa_store(&r->chunks, a->idx, fresh, KVMM_GFP_ACCOUNT));
	set_active_memcg(memcg);
	if (err)
		return err;
	for (i = 0; i < kvmm_chunk_pages(r); i++) {
		copy_highpage(fresh->pages[i], hc->pages[i]);
		if (!(i % 64))
			cond_resched();
	}
	/* Nothing may keep reading the shared pages through this range. */
	kvmm_region_unmap(r, a->idx, 1);
	fresh->dirty = true;
	atomic64_inc(&r->resident_chunks);
	kvmm_chunk_lru_update(r, fresh);
	atomic64_inc(&r->cow_copies);
	atomic64_inc(&kvmm_stats.cow_copies);
	*put = kvmm_alias_unlink(r, a);
	return 0;
}

/*
 * Make home chunk @idx resident: read back from flash and waited for.
 * Called with no lock held and a reference on @h. 0, -EAGAIN when the
 * chunk is gone (its last alias went meanwhile), -EIO when its read-back
 * failed, -ENOMEM, or -EINTR on a fatal signal.
 */
int kvmm_home_ensure(struct kvmm_region *h, unsigned long idx)
{
	u64 bytes = kvmm_chunk_bytes(h);
	bool memcg_tried = false;
	struct kvmm_io_batch *batch;
	struct kvmm_chunk *c;
	unsigned long seq;
	LIST_HEAD(ios);
	int err;

	for (;;) {
		if (fatal_signal_pending(current))
			return -EINTR;
		mutex_lock(&h->lock);
		c = xa_load(&h->chunks, idx);
		if (!c || c->where == KVMM_CS_RESIDENT ||
		    (c->where == KVMM_CS_FLASH && c->io_err)) {
			err = !c ? -EAGAIN : c->where == KVMM_CS_RESIDENT ? 0 : -EIO;
			mutex_unlock(&h->lock);
			return err;
		}
		if (kvmm_chunk_in_flight(c)) {
			seq = h->io_seq;
			mutex_unlock(&h->lock);
			err = kvmm_chunk_wait_io(h, idx, seq);
			if (err)
				return err;
			continue;
		}
		mutex_unlock(&h->lock);
		err = kvmm_pool_charge_reclaim(bytes);
		if (err)
			return err == -EINTR ? err : -ENOMEM;
		batch = kvmm_io_batch_new();
		if (!batch) {
			kvmm_pool_uncharge(bytes);
			return -ENOMEM;
		}
		mutex_lock(&h->lock);
		c = xa_load(&h->chunks, idx);
		if (c && c->where == KVMM_CS_FLASH && !c->io_err) {
			/* Uncharges on failure. */
			err = kvmm_chunk_read_back(h, c, batch, false, &ios);
		} else {
			kvmm_pool_uncharge(bytes);
			err = 0;
		}
		mutex_unlock(&h->lock);
		kvmm_io_submit_all(&ios);
		err = kvmm_io_batch_wait(batch, true) ?: err;
		if (err == -ENOMEM && !memcg_tried) {
			memcg_tried = true;
			if (kvmm_reclaim_memcg(h, max_t(u64, 2 * bytes, SZ_4M)))
				continue;
		}
		if (err && err != -EIO)
			return err;
		/* Settled (or failed: seen as io_err above): look again. */
	}
}

/*
 * Make the shared chunks of [first, last] of @r resident. r->lock held,
 * dropped while reading back.
 */
int kvmm_range_ensure_shared(struct kvmm_region *r, unsigned long first,
			     unsigned long last)
{
	unsigned long idx = first, hidx;
	struct kvmm_region *h;
	struct kvmm_alias *a;
	bool resident;
	int err;

	lockdep_assert_held(&r->lock);
	while ((a = xa_find(&r->shared, &idx, last, XA_PRESENT))) {
		h = kvmm_alias_lock_home(a);
		resident = a->hc->where == KVMM_CS_RESIDENT;
		hidx = a->hc->idx;
		if (!resident)
			kref_get(&h->ref);
		mutex_unlock(&h->lock);
		if (resident) {
			if (idx++ == last)
				break;
			continue;
		}
		mutex_unlock(&r->lock);
		err = kvmm_home_ensure(h, hidx);
		kvmm_region_put_deferred(h);
		mutex_lock(&r->lock);
		if (err && err != -EAGAIN)
			return err;
		/* Look at @idx again: it may have moved meanwhile. */
	}
	return 0;
}

/*
 * Give every shared chunk of [first, last] of @r a private copy (PIN and
 * pwrite need memory of the region's own). r->lock held, dropped while
 * charging, allocating and reading back.
 */
int kvmm_range_unshare(struct kvmm_region *r, unsigned long first,
		       unsigned long last)
{
	u64 bytes = kvmm_chunk_bytes(r);
	struct kvmm_chunk *fresh = NULL;
	unsigned long idx, hidx;
	struct kvmm_region *h;
	struct kvmm_alias *a;
	bool put;
	int err = 0;

	lockdep_assert_held(&r->lock);
	for (;;) {
		idx = first;
		a = xa_find(&r->shared, &idx, last, XA_PRESENT);
		if (!a)
			break;
		if (fatal_signal_pending(current)) {
			err = -EINTR;
			break;
		}
		if (!fresh) {
			mutex_unlock(&r->lock);
			err = kvmm_pool_charge_reclaim(bytes);
			if (!err) {
				/* Uncharges on failure. */
				fresh = kvmm_chunk_new(r, idx);
				if (IS_ERR(fresh)) {
					err = PTR_ERR(fresh);
					fresh = NULL;
				}
			} else if (err != -EINTR) {
				err = -ENOMEM;
			}
			mutex_lock(&r->lock);
			if (err)
				break;
			continue;
		}
		h = kvmm_alias_lock_home(a);
		if (a->hc->where == KVMM_CS_RESIDENT) {
			put = false;
			err = kvmm_alias_break(r, a, fresh, &put);
			mutex_unlock(&h->lock);
			if (put)
				kvmm_region_put_deferred(h);
			if (err)
				break;
			fresh = NULL;
			continue;
		}
		hidx = a->hc->idx;
		kref_get(&h->ref);
		mutex_unlock(&h->lock);
		mutex_unlock(&r->lock);
		err = kvmm_home_ensure(h, hidx);
		kvmm_region_put_deferred(h);
		mutex_lock(&r->lock);
		if (err && err != -EAGAIN)
			break;
		err = 0;
	}
	if (fresh)
		kvmm_chunk_free_new(r, fresh);
	return err;
}

/* ---- KVMM_IOC_SHARE ------------------------------------------------------ */

struct kvmm_share_op {
	struct kvmm_region *dst, *src, *home;
	unsigned long dfirst, sfirst, nr;
	unsigned long moves;	/* private source chunks that go home */
	struct list_head spare;	/* preallocated aliases */
};

static void kvmm_lock_two(struct kvmm_region *a, struct kvmm_region *b)
{
	if (a == b) {
		mutex_lock(&a->lock);
		return;
	}
	if (a > b)
		swap(a, b);
	mutex_lock(&a->lock);
	mutex_lock_nested(&b->lock, SINGLE_DEPTH_NESTING);
}

static void kvmm_unlock_two(struct kvmm_region *a, struct kvmm_region *b)
{
	if (a != b)
		mutex_unlock(&b->lock);
	mutex_unlock(&a->lock);
}

/*
 * A chunk of either range with I/O in flight: unlock both, wait for it and
 * return 1 (or -EINTR). 0 when none, both locks still held.
 */
static int kvmm_share_wait(struct kvmm_share_op *op)
{
	struct kvmm_region *rs[2] = { op->dst, op->src };
	unsigned long firsts[2] = { op->dfirst, op->sfirst }, idx, seq;
	struct kvmm_chunk *c;
	int k;

	for (k = 0; k < 2; k++) {
		xa_for_each_range(&rs[k]->chunks, idx, c, firsts[k],
				  firsts[k] + op->nr - 1) {
			if (!kvmm_chunk_in_flight(c))
				continue;
			seq = rs[k]->io_seq;
			kvmm_unlock_two(op->dst, op->src);
			return kvmm_chunk_wait_io(rs[k], idx, seq) ?: 1;
		}
	}
	return 0;
}

/*
 * The next chunk index >= *@idx and <= @last that @r holds, privately or
 * shared: the share visits only what exists, never every index of a range
 * (which may span 2^28 empty chunks).
 */
static bool kvmm_next_held(struct kvmm_region *r, unsigned long *idx,
			   unsigned long last)
{
	unsigned long ic = *idx, is = *idx;
	bool c = *idx <= last && xa_find(&r->chunks, &ic, last, XA_PRESENT);
	bool a = *idx <= last && xa_find(&r->shared, &is, last, XA_PRESENT);

	if (!c && !a)
		return false;
	*idx = !c ? is : !a ? ic : min(ic, is);
	return true;
}

#define for_each_held(r, idx, first, last)                                 \
	for ((idx) = (first); kvmm_next_held(r, &(idx), last) ; (idx)++)

/* The store a region's chunks go to: its own, or the default. */
static bool kvmm_share_same_store(struct kvmm_region *a, struct kvmm_region *b,
				  struct kvmm_store *def)
{
	return (a->store ?: def) == (b->store ?: def);
}

/*
 * What refuses the share (both locks held): pins in either range, a source
 * chunk whose last read-back failed, a chunk with the most sharers,
 * different stores. Counts the private source chunks that will move home.
 * 1 when a source chunk's pages are being copied by pread/pwrite: the
 * caller waits and looks again, so such a write lands before the share.
 */
static int kvmm_share_check(struct kvmm_share_op *op, struct kvmm_store *def)
{
	unsigned long i = 0, idx;
	struct kvmm_region *h;
	struct kvmm_alias *a;
	struct kvmm_chunk *c;
	int err = 0;

	if (!kvmm_share_same_store(op->dst, op->src, def))
		return -EXDEV;
	xa_for_each_range(&op->dst->chunks, idx, c, op->dfirst,
			  op->dfirst + op->nr - 1)
		if (c->pins)
			return -EBUSY;
	op->moves = 0;
	for_each_held(op->src, idx, op->sfirst, op->sfirst + op->nr - 1) {
		if (err)
			break;
		c = xa_load(&op->src->chunks, idx);
		if (c) {
			if (c->pins)
				return -EBUSY;
			if (c->where == KVMM_CS_FLASH && c->io_err)
				return -EIO;
			/* pread/pwrite copying: the share waits for it (1). */
			if (c->where == KVMM_CS_RESIDENT && kvmm_chunk_busy(op->src, c))
				return 1;
			op->moves++;
			continue;
		}
		a = xa_load(&op->src->shared, idx);
		if (!a)
			continue;
		h = kvmm_alias_lock_home(a);
		if (a->hc->where == KVMM_CS_FLASH && a->hc->io_err)
			err = -EIO;
		else if (a->hc->nr_aliases >= KVMM_SHARE_MAX_SHARERS)
			err = -EMLINK;
		mutex_unlock(&h->lock);
		if (!(++i % 256))
			cond_resched();
	}
	return err;
}

static void kvmm_share_release(struct kvmm_share_op *op)
{
	struct kvmm_alias *a, *tmp;
	unsigned long i, sidx;

	list_for_each_entry_safe(a, tmp, &op->spare, node) {
		list_del(&a->node);
		kfree(a);
	}
	/*
	 * Reservations were made where the source holds a chunk (which
	 * nothing changed meanwhile); xa_release() leaves entries that are
	 * not reservations alone.
	 */
	for_each_held(op->src, sidx, op->sfirst, op->sfirst + op->nr - 1) {
		xa_release(&op->dst->shared, op->dfirst + (sidx - op->sfirst));
		xa_release(&op->src->shared, sidx);
	}
	if (op->home) {
		mutex_lock(&op->home->lock);
		for (i = 0; i < op->moves; i++)
			xa_release(&op->home->chunks, op->home->home_next + i);
		mutex_unlock(&op->home->lock);
	}
}

/*
 * Allocate everything the share needs before anything changes: an alias
 * per present source chunk for the destination, one more per private
 * source chunk for the source, and the table entries they go into.
 */
static int kvmm_share_reserve(struct kvmm_share_op *op)
{
	unsigned long i = 0, sidx, didx;
	struct kvmm_alias *a;
	bool priv;
	int n, err = 0;

	for_each_held(op->src, sidx, op->sfirst, op->sfirst + op->nr - 1) {
		if (err)
			break;
		didx = op->dfirst + (sidx - op->sfirst);
		priv = xa_load(&op->src->chunks, sidx);
		for (n = priv ? 2 : 1; n > 0; n--) {
			a = kmalloc(sizeof(*a), GFP_KERNEL_ACCOUNT);
			if (!a) {
				err = -ENOMEM;
				break;
			}
			list_add(&a->node, &op->spare);
		}
		if (!err)
			err = xa_reserve(&op->dst->shared, didx, GFP_KERNEL_ACCOUNT);
		if (!err && priv)
			err = xa_reserve(&op->src->shared, sidx, GFP_KERNEL_ACCOUNT);
		if (!(++i % 256))
			cond_resched();
	}
	if (!err && op->moves) {
		mutex_lock(&op->home->lock);
		for (i = 0; i < op->moves && !err; i++)
			err = xa_reserve(&op->home->chunks, op->home->home_next + i,
					 GFP_KERNEL_ACCOUNT);
		mutex_unlock(&op->home->lock);
	}
	if (err)
		kvmm_share_release(op);
	return err;
}

static struct kvmm_alias *kvmm_share_alias(struct kvmm_share_op *op,
					   struct kvmm_region *r,
					   unsigned long idx,
					   struct kvmm_chunk *hc)
{
	struct kvmm_alias *a = list_first_entry(&op->spare, struct kvmm_alias, node);

	list_del(&a->node);
	a->r = r;
	a->idx = idx;
	a->hc = hc;
	return a;
}

/* Move private chunk @c of the source into the home, with an alias for it. */
static struct kvmm_chunk *kvmm_share_move_home(struct kvmm_share_op *op,
					       struct kvmm_chunk *c)
{
	struct kvmm_region *s = op->src, *h = op->home;
	unsigned long sidx = c->idx;
	struct kvmm_alias *a;

	lockdep_assert_held(&s->lock);
	xa_erase(&s->chunks, sidx);
	if (c->on_lru)
		list_del_init(&c->lru);
	c->on_lru = false;
	if (c->on_clean)
		kvmm_list_lru_del(&kvmm_clean_lru, &c->clean, c->clean_nid);
	c->on_clean = false;
	if (c->pages)
		atomic64_dec(&s->resident_chunks);
	else
		atomic64_dec(&s->flash_chunks);
	if (c->slot != KVMM_NO_SLOT)
		atomic64_dec(&s->slot_chunks);

	mutex_lock(&h->lock);
	c->r = h;
	c->idx = h->home_next++;
	WARN_ON(xa_is_err(xa_store(&h->chunks, c->idx, c, GFP_NOWAIT)));
	kref_get(&h->ref);
	if (c->pages)
		atomic64_inc(&h->resident_chunks);
	else
		atomic64_inc(&h->flash_chunks);
	if (c->slot != KVMM_NO_SLOT)
		atomic64_inc(&h->slot_chunks);
	kvmm_chunk_lru_update(h, c);
	a = kvmm_share_alias(op, s, sidx, c);
	list_add_tail(&a->node, &c->aliases);
	c->nr_aliases = 1;
	mutex_unlock(&h->lock);
	/* Reserved: cannot fail. */
	WARN_ON(xa_is_err(xa_store(&s->shared, sidx, a, GFP_NOWAIT)));
	atomic64_inc(&s->shared_chunks);
	atomic64_add(kvmm_chunk_bytes(h), &kvmm_stats.shared_bytes);
	return c;
}

/* Nothing can fail from here on: everything was allocated. */
static void kvmm_share_commit(struct kvmm_share_op *op)
{
	struct kvmm_region *u = op->dst, *s = op->src, *h;
	unsigned long i = 0, sidx, didx, dlast, discarded = 0;
	struct kvmm_alias *sa, *da, *na;
	struct kvmm_chunk *c, *hc;
	bool put;

	/* No PTE of either range may outlive what it maps. */
	kvmm_region_unmap(u, op->dfirst, op->nr);
	kvmm_region_unmap(s, op->sfirst, op->nr);
	/* What the destination held on its own goes, as DISCARD. */
	dlast = op->dfirst + op->nr - 1;
	xa_for_each_range(&u->chunks, didx, c, op->dfirst, dlast) {
		kvmm_chunk_remove(u, c);
		if (!(++discarded % 256))
			cond_resched();
	}
	/* Each chunk the source holds: home (if private), then an alias. */
	for_each_held(s, sidx, op->sfirst, op->sfirst + op->nr - 1) {
		didx = op->dfirst + (sidx - op->sfirst);
		c = xa_load(&s->chunks, sidx);
		sa = xa_load(&s->shared, sidx);
		hc = c ? kvmm_share_move_home(op, c) : sa->hc;
		da = xa_load(&u->shared, didx);
		na = kvmm_share_alias(op, u, didx, hc);
		h = hc->r;
		mutex_lock(&h->lock);
		list_add_tail(&na->node, &hc->aliases);
		hc->nr_aliases++;
		mutex_unlock(&h->lock);
		/* Replaces @da in place, or fills the reservation. */
		WARN_ON(xa_is_err(xa_store(&u->shared, didx, na, GFP_NOWAIT)));
		atomic64_inc(&u->shared_chunks);
		if (da) {
			/* Linked first: @hc may be @da's chunk. */
			h = kvmm_alias_lock_home(da);
			list_del(&da->node);
			da->hc->nr_aliases--;
			put = kvmm_home_orphan(h, da->hc);
			mutex_unlock(&h->lock);
			atomic64_dec(&u->shared_chunks);
			kfree(da);
			discarded++;
			if (put)
				kvmm_region_put_deferred(h);
		}
		if (!(++i % 256))
			cond_resched();
	}
	/* Destination aliases where the source holds nothing: dropped. */
	xa_for_each_range(&u->shared, didx, da, op->dfirst, dlast) {
		sidx = op->sfirst + (didx - op->dfirst);
		if (xa_load(&s->shared, sidx))
			continue;	/* just made */
		kvmm_alias_drop(u, da);
		if (!(++discarded % 256))
			cond_resched();
	}
	atomic64_add(discarded, &u->discards);
	atomic64_add(discarded, &kvmm_stats.discards);
}

long kvmm_region_share(struct kvmm_region *u, void __user *uarg)
{
	struct kvmm_share_op op = { .dst = u };
	struct kvmm_region *s, *fresh = NULL, *old = NULL;
	struct kvmm_store *def;
	struct kvmm_share a;
	struct file *sfile;
	bool src_rdonly;
	u64 mask;
	int err;

	if (copy_from_user(&a, uarg, sizeof(a)))
		return -EFAULT;
	if (a.flags || memchr_inv(a.reserved, 0, sizeof(a.reserved)))
		return -EINVAL;
	sfile = fget(a.src_fd);
	if (!sfile)
		return -EBADF;
	s = kvmm_region_of_file(sfile, &src_rdonly);
	err = -EBADF;
	/* Sharing changes how the source's memory is held: it needs write access. */
	if (!s || src_rdonly)
		goto out_fput;
	err = -EINVAL;
	mask = kvmm_chunk_bytes(u) - 1;
	if (s->chunk_shift != u->chunk_shift || !a.length ||
	    (a.src_offset | a.dst_offset | a.length) & mask ||
	    a.src_offset > s->size || a.length > s->size - a.src_offset ||
	    a.dst_offset > u->size || a.length > u->size - a.dst_offset)
		goto out_fput;
	if (s == u && a.src_offset < a.dst_offset + a.length &&
	    a.dst_offset < a.src_offset + a.length)
		goto out_fput;
	op.src = s;
	op.sfirst = a.src_offset >> s->chunk_shift;
	op.dfirst = a.dst_offset >> u->chunk_shift;
	op.nr = a.length >> u->chunk_shift;
	INIT_LIST_HEAD(&op.spare);
	def = kvmm_store_get_default();

again:
	kvmm_lock_two(u, s);
	err = kvmm_share_wait(&op);
	if (err > 0)
		goto again;
	if (err)
		goto out;	/* unlocked */
	err = kvmm_share_check(&op, def);
	if (err < 0)
		goto unlock;
	if (err > 0) {
		kvmm_unlock_two(u, s);
		if (fatal_signal_pending(current)) {
			err = -EINTR;
			goto out;
		}
		schedule_timeout_killable(1);
		goto again;
	}
	/* A home whose store is the source's: its slots move with its chunks. */
	op.home = NULL;
	if (op.moves && !(s->home && s->home->store == s->store)) {
		if (!fresh || fresh->store != s->store) {
			kvmm_unlock_two(u, s);
			if (fresh)
				kvmm_region_put(fresh);
			fresh = kvmm_home_new(s);
			if (!fresh) {
				err = -ENOMEM;
				goto out;
			}
			goto again;
		}
		op.home = fresh;
	} else if (op.moves) {
		op.home = s->home;
	}
	err = kvmm_share_reserve(&op);
	if (!err && fresh && op.home == fresh) {
		/* The source's home changes only with a share that succeeds. */
		old = s->home;
		s->home = fresh;
		fresh = NULL;
	}
	if (!err)
		kvmm_share_commit(&op);
unlock:
	kvmm_unlock_two(u, s);
out:
	if (fresh)
		kvmm_region_put(fresh);
	if (old)
		kvmm_region_put(old);
	kvmm_store_put(def);
out_fput:
	fput(sfile);
	return err;
}
