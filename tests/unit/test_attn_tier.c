/* SPDX-License-Identifier: MIT */
/*
 * CPU decode over KV held in host regions partly on flash
 * (kvmm_attn_tier_regions): bitwise the decode of the same plan with
 * everything resident, in both kvmm layouts, whatever part is on flash; a
 * region evicted while the decode reads it still decodes exactly; a flash
 * read that fails makes the decode fail with -EIO and write nothing. Runs
 * in user mode (io_uring store) here and in kernel mode (PREFETCH/WAIT)
 * in the QEMU suite unit-kernel.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>

#include <kvmm/attention.h>

#include "../../userspace/lib/kvmm_test.h"
#include "helpers.h"

#define CHUNK	 (64u << 10)
#define KV_HEADS 2
#define GROUP	 4
#define DIM	 128
#define ES	 2 /* f16 */
#define BATCH	 2
#define MAX_TOK	 3072

static const int32_t lens[BATCH] = {3000, 1700};

enum layout { LAYER_MAJOR, TOKEN_MAJOR };

struct fx {
	struct kvmm_ctx *ctx;
	enum layout layout;
	/* layer-major: r[0] K, r[1] V (slots inside); token-major: r[b] per slot, K and V */
	struct kvmm_region *r[2];
	int nr;
	struct kvmm_attn_params p;
	struct kvmm_attn_tier tier;
	uint16_t q[BATCH * KV_HEADS * GROUP * DIM];
	uint16_t o_ref[BATCH * KV_HEADS * GROUP * DIM], o[BATCH * KV_HEADS * GROUP * DIM];
};

/* A small f16 value from a hash: |x| < 0.5, never subnormal. */
static uint16_t f16_of(uint64_t i, uint64_t seed)
{
	uint64_t h = (i + 1) * 0x9e3779b97f4a7c15ull ^ seed * 0xbf58476d1ce4e5b9ull;

	h ^= h >> 29;
	return (uint16_t)(((h >> 7) & 1) << 15 | (0x3000 + (h >> 20) % 0x0800));
}

static uint64_t region_bytes(enum layout layout)
{
	uint64_t tok = (uint64_t)KV_HEADS * DIM * ES * (layout == TOKEN_MAJOR ? 2 : 1);
	uint64_t b = tok * MAX_TOK * (layout == LAYER_MAJOR ? BATCH : 1);

	return (b + CHUNK - 1) / CHUNK * CHUNK;
}

static void fx_init(struct fx *f, enum layout layout)
{
	struct kvmm_region_config rc = KVMM_REGION_CONFIG_INIT;
	int64_t hd = (int64_t)KV_HEADS * DIM;
	char *base[2];

	memset(f, 0, sizeof(*f));
	f->layout = layout;
	f->ctx = t_open(CHUNK, 64ull << 20);
	rc.bytes = region_bytes(layout);
	f->nr = 2;
	for (int i = 0; i < f->nr; i++) {
		T_OK(kvmm_region_create(f->ctx, &rc, &f->r[i]));
		T_OK(kvmm_region_ensure(f->r[i], 0, rc.bytes));
		base[i] = kvmm_region_base(f->r[i]);
		for (uint64_t e = 0; e < rc.bytes / ES; e++)
			((uint16_t *)base[i])[e] = f16_of(e, (uint64_t)i + 1);
	}
	for (size_t i = 0; i < sizeof(f->q) / ES; i++)
		f->q[i] = f16_of(i, 99);
	f->p = (struct kvmm_attn_params){
	    .batch = BATCH,
	    .q_heads = KV_HEADS * GROUP,
	    .kv_heads = KV_HEADS,
	    .head_dim = DIM,
	    .scale = 1.0f / sqrtf((float)DIM),
	    .seq_lens = lens,
	    .max_seq_len = MAX_TOK,
	    .q = {f->q, KVMM_ATTN_F16, KV_HEADS * GROUP * DIM, 0, DIM, 1},
	    .o = {f->o, KVMM_ATTN_F16, KV_HEADS * GROUP * DIM, 0, DIM, 1},
	};
	if (layout == LAYER_MAJOR) {
		f->p.k =
		    (struct kvmm_attn_tensor){base[0], KVMM_ATTN_F16, MAX_TOK * hd, hd, DIM, 1};
		f->p.v =
		    (struct kvmm_attn_tensor){base[1], KVMM_ATTN_F16, MAX_TOK * hd, hd, DIM, 1};
	} else {
		/* One region per slot, [token][K|V][head][dim]; slot 1 through slot_stride. */
		int64_t slot = (base[1] - base[0]) / ES;

		f->p.k = (struct kvmm_attn_tensor){base[0], KVMM_ATTN_F16, slot, 2 * hd, DIM, 1};
		f->p.v = (struct kvmm_attn_tensor){
		    base[0] + hd * ES, KVMM_ATTN_F16, slot, 2 * hd, DIM, 1};
	}
	T_OK(kvmm_attn_tier_regions(f->r, f->nr, &f->tier));
	/* The reference: the same plan, everything resident, no tier. */
	T_OK(kvmm_attn_cpu_decode(&f->p, &(struct kvmm_attn_cpu_opts){.threads = 2}));
	memcpy(f->o_ref, f->o, sizeof(f->o));
}

static void fx_free(struct fx *f)
{
	kvmm_attn_tier_free(&f->tier);
	for (int i = 0; i < f->nr; i++)
		T_OK(kvmm_region_destroy(f->r[i]));
	T_OK(kvmm_close(f->ctx));
}

/* Evicts chunks [first, first + n) of every region; false when there is no flash tier. */
static bool evict(struct fx *f, uint64_t first, uint64_t n)
{
	for (int i = 0; i < f->nr; i++) {
		int ret = kvmm_region_evict(f->r[i], first * CHUNK, n * CHUNK);

		if (!t_user_mode(f->ctx) && (ret == -EOPNOTSUPP || ret == -ENODEV))
			return false;
		T_OK(ret);
	}
	return true;
}

static int decode_tier(struct fx *f, int chunk_tokens, struct kvmm_attn_cpu_stats *st)
{
	struct kvmm_attn_cpu_opts o = {
	    .threads = 2, .chunk_tokens = chunk_tokens, .tier = &f->tier, .stats = st};

	memset(f->o, 0xff, sizeof(f->o));
	return kvmm_attn_cpu_decode(&f->p, &o);
}

static void expect_ref(struct fx *f, const char *what)
{
	size_t n = sizeof(f->o) / ES;

	for (size_t i = 0; i < n; i++)
		if (f->o[i] != f->o_ref[i])
			fail_msg("%s: element %zu of %zu: expected 0x%04x (everything resident), "
				 "seen 0x%04x",
				 what, i, n, f->o_ref[i], f->o[i]);
}

static void check_partly_on_flash(enum layout layout)
{
	uint64_t nchunks = region_bytes(layout) / CHUNK;
	struct kvmm_attn_cpu_stats st;
	struct fx f;

	fx_init(&f, layout);
	/* The first half on flash: its items are fetched, the rest run meanwhile. */
	if (!evict(&f, 0, nchunks / 2)) {
		fx_free(&f);
		T_SKIP(T_NO_FLASH_TIER);
	}
	T_OK(decode_tier(&f, 0, &st));
	expect_ref(&f, "first half on flash");
	if (st.items_fetched < 1 || st.items_fetched >= st.items)
		fail_msg("expected some but not all of %d items fetched, seen %d", st.items,
			 st.items_fetched);
	/* Scattered chunks, and items that start and end mid-chunk. */
	for (uint64_t c = 1; c < nchunks; c += 3)
		T_EQ(evict(&f, c, 1), true);
	T_OK(decode_tier(&f, 0, NULL));
	expect_ref(&f, "every third chunk on flash");
	T_OK(evict(&f, 0, nchunks) ? 0 : -1);
	T_OK(decode_tier(&f, 0, &st));
	expect_ref(&f, "all on flash");
	T_EQ(st.items_fetched, st.items);
	fx_free(&f);
}

static void test_layer_major_partly_on_flash_decodes_bitwise_as_resident(void **state)
{
	(void)state;
	check_partly_on_flash(LAYER_MAJOR);
}

static void test_token_major_partly_on_flash_decodes_bitwise_as_resident(void **state)
{
	(void)state;
	check_partly_on_flash(TOKEN_MAJOR);
}

/* A plan of many short items (not chunk-aligned): same bits as that plan resident. */
static void test_short_items_across_chunk_edges_decode_bitwise_as_resident(void **state)
{
	struct fx f;

	(void)state;
	fx_init(&f, LAYER_MAJOR);
	T_OK(kvmm_attn_cpu_decode(&f.p,
				  &(struct kvmm_attn_cpu_opts){.threads = 2, .chunk_tokens = 200}));
	memcpy(f.o_ref, f.o, sizeof(f.o));
	if (!evict(&f, 0, region_bytes(LAYER_MAJOR) / CHUNK)) {
		fx_free(&f);
		T_SKIP(T_NO_FLASH_TIER);
	}
	T_OK(decode_tier(&f, 200, NULL));
	expect_ref(&f, "200-token items, all on flash");
	fx_free(&f);
}

struct evictor {
	struct fx *f;
	atomic_bool stop;
	int rounds, busy;
};

static void *evict_loop(void *arg)
{
	struct evictor *e = arg;
	uint64_t n = region_bytes(e->f->layout) / CHUNK;

	while (!atomic_load(&e->stop)) {
		for (int i = 0; i < e->f->nr; i++) {
			/* User mode skips pinned chunks; kvmm.ko refuses a range with one. */
			int ret = kvmm_region_evict(e->f->r[i], 0, n * CHUNK);

			e->busy += ret == -EBUSY;
		}
		e->rounds++;
	}
	return NULL;
}

static void test_region_evicted_while_decoding_still_decodes_exactly(void **state)
{
	struct evictor e = {0};
	pthread_t th;
	struct fx f;
	int ok = 0, failed = 0;

	(void)state;
	fx_init(&f, LAYER_MAJOR);
	if (!evict(&f, 0, 1)) {
		fx_free(&f);
		T_SKIP(T_NO_FLASH_TIER);
	}
	e.f = &f;
	T_OK(pthread_create(&th, NULL, evict_loop, &e));
	for (int i = 0; i < (RUNNING_ON_VALGRIND ? 3 : 20); i++) {
		int ret = decode_tier(&f, 0, NULL);

		if (ret == 0) {
			expect_ref(&f, "decode racing an evict loop");
			ok++;
		} else {
			/* An error is allowed, a wrong number is not: nothing was written. */
			for (size_t k = 0; k < sizeof(f.o) / ES; k++)
				if (f.o[k] != 0xffff)
					fail_msg("decode failed (%s) but wrote element %zu",
						 kvmm_strerror(ret), k);
			print_message("decode racing an evict loop: %s\n", kvmm_strerror(ret));
			failed++;
		}
	}
	atomic_store(&e.stop, true);
	pthread_join(th, NULL);
	print_message("decodes: %d exact, %d failed cleanly; evict rounds %d (%d refused)\n", ok,
		      failed, e.rounds, e.busy);
	T_EQ(failed, 0);
	fx_free(&f);
}

static void test_failed_flash_read_fails_decode_and_writes_nothing(void **state)
{
	struct fx f;
	int ret;

	(void)state;
	fx_init(&f, LAYER_MAJOR);
	if (!evict(&f, 0, region_bytes(LAYER_MAJOR) / CHUNK)) {
		fx_free(&f);
		T_SKIP(T_NO_FLASH_TIER);
	}
	ret = kvmm_test_fail_io(f.ctx, 1);
	if (ret == -ENOENT || ret == -EACCES || ret == -EPERM) {
		fx_free(&f);
		T_SKIP("the module's fault injection needs debugfs and root");
	}
	T_OK(ret);
	T_EQ(decode_tier(&f, 0, NULL), -EIO);
	for (size_t k = 0; k < sizeof(f.o) / ES; k++)
		if (f.o[k] != 0xffff)
			fail_msg("decode failed but wrote element %zu", k);
	/* The chunk stayed on flash: the next decode reads it and is exact. */
	T_OK(kvmm_test_fail_io(f.ctx, 0));
	T_OK(decode_tier(&f, 0, NULL));
	expect_ref(&f, "after a failed read");
	fx_free(&f);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_layer_major_partly_on_flash_decodes_bitwise_as_resident),
	    cmocka_unit_test(test_token_major_partly_on_flash_decodes_bitwise_as_resident),
	    cmocka_unit_test(test_short_items_across_chunk_edges_decode_bitwise_as_resident),
	    cmocka_unit_test(test_region_evicted_while_decoding_still_decodes_exactly),
	    cmocka_unit_test(test_failed_flash_read_fails_decode_and_writes_nothing),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	t_require_flash();
	return cmocka_run_group_tests_name("attn_tier", tests, NULL, NULL);
}
