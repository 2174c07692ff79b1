/*
 * CUDA attention kernels against the independent f64 golden
 * (tests/unit/attn_golden.c, no code shared with kernels/), and the paged
 * twin against the contiguous kernel and the golden. Needs a GPU: without
 * one (or without libcuda.so.1; cudart is linked statically so the program
 * still starts) every test prints why it skipped. Ends with
 * "gpu: N passed, N failed, N skipped".
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
#include <cuda_runtime_api.h>

#include "attn_util.h"

#include "gpu_test.h"

/* Host buffers mirrored on the device; pointers inside them are translated. */
struct mirror {
	const void *host[8];
	void *dev[8];
	size_t bytes[8];
	int n;
};

static void mirror_add(struct mirror *m, const void *host, size_t bytes)
{
	assert_true(m->n < (int)N(m->host));
	m->host[m->n] = host;
	m->bytes[m->n] = bytes;
	CUDA_OK(cudaMalloc(&m->dev[m->n], bytes ? bytes : 16));
	CUDA_OK(cudaMemcpy(m->dev[m->n], host, bytes, cudaMemcpyHostToDevice));
	m->n++;
}

static void *mirror_ptr(const struct mirror *m, const void *host)
{
	if (!host)
		return NULL;
	for (int i = 0; i < m->n; i++) {
		const char *h = m->host[i];

		if ((const char *)host >= h && (const char *)host < h + m->bytes[i] + 1)
			return (char *)m->dev[i] + ((const char *)host - h);
	}
	fail_msg("host pointer %p is not mirrored", host);
	return NULL;
}

static void mirror_free(struct mirror *m)
{
	for (int i = 0; i < m->n; i++)
		cudaFree(m->dev[i]);
	m->n = 0;
}

/* Device copy of d's data (and of pg's blocks when given), with params pointing at it. */
static struct kvmm_attn_params to_device(struct mirror *m, const struct attn_data *d,
					 const struct attn_paged *pg)
{
	const struct kvmm_attn_params *hp = pg ? &pg->p : &d->p;
	struct kvmm_attn_params p = *hp;

	memset(m, 0, sizeof(*m));
	mirror_add(m, d->q, d->q_bytes);
	mirror_add(m, d->o, d->o_bytes);
	mirror_add(m, d->seq_lens, sizeof(int32_t) * (size_t)d->c.batch);
	mirror_add(m, d->q_lens, sizeof(int32_t) * (size_t)d->c.batch);
	mirror_add(m, d->slots, sizeof(int32_t) * (size_t)d->c.batch);
	if (pg) {
		mirror_add(m, pg->blocks, pg->blocks_bytes);
		mirror_add(m, pg->table,
			   sizeof(int32_t) * (size_t)d->c.batch * (size_t)pg->p.paged.max_blocks);
	} else {
		mirror_add(m, d->cache, d->cache_bytes);
	}
	p.q.data = mirror_ptr(m, hp->q.data);
	p.o.data = mirror_ptr(m, hp->o.data);
	p.k.data = mirror_ptr(m, hp->k.data);
	p.v.data = mirror_ptr(m, hp->v.data);
	p.seq_lens = mirror_ptr(m, hp->seq_lens);
	p.q_lens = mirror_ptr(m, hp->q_lens);
	p.slots = mirror_ptr(m, hp->slots);
	p.paged.block_table = mirror_ptr(m, hp->paged.block_table);
	return p;
}

enum run_kind { RUN_DECODE, RUN_DECODE_NO_WORKSPACE, RUN_PREFILL };

/*
 * How a kernel computes, for the error bound: f16/bf16 prefill runs on
 * tensor cores (P rounded to the dtype, truncating sums inside an mma); f32
 * prefill and every decode use f32 CUDA cores.
 */
static unsigned check_flags(const struct attn_data *d, enum run_kind kind)
{
	return kind == RUN_PREFILL && d->c.dtype != KVMM_ATTN_F32 ? ATTN_CHECK_MMA : 0;
}

/* Runs one kernel on the device copy and leaves its output in host buffer out. */
static void run_on_gpu(const struct attn_data *d, const struct attn_paged *pg, enum run_kind kind,
		       void *out)
{
	struct mirror m;
	struct kvmm_attn_params p = to_device(&m, d, pg);
	void *ws = NULL;
	size_t ws_bytes = 0;
	int rc;

	CUDA_OK(cudaMemset(p.o.data, 0xff, d->o_bytes));
	if (kind == RUN_DECODE) {
		ws_bytes = kvmm_attn_cuda_decode_workspace(&p);
		if (ws_bytes)
			CUDA_OK(cudaMalloc(&ws, ws_bytes));
	}
	if (kind == RUN_PREFILL)
		rc = kvmm_attn_cuda_prefill(&p, NULL);
	else
		rc = kvmm_attn_cuda_decode(&p, ws, ws_bytes, NULL);
	if (rc != 0)
		fail_msg("kernel: expected 0, seen %d", rc);
	CUDA_OK(cudaDeviceSynchronize());
	CUDA_OK(cudaMemcpy(out, p.o.data, d->o_bytes, cudaMemcpyDeviceToHost));
	cudaFree(ws);
	mirror_free(&m);
}

static const int32_t decode_lens[] = {1, 37, 300, 1029};
static const int32_t prefill_lens[] = {1, 40, 77, 300};
static const int32_t prefill_q_lens[] = {1, 5, 33, 150};

static void grid_check(int prefill, enum run_kind kind, const char *what)
{
	int bad = 0, cases = ATTN_GRID_CASES;

	for (size_t i = 0; i < ATTN_GRID_CASES; i++) {
		struct attn_case ac = attn_grid_case(i, prefill ? prefill_lens : decode_lens,
						     prefill ? prefill_q_lens : NULL);
		struct attn_data d;

		assert_int_equal(attn_data_init(&d, &ac, 2000 + i), 0);
		attn_data_expect(&d);
		run_on_gpu(&d, NULL, kind, d.o);
		bad += !attn_check_close(&d, d.o, check_flags(&d, kind), what);
		attn_data_free(&d);
	}
	if (bad)
		fail_msg("%s: %d of %d cases out of tolerance", what, bad, cases);
}

static void gpu_decode_matches_golden_over_shape_grid(void **state)
{
	(void)state;
	NEED_GPU();
	grid_check(0, RUN_DECODE, "cuda decode");
}

static void gpu_decode_without_workspace_matches_golden(void **state)
{
	(void)state;
	NEED_GPU();
	grid_check(0, RUN_DECODE_NO_WORKSPACE, "cuda decode, no workspace");
}

static void gpu_prefill_matches_golden_over_shape_grid(void **state)
{
	(void)state;
	NEED_GPU();
	grid_check(1, RUN_PREFILL, "cuda prefill");
}

/* One long sequence leaves the GPU mostly idle: the plan must split and combine. */
static void gpu_split_decode_of_long_sequence_matches_golden(void **state)
{
	static const int32_t lens[] = {20011};
	struct attn_case ac = {
	    .dtype = KVMM_ATTN_BF16,
	    .head_dim = 128,
	    .kv_heads = 2,
	    .group = 4,
	    .layout = ATTN_TOKEN_MAJOR,
	    .batch = 1,
	    .seq_lens = lens,
	};
	struct attn_data d;
	struct mirror m;
	struct kvmm_attn_params p;
	int splits;

	(void)state;
	NEED_GPU();
	assert_int_equal(attn_data_init(&d, &ac, 77), 0);
	attn_data_expect(&d);
	p = to_device(&m, &d, NULL);
	splits = kvmm_attn_cuda_decode_splits(&p);
	mirror_free(&m);
	if (splits < 2)
		fail_msg("split plan for 1 x 20011 tokens on 2 KV heads: expected >= 2, seen %d",
			 splits);
	run_on_gpu(&d, NULL, RUN_DECODE, d.o);
	assert_true(attn_check_close(&d, d.o, 0, "cuda split decode"));
	attn_data_free(&d);
}

/* The paged twin reads the same bytes through a block table: same bits out. */
static void gpu_paged_twin_equals_contiguous_bitwise(void **state)
{
	static const int block_sizes[] = {16, 256};
	static const int32_t lens[] = {1, 37, 300, 5000};
	int bad = 0;

	(void)state;
	NEED_GPU();
	for (size_t a = 0; a < N(attn_grid_dtypes); a++)
		for (size_t g = 0; g < N(attn_grid_groups); g++)
			for (size_t bs = 0; bs < N(block_sizes); bs++)
				for (int prefill = 0; prefill < 2; prefill++) {
					struct attn_case ac = {
					    .dtype = attn_grid_dtypes[a],
					    .head_dim = 128,
					    .kv_heads = 2,
					    .group = attn_grid_groups[g],
					    .layout = ATTN_TOKEN_MAJOR,
					    .batch = 4,
					    .seq_lens = prefill ? prefill_lens : lens,
					    .q_lens = prefill ? prefill_q_lens : NULL,
					};
					enum run_kind kind = prefill ? RUN_PREFILL : RUN_DECODE;
					struct attn_data d;
					struct attn_paged pg;
					void *contig;

					assert_int_equal(attn_data_init(&d, &ac, 300 + a), 0);
					attn_data_expect(&d);
					assert_int_equal(
					    attn_paged_init(&pg, &d, block_sizes[bs], 9), 0);
					bad += !attn_paged_expect(&pg, &d);
					contig = malloc(d.o_bytes);
					assert_non_null(contig);
					run_on_gpu(&d, NULL, kind, contig);
					run_on_gpu(&d, &pg, kind, d.o);
					bad += !attn_check_equal(&d, contig, d.o,
								 prefill ? "cuda paged prefill"
									 : "cuda paged decode");
					bad += !attn_check_close(&d, d.o, check_flags(&d, kind),
								 prefill ? "cuda paged prefill"
									 : "cuda paged decode");
					free(contig);
					attn_paged_free(&pg);
					attn_data_free(&d);
				}
	if (bad)
		fail_msg("%d paged runs differ from contiguous or from the golden", bad);
}

/* Decode and prefill of one case (its golden computed), held to the golden. */
static int case_check(const struct attn_case *ac, uint64_t seed, float scale_mult, const char *what)
{
	struct attn_data d;
	int bad = 0;

	assert_int_equal(attn_data_init(&d, ac, seed), 0);
	d.p.scale *= scale_mult;
	attn_data_expect(&d);
	run_on_gpu(&d, NULL, ac->q_lens ? RUN_PREFILL : RUN_DECODE, d.o);
	bad += !attn_check_close(&d, d.o, check_flags(&d, ac->q_lens ? RUN_PREFILL : RUN_DECODE),
				 what);
	if (!ac->q_lens) {
		run_on_gpu(&d, NULL, RUN_DECODE_NO_WORKSPACE, d.o);
		bad += !attn_check_close(&d, d.o, 0, what);
	}
	attn_data_free(&d);
	return bad;
}

/*
 * GQA groups the shape grid (1, 4, 8) does not have: 2, groups that are
 * not powers of two (a partial head tile: 3, 6) and above 8 (tiles of 8
 * plus a partial one: 12), in every dtype, decode and prefill.
 */
static void gpu_gqa_groups_2_3_6_12_match_golden(void **state)
{
	static const int groups[] = {2, 3, 6, 12};
	int bad = 0;

	(void)state;
	NEED_GPU();
	for (size_t a = 0; a < N(attn_grid_dtypes); a++)
		for (size_t g = 0; g < N(groups); g++)
			for (int prefill = 0; prefill < 2; prefill++) {
				struct attn_case ac = {
				    .dtype = attn_grid_dtypes[a],
				    .head_dim = g % 2 ? 64 : 128,
				    .kv_heads = 2,
				    .group = groups[g],
				    .layout = g % 2 ? ATTN_TOKEN_MAJOR : ATTN_LAYER_MAJOR,
				    .batch = 4,
				    .seq_lens = prefill ? prefill_lens : decode_lens,
				    .q_lens = prefill ? prefill_q_lens : NULL,
				};

				bad += case_check(&ac, 500 + 10 * a + g, 1.0f, "cuda gqa group");
			}
	if (bad)
		fail_msg("%d GQA runs out of tolerance", bad);
}

/*
 * Uniform random data gives a nearly flat softmax; with the scale raised
 * 16-fold one key dominates each row, which is where a wrong running max
 * or rescale shows. The golden's bound grows with max |scale q.k|.
 */
static void gpu_peaked_scores_match_golden(void **state)
{
	int bad = 0;

	(void)state;
	NEED_GPU();
	for (size_t i = 0; i < ATTN_GRID_CASES; i += 5) {
		struct attn_case dc = attn_grid_case(i, decode_lens, NULL);
		struct attn_case pc = attn_grid_case(i, prefill_lens, prefill_q_lens);

		bad += case_check(&dc, 700 + i, 16.0f, "cuda decode, peaked scores");
		bad += case_check(&pc, 800 + i, 16.0f, "cuda prefill, peaked scores");
	}
	if (bad)
		fail_msg("%d peaked runs out of tolerance", bad);
}

/* Entries with seq_len 0 (idle slots in a batch) write zeros, and the
 * others are unaffected, with and without splits. */
static void gpu_idle_entries_write_zeros(void **state)
{
	static const int32_t lens[] = {0, 37, 0, 20011};
	struct attn_case ac = {
	    .dtype = KVMM_ATTN_F16,
	    .head_dim = 128,
	    .kv_heads = 2,
	    .group = 4,
	    .layout = ATTN_LAYER_MAJOR,
	    .batch = 4,
	    .seq_lens = lens,
	};
	struct attn_data d;
	const uint16_t *o;
	size_t row = (size_t)8 * 128; /* one entry's q heads x dim */

	(void)state;
	NEED_GPU();
	assert_int_equal(attn_data_init(&d, &ac, 31), 0);
	attn_data_expect(&d);
	for (int kind = RUN_DECODE; kind <= RUN_DECODE_NO_WORKSPACE; kind++) {
		run_on_gpu(&d, NULL, (enum run_kind)kind, d.o);
		o = d.o;
		for (int b = 0; b < 4; b += 2)
			for (size_t e = 0; e < row; e++)
				if (o[b * row + e] != 0)
					fail_msg("idle entry %d element %zu: expected 0x0000, seen "
						 "0x%04x",
						 b, e, o[b * row + e]);
		assert_true(attn_check_close(&d, d.o, 0, "cuda decode with idle entries"));
	}
	attn_data_free(&d);
}

/*
 * f16 at 32768 tokens with the entry's slot so far into the cache that
 * its element offsets pass 2^31 (slot x slot_stride): any 32-bit product
 * in the addressing reads the wrong bytes or faults. Needs about 9.5 GiB.
 */
static void gpu_f16_32k_tokens_past_2_31_elements(void **state)
{
	static const int32_t lens[] = {32768};
	struct attn_case ac = {
	    .dtype = KVMM_ATTN_F16,
	    .head_dim = 128,
	    .kv_heads = 8,
	    .group = 4,
	    .layout = ATTN_LAYER_MAJOR,
	    .batch = 1,
	    .seq_lens = lens,
	};
	const int32_t far = 70;
	struct attn_data d;
	struct kvmm_attn_params p;
	size_t es = 2, slot_bytes;
	char *k = NULL, *v = NULL;
	void *q, *o, *lens_d, *slots_d, *ws = NULL;
	size_t ws_bytes;

	(void)state;
	NEED_GPU();
	assert_int_equal(attn_data_init(&d, &ac, 41), 0);
	attn_data_expect(&d);
	p = d.p;
	assert_true((int64_t)far * p.k.slot_stride > INT32_MAX);
	slot_bytes = (size_t)p.k.slot_stride * es;
	CUDA_OK(cudaMalloc((void **)&k, (far + 1) * slot_bytes));
	CUDA_OK(cudaMalloc((void **)&v, (far + 1) * slot_bytes));
	CUDA_OK(cudaMemcpy(k + far * slot_bytes, (char *)d.p.k.data + d.slots[0] * slot_bytes,
			   slot_bytes, cudaMemcpyHostToDevice));
	CUDA_OK(cudaMemcpy(v + far * slot_bytes, (char *)d.p.v.data + d.slots[0] * slot_bytes,
			   slot_bytes, cudaMemcpyHostToDevice));
	CUDA_OK(cudaMalloc(&q, d.q_bytes));
	CUDA_OK(cudaMemcpy(q, d.q, d.q_bytes, cudaMemcpyHostToDevice));
	CUDA_OK(cudaMalloc(&o, d.o_bytes));
	CUDA_OK(cudaMalloc(&lens_d, sizeof(int32_t)));
	CUDA_OK(cudaMemcpy(lens_d, lens, sizeof(int32_t), cudaMemcpyHostToDevice));
	CUDA_OK(cudaMalloc(&slots_d, sizeof(int32_t)));
	CUDA_OK(cudaMemcpy(slots_d, &far, sizeof(int32_t), cudaMemcpyHostToDevice));
	p.k.data = k;
	p.v.data = v;
	p.q.data = q;
	p.o.data = o;
	p.seq_lens = lens_d;
	p.slots = slots_d;
	ws_bytes = kvmm_attn_cuda_decode_workspace(&p);
	if (ws_bytes)
		CUDA_OK(cudaMalloc(&ws, ws_bytes));
	assert_int_equal(kvmm_attn_cuda_decode(&p, ws, ws_bytes, NULL), 0);
	CUDA_OK(cudaDeviceSynchronize());
	CUDA_OK(cudaMemcpy(d.o, o, d.o_bytes, cudaMemcpyDeviceToHost));
	assert_true(attn_check_close(&d, d.o, 0, "cuda decode past 2^31 elements"));
	cudaFree(k);
	cudaFree(v);
	cudaFree(q);
	cudaFree(o);
	cudaFree(lens_d);
	cudaFree(slots_d);
	cudaFree(ws);
	attn_data_free(&d);
}

/* A stream of the caller's own (non-blocking, so the legacy stream does
 * not order it): the kernels queue there and a wait on that stream alone
 * sees the result. */
static void gpu_decode_and_prefill_on_a_non_default_stream(void **state)
{
	struct attn_case dc = attn_grid_case(7, decode_lens, NULL);
	struct attn_case pc = attn_grid_case(7, prefill_lens, prefill_q_lens);
	struct attn_case *cases[] = {&dc, &pc};
	cudaStream_t s;

	(void)state;
	NEED_GPU();
	CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
	for (size_t i = 0; i < N(cases); i++) {
		struct attn_data d;
		struct mirror m;
		struct kvmm_attn_params p;
		void *ws = NULL;
		size_t ws_bytes = 0;

		assert_int_equal(attn_data_init(&d, cases[i], 900 + i), 0);
		attn_data_expect(&d);
		p = to_device(&m, &d, NULL);
		CUDA_OK(cudaDeviceSynchronize()); /* the mirror's copies are done */
		CUDA_OK(cudaMemsetAsync(p.o.data, 0xff, d.o_bytes, s));
		if (!cases[i]->q_lens) {
			ws_bytes = kvmm_attn_cuda_decode_workspace(&p);
			if (ws_bytes)
				CUDA_OK(cudaMalloc(&ws, ws_bytes));
			assert_int_equal(kvmm_attn_cuda_decode(&p, ws, ws_bytes, s), 0);
		} else {
			assert_int_equal(kvmm_attn_cuda_prefill(&p, s), 0);
		}
		CUDA_OK(cudaMemcpyAsync(d.o, p.o.data, d.o_bytes, cudaMemcpyDeviceToHost, s));
		CUDA_OK(cudaStreamSynchronize(s));
		assert_true(attn_check_close(
		    &d, d.o, check_flags(&d, cases[i]->q_lens ? RUN_PREFILL : RUN_DECODE),
		    "cuda on a non-default stream"));
		cudaFree(ws);
		mirror_free(&m);
		attn_data_free(&d);
	}
	CUDA_OK(cudaStreamDestroy(s));
}

/* A split decode refuses a workspace one byte short, or not 16-byte
 * aligned (its partial outputs are float4 stores); without one it runs
 * unsplit. */
static void gpu_decode_refuses_a_small_or_misaligned_workspace(void **state)
{
	static const int32_t lens[] = {20011};
	struct attn_case ac = {
	    .dtype = KVMM_ATTN_BF16,
	    .head_dim = 128,
	    .kv_heads = 2,
	    .group = 4,
	    .layout = ATTN_TOKEN_MAJOR,
	    .batch = 1,
	    .seq_lens = lens,
	};
	struct attn_data d;
	struct mirror m;
	struct kvmm_attn_params p;
	size_t ws_bytes;
	char *ws;

	(void)state;
	NEED_GPU();
	assert_int_equal(attn_data_init(&d, &ac, 51), 0);
	p = to_device(&m, &d, NULL);
	ws_bytes = kvmm_attn_cuda_decode_workspace(&p);
	assert_true(ws_bytes > 0); /* this shape splits */
	CUDA_OK(cudaMalloc((void **)&ws, ws_bytes + 64));
	assert_int_equal(kvmm_attn_cuda_decode(&p, ws, ws_bytes - 1, NULL), -EINVAL);
	assert_int_equal(kvmm_attn_cuda_decode(&p, ws + 4, ws_bytes, NULL), -EINVAL);
	assert_int_equal(kvmm_attn_cuda_decode(&p, ws + 16, ws_bytes, NULL), 0);
	CUDA_OK(cudaDeviceSynchronize());
	cudaFree(ws);
	mirror_free(&m);
	attn_data_free(&d);
}

/*
 * A seq_len past the max_seq_len the call was planned with: the splits
 * cover max_seq_len, and the last one must run to the real length instead
 * of dropping the tokens past it.
 */
static void gpu_decode_past_max_seq_len_keeps_every_token(void **state)
{
	static const int32_t lens[] = {20011};
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
	NEED_GPU();
	assert_int_equal(attn_data_init(&d, &ac, 61), 0);
	attn_data_expect(&d);
	d.p.max_seq_len = 8000; /* the engine's stale bound */
	run_on_gpu(&d, NULL, RUN_DECODE, d.o);
	assert_true(attn_check_close(&d, d.o, 0, "cuda decode past max_seq_len"));
	attn_data_free(&d);
}

/*
 * Prefill writes rows [0, q_len) of each entry and nothing else: rows past
 * q_len keep what they held, and a q_len past max_q_len (o's token extent)
 * is clamped, so the bytes after o stay untouched too.
 */
static void gpu_prefill_leaves_rows_past_q_len_untouched(void **state)
{
	static const int32_t lens[] = {40, 300}, q_lens[] = {5, 150};
	struct attn_case ac = {
	    .dtype = KVMM_ATTN_BF16,
	    .head_dim = 64,
	    .kv_heads = 2,
	    .group = 2,
	    .layout = ATTN_LAYER_MAJOR,
	    .batch = 2,
	    .seq_lens = lens,
	    .q_lens = q_lens,
	};
	struct attn_data d;
	struct mirror m;
	struct kvmm_attn_params p;
	const int32_t big[] = {5, 150 + 40};		  /* entry 1 past max_q_len = 150 */
	size_t row = (size_t)4 * 64 * 2, guard = 1 << 16; /* q heads x dim x 2 bytes */
	unsigned char *o, *seen;
	void *qlens_d;

	(void)state;
	NEED_GPU();
	assert_int_equal(attn_data_init(&d, &ac, 71), 0);
	attn_data_expect(&d);
	p = to_device(&m, &d, NULL);
	/* o with a guard after it, every byte 0xa5 before the run. */
	CUDA_OK(cudaMalloc((void **)&o, d.o_bytes + guard));
	CUDA_OK(cudaMemset(o, 0xa5, d.o_bytes + guard));
	p.o.data = o;
	CUDA_OK(cudaMalloc(&qlens_d, sizeof(big)));
	CUDA_OK(cudaMemcpy(qlens_d, big, sizeof(big), cudaMemcpyHostToDevice));
	p.q_lens = qlens_d;
	assert_int_equal(kvmm_attn_cuda_prefill(&p, NULL), 0);
	CUDA_OK(cudaDeviceSynchronize());
	seen = malloc(d.o_bytes + guard);
	assert_non_null(seen);
	CUDA_OK(cudaMemcpy(seen, o, d.o_bytes + guard, cudaMemcpyDeviceToHost));
	for (size_t t = 5; t < 150; t++) /* entry 0's rows past its q_len */
		for (size_t e = 0; e < row; e++)
			if (seen[t * row + e] != 0xa5)
				fail_msg("entry 0 token %zu byte %zu past q_len 5: expected 0xa5, "
					 "seen 0x%02x",
					 t, e, seen[t * row + e]);
	for (size_t e = 0; e < guard; e++)
		if (seen[d.o_bytes + e] != 0xa5)
			fail_msg("byte %zu after o (q_len 190 > max_q_len 150): expected 0xa5, "
				 "seen 0x%02x",
				 e, seen[d.o_bytes + e]);
	free(seen);
	cudaFree(qlens_d);
	cudaFree(o);
	mirror_free(&m);
	attn_data_free(&d);
}

static void gpu_rejects_misaligned_rows(void **state)
{
	static const int32_t lens[] = {10};
	struct attn_case ac = {
	    .dtype = KVMM_ATTN_F16,
	    .head_dim = 64,
	    .kv_heads = 1,
	    .group = 1,
	    .layout = ATTN_LAYER_MAJOR,
	    .batch = 1,
	    .seq_lens = lens,
	};
	struct attn_data d;
	struct kvmm_attn_params p;

	(void)state; /* host-side checks: runs without a GPU too */
	assert_int_equal(attn_data_init(&d, &ac, 5), 0);
	p = d.p;
	p.k.token_stride += 1; /* rows no longer 16-byte aligned */
	assert_int_equal(kvmm_attn_cuda_decode(&p, NULL, 0, NULL), -EINVAL);
	p = d.p;
	p.v.dim_stride = 2;
	assert_int_equal(kvmm_attn_cuda_prefill(&p, NULL), -EINVAL);
	attn_data_free(&d);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(gpu_rejects_misaligned_rows),
	    cmocka_unit_test(gpu_decode_matches_golden_over_shape_grid),
	    cmocka_unit_test(gpu_decode_without_workspace_matches_golden),
	    cmocka_unit_test(gpu_split_decode_of_long_sequence_matches_golden),
	    cmocka_unit_test(gpu_paged_twin_equals_contiguous_bitwise),
	    cmocka_unit_test(gpu_prefill_matches_golden_over_shape_grid),
	    cmocka_unit_test(gpu_gqa_groups_2_3_6_12_match_golden),
	    cmocka_unit_test(gpu_peaked_scores_match_golden),
	    cmocka_unit_test(gpu_idle_entries_write_zeros),
	    cmocka_unit_test(gpu_f16_32k_tokens_past_2_31_elements),
	    cmocka_unit_test(gpu_decode_and_prefill_on_a_non_default_stream),
	    cmocka_unit_test(gpu_decode_refuses_a_small_or_misaligned_workspace),
	    cmocka_unit_test(gpu_decode_past_max_seq_len_keeps_every_token),
	    cmocka_unit_test(gpu_prefill_leaves_rows_past_q_len_untouched),
	};
	int count = 0, failed;
	cudaError_t e;

	T_LIST(argc, argv, T_GROUP(tests));
	e = cudaGetDeviceCount(&count);

	setvbuf(stdout, NULL, _IOLBF, 0); /* skip lines and results in order */
	if (e != cudaSuccess)
		snprintf(no_gpu, sizeof(no_gpu),
			 "no GPU (libcuda.so.1 missing or unusable: %s; %s)", cudaGetErrorString(e),
			 GPU_HINT);
	else if (count == 0)
		snprintf(no_gpu, sizeof(no_gpu), "no GPU (no CUDA device; %s)", GPU_HINT);
	failed = cmocka_run_group_tests(tests, NULL, NULL);
	printf("gpu: %d passed, %d failed, %d skipped\n", (int)N(tests) - failed - skipped, failed,
	       skipped);
	return failed ? 1 : 0;
}
