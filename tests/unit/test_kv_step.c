/* SPDX-License-Identifier: MIT */
/* step() maps memory as sequences grow, and freed slots' memory is reused
 * before anything new is mapped (deferred reclamation). */
#include "kv_helpers.h"
#include "release_check.h"

#define CHUNK (64u << 10)

struct fx {
	struct kvmm_ctx *ctx;
	struct kvmm_kv *kv;
	struct kvmm_kv_config c;
};

static void open_kv(struct fx *f, uint32_t layout, uint32_t lookahead, uint64_t budget)
{
	f->ctx = t_open(CHUNK, 64ull << 20);
	f->c = t_kv_config(layout, 2);
	f->c.lookahead = lookahead;
	f->c.budget_bytes = budget;
	T_OK(kvmm_kv_create(f->ctx, &f->c, &f->kv));
}

static void close_kv(struct fx *f)
{
	T_OK(kvmm_kv_destroy(f->kv));
	T_OK(kvmm_close(f->ctx));
}

static struct kvmm_kv_stats stats(struct fx *f)
{
	struct kvmm_kv_stats st;

	T_OK(kvmm_kv_stats(f->kv, &st));
	return st;
}

static void step1(struct fx *f, uint32_t slot, uint32_t len)
{
	T_OK(kvmm_kv_step(f->kv, 1, &slot, &len));
}

/* Layer-major: 256 bytes per token and part, 8 parts: 256 tokens per chunk. */
static void test_step_maps_whole_chunks_as_sequence_grows(void **state)
{
	struct fx f;
	uint64_t per_chunk_all_parts = 8ull * CHUNK;
	struct t_watch w;
	uint64_t held;

	(void)state;
	open_kv(&f, KVMM_LAYOUT_LAYER_MAJOR, 0, 0);
	T_EQ(stats(&f).mapped_bytes, 0);
	step1(&f, 0, 1);
	T_EQ(stats(&f).mapped_bytes, per_chunk_all_parts);
	T_EQ(stats(&f).used_bytes, 8 * 256);
	step1(&f, 0, 256);
	T_EQ(stats(&f).mapped_bytes, per_chunk_all_parts);
	step1(&f, 0, 257);
	T_EQ(stats(&f).mapped_bytes, 2 * per_chunk_all_parts);
	T_EQ(stats(&f).waste_bytes, 2 * per_chunk_all_parts - 257ull * 8 * 256);
	t_kv_fill(f.kv, &f.c, 0, 257, 1);
	step1(&f, 0, 1024);
	T_EQ(stats(&f).mapped_bytes, 4 * per_chunk_all_parts);
	T_EQ(stats(&f).new_bytes, 4 * per_chunk_all_parts);
	t_kv_check(f.kv, &f.c, 0, 257, 1);
	/* Shrinking seq_len keeps the memory. */
	step1(&f, 0, 10);
	T_EQ(stats(&f).mapped_bytes, 4 * per_chunk_all_parts);
	T_KV_BACKED(f.kv, 4 * per_chunk_all_parts);
	/* Destroying the cache gives all of it back. */
	w = t_watch_kv(f.kv);
	held = t_held(&w);
	close_kv(&f);
	T_GIVEN_BACK(w, held, 4 * per_chunk_all_parts);
}

static void test_lookahead_maps_ahead_of_seq_len(void **state)
{
	struct fx f;

	(void)state;
	open_kv(&f, KVMM_LAYOUT_LAYER_MAJOR, 300, 0);
	step1(&f, 0, 1); /* 301 tokens: two chunks per part */
	T_EQ(stats(&f).mapped_bytes, 2 * 8ull * CHUNK);
	step1(&f, 0, 1000); /* capped at max_tokens */
	T_EQ(stats(&f).mapped_bytes, 4 * 8ull * CHUNK);
	close_kv(&f);
}

static void test_token_major_wastes_less_than_layer_major(void **state)
{
	struct fx lm, tm;
	uint32_t slots[4] = {0, 1, 2, 3}, lens[4] = {3, 40, 257, 700};
	struct kvmm_kv_stats a, b;

	(void)state;
	open_kv(&lm, KVMM_LAYOUT_LAYER_MAJOR, 0, 0);
	T_OK(kvmm_kv_step(lm.kv, 4, slots, lens));
	a = stats(&lm);
	close_kv(&lm);
	open_kv(&tm, KVMM_LAYOUT_TOKEN_MAJOR, 0, 0);
	T_OK(kvmm_kv_step(tm.kv, 4, slots, lens));
	b = stats(&tm);
	close_kv(&tm);
	T_EQ(a.used_bytes, b.used_bytes);
	if (b.waste_bytes >= a.waste_bytes)
		fail_msg("expected token-major waste < layer-major waste %llu, seen %llu",
			 (unsigned long long)a.waste_bytes, (unsigned long long)b.waste_bytes);
}

static void test_freed_slot_memory_is_reused_not_mapped_again(void **state)
{
	struct fx f;
	uint32_t slot;
	struct kvmm_kv_stats before, after;

	(void)state;
	open_kv(&f, KVMM_LAYOUT_LAYER_MAJOR, 0, 0);
	step1(&f, 0, 100);
	step1(&f, 1, 600);
	step1(&f, 2, 300);
	T_OK(kvmm_kv_free_slot(f.kv, 1));
	T_OK(kvmm_kv_free_slot(f.kv, 2));
	before = stats(&f);
	T_EQ(before.mapped_bytes, (1 + 3 + 2) * 8ull * CHUNK); /* freed memory stays */
	T_KV_BACKED(f.kv, (1 + 3 + 2) * 8ull * CHUNK);
	/* 500 tokens need 2 chunks: best fit is slot 2 (2 chunks), not 1 (3). */
	T_OK(kvmm_kv_alloc_slot(f.kv, 500, &slot));
	T_EQ(slot, 2);
	step1(&f, slot, 500);
	after = stats(&f);
	T_EQ(after.new_bytes, before.new_bytes);
	T_EQ(after.reused_bytes - before.reused_bytes, 2 * 8ull * CHUNK);
	T_EQ(after.mapped_bytes, before.mapped_bytes);
	T_KV_BACKED(f.kv, (1 + 3 + 2) * 8ull * CHUNK);
	/* Next: slot 1 (holds 10 tokens), then never-used slot 3. */
	T_OK(kvmm_kv_alloc_slot(f.kv, 10, &slot));
	T_EQ(slot, 1);
	T_OK(kvmm_kv_alloc_slot(f.kv, 10, &slot));
	T_EQ(slot, 3);
	T_EQ(kvmm_kv_alloc_slot(f.kv, 10, &slot), -ENOSPC);
	close_kv(&f);
}

static void test_budget_reclaims_freed_slots_before_failing(void **state)
{
	struct fx f;
	uint32_t len = 1024;
	uint64_t slot = 4 * 8ull * CHUNK;

	(void)state;
	/* Room for two full slots (4 chunks x 8 parts each). */
	open_kv(&f, KVMM_LAYOUT_LAYER_MAJOR, 0, 2 * slot);
	step1(&f, 0, len);
	step1(&f, 1, len);
	t_kv_fill(f.kv, &f.c, 0, len, 3);
	T_EQ(kvmm_kv_step(f.kv, 1, (uint32_t[]){2}, &len), -ENOMEM);
	/* The failed step mapped nothing. */
	T_KV_BACKED(f.kv, 2 * slot);
	T_OK(kvmm_kv_free_slot(f.kv, 0));
	step1(&f, 2, len);
	T_EQ(stats(&f).reclaimed_bytes, slot);
	T_EQ(stats(&f).mapped_bytes, 2 * slot);
	/* Slot 0's memory really went: the cache holds the budget, no more. */
	T_KV_SLOT_BACKED(f.kv, &f.c, 0, 0);
	T_KV_SLOT_BACKED(f.kv, &f.c, 2, slot);
	T_KV_BACKED(f.kv, 2 * slot);
	/* A new sequence in slot 0 (reclaiming slot 1) finds zeros, not the old data. */
	T_OK(kvmm_kv_free_slot(f.kv, 1));
	step1(&f, 0, len);
	T_KV_SLOT_BACKED(f.kv, &f.c, 1, 0);
	T_KV_BACKED(f.kv, 2 * slot);
	T_KV_SLOT_ZERO(f.kv, &f.c, 0, len);
	close_kv(&f);
}

static void test_trim_releases_freed_slots_largest_first(void **state)
{
	struct fx f;
	struct kvmm_kv_stats st;
	struct t_watch w;
	uint64_t held, part = 8ull * CHUNK; /* one chunk in each of the 8 parts */

	(void)state;
	open_kv(&f, KVMM_LAYOUT_LAYER_MAJOR, 0, 0);
	w = t_watch_kv(f.kv);
	step1(&f, 0, 100);
	step1(&f, 1, 600);
	step1(&f, 2, 300);
	t_kv_fill(f.kv, &f.c, 0, 100, 4);
	t_kv_fill(f.kv, &f.c, 1, 600, 4);
	t_kv_fill(f.kv, &f.c, 2, 300, 4);
	T_OK(kvmm_kv_free_slot(f.kv, 1));
	T_OK(kvmm_kv_free_slot(f.kv, 2));
	/* Keep up to 2 chunks x 8 parts: slot 1's 3 chunks go, slot 2's stay. */
	held = t_held(&w);
	T_OK(kvmm_kv_trim(f.kv, 2 * part));
	st = stats(&f);
	T_EQ(st.reclaimed_bytes, 3 * part);
	T_EQ(st.mapped_bytes, (1 + 2) * part);
	T_KV_SLOT_BACKED(f.kv, &f.c, 1, 0);
	T_KV_SLOT_BACKED(f.kv, &f.c, 2, 2 * part);
	T_KV_SLOT_BACKED(f.kv, &f.c, 0, 1 * part);
	T_GIVEN_BACK(w, held, 3 * part);
	held = t_held(&w);
	T_OK(kvmm_kv_trim(f.kv, 0));
	st = stats(&f);
	T_EQ(st.mapped_bytes, 1 * part); /* the active slot keeps its own */
	T_KV_SLOT_BACKED(f.kv, &f.c, 2, 0);
	T_KV_BACKED(f.kv, 1 * part);
	T_GIVEN_BACK(w, held, 2 * part);
	t_kv_check(f.kv, &f.c, 0, 100, 4);
	/* Trimmed memory comes back zeroed to the next sequence in the slot. */
	step1(&f, 1, 600);
	step1(&f, 2, 300);
	T_KV_BACKED(f.kv, (1 + 3 + 2) * part);
	T_KV_SLOT_ZERO(f.kv, &f.c, 1, 600);
	T_KV_SLOT_ZERO(f.kv, &f.c, 2, 300);
	T_EQ(kvmm_kv_trim(NULL, 0), -EINVAL);
	close_kv(&f);
}

/* Under the budget, memory mapped past a slot's need (a reused mapping
 * longer than the new sequence) goes before anything else: the rest of the
 * slot and its data stay. */
static void test_budget_trims_memory_mapped_past_need_first(void **state)
{
	struct fx f;
	uint32_t len = 1024;
	uint64_t part = 8ull * CHUNK, slot = 4 * part;

	(void)state;
	open_kv(&f, KVMM_LAYOUT_LAYER_MAJOR, 0, 2 * slot + part);
	step1(&f, 0, len);
	T_OK(kvmm_kv_free_slot(f.kv, 0));
	step1(&f, 0, 10); /* reuses all 4 chunks per part, needs 1 */
	t_kv_fill(f.kv, &f.c, 0, 10, 6);
	step1(&f, 1, len);
	T_KV_BACKED(f.kv, 2 * slot);
	step1(&f, 2, len); /* fits once slot 0 gives back its 3 chunks per part */
	T_KV_SLOT_BACKED(f.kv, &f.c, 0, part);
	T_KV_SLOT_BACKED(f.kv, &f.c, 2, slot);
	T_KV_BACKED(f.kv, 2 * slot + part);
	T_EQ(stats(&f).mapped_bytes, 2 * slot + part);
	T_EQ(stats(&f).reclaimed_bytes, 0); /* no freed slot was touched */
	t_kv_check(f.kv, &f.c, 0, 10, 6);
	close_kv(&f);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_step_maps_whole_chunks_as_sequence_grows),
	    cmocka_unit_test(test_lookahead_maps_ahead_of_seq_len),
	    cmocka_unit_test(test_token_major_wastes_less_than_layer_major),
	    cmocka_unit_test(test_freed_slot_memory_is_reused_not_mapped_again),
	    cmocka_unit_test(test_budget_reclaims_freed_slots_before_failing),
	    cmocka_unit_test(test_trim_releases_freed_slots_largest_first),
	    cmocka_unit_test(test_budget_trims_memory_mapped_past_need_first),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests_name("kv_step", tests, NULL, NULL);
}
