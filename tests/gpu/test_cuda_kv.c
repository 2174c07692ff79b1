/* SPDX-License-Identifier: MIT */
/*
 * libkvmm's CUDA KV cache on a real GPU (suite "gpu-kv"), through the
 * kvmm_kv_* API as an engine uses it: growth, reuse,
 * a kernel reading zeros past seq_len, reclaim fenced behind a kernel that
 * is still running, and byte-exact swap cycles through DRAM and flash in
 * both layouts, with per-layer waits on the engine's stream; and the
 * PyTorch pluggable-allocator pair (sleep and wake, free behind a running
 * kernel). Without a GPU
 * (or without libcuda.so.1) every test prints why it skipped. Ends with
 * "gpu-kv: N passed, N failed, N skipped".
 */
#include "helpers.h"

#include <time.h>

#include <cuda_runtime_api.h>

#include <kvmm/attention.h>

#include "cuda_drv.h"
#include "cuda_kv_kernels.h"

#include "gpu_test.h"

struct fixture {
	struct kvmm_ctx *ctx;
	struct kvmm_kv *kv;
	struct kvmm_kv_config cfg;
	cudaStream_t stream; /* the engine's */
};

static struct kvmm_kv_config base_cfg(uint32_t layout)
{
	struct kvmm_kv_config c = KVMM_KV_CONFIG_INIT;

	c.layers = 4, c.kv_heads = 8, c.head_dim = 128, c.dtype_bytes = 2;
	c.max_slots = 8, c.max_tokens = 16384, c.device = KVMM_DEVICE_CUDA;
	c.layout = layout;
	return c;
}

static void open_cache(struct fixture *f)
{
	f->ctx = t_open(0, 1ULL << 30);
	T_OK(kvmm_kv_create(f->ctx, &f->cfg, &f->kv));
	CUDA_OK(cudaStreamCreateWithFlags(&f->stream, cudaStreamNonBlocking));
	T_OK(kvmm_kv_set_stream(f->kv, f->stream));
}

static void close_cache(struct fixture *f)
{
	CUDA_OK(cudaStreamSynchronize(f->stream));
	T_OK(kvmm_kv_destroy(f->kv));
	CUDA_OK(cudaStreamDestroy(f->stream));
	T_OK(kvmm_close(f->ctx));
}

static struct kvmm_kv_cuda_stats cstats(struct fixture *f)
{
	struct kvmm_kv_cuda_stats st;

	T_OK(kvmm_kv_cuda_stats(f->kv, &st));
	return st;
}

static void step1(struct fixture *f, uint32_t slot, uint32_t seq)
{
	T_OK(kvmm_kv_step(f->kv, 1, &slot, &seq));
}

static uint32_t nparts(const struct fixture *f)
{
	return f->cfg.layout == KVMM_LAYOUT_LAYER_MAJOR ? 2 * f->cfg.layers : 1;
}

/* Part @p of @slot (one layer's K or V, or the whole token-major slot). */
static char *part_at(struct fixture *f, uint32_t slot, uint32_t p, uint64_t *tok_bytes)
{
	bool lm = f->cfg.layout == KVMM_LAYOUT_LAYER_MAJOR;
	struct kvmm_kv_tensor t;

	T_OK(kvmm_kv_tensor(f->kv, lm ? p / 2 : 0, lm ? p % 2 : KVMM_K, &t));
	*tok_bytes = t.token_stride_bytes;
	return (char *)t.base + slot * t.slot_stride_bytes;
}

/*
 * Writes a pattern over tokens [0, tokens) of every part of @slot, on the
 * engine's stream as an engine's own writes would be: a cudaMemcpy on the
 * legacy stream does not order with a non-blocking stream, and from
 * pageable memory it may return before its DMA has landed, so later reads
 * and swap-outs on the cache's stream could see older bytes.
 */
static void fill_slot(struct fixture *f, uint32_t slot, uint32_t tokens, uint64_t gen)
{
	char *buf[2 * 64] = {0};

	assert_true(nparts(f) <= N(buf));
	for (uint32_t p = 0; p < nparts(f); p++) {
		uint64_t tb, n;
		char *dst = part_at(f, slot, p, &tb);

		n = tokens * tb;
		buf[p] = malloc(n);
		assert_non_null(buf[p]);
		t_fill(buf[p], n, gen * 1000 + slot * 100 + p);
		CUDA_OK(cudaMemcpyAsync(dst, buf[p], n, cudaMemcpyHostToDevice, f->stream));
	}
	/* Pageable sources stay until their copies ran. */
	CUDA_OK(cudaStreamSynchronize(f->stream));
	for (uint32_t p = 0; p < nparts(f); p++)
		free(buf[p]);
}

/* A kernel on the engine's stream reads part @p back; compared on the host. */
static void check_part(struct fixture *f, uint32_t slot, uint32_t p, uint32_t tokens, uint64_t gen)
{
	uint64_t tb, n;
	char *src = part_at(f, slot, p, &tb), *want, *seen;
	void *dev;

	n = tokens * tb;
	want = malloc(n);
	seen = malloc(n);
	t_fill(want, n, gen * 1000 + slot * 100 + p);
	CUDA_OK(cudaMalloc(&dev, n));
	assert_int_equal(kvmm_gpu_test_copy(src, dev, n, f->stream), 0);
	CUDA_OK(cudaMemcpyAsync(seen, dev, n, cudaMemcpyDeviceToHost, f->stream));
	CUDA_OK(cudaStreamSynchronize(f->stream));
	T_SAME_BYTES(seen, want, n);
	CUDA_OK(cudaFree(dev));
	free(want);
	free(seen);
}

static void check_slot(struct fixture *f, uint32_t slot, uint32_t tokens, uint64_t gen)
{
	for (uint32_t p = 0; p < nparts(f); p++)
		check_part(f, slot, p, tokens, gen);
}

static void growth(uint32_t layout)
{
	struct fixture f = {.cfg = base_cfg(layout)};
	uint32_t lens[] = {1, 100, 1500, 9000, 16384};
	uint64_t chunk;

	open_cache(&f);
	chunk = cstats(&f).chunk_bytes;
	assert_true(chunk % cstats(&f).granularity == 0);
	for (size_t i = 0; i < N(lens); i++) {
		step1(&f, 3, lens[i]);
		fill_slot(&f, 3, lens[i], i);
		check_slot(&f, 3, lens[i], i);
	}
	assert_true(cstats(&f).maps >= 2); /* grew chunk by chunk */
	close_cache(&f);
}

static void gpu_kv_growth_layer_major(void **state)
{
	(void)state;
	NEED_GPU();
	growth(KVMM_LAYOUT_LAYER_MAJOR);
}

static void gpu_kv_growth_token_major(void **state)
{
	(void)state;
	NEED_GPU();
	growth(KVMM_LAYOUT_TOKEN_MAJOR);
}

static void gpu_kv_freed_slot_is_reused_without_new_maps(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_TOKEN_MAJOR)};
	uint32_t slot;
	uint64_t maps;

	(void)state;
	NEED_GPU();
	setenv("KVMM_CUDA_MAPPER", "0", 1);
	open_cache(&f);
	T_OK(kvmm_kv_alloc_slot(f.kv, 2000, &slot));
	step1(&f, slot, 2000);
	T_OK(kvmm_kv_free_slot(f.kv, slot));
	maps = cstats(&f).maps;
	T_OK(kvmm_kv_alloc_slot(f.kv, 2000, &slot));
	step1(&f, slot, 2000);
	T_EQ(cstats(&f).maps - maps, 0);
	close_cache(&f);
	unsetenv("KVMM_CUDA_MAPPER");
}

static void gpu_kv_kernel_reads_zeros_past_seq_len(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_LAYER_MAJOR)};
	struct kvmm_kv_tensor t;
	struct kvmm_op *op;
	uint64_t tb, n, used;
	char *seen;
	void *dev;

	(void)state;
	NEED_GPU();
	/* Past seq_len + lookahead is only safe to read with no mapping ahead. */
	setenv("KVMM_CUDA_MAPPER", "0", 1);
	open_cache(&f);
	/* Dirty chunks, then hand them back to the pool: slot 5 gets them again. */
	step1(&f, 0, 16384);
	fill_slot(&f, 0, 16384, 7);
	T_OK(kvmm_kv_swap_out(f.kv, 0, KVMM_TIER_HOST, &op));
	T_OK(kvmm_wait(op));
	step1(&f, 5, 10);
	fill_slot(&f, 5, 10, 8);
	/* The kernel reads slot 5's whole K of layer 1 and all of slot 6. */
	T_OK(kvmm_kv_tensor(f.kv, 1, KVMM_K, &t));
	(void)part_at(&f, 5, 2, &tb);
	used = 10 * tb;
	n = 2 * t.slot_stride_bytes;
	seen = malloc(n);
	CUDA_OK(cudaMalloc(&dev, n));
	assert_int_equal(
	    kvmm_gpu_test_copy((char *)t.base + 5 * t.slot_stride_bytes, dev, n, f.stream), 0);
	CUDA_OK(cudaMemcpyAsync(seen, dev, n, cudaMemcpyDeviceToHost, f.stream));
	CUDA_OK(cudaStreamSynchronize(f.stream)); /* a fault would show here */
	for (uint64_t i = used; i < n; i++)
		if (seen[i])
			fail_msg("byte %llu past seq_len: expected 0, seen 0x%02x",
				 (unsigned long long)i, (unsigned char)seen[i]);
	CUDA_OK(cudaFree(dev));
	free(seen);
	check_slot(&f, 5, 10, 8);
	close_cache(&f);
	unsetenv("KVMM_CUDA_MAPPER");
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void gpu_kv_reclaim_waits_for_a_running_kernel(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_LAYER_MAJOR)};
	uint64_t tb, n;
	char *src, *want, *seen;
	void *dev;
	double t0, waited;

	(void)state;
	NEED_GPU();
	setenv("KVMM_CUDA_MAPPER", "0", 1);
	f.ctx = t_open(0, 1ULL << 30);
	/* Budget: exactly one slot of 1000 tokens. */
	T_OK(kvmm_kv_create(f.ctx, &f.cfg, &f.kv));
	f.cfg.budget_bytes = 2ULL * f.cfg.layers * cstats(&f).chunk_bytes;
	T_OK(kvmm_kv_destroy(f.kv));
	T_OK(kvmm_close(f.ctx));
	open_cache(&f);
	step1(&f, 0, 1000);
	fill_slot(&f, 0, 1000, 9);
	src = part_at(&f, 0, 0, &tb);
	n = 1000 * tb;
	CUDA_OK(cudaMalloc(&dev, n));
	/* The kernel reads slot 0 only after 300 ms; the host frees it now. */
	assert_int_equal(kvmm_gpu_test_spin_copy(src, dev, n, 300.0, f.stream), 0);
	T_OK(kvmm_kv_free_slot(f.kv, 0));
	t0 = now_ms();
	step1(&f, 1, 1000); /* needs slot 0's memory: waits for the free event */
	waited = now_ms() - t0;
	want = malloc(n);
	seen = malloc(n);
	t_fill(want, n, 9 * 1000 + 0 * 100 + 0);
	CUDA_OK(cudaMemcpyAsync(seen, dev, n, cudaMemcpyDeviceToHost, f.stream));
	CUDA_OK(cudaStreamSynchronize(f.stream));
	T_SAME_BYTES(seen, want, n); /* the kernel saw the data, not zeros or a fault */
	print_message("step waited %.1f ms for the kernel (fences waited: %llu)\n", waited,
		      (unsigned long long)cstats(&f).fences_waited);
	assert_true(waited > 100.0);
	CUDA_OK(cudaFree(dev));
	free(want);
	free(seen);
	close_cache(&f);
	unsetenv("KVMM_CUDA_MAPPER");
}

static void swap_cycles(const char *caller, uint32_t layout, enum kvmm_tier tier)
{
	struct fixture f = {.cfg = base_cfg(layout)};
	uint32_t toks[2] = {1234, 9999};
	struct kvmm_op *op;

	if (tier == KVMM_TIER_FLASH && t_flash_unusable()) {
		printf("SKIP %s: %s: no flash store: %s\n", program_invocation_short_name, caller,
		       t_flash_unusable());
		skipped++;
		skip();
	}
	open_cache(&f);
	for (uint32_t s = 0; s < 2; s++) {
		step1(&f, s, toks[s]);
		fill_slot(&f, s, toks[s], 20 + s);
	}
	for (int cycle = 0; cycle < 3; cycle++) {
		T_OK(kvmm_kv_swap_out(f.kv, 0, tier, &op));
		T_OK(kvmm_wait(op));
		T_EQ(kvmm_kv_slot_state(f.kv, 0),
		     tier == KVMM_TIER_HOST ? KVMM_SLOT_HOST : KVMM_SLOT_FLASH);
		T_OK(kvmm_kv_swap_in(f.kv, 0, &op));
		/* Layer by layer: the engine's stream waits, the host does not. */
		for (uint32_t l = 0; l < f.cfg.layers; l++) {
			T_OK(kvmm_kv_swap_in_wait_layer(f.kv, 0, l, f.stream));
			if (layout == KVMM_LAYOUT_LAYER_MAJOR) {
				check_part(&f, 0, 2 * l, toks[0], 20);
				check_part(&f, 0, 2 * l + 1, toks[0], 20);
			}
		}
		T_OK(kvmm_wait(op));
		check_slot(&f, 0, toks[0], 20);
		check_slot(&f, 1, toks[1], 21);
		step1(&f, 0, toks[0]);
	}
	close_cache(&f);
}

static void gpu_kv_swap_dram_layer_major(void **state)
{
	(void)state;
	NEED_GPU();
	swap_cycles(__func__, KVMM_LAYOUT_LAYER_MAJOR, KVMM_TIER_HOST);
}

static void gpu_kv_swap_dram_token_major(void **state)
{
	(void)state;
	NEED_GPU();
	swap_cycles(__func__, KVMM_LAYOUT_TOKEN_MAJOR, KVMM_TIER_HOST);
}

static void gpu_kv_swap_flash_layer_major(void **state)
{
	(void)state;
	NEED_GPU();
	swap_cycles(__func__, KVMM_LAYOUT_LAYER_MAJOR, KVMM_TIER_FLASH);
}

static void gpu_kv_swap_flash_token_major(void **state)
{
	(void)state;
	NEED_GPU();
	swap_cycles(__func__, KVMM_LAYOUT_TOKEN_MAJOR, KVMM_TIER_FLASH);
}

/*
 * The PyTorch pluggable-allocator pair on the device: kvmm_torch_malloc
 * memory written by a kernel keeps its address and bytes across sleep and
 * wake (contents in DRAM or on flash), a discarding sleep wakes to zeros,
 * and kvmm_torch_free waits for a kernel still reading the memory on its
 * stream before the range goes.
 */
#define ALLOCS 3
static const size_t alloc_sizes[ALLOCS] = {(1 << 20) + 3, 64 << 20, (5 << 20) + 4096};

/* Fills @p (device) with the pattern of @seed through the engine's stream. */
static void dev_fill(void *p, size_t n, uint64_t seed, cudaStream_t s)
{
	char *buf = malloc(n);

	assert_non_null(buf);
	t_fill(buf, n, seed);
	CUDA_OK(cudaMemcpyAsync(p, buf, n, cudaMemcpyHostToDevice, s));
	CUDA_OK(cudaStreamSynchronize(s));
	free(buf);
}

/* A kernel reads @p back; compared with @seed's pattern (0: zeros). */
static void dev_check(const void *p, size_t n, uint64_t seed, cudaStream_t s)
{
	char *want = calloc(1, n), *seen = malloc(n);
	void *dev;

	assert_true(want && seen);
	if (seed)
		t_fill(want, n, seed);
	CUDA_OK(cudaMalloc(&dev, n));
	assert_int_equal(kvmm_gpu_test_copy(p, dev, n, s), 0);
	CUDA_OK(cudaMemcpyAsync(seen, dev, n, cudaMemcpyDeviceToHost, s));
	CUDA_OK(cudaStreamSynchronize(s));
	T_SAME_BYTES(seen, want, n);
	CUDA_OK(cudaFree(dev));
	free(want);
	free(seen);
}

static void alloc_sleep_cycle(uint32_t how, const char *caller)
{
	struct kvmm_cuda_alloc_config cfg = KVMM_CUDA_ALLOC_CONFIG_INIT;
	struct kvmm_cuda_alloc *a, *prev;
	struct kvmm_cuda_alloc_stats st;
	struct kvmm_ctx *ctx;
	cudaStream_t s;
	void *p[ALLOCS];

	if (how == KVMM_CUDA_SLEEP_FLASH && t_flash_unusable()) {
		printf("SKIP %s: %s: no flash store: %s\n", program_invocation_short_name, caller,
		       t_flash_unusable());
		skipped++;
		skip();
	}
	ctx = t_open(0, 1ULL << 30);
	cfg.tag = "gpu-test";
	T_OK(kvmm_cuda_alloc_create(ctx, &cfg, &a));
	T_OK(kvmm_cuda_alloc_use(a, &prev));
	CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
	for (int i = 0; i < ALLOCS; i++) {
		p[i] = kvmm_torch_malloc((ssize_t)alloc_sizes[i], 0, s);
		assert_non_null(p[i]);
		dev_fill(p[i], alloc_sizes[i], 40 + i, s);
	}
	T_OK(kvmm_cuda_alloc_sleep(a, how));
	T_OK(kvmm_cuda_alloc_stats(a, &st));
	T_EQ(st.asleep, 1);
	T_EQ(st.mapped_bytes, 0);
	assert_null(kvmm_torch_malloc(4096, 0, s)); /* asleep: refused */
	T_OK(kvmm_cuda_alloc_wake(a));
	for (int i = 0; i < ALLOCS; i++) /* the same addresses */
		dev_check(p[i], alloc_sizes[i], how == KVMM_CUDA_SLEEP_DISCARD ? 0 : 40 + i, s);
	for (int i = 0; i < ALLOCS; i++)
		kvmm_torch_free(p[i], (ssize_t)alloc_sizes[i], 0, s);
	T_OK(kvmm_cuda_alloc_stats(a, &st));
	T_EQ(st.allocations, 0);
	T_OK(kvmm_cuda_alloc_use(prev, NULL));
	T_OK(kvmm_cuda_alloc_destroy(a));
	CUDA_OK(cudaStreamDestroy(s));
	T_OK(kvmm_close(ctx));
}

static void gpu_alloc_keeps_contents_across_sleep_in_dram(void **state)
{
	(void)state;
	NEED_GPU();
	alloc_sleep_cycle(KVMM_CUDA_SLEEP_HOST, __func__);
}

static void gpu_alloc_keeps_contents_across_sleep_on_flash(void **state)
{
	(void)state;
	NEED_GPU();
	alloc_sleep_cycle(KVMM_CUDA_SLEEP_FLASH, __func__);
}

static void gpu_alloc_discarding_sleep_wakes_to_zeros(void **state)
{
	(void)state;
	NEED_GPU();
	alloc_sleep_cycle(KVMM_CUDA_SLEEP_DISCARD, __func__);
}

static void gpu_torch_free_waits_for_a_kernel_on_its_stream(void **state)
{
	size_t n = 8 << 20;
	cudaStream_t s;
	char *want, *seen;
	void *p, *dev;

	(void)state;
	NEED_GPU();
	CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
	p = kvmm_torch_malloc((ssize_t)n, 0, s); /* the default allocator */
	assert_non_null(p);
	dev_fill(p, n, 77, s);
	CUDA_OK(cudaMalloc(&dev, n));
	/* The kernel reads p only after 300 ms; the host frees p now. */
	assert_int_equal(kvmm_gpu_test_spin_copy(p, dev, n, 300.0, s), 0);
	kvmm_torch_free(p, (ssize_t)n, 0, s);
	want = malloc(n);
	seen = malloc(n);
	assert_true(want && seen);
	t_fill(want, n, 77);
	CUDA_OK(cudaMemcpyAsync(seen, dev, n, cudaMemcpyDeviceToHost, s));
	CUDA_OK(cudaStreamSynchronize(s)); /* a fault would show here */
	T_SAME_BYTES(seen, want, n);
	CUDA_OK(cudaFree(dev));
	CUDA_OK(cudaStreamDestroy(s));
	free(want);
	free(seen);
}

/* Why this machine cannot run the tests, or "" when it can. */
/* Finite f16 values of either sign, 2^-5 .. 2^-1, from @seed. */
static void fill_f16(uint16_t *h, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 7;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		h[i] = (uint16_t)((x >> 20 & 1) << 15 | (10 + x % 5) << 10 | (x >> 8 & 0x3ff));
	}
}

static char *row_at(struct fixture *f, uint32_t layer, int which, uint32_t slot, uint32_t tok)
{
	struct kvmm_kv_tensor t;

	T_OK(kvmm_kv_tensor(f->kv, layer, which, &t));
	return (char *)t.base + slot * t.slot_stride_bytes + tok * t.token_stride_bytes;
}

/* Tokens [from, to) of @slot get f16 values from @gen, every layer, K and V. */
static void fill_rows(struct fixture *f, uint32_t slot, uint32_t from, uint32_t to, uint64_t gen)
{
	size_t n = (size_t)f->cfg.kv_heads * f->cfg.head_dim;
	uint16_t *h = malloc(n * 2);

	assert_non_null(h);
	for (uint32_t l = 0; l < f->cfg.layers; l++)
		for (int w = 0; w < 2; w++)
			for (uint32_t t = from; t < to; t++) {
				fill_f16(h, n,
					 gen * 1000003 + slot * 7919 + l * 104729 + w * 17 + t);
				CUDA_OK(cudaMemcpyAsync(row_at(f, l, w, slot, t), h, n * 2,
							cudaMemcpyHostToDevice, f->stream));
				CUDA_OK(cudaStreamSynchronize(f->stream));
			}
	free(h);
}

static struct kvmm_attn_tensor attn_view(struct fixture *f, uint32_t layer, int which)
{
	struct kvmm_kv_tensor t;

	T_OK(kvmm_kv_tensor(f->kv, layer, which, &t));
	return (struct kvmm_attn_tensor){t.base,
					 KVMM_ATTN_F16,
					 (int64_t)t.slot_stride,
					 (int64_t)t.token_stride,
					 (int64_t)t.head_stride,
					 (int64_t)t.dim_stride};
}

/*
 * On the GPU: slot 1 shares slot 0's prefix (the source's handles mapped
 * at slot 1's addresses, the partial chunk copied on the GPU) and writes
 * its own tokens after it; slot 2 holds a private copy of the same tokens.
 * The CUDA decode kernel over slots 1 and 2, in one batch with the same
 * queries, gives the same bits, every layer.
 */
static void attention_over_shared(uint32_t layout)
{
	struct fixture f = {.cfg = base_cfg(layout)};
	const uint32_t len = 3000, ntok = 2100, qh = 2 * 8, d = 128;
	const int32_t lens[2] = {(int32_t)len, (int32_t)len}, slots[2] = {1, 2};
	size_t qn = 2 * (size_t)qh * d;
	float *q = malloc(qn * sizeof(float)), *o = malloc(qn * sizeof(float));
	void *dq, *dout, *dlens, *dslots;
	uint32_t dst;

	NEED_GPU();
	assert_true(q && o);
	open_cache(&f);
	step1(&f, 0, len);
	fill_rows(&f, 0, 0, len, 1);
	T_OK(kvmm_kv_alloc_slot(f.kv, len, &dst));
	T_EQ(dst, 1);
	T_OK(kvmm_kv_share_prefix(f.kv, 1, 0, ntok));
	step1(&f, 1, len);
	fill_rows(&f, 1, ntok, len, 2);
	step1(&f, 2, len);
	for (uint32_t l = 0; l < f.cfg.layers; l++)
		for (int w = 0; w < 2; w++)
			for (uint32_t t = 0; t < len; t++)
				CUDA_OK(cudaMemcpyAsync(row_at(&f, l, w, 2, t),
							row_at(&f, l, w, 1, t),
							(size_t)f.cfg.kv_heads * d * 2,
							cudaMemcpyDeviceToDevice, f.stream));
	for (size_t i = 0; i < qn / 2; i++)
		q[i] = q[qn / 2 + i] = (float)((int)(i * 37 % 101) - 50) / 64.0f;
	CUDA_OK(cudaMalloc(&dq, qn * sizeof(float)));
	CUDA_OK(cudaMalloc(&dout, qn * sizeof(float)));
	CUDA_OK(cudaMalloc(&dlens, sizeof(lens)));
	CUDA_OK(cudaMalloc(&dslots, sizeof(slots)));
	CUDA_OK(cudaMemcpy(dq, q, qn * sizeof(float), cudaMemcpyHostToDevice));
	CUDA_OK(cudaMemcpy(dlens, lens, sizeof(lens), cudaMemcpyHostToDevice));
	CUDA_OK(cudaMemcpy(dslots, slots, sizeof(slots), cudaMemcpyHostToDevice));
	for (uint32_t l = 0; l < f.cfg.layers; l++) {
		struct kvmm_attn_params p = {
		    .batch = 2,
		    .q_heads = (int32_t)qh,
		    .kv_heads = (int32_t)f.cfg.kv_heads,
		    .head_dim = (int32_t)d,
		    .scale = 1.0f / 11.3137085f,
		    .seq_lens = dlens,
		    .max_seq_len = (int32_t)len,
		    .slots = dslots,
		    .q = {dq, KVMM_ATTN_F32, qh * d, 0, d, 1},
		    .k = attn_view(&f, l, KVMM_K),
		    .v = attn_view(&f, l, KVMM_V),
		    .o = {dout, KVMM_ATTN_F32, qh * d, 0, d, 1},
		};

		T_OK(kvmm_attn_cuda_decode(&p, NULL, 0, f.stream));
		CUDA_OK(cudaStreamSynchronize(f.stream));
		CUDA_OK(cudaMemcpy(o, dout, qn * sizeof(float), cudaMemcpyDeviceToHost));
		T_SAME_BYTES(o, o + qn / 2, qn / 2 * sizeof(float));
	}
	CUDA_OK(cudaFree(dq));
	CUDA_OK(cudaFree(dout));
	CUDA_OK(cudaFree(dlens));
	CUDA_OK(cudaFree(dslots));
	free(q);
	free(o);
	close_cache(&f);
}

static void gpu_kv_attention_over_shared_prefix_layer_major(void **state)
{
	(void)state;
	attention_over_shared(KVMM_LAYOUT_LAYER_MAJOR);
}

static void gpu_kv_attention_over_shared_prefix_token_major(void **state)
{
	(void)state;
	attention_over_shared(KVMM_LAYOUT_TOKEN_MAJOR);
}

static void probe_gpu(void)
{
	const struct kvmm_cuda_drv *d;
	int count = 0, err = kvmm_cuda_drv_get(&d);

	if (err) {
		snprintf(no_gpu, sizeof(no_gpu), "no GPU (%s; %s)", kvmm_cuda_why(), GPU_HINT);
		return;
	}
	if (cudaGetDeviceCount(&count) != cudaSuccess || count < 1)
		snprintf(no_gpu, sizeof(no_gpu), "no GPU (no CUDA device; %s)", GPU_HINT);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(gpu_kv_growth_layer_major),
	    cmocka_unit_test(gpu_kv_growth_token_major),
	    cmocka_unit_test(gpu_kv_freed_slot_is_reused_without_new_maps),
	    cmocka_unit_test(gpu_kv_kernel_reads_zeros_past_seq_len),
	    cmocka_unit_test(gpu_kv_reclaim_waits_for_a_running_kernel),
	    cmocka_unit_test(gpu_kv_swap_dram_layer_major),
	    cmocka_unit_test(gpu_kv_swap_dram_token_major),
	    cmocka_unit_test(gpu_kv_swap_flash_layer_major),
	    cmocka_unit_test(gpu_kv_swap_flash_token_major),
	    cmocka_unit_test(gpu_alloc_keeps_contents_across_sleep_in_dram),
	    cmocka_unit_test(gpu_alloc_keeps_contents_across_sleep_on_flash),
	    cmocka_unit_test(gpu_alloc_discarding_sleep_wakes_to_zeros),
	    cmocka_unit_test(gpu_torch_free_waits_for_a_kernel_on_its_stream),
	    cmocka_unit_test(gpu_kv_attention_over_shared_prefix_layer_major),
	    cmocka_unit_test(gpu_kv_attention_over_shared_prefix_token_major),
	};
	int failed;

	T_LIST(argc, argv, T_GROUP(tests));
	setvbuf(stdout, NULL, _IOLBF, 0);
	probe_gpu();
	failed = cmocka_run_group_tests(tests, NULL, NULL);
	printf("gpu-kv: %d passed, %d failed, %d skipped\n", (int)N(tests) - failed - skipped,
	       failed, skipped);
	return failed ? 1 : 0;
}
