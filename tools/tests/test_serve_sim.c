/* SPDX-License-Identifier: MIT */
/*
 * The serving simulator's accounting on tiny traces worked out by hand,
 * and the trace generator's determinism. The model is 1 layer, 1 KV head,
 * head_dim 8, 2-byte elements: 16 bytes per token per K or V, 32 bytes
 * per token in all.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../tests/common/t_list.h"
#include "../kvmm-bench/serve/sim.h"

static const struct sim_model tiny = {"tiny", 1, 1, 8, 2};

static struct sim_config config(enum sim_manager_kind kind, uint32_t chunk, uint64_t budget,
				uint32_t max_context)
{
	struct sim_config c = {
	    .model = tiny,
	    .mgr = {.kind = kind,
		    .block_tokens = 16,
		    .chunk_bytes = chunk,
		    .max_context = max_context},
	    .budget_bytes = budget,
	    .dram_swap_bytes = 1 << 20,
	    .max_batch = 256,
	    .max_prefill_tokens = 1 << 20,
	    .max_context = max_context,
	    .costs = {0.01, 1e12, 1000, 1e9, 1e8},
	};
	return c;
}

/* @n requests at t = 0 with the same lengths. */
static struct sim_request *same(uint32_t n, uint32_t prompt, uint32_t output)
{
	struct sim_request *r = calloc(n, sizeof(*r));

	for (uint32_t i = 0; i < n; i++)
		r[i] =
		    (struct sim_request){.id = i, .prompt_tokens = prompt, .output_tokens = output};
	return r;
}

static struct sim_result run(const struct sim_config *c, const struct sim_request *r, uint32_t n)
{
	struct sim_result res;

	assert_int_equal(sim_run(c, r, n, NULL, NULL, NULL, &res), 0);
	assert_int_equal(res.finished, n);
	return res;
}

static void test_manager_bytes_follow_each_layout(void **state)
{
	struct sim_model m;
	struct sim_manager tok = {.kind = SIM_KVMM_TOKEN, .chunk_bytes = 2 << 20};
	struct sim_manager lay = {.kind = SIM_KVMM_LAYER, .chunk_bytes = 2 << 20};
	struct sim_manager pag = {.kind = SIM_PAGED, .block_tokens = 16};
	struct sim_manager sta = {.kind = SIM_STATIC, .max_context = 8192};

	(void)state;
	assert_int_equal(sim_model_find("llama-3-8b", &m), 0);
	assert_int_equal(sim_model_token_bytes(&m), 128 << 10);
	/* Token-major: 2 MiB holds 16 tokens of every layer. */
	assert_int_equal(sim_manager_bytes(&tok, &m, 1), 2 << 20);
	assert_int_equal(sim_manager_bytes(&tok, &m, 16), 2 << 20);
	assert_int_equal(sim_manager_bytes(&tok, &m, 17), 4 << 20);
	/* Layer-major: 64 regions, 2 MiB each holds 1024 tokens of one layer's K or V. */
	assert_int_equal(sim_manager_bytes(&lay, &m, 1), 64ULL * (2 << 20));
	assert_int_equal(sim_manager_bytes(&lay, &m, 1024), 64ULL * (2 << 20));
	assert_int_equal(sim_manager_bytes(&lay, &m, 1025), 128ULL * (2 << 20));
	assert_int_equal(sim_manager_bytes(&pag, &m, 17), 32ULL * (128 << 10));
	assert_int_equal(sim_manager_bytes(&sta, &m, 5), 8192ULL * (128 << 10));
}

static void test_known_models_have_their_shapes(void **state)
{
	struct sim_model m;

	(void)state;
	assert_int_equal(sim_model_find("llama-3-70b-tp8", &m), 0);
	assert_int_equal(m.layers * 1000 + m.kv_heads * 100 + m.head_dim / 128, 80101);
	assert_int_equal(sim_model_find("qwen2.5-7b", &m), 0);
	assert_int_equal(sim_model_token_bytes(&m), 2 * 28 * 4 * 128 * 2);
	assert_int_equal(sim_model_find("mistral-7b", &m), 0);
	assert_int_equal(sim_model_token_bytes(&m), 128 << 10);
	assert_int_equal(sim_model_parse("2:3:64:4", &m), 0);
	assert_int_equal(sim_model_token_bytes(&m), 2 * 2 * 3 * 64 * 4);
	assert_int_equal(sim_model_parse("2:3:64:3", &m), -1);
	assert_int_equal(sim_model_find("gpt-5", &m), -1);
}

/*
 * Two requests of prompt 10, output 1 run together in one iteration,
 * holding 10 tokens (320 bytes) each:
 *   static, 64-token reservation: 2048 each -> waste (4096-640)/4096 = 84.375 %
 *   paged, 16-token blocks:        512 each -> (1024-640)/1024      = 37.5 %
 *   kvmm token-major, 4 KiB:      4096 each -> (8192-640)/8192      = 92.1875 %
 *   kvmm layer-major, 4 KiB:  2 x 4096 each -> (16384-640)/16384    = 96.09375 %
 */
static void test_waste_of_each_manager_matches_hand_computation(void **state)
{
	static const struct {
		enum sim_manager_kind kind;
		uint64_t held;
		double waste;
	} want[] = {{SIM_STATIC, 4096, 84.375},
		    {SIM_PAGED, 1024, 37.5},
		    {SIM_KVMM_TOKEN, 8192, 92.1875},
		    {SIM_KVMM_LAYER, 16384, 96.09375}};
	struct sim_request *r = same(2, 10, 1);

	(void)state;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		struct sim_config c = config(want[i].kind, 4096, 1 << 20, 64);
		struct sim_result res = run(&c, r, 2);

		assert_int_equal(res.iterations, 1);
		assert_int_equal(res.peak_running, 2);
		assert_int_equal(res.peak_held_bytes, want[i].held);
		assert_float_equal(res.waste_mean_pct, want[i].waste, 1e-9);
		assert_float_equal(res.waste_p99_pct, want[i].waste, 1e-9);
		assert_int_equal(res.preemptions, 0);
		assert_int_equal(res.output_tokens, 2);
	}
	free(r);
}

/*
 * Eight requests (prompt 10, output 1) against a 2048-byte budget:
 *   static (16 tokens = 512 each): 4 at once, 2 iterations
 *   paged (one 512-byte block):    4 at once
 *   kvmm token-major, 1 KiB chunk: 2 at once, 4 iterations
 *   kvmm layer-major, 512 B chunk: 2 x 512 each, 2 at once
 */
static void test_peak_concurrency_is_what_fits_the_budget(void **state)
{
	static const struct {
		enum sim_manager_kind kind;
		uint32_t chunk, peak;
		uint64_t iterations;
	} want[] = {{SIM_STATIC, 0, 4, 2},
		    {SIM_PAGED, 0, 4, 2},
		    {SIM_KVMM_TOKEN, 1024, 2, 4},
		    {SIM_KVMM_LAYER, 512, 2, 4}};
	struct sim_request *r = same(8, 10, 1);

	(void)state;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		struct sim_config c = config(want[i].kind, want[i].chunk, 2048, 16);
		struct sim_result res = run(&c, r, 8);

		assert_int_equal(res.peak_running, want[i].peak);
		assert_int_equal(res.iterations, want[i].iterations);
		assert_int_equal(res.peak_held_bytes, 2048);
		assert_float_equal(res.mean_running, want[i].peak, 1e-9);
	}
	free(r);
}

/*
 * Four requests of prompt 10, output 10 (19 tokens at the end) in 2048
 * bytes of 16-token blocks (512 bytes): all four start; at 17 tokens each
 * needs a second block, so request 0 preempts request 3 and request 1
 * preempts request 2. The paged manager recomputes them (17 tokens each:
 * 16 in KV plus the last generated one) once 0 and 1 finish.
 */
static void test_paged_preempts_the_latest_admitted_and_recomputes(void **state)
{
	struct sim_request *r = same(4, 10, 10);
	struct sim_config c = config(SIM_PAGED, 0, 2048, 32);
	struct sim_result res = run(&c, r, 4);

	(void)state;
	assert_int_equal(res.peak_running, 4);
	assert_int_equal(res.preemptions, 2);
	assert_int_equal(res.recomputed_tokens, 34);
	assert_int_equal(res.swap_out_dram_bytes + res.swap_out_flash_bytes, 0);
	assert_int_equal(res.output_tokens, 40);
	/*
	 * 0 and 1 finish in iteration 10; 2 and 3 (7 tokens generated when
	 * preempted) are readmitted in 11 generating their 8th and finish in 13.
	 */
	assert_int_equal(res.iterations, 13);
	free(r);
}

/*
 * The same trace with kvmm token-major at 512-byte chunks (16 tokens):
 * the two victims are swapped out with their 512 bytes each and swapped
 * back in after 0 and 1 finish. With 512 bytes of DRAM the second victim
 * goes to flash.
 */
static void test_kvmm_swaps_victims_to_dram_then_flash(void **state)
{
	struct sim_request *r = same(4, 10, 10);
	struct sim_config c = config(SIM_KVMM_TOKEN, 512, 2048, 32);
	struct sim_result res;

	(void)state;
	res = run(&c, r, 4);
	assert_int_equal(res.preemptions, 2);
	assert_int_equal(res.swap_outs_dram, 2);
	assert_int_equal(res.swap_out_dram_bytes, 1024);
	assert_int_equal(res.swap_in_dram_bytes, 1024);
	assert_int_equal(res.recomputed_tokens, 0);
	/* 16 tokens each at 1000 tokens/s would have been recomputed. */
	assert_float_equal(res.swap_as_recompute_s, 0.032, 1e-12);
	/* 2 KiB at 1 GB/s. */
	assert_float_equal(res.swap_time_s, 2048 / 1e9, 1e-15);

	c.dram_swap_bytes = 512;
	res = run(&c, r, 4);
	assert_int_equal(res.swap_outs_dram, 1);
	assert_int_equal(res.swap_outs_flash, 1);
	assert_int_equal(res.swap_out_flash_bytes, 512);
	assert_int_equal(res.swap_in_flash_bytes, 512);
	assert_int_equal(res.peak_flash_swap_bytes, 512);
	free(r);
}

static void test_static_never_preempts(void **state)
{
	struct sim_request *r = same(4, 10, 10);
	struct sim_config c = config(SIM_STATIC, 0, 2048, 32);
	struct sim_result res = run(&c, r, 4);

	(void)state;
	/* 32 tokens x 32 bytes = 1024 reserved each: two at a time. */
	assert_int_equal(res.peak_running, 2);
	assert_int_equal(res.preemptions, 0);
	assert_int_equal(res.iterations, 20);
	free(r);
}

static void test_request_larger_than_the_budget_is_refused(void **state)
{
	struct sim_request *r = same(1, 100, 10);
	struct sim_config c = config(SIM_PAGED, 0, 2048, 256);
	struct sim_result res;

	(void)state;
	assert_int_equal(sim_run(&c, r, 1, NULL, NULL, NULL, &res), -EINVAL);
	free(r);
}

static void test_trace_is_the_same_for_the_same_seed(void **state)
{
	struct sim_trace_config c = {.seed = 7};
	struct sim_request *a, *b;

	(void)state;
	assert_int_equal(sim_trace_preset("chat", &c), 0);
	a = sim_trace_generate(&c);
	b = sim_trace_generate(&c);
	assert_non_null(a);
	assert_non_null(b);
	assert_memory_equal(a, b, c.requests * sizeof(*a));
	free(b);
	c.seed = 8;
	b = sim_trace_generate(&c);
	assert_memory_not_equal(a, b, c.requests * sizeof(*a));
	free(a);
	free(b);
}

static int cmp_u32(const void *x, const void *y)
{
	uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;

	return a < b ? -1 : a > b;
}

static void test_trace_follows_its_distributions(void **state)
{
	struct sim_trace_config c = {.seed = 1};
	struct sim_request *r;
	uint32_t *p;

	(void)state;
	assert_int_equal(sim_trace_preset("chat", &c), 0);
	c.requests = 20000;
	r = sim_trace_generate(&c);
	p = malloc(c.requests * sizeof(*p));
	for (uint32_t i = 0; i < c.requests; i++) {
		p[i] = r[i].prompt_tokens;
		assert_in_range(r[i].prompt_tokens, c.prompt.lo, c.prompt.hi);
		assert_in_range(r[i].output_tokens, c.output.lo, c.output.hi);
		if (i)
			assert_true(r[i].arrival_s >= r[i - 1].arrival_s);
	}
	qsort(p, c.requests, sizeof(*p), cmp_u32);
	/* Median 400 and 24 arrivals per second, within 5 %. */
	assert_in_range(p[c.requests / 2], 380, 420);
	assert_true(r[c.requests - 1].arrival_s > c.requests / 24.0 * 0.95);
	assert_true(r[c.requests - 1].arrival_s < c.requests / 24.0 * 1.05);
	free(p);
	free(r);
	assert_int_equal(sim_trace_preset("batch-offline", &c), 0);
	r = sim_trace_generate(&c);
	assert_float_equal(r[c.requests - 1].arrival_s, 0.0, 0.0);
	free(r);
}

static void test_distributions_parse_and_refuse(void **state)
{
	struct sim_dist d;

	(void)state;
	assert_int_equal(sim_dist_parse("fixed:12", &d), 0);
	assert_int_equal(d.kind, SIM_DIST_FIXED);
	assert_int_equal(sim_dist_parse("uniform:4:9", &d), 0);
	assert_int_equal(d.hi, 9);
	assert_int_equal(sim_dist_parse("lognormal:300:0.5:10:900", &d), 0);
	assert_int_equal(d.lo, 10);
	assert_int_equal(sim_dist_parse("fixed:0", &d), -1);
	assert_int_equal(sim_dist_parse("uniform:9:4", &d), -1);
	assert_int_equal(sim_dist_parse("lognormal:300", &d), -1);
	assert_int_equal(sim_dist_parse("zipf:1", &d), -1);
}

/* Of a 40-token prefix of the tiny model, each layout shares its whole units. */
static void test_shared_bytes_are_the_whole_units_of_the_prefix(void **state)
{
	struct sim_manager pag = {.kind = SIM_PAGED, .block_tokens = 16, .share = true};
	struct sim_manager tok = {.kind = SIM_KVMM_TOKEN, .chunk_bytes = 512, .share = true};
	struct sim_manager lay = {.kind = SIM_KVMM_LAYER, .chunk_bytes = 512, .share = true};
	struct sim_manager sta = {.kind = SIM_STATIC, .max_context = 64, .share = true};
	struct sim_manager off = {.kind = SIM_PAGED, .block_tokens = 16};
	uint64_t saved;

	(void)state;
	/* paged: 2 blocks of 16 tokens x 32 bytes */
	assert_int_equal(sim_manager_shared_bytes(&pag, &tiny, 40, &saved), 1024);
	assert_int_equal(saved, 32);
	/* token-major: 1280 bytes hold 2 whole chunks of 512 (16 tokens each) */
	assert_int_equal(sim_manager_shared_bytes(&tok, &tiny, 40, &saved), 1024);
	assert_int_equal(saved, 32);
	/* layer-major: each of K and V has 640 bytes, 1 whole chunk (32 tokens) */
	assert_int_equal(sim_manager_shared_bytes(&lay, &tiny, 40, &saved), 1024);
	assert_int_equal(saved, 32);
	assert_int_equal(sim_manager_shared_bytes(&lay, &tiny, 31, &saved), 0);
	assert_int_equal(saved, 0);
	assert_int_equal(sim_manager_shared_bytes(&sta, &tiny, 40, &saved), 0);
	assert_int_equal(sim_manager_shared_bytes(&off, &tiny, 40, &saved), 0);
}

/* @n requests at t = 0: prompt 40 of which 32 are group @g's prefix, output 1. */
static struct sim_request *shared(uint32_t n, uint32_t g)
{
	struct sim_request *r = same(n, 40, 1);

	for (uint32_t i = 0; i < n; i++) {
		r[i].share_tokens = 32;
		r[i].share_group = g;
	}
	return r;
}

static void test_a_shared_prefix_is_held_once_and_its_prefill_skipped(void **state)
{
	struct sim_config c = config(SIM_PAGED, 0, 1 << 20, 64);
	struct sim_request *r = shared(4, 0);
	struct sim_result plain, res;

	(void)state;
	plain = run(&c, r, 4);
	/* Each holds 48 tokens (3 blocks) of 32 bytes. */
	assert_int_equal(plain.peak_held_bytes, 4 * 1536);
	assert_int_equal(plain.prefill_tokens, 4 * 40);
	assert_int_equal(plain.prefill_saved_tokens, 0);
	c.mgr.share = true;
	res = run(&c, r, 4);
	/* The prefix's 2 blocks once, then 1 block each. */
	assert_int_equal(res.peak_held_bytes, 1024 + 4 * 512);
	assert_int_equal(res.prefix_misses, 1);
	assert_int_equal(res.prefix_hits, 3);
	assert_int_equal(res.prefill_tokens, 40 + 3 * 8);
	assert_int_equal(res.prefill_saved_tokens, 3 * 32);
	sim_result_free(&plain);
	sim_result_free(&res);
	free(r);
}

static void test_sharing_fits_more_requests_in_the_budget(void **state)
{
	struct sim_config c = config(SIM_KVMM_TOKEN, 512, 4096, 64);
	struct sim_request *r = shared(8, 0);
	struct sim_result plain, res;

	(void)state;
	/* Without sharing each takes 1536 bytes (3 chunks): 2 fit in 4096. */
	plain = run(&c, r, 8);
	assert_int_equal(plain.peak_running, 2);
	/* With it, 1024 once and 512 each: 6 fit. */
	c.mgr.share = true;
	res = run(&c, r, 8);
	assert_int_equal(res.peak_running, 6);
	assert_true(res.peak_held_bytes <= 4096);
	sim_result_free(&plain);
	sim_result_free(&res);
	free(r);
}

static void test_a_cached_prefix_is_dropped_before_anything_is_preempted(void **state)
{
	struct sim_config c = config(SIM_PAGED, 0, 2048, 64);
	struct sim_request *r = shared(2, 0);
	struct sim_result res;

	(void)state;
	c.mgr.share = true;
	/* The second request comes later, with another prefix: no room for both. */
	r[1].arrival_s = 10.0;
	r[1].share_group = 1;
	res = run(&c, r, 2);
	assert_int_equal(res.prefix_misses, 2);
	assert_int_equal(res.prefix_hits, 0);
	assert_int_equal(res.prefix_evictions, 1);
	assert_int_equal(res.preemptions, 0);
	assert_true(res.peak_held_bytes <= 2048);
	sim_result_free(&res);
	free(r);
}

static void test_shared_prefix_traces_carry_their_prefixes(void **state)
{
	struct sim_trace_config cfg = {.seed = 3};
	struct sim_request *r;
	bool seen[8] = {false};

	(void)state;
	assert_int_equal(sim_trace_preset("system-prompt", &cfg), 0);
	r = sim_trace_generate(&cfg);
	for (uint32_t i = 0; i < cfg.requests; i++) {
		assert_int_equal(r[i].share_tokens, 2000);
		assert_int_equal(r[i].share_group, 0);
		assert_true(r[i].prompt_tokens >= 2000 + 8);
	}
	free(r);
	cfg.seed = 3;
	assert_int_equal(sim_trace_preset("few-shot", &cfg), 0);
	r = sim_trace_generate(&cfg);
	for (uint32_t i = 0; i < cfg.requests; i++) {
		assert_int_equal(r[i].share_tokens, 1500);
		assert_true(r[i].share_group < 8);
		seen[r[i].share_group] = true;
	}
	for (int g = 0; g < 8; g++)
		assert_true(seen[g]);
	free(r);
	/* The other presets share nothing. */
	cfg.seed = 3;
	assert_int_equal(sim_trace_preset("chat", &cfg), 0);
	assert_int_equal(cfg.share_tokens, 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_manager_bytes_follow_each_layout),
	    cmocka_unit_test(test_known_models_have_their_shapes),
	    cmocka_unit_test(test_waste_of_each_manager_matches_hand_computation),
	    cmocka_unit_test(test_peak_concurrency_is_what_fits_the_budget),
	    cmocka_unit_test(test_paged_preempts_the_latest_admitted_and_recomputes),
	    cmocka_unit_test(test_kvmm_swaps_victims_to_dram_then_flash),
	    cmocka_unit_test(test_static_never_preempts),
	    cmocka_unit_test(test_request_larger_than_the_budget_is_refused),
	    cmocka_unit_test(test_trace_is_the_same_for_the_same_seed),
	    cmocka_unit_test(test_trace_follows_its_distributions),
	    cmocka_unit_test(test_distributions_parse_and_refuse),
	    cmocka_unit_test(test_shared_bytes_are_the_whole_units_of_the_prefix),
	    cmocka_unit_test(test_a_shared_prefix_is_held_once_and_its_prefill_skipped),
	    cmocka_unit_test(test_sharing_fits_more_requests_in_the_budget),
	    cmocka_unit_test(test_a_cached_prefix_is_dropped_before_anything_is_preempted),
	    cmocka_unit_test(test_shared_prefix_traces_carry_their_prefixes),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
