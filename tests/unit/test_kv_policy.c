/* SPDX-License-Identifier: MIT */
/* Auto-swap policy: under a budget, step swaps out the lowest-priority,
 * least recently stepped unpinned slots and reports them. */
#include "kv_helpers.h"
#include "release_check.h"

#define CHUNK	   (64u << 10)
#define SLOT_BYTES (4 * 8ull * CHUNK) /* a full layer-major slot */

struct fx {
	struct kvmm_ctx *ctx;
	struct kvmm_kv *kv;
	struct kvmm_kv_config c;
	uint32_t evicted[8];
	uint32_t nevicted;
};

static void on_evict(void *arg, uint32_t slot, enum kvmm_tier tier)
{
	struct fx *f = arg;

	T_EQ(tier, KVMM_TIER_FLASH);
	f->evicted[f->nevicted++] = slot;
}

static void open_kv(struct fx *f, uint32_t flags, uint64_t budget)
{
	memset(f, 0, sizeof(*f));
	f->ctx = t_open(CHUNK, 64ull << 20);
	f->c = t_kv_config(KVMM_LAYOUT_LAYER_MAJOR, 2);
	f->c.budget_bytes = budget;
	f->c.flags = flags;
	if (flags & KVMM_KV_AUTO_SWAP) {
		f->c.evict_cb = on_evict;
		f->c.evict_arg = f;
	}
	T_OK(kvmm_kv_create(f->ctx, &f->c, &f->kv));
}

static void close_kv(struct fx *f)
{
	T_OK(kvmm_kv_destroy(f->kv));
	T_OK(kvmm_close(f->ctx));
}

static int step1(struct fx *f, uint32_t slot, uint32_t len)
{
	return kvmm_kv_step(f->kv, 1, &slot, &len);
}

static bool skip_without_flash(struct fx *f)
{
	if (t_flash_tier(f->ctx))
		return false;
	close_kv(f);
	return true;
}

static void test_policy_swaps_least_recently_stepped_slot(void **state)
{
	struct fx f;
	struct kvmm_kv_stats st;
	struct kvmm_op *op;

	(void)state;
	open_kv(&f, KVMM_KV_AUTO_SWAP, 3 * SLOT_BYTES);
	if (skip_without_flash(&f))
		T_SKIP(T_NO_FLASH_TIER);
	for (uint32_t s = 0; s < 3; s++) {
		T_OK(step1(&f, s, 1024));
		t_kv_fill(f.kv, &f.c, s, 1024, 5);
	}
	T_OK(step1(&f, 0, 1024)); /* slot 1 is now the coldest */
	T_OK(step1(&f, 3, 1024));
	T_EQ(f.nevicted, 1);
	T_EQ(f.evicted[0], 1);
	T_EQ(kvmm_kv_slot_state(f.kv, 1), KVMM_SLOT_FLASH);
	T_OK(kvmm_kv_stats(f.kv, &st));
	T_EQ(st.policy_swap_outs, 1);
	T_EQ(st.flash_bytes, SLOT_BYTES);
	T_EQ(st.mapped_bytes, 3 * SLOT_BYTES);
	/* The swapped-out slot's memory went: the cache holds its budget. */
	T_KV_SLOT_BACKED(f.kv, &f.c, 1, 0);
	T_KV_SLOT_BACKED(f.kv, &f.c, 3, SLOT_BYTES);
	T_KV_BACKED(f.kv, 3 * SLOT_BYTES);
	/* The engine must swap it in before stepping it again. */
	T_EQ(step1(&f, 1, 1024), -EAGAIN);
	T_OK(kvmm_kv_free_slot(f.kv, 3));
	T_OK(kvmm_kv_swap_in(f.kv, 1, &op));
	T_OK(kvmm_wait(op));
	t_kv_check(f.kv, &f.c, 1, 1024, 5);
	close_kv(&f);
}

static void test_policy_prefers_low_priority_and_never_pinned(void **state)
{
	struct fx f;

	(void)state;
	open_kv(&f, KVMM_KV_AUTO_SWAP, 3 * SLOT_BYTES);
	if (skip_without_flash(&f))
		T_SKIP(T_NO_FLASH_TIER);
	for (uint32_t s = 0; s < 3; s++)
		T_OK(step1(&f, s, 1024));
	T_OK(kvmm_kv_pin_slot(f.kv, 0)); /* coldest, but pinned */
	T_OK(kvmm_kv_set_priority(f.kv, 1, 5));
	T_OK(kvmm_kv_set_priority(f.kv, 2, 1)); /* hotter than 1, lower priority */
	T_OK(step1(&f, 3, 1024));
	T_EQ(f.nevicted, 1);
	T_EQ(f.evicted[0], 2);
	T_EQ(kvmm_kv_slot_state(f.kv, 0), KVMM_SLOT_ACTIVE);
	T_KV_SLOT_BACKED(f.kv, &f.c, 2, 0);
	T_KV_SLOT_BACKED(f.kv, &f.c, 0, SLOT_BYTES);
	T_KV_BACKED(f.kv, 3 * SLOT_BYTES);
	/* Pinned slots cannot be swapped out by hand either. */
	T_EQ(kvmm_kv_swap_out(f.kv, 0, KVMM_TIER_HOST, NULL), -EAGAIN);
	T_OK(kvmm_kv_unpin_slot(f.kv, 0));
	T_EQ(kvmm_kv_unpin_slot(f.kv, 0), -EINVAL);
	close_kv(&f);
}

static void test_policy_swaps_several_slots_when_one_is_not_enough(void **state)
{
	struct fx f;

	(void)state;
	open_kv(&f, KVMM_KV_AUTO_SWAP, 2 * SLOT_BYTES);
	if (skip_without_flash(&f))
		T_SKIP(T_NO_FLASH_TIER);
	T_OK(step1(&f, 0, 512));
	T_OK(step1(&f, 1, 512));
	T_OK(step1(&f, 2, 1024));
	T_OK(step1(&f, 3, 1024)); /* needs a whole slot: 0 and 1 hold half each */
	T_EQ(f.nevicted, 2);
	T_EQ(f.evicted[0], 0);
	T_EQ(f.evicted[1], 1);
	T_KV_SLOT_BACKED(f.kv, &f.c, 0, 0);
	T_KV_SLOT_BACKED(f.kv, &f.c, 1, 0);
	T_KV_BACKED(f.kv, 2 * SLOT_BYTES);
	close_kv(&f);
}

static void test_without_auto_swap_step_over_budget_fails(void **state)
{
	struct fx f;
	struct kvmm_kv_stats st;

	(void)state;
	open_kv(&f, 0, 3 * SLOT_BYTES);
	for (uint32_t s = 0; s < 3; s++)
		T_OK(step1(&f, s, 1024));
	T_EQ(step1(&f, 3, 1), -ENOMEM);
	T_OK(kvmm_kv_stats(f.kv, &st));
	T_EQ(st.mapped_bytes, 3 * SLOT_BYTES);
	T_EQ(st.policy_swap_outs, 0);
	T_KV_BACKED(f.kv, 3 * SLOT_BYTES);
	close_kv(&f);
}

/* A swap-in is held to the budget as a step is: the policy makes room
 * (from the worker that runs the swap-in), or without it the swap-in fails
 * with -ENOMEM and the slot stays swapped out with its data. */
static void swap_in_within_budget(uint32_t flags)
{
	struct kvmm_op *op;
	struct fx f;

	open_kv(&f, flags, 2 * SLOT_BYTES);
	if (skip_without_flash(&f))
		T_SKIP(T_NO_FLASH_TIER);
	for (uint32_t s = 0; s < 2; s++) {
		T_OK(step1(&f, s, 1024));
		t_kv_fill(f.kv, &f.c, s, 1024, 7);
	}
	T_OK(kvmm_kv_swap_out(f.kv, 0, KVMM_TIER_FLASH, &op));
	T_OK(kvmm_wait(op));
	T_OK(step1(&f, 2, 1024)); /* the budget is full again */
	T_KV_BACKED(f.kv, 2 * SLOT_BYTES);
	T_OK(kvmm_kv_swap_in(f.kv, 0, &op));
	if (!flags) {
		T_EQ(kvmm_wait(op), -ENOMEM);
		T_EQ(kvmm_kv_slot_state(f.kv, 0), KVMM_SLOT_FLASH);
		T_KV_BACKED(f.kv, 2 * SLOT_BYTES);
		T_OK(kvmm_kv_free_slot(f.kv, 2)); /* room: the freed slot is reclaimed */
		T_OK(kvmm_kv_swap_in(f.kv, 0, &op));
	}
	T_OK(kvmm_wait(op));
	T_EQ(kvmm_kv_slot_state(f.kv, 0), KVMM_SLOT_ACTIVE);
	t_kv_check(f.kv, &f.c, 0, 1024, 7);
	if (flags) { /* slot 1, the coldest, made the room */
		T_EQ(f.nevicted, 1);
		T_EQ(f.evicted[0], 1);
		T_EQ(kvmm_kv_slot_state(f.kv, 1), KVMM_SLOT_FLASH);
	}
	T_KV_SLOT_BACKED(f.kv, &f.c, flags ? 1 : 2, 0);
	T_KV_BACKED(f.kv, 2 * SLOT_BYTES);
	close_kv(&f);
}

static void test_swap_in_makes_room_like_step(void **state)
{
	(void)state;
	swap_in_within_budget(KVMM_KV_AUTO_SWAP);
}

static void test_swap_in_over_budget_fails_and_keeps_the_slot(void **state)
{
	(void)state;
	swap_in_within_budget(0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_policy_swaps_least_recently_stepped_slot),
	    cmocka_unit_test(test_policy_prefers_low_priority_and_never_pinned),
	    cmocka_unit_test(test_policy_swaps_several_slots_when_one_is_not_enough),
	    cmocka_unit_test(test_without_auto_swap_step_over_budget_fails),
	    cmocka_unit_test(test_swap_in_makes_room_like_step),
	    cmocka_unit_test(test_swap_in_over_budget_fails_and_keeps_the_slot),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	t_require_flash();
	return cmocka_run_group_tests_name("kv_policy", tests, NULL, NULL);
}
