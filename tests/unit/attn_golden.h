/*
 * The attention tests' golden: naive attention in f64, written from the
 * layout and semantics that include/kvmm/attention.h and docs/attention.md
 * document, sharing no code with kernels/. It has its own element addressing
 * (strides, slot map, block table), GQA head mapping, causal window and
 * f16/bf16 decoding (from the IEEE 754 binary16 and the bfloat16 bit
 * layouts), so a bug in a helper the kernels share cannot move the golden
 * along with the kernels. Also the error bound the kernels are held to.
 */
#ifndef KVMM_TESTS_ATTN_GOLDEN_H
#define KVMM_TESTS_ATTN_GOLDEN_H

#include <stddef.h>
#include <stdint.h>

#include <kvmm/attention.h>

/* Value of a binary16 / bfloat16 bit pattern (infinities and NaN included). */
double attn_gold_f16_value(uint16_t bits);
double attn_gold_bf16_value(uint16_t bits);
/* Element idx of an array of dt, exactly. */
double attn_gold_load(const void *base, enum kvmm_attn_dtype dt, int64_t idx);
/* x rounded to nearest, ties to even, in dt (x finite, below dt's overflow threshold). */
double attn_gold_round(enum kvmm_attn_dtype dt, double x);
/* Bit pattern of x, which dt must hold exactly (attn_gold_round's results do). */
uint16_t attn_gold_f16_bits(double x);
uint16_t attn_gold_bf16_bits(double x);
/* Stores x, which dt must hold exactly, as element idx of an array of dt. */
void attn_gold_store(void *base, enum kvmm_attn_dtype dt, int64_t idx, double x);
/* Unit roundoff of dt: 2^-11 (f16), 2^-8 (bf16), 2^-24 (f32). */
double attn_gold_unit(enum kvmm_attn_dtype dt);
/* Half the spacing of dt's subnormals: 2^-25 (f16), 2^-134 (bf16), 2^-150 (f32). */
double attn_gold_tiny(enum kvmm_attn_dtype dt);

/*
 * Golden of one call. Row r = (b * max_q + i) * q_heads + h is new token i
 * of entry b, query head h (max_q is 1 for decode).
 */
struct attn_gold {
	int32_t max_q;
	int q_heads, dim;
	size_t rows;
	double *o;     /* [rows][dim] softmax(scale * q K^T) V of the stored values */
	double *mag;   /* [rows][dim] sum_j p_j |v_j|: the size rounding errors scale with */
	double *smax;  /* [rows] max_j |scale| sum_d |q_d k_jd|: the largest score magnitude */
	int32_t *keys; /* [rows] keys the row attends to; -1: no such row (past q_len) */
};

/*
 * Computes the golden of a decode (prefill 0: one new token per entry,
 * q_lens ignored) or causal prefill call from p as the public header defines
 * it. p must be valid; 0, or -1 when out of memory.
 */
int attn_gold_run(const struct kvmm_attn_params *p, int prefill, struct attn_gold *g);
/*
 * The decode golden for lengths whose keys as f64 rows would not fit:
 * each segment of seg keys in f64 as attn_gold_run does, the segments'
 * softmaxes merged by the log-sum-exp rule in f64 (memory O(seg * dim)).
 * 0, or -1.
 */
int attn_gold_run_segmented(const struct kvmm_attn_params *p, int32_t seg, struct attn_gold *g);
void attn_gold_free(struct attn_gold *g);
/*
 * 1 when a and b hold the same K and V values (bit for bit) at every token
 * below seq_lens of every entry and KV head, each read through its own
 * strides, slot map or block table: the golden of one is then the other's.
 */
int attn_gold_same_kv(const struct kvmm_attn_params *a, const struct kvmm_attn_params *b);
/* 1 when a and b hold the same rows, values and magnitudes bit for bit. */
int attn_gold_equal(const struct attn_gold *a, const struct attn_gold *b);

/* How the implementation under test computes; the error bound follows from it. */
struct attn_gold_prec {
	enum kvmm_attn_dtype out; /* dtype of its output */
	double u_acc;		  /* unit roundoff of its arithmetic (2^-24: f32; 2^-53: f64) */
	double u_p;		  /* unit roundoff P is rounded to before P.V; 0: not rounded */
	int mma;		  /* sums inside tensor-core mma truncate (not round to nearest) */
};

/* Largest error allowed in element e of row r (see attn_golden.c for the derivation). */
double attn_gold_bound(const struct attn_gold *g, size_t r, int e, const struct attn_gold_prec *pr);

#endif /* KVMM_TESTS_ATTN_GOLDEN_H */
