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
	double min_seconds;	/* time each measurement at least this long */
	int no_simd, no_avx512; /* --isa portable / avx2 */
	double flash;		/* --flash FRACTION of each slot on flash; < 0: not run */
	const char *flash_dir;	/* --dir: the flash store's directory */
	int rounds;		/* --flash: rounds of (decode, fio) */
	int no_fio;
};

/* Prints the GPU results (table rows or a JSON value); 0, or 77 when no GPU. */
int bench_gpu(const struct bench_opts *o);

/*
 * attn_flash.c: decode over a libkvmm region pair with o->flash of every
 * slot evicted to flash, against the same decode resident and fio reading
 * the same store file, in the same run. Table rows or a JSON value.
 */
int bench_flash(const struct bench_opts *o);

/* attn_bench.c, shared with attn_flash.c. */
double bench_now(void);
double bench_median(double *v, int n);
const char *bench_isa(const struct bench_opts *o);
/* One line (or a JSON object) on how K/V bytes at [p, p + bytes) sit on NUMA nodes. */
void bench_numa_where(const struct bench_opts *o, const void *p, size_t bytes, const char *what);

#endif /* KVMM_BENCH_ATTN_H */
