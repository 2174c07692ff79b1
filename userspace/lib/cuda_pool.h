/* SPDX-License-Identifier: MIT */
/*
 * A pool of physical GPU chunks (cuMemCreate handles) created ahead of
 * need, so mapping never waits on cuMemCreate (~200 us each). A background
 * thread keeps the free count between the low and high watermarks. Every
 * chunk created is charged to the kvmm.ko GPU ledger first (kernel mode)
 * and uncharged after cuMemRelease.
 */
#ifndef KVMM_LIB_CUDA_POOL_H
#define KVMM_LIB_CUDA_POOL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "cuda_drv.h"

#ifdef KVMM_HAVE_CUDA_H
struct kvmm_cuda_pool {
	const struct kvmm_cuda_drv *d;
	CUcontext cuctx;
	CUmemAllocationProp prop;
	uint64_t chunk;
	int ledger_fd; /* /dev/kvmm in kernel mode, else -1 */
	uint32_t gpu;  /* ledger index (kvmm_cuda_ledger_index), not the CUDA ordinal */

	pthread_mutex_t lock;
	pthread_cond_t cond;
	CUmemGenericAllocationHandle *free; /* stack of free handles */
	uint32_t nr_free, cap;
	uint32_t low, high; /* watermarks, in chunks */
	uint64_t created;   /* handles alive (free or mapped) */
	uint64_t creates, releases, refusals;
	uint64_t release_failures; /* cuMemRelease failed: still charged */
	int refill_err;		   /* the last background failure (-EDQUOT, -ENOMEM) */
	bool resting;		   /* trimmed: no refill, puts release, until the next get */
	pthread_t thread;
	bool started, stop;
};

/* Watermarks from KVMM_CUDA_POOL_LOW / KVMM_CUDA_POOL_HIGH (chunks);
 * charges go to the ledger's GPU @ledger_gpu on @ledger_fd (-1: none). */
int kvmm_cuda_pool_init(struct kvmm_cuda_pool *p, const struct kvmm_cuda_drv *d, CUcontext cuctx,
			int dev, uint64_t chunk, int ledger_fd, uint32_t ledger_gpu);
/* Releases every free handle; the caller has put back every handle it took. */
void kvmm_cuda_pool_fini(struct kvmm_cuda_pool *p);

/*
 * kvmm_cuda_pool_get() - @n handles, from the free list, creating the rest
 * now when it runs short. Return: 0; -EDQUOT the ledger refused;
 * -ENOMEM the device is full; nothing is taken on failure.
 */
int kvmm_cuda_pool_get(struct kvmm_cuda_pool *p, uint32_t n, CUmemGenericAllocationHandle *h);
void kvmm_cuda_pool_put(struct kvmm_cuda_pool *p, uint32_t n,
			const CUmemGenericAllocationHandle *h);
/* Releases free handles down to @keep (under pressure: give memory back). */
void kvmm_cuda_pool_trim(struct kvmm_cuda_pool *p, uint32_t keep);
/*
 * The engine asked for memory back (kvmm_kv_trim): release every free
 * handle, and keep none ready (no refill, handles put back are released)
 * until the next get shows demand again.
 */
void kvmm_cuda_pool_rest(struct kvmm_cuda_pool *p);
#endif

#endif
