/* SPDX-License-Identifier: MIT */
/*
 * The CUDA device of the slot core (kv.h): a KV cache in one GPU virtual
 * range (cuda_vmm.c), with a host shadow region per GPU region for the
 * lower tiers (DRAM, then flash, as the host regions do it). The core
 * keeps the slots; this side keeps what the driver needs: the context,
 * the pool, the VA range, staging, the event fences and the background
 * mapper.
 *
 * Lock order (outer first): kv->lock (slots, fences, counters), then
 * ck->copy_lock, kv->progress_lock, vmm->lock, pool->lock. The mapper
 * maps a slot it marked busy without kv->lock; whoever else needs that
 * slot waits on kv->cond.
 */
#ifndef KVMM_LIB_CUDA_KV_H
#define KVMM_LIB_CUDA_KV_H

#include <errno.h>
#include <stdint.h>

#include "internal.h"
#include "kv.h"

#ifdef KVMM_HAVE_CUDA_H
#include "cuda_copy.h"
#include "cuda_vmm.h"

/* The device side of a slot. */
struct kvmm_cuda_slot {
	CUevent ev; /* its fence: recorded by free_slot and swap_out on the engine's stream */
	CUevent *layer_ev; /* swap-in: one per layer, recorded as layers land */
};

struct kvmm_cuda_kv {
	struct kvmm_kv *kv;
	const struct kvmm_cuda_drv *d;
	CUdevice dev;
	CUcontext cuctx;
	int cc_major, cc_minor;
	uint64_t gran;
	uint32_t shadow_chunk;
	bool mapper_on;
	CUstream stream; /* the engine's */

	struct kvmm_cuda_pool pool;
	struct kvmm_cuda_vmm vmm;
	struct kvmm_cuda_copy copy;
	bool pool_ok, vmm_ok, copy_ok;
	pthread_mutex_t copy_lock; /* ck->copy and its stream: one move at a time */

	/* under kv->lock: */
	pthread_cond_t mapper_cond; /* work for the mapper */
	pthread_t mapper;
	bool mapper_started, stop;
	struct kvmm_cuda_fences fences;
	struct kvmm_cuda_slot *slots;
	struct kvmm_kv_cuda_stats cst;
};

/* The CUDA side of a KVMM_DEVICE_CUDA cache (tests reach its streams). */
static inline struct kvmm_cuda_kv *kvmm_cuda_kv_of(struct kvmm_kv *kv)
{
	return kv->dev_data;
}

/* cuda_step.c: the memory ops, fences and the mapper. */
int kvmm_cuda_grow(struct kvmm_kv *kv, uint32_t slot, uint64_t from, uint64_t to, bool zero);
void kvmm_cuda_shrink(struct kvmm_kv *kv, uint32_t slot, uint64_t from, uint64_t to, bool fenced);
int kvmm_cuda_settle_fences(struct kvmm_kv *kv, bool wait);
uint64_t kvmm_cuda_draining(const struct kvmm_kv *kv);
void kvmm_cuda_map_ahead(struct kvmm_kv *kv);
int kvmm_cuda_share(struct kvmm_kv *kv, uint32_t dst, uint32_t src, uint64_t shared, uint64_t tail);
int kvmm_cuda_share_parts(struct kvmm_cuda_kv *ck, uint32_t dst, uint32_t src, uint64_t bytes);
int kvmm_cuda_map_parts(struct kvmm_cuda_kv *ck, uint32_t slot, uint64_t from, uint64_t to,
			bool zero);
int kvmm_cuda_unmap_slot(struct kvmm_cuda_kv *ck, uint32_t slot, uint64_t from, uint64_t to);
void kvmm_cuda_fence_slot(struct kvmm_cuda_kv *ck, uint32_t slot, CUevent ev, uint64_t bytes);
bool kvmm_cuda_fenced(const struct kvmm_cuda_kv *ck, uint32_t slot, uint64_t from, uint64_t to);
int kvmm_cuda_wait_all(struct kvmm_cuda_kv *ck);
void kvmm_cuda_release_all(struct kvmm_cuda_kv *ck);
int kvmm_cuda_mapper_start(struct kvmm_cuda_kv *ck);
void kvmm_cuda_mapper_stop(struct kvmm_cuda_kv *ck);
/* cuda_swap.c: the data movement and per-layer waits. */
int kvmm_cuda_copy_out(struct kvmm_kv_swap *j);
int kvmm_cuda_copy_in(struct kvmm_kv_swap *j);
void kvmm_cuda_share_below(struct kvmm_kv_swap *j);
int kvmm_cuda_layer_wait(struct kvmm_kv *kv, uint32_t slot, uint32_t layer, void *stream);

/* First chunk of @slot's part @p at byte @off of the part. */
static inline uint64_t kvmm_cuda_part_chunk(const struct kvmm_cuda_kv *ck, uint32_t slot,
					    uint32_t p, uint64_t off)
{
	return (kvmm_kv_part_va(ck->kv, slot, p) + off) / ck->kv->chunk_bytes;
}

/*
 * Runs driver calls with the cache's context current on this thread: call
 * kvmm_cuda_leave() only after a kvmm_cuda_enter() that returned 0, so a
 * failed push never pops the engine's own context. Return: 0; -EIO the
 * push failed (nothing was pushed).
 */
static inline int kvmm_cuda_enter(const struct kvmm_cuda_kv *ck)
{
	return ck->d->cuCtxPushCurrent(ck->cuctx) == CUDA_SUCCESS ? 0 : -EIO;
}

/* Pops what kvmm_cuda_enter() pushed; a context that is not the cache's
 * (it was never pushed) goes back where it was. */
static inline void kvmm_cuda_leave(const struct kvmm_cuda_kv *ck)
{
	CUcontext popped = NULL;

	if (ck->d->cuCtxPopCurrent(&popped) == CUDA_SUCCESS && popped && popped != ck->cuctx)
		ck->d->cuCtxPushCurrent(popped);
}
#endif

#endif
