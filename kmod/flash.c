// SPDX-License-Identifier: GPL-2.0
/*
 * The flash tier's storage: backing files (or block devices), their slot
 * allocator, and chunk-sized I/O on them.
 *
 * A backing store is identified by its inode, so regions that name the same
 * file share one store and one slot map. Slots are allocated from a bitmap
 * with one bit per PAGE_SIZE unit, a chunk taking an aligned run of units,
 * so regions of any chunk size can share a store and a 2 MiB chunk sits at
 * a 2 MiB-aligned offset. A file grows with fallocate as slots are needed
 * and never shrinks.
 *
 * I/O is one asynchronous direct I/O per chunk over a bio_vec iterator of
 * the chunk's pages, completed through the kiocb (as drivers/block/loop.c
 * does). Where the file refuses direct I/O, the same iterator goes through
 * buffered I/O on a worker, followed by writeback and page cache
 * invalidation so flash data does not linger in DRAM; such I/Os are
 * counted. Allocations on these paths run in NOFS scope, and the page cache
 * of a buffered store is kept from recursing into I/O, as loop does.
 *
 * Lock order: kvmm_region.lock -> kvmm_backing.lock -> filesystem locks;
 * kvmm_stores_lock is taken alone.
 */
#include <crypto/hash.h>
#include <linux/backing-dev.h>
#include <linux/blkdev.h>
#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/falloc.h>
#include <linux/file.h>
#include <linux/fsnotify.h>
#include <linux/kthread.h>
#include <linux/highmem.h>
#include <linux/ioprio.h>
#include <linux/pagemap.h>
#include <linux/sched/signal.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/statfs.h>
#include <linux/sysfs.h>
#include <linux/vmalloc.h>
#include "kvmm.h"

/* How much a file grows at least when a slot lies past its end. */
#define KVMM_GROW_BYTES (64ULL << 20)

atomic64_t kvmm_flash_bytes;
atomic_t kvmm_nr_stores;		/* stores open: reclaim has somewhere to go */

static DEFINE_MUTEX(kvmm_stores_lock);
static LIST_HEAD(kvmm_stores);
static struct kvmm_store *kvmm_default_store;	/* under kvmm_stores_lock */
static char *kvmm_default_path;
static struct workqueue_struct *kvmm_io_wq;	/* submissions, buffered I/O, growth */
static struct workqueue_struct *kvmm_done_wq;	/* completions: never enter a filesystem */
static struct crypto_shash *kvmm_crc_tfm;

/* ---- backing stores ---------------------------------------------------- */

static struct kvmm_store *kvmm_store_create(struct file *file)
{
	struct inode *host = file->f_mapping->host;
	struct kvmm_store *b;

	b = kzalloc(sizeof(*b), KVMM_GFP_ACCOUNT);
	if (!b)
		return ERR_PTR(-ENOMEM);
	kref_init(&b->ref);
	mutex_init(&b->lock);
	mutex_init(&b->grow_lock);
	spin_lock_init(&b->work_lock);
	INIT_LIST_HEAD(&b->backlog);
	b->file = get_file(file);
	b->host = host;
	b->is_bdev = S_ISBLK(file_inode(file)->i_mode);
	b->direct = (file->f_mode & FMODE_CAN_ODIRECT) &&
		    !atomic_read(&kvmm_force_buffered);
	b->max_size = b->is_bdev ? i_size_read(host) : host->i_sb->s_maxbytes;
	/* Files grow no further than their opener could make them grow. */
	if (!b->is_bdev)
		b->max_size = min_t(u64, b->max_size, rlimit(RLIMIT_FSIZE));
	b->size = b->is_bdev ? b->max_size : i_size_read(host);
	b->first_unit = DIV_ROUND_UP(KVMM_STORE_HEADER_BYTES, PAGE_SIZE);
	b->last_progress = jiffies;
	if (!b->direct) {
		/*
		 * Buffered I/O from reclaim must not recurse into I/O, and its
		 * page cache, charged to the tenant's cgroup, fails at
		 * memory.max rather than calling the memcg OOM killer.
		 */
		b->old_gfp = mapping_gfp_mask(file->f_mapping);
		mapping_set_gfp_mask(file->f_mapping,
				     (b->old_gfp & ~(__GFP_IO | __GFP_FS)) |
				     __GFP_RETRY_MAYFAIL);
	}
	return b;
}

static void kvmm_store_release(struct kref *ref)
{
	struct kvmm_store *b = container_of(ref, struct kvmm_store, ref);

	list_del(&b->node);
	atomic_dec(&kvmm_nr_stores);
	WARN_ON(b->used);
	WARN_ON(b->running || !list_empty(&b->backlog) || b->growing);
	if (!b->direct)
		mapping_set_gfp_mask(b->file->f_mapping, b->old_gfp);
	fput(b->file);
	kvfree(b->map);
	mutex_destroy(&b->grow_lock);
	mutex_destroy(&b->lock);
	kfree(b);
}

void kvmm_store_put(struct kvmm_store *b)
{
	if (b && kref_put_mutex(&b->ref, kvmm_store_release,
				&kvmm_stores_lock))
		mutex_unlock(&kvmm_stores_lock);
}

/*
 * Whether kvmm can do chunk I/O on @file safely: a regular file of a disk
 * filesystem or a block device, open for reading and writing, whose bytes
 * may be rewritten in place. The errnos are the ABI's (KVMM_IOC_SET_BACKING).
 */
static int kvmm_store_check(struct file *file)
{
	struct inode *inode = file_inode(file);
	umode_t mode = inode->i_mode;

	if (!S_ISREG(mode) && !S_ISBLK(mode))
		return -EINVAL;
	if ((file->f_mode & (FMODE_READ | FMODE_WRITE)) !=
	    (FMODE_READ | FMODE_WRITE))
		return -EBADF;
	if (file->f_flags & O_APPEND)
		return -EINVAL;
	/*
	 * Pseudo and memory filesystems (procfs, sysfs, debugfs, tmpfs, memfd,
	 * hugetlbfs) are no flash: their data never goes to a device or server,
	 * so their superblock has no writeback-capable bdi. Some of them also
	 * lack the methods kvmm calls.
	 */
	if (!file->f_op->read_iter || !file->f_op->write_iter)
		return -EOPNOTSUPP;
	if (S_ISREG(mode) &&
	    !(inode->i_sb->s_bdi->capabilities & BDI_CAP_WRITEBACK))
		return -EOPNOTSUPP;
	/*
	 * A filesystem any user may mount (FUSE) is served by a process the
	 * tenant controls, which can stall kvmm's workers at will.
	 */
	if (S_ISREG(mode) && (inode->i_sb->s_type->fs_flags & FS_USERNS_MOUNT))
		return -EOPNOTSUPP;
	if (IS_APPEND(inode) || IS_IMMUTABLE(inode))
		return -EPERM;
	if (IS_SWAPFILE(file->f_mapping->host))
		return -ETXTBSY;
	return 0;
}

/*
 * Make sure @file starts with kvmm's store header: write it into an empty
 * regular file, else read it and refuse anything else, so a store never
 * overwrites bytes kvmm did not write. Runs in the caller's context, with
 * the checks write(2) makes (kernel_write), under no kvmm lock.
 */
static int kvmm_store_format(struct file *file)
{
	struct inode *host = file->f_mapping->host;
	struct kvmm_store_header *h;
	loff_t pos = 0;
	ssize_t n;
	int err = 0;

	/* A whole page, so an O_DIRECT fd takes it as it is. */
	BUILD_BUG_ON(KVMM_STORE_HEADER_BYTES > PAGE_SIZE);
	h = (void *)get_zeroed_page(GFP_KERNEL);
	if (!h)
		return -ENOMEM;
	if (S_ISREG(file_inode(file)->i_mode) && !i_size_read(host)) {
		memcpy(h->magic, KVMM_STORE_MAGIC, sizeof(h->magic));
		h->version = KVMM_STORE_VERSION;
		h->header_bytes = KVMM_STORE_HEADER_BYTES;
		n = kernel_write(file, h, KVMM_STORE_HEADER_BYTES, &pos);
		if (n != KVMM_STORE_HEADER_BYTES)
			err = n < 0 ? n : -EIO;
		goto out;
	}
	if (i_size_read(host) < KVMM_STORE_HEADER_BYTES) {
		err = -ENOTEMPTY;
		goto out;
	}
	n = kernel_read(file, h, KVMM_STORE_HEADER_BYTES, &pos);
	if (n != KVMM_STORE_HEADER_BYTES) {
		err = n < 0 ? n : -EIO;
		goto out;
	}
	if (memcmp(h->magic, KVMM_STORE_MAGIC, sizeof(h->magic)) ||
	    h->version != KVMM_STORE_VERSION ||
	    h->header_bytes != KVMM_STORE_HEADER_BYTES ||
	    memchr_inv(h->reserved, 0, KVMM_STORE_HEADER_BYTES -
		       offsetof(struct kvmm_store_header, reserved)))
		err = -ENOTEMPTY;
out:
	free_page((unsigned long)h);
	return err;
}

static struct kvmm_store *kvmm_store_find_host(struct inode *host)
{
	struct kvmm_store *b;

	lockdep_assert_held(&kvmm_stores_lock);
	list_for_each_entry(b, &kvmm_stores, node) {
		if (b->host == host) {
			kref_get(&b->ref);
			return b;
		}
	}
	return NULL;
}

/*
 * The store for @file: the existing one for the same inode, or a new one
 * once the file passed kvmm_store_check() and carries the store header.
 */
struct kvmm_store *kvmm_store_from_file(struct file *file)
{
	struct inode *host = file->f_mapping->host;
	struct kvmm_store *b;
	int err;

	err = kvmm_store_check(file);
	if (err)
		return ERR_PTR(err);
	mutex_lock(&kvmm_stores_lock);
	b = kvmm_store_find_host(host);
	mutex_unlock(&kvmm_stores_lock);
	if (b)
		return b;

	/* The header I/O may be slow: no kvmm lock is held across it. */
	err = kvmm_store_format(file);
	if (err)
		return ERR_PTR(err);
	mutex_lock(&kvmm_stores_lock);
	b = kvmm_store_find_host(host);	/* made by another caller meanwhile? */
	if (!b) {
		b = kvmm_store_create(file);
		if (!IS_ERR(b)) {
			list_add(&b->node, &kvmm_stores);
			atomic_inc(&kvmm_nr_stores);
		}
	}
	mutex_unlock(&kvmm_stores_lock);
	return b;
}

struct kvmm_store *kvmm_store_get_default(void)
{
	struct kvmm_store *b;

	mutex_lock(&kvmm_stores_lock);
	b = kvmm_default_store;
	if (b)
		kref_get(&b->ref);
	mutex_unlock(&kvmm_stores_lock);
	return b;
}

/*
 * Open the default store. Its I/O runs with the opener's credentials, and
 * the opener is root writing sysfs: without CAP_SYS_RESOURCE, so tenants'
 * chunks cannot take the blocks a filesystem reserves for root.
 */
static struct file *kvmm_store_open_default(const char *path)
{
	const struct cred *old;
	struct cred *cred;
	struct file *file;

	cred = prepare_creds();
	if (!cred)
		return ERR_PTR(-ENOMEM);
	cap_lower(cred->cap_effective, CAP_SYS_RESOURCE);
	old = override_creds(cred);
	file = filp_open(path, O_RDWR | O_LARGEFILE, 0);
	revert_creds(old);
	put_cred(cred);
	return file;
}

/* Open @path as the default store, or clear it for "none" / "". */
int kvmm_store_set_default(const char *path)
{
	struct kvmm_store *b = NULL, *old;
	char *copy = NULL;
	struct file *file;

	if (*path && strcmp(path, "none")) {
		copy = kstrdup(path, GFP_KERNEL);
		if (!copy)
			return -ENOMEM;
		file = kvmm_store_open_default(path);
		if (IS_ERR(file)) {
			kfree(copy);
			return PTR_ERR(file);
		}
		b = kvmm_store_from_file(file);
		fput(file);
		if (IS_ERR(b)) {
			kfree(copy);
			return PTR_ERR(b);
		}
	}
	mutex_lock(&kvmm_stores_lock);
	old = kvmm_default_store;
	kvmm_default_store = b;
	swap(kvmm_default_path, copy);
	mutex_unlock(&kvmm_stores_lock);
	kfree(copy);
	kvmm_store_put(old);
	return 0;
}

ssize_t kvmm_store_default_show(char *buf)
{
	ssize_t n;

	mutex_lock(&kvmm_stores_lock);
	n = sysfs_emit(buf, "%s\n", kvmm_default_path ?: "none");
	mutex_unlock(&kvmm_stores_lock);
	return n;
}

/* ---- slots ----------------------------------------------------------- */

/* Make the bitmap cover @bits units. Caller holds b->lock. */
static int kvmm_store_grow_map(struct kvmm_store *b, unsigned long bits)
{
	unsigned long *map;

	lockdep_assert_held(&b->lock);
	map = kvcalloc(BITS_TO_LONGS(bits), sizeof(long), GFP_KERNEL);
	if (!map)
		return -ENOMEM;
	if (b->map)
		bitmap_copy(map, b->map, b->nbits);
	kvfree(b->map);
	b->map = map;
	b->nbits = bits;
	return 0;
}

/*
 * Find a free aligned run of @nr units inside what the file covers,
 * growing the bitmap (not the file) as needed. Caller holds b->lock.
 * Returns the first unit, or -EAGAIN when the file must grow first.
 */
static long kvmm_store_find(struct kvmm_store *b, unsigned long nr)
{
	unsigned long covered = b->size >> PAGE_SHIFT, pos;
	int err;

	lockdep_assert_held(&b->lock);
	for (;;) {
		pos = bitmap_find_next_zero_area(b->map, b->nbits, b->first_unit,
						 nr, nr - 1);
		if (pos < b->nbits && pos + nr <= covered)
			return pos;
		if (b->nbits >= covered)
			return -EAGAIN;
		err = kvmm_store_grow_map(b, min(covered,
				max3(b->nbits * 2, 16384UL, ALIGN(b->nbits, nr) + nr)));
		if (err)
			return err;
	}
}

/*
 * Allocate an aligned run of 1 << @order units; *@slot gets its first unit.
 * -EAGAIN when the file has no room yet: call kvmm_store_grow() without
 * holding any region lock (growing takes the file's locks) and try again.
 */
int kvmm_store_alloc(struct kvmm_store *b, unsigned int order, u64 *slot)
{
	unsigned long nr = 1UL << order;
	long pos;

	mutex_lock(&b->lock);
	pos = kvmm_store_find(b, nr);
	if (pos >= 0) {
		bitmap_set(b->map, pos, nr);
		b->used += nr;
		*slot = pos;
	}
	mutex_unlock(&b->lock);
	if (pos < 0)
		return pos;
	atomic64_add(nr << PAGE_SHIFT, &kvmm_flash_bytes);
	return 0;
}

/*
 * Flash I/O and file growth run as the backing fd's opener (its fsuid,
 * capabilities and LSM label decide quotas, reserved blocks and permission
 * checks, not the kernel worker's root) and, on kvmm's workers, charge block
 * I/O to the region creator's io cgroup, as drivers/block/loop.c does for
 * its workers. The page cache of a buffered store is charged to the
 * creator's memory cgroup. The filesystem's own metadata for direct I/O is
 * not: kvmm writes chunks out to relieve that very cgroup when it is at
 * memory.max, and the filesystem allocates that metadata with __GFP_NOFAIL,
 * which would OOM-kill the tenant instead.
 */
void kvmm_io_ctx_enter(struct kvmm_io_ctx *ctx, struct kvmm_store *b,
		       struct kvmm_region *r)
{
	ctx->cred = override_creds(b->file->f_cred);
	ctx->memcg = set_active_memcg(b->direct ? NULL : r->memcg);
	ctx->blkcg = r->blkcg_css && (current->flags & PF_KTHREAD);
	if (ctx->blkcg)
		kthread_associate_blkcg(r->blkcg_css);
}

void kvmm_io_ctx_leave(struct kvmm_io_ctx *ctx)
{
	if (ctx->blkcg)
		kthread_associate_blkcg(NULL);
	set_active_memcg(ctx->memcg);
	revert_creds(ctx->cred);
}

/*
 * Make room in the file for a chunk of @r: fallocate a large
 * step past its end, or exactly what is needed when the filesystem is
 * nearly full. Never called under a region lock: fallocate takes the
 * file's inode lock, and a write to that file may fault on a region.
 */
int kvmm_store_grow(struct kvmm_store *b, struct kvmm_region *r)
{
	unsigned long nr = 1UL << r->chunk_order;
	struct kvmm_io_ctx ctx;
	struct kstatfs st;
	loff_t size, end, want;
	unsigned int nofs;
	long pos;
	int err;

	/* A hung filesystem holds it in fallocate: a fatal signal gets out. */
	if (mutex_lock_killable(&b->grow_lock))
		return -EINTR;
	mutex_lock(&b->lock);
	pos = kvmm_store_find(b, nr);
	size = b->size;
	mutex_unlock(&b->lock);
	if (pos != -EAGAIN) {		/* room after all, or no memory */
		err = pos < 0 ? pos : 0;
		goto out;
	}
	end = (loff_t)(ALIGN(size >> PAGE_SHIFT, nr) + nr) << PAGE_SHIFT;
	if (b->is_bdev || end > b->max_size) {
		err = -ENOSPC;
		goto out;
	}
	want = min_t(loff_t, max_t(loff_t, end, size + KVMM_GROW_BYTES),
		     b->max_size);
	nofs = memalloc_nofs_save();
	kvmm_io_ctx_enter(&ctx, b, r);
	/*
	 * A step the filesystem cannot hold would fail part way and leave
	 * what it allocated past the end of the file, taking the disk's last
	 * free space from everyone: near full, grow by exactly what is needed.
	 */
	if (want > end && !vfs_statfs(&b->file->f_path, &st) &&
	    (u64)(want - size) > div_u64((u64)st.f_bavail * st.f_bsize, 2))
		want = end;
	err = vfs_fallocate(b->file, 0, size, want - size);
	if (err == -ENOSPC && want > end) {
		want = end;
		err = vfs_fallocate(b->file, 0, size, want - size);
	}
	kvmm_io_ctx_leave(&ctx);
	memalloc_nofs_restore(nofs);
	/* The file may not grow past what its opener may write. */
	if (err == -EFBIG)
		err = -ENOSPC;
	/* Without fallocate the file grows as slots are written. */
	if (err == -EOPNOTSUPP)
		err = 0;
	if (!err) {
		mutex_lock(&b->lock);
		b->size = want;
		mutex_unlock(&b->lock);
	}
out:
	mutex_unlock(&b->grow_lock);
	return err;
}

/* The store finished some I/O: it is not stalled (see kvmm_store_stalled). */
void kvmm_store_progress(struct kvmm_store *b)
{
	WRITE_ONCE(b->last_progress, jiffies);
}

/*
 * A store is stalled while it has I/O in flight and finished none for
 * KVMM_STORE_STALL: reclaim leaves it alone until it moves again. Nothing
 * sets or clears a flag, so no race can leave it marked.
 */
bool kvmm_store_stalled(struct kvmm_store *b)
{
	return atomic_read(&b->inflight) &&
	       time_after(jiffies, READ_ONCE(b->last_progress) + KVMM_STORE_STALL);
}

/* A file growth run on kvmm's I/O workers for a caller that may leave. */
struct kvmm_grow {
	struct work_struct work;
	refcount_t ref;		/* the caller's and the work's */
	struct completion done;
	struct kvmm_store *b;
	struct kvmm_region *r;
	int err;
};

static void kvmm_grow_put(struct kvmm_grow *g)
{
	if (!refcount_dec_and_test(&g->ref))
		return;
	kvmm_store_put(g->b);
	kvmm_region_put(g->r);
	kfree(g);
}

static void kvmm_grow_fn(struct work_struct *work)
{
	struct kvmm_grow *g = container_of(work, struct kvmm_grow, work);
	struct kvmm_store *b = g->b;

	g->err = kvmm_store_grow(b, g->r);
	mutex_lock(&b->lock);
	b->growing = NULL;
	mutex_unlock(&b->lock);
	kvmm_store_progress(b);
	atomic_dec(&b->inflight);
	complete_all(&g->done);
	kvmm_grow_put(g);
	/* On kvmm's I/O workers: module exit drains them before unloading. */
	module_put(THIS_MODULE);
}

/*
 * kvmm_store_grow() on a worker, waited for killably (@timeout 0) or at
 * most @timeout: fallocate on a frozen or hung filesystem blocks in ways no
 * signal ends, and then only the worker waits, not the caller. A store has
 * at most one growth in flight: later callers wait for that one (and find
 * a slot again after it), so a hung store holds one worker for growth
 * however many callers need room. Returns the growth's result, -EINTR or
 * -ETIMEDOUT (the growth goes on).
 */
int kvmm_store_grow_wait(struct kvmm_store *b, struct kvmm_region *r,
			 unsigned long timeout)
{
	struct kvmm_grow *g;
	int err;

	mutex_lock(&b->lock);
	g = b->growing;
	if (g) {
		refcount_inc(&g->ref);
		mutex_unlock(&b->lock);
		goto wait;
	}
	g = kzalloc(sizeof(*g), GFP_KERNEL);
	if (!g) {
		mutex_unlock(&b->lock);
		return -ENOMEM;
	}
	refcount_set(&g->ref, 2);
	init_completion(&g->done);
	INIT_WORK(&g->work, kvmm_grow_fn);
	kref_get(&b->ref);
	kref_get(&r->ref);
	g->b = b;
	g->r = r;
	b->growing = g;
	mutex_unlock(&b->lock);
	atomic_inc(&b->inflight);	/* a growth counts as I/O in flight */
	__module_get(THIS_MODULE);
	queue_work(kvmm_io_wq, &g->work);
wait:
	if (timeout)
		err = wait_for_completion_timeout(&g->done, timeout) ?
			g->err : -ETIMEDOUT;
	else
		err = wait_for_completion_killable(&g->done) ? -EINTR : g->err;
	kvmm_grow_put(g);
	return err;
}

/*
 * At most KVMM_STORE_WORKERS of one store's works (write starts, reads
 * started off a fault, buffered I/O) run at once on kvmm_io_wq; the rest
 * wait on the store's backlog. A hung store then holds that many of the
 * queue's workers rather than all of its max_active, and the other stores'
 * I/O goes on. The store reference taken here is dropped by
 * kvmm_store_work_done(), which the work calls when it is done with @io.
 */
void kvmm_store_queue(struct kvmm_store *b, struct kvmm_io *io,
		      struct work_struct *work)
{
	unsigned long flags;

	kref_get(&b->ref);
	spin_lock_irqsave(&b->work_lock, flags);
	if (b->running < KVMM_STORE_WORKERS) {
		b->running++;
		spin_unlock_irqrestore(&b->work_lock, flags);
		queue_work(kvmm_io_wq, work);
		return;
	}
	io->queued = work;
	list_add_tail(&io->backlog, &b->backlog);
	spin_unlock_irqrestore(&b->work_lock, flags);
}

/* A work of @b ended: its worker slot passes to the oldest waiting I/O. */
void kvmm_store_work_done(struct kvmm_store *b)
{
	struct kvmm_io *io;
	unsigned long flags;

	spin_lock_irqsave(&b->work_lock, flags);
	io = list_first_entry_or_null(&b->backlog, struct kvmm_io, backlog);
	if (io)
		list_del(&io->backlog);
	else
		b->running--;
	spin_unlock_irqrestore(&b->work_lock, flags);
	if (io)
		queue_work(kvmm_io_wq, io->queued);
	kvmm_store_put(b);
}

void kvmm_store_free(struct kvmm_store *b, u64 slot, unsigned int order)
{
	unsigned long nr = 1UL << order;

	mutex_lock(&b->lock);
	WARN_ON(slot + nr > b->nbits);
	bitmap_clear(b->map, slot, nr);
	b->used -= nr;
	mutex_unlock(&b->lock);
	atomic64_sub(nr << PAGE_SHIFT, &kvmm_flash_bytes);
}

/* ---- I/O --------------------------------------------------------------- */

u32 kvmm_flash_crc(struct page **pages, unsigned int nr)
{
	SHASH_DESC_ON_STACK(desc, kvmm_crc_tfm);
	__le32 crc = 0;
	unsigned int i;

	desc->tfm = kvmm_crc_tfm;
	crypto_shash_init(desc);
	for (i = 0; i < nr; i++) {
		void *p = kmap_local_page(pages[i]);

		crypto_shash_update(desc, p, PAGE_SIZE);
		kunmap_local(p);
	}
	crypto_shash_final(desc, (u8 *)&crc);
	return le32_to_cpu(crc);
}

/*
 * The submitter and the completion each hold a reference: the filesystem
 * may still use the kiocb after queueing the I/O (ext4's direct read
 * touches it after iomap_dio_rw() returns), so the I/O is finished only
 * when both are done with it.
 */
static void kvmm_io_put(struct kvmm_io *io)
{
	if (atomic_dec_and_test(&io->refs))
		kvmm_io_complete(io, io->res);
}

/* kiocb completion: may run in interrupt context, so finish on a worker. */
static void kvmm_io_aio_complete(struct kiocb *iocb, long res)
{
	struct kvmm_io *io = container_of(iocb, struct kvmm_io, iocb);

	io->res = res;
	kvmm_io_put(io);
}

/* Test hook (debugfs fail_skip, fail_ios): checked once per chunk I/O. */
bool kvmm_io_inject_failure(void)
{
	if (atomic_read(&kvmm_fail_ios) <= 0)
		return false;
	if (atomic_dec_if_positive(&kvmm_fail_skip) >= 0)
		return false;
	return atomic_dec_if_positive(&kvmm_fail_ios) >= 0;
}

/* Test hook (debugfs fail_merged): checked once per merged I/O. */
bool kvmm_io_inject_merged_failure(void)
{
	return atomic_read(&kvmm_fail_merged) > 0 &&
	       atomic_dec_if_positive(&kvmm_fail_merged) >= 0;
}

static void kvmm_io_buffered(struct work_struct *work)
{
	struct kvmm_io *io = container_of(work, struct kvmm_io, work);
	struct kvmm_store *b = io->store;	/* @io may be gone at the end */
	struct file *file = io->iocb.ki_filp;
	loff_t pos = io->iocb.ki_pos, len = iov_iter_count(&io->iter);
	unsigned int nofs = memalloc_nofs_save();
	struct kvmm_io_ctx ctx;
	long res;

	kvmm_io_ctx_enter(&ctx, io->store, io->r);
	init_sync_kiocb(&io->iocb, file);
	io->iocb.ki_pos = pos;
	io->iocb.ki_flags &= ~(IOCB_DIRECT | IOCB_APPEND);
	res = rw_verify_area(io->write ? WRITE : READ, file, &pos, len);
	if (res) {
		/* refused as write(2) would refuse it */
	} else if (io->write) {
		file_start_write(file);
		res = file->f_op->write_iter(&io->iocb, &io->iter);
		file_end_write(file);
		if (res == len)
			res = filemap_write_and_wait_range(file->f_mapping, pos,
							   pos + len - 1) ?: len;
	} else {
		res = file->f_op->read_iter(&io->iocb, &io->iter);
	}
	invalidate_inode_pages2_range(file->f_mapping, pos >> PAGE_SHIFT,
				      (pos + len - 1) >> PAGE_SHIFT);
	kvmm_io_ctx_leave(&ctx);
	memalloc_nofs_restore(nofs);
	atomic64_inc(&io->r->buffered_ios);
	atomic64_inc(&kvmm_stats.buffered_ios);
	kvmm_io_finish(io, res);
	kvmm_store_work_done(b);
}

/*
 * Start @io on @b at byte @pos over the @nr_pages pages of @bvec (its
 * chunk's, or a merged run's). The result always arrives through
 * kvmm_io_complete().
 */
void kvmm_flash_submit(struct kvmm_store *b, struct kvmm_io *io,
		       struct bio_vec *bvec, unsigned int nr_pages, loff_t pos)
{
	struct file *file = b->file;
	size_t len = (size_t)nr_pages << PAGE_SHIFT;
	struct kvmm_io_ctx ctx;
	unsigned int nofs;
	ssize_t ret;

	iov_iter_bvec(&io->iter, io->write ? ITER_SOURCE : ITER_DEST, bvec,
		      nr_pages, len);
	io->iocb.ki_filp = file;
	io->iocb.ki_pos = pos;

	if (!b->direct) {
		INIT_WORK(&io->work, kvmm_io_buffered);
		kvmm_store_queue(b, io, &io->work);
		return;
	}

	io->iocb.ki_complete = kvmm_io_aio_complete;
	io->iocb.ki_flags = IOCB_DIRECT;
	io->iocb.ki_ioprio = get_current_ioprio();
	atomic_set(&io->refs, 2);
	nofs = memalloc_nofs_save();
	kvmm_io_ctx_enter(&ctx, b, io->r);
	/* The checks write(2) and read(2) make: permission, LSM, locks. */
	ret = rw_verify_area(io->write ? WRITE : READ, file, &pos, len);
	if (!ret && io->write) {
		/* Freeze protection until kvmm_io_finish(), as aio does. */
		if (S_ISREG(file_inode(file)->i_mode)) {
			kiocb_start_write(&io->iocb);
			io->sb_write = true;
		}
		ret = file->f_op->write_iter(&io->iocb, &io->iter);
	} else if (!ret) {
		ret = file->f_op->read_iter(&io->iocb, &io->iter);
	}
	kvmm_io_ctx_leave(&ctx);
	memalloc_nofs_restore(nofs);
	/* Done at once: ki_complete will not be called, so drop its share. */
	if (ret != -EIOCBQUEUED) {
		io->res = ret;
		kvmm_io_put(io);
	}
	kvmm_io_put(io);
}

/* Tell watchers about the I/O and end its freeze protection. */
void kvmm_flash_io_done(struct kvmm_io *io, bool ok)
{
	struct file *file = io->iocb.ki_filp;

	if (io->sb_write) {
		kiocb_end_write(&io->iocb);
		io->sb_write = false;
	}
	if (ok && file)
		io->write ? fsnotify_modify(file) : fsnotify_access(file);
}

int kvmm_flash_init(void)
{
	kvmm_crc_tfm = crypto_alloc_shash("crc32c", 0, 0);
	if (IS_ERR(kvmm_crc_tfm))
		return PTR_ERR(kvmm_crc_tfm);
	pr_info("kvmm: flash checksums: crc32c by %s\n",
		crypto_tfm_alg_driver_name(crypto_shash_tfm(kvmm_crc_tfm)));
	/* As many workers as may run: each store takes KVMM_STORE_WORKERS. */
	kvmm_io_wq = alloc_workqueue("kvmm_io", WQ_UNBOUND | WQ_MEM_RECLAIM,
				     WQ_UNBOUND_MAX_ACTIVE);
	/*
	 * Completions have a queue of their own: workers blocked in one
	 * tenant's filesystem (a frozen disk, a FUSE daemon that never
	 * answers) must not keep other tenants' completions from running.
	 */
	kvmm_done_wq = alloc_workqueue("kvmm_done", WQ_UNBOUND | WQ_MEM_RECLAIM, 0);
	if (!kvmm_io_wq || !kvmm_done_wq) {
		if (kvmm_io_wq)
			destroy_workqueue(kvmm_io_wq);
		if (kvmm_done_wq)
			destroy_workqueue(kvmm_done_wq);
		crypto_free_shash(kvmm_crc_tfm);
		return -ENOMEM;
	}
	return 0;
}

/* Called once no region is left, so only the default store can remain. */
void kvmm_flash_exit(void)
{
	kvmm_store_set_default("none");
	/* Submissions queue completions and growths queue nothing: io first. */
	destroy_workqueue(kvmm_io_wq);
	destroy_workqueue(kvmm_done_wq);
	crypto_free_shash(kvmm_crc_tfm);
	WARN_ON(!list_empty(&kvmm_stores));
}

/* Run @work on the completion workers (never blocked in a filesystem). */
void kvmm_queue_done_work(struct work_struct *work)
{
	queue_work(kvmm_done_wq, work);
}

/* Queue the completion handling of @io (from any context). */
void kvmm_io_queue_done(struct kvmm_io *io, work_func_t fn)
{
	INIT_WORK(&io->work, fn);
	queue_work(kvmm_done_wq, &io->work);
}
