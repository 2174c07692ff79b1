/* Internal to the CPU kernels: addressing, validation, threading, chunk kernels. */
#ifndef KVMM_KERNELS_CPU_CPU_H
#define KVMM_KERNELS_CPU_CPU_H

#include <stdatomic.h>
#include <stdint.h>

#include <kvmm/attention.h>

/* Element offset of head h of cache token t for batch entry b in a K or V view. */
static inline int64_t attn_kv_offset(const struct kvmm_attn_params *p,
				     const struct kvmm_attn_tensor *t, int b, int32_t tok, int h)
{
	int64_t row;

	if (p->paged.block_table) {
		int32_t bs = p->paged.block_size;
		int32_t blk = p->paged.block_table[(int64_t)b * p->paged.max_blocks + tok / bs];

		row = blk * t->slot_stride + (int64_t)(tok % bs) * t->token_stride;
	} else {
		int32_t slot = p->slots ? p->slots[b] : b;

		row = slot * t->slot_stride + (int64_t)tok * t->token_stride;
	}
	return row + (int64_t)h * t->head_stride;
}

/* Element offset of q or o for batch entry b, new token i, query head h. */
static inline int64_t attn_q_offset(const struct kvmm_attn_tensor *t, int b, int i, int h)
{
	return b * t->slot_stride + (int64_t)i * t->token_stride + (int64_t)h * t->head_stride;
}

static inline int32_t attn_q_len(const struct kvmm_attn_params *p, int b, int32_t max_q)
{
	return p->q_lens ? p->q_lens[b] : max_q;
}

/* Checks the host-visible per-entry arrays against the shape; 0 or -EINVAL. */
int attn_check_lens(const struct kvmm_attn_params *p, int32_t max_q);
/* -EINVAL unless every tensor has dim_stride 1 (fast paths). */
int attn_check_dense_dim(const struct kvmm_attn_params *p);

int attn_threads(const struct kvmm_attn_cpu_opts *opts);
/* Runs fn(arg) on n threads (the caller is one of them); 0 or -errno. */
int attn_parallel(int n, void (*fn)(void *arg), void *arg);

/*
 * One decode step over part of a plan item: the g query heads of one KV head
 * over cache tokens [start, end). q holds g*D floats pre-scaled by
 * scale*log2(e), so scores are in the log2 domain. The running state is the
 * caller's and carries over from the call before (the item's previous tile):
 * the unnormalised output o[g][D], the running max m[g] (log2 domain) and
 * the sum l[g], set to 0, -inf and 0 before an item's first call. Tokens go
 * in softmax blocks of ATTN_BLOCK counted from start, so a caller that cuts
 * an item into tiles of a multiple of ATTN_BLOCK gets the same bits as one
 * call over the whole item.
 */
#define ATTN_BLOCK 32

struct attn_chunk {
	const float *q;
	const char *k, *v;    /* head row of token 0 (contiguous) or of block 0 (paged) */
	int64_t k_tok, v_tok; /* token stride in bytes */
	int64_t k_blk, v_blk; /* block stride in bytes (paged) */
	const int32_t *table; /* this entry's block table row, or NULL */
	int32_t block_size;
	enum kvmm_attn_dtype dtype;
	int g, dim;
	int32_t start, end;
	/* Software prefetch: rows pf_ahead tokens ahead (0: none), never at or past pf_end. */
	int32_t pf_ahead, pf_end;
	float *o, *m, *l;
};

static inline const char *attn_chunk_row(const char *base, int64_t tok_bytes, int64_t blk_bytes,
					 const struct attn_chunk *c, int32_t t)
{
	if (c->table)
		return base + c->table[t / c->block_size] * blk_bytes +
		       (int64_t)(t % c->block_size) * tok_bytes;
	return base + (int64_t)t * tok_bytes;
}

void attn_decode_chunk_scalar(const struct attn_chunk *c);

/*
 * Split count for the CUDA decode: blocks of the unsplit grid, resident
 * block slots of the GPU (SMs x occupancy), longest sequence. Used by
 * kernels/cuda/decode.cu.
 */
int attn_plan_splits(double blocks, double slots, int32_t max_seq_len);
/* Data cache sizes in bytes (0: unknown) and where they were read. */
struct attn_caches {
	int64_t l1d, l2, llc;
	int line;
	const char *source; /* "sysfs", "sysconf" or "unknown" */
};
const struct attn_caches *attn_caches(void);

/*
 * The decode's split/merge plan (decode_plan.c). Item i covers cache tokens
 * [start, end) of entry b for every KV head; its partial state is
 * [q_heads][D] outputs and [q_heads] maxima and sums, merged per entry in
 * item order. The plan depends on the shape, the lengths, the thread count
 * and the cache sizes, never on where the bytes are (DRAM, flash, node),
 * so every run of one plan gives the same bits.
 */
struct attn_item {
	int32_t b, start, end;
	int node; /* NUMA node of its K bytes, -1: unknown */
};

struct attn_plan {
	int threads;
	int32_t chunk;	  /* tokens per item (the split length) */
	int heads;	  /* KV heads per pass of ATTN_BLOCK tokens */
	int32_t prefetch; /* rows prefetched this many tokens ahead; 0: none */
	int nitems;
	struct attn_item *items;
	int *first; /* [batch + 1]: items of entry b are first[b] .. first[b+1]-1 */
};

/* Fills plan for p (lengths already checked); 0, -EINVAL or -ENOMEM. */
int attn_plan_make(const struct kvmm_attn_params *p, const struct kvmm_attn_cpu_opts *opts,
		   const struct attn_caches *caches, struct attn_plan *plan);
void attn_plan_free(struct attn_plan *plan);

/*
 * Work queue over plan items (numa.c): items in groups (one per NUMA node),
 * each group in the order given; a thread takes from its own node's group
 * first, then from the others in turn.
 */
struct attn_queue {
	int n, ngroups;
	int *order;	    /* [n] item indices, group by group */
	int *group_first;   /* [ngroups + 1] */
	atomic_int *cursor; /* [ngroups] next position inside each group */
};

/* Nodes of the machine with memory (1 when there is no NUMA), cached. */
int attn_numa_nodes(void);
/* Node of the calling thread's CPU, or -1. */
int attn_numa_self(void);
/* Node holding each addrs[i] (nodes[i] = -1 if unknown or not resident); 0 or -errno. */
int attn_numa_where(const void *const *addrs, int n, int *nodes);
/*
 * Queue over items 0..n-1 in order rank[] (rank NULL: 0..n-1), grouped by
 * node[] when nnodes > 1 (unknown nodes go to group 0), one group otherwise.
 */
int attn_queue_init(struct attn_queue *q, const struct attn_item *items, int n, const int *rank,
		    int nnodes);
/* Next item for a thread on node (-1: unknown), or -1 when all are taken. */
int attn_queue_next(struct attn_queue *q, int node);
void attn_queue_free(struct attn_queue *q);

#if defined(__x86_64__)
void attn_decode_chunk_avx2(const struct attn_chunk *c);
void attn_decode_chunk_avx512(const struct attn_chunk *c);
#endif

#endif /* KVMM_KERNELS_CPU_CPU_H */
