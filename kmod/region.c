// SPDX-License-Identifier: GPL-2.0
/*
 * Regions: the region fd, its mmap and fault handler, its ioctls, and
 * pread/pwrite.
 *
 * Mapping model: VM_PFNMAP with special PTEs, installed a whole chunk at a
 * time (kvmm_chunk_map()) the way vmf_insert_pfn() installs one page.
 * Nothing outside kvmm can take a reference on a region page through a
 * mapping (get_user_pages() refuses PFNMAP VMAs), so every chunk can always be discarded or evicted
 * after unmap_mapping_range() on the region's own inode. GPU data reaches
 * regions through pinned staging buffers and pread/pwrite instead of
 * cuMemHostRegister on region memory. See docs/architecture.md.
 *
 * Each region has its own inode on a private pseudo filesystem, so its
 * i_mapping lists exactly the VMAs of this region: unmap_mapping_range()
 * never touches another region (an anon_inode file would share one inode
 * among all regions).
 *
 * Dirty tracking: a chunk read back from flash is clean (its slot holds the
 * same bytes) and is mapped read-only; the first write faults into
 * ->pfn_mkwrite, which marks it dirty. Chunks with no current flash copy are
 * mapped writable at once. A clean chunk is evicted without a write.
 *
 * Lock order (outermost first), for every lock of the module:
 *   kvmm_file.lock                pins made through one open file (their
 *                                 charge is atomic: user->locked_vm,
 *                                 mm->pinned_vm)
 *   mmap_lock or the VMA lock     held by the core mm around ->fault
 *     kvmm_region.lock            chunk table, chunks, LRU, store, io_seq;
 *                                 two at once only in KVMM_IOC_SHARE, the
 *                                 lower address first (share.c)
 *       kvmm_region.lock of a home  shared chunks and their aliases; its
 *                                 own lockdep class, one at a time, never
 *                                 the outer lock (share.c)
 *       kvmm_store.lock           slot map (flash.c)
 *       i_mmap_rwsem, PTE locks   taken by unmap_mapping_range()
 *       kvmm_stores_lock          finding the default store (flash.c)
 *   kvmm_regions_lock -> kvmm_region.lock   (reclaim, listing; never reversed)
 *   kvmm_store.grow_lock -> kvmm_store.lock, the backing file's locks
 *                                 (no region lock held: fallocate)
 *   kvmm_stores_lock              alone otherwise; store headers are read
 *                                 and written under no kvmm lock
 *   kvmm_store.work_lock          spinlock, a leaf: a store's backlog of I/O
 *                                 waiting for one of its workers (flash.c)
 *   kvmm_ledger_lock, kvmm_pool's atomics: leaves (ledger.c, pool.c)
 * Rules: nothing copies to or from user memory under kvmm_region.lock (the
 * user buffer may be a mapping of the region, and faulting it in takes the
 * lock); nothing waits for flash I/O or for reclaim under it (I/O completion
 * and reclaim take it); the shrinker only trylocks; kvmm_file.lock is never
 * taken under mmap_lock (the fault path does not use it).
 */
#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mount.h>
#include <linux/nodemask.h>
#include <linux/pid_namespace.h>
#include <linux/poll.h>
#include <linux/pseudo_fs.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/sched/user.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/uio.h>
#include "compat.h"
#include "kvmm.h"

#define KVMM_FS_MAGIC 0x6b766d6d	/* "kvmm" */
#define KVMM_QUERY_BATCH 4096

DEFINE_MUTEX(kvmm_regions_lock);
LIST_HEAD(kvmm_regions);
unsigned int kvmm_nr_regions;		/* under kvmm_regions_lock */
unsigned int kvmm_nr_homes;		/* home regions on kvmm_regions, too */
static DEFINE_IDA(kvmm_region_ida);
static struct vfsmount *kvmm_mnt;	/* pinned by each region file */
static int kvmm_mnt_count;
static struct file_system_type kvmm_fs_type;

/* Zap every PTE of chunks [first, first + nr); a home's through its aliases. */
void kvmm_region_unmap(struct kvmm_region *r, unsigned long first,
		       unsigned long nr)
{
	unsigned long idx;

	if (r->is_home) {
		for (idx = first; idx < first + nr; idx++)
			kvmm_home_unmap(r, idx);
		return;
	}
	unmap_mapping_range(r->inode->i_mapping, (loff_t)first << r->chunk_shift,
			    (loff_t)nr << r->chunk_shift, 1);
}

/* A touch soon after eviction: count it and keep the chunk in for a while. */
static void kvmm_chunk_note_refault(struct kvmm_region *r,
				    struct kvmm_chunk *c)
{
	unsigned long window = msecs_to_jiffies(READ_ONCE(kvmm_refault_window_ms));

	lockdep_assert_held(&r->lock);
	if (!window || !time_before(jiffies, c->evicted_at + window))
		return;
	c->hold_until = jiffies + 4 * window;
	atomic64_inc(&r->refaults);
	atomic64_inc(&kvmm_stats.refaults);
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

struct kvmm_map_walk {
	struct mm_struct *mm;
	struct page **pages;
	unsigned long first_addr;	/* user address of the chunk's page 0 */
	pgprot_t prot;
};

/*
 * One PTE of a chunk being mapped, under the PTE lock that
 * apply_to_page_range() holds for the whole page table. A PTE already
 * present (another fault mapped it, or a read-only PTE of a clean chunk that
 * ->pfn_mkwrite will see) is left as it is, as vmf_insert_pfn() would.
 */
static int kvmm_map_pte(pte_t *pte, unsigned long addr, void *data)
{
	struct kvmm_map_walk *w = data;
	unsigned long i = (addr - w->first_addr) >> PAGE_SHIFT;

	if (!pte_none(ptep_get(pte)))
		return 0;
	set_pte_at(w->mm, addr, pte,
		   pte_mkspecial(pfn_pte(page_to_pfn(w->pages[i]), w->prot)));
	return 0;
}

/*
 * Map @pages, the pages of chunk @idx of @r, where they lie inside the
 * VMA, with protection @prot.
 *
 * One page-table walk under one PTE lock per page table instead of a
 * vmf_insert_pfn_prot() per page, each with its own walk and PAT lookup:
 * the pages are kvmm's own, freshly allocated RAM, so their memory type is
 * write-back, which is what the VMA's protection already says. The PTEs are
 * special (pte_mkspecial), exactly what vmf_insert_pfn() installs in a
 * VM_PFNMAP VMA, so vm_normal_page() and get_user_pages() still see no page.
 */
static vm_fault_t kvmm_pages_map(struct kvmm_region *r, unsigned long idx,
				 struct page **pages, pgprot_t prot,
				 struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	unsigned long first = idx << r->chunk_order;
	unsigned long last = first + kvmm_chunk_pages(r);	/* exclusive */
	unsigned long vma_first = vma->vm_pgoff;
	unsigned long vma_end = vma_first + vma_pages(vma);
	struct kvmm_map_walk w = { .mm = vma->vm_mm, .pages = pages, .prot = prot };
	unsigned long from, to;

	lockdep_assert_held(&r->lock);
	/* vma_first <= first is not given: a VMA may start inside a chunk. */
	w.first_addr = vma->vm_start + ((first - vma_first) << PAGE_SHIFT);

	from = max(first, vma_first);
	to = min(last, vma_end);
	if (apply_to_page_range(w.mm, w.first_addr + ((from - first) << PAGE_SHIFT),
				(to - from) << PAGE_SHIFT, kvmm_map_pte, &w))
		return VM_FAULT_OOM;	/* no memory for a page table */
	return VM_FAULT_NOPAGE;
}

/* Zap chunk @c's PTEs in @vma only (its other mappings keep theirs). */
static void kvmm_chunk_zap_vma(struct kvmm_region *r, struct kvmm_chunk *c,
			       struct vm_area_struct *vma)
{
	unsigned long first = c->idx << r->chunk_order;
	unsigned long last = first + kvmm_chunk_pages(r);
	unsigned long vma_first = vma->vm_pgoff;
	unsigned long from = max(first, vma_first);
	unsigned long to = min(last, vma_first + vma_pages(vma));

	lockdep_assert_held(&r->lock);
	if (from < to)
		zap_vma_ptes(vma, vma->vm_start + ((from - vma_first) << PAGE_SHIFT),
			     (to - from) << PAGE_SHIFT);
}

/*
 * Map chunk @c of @r: writable if the chunk is dirty anyway, else
 * read-only so the first write is seen.
 */
static vm_fault_t kvmm_chunk_map(struct kvmm_region *r, struct kvmm_chunk *c,
				 struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;

	if (vmf->flags & FAULT_FLAG_WRITE)
		c->dirty = true;
	return kvmm_pages_map(r, c->idx, c->pages,
			      c->dirty ? vm_get_page_prot(vma->vm_flags) :
					 vma->vm_page_prot, vmf);
}

/*
 * Read-around for a fault-back of chunk @idx: when it is where a forward scan
 * would fault next (the chunk after the last fault-back and its read-around;
 * attention reads KV in order), also read the flash chunks that follow, up
 * to a merged I/O's worth, while the pool has room without reclaim. They
 * count as prefetches. A fault elsewhere reads its chunk alone.
 */
static void kvmm_fault_read_around(struct kvmm_region *r, unsigned long idx,
				   struct list_head *ios)
{
	unsigned long run = KVMM_IO_RUN_PAGES >> r->chunk_order, i = idx + 1;
	u64 bytes = kvmm_chunk_bytes(r);
	struct kvmm_chunk *c;

	lockdep_assert_held(&r->lock);
	if (idx == r->ra_next) {
		for (; i < idx + run && i < r->nr_chunks; i++) {
			c = xa_load(&r->chunks, i);
			if (!c || c->where != KVMM_CS_FLASH || c->io_err ||
			    kvmm_pool_charge_nowait(bytes))
				break;
			/* Uncharges on failure. */
			if (kvmm_chunk_read_back(r, c, NULL, false, ios))
				break;
		}
	}
	r->ra_next = i;
}

static vm_fault_t kvmm_fault_sigbus(struct kvmm_region *r, unsigned long idx,
				   const char *why)
{
	atomic64_inc(&r->fault_failures);
	atomic64_inc(&kvmm_stats.fault_failures);
	pr_warn_ratelimited("kvmm: region %u (%s[%d]): %s for chunk %lu, SIGBUS to %s[%d]\n",
			    r->id, r->owner_comm, r->owner_tgid, why, idx,
			    current->comm, task_tgid_nr(current));
	return VM_FAULT_SIGBUS;
}

/* The fault may drop its lock and be retried (the core mm retries). */
static bool kvmm_fault_can_drop(struct vm_fault *vmf)
{
	return (vmf->flags & FAULT_FLAG_ALLOW_RETRY) &&
	       !(vmf->flags & FAULT_FLAG_RETRY_NOWAIT);
}

/*
 * Start the fault's reads (@ios) and wait for chunk @idx's I/O to move on,
 * never holding the fault lock (mmap_lock or the VMA lock) while entering
 * the filesystem or sleeping: where the fault may be retried, the lock is
 * dropped first and the core retries, the file held meanwhile as
 * filemap_fault does (neither region nor module can go); where it may not
 * drop it, the reads start on kvmm's I/O workers. Returns 0 to look again,
 * or the result.
 */
static vm_fault_t kvmm_fault_wait(struct vm_fault *vmf, struct kvmm_region *r,
				  unsigned long idx, unsigned long seq,
				  struct list_head *ios)
{
	struct file *file;

	if (kvmm_fault_can_drop(vmf)) {
		file = get_file(vmf->vma->vm_file);
		kvmm_fault_unlock(vmf);
		/*
		 * On the workers even now: the faulting task may hold the
		 * store's inode lock (write(2) from a region mapping), and then
		 * only its killable wait here, not the filesystem, may block.
		 */
		kvmm_io_submit(ios, true);
		/* A fatal signal ends the wait; the core sees it on the retry. */
		kvmm_chunk_wait_io(r, idx, seq);
		fput(file);
		return VM_FAULT_RETRY;
	}
	kvmm_io_submit(ios, true);
	if (vmf->flags & FAULT_FLAG_ALLOW_RETRY)
		return VM_FAULT_RETRY;	/* RETRY_NOWAIT: the reads are on their way */
	if (kvmm_chunk_wait_io(r, idx, seq))
		return VM_FAULT_SIGBUS;	/* dying anyway */
	return 0;
}

/*
 * Charge the pool for the chunk a fault needs. Above the high watermark
 * that means waiting for reclaim, which is never done under the fault
 * lock: the first attempt drops it, waits until the charge would fit and
 * retries; a retried fault (or one that cannot drop the lock) charges up
 * to the limit without waiting. Returns 0 (charged), VM_FAULT_RETRY or
 * VM_FAULT_SIGBUS.
 */
static vm_fault_t kvmm_fault_charge(struct vm_fault *vmf, struct kvmm_region *r,
				    unsigned long idx)
{
	u64 bytes = kvmm_chunk_bytes(r);
	int err = kvmm_pool_charge_nowait(bytes);
	struct file *file;


	if (!err)
		return 0;
	if (err == -ENOMEM)		/* full and nowhere to reclaim to */
		return kvmm_fault_sigbus(r, idx, "no memory");
	if (kvmm_fault_can_drop(vmf) && !(vmf->flags & FAULT_FLAG_TRIED)) {
		file = get_file(vmf->vma->vm_file);
		kvmm_fault_unlock(vmf);
		if (!kvmm_pool_charge_reclaim(bytes))
			kvmm_pool_uncharge(bytes);	/* there is room: retry */
		fput(file);
		return VM_FAULT_RETRY;
	}
	if (!kvmm_pool_charge(bytes))
		return 0;
	return kvmm_fault_sigbus(r, idx, "no memory");
}

/*
 * No memory for a chunk although the pool had room: the region's memory
 * cgroup is likely at memory.max. Move some of that cgroup's cold chunks to
 * flash (a margin beyond this chunk, since what an eviction frees and what
 * a chunk costs differ by metadata) with the fault lock dropped, and retry.
 * When a reclaim frees nothing, faults of the region at the limit get
 * SIGBUS for a second instead of retrying, so a cgroup full of what cannot
 * move never loops. Returns VM_FAULT_RETRY or VM_FAULT_SIGBUS.
 */
static vm_fault_t kvmm_fault_reclaim_memcg_of(struct vm_fault *vmf,
					      struct kvmm_region *r,
					      struct kvmm_region *m,
					      unsigned long idx)
{
	u64 bytes = max_t(u64, 2 * kvmm_chunk_bytes(r), SZ_4M);
	struct file *file;

	if (kvmm_fault_can_drop(vmf) && m->memcg && atomic_read(&kvmm_nr_stores) &&
	    time_after_eq(jiffies, READ_ONCE(r->memcg_stuck_until))) {
		file = get_file(vmf->vma->vm_file);
		kvmm_fault_unlock(vmf);
		if (!kvmm_reclaim_memcg(m, bytes))
			WRITE_ONCE(r->memcg_stuck_until, jiffies + HZ);
		fput(file);
		return VM_FAULT_RETRY;
	}
	return kvmm_fault_sigbus(r, idx, "no memory");
}

/* The faulting region @r's memory cgroup is short: see above. */
static vm_fault_t kvmm_fault_reclaim_memcg(struct vm_fault *vmf,
					   struct kvmm_region *r,
					   unsigned long idx)
{
	return kvmm_fault_reclaim_memcg_of(vmf, r, r, idx);
}

/*
 * A write to shared chunk @idx of @r, through a read-only PTE or with none:
 * copy it into a chunk of @r's own and map that writable (not by zapping the PTE and
 * waiting for a write fault: an emulated read-modify-write instruction may
 * fault as a read first, and would map the shared chunk again, forever).
 * Every return has VM_FAULT_NOPAGE, so the core never makes the old PTE
 * writable; VM_FAULT_RETRY when the fault lock was dropped to wait.
 */
static vm_fault_t kvmm_mkwrite_shared(struct vm_fault *vmf,
				      struct kvmm_region *r, unsigned long idx)
{
	struct kvmm_chunk *fresh;
	struct kvmm_region *h;
	struct kvmm_alias *a;
	bool put = false;
	vm_fault_t ret;

	ret = kvmm_fault_charge(vmf, r, idx);
	if (ret)
		return ret | VM_FAULT_NOPAGE;
	/* Uncharges on failure. */
	fresh = kvmm_chunk_new(r, idx);
	if (IS_ERR(fresh))
		return kvmm_fault_reclaim_memcg(vmf, r, idx) | VM_FAULT_NOPAGE;
	mutex_lock(&r->lock);
	a = xa_load(&r->shared, idx);
	if (!a) {			/* copied or discarded meanwhile */
		mutex_unlock(&r->lock);
		kvmm_chunk_free_new(r, fresh);
		return VM_FAULT_NOPAGE;
	}
	h = kvmm_alias_lock_home(a);
	if (a->hc->where != KVMM_CS_RESIDENT) {
		/* Evicted meanwhile (which zapped the PTE): fault again. */
		mutex_unlock(&h->lock);
		mutex_unlock(&r->lock);
		kvmm_chunk_free_new(r, fresh);
		return VM_FAULT_NOPAGE;
	}
	if (kvmm_alias_break(r, a, fresh, &put)) {
		mutex_unlock(&h->lock);
		mutex_unlock(&r->lock);
		kvmm_chunk_free_new(r, fresh);
		return kvmm_fault_sigbus(r, idx, "no memory");
	}
	mutex_unlock(&h->lock);
	if (put)
		kvmm_region_put_deferred(h);
	ret = kvmm_chunk_map(r, fresh, vmf);	/* a write: dirty, writable */
	mutex_unlock(&r->lock);
	return ret;
}

static void kvmm_fault_count(struct kvmm_region *r)
{
	atomic64_inc(&r->faults);
	atomic64_inc(&kvmm_stats.faults);
}

/*
 * A touch of chunk @a->idx of @r, which reads shared chunk @a->hc: a read
 * maps the shared pages read-only; a write copies the chunk first, as a
 * store through such a PTE does (kvmm_mkwrite_shared()). A shared chunk on
 * flash is read back into its home, for every sharer. Called with r->lock
 * held, returns with it dropped; *@again when the caller must look at the
 * chunk again. @charged, @ios and @major are the caller's fault state.
 */
static vm_fault_t kvmm_fault_shared(struct vm_fault *vmf, struct kvmm_region *r,
				    struct kvmm_alias *a, bool *charged,
				    struct list_head *ios, bool *major,
				    bool *again)
{
	bool write = vmf->flags & FAULT_FLAG_WRITE;
	struct kvmm_region *h = kvmm_alias_lock_home(a);
	unsigned long idx = a->idx, hidx, seq;
	struct kvmm_chunk *hc = a->hc;
	vm_fault_t ret;

	*again = false;
	if (hc->where == KVMM_CS_FLASH && !hc->io_err) {
		if (!*charged) {
			mutex_unlock(&h->lock);
			mutex_unlock(&r->lock);
			ret = kvmm_fault_charge(vmf, r, idx);
			if (ret)
				return ret;
			*charged = *again = true;
			return 0;
		}
		*charged = false;	/* passes to the read, or is returned */
		if (kvmm_chunk_read_back(h, hc, NULL, true, ios)) {
			/*
			 * The home's cgroup (the source's) is short. The home
			 * may go once the locks are dropped: hold it; the
			 * failure counts against @r, which the user sees.
			 */
			kref_get(&h->ref);
			mutex_unlock(&h->lock);
			mutex_unlock(&r->lock);
			ret = kvmm_fault_reclaim_memcg_of(vmf, r, h, idx);
			kvmm_region_put_deferred(h);
			return ret;
		}
		kvmm_chunk_note_refault(h, hc);
		*major = true;
	}
	if (*charged) {
		kvmm_pool_uncharge(kvmm_chunk_bytes(r));
		*charged = false;
	}

	if (hc->where == KVMM_CS_RESIDENT && !write) {
		ret = kvmm_pages_map(r, idx, hc->pages, vmf->vma->vm_page_prot, vmf);
		kvmm_chunk_lru_update(h, hc);
		mutex_unlock(&h->lock);
		mutex_unlock(&r->lock);
		kvmm_fault_count(r);
		return ret | (*major ? VM_FAULT_MAJOR : 0);
	}
	if (hc->where == KVMM_CS_RESIDENT) {	/* a write: it copies */
		mutex_unlock(&h->lock);
		mutex_unlock(&r->lock);
		return kvmm_mkwrite_shared(vmf, r, idx);
	}
	if (hc->where == KVMM_CS_FLASH) {
		mutex_unlock(&h->lock);
		mutex_unlock(&r->lock);
		return kvmm_fault_sigbus(r, idx, "flash read-back failed");
	}
	/* In flight: wait for it in its home, which must stay meanwhile. */
	hidx = hc->idx;
	seq = h->io_seq;
	kref_get(&h->ref);
	mutex_unlock(&h->lock);
	mutex_unlock(&r->lock);
	ret = kvmm_fault_wait(vmf, h, hidx, seq, ios);
	kvmm_region_put_deferred(h);
	if (ret)
		return ret | VM_FAULT_MAJOR;
	*major = *again = true;
	return 0;
}

/*
 * A CPU touch of a chunk with no PTE. A new chunk is allocated and zeroed
 * without the region lock (faults on other chunks go on meanwhile) and
 * installed unless another fault was first; a chunk on flash is read back
 * (VM_FAULT_MAJOR); a chunk with I/O in flight is waited for.
 */
static vm_fault_t kvmm_vm_fault(struct vm_fault *vmf)
{
	struct kvmm_region *r = vmf->vma->vm_private_data;
	unsigned long idx = vmf->pgoff >> r->chunk_order, seq;
	bool charged = false, major = false, shared_again;
	u64 bytes = kvmm_chunk_bytes(r);
	struct kvmm_chunk *c, *fresh = NULL;
	struct kvmm_alias *a;
	vm_fault_t ret;
	LIST_HEAD(ios);

	if (idx >= r->nr_chunks)
		return VM_FAULT_SIGBUS;
again:
	mutex_lock(&r->lock);
	a = xa_load(&r->shared, idx);
	if (a) {
		ret = kvmm_fault_shared(vmf, r, a, &charged, &ios,
					&major, &shared_again);
		if (shared_again)
			goto again;
		if (fresh)
			kvmm_chunk_free_new(r, fresh);
		return ret;
	}
	c = xa_load(&r->chunks, idx);
	if (c && fresh) {		/* another fault was first */
		kvmm_chunk_free_new(r, fresh);
		fresh = NULL;
	}
	if (!c && fresh) {
		c = kvmm_chunk_install(r, fresh);
		fresh = NULL;
		if (IS_ERR(c)) {
			mutex_unlock(&r->lock);
			return kvmm_fault_sigbus(r, idx, "no memory");
		}
	} else if (!c || (c->where == KVMM_CS_FLASH && !c->io_err)) {
		if (!charged) {
			/* Reclaim may need this lock to make room. */
			mutex_unlock(&r->lock);
			ret = kvmm_fault_charge(vmf, r, idx);
			if (ret)
				return ret;
			charged = true;
			goto again;
		}
		charged = false;	/* the charge passes on, or is returned */
		if (!c) {
			mutex_unlock(&r->lock);
			fresh = kvmm_chunk_new(r, idx);
			if (!IS_ERR(fresh))
				goto again;
			fresh = NULL;
			return kvmm_fault_reclaim_memcg(vmf, r, idx);
		}
		if (kvmm_chunk_read_back(r, c, NULL, true, &ios)) {
			mutex_unlock(&r->lock);
			return kvmm_fault_reclaim_memcg(vmf, r, idx);
		}
		kvmm_chunk_note_refault(r, c);
		kvmm_fault_read_around(r, idx, &ios);
		major = true;
	}
	if (charged) {
		kvmm_pool_uncharge(bytes);
		charged = false;
	}

	if (c->where == KVMM_CS_RESIDENT) {
		ret = kvmm_chunk_map(r, c, vmf);
		kvmm_chunk_lru_update(r, c);
		mutex_unlock(&r->lock);
		kvmm_fault_count(r);
		return ret | (major ? VM_FAULT_MAJOR : 0);
	}
	if (c->where == KVMM_CS_FLASH) {
		mutex_unlock(&r->lock);
		return kvmm_fault_sigbus(r, idx, "flash read-back failed");
	}
	seq = r->io_seq;
	mutex_unlock(&r->lock);
	ret = kvmm_fault_wait(vmf, r, idx, seq, &ios);
	if (ret)
		return ret | VM_FAULT_MAJOR;
	major = true;
	goto again;
}

/* First write through a read-only PTE of a clean or a shared chunk. */
static vm_fault_t kvmm_vm_pfn_mkwrite(struct vm_fault *vmf)
{
	struct kvmm_region *r = vmf->vma->vm_private_data;
	unsigned long idx = vmf->pgoff >> r->chunk_order;
	struct kvmm_chunk *c;
	vm_fault_t ret = 0;

	mutex_lock(&r->lock);
	c = xa_load(&r->chunks, idx);
	if (!c && xa_load(&r->shared, idx)) {
		mutex_unlock(&r->lock);
		return kvmm_mkwrite_shared(vmf, r, idx);
	} else if (c && c->where == KVMM_CS_RESIDENT) {
		/*
		 * Make the PTEs writable here, under the lock, instead of
		 * returning 0 for the core to do it after the lock is gone:
		 * by then SHARE, a copy or an eviction may have put the same
		 * page, read-only, back under an identical PTE, and the core
		 * would make a shared page writable.
		 */
		c->dirty = true;
		kvmm_chunk_lru_update(r, c);	/* no longer droppable */
		kvmm_chunk_zap_vma(r, c, vmf->vma);
		ret = kvmm_chunk_map(r, c, vmf);
	} else
		ret = VM_FAULT_NOPAGE;	/* moved meanwhile: fault again */
	mutex_unlock(&r->lock);
	return ret;
}

static const struct vm_operations_struct kvmm_vm_ops = {
	.open = kvmm_vm_open,
	.close = kvmm_vm_close,
	.fault = kvmm_vm_fault,
	.pfn_mkwrite = kvmm_vm_pfn_mkwrite,
};

static inline struct kvmm_file *kvmm_file_of(struct file *file)
{
	return file->private_data;
}

static int kvmm_region_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct kvmm_region *r = kvmm_file_of(file)->r;
	unsigned long len = vma->vm_end - vma->vm_start;
	u64 off;

	/*
	 * MAP_PRIVATE would need copy-on-write of pages the module owns. A
	 * read-only fd's MAP_SHARED mapping has VM_MAYSHARE only: the core mm
	 * cleared VM_SHARED and VM_MAYWRITE, so it can never become writable.
	 */
	if (!(vma->vm_flags & VM_MAYSHARE))
		return -EINVAL;
	if (!(file->f_mode & FMODE_WRITE) &&
	    (vma->vm_flags & (VM_WRITE | VM_MAYWRITE)))
		return -EACCES;
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
 * With r->lock held: if a chunk of the range has I/O in flight, drop the
 * lock and wait for that chunk's I/O to move on. Returns 0 when none is in
 * flight (lock still held), 1 after waiting, -EINTR on a fatal signal
 * (both with the lock dropped).
 */
static int kvmm_range_wait_in_flight(struct kvmm_region *r,
				     unsigned long first, unsigned long last)
{
	struct kvmm_chunk *c;
	unsigned long idx, seq;

	lockdep_assert_held(&r->lock);
	xa_for_each_range(&r->chunks, idx, c, first, last) {
		if (kvmm_chunk_in_flight(c)) {
			seq = r->io_seq;
			mutex_unlock(&r->lock);
			return kvmm_chunk_wait_io(r, idx, seq) ?: 1;
		}
	}
	return 0;
}

/* Chunks of the range of its own that need memory to become resident. */
static unsigned long kvmm_range_needy(struct kvmm_region *r,
				      unsigned long first, unsigned long last)
{
	unsigned long idx, present = 0, flash = 0;
	struct kvmm_chunk *c;

	struct kvmm_alias *a;

	lockdep_assert_held(&r->lock);
	xa_for_each_range(&r->chunks, idx, c, first, last) {
		present++;
		flash += c->where == KVMM_CS_FLASH;
	}
	/* Shared chunks become resident in their home (kvmm_home_ensure()). */
	xa_for_each_range(&r->shared, idx, a, first, last)
		present++;
	return last - first + 1 - present + flash;
}

/*
 * Make chunks [first, first + nr) resident. Memory for every chunk that
 * needs it is charged up front (waiting for reclaim), so a full pool fails
 * with -ENOMEM before anything changes; new chunks are zero-filled, flash
 * chunks read back and waited for. Called and returns with r->lock held;
 * drops it while waiting.
 */
static int kvmm_region_ensure_locked(struct kvmm_region *r,
				     unsigned long first, unsigned long nr)
{
	unsigned long last = first + nr - 1, idx, need;
	bool memcg_tried = false;
	struct kvmm_io_batch *batch;
	struct kvmm_chunk *c;
	u64 want;
	int err = 0;
	LIST_HEAD(ios);

	lockdep_assert_held(&r->lock);
again:
	err = kvmm_range_wait_in_flight(r, first, last);
	if (err) {
		mutex_lock(&r->lock);
		if (err < 0)
			return err;
		goto again;
	}
	need = kvmm_range_needy(r, first, last);
	if (!need)
		return kvmm_range_ensure_shared(r, first, last);
	want = (u64)need << r->chunk_shift;
	mutex_unlock(&r->lock);
	err = kvmm_pool_charge_reclaim((u64)need << r->chunk_shift);
	mutex_lock(&r->lock);
	if (err) {
		atomic64_inc(&kvmm_stats.ensure_failures);
		return err == -EINTR ? err : -ENOMEM;
	}
	/* Reclaim may have moved chunks of this very range meanwhile. */
	if (kvmm_range_needy(r, first, last) != need) {
		kvmm_pool_uncharge((u64)need << r->chunk_shift);
		goto again;
	}
	err = kvmm_range_wait_in_flight(r, first, last);
	if (err) {
		kvmm_pool_uncharge((u64)need << r->chunk_shift);
		mutex_lock(&r->lock);
		if (err < 0)
			return err;
		goto again;
	}
	batch = kvmm_io_batch_new();
	if (!batch) {
		kvmm_pool_uncharge((u64)need << r->chunk_shift);
		return -ENOMEM;
	}

	for (idx = first; idx <= last; idx++) {
		c = xa_load(&r->chunks, idx);
		if ((c && c->where != KVMM_CS_FLASH) ||
		    (!c && xa_load(&r->shared, idx)))
			continue;
		if (fatal_signal_pending(current)) {
			err = -EINTR;
			break;
		}
		need--;
		if (c) {
			/* Charge passes to the read (or is returned on failure). */
			err = kvmm_chunk_read_back(r, c, batch, false, &ios);
			if (err)
				break;
			continue;
		}
		c = kvmm_chunk_populate(r, idx, true);
		if (IS_ERR(c)) {
			err = PTR_ERR(c);
			break;
		}
		c->created = true;
		cond_resched();
	}
	if (need)
		kvmm_pool_uncharge((u64)need << r->chunk_shift);

	/* Success clears the marks; failure frees what this call zero-filled. */
	xa_for_each_range(&r->chunks, idx, c, first, last) {
		if (!c->created)
			continue;
		c->created = false;
		if (err) {
			kvmm_chunk_remove(r, c);
			atomic64_dec(&r->zero_fills);
			atomic64_dec(&kvmm_stats.zero_fills);
		} else {
			kvmm_chunk_lru_update(r, c);
		}
	}

	mutex_unlock(&r->lock);
	kvmm_io_submit_all(&ios);
	err = kvmm_io_batch_wait(batch, true) ?: err;
	/* No memory with room in the pool: the cgroup's limit; evict its own. */
	if (err == -ENOMEM && !memcg_tried) {
		memcg_tried = true;
		if (kvmm_reclaim_memcg(r, want + max_t(u64, want, SZ_4M))) {
			mutex_lock(&r->lock);
			err = 0;
			goto again;
		}
	}
	mutex_lock(&r->lock);
	if (!err)
		err = kvmm_range_ensure_shared(r, first, last);
	if (err && err != -EIO)
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
	unsigned long first, nr, last, idx, freed = 0;
	struct kvmm_alias *a;
	struct kvmm_chunk *c;
	int err;

	err = kvmm_range_get(r, uarg, &first, &nr);
	if (err)
		return err;
	last = first + nr - 1;

	mutex_lock(&r->lock);
	while ((err = kvmm_range_wait_in_flight(r, first, last))) {
		if (err < 0)
			return err;
		mutex_lock(&r->lock);
	}
	xa_for_each_range(&r->chunks, idx, c, first, last) {
		if (c->pins) {
			mutex_unlock(&r->lock);
			return -EBUSY;
		}
	}
	/* Zap every PTE first, so no process can see a freed page. */
	kvmm_region_unmap(r, first, nr);
	xa_for_each_range(&r->chunks, idx, c, first, last) {
		kvmm_chunk_remove(r, c);
		if (!(++freed % 256))
			cond_resched();
	}
	/* A shared chunk loses one sharer; the last one frees it. */
	xa_for_each_range(&r->shared, idx, a, first, last) {
		kvmm_alias_drop(r, a);
		if (!(++freed % 256))
			cond_resched();
	}
	mutex_unlock(&r->lock);

	atomic64_add(freed, &r->discards);
	atomic64_add(freed, &kvmm_stats.discards);
	return 0;
}

/* Every chunk of [first, last] resident, none with I/O in flight; r->lock held. */
static bool kvmm_range_settled(struct kvmm_region *r, unsigned long first,
			       unsigned long last)
{
	struct kvmm_chunk *c;
	unsigned long idx;

	lockdep_assert_held(&r->lock);
	for (idx = first; idx <= last; idx++) {
		c = xa_load(&r->chunks, idx);
		if (!c || c->where != KVMM_CS_RESIDENT || kvmm_chunk_in_flight(c))
			return false;
	}
	return true;
}

/* Pins through @f on chunk @idx. */
static unsigned long kvmm_file_pins(struct kvmm_file *f, unsigned long idx)
{
	void *e;

	lockdep_assert_held(&f->lock);
	e = xa_load(&f->pins, idx);
	return e ? xa_to_value(e) : 0;
}

/* Take one pin on each chunk of [first, last]; all resident, r->lock held. */
static void kvmm_range_pin(struct kvmm_region *r, unsigned long first,
			   unsigned long last, bool pin)
{
	struct kvmm_chunk *c;
	unsigned long idx;

	lockdep_assert_held(&r->lock);
	xa_for_each_range(&r->chunks, idx, c, first, last) {
		if (pin && !c->pins++)
			atomic64_inc(&r->pinned_chunks);
		else if (!pin && !--c->pins)
			atomic64_dec(&r->pinned_chunks);
		kvmm_chunk_lru_update(r, c);
		cond_resched();
	}
}

/*
 * Charge @pages pinned through @f to its opener's user->locked_vm against
 * the caller's RLIMIT_MEMLOCK (CAP_IPC_LOCK lifts the limit, not the
 * count), as io_uring charges registered buffers.
 */
static int kvmm_pin_charge(struct kvmm_file *f, unsigned long pages)
{
	unsigned long limit = rlimit(RLIMIT_MEMLOCK) >> PAGE_SHIFT;
	atomic_long_t *locked = &f->pin_user->locked_vm;
	unsigned long cur, new;
	bool unlimited = false;

	lockdep_assert_held(&f->lock);
	if (!pages)
		return 0;
	cur = atomic_long_read(locked);
	do {
		new = cur + pages;
		if (new < cur)
			return -ENOMEM;
		if (new > limit && !unlimited) {
			if (!capable(CAP_IPC_LOCK))
				return -ENOMEM;
			unlimited = true;
		}
	} while (!atomic_long_try_cmpxchg(locked, &cur, new));

	if (!f->pin_mm && current->mm) {
		mmgrab(current->mm);
		f->pin_mm = current->mm;
	}
	if (f->pin_mm)
		atomic64_add(pages, &f->pin_mm->pinned_vm);
	return 0;
}

static void kvmm_pin_uncharge(struct kvmm_file *f, unsigned long pages)
{
	lockdep_assert_held(&f->lock);
	atomic_long_sub(pages, &f->pin_user->locked_vm);
	if (f->pin_mm)
		atomic64_sub(pages, &f->pin_mm->pinned_vm);
}

/*
 * Pin through @f: charge the chunks this file did not pin yet (above),
 * make the range resident and settled, count a pin on each chunk and on
 * the file's own record of them.
 */
static long kvmm_region_pin(struct kvmm_file *f, void __user *uarg)
{
	struct kvmm_region *r = f->r;
	unsigned long first, nr, idx, last, fresh, pages;
	struct kvmm_chunk *c;
	void *e;
	int err;

	err = kvmm_range_get(r, uarg, &first, &nr);
	if (err)
		return err;
	last = first + nr - 1;

	/* A range the pool cannot hold can never be resident all at once. */
	if (nr > div64_u64(kvmm_pool_limit(), kvmm_chunk_bytes(r)))
		return -ENOMEM;

	mutex_lock(&f->lock);
	/* Walk what this file pinned, not the range: it may be huge. */
	fresh = nr;
	xa_for_each_range(&f->pins, idx, e, first, last) {
		fresh--;
		cond_resched();
	}
	pages = fresh << r->chunk_order;
	err = kvmm_pin_charge(f, pages);
	if (err)
		goto unlock_file;

	mutex_lock(&r->lock);
	xa_for_each_range(&r->chunks, idx, c, first, last) {
		if (c->pins == UINT_MAX) {
			err = -EOVERFLOW;
			break;
		}
	}
	/* Ensure drops the lock to wait for reads: reclaim, EVICT or DISCARD
	 * may have moved chunks again by the time it returns. */
	while (!err) {
		/* Pinned memory is the region's own, as the core mm breaks COW
		 * for long-term pins: shared chunks are copied first. */
		err = kvmm_range_unshare(r, first, last) ?:
		      kvmm_region_ensure_locked(r, first, nr);
		if (err || kvmm_range_settled(r, first, last))
			break;
	}
	if (!err)
		kvmm_range_pin(r, first, last, true);
	mutex_unlock(&r->lock);
	if (err)
		goto unaccount;

	/* The file's record, so UNPIN and close undo exactly these pins. */
	for (idx = first; idx <= last; idx++) {
		err = xa_err(xa_store(&f->pins, idx,
				      xa_mk_value(kvmm_file_pins(f, idx) + 1),
				      KVMM_GFP_ACCOUNT));
		if (err)
			break;
	}
	if (err) {
		while (idx-- > first) {
			unsigned long n = kvmm_file_pins(f, idx) - 1;

			if (n)
				xa_store(&f->pins, idx, xa_mk_value(n), GFP_KERNEL);
			else
				xa_erase(&f->pins, idx);
		}
		mutex_lock(&r->lock);
		kvmm_range_pin(r, first, last, false);
		mutex_unlock(&r->lock);
		goto unaccount;
	}
	f->pinned_pages += pages;
	mutex_unlock(&f->lock);
	return 0;

unaccount:
	kvmm_pin_uncharge(f, pages);
unlock_file:
	mutex_unlock(&f->lock);
	return err;
}

static long kvmm_region_unpin(struct kvmm_file *f, void __user *uarg)
{
	struct kvmm_region *r = f->r;
	unsigned long first, nr, last, idx, freed = 0;
	int err;

	err = kvmm_range_get(r, uarg, &first, &nr);
	if (err)
		return err;
	last = first + nr - 1;

	mutex_lock(&f->lock);
	for (idx = first; idx <= last; idx++) {
		if (!kvmm_file_pins(f, idx)) {
			mutex_unlock(&f->lock);
			return -EINVAL;
		}
		cond_resched();
	}
	mutex_lock(&r->lock);
	kvmm_range_pin(r, first, last, false);
	mutex_unlock(&r->lock);
	for (idx = first; idx <= last; idx++) {
		unsigned long n = kvmm_file_pins(f, idx) - 1;

		/* Replacing a present entry allocates nothing. */
		if (n) {
			xa_store(&f->pins, idx, xa_mk_value(n), GFP_KERNEL);
		} else {
			xa_erase(&f->pins, idx);
			freed++;
		}
		cond_resched();
	}
	freed <<= r->chunk_order;
	f->pinned_pages -= freed;
	kvmm_pin_uncharge(f, freed);
	mutex_unlock(&f->lock);
	return 0;
}

/* The file's last reference is gone: drop every pin made through it. */
static void kvmm_file_unpin_all(struct kvmm_file *f)
{
	struct kvmm_region *r = f->r;
	struct kvmm_chunk *c;
	unsigned long idx;
	void *e;

	mutex_lock(&f->lock);
	mutex_lock(&r->lock);
	xa_for_each(&f->pins, idx, e) {
		c = xa_load(&r->chunks, idx);
		if (WARN_ON_ONCE(!c || c->pins < xa_to_value(e)))
			continue;
		c->pins -= xa_to_value(e);
		if (!c->pins)
			atomic64_dec(&r->pinned_chunks);
		kvmm_chunk_lru_update(r, c);
		cond_resched();
	}
	mutex_unlock(&r->lock);
	xa_destroy(&f->pins);
	kvmm_pin_uncharge(f, f->pinned_pages);
	f->pinned_pages = 0;
	if (f->pin_mm) {
		mmdrop(f->pin_mm);
		f->pin_mm = NULL;
	}
	mutex_unlock(&f->lock);
}

/*
 * EVICT of the shared chunks of [first, last]: each moves once, in its home,
 * and leaves every range that shares it. r->lock held. What is in flight or
 * busy sets *@again; a home whose store must grow first is returned in
 * *@grow_home (referenced) with *@grow.
 */
static int kvmm_evict_shared(struct kvmm_region *r, unsigned long first,
			     unsigned long last, struct kvmm_io_batch *batch,
			     struct list_head *ios, bool *again,
			     struct kvmm_store **grow,
			     struct kvmm_region **grow_home)
{
	struct kvmm_region *h;
	struct kvmm_alias *a;
	unsigned long idx;
	int err = 0;

	lockdep_assert_held(&r->lock);
	xa_for_each_range(&r->shared, idx, a, first, last) {
		h = kvmm_alias_lock_home(a);
		if (kvmm_chunk_in_flight(a->hc)) {
			*again = true;
			mutex_unlock(&h->lock);
			continue;
		}
		err = kvmm_chunk_evict(h, a->hc, batch, ios);
		if (err == -EBUSY) {
			*again = true;	/* pread copying: retry */
			err = 0;
		}
		if (err == -EAGAIN) {
			*grow = h->store;
			kref_get(&h->store->ref);
			kref_get(&h->ref);
			*grow_home = h;
			*again = true;
			err = 0;
			mutex_unlock(&h->lock);
			break;
		}
		mutex_unlock(&h->lock);
		if (err)
			break;
	}
	return err;
}

static long kvmm_region_evict(struct kvmm_region *r, void __user *uarg)
{
	unsigned long first, nr, last, idx;
	struct kvmm_io_batch *batch;
	struct kvmm_chunk *c;
	bool again;
	int err;

	err = kvmm_range_get(r, uarg, &first, &nr);
	if (err)
		return err;
	last = first + nr - 1;

	mutex_lock(&r->lock);
	xa_for_each_range(&r->chunks, idx, c, first, last) {
		if (c->pins) {
			mutex_unlock(&r->lock);
			return -EBUSY;
		}
	}
	do {
		struct kvmm_region *grow_r = r, *grow_home = NULL;
		struct kvmm_store *grow = NULL;
		LIST_HEAD(ios);

		again = false;
		/* The shrinker only trylocks: allocating under the lock is safe. */
		batch = kvmm_io_batch_new();
		if (!batch) {
			err = -ENOMEM;
			break;
		}
		xa_for_each_range(&r->chunks, idx, c, first, last) {
			if (kvmm_chunk_in_flight(c)) {
				again = true;	/* a read in flight: evict after */
				continue;
			}
			err = kvmm_chunk_evict(r, c, batch, &ios);
			if (err == -EBUSY && !c->pins) {
				again = true;	/* pread/pwrite copying: retry */
				err = 0;
			}
			if (err == -EAGAIN) {
				grow = r->store;	/* the file needs room first */
				kref_get(&grow->ref);
				again = true;
				err = 0;
				break;
			}
			if (err)
				break;
		}
		if (!err && !grow)
			err = kvmm_evict_shared(r, first, last, batch, &ios, &again,
						&grow, &grow_home);
		mutex_unlock(&r->lock);
		kvmm_io_submit_all(&ios);
		/* Killable: a hung store holds only this caller until its signal. */
		err = kvmm_io_batch_wait(batch, true) ?: err;
		if (grow_home)
			grow_r = grow_home;
		if (grow) {
			err = err ?: kvmm_store_grow_wait(grow, grow_r, 0);
			kvmm_store_put(grow);
			if (grow_home)
				kvmm_region_put(grow_home);
		} else if (again && !err) {
			if (fatal_signal_pending(current))
				return -EINTR;
			schedule_timeout_killable(1);
		}
		if (err == -EINTR)
			return err;
		mutex_lock(&r->lock);
	} while (again && !err);
	mutex_unlock(&r->lock);
	return err;
}

/*
 * PREFETCH of the shared chunks of [first, last]: read back in their homes
 * onto @ios (@queued of them so far, submitted a merged I/O's worth at a
 * time). Called and returns without r->lock.
 */
static int kvmm_prefetch_shared(struct kvmm_region *r, unsigned long first,
				unsigned long last, struct list_head *ios,
				unsigned long queued)
{
	unsigned long run = max(KVMM_IO_RUN_PAGES >> r->chunk_order, 1UL), idx;
	u64 bytes = kvmm_chunk_bytes(r);
	struct kvmm_region *h;
	struct kvmm_alias *a;
	struct kvmm_chunk *c;
	int err = 0;

	for (idx = first; !err && idx <= last; idx++) {
		bool charged = false;
retry:
		if (fatal_signal_pending(current)) {
			err = -EINTR;
			if (charged)
				kvmm_pool_uncharge(bytes);
			break;
		}
		mutex_lock(&r->lock);
		a = xa_find(&r->shared, &idx, last, XA_PRESENT);
		if (!a) {
			mutex_unlock(&r->lock);
			if (charged)
				kvmm_pool_uncharge(bytes);
			break;
		}
		h = kvmm_alias_lock_home(a);
		c = a->hc;
		if (c->where == KVMM_CS_FLASH && !c->io_err) {
			if (!charged && (!queued || kvmm_pool_charge_nowait(bytes))) {
				mutex_unlock(&h->lock);
				mutex_unlock(&r->lock);
				kvmm_io_submit_all(ios);
				queued = 0;
				err = kvmm_pool_charge_reclaim(bytes);
				if (err)
					break;
				charged = true;
				goto retry;
			}
			/* Takes the charge, or returns it on failure. */
			err = kvmm_chunk_read_back(h, c, NULL, false, ios);
			queued += !err;
			charged = false;
		}
		mutex_unlock(&h->lock);
		mutex_unlock(&r->lock);
		if (charged)
			kvmm_pool_uncharge(bytes);
		if (queued >= run) {
			kvmm_io_submit_all(ios);
			queued = 0;
		}
		if (idx == last)
			break;
	}
	kvmm_io_submit_all(ios);
	return err;
}

static long kvmm_region_prefetch(struct kvmm_region *r, void __user *uarg)
{
	unsigned long first, nr, last, idx, queued = 0;
	unsigned long run = max(KVMM_IO_RUN_PAGES >> r->chunk_order, 1UL);
	u64 bytes = kvmm_chunk_bytes(r);
	struct kvmm_chunk *c;
	LIST_HEAD(ios);
	int err;

	err = kvmm_range_get(r, uarg, &first, &nr);
	if (err)
		return err;
	last = first + nr - 1;

	/*
	 * Visit only chunks that exist: a range may span 2^28 empty ones.
	 * Reads are queued up to a merged I/O's worth while the pool charges
	 * without waiting, and submitted before any wait for reclaim.
	 */
	for (idx = first; !err && idx <= last; idx++) {
		mutex_lock(&r->lock);
		c = xa_find(&r->chunks, &idx, last, XA_PRESENT);
		while (c && c->where != KVMM_CS_FLASH)
			c = xa_find_after(&r->chunks, &idx, last, XA_PRESENT);
		mutex_unlock(&r->lock);
		if (!c)
			break;
		if (fatal_signal_pending(current)) {
			err = -EINTR;
			break;
		}
		if (!queued || kvmm_pool_charge_nowait(bytes)) {
			kvmm_io_submit_all(&ios);
			queued = 0;
			err = kvmm_pool_charge_reclaim(bytes);
			if (err)
				break;
		}
		mutex_lock(&r->lock);
		c = xa_load(&r->chunks, idx);
		if (c && c->where == KVMM_CS_FLASH) {
			err = kvmm_chunk_read_back(r, c, NULL, false, &ios);
			queued += !err;
		} else {
			kvmm_pool_uncharge(bytes);
		}
		mutex_unlock(&r->lock);
		if (queued >= run) {
			kvmm_io_submit_all(&ios);
			queued = 0;
		}
	}
	if (!err)
		err = kvmm_prefetch_shared(r, first, last, &ios, queued);
	kvmm_io_submit_all(&ios);
	return err == -EINTR ? err : err ? -ENOMEM : 0;
}

static long kvmm_region_wait(struct kvmm_region *r, void __user *uarg)
{
	unsigned long first, nr, last, idx, seq;
	struct kvmm_chunk *c;
	int err;

	err = kvmm_range_get(r, uarg, &first, &nr);
	if (err)
		return err;
	last = first + nr - 1;

	for (;;) {
		struct kvmm_region *wait_r = r, *h;
		struct kvmm_alias *a;
		bool busy = false;
		int ret;

		err = 0;
		mutex_lock(&r->lock);
		xa_for_each_range(&r->chunks, idx, c, first, last) {
			busy |= kvmm_chunk_in_flight(c);
			if (c->where == KVMM_CS_FLASH && c->io_err)
				err = -EIO;
		}
		seq = r->io_seq;
		/* Shared chunks' I/O runs in their homes: wait there. */
		xa_for_each_range(&r->shared, idx, a, first, last) {
			if (busy)
				break;
			h = kvmm_alias_lock_home(a);
			if (kvmm_chunk_in_flight(a->hc)) {
				busy = true;
				wait_r = h;
				seq = h->io_seq;
				kref_get(&h->ref);
			} else if (a->hc->where == KVMM_CS_FLASH && a->hc->io_err) {
				err = -EIO;
			}
			mutex_unlock(&h->lock);
		}
		mutex_unlock(&r->lock);
		if (!busy)
			return err;
		ret = wait_event_interruptible(wait_r->io_wait,
					       READ_ONCE(wait_r->io_seq) != seq);
		if (wait_r != r)
			kvmm_region_put(wait_r);
		if (ret)
			return -EINTR;
	}
}

static long kvmm_region_set_backing(struct kvmm_region *r, void __user *uarg)
{
	struct kvmm_backing a;
	struct kvmm_store *b = NULL, *old;
	struct file *file;

	if (copy_from_user(&a, uarg, sizeof(a)))
		return -EFAULT;
	if (a.flags || a.reserved0 || a.reserved[0] || a.reserved[1])
		return -EINVAL;
	if (a.fd != KVMM_BACKING_NONE) {
		file = fget(a.fd);
		if (!file)
			return -EBADF;
		b = kvmm_store_from_file(file);
		fput(file);
		if (IS_ERR(b))
			return PTR_ERR(b);
	}

	mutex_lock(&r->lock);
	if (atomic64_read(&r->slot_chunks)) {
		mutex_unlock(&r->lock);
		kvmm_store_put(b);
		return -EBUSY;
	}
	old = r->store;
	r->store = b;
	mutex_unlock(&r->lock);
	kvmm_store_put(old);
	return 0;
}

static long kvmm_region_stat(struct kvmm_region *r, void __user *uarg)
{
	unsigned int shift = r->chunk_shift;
	struct kvmm_region_stat st = {
		.size = r->size,
		.chunk_bytes = kvmm_chunk_bytes(r),
		.id = r->id,
		.numa_node = r->nid,
		.priority = r->priority,
		.resident_bytes = atomic64_read(&r->resident_chunks) << shift,
		.pinned_bytes = atomic64_read(&r->pinned_chunks) << shift,
		.mappings = atomic_read(&r->mappings),
		.faults = atomic64_read(&r->faults),
		.zero_fills = atomic64_read(&r->zero_fills),
		.discards = atomic64_read(&r->discards),
		.fault_failures = atomic64_read(&r->fault_failures),
		.bytes_read = atomic64_read(&r->bytes_read),
		.bytes_written = atomic64_read(&r->bytes_written),
		.flash_bytes = atomic64_read(&r->slot_chunks) << shift,
		.evictions = atomic64_read(&r->evictions),
		.clean_drops = atomic64_read(&r->clean_drops),
		.flash_bytes_written = atomic64_read(&r->flash_bytes_written),
		.prefetches = atomic64_read(&r->prefetches),
		.fault_backs = atomic64_read(&r->fault_backs),
		.flash_bytes_read = atomic64_read(&r->flash_bytes_read),
		.refaults = atomic64_read(&r->refaults),
		.csum_failures = atomic64_read(&r->csum_failures),
		.io_errors = atomic64_read(&r->io_errors),
		.buffered_ios = atomic64_read(&r->buffered_ios),
		.flash_resident_bytes = atomic64_read(&r->flash_chunks) << shift,
		.inflight_ios = atomic_read(&r->inflight),
		.shared_bytes = atomic64_read(&r->shared_chunks) << shift,
	};

	return copy_to_user(uarg, &st, sizeof(st)) ? -EFAULT : 0;
}

static u8 kvmm_chunk_state(const struct kvmm_chunk *c)
{
	u8 s;

	if (!c)
		return KVMM_CHUNK_EMPTY;
	switch (c->where) {
	case KVMM_CS_RESIDENT:
		s = KVMM_CHUNK_RESIDENT | (c->dirty ? KVMM_CHUNK_DIRTY : 0);
		break;
	case KVMM_CS_WRITING:
		s = KVMM_CHUNK_RESIDENT | KVMM_CHUNK_WRITING;
		break;
	case KVMM_CS_READING:
		s = KVMM_CHUNK_FLASH | KVMM_CHUNK_READING;
		break;
	default:
		s = KVMM_CHUNK_FLASH | (c->io_err ? KVMM_CHUNK_ERROR : 0);
		break;
	}
	return s | (c->pins ? KVMM_CHUNK_PINNED : 0);
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
		struct kvmm_region *h;
		struct kvmm_alias *a;

		mutex_lock(&r->lock);
		for (i = 0; i < n; i++) {
			unsigned long idx = q.first_chunk + done + i;

			a = xa_load(&r->shared, idx);
			if (!a) {
				buf[i] = kvmm_chunk_state(xa_load(&r->chunks, idx));
				continue;
			}
			h = kvmm_alias_lock_home(a);
			buf[i] = kvmm_chunk_state(a->hc) | KVMM_CHUNK_SHARED;
			mutex_unlock(&h->lock);
		}
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

static struct file *kvmm_region_file(struct kvmm_region *r, int flags);

/* A new O_RDONLY file on the same region (KVMM_IOC_DUP_RDONLY). */
static long kvmm_region_dup_rdonly(struct kvmm_region *r, void __user *uarg)
{
	struct kvmm_dup a;
	struct file *file;
	int fd, flags;

	if (copy_from_user(&a, uarg, sizeof(a)))
		return -EFAULT;
	if (a.flags & ~KVMM_DUP_FLAGS_ALL || a.reserved[0] ||
	    a.reserved[1])
		return -EINVAL;
	flags = O_RDONLY | (a.flags & KVMM_DUP_CLOEXEC ? O_CLOEXEC : 0);
	fd = get_unused_fd_flags(flags);
	if (fd < 0)
		return fd;
	file = kvmm_region_file(r, flags);
	if (IS_ERR(file)) {
		put_unused_fd(fd);
		return PTR_ERR(file);
	}
	a.fd = fd;
	if (copy_to_user(uarg, &a, sizeof(a))) {
		fput(file);
		put_unused_fd(fd);
		return -EFAULT;
	}
	fd_install(fd, file);
	return 0;
}

static long kvmm_region_ioctl(struct file *file, unsigned int cmd,
			      unsigned long arg)
{
	struct kvmm_file *f = kvmm_file_of(file);
	struct kvmm_region *r = f->r;
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case KVMM_IOC_ENSURE:
		return kvmm_region_ensure(r, uarg);
	case KVMM_IOC_DISCARD:
		/* Destroys data: not through a read-only fd. */
		if (f->rdonly)
			return -EBADF;
		return kvmm_region_discard(r, uarg);
	case KVMM_IOC_STAT:
		return kvmm_region_stat(r, uarg);
	case KVMM_IOC_QUERY:
		return kvmm_region_query(r, uarg);
	case KVMM_IOC_PIN:
		return kvmm_region_pin(f, uarg);
	case KVMM_IOC_UNPIN:
		return kvmm_region_unpin(f, uarg);
	case KVMM_IOC_SET_BACKING:
		if (f->rdonly)
			return -EBADF;
		return kvmm_region_set_backing(r, uarg);
	case KVMM_IOC_EVICT:
		return kvmm_region_evict(r, uarg);
	case KVMM_IOC_PREFETCH:
		return kvmm_region_prefetch(r, uarg);
	case KVMM_IOC_WAIT:
		return kvmm_region_wait(r, uarg);
	case KVMM_IOC_DUP_RDONLY:
		return kvmm_region_dup_rdonly(r, uarg);
	case KVMM_IOC_SHARE:
		/* Replaces the destination's data: not through a read-only fd. */
		if (f->rdonly)
			return -EBADF;
		return kvmm_region_share(r, uarg);
	default:
		return -ENOTTY;
	}
}

static __poll_t kvmm_region_poll(struct file *file, poll_table *wait)
{
	struct kvmm_region *r = kvmm_file_of(file)->r;

	poll_wait(file, &r->io_wait, wait);
	return atomic_read(&r->inflight) ? 0 : EPOLLIN | EPOLLRDNORM;
}

/* ---- pread / pwrite ----------------------------------------------------- */

/*
 * Take references on the pages of chunk @idx that hold bytes
 * [off, off + len) of the chunk, so they can be copied without r->lock.
 * A chunk on flash is read back first. With @write, an empty chunk is
 * populated and the chunk becomes dirty. Returns the number of pages
 * referenced, 0 for an empty chunk being read, or a negative errno.
 */
static int kvmm_chunk_get_pages(struct kvmm_region *r, unsigned long idx,
				u64 off, u64 len, bool write,
				struct page **pages)
{
	unsigned int first = off >> PAGE_SHIFT;
	unsigned int last = (off + len - 1) >> PAGE_SHIFT, i;
	int err;

	mutex_lock(&r->lock);
	for (;;) {
		struct kvmm_chunk *c = xa_load(&r->chunks, idx);
		struct kvmm_alias *a = c ? NULL : xa_load(&r->shared, idx);

		if (a && write) {
			/* A write copies a shared chunk first. */
			err = kvmm_range_unshare(r, idx, idx);
			if (err) {
				mutex_unlock(&r->lock);
				return err;
			}
			continue;
		}
		if (a) {
			struct kvmm_region *h = kvmm_alias_lock_home(a);
			unsigned long hidx = a->hc->idx;

			if (a->hc->where == KVMM_CS_RESIDENT) {
				for (i = first; i <= last; i++) {
					pages[i - first] = a->hc->pages[i];
					get_page(pages[i - first]);
				}
				kvmm_chunk_lru_update(h, a->hc);
				mutex_unlock(&h->lock);
				mutex_unlock(&r->lock);
				return last - first + 1;
			}
			kref_get(&h->ref);
			mutex_unlock(&h->lock);
			mutex_unlock(&r->lock);
			err = kvmm_home_ensure(h, hidx);
			kvmm_region_put_deferred(h);
			if (err && err != -EAGAIN)
				return err;
			mutex_lock(&r->lock);
			continue;
		}
		if (!c && !write) {
			mutex_unlock(&r->lock);
			return 0;
		}
		if (c && c->where == KVMM_CS_RESIDENT) {
			for (i = first; i <= last; i++) {
				pages[i - first] = c->pages[i];
				get_page(pages[i - first]);
			}
			if (write)
				c->dirty = true;
			kvmm_chunk_lru_update(r, c);
			mutex_unlock(&r->lock);
			return last - first + 1;
		}
		if (c && c->where == KVMM_CS_FLASH && c->io_err) {
			mutex_unlock(&r->lock);
			return -EIO;
		}
		err = kvmm_region_ensure_locked(r, idx, 1);
		if (err) {
			mutex_unlock(&r->lock);
			return err;
		}
	}
}

/* Copy between the iterator and the region, at most one chunk per step. */
static ssize_t kvmm_region_rw(struct kiocb *iocb, struct iov_iter *iter,
			      bool write)
{
	struct kvmm_region *r = kvmm_file_of(iocb->ki_filp)->r;
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
		unsigned long idx = pos >> r->chunk_shift;
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
	struct kvmm_region *r = kvmm_file_of(file)->r;

	return fixed_size_llseek(file, offset, whence, r->size);
}

/* ---- lifetime ----------------------------------------------------------- */

/* The last reference is gone: no mapping, no I/O, no reclaim holds it. */
static void kvmm_region_free(struct kref *ref)
{
	struct kvmm_region *r = container_of(ref, struct kvmm_region, ref);
	struct kvmm_chunk *c;
	unsigned long idx;

	if (r->is_home) {
		mutex_lock(&kvmm_regions_lock);
		list_del(&r->node);
		kvmm_nr_homes--;
		mutex_unlock(&kvmm_regions_lock);
	}
	mutex_lock(&r->lock);
	/* Its aliases went with its last file (kvmm_region_release()). */
	WARN_ON(!xa_empty(&r->shared));
	/* A home is freed once its last chunk is. */
	WARN_ON(r->is_home && !xa_empty(&r->chunks));
	xa_for_each(&r->chunks, idx, c) {
		kvmm_chunk_remove(r, c);
		cond_resched();
	}
	mutex_unlock(&r->lock);
	xa_destroy(&r->chunks);
	if (r->home)
		kvmm_region_put(r->home);
	kvmm_store_put(r->store);
	ida_free(&kvmm_region_ida, r->id);
	put_pid(r->owner_pid);
	mem_cgroup_put(r->memcg);
	if (r->blkcg_css)
		css_put(r->blkcg_css);
	mutex_destroy(&r->lock);
	kfree(r);
}

void kvmm_region_put(struct kvmm_region *r)
{
	kref_put(&r->ref, kvmm_region_free);
}

static void kvmm_region_free_work(struct work_struct *work)
{
	kvmm_region_free(&container_of(work, struct kvmm_region, free_work)->ref);
}

static void kvmm_region_free_later(struct kref *ref)
{
	struct kvmm_region *r = container_of(ref, struct kvmm_region, ref);

	INIT_WORK(&r->free_work, kvmm_region_free_work);
	kvmm_queue_done_work(&r->free_work);
}

/*
 * For the shrinker: it runs inside any allocation, perhaps under a store
 * lock the free would take, so a last reference dropped there frees the
 * region on kvmm's completion workers (which module exit drains).
 */
void kvmm_region_put_deferred(struct kvmm_region *r)
{
	kref_put(&r->ref, kvmm_region_free_later);
}

/*
 * A file's last reference is gone: its pins go. When it was the region's
 * last file (every mapping holds one), stop new I/O and let in-flight I/O
 * end before the region goes.
 */
static int kvmm_region_release(struct inode *inode, struct file *file)
{
	struct kvmm_file *f = kvmm_file_of(file);
	struct kvmm_region *r = f->r;

	kvmm_file_unpin_all(f);
	free_uid(f->pin_user);
	mutex_destroy(&f->lock);
	kfree(f);
	simple_release_fs(&kvmm_mnt, &kvmm_mnt_count);
	if (!atomic_dec_and_test(&r->files)) {
		kvmm_region_put(r);
		return 0;
	}

	mutex_lock(&kvmm_regions_lock);
	list_del(&r->node);
	kvmm_nr_regions--;
	mutex_unlock(&kvmm_regions_lock);

	/*
	 * No new I/O. I/O in flight holds the region, its store and the
	 * module, and settles later: close never waits for a slow store.
	 */
	mutex_lock(&r->lock);
	r->dying = true;
	/*
	 * Aliases go now, while the inode that homes unmap them through
	 * still exists: no mapping is left (each holds a file).
	 */
	kvmm_region_drop_aliases(r);
	mutex_unlock(&r->lock);

	inode->i_private = NULL;
	kvmm_region_put(r);
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
	.poll = kvmm_region_poll,
};

/* The region of a kvmm region file, or NULL for any other file. */
struct kvmm_region *kvmm_region_of_file(struct file *file, bool *rdonly)
{
	struct kvmm_file *f;

	if (file->f_op != &kvmm_region_fops)
		return NULL;
	f = kvmm_file_of(file);
	*rdonly = f->rdonly;
	return f->r;
}

/*
 * A home for the chunks @src shares (share.c): no file, no inode, the
 * chunk size, node, priority, store and cgroups of @src, so its chunks stay
 * charged where they were allocated. On kvmm_regions for reclaim, never
 * listed. The reference returned is for src->home. Called without locks.
 */
struct kvmm_region *kvmm_home_new(struct kvmm_region *src)
{
	static struct lock_class_key home_lock_key;
	struct kvmm_region *h;
	int id;

	h = kzalloc(sizeof(*h), KVMM_GFP_ACCOUNT);
	if (!h)
		return NULL;
	id = ida_alloc_min(&kvmm_region_ida, 1, GFP_KERNEL);
	if (id < 0) {
		kfree(h);
		return NULL;
	}
	kref_init(&h->ref);
	mutex_init(&h->lock);
	lockdep_set_class(&h->lock, &home_lock_key);
	xa_init(&h->chunks);
	xa_init(&h->shared);
	INIT_LIST_HEAD(&h->node);
	INIT_LIST_HEAD(&h->lru);
	init_waitqueue_head(&h->io_wait);
	init_waitqueue_head(&h->chunk_wait);
	h->is_home = true;
	h->id = id;
	h->size = src->size;
	h->nr_chunks = ULONG_MAX;
	h->chunk_shift = src->chunk_shift;
	h->chunk_order = src->chunk_order;
	h->nid = src->nid;
	h->priority = src->priority;
	h->owner_tgid = src->owner_tgid;
	h->owner_pid = get_pid(src->owner_pid);
	h->owner_uid = src->owner_uid;
	memcpy(h->owner_comm, src->owner_comm, sizeof(h->owner_comm));
	h->memcg = src->memcg;
#ifdef CONFIG_MEMCG
	if (h->memcg)
		css_get(&h->memcg->css);
#endif
	h->blkcg_css = src->blkcg_css;
	if (h->blkcg_css)
		css_get(h->blkcg_css);
	mutex_lock(&src->lock);
	h->store = src->store;
	if (h->store)
		kref_get(&h->store->ref);
	mutex_unlock(&src->lock);

	mutex_lock(&kvmm_regions_lock);
	list_add_tail(&h->node, &kvmm_regions);
	kvmm_nr_homes++;
	mutex_unlock(&kvmm_regions_lock);
	return h;
}

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

/*
 * A file on @r: the first one gets the region's own inode, later ones
 * (read-only dups) share it, so unmap_mapping_range() reaches every mapping.
 * Each file holds a region reference and counts in r->files.
 */
static struct file *kvmm_region_file(struct kvmm_region *r, int flags)
{
	struct kvmm_file *f;
	struct inode *inode;
	struct file *file;
	int err;

	f = kzalloc(sizeof(*f), KVMM_GFP_ACCOUNT);
	if (!f)
		return ERR_PTR(-ENOMEM);
	f->r = r;
	f->rdonly = (flags & O_ACCMODE) == O_RDONLY;
	mutex_init(&f->lock);
	xa_init(&f->pins);
	f->pin_user = get_uid(current_user());

	/* Released by this file's ->release (its own mntget outlives that). */
	err = simple_pin_fs(&kvmm_fs_type, &kvmm_mnt, &kvmm_mnt_count);
	if (err)
		goto free_file;
	if (r->inode) {
		inode = r->inode;
		ihold(inode);
	} else {
		inode = alloc_anon_inode(kvmm_mnt->mnt_sb);
		if (IS_ERR(inode)) {
			err = PTR_ERR(inode);
			goto release_fs;
		}
		inode->i_size = r->size;
		inode->i_private = r;
	}

	/* The file pins the module until its final fput(), via fops->owner. */
	__module_get(THIS_MODULE);
	file = alloc_file_pseudo(inode, kvmm_mnt, "kvmm-region", flags,
				 &kvmm_region_fops);
	if (IS_ERR(file)) {
		err = PTR_ERR(file);
		module_put(THIS_MODULE);
		iput(inode);
		goto release_fs;
	}
	/* pwrite on a read-only file: vfs_write's EBADF, not ESPIPE. */
	file->f_mode |= FMODE_PREAD | FMODE_PWRITE;
	file->private_data = f;
	r->inode = inode;
	kref_get(&r->ref);
	atomic_inc(&r->files);
	return file;

release_fs:
	simple_release_fs(&kvmm_mnt, &kvmm_mnt_count);
free_file:
	free_uid(f->pin_user);
	kfree(f);
	return ERR_PTR(err);
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
	/* Protecting a region from eviction at others' expense is privileged. */
	if (arg->priority > KVMM_PRIORITY_DEFAULT && !capable(CAP_SYS_NICE))
		return -EPERM;
	flags = O_RDWR | (arg->flags & KVMM_CREATE_CLOEXEC ? O_CLOEXEC : 0);

	r = kzalloc(sizeof(*r), KVMM_GFP_ACCOUNT);
	if (!r)
		return -ENOMEM;
	kref_init(&r->ref);	/* this call's; each file takes its own */
	mutex_init(&r->lock);
	xa_init(&r->chunks);
	xa_init(&r->shared);
	INIT_LIST_HEAD(&r->node);
	INIT_LIST_HEAD(&r->lru);
	init_waitqueue_head(&r->io_wait);
	init_waitqueue_head(&r->chunk_wait);
	r->size = arg->size;
	r->chunk_shift = ilog2(arg->chunk_bytes);
	r->chunk_order = r->chunk_shift - PAGE_SHIFT;
	r->nr_chunks = r->size >> r->chunk_shift;
	r->nid = arg->numa_node;
	r->priority = arg->priority;
	r->owner_tgid = task_tgid_nr(current);
	r->owner_pid = get_task_pid(current, PIDTYPE_TGID);
	r->owner_uid = current_euid();
	get_task_comm(r->owner_comm, current);
	/* The creator's cgroups pay for the region, whoever touches it later. */
	r->memcg = get_mem_cgroup_from_mm(current->mm);
#ifdef CONFIG_BLK_CGROUP
	r->blkcg_css = task_get_css(current, io_cgrp_id);
#endif

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
		kvmm_region_put(r);
		return -EFAULT;
	}
	fd_install(fd, file);
	atomic64_inc(&kvmm_stats.regions_created);
	kvmm_region_put(r);	/* the file holds it now */
	return 0;

put_fd:
	put_unused_fd(fd);
free_id:
	ida_free(&kvmm_region_ida, r->id);
free_region:
	put_pid(r->owner_pid);
	mem_cgroup_put(r->memcg);
	if (r->blkcg_css)
		css_put(r->blkcg_css);
	kfree(r);
	return err;
}

static int kvmm_region_info_cmp(const void *a, const void *b)
{
	const struct kvmm_region_info *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

/* Fill the caller's array with live regions, in id order. */
long kvmm_region_list(struct kvmm_region_list __user *uarg)
{
	struct kvmm_region_info *info = NULL;
	struct kvmm_region_list a;
	struct kvmm_region *r;
	u32 n = 0, cap;
	int err = 0;
	kuid_t euid;
	bool all;

	if (copy_from_user(&a, uarg, sizeof(a)))
		return -EFAULT;
	if (a.flags || a.reserved0 || a.reserved[0] || a.reserved[1])
		return -EINVAL;
	cap = min_t(u32, a.capacity, 1U << 16);
	if (cap) {
		info = kvcalloc(cap, sizeof(*info), GFP_KERNEL);
		if (!info)
			return -ENOMEM;
	}

	all = capable(CAP_SYS_ADMIN);
	euid = current_euid();
	mutex_lock(&kvmm_regions_lock);
	/* The list is in creation order; ids are reused, so sort below. */
	list_for_each_entry(r, &kvmm_regions, node) {
		struct kvmm_region_info *i;
		unsigned int shift = r->chunk_shift;

		if (r->is_home)		/* kvmm's own, counted in shared_bytes */
			continue;
		/* Tenants see their own regions; pids as their namespace has them. */
		if (!all && !uid_eq(r->owner_uid, euid))
			continue;
		if (n++ >= cap)
			continue;
		i = &info[n - 1];
		i->id = r->id;
		/* A dead creator's number may belong to someone else now. */
		i->owner_pid = pid_has_task(r->owner_pid, PIDTYPE_TGID) ?
			       pid_vnr(r->owner_pid) : 0;
		i->size = r->size;
		i->chunk_bytes = kvmm_chunk_bytes(r);
		i->numa_node = r->nid;
		i->priority = r->priority;
		i->mappings = atomic_read(&r->mappings);
		i->resident_bytes = atomic64_read(&r->resident_chunks) << shift;
		i->pinned_bytes = atomic64_read(&r->pinned_chunks) << shift;
		i->flash_bytes = atomic64_read(&r->slot_chunks) << shift;
		i->flash_resident_bytes = atomic64_read(&r->flash_chunks) << shift;
		i->shared_bytes = atomic64_read(&r->shared_chunks) << shift;
		strscpy(i->owner_comm, r->owner_comm, sizeof(i->owner_comm));
	}
	mutex_unlock(&kvmm_regions_lock);

	if (info)
		sort(info, min(n, cap), sizeof(*info), kvmm_region_info_cmp, NULL);
	a.count = n;
	if (info && copy_to_user(u64_to_user_ptr(a.regions), info,
				 (size_t)min(n, cap) * sizeof(*info)))
		err = -EFAULT;
	else if (copy_to_user(uarg, &a, sizeof(a)))
		err = -EFAULT;
	kvfree(info);
	return err;
}

/* ---- the private filesystem that gives every region its own inode ---- */

static int kvmm_fs_init_fs_context(struct fs_context *fc)
{
	return init_pseudo(fc, KVMM_FS_MAGIC) ? 0 : -ENOMEM;
}

/*
 * Mounted while any region file exists (simple_pin_fs). The superblock
 * holds a module reference through .owner, so the module stays until the
 * last file's final mntput, which __fput() does after ->release and after
 * dropping the file's own module reference.
 */
static struct file_system_type kvmm_fs_type = {
	.owner = THIS_MODULE,
	.name = "kvmm",
	.init_fs_context = kvmm_fs_init_fs_context,
	.kill_sb = kill_anon_super,
};
