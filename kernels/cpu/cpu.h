/* Internal to the CPU kernels: addressing, validation, threading, chunk kernels. */
#ifndef KVMM_KERNELS_CPU_CPU_H
#define KVMM_KERNELS_CPU_CPU_H

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
 * One decode chunk: the g query heads of one KV head over cache tokens
 * [start, end). q holds g*D floats pre-scaled by scale*log2(e), so scores are
 * in the log2 domain. Writes the unnormalised output o[g][D], the running max
 * m[g] (log2 domain) and the sum l[g].
 */
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
#if defined(__x86_64__)
void attn_decode_chunk_avx2(const struct attn_chunk *c);
#endif

#endif /* KVMM_KERNELS_CPU_CPU_H */
