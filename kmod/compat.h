/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Every difference between the kernels kvmm builds for (6.1 and 6.12) is
 * hidden here, so the rest of the module reads as plain current kernel code.
 */
#ifndef KVMM_COMPAT_H
#define KVMM_COMPAT_H

#include <linux/version.h>
#include <linux/fs.h>
#include <linux/list_lru.h>
#include <linux/mm.h>
#include <linux/shrinker.h>
#include <linux/slab.h>
#include <linux/swap.h>

/* 6.3 made vma->vm_flags const and added the vm_flags_set() helper. */
static inline void kvmm_vm_flags_set(struct vm_area_struct *vma,
				     unsigned long flags)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
	vm_flags_set(vma, flags);
#else
	vma->vm_flags |= flags;
#endif
}

/* 6.3 replaced the user_namespace argument of notify_change() by an idmap. */
static inline int kvmm_notify_change(struct dentry *dentry, struct iattr *attr)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
	return notify_change(&nop_mnt_idmap, dentry, attr, NULL);
#else
	return notify_change(&init_user_ns, dentry, attr, NULL);
#endif
}

/*
 * 6.7 replaced register_shrinker() on a caller-owned struct by
 * shrinker_alloc()/shrinker_register()/shrinker_free().
 */
static inline struct shrinker *
kvmm_shrinker_create(const char *name,
		     unsigned long (*count)(struct shrinker *,
					    struct shrink_control *),
		     unsigned long (*scan)(struct shrinker *,
					   struct shrink_control *))
{
	struct shrinker *s;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 7, 0)
	s = shrinker_alloc(SHRINKER_NUMA_AWARE, "%s", name);
	if (!s)
		return ERR_PTR(-ENOMEM);
	s->count_objects = count;
	s->scan_objects = scan;
	shrinker_register(s);
#else
	int err;

	s = kzalloc(sizeof(*s), GFP_KERNEL);
	if (!s)
		return ERR_PTR(-ENOMEM);
	s->count_objects = count;
	s->scan_objects = scan;
	s->seeks = DEFAULT_SEEKS;
	s->flags = SHRINKER_NUMA_AWARE;
	err = register_shrinker(s, "%s", name);
	if (err) {
		kfree(s);
		return ERR_PTR(err);
	}
#endif
	return s;
}

static inline void kvmm_shrinker_destroy(struct shrinker *s)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 7, 0)
	shrinker_free(s);
#else
	unregister_shrinker(s);
	kfree(s);
#endif
}

/*
 * 6.8 made list_lru_add/del take the node (and memcg) explicitly; before,
 * the node is that of the item's memory, so callers allocate the item on
 * the node they pass.
 */
static inline void kvmm_list_lru_add(struct list_lru *lru,
				     struct list_head *item, int nid)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 8, 0)
	list_lru_add(lru, item, nid, NULL);
#else
	list_lru_add(lru, item);
#endif
}

static inline void kvmm_list_lru_del(struct list_lru *lru,
				     struct list_head *item, int nid)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 8, 0)
	list_lru_del(lru, item, nid, NULL);
#else
	list_lru_del(lru, item);
#endif
}

/* 6.5 added per-VMA lock faults; release whichever lock the fault holds. */
static inline void kvmm_fault_unlock(struct vm_fault *vmf)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 5, 0)
	release_fault_lock(vmf);
#else
	mmap_read_unlock(vmf->vma->vm_mm);
#endif
}

/*
 * Pages a shrinker frees outside the slab allocator count as reclaim
 * progress only when added to current->reclaim_state; without that, direct
 * reclaim sees none and goes to the OOM killer. 6.4 added a helper for it.
 */
static inline void kvmm_account_reclaimed_pages(unsigned long pages)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 4, 0)
	mm_account_reclaimed_pages(pages);
#else
	if (current->reclaim_state)
		current->reclaim_state->reclaimed_slab += pages;
#endif
}

#endif /* KVMM_COMPAT_H */
