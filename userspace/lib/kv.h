/* SPDX-License-Identifier: MIT */
/* KV cache internals shared by kv.c, kv_swap.c and kv_policy.c. */
#ifndef KVMM_LIB_KV_H
#define KVMM_LIB_KV_H

#include "internal.h"

struct kvmm_cuda_kv;

/* A KVMM_DEVICE_CUDA cache: the public call is cuda_kv.c's. */
#define KVMM_KV_CUDA(kv, call)                                                                     \
	do {                                                                                       \
		if ((kv) && (kv)->gpu)                                                             \
			return call;                                                               \
	} while (0)

/* Sizes of a cache's layout; host (kv.c) and GPU (cuda_kv.c) caches share it. */
struct kvmm_kv_geom {
	uint64_t elem_tok;     /* bytes of one token of one layer's K or V */
	uint64_t part_tok;     /* bytes of one token in a part */
	uint64_t slot_stride;  /* a slot's bytes in a part's region, chunk-rounded */
	uint64_t region_bytes; /* one region */
	uint64_t va_bytes;     /* every region */
	uint32_t nparts;       /* regions a slot spans */
	uint32_t nr_regions;
};

/* kv.c: the geometry of @c at chunk size @chunk; -EOVERFLOW when too large. */
int kvmm_kv_geometry(const struct kvmm_kv_config *c, uint64_t chunk, struct kvmm_kv_geom *g);

/* Best fit for a slot that needs @need bytes per part: the smallest mapping
 * that holds it, else the largest. True when @cand beats @best. */
static inline bool kvmm_kv_better_fit(uint64_t cand, uint64_t best, uint64_t need)
{
	return best >= need ? (cand >= need && cand < best) : cand > best;
}

struct kvmm_kv_slot {
	uint8_t state;	  /* KVMM_SLOT_* */
	uint8_t from;	  /* while IN_FLIGHT: the state it left (KVMM_SLOT_*) */
	uint32_t seq_len; /* tokens in use (active slots) */
	uint32_t pins;
	int32_t priority;
	uint64_t mapped;    /* bytes mapped per part, from the part's start */
	uint64_t last_step; /* kv->clock at the last step: LRU order */
	void *host_copy;    /* KVMM_SLOT_HOST: nparts * mapped bytes */
};

/*
 * A slot's memory is one "part" per region it spans: 2*layers parts at
 * offset slot*slot_stride (layer-major), or one part at offset 0 of its own
 * region (token-major). Parts are mapped from their start, all to the same
 * length.
 */
struct kvmm_kv {
	struct kvmm_ctx *ctx;
	struct kvmm_cuda_kv *gpu; /* KVMM_DEVICE_CUDA: cuda_kv.c does the work */
	struct kvmm_kv_config cfg;
	pthread_mutex_t lock;
	pthread_cond_t idle; /* signalled when in_flight drops to 0 */
	char *va;	     /* one reservation for every region */
	struct kvmm_region **regions;
	uint32_t chunk_bytes;
	struct kvmm_kv_geom geom;
	struct kvmm_kv_slot *slots;
	uint64_t clock;
	uint32_t in_flight;
	uint8_t *stepping;	 /* scratch for step: slots listed in this call */
	struct kvmm_kv_stats st; /* running totals; sizes computed on read */
};

/* Region and offset of @slot's part @p. */
static inline struct kvmm_region *kvmm_kv_part(struct kvmm_kv *kv, uint32_t slot, uint32_t p,
					       uint64_t *off)
{
	if (kv->cfg.layout == KVMM_LAYOUT_LAYER_MAJOR) {
		*off = (uint64_t)slot * kv->geom.slot_stride;
		return kv->regions[p];
	}
	*off = 0;
	return kv->regions[slot];
}

/* Bytes per part to hold @tokens tokens. */
static inline uint64_t kvmm_kv_part_bytes(const struct kvmm_kv *kv, uint64_t tokens)
{
	return kvmm_round_up(tokens * kv->geom.part_tok, kv->chunk_bytes);
}

/* kv_swap.c */
int kvmm_kv_swap_out_locked(struct kvmm_kv *kv, uint32_t slot, enum kvmm_tier tier);
/* kv_policy.c: frees memory until @need more bytes fit the budget. */
int kvmm_kv_make_room(struct kvmm_kv *kv, uint64_t need, const uint8_t *stepping);
uint64_t kvmm_kv_resident(const struct kvmm_kv *kv);

#endif
