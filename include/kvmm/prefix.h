/*
 * kvmm prefix index: which KV slots already hold a prompt's leading tokens.
 *
 * The role of vLLM's block hash table, for kvmm's contiguous slots. A
 * sequence is cut into blocks of block_tokens tokens; block i of it is named
 * by a chained hash of every token up to its end (the hash of block i covers
 * block i's tokens and the hash of block i - 1), so two sequences have the
 * same hash at block i exactly when their first (i + 1) * block_tokens
 * tokens are the same. Only full blocks are named. A slot that holds a
 * sequence's KV holds block i at tokens [i * block_tokens, (i + 1) *
 * block_tokens), the same offset in every slot, so a block found in any slot
 * can be shared into a new request's slot at that offset.
 *
 * Life of a slot in the index:
 *   kvmm_prefix_insert()   the slot's request has computed KV for blocks
 *                          0..n-1 (called again as it grows: the first
 *                          blocks must be the same); the slot is in use
 *   kvmm_prefix_lookup()   a new request asks how many of its leading
 *                          blocks are cached and which slot holds each
 *   kvmm_prefix_release()  the request ended; the slot stays as a cache of
 *                          its blocks, evictable, least recently used first
 *   kvmm_prefix_acquire()  a cached slot is in use again (taken back)
 *   kvmm_prefix_evict()    under memory pressure: the least recently used
 *                          cached slot leaves the index; the engine frees it
 *   kvmm_prefix_remove()   the engine frees or reuses a slot itself
 * A block held by several slots is counted once (it is one block of KV
 * when the slots share their chunks) and stays in the index while any of
 * them holds it.
 *
 * Hashes are 128-bit XXH3 over the parent hash and the tokens (host byte
 * order), started from the configured seed: give each model (and revision,
 * dtype, layout: anything that changes what the KV bytes mean) its own seed.
 * Engines with their own block hashes (vLLM's SHA-256 chain, a remote
 * store's names) may pass those instead: the index only compares them.
 *
 * Thread-safe: every call takes the index's lock. All functions return 0 or
 * a negative errno; on an error nothing changed unless the function says
 * otherwise.
 */
#ifndef KVMM_PREFIX_H
#define KVMM_PREFIX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The name of one block: 128 opaque bits. */
struct kvmm_block_hash {
	uint64_t lo;
	uint64_t hi;
};

struct kvmm_prefix_config {
	/* sizeof(struct kvmm_prefix_config): lets the struct grow. */
	uint32_t size;
	/* Tokens per block, > 0 (vLLM's block_size; 16 is common). */
	uint32_t block_tokens;
	/*
	 * Distinct blocks the index holds at most; an insert past it first
	 * evicts cached slots (as kvmm_prefix_evict). 0: no limit.
	 */
	uint64_t max_blocks;
	/* Where every chain starts: a fingerprint of the model and its KV format. */
	uint64_t seed;
	/*
	 * Called for each slot an insert evicted to make room, after the index
	 * lock is dropped, so the engine can free it; may call the index. NULL:
	 * inserts never evict (they fail with -ENOSPC instead).
	 */
	void (*evicted)(void *arg, uint32_t slot);
	void *arg;
};

struct kvmm_prefix_stats {
	uint64_t blocks;	  /* distinct blocks indexed */
	uint64_t slots;		  /* slots in the index */
	uint64_t cached_slots;	  /* of those, not in use (evictable) */
	uint64_t lookups;	  /* kvmm_prefix_lookup() calls */
	uint64_t lookup_blocks;	  /* blocks asked for by lookups */
	uint64_t hit_blocks;	  /* of those, found (the leading run only) */
	uint64_t inserted_blocks; /* blocks new to the index at insert */
	uint64_t evictions;	  /* slots evicted (kvmm_prefix_evict, inserts) */
	uint64_t evicted_blocks;  /* blocks that left the index with them */
};

struct kvmm_prefix;

/* -EINVAL for a NULL argument, a size smaller than this header's, block_tokens 0. */
int kvmm_prefix_create(const struct kvmm_prefix_config *cfg, struct kvmm_prefix **pxp);
void kvmm_prefix_destroy(struct kvmm_prefix *px);

/*
 * Hashes of the full blocks of tokens[0..ntokens) into out[0..ntokens /
 * block_tokens), continuing the chain after *parent (NULL: the sequence
 * starts here). Returns the number of blocks hashed, or -EINVAL.
 */
long kvmm_prefix_hash(const struct kvmm_prefix *px, const struct kvmm_block_hash *parent,
		      const uint32_t *tokens, size_t ntokens, struct kvmm_block_hash *out);

/*
 * Slot @slot holds blocks hashes[0..n) and is in use. For a slot already in
 * the index, its blocks must be a prefix of hashes (it grows; -EINVAL
 * otherwise) and it becomes in use again if it was cached. -EEXIST if a
 * hash is already indexed at another block position (a collision or
 * hashes from two different chains). -ENOSPC if max_blocks leaves no room
 * even after evicting every cached slot other than @slot (slots evicted on
 * the way stay evicted and were reported; nothing of this insert changed).
 */
int kvmm_prefix_insert(struct kvmm_prefix *px, uint32_t slot, const struct kvmm_block_hash *hashes,
		       size_t n);

/*
 * How many leading blocks of hashes[0..n) are indexed: *matched gets the
 * count and slots[i] (room for n) the slot holding block i. Marks the
 * holders recently used.
 */
int kvmm_prefix_lookup(struct kvmm_prefix *px, const struct kvmm_block_hash *hashes, size_t n,
		       uint32_t *slots, size_t *matched);

/* -ENOENT for a slot not in the index; -EINVAL to release one not in use. */
int kvmm_prefix_release(struct kvmm_prefix *px, uint32_t slot);
int kvmm_prefix_acquire(struct kvmm_prefix *px, uint32_t slot);
/* The slot leaves the index, in use or not; -ENOENT if it is not there. */
int kvmm_prefix_remove(struct kvmm_prefix *px, uint32_t slot);
/* The least recently used cached slot leaves the index into *slot; -ENOENT if none. */
int kvmm_prefix_evict(struct kvmm_prefix *px, uint32_t *slot);
/* Blocks of @slot in the index into *nblocks; -ENOENT if it is not there. */
int kvmm_prefix_slot_blocks(struct kvmm_prefix *px, uint32_t slot, size_t *nblocks);
int kvmm_prefix_stats(struct kvmm_prefix *px, struct kvmm_prefix_stats *st);

#ifdef __cplusplus
}
#endif

#endif /* KVMM_PREFIX_H */
