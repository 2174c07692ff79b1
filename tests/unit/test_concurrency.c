/* SPDX-License-Identifier: MIT */
/* One thread steps slots while others swap other slots out and in. */
#include <pthread.h>
#include <stdatomic.h>

#include "kv_helpers.h"
#include "release_check.h"

#define CHUNK  (64u << 10)
#define ROUNDS 6
#define NSLOTS 8

struct shared {
	struct kvmm_ctx *ctx;
	struct kvmm_kv *kv;
	struct kvmm_kv_config c;
	atomic_int errors;
	atomic_int stop;
	int tier;
};

struct swapper {
	struct shared *sh;
	uint32_t slot;
	enum kvmm_tier tier;
};

/* Steps slots 0..3 up to max_tokens, writing each new token. */
static void *stepper(void *arg)
{
	struct shared *sh = arg;
	uint32_t slots[4] = {0, 1, 2, 3}, lens[4] = {0};

	for (uint32_t len = 16; len <= sh->c.max_tokens; len += 16) {
		for (uint32_t i = 0; i < 4; i++)
			lens[i] = len;
		if (kvmm_kv_step(sh->kv, 4, slots, lens)) {
			atomic_fetch_add(&sh->errors, 1);
			break;
		}
		for (uint32_t i = 0; i < 4; i++)
			t_kv_fill(sh->kv, &sh->c, i, len, 1);
	}
	atomic_store(&sh->stop, 1);
	return NULL;
}

/* Swaps one slot out and back until the stepper is done, checking it. */
static void *swapper(void *arg)
{
	struct swapper *sw = arg;
	struct shared *sh = sw->sh;
	int rounds = 0;

	while (!atomic_load(&sh->stop) || rounds < ROUNDS) {
		struct kvmm_op *op;

		if (kvmm_kv_swap_out(sh->kv, sw->slot, sw->tier, &op) || kvmm_wait(op) ||
		    kvmm_kv_swap_in(sh->kv, sw->slot, &op) || kvmm_wait(op)) {
			atomic_fetch_add(&sh->errors, 1);
			break;
		}
		rounds++;
	}
	return NULL;
}

static void concurrent(uint32_t layout)
{
	struct shared sh = {0};
	struct swapper sw[4];
	pthread_t st, tw[4];
	bool flash;
	uint32_t slots[4] = {4, 5, 6, 7}, lens[4] = {100, 256, 511, 1024};

	sh.ctx = t_open(CHUNK, 256ull << 20);
	sh.c = t_kv_config(layout, 2);
	sh.c.max_slots = NSLOTS;
	flash = t_flash_tier(sh.ctx);
	T_OK(kvmm_kv_create(sh.ctx, &sh.c, &sh.kv));
	T_OK(kvmm_kv_step(sh.kv, 4, slots, lens));
	for (uint32_t i = 0; i < 4; i++)
		t_kv_fill(sh.kv, &sh.c, slots[i], lens[i], 2);
	for (uint32_t i = 0; i < 4; i++) {
		sw[i] = (struct swapper){.sh = &sh, .slot = slots[i]};
		sw[i].tier = i % 2 && flash ? KVMM_TIER_FLASH : KVMM_TIER_HOST;
		assert_int_equal(pthread_create(&tw[i], NULL, swapper, &sw[i]), 0);
	}
	assert_int_equal(pthread_create(&st, NULL, stepper, &sh), 0);
	pthread_join(st, NULL);
	for (uint32_t i = 0; i < 4; i++)
		pthread_join(tw[i], NULL);
	T_EQ(atomic_load(&sh.errors), 0);
	for (uint32_t i = 0; i < 4; i++) {
		t_kv_check(sh.kv, &sh.c, i, sh.c.max_tokens, 1);
		t_kv_check(sh.kv, &sh.c, slots[i], lens[i], 2);
	}
	/* Every slot is active: exactly its chunks are resident, nothing leaked. */
	for (uint32_t i = 0; i < 4; i++) {
		T_KV_SLOT_BACKED(sh.kv, &sh.c, i, t_kv_slot_bytes(&sh.c, sh.c.max_tokens));
		T_KV_SLOT_BACKED(sh.kv, &sh.c, slots[i], t_kv_slot_bytes(&sh.c, lens[i]));
	}
	T_OK(kvmm_kv_destroy(sh.kv));
	T_OK(kvmm_close(sh.ctx));
}

static void test_step_and_swaps_from_several_threads_layer_major(void **state)
{
	(void)state;
	concurrent(KVMM_LAYOUT_LAYER_MAJOR);
}

static void test_step_and_swaps_from_several_threads_token_major(void **state)
{
	(void)state;
	concurrent(KVMM_LAYOUT_TOKEN_MAJOR);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_step_and_swaps_from_several_threads_layer_major),
	    cmocka_unit_test(test_step_and_swaps_from_several_threads_token_major),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	t_require_flash();
	return cmocka_run_group_tests_name("concurrency", tests, NULL, NULL);
}
