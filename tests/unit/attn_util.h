/*
 * Test data for the attention kernels: a KV cache in either kvmm layout
 * filled with random values, queries, the independent f64 golden
 * (attn_golden.h) and the error rule the kernels are held to. Shared by
 * tests/unit and tests/gpu; no test framework inside, nothing from kernels/.
 */
#ifndef KVMM_TESTS_ATTN_UTIL_H
#define KVMM_TESTS_ATTN_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <kvmm/attention.h>

#include "attn_golden.h"

enum attn_layout {
	ATTN_LAYER_MAJOR, /* [slot][token][head][dim] per layer and K/V */
	ATTN_TOKEN_MAJOR, /* per slot [token][layer][K|V][head][dim] */
};

struct attn_case {
	enum kvmm_attn_dtype dtype;
	int head_dim, kv_heads, group;
	enum attn_layout layout;
	int batch;
	const int32_t *seq_lens;
	const int32_t *q_lens; /* NULL: decode (one new token each) */
};

struct attn_data {
	struct attn_case c;
	struct kvmm_attn_params p; /* q, o in the case's dtype; ready for a kernel */
	void *cache, *q, *o;
	size_t cache_bytes, q_bytes, o_bytes;
	int32_t *seq_lens, *q_lens, *slots;
	struct attn_gold gold; /* f64 golden, rows [entry][token][q head] */
	float *out;	       /* scratch the caller may use (GPU results), [rows][dim] */
	size_t rows;	       /* batch * max_q_len * q_heads */
};

/* A KV cache paged into blocks in shuffled order, with its block table. */
struct attn_paged {
	void *blocks;
	size_t blocks_bytes;
	int32_t *table;
	struct kvmm_attn_params p; /* d->p with k, v and paged replaced */
};

/*
 * The shape grid both suites hold the kernels to: every dtype, head_dim
 * (64, 128), GQA group (1, 4, 8) and layout, batch 4 on 2 KV heads.
 */
#define ATTN_GRID_CASES ((size_t)36)
extern const enum kvmm_attn_dtype attn_grid_dtypes[3];
extern const int attn_grid_groups[3];
/* Case @i (< ATTN_GRID_CASES) with these lengths; q_lens NULL: decode. */
struct attn_case attn_grid_case(size_t i, const int32_t *seq_lens, const int32_t *q_lens);

int attn_data_init(struct attn_data *d, const struct attn_case *c, uint64_t seed);
void attn_data_free(struct attn_data *d);
/* Fills d->gold from d->p (a prefill when the case has q_lens). */
void attn_data_expect(struct attn_data *d);
/* Decode only: the golden by segments of seg keys, merged (attn_gold_run_segmented). */
void attn_data_expect_segmented(struct attn_data *d, int32_t seg);
int attn_paged_init(struct attn_paged *pg, const struct attn_data *d, int block_size,
		    uint64_t seed);
void attn_paged_free(struct attn_paged *pg);
/*
 * 1 when pg's block table reads the same K and V as d (so d's golden is the
 * paged run's golden too); prints the mismatch otherwise.
 */
int attn_paged_expect(const struct attn_paged *pg, const struct attn_data *d);

/* Case label for messages: "f16 D=128 g=4 token-major". */
const char *attn_case_name(const struct attn_case *c, char *buf, size_t len);

/* attn_check_close flags: how the implementation under test computes. */
enum {
	ATTN_CHECK_OUT_F32 = 1 << 0, /* out is f32, not the case's dtype */
	ATTN_CHECK_F64 = 1 << 1,     /* f64 arithmetic (the library's reference) */
	/* f16/bf16 tensor-core mma (CUDA prefill): P rounded to the dtype, sums truncated */
	ATTN_CHECK_MMA = 1 << 2,
};

/*
 * Every element of out within attn_gold_bound() of the golden: a bound
 * derived from the unit roundoff of the output dtype and of the arithmetic,
 * the head dim and the number of keys (attn_golden.c). Prints the case, the
 * worst element against its bound and returns 0 on failure.
 */
int attn_check_close(const struct attn_data *d, const void *out, unsigned flags, const char *what);
/* 1 when the valid rows of a and b are bitwise equal; prints the first difference. */
int attn_check_equal(const struct attn_data *d, const void *a, const void *b, const char *what);

#endif /* KVMM_TESTS_ATTN_UTIL_H */
