/* SPDX-License-Identifier: MIT */
/* KV slots survive repeated swaps to DRAM and flash byte for byte, in both
 * layouts, and attention over them gives identical results. */
#include <math.h>

#include "kv_helpers.h"
#include "release_check.h"

static const uint32_t lens[4] = {1000, 1, 333, 64};

struct fx {
	struct kvmm_ctx *ctx;
	struct kvmm_kv *kv;
	struct kvmm_kv_config c;
};

static void open_kv(struct fx *f, uint32_t layout, uint32_t dtype)
{
	uint32_t slots[4] = {0, 1, 2, 3};

	f->ctx = t_open(64 << 10, 256ull << 20);
	f->c = t_kv_config(layout, dtype);
	T_OK(kvmm_kv_create(f->ctx, &f->c, &f->kv));
	T_OK(kvmm_kv_step(f->kv, 4, slots, lens));
	for (uint32_t s = 0; s < 4; s++)
		t_kv_fill(f->kv, &f->c, s, lens[s], 1);
}

static void close_kv(struct fx *f)
{
	T_OK(kvmm_kv_destroy(f->kv));
	T_OK(kvmm_close(f->ctx));
}

static int swap_out(struct fx *f, uint32_t slot, enum kvmm_tier tier)
{
	struct kvmm_op *op;
	int ret = kvmm_kv_swap_out(f->kv, slot, tier, &op);

	return ret ? ret : kvmm_wait(op);
}

static int swap_in(struct fx *f, uint32_t slot)
{
	struct kvmm_op *op;
	int ret = kvmm_kv_swap_in(f->kv, slot, &op);

	return ret ? ret : kvmm_wait(op);
}

static bool flash_ok(struct fx *f)
{
	static int ok = -1;

	if (ok < 0)
		ok = t_flash_tier(f->ctx);
	return ok;
}

static void swap_cycles(uint32_t layout)
{
	struct fx f;
	struct kvmm_kv_stats st;
	struct t_watch w;
	uint64_t held;

	open_kv(&f, layout, 2);
	w = t_watch_kv(f.kv);
	for (uint32_t round = 0; round < 3; round++) {
		for (uint32_t s = 0; s < 4; s++) {
			enum kvmm_tier tier =
			    (s + round) % 2 && flash_ok(&f) ? KVMM_TIER_FLASH : KVMM_TIER_HOST;
			uint64_t bytes = t_kv_slot_bytes(&f.c, lens[s]);

			T_KV_SLOT_BACKED(f.kv, &f.c, s, bytes);
			held = t_held(&w);
			T_OK(swap_out(&f, s, tier));
			/* The state has the tier's value and name. */
			T_EQ(kvmm_kv_slot_state(f.kv, s), (int)tier);
			T_EQ(kvmm_kv_slot_state(f.kv, s),
			     tier == KVMM_TIER_FLASH ? KVMM_SLOT_FLASH : KVMM_SLOT_HOST);
			T_OK(kvmm_kv_stats(f.kv, &st));
			assert_true(tier == KVMM_TIER_FLASH ? st.flash_bytes > 0
							    : st.host_bytes > 0);
			/* Swapped out, to DRAM or flash: the slot's memory went. */
			T_KV_SLOT_BACKED(f.kv, &f.c, s, 0);
			T_GIVEN_BACK(w, held, bytes);
			/* Slots not swapped out yet keep working. */
			if (s + 1 < 4)
				t_kv_check(f.kv, &f.c, s + 1, lens[s + 1], round + 1);
		}
		T_KV_BACKED(f.kv, 0);
		for (uint32_t s = 0; s < 4; s++) {
			T_OK(swap_in(&f, s));
			T_EQ(kvmm_kv_slot_state(f.kv, s), KVMM_SLOT_ACTIVE);
			T_KV_SLOT_BACKED(f.kv, &f.c, s, t_kv_slot_bytes(&f.c, lens[s]));
			t_kv_check(f.kv, &f.c, s, lens[s], round + 1);
			/* New data for the next round. */
			t_kv_fill(f.kv, &f.c, s, lens[s], round + 2);
		}
	}
	T_OK(kvmm_kv_stats(f.kv, &st));
	T_EQ(st.host_bytes, 0);
	T_EQ(st.flash_bytes, 0);
	T_EQ(st.swap_outs, 12);
	T_EQ(st.swap_ins, 12);
	close_kv(&f);
}

static void test_layer_major_slots_survive_swap_cycles_byte_exact(void **state)
{
	(void)state;
	swap_cycles(KVMM_LAYOUT_LAYER_MAJOR);
}

static void test_token_major_slots_survive_swap_cycles_byte_exact(void **state)
{
	(void)state;
	swap_cycles(KVMM_LAYOUT_TOKEN_MAJOR);
}

/*
 * Reference decode attention (f32, GQA with 2 query heads per KV head)
 * straight over the returned strided tensors: out[layer][qhead][dim].
 */
static void attention(struct kvmm_kv *kv, const struct kvmm_kv_config *c, uint32_t slot,
		      uint32_t len, const float *q, float *out)
{
	uint32_t qh = 2 * c->kv_heads, d = c->head_dim;
	float *p = malloc(len * sizeof(float));

	for (uint32_t l = 0; l < c->layers; l++) {
		struct kvmm_kv_tensor k, v;

		T_OK(kvmm_kv_tensor(kv, l, KVMM_K, &k));
		T_OK(kvmm_kv_tensor(kv, l, KVMM_V, &v));
		for (uint32_t h = 0; h < qh; h++) {
			const float *qv = q + ((size_t)l * qh + h) * d;
			float *o = out + ((size_t)l * qh + h) * d, mx = -INFINITY, sum = 0;
			uint32_t kh = h / 2;

			for (uint32_t t = 0; t < len; t++) {
				const float *kr = (const float *)k.base + slot * k.slot_stride +
						  t * k.token_stride + kh * k.head_stride;
				float s = 0;

				for (uint32_t i = 0; i < d; i++)
					s += qv[i] * kr[i * k.dim_stride];
				p[t] = s / sqrtf((float)d);
				mx = fmaxf(mx, p[t]);
			}
			for (uint32_t t = 0; t < len; t++)
				sum += p[t] = expf(p[t] - mx);
			for (uint32_t i = 0; i < d; i++)
				o[i] = 0;
			for (uint32_t t = 0; t < len; t++) {
				const float *vr = (const float *)v.base + slot * v.slot_stride +
						  t * v.token_stride + kh * v.head_stride;

				for (uint32_t i = 0; i < d; i++)
					o[i] += p[t] / sum * vr[i * v.dim_stride];
			}
		}
	}
	free(p);
}

/* Random f32 in [-1, 1) for K, V and q, written through the tensors. */
static void fill_f32(struct kvmm_kv *kv, const struct kvmm_kv_config *c, uint32_t slot,
		     uint32_t len)
{
	uint64_t x = 88172645463325252ULL + slot;

	for (uint32_t l = 0; l < c->layers; l++)
		for (uint32_t w = 0; w < 2; w++)
			for (uint32_t t = 0; t < len; t++) {
				float *row = (float *)t_row(kv, l, w, slot, t);

				for (uint32_t i = 0; i < c->kv_heads * c->head_dim; i++) {
					x ^= x << 13, x ^= x >> 7, x ^= x << 17;
					row[i] = (float)(x >> 40) / (float)(1 << 23) - 1.0f;
				}
			}
}

static void attention_identical(uint32_t layout)
{
	struct fx f;
	size_t n;
	float *q, *before, *after;

	open_kv(&f, layout, 4);
	n = (size_t)f.c.layers * 2 * f.c.kv_heads * f.c.head_dim;
	q = malloc(n * sizeof(float));
	before = malloc(n * sizeof(float));
	after = malloc(n * sizeof(float));
	for (size_t i = 0; i < n; i++)
		q[i] = (float)((i * 7919) % 200) / 100.0f - 1.0f;
	for (uint32_t s = 0; s < 4; s++)
		fill_f32(f.kv, &f.c, s, lens[s]);
	for (uint32_t s = 0; s < 4; s++) {
		attention(f.kv, &f.c, s, lens[s], q, before);
		T_OK(swap_out(&f, s, flash_ok(&f) ? KVMM_TIER_FLASH : KVMM_TIER_HOST));
		T_KV_SLOT_BACKED(f.kv, &f.c, s, 0);
		T_OK(swap_in(&f, s));
		/* Unwritten since it came back (from flash: clean), it still goes. */
		T_OK(swap_out(&f, s, KVMM_TIER_HOST));
		T_KV_SLOT_BACKED(f.kv, &f.c, s, 0);
		T_OK(swap_in(&f, s));
		attention(f.kv, &f.c, s, lens[s], q, after);
		if (memcmp(before, after, n * sizeof(float))) {
			long d = t_diff(before, after, n * sizeof(float)) / (long)sizeof(float);

			fail_msg("slot %u output %ld: expected %.9g, seen %.9g", s, d, before[d],
				 after[d]);
		}
	}
	free(q);
	free(before);
	free(after);
	close_kv(&f);
}

static void test_attention_identical_after_swaps_layer_major(void **state)
{
	(void)state;
	attention_identical(KVMM_LAYOUT_LAYER_MAJOR);
}

static void test_attention_identical_after_swaps_token_major(void **state)
{
	(void)state;
	attention_identical(KVMM_LAYOUT_TOKEN_MAJOR);
}

/* A swap moves what step made resident (seq_len + lookahead); memory the
 * slot mapped beyond that goes, and comes back only as the slot grows. */
static void swap_moves_what_step_made_resident(uint32_t layout)
{
	uint64_t small = 0, big;
	struct kvmm_kv_stats st;
	struct fx f;

	open_kv(&f, layout, 2);
	big = t_kv_slot_bytes(&f.c, lens[0]);
	small = t_kv_slot_bytes(&f.c, 10);
	assert_true(small < big);
	for (int k = 0; k < 2; k++) {
		enum kvmm_tier tier = k && flash_ok(&f) ? KVMM_TIER_FLASH : KVMM_TIER_HOST;

		T_OK(kvmm_kv_step(f.kv, 1, (uint32_t[]){0}, (uint32_t[]){10}));
		T_KV_SLOT_BACKED(f.kv, &f.c, 0, k ? small : big); /* a shorter step keeps it */
		T_OK(swap_out(&f, 0, tier));
		T_KV_SLOT_BACKED(f.kv, &f.c, 0, 0);
		T_OK(kvmm_kv_stats(f.kv, &st));
		T_EQ(tier == KVMM_TIER_HOST ? st.host_bytes : st.flash_bytes, small);
		T_OK(swap_in(&f, 0));
		T_KV_SLOT_BACKED(f.kv, &f.c, 0, small);
		t_kv_check(f.kv, &f.c, 0, 10, 1);
	}
	t_kv_check(f.kv, &f.c, 1, lens[1], 1);
	close_kv(&f);
}

static void test_swap_moves_what_step_made_resident_layer_major(void **state)
{
	(void)state;
	swap_moves_what_step_made_resident(KVMM_LAYOUT_LAYER_MAJOR);
}

static void test_swap_moves_what_step_made_resident_token_major(void **state)
{
	(void)state;
	swap_moves_what_step_made_resident(KVMM_LAYOUT_TOKEN_MAJOR);
}

/* A host swap-in publishes the slot whole: waiting for any layer waits
 * for all of it, then its bytes are there (before the op is collected). */
static void test_wait_layer_waits_for_a_host_swap_in(void **state)
{
	struct kvmm_op *op;
	struct fx f;

	(void)state;
	open_kv(&f, KVMM_LAYOUT_LAYER_MAJOR, 2);
	T_OK(swap_out(&f, 0, flash_ok(&f) ? KVMM_TIER_FLASH : KVMM_TIER_HOST));
	T_EQ(kvmm_kv_swap_in_wait_layer(f.kv, 0, 0, NULL), -EAGAIN); /* not swapping in */
	T_OK(kvmm_kv_swap_in(f.kv, 0, &op));
	for (uint32_t l = f.c.layers; l-- > 0;)
		T_OK(kvmm_kv_swap_in_wait_layer(f.kv, 0, l, NULL));
	T_EQ(kvmm_kv_slot_state(f.kv, 0), KVMM_SLOT_ACTIVE);
	T_KV_SLOT_BACKED(f.kv, &f.c, 0, t_kv_slot_bytes(&f.c, lens[0]));
	t_kv_check(f.kv, &f.c, 0, lens[0], 1);
	T_OK(kvmm_wait(op));
	T_OK(kvmm_kv_swap_in_wait_layer(f.kv, 0, 1, NULL)); /* active: nothing to wait for */
	close_kv(&f);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_layer_major_slots_survive_swap_cycles_byte_exact),
	    cmocka_unit_test(test_token_major_slots_survive_swap_cycles_byte_exact),
	    cmocka_unit_test(test_attention_identical_after_swaps_layer_major),
	    cmocka_unit_test(test_attention_identical_after_swaps_token_major),
	    cmocka_unit_test(test_swap_moves_what_step_made_resident_layer_major),
	    cmocka_unit_test(test_swap_moves_what_step_made_resident_token_major),
	    cmocka_unit_test(test_wait_layer_waits_for_a_host_swap_in),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	t_require_flash();
	return cmocka_run_group_tests_name("kv_swap", tests, NULL, NULL);
}
