/* SPDX-License-Identifier: MIT */
/*
 * One GPU virtual range for the whole life of a KV cache: reserved once
 * (addresses never change, so captured CUDA graphs stay valid), every
 * chunk mapped at first to one shared zero chunk, so a kernel reading a
 * padded tile past seq_len reads zeros instead of faulting. It is mapped
 * read-only; where the driver refuses read-only access, read-write (a
 * device write past the mapped tokens then lands in the shared zeros:
 * docs/cuda.md).
 * Making a chunk real unmaps the zero mapping and maps a pool handle;
 * access is set once per contiguous run.
 */
#ifndef KVMM_LIB_CUDA_VMM_H
#define KVMM_LIB_CUDA_VMM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "cuda_drv.h"
#include "cuda_plan.h"
#include "cuda_pool.h"

#ifdef KVMM_HAVE_CUDA_H
struct kvmm_cuda_vmm {
	const struct kvmm_cuda_drv *d;
	struct kvmm_cuda_pool *pool;
	CUdeviceptr va;
	uint64_t bytes, chunk, nr_chunks;
	CUmemGenericAllocationHandle zero; /* 0 until created */
	CUstream stream;		   /* zero-fills new chunks */
	CUmemAccessDesc rw, ro;
	const CUmemAccessDesc *zacc; /* the zero chunk's: &ro, or &rw where refused */
	bool zero_ro;		     /* zacc is &ro */
	pthread_mutex_t lock;	     /* state[] and handle[] */
	uint8_t *state;		     /* enum kvmm_cuda_chunk per chunk */
	CUmemGenericAllocationHandle *handle;
	uint64_t maps, unmaps, set_access; /* driver calls made, for stats */
	uint64_t holes;			   /* zero mappings a rollback could not put back */
	/* Handles mapped at more than one chunk (prefix sharing): how many
	 * mappings past the first; a handle goes back to the pool only when
	 * its last mapping goes. */
	struct kvmm_cuda_shared {
		CUmemGenericAllocationHandle h;
		uint32_t extra;
	} * shared;
	uint32_t nshared, capshared;
};

/* Reserves @bytes (a multiple of @chunk) and maps the zero chunk everywhere. */
int kvmm_cuda_vmm_init(struct kvmm_cuda_vmm *v, const struct kvmm_cuda_drv *d,
		       struct kvmm_cuda_pool *pool, int dev, uint64_t bytes, uint64_t chunk);
/* Unmaps everything, hands real chunks back to the pool, frees the range. */
void kvmm_cuda_vmm_fini(struct kvmm_cuda_vmm *v);

/*
 * kvmm_cuda_vmm_map() - give every ZERO chunk of [first, first + nr) a
 * real chunk from the pool. With @zero the chunks are zero-filled (pool
 * chunks held other data) on the range's own stream and waited for here,
 * so no engine stream needs to order behind it; a swap-in that overwrites
 * them all skips that. All or nothing: on failure the range is as it was. Return: 0; -EDQUOT /
 * -ENOMEM from the pool; -EIO a driver call failed.
 */
int kvmm_cuda_vmm_map(struct kvmm_cuda_vmm *v, uint64_t first, uint64_t nr, bool zero);

/*
 * kvmm_cuda_vmm_unmap() - map the zero chunk back over every REAL or DRAIN
 * chunk of the range and return their handles to the pool. The caller has
 * made sure no kernel still reads them (their fence passed).
 */
int kvmm_cuda_vmm_unmap(struct kvmm_cuda_vmm *v, uint64_t first, uint64_t nr);

/* Marks the range's REAL chunks DRAIN (their fence is pending). */
void kvmm_cuda_vmm_drain(struct kvmm_cuda_vmm *v, uint64_t first, uint64_t nr);

/*
 * kvmm_cuda_vmm_share() - map the physical handles of the REAL chunks
 * [sfirst, sfirst + nr) again at the ZERO chunks [dfirst, dfirst + nr):
 * one handle, two addresses (cuMemMap of the same handle), counted so
 * that unmapping either returns the handle to the pool only after the
 * other. All or nothing. Return: 0; -EINVAL a source chunk is not REAL;
 * -EBUSY a destination chunk is not ZERO; -ENOMEM; -EIO a driver call.
 */
int kvmm_cuda_vmm_share(struct kvmm_cuda_vmm *v, uint64_t dfirst, uint64_t sfirst, uint64_t nr);
#endif

#endif
