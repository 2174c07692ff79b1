/*
 * kvmm attention kernels: decode and causal prefill over a strided KV cache.
 *
 * The kernels take base pointers and element strides, never kvmm objects, so
 * they run on kvmm regions, on malloc/cudaMalloc buffers or on any other cache
 * whose K and V can be described as [slot][token][head][dim]:
 *
 *   layer-major (one tensor per layer and K/V, [slot][token][head][dim]):
 *     dim_stride = 1, head_stride = D, token_stride = H*D,
 *     slot_stride = max_tokens*H*D
 *   token-major (one region per slot, [token][layer][K|V][head][dim]), for
 *   layer l and K (kv = 0) or V (kv = 1):
 *     data = region_base + (l*2 + kv)*H*D, dim_stride = 1, head_stride = D,
 *     token_stride = layers*2*H*D, slot_stride = distance between slot regions
 *
 * Usage (decode, one new token per sequence already written to the cache):
 *
 *   struct kvmm_attn_params p = {
 *           .batch = n, .q_heads = 32, .kv_heads = 8, .head_dim = 128,
 *           .scale = 1.0f / sqrtf(128), .seq_lens = lens,
 *           .q = {q, KVMM_ATTN_F16, 32 * 128, 0, 128, 1},
 *           .k = k_view, .v = v_view,
 *           .o = {out, KVMM_ATTN_F16, 32 * 128, 0, 128, 1},
 *   };
 *   kvmm_attn_cpu_decode(&p, NULL);
 *
 * All functions return 0 or a negative errno (-EINVAL for a bad shape,
 * stride or dtype combination, -ENOMEM, -ENOTSUP where a build lacks a path).
 */
#ifndef KVMM_ATTENTION_H
#define KVMM_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum kvmm_attn_dtype {
	KVMM_ATTN_F32 = 0,
	KVMM_ATTN_F16 = 1,
	KVMM_ATTN_BF16 = 2,
};

/* A 4-D strided view [slot][token][head][dim]; strides count elements. */
struct kvmm_attn_tensor {
	void *data;
	enum kvmm_attn_dtype dtype;
	int64_t slot_stride;
	int64_t token_stride;
	int64_t head_stride;
	int64_t dim_stride;
};

/*
 * Optional vLLM-style block table. When block_table is set, token t of batch
 * entry b lives in physical block block_table[b * max_blocks + t / block_size]
 * at row t % block_size: the K/V "slot" stride is then the block stride and
 * the token stride is the row stride inside a block.
 */
struct kvmm_attn_paged {
	const int32_t *block_table;
	int32_t max_blocks;
	int32_t block_size;
};

struct kvmm_attn_params {
	int32_t batch;
	int32_t q_heads; /* a multiple of kv_heads (GQA) */
	int32_t kv_heads;
	int32_t head_dim; /* 64 or 128 */
	float scale;	  /* softmax scale, usually 1/sqrt(head_dim) */
	/* [batch] tokens in the cache including the new ones; 0 = idle entry */
	const int32_t *seq_lens;
	/* prefill: [batch] new tokens per entry (<= seq_lens[b]); NULL = max_q_len each */
	const int32_t *q_lens;
	int32_t max_q_len;   /* prefill: token extent of q and o; decode: ignored (1) */
	int32_t max_seq_len; /* >= every seq_lens[b]; CUDA plans splits with it */
	/* [batch] cache slot of each entry; NULL = entry b uses slot b */
	const int32_t *slots;
	/* q and o: [entry][new token][q head][dim]; k and v: [slot][token][kv head][dim] */
	struct kvmm_attn_tensor q, k, v, o;
	struct kvmm_attn_paged paged;
};

/*
 * Prefill is causal: new token i of entry b (0 <= i < q_len) sits at cache
 * position seq_len - q_len + i and attends to cache positions 0 .. that one.
 * Decode is prefill with one new token. Query head h reads KV head
 * h / (q_heads / kv_heads). k and v share a dtype, o has q's dtype;
 * accumulation is f32 (f64 in the reference). Fast paths (everything except
 * the reference) need dim_stride 1 on every tensor.
 */

size_t kvmm_attn_dtype_size(enum kvmm_attn_dtype dtype);
const char *kvmm_attn_dtype_name(enum kvmm_attn_dtype dtype);

/* Checks shapes, dtypes and strides; 0 or -EINVAL. Host-side fields only. */
int kvmm_attn_params_check(const struct kvmm_attn_params *p);

/* Reference: straightforward two-pass softmax with f64 accumulation, any strides. */
int kvmm_attn_ref_decode(const struct kvmm_attn_params *p);
int kvmm_attn_ref_prefill(const struct kvmm_attn_params *p);

/*
 * K/V memory that may not all be resident: a kvmm host region partly on
 * flash (libkvmm's kvmm_attn_tier_regions() implements this over regions).
 * With opts->tier set, the CPU decode first calls fetch for the K and V
 * bytes of every item of its plan, in plan order, so large reads start
 * ahead of the compute; its threads then compute the items that were
 * resident, then the others in plan order, each between acquire and
 * release. Plan and merge are those of the same call without a tier, so the
 * output is bitwise the same. Called from the decode's threads: the
 * functions must be thread-safe. Every ticket fetch hands out is passed
 * exactly once to acquire or (after an error) to drop.
 */
struct kvmm_attn_tier {
	/* 1: [addr, addr+len) is resident (no ticket); 0: a read started, *ticket
	 * set (may be NULL); < 0: -errno. */
	int (*fetch)(void *arg, const void *addr, size_t len, void **ticket);
	/* Waits for ticket, then makes the range resident and keeps it so until
	 * release (a concurrent evict leaves it alone); 0 or -errno. */
	int (*acquire)(void *arg, const void *addr, size_t len, void *ticket);
	void (*release)(void *arg, const void *addr, size_t len);
	void (*drop)(void *arg, void *ticket); /* waits for a ticket not acquired */
	void *arg;
};

/* What one kvmm_attn_cpu_decode call did (opts->stats). */
struct kvmm_attn_cpu_stats {
	int items;	     /* plan items run */
	int items_local;     /* read by a thread on the node holding them */
	int items_remote;    /* read across nodes */
	int items_fetched;   /* not resident when the call began (tier) */
	double fetch_wait_s; /* time threads spent in tier->acquire, summed */
	double compute_s;    /* time threads spent computing items, summed */
};

struct kvmm_attn_cpu_opts {
	int threads;	  /* 0: every online CPU */
	int chunk_tokens; /* decode KV split length; 0: chosen by the plan */
	int no_simd;	  /* 1: use the portable path even where AVX2 is present */
	int no_avx512;	  /* decode: 1: the AVX2 path even where AVX-512 is present */
	const struct kvmm_attn_tier *tier; /* decode: K/V partly not resident; NULL: all is */
	struct kvmm_attn_cpu_stats *stats; /* decode: filled in when set */
};

/*
 * The decode's plan for p and opts (kvmm_attn_cpu_decode_plan): items of
 * chunk_tokens tokens of one entry over every KV head, computed in passes
 * of one softmax block over heads_per_pass KV heads with rows prefetched
 * prefetch_tokens ahead, chosen from the lengths, the thread count and the
 * cache sizes read here.
 */
struct kvmm_attn_cpu_plan_info {
	int threads, items, simd; /* simd: 2 AVX-512, 1 AVX2+F16C, 0 portable */
	int32_t chunk_tokens, prefetch_tokens;
	int heads_per_pass;
	int64_t l1d_bytes, l2_bytes, llc_bytes; /* 0: unknown */
	const char *cache_source;		/* "sysfs", "sysconf" or "unknown" */
	int numa_nodes;				/* nodes with memory; 1 without NUMA */
};

/* CPU kernels; opts may be NULL. */
int kvmm_attn_cpu_decode(const struct kvmm_attn_params *p, const struct kvmm_attn_cpu_opts *opts);
int kvmm_attn_cpu_decode_plan(const struct kvmm_attn_params *p,
			      const struct kvmm_attn_cpu_opts *opts,
			      struct kvmm_attn_cpu_plan_info *info);
int kvmm_attn_cpu_prefill(const struct kvmm_attn_params *p, const struct kvmm_attn_cpu_opts *opts);
/* 1 when kvmm_attn_cpu_decode uses its AVX2+F16C path on this CPU. */
int kvmm_attn_cpu_has_simd(void);
/* 1 when the decode has its AVX-512 path on this CPU (opts->no_avx512 turns it off). */
int kvmm_attn_cpu_has_avx512(void);

/*
 * CUDA kernels (libkvmm-attn-cuda). Pointers in p (tensors, seq_lens, q_lens,
 * slots, block_table) are device pointers; max_seq_len must be set. stream is
 * a cudaStream_t. Decode splits the KV range across blocks when that fills
 * the GPU better and then needs a workspace of
 * kvmm_attn_cuda_decode_workspace(p) bytes (0: no split needed); with
 * workspace NULL it runs unsplit. Contiguous and paged runs of one shape use
 * the same split plan, so their results are bitwise identical.
 */
size_t kvmm_attn_cuda_decode_workspace(const struct kvmm_attn_params *p);
int kvmm_attn_cuda_decode(const struct kvmm_attn_params *p, void *workspace, size_t workspace_bytes,
			  void *stream);
/* f16/bf16 use mma.sync tensor cores (sm_80+); f32 runs on CUDA cores. */
int kvmm_attn_cuda_prefill(const struct kvmm_attn_params *p, void *stream);
/* Split count the decode kernel will use for p on the current device. */
int kvmm_attn_cuda_decode_splits(const struct kvmm_attn_params *p);

#ifdef __cplusplus
}
#endif

#endif /* KVMM_ATTENTION_H */
