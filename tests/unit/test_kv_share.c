/* SPDX-License-Identifier: MIT */
/*
 * Prefix sharing: kvmm_kv_share_prefix() maps the whole chunks of a prefix
 * of one slot into another (the same memory, counted once) and copies the
 * partial chunk at its end; kvmm_region_share() does it for regions. Both
 * layouts, in the mode KVMM_MODE selects: user mode (a memfd mapped
 * privately at both addresses) and kernel mode (KVMM_IOC_SHARE).
 */
#include <math.h>
#include <sys/mman.h>

#include <kvmm/attention.h>

#include "kv_helpers.h"
#include "release_check.h"

#define SRC_LEN 400
#define NTOK	300

struct fx {
	struct kvmm_ctx *ctx;
	struct kvmm_kv *kv;
	struct kvmm_kv_config c;
	uint32_t layout;
};

/* Slot 0 holds SRC_LEN tokens of generation 1; slot 1 is allocated. */
static void open_kv(struct fx *f, uint32_t layout)
{
	uint32_t slot = 0, len = SRC_LEN, dst;

	f->layout = layout;
	f->ctx = t_open(64 << 10, 256ull << 20);
	f->c = t_kv_config(layout, 2);
	T_OK(kvmm_kv_create(f->ctx, &f->c, &f->kv));
	T_OK(kvmm_kv_step(f->kv, 1, &slot, &len));
	t_kv_fill(f->kv, &f->c, 0, SRC_LEN, 1);
	T_OK(kvmm_kv_alloc_slot(f->kv, 0, &dst));
	T_EQ(dst, 1);
}

static void close_kv(struct fx *f)
{
	T_OK(kvmm_kv_destroy(f->kv));
	T_OK(kvmm_close(f->ctx));
}

/* Bytes of one token in a part; parts per slot. */
static uint64_t part_tok(const struct fx *f)
{
	return t_row_bytes(&f->c) * (f->layout == KVMM_LAYOUT_LAYER_MAJOR ? 1 : 2 * f->c.layers);
}

static uint64_t nparts(const struct fx *f)
{
	return f->layout == KVMM_LAYOUT_LAYER_MAJOR ? 2 * f->c.layers : 1;
}

/* Whole chunks of @tokens per part. */
static uint64_t full_chunks(const struct fx *f, uint32_t tokens)
{
	return tokens * part_tok(f) / f->c.chunk_bytes;
}

/* Tokens [from, to) of @a equal those of @b in every layer, K and V. */
static void check_same(const struct fx *f, uint32_t a, uint32_t b, uint32_t from, uint32_t to)
{
	size_t n = t_row_bytes(&f->c);

	for (uint32_t l = 0; l < f->c.layers; l++)
		for (uint32_t w = 0; w < 2; w++)
			for (uint32_t tok = from; tok < to; tok++) {
				const char *x = t_row(f->kv, l, w, a, tok);
				const char *y = t_row(f->kv, l, w, b, tok);
				long d = t_diff(x, y, n);

				if (d >= 0)
					fail_msg(
					    "layer %u %c token %u byte %ld: slot %u has 0x%02x, "
					    "slot %u 0x%02x",
					    l, w ? 'V' : 'K', tok, d, a, (unsigned char)x[d], b,
					    (unsigned char)y[d]);
			}
}

/* Tokens [from, to) of @slot read as zeros. */
static void check_zero(const struct fx *f, uint32_t slot, uint32_t from, uint32_t to)
{
	size_t n = t_row_bytes(&f->c);
	static const char zero[4096];

	for (uint32_t l = 0; l < f->c.layers; l++)
		for (uint32_t w = 0; w < 2; w++)
			for (uint32_t tok = from; tok < to; tok++) {
				long d = t_diff(t_row(f->kv, l, w, slot, tok), zero, n);

				if (d >= 0)
					fail_msg(
					    "slot %u layer %u %c token %u byte %ld is not zero",
					    slot, l, w ? 'V' : 'K', tok, d);
			}
}

static struct kvmm_kv_stats stats(const struct fx *f)
{
	struct kvmm_kv_stats st;

	T_OK(kvmm_kv_stats(f->kv, &st));
	return st;
}

/* Every region of the cache (layer-major: one per layer and K/V;
 * token-major: one per slot). */
static uint32_t nregions(const struct fx *f)
{
	return f->layout == KVMM_LAYOUT_LAYER_MAJOR ? 2 * f->c.layers : f->c.max_slots;
}

/*
 * Flash writes and reads of every region of the cache. User mode counts a
 * shared chunk's I/O once, in the region whose range moved it; kvmm.ko
 * counts shared chunks' moves in sysfs stats/ and not per region, so the
 * exact counts below are checked in user mode only (kvmm.ko's own
 * test_share checks its counters).
 */
static void region_totals(const struct fx *f, uint64_t *writes, uint64_t *reads)
{
	*writes = *reads = 0;
	for (uint32_t i = 0; i < nregions(f); i++) {
		struct kvmm_region_stats st;

		T_OK(kvmm_region_stats(kvmm_test_kv_region(f->kv, i), &st));
		*writes += st.flash_writes;
		*reads += st.flash_reads;
	}
}

/* Chunk states of @slot's first @n chunks of part 0. */
static void part0_states(const struct fx *f, uint32_t slot, uint64_t n, uint8_t *states)
{
	bool lm = f->layout == KVMM_LAYOUT_LAYER_MAJOR;
	struct kvmm_region *r = kvmm_test_kv_region(f->kv, lm ? 0 : slot);
	uint64_t first = lm ? (uint64_t)slot * t_kv_slot_bytes(&f->c, f->c.max_tokens) / nparts(f) /
				  f->c.chunk_bytes
			    : 0;

	T_OK(kvmm_region_query(r, first, n, states));
}

#define T_IO(f, seen, expected)                                                                    \
	do {                                                                                       \
		if (t_user_mode((f).ctx))                                                          \
			T_EQ(seen, expected);                                                      \
	} while (0)

static int swap(struct fx *f, uint32_t slot, int tier)
{
	struct kvmm_op *op;
	int ret = tier ? kvmm_kv_swap_out(f->kv, slot, (enum kvmm_tier)tier, &op)
		       : kvmm_kv_swap_in(f->kv, slot, &op);

	return ret ? ret : kvmm_wait(op);
}

static void share_sees_prefix(uint32_t layout)
{
	struct fx f;
	struct kvmm_kv_stats before, st;
	struct t_watch w;
	uint64_t held, full, tail_chunk;
	uint8_t states[16];

	open_kv(&f, layout);
	w = t_watch_kv(f.kv);
	before = stats(&f);
	held = t_held_once(&w);
	T_OK(kvmm_kv_share_prefix(f.kv, 1, 0, NTOK));
	T_EQ(kvmm_kv_slot_state(f.kv, 1), KVMM_SLOT_ACTIVE);
	/* Both slots read the prefix; past it, the copied chunk reads zeros. */
	check_same(&f, 1, 0, 0, NTOK);
	t_kv_check(f.kv, &f.c, 0, SRC_LEN, 1);
	full = full_chunks(&f, NTOK);
	tail_chunk = (uint64_t)f.c.chunk_bytes * nparts(&f);
	check_zero(&f, 1, NTOK, (uint32_t)((full + 1) * f.c.chunk_bytes / part_tok(&f)));
	/* Shared memory counts once: only the copied chunk is new. */
	st = stats(&f);
	T_EQ(st.mapped_bytes, before.mapped_bytes + tail_chunk);
	T_EQ(st.shared_bytes, full * f.c.chunk_bytes * nparts(&f));
	T_EQ(st.shares, 1);
	T_EQ(st.share_copied_bytes, (NTOK * part_tok(&f) % f.c.chunk_bytes) * nparts(&f));
	T_EQ(st.used_bytes, (uint64_t)SRC_LEN * part_tok(&f) * nparts(&f) +
				(NTOK * part_tok(&f) - full * f.c.chunk_bytes) * nparts(&f));
	/* Seen from outside: the memory held grew by the copied chunk only. */
	t_check_bytes("memory held after the share", t_held_once(&w) - held, tail_chunk,
		      "pages shared by two mappings counted once", __FILE__, __LINE__);
	/* The regions report the shared chunks. */
	part0_states(&f, 1, full + 1, states);
	for (uint64_t i = 0; i < full; i++)
		T_EQ(states[i] & (KVMM_STATE_MASK | KVMM_STATE_SHARED),
		     KVMM_STATE_RESIDENT | KVMM_STATE_SHARED);
	T_EQ(states[full] & (KVMM_STATE_MASK | KVMM_STATE_SHARED), KVMM_STATE_RESIDENT);
	close_kv(&f);
}

static void test_token_major_share_sees_prefix_counted_once(void **state)
{
	(void)state;
	share_sees_prefix(KVMM_LAYOUT_TOKEN_MAJOR);
}

static void test_layer_major_share_sees_prefix_counted_once(void **state)
{
	(void)state;
	share_sees_prefix(KVMM_LAYOUT_LAYER_MAJOR);
}

static void writes_stay(uint32_t layout)
{
	struct fx f;
	uint32_t slot = 1, len = SRC_LEN;
	size_t n;
	char *row, *src_row;
	unsigned char saved[4096];

	open_kv(&f, layout);
	n = t_row_bytes(&f.c);
	T_OK(kvmm_kv_share_prefix(f.kv, 1, 0, NTOK));
	/* The new request writes its own tokens past the prefix... */
	T_OK(kvmm_kv_step(f.kv, 1, &slot, &len));
	for (uint32_t l = 0; l < f.c.layers; l++)
		for (uint32_t w = 0; w < 2; w++)
			for (uint32_t tok = NTOK; tok < SRC_LEN; tok++)
				t_fill(t_row(f.kv, l, w, 1, tok), n, t_row_seed(9, l, w, tok, 9));
	/* ...which the source never sees. */
	t_kv_check(f.kv, &f.c, 0, SRC_LEN, 1);
	check_same(&f, 1, 0, 0, NTOK);
	/* A host cache copies a shared chunk that is written, for that slot only. */
	row = t_row(f.kv, 2, 1, 1, 3);
	src_row = t_row(f.kv, 2, 1, 0, 3);
	memcpy(saved, src_row, n);
	memset(row, 0x5a, n);
	T_SAME_BYTES(src_row, saved, n);
	assert_int_equal((unsigned char)row[0], 0x5a);
	memset(src_row, 0xa5, n);
	assert_int_equal((unsigned char)row[n - 1], 0x5a);
	memcpy(src_row, saved, n);
	t_kv_check(f.kv, &f.c, 0, SRC_LEN, 1);
	close_kv(&f);
}

static void test_token_major_writes_after_share_stay_in_their_slot(void **state)
{
	(void)state;
	writes_stay(KVMM_LAYOUT_TOKEN_MAJOR);
}

static void test_layer_major_writes_after_share_stay_in_their_slot(void **state)
{
	(void)state;
	writes_stay(KVMM_LAYOUT_LAYER_MAJOR);
}

static void free_source(uint32_t layout)
{
	struct fx f;
	struct kvmm_kv_stats st;
	unsigned char ref[SRC_LEN][512];
	uint32_t slot = 2, len = SRC_LEN, got;

	open_kv(&f, layout);
	T_OK(kvmm_kv_share_prefix(f.kv, 1, 0, NTOK));
	/* What the prefix held, from the source, before it goes. */
	assert_true(t_row_bytes(&f.c) <= sizeof(ref[0]));
	for (uint32_t tok = 0; tok < NTOK; tok++)
		memcpy(ref[tok], t_row(f.kv, 3, 0, 0, tok), t_row_bytes(&f.c));
	T_OK(kvmm_kv_free_slot(f.kv, 0));
	T_OK(kvmm_kv_trim(f.kv, 0)); /* the source's memory is released... */
	st = stats(&f);
	T_EQ(st.shared_bytes, 0);
	T_EQ(st.mapped_bytes, (full_chunks(&f, NTOK) + 1) * f.c.chunk_bytes * nparts(&f));
	/* ...and a new sequence takes it over and writes all of it. */
	T_OK(kvmm_kv_alloc_slot(f.kv, SRC_LEN, &got));
	T_EQ(got, 0);
	T_OK(kvmm_kv_step(f.kv, 1, &got, &len));
	t_kv_fill(f.kv, &f.c, 0, SRC_LEN, 7);
	(void)slot;
	/* The prefix stays the sharer's. */
	for (uint32_t tok = 0; tok < NTOK; tok++)
		T_SAME_BYTES(t_row(f.kv, 3, 0, 1, tok), ref[tok], t_row_bytes(&f.c));
	t_kv_check(f.kv, &f.c, 0, SRC_LEN, 7);
	close_kv(&f);
}

static void test_token_major_freeing_the_source_keeps_the_prefix(void **state)
{
	(void)state;
	free_source(KVMM_LAYOUT_TOKEN_MAJOR);
}

static void test_layer_major_freeing_the_source_keeps_the_prefix(void **state)
{
	(void)state;
	free_source(KVMM_LAYOUT_LAYER_MAJOR);
}

/*
 * The sharer goes to flash first (the shared chunks stay: the source maps
 * them), then the source (now they go, once); both come back, the shared
 * chunks read once. Then both to DRAM, where the shared chunks stay put.
 */
static void swaps(uint32_t layout)
{
	struct fx f;
	struct kvmm_kv_stats st;
	uint64_t w0, r0, w1, r1, full, src_chunks, dst_chunks, chunk;
	uint8_t states[16];

	open_kv(&f, layout);
	if (!t_flash_tier(f.ctx)) {
		close_kv(&f);
		T_SKIP(T_NO_FLASH_TIER);
	}
	chunk = f.c.chunk_bytes;
	T_OK(kvmm_kv_share_prefix(f.kv, 1, 0, NTOK));
	full = full_chunks(&f, NTOK);
	src_chunks = t_kv_slot_bytes(&f.c, SRC_LEN) / nparts(&f) / chunk;
	dst_chunks = full + 1;
	region_totals(&f, &w0, &r0);
	T_OK(swap(&f, 1, KVMM_TIER_FLASH));
	T_EQ(kvmm_kv_slot_state(f.kv, 1), KVMM_SLOT_FLASH);
	region_totals(&f, &w1, &r1);
	T_IO(f, w1 - w0, (dst_chunks - full) * nparts(&f)); /* its own chunk only */
	t_kv_check(f.kv, &f.c, 0, SRC_LEN, 1);		    /* the source is untouched */
	part0_states(&f, 0, full, states);
	for (uint64_t i = 0; i < full; i++)
		T_EQ(states[i] & KVMM_STATE_MASK, KVMM_STATE_RESIDENT);
	T_OK(swap(&f, 0, KVMM_TIER_FLASH));
	region_totals(&f, &w1, &r1);
	/* Every chunk went once: the source's, and the sharer's own. */
	T_IO(f, w1 - w0, (src_chunks + dst_chunks - full) * nparts(&f));
	st = stats(&f);
	T_EQ(st.mapped_bytes, 0);
	T_EQ(st.flash_bytes, (src_chunks + dst_chunks - full) * chunk * nparts(&f));
	part0_states(&f, 1, full, states);
	for (uint64_t i = 0; i < full; i++)
		T_EQ(states[i] & KVMM_STATE_MASK, KVMM_STATE_FLASH);
	/* Back in, sharer first: the shared chunks are read once, for both. */
	T_OK(swap(&f, 1, 0));
	check_zero(&f, 1, NTOK, (uint32_t)((full + 1) * chunk / part_tok(&f)));
	T_OK(swap(&f, 0, 0));
	region_totals(&f, &w0, &r1);
	T_IO(f, r1 - r0, (src_chunks + dst_chunks - full) * nparts(&f));
	t_kv_check(f.kv, &f.c, 0, SRC_LEN, 1);
	check_same(&f, 1, 0, 0, NTOK);
	st = stats(&f);
	T_EQ(st.shared_bytes, full * chunk * nparts(&f));
	T_EQ(st.mapped_bytes, (src_chunks + dst_chunks - full) * chunk * nparts(&f));
	/* To DRAM and back: the shared chunks never leave their place. */
	T_OK(swap(&f, 0, KVMM_TIER_HOST));
	T_OK(swap(&f, 1, KVMM_TIER_HOST));
	st = stats(&f);
	T_EQ(st.mapped_bytes + st.host_bytes,
	     (src_chunks + dst_chunks - full) * chunk * nparts(&f));
	T_OK(swap(&f, 0, 0));
	T_OK(swap(&f, 1, 0));
	t_kv_check(f.kv, &f.c, 0, SRC_LEN, 1);
	check_same(&f, 1, 0, 0, NTOK);
	close_kv(&f);
}

static void test_token_major_swaps_move_shared_chunks_once(void **state)
{
	(void)state;
	swaps(KVMM_LAYOUT_TOKEN_MAJOR);
}

static void test_layer_major_swaps_move_shared_chunks_once(void **state)
{
	(void)state;
	swaps(KVMM_LAYOUT_LAYER_MAJOR);
}

/* The source swapped out while the sharer stays: the shared chunks stay
 * too; freeing the sharer then sends them after the source, once. */
static void source_out_first(uint32_t layout)
{
	struct fx f;
	struct kvmm_kv_stats st;
	uint64_t w0, r0, w1, r1, full, src_chunks;

	open_kv(&f, layout);
	if (!t_flash_tier(f.ctx)) {
		close_kv(&f);
		T_SKIP(T_NO_FLASH_TIER);
	}
	T_OK(kvmm_kv_share_prefix(f.kv, 1, 0, NTOK));
	full = full_chunks(&f, NTOK);
	src_chunks = t_kv_slot_bytes(&f.c, SRC_LEN) / nparts(&f) / f.c.chunk_bytes;
	region_totals(&f, &w0, &r0);
	T_OK(swap(&f, 0, KVMM_TIER_FLASH));
	region_totals(&f, &w1, &r1);
	T_IO(f, w1 - w0, (src_chunks - full) * nparts(&f));
	check_same(&f, 1, 1, 0, NTOK);
	T_OK(kvmm_kv_free_slot(f.kv, 1));
	T_OK(kvmm_kv_trim(f.kv, 0));
	region_totals(&f, &w1, &r1);
	T_IO(f, w1 - w0, src_chunks * nparts(&f)); /* the kept chunks followed, once */
	st = stats(&f);
	T_EQ(st.mapped_bytes, 0);
	T_OK(swap(&f, 0, 0));
	t_kv_check(f.kv, &f.c, 0, SRC_LEN, 1);
	close_kv(&f);
}

static void test_token_major_source_swapped_out_first(void **state)
{
	(void)state;
	source_out_first(KVMM_LAYOUT_TOKEN_MAJOR);
}

static void test_layer_major_source_swapped_out_first(void **state)
{
	(void)state;
	source_out_first(KVMM_LAYOUT_LAYER_MAJOR);
}

/* A budget that holds the source and two more chunks per part fits two
 * sharers of the prefix (each costs its copied chunk), never a private
 * copy of it. */
static void budget_once(uint32_t layout)
{
	struct fx f;
	uint32_t slot = 0, len = SRC_LEN, d1, d2;

	f.layout = layout;
	f.ctx = t_open(64 << 10, 256ull << 20);
	f.c = t_kv_config(layout, 2);
	f.c.budget_bytes = t_kv_slot_bytes(&f.c, SRC_LEN) + 2ull * f.c.chunk_bytes * nparts(&f);
	T_OK(kvmm_kv_create(f.ctx, &f.c, &f.kv));
	T_OK(kvmm_kv_step(f.kv, 1, &slot, &len));
	t_kv_fill(f.kv, &f.c, 0, SRC_LEN, 1);
	T_OK(kvmm_kv_alloc_slot(f.kv, NTOK, &d1));
	T_OK(kvmm_kv_share_prefix(f.kv, d1, 0, NTOK));
	T_OK(kvmm_kv_alloc_slot(f.kv, NTOK, &d2));
	T_OK(kvmm_kv_share_prefix(f.kv, d2, 0, NTOK));
	check_same(&f, d1, 0, 0, NTOK);
	check_same(&f, d2, 0, 0, NTOK);
	T_EQ(stats(&f).mapped_bytes, f.c.budget_bytes);
	/* A private copy does not fit. */
	slot = 3;
	len = NTOK;
	T_EQ(kvmm_kv_step(f.kv, 1, &slot, &len), -ENOMEM);
	close_kv(&f);
}

static void test_token_major_budget_counts_shared_memory_once(void **state)
{
	(void)state;
	budget_once(KVMM_LAYOUT_TOKEN_MAJOR);
}

static void test_layer_major_budget_counts_shared_memory_once(void **state)
{
	(void)state;
	budget_once(KVMM_LAYOUT_LAYER_MAJOR);
}

static void refusals(uint32_t layout)
{
	struct fx f;
	struct kvmm_kv_stats before, st;
	uint32_t three = 3, len = 10;

	open_kv(&f, layout);
	before = stats(&f);
	T_EQ(kvmm_kv_share_prefix(f.kv, 4, 0, NTOK), -EINVAL);	      /* no such slot */
	T_EQ(kvmm_kv_share_prefix(f.kv, 1, 9, NTOK), -EINVAL);	      /* no such slot */
	T_EQ(kvmm_kv_share_prefix(f.kv, 0, 0, NTOK), -EINVAL);	      /* itself */
	T_EQ(kvmm_kv_share_prefix(f.kv, 1, 0, 0), -EINVAL);	      /* nothing */
	T_EQ(kvmm_kv_share_prefix(f.kv, 1, 0, 2000), -EINVAL);	      /* past max_tokens */
	T_EQ(kvmm_kv_share_prefix(f.kv, 1, 0, SRC_LEN + 1), -ERANGE); /* past the source */
	T_EQ(kvmm_kv_share_prefix(f.kv, 2, 0, NTOK), -EAGAIN);	      /* dst free */
	T_EQ(kvmm_kv_share_prefix(f.kv, 1, 2, 1), -EAGAIN);	      /* src free */
	T_EQ(kvmm_kv_share_prefix(NULL, 1, 0, 1), -EINVAL);
	/* A pinned destination: a kernel may be reading it. */
	T_OK(kvmm_kv_step(f.kv, 1, &three, &len));
	t_kv_fill(f.kv, &f.c, 3, 10, 3);
	T_OK(kvmm_kv_pin_slot(f.kv, 3));
	T_EQ(kvmm_kv_share_prefix(f.kv, 3, 0, NTOK), -EBUSY);
	t_kv_check(f.kv, &f.c, 3, 10, 3);
	T_OK(kvmm_kv_unpin_slot(f.kv, 3));
	/* A swapped-out source. */
	T_OK(swap(&f, 0, KVMM_TIER_HOST));
	T_EQ(kvmm_kv_share_prefix(f.kv, 1, 0, NTOK), -EAGAIN);
	T_OK(swap(&f, 0, 0));
	st = stats(&f);
	T_EQ(st.shares, 0);
	T_EQ(st.shared_bytes, 0);
	T_EQ(st.mapped_bytes, before.mapped_bytes + t_kv_slot_bytes(&f.c, 10));
	t_kv_check(f.kv, &f.c, 0, SRC_LEN, 1);
	close_kv(&f);
}

static void test_token_major_share_refusals_change_nothing(void **state)
{
	(void)state;
	refusals(KVMM_LAYOUT_TOKEN_MAJOR);
}

static void test_layer_major_share_refusals_change_nothing(void **state)
{
	(void)state;
	refusals(KVMM_LAYOUT_LAYER_MAJOR);
}

/* ------------------------------------------------------- attention */

/* Finite f16 values of either sign, 2^-5 .. 2^-1, from @seed. */
static void fill_f16(void *p, size_t n, uint64_t seed)
{
	uint16_t *h = p;
	uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 7;

	for (size_t i = 0; i < n / 2; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		h[i] = (uint16_t)((x >> 20 & 1) << 15 | (10 + x % 5) << 10 | (x >> 8 & 0x3ff));
	}
}

static struct kvmm_attn_tensor attn_view(struct kvmm_kv *kv, uint32_t layer, int which)
{
	struct kvmm_kv_tensor t;

	T_OK(kvmm_kv_tensor(kv, layer, which, &t));
	return (struct kvmm_attn_tensor){
	    .data = t.base,
	    .dtype = KVMM_ATTN_F16,
	    .slot_stride = (int64_t)t.slot_stride,
	    .token_stride = (int64_t)t.token_stride,
	    .head_stride = (int64_t)t.head_stride,
	    .dim_stride = (int64_t)t.dim_stride,
	};
}

/*
 * Slot 1 shares slot 0's prefix and writes tokens of its own after it;
 * slot 2 holds a private copy of the same tokens. Decode attention (the
 * CPU kernels, vectorized and reference) over slot 1 and over slot 2, in
 * one batch with the same queries, gives the same bits, every layer.
 */
static void attention_same(uint32_t layout)
{
	struct fx f;
	uint32_t two = 2, len = SRC_LEN;
	size_t n;
	const int32_t lens[2] = {SRC_LEN, SRC_LEN}, slots[2] = {1, 2};
	const uint32_t qh = 4, d = 64;
	float q[2 * 4 * 64], o[2 * 4 * 64];

	open_kv(&f, layout);
	n = t_row_bytes(&f.c);
	/* Attention-sized values in the source (generation 1 is raw bytes). */
	for (uint32_t l = 0; l < f.c.layers; l++)
		for (uint32_t w = 0; w < 2; w++)
			for (uint32_t tok = 0; tok < SRC_LEN; tok++)
				fill_f16(t_row(f.kv, l, w, 0, tok), n, t_row_seed(0, l, w, tok, 5));
	T_OK(kvmm_kv_share_prefix(f.kv, 1, 0, NTOK));
	T_OK(kvmm_kv_step(f.kv, 1, (uint32_t[]){1}, &len));
	T_OK(kvmm_kv_step(f.kv, 1, &two, &len));
	for (uint32_t l = 0; l < f.c.layers; l++)
		for (uint32_t w = 0; w < 2; w++)
			for (uint32_t tok = 0; tok < SRC_LEN; tok++) {
				if (tok >= NTOK)
					fill_f16(t_row(f.kv, l, w, 1, tok), n,
						 t_row_seed(1, l, w, tok, 6));
				memcpy(t_row(f.kv, l, w, 2, tok), t_row(f.kv, l, w, 1, tok), n);
			}
	for (size_t i = 0; i < 4 * 64; i++)
		q[i] = q[4 * 64 + i] = sinf((float)i * 0.37f);
	for (uint32_t l = 0; l < f.c.layers; l++) {
		struct kvmm_attn_params p = {
		    .batch = 2,
		    .q_heads = (int32_t)qh,
		    .kv_heads = (int32_t)f.c.kv_heads,
		    .head_dim = (int32_t)d,
		    .scale = 0.125f,
		    .seq_lens = lens,
		    .max_seq_len = SRC_LEN,
		    .slots = slots,
		    .q = {q, KVMM_ATTN_F32, qh * d, 0, d, 1},
		    .k = attn_view(f.kv, l, KVMM_K),
		    .v = attn_view(f.kv, l, KVMM_V),
		    .o = {o, KVMM_ATTN_F32, qh * d, 0, d, 1},
		};

		for (int ref = 0; ref < 2; ref++) {
			memset(o, 0xff, sizeof(o));
			T_OK(ref ? kvmm_attn_ref_decode(&p) : kvmm_attn_cpu_decode(&p, NULL));
			for (size_t i = 0; i < qh * d; i++)
				assert_true(isfinite(o[i]));
			T_SAME_BYTES(o, o + qh * d, qh * d * sizeof(float));
		}
	}
	close_kv(&f);
}

static void test_token_major_attention_over_shared_prefix_is_bitwise_private(void **state)
{
	(void)state;
	attention_same(KVMM_LAYOUT_TOKEN_MAJOR);
}

static void test_layer_major_attention_over_shared_prefix_is_bitwise_private(void **state)
{
	(void)state;
	attention_same(KVMM_LAYOUT_LAYER_MAJOR);
}

/* ---------------------------------------------------------- regions */

#define RCHUNK (64u << 10)

static struct kvmm_region *region(struct kvmm_ctx *ctx, uint64_t chunks, uint32_t chunk)
{
	struct kvmm_region_config rc = KVMM_REGION_CONFIG_INIT;
	struct kvmm_region *r;

	rc.bytes = chunks * chunk;
	rc.chunk_bytes = chunk;
	T_OK(kvmm_region_create(ctx, &rc, &r));
	return r;
}

static void test_region_share_copy_on_write_and_evict_once(void **state)
{
	struct kvmm_ctx *ctx = t_open(RCHUNK, 64ull << 20);
	struct kvmm_region *a = region(ctx, 4, RCHUNK), *b = region(ctx, 4, RCHUNK);
	char *pa = kvmm_region_base(a), *pb = kvmm_region_base(b);
	static unsigned char ref[3 * RCHUNK];
	struct kvmm_region_stats sa, sb;
	uint8_t st[4];

	(void)state;
	T_OK(kvmm_region_ensure(a, 0, 3 * RCHUNK));
	t_fill(pa, 3 * RCHUNK, 42);
	memcpy(ref, pa, sizeof(ref));
	T_OK(kvmm_region_ensure(b, 0, 4 * RCHUNK));
	memset(pb, 0x77, 4 * RCHUNK);
	/* b's chunks 1..3 read a's 0..2; what b held there is gone. */
	T_OK(kvmm_region_share(b, RCHUNK, a, 0, 3 * RCHUNK));
	T_SAME_BYTES(pb + RCHUNK, ref, 3 * RCHUNK);
	assert_int_equal((unsigned char)pb[0], 0x77);
	T_OK(kvmm_region_query(b, 0, 4, st));
	T_EQ(st[0] & KVMM_STATE_SHARED, 0);
	for (int i = 1; i < 4; i++)
		T_EQ(st[i] & (KVMM_STATE_MASK | KVMM_STATE_SHARED),
		     KVMM_STATE_RESIDENT | KVMM_STATE_SHARED);
	T_OK(kvmm_region_stats(a, &sa));
	T_OK(kvmm_region_stats(b, &sb));
	T_EQ(sa.shared_bytes, 3 * RCHUNK);
	T_EQ(sb.shared_bytes, 3 * RCHUNK);
	T_EQ(sb.resident_bytes, RCHUNK);
	if (t_user_mode(ctx)) /* no private page in either range: one copy in memory */
		T_EQ(t_smaps_sum("Anonymous:", (uintptr_t)pb + RCHUNK, (uintptr_t)pb + 4 * RCHUNK),
		     0);
	/* A write through one range is its own (a's chunk 2, b's chunk 3). */
	pb[3 * RCHUNK + 5] ^= 0xff;
	assert_int_equal((unsigned char)pa[2 * RCHUNK + 5], ref[2 * RCHUNK + 5]);
	pb[3 * RCHUNK + 5] ^= 0xff;
	pa[2 * RCHUNK] ^= 0xff;
	assert_int_equal((unsigned char)pb[3 * RCHUNK], ref[2 * RCHUNK]);
	pa[2 * RCHUNK] ^= 0xff;
	/* A chunk written since the share is not the shared copy any more
	 * (user mode: pages of its own): evict leaves it, losing nothing. */
	if (t_user_mode(ctx)) {
		T_OK(kvmm_region_evict(b, 3 * RCHUNK, RCHUNK));
		T_OK(kvmm_region_query(b, 3, 1, st));
		T_EQ(st[0] & KVMM_STATE_MASK, KVMM_STATE_RESIDENT);
		T_SAME_BYTES(pb + 3 * RCHUNK, ref + 2 * RCHUNK, RCHUNK);
	}
	/* Chunk 0 of a, never written since: evicting it through b writes it
	 * once and drops it from both; a touch through a brings it back. */
	if (t_flash_tier(ctx)) {
		T_OK(kvmm_region_evict(b, RCHUNK, RCHUNK));
		T_OK(kvmm_region_query(a, 0, 1, st));
		T_EQ(st[0] & KVMM_STATE_MASK, KVMM_STATE_FLASH);
		T_OK(kvmm_region_query(b, 1, 1, st));
		T_EQ(st[0] & KVMM_STATE_MASK, KVMM_STATE_FLASH);
		T_OK(kvmm_region_stats(a, &sa));
		T_OK(kvmm_region_stats(b, &sb));
		if (t_user_mode(ctx)) /* kvmm.ko counts it in sysfs stats/ */
			T_EQ(sa.flash_writes + sb.flash_writes, 1);
		T_OK(kvmm_region_ensure(a, 0, RCHUNK));
		T_OK(kvmm_region_query(b, 1, 1, st));
		T_EQ(st[0] & KVMM_STATE_MASK, KVMM_STATE_RESIDENT);
		T_SAME_BYTES(pb + RCHUNK, ref, RCHUNK);
		T_SAME_BYTES(pa, ref, RCHUNK);
	}
	/* Discarding a's range drops its share: b keeps the bytes. */
	T_OK(kvmm_region_discard(a, 0, 4 * RCHUNK));
	T_SAME_BYTES(pb + RCHUNK, ref, 3 * RCHUNK);
	T_OK(kvmm_region_stats(b, &sb));
	if (t_user_mode(ctx)) { /* kvmm.ko keeps such a chunk apart (SHARED) */
		T_EQ(sb.shared_bytes, 0);
		T_EQ(sb.resident_bytes, 4 * RCHUNK);
	}
	T_OK(kvmm_region_destroy(a));
	T_OK(kvmm_region_destroy(b));
	T_OK(kvmm_close(ctx));
}

static void test_region_share_refusals_change_nothing(void **state)
{
	struct kvmm_ctx *ctx = t_open(RCHUNK, 64ull << 20);
	struct kvmm_region *a = region(ctx, 4, RCHUNK), *b = region(ctx, 4, RCHUNK);
	struct kvmm_region *c = region(ctx, 2, 2 * RCHUNK);
	uint8_t st[4];

	(void)state;
	T_OK(kvmm_region_ensure(a, 0, 4 * RCHUNK));
	memset(kvmm_region_base(a), 1, 4 * RCHUNK);
	T_EQ(kvmm_region_share(b, 0, c, 0, 2 * RCHUNK), -EINVAL);	   /* chunk sizes differ */
	T_EQ(kvmm_region_share(b, 0, a, 100, RCHUNK), -EINVAL);		   /* unaligned */
	T_EQ(kvmm_region_share(b, 0, a, 0, 0), -EINVAL);		   /* empty */
	T_EQ(kvmm_region_share(b, 0, a, 2 * RCHUNK, 3 * RCHUNK), -EINVAL); /* past the end */
	T_EQ(kvmm_region_share(a, RCHUNK, a, 0, 2 * RCHUNK), -EINVAL);	   /* overlapping */
	T_EQ(kvmm_region_share(NULL, 0, a, 0, RCHUNK), -EINVAL);
	T_OK(kvmm_region_pin(a, 0, RCHUNK));
	T_EQ(kvmm_region_share(b, 0, a, 0, RCHUNK), -EBUSY); /* a pinned source chunk */
	T_OK(kvmm_region_unpin(a, 0, RCHUNK));
	T_OK(kvmm_region_pin(b, 0, RCHUNK));
	T_EQ(kvmm_region_share(b, 0, a, 0, RCHUNK), -EBUSY); /* a pinned destination */
	T_OK(kvmm_region_unpin(b, 0, RCHUNK));
	T_OK(kvmm_region_query(b, 0, 4, st));
	for (int i = 0; i < 4; i++)
		/* kvmm.ko also says DIRTY: no flash copy. */
		T_EQ(st[i] & (KVMM_STATE_MASK | KVMM_STATE_SHARED),
		     i == 0 ? KVMM_STATE_RESIDENT : KVMM_STATE_EMPTY);
	T_OK(kvmm_region_query(a, 0, 4, st));
	for (int i = 0; i < 4; i++)
		T_EQ(st[i] & KVMM_STATE_SHARED, 0);
	/* Within one region, apart: fine. */
	T_OK(kvmm_region_share(a, 2 * RCHUNK, a, 0, 2 * RCHUNK));
	T_OK(kvmm_region_destroy(a));
	T_OK(kvmm_region_destroy(b));
	T_OK(kvmm_region_destroy(c));
	T_OK(kvmm_close(ctx));
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_token_major_share_sees_prefix_counted_once),
	    cmocka_unit_test(test_layer_major_share_sees_prefix_counted_once),
	    cmocka_unit_test(test_token_major_writes_after_share_stay_in_their_slot),
	    cmocka_unit_test(test_layer_major_writes_after_share_stay_in_their_slot),
	    cmocka_unit_test(test_token_major_freeing_the_source_keeps_the_prefix),
	    cmocka_unit_test(test_layer_major_freeing_the_source_keeps_the_prefix),
	    cmocka_unit_test(test_token_major_swaps_move_shared_chunks_once),
	    cmocka_unit_test(test_layer_major_swaps_move_shared_chunks_once),
	    cmocka_unit_test(test_token_major_source_swapped_out_first),
	    cmocka_unit_test(test_layer_major_source_swapped_out_first),
	    cmocka_unit_test(test_token_major_budget_counts_shared_memory_once),
	    cmocka_unit_test(test_layer_major_budget_counts_shared_memory_once),
	    cmocka_unit_test(test_token_major_share_refusals_change_nothing),
	    cmocka_unit_test(test_layer_major_share_refusals_change_nothing),
	    cmocka_unit_test(test_token_major_attention_over_shared_prefix_is_bitwise_private),
	    cmocka_unit_test(test_layer_major_attention_over_shared_prefix_is_bitwise_private),
	    cmocka_unit_test(test_region_share_copy_on_write_and_evict_once),
	    cmocka_unit_test(test_region_share_refusals_change_nothing),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
