// SPDX-License-Identifier: GPL-2.0
/*
 * Regions: the region fd, its mmap and fault handler, its ioctls, and
 * pread/pwrite.
 *
 * Mapping model: VM_PFNMAP with vmf_insert_pfn(). Nothing outside kvmm can
 * take a reference on a region page through a mapping (get_user_pages()
 * refuses PFNMAP VMAs), so every chunk can always be discarded, and later
 * evicted, after unmap_mapping_range() on the region's own inode. GPU data
 * reaches regions through pinned staging buffers and pread/pwrite instead of
 * cuMemHostRegister on region memory. See docs/architecture.md.
 *
 * Each region has its own inode on a private pseudo filesystem, so its
 * i_mapping lists exactly the VMAs of this region: unmap_mapping_range()
 * never touches another region (an anon_inode file would share one inode
 * among all regions).
 *
 * Lock order (outermost first):
 *   mmap_lock                    held by the core mm around ->fault
 *     kvmm_region.lock           chunk table and chunk contents
 *       i_mmap_rwsem, PTE locks  taken by unmap_mapping_range()
 *   kvmm_regions_lock -> kvmm_region.lock   (listing regions; never reversed)
 * Nothing is copied to or from user memory while kvmm_region.lock is held:
 * the user buffer may itself be a mapping of the region, and faulting it in
 * would take the lock again.
 */
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/magic.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mount.h>
#include <linux/nodemask.h>
#include <linux/pseudo_fs.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uio.h>
#include <linux/vmalloc.h>
#include "compat.h"
#include "kvmm.h"

#define KVMM_FS_MAGIC 0x6b766d6d	/* "kvmm" */
#define KVMM_QUERY_BATCH 4096

DEFINE_MUTEX(kvmm_regions_lock);
LIST_HEAD(kvmm_regions);
unsigned int kvmm_nr_regions;		/* under kvmm_regions_lock */
static DEFINE_IDA(kvmm_region_ida);
static struct vfsmount *kvmm_mnt;

/* ---- chunks ---------------------------------------------------------- */

static struct kvmm_chunk *kvmm_chunk_alloc(struct kvmm_region *r)
{
	struct kvmm_chunk *c;
	int nid = r->nid == KVMM_NUMA_LOCAL ? NUMA_NO_NODE : r->nid;

	c = kzalloc(sizeof(*c), GFP_KERNEL);
	if (!c)
		return NULL;
	c->pages = kvcalloc(kvmm_chunk_pages(r), sizeof(*c->pages), GFP_KERNEL);
	if (!c->pages)
		goto free_chunk;
	if (kvmm_pool_alloc_pages(nid, r->chunk_order, c->pages))
		goto free_pages;
	return c;

free_pages:
	kvfree(c->pages);
free_chunk:
	kfree(c);
	return NULL;
}

static void kvmm_chunk_free(struct kvmm_region *r, struct kvmm_chunk *c)
{
	kvmm_pool_free_pages(c->pages, kvmm_chunk_pages(r));
	kvfree(c->pages);
	kfree(c);
}

/*
 * Give chunk @idx memory: charge the pool unless @charged, allocate zeroed
 * pages and enter it in the table. Caller holds r->lock.
 */
static struct kvmm_chunk *kvmm_region_populate(struct kvmm_region *r,
					       u64 idx, bool charged)
{
	struct kvmm_chunk *c;
	int err;

	if (!charged && kvmm_pool_charge(kvmm_chunk_bytes(r)))
		return ERR_PTR(-ENOMEM);

	c = kvmm_chunk_alloc(r);
	if (!c) {
		err = -ENOMEM;
		goto uncharge;
	}
	err = xa_err(xa_store(&r->chunks, idx, c, GFP_KERNEL));
	if (err)
		goto free;

	atomic64_inc(&r->resident_chunks);
	atomic64_inc(&r->zero_fills);
	atomic64_inc(&kvmm_stats.zero_fills);
	return c;

free:
	kvmm_chunk_free(r, c);
uncharge:
	if (!charged)
		kvmm_pool_uncharge(kvmm_chunk_bytes(r));
	return ERR_PTR(err);
}

/* Remove chunk @idx from the table and free it. Caller holds r->lock and
 * has already removed it from every mapping.
 */
static void kvmm_region_depopulate(struct kvmm_region *r, u64 idx,
				   struct kvmm_chunk *c)
{
	xa_erase(&r->chunks, idx);
	kvmm_chunk_free(r, c);
	kvmm_pool_uncharge(kvmm_chunk_bytes(r));
	atomic64_dec(&r->resident_chunks);
}

static void kvmm_region_unmap(struct kvmm_region *r, unsigned long first,
			      unsigned long nr)
{
	unmap_mapping_range(r->inode->i_mapping, (loff_t)first << r->chunk_shift,
			    (loff_t)nr << r->chunk_shift, 1);
}

/* ---- mmap and faults -------------------------------------------------- */

static void kvmm_vm_open(struct vm_area_struct *vma)
{
	struct kvmm_region *r = vma->vm_private_data;

	atomic_inc(&r->mappings);
}

static void kvmm_vm_close(struct vm_area_struct *vma)
{
	struct kvmm_region *r = vma->vm_private_data;

	atomic_dec(&r->mappings);
}

/* Insert every page of chunk @idx that lies inside @vma. */
static vm_fault_t kvmm_chunk_map(struct kvmm_region *r, struct kvmm_chunk *c,
				 u64 idx, struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	unsigned long first = idx << r->chunk_order;
	unsigned long vma_first = vma->vm_pgoff;
	unsigned long vma_end = vma_first + vma_pages(vma);
	unsigned int i, nr = kvmm_chunk_pages(r);
	vm_fault_t ret = VM_FAULT_NOPAGE;

	for (i = 0; i < nr; i++) {
		unsigned long pgoff = first + i, addr;
		vm_fault_t err;

		if (pgoff < vma_first || pgoff >= vma_end)
			continue;
		addr = vma->vm_start + ((pgoff - vma_first) << PAGE_SHIFT);
		err = vmf_insert_pfn(vma, addr, page_to_pfn(c->pages[i]));
		/* Only the page that faulted must succeed; the rest is ahead. */
		if (err != VM_FAULT_NOPAGE && pgoff == vmf->pgoff)
			ret = err;
	}
	return ret;
}

static vm_fault_t kvmm_vm_fault(struct vm_fault *vmf)
{
	struct kvmm_region *r = vmf->vma->vm_private_data;
	u64 idx = vmf->pgoff >> r->chunk_order;
	struct kvmm_chunk *c;
	vm_fault_t ret;

	if (idx >= r->nr_chunks)
		return VM_FAULT_SIGBUS;

	mutex_lock(&r->lock);
	c = xa_load(&r->chunks, idx);
	if (!c) {
		c = kvmm_region_populate(r, idx, false);
		if (IS_ERR(c)) {
			mutex_unlock(&r->lock);
			atomic64_inc(&r->fault_failures);
			atomic64_inc(&kvmm_stats.fault_failures);
			pr_warn_ratelimited("kvmm: region %u (%s[%d]): no memory for chunk %llu, SIGBUS to %s[%d]\n",
					    r->id, r->owner_comm, r->owner_tgid,
					    idx, current->comm,
					    task_tgid_nr(current));
			return VM_FAULT_SIGBUS;
		}
	}
	ret = kvmm_chunk_map(r, c, idx, vmf);
	mutex_unlock(&r->lock);

	atomic64_inc(&r->faults);
	atomic64_inc(&kvmm_stats.faults);
	return ret;
}

static const struct vm_operations_struct kvmm_vm_ops = {
	.open = kvmm_vm_open,
	.close = kvmm_vm_close,
	.fault = kvmm_vm_fault,
};

static int kvmm_region_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct kvmm_region *r = file->private_data;
	unsigned long len = vma->vm_end - vma->vm_start;
	u64 off;

	/* MAP_PRIVATE would need copy-on-write of pages the module owns. */
	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	if (vma->vm_pgoff > (r->size >> PAGE_SHIFT))
		return -EINVAL;
	off = (u64)vma->vm_pgoff << PAGE_SHIFT;
	if (off & (kvmm_chunk_bytes(r) - 1) || len > r->size - off)
		return -EINVAL;

	kvmm_vm_flags_set(vma, VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP);
	vma->vm_ops = &kvmm_vm_ops;
	vma->vm_private_data = r;
	kvmm_vm_open(vma);
	return 0;
}

/* ---- ranges ----------------------------------------------------------- */

static int kvmm_range_get(struct kvmm_region *r, void __user *uarg,
			  unsigned long *first, unsigned long *nr)
{
	struct kvmm_range a;
	u64 mask = kvmm_chunk_bytes(r) - 1;

	if (copy_from_user(&a, uarg, sizeof(a)))
		return -EFAULT;
	if (a.flags || a.reserved0 || a.reserved[0] || a.reserved[1])
		return -EINVAL;
	if (!a.length || (a.offset | a.length) & mask)
		return -EINVAL;
	if (a.offset > r->size || a.length > r->size - a.offset)
		return -EINVAL;
	*first = a.offset >> r->chunk_shift;
	*nr = a.length >> r->chunk_shift;
	return 0;
}

/*
 * Make chunks [first, first + nr) resident, all or nothing: the pool is
 * charged for every missing chunk up front, and chunks created here are
 * freed again if anything fails. Caller holds r->lock.
 */
static int kvmm_region_ensure_locked(struct kvmm_region *r,
				     unsigned long first, unsigned long nr)
{
	unsigned long last = first + nr - 1, idx, present = 0, missing;
	struct kvmm_chunk *c;
	int err = 0;

	xa_for_each_range(&r->chunks, idx, c, first, last)
		present++;
	missing = nr - present;
	if (!missing)
		return 0;
	if (kvmm_pool_charge((u64)missing << r->chunk_shift)) {
		atomic64_inc(&kvmm_stats.ensure_failures);
		return -ENOMEM;
	}

	for (idx = first; idx <= last; idx++) {
		if (xa_load(&r->chunks, idx))
			continue;
		if (fatal_signal_pending(current)) {
			err = -EINTR;
			break;
		}
		c = kvmm_region_populate(r, idx, true);
		if (IS_ERR(c)) {
			err = PTR_ERR(c);
			break;
		}
		c->created = true;
		missing--;
		cond_resched();
	}

	/* Success clears the marks; failure frees what this call created. */
	xa_for_each_range(&r->chunks, idx, c, first, last) {
		if (!c->created)
			continue;
		c->created = false;
		if (err) {
			kvmm_region_depopulate(r, idx, c);
			atomic64_dec(&r->zero_fills);
			atomic64_dec(&kvmm_stats.zero_fills);
		}
	}
	if (missing)
		kvmm_pool_uncharge((u64)missing << r->chunk_shift);
	if (err)
		atomic64_inc(&kvmm_stats.ensure_failures);
	return err;
}

static long kvmm_region_ensure(struct kvmm_region *r, void __user *uarg)
{
	unsigned long first, nr;
	int err;

	err = kvmm_range_get(r, uarg, &first, &nr);
	if (err)
		return err;
	mutex_lock(&r->lock);
	err = kvmm_region_ensure_locked(r, first, nr);
	mutex_unlock(&r->lock);
	return err;
}

static long kvmm_region_discard(struct kvmm_region *r, void __user *uarg)
{
	unsigned long first, nr, idx, freed = 0;
	struct kvmm_chunk *c;
	int err;

	err = kvmm_range_get(r, uarg, &first, &nr);
	if (err)
		return err;

	mutex_lock(&r->lock);
	xa_for_each_range(&r->chunks, idx, c, first, first + nr - 1) {
		if (c->pins) {
			mutex_unlock(&r->lock);
			return -EBUSY;
		}
	}
	/* Zap every PTE first, so no process can see a freed page. */
	kvmm_region_unmap(r, first, nr);
	xa_for_each_range(&r->chunks, idx, c, first, first + nr - 1) {
		kvmm_region_depopulate(r, idx, c);
		freed++;
	}
	mutex_unlock(&r->lock);

	atomic64_add(freed, &r->discards);
	atomic64_add(freed, &kvmm_stats.discards);
	return 0;
}

static long kvmm_region_pin(struct kvmm_region *r, void __user *uarg)
{
	unsigned long first, nr, idx;
	struct kvmm_chunk *c;
	int err;

	err = kvmm_range_get(r, uarg, &first, &nr);
	if (err)
		return err;

	mutex_lock(&r->lock);
	xa_for_each_range(&r->chunks, idx, c, first, first + nr - 1) {
		if (c->pins == UINT_MAX) {
			err = -EOVERFLOW;
			goto unlock;
		}
	}
	err = kvmm_region_ensure_locked(r, first, nr);
	if (err)
		goto unlock;
	xa_for_each_range(&r->chunks, idx, c, first, first + nr - 1) {
		if (!c->pins++)
			atomic64_inc(&r->pinned_chunks);
	}
unlock:
	mutex_unlock(&r->lock);
	return err;
}

static long kvmm_region_unpin(struct kvmm_region *r, void __user *uarg)
{
	unsigned long first, nr, idx, pinned = 0;
	struct kvmm_chunk *c;
	int err;

	err = kvmm_range_get(r, uarg, &first, &nr);
	if (err)
		return err;

	mutex_lock(&r->lock);
	xa_for_each_range(&r->chunks, idx, c, first, first + nr - 1)
		pinned += c->pins > 0;
	if (pinned != nr) {
		err = -EINVAL;
		goto unlock;
	}
	xa_for_each_range(&r->chunks, idx, c, first, first + nr - 1) {
		if (!--c->pins)
			atomic64_dec(&r->pinned_chunks);
	}
unlock:
	mutex_unlock(&r->lock);
	return err;
}

static long kvmm_region_stat(struct kvmm_region *r, void __user *uarg)
{
	struct kvmm_region_stat st = {
		.size = r->size,
		.chunk_bytes = kvmm_chunk_bytes(r),
		.id = r->id,
		.numa_node = r->nid,
		.priority = r->priority,
		.resident_bytes = atomic64_read(&r->resident_chunks) << r->chunk_shift,
		.pinned_bytes = atomic64_read(&r->pinned_chunks) << r->chunk_shift,
		.mappings = atomic_read(&r->mappings),
		.faults = atomic64_read(&r->faults),
		.zero_fills = atomic64_read(&r->zero_fills),
		.discards = atomic64_read(&r->discards),
		.fault_failures = atomic64_read(&r->fault_failures),
		.bytes_read = atomic64_read(&r->bytes_read),
		.bytes_written = atomic64_read(&r->bytes_written),
	};

	return copy_to_user(uarg, &st, sizeof(st)) ? -EFAULT : 0;
}

static u8 kvmm_chunk_state(const struct kvmm_chunk *c)
{
	if (!c)
		return KVMM_CHUNK_EMPTY;
	return KVMM_CHUNK_RESIDENT | (c->pins ? KVMM_CHUNK_PINNED : 0);
}

static long kvmm_region_query(struct kvmm_region *r, void __user *uarg)
{
	struct kvmm_query q;
	u8 __user *out;
	u64 done = 0;
	u8 *buf;
	int err = 0;

	if (copy_from_user(&q, uarg, sizeof(q)))
		return -EFAULT;
	if (q.flags || q.reserved0 || q.reserved[0] || q.reserved[1])
		return -EINVAL;
	if (!q.nr_chunks || q.nr_chunks > KVMM_QUERY_MAX_CHUNKS ||
	    q.first_chunk >= r->nr_chunks ||
	    q.nr_chunks > r->nr_chunks - q.first_chunk)
		return -EINVAL;
	out = u64_to_user_ptr(q.states);

	buf = kmalloc(KVMM_QUERY_BATCH, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	while (done < q.nr_chunks) {
		u64 n = min_t(u64, q.nr_chunks - done, KVMM_QUERY_BATCH), i;

		mutex_lock(&r->lock);
		for (i = 0; i < n; i++)
			buf[i] = kvmm_chunk_state(xa_load(&r->chunks,
							  q.first_chunk + done + i));
		mutex_unlock(&r->lock);
		if (copy_to_user(out + done, buf, n)) {
			err = -EFAULT;
			break;
		}
		done += n;
	}
	kfree(buf);
	return err;
}

static long kvmm_region_ioctl(struct file *file, unsigned int cmd,
			      unsigned long arg)
{
	struct kvmm_region *r = file->private_data;
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case KVMM_IOC_ENSURE:
		return kvmm_region_ensure(r, uarg);
	case KVMM_IOC_DISCARD:
		return kvmm_region_discard(r, uarg);
	case KVMM_IOC_STAT:
		return kvmm_region_stat(r, uarg);
	case KVMM_IOC_QUERY:
		return kvmm_region_query(r, uarg);
	case KVMM_IOC_PIN:
		return kvmm_region_pin(r, uarg);
	case KVMM_IOC_UNPIN:
		return kvmm_region_unpin(r, uarg);
	default:
		return -ENOTTY;
	}
}

/* ---- pread / pwrite ----------------------------------------------------- */

/*
 * Take references on the pages of chunk @idx that hold bytes
 * [off, off + len) of the chunk, so they can be copied without r->lock.
 * With @create, an empty chunk is populated first. Returns the number of
 * pages referenced, 0 for an empty chunk, or a negative errno.
 */
static int kvmm_chunk_get_pages(struct kvmm_region *r, u64 idx, u64 off,
				u64 len, bool create, struct page **pages)
{
	unsigned int first = off >> PAGE_SHIFT;
	unsigned int last = (off + len - 1) >> PAGE_SHIFT, i;
	struct kvmm_chunk *c;

	mutex_lock(&r->lock);
	c = xa_load(&r->chunks, idx);
	if (!c && create)
		c = kvmm_region_populate(r, idx, false);
	if (IS_ERR_OR_NULL(c)) {
		mutex_unlock(&r->lock);
		return PTR_ERR_OR_ZERO(c);
	}
	for (i = first; i <= last; i++) {
		pages[i - first] = c->pages[i];
		get_page(pages[i - first]);
	}
	mutex_unlock(&r->lock);
	return last - first + 1;
}

/* Copy between the iterator and the region, at most one chunk per step. */
static ssize_t kvmm_region_rw(struct kiocb *iocb, struct iov_iter *iter,
			      bool write)
{
	struct kvmm_region *r = iocb->ki_filp->private_data;
	u64 chunk_bytes = kvmm_chunk_bytes(r);
	struct page **pages;
	loff_t pos = iocb->ki_pos;
	ssize_t done = 0;
	int err = 0;

	if (pos < 0)
		return -EINVAL;
	if (pos >= r->size || !iov_iter_count(iter))
		return write && iov_iter_count(iter) ? -ENOSPC : 0;

	pages = kmalloc_array(kvmm_chunk_pages(r), sizeof(*pages), GFP_KERNEL);
	if (!pages)
		return -ENOMEM;

	while (iov_iter_count(iter) && pos < r->size) {
		u64 idx = pos >> r->chunk_shift;
		u64 off = pos & (chunk_bytes - 1);
		size_t len = min_t(u64, iov_iter_count(iter), chunk_bytes - off);
		size_t copied = 0;
		int n, i;

		n = kvmm_chunk_get_pages(r, idx, off, len, write, pages);
		if (n < 0) {
			err = n;
			break;
		}
		if (!n) {
			copied = iov_iter_zero(len, iter);
		} else {
			size_t poff = off & ~PAGE_MASK;

			for (i = 0; i < n && copied < len; i++) {
				size_t plen = min_t(size_t, PAGE_SIZE - poff,
						    len - copied);
				size_t c = write ?
					copy_page_from_iter(pages[i], poff, plen, iter) :
					copy_page_to_iter(pages[i], poff, plen, iter);

				copied += c;
				if (c < plen)
					break;
				poff = 0;
			}
			for (i = 0; i < n; i++)
				put_page(pages[i]);
		}
		pos += copied;
		done += copied;
		if (copied < len) {
			err = -EFAULT;
			break;
		}
	}
	kfree(pages);

	if (write) {
		atomic64_add(done, &r->bytes_written);
		atomic64_add(done, &kvmm_stats.bytes_written);
	} else {
		atomic64_add(done, &r->bytes_read);
		atomic64_add(done, &kvmm_stats.bytes_read);
	}
	iocb->ki_pos = pos;
	return done ? done : err;
}

static ssize_t kvmm_region_read_iter(struct kiocb *iocb, struct iov_iter *to)
{
	return kvmm_region_rw(iocb, to, false);
}

static ssize_t kvmm_region_write_iter(struct kiocb *iocb, struct iov_iter *from)
{
	return kvmm_region_rw(iocb, from, true);
}

static loff_t kvmm_region_llseek(struct file *file, loff_t offset, int whence)
{
	struct kvmm_region *r = file->private_data;

	return fixed_size_llseek(file, offset, whence, r->size);
}

/* ---- lifetime ----------------------------------------------------------- */

/* Last fd and last mapping are gone: no PTE can point at a chunk. */
static int kvmm_region_release(struct inode *inode, struct file *file)
{
	struct kvmm_region *r = file->private_data;
	struct kvmm_chunk *c;
	unsigned long idx;

	mutex_lock(&kvmm_regions_lock);
	list_del(&r->node);
	kvmm_nr_regions--;
	mutex_unlock(&kvmm_regions_lock);

	xa_for_each(&r->chunks, idx, c)
		kvmm_region_depopulate(r, idx, c);
	xa_destroy(&r->chunks);
	ida_free(&kvmm_region_ida, r->id);
	inode->i_private = NULL;
	mutex_destroy(&r->lock);
	kfree(r);
	return 0;
}

static const struct file_operations kvmm_region_fops = {
	.owner = THIS_MODULE,
	.release = kvmm_region_release,
	.mmap = kvmm_region_mmap,
	.unlocked_ioctl = kvmm_region_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.read_iter = kvmm_region_read_iter,
	.write_iter = kvmm_region_write_iter,
	.llseek = kvmm_region_llseek,
};

static int kvmm_create_args_valid(struct kvmm_region_create *a)
{
	u64 chunk;

	if (a->flags & ~KVMM_CREATE_FLAGS_ALL)
		return -EINVAL;
	if (a->reserved0 || a->reserved1 ||
	    memchr_inv(a->reserved, 0, sizeof(a->reserved)))
		return -EINVAL;
	chunk = a->chunk_bytes ? a->chunk_bytes : READ_ONCE(kvmm_default_chunk_bytes);
	if (!kvmm_chunk_bytes_valid(chunk))
		return -EINVAL;
	if (!a->size || a->size > KVMM_REGION_MAX_BYTES || a->size & (chunk - 1))
		return -EINVAL;
	if (a->numa_node != KVMM_NUMA_LOCAL &&
	    (a->numa_node < 0 || a->numa_node >= nr_node_ids ||
	     !node_state(a->numa_node, N_MEMORY)))
		return -EINVAL;
	a->chunk_bytes = chunk;
	return 0;
}

static struct file *kvmm_region_file(struct kvmm_region *r, int flags)
{
	struct inode *inode;
	struct file *file;

	inode = alloc_anon_inode(kvmm_mnt->mnt_sb);
	if (IS_ERR(inode))
		return ERR_CAST(inode);
	inode->i_size = r->size;
	inode->i_private = r;

	/* The file pins the module until its final fput(), via fops->owner. */
	__module_get(THIS_MODULE);
	file = alloc_file_pseudo(inode, kvmm_mnt, "kvmm-region", flags,
				 &kvmm_region_fops);
	if (IS_ERR(file)) {
		module_put(THIS_MODULE);
		iput(inode);
		return file;
	}
	file->f_mode |= FMODE_PREAD | FMODE_PWRITE;
	file->private_data = r;
	r->inode = inode;
	return file;
}

int kvmm_region_create(struct kvmm_region_create __user *uarg)
{
	struct kvmm_region_create a, *arg = &a;
	struct kvmm_region *r;
	struct file *file;
	int err, fd, id, flags;

	if (copy_from_user(arg, uarg, sizeof(*arg)))
		return -EFAULT;
	err = kvmm_create_args_valid(arg);
	if (err)
		return err;
	flags = O_RDWR | (arg->flags & KVMM_CREATE_CLOEXEC ? O_CLOEXEC : 0);

	r = kzalloc(sizeof(*r), GFP_KERNEL);
	if (!r)
		return -ENOMEM;
	mutex_init(&r->lock);
	xa_init(&r->chunks);
	INIT_LIST_HEAD(&r->node);
	r->size = arg->size;
	r->chunk_shift = ilog2(arg->chunk_bytes);
	r->chunk_order = r->chunk_shift - PAGE_SHIFT;
	r->nr_chunks = r->size >> r->chunk_shift;
	r->nid = arg->numa_node;
	r->priority = arg->priority;
	r->owner_tgid = task_tgid_nr(current);
	get_task_comm(r->owner_comm, current);

	id = ida_alloc_min(&kvmm_region_ida, 1, GFP_KERNEL);
	if (id < 0) {
		err = id;
		goto free_region;
	}
	r->id = id;

	fd = get_unused_fd_flags(flags);
	if (fd < 0) {
		err = fd;
		goto free_id;
	}
	file = kvmm_region_file(r, flags);
	if (IS_ERR(file)) {
		err = PTR_ERR(file);
		goto put_fd;
	}

	mutex_lock(&kvmm_regions_lock);
	list_add_tail(&r->node, &kvmm_regions);
	kvmm_nr_regions++;
	mutex_unlock(&kvmm_regions_lock);

	arg->fd = fd;
	arg->id = r->id;
	/* The fd becomes visible only once the caller can learn its number. */
	if (copy_to_user(uarg, arg, sizeof(*arg))) {
		fput(file);	/* releases the region */
		put_unused_fd(fd);
		return -EFAULT;
	}
	fd_install(fd, file);
	atomic64_inc(&kvmm_stats.regions_created);
	return 0;

put_fd:
	put_unused_fd(fd);
free_id:
	ida_free(&kvmm_region_ida, r->id);
free_region:
	kfree(r);
	return err;
}

/* ---- the private filesystem that gives every region its own inode ---- */

static int kvmm_fs_init_fs_context(struct fs_context *fc)
{
	return init_pseudo(fc, KVMM_FS_MAGIC) ? 0 : -ENOMEM;
}

static struct file_system_type kvmm_fs_type = {
	.name = "kvmm",
	.init_fs_context = kvmm_fs_init_fs_context,
	.kill_sb = kill_anon_super,
};

int kvmm_region_fs_init(void)
{
	kvmm_mnt = kern_mount(&kvmm_fs_type);
	return PTR_ERR_OR_ZERO(kvmm_mnt);
}

void kvmm_region_fs_exit(void)
{
	kern_unmount(kvmm_mnt);
}
