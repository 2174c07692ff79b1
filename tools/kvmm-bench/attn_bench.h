/* kvmm-bench-attn: options shared by the CPU and GPU halves. */
#ifndef KVMM_BENCH_ATTN_H
#define KVMM_BENCH_ATTN_H

#include <kvmm/attention.h>

#define BENCH_MAX_LENS 16

struct bench_opts {
	enum kvmm_attn_dtype dtype;
	int batch, q_heads, kv_heads, head_dim, threads, json, gpu_only, cpu_only, median;
	int layers; /* GPU: layers of the token-major view (0: layer-major only) */
	int nlens;
	int lens[BENCH_MAX_LENS];
	double min_seconds; /* time each measurement at least this long */
};

/* Prints the GPU results (table rows or a JSON value); 0, or 77 when no GPU. */
int bench_gpu(const struct bench_opts *o);

#endif /* KVMM_BENCH_ATTN_H */
