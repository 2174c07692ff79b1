/* SPDX-License-Identifier: MIT */
/*
 * The KV cache's slot core, one for every device: the slot table and life
 * cycle, best-fit allocation, pins and priorities, the budget, victim
 * choice, trim, swaps and stats (kv.c, kv_policy.c, kv_swap.c). What a
 * device does with memory is its struct kvmm_kv_device: the host's
 * (kv_host.c: regions in one reservation, DRAM copies, the flash tier) or
 * CUDA's (cuda_kv.c, cuda_step.c, cuda_swap.c: VMM chunks, staging
 * copies, event fences).
 *
 * kv->lock guards the slot table, the counters and the device's own slot
 * bookkeeping; kv->progress_lock (a leaf) the per-layer progress of
 * swap-ins. A slot marked busy is being mapped by the device without
 * kv->lock; whoever else needs that slot waits on kv->cond.
 */
#ifndef KVMM_LIB_KV_H
#define KVMM_LIB_KV_H

#include "internal.h"

/* Sizes of a cache's layout at the device's chunk size. */
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

struct kvmm_kv_slot {
	uint8_t state;	  /* KVMM_SLOT_* */
	uint8_t from;	  /* while IN_FLIGHT: the state it left */
	bool busy;	  /* the device maps it now, without kv->lock */
	uint32_t seq_len; /* tokens in use (active slots) */
	uint32_t pins;
	int32_t priority;
	uint64_t mapped;    /* bytes per part held: on the device, or below when swapped out */
	uint64_t need;	    /* bytes per part the last step asked for; beyond it: ahead */
	uint64_t target;    /* bytes per part the device may map ahead to, in the background */
	uint64_t last_step; /* kv->clock at the last step: LRU order */
	/* Prefix sharing (kv_share.c): the first nshared chunks of every part
	 * are the same memory as another slot's (kv->ring); borrowed bytes of
	 * them count in the budget under a lower-numbered slot; kept bytes per
	 * part stayed on the device when the slot was swapped out. */
	uint32_t nshared;
	uint64_t borrowed;
	uint64_t kept;
	/* under kv->progress_lock: */
	bool swapping_in;
	uint32_t layers_ready; /* layers a running swap-in has put in place */
	int swap_err;	       /* result of the last swap-in */
};

/* One slot move between the device and a lower tier. */
struct kvmm_kv_swap {
	struct kvmm_kv *kv;
	uint32_t slot;
	uint8_t to;	 /* KVMM_SLOT_* the slot reaches on success */
	uint8_t from;	 /* KVMM_SLOT_* it left */
	uint64_t bytes;	 /* per part: the data that moves */
	uint64_t mapped; /* per part: device memory held before a swap-out */
	uint64_t keep;	 /* per part: the leading bytes that stay on the device (shared
			  * with a slot there); only [keep, bytes) moves */
	uint64_t below;	 /* per part: leading bytes a swap-out found already below, in
			  * the lower tier of a slot sharing them (share_below) */
	bool stuck;	 /* a failed swap-out left data below: the slot stays there */
};

/*
 * What a device does for the core. Memory ops are called with kv->lock
 * held unless said otherwise; "parts" are the regions a slot spans.
 */
struct kvmm_kv_device {
	uint8_t policy_tier; /* KVMM_TIER_* the auto-swap policy sends victims to */
	uint8_t charged;     /* 1 << KVMM_SLOT_*: states whose memory counts in the budget */
	bool times_steps;    /* count the time steps block (kv->steps) for its stats */
	/* A swapped-out slot leaves on the device the shared chunks a slot
	 * there still maps (host: they are in its regions either way); else
	 * (CUDA) a swap-out moves the whole slot and only the shared chunks'
	 * lower-tier copies are shared. */
	bool keeps_shared;
	/* Life: kv->cfg is checked; create sets the chunk size, kv->geom, kv->va
	 * and kv->regions. destroy runs once no swap is in flight. */
	int (*create)(struct kvmm_kv *kv);
	void (*destroy)(struct kvmm_kv *kv);
	/* Maps [from, to) of every part of @slot, all or none; -ENOMEM or
	 * -EDQUOT: the core makes room and asks again. @zero: new memory
	 * reads as zeros (false when a swap-in overwrites all of it). */
	int (*grow)(struct kvmm_kv *kv, uint32_t slot, uint64_t from, uint64_t to, bool zero);
	/* Releases [from, to) of every part; @fenced: only once the work queued
	 * before the slot's last fence has finished (else nothing reads it). */
	void (*shrink)(struct kvmm_kv *kv, uint32_t slot, uint64_t from, uint64_t to, bool fenced);
	/* Records the point after everything queued so far that may read or
	 * write @slot (free_slot, swap_out). NULL: host work is already done. */
	int (*fence)(struct kvmm_kv *kv, uint32_t slot);
	/* A swap's data movement, without kv->lock. copy_out moves j->bytes
	 * down and releases the slot's j->mapped bytes; copy_in brings j->bytes
	 * back (the core has made room in the budget), publishing layers with
	 * kvmm_kv_publish() as they land. A failure leaves the data where it was. */
	int (*copy_out)(struct kvmm_kv_swap *j);
	int (*copy_in)(struct kvmm_kv_swap *j);
	/* Optional. settle: frees memory whose fences have passed (@wait: waits
	 * for the oldest first); 1 when it freed or waited for something, 0
	 * when not, < 0 when a fence can no longer be known to pass (-EIO: a
	 * lost context), which ends the core's making room with that error.
	 * draining: bytes held that way. map_ahead: a slot's target passed its
	 * mapping. */
	int (*settle)(struct kvmm_kv *kv, bool wait);
	uint64_t (*draining)(const struct kvmm_kv *kv);
	void (*map_ahead)(struct kvmm_kv *kv);
	/* Optional, the public calls only a device with streams has (no
	 * kv->lock held): the engine's stream; a published layer's wait. */
	int (*set_stream)(struct kvmm_kv *kv, void *stream);
	int (*layer_wait)(struct kvmm_kv *kv, uint32_t slot, uint32_t layer, void *stream);
	int (*cuda_stats)(struct kvmm_kv *kv, struct kvmm_kv_cuda_stats *st);
	/* Optional, after a trim (no kv->lock held): release memory the device
	 * keeps ready for later (the CUDA chunk pool) until demand returns. */
	void (*rest)(struct kvmm_kv *kv);
	/* Prefix sharing. share: @dst (empty) maps [0, @shared) of every part
	 * of @src's memory, and a chunk of its own at @shared holding a copy of
	 * @src's next @tail bytes (0: none), zeros after; all or nothing;
	 * -ENOMEM or -EDQUOT: the core makes room and asks again.
	 * share_settle (optional, keeps_shared): chunks [from, to) of @slot's
	 * parts are shared only by slots that are not on the device any more:
	 * move them down once (best effort). */
	int (*share)(struct kvmm_kv *kv, uint32_t dst, uint32_t src, uint64_t shared,
		     uint64_t tail);
	void (*share_settle)(struct kvmm_kv *kv, uint32_t slot, uint64_t from, uint64_t to);
	/* Optional, under kv->lock as a swap-out starts (kept devices have
	 * nothing to do): shared chunks a swapped-out slot's lower tier holds
	 * are shared from there, so they move down once; sets j->below. */
	void (*share_below)(struct kvmm_kv_swap *j);
};

extern const struct kvmm_kv_device kvmm_kv_host_device; /* kv_host.c */
extern const struct kvmm_kv_device kvmm_kv_cuda_device; /* cuda_kv.c, or cuda_none.c */

/*
 * A slot's memory is one "part" per region it spans: 2*layers parts at
 * offset slot*slot_stride (layer-major), or one part at offset 0 of its own
 * region (token-major). Parts are mapped from their start, all to the same
 * length. kv->regions are host regions of that shape: the memory itself
 * (host) or where swapped-out data goes (CUDA's shadows).
 */
struct kvmm_kv {
	struct kvmm_ctx *ctx;
	const struct kvmm_kv_device *dev;
	void *dev_data; /* the device's own state */
	struct kvmm_kv_config cfg;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* a slot stopped being busy, or a swap ended */
	pthread_mutex_t progress_lock;
	pthread_cond_t progress_cond; /* a swap-in published a layer or ended */
	uintptr_t va;		      /* the device address of region 0 */
	struct kvmm_region **regions;
	uint32_t chunk_bytes;
	uint64_t ahead; /* bytes per part the device maps past a step's need (0: none) */
	struct kvmm_kv_geom geom;
	struct kvmm_kv_slot *slots;
	uint64_t clock;
	uint32_t in_flight;
	uint64_t charged_bytes; /* what dev->charged states hold: the budget's running sum */
	uint8_t *stepping;	/* scratch for step: slots listed in this call */
	/* Prefix sharing: ring[slot * nck + i] is the next slot whose chunk i
	 * (of every part) is the same memory as @slot's, or @slot itself;
	 * allocated by the first share. nck: chunks per part. */
	uint32_t *ring;
	uint64_t nck;
	struct kvmm_kv_stats st; /* running totals; sizes computed on read */
	struct {
		uint64_t calls, blocked, blocked_ns; /* steps that waited or mapped */
	} steps;
};

/* Region and offset of @slot's part @p. */
static inline struct kvmm_region *kvmm_kv_part(const struct kvmm_kv *kv, uint32_t slot, uint32_t p,
					       uint64_t *off)
{
	if (kv->cfg.layout == KVMM_LAYOUT_LAYER_MAJOR) {
		*off = (uint64_t)slot * kv->geom.slot_stride;
		return kv->regions[p];
	}
	*off = 0;
	return kv->regions[slot];
}

/* Byte offset of @slot's part @p from kv->va. */
static inline uint64_t kvmm_kv_part_va(const struct kvmm_kv *kv, uint32_t slot, uint32_t p)
{
	return kv->cfg.layout == KVMM_LAYOUT_LAYER_MAJOR
		   ? p * kv->geom.region_bytes + (uint64_t)slot * kv->geom.slot_stride
		   : (uint64_t)slot * kv->geom.region_bytes;
}

/* Bytes per part to hold @tokens tokens. */
static inline uint64_t kvmm_kv_part_bytes(const struct kvmm_kv *kv, uint64_t tokens)
{
	return kvmm_round_up(tokens * kv->geom.part_tok, kv->chunk_bytes);
}

/* Bytes per part a step of @seq_len makes resident: seq_len + lookahead. */
static inline uint64_t kvmm_kv_step_bytes(const struct kvmm_kv *kv, uint32_t seq_len)
{
	uint64_t tokens = (uint64_t)seq_len + kv->cfg.lookahead;

	return kvmm_kv_part_bytes(kv, tokens < kv->cfg.max_tokens ? tokens : kv->cfg.max_tokens);
}

/* kv.c: host regions for kv->regions, at kv->va if @at_va; and their end. */
int kvmm_kv_regions_create(struct kvmm_kv *kv, uint32_t chunk, int node, bool at_va);
void kvmm_kv_regions_destroy(struct kvmm_kv *kv);

/* kv_policy.c */
/* Every change of a slot's state or mapped length goes through here, so
 * charged_bytes stays a running sum: step never scans the table. */
void kvmm_kv_slot_set(struct kvmm_kv *kv, struct kvmm_kv_slot *s, uint8_t state, uint64_t mapped);
/* Bytes the budget counts: charged slots plus what the device drains. */
uint64_t kvmm_kv_held(const struct kvmm_kv *kv);
/* Frees memory until @need more bytes fit the budget; -ENOMEM when nothing
 * more can go. */
int kvmm_kv_room(struct kvmm_kv *kv, uint64_t need);
/* Maps [from, to) of @slot's parts through dev->grow, making room first
 * and whenever the device runs out. */
int kvmm_kv_grow_locked(struct kvmm_kv *kv, uint32_t slot, uint64_t from, uint64_t to, bool zero);

/* Frees one thing to make room (kv_policy.c); -ENOMEM when nothing is left. */
int kvmm_kv_make_room(struct kvmm_kv *kv);
/* What @s counts in the budget now (kv_policy.c). */
uint64_t kvmm_kv_charge(const struct kvmm_kv *kv, const struct kvmm_kv_slot *s);
bool kvmm_kv_charged(const struct kvmm_kv *kv, const struct kvmm_kv_slot *s);

/* kv_share.c: prefix sharing's bookkeeping; kv->lock held. */
/* Releases [from, to) of @slot's parts (to: its mapped end) through the
 * device, and its share of every chunk from @from on. */
void kvmm_kv_release(struct kvmm_kv *kv, uint32_t slot, uint64_t from, uint64_t to, bool fenced);
/* @slot gives up its share of chunks from @from on (the device dropped them). */
void kvmm_kv_share_leave(struct kvmm_kv *kv, uint32_t slot, uint64_t from);
/* Recounts the budget's share of @slot and of every slot sharing with it. */
void kvmm_kv_share_recharge(struct kvmm_kv *kv, uint32_t slot);
/* Bytes per part of @slot's leading chunks that a slot on the device
 * (charged, not in flight) other than @slot maps. */
uint64_t kvmm_kv_share_held(const struct kvmm_kv *kv, uint32_t slot);
/* The slot (not @slot, state in @mask, not in flight) sharing the most of
 * @slot's leading chunks, and how many (*nr); -1 when none. */
int64_t kvmm_kv_share_partner(const struct kvmm_kv *kv, uint32_t slot, uint32_t mask, uint64_t *nr);
/* Chunks of @slot's [0, nshared) that no slot on the device holds any
 * more go down once (device's share_settle). */
void kvmm_kv_share_orphans(struct kvmm_kv *kv, uint32_t slot);
/* Leading chunks of @slot a lower-numbered slot maps too (the stats'). */
uint64_t kvmm_kv_share_dup(const struct kvmm_kv *kv, uint32_t slot);

/* kv_swap.c */
int kvmm_kv_swap_out_locked(struct kvmm_kv *kv, uint32_t slot, uint8_t tier);
/* A swap-in has put @ready layers in place (for swap_in_wait_layer). */
void kvmm_kv_publish(struct kvmm_kv *kv, uint32_t slot, uint32_t ready);

#endif
