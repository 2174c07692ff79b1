/* SPDX-License-Identifier: MIT */
/*
 * What cuda_alloc.c offers libkvmm's own users (the LD_PRELOAD shim)
 * beyond the public allocator API of kvmm.h.
 */
#ifndef KVMM_LIB_CUDA_ALLOC_H
#define KVMM_LIB_CUDA_ALLOC_H

#include <stdint.h>

#include <kvmm/kvmm.h>

/*
 * kvmm_cuda_alloc_wake_all() - map every allocation of a sleeping @alloc
 * again and put its contents back, or none: when one cannot be mapped or
 * restored (-ENOMEM, -EDQUOT, -EIO), those this call mapped are unmapped
 * and their GPU memory released again, their kept contents stay, and the
 * allocator is asleep exactly as before; *@undone (if @undone) says how
 * many were rolled back. 0 also when awake.
 */
int kvmm_cuda_alloc_wake_all(struct kvmm_cuda_alloc *alloc, uint64_t *undone);

#endif
