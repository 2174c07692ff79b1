/* SPDX-License-Identifier: MIT */
/*
 * The simulator's kvmm accounting against a real libkvmm KV cache driven
 * through the same decisions: with every request running at once the
 * bytes the simulator holds are exactly the bytes libkvmm maps, for both
 * layouts; and requests swapped out and back in read back every token.
 * Model: 2 layers, 1 KV head, head_dim 128, 2-byte elements (256 bytes per
 * token of one layer's K or V), 64 KiB chunks, no scaling.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../tests/common/t_list.h"
#include "../kvmm-bench/serve/real.h"
#include "../kvmm-bench/serve/sim.h"

static const struct sim_model small = {"small", 2, 1, 128, 2};

static struct sim_config config(enum sim_manager_kind kind, uint64_t budget)
{
	struct sim_config c = {
	    .model = small,
	    .mgr = {.kind = kind, .chunk_bytes = 64 << 10, .max_context = 512},
	    .budget_bytes = budget,
	    .dram_swap_bytes = 256 << 10,
	    .max_batch = 64,
	    .max_prefill_tokens = 1 << 20,
	    .max_context = 512,
	    .costs = {0.01, 1e12, 1000, 1e9, 1e8},
	};
	return c;
}

/* Runs @n requests of prompt @p, output @o at t = 0 with real operations. */
static void run_real(const struct sim_config *c, uint32_t n, uint32_t p, uint32_t o,
		     struct sim_result *res, struct real_stats *st)
{
	struct real_config rc = {
	    .model = c->model,
	    .chunk_bytes = c->mgr.chunk_bytes,
	    .token_major = c->mgr.kind == SIM_KVMM_TOKEN,
	    .scale = 1,
	    .max_slots = n,
	    .max_tokens = c->max_context,
	    .budget_bytes = c->budget_bytes,
	    .dram_swap_bytes = c->dram_swap_bytes,
	    .requests = n,
	};
	struct sim_request *reqs = calloc(n, sizeof(*reqs));
	struct sim_backend be;
	struct real *r;
	char why[160] = "";
	int ret;

	for (uint32_t i = 0; i < n; i++)
		reqs[i] = (struct sim_request){.id = i, .prompt_tokens = p, .output_tokens = o};
	ret = real_open(&rc, &r, why, sizeof(why));
	if (ret) {
		free(reqs);
		print_message("skip: no libkvmm KV cache here: %s\n", why);
		skip();
	}
	real_backend(r, &be);
	assert_int_equal(sim_run(c, reqs, n, &be, NULL, NULL, res), 0);
	real_stats(r, st);
	real_close(r);
	free(reqs);
	if (st->errors)
		fail_msg("libkvmm: %d errors, first: %s", st->errors, st->first_error);
}

/*
 * Eight requests of 100 + 29 tokens (128 at the end), all running at
 * once: token-major holds 2 chunks each (1 KiB per token, 64 tokens per
 * chunk), layer-major 4 parts of 1 chunk each (256 tokens per chunk).
 */
static void test_held_bytes_equal_libkvmm_mapped_bytes(void **state)
{
	static const struct {
		enum sim_manager_kind kind;
		uint64_t per_request;
	} want[] = {{SIM_KVMM_TOKEN, 128 << 10}, {SIM_KVMM_LAYER, 256 << 10}};

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		struct sim_config c = config(want[i].kind, 4 << 20);
		struct sim_result res;
		struct real_stats st;

		run_real(&c, 8, 100, 29, &res, &st);
		assert_int_equal(res.peak_running, 8);
		assert_int_equal(res.peak_held_bytes, 8 * want[i].per_request);
		assert_int_equal(st.peak_mapped_bytes, res.peak_held_bytes);
		assert_int_equal(st.tokens_written, 8 * 128);
		sim_result_free(&res);
	}
}

/*
 * Four requests of 60 + 10 tokens in 256 KiB of token-major chunks
 * (64 KiB = 64 tokens): all four start with one chunk; at 65 tokens each
 * needs a second, so two are swapped out and back in later, and every
 * token they wrote reads back.
 */
static void test_swapped_requests_read_back_every_token(void **state)
{
	struct sim_config c = config(SIM_KVMM_TOKEN, 256 << 10);
	struct sim_result res;
	struct real_stats st;

	(void)state;
	c.dram_swap_bytes = 64 << 10; /* the second victim goes to flash */
	run_real(&c, 4, 60, 10, &res, &st);
	assert_int_equal(res.preemptions, 2);
	assert_int_equal(res.swap_outs_dram, 1);
	assert_int_equal(res.swap_outs_flash, 1);
	assert_int_equal(st.swap_outs, 2);
	assert_int_equal(st.swap_ins, 2);
	assert_int_equal(st.verify_errors, 0);
	assert_true(st.verified_tokens >= 2 * 64);
	sim_result_free(&res);
	/* The DRAM half is checked; a flash swap done to DRAM leaves the flash half untested. */
	if (st.flash_fallbacks) {
		print_message("skip: the flash swap was done to DRAM, so the flash half is not "
			      "tested: %s\n",
			      st.flash_fallback_why);
		skip();
	}
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_held_bytes_equal_libkvmm_mapped_bytes),
	    cmocka_unit_test(test_swapped_requests_read_back_every_token),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
