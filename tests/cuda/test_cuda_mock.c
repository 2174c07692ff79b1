/* SPDX-License-Identifier: MIT */
/*
 * libkvmm's CUDA backend end to end against the driver stand-in
 * (mock_cuda.c, loaded through KVMM_CUDA_LIBRARY), so its logic is checked
 * on machines without a GPU: growth, reuse, zero reads past seq_len,
 * event-fenced reclaim and destroy, swaps through DRAM and flash in both
 * layouts with per-layer stream waits, failure handling, the device
 * checks, the budget policy and the background mapper.
 *
 * The engine's work goes where an engine puts it: the test's writes and
 * reads of KV are kernels queued on the cache's stream (legacy or a
 * non-blocking one), not host accesses, and the stand-in runs queued work
 * late, so libkvmm must order its own copies and unmaps behind them. A
 * test passes only if no call broke a driver rule, no work touched memory
 * it could not and no host call raced queued work.
 * The granularity is 192 KiB, so no size here is a power of two by luck.
 * tests/gpu repeats the GPU-relevant ones on a real device.
 */
#include "helpers.h"

#include <dlfcn.h>
#include <pthread.h>
#include <time.h>

#include "cuda_kv.h"
#include "kvmm_test.h"
#include "mock_cuda.h"

#ifdef KVMM_HAVE_CUDA_H
#define GRAN	  (192U << 10)
#define MAX_PARTS 64

static mock_cuda_hold_fn mock_hold;
static mock_cuda_stats_fn mock_stats;
static mock_cuda_fail_fn mock_fail;
static mock_cuda_fail_here_fn mock_fail_here;
static mock_cuda_fail_run_fn mock_fail_run;
static mock_cuda_set_attr_fn mock_set_attr;
static mock_cuda_refuse_read_only_fn mock_refuse_ro;
static mock_cuda_capture_fn mock_capture;
static mock_cuda_kernel_write_fn mock_kwrite;
static mock_cuda_kernel_read_fn mock_kread;
static mock_cuda_sync_fn mock_sync;
static mock_cuda_stream_fn mock_stream;
static mock_cuda_idle_fn mock_idle;
static mock_cuda_reset_fn mock_reset;

struct fixture {
	struct kvmm_ctx *ctx;
	struct kvmm_kv *kv;
	struct kvmm_kv_config cfg;
	void *stream; /* the engine's: NULL is the legacy stream */
};

static struct kvmm_kv_config base_cfg(uint32_t layout)
{
	struct kvmm_kv_config c = KVMM_KV_CONFIG_INIT;

	c.layers = 2, c.kv_heads = 2, c.head_dim = 64, c.dtype_bytes = 2;
	c.max_slots = 4, c.max_tokens = 32768, c.device = KVMM_DEVICE_CUDA;
	c.layout = layout;
	return c;
}

/* Handles, events and streams a failed earlier test may have left. */
static uint64_t live_before, events_before, streams_before;

static void open_cache(struct fixture *f)
{
	struct mock_cuda_stats st;

	mock_reset(); /* a failed test may have left work queued or the context lost */
	mock_stats(&st);
	live_before = st.live;
	events_before = st.events_live;
	streams_before = st.streams_live;
	mock_fail("", 0);
	/* Flash slots as small as the shadow chunks (64 KiB at 192 KiB granularity). */
	f->ctx = t_open(64 << 10, 256ULL << 20);
	T_OK(kvmm_kv_create(f->ctx, &f->cfg, &f->kv));
	T_OK(kvmm_kv_set_stream(f->kv, f->stream));
}

/* No call the real driver would refuse, no bad address, no race. */
static void expect_clean(void)
{
	struct mock_cuda_stats st;

	mock_stats(&st);
	T_EQ(st.rule_violations, 0);
	T_EQ(st.faults, 0);
	T_EQ(st.hazards, 0);
	T_EQ(st.spin_waits, 0); /* every host wait sleeps (blocking-sync events) */
}

static void close_cache(struct fixture *f)
{
	struct mock_cuda_stats st;

	T_OK(mock_sync(f->stream)); /* the engine's kernels are done */
	T_OK(kvmm_kv_destroy(f->kv));
	T_OK(kvmm_close(f->ctx));
	expect_clean();
	mock_stats(&st);
	T_EQ(st.live, live_before);	     /* every physical chunk released */
	T_EQ(st.pending, 0);		     /* and no work left queued behind the cache */
	T_EQ(st.events_live, events_before); /* every event and stream destroyed */
	T_EQ(st.streams_live, streams_before);
}

static uint64_t elem_bytes(const struct kvmm_kv_config *c)
{
	return (uint64_t)c->kv_heads * c->head_dim * c->dtype_bytes;
}

/* Address of (slot, token) of @layer's K or V. */
static char *kv_at(struct fixture *f, uint32_t layer, int which, uint32_t slot, uint32_t tok)
{
	struct kvmm_kv_tensor t;

	T_OK(kvmm_kv_tensor(f->kv, layer, which, &t));
	return (char *)t.base + slot * t.slot_stride_bytes + tok * t.token_stride_bytes;
}

static uint64_t seed_of(uint32_t slot, uint32_t layer, int which, uint32_t tok, uint64_t gen)
{
	return gen * 1000003ULL + slot * 7919ULL + layer * 104729ULL + which * 15485863ULL + tok;
}

/* The device spans holding tokens [0, tokens) of @slot: one per part
 * (layer-major: each layer's K and V; token-major: the whole slot). */
static uint32_t slot_spans(struct fixture *f, uint32_t slot, uint32_t tokens, char **base,
			   uint64_t *len)
{
	struct kvmm_kv_tensor t;
	uint32_t n = 0;

	T_OK(kvmm_kv_tensor(f->kv, 0, KVMM_K, &t));
	if (f->cfg.layout == KVMM_LAYOUT_TOKEN_MAJOR) {
		base[0] = kv_at(f, 0, KVMM_K, slot, 0);
		len[0] = tokens * t.token_stride_bytes;
		return 1;
	}
	for (uint32_t l = 0; l < f->cfg.layers && n < MAX_PARTS; l++)
		for (int w = 0; w < 2; w++, n++) {
			base[n] = kv_at(f, l, w, slot, 0);
			len[n] = tokens * t.token_stride_bytes;
		}
	return n;
}

/* What generation @gen of @slot holds over the span [base, base + len). */
static void slot_image(struct fixture *f, uint32_t slot, uint32_t tokens, uint64_t gen,
		       const char *base, uint64_t len, char *img)
{
	uint64_t e = elem_bytes(&f->cfg);

	memset(img, 0, len);
	for (uint32_t l = 0; l < f->cfg.layers; l++)
		for (int w = 0; w < 2; w++)
			for (uint32_t t = 0; t < tokens; t++) {
				const char *a = kv_at(f, l, w, slot, t);

				if (a >= base && a + e <= base + len)
					t_fill(img + (a - base), e, seed_of(slot, l, w, t, gen));
			}
}

/* Kernels on the engine's stream write the slot (queued, not waited for). */
static void fill_slot(struct fixture *f, uint32_t slot, uint32_t tokens, uint64_t gen)
{
	char *base[MAX_PARTS];
	uint64_t len[MAX_PARTS];
	uint32_t n = slot_spans(f, slot, tokens, base, len);

	for (uint32_t i = 0; i < n; i++) {
		char *img = malloc(len[i]);

		assert_non_null(img);
		slot_image(f, slot, tokens, gen, base[i], len[i], img);
		T_OK(mock_kwrite(f->stream, base[i], img, len[i]));
		free(img);
	}
}

/* A kernel on @stream reads device bytes; the host waits for it. */
static void dev_read_on(void *stream, void *dst, const void *src, uint64_t n)
{
	T_OK(mock_kread(stream, dst, src, n));
	T_OK(mock_sync(stream));
}

static void check_slot(struct fixture *f, uint32_t slot, uint32_t tokens, uint64_t gen)
{
	char *base[MAX_PARTS];
	uint64_t len[MAX_PARTS];
	uint32_t n = slot_spans(f, slot, tokens, base, len);

	for (uint32_t i = 0; i < n; i++) {
		char *seen = malloc(len[i]), *want = malloc(len[i]);

		assert_true(seen && want);
		dev_read_on(f->stream, seen, base[i], len[i]);
		slot_image(f, slot, tokens, gen, base[i], len[i], want);
		T_SAME_BYTES(seen, want, len[i]);
		free(seen);
		free(want);
	}
}

/* Whether a kernel on the engine's stream reads only zeros at @p. */
static bool dev_zero(struct fixture *f, const char *p, uint64_t n)
{
	char *buf = malloc(n);
	bool zero = true;

	assert_non_null(buf);
	dev_read_on(f->stream, buf, p, n);
	for (uint64_t i = 0; i < n && zero; i++)
		zero = !buf[i];
	free(buf);
	return zero;
}

static void step1(struct fixture *f, uint32_t slot, uint32_t seq)
{
	T_OK(kvmm_kv_step(f->kv, 1, &slot, &seq));
}

static struct kvmm_kv_cuda_stats cstats(struct fixture *f)
{
	struct kvmm_kv_cuda_stats st;

	T_OK(kvmm_kv_cuda_stats(f->kv, &st));
	return st;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Ends the holds on a stream after a while: the kernel finishes. */
struct finisher {
	void *stream;
	unsigned ms;
	pthread_t th;
};

static void *finish_later(void *arg)
{
	struct finisher *k = arg;

	usleep(k->ms * 1000);
	mock_hold(k->stream, 0);
	return NULL;
}

static void finish_after(struct finisher *k, void *stream, unsigned ms)
{
	k->stream = stream;
	k->ms = ms;
	assert_int_equal(pthread_create(&k->th, NULL, finish_later, k), 0);
}

static void chunk_follows_the_granularity(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_LAYER_MAJOR)};
	struct kvmm_kv *kv = NULL;

	(void)state;
	open_cache(&f);
	T_EQ(cstats(&f).granularity, GRAN);
	T_EQ(cstats(&f).chunk_bytes, 11 * GRAN); /* 2 MiB rounded up to 192 KiB */
	close_cache(&f);
	f.ctx = t_open(0, 0);
	f.cfg.chunk_bytes = 2 << 20; /* not a multiple of 192 KiB */
	T_EQ(kvmm_kv_create(f.ctx, &f.cfg, &kv), -EINVAL);
	assert_null(kv);
	f.cfg.chunk_bytes = 4 * GRAN;
	T_OK(kvmm_kv_create(f.ctx, &f.cfg, &f.kv));
	T_EQ(cstats(&f).chunk_bytes, 4 * GRAN);
	close_cache(&f);
}

static void device_attributes_are_reported(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_TOKEN_MAJOR)};

	(void)state;
	open_cache(&f);
	T_EQ(cstats(&f).cc_major, 9); /* the stand-in's default: 9.0 */
	T_EQ(cstats(&f).cc_minor, 0);
	close_cache(&f);
	mock_set_attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, 8);
	mock_set_attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, 6);
	open_cache(&f);
	T_EQ(cstats(&f).cc_major, 8);
	T_EQ(cstats(&f).cc_minor, 6);
	close_cache(&f);
	mock_set_attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, 9);
	mock_set_attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, 0);
}

/* A driver that refuses read-only mappings still gets a cache: the zero
 * chunk is mapped read-write, and the stats say which mode is active. */
static void zero_chunk_is_read_write_where_read_only_is_refused(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_LAYER_MAJOR)};

	(void)state;
	open_cache(&f);
	T_EQ(cstats(&f).zero_read_only, 1);
	close_cache(&f);
	mock_refuse_ro(1);
	open_cache(&f);
	T_EQ(cstats(&f).zero_read_only, 0);
	step1(&f, 1, 300);
	fill_slot(&f, 1, 300, 33);
	check_slot(&f, 1, 300, 33);
	assert_true(dev_zero(&f, kv_at(&f, 1, KVMM_V, 1, 300), 4096)); /* past seq_len */
	assert_true(dev_zero(&f, kv_at(&f, 0, KVMM_K, 2, 0), 4096));   /* a slot never stepped */
	close_cache(&f);
	mock_refuse_ro(0);
}

/* A device that lacks @attr is refused with -EOPNOTSUPP and a reason. */
static void refused_without(int attr, const char *reason)
{
	struct kvmm_kv_config c = base_cfg(KVMM_LAYOUT_LAYER_MAJOR);
	struct mock_cuda_stats a, b;
	struct kvmm_kv *kv = NULL;
	struct kvmm_ctx *ctx;

	mock_reset();
	mock_set_attr(attr, 0);
	ctx = t_open(0, 0);
	mock_stats(&a);
	T_EQ(kvmm_kv_create(ctx, &c, &kv), -EOPNOTSUPP);
	assert_null(kv);
	print_message("reason: %s\n", kvmm_cuda_why());
	assert_non_null(strstr(kvmm_cuda_why(), reason));
	assert_non_null(strstr(kvmm_cuda_why(), "compute capability 9.0"));
	mock_stats(&b);
	T_EQ(b.creates - a.creates, 0); /* refused before any memory was made */
	T_OK(kvmm_close(ctx));
	mock_set_attr(attr, 1);
	expect_clean();
}

static void device_without_vmm_is_eopnotsupp(void **state)
{
	(void)state;
	refused_without(CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED,
			"virtual memory management");
	refused_without(CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING, "unified addressing");
}

static void growth_maps_chunks_and_keeps_data(uint32_t layout)
{
	struct fixture f = {.cfg = base_cfg(layout)};
	struct kvmm_kv_stats st;
	uint32_t per_chunk;

	open_cache(&f);
	per_chunk = (uint32_t)(cstats(&f).chunk_bytes /
			       (elem_bytes(&f.cfg) * (layout ? 2 * f.cfg.layers : 1)));
	step1(&f, 0, 1);
	fill_slot(&f, 0, 1, 1);
	T_OK(kvmm_kv_stats(f.kv, &st));
	T_EQ(st.active_slots, 1);
	assert_true(st.mapped_bytes >= cstats(&f).chunk_bytes);
	step1(&f, 0, 3 * per_chunk + 5); /* grows into the fourth chunk */
	fill_slot(&f, 0, 3 * per_chunk + 5, 2);
	check_slot(&f, 0, 3 * per_chunk + 5, 2);
	T_OK(kvmm_kv_stats(f.kv, &st));
	T_EQ(st.used_bytes, (3ULL * per_chunk + 5) * elem_bytes(&f.cfg) * 2 * f.cfg.layers);
	assert_true(st.new_bytes >= 4 * cstats(&f).chunk_bytes * (layout ? 1 : 2 * f.cfg.layers));
	close_cache(&f);
}

static void growth_layer_major(void **state)
{
	(void)state;
	growth_maps_chunks_and_keeps_data(KVMM_LAYOUT_LAYER_MAJOR);
}

static void growth_token_major(void **state)
{
	(void)state;
	growth_maps_chunks_and_keeps_data(KVMM_LAYOUT_TOKEN_MAJOR);
}

static void reads_past_seq_len_are_zeros(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_LAYER_MAJOR)};
	struct kvmm_kv_tensor t;
	uint64_t chunk;

	(void)state;
	/* No mapping ahead: reading past seq_len + lookahead is only safe then. */
	setenv("KVMM_CUDA_MAPPER", "0", 1);
	open_cache(&f);
	chunk = cstats(&f).chunk_bytes;
	step1(&f, 1, 10);
	fill_slot(&f, 1, 10, 3);
	T_OK(kvmm_kv_tensor(f.kv, 1, KVMM_V, &t));
	/* The rest of slot 1's mapped chunk, the chunk after it, whole
	 * never-stepped slots up to the end of the range. */
	assert_true(dev_zero(&f, (char *)t.base + t.slot_stride_bytes + 10 * t.token_stride_bytes,
			     chunk - 10 * t.token_stride_bytes));
	assert_true(dev_zero(&f, (char *)t.base + t.slot_stride_bytes + chunk, chunk));
	assert_true(dev_zero(&f, (char *)t.base + 2 * t.slot_stride_bytes, t.slot_stride_bytes));
	assert_true(dev_zero(&f, (char *)t.base + 3 * t.slot_stride_bytes, t.slot_stride_bytes));
	check_slot(&f, 1, 10, 3);
	close_cache(&f);
	unsetenv("KVMM_CUDA_MAPPER");
}

static void freed_slot_memory_is_reused(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_TOKEN_MAJOR)};
	struct mock_cuda_stats a, b;
	struct kvmm_kv_stats st;
	uint32_t slot;

	(void)state;
	setenv("KVMM_CUDA_MAPPER", "0", 1);
	open_cache(&f);
	T_OK(kvmm_kv_alloc_slot(f.kv, 100, &slot));
	step1(&f, slot, 100);
	T_OK(kvmm_kv_free_slot(f.kv, slot));
	mock_stats(&a);
	T_OK(kvmm_kv_alloc_slot(f.kv, 100, &slot)); /* best fit: the freed one */
	step1(&f, slot, 100);
	mock_stats(&b);
	T_EQ(b.maps - a.maps, 0);
	T_OK(kvmm_kv_stats(f.kv, &st));
	assert_true(st.reused_bytes > 0);
	close_cache(&f);
	unsetenv("KVMM_CUDA_MAPPER");
}

static void reclaim_waits_for_the_free_event(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_LAYER_MAJOR)};
	struct mock_cuda_stats a, b;
	struct finisher k;
	char *seen, *want;
	uint64_t n, t0;

	(void)state;
	f.cfg.budget_bytes = 4ULL * 11 * GRAN; /* one chunk per part, one slot */
	open_cache(&f);
	n = 50 * elem_bytes(&f.cfg);
	seen = malloc(n);
	want = malloc(n);
	assert_true(seen && want);
	step1(&f, 0, 50);
	fill_slot(&f, 0, 50, 4);
	mock_hold(NULL, 1); /* a kernel on the engine's stream still runs, */
	T_OK(mock_kread(NULL, seen, kv_at(&f, 0, 0, 0, 0), n)); /* then one reads slot 0 */
	T_OK(kvmm_kv_free_slot(f.kv, 0));
	finish_after(&k, NULL, 200);
	t0 = now_ms();
	step1(&f, 1, 50); /* needs slot 0's memory: must wait for its event */
	assert_true(now_ms() - t0 >= 150);
	pthread_join(k.th, NULL);
	/* The read ran while slot 0 was still mapped and unchanged. */
	slot_image(&f, 0, 50, 4, kv_at(&f, 0, 0, 0, 0), n, want);
	T_SAME_BYTES(seen, want, n);
	assert_true(dev_zero(&f, kv_at(&f, 0, 0, 0, 0), n));
	/* Slot 1 got slot 0's recycled chunks: zero-filled, nothing leaks over. */
	assert_true(dev_zero(&f, kv_at(&f, 0, 0, 1, 0), n));
	/* Once its event has passed, reclaim needs no host wait at all. */
	T_OK(kvmm_kv_free_slot(f.kv, 1));
	mock_idle(); /* time passes: the GPU catches up */
	mock_stats(&a);
	step1(&f, 2, 50);
	mock_stats(&b);
	T_EQ(b.event_syncs - a.event_syncs, 0);
	free(seen);
	free(want);
	close_cache(&f);
}

static void trim_unmaps_freed_slots_behind_their_events(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_TOKEN_MAJOR)};
	char *base[MAX_PARTS], *seen[2], *want;
	struct mock_cuda_stats before, after;
	uint64_t len[MAX_PARTS];
	struct kvmm_kv_stats st;

	(void)state;
	open_cache(&f);
	for (uint32_t s = 0; s < 2; s++) {
		step1(&f, s, 30);
		fill_slot(&f, s, 30, 6 + s);
	}
	mock_stats(&before);
	slot_spans(&f, 0, 30, base, len);
	seen[0] = malloc(len[0]);
	seen[1] = malloc(len[0]);
	want = malloc(len[0]);
	assert_true(seen[0] && seen[1] && want);
	mock_hold(NULL, 1); /* the kernels reading both slots have not run yet */
	for (uint32_t s = 0; s < 2; s++) {
		slot_spans(&f, s, 30, base, len);
		T_OK(mock_kread(NULL, seen[s], base[0], len[0]));
		T_OK(kvmm_kv_free_slot(f.kv, s));
	}
	T_OK(kvmm_kv_trim(f.kv, 0));
	T_OK(kvmm_kv_stats(f.kv, &st));
	T_EQ(st.mapped_bytes, 0);
	assert_true(st.reclaimed_bytes >= 2 * cstats(&f).chunk_bytes);
	usleep(20 * 1000); /* the mapper polls, but the fences cannot pass */
	assert_true(cstats(&f).draining_bytes >= 2 * cstats(&f).chunk_bytes); /* + any ahead */
	mock_hold(NULL, 0);
	for (int i = 0; i < 200 && cstats(&f).draining_bytes; i++)
		usleep(10 * 1000); /* the mapper retires the passed fences */
	T_EQ(cstats(&f).draining_bytes, 0);
	mock_stats(&after);
	/*
	 * The driver, not the library's counters: every handle is released,
	 * the pool's ready ones too, but the shared zero chunk's.
	 */
	assert_true(before.live >= 1 + st.reclaimed_bytes / cstats(&f).chunk_bytes);
	T_EQ(after.live, 1);
	for (uint32_t s = 0; s < 2; s++) {
		slot_spans(&f, s, 30, base, len);
		slot_image(&f, s, 30, 6 + s, base[0], len[0], want);
		T_SAME_BYTES(seen[s], want, len[0]); /* read before the unmap */
		assert_true(dev_zero(&f, base[0], len[0]));
		free(seen[s]);
	}
	free(want);
	close_cache(&f);
}

static void destroy_waits_for_kernels_still_reading_freed_slots(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_LAYER_MAJOR)};
	char *seen[3], *want[3];
	struct mock_cuda_stats st;
	struct finisher k;
	uint64_t n, t0;

	(void)state;
	setenv("KVMM_CUDA_MAPPER", "0", 1);
	open_cache(&f);
	n = 40 * elem_bytes(&f.cfg);
	for (uint32_t s = 0; s < 3; s++) {
		step1(&f, s, 40);
		fill_slot(&f, s, 40, 8 + s);
		seen[s] = malloc(n);
		want[s] = malloc(n);
		assert_true(seen[s] && want[s]);
		slot_image(&f, s, 40, 8 + s, kv_at(&f, 1, KVMM_V, s, 0), n, want[s]);
	}
	/* Each slot freed behind a kernel that reads it, all behind one still
	 * running; trim leaves two of them on fences and one merely freed. */
	mock_hold(NULL, 1);
	for (uint32_t s = 0; s < 3; s++) {
		T_OK(mock_kread(NULL, seen[s], kv_at(&f, 1, KVMM_V, s, 0), n));
		T_OK(kvmm_kv_free_slot(f.kv, s));
	}
	T_OK(kvmm_kv_trim(f.kv, 4ULL * 11 * GRAN)); /* keeps one slot's 4 chunks */
	assert_true(cstats(&f).draining_bytes >= 2 * 4 * 11 * GRAN);
	/* The engine moved to another stream: only the fences and free
	 * events cover the reads still queued on the first one. */
	T_OK(kvmm_kv_set_stream(f.kv, mock_stream(CU_STREAM_NON_BLOCKING)));
	finish_after(&k, NULL, 100);
	t0 = now_ms();
	T_OK(kvmm_kv_destroy(f.kv)); /* unmaps only after every reader */
	assert_true(now_ms() - t0 >= 50);
	pthread_join(k.th, NULL);
	T_OK(kvmm_close(f.ctx));
	expect_clean();
	for (uint32_t s = 0; s < 3; s++) {
		T_SAME_BYTES(seen[s], want[s], n);
		free(seen[s]);
		free(want[s]);
	}
	mock_stats(&st);
	T_EQ(st.live, live_before);
	T_EQ(st.pending, 0);
	unsetenv("KVMM_CUDA_MAPPER");
}

static void swap_out_waits_for_the_engine_stream(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_TOKEN_MAJOR)};
	struct kvmm_op *op;

	(void)state;
	open_cache(&f);
	step1(&f, 0, 40);
	fill_slot(&f, 0, 40, 5); /* queued: the swap-out must copy after it */
	mock_hold(NULL, 1);
	T_OK(kvmm_kv_swap_out(f.kv, 0, KVMM_TIER_HOST, &op));
	usleep(100 * 1000);
	T_EQ(kvmm_op_done(op), 0); /* the copy stands behind the running kernel */
	mock_hold(NULL, 0);
	T_OK(kvmm_wait(op));
	T_EQ(kvmm_kv_slot_state(f.kv, 0), KVMM_SLOT_HOST);
	T_OK(kvmm_kv_swap_in(f.kv, 0, &op));
	T_OK(kvmm_wait(op));
	check_slot(&f, 0, 40, 5);
	close_cache(&f);
}

/* The engine runs on its own non-blocking stream, as servers do: its
 * writes are still queued when swap_out is called, and it reads each
 * layer right after waiting for it on that stream. */
static void swap_cycles(uint32_t layout, enum kvmm_tier tier)
{
	struct fixture f = {.cfg = base_cfg(layout), .stream = mock_stream(CU_STREAM_NON_BLOCKING)};
	uint32_t toks[2] = {777, 9000};
	struct kvmm_kv_stats st;
	struct kvmm_op *op;

	if (tier == KVMM_TIER_FLASH && t_flash_unusable())
		T_SKIP("no flash store: %s", t_flash_unusable());
	open_cache(&f);
	for (uint32_t s = 0; s < 2; s++) {
		step1(&f, s, toks[s]);
		fill_slot(&f, s, toks[s], 10 + s);
	}
	for (int cycle = 0; cycle < 3; cycle++) {
		T_OK(kvmm_kv_swap_out(f.kv, 0, tier, &op));
		T_OK(kvmm_wait(op));
		T_EQ(kvmm_kv_slot_state(f.kv, 0), (int)tier); /* the tier's own state */
		T_EQ(kvmm_kv_slot_state(f.kv, 0),
		     tier == KVMM_TIER_HOST ? KVMM_SLOT_HOST : KVMM_SLOT_FLASH);
		assert_true(
		    dev_zero(&f, kv_at(&f, 0, 0, 0, 0), elem_bytes(&f.cfg))); /* off the GPU */
		T_OK(kvmm_kv_stats(f.kv, &st));
		assert_true((tier == KVMM_TIER_HOST ? st.host_bytes : st.flash_bytes) > 0);
		T_EQ(kvmm_kv_step(f.kv, 1, (uint32_t[]){0}, (uint32_t[]){1}), -EAGAIN);
		T_OK(kvmm_kv_swap_in(f.kv, 0, &op));
		for (uint32_t l = 0; l < f.cfg.layers; l++)
			T_OK(kvmm_kv_swap_in_wait_layer(f.kv, 0, l, f.stream));
		check_slot(&f, 0, toks[0], 10); /* behind the layer waits, maybe before op ends */
		T_OK(kvmm_wait(op));
		T_EQ(kvmm_kv_slot_state(f.kv, 0), KVMM_SLOT_ACTIVE);
		check_slot(&f, 1, toks[1], 11);
		step1(&f, 0, toks[0]);
		fill_slot(&f, 0, toks[0], 10); /* the engine writes again before the next swap */
	}
	T_OK(kvmm_kv_stats(f.kv, &st));
	T_EQ(st.swap_outs, 3);
	T_EQ(st.swap_ins, 3);
	T_EQ(st.host_bytes + st.flash_bytes, 0);
	close_cache(&f);
}

static void swap_dram_layer_major(void **state)
{
	(void)state;
	swap_cycles(KVMM_LAYOUT_LAYER_MAJOR, KVMM_TIER_HOST);
}

static void swap_dram_token_major(void **state)
{
	(void)state;
	swap_cycles(KVMM_LAYOUT_TOKEN_MAJOR, KVMM_TIER_HOST);
}

static void swap_flash_layer_major(void **state)
{
	(void)state;
	swap_cycles(KVMM_LAYOUT_LAYER_MAJOR, KVMM_TIER_FLASH);
}

static void swap_flash_token_major(void **state)
{
	(void)state;
	swap_cycles(KVMM_LAYOUT_TOKEN_MAJOR, KVMM_TIER_FLASH);
}

/*
 * A layer is read by the engine only after its event: the copy stream is
 * held, so every copy of the swap-in is queued and not yet run when the
 * engine waits for each layer on its stream and queues kernels reading it.
 * Those kernels must not run (the device idles, they stay queued) until
 * the copies have; then they read the swapped-in bytes.
 */
static void engine_reads_each_layer_behind_its_event(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_LAYER_MAJOR),
			    .stream = mock_stream(CU_STREAM_NON_BLOCKING)};
	char *base[MAX_PARTS], *seen[MAX_PARTS], *want;
	uint64_t len[MAX_PARTS];
	struct kvmm_op *op;
	uint32_t n;

	(void)state;
	setenv("KVMM_CUDA_STAGE_BYTES", "16M", 1); /* every part fits a staging buffer */
	open_cache(&f);
	setenv("KVMM_CUDA_STAGE_BYTES", "1M", 1);
	step1(&f, 0, 500);
	fill_slot(&f, 0, 500, 12);
	T_OK(kvmm_kv_swap_out(f.kv, 0, KVMM_TIER_HOST, &op));
	T_OK(kvmm_wait(op));
	n = slot_spans(&f, 0, 500, base, len);
	mock_hold(kvmm_cuda_kv_of(f.kv)->copy.stream, 1);
	T_OK(kvmm_kv_swap_in(f.kv, 0, &op));
	for (uint32_t l = 0; l < f.cfg.layers; l++)
		T_OK(kvmm_kv_swap_in_wait_layer(f.kv, 0, l, f.stream));
	for (uint32_t i = 0; i < n; i++) {
		seen[i] = malloc(len[i]);
		assert_non_null(seen[i]);
		memset(seen[i], 0xa5, len[i]);
		T_OK(mock_kread(f.stream, seen[i], base[i], len[i]));
	}
	mock_idle();
	for (uint32_t i = 0; i < n; i++)
		assert_true(seen[i][0] == (char)0xa5 && seen[i][len[i] - 1] == (char)0xa5);
	mock_hold(kvmm_cuda_kv_of(f.kv)->copy.stream, 0);
	T_OK(mock_sync(f.stream));
	want = malloc(len[0]);
	assert_non_null(want);
	for (uint32_t i = 0; i < n; i++) {
		slot_image(&f, 0, 500, 12, base[i], len[i], want);
		T_SAME_BYTES(seen[i], want, len[i]);
		free(seen[i]);
	}
	free(want);
	T_OK(kvmm_wait(op));
	close_cache(&f);
}

static void failed_copies_never_lose_or_corrupt_a_slot(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_LAYER_MAJOR)};
	struct kvmm_op *op;

	(void)state;
	open_cache(&f);
	step1(&f, 0, 300);
	fill_slot(&f, 0, 300, 20);
	mock_fail("cuMemcpyDtoHAsync", 2);
	T_OK(kvmm_kv_swap_out(f.kv, 0, KVMM_TIER_HOST, &op));
	T_EQ(kvmm_wait(op), -EIO);
	T_EQ(kvmm_kv_slot_state(f.kv, 0), KVMM_SLOT_ACTIVE);
	check_slot(&f, 0, 300, 20);
	T_OK(kvmm_kv_swap_out(f.kv, 0, KVMM_TIER_HOST, &op));
	T_OK(kvmm_wait(op));
	mock_fail("cuMemcpyHtoDAsync", 3);
	T_OK(kvmm_kv_swap_in(f.kv, 0, &op));
	T_EQ(kvmm_wait(op), -EIO);
	T_EQ(kvmm_kv_swap_in_wait_layer(f.kv, 0, 1, NULL), -EIO);
	T_EQ(kvmm_kv_slot_state(f.kv, 0), KVMM_SLOT_HOST);
	T_OK(kvmm_kv_swap_in(f.kv, 0, &op));
	T_OK(kvmm_wait(op));
	check_slot(&f, 0, 300, 20);
	close_cache(&f);
}

/* A staging buffer whose event could not be recorded still has its DMA
 * queued: the next move must not reuse the buffer before that DMA ran. */
static void failed_event_record_leaves_no_stray_dma(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_LAYER_MAJOR)};
	struct kvmm_op *op;

	(void)state;
	open_cache(&f);
	for (uint32_t s = 0; s < 2; s++) {
		step1(&f, s, 4000);
		fill_slot(&f, s, 4000, 70 + s);
	}
	T_OK(kvmm_kv_swap_out(f.kv, 0, KVMM_TIER_HOST, &op));
	T_OK(kvmm_wait(op));
	/* Records: the swap's event on the engine's stream, then one per
	 * staged copy; the second staged copy loses its event. */
	mock_fail("cuEventRecord", 3);
	T_OK(kvmm_kv_swap_out(f.kv, 1, KVMM_TIER_HOST, &op));
	T_EQ(kvmm_wait(op), -EIO);
	T_EQ(kvmm_kv_slot_state(f.kv, 1), KVMM_SLOT_ACTIVE);
	T_OK(kvmm_kv_swap_in(f.kv, 0, &op));
	T_OK(kvmm_wait(op));
	check_slot(&f, 0, 4000, 70);
	check_slot(&f, 1, 4000, 71);
	close_cache(&f);
}

static void corrupt_flash_copy_fails_the_swap_in(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_TOKEN_MAJOR)};
	struct kvmm_op *op;

	(void)state;
	if (t_flash_unusable())
		T_SKIP("no flash store: %s", t_flash_unusable());
	open_cache(&f);
	step1(&f, 2, 100);
	fill_slot(&f, 2, 100, 30);
	T_OK(kvmm_kv_swap_out(f.kv, 2, KVMM_TIER_FLASH, &op));
	T_OK(kvmm_wait(op));
	T_OK(kvmm_test_corrupt_chunk(kvmm_test_kv_region(f.kv, 2), 0));
	T_OK(kvmm_kv_swap_in(f.kv, 2, &op));
	T_EQ(kvmm_wait(op), -EIO);
	T_EQ(kvmm_kv_slot_state(f.kv, 2), KVMM_SLOT_FLASH); /* never wrong KV */
	close_cache(&f);
}

static uint32_t evicted[8], nr_evicted;

static void on_evict(void *arg, uint32_t slot, enum kvmm_tier tier)
{
	(void)arg;
	T_EQ(tier, KVMM_TIER_HOST);
	evicted[nr_evicted++] = slot;
}

static void over_budget_swaps_the_coldest_slot(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_TOKEN_MAJOR)};
	struct kvmm_op *op;

	(void)state;
	nr_evicted = 0;
	f.cfg.budget_bytes = 2ULL * 11 * GRAN; /* two slots of one chunk */
	f.cfg.flags = KVMM_KV_AUTO_SWAP;
	f.cfg.evict_cb = on_evict;
	open_cache(&f);
	step1(&f, 0, 10);
	fill_slot(&f, 0, 10, 40);
	step1(&f, 1, 10);
	fill_slot(&f, 1, 10, 41);
	step1(&f, 2, 10); /* slot 0 is the least recently stepped */
	T_EQ(nr_evicted, 1);
	T_EQ(evicted[0], 0);
	T_EQ(kvmm_kv_slot_state(f.kv, 0), KVMM_SLOT_HOST);
	T_OK(kvmm_kv_swap_in(f.kv, 0, &op)); /* makes room by swapping slot 1 */
	T_OK(kvmm_wait(op));
	check_slot(&f, 0, 10, 40);
	T_EQ(nr_evicted, 2);
	T_EQ(evicted[1], 1);
	T_OK(kvmm_kv_swap_in(f.kv, 1, &op)); /* and slot 1 kept its data */
	T_EQ(kvmm_wait(op), 0);
	check_slot(&f, 1, 10, 41);
	close_cache(&f);
	f.cfg.flags = 0, f.cfg.evict_cb = NULL;
	open_cache(&f);
	step1(&f, 0, 10);
	step1(&f, 1, 10);
	T_EQ(kvmm_kv_step(f.kv, 1, (uint32_t[]){2}, (uint32_t[]){10}), -ENOMEM);
	close_cache(&f);
}

static void device_out_of_memory_is_enomem(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_LAYER_MAJOR)};
	struct kvmm_kv_stats st;

	(void)state;
	setenv("KVMM_CUDA_POOL_LOW", "0", 1);
	setenv("KVMM_CUDA_POOL_HIGH", "0", 1);
	open_cache(&f);
	mock_fail("cuMemCreate", 3);
	T_EQ(kvmm_kv_step(f.kv, 1, (uint32_t[]){0}, (uint32_t[]){10}), -ENOMEM);
	T_OK(kvmm_kv_stats(f.kv, &st));
	T_EQ(st.mapped_bytes, 0); /* all parts or none */
	step1(&f, 0, 10);
	fill_slot(&f, 0, 10, 50);
	check_slot(&f, 0, 10, 50);
	close_cache(&f);
	unsetenv("KVMM_CUDA_POOL_LOW");
	unsetenv("KVMM_CUDA_POOL_HIGH");
}

static void failed_map_rolls_back_and_create_failure_leaks_nothing(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_LAYER_MAJOR)};
	struct kvmm_kv *kv = NULL;
	struct kvmm_kv_stats st;

	(void)state;
	setenv("KVMM_CUDA_MAPPER", "0", 1);
	open_cache(&f);
	mock_fail("cuMemMap", 3); /* the third chunk of four parts fails */
	T_EQ(kvmm_kv_step(f.kv, 1, (uint32_t[]){1}, (uint32_t[]){10}), -ENOMEM);
	T_OK(kvmm_kv_stats(f.kv, &st));
	T_EQ(st.mapped_bytes, 0);
	assert_true(dev_zero(&f, kv_at(&f, 0, 0, 1, 0), 10 * elem_bytes(&f.cfg)));
	step1(&f, 1, 10);
	fill_slot(&f, 1, 10, 60);
	check_slot(&f, 1, 10, 60);
	close_cache(&f); /* no rule broken on the way, every chunk released */
	setenv("KVMM_CUDA_POOL_LOW", "0", 1);
	f.ctx = t_open(64 << 10, 0);
	mock_fail("cuMemCreate", 1); /* the zero chunk */
	T_EQ(kvmm_kv_create(f.ctx, &f.cfg, &kv), -ENOMEM);
	assert_null(kv);
	T_OK(kvmm_close(f.ctx)); /* nothing left registered with the context */
	expect_clean();
	unsetenv("KVMM_CUDA_POOL_LOW");
	unsetenv("KVMM_CUDA_MAPPER");
}

/* A map that fails after unmapping a chunk's zero mapping puts it back;
 * when that fails too the chunk is a hole (no mapping), which no access
 * call may span and the next map over it fills first. */
static void failed_zero_remap_leaves_a_hole_the_next_map_fills(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_LAYER_MAJOR)};

	(void)state;
	setenv("KVMM_CUDA_MAPPER", "0", 1);
	open_cache(&f);
	mock_fail_run("cuMemMap", 1, 2); /* the real chunk, then the zero chunk back */
	T_EQ(kvmm_kv_step(f.kv, 1, (uint32_t[]){1}, (uint32_t[]){10}), -ENOMEM);
	expect_clean();
	step1(&f, 1, 10);
	fill_slot(&f, 1, 10, 97);
	check_slot(&f, 1, 10, 97);
	assert_true(dev_zero(&f, kv_at(&f, 0, KVMM_K, 1, 10), 64)); /* past seq_len */
	close_cache(&f);
	unsetenv("KVMM_CUDA_MAPPER");
}

/* One map over runs [c] and [c + 2] (c + 1 is real already) whose second
 * run fails: the zero fill queued for the first, behind a running kernel
 * on the range's stream, lands before the caller's rollback unmaps it. */
static void rollback_of_a_failed_map_waits_for_its_zero_fills(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_TOKEN_MAJOR)};
	struct kvmm_cuda_kv *ck;
	struct finisher k;
	uint64_t c, t0;

	(void)state;
	setenv("KVMM_CUDA_MAPPER", "0", 1);
	open_cache(&f);
	ck = kvmm_cuda_kv_of(f.kv);
	c = kvmm_cuda_part_chunk(ck, 2, 0, 0);
	T_EQ(ck->d->cuCtxPushCurrent(ck->cuctx), CUDA_SUCCESS);
	T_OK(kvmm_cuda_vmm_map(&ck->vmm, c + 1, 1, true));
	mock_hold(ck->vmm.stream, 1);
	mock_fail("cuMemMap", 2); /* run [c] maps, run [c + 2] does not */
	finish_after(&k, ck->vmm.stream, 100);
	t0 = now_ms();
	T_EQ(kvmm_cuda_vmm_map(&ck->vmm, c, 3, true), -ENOMEM);
	assert_true(now_ms() - t0 >= 50);	   /* it waited for the fill */
	T_OK(kvmm_cuda_vmm_unmap(&ck->vmm, c, 3)); /* the caller's rollback */
	pthread_join(k.th, NULL);
	T_EQ(ck->d->cuCtxPopCurrent(&(CUcontext){NULL}), CUDA_SUCCESS);
	expect_clean(); /* no unmap under a queued fill */
	assert_true(dev_zero(&f, kv_at(&f, 0, KVMM_K, 2, 0), 4096));
	close_cache(&f);
	unsetenv("KVMM_CUDA_MAPPER");
}

/*
 * An engine thread captures a CUDA graph in global mode while libkvmm's
 * threads work (the mapper's zero fills and fence polls, a swap on the
 * context's worker): in relaxed capture mode their synchronizing calls do
 * not invalidate the capture.
 */
static void background_threads_never_break_a_global_capture(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_TOKEN_MAJOR)};
	CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_RELAXED;
	const struct kvmm_cuda_drv *d;
	struct mock_cuda_stats st;
	struct kvmm_op *op;
	uint32_t per_chunk;
	uint64_t ahead;

	(void)state;
	open_cache(&f);
	d = kvmm_cuda_kv_of(f.kv)->d;
	/* This thread stands for another engine thread, outside the capture. */
	T_EQ(d->cuThreadExchangeStreamCaptureMode(&mode), CUDA_SUCCESS);
	per_chunk = (uint32_t)(cstats(&f).chunk_bytes / (elem_bytes(&f.cfg) * 2 * f.cfg.layers));
	step1(&f, 0, 10);
	fill_slot(&f, 0, 10, 98);
	for (int i = 0; i < 200 && !cstats(&f).ahead_bytes; i++)
		usleep(10 * 1000); /* the mapper's first batch, before the capture */
	ahead = cstats(&f).ahead_bytes;
	assert_true(ahead > 0);
	mock_capture(1);
	/* Into the chunk mapped ahead: the mapper maps the next one (a zero
	 * fill and its wait) while the graph is captured. */
	step1(&f, 0, per_chunk + 1);
	for (int i = 0; i < 200 && cstats(&f).ahead_bytes == ahead; i++)
		usleep(10 * 1000);
	assert_true(cstats(&f).ahead_bytes > ahead);
	T_OK(kvmm_kv_swap_out(f.kv, 0, KVMM_TIER_HOST, &op));
	T_OK(kvmm_wait(op));
	T_OK(kvmm_kv_swap_in(f.kv, 0, &op));
	T_OK(kvmm_wait(op));
	mock_capture(0);
	mock_stats(&st);
	T_EQ(st.capture_breaks, 0);
	check_slot(&f, 0, 10, 98);
	T_EQ(d->cuThreadExchangeStreamCaptureMode(&mode), CUDA_SUCCESS); /* back to global */
	close_cache(&f);
}

/* The engine's stream must be a stream of the cache's context. */
static void set_stream_refuses_what_is_not_a_stream(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_TOKEN_MAJOR)};
	char not_a_stream[64] = {0};

	(void)state;
	f.stream = mock_stream(CU_STREAM_NON_BLOCKING);
	open_cache(&f); /* a stream of the context: accepted */
	T_EQ(kvmm_kv_set_stream(f.kv, not_a_stream), -EINVAL);
	print_message("reason: %s\n", kvmm_cuda_why());
	assert_non_null(strstr(kvmm_cuda_why(), "not a CUDA stream"));
	T_OK(kvmm_kv_set_stream(f.kv, NULL)); /* the legacy stream */
	T_OK(kvmm_kv_set_stream(f.kv, f.stream));
	step1(&f, 0, 10);
	fill_slot(&f, 0, 10, 99);
	check_slot(&f, 0, 10, 99); /* the stream kept is the last one accepted */
	close_cache(&f);
}

/* Runs a step on another thread; one still running after @secs is
 * looping (it holds the cache lock): the program ends there. */
struct stepper {
	struct kvmm_kv *kv;
	uint32_t slot, seq;
	int ret;
	bool done;
	pthread_mutex_t m;
	pthread_cond_t c;
};

static void *stepper_main(void *arg)
{
	struct stepper *t = arg;
	int ret = kvmm_kv_step(t->kv, 1, &t->slot, &t->seq);

	pthread_mutex_lock(&t->m);
	t->ret = ret;
	t->done = true;
	pthread_cond_signal(&t->c);
	pthread_mutex_unlock(&t->m);
	return NULL;
}

static int step_within(struct kvmm_kv *kv, uint32_t slot, uint32_t seq, unsigned secs)
{
	struct stepper t = {.kv = kv, .slot = slot, .seq = seq};
	struct timespec ts;
	pthread_t th;

	pthread_mutex_init(&t.m, NULL);
	pthread_cond_init(&t.c, NULL);
	assert_int_equal(pthread_create(&th, NULL, stepper_main, &t), 0);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += secs;
	pthread_mutex_lock(&t.m);
	while (!t.done && pthread_cond_timedwait(&t.c, &t.m, &ts) == 0)
		;
	if (!t.done) {
		printf("FAIL: kvmm_kv_step(slot %u, %u tokens) has not returned after %u s: it "
		       "loops making room, holding the cache lock\n",
		       slot, seq, secs);
		fflush(stdout);
		_exit(1);
	}
	pthread_mutex_unlock(&t.m);
	pthread_join(th, NULL);
	pthread_cond_destroy(&t.c);
	pthread_mutex_destroy(&t.m);
	return t.ret;
}

/*
 * An engine kernel faults, so the context is lost (every later call fails,
 * as on a GPU) and no fence behind it can be known to pass. A step over
 * the budget then gets -EIO instead of waiting "successfully" for ever in
 * its room-making loop; destroy still returns and frees every chunk.
 */
static void lost_context_fails_a_step_over_budget_with_eio(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_TOKEN_MAJOR)};
	struct mock_cuda_stats st;
	char bad[64];

	(void)state;
	setenv("KVMM_CUDA_MAPPER", "0", 1);
	f.cfg.budget_bytes = 2ULL * 11 * GRAN; /* two slots of one chunk */
	open_cache(&f);
	step1(&f, 0, 10);
	step1(&f, 1, 10);
	/* Slot 3 is never stepped: its tokens are the read-only zero chunk. */
	memset(bad, 0x5a, sizeof(bad));
	T_OK(mock_kwrite(f.stream, kv_at(&f, 0, KVMM_K, 3, 0), bad, sizeof(bad)));
	T_OK(kvmm_kv_free_slot(f.kv, 0));
	T_OK(kvmm_kv_free_slot(f.kv, 1));
	T_EQ(step_within(f.kv, 2, 10, 10), -EIO);
	T_EQ(kvmm_kv_trim(f.kv, 0), -EIO); /* the freed slots' fences cannot pass */
	assert_true(cstats(&f).fence_errors > 0);
	T_EQ(kvmm_kv_stats(f.kv, &(struct kvmm_kv_stats){0}), 0);
	mock_stats(&st);
	T_EQ(st.faults, 1); /* the engine's own write, nothing of libkvmm's */
	T_OK(kvmm_kv_destroy(f.kv));
	T_OK(kvmm_close(f.ctx));
	mock_stats(&st);
	T_EQ(st.rule_violations, 0);
	T_EQ(st.hazards, 0);
	T_EQ(st.live, live_before); /* the driver frees memory of a lost context */
	T_EQ(st.events_live, events_before);
	mock_reset();
	unsetenv("KVMM_CUDA_MAPPER");
}

/* Kernels the engine queued before destroy may read any slot, not only
 * freed ones: destroy unmaps after an event on the engine's stream. */
static void destroy_waits_for_kernels_still_reading_active_slots(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_TOKEN_MAJOR)};
	struct mock_cuda_stats st;
	struct finisher k;
	char *seen, *want;
	uint64_t n, t0;

	(void)state;
	setenv("KVMM_CUDA_MAPPER", "0", 1);
	f.stream = mock_stream(CU_STREAM_NON_BLOCKING);
	open_cache(&f);
	step1(&f, 0, 40);
	fill_slot(&f, 0, 40, 90);
	n = 40 * elem_bytes(&f.cfg) * 2 * f.cfg.layers;
	seen = malloc(n);
	want = malloc(n);
	assert_true(seen && want);
	slot_image(&f, 0, 40, 90, kv_at(&f, 0, KVMM_K, 0, 0), n, want);
	mock_hold(f.stream, 1); /* a kernel still running, then one reading slot 0 */
	T_OK(mock_kread(f.stream, seen, kv_at(&f, 0, KVMM_K, 0, 0), n));
	finish_after(&k, f.stream, 100);
	t0 = now_ms();
	T_OK(kvmm_kv_destroy(f.kv)); /* the slot is still active */
	assert_true(now_ms() - t0 >= 50);
	pthread_join(k.th, NULL);
	T_OK(kvmm_close(f.ctx));
	expect_clean();
	T_SAME_BYTES(seen, want, n);
	mock_stats(&st);
	T_EQ(st.live, live_before);
	T_EQ(st.pending, 0);
	T_EQ(st.events_live, events_before);
	T_EQ(st.streams_live, streams_before);
	free(seen);
	free(want);
	unsetenv("KVMM_CUDA_MAPPER");
}

/* A push of the cache's context that fails pushed nothing: libkvmm must
 * not pop then (that would pop the engine's own context), and the call
 * fails with -EIO instead of running without its context. */
static void failed_context_push_is_eio_and_pops_nothing(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_LAYER_MAJOR)};
	const struct kvmm_cuda_drv *d;
	CUcontext engine, popped = NULL;

	(void)state;
	setenv("KVMM_CUDA_MAPPER", "0", 1);
	open_cache(&f);
	d = kvmm_cuda_kv_of(f.kv)->d;
	engine = kvmm_cuda_kv_of(f.kv)->cuctx; /* the engine uses the primary context too */
	step1(&f, 0, 10);
	usleep(20 * 1000); /* the pool thread pushed its context at its start */
	T_EQ(d->cuCtxPushCurrent(engine), CUDA_SUCCESS);
	mock_fail_here("cuCtxPushCurrent", 1); /* this thread's: the pool thread's are not */
	T_EQ(kvmm_kv_step(f.kv, 1, (uint32_t[]){1}, (uint32_t[]){10}), -EIO);
	mock_fail("", 0);
	T_EQ(d->cuCtxPopCurrent(&popped), CUDA_SUCCESS); /* the engine's is still there */
	assert_ptr_equal(popped, engine);
	expect_clean();
	step1(&f, 1, 10); /* the next call pushes again */
	fill_slot(&f, 1, 10, 95);
	check_slot(&f, 1, 10, 95);
	close_cache(&f);
	unsetenv("KVMM_CUDA_MAPPER");
}

/* The allocator pair too: a failed push fails the call and pops nothing. */
static void allocator_push_failure_is_refused_and_pops_nothing(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_TOKEN_MAJOR)};
	const struct kvmm_cuda_drv *d;
	CUcontext engine, popped = NULL;
	void *p;

	(void)state;
	open_cache(&f); /* loads the driver; the test reaches it through the cache */
	d = kvmm_cuda_kv_of(f.kv)->d;
	engine = kvmm_cuda_kv_of(f.kv)->cuctx;
	p = kvmm_torch_malloc(4096, 0, NULL); /* the device is set up once */
	assert_non_null(p);
	kvmm_torch_free(p, 4096, 0, NULL);
	T_EQ(d->cuCtxPushCurrent(engine), CUDA_SUCCESS);
	/* This thread's push: the cache's own threads may push meanwhile. */
	mock_fail_here("cuCtxPushCurrent", 1);
	assert_null(kvmm_torch_malloc(4096, 0, NULL));
	mock_fail("", 0);
	T_EQ(d->cuCtxPopCurrent(&popped), CUDA_SUCCESS); /* the engine's is still there */
	assert_ptr_equal(popped, engine);
	expect_clean();
	close_cache(&f);
}

/* A chunk whose cuMemRelease failed may still hold GPU memory: it is
 * counted (and, in kernel mode, stays charged to the ledger). */
static void failed_release_is_counted(void **state)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_TOKEN_MAJOR)};

	(void)state;
	open_cache(&f);
	step1(&f, 0, 10);
	T_OK(kvmm_kv_free_slot(f.kv, 0));
	T_OK(mock_sync(f.stream));
	mock_fail("cuMemRelease", 1);
	T_OK(kvmm_kv_trim(f.kv, 0));
	T_EQ(cstats(&f).release_failures, 1);
	live_before++; /* the handle the driver kept */
	close_cache(&f);
}

static void public_api_drives_a_cuda_cache(void **state)
{
	struct kvmm_kv_config c = base_cfg(KVMM_LAYOUT_LAYER_MAJOR);
	struct kvmm_ctx *ctx;
	struct kvmm_kv *kv;
	struct kvmm_kv_tensor t;
	struct kvmm_kv_stats st;
	struct kvmm_op *op;
	uint32_t slot, seq = 100;
	char want[256], seen[256], *p;

	(void)state;
	mock_reset();
	ctx = t_open(64 << 10, 256ULL << 20);
	T_OK(kvmm_kv_create(ctx, &c, &kv));
	T_OK(kvmm_kv_set_stream(kv, NULL));
	T_OK(kvmm_kv_alloc_slot(kv, 100, &slot));
	T_OK(kvmm_kv_step(kv, 1, &slot, &seq));
	T_OK(kvmm_kv_tensor(kv, 1, KVMM_V, &t));
	p = (char *)t.base + slot * t.slot_stride_bytes + 99 * t.token_stride_bytes;
	t_fill(want, sizeof(want), 77);
	T_OK(mock_kwrite(NULL, p, want, sizeof(want)));
	T_OK(kvmm_kv_swap_out(kv, slot, KVMM_TIER_HOST, &op));
	T_OK(kvmm_wait(op));
	T_EQ(kvmm_kv_slot_state(kv, slot), KVMM_SLOT_HOST);
	T_OK(kvmm_kv_swap_in(kv, slot, &op));
	T_OK(kvmm_kv_swap_in_wait_layer(kv, slot, 1, NULL));
	T_OK(kvmm_wait(op));
	dev_read_on(NULL, seen, p, sizeof(seen));
	T_SAME_BYTES(seen, want, sizeof(want));
	T_OK(kvmm_kv_stats(kv, &st));
	T_EQ(st.swap_ins, 1);
	T_OK(kvmm_kv_free_slot(kv, slot));
	T_OK(kvmm_kv_trim(kv, 0));
	T_EQ(kvmm_close(ctx), -EBUSY); /* the cache is still there */
	T_OK(kvmm_kv_destroy(kv));
	T_OK(kvmm_close(ctx));
	expect_clean();
}

/* Steps into the second chunk after the first step; returns whether it blocked. */
static bool second_chunk_blocks(const char *mapper)
{
	struct fixture f = {.cfg = base_cfg(KVMM_LAYOUT_TOKEN_MAJOR)};
	uint32_t per_chunk;
	uint64_t blocked;

	setenv("KVMM_CUDA_MAPPER", mapper, 1);
	open_cache(&f);
	per_chunk = (uint32_t)(cstats(&f).chunk_bytes / (elem_bytes(&f.cfg) * 2 * f.cfg.layers));
	step1(&f, 0, 1);
	for (int i = 0; i < 200 && !cstats(&f).ahead_bytes && mapper[0] == '1'; i++)
		usleep(10 * 1000);
	blocked = cstats(&f).step_blocked;
	step1(&f, 0, per_chunk + 1);
	blocked = cstats(&f).step_blocked - blocked;
	close_cache(&f);
	unsetenv("KVMM_CUDA_MAPPER");
	return blocked != 0;
}

static void mapper_maps_ahead_so_step_does_not_block(void **state)
{
	(void)state;
	assert_false(second_chunk_blocks("1"));
	assert_true(second_chunk_blocks("0"));
}

/* The stand-in really deferred work: a pass here means libkvmm waited. */
static void work_was_queued_and_run_late(void **state)
{
	struct mock_cuda_stats st;

	(void)state;
	mock_stats(&st);
	print_message("stand-in: %llu ops queued, %llu run, up to %llu queued at once, %llu run "
		      "before older work of another stream\n",
		      (unsigned long long)st.ops_queued, (unsigned long long)st.ops_run,
		      (unsigned long long)st.max_pending, (unsigned long long)st.reordered);
	assert_true(st.max_pending >= 8);
	assert_true(st.reordered > 0);
}

/* ------------------------------------------------------- prefix sharing */

/* Tokens [0, @ntok) of @dst hold what generation @gen of @src held there
 * (the image is computed, so @src may hold other data by now). */
static void check_prefix(struct fixture *f, uint32_t dst, uint32_t src, uint32_t ntok, uint64_t gen)
{
	char *db[MAX_PARTS], *sb[MAX_PARTS];
	uint64_t len[MAX_PARTS];
	uint32_t n = slot_spans(f, dst, ntok, db, len);

	slot_spans(f, src, ntok, sb, len);
	for (uint32_t i = 0; i < n; i++) {
		char *seen = malloc(len[i]), *want = malloc(len[i]);

		assert_true(seen && want);
		dev_read_on(f->stream, seen, db[i], len[i]);
		slot_image(f, src, ntok, gen, sb[i], len[i], want);
		T_SAME_BYTES(seen, want, len[i]);
		free(seen);
		free(want);
	}
}

static uint64_t share_parts(const struct fixture *f)
{
	return f->cfg.layout == KVMM_LAYOUT_LAYER_MAJOR ? 2 * f->cfg.layers : 1;
}

/* Bytes per token in a part. */
static uint64_t share_tok(const struct fixture *f)
{
	return elem_bytes(&f->cfg) *
	       (f->cfg.layout == KVMM_LAYOUT_LAYER_MAJOR ? 1 : 2 * f->cfg.layers);
}

/* Slot 0: two whole chunks, a part of one, and one more chunk of tokens,
 * generation 30; slot 1 shares the first *ntok of them. */
static void share_setup(struct fixture *f, uint32_t *ntok, uint32_t *src_len)
{
	uint64_t per = cstats(f).chunk_bytes / share_tok(f);
	uint32_t dst;

	*ntok = (uint32_t)(2 * per + per / 3);
	*src_len = *ntok + (uint32_t)per;
	step1(f, 0, *src_len);
	fill_slot(f, 0, *src_len, 30);
	T_OK(kvmm_kv_alloc_slot(f->kv, 0, &dst));
	T_EQ(dst, 1);
	T_OK(kvmm_kv_share_prefix(f->kv, 1, 0, *ntok));
}

/* A device write through @a's token shows through @b's: one physical chunk. */
static bool same_memory(struct fixture *f, uint32_t a, uint32_t b, uint32_t tok)
{
	char row[256], back[256], old[256];
	uint64_t e = elem_bytes(&f->cfg);
	bool same;

	dev_read_on(f->stream, old, kv_at(f, 1, KVMM_V, a, tok), e);
	memset(row, 0x3c, e);
	T_OK(mock_kwrite(f->stream, kv_at(f, 1, KVMM_V, a, tok), row, e));
	dev_read_on(f->stream, back, kv_at(f, 1, KVMM_V, b, tok), e);
	same = !memcmp(back, row, e);
	T_OK(mock_kwrite(f->stream, kv_at(f, 1, KVMM_V, a, tok), old, e));
	T_OK(mock_sync(f->stream));
	return same;
}

/*
 * The whole chunks of the prefix are the source's handles mapped at a
 * second address (a device write through one slot shows through the other:
 * no copy); the partial chunk was copied on the GPU and is the sharer's
 * own; freeing the source, reclaiming its memory and filling new slots
 * from the pool leaves the sharer's prefix alone, and no handle is
 * released while a slot maps it.
 */
/* Without the background mapper, so the bytes mapped are exact. */
static void open_share_cache(struct fixture *f)
{
	setenv("KVMM_CUDA_MAPPER", "0", 1);
	open_cache(f);
	unsetenv("KVMM_CUDA_MAPPER");
}

static void share_maps_handles(uint32_t layout)
{
	struct fixture f = {.cfg = base_cfg(layout), .stream = mock_stream(CU_STREAM_NON_BLOCKING)};
	struct kvmm_kv_stats st;
	struct mock_cuda_stats ms;
	uint64_t chunk, before;
	uint32_t ntok, src_len, big;

	open_share_cache(&f);
	chunk = cstats(&f).chunk_bytes;
	share_setup(&f, &ntok, &src_len);
	check_prefix(&f, 1, 0, ntok, 30);
	check_slot(&f, 0, src_len, 30);
	assert_true(dev_zero(&f, kv_at(&f, 0, KVMM_K, 1, ntok), elem_bytes(&f.cfg)));
	T_OK(kvmm_kv_stats(f.kv, &st));
	T_EQ(st.shared_bytes, 2 * chunk * share_parts(&f));
	/* The source's four chunks, and one copied. */
	before = 4 * chunk * share_parts(&f);
	T_EQ(st.mapped_bytes, before + chunk * share_parts(&f));
	T_EQ(st.share_copied_bytes, (ntok * share_tok(&f) - 2 * chunk) * share_parts(&f));
	assert_true(same_memory(&f, 1, 0, 5));
	assert_false(same_memory(&f, 1, 0, ntok - 1)); /* the copied chunk */
	/* The source goes, and its memory; new slots take chunks from the pool. */
	T_OK(kvmm_kv_free_slot(f.kv, 0));
	T_OK(kvmm_kv_trim(f.kv, 0));
	big = src_len;
	step1(&f, 2, big);
	fill_slot(&f, 2, big, 40);
	step1(&f, 0, big);
	fill_slot(&f, 0, big, 41);
	check_slot(&f, 2, big, 40);
	check_slot(&f, 0, big, 41);
	check_prefix(&f, 1, 0, ntok, 30);
	T_OK(kvmm_kv_stats(f.kv, &st));
	T_EQ(st.shared_bytes, 0);
	mock_stats(&ms);
	T_EQ(ms.released_mapped, 0);
	close_cache(&f);
	mock_stats(&ms);
	T_EQ(ms.released_mapped, 0);
}

static void share_maps_handles_layer_major(void **state)
{
	(void)state;
	share_maps_handles(KVMM_LAYOUT_LAYER_MAJOR);
}

static void share_maps_handles_token_major(void **state)
{
	(void)state;
	share_maps_handles(KVMM_LAYOUT_TOKEN_MAJOR);
}

/* Shadow regions (the lower tiers) report how much they share. */
static uint64_t shadow_shared(struct fixture *f)
{
	uint32_t n =
	    f->cfg.layout == KVMM_LAYOUT_LAYER_MAJOR ? 2 * f->cfg.layers : f->cfg.max_slots;
	uint64_t sum = 0;

	for (uint32_t i = 0; i < n; i++) {
		struct kvmm_region_stats rs;

		T_OK(kvmm_region_stats(kvmm_test_kv_region(f->kv, i), &rs));
		sum += rs.shared_bytes;
	}
	return sum;
}

static int cuda_swap(struct fixture *f, uint32_t slot, int tier)
{
	struct kvmm_op *op;
	int ret = tier ? kvmm_kv_swap_out(f->kv, slot, (enum kvmm_tier)tier, &op)
		       : kvmm_kv_swap_in(f->kv, slot, &op);

	return ret ? ret : kvmm_wait(op);
}

/*
 * Swaps move a shared chunk once each way: the sharer goes down first
 * (copying the prefix to its shadow), the source after it shares that
 * shadow instead of copying; back up, the first one copies and the second
 * maps the same handles (the device write test shows it is one chunk).
 */
static void share_swaps(uint32_t layout, enum kvmm_tier tier)
{
	struct fixture f = {.cfg = base_cfg(layout), .stream = mock_stream(CU_STREAM_NON_BLOCKING)};
	struct kvmm_kv_stats st;
	uint64_t chunk;
	uint32_t ntok, src_len;

	if (tier == KVMM_TIER_FLASH && t_flash_unusable())
		T_SKIP("no flash store: %s", t_flash_unusable());
	open_share_cache(&f);
	chunk = cstats(&f).chunk_bytes;
	share_setup(&f, &ntok, &src_len);
	T_OK(cuda_swap(&f, 1, tier));
	check_slot(&f, 0, src_len, 30); /* the source keeps its chunks */
	T_EQ(shadow_shared(&f), 0);
	T_OK(cuda_swap(&f, 0, tier));
	/* The source's shadow shares the sharer's copy of the prefix. */
	T_EQ(shadow_shared(&f), 2 * 2 * chunk * share_parts(&f));
	T_OK(kvmm_kv_stats(f.kv, &st));
	T_EQ(st.mapped_bytes, 0);
	T_EQ(st.host_bytes + st.flash_bytes, (4 + 1) * chunk * share_parts(&f));
	T_EQ(st.shared_bytes, 2 * chunk * share_parts(&f));
	T_OK(cuda_swap(&f, 1, 0));
	T_OK(cuda_swap(&f, 0, 0));
	assert_true(same_memory(&f, 0, 1, 5));
	check_slot(&f, 0, src_len, 30);
	check_prefix(&f, 1, 0, ntok, 30);
	T_EQ(shadow_shared(&f), 0);
	T_OK(kvmm_kv_stats(f.kv, &st));
	T_EQ(st.mapped_bytes, (4 + 1) * chunk * share_parts(&f));
	/* The other order: the source first. */
	T_OK(cuda_swap(&f, 0, tier));
	check_prefix(&f, 1, 0, ntok, 30);
	T_OK(cuda_swap(&f, 1, tier));
	T_OK(cuda_swap(&f, 0, 0));
	T_OK(cuda_swap(&f, 1, 0));
	assert_true(same_memory(&f, 1, 0, 5));
	check_slot(&f, 0, src_len, 30);
	check_prefix(&f, 1, 0, ntok, 30);
	close_cache(&f);
}

static void share_swaps_dram_layer_major(void **state)
{
	(void)state;
	share_swaps(KVMM_LAYOUT_LAYER_MAJOR, KVMM_TIER_HOST);
}

static void share_swaps_dram_token_major(void **state)
{
	(void)state;
	share_swaps(KVMM_LAYOUT_TOKEN_MAJOR, KVMM_TIER_HOST);
}

static void share_swaps_flash_layer_major(void **state)
{
	(void)state;
	share_swaps(KVMM_LAYOUT_LAYER_MAJOR, KVMM_TIER_FLASH);
}

static void share_swaps_flash_token_major(void **state)
{
	(void)state;
	share_swaps(KVMM_LAYOUT_TOKEN_MAJOR, KVMM_TIER_FLASH);
}

#define RESOLVE(var, name)                                                                         \
	do {                                                                                       \
		*(void **)&(var) = dlsym(h, name);                                                 \
		assert_non_null(var);                                                              \
	} while (0)

#define TEST(f) cmocka_unit_test(f)
#else
/* Built without cuda.h: the tests' names only, for --list; the program skips. */
#define TEST(f) T_NOT_BUILT(f)
#endif

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    TEST(chunk_follows_the_granularity),
	    TEST(device_attributes_are_reported),
	    TEST(device_without_vmm_is_eopnotsupp),
	    TEST(zero_chunk_is_read_write_where_read_only_is_refused),
	    TEST(growth_layer_major),
	    TEST(growth_token_major),
	    TEST(reads_past_seq_len_are_zeros),
	    TEST(freed_slot_memory_is_reused),
	    TEST(reclaim_waits_for_the_free_event),
	    TEST(trim_unmaps_freed_slots_behind_their_events),
	    TEST(destroy_waits_for_kernels_still_reading_freed_slots),
	    TEST(swap_out_waits_for_the_engine_stream),
	    TEST(swap_dram_layer_major),
	    TEST(swap_dram_token_major),
	    TEST(swap_flash_layer_major),
	    TEST(swap_flash_token_major),
	    TEST(engine_reads_each_layer_behind_its_event),
	    TEST(failed_copies_never_lose_or_corrupt_a_slot),
	    TEST(failed_event_record_leaves_no_stray_dma),
	    TEST(corrupt_flash_copy_fails_the_swap_in),
	    TEST(over_budget_swaps_the_coldest_slot),
	    TEST(device_out_of_memory_is_enomem),
	    TEST(failed_map_rolls_back_and_create_failure_leaks_nothing),
	    TEST(failed_zero_remap_leaves_a_hole_the_next_map_fills),
	    TEST(rollback_of_a_failed_map_waits_for_its_zero_fills),
	    TEST(lost_context_fails_a_step_over_budget_with_eio),
	    TEST(destroy_waits_for_kernels_still_reading_active_slots),
	    TEST(failed_context_push_is_eio_and_pops_nothing),
	    TEST(failed_release_is_counted),
	    TEST(allocator_push_failure_is_refused_and_pops_nothing),
	    TEST(background_threads_never_break_a_global_capture),
	    TEST(set_stream_refuses_what_is_not_a_stream),
	    TEST(public_api_drives_a_cuda_cache),
	    TEST(mapper_maps_ahead_so_step_does_not_block),
	    TEST(work_was_queued_and_run_late),
	    TEST(share_maps_handles_layer_major),
	    TEST(share_maps_handles_token_major),
	    TEST(share_swaps_dram_layer_major),
	    TEST(share_swaps_dram_token_major),
	    TEST(share_swaps_flash_layer_major),
	    TEST(share_swaps_flash_token_major),
	};

	T_LIST(argc, argv, T_GROUP(tests));
#ifndef KVMM_HAVE_CUDA_H
	t_skip_program(
	    "libkvmm was built without cuda.h (no $CUDA_HOME/include/cuda.h): no CUDA backend to "
	    "test; install the CUDA toolkit, or set CUDA_HOME to it");
#else
	const char *lib = getenv("KVMM_TEST_MOCK_CUDA");
	void *h;

	if (!lib || !(h = dlopen(lib, RTLD_NOW))) {
		printf(
		    "skip: no CUDA driver stand-in: %s\n",
		    lib ? dlerror()
			: "KVMM_TEST_MOCK_CUDA is unset (make check-cuda builds the stand-in and "
			  "sets it)");
		return T_SKIP_EXIT;
	}
	RESOLVE(mock_hold, "mock_cuda_hold");
	RESOLVE(mock_stats, "mock_cuda_stats");
	RESOLVE(mock_fail, "mock_cuda_fail");
	RESOLVE(mock_fail_here, "mock_cuda_fail_here");
	RESOLVE(mock_fail_run, "mock_cuda_fail_run");
	RESOLVE(mock_set_attr, "mock_cuda_set_attr");
	RESOLVE(mock_refuse_ro, "mock_cuda_refuse_read_only");
	RESOLVE(mock_capture, "mock_cuda_capture");
	RESOLVE(mock_kwrite, "mock_cuda_kernel_write");
	RESOLVE(mock_kread, "mock_cuda_kernel_read");
	RESOLVE(mock_sync, "mock_cuda_sync");
	RESOLVE(mock_stream, "mock_cuda_stream");
	RESOLVE(mock_idle, "mock_cuda_idle");
	RESOLVE(mock_reset, "mock_cuda_reset");
	setenv("KVMM_CUDA_LIBRARY", lib, 1);
	setenv("MOCK_CUDA_GRAN", "196608", 1);
	setenv("KVMM_CUDA_STAGE_BYTES", "1M", 1); /* small buffers: many pipeline turns */
	return cmocka_run_group_tests(tests, NULL, NULL);
#endif
}
