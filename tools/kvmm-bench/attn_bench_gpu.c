/*
 * kvmm-bench-attn, GPU half: decode GB/s against a device-to-device copy of
 * the same number of bytes, in both kvmm layouts (layer-major: each slot's
 * K rows contiguous; token-major: one layer's K row of a token is a run of
 * kv_heads x head_dim elements, runs layers x 2 rows apart, so TLB reach
 * matters), the contiguous kernel against its paged twin (block sizes 16
 * and 256), and causal prefill TFLOP/s. Times are medians of CUDA event
 * pairs; before every timed launch, kernel and copy alike, L2 is flushed
 * by reading a buffer twice its size into pinned host memory: a read, so
 * no dirty line is left to be written back while the timed work runs
 * (the dirty lines of the previous run are written back during it).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "attn_bench.h"

#define WARMUP 3
#define RUNS   21
/* The token-major buffer holds every layer: runs that would need more are
 * not made (and say so). */
#define TM_MAX_BYTES (8ULL << 30)

struct gpu_ctx {
	void *flush; /* 2 x L2 of device memory, read before each timed launch */
	void *sink;  /* pinned host memory the flush reads go to */
	size_t flush_bytes;
	cudaEvent_t t0, t1;
};

typedef int (*gpu_op)(void *arg);

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;

	return x < y ? -1 : x > y;
}

/* Median microseconds of op(arg), or a negative value when it failed. */
static double time_op(struct gpu_ctx *g, gpu_op op, void *arg)
{
	float ms[RUNS];

	for (int i = 0; i < WARMUP; i++)
		if (op(arg))
			return -1;
	for (int i = 0; i < RUNS; i++) {
		cudaMemcpyAsync(g->sink, g->flush, g->flush_bytes, cudaMemcpyDeviceToHost, 0);
		cudaEventRecord(g->t0, 0);
		if (op(arg))
			return -1;
		cudaEventRecord(g->t1, 0);
		if (cudaEventSynchronize(g->t1) != cudaSuccess)
			return -1;
		cudaEventElapsedTime(&ms[i], g->t0, g->t1);
	}
	qsort(ms, RUNS, sizeof(ms[0]), cmp_float);
	return ms[RUNS / 2] * 1e3;
}

struct decode_op {
	struct kvmm_attn_params p;
	void *ws;
	size_t ws_bytes;
};

static int run_decode(void *arg)
{
	struct decode_op *d = arg;

	return kvmm_attn_cuda_decode(&d->p, d->ws, d->ws_bytes, NULL);
}

static int run_prefill(void *arg)
{
	return kvmm_attn_cuda_prefill(arg, NULL);
}

/* The baseline: K then V copied in one timed op, as the kernel reads both. */
struct copy_op {
	void *dst;
	const void *k, *v;
	size_t bytes; /* of each */
};

static int run_copy(void *arg)
{
	struct copy_op *c = arg;

	return cudaMemcpyAsync(c->dst, c->k, c->bytes, cudaMemcpyDeviceToDevice, 0) !=
		   cudaSuccess ||
	       cudaMemcpyAsync((char *)c->dst + c->bytes, c->v, c->bytes, cudaMemcpyDeviceToDevice,
			       0) != cudaSuccess;
}

static void *dev_alloc(size_t bytes, int fill)
{
	void *p = NULL;

	if (cudaMalloc(&p, bytes ? bytes : 16) != cudaSuccess)
		return NULL;
	/* 0x30 bytes: small finite values in every dtype. */
	cudaMemset(p, fill, bytes);
	return p;
}

/* A block table over the same bytes: physical blocks in a shuffled order. */
static int32_t *paged_table(int batch, int blocks_per_seq)
{
	int n = batch * blocks_per_seq;
	int32_t *t = malloc(sizeof(int32_t) * (size_t)n), *d = NULL;
	unsigned s = 12345;

	if (!t)
		return NULL;
	for (int i = 0; i < n; i++)
		t[i] = i;
	for (int i = n - 1; i > 0; i--) {
		int j, x;

		s = s * 1103515245u + 12345u;
		j = (int)(s % (unsigned)(i + 1));
		x = t[i], t[i] = t[j], t[j] = x;
	}
	if (cudaMalloc((void **)&d, sizeof(int32_t) * (size_t)n) == cudaSuccess)
		cudaMemcpy(d, t, sizeof(int32_t) * (size_t)n, cudaMemcpyHostToDevice);
	free(t);
	return d;
}

static int bench_decode(struct gpu_ctx *g, const struct bench_opts *o, int L, int first)
{
	size_t es = kvmm_attn_dtype_size(o->dtype);
	int hd = o->kv_heads * o->head_dim;
	size_t kv = (size_t)o->batch * L * hd * es,
	       qn = (size_t)o->batch * o->q_heads * o->head_dim;
	int32_t *lens_h = malloc(sizeof(int32_t) * (size_t)o->batch), *lens = NULL;
	void *k = dev_alloc(kv, 0x30), *v = dev_alloc(kv, 0x30), *q = dev_alloc(qn * es, 0x30);
	void *out = dev_alloc(qn * es, 0), *dst = dev_alloc(2 * kv, 0);
	struct decode_op d = {0}, tm = {0};
	struct copy_op ck = {dst, k, v, kv};
	double t_dec, t_copy, t_tm = 0, t_paged[2] = {0, 0};
	size_t tm_bytes = (size_t)o->batch * L * o->layers * 2 * hd * es;
	void *tmbuf = NULL;
	static const int block_sizes[2] = {16, 256};
	int splits, rc = 1;

	if (!lens_h || !k || !v || !q || !out || !dst)
		goto out;
	for (int b = 0; b < o->batch; b++)
		lens_h[b] = L;
	if (cudaMalloc((void **)&lens, sizeof(int32_t) * (size_t)o->batch) != cudaSuccess)
		goto out;
	cudaMemcpy(lens, lens_h, sizeof(int32_t) * (size_t)o->batch, cudaMemcpyHostToDevice);
	d.p = (struct kvmm_attn_params){
	    .batch = o->batch,
	    .q_heads = o->q_heads,
	    .kv_heads = o->kv_heads,
	    .head_dim = o->head_dim,
	    .scale = 1.0f / sqrtf((float)o->head_dim),
	    .seq_lens = lens,
	    .max_seq_len = L,
	    .q = {q, o->dtype, (int64_t)o->q_heads * o->head_dim, 0, o->head_dim, 1},
	    .k = {k, o->dtype, (int64_t)L * hd, hd, o->head_dim, 1},
	    .v = {v, o->dtype, (int64_t)L * hd, hd, o->head_dim, 1},
	    .o = {out, o->dtype, (int64_t)o->q_heads * o->head_dim, 0, o->head_dim, 1},
	};
	splits = kvmm_attn_cuda_decode_splits(&d.p);
	d.ws_bytes = kvmm_attn_cuda_decode_workspace(&d.p);
	if (d.ws_bytes && cudaMalloc(&d.ws, d.ws_bytes) != cudaSuccess)
		goto out;
	t_dec = time_op(g, run_decode, &d);
	/* K then V, each copied once: 2 x kv bytes read and as many written. */
	t_copy = time_op(g, run_copy, &ck);
	/* Token-major: [slot][token][layer][K|V][head][dim], layer 0 read. */
	if (o->layers > 0 && tm_bytes <= TM_MAX_BYTES) {
		tmbuf = dev_alloc(tm_bytes, 0x30);
		if (!tmbuf)
			goto out;
		tm = d;
		tm.p.k = (struct kvmm_attn_tensor){tmbuf,
						   o->dtype,
						   (int64_t)L * o->layers * 2 * hd,
						   (int64_t)o->layers * 2 * hd,
						   o->head_dim,
						   1};
		tm.p.v = tm.p.k;
		tm.p.v.data = (char *)tmbuf + (size_t)hd * es;
		t_tm = time_op(g, run_decode, &tm);
	} else if (o->layers > 0) {
		fprintf(stderr,
			"kvmm-bench-attn: token-major at L=%d not run: %zu MiB > the %d MiB cap\n",
			L, tm_bytes >> 20, (int)(TM_MAX_BYTES >> 20));
	}
	for (int i = 0; i < 2; i++) {
		struct decode_op pd = d;
		int bs = block_sizes[i];

		if (L % bs)
			continue; /* the bench's paged view needs whole blocks */
		pd.p.paged.block_table = paged_table(o->batch, L / bs);
		pd.p.paged.max_blocks = L / bs;
		pd.p.paged.block_size = bs;
		pd.p.k.slot_stride = pd.p.v.slot_stride = (int64_t)bs * hd;
		if (pd.p.paged.block_table)
			t_paged[i] = time_op(g, run_decode, &pd);
		cudaFree((void *)pd.p.paged.block_table);
	}
	if (t_dec <= 0 || t_copy <= 0) {
		fprintf(stderr, "kvmm-bench-attn: GPU decode at L=%d failed\n", L);
		goto out;
	}
	{
		double dg = 2.0 * kv / t_dec / 1e3, cg = 2.0 * 2.0 * kv / t_copy / 1e3;
		double tg = t_tm > 0 ? 2.0 * kv / t_tm / 1e3 : 0;

		if (o->json)
			printf(
			    "%s{\"seq_len\":%d,\"kv_bytes\":%zu,\"splits\":%d,\"decode_us\":%.2f,"
			    "\"decode_gbps\":%.1f,\"copy_gbps\":%.1f,\"ratio\":%.3f,"
			    "\"token_major_layers\":%d,\"token_major_us\":%.2f,"
			    "\"token_major_gbps\":%.1f,\"token_major_ratio\":%.3f,"
			    "\"paged16_us\":%.2f,\"paged256_us\":%.2f}",
			    first ? "" : ",", L, 2 * kv, splits, t_dec, dg, cg, dg / cg,
			    t_tm > 0 ? o->layers : 0, t_tm, tg, tg / cg, t_paged[0], t_paged[1]);
		else
			printf("%8d %9.1f %6d %10.1f %11.1f %10.1f %6.2f %10.1f %6.2f %11.1f "
			       "%11.1f\n",
			       L, 2.0 * kv / (1 << 20), splits, t_dec, dg, cg, dg / cg, t_tm,
			       tg / cg, t_paged[0], t_paged[1]);
	}
	rc = 0;
out:
	cudaFree(d.ws);
	cudaFree(tmbuf);
	cudaFree(k);
	cudaFree(v);
	cudaFree(q);
	cudaFree(out);
	cudaFree(dst);
	cudaFree(lens);
	free(lens_h);
	return rc;
}

static int bench_prefill(struct gpu_ctx *g, const struct bench_opts *o, int L, int first)
{
	size_t es = kvmm_attn_dtype_size(o->dtype);
	int hd = o->kv_heads * o->head_dim, qd = o->q_heads * o->head_dim;
	void *k = dev_alloc((size_t)L * hd * es, 0x30), *v = dev_alloc((size_t)L * hd * es, 0x30);
	void *q = dev_alloc((size_t)L * qd * es, 0x30), *out = dev_alloc((size_t)L * qd * es, 0);
	int32_t *lens = NULL;
	struct kvmm_attn_params p;
	double t, flops;
	int rc = 1;

	if (!k || !v || !q || !out || cudaMalloc((void **)&lens, sizeof(int32_t)) != cudaSuccess)
		goto out;
	cudaMemcpy(lens, &L, sizeof(int32_t), cudaMemcpyHostToDevice);
	p = (struct kvmm_attn_params){
	    .batch = 1,
	    .q_heads = o->q_heads,
	    .kv_heads = o->kv_heads,
	    .head_dim = o->head_dim,
	    .scale = 1.0f / sqrtf((float)o->head_dim),
	    .seq_lens = lens,
	    .max_q_len = L,
	    .max_seq_len = L,
	    .q = {q, o->dtype, (int64_t)L * qd, qd, o->head_dim, 1},
	    .k = {k, o->dtype, (int64_t)L * hd, hd, o->head_dim, 1},
	    .v = {v, o->dtype, (int64_t)L * hd, hd, o->head_dim, 1},
	    .o = {out, o->dtype, (int64_t)L * qd, qd, o->head_dim, 1},
	};
	t = time_op(g, run_prefill, &p);
	if (t <= 0) {
		fprintf(stderr, "kvmm-bench-attn: GPU prefill at L=%d failed\n", L);
		goto out;
	}
	/* FlashAttention's convention: 4 * s_q * s_k * heads * dim, halved for causal. */
	flops = 4.0 * L * L * o->q_heads * o->head_dim / 2;
	if (o->json)
		printf("%s{\"seq_len\":%d,\"prefill_us\":%.1f,\"tflops\":%.1f}", first ? "" : ",",
		       L, t, flops / t / 1e6);
	else
		printf("%8d %12.1f %10.1f\n", L, t, flops / t / 1e6);
	rc = 0;
out:
	cudaFree(k);
	cudaFree(v);
	cudaFree(q);
	cudaFree(out);
	cudaFree(lens);
	return rc;
}

int bench_gpu(const struct bench_opts *o)
{
	struct cudaDeviceProp prop;
	struct gpu_ctx g = {0};
	int count = 0, rc = 0;
	cudaError_t e = cudaGetDeviceCount(&count);

	if (e != cudaSuccess || count == 0) {
		const char *why = e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device";

		if (o->json)
			printf("{\"skipped\":\"no GPU (%s)\"}", why);
		else
			printf("GPU: skipped: no GPU (%s)\n", why);
		return 77;
	}
	cudaGetDeviceProperties(&prop, 0);
	g.flush_bytes = 2 * (size_t)(prop.l2CacheSize > 0 ? prop.l2CacheSize : 1 << 20);
	if (cudaMalloc(&g.flush, g.flush_bytes) != cudaSuccess ||
	    cudaMemset(g.flush, 0, g.flush_bytes) != cudaSuccess ||
	    cudaMallocHost(&g.sink, g.flush_bytes) != cudaSuccess ||
	    cudaEventCreate(&g.t0) != cudaSuccess || cudaEventCreate(&g.t1) != cudaSuccess) {
		fprintf(stderr, "kvmm-bench-attn: GPU setup failed\n");
		return 1;
	}
	if (o->json)
		printf("{\"device\":\"%s\",\"decode\":[", prop.name);
	else
		printf("GPU decode on %s (%s, batch %d, %d q / %d kv heads, head_dim %d; cold L2;\n"
		       "copy = D2D memcpy of the same K/V bytes, counting read + write; tm = "
		       "token-major, %d layers)\n"
		       "%8s %9s %6s %10s %11s %10s %6s %10s %6s %11s %11s\n",
		       prop.name, kvmm_attn_dtype_name(o->dtype), o->batch, o->q_heads, o->kv_heads,
		       o->head_dim, o->layers, "seq_len", "KV MiB", "splits", "decode us",
		       "decode GB/s", "copy GB/s", "ratio", "tm us", "ratio", "paged16 us",
		       "paged256 us");
	for (int i = 0; i < o->nlens && !rc; i++)
		rc = bench_decode(&g, o, o->lens[i], i == 0);
	if (o->dtype != KVMM_ATTN_F32) {
		if (o->json)
			printf("],\"prefill\":[");
		else
			printf(
			    "\nGPU causal prefill (batch 1, new tokens = seq_len)\n%8s %12s %10s\n",
			    "seq_len", "prefill us", "TFLOP/s");
		for (int i = 0; i < o->nlens && !rc; i++)
			rc = bench_prefill(&g, o, o->lens[i], i == 0);
	}
	if (o->json)
		printf("]}");
	cudaFree(g.flush);
	cudaFreeHost(g.sink);
	cudaEventDestroy(g.t0);
	cudaEventDestroy(g.t1);
	return rc;
}
