/* SPDX-License-Identifier: MIT */
/*
 * libkvmm: demand-paged, virtually contiguous KV-cache memory with tiered
 * swapping (host DRAM <-> flash), with or without kvmm.ko.
 *
 * Use:
 *     struct kvmm_config cfg = KVMM_CONFIG_INIT;
 *     struct kvmm_ctx *ctx;
 *     kvmm_open(&ctx, &cfg);                     // kernel or user mode
 *     struct kvmm_kv_config kc = KVMM_KV_CONFIG_INIT;
 *     kc.layers = 32; kc.kv_heads = 8; kc.head_dim = 128; kc.dtype_bytes = 2;
 *     kc.max_slots = 64; kc.max_tokens = 8192;
 *     struct kvmm_kv *kv;
 *     kvmm_kv_create(ctx, &kc, &kv);
 *     struct kvmm_kv_tensor t;
 *     kvmm_kv_tensor(kv, layer, KVMM_K, &t);     // base + strides, once
 *     kvmm_kv_step(kv, n, slots, seq_lens);      // every decode iteration
 *     kvmm_kv_swap_out(kv, slot, KVMM_TIER_FLASH, &op); kvmm_wait(op);
 *
 * Every function returns 0 or a negative errno, except these, which say
 * what else they return: kvmm_mode(), kvmm_op_done() and
 * kvmm_kv_slot_state() a value >= 0 (or a negative errno);
 * kvmm_strerror(), kvmm_region_base() and kvmm_cuda_why() a pointer; the
 * PyTorch allocator pair kvmm_torch_malloc()/kvmm_torch_free(), whose
 * signatures are PyTorch's. None
 * reports through errno (its value after a call is unspecified), aborts or
 * exits. Handles are opaque. Config structs start with a size field (set by
 * the *_INIT initialisers) so they can grow without breaking callers.
 * Thread safety is stated per object below and in docs/libkvmm.md.
 */
#ifndef KVMM_KVMM_H
#define KVMM_KVMM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- context */

/** enum kvmm_mode - where host regions come from. */
enum kvmm_mode {
	KVMM_MODE_AUTO = 0,   /* kernel if /dev/kvmm speaks our ABI, else user */
	KVMM_MODE_KERNEL = 1, /* kvmm.ko regions; kvmm_open fails without it */
	KVMM_MODE_USER = 2,   /* anonymous memory + userfaultfd + io_uring flash */
};

/**
 * struct kvmm_config - kvmm_open() settings. Start from KVMM_CONFIG_INIT.
 * Zero / NULL fields take the environment variable named beside them, then
 * the default. Explicit fields win over the environment, except that
 * KVMM_MODE overrides a mode of KVMM_MODE_AUTO only.
 * @size:            sizeof(struct kvmm_config); set by KVMM_CONFIG_INIT.
 * @mode:            KVMM_MODE_* (env KVMM_MODE=auto|kernel|user).
 * @flash_dir:       directory of the user-mode flash store file
 *                   (env KVMM_FLASH_DIR, default $TMPDIR, then /var/tmp);
 *                   on a disk filesystem that takes O_DIRECT, not tmpfs.
 * @flash_bytes:     flash store capacity in bytes, preallocated when the
 *                   store is first used (env KVMM_FLASH_BYTES, default 4 GiB).
 * @queue_depth:     flash I/Os in flight (env KVMM_QUEUE_DEPTH, default 32).
 * @staging_node:    NUMA node of the staging buffers, or -1 for local
 *                   (env KVMM_STAGING_NODE, default -1).
 * @chunk_bytes:     default region chunk size (env KVMM_CHUNK_BYTES,
 *                   default 2 MiB); a power of two, page size to 2 MiB.
 * @flags:           0; reserved for KVMM_CONFIG_* flags.
 * Environment only: KVMM_IO_THREADS, worker threads and flash rings
 * (1..16, default 2). docs/libkvmm.md lists every variable.
 */
struct kvmm_config {
	uint32_t size;
	uint32_t mode;
	const char *flash_dir;
	uint64_t flash_bytes;
	uint32_t queue_depth;
	int32_t staging_node;
	uint32_t chunk_bytes;
	uint32_t flags;
};

#define KVMM_CONFIG_INIT                                                                           \
	{                                                                                          \
		.size = sizeof(struct kvmm_config), .staging_node = -1                             \
	}

struct kvmm_ctx;

/**
 * kvmm_open() - create a context (one per process is enough).
 * @ctxp: receives the context.
 * @cfg:  settings, or NULL for defaults plus environment.
 * Return: 0; -EINVAL bad config; -ENODEV kernel mode asked for but
 * /dev/kvmm is missing; -EPROTO /dev/kvmm speaks another ABI version;
 * -ENOSYS user mode asked for but userfaultfd is unavailable; -ENOMEM.
 */
int kvmm_open(struct kvmm_ctx **ctxp, const struct kvmm_config *cfg);

/**
 * kvmm_close() - free the context. Every region and KV cache of it must
 * be destroyed first (-EBUSY otherwise, and nothing is freed).
 */
int kvmm_close(struct kvmm_ctx *ctx);

/** kvmm_mode() - KVMM_MODE_KERNEL or KVMM_MODE_USER, the mode in use; -EINVAL for NULL. */
int kvmm_mode(const struct kvmm_ctx *ctx);

/** kvmm_strerror() - a static message for a negative errno from libkvmm (never NULL). */
const char *kvmm_strerror(int err);

/* ------------------------------------------------------------- operations */

/*
 * struct kvmm_op - an asynchronous operation (prefetch, swap). Functions
 * that start one take a struct kvmm_op **opp: with opp NULL the operation
 * runs detached; otherwise *opp receives a handle that must be passed to
 * kvmm_wait() exactly once.
 */
struct kvmm_op;

/**
 * kvmm_wait() - wait for @op to finish, free it and return its result
 * (0 or a negative errno). Any thread may wait; only one may wait per op.
 */
int kvmm_wait(struct kvmm_op *op);

/**
 * kvmm_op_done() - 1 when @op has finished (kvmm_wait will not block),
 * 0 while it runs, -EINVAL for NULL. Does not free @op.
 */
int kvmm_op_done(const struct kvmm_op *op);

/* ---------------------------------------------------------------- regions */

/*
 * Chunk states (low 2 bits) and flags, the same values as the kernel's
 * KVMM_CHUNK_*, so kernel and user mode report alike.
 */
#define KVMM_STATE_EMPTY    0 /* no memory; reads as zeros */
#define KVMM_STATE_RESIDENT 1 /* backed by host memory */
#define KVMM_STATE_HOST	    2 /* (GPU regions) data in DRAM, not on the GPU */
#define KVMM_STATE_FLASH    3 /* data on flash; a touch reads it back */
#define KVMM_STATE_MASK	    0x03
#define KVMM_STATE_SHARED                                                                          \
	0x04 /* memory shared with another chunk (kvmm_kv_share_prefix); a write copies it */
#define KVMM_STATE_ERROR     0x08 /* last read-back failed; data kept on flash */
#define KVMM_STATE_WRITING   0x10 /* being written to flash */
#define KVMM_STATE_READING   0x20 /* being read back from flash */
#define KVMM_STATE_IN_FLIGHT (KVMM_STATE_WRITING | KVMM_STATE_READING)
#define KVMM_STATE_DIRTY     0x40 /* (kernel mode) resident without a current flash copy */
#define KVMM_STATE_PINNED    0x80 /* pinned: never discarded or moved */

/**
 * struct kvmm_region_config - kvmm_region_create() settings.
 * @size:        sizeof(struct kvmm_region_config); set by the initialiser.
 * @bytes:       region size; a nonzero multiple of the chunk size.
 * @chunk_bytes: unit of backing and of tier moves, or 0 for the context's.
 * @numa_node:   node for the memory, or -1 (kernel mode only; user mode
 *               takes the calling thread's policy).
 * @priority:    eviction priority, lower goes first (kernel reclaim).
 * @addr:        NULL, or a page-aligned address to map the region at
 *               (MAP_FIXED: the caller owns that range, e.g. a PROT_NONE
 *               reservation).
 */
struct kvmm_region_config {
	uint32_t size;
	uint32_t chunk_bytes;
	uint64_t bytes;
	int32_t numa_node;
	uint32_t priority;
	void *addr;
};

#define KVMM_REGION_CONFIG_INIT                                                                    \
	{                                                                                          \
		.size = sizeof(struct kvmm_region_config), .numa_node = -1                         \
	}

/**
 * struct kvmm_region_stats - kvmm_region_stats() output. The first fields
 * match the kernel's struct kvmm_region_stat; the flash ones are zero
 * where a mode has no flash tier.
 */
struct kvmm_region_stats {
	uint64_t bytes;
	uint32_t chunk_bytes;
	uint32_t id;
	uint64_t resident_bytes;
	uint64_t pinned_bytes;
	uint64_t flash_bytes;	 /* bytes whose only copy is on flash */
	uint64_t faults;	 /* faults handled (one per chunk) */
	uint64_t zero_fills;	 /* chunks made resident zero-filled */
	uint64_t discards;	 /* chunks freed by discard */
	uint64_t fault_failures; /* faults answered with SIGBUS */
	uint64_t flash_writes;	 /* chunks written to flash */
	uint64_t flash_reads;	 /* chunks read back from flash */
	uint64_t flash_errors;	 /* failed flash I/Os and checksum mismatches */
	uint64_t shared_bytes;	 /* chunks whose memory (or flash copy) is shared with
				    another chunk (KVMM_STATE_SHARED); these count here,
				    not in resident_bytes or flash_bytes */
	uint64_t reserved[7];
};

struct kvmm_region;

/**
 * kvmm_region_create() - a virtually contiguous host region; memory is
 * attached a chunk at a time on first touch (zero-filled) or by ensure.
 * Return: 0; -EINVAL bad size, chunk size or address; -ENOMEM. Kernel mode
 * also: the errno of a named flash_dir that cannot hold the backing file.
 */
int kvmm_region_create(struct kvmm_ctx *ctx, const struct kvmm_region_config *cfg,
		       struct kvmm_region **regionp);

/** kvmm_region_destroy() - unmap and free, after its queued prefetches finish. */
int kvmm_region_destroy(struct kvmm_region *region);

/** kvmm_region_base() - the first byte of the mapping (NULL for a NULL region). */
void *kvmm_region_base(const struct kvmm_region *region);

/*
 * Range operations: @offset and @length are bytes, multiples of the chunk
 * size, @length nonzero, inside the region; -EINVAL otherwise.
 */

/**
 * kvmm_region_ensure() - make the range resident now: empty chunks are
 * zero-filled, flash chunks read back (-EIO if that read fails or its
 * checksum does not match; the chunk stays on flash).
 */
int kvmm_region_ensure(struct kvmm_region *region, uint64_t offset, uint64_t length);

/**
 * kvmm_region_discard() - drop the range's memory and flash copies; it reads
 * as zeros afterwards. -EBUSY (nothing changes) when a chunk is pinned.
 */
int kvmm_region_discard(struct kvmm_region *region, uint64_t offset, uint64_t length);

/**
 * kvmm_region_evict() - write the range's resident chunks to flash and drop
 * their memory; a later touch or ensure reads them back. Synchronous.
 * User mode skips pinned chunks; kernel mode fails with -EBUSY if the range
 * has one. A chunk whose write fails stays resident (-EIO); -ENOSPC when
 * the flash store is full. The caller must not write to the range while it
 * runs. User mode: -EOPNOTSUPP when the flash directory refuses O_DIRECT
 * or is in memory (tmpfs, ramfs). Kernel mode: -ENODEV when kvmm.ko has no
 * backing store, -EOPNOTSUPP when the module predates its flash tier.
 */
int kvmm_region_evict(struct kvmm_region *region, uint64_t offset, uint64_t length);

/**
 * kvmm_region_prefetch() - start reading the range's flash chunks back;
 * see struct kvmm_op. The op fails with -EIO if a read-back failed (the
 * chunk stays on flash, KVMM_STATE_ERROR).
 */
int kvmm_region_prefetch(struct kvmm_region *region, uint64_t offset, uint64_t length,
			 struct kvmm_op **opp);

/** kvmm_region_pin() - ensure the range and keep it resident; pins nest. */
int kvmm_region_pin(struct kvmm_region *region, uint64_t offset, uint64_t length);

/** kvmm_region_unpin() - undo one pin; -EINVAL if a chunk is not pinned. */
int kvmm_region_unpin(struct kvmm_region *region, uint64_t offset, uint64_t length);

/** kvmm_region_stats() - counters and sizes. */
int kvmm_region_stats(struct kvmm_region *region, struct kvmm_region_stats *st);

/**
 * kvmm_region_query() - one KVMM_STATE_* byte per chunk, for @nr chunks
 * starting at chunk index @first.
 */
int kvmm_region_query(struct kvmm_region *region, uint64_t first, uint64_t nr, uint8_t *states);

/**
 * kvmm_region_share() - make [@dst_offset, +@length) of @dst read the
 * memory of [@src_offset, +@length) of @src, chunk by chunk, without a
 * second copy in memory: both ranges then map the same pages (or the same
 * flash copy) and report KVMM_STATE_SHARED. What the destination range
 * held before is dropped (as discard); empty source chunks leave empty
 * destination chunks. A write through either range copies what it writes
 * for that range only (copy-on-write); discard and destroy drop one
 * share; evict writes a shared chunk to flash once and drops it from
 * every range that shares it, and a touch or ensure through any of them
 * reads it back for all. Kernel mode: KVMM_IOC_SHARE (the pages of
 * kvmm.ko's pool). User mode: the chunk moves into a shared memory file
 * (a memfd) on its first share, one copy at memory speed, and both ranges
 * map that file privately, so the kernel itself copies a page that is
 * written (docs/architecture.md, "Prefix sharing"). Offsets and length
 * are chunk multiples, the regions have one chunk size, one context, and
 * do not overlap when they are one region. Return: 0; -EINVAL otherwise
 * (nothing changes); -EBUSY a chunk of either range is pinned; -EIO a
 * source chunk's last read-back failed; -EXDEV the regions are of
 * different contexts or (kernel mode) backing stores; -ENOMEM. A refused
 * call changes nothing.
 */
int kvmm_region_share(struct kvmm_region *dst, uint64_t dst_offset, struct kvmm_region *src,
		      uint64_t src_offset, uint64_t length);

struct kvmm_attn_tier; /* include/kvmm/attention.h */

/**
 * kvmm_attn_tier_regions() - fill @tier so a CPU decode
 * (kvmm_attn_cpu_decode() with opts.tier) runs on K/V held in these @n host
 * regions while parts of them are on flash: the decode starts reading each
 * range's flash chunks ahead of its compute (kvmm_region_prefetch: the
 * io_uring store in user mode, PREFETCH/WAIT in kernel mode), computes what
 * is resident meanwhile and pins each range while it reads it, so a
 * concurrent evict leaves it alone; the result is bitwise that of the same
 * decode with everything resident. A read-back that fails makes the decode
 * fail with -EIO (nothing written); kernel mode: pinned bytes count against
 * RLIMIT_MEMLOCK (-ENOMEM past it). The regions must outlive @tier; free it
 * with kvmm_attn_tier_free(). -EINVAL, -ENOMEM.
 */
int kvmm_attn_tier_regions(struct kvmm_region *const *regions, int n, struct kvmm_attn_tier *tier);
void kvmm_attn_tier_free(struct kvmm_attn_tier *tier);

/* --------------------------------------------------------------- KV cache */

enum kvmm_kv_layout {
	/* Per layer and K/V one region of [slot][token][head][dim] (vAttention). */
	KVMM_LAYOUT_LAYER_MAJOR = 0,
	/* Per slot one region of [token][layer][K|V][head][dim]: one chunk holds
	 * a few tokens of every layer, so little is mapped beyond seq_len. */
	KVMM_LAYOUT_TOKEN_MAJOR = 1,
};

enum kvmm_kv_which { KVMM_K = 0, KVMM_V = 1 };

/* Where KV memory lives: host memory, or CUDA device device_index
 * (docs/cuda.md; -ENODEV where there is no CUDA driver or device). */
enum kvmm_device { KVMM_DEVICE_HOST = 0, KVMM_DEVICE_CUDA = 1 };

/*
 * kvmm_kv_slot_state() - KVMM_SLOT_* of a slot. A slot swapped out to a
 * tier is in the state of the same value and name: KVMM_TIER_HOST ==
 * KVMM_SLOT_HOST, KVMM_TIER_FLASH == KVMM_SLOT_FLASH (and == the chunk
 * states KVMM_STATE_HOST, KVMM_STATE_FLASH).
 */
#define KVMM_SLOT_FREE	    0
#define KVMM_SLOT_ACTIVE    1
#define KVMM_SLOT_HOST	    2 /* swapped out to DRAM */
#define KVMM_SLOT_FLASH	    3 /* swapped out to flash */
#define KVMM_SLOT_IN_FLIGHT 4 /* a swap is running */

/* Tiers a slot can be swapped out to. */
enum kvmm_tier { KVMM_TIER_HOST = KVMM_SLOT_HOST, KVMM_TIER_FLASH = KVMM_SLOT_FLASH };

/* KV cache flags. */
#define KVMM_KV_AUTO_SWAP (1U << 0) /* policy: swap out to stay in budget */

/**
 * typedef kvmm_kv_evict_fn - called in auto-swap mode for each slot the
 * policy swapped out (to @tier) to stay in budget. The engine must
 * kvmm_kv_swap_in() that slot before it steps it again. Runs with the
 * cache locked on the thread that needed the room (the stepping thread,
 * or the context's worker running a swap-in): it must not call into the
 * cache.
 */
typedef void (*kvmm_kv_evict_fn)(void *arg, uint32_t slot, enum kvmm_tier tier);

/**
 * struct kvmm_kv_config - kvmm_kv_create() settings.
 * @size:         sizeof(struct kvmm_kv_config); set by the initialiser.
 * @layers, @kv_heads, @head_dim: model shape, all nonzero.
 * @dtype_bytes:  1, 2 or 4.
 * @max_slots:    concurrent sequences (slot indices 0..max_slots-1).
 * @max_tokens:   tokens per slot.
 * @device:       KVMM_DEVICE_HOST or KVMM_DEVICE_CUDA.
 * @device_index: GPU index for KVMM_DEVICE_CUDA; 0 otherwise.
 * @chunk_bytes:  chunk size, or 0 for the context's.
 * @layout:       KVMM_LAYOUT_*.
 * @lookahead:    tokens mapped beyond each stepped seq_len.
 * @flags:        KVMM_KV_*.
 * @budget_bytes: memory the cache may hold on its device (0: no limit):
 *                host DRAM for a host cache (mapped memory and DRAM swap
 *                copies), GPU memory for a CUDA cache (mapped chunks and
 *                chunks draining behind fences). Past it, step and
 *                swap-in release memory mapped beyond slots' needs, then
 *                freed slots' memory, then (AUTO_SWAP) swap out cold
 *                slots (host: to KVMM_TIER_FLASH; CUDA: to
 *                KVMM_TIER_HOST), then fail with -ENOMEM.
 * @evict_cb, @evict_arg: auto-swap notification (may be NULL).
 */
struct kvmm_kv_config {
	uint32_t size;
	uint32_t layers;
	uint32_t kv_heads;
	uint32_t head_dim;
	uint32_t dtype_bytes;
	uint32_t max_slots;
	uint32_t max_tokens;
	uint32_t device;
	uint32_t device_index;
	uint32_t chunk_bytes;
	uint32_t layout;
	uint32_t lookahead;
	uint32_t flags;
	uint64_t budget_bytes;
	kvmm_kv_evict_fn evict_cb;
	void *evict_arg;
};

#define KVMM_KV_CONFIG_INIT                                                                        \
	{                                                                                          \
		.size = sizeof(struct kvmm_kv_config)                                              \
	}

/**
 * struct kvmm_kv_tensor - one layer's K or V as a plain strided tensor:
 * element (slot, token, head, dim) is at
 *     (char *)base + slot*slot_stride_bytes + token*token_stride_bytes
 *                  + head*head_stride_bytes + dim*dim_stride_bytes.
 * The *_stride fields give the same strides in elements (each byte stride
 * is a multiple of the element size). Valid until the cache is destroyed.
 */
struct kvmm_kv_tensor {
	void *base;
	uint64_t slot_stride, token_stride, head_stride, dim_stride;
	uint64_t slot_stride_bytes, token_stride_bytes, head_stride_bytes, dim_stride_bytes;
};

/**
 * struct kvmm_kv_stats - kvmm_kv_stats() output; byte counts are all layers.
 * @mapped_bytes:   resident memory attached to slots (incl. freed slots).
 * @used_bytes:     bytes of tokens below each active slot's seq_len.
 * @waste_bytes:    mapped_bytes - used_bytes.
 * @host_bytes:     swapped-out data held in DRAM (KVMM_TIER_HOST).
 * @flash_bytes:    swapped-out data held on flash.
 * @new_bytes:      total memory newly mapped by step.
 * @reused_bytes:   total memory of freed slots taken by a new sequence
 *                  instead of being mapped anew (deferred reclamation).
 * @reclaimed_bytes: total memory of freed slots released under budget.
 * @swap_outs, @swap_ins: completed slot swaps.
 * @policy_swap_outs: slots the auto-swap policy swapped out.
 * @active_slots, @free_slots: slots in use / free.
 * @shared_bytes:   memory (on the device or below) that two or more slots
 *                  share (kvmm_kv_share_prefix()), counted once. Every
 *                  byte count above counts a shared chunk once, under the
 *                  lowest-numbered slot that maps it, and so does the
 *                  budget (under the lowest-numbered one that holds it on
 *                  the device).
 * @shares:         kvmm_kv_share_prefix() calls that succeeded.
 * @share_copied_bytes: bytes those calls copied (the partial chunk at the
 *                  end of each prefix, every part).
 */
struct kvmm_kv_stats {
	uint64_t mapped_bytes;
	uint64_t used_bytes;
	uint64_t waste_bytes;
	uint64_t host_bytes;
	uint64_t flash_bytes;
	uint64_t new_bytes;
	uint64_t reused_bytes;
	uint64_t reclaimed_bytes;
	uint64_t swap_outs;
	uint64_t swap_ins;
	uint64_t policy_swap_outs;
	uint32_t active_slots;
	uint32_t free_slots;
	uint64_t shared_bytes;
	uint64_t shares;
	uint64_t share_copied_bytes;
	uint64_t reserved[5];
};

struct kvmm_kv;

/**
 * kvmm_kv_create() - reserve the whole cache's virtual space; no memory is
 * attached until step. Return: 0; -EINVAL bad config; -ENODEV device not
 * available; -EOPNOTSUPP a CUDA device without virtual memory management
 * or unified addressing; -EOVERFLOW sizes overflow; -ENOMEM.
 */
int kvmm_kv_create(struct kvmm_ctx *ctx, const struct kvmm_kv_config *cfg, struct kvmm_kv **kvp);

/** kvmm_kv_destroy() - free the cache, after its queued swaps finish. */
int kvmm_kv_destroy(struct kvmm_kv *kv);

/** kvmm_kv_tensor() - base and strides of @layer's K or V. */
int kvmm_kv_tensor(struct kvmm_kv *kv, uint32_t layer, enum kvmm_kv_which which,
		   struct kvmm_kv_tensor *t);

/**
 * kvmm_kv_alloc_slot() - pick a free slot for a new sequence, preferring
 * the freed slot whose still-mapped memory best fits @expected_tokens.
 * Return: 0 and *slotp; -EINVAL @expected_tokens > max_tokens; -ENOSPC
 * when no slot is free.
 */
int kvmm_kv_alloc_slot(struct kvmm_kv *kv, uint32_t expected_tokens, uint32_t *slotp);

/**
 * kvmm_kv_step() - make tokens [0, seq_lens[i] + lookahead) of each
 * slots[i] resident (a free slot becomes active). Memory of freed slots is
 * released only when the budget needs it (see budget_bytes). Return: 0;
 * -EINVAL bad slot or seq_len > max_tokens; -EAGAIN a slot is swapped out
 * or swapping (nothing changed for it; swap it in first); -ENOMEM over
 * budget or out of device memory; with auto-swap, what a victim's swap-out
 * failed with.
 * Slots listed before a failing one keep their new memory.
 */
int kvmm_kv_step(struct kvmm_kv *kv, uint32_t n, const uint32_t *slots, const uint32_t *seq_lens);

/**
 * kvmm_kv_free_slot() - the sequence in @slot is done; its memory stays
 * mapped for reuse (deferred reclamation). -EINVAL if not active.
 */
int kvmm_kv_free_slot(struct kvmm_kv *kv, uint32_t slot);

/**
 * kvmm_kv_trim() - release memory that freed slots keep for reuse, largest
 * first, until at most @keep_bytes of it remain (0 releases all of it).
 * Released ranges read as zeros and are counted in reclaimed_bytes. Use it
 * when the engine knows no sequence will reuse that memory soon, or to
 * give memory back between bursts. A CUDA cache also releases the chunks
 * its pool keeps ready (cuMemRelease) and keeps none ready until memory is
 * needed again. -EINVAL for a NULL @kv; -EIO (a CUDA cache) an event
 * behind a freed slot can no longer be known to pass (a lost context):
 * that memory stays mapped.
 */
int kvmm_kv_trim(struct kvmm_kv *kv, uint64_t keep_bytes);

/**
 * kvmm_kv_swap_out() - move @slot's data to @tier and release its memory,
 * asynchronously (see struct kvmm_op). What moves is what step made
 * resident (tokens [0, seq_len + lookahead)); memory mapped past it is
 * released. The slot must not be written until swapped in again. A failed
 * swap-out leaves the slot active with its data. -EINVAL bad slot/tier;
 * -EAGAIN slot not active or pinned; -ENOMEM; a CUDA cache's driver error
 * recording the event the copy waits for. The op fails as
 * kvmm_region_evict() does.
 */
int kvmm_kv_swap_out(struct kvmm_kv *kv, uint32_t slot, enum kvmm_tier tier, struct kvmm_op **opp);

/**
 * kvmm_kv_swap_in() - bring @slot back, asynchronously; the slot is active
 * again once the op succeeds. It makes room in the budget first, as step
 * does (the op fails with -ENOMEM when it cannot). A failed read (-EIO: I/O
 * error or checksum mismatch) leaves the slot swapped out; it is never
 * filled with bad data. -EINVAL bad slot; -EAGAIN if the slot is not
 * swapped out; -ENOMEM.
 */
int kvmm_kv_swap_in(struct kvmm_kv *kv, uint32_t slot, struct kvmm_op **opp);

/**
 * kvmm_kv_set_stream() - KVMM_DEVICE_CUDA: the engine's CUstream or
 * cudaStream_t (NULL: the legacy default stream). free_slot, swap_out and
 * reclaim record an event on it, and memory is unmapped only once every
 * kernel queued on it before that call has finished. -EINVAL for a host
 * cache, or for a stream that is not one of the primary context of the
 * cache's device (kvmm_cuda_why() says which); -EIO the context could not
 * be made current.
 */
int kvmm_kv_set_stream(struct kvmm_kv *kv, void *stream);

/**
 * kvmm_kv_swap_in_wait_layer() - while @slot swaps in, wait until
 * @layer's K and V are in place: with @stream non-NULL that stream waits
 * (the call returns once the layer's copy is queued), else the caller
 * does. A GPU cache publishes layers one by one (layer-major; token-major
 * slots arrive whole), so an engine can start on layer 0 early; a host
 * cache publishes the slot whole when its swap-in ends (the caller waits
 * for that; @stream does not apply). 0 also once the slot is active; the
 * swap's error if it failed; -EINVAL bad slot or layer; -EAGAIN when the
 * slot is neither active nor being swapped in.
 */
int kvmm_kv_swap_in_wait_layer(struct kvmm_kv *kv, uint32_t slot, uint32_t layer, void *stream);

/**
 * kvmm_kv_share_prefix() - start @dst_slot with the first @ntokens tokens
 * of @src_slot without copying them: the whole chunks of that prefix (of
 * every part: each layer's K and V, or the slot's one region) are shared,
 * the same memory mapped in both slots; the partial chunk at its end is
 * copied into a chunk of @dst_slot's own (the bytes past @ntokens read as
 * zeros), so @dst_slot writes its next tokens only into memory it owns.
 * Both slots stay plain strided tensors. @dst_slot (active: from
 * kvmm_kv_alloc_slot() or a step) loses what it held and holds @ntokens
 * tokens after the call (its seq_len), as if stepped to @ntokens; @src_slot
 * is unchanged. Shared memory counts once in the stats and the budget; it
 * stays as long as any slot maps it (freeing @src_slot leaves @dst_slot's
 * prefix in place); a swap moves a shared chunk once (it stays on the
 * device while a slot there still maps it). The prefix must not be
 * written through either slot: host memory copies on write (each slot
 * keeps its own bytes) but a CUDA cache has no copy-on-write, and a write
 * there is seen through every slot that shares the chunk. A freed slot
 * that shares chunks gives them up when it is reused. Return: 0; -EINVAL
 * bad slot, @dst_slot == @src_slot, @ntokens 0; -ERANGE @ntokens past
 * @src_slot's seq_len; -EAGAIN either slot not active (free, swapped out,
 * in flight); -EBUSY @dst_slot pinned; -ENOMEM (the tail chunk, over
 * budget); a device error. A refused call changes nothing; a failure after
 * @dst_slot's old memory went leaves it active and empty (seq_len 0).
 */
int kvmm_kv_share_prefix(struct kvmm_kv *kv, uint32_t dst_slot, uint32_t src_slot,
			 uint32_t ntokens);

/** kvmm_kv_pin_slot() - the policy never swaps a pinned slot; pins nest. */
int kvmm_kv_pin_slot(struct kvmm_kv *kv, uint32_t slot);
int kvmm_kv_unpin_slot(struct kvmm_kv *kv, uint32_t slot);

/** kvmm_kv_set_priority() - policy victims: lowest priority first, then LRU. */
int kvmm_kv_set_priority(struct kvmm_kv *kv, uint32_t slot, int32_t priority);

/** kvmm_kv_slot_state() - KVMM_SLOT_* of @slot (>= 0), or -EINVAL for a bad slot. */
int kvmm_kv_slot_state(struct kvmm_kv *kv, uint32_t slot);

/** kvmm_kv_stats() - memory per tier, waste and reuse counters. */
int kvmm_kv_stats(struct kvmm_kv *kv, struct kvmm_kv_stats *st);

/**
 * struct kvmm_kv_cuda_stats - kvmm_kv_cuda_stats() output: what a
 * KVMM_DEVICE_CUDA cache asked of the driver (docs/cuda.md).
 * @steps:           kvmm_kv_step() calls.
 * @step_blocked_ns: time step spent waiting for the mapper or making
 *                   driver calls itself.
 * @step_blocked:    steps that had to.
 * @ahead_bytes:     bytes the background mapper mapped before a step
 *                   needed them.
 * @maps, @unmaps, @set_access: cuMemMap, cuMemUnmap, cuMemSetAccess calls.
 * @pool_creates, @pool_releases: physical chunks created and released.
 * @pool_refusals:   chunk creations the GPU ledger or the device refused.
 * @fences_waited:   host waits for a pending fence (an event behind the
 *                   last kernel that could read the memory).
 * @draining_bytes:  GPU memory released once its fence has passed.
 * @chunk_bytes:     the GPU chunk.
 * @granularity:     the driver's minimum allocation granularity.
 * @cc_major, @cc_minor: the device's compute capability.
 * @fence_errors:    event queries or waits that failed (a lost context):
 *                   the memory behind such a fence stays mapped.
 * @release_failures: cuMemRelease calls that failed; those chunks stay
 *                   charged to the GPU ledger.
 * @zero_read_only:  1 when the shared zero chunk is mapped read-only, 0
 *                   when the driver refused that and it is read-write
 *                   (docs/cuda.md, "The zero chunk").
 */
struct kvmm_kv_cuda_stats {
	uint64_t steps;
	uint64_t step_blocked_ns;
	uint64_t step_blocked;
	uint64_t ahead_bytes;
	uint64_t maps, unmaps, set_access;
	uint64_t pool_creates, pool_releases, pool_refusals;
	uint64_t fences_waited;
	uint64_t draining_bytes;
	uint64_t chunk_bytes;
	uint64_t granularity;
	uint32_t cc_major, cc_minor;
	uint64_t fence_errors;
	uint64_t release_failures;
	uint32_t zero_read_only;
	uint32_t reserved32;
	uint64_t reserved[5];
};

/** kvmm_kv_cuda_stats() - driver counters of a CUDA cache; -EINVAL for a host cache. */
int kvmm_kv_cuda_stats(struct kvmm_kv *kv, struct kvmm_kv_cuda_stats *st);

/**
 * kvmm_cuda_why() - why the last CUDA cache could not be made: the driver
 * library missing or not a driver, cuInit failing, a device without
 * virtual memory management, ...; "" after the driver loaded. A static
 * string, rewritten by the next kvmm_kv_create() of a CUDA cache.
 */
const char *kvmm_cuda_why(void);

/* ------------------------------------------------------ PyTorch allocator */

/*
 * GPU memory for PyTorch's CUDAPluggableAllocator (torch >= 2.0), in
 * allocators that release their memory and get it back together (a
 * vLLM-style sleep mode), optionally keeping the contents in a kvmm host
 * region (DRAM, or flash). Each allocation is its own VMM range
 * (cuMemAddressReserve, cuMemCreate, cuMemMap, cuMemSetAccess), so it keeps
 * its address across sleep and wake. Any number of allocators may exist;
 * kvmm_torch_malloc() serves the calling thread's current one
 * (kvmm_cuda_alloc_use()), else a process-wide default one without a
 * context; kvmm_torch_free() finds the allocation's own allocator from the
 * pointer, on any thread. All calls are thread-safe. docs/python.md shows
 * the torch side; not yet run on a GPU (tested against the driver
 * stand-in).
 */
struct kvmm_cuda_alloc;

/* kvmm_cuda_alloc_sleep() modes. */
#define KVMM_CUDA_SLEEP_DISCARD 0 /* contents dropped; wake gives zeroed memory */
#define KVMM_CUDA_SLEEP_HOST	1 /* contents kept in DRAM (a kvmm host region) */
#define KVMM_CUDA_SLEEP_FLASH	2 /* contents kept on flash (that region, evicted) */

/**
 * struct kvmm_cuda_alloc_config - kvmm_cuda_alloc_create() settings.
 * @size:  sizeof(struct kvmm_cuda_alloc_config); set by the initialiser.
 * @flags: 0; reserved.
 * @tag:   a name for stats and messages (copied; may be NULL).
 */
struct kvmm_cuda_alloc_config {
	uint32_t size;
	uint32_t flags;
	const char *tag;
};

#define KVMM_CUDA_ALLOC_CONFIG_INIT                                                                \
	{                                                                                          \
		.size = sizeof(struct kvmm_cuda_alloc_config)                                      \
	}

/**
 * struct kvmm_cuda_alloc_stats - kvmm_cuda_alloc_stats() output.
 * @allocations:  live allocations.
 * @bytes:        their size, rounded up to the device's granularity.
 * @mapped_bytes: of those, backed by GPU memory now.
 * @saved_bytes:  contents kept in host regions while asleep.
 * @mallocs, @frees: calls served.
 * @refusals:     mallocs that returned NULL (asleep, out of memory, ...).
 * @sleeps, @wakes: completed sleeps and wakes.
 * @asleep:       1 between a sleep and its wake.
 * @last_error:   negative errno of the last refusal or failure, or 0.
 */
struct kvmm_cuda_alloc_stats {
	uint64_t allocations;
	uint64_t bytes;
	uint64_t mapped_bytes;
	uint64_t saved_bytes;
	uint64_t mallocs, frees, refusals;
	uint64_t sleeps, wakes;
	uint32_t asleep;
	int32_t last_error;
	uint64_t reserved[8];
};

/**
 * kvmm_cuda_alloc_create() - an allocator. @ctx (may be NULL: then sleep
 * can only discard) holds the host regions contents are kept in, and in
 * kernel mode charges the GPU ledger. Return: 0; -EINVAL bad config;
 * -ENODEV no CUDA driver (kvmm_cuda_why() says why); -ENOMEM.
 */
int kvmm_cuda_alloc_create(struct kvmm_ctx *ctx, const struct kvmm_cuda_alloc_config *cfg,
			   struct kvmm_cuda_alloc **allocp);

/**
 * kvmm_cuda_alloc_destroy() - free an allocator with no live allocation
 * (-EBUSY otherwise). It must not be any thread's current allocator.
 */
int kvmm_cuda_alloc_destroy(struct kvmm_cuda_alloc *alloc);

/**
 * kvmm_cuda_alloc_use() - make @alloc (NULL: the default one) the calling
 * thread's current allocator; *@prevp (if @prevp) receives the previous
 * one, to restore.
 */
int kvmm_cuda_alloc_use(struct kvmm_cuda_alloc *alloc, struct kvmm_cuda_alloc **prevp);

/**
 * kvmm_cuda_alloc_sleep() - release the GPU memory of every allocation of
 * @alloc, keeping the addresses, after everything queued on their devices
 * has finished (cuCtxSynchronize). @how: KVMM_CUDA_SLEEP_*. Until
 * kvmm_cuda_alloc_wake(), the memory must not be touched and
 * kvmm_torch_malloc() on @alloc returns NULL. Return: 0; -EINVAL bad @how,
 * or HOST/FLASH without a context; -EALREADY asleep; a copy's, region's
 * or driver's error: then some allocations may be released, and wake
 * restores them.
 */
int kvmm_cuda_alloc_sleep(struct kvmm_cuda_alloc *alloc, uint32_t how);

/**
 * kvmm_cuda_alloc_wake() - map GPU memory again at the same addresses and
 * put back the kept contents (zeros where they were discarded). 0 also
 * when awake; on failure (-ENOMEM, -EDQUOT, -EIO) the allocator stays
 * asleep, keeps what it restored, and can be woken again.
 */
int kvmm_cuda_alloc_wake(struct kvmm_cuda_alloc *alloc);

/** kvmm_cuda_alloc_stats() - sizes and counters of @alloc. */
int kvmm_cuda_alloc_stats(struct kvmm_cuda_alloc *alloc, struct kvmm_cuda_alloc_stats *st);

/**
 * kvmm_torch_malloc() - PyTorch's alloc_fn: @size bytes of GPU memory on
 * CUDA device @device from the calling thread's current allocator; NULL
 * when it cannot (the reason in that allocator's stats.last_error).
 * @stream (a cudaStream_t) is not needed: the memory is ready at return.
 */
void *kvmm_torch_malloc(ssize_t size, int device, void *stream);

/**
 * kvmm_torch_free() - PyTorch's free_fn: waits for the work queued on
 * @stream (the stream PyTorch last used the memory on), then releases
 * @ptr's memory and address range. A pointer kvmm did not allocate is
 * ignored.
 */
void kvmm_torch_free(void *ptr, ssize_t size, int device, void *stream);

#ifdef __cplusplus
}
#endif

#endif /* KVMM_KVMM_H */
