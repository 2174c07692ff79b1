/* SPDX-License-Identifier: MIT */
/*
 * kvmm-bench-region: the CUDA decode kernel on a kvmm CUDA KV cache against
 * the same kernel on cudaMalloc memory of the same strides, in both
 * layouts (layer-major: one layer; token-major: --layers layers, layer 0
 * read). The ratio is cudaMalloc time / kvmm time (target >= 0.99: VMM
 * chunk mappings cost the kernel nothing). Timing as kvmm-bench-attn:
 * median of 21 CUDA event pairs, L2 flushed before each by reading twice
 * its size into pinned host memory.
 *   kvmm-bench-region [--json] [--device N] [--batch B] [--lens L1,L2]
 *                     [--layers N]
 * Without a GPU it says why and exits 77.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include <kvmm/attention.h>
#include <kvmm/kvmm.h>

#define WARMUP	 3
#define RUNS	 21
#define KV_HEADS 8
#define Q_HEADS	 32
#define HEAD_DIM 128

struct timer {
	void *flush, *sink;
	size_t flush_bytes;
	cudaEvent_t t0, t1;
};

struct run {
	struct kvmm_attn_params p;
	void *ws;
	size_t ws_bytes;
};

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;

	return x < y ? -1 : x > y;
}

/* Median microseconds of one decode, or < 0 when it failed. */
static double time_decode(struct timer *t, struct run *r)
{
	float ms[RUNS];

	for (int i = 0; i < WARMUP; i++)
		if (kvmm_attn_cuda_decode(&r->p, r->ws, r->ws_bytes, NULL))
			return -1;
	for (int i = 0; i < RUNS; i++) {
		cudaMemcpyAsync(t->sink, t->flush, t->flush_bytes, cudaMemcpyDeviceToHost, 0);
		cudaEventRecord(t->t0, 0);
		if (kvmm_attn_cuda_decode(&r->p, r->ws, r->ws_bytes, NULL))
			return -1;
		cudaEventRecord(t->t1, 0);
		if (cudaEventSynchronize(t->t1) != cudaSuccess)
			return -1;
		cudaEventElapsedTime(&ms[i], t->t0, t->t1);
	}
	qsort(ms, RUNS, sizeof(ms[0]), cmp_float);
	return ms[RUNS / 2] * 1e3;
}

static struct kvmm_attn_tensor kv_view(void *base, const struct kvmm_kv_tensor *t)
{
	return (struct kvmm_attn_tensor){base,
					 KVMM_ATTN_F16,
					 (int64_t)t->slot_stride,
					 (int64_t)t->token_stride,
					 (int64_t)t->head_stride,
					 1};
}

/*
 * One layout at one length: a kvmm cache with @batch slots stepped to @L,
 * and cudaMalloc buffers with the same strides; 0 and the two times.
 */
static int bench_one(struct kvmm_ctx *ctx, struct timer *tm, int device, uint32_t layout,
		     int layers, int batch, int L, double *t_kvmm, double *t_cm)
{
	struct kvmm_kv_config c = KVMM_KV_CONFIG_INIT;
	struct kvmm_kv_tensor tk, tv;
	struct kvmm_kv *kv = NULL;
	struct run r = {0};
	int32_t *lens_h = NULL, *lens = NULL;
	void *q = NULL, *o = NULL, *cm = NULL;
	size_t es = 2, q_bytes = (size_t)batch * Q_HEADS * HEAD_DIM * es, span = 0;
	int ret;

	c.layers = (uint32_t)layers, c.kv_heads = KV_HEADS, c.head_dim = HEAD_DIM;
	c.dtype_bytes = 2, c.max_slots = (uint32_t)batch, c.max_tokens = (uint32_t)L;
	c.layout = layout, c.device = KVMM_DEVICE_CUDA, c.device_index = (uint32_t)device;
	ret = kvmm_kv_create(ctx, &c, &kv);
	for (uint32_t s = 0; !ret && s < (uint32_t)batch; s++) {
		uint32_t len = (uint32_t)L;

		ret = kvmm_kv_step(kv, 1, &s, &len);
	}
	if (!ret)
		ret = kvmm_kv_tensor(kv, 0, KVMM_K, &tk);
	if (!ret)
		ret = kvmm_kv_tensor(kv, 0, KVMM_V, &tv);
	if (ret)
		goto out;
	/* Everything from slot 0's K to the last slot's V at token L. */
	span = (size_t)((char *)tv.base - (char *)tk.base) +
	       (size_t)(batch - 1) * tv.slot_stride_bytes + (size_t)L * tv.token_stride_bytes;
	lens_h = malloc(sizeof(int32_t) * (size_t)batch);
	ret = -1;
	if (!lens_h || cudaMalloc((void **)&lens, sizeof(int32_t) * (size_t)batch) ||
	    cudaMalloc(&q, q_bytes) || cudaMalloc(&o, q_bytes) || cudaMalloc(&cm, span))
		goto out;
	for (int b = 0; b < batch; b++)
		lens_h[b] = L;
	cudaMemcpy(lens, lens_h, sizeof(int32_t) * (size_t)batch, cudaMemcpyHostToDevice);
	cudaMemset(q, 0x30, q_bytes);
	cudaMemset(cm, 0x30, span);
	/* The cache's mapped tokens: slot by slot (and K then V per layer). */
	for (int b = 0; b < batch; b++) {
		cudaMemset((char *)tk.base + b * tk.slot_stride_bytes, 0x30,
			   (size_t)L * tk.token_stride_bytes);
		if (layout == KVMM_LAYOUT_LAYER_MAJOR)
			cudaMemset((char *)tv.base + b * tv.slot_stride_bytes, 0x30,
				   (size_t)L * tv.token_stride_bytes);
	}
	if (cudaDeviceSynchronize() != cudaSuccess)
		goto out;
	r.p = (struct kvmm_attn_params){
	    .batch = batch,
	    .q_heads = Q_HEADS,
	    .kv_heads = KV_HEADS,
	    .head_dim = HEAD_DIM,
	    .scale = 1.0f / sqrtf((float)HEAD_DIM),
	    .seq_lens = lens,
	    .max_seq_len = L,
	    .q = {q, KVMM_ATTN_F16, (int64_t)Q_HEADS * HEAD_DIM, 0, HEAD_DIM, 1},
	    .k = kv_view(tk.base, &tk),
	    .v = kv_view(tv.base, &tv),
	    .o = {o, KVMM_ATTN_F16, (int64_t)Q_HEADS * HEAD_DIM, 0, HEAD_DIM, 1},
	};
	r.ws_bytes = kvmm_attn_cuda_decode_workspace(&r.p);
	if (r.ws_bytes && cudaMalloc(&r.ws, r.ws_bytes))
		goto out;
	*t_kvmm = time_decode(tm, &r);
	r.p.k.data = cm;
	r.p.v.data = (char *)cm + ((char *)tv.base - (char *)tk.base);
	*t_cm = time_decode(tm, &r);
	ret = *t_kvmm > 0 && *t_cm > 0 ? 0 : -1;
out:
	cudaFree(r.ws);
	cudaFree(cm);
	cudaFree(q);
	cudaFree(o);
	cudaFree(lens);
	free(lens_h);
	if (kv)
		kvmm_kv_destroy(kv);
	return ret;
}

int main(int argc, char **argv)
{
	int device = 0, batch = 4, layers = 8, json = 0, nlens = 2, lens[8] = {8192, 32768};
	struct kvmm_config cfg = KVMM_CONFIG_INIT;
	struct cudaDeviceProp prop;
	struct timer tm = {0};
	struct kvmm_ctx *ctx;
	int count = 0, rc = 0, first = 1;
	cudaError_t e;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = 1;
		} else if (!strcmp(argv[i], "--device") && i + 1 < argc) {
			device = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
			batch = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--layers") && i + 1 < argc) {
			layers = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--lens") && i + 1 < argc) {
			char *s = argv[++i];

			for (nlens = 0; nlens < 8 && s && *s; nlens++) {
				lens[nlens] = atoi(s);
				s = strchr(s, ',');
				s = s ? s + 1 : NULL;
			}
		} else {
			fprintf(stderr,
				"usage: %s [--json] [--device N] [--batch B] [--lens L1,L2] "
				"[--layers N]\n",
				argv[0]);
			return 2;
		}
	}
	e = cudaGetDeviceCount(&count);
	if (e != cudaSuccess || count <= device) {
		const char *why = e != cudaSuccess ? cudaGetErrorString(e) : "no such CUDA device";

		if (json)
			printf("{\"skipped\": \"no GPU (%s)\"}\n", why);
		else
			printf("kvmm-bench-region: no GPU: %s\n", why);
		return 77;
	}
	if (cudaSetDevice(device) != cudaSuccess || cudaFree(0) != cudaSuccess ||
	    cudaGetDeviceProperties(&prop, device) != cudaSuccess)
		return 1;
	tm.flush_bytes = 2 * (size_t)(prop.l2CacheSize > 0 ? prop.l2CacheSize : 1 << 20);
	if (cudaMalloc(&tm.flush, tm.flush_bytes) || cudaMemset(tm.flush, 0, tm.flush_bytes) ||
	    cudaMallocHost(&tm.sink, tm.flush_bytes) || cudaEventCreate(&tm.t0) ||
	    cudaEventCreate(&tm.t1) || kvmm_open(&ctx, &cfg)) {
		fprintf(stderr, "kvmm-bench-region: setup failed\n");
		return 1;
	}
	if (json)
		printf("{\"device\": \"%s\", \"batch\": %d, \"region\": [", prop.name, batch);
	else
		printf("Decode on a kvmm CUDA cache vs cudaMalloc, %s, f16, batch %d, %d q / %d kv "
		       "heads, head_dim %d; ratio = cudaMalloc us / kvmm us (target >= 0.99)\n"
		       "%-12s %8s %10s %14s %7s\n",
		       prop.name, batch, Q_HEADS, KV_HEADS, HEAD_DIM, "layout", "seq_len",
		       "kvmm us", "cudaMalloc us", "ratio");
	for (int li = 0; li < 2 && !rc; li++) {
		uint32_t layout = li ? KVMM_LAYOUT_TOKEN_MAJOR : KVMM_LAYOUT_LAYER_MAJOR;
		const char *name = li ? "token-major" : "layer-major";

		for (int i = 0; i < nlens && !rc; i++) {
			double tk = 0, tc = 0;

			rc = bench_one(ctx, &tm, device, layout, li ? layers : 1, batch, lens[i],
				       &tk, &tc);
			if (rc) {
				fprintf(stderr, "kvmm-bench-region: %s at L=%d failed (%s)\n", name,
					lens[i], kvmm_cuda_why());
				break;
			}
			if (json)
				printf(
				    "%s{\"layout\": \"%s\", \"layers\": %d, \"seq_len\": %d, "
				    "\"kvmm_us\": %.2f, \"cudamalloc_us\": %.2f, \"ratio\": %.4f}",
				    first ? "" : ", ", name, li ? layers : 1, lens[i], tk, tc,
				    tc / tk);
			else
				printf("%-12s %8d %10.1f %14.1f %7.4f\n", name, lens[i], tk, tc,
				       tc / tk);
			first = 0;
		}
	}
	if (json)
		printf("]}\n");
	kvmm_close(ctx);
	cudaFree(tm.flush);
	cudaFreeHost(tm.sink);
	return rc ? 1 : 0;
}
