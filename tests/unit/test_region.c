/* SPDX-License-Identifier: MIT */
/* Host regions: residency, discard, evict/fault-back, prefetch, pins, states. */
#include <signal.h>
#include <sys/mman.h>

#include "helpers.h"
#include "release_check.h"

#define CHUNK  (64u << 10)
#define NCHUNK 16u

struct fx {
	struct kvmm_ctx *ctx;
	struct kvmm_region *r;
	unsigned char *p;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct kvmm_region_config rc = KVMM_REGION_CONFIG_INIT;

	f->ctx = t_open(CHUNK, 64ull << 20);
	rc.bytes = (uint64_t)CHUNK * NCHUNK;
	T_OK(kvmm_region_create(f->ctx, &rc, &f->r));
	f->p = kvmm_region_base(f->r);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (!f)
		return 0; /* already torn down by a skip */
	T_OK(kvmm_region_destroy(f->r));
	T_OK(kvmm_close(f->ctx));
	free(f);
	*state = NULL;
	return 0;
}

/* cmocka does not tear down a skipped test: do it before skipping. */
#define SKIP(...)                                                                                  \
	do {                                                                                       \
		teardown(state);                                                                   \
		T_SKIP(__VA_ARGS__);                                                               \
	} while (0)

static uint8_t chunk_state(struct fx *f, uint64_t c)
{
	uint8_t s = 0xff;

	T_OK(kvmm_region_query(f->r, c, 1, &s));
	/* kvmm.ko also reports DIRTY (no current flash copy); user mode never does. */
	return s & ~KVMM_STATE_DIRTY;
}

static bool faults_allowed(void)
{
	/* Valgrind runs one thread at a time: a thread blocked in a
	 * userfaultfd fault would keep the handler thread from running. */
	return !RUNNING_ON_VALGRIND;
}

static void test_first_touch_reads_zero_and_makes_chunk_resident(void **state)
{
	struct fx *f = *state;
	unsigned char zero[256] = {0};
	struct kvmm_region_stats st;

	if (!faults_allowed())
		SKIP("userfaultfd faults cannot be served under valgrind (check-unit runs it)");
	T_EQ(chunk_state(f, 3), KVMM_STATE_EMPTY);
	T_SAME_BYTES(f->p + 3 * CHUNK + 100, zero, sizeof(zero));
	T_EQ(chunk_state(f, 3), KVMM_STATE_RESIDENT);
	f->p[3 * CHUNK + 5] = 7;
	T_EQ(f->p[3 * CHUNK + 5], 7);
	T_OK(kvmm_region_stats(f->r, &st));
	T_EQ(st.resident_bytes, CHUNK);
	T_EQ(st.zero_fills, 1);
}

static void test_ensure_zero_fills_whole_range(void **state)
{
	struct fx *f = *state;
	struct kvmm_region_stats st;

	T_OK(kvmm_region_ensure(f->r, 2 * CHUNK, 3 * CHUNK));
	for (uint64_t c = 2; c < 5; c++)
		T_EQ(chunk_state(f, c), KVMM_STATE_RESIDENT);
	T_EQ(chunk_state(f, 5), KVMM_STATE_EMPTY);
	for (size_t i = 0; i < 3 * CHUNK; i += 4096)
		T_EQ(f->p[2 * CHUNK + i], 0);
	T_OK(kvmm_region_stats(f->r, &st));
	T_EQ(st.resident_bytes, 3 * CHUNK);
	T_EQ(st.zero_fills, 3);
}

/* Every byte of [p, p + n) is @v. */
static void check_filled(const unsigned char *p, size_t n, unsigned char v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			fail_msg("byte %zu: expected 0x%02x, seen 0x%02x", i, v, p[i]);
}

static void test_discard_makes_range_read_zero_again(void **state)
{
	struct fx *f = *state;
	struct t_watch w = t_watch_region(f->r);
	uint64_t held;

	T_OK(kvmm_region_ensure(f->r, 0, 2 * CHUNK));
	memset(f->p, 0xab, 2 * CHUNK);
	T_BACKED(f->r, 0, 2 * CHUNK);
	held = t_held(&w);
	T_OK(kvmm_region_discard(f->r, 0, CHUNK));
	T_EQ(chunk_state(f, 0), KVMM_STATE_EMPTY);
	T_EQ(chunk_state(f, 1), KVMM_STATE_RESIDENT);
	/* The memory itself went, not just the chunk's state. */
	T_UNBACKED(f->r, 0, CHUNK);
	T_BACKED(f->r, CHUNK, CHUNK);
	T_GIVEN_BACK(w, held, CHUNK);
	/* A plain load (a fault) reads zeros; the neighbour keeps its data. */
	T_READS_ZERO(f->r, 0, CHUNK);
	check_filled(f->p + CHUNK, CHUNK, 0xab);
}

static void test_discard_gives_back_exactly_its_range(void **state)
{
	struct fx *f = *state;
	struct t_watch w = t_watch_region(f->r);
	uint64_t held;

	T_OK(kvmm_region_ensure(f->r, 0, 8 * CHUNK));
	memset(f->p, 0x5c, 8 * CHUNK);
	held = t_held(&w);
	T_OK(kvmm_region_discard(f->r, 2 * CHUNK, 4 * CHUNK));
	T_BACKED(f->r, 0, 2 * CHUNK);
	T_UNBACKED(f->r, 2 * CHUNK, 4 * CHUNK);
	T_BACKED(f->r, 6 * CHUNK, 2 * CHUNK);
	T_GIVEN_BACK(w, held, 4 * CHUNK);
	/* Made resident again by ensure (not a fault): zeros, neighbours intact. */
	T_OK(kvmm_region_ensure(f->r, 0, 8 * CHUNK));
	T_BACKED(f->r, 0, 8 * CHUNK);
	check_filled(f->p, 2 * CHUNK, 0x5c);
	check_filled(f->p + 2 * CHUNK, 4 * CHUNK, 0);
	check_filled(f->p + 6 * CHUNK, 2 * CHUNK, 0x5c);
}

static void test_evict_then_ensure_returns_same_bytes(void **state)
{
	struct fx *f = *state;
	size_t n = 4 * CHUNK;
	unsigned char *ref = malloc(n);
	struct kvmm_region_stats st;
	int ret;

	struct t_watch w = t_watch_region(f->r);
	uint64_t held;

	t_fill(ref, n, 1);
	T_OK(kvmm_region_ensure(f->r, 4 * CHUNK, n));
	memcpy(f->p + 4 * CHUNK, ref, n);
	held = t_held(&w);
	ret = kvmm_region_evict(f->r, 4 * CHUNK, n);
	if (!t_user_mode(f->ctx) && (ret == -EOPNOTSUPP || ret == -ENODEV)) {
		free(ref);
		SKIP(T_NO_FLASH_TIER);
	}
	T_OK(ret);
	for (uint64_t c = 4; c < 8; c++)
		T_EQ(chunk_state(f, c), KVMM_STATE_FLASH);
	T_OK(kvmm_region_stats(f->r, &st));
	T_EQ(st.resident_bytes, 0);
	T_EQ(st.flash_bytes, n);
	T_EQ(st.flash_writes, 4);
	/* Evicted chunks hold no memory. */
	T_UNBACKED(f->r, 4 * CHUNK, n);
	T_REGION_BACKED(f->r, 0);
	T_GIVEN_BACK(w, held, n);
	T_OK(kvmm_region_ensure(f->r, 4 * CHUNK, n));
	T_BACKED(f->r, 4 * CHUNK, n);
	T_SAME_BYTES(f->p + 4 * CHUNK, ref, n);
	T_OK(kvmm_region_stats(f->r, &st));
	T_EQ(st.flash_reads, 4);
	T_EQ(st.flash_bytes, 0);
	free(ref);
}

static void test_touching_evicted_chunk_reads_it_back_not_zeros(void **state)
{
	struct fx *f = *state;
	unsigned char ref[CHUNK];
	struct kvmm_region_stats st;

	if (!faults_allowed())
		SKIP("userfaultfd faults cannot be served under valgrind (check-unit runs it)");
	if (!t_flash_tier(f->ctx))
		SKIP(T_NO_FLASH_TIER);
	t_fill(ref, CHUNK, 2);
	T_OK(kvmm_region_ensure(f->r, 9 * CHUNK, CHUNK));
	memcpy(f->p + 9 * CHUNK, ref, CHUNK);
	T_OK(kvmm_region_evict(f->r, 9 * CHUNK, CHUNK));
	T_EQ(chunk_state(f, 9), KVMM_STATE_FLASH);
	T_UNBACKED(f->r, 9 * CHUNK, CHUNK);
	/* A plain load: the fault handler reads the chunk back. */
	T_SAME_BYTES(f->p + 9 * CHUNK, ref, CHUNK);
	T_EQ(chunk_state(f, 9), KVMM_STATE_RESIDENT);
	T_BACKED(f->r, 9 * CHUNK, CHUNK);
	T_OK(kvmm_region_stats(f->r, &st));
	/* kvmm.ko also counts the fault that mapped the chunk for the memcpy. */
	T_EQ(st.faults, t_user_mode(f->ctx) ? 1 : 2);
	T_EQ(st.flash_reads, 1);
}

static void test_prefetch_is_async_and_restores_data(void **state)
{
	struct fx *f = *state;
	size_t n = 8 * CHUNK;
	unsigned char *ref = malloc(n);
	struct kvmm_op *op = NULL;

	if (!t_flash_tier(f->ctx)) {
		free(ref);
		SKIP(T_NO_FLASH_TIER);
	}
	t_fill(ref, n, 3);
	T_OK(kvmm_region_ensure(f->r, 0, n));
	memcpy(f->p, ref, n);
	T_OK(kvmm_region_evict(f->r, 0, n));
	T_UNBACKED(f->r, 0, n);
	T_OK(kvmm_region_prefetch(f->r, 0, n, &op));
	T_OK(kvmm_wait(op));
	for (uint64_t c = 0; c < 8; c++)
		T_EQ(chunk_state(f, c), KVMM_STATE_RESIDENT);
	T_BACKED(f->r, 0, n);
	T_SAME_BYTES(f->p, ref, n);
	/* Detached: no handle, and the op frees itself. */
	T_OK(kvmm_region_evict(f->r, 0, CHUNK));
	T_OK(kvmm_region_prefetch(f->r, 0, CHUNK, NULL));
	T_OK(kvmm_region_ensure(f->r, 0, CHUNK));
	T_SAME_BYTES(f->p, ref, CHUNK);
	free(ref);
}

static void test_pinned_chunks_are_not_evicted_or_discarded(void **state)
{
	struct fx *f = *state;
	struct kvmm_region_stats st;
	struct t_watch w = t_watch_region(f->r);
	uint64_t held;
	int ret;

	T_OK(kvmm_region_pin(f->r, 0, 2 * CHUNK));
	T_EQ(chunk_state(f, 0), KVMM_STATE_RESIDENT | KVMM_STATE_PINNED);
	f->p[0] = 42;
	T_EQ(kvmm_region_discard(f->r, 0, CHUNK), -EBUSY);
	/* User mode skips pinned chunks; kvmm.ko refuses the whole range. */
	ret = kvmm_region_evict(f->r, 0, 2 * CHUNK);
	if (t_user_mode(f->ctx))
		T_OK(ret);
	else
		assert_true(ret == -EBUSY || ret == -EOPNOTSUPP || ret == -ENODEV);
	T_EQ(chunk_state(f, 0), KVMM_STATE_RESIDENT | KVMM_STATE_PINNED);
	T_EQ(f->p[0], 42);
	T_BACKED(f->r, 0, 2 * CHUNK);
	T_OK(kvmm_region_stats(f->r, &st));
	T_EQ(st.pinned_bytes, 2 * CHUNK);
	/* Pins nest. */
	T_OK(kvmm_region_pin(f->r, 0, CHUNK));
	T_OK(kvmm_region_unpin(f->r, 0, 2 * CHUNK));
	T_EQ(chunk_state(f, 0), KVMM_STATE_RESIDENT | KVMM_STATE_PINNED);
	T_EQ(chunk_state(f, 1), KVMM_STATE_RESIDENT);
	T_OK(kvmm_region_unpin(f->r, 0, CHUNK));
	T_EQ(kvmm_region_unpin(f->r, 0, CHUNK), -EINVAL);
	/* Unpinned, they can go. */
	held = t_held(&w);
	T_OK(kvmm_region_discard(f->r, 0, 2 * CHUNK));
	T_UNBACKED(f->r, 0, 2 * CHUNK);
	T_GIVEN_BACK(w, held, 2 * CHUNK);
}

static void test_discard_frees_flash_copy(void **state)
{
	struct fx *f = *state;
	struct kvmm_region_stats st;

	if (!t_flash_tier(f->ctx))
		SKIP(T_NO_FLASH_TIER);
	T_OK(kvmm_region_ensure(f->r, 0, CHUNK));
	f->p[0] = 9;
	T_OK(kvmm_region_evict(f->r, 0, CHUNK));
	T_OK(kvmm_region_discard(f->r, 0, CHUNK));
	T_EQ(chunk_state(f, 0), KVMM_STATE_EMPTY);
	T_OK(kvmm_region_stats(f->r, &st));
	T_EQ(st.flash_bytes, 0);
	T_UNBACKED(f->r, 0, CHUNK);
	/* Neither the old memory nor the flash copy comes back. */
	T_READS_ZERO(f->r, 0, CHUNK);
}

/* Chunks read back from flash (kvmm.ko keeps their flash copy: they are
 * clean) are discarded like any other: memory gone, zeros when read. */
static void test_discard_frees_chunks_read_back_from_flash(void **state)
{
	struct fx *f = *state;
	struct t_watch w = t_watch_region(f->r);
	uint64_t held;

	if (!t_flash_tier(f->ctx))
		SKIP(T_NO_FLASH_TIER);
	T_OK(kvmm_region_ensure(f->r, 0, 4 * CHUNK));
	memset(f->p, 0x77, 4 * CHUNK);
	T_OK(kvmm_region_evict(f->r, 0, 4 * CHUNK));
	T_OK(kvmm_region_ensure(f->r, 0, 4 * CHUNK));
	T_BACKED(f->r, 0, 4 * CHUNK);
	check_filled(f->p, 4 * CHUNK, 0x77);
	held = t_held(&w);
	T_OK(kvmm_region_discard(f->r, CHUNK, 2 * CHUNK));
	T_UNBACKED(f->r, CHUNK, 2 * CHUNK);
	T_BACKED(f->r, 0, CHUNK);
	T_BACKED(f->r, 3 * CHUNK, CHUNK);
	T_GIVEN_BACK(w, held, 2 * CHUNK);
	T_EQ(chunk_state(f, 1), KVMM_STATE_EMPTY);
	T_EQ(chunk_state(f, 2), KVMM_STATE_EMPTY);
	T_READS_ZERO(f->r, CHUNK, 2 * CHUNK);
	check_filled(f->p, CHUNK, 0x77);
	check_filled(f->p + 3 * CHUNK, CHUNK, 0x77);
}

/* User mode: a store of 64 chunks, full; discarded chunks free their slots. */
static void test_discarded_flash_chunks_give_their_slots_back(void **state)
{
	struct fx *f = *state;
	struct kvmm_config cfg = KVMM_CONFIG_INIT;
	struct kvmm_region_config rc = KVMM_REGION_CONFIG_INIT;
	struct kvmm_region *a, *b;
	struct kvmm_ctx *ctx;

	if (!t_user_mode(f->ctx))
		SKIP("kernel mode: the store size is the module's");
	cfg.flash_dir = t_flash_dir();
	cfg.chunk_bytes = CHUNK;
	cfg.flash_bytes = 64ull * CHUNK;
	T_OK(kvmm_open(&ctx, &cfg));
	rc.bytes = 64ull * CHUNK;
	T_OK(kvmm_region_create(ctx, &rc, &a));
	rc.bytes = CHUNK;
	T_OK(kvmm_region_create(ctx, &rc, &b));
	T_OK(kvmm_region_ensure(a, 0, 64ull * CHUNK));
	T_OK(kvmm_region_ensure(b, 0, CHUNK));
	T_OK(kvmm_region_evict(a, 0, 64ull * CHUNK));
	T_UNBACKED(a, 0, 64ull * CHUNK);
	T_EQ(kvmm_region_evict(b, 0, CHUNK), -ENOSPC);
	/* One chunk's flash copy discarded: exactly one slot is free again. */
	T_OK(kvmm_region_discard(a, 5 * CHUNK, CHUNK));
	T_OK(kvmm_region_evict(b, 0, CHUNK));
	T_OK(kvmm_region_ensure(a, 5 * CHUNK, CHUNK));
	T_EQ(kvmm_region_evict(a, 5 * CHUNK, CHUNK), -ENOSPC);
	T_OK(kvmm_region_destroy(a));
	T_OK(kvmm_region_destroy(b));
	T_OK(kvmm_close(ctx));
}

static void test_region_at_fixed_address_returns_to_reservation(void **state)
{
	struct fx *f = *state;
	struct kvmm_region_config rc = KVMM_REGION_CONFIG_INIT;
	struct kvmm_region *r;
	size_t n = 4 * CHUNK;
	char *va = mmap(NULL, 3 * n, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	struct t_watch w;
	uint64_t held;

	assert_true(va != MAP_FAILED);
	rc.bytes = n;
	rc.addr = va + n;
	T_OK(kvmm_region_create(f->ctx, &rc, &r));
	T_EQ((uintptr_t)kvmm_region_base(r), (uintptr_t)(va + n));
	T_OK(kvmm_region_ensure(r, 0, n));
	va[n] = 1;
	w = t_watch_region(r);
	held = t_held(&w);
	T_OK(kvmm_region_destroy(r));
	/* Its memory is gone, and the range is reserved again, not given to
	 * the next mmap. */
	T_GIVEN_BACK(w, held, n);
	T_EQ(mprotect(va + n, n, PROT_NONE), 0);
	munmap(va, 3 * n);
}

static void test_staging_on_a_chosen_node_round_trips(void **state)
{
	struct kvmm_config cfg = KVMM_CONFIG_INIT;
	struct kvmm_region_config rc = KVMM_REGION_CONFIG_INIT;
	struct kvmm_ctx *ctx;
	struct kvmm_region *r;
	unsigned char ref[CHUNK];

	(void)state;
	/* Node 0 exists wherever libnuma works; elsewhere the plain fallback. */
	cfg.flash_dir = t_flash_dir();
	cfg.chunk_bytes = CHUNK;
	cfg.flash_bytes = 4ull << 20;
	cfg.staging_node = 0;
	cfg.queue_depth = 4;
	T_OK(kvmm_open(&ctx, &cfg));
	if (!t_flash_tier(ctx)) {
		T_OK(kvmm_close(ctx));
		T_SKIP(T_NO_FLASH_TIER);
	}
	rc.bytes = 8 * CHUNK;
	T_OK(kvmm_region_create(ctx, &rc, &r));
	t_fill(ref, CHUNK, 4);
	T_OK(kvmm_region_ensure(r, 0, rc.bytes));
	for (int c = 0; c < 8; c++)
		memcpy((char *)kvmm_region_base(r) + c * CHUNK, ref, CHUNK);
	T_OK(kvmm_region_evict(r, 0, rc.bytes));
	T_OK(kvmm_region_ensure(r, 0, rc.bytes));
	for (int c = 0; c < 8; c++)
		T_SAME_BYTES((char *)kvmm_region_base(r) + c * CHUNK, ref, CHUNK);
	T_OK(kvmm_region_destroy(r));
	T_OK(kvmm_close(ctx));
}

static void test_full_flash_store_gives_enospc_and_keeps_data(void **state)
{
	struct fx *f = *state;
	struct kvmm_region_config rc = KVMM_REGION_CONFIG_INIT;
	struct kvmm_region *big;
	uint8_t s;

	if (!t_user_mode(f->ctx))
		SKIP("kernel mode: the store size is the module's (check-unit runs it in user "
		     "mode)");
	/* The store holds 64 MiB = 1024 chunks; this region has 1040. */
	rc.bytes = 1040ull * CHUNK;
	T_OK(kvmm_region_create(f->ctx, &rc, &big));
	T_OK(kvmm_region_ensure(big, 0, rc.bytes));
	((char *)kvmm_region_base(big))[rc.bytes - 1] = 5;
	T_EQ(kvmm_region_evict(big, 0, rc.bytes), -ENOSPC);
	T_OK(kvmm_region_query(big, 1039, 1, &s));
	T_EQ(s, KVMM_STATE_RESIDENT);
	T_EQ(((char *)kvmm_region_base(big))[rc.bytes - 1], 5);
	T_OK(kvmm_region_destroy(big));
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_first_touch_reads_zero_and_makes_chunk_resident,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ensure_zero_fills_whole_range, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_discard_makes_range_read_zero_again, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_discard_gives_back_exactly_its_range, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_evict_then_ensure_returns_same_bytes, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_touching_evicted_chunk_reads_it_back_not_zeros,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_prefetch_is_async_and_restores_data, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_pinned_chunks_are_not_evicted_or_discarded, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_discard_frees_flash_copy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_discard_frees_chunks_read_back_from_flash, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_discarded_flash_chunks_give_their_slots_back,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_region_at_fixed_address_returns_to_reservation,
					    setup, teardown),
	    cmocka_unit_test(test_staging_on_a_chosen_node_round_trips),
	    cmocka_unit_test_setup_teardown(test_full_flash_store_gives_enospc_and_keeps_data,
					    setup, teardown),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	t_require_flash();
	return cmocka_run_group_tests_name("region", tests, NULL, NULL);
}
