/*
 * CPU attention kernels and the library's reference against the independent
 * f64 golden (attn_golden.c, no code shared with kernels/): decode (AVX2 and
 * portable paths, split and unsplit), prefill, the paged twin, K and V with
 * different strides, and argument checks; the kernels' dtype conversions
 * against the IEEE/bfloat16 bit layouts. Ends with
 * "attn: N passed, N failed, N skipped".
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../common/t_list.h"
#include "attn_golden.h"
#include "attn_util.h"
#include "cpu/cpu.h"
#include "cpu/dtype.h"

static int skipped;

#define SKIP_BECAUSE(why)                                                                          \
	do {                                                                                       \
		printf("SKIP %s: %s: %s\n", program_invocation_short_name, __func__, why);         \
		skipped++;                                                                         \
		skip();                                                                            \
	} while (0)

/* Lengths: a single token, and none a multiple of any tile or chunk size. */
static const int32_t decode_lens[] = {1, 37, 300, 1029};
static const int32_t prefill_lens[] = {1, 40, 77, 130};
static const int32_t prefill_q_lens[] = {1, 5, 33, 20};

#define N(a) (sizeof(a) / sizeof((a)[0]))

typedef int (*kernel_fn)(const struct kvmm_attn_params *p, const struct kvmm_attn_cpu_opts *o);

/* Each grid's data and golden are built once and shared by the tests. */
static struct attn_data grids[2][ATTN_GRID_CASES];
static int grid_built[2];

static struct attn_data *grid(int prefill)
{
	if (grid_built[prefill])
		return grids[prefill];
	for (size_t i = 0; i < ATTN_GRID_CASES; i++) {
		struct attn_case ac = attn_grid_case(i, prefill ? prefill_lens : decode_lens,
						     prefill ? prefill_q_lens : NULL);

		assert_int_equal(attn_data_init(&grids[prefill][i], &ac, 1000 + i), 0);
		attn_data_expect(&grids[prefill][i]);
	}
	grid_built[prefill] = 1;
	return grids[prefill];
}

static void grid_free(void)
{
	for (int g = 0; g < 2; g++)
		for (size_t i = 0; grid_built[g] && i < ATTN_GRID_CASES; i++)
			attn_data_free(&grids[g][i]);
}

/* Runs fn over the whole shape grid and holds each result to the error rule. */
static void grid_check_flags(kernel_fn fn, const struct kvmm_attn_cpu_opts *opts, int prefill,
			     unsigned flags, const char *what)
{
	struct attn_data *cases = grid(prefill);
	int bad = 0;

	for (size_t i = 0; i < ATTN_GRID_CASES; i++) {
		struct attn_data *d = &cases[i];
		int rc;

		memset(d->o, 0xff, d->o_bytes);
		rc = fn(&d->p, opts);
		if (rc != 0) {
			fprintf(stderr, "%s: expected 0, kernel returned %d\n", what, rc);
			bad++;
		} else if (!attn_check_close(d, d->o, flags, what)) {
			bad++;
		}
	}
	if (bad)
		fail_msg("%s: %d of %zu cases out of tolerance", what, bad, ATTN_GRID_CASES);
}

static void grid_check(kernel_fn fn, const struct kvmm_attn_cpu_opts *opts, int prefill,
		       const char *what)
{
	grid_check_flags(fn, opts, prefill, 0, what);
}

static void decode_simd_matches_golden_over_shape_grid(void **state)
{
	struct kvmm_attn_cpu_opts o = {.threads = 2};

	(void)state;
	if (!kvmm_attn_cpu_has_simd())
		SKIP_BECAUSE("this CPU lacks AVX2, FMA or F16C (the portable kernel's tests run "
			     "instead)");
	grid_check(kvmm_attn_cpu_decode, &o, 0, "avx2 decode");
}

static void decode_avx2_matches_golden_over_shape_grid(void **state)
{
	struct kvmm_attn_cpu_opts o = {.threads = 2, .no_avx512 = 1};

	(void)state;
	if (!kvmm_attn_cpu_has_simd())
		SKIP_BECAUSE("this CPU lacks AVX2, FMA or F16C");
	grid_check(kvmm_attn_cpu_decode, &o, 0, "avx2 decode");
	o.chunk_tokens = 48;
	grid_check(kvmm_attn_cpu_decode, &o, 0, "avx2 decode, 48-token chunks");
}

static void decode_avx512_matches_golden_over_shape_grid(void **state)
{
	struct kvmm_attn_cpu_opts o = {.threads = 2};

	(void)state;
	if (!kvmm_attn_cpu_has_avx512())
		SKIP_BECAUSE("this CPU lacks AVX-512F (the AVX2 kernel's tests run instead)");
	grid_check(kvmm_attn_cpu_decode, &o, 0, "avx512 decode");
	o.chunk_tokens = 48;
	grid_check(kvmm_attn_cpu_decode, &o, 0, "avx512 decode, 48-token chunks");
}

static void decode_portable_matches_golden_over_shape_grid(void **state)
{
	struct kvmm_attn_cpu_opts o = {.threads = 2, .no_simd = 1};

	(void)state;
	grid_check(kvmm_attn_cpu_decode, &o, 0, "portable decode");
}

/* Short chunks: every entry is split and the partials go through the LSE merge. */
static void decode_split_chunks_merge_to_golden(void **state)
{
	struct kvmm_attn_cpu_opts simd = {.threads = 2, .chunk_tokens = 48};
	struct kvmm_attn_cpu_opts scalar = {.threads = 2, .chunk_tokens = 100, .no_simd = 1};

	(void)state;
	grid_check(kvmm_attn_cpu_decode, &simd, 0, "decode, 48-token chunks");
	grid_check(kvmm_attn_cpu_decode, &scalar, 0, "portable decode, 100-token chunks");
}

static void decode_single_thread_matches_golden(void **state)
{
	struct kvmm_attn_cpu_opts o = {.threads = 1};

	(void)state;
	grid_check(kvmm_attn_cpu_decode, &o, 0, "decode, one thread");
}

static void prefill_matches_golden_over_shape_grid(void **state)
{
	struct kvmm_attn_cpu_opts o = {.threads = 2};

	(void)state;
	grid_check(kvmm_attn_cpu_prefill, &o, 1, "prefill");
}

/*
 * The library's reference (kernels/cpu/ref.c), output in each dtype, against
 * the independent golden: f64 arithmetic, so within one rounding of the
 * output dtype; contiguous over both grids and through a block table.
 */
static int ref_decode_fn(const struct kvmm_attn_params *p, const struct kvmm_attn_cpu_opts *o)
{
	(void)o;
	return kvmm_attn_ref_decode(p);
}

static int ref_prefill_fn(const struct kvmm_attn_params *p, const struct kvmm_attn_cpu_opts *o)
{
	(void)o;
	return kvmm_attn_ref_prefill(p);
}

static void reference_matches_independent_golden(void **state)
{
	int bad = 0;

	(void)state;
	grid_check_flags(ref_decode_fn, NULL, 0, ATTN_CHECK_F64, "reference decode");
	grid_check_flags(ref_prefill_fn, NULL, 1, ATTN_CHECK_F64, "reference prefill");
	/* Through a block table: the group-4 cases (every dtype, head dim and layout). */
	for (int prefill = 0; prefill < 2; prefill++)
		for (size_t i = 0; i < ATTN_GRID_CASES; i++) {
			struct attn_data *d = &grid(prefill)[i];
			struct attn_paged pg;

			if (d->c.group != 4)
				continue;

			assert_int_equal(attn_paged_init(&pg, d, 16, 7 + i), 0);
			memset(d->o, 0xff, d->o_bytes);
			assert_int_equal(prefill ? kvmm_attn_ref_prefill(&pg.p)
						 : kvmm_attn_ref_decode(&pg.p),
					 0);
			bad += !attn_check_close(d, d->o, ATTN_CHECK_F64,
						 prefill ? "paged reference prefill"
							 : "paged reference decode");
			attn_paged_free(&pg);
		}
	if (bad)
		fail_msg("paged reference: %d cases out of tolerance", bad);
}

/*
 * The golden itself on a case worked by hand: scores 0, 1, 2 (or 0, -1, -2)
 * and V rows of t + 1 give sum_t e^(+-t) (t + 1) / sum_t e^(+-t) for a new
 * token that sees keys 0 .. t; the second KV head's V is negated, so GQA
 * heads 2 and 3 must come out negated. Every other cache element is random:
 * a golden that reads the wrong slot, token, head or dim shows.
 */
static void golden_matches_closed_form(void **state)
{
	static const int32_t lens[] = {3}, q_lens[] = {3};
	struct attn_case ac = {
	    .dtype = KVMM_ATTN_F32,
	    .head_dim = 64,
	    .kv_heads = 2,
	    .group = 2,
	    .layout = ATTN_TOKEN_MAJOR,
	    .batch = 1,
	    .seq_lens = lens,
	    .q_lens = q_lens,
	};
	struct attn_data d;
	const struct kvmm_attn_params *p = &d.p;
	float *q, *k, *v;

	(void)state;
	assert_int_equal(attn_data_init(&d, &ac, 61), 0);
	assert_true(p->scale == 0.125f);
	q = d.q, k = p->k.data, v = p->v.data;
	for (int i = 0; i < 3; i++)
		for (int h = 0; h < 4; h++)
			for (int e = 0; e < 64; e++)
				q[(i * 4 + h) * 64 + e] = e == 0 ? (h % 2 ? -1.0f : 1.0f) : 0.0f;
	for (int t = 0; t < 3; t++)
		for (int kvh = 0; kvh < 2; kvh++)
			for (int e = 0; e < 64; e++) {
				int64_t at = p->slots[0] * p->k.slot_stride +
					     t * p->k.token_stride + kvh * p->k.head_stride + e;

				k[at] = e == 0 ? 8.0f * t : 0.0f;
				v[at] = (kvh ? -1.0f : 1.0f) * (float)(t + 1);
			}
	attn_data_expect(&d);
	for (int i = 0; i < 3; i++)
		for (int h = 0; h < 4; h++) {
			double num = 0, den = 0, want;
			size_t r = (size_t)i * 4 + h;

			for (int t = 0; t <= i; t++) {
				double w = exp(h % 2 ? -t : t);

				num += w * (t + 1);
				den += w;
			}
			want = (h >= 2 ? -1 : 1) * num / den;
			assert_int_equal(d.gold.keys[r], i + 1);
			for (int e = 0; e < 64; e++) {
				double got = d.gold.o[r * 64 + e], mag = d.gold.mag[r * 64 + e];

				if (fabs(got - want) > 1e-15 || fabs(mag - fabs(want)) > 1e-15)
					fail_msg("golden token %d head %d dim %d: expected %.17g "
						 "(magnitude %.17g), seen %.17g (%.17g)",
						 i, h, e, want, fabs(want), got, mag);
			}
		}
	attn_data_free(&d);
}

/* Same data through a shuffled block table, block sizes 16 and 256: same bits out. */
static void paged_twin_equals_contiguous_bitwise(void **state)
{
	static const int block_sizes[] = {16, 256};
	struct kvmm_attn_cpu_opts opts[] = {
	    {.threads = 2, .chunk_tokens = 64}, {.threads = 2}, {.threads = 2, .no_simd = 1}};
	struct attn_data *cases = grid(0);
	int bad = 0;

	(void)state;
	for (size_t i = 0; i < ATTN_GRID_CASES; i++) {
		struct attn_data *d = &cases[i];
		void *contig = malloc(d->o_bytes);

		assert_non_null(contig);
		for (size_t bs = 0; bs < N(block_sizes); bs++) {
			struct attn_paged pg;

			assert_int_equal(attn_paged_init(&pg, d, block_sizes[bs], 3 + i), 0);
			for (size_t o = 0; o < N(opts); o++) {
				memset(d->o, 0xff, d->o_bytes);
				assert_int_equal(kvmm_attn_cpu_decode(&d->p, &opts[o]), 0);
				memcpy(contig, d->o, d->o_bytes);
				memset(d->o, 0xff, d->o_bytes);
				assert_int_equal(kvmm_attn_cpu_decode(&pg.p, &opts[o]), 0);
				bad += !attn_check_equal(d, contig, d->o, "paged decode");
				bad += !attn_check_close(d, d->o, 0, "paged decode");
			}
			bad += !attn_paged_expect(&pg, d);
			attn_paged_free(&pg);
		}
		free(contig);
	}
	if (bad)
		fail_msg("%d paged runs differ from contiguous or from the golden", bad);
}

/* Prefill through a shuffled block table (blocks of 16 and 64) over the prefill grid. */
static void paged_prefill_matches_golden_over_shape_grid(void **state)
{
	static const int block_sizes[] = {16, 64};
	struct kvmm_attn_cpu_opts o = {.threads = 2};
	struct attn_data *cases = grid(1);
	int bad = 0;

	(void)state;
	for (size_t i = 0; i < ATTN_GRID_CASES; i++)
		for (size_t bs = 0; bs < N(block_sizes); bs++) {
			struct attn_data *d = &cases[i];
			struct attn_paged pg;

			assert_int_equal(attn_paged_init(&pg, d, block_sizes[bs], 5 + i), 0);
			bad += !attn_paged_expect(&pg, d);
			memset(d->o, 0xff, d->o_bytes);
			assert_int_equal(kvmm_attn_cpu_prefill(&pg.p, &o), 0);
			bad += !attn_check_close(d, d->o, 0, "paged prefill");
			attn_paged_free(&pg);
		}
	if (bad)
		fail_msg("paged prefill: %d runs out of tolerance", bad);
}

/*
 * V laid out [slot][kv head][token][dim] while K keeps the case's layout:
 * every V stride differs from K's, so a kernel that addresses V with K's
 * strides (or the other way round) reads the wrong elements.
 */
static void split_v_view(const struct attn_data *d, struct kvmm_attn_params *p, void **buf)
{
	const struct kvmm_attn_params *src = &d->p;
	int dim = src->head_dim, heads = src->kv_heads;
	int32_t tokens = src->max_seq_len + 2;
	size_t es = kvmm_attn_dtype_size(d->c.dtype);
	int slots = d->c.batch + 1;

	*buf = calloc((size_t)slots * heads * tokens * dim, es);
	assert_non_null(*buf);
	*p = *src;
	p->v = (struct kvmm_attn_tensor){
	    *buf, d->c.dtype, (int64_t)heads * tokens * dim, dim, (int64_t)tokens * dim, 1};
	for (int b = 0; b < d->c.batch; b++)
		for (int32_t t = 0; t < d->seq_lens[b]; t++)
			for (int h = 0; h < heads; h++) {
				int64_t from = src->slots[b] * src->v.slot_stride +
					       t * src->v.token_stride + h * src->v.head_stride;
				int64_t to = src->slots[b] * p->v.slot_stride +
					     t * p->v.token_stride + h * p->v.head_stride;

				memcpy((char *)*buf + to * (int64_t)es,
				       (const char *)src->v.data + from * (int64_t)es, dim * es);
			}
}

static void kv_views_with_different_strides_match_golden(void **state)
{
	struct kvmm_attn_cpu_opts opts[] = {{.threads = 2, .chunk_tokens = 48},
					    {.threads = 2, .chunk_tokens = 100, .no_simd = 1}};
	int bad = 0;

	(void)state;
	for (int prefill = 0; prefill < 2; prefill++)
		for (size_t a = 0; a < N(attn_grid_dtypes); a++) {
			/* D = 128, group 4, token-major K (attn_grid_case's order) */
			struct attn_data *d = &grid(prefill)[a * 12 + 6 + 2 + 1];
			struct kvmm_attn_params p;
			void *vbuf;

			split_v_view(d, &p, &vbuf);
			if (!attn_gold_same_kv(&p, &d->p))
				fail_msg("golden: expected the same V through the [head][token] "
					 "view");
			for (size_t o = 0; o < N(opts); o++) {
				memset(d->o, 0xff, d->o_bytes);
				assert_int_equal(prefill ? kvmm_attn_cpu_prefill(&p, &opts[o])
							 : kvmm_attn_cpu_decode(&p, &opts[o]),
						 0);
				bad += !attn_check_close(d, d->o, 0, "V strides unlike K's");
			}
			free(vbuf);
		}
	if (bad)
		fail_msg("%d runs with V strides unlike K's out of tolerance", bad);
}

/* An entry with seq_len 0 is idle: its output is zeros, its neighbours are unaffected. */
static void decode_idle_entry_writes_zeros(void **state)
{
	static const int32_t lens[] = {5, 0, 260};
	struct attn_case ac = {
	    .dtype = KVMM_ATTN_F16,
	    .head_dim = 128,
	    .kv_heads = 1,
	    .group = 4,
	    .layout = ATTN_LAYER_MAJOR,
	    .batch = 3,
	    .seq_lens = lens,
	};
	struct kvmm_attn_cpu_opts simd = {.threads = 2}, scalar = {.threads = 2, .no_simd = 1};
	struct kvmm_attn_cpu_opts *all[] = {&simd, &scalar};
	struct attn_data d;

	(void)state;
	assert_int_equal(attn_data_init(&d, &ac, 21), 0);
	attn_data_expect(&d);
	for (size_t i = 0; i < N(all); i++) {
		const uint16_t *o = d.o;

		memset(d.o, 0xff, d.o_bytes);
		assert_int_equal(kvmm_attn_cpu_decode(&d.p, all[i]), 0);
		for (int e = 0; e < 4 * 128; e++)
			if (o[4 * 128 + e] != 0)
				fail_msg("entry 1 element %d: expected 0x0000, seen 0x%04x", e,
					 o[4 * 128 + e]);
		assert_true(attn_check_close(&d, d.o, 0, "decode with an idle entry"));
	}
	attn_data_free(&d);
}

/*
 * Uniform random data gives a nearly flat softmax; with the scale raised
 * 16-fold one key dominates each row. The golden's bound grows with
 * max |scale q.k|, so the same rule holds (tests/gpu repeats this on CUDA).
 */
static void peaked_scores_match_golden(void **state)
{
	static const int32_t lens[] = {1, 37, 300, 1029}, plens[] = {1, 40, 77, 300},
			     qlens[] = {1, 5, 33, 150};
	struct kvmm_attn_cpu_opts o = {.threads = 2};
	int bad = 0;

	(void)state;
	for (size_t i = 0; i < ATTN_GRID_CASES; i += 5)
		for (int prefill = 0; prefill < 2; prefill++) {
			struct attn_case ac =
			    attn_grid_case(i, prefill ? plens : lens, prefill ? qlens : NULL);
			struct attn_data d;

			assert_int_equal(attn_data_init(&d, &ac, 600 + i), 0);
			d.p.scale *= 16.0f;
			attn_data_expect(&d);
			memset(d.o, 0xff, d.o_bytes);
			assert_int_equal(prefill ? kvmm_attn_cpu_prefill(&d.p, &o)
						 : kvmm_attn_cpu_decode(&d.p, &o),
					 0);
			bad += !attn_check_close(&d, d.o, 0,
						 prefill ? "prefill, peaked" : "decode, peaked");
			attn_data_free(&d);
		}
	if (bad)
		fail_msg("%d peaked cases out of tolerance", bad);
}

/* Decode reads one new token per entry even when q_lens describes a prefill. */
static void decode_ignores_prefill_q_lens(void **state)
{
	struct attn_data *d = &grid(0)[ATTN_GRID_CASES - 1];
	struct kvmm_attn_params p = d->p;
	int32_t q_lens[4] = {1, 5, 7, 3};

	(void)state;
	p.q_lens = q_lens;
	p.max_q_len = 7;
	memset(d->o, 0xff, d->o_bytes);
	assert_int_equal(kvmm_attn_cpu_decode(&p, NULL), 0);
	assert_true(attn_check_close(d, d->o, 0, "decode with q_lens set"));
}

/* A long single sequence: the automatic chunking has to split it over the threads. */
static void decode_long_single_sequence_matches_golden(void **state)
{
	static const int32_t lens[] = {6007};
	struct attn_case ac = {
	    .dtype = KVMM_ATTN_F16,
	    .head_dim = 128,
	    .kv_heads = 2,
	    .group = 4,
	    .layout = ATTN_TOKEN_MAJOR,
	    .batch = 1,
	    .seq_lens = lens,
	};
	struct attn_data d;

	(void)state;
	assert_int_equal(attn_data_init(&d, &ac, 31), 0);
	attn_data_expect(&d);
	assert_int_equal(kvmm_attn_cpu_decode(&d.p, NULL), 0);
	assert_true(attn_check_close(&d, d.o, 0, "long decode"));
	attn_data_free(&d);
}

/*
 * The merge-rule golden (segments of f64 softmax merged by log-sum-exp) is
 * the naive f64 golden, to f64 rounding, where both are affordable: it is
 * what the longer contexts are held to.
 */
static void golden_by_segments_equals_naive_golden(void **state)
{
	static const int32_t lens[] = {20011, 777, 0};
	struct attn_case ac = {
	    .dtype = KVMM_ATTN_BF16,
	    .head_dim = 64,
	    .kv_heads = 2,
	    .group = 4,
	    .layout = ATTN_TOKEN_MAJOR,
	    .batch = 3,
	    .seq_lens = lens,
	};
	struct attn_data d;
	struct attn_gold seg;

	(void)state;
	assert_int_equal(attn_data_init(&d, &ac, 71), 0);
	attn_data_expect(&d);
	assert_int_equal(attn_gold_run_segmented(&d.p, 4096, &seg), 0);
	assert_int_equal(seg.rows, d.gold.rows);
	for (size_t r = 0; r < seg.rows; r++) {
		if (seg.keys[r] != d.gold.keys[r] || seg.smax[r] != d.gold.smax[r])
			fail_msg("row %zu: keys %d / smax %g expected, %d / %g seen", r,
				 d.gold.keys[r], d.gold.smax[r], seg.keys[r], seg.smax[r]);
		for (int e = 0; e < seg.dim; e++) {
			size_t i = r * seg.dim + e;
			double tol = 1e-13 * d.gold.mag[i] + 1e-300;

			if (fabs(seg.o[i] - d.gold.o[i]) > tol ||
			    fabs(seg.mag[i] - d.gold.mag[i]) > tol)
				fail_msg("row %zu element %d: naive %.17g (mag %.17g), by segments "
					 "%.17g (%.17g)",
					 r, e, d.gold.o[i], d.gold.mag[i], seg.o[i], seg.mag[i]);
		}
	}
	attn_gold_free(&seg);
	attn_data_free(&d);
}

/* 64k tokens: the naive f64 golden is still affordable. */
static void decode_64k_tokens_matches_naive_golden(void **state)
{
	static const int32_t lens[] = {65536};
	struct attn_case ac = {
	    .dtype = KVMM_ATTN_F16,
	    .head_dim = 128,
	    .kv_heads = 2,
	    .group = 4,
	    .layout = ATTN_LAYER_MAJOR,
	    .batch = 1,
	    .seq_lens = lens,
	};
	struct attn_data d;

	(void)state;
	assert_int_equal(attn_data_init(&d, &ac, 64), 0);
	attn_data_expect(&d);
	assert_int_equal(kvmm_attn_cpu_decode(&d.p, &(struct kvmm_attn_cpu_opts){.threads = 2}), 0);
	assert_true(attn_check_close(&d, d.o, 0, "64k decode, planned"));
	memset(d.o, 0xff, d.o_bytes);
	assert_int_equal(
	    kvmm_attn_cpu_decode(
		&d.p,
		&(struct kvmm_attn_cpu_opts){.threads = 2, .chunk_tokens = 1000, .no_avx512 = 1}),
	    0);
	assert_true(attn_check_close(&d, d.o, 0, "64k decode, AVX2, 66 items merged"));
	attn_data_free(&d);
}

/* 1M tokens: held to the golden by segments, merged (checked just above). */
static void decode_1m_tokens_matches_merged_golden(void **state)
{
	static const int32_t lens[] = {1 << 20};
	struct attn_case ac = {
	    .dtype = KVMM_ATTN_F16,
	    .head_dim = 64,
	    .kv_heads = 1,
	    .group = 8,
	    .layout = ATTN_LAYER_MAJOR,
	    .batch = 1,
	    .seq_lens = lens,
	};
	struct attn_data d;

	(void)state;
	if (attn_data_init(&d, &ac, 1024) != 0)
		SKIP_BECAUSE("not enough memory for a 1M-token cache (512 MiB)");
	attn_data_expect_segmented(&d, 65536);
	assert_int_equal(kvmm_attn_cpu_decode(&d.p, &(struct kvmm_attn_cpu_opts){.threads = 2}), 0);
	assert_true(attn_check_close(&d, d.o, 0, "1M decode, planned"));
	memset(d.o, 0xff, d.o_bytes);
	assert_int_equal(
	    kvmm_attn_cpu_decode(&d.p,
				 &(struct kvmm_attn_cpu_opts){.threads = 2, .chunk_tokens = 4096}),
	    0);
	assert_true(attn_check_close(&d, d.o, 0, "1M decode, 256 items merged"));
	attn_data_free(&d);
}

static void params_check_rejects_bad_shapes(void **state)
{
	static const int32_t lens[] = {10, 20};
	struct attn_case ac = {
	    .dtype = KVMM_ATTN_F16,
	    .head_dim = 64,
	    .kv_heads = 2,
	    .group = 2,
	    .layout = ATTN_LAYER_MAJOR,
	    .batch = 2,
	    .seq_lens = lens,
	};
	struct attn_data d;
	struct kvmm_attn_params p;
	int32_t too_long[] = {10, 21}, negative_slot[] = {1, -1};

	(void)state;
	assert_int_equal(attn_data_init(&d, &ac, 41), 0);
	assert_int_equal(kvmm_attn_params_check(&d.p), 0);
	p = d.p, p.head_dim = 96;
	assert_int_equal(kvmm_attn_params_check(&p), -EINVAL);
	p = d.p, p.q_heads = 3;
	assert_int_equal(kvmm_attn_params_check(&p), -EINVAL);
	p = d.p, p.v.dtype = KVMM_ATTN_BF16;
	assert_int_equal(kvmm_attn_params_check(&p), -EINVAL);
	p = d.p, p.o.dtype = KVMM_ATTN_F32;
	assert_int_equal(kvmm_attn_params_check(&p), -EINVAL);
	p = d.p, p.k.data = NULL;
	assert_int_equal(kvmm_attn_params_check(&p), -EINVAL);
	p = d.p, p.seq_lens = too_long;
	assert_int_equal(kvmm_attn_cpu_decode(&p, NULL), -EINVAL);
	p = d.p, p.slots = negative_slot;
	assert_int_equal(kvmm_attn_cpu_decode(&p, NULL), -EINVAL);
	p = d.p, p.k.dim_stride = 2;
	assert_int_equal(kvmm_attn_cpu_decode(&p, NULL), -EINVAL);
	p = d.p, p.max_q_len = 0;
	assert_int_equal(kvmm_attn_cpu_prefill(&p, NULL), -EINVAL);
	p = d.p, p.batch = 0;
	assert_int_equal(kvmm_attn_cpu_decode(&p, NULL), 0);
	attn_data_free(&d);
}

/* The reference accepts any dim stride: a transposed-dim view gives the same answer. */
static void reference_follows_dim_stride(void **state)
{
	static const int32_t lens[] = {17};
	struct attn_case ac = {
	    .dtype = KVMM_ATTN_F32,
	    .head_dim = 64,
	    .kv_heads = 1,
	    .group = 1,
	    .layout = ATTN_LAYER_MAJOR,
	    .batch = 1,
	    .seq_lens = lens,
	};
	struct attn_data d;
	struct kvmm_attn_params p;
	struct attn_gold g;
	float *kt;
	int dim = 64;

	(void)state;
	assert_int_equal(attn_data_init(&d, &ac, 51), 0);
	attn_data_expect(&d);
	/* K of slot 1 stored [dim][token]: dim_stride = tokens, token_stride = 1. */
	kt = malloc(sizeof(float) * 17 * dim);
	assert_non_null(kt);
	for (int t = 0; t < 17; t++)
		for (int e = 0; e < dim; e++)
			kt[e * 17 + t] = ((float *)d.p.k.data)[d.p.k.slot_stride + t * dim + e];
	p = d.p;
	p.slots = NULL;
	p.k = (struct kvmm_attn_tensor){kt, KVMM_ATTN_F32, 0, 1, 0, 17};
	p.v.data = (float *)d.p.v.data + d.p.v.slot_stride;
	p.v.slot_stride = 0;
	assert_int_equal(attn_gold_run(&p, 0, &g), 0);
	if (!attn_gold_equal(&g, &d.gold))
		fail_msg("golden: expected the same through the [dim][token] K view");
	attn_gold_free(&g);
	assert_int_equal(kvmm_attn_ref_decode(&p), 0);
	assert_true(attn_check_close(&d, d.o, ATTN_CHECK_F64, "reference, [dim][token] K"));
	free(kt);
	attn_data_free(&d);
}

/* The CUDA decode's split count: FlashAttention's wave-efficiency rule, checked on the host. */
static void split_plan_follows_wave_efficiency(void **state)
{
	static const struct {
		double blocks, slots;
		int32_t len;
		int want;
		const char *why;
	} cases[] = {
	    {120, 132, 100000, 1, "grid already fills 80% of the GPU"},
	    {8, 132, 256, 1, "context of 256 tokens or less"},
	    {8, 132, 32768, 15, "fewest splits within 85% of the best wave (120/132)"},
	    {8, 132, 1000, 4, "at least 256 tokens per split caps it at 4"},
	    {1, 132, 1 << 20, 109, "one block: 109/132 is within 85% of the best, 128/132"},
	};

	(void)state;
	for (size_t i = 0; i < N(cases); i++) {
		int got = attn_plan_splits(cases[i].blocks, cases[i].slots, cases[i].len);

		if (got != cases[i].want)
			fail_msg("%g blocks, %g slots, %d tokens (%s): expected %d splits, seen %d",
				 cases[i].blocks, cases[i].slots, cases[i].len, cases[i].why,
				 cases[i].want, got);
	}
}

/* The decode plan follows the lengths, the thread count and the cache sizes it is given. */
static void decode_plan_follows_lengths_threads_and_caches(void **state)
{
	static const struct attn_caches l2_2m = {48 << 10, 2 << 20, 480 << 20, 64, "test"};
	static const struct attn_caches l2_256k = {32 << 10, 256 << 10, 8 << 20, 64, "test"};
	static const struct attn_caches unknown = {0, 0, 0, 64, "unknown"};
	static const struct {
		int batch, threads;
		int32_t len;
		const struct attn_caches *c;
		int32_t chunk;
		int heads;
		const char *why;
	} cases[] = {
	    {1, 2, 65536, &l2_2m, 8192, 8, "one entry split for 4 items per thread"},
	    {1, 8, 65536, &l2_2m, 2048, 8, "more threads, shorter items"},
	    {1, 2, 1 << 20, &l2_2m, 131072, 8, "1M tokens: still 4 items per thread"},
	    {32, 2, 4096, &l2_2m, 4096, 8, "enough entries: no split"},
	    {1, 2, 600, &l2_2m, 288, 8, "floor: partials at most 1/64 of the bytes read"},
	    {1, 2, 65536, &l2_256k, 8192, 4, "256 KiB of L2: passes over 4 of the 8 heads"},
	    {1, 2, 65536, &unknown, 8192, 8, "caches unknown: one pass over every head"},
	};
	int32_t lens[32];

	(void)state;
	for (size_t i = 0; i < N(cases); i++) {
		struct kvmm_attn_params p = {
		    .batch = cases[i].batch,
		    .q_heads = 32,
		    .kv_heads = 8,
		    .head_dim = 128,
		    .seq_lens = lens,
		    .k = {.dtype = KVMM_ATTN_F16},
		};
		struct kvmm_attn_cpu_opts o = {.threads = cases[i].threads};
		struct attn_plan plan;

		for (int b = 0; b < cases[i].batch; b++)
			lens[b] = cases[i].len;
		assert_int_equal(attn_plan_make(&p, &o, cases[i].c, &plan), 0);
		if (plan.chunk != cases[i].chunk || plan.heads != cases[i].heads)
			fail_msg("%s: expected %d-token items over %d heads, seen %d over %d",
				 cases[i].why, cases[i].chunk, cases[i].heads, plan.chunk,
				 plan.heads);
		if (plan.first[p.batch] != plan.nitems ||
		    plan.items[plan.nitems - 1].end != cases[i].len)
			fail_msg("%s: items do not cover every token", cases[i].why);
		attn_plan_free(&plan);
	}
}

/*
 * NUMA placement with a made-up two-node map (this machine has one node): a
 * thread drains its own node's items in plan order before the other node's;
 * every item is taken once. One node (or none known): plan order.
 */
static void numa_queue_gives_each_thread_its_own_nodes_items_first(void **state)
{
	struct attn_item items[6] = {
	    {0, 0, 1, 0}, {0, 1, 2, 1}, {0, 2, 3, 0}, {0, 3, 4, 1}, {0, 4, 5, 1}, {0, 5, 6, -1},
	};
	static const int from_node1[] = {1, 3, 4, 0, 2, 5}, from_node0[] = {0, 2, 5, 1, 3, 4};
	struct attn_queue q;

	(void)state;
	assert_int_equal(attn_queue_init(&q, items, 6, NULL, 2), 0);
	for (int i = 0; i < 6; i++)
		assert_int_equal(attn_queue_next(&q, 1), from_node1[i]);
	assert_int_equal(attn_queue_next(&q, 1), -1);
	attn_queue_free(&q);
	assert_int_equal(attn_queue_init(&q, items, 6, NULL, 2), 0);
	for (int i = 0; i < 6; i++)
		assert_int_equal(attn_queue_next(&q, 0), from_node0[i]);
	attn_queue_free(&q);
	/* Two threads on different nodes: each starts on its own, nothing twice. */
	assert_int_equal(attn_queue_init(&q, items, 6, NULL, 2), 0);
	assert_int_equal(attn_queue_next(&q, 0), 0);
	assert_int_equal(attn_queue_next(&q, 1), 1);
	assert_int_equal(attn_queue_next(&q, 0), 2);
	assert_int_equal(attn_queue_next(&q, 0), 5);
	assert_int_equal(attn_queue_next(&q, 0), 3); /* helps node 1 */
	assert_int_equal(attn_queue_next(&q, 1), 4);
	assert_int_equal(attn_queue_next(&q, 1), -1);
	attn_queue_free(&q);
	assert_int_equal(attn_queue_init(&q, items, 6, NULL, 1), 0);
	for (int i = 0; i < 6; i++)
		assert_int_equal(attn_queue_next(&q, 1), i);
	attn_queue_free(&q);
	assert_true(attn_numa_nodes() >= 1);
}

/* A tier that reports the second half of the K bytes as not resident. */
struct mock_tier {
	const char *k_mid;
	int fail_at; /* acquire number that fails with -EIO; 0: none */
	atomic_int fetched, acquired, released, dropped, tickets;
	int first_fetched_rank; /* acquire number of the first not-resident range */
};

static int mock_fetch(void *arg, const void *addr, size_t len, void **ticket)
{
	struct mock_tier *m = arg;

	(void)len;
	atomic_fetch_add(&m->fetched, 1);
	if ((const char *)addr < m->k_mid)
		return 1;
	atomic_fetch_add(&m->tickets, 1);
	*ticket = m;
	return 0;
}

static int mock_acquire(void *arg, const void *addr, size_t len, void *ticket)
{
	struct mock_tier *m = arg;
	int n = atomic_fetch_add(&m->acquired, 1) + 1;

	(void)addr;
	(void)len;
	if (ticket)
		atomic_fetch_sub(&m->tickets, 1);
	if (ticket && !m->first_fetched_rank)
		m->first_fetched_rank = n;
	return m->fail_at && n == m->fail_at ? -EIO : 0;
}

static void mock_release(void *arg, const void *addr, size_t len)
{
	struct mock_tier *m = arg;

	(void)addr;
	(void)len;
	atomic_fetch_add(&m->released, 1);
}

static void mock_drop(void *arg, void *ticket)
{
	struct mock_tier *m = arg;

	if (ticket)
		atomic_fetch_sub(&m->tickets, 1);
	atomic_fetch_add(&m->dropped, 1);
}

/*
 * With a tier, the decode fetches every item first, runs the resident ones
 * first and gives the same bits as without; an acquire that fails fails
 * the call, writes nothing, and every ticket still comes back once.
 */
static void decode_over_a_tier_orders_items_and_keeps_the_bits(void **state)
{
	struct attn_data *d = &grid(0)[ATTN_GRID_CASES - 1];
	struct mock_tier m = {0};
	struct kvmm_attn_tier t = {mock_fetch, mock_acquire, mock_release, mock_drop, &m};
	struct kvmm_attn_cpu_opts plain = {.threads = 1, .chunk_tokens = 64};
	struct kvmm_attn_cpu_opts with = {.threads = 1, .chunk_tokens = 64, .tier = &t};
	struct kvmm_attn_cpu_stats st;
	char *ref = malloc(d->o_bytes);

	(void)state;
	m.k_mid = (const char *)d->p.k.data +
		  (size_t)d->p.k.slot_stride * 2 * kvmm_attn_dtype_size(d->p.k.dtype);
	assert_int_equal(kvmm_attn_cpu_decode(&d->p, &plain), 0);
	memcpy(ref, d->o, d->o_bytes);
	memset(d->o, 0xff, d->o_bytes);
	with.stats = &st;
	assert_int_equal(kvmm_attn_cpu_decode(&d->p, &with), 0);
	assert_true(attn_check_equal(d, d->o, ref, "decode over a tier"));
	assert_true(st.items_fetched > 0 && st.items_fetched < st.items);
	/* One thread: every resident item ran before the first fetched one. */
	assert_true(m.first_fetched_rank > 1);
	assert_int_equal(atomic_load(&m.tickets), 0);
	assert_int_equal(atomic_load(&m.released), atomic_load(&m.acquired));

	memset(&m, 0, sizeof(m));
	m.k_mid = (const char *)d->p.k.data;
	m.fail_at = 3;
	memset(d->o, 0xff, d->o_bytes);
	with.threads = 2;
	assert_int_equal(kvmm_attn_cpu_decode(&d->p, &with), -EIO);
	for (size_t i = 0; i < d->o_bytes; i++)
		if (((unsigned char *)d->o)[i] != 0xff)
			fail_msg("failed decode wrote byte %zu of the output", i);
	assert_int_equal(atomic_load(&m.tickets), 0);
	assert_true(atomic_load(&m.dropped) > 0);
	/* Every acquire that succeeded was released; the failed one holds nothing. */
	assert_int_equal(atomic_load(&m.released), atomic_load(&m.acquired) - 1);
	free(ref);
}

/* Same value, or both NaN; a zero's sign counts. */
static int same_value(float a, double b)
{
	return (isnan(a) && isnan(b)) || ((double)a == b && !signbit(a) == !signbit(b));
}

/*
 * The kernels' conversions (kernels/cpu/dtype.h) against the golden's, which
 * are written from the bit layouts: every f16 and bf16 pattern decodes to
 * the same value, and f32 values at, between (ties) and next to (one f32 ulp
 * either side of a tie) consecutive f16/bf16 values round to the same bits.
 */
static void dtype_conversions_match_ieee_bit_layouts(void **state)
{
	(void)state;
	for (uint32_t h = 0; h < 65536; h++) {
		float f = attn_f16_to_f32((uint16_t)h), b = attn_bf16_to_f32((uint16_t)h);

		if (!same_value(f, attn_gold_f16_value((uint16_t)h)))
			fail_msg("f16 0x%04x: expected %.9g, seen %.9g", h,
				 attn_gold_f16_value((uint16_t)h), f);
		if (!same_value(b, attn_gold_bf16_value((uint16_t)h)))
			fail_msg("bf16 0x%04x: expected %.9g, seen %.9g", h,
				 attn_gold_bf16_value((uint16_t)h), b);
	}
	/* Finite patterns whose successor is finite too: 0x0000..0x7bfe, 0x0000..0x7f7e. */
	for (uint32_t h = 0; h < 0x7f7f; h++)
		for (int sign = 0; sign < 2; sign++)
			for (int bf = 0; bf < 2; bf++) {
				enum kvmm_attn_dtype dt = bf ? KVMM_ATTN_BF16 : KVMM_ATTN_F16;
				double lo, hi;
				float mid, x[4];

				if (!bf && h >= 0x7bff)
					continue;
				lo = bf ? attn_gold_bf16_value((uint16_t)h)
					: attn_gold_f16_value((uint16_t)h);
				hi = bf ? attn_gold_bf16_value((uint16_t)(h + 1))
					: attn_gold_f16_value((uint16_t)(h + 1));
				mid = (float)((lo + hi) / 2); /* exact in f32 */
				x[0] = (float)lo;
				x[1] = mid;
				x[2] = nextafterf(mid, 0);
				x[3] = nextafterf(mid, INFINITY);
				for (int j = 0; j < 4; j++) {
					float v = sign ? -x[j] : x[j];
					double r = attn_gold_round(dt, v);
					uint16_t want =
					    bf ? attn_gold_bf16_bits(r) : attn_gold_f16_bits(r);
					uint16_t got =
					    bf ? attn_f32_to_bf16(v) : attn_f32_to_f16(v);

					if (got != want)
						fail_msg("%s of %.9g: expected 0x%04x, seen 0x%04x",
							 bf ? "bf16" : "f16", v, want, got);
				}
			}
	assert_int_equal(attn_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);	/* tie to even */
	assert_int_equal(attn_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02); /* tie to even */
	assert_int_equal(attn_f32_to_f16(65520.0f), 0x7c00);		/* overflow */
	assert_int_equal(attn_f32_to_f16(0x1p-25f), 0x0000);		/* tie to zero */
	assert_int_equal(attn_f32_to_f16(0x1p-25f * 3), 0x0002);	/* subnormal */
	assert_int_equal(attn_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);	/* tie to even */
	assert_int_equal(attn_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(dtype_conversions_match_ieee_bit_layouts),
	    cmocka_unit_test(params_check_rejects_bad_shapes),
	    cmocka_unit_test(split_plan_follows_wave_efficiency),
	    cmocka_unit_test(decode_plan_follows_lengths_threads_and_caches),
	    cmocka_unit_test(numa_queue_gives_each_thread_its_own_nodes_items_first),
	    cmocka_unit_test(decode_over_a_tier_orders_items_and_keeps_the_bits),
	    cmocka_unit_test(golden_matches_closed_form),
	    cmocka_unit_test(reference_matches_independent_golden),
	    cmocka_unit_test(reference_follows_dim_stride),
	    cmocka_unit_test(decode_simd_matches_golden_over_shape_grid),
	    cmocka_unit_test(decode_avx2_matches_golden_over_shape_grid),
	    cmocka_unit_test(decode_avx512_matches_golden_over_shape_grid),
	    cmocka_unit_test(decode_portable_matches_golden_over_shape_grid),
	    cmocka_unit_test(decode_split_chunks_merge_to_golden),
	    cmocka_unit_test(decode_single_thread_matches_golden),
	    cmocka_unit_test(decode_idle_entry_writes_zeros),
	    cmocka_unit_test(peaked_scores_match_golden),
	    cmocka_unit_test(decode_ignores_prefill_q_lens),
	    cmocka_unit_test(decode_long_single_sequence_matches_golden),
	    cmocka_unit_test(golden_by_segments_equals_naive_golden),
	    cmocka_unit_test(decode_64k_tokens_matches_naive_golden),
	    cmocka_unit_test(decode_1m_tokens_matches_merged_golden),
	    cmocka_unit_test(paged_twin_equals_contiguous_bitwise),
	    cmocka_unit_test(prefill_matches_golden_over_shape_grid),
	    cmocka_unit_test(paged_prefill_matches_golden_over_shape_grid),
	    cmocka_unit_test(kv_views_with_different_strides_match_golden),
	};
	int failed, total = (int)N(tests);

	T_LIST(argc, argv, T_GROUP(tests));
	setvbuf(stdout, NULL, _IOLBF, 0); /* skip lines and results in order */
	failed = cmocka_run_group_tests(tests, NULL, NULL);
	grid_free();
	printf("attn: %d passed, %d failed, %d skipped\n", total - failed - skipped, failed,
	       skipped);
	return failed ? 1 : 0;
}
