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
