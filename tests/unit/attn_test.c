/*
 * CPU attention kernels against the f64 reference: decode (AVX2 and portable
 * paths, split and unsplit), prefill, the paged twin, and argument checks.
 * Ends with "attn: N passed, N failed, N skipped".
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../common/t_list.h"
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
static void grid_check(kernel_fn fn, const struct kvmm_attn_cpu_opts *opts, int prefill,
		       const char *what)
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
		} else if (!attn_check_close(d, d->o, 0, what)) {
			bad++;
		}
	}
	if (bad)
		fail_msg("%s: %d of %zu cases out of tolerance", what, bad, ATTN_GRID_CASES);
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

/* The reference itself against the naive same-precision maths, as a sanity anchor. */
static int ref_decode_fn(const struct kvmm_attn_params *p, const struct kvmm_attn_cpu_opts *o)
{
	(void)o;
	return kvmm_attn_ref_decode(p);
}

static void reference_in_dtype_matches_golden(void **state)
{
	(void)state;
	grid_check(ref_decode_fn, NULL, 0, "reference decode");
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
			}
			attn_paged_free(&pg);
		}
		free(contig);
	}
	if (bad)
		fail_msg("%d paged runs differ from contiguous", bad);
}

static void paged_prefill_matches_golden(void **state)
{
	struct attn_case ac = {
	    .dtype = KVMM_ATTN_BF16,
	    .head_dim = 64,
	    .kv_heads = 2,
	    .group = 4,
	    .layout = ATTN_LAYER_MAJOR,
	    .batch = 4,
	    .seq_lens = prefill_lens,
	    .q_lens = prefill_q_lens,
	};
	struct attn_data d;
	struct attn_paged pg;

	(void)state;
	assert_int_equal(attn_data_init(&d, &ac, 11), 0);
	attn_data_expect(&d);
	assert_int_equal(attn_paged_init(&pg, &d, 16, 5), 0);
	assert_int_equal(kvmm_attn_cpu_prefill(&pg.p, NULL), 0);
	assert_true(attn_check_close(&d, d.o, 0, "paged prefill"));
	attn_paged_free(&pg);
	attn_data_free(&d);
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
	assert_int_equal(kvmm_attn_ref_decode(&p), 0);
	assert_true(attn_check_close(&d, d.o, 0, "reference, [dim][token] K"));
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

/* Conversions: every half and bfloat16 survives a round trip; f32 -> f16 rounds to nearest even. */
static void dtype_conversions_round_to_nearest_even(void **state)
{
	(void)state;
	for (uint32_t h = 0; h < 65536; h++) {
		float f = attn_f16_to_f32((uint16_t)h), b = attn_bf16_to_f32((uint16_t)h);

		if (f == f && attn_f32_to_f16(f) != h)
			fail_msg("f16 0x%04x: expected round trip, seen 0x%04x", h,
				 attn_f32_to_f16(f));
		if (b == b && attn_f32_to_bf16(b) != h)
			fail_msg("bf16 0x%04x: expected round trip, seen 0x%04x", h,
				 attn_f32_to_bf16(b));
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
	    cmocka_unit_test(dtype_conversions_round_to_nearest_even),
	    cmocka_unit_test(params_check_rejects_bad_shapes),
	    cmocka_unit_test(split_plan_follows_wave_efficiency),
	    cmocka_unit_test(reference_in_dtype_matches_golden),
	    cmocka_unit_test(reference_follows_dim_stride),
	    cmocka_unit_test(decode_simd_matches_golden_over_shape_grid),
	    cmocka_unit_test(decode_portable_matches_golden_over_shape_grid),
	    cmocka_unit_test(decode_split_chunks_merge_to_golden),
	    cmocka_unit_test(decode_single_thread_matches_golden),
	    cmocka_unit_test(decode_idle_entry_writes_zeros),
	    cmocka_unit_test(decode_ignores_prefill_q_lens),
	    cmocka_unit_test(decode_long_single_sequence_matches_golden),
	    cmocka_unit_test(paged_twin_equals_contiguous_bitwise),
	    cmocka_unit_test(paged_prefill_matches_golden),
	    cmocka_unit_test(prefill_matches_golden_over_shape_grid),
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
