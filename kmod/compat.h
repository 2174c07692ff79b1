/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Every difference between the kernels kvmm builds for (6.1 and 6.12) is
 * hidden here, so the rest of the module reads as plain current kernel code.
 */
#ifndef KVMM_COMPAT_H
#define KVMM_COMPAT_H

#include <linux/version.h>
#include <linux/fs.h>
#include <linux/mm.h>

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

#endif /* KVMM_COMPAT_H */
