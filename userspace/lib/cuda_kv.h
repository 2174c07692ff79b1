/* SPDX-License-Identifier: MIT */
/*
 * KV cache on a CUDA device: the same layouts and slot life cycle as the
 * host cache (kv.c), over one GPU virtual range (cuda_vmm.c), with a host
 * shadow region per GPU region for the lower tiers (DRAM, then flash, as
 * the host regions do it). kv.c hands a config with KVMM_DEVICE_CUDA here.
 *
 * Lock order (outer first): ck->lock (slots, fences, counters), then
 * ck->copy_lock, ck->progress_lock, vmm->lock, pool->lock. The mapper maps a slot it marked busy
 * without ck->lock; whoever else needs that slot waits on ck->cond.
 */
#ifndef KVMM_LIB_CUDA_KV_H
#define KVMM_LIB_CUDA_KV_H

#include <stdint.h>

#include "internal.h"
#include "kv.h"

struct kvmm_cuda_kv;

/* The kvmm_kv_* operations for a KVMM_DEVICE_CUDA cache. */
int kvmm_cuda_kv_create(struct kvmm_ctx *ctx, const struct kvmm_kv_config *cfg,
			struct kvmm_cuda_kv **ckp);
int kvmm_cuda_kv_destroy(struct kvmm_cuda_kv *ck);
int kvmm_cuda_kv_tensor(struct kvmm_cuda_kv *ck, uint32_t layer, enum kvmm_kv_which which,
			struct kvmm_kv_tensor *t);
int kvmm_cuda_kv_alloc_slot(struct kvmm_cuda_kv *ck, uint32_t expected_tokens, uint32_t *slotp);
int kvmm_cuda_kv_step(struct kvmm_cuda_kv *ck, uint32_t n, const uint32_t *slots,
		      const uint32_t *seq_lens);
int kvmm_cuda_kv_free_slot(struct kvmm_cuda_kv *ck, uint32_t slot);
/* Freed slots' memory is unmapped once each slot's free event has passed. */
int kvmm_cuda_kv_trim(struct kvmm_cuda_kv *ck, uint64_t keep_bytes);
int kvmm_cuda_kv_swap_out(struct kvmm_cuda_kv *ck, uint32_t slot, enum kvmm_tier tier,
			  struct kvmm_op **opp);
int kvmm_cuda_kv_swap_in(struct kvmm_cuda_kv *ck, uint32_t slot, struct kvmm_op **opp);
int kvmm_cuda_kv_pin_slot(struct kvmm_cuda_kv *ck, uint32_t slot);
int kvmm_cuda_kv_unpin_slot(struct kvmm_cuda_kv *ck, uint32_t slot);
int kvmm_cuda_kv_set_priority(struct kvmm_cuda_kv *ck, uint32_t slot, int32_t priority);
int kvmm_cuda_kv_slot_state(struct kvmm_cuda_kv *ck, uint32_t slot);
int kvmm_cuda_kv_stats(struct kvmm_cuda_kv *ck, struct kvmm_kv_stats *st);

/*
 * kvmm_cuda_kv_set_stream() - the engine's CUstream / cudaStream_t (NULL:
 * the legacy default stream). free_slot, swap_out and reclaim record an
 * event on it: memory is unmapped only after that event has passed.
 */
int kvmm_cuda_kv_set_stream(struct kvmm_cuda_kv *ck, void *stream);

/*
 * kvmm_cuda_kv_swap_in_wait_layer() - during a swap-in, wait until
 * @layer's K and V are on the GPU: with @stream non-NULL the stream waits
 * (the host returns as soon as the copy is queued), else the host waits.
 * 0 also once the slot is active; -EIO (or the swap's error) when the
 * swap-in failed; -EAGAIN when the slot is not being swapped in.
 * Token-major slots arrive whole: every layer waits for the last copy.
 */
int kvmm_cuda_kv_swap_in_wait_layer(struct kvmm_cuda_kv *ck, uint32_t slot, uint32_t layer,
				    void *stream);

int kvmm_cuda_kv_cuda_stats(struct kvmm_cuda_kv *ck, struct kvmm_kv_cuda_stats *st);

#ifdef KVMM_HAVE_CUDA_H
#include "cuda_copy.h"
#include "cuda_vmm.h"

struct kvmm_cuda_slot {
	uint8_t state;	  /* KVMM_SLOT_* */
	uint8_t from;	  /* while IN_FLIGHT: the state it left */
	bool busy;	  /* the mapper maps it now, without ck->lock */
	uint32_t seq_len; /* tokens in use */
	uint32_t pins;
	int32_t priority;
	uint64_t mapped;    /* bytes per part: on the GPU, or in the shadow when out */
	uint64_t need;	    /* bytes per part the last step asked for; beyond: ahead */
	uint64_t target;    /* bytes per part the mapper maps ahead to */
	uint64_t last_step; /* LRU clock */
	CUevent free_ev;    /* recorded by free_slot after the last reader */
	CUevent *layer_ev;  /* swap-in: one per layer, recorded as layers land */
	/* under ck->progress_lock: */
	bool swapping_in;
	uint32_t layers_ready; /* layers whose copies are queued */
	int swap_err;	       /* result of the last swap-in */
};

struct kvmm_cuda_kv {
	struct kvmm_ctx *ctx;
	struct kvmm_kv_config cfg;
	const struct kvmm_cuda_drv *d;
	CUdevice dev;
	CUcontext cuctx;
	int cc_major, cc_minor;
	uint64_t gran, chunk;
	uint32_t shadow_chunk;
	struct kvmm_kv_geom geom;
	uint64_t ahead; /* bytes per part the mapper keeps mapped past the need */
	bool mapper_on;
	CUstream stream; /* the engine's */

	struct kvmm_cuda_pool pool;
	struct kvmm_cuda_vmm vmm;
	struct kvmm_cuda_copy copy;
	struct kvmm_region **shadow;
	bool pool_ok, vmm_ok, copy_ok;
	pthread_mutex_t copy_lock; /* ck->copy and its stream: one move at a time */
	pthread_mutex_t progress_lock;
	pthread_cond_t progress_cond; /* a swap-in queued a layer or ended */

	pthread_mutex_t lock;
	pthread_cond_t cond;	    /* a slot stopped being busy or in flight */
	pthread_cond_t mapper_cond; /* work for the mapper */
	pthread_t mapper;
	bool mapper_started, stop;
	struct kvmm_cuda_fences fences;
	struct kvmm_cuda_slot *slots;
	uint8_t *stepping;
	uint64_t clock;
	uint32_t in_flight;
	struct kvmm_kv_stats st;
	struct kvmm_kv_cuda_stats cst;
};

/* The CUDA side of a KVMM_DEVICE_CUDA cache (tests reach its streams). */
static inline struct kvmm_cuda_kv *kvmm_cuda_kv_of(struct kvmm_kv *kv)
{
	return kv->gpu;
}

/* cuda_kv.c: a free slot becomes active (what it still maps is reused). */
void kvmm_cuda_activate_locked(struct kvmm_cuda_kv *ck, struct kvmm_cuda_slot *s);
/* cuda_step.c */
int kvmm_cuda_map_locked(struct kvmm_cuda_kv *ck, uint32_t slot, uint64_t from, uint64_t to,
			 bool zero);
int kvmm_cuda_unmap_slot(struct kvmm_cuda_kv *ck, uint32_t slot, uint64_t from, uint64_t to);
void kvmm_cuda_fence_slot(struct kvmm_cuda_kv *ck, uint32_t slot, CUevent ev, uint64_t bytes);
void kvmm_cuda_settle(struct kvmm_cuda_kv *ck, bool wait);
void kvmm_cuda_settle_all(struct kvmm_cuda_kv *ck);
int kvmm_cuda_mapper_start(struct kvmm_cuda_kv *ck);
void kvmm_cuda_mapper_stop(struct kvmm_cuda_kv *ck);
uint64_t kvmm_cuda_gpu_bytes(const struct kvmm_cuda_kv *ck);
/* cuda_swap.c */
int kvmm_cuda_swap_out_locked(struct kvmm_cuda_kv *ck, uint32_t slot);

/* First chunk of @slot's part @p at byte @off of the part. */
static inline uint64_t kvmm_cuda_part_chunk(const struct kvmm_cuda_kv *ck, uint32_t slot,
					    uint32_t p, uint64_t off)
{
	uint64_t va_off = ck->cfg.layout == KVMM_LAYOUT_LAYER_MAJOR
			      ? p * ck->geom.region_bytes + slot * ck->geom.slot_stride
			      : slot * ck->geom.region_bytes;

	return (va_off + off) / ck->chunk;
}

/* Shadow region and offset of @slot's part @p. */
static inline struct kvmm_region *kvmm_cuda_shadow(const struct kvmm_cuda_kv *ck, uint32_t slot,
						   uint32_t p, uint64_t *off)
{
	if (ck->cfg.layout == KVMM_LAYOUT_LAYER_MAJOR) {
		*off = slot * ck->geom.slot_stride;
		return ck->shadow[p];
	}
	*off = 0;
	return ck->shadow[slot];
}

static inline uint64_t kvmm_cuda_part_bytes(const struct kvmm_cuda_kv *ck, uint64_t tokens)
{
	return kvmm_round_up(tokens * ck->geom.part_tok, ck->chunk);
}

/* Runs driver calls with the cache's context current on this thread. */
static inline void kvmm_cuda_enter(const struct kvmm_cuda_kv *ck)
{
	ck->d->cuCtxPushCurrent(ck->cuctx);
}

static inline void kvmm_cuda_leave(const struct kvmm_cuda_kv *ck)
{
	CUcontext unused;

	ck->d->cuCtxPopCurrent(&unused);
}
#endif

#endif
