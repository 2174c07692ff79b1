/*
 * kvmm remote tier: KV chunks shared by many hosts through a Redis Cluster,
 * a single Redis server or Valkey.
 *
 *     struct kvmm_remote_config rc = KVMM_REMOTE_CONFIG_INIT;
 *     rc.servers = "10.0.0.5:6379,10.0.0.6:6379";   // any nodes of the cluster
 *     rc.layout = (struct kvmm_remote_layout){ .model = "org/model", ... };
 *     kvmm_remote_open(&rc, &r);
 *     kvmm_vllm_hash_blocks(&root, tokens, n, block_tokens, blocks);  // vLLM's names
 *     nc = kvmm_remote_chunk_hashes(r, blocks, nblocks, chunks);
 *     kvmm_remote_lookup(r, chunks, nc, &found);          // how many chunks it has
 *     kvmm_kv_step(kv, 1, &slot, &len);                   // map the slot
 *     kvmm_remote_fetch_kv(r, kv, slot, chunks, 0, found, 0, &op);
 *     got = kvmm_wait(op);             // chunks [0, got) are in the slot, verified
 *     ... prefill tokens from got * chunk_tokens on, then publish:
 *     kvmm_remote_publish_kv(r, kv, slot, chunks, got, nc - got, NULL);
 *
 * Names. A chunk is chunk_tokens tokens of one sequence, all layers, K and
 * V. It is named by the vLLM prefix-caching block hash of its last block
 * (SHA-256 over canonical CBOR of (parent hash, token ids, extra keys),
 * chained from the none hash of PYTHONHASHSEED), so a vLLM deployment and
 * kvmm name the same tokens the same way, plus a fingerprint of everything
 * that gives the bytes their meaning (struct kvmm_remote_layout). Only full
 * chunks are named or stored.
 *
 * Values. Each chunk is one immutable key, "kvmm:1:{<chunk hash>}:<fp>",
 * written with SET NX (the first writer wins; no second key a cluster could
 * place elsewhere or a crash could leave half-written). The value is a
 * header (magic, version, fingerprint, chunk hash, parent hash, tokens,
 * payload length, XXH3 of the payload, XXH3 of the header) and the payload:
 * [layer][K, V][token][head][dim], whatever the cache's layout. Every fetch
 * checks all of it; any mismatch, error or timeout is a miss that the
 * engine recomputes: never wrong KV.
 *
 * Time. Every call has a budget (budget_ms, the config's by default) and
 * every command a timeout: a stopped or paused server costs at most that,
 * never a hang. Lookup (pipelined EXISTS, stopping at the first miss) tells
 * the engine up front how many chunks a fetch will try to bring.
 *
 * Cluster. Keys are routed by their hash slot (CRC16 of the {hash tag});
 * the slot map comes from CLUSTER SLOTS, MOVED updates it, ASK is followed
 * once, a lost connection refreshes it and is retried while the budget
 * lasts, so a fetch follows a failover to the promoted replica. A server
 * without cluster support is used as the one node for every slot.
 *
 * All functions return 0 or a negative errno unless they say otherwise.
 * Asynchronous calls complete through struct kvmm_op (kvmm.h): opp NULL
 * runs detached, else kvmm_wait(*opp) once gives the result.
 */
#ifndef KVMM_REMOTE_H
#define KVMM_REMOTE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <kvmm/kvmm.h>
#include <kvmm/prefix.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Version of the value format (header and payload layout). */
#define KVMM_REMOTE_FORMAT 1

/* A SHA-256 digest: a vLLM block hash, a chunk name or a layout fingerprint. */
struct kvmm_hash256 {
	uint8_t b[32];
};

/*
 * kvmm_vllm_none_hash() - vLLM's NONE_HASH for PYTHONHASHSEED @seed:
 * sha256_cbor(seed), the parent of every sequence's first block.
 */
int kvmm_vllm_none_hash(const char *seed, struct kvmm_hash256 *out);

/*
 * kvmm_vllm_block_hash() - vLLM's hash_block_tokens() with sha256_cbor:
 * SHA-256 of the canonical CBOR of (parent, tuple(tokens), extra_keys).
 * @extra_cbor/@extra_len: the CBOR encoding of the extra_keys tuple (LoRA
 * name, multimodal hashes, cache salt), or NULL for None.
 */
int kvmm_vllm_block_hash(const struct kvmm_hash256 *parent, const uint32_t *tokens, size_t ntokens,
			 const void *extra_cbor, size_t extra_len, struct kvmm_hash256 *out);

/*
 * kvmm_vllm_hash_blocks() - hashes of the full blocks of tokens[0..ntokens)
 * into out[0..ntokens / block_tokens), chained from *parent (the none hash
 * for a sequence's start), without extra keys. Returns the number of
 * blocks, or -EINVAL.
 */
long kvmm_vllm_hash_blocks(const struct kvmm_hash256 *parent, const uint32_t *tokens,
			   size_t ntokens, uint32_t block_tokens, struct kvmm_hash256 *out);

/*
 * kvmm_hash256_block() - the prefix index's name (prefix.h) for a vLLM
 * block hash: its first 128 bits, so that the local index, the remote tier
 * and vLLM name a block alike.
 */
static inline struct kvmm_block_hash kvmm_hash256_block(const struct kvmm_hash256 *h)
{
	struct kvmm_block_hash b;

	memcpy(&b.lo, h->b, sizeof(b.lo));
	memcpy(&b.hi, h->b + sizeof(b.lo), sizeof(b.hi));
	return b;
}

/*
 * struct kvmm_remote_layout - what makes a chunk's bytes meaningful; two
 * hosts share a chunk only when every field is equal.
 * @model:        model name (e.g. "meta-llama/Llama-3.1-8B"), not NULL.
 * @revision:     revision of its weights (a commit, a tag); NULL: "".
 * @dtype:        element type of the KV ("bf16", "f16", "f32", "fp8_e4m3"), not NULL.
 * @layers, @kv_heads, @head_dim, @dtype_bytes: the KV shape; for a
 *                kvmm_kv they must equal its config.
 * @block_tokens: tokens per hash block (vLLM's block_size), > 0.
 * @chunk_tokens: tokens per remote chunk, a multiple of block_tokens.
 * @tp_rank, @tp_size: this process's tensor-parallel rank and the group's
 *                size (0/1 without tensor parallelism); a rank stores the
 *                KV of its own heads.
 */
struct kvmm_remote_layout {
	const char *model;
	const char *revision;
	const char *dtype;
	uint32_t layers;
	uint32_t kv_heads;
	uint32_t head_dim;
	uint32_t dtype_bytes;
	uint32_t block_tokens;
	uint32_t chunk_tokens;
	uint32_t tp_rank;
	uint32_t tp_size;
};

/*
 * kvmm_remote_fingerprint() - SHA-256 over the canonical CBOR of the
 * layout and KVMM_REMOTE_FORMAT. -EINVAL for a layout that is incomplete.
 */
int kvmm_remote_fingerprint(const struct kvmm_remote_layout *l, struct kvmm_hash256 *fp);

/*
 * struct kvmm_remote_config - kvmm_remote_open() settings. Start from
 * KVMM_REMOTE_CONFIG_INIT; zero fields take the defaults named.
 * @size:               sizeof(struct kvmm_remote_config); set by the initialiser.
 * @servers:            "host:port[,host:port...]": a single server, or any
 *                      nodes of a cluster (the rest are learned), not NULL.
 * @connections:        connections (and I/O threads) per server node; 4.
 * @timeout_ms:         longest wait for one command's send or reply; 1000.
 * @connect_timeout_ms: longest wait for a connection; 500.
 * @budget_ms:          longest a lookup, fetch or publish may take, when
 *                      the call does not give its own; 2000.
 * @max_inflight_bytes: value bytes moving at once, all calls together (a
 *                      larger value still goes, alone); 256 MiB.
 * @lookup_window:      EXISTS per node per pipelined round trip; 64.
 * @hash_seed:          vLLM's PYTHONHASHSEED, whose none hash is the parent
 *                      of a sequence's first chunk; NULL: $PYTHONHASHSEED,
 *                      -EINVAL if that is unset too (vLLM's chains are
 *                      random then: nothing could be shared).
 * @layout:             the chunks' layout (struct kvmm_remote_layout).
 */
struct kvmm_remote_config {
	uint32_t size;
	const char *servers;
	uint32_t connections;
	uint32_t timeout_ms;
	uint32_t connect_timeout_ms;
	uint32_t budget_ms;
	uint64_t max_inflight_bytes;
	uint32_t lookup_window;
	const char *hash_seed;
	struct kvmm_remote_layout layout;
};

#define KVMM_REMOTE_CONFIG_INIT                                                                    \
	{                                                                                          \
		.size = sizeof(struct kvmm_remote_config)                                          \
	}

/*
 * struct kvmm_remote_stats - kvmm_remote_stats() output, counted since open.
 * @lookups, @lookup_keys, @lookup_hits: lookup calls, keys asked, leading keys found.
 * @lookup_round_trips: pipelined EXISTS windows sent (per node).
 * @gets, @get_hits:   chunk fetches tried, and verified hits.
 * @get_misses:        fetches the store did not have (nil).
 * @get_bad:           values that failed a check (header, fingerprint,
 *                     hash, parent, length, checksum): misses too.
 * @puts, @put_new, @put_existing: stores tried; written; already there (NX).
 * @put_failed, @get_failed: stores and fetches lost to errors or the budget.
 * @bytes_read, @bytes_written: value bytes (header included).
 * @timeouts:          commands or connections that ran past their time.
 * @errors:            connection and protocol errors, server error replies.
 * @moved, @ask:       redirections followed.
 * @reconnects:        connections made again after a failure.
 * @refreshes:         slot maps read (CLUSTER SLOTS).
 * @get_ns, @put_ns:   time summed over fetches and stores (queue to reply).
 * @get_ns_max, @put_ns_max: the longest of each.
 * @lookup_ns:         time summed over lookups.
 * @nodes:             server nodes known.
 * @cluster:           1 when the servers are a cluster.
 */
struct kvmm_remote_stats {
	uint64_t lookups;
	uint64_t lookup_keys;
	uint64_t lookup_hits;
	uint64_t lookup_round_trips;
	uint64_t gets;
	uint64_t get_hits;
	uint64_t get_misses;
	uint64_t get_bad;
	uint64_t get_failed;
	uint64_t puts;
	uint64_t put_new;
	uint64_t put_existing;
	uint64_t put_failed;
	uint64_t bytes_read;
	uint64_t bytes_written;
	uint64_t timeouts;
	uint64_t errors;
	uint64_t moved;
	uint64_t ask;
	uint64_t reconnects;
	uint64_t refreshes;
	uint64_t get_ns;
	uint64_t put_ns;
	uint32_t nodes;
	uint32_t cluster;
	uint64_t get_ns_max;
	uint64_t put_ns_max;
	uint64_t lookup_ns;
	uint64_t reserved[5];
};

struct kvmm_remote;

/*
 * kvmm_remote_open() - connect to the servers and learn the slot map.
 * -EINVAL bad config; -ECONNREFUSED, -ETIMEDOUT, -EHOSTUNREACH no server
 * of @servers answered; -EPROTO a reply that is not Redis's.
 */
int kvmm_remote_open(const struct kvmm_remote_config *cfg, struct kvmm_remote **rp);

/* kvmm_remote_close() - wait for the calls in flight, then disconnect. */
void kvmm_remote_close(struct kvmm_remote *r);

/* kvmm_remote_fp() - the layout fingerprint the handle's keys carry. */
void kvmm_remote_fp(const struct kvmm_remote *r, struct kvmm_hash256 *fp);

/*
 * kvmm_remote_key() - the key of chunk @chunk into buf[0..len) with its
 * NUL. Returns the key's length, or -ENOSPC.
 */
int kvmm_remote_key(const struct kvmm_remote *r, const struct kvmm_hash256 *chunk, char *buf,
		    size_t len);

/*
 * kvmm_remote_chunk_hashes() - chunk names from a sequence's block hashes:
 * chunk i is named by block ((i + 1) * chunk_tokens / block_tokens - 1).
 * Returns the number of full chunks written to out, or -EINVAL.
 */
long kvmm_remote_chunk_hashes(const struct kvmm_remote *r, const struct kvmm_hash256 *blocks,
			      size_t nblocks, struct kvmm_hash256 *out);

/*
 * kvmm_remote_lookup() - how many leading chunks of chunks[0..n) the store
 * holds, into *found: pipelined EXISTS, lookup_window keys per node per
 * round trip, stopping at the first window with a miss. An error or the
 * budget (budget_ms, 0: the config's) ends the count there: the result is
 * a count to try, never more than the store has.
 */
int kvmm_remote_lookup(struct kvmm_remote *r, const struct kvmm_hash256 *chunks, size_t n,
		       uint32_t budget_ms, size_t *found);

/*
 * kvmm_remote_fetch_kv() - fetch chunks [first, first + n) of a sequence
 * named chunks[0..first + n) into tokens [first * chunk_tokens, (first + n)
 * * chunk_tokens) of @slot of a host KV cache (the slot active and stepped
 * to at least that many tokens). The op's result is how many leading
 * chunks of the n arrived verified and are in place (0..n); later tokens
 * are for the engine to recompute (their bytes are unspecified). -EINVAL
 * bad arguments or a cache whose shape is not the layout's; -EOPNOTSUPP a
 * CUDA cache; -EAGAIN a slot that is not active.
 */
int kvmm_remote_fetch_kv(struct kvmm_remote *r, struct kvmm_kv *kv, uint32_t slot,
			 const struct kvmm_hash256 *chunks, size_t first, size_t n,
			 uint32_t budget_ms, struct kvmm_op **opp);

/*
 * kvmm_remote_publish_kv() - store chunks [first, first + n) of @slot
 * (computed: the slot's seq_len reaches their end; only full chunks),
 * named as for fetch. The op's result is how many of them the store now
 * holds (written, or there already); chunks lost to errors or the budget
 * are counted in the stats and simply not shared. The slot must not be
 * stepped, freed or swapped until the op completes.
 */
int kvmm_remote_publish_kv(struct kvmm_remote *r, struct kvmm_kv *kv, uint32_t slot,
			   const struct kvmm_hash256 *chunks, size_t first, size_t n,
			   uint32_t budget_ms, struct kvmm_op **opp);

/*
 * kvmm_remote_put() - store one value of @len bytes named @chunk, whose
 * previous chunk is @parent (NULL: the first chunk, parent the none hash).
 * @buf must stay valid until the op completes. Result: 1 written, 0 there
 * already, negative errno (-ETIMEDOUT, -ECONNREFUSED, -EIO...).
 */
int kvmm_remote_put(struct kvmm_remote *r, const struct kvmm_hash256 *chunk,
		    const struct kvmm_hash256 *parent, const void *buf, size_t len,
		    uint32_t budget_ms, struct kvmm_op **opp);

/*
 * kvmm_remote_get() - fetch the value named @chunk (parent as for put) of
 * exactly @len bytes into @buf. Result: 1 a verified hit (buf holds it), 0
 * a miss (absent, failed a check, an error or the budget: buf unspecified).
 */
int kvmm_remote_get(struct kvmm_remote *r, const struct kvmm_hash256 *chunk,
		    const struct kvmm_hash256 *parent, void *buf, size_t len, uint32_t budget_ms,
		    struct kvmm_op **opp);

int kvmm_remote_stats(struct kvmm_remote *r, struct kvmm_remote_stats *st);

#ifdef __cplusplus
}
#endif

#endif /* KVMM_REMOTE_H */
