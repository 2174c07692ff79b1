/* SPDX-License-Identifier: MIT */
/*
 * The prefix index (include/kvmm/prefix.h): chained block hashes, longest
 * cached prefix and its holders, slots that grow, release/acquire, LRU
 * eviction, max_blocks with the eviction callback, bad arguments, threads,
 * and a long random run checked step by step against a plain model.
 */
#include "helpers.h"

#include <pthread.h>

#include <kvmm/prefix.h>

#define BT 4 /* tokens per block */

static struct kvmm_prefix *make(uint64_t max_blocks, void (*cb)(void *, uint32_t), void *arg)
{
	struct kvmm_prefix_config cfg = {.size = sizeof(cfg),
					 .block_tokens = BT,
					 .max_blocks = max_blocks,
					 .seed = 7,
					 .evicted = cb,
					 .arg = arg};
	struct kvmm_prefix *px = NULL;

	assert_int_equal(kvmm_prefix_create(&cfg, &px), 0);
	return px;
}

/* Hashes of the sequence base, base+1, ... of ntok tokens. */
static long hashes_of(struct kvmm_prefix *px, uint32_t base, size_t ntok,
		      struct kvmm_block_hash *out)
{
	uint32_t tok[256];

	assert_true(ntok <= 256);
	for (size_t i = 0; i < ntok; i++)
		tok[i] = base + (uint32_t)i;
	return kvmm_prefix_hash(px, NULL, tok, ntok, out);
}

static bool heq(struct kvmm_block_hash a, struct kvmm_block_hash b)
{
	return a.lo == b.lo && a.hi == b.hi;
}

static void hashes_name_whole_prefixes(void **state)
{
	struct kvmm_prefix *px = make(0, NULL, NULL), *other;
	struct kvmm_block_hash a[8], b[8], c[8];
	uint32_t tok[32];

	(void)state;
	for (int i = 0; i < 32; i++)
		tok[i] = (uint32_t)i * 3;
	/* Only full blocks: 30 tokens are 7 blocks. */
	assert_int_equal(kvmm_prefix_hash(px, NULL, tok, 30, a), 7);
	assert_int_equal(kvmm_prefix_hash(px, NULL, tok, 32, b), 8);
	for (int i = 0; i < 7; i++)
		assert_true(heq(a[i], b[i]));
	/* One token changed in block 5: blocks 0-4 the same, every later one not. */
	tok[21] ^= 1;
	assert_int_equal(kvmm_prefix_hash(px, NULL, tok, 32, c), 8);
	for (int i = 0; i < 5; i++)
		assert_true(heq(b[i], c[i]));
	for (int i = 5; i < 8; i++)
		assert_false(heq(b[i], c[i]));
	tok[21] ^= 1;
	/* Continuing a chain from its last hash gives the same hashes. */
	assert_int_equal(kvmm_prefix_hash(px, &b[3], tok + 16, 16, c), 4);
	for (int i = 0; i < 4; i++)
		assert_true(heq(b[4 + i], c[i]));
	/* Another seed (another model): nothing in common. */
	{
		struct kvmm_prefix_config cfg = {
		    .size = sizeof(cfg), .block_tokens = BT, .seed = 8};

		assert_int_equal(kvmm_prefix_create(&cfg, &other), 0);
		assert_int_equal(kvmm_prefix_hash(other, NULL, tok, 32, c), 8);
		for (int i = 0; i < 8; i++)
			assert_false(heq(b[i], c[i]));
		kvmm_prefix_destroy(other);
	}
	assert_int_equal(kvmm_prefix_hash(px, NULL, tok, 0, NULL), 0);
	assert_int_equal(kvmm_prefix_hash(px, NULL, NULL, 4, a), -EINVAL);
	assert_int_equal(kvmm_prefix_hash(NULL, NULL, tok, 4, a), -EINVAL);
	kvmm_prefix_destroy(px);
}

static void lookup_finds_the_longest_cached_prefix_and_its_holders(void **state)
{
	struct kvmm_prefix *px = make(0, NULL, NULL);
	struct kvmm_block_hash sys[16], req[16];
	struct kvmm_prefix_stats st;
	uint32_t slots[16];
	size_t m = 99;

	(void)state;
	/* Slot 3 holds a 40-token system prompt: 10 blocks. */
	assert_int_equal(hashes_of(px, 1000, 40, sys), 10);
	assert_int_equal(kvmm_prefix_insert(px, 3, sys, 10), 0);
	/* A request with the same 32 tokens, then its own. */
	assert_int_equal(hashes_of(px, 1000, 32, req), 8);
	{
		uint32_t tok[64];

		for (int i = 0; i < 32; i++)
			tok[i] = 1000 + (uint32_t)i;
		for (int i = 32; i < 64; i++)
			tok[i] = 5000 + (uint32_t)i;
		assert_int_equal(kvmm_prefix_hash(px, NULL, tok, 64, req), 16);
	}
	assert_int_equal(kvmm_prefix_lookup(px, req, 16, slots, &m), 0);
	assert_int_equal(m, 8);
	for (int i = 0; i < 8; i++)
		assert_int_equal(slots[i], 3);
	/* It runs in slot 9 with all 16 blocks; the first 8 are held twice. */
	assert_int_equal(kvmm_prefix_insert(px, 9, req, 16), 0);
	assert_int_equal(kvmm_prefix_stats(px, &st), 0);
	assert_int_equal(st.blocks, 10 + 8);
	assert_int_equal(st.slots, 2);
	assert_int_equal(kvmm_prefix_lookup(px, req, 16, slots, &m), 0);
	assert_int_equal(m, 16);
	for (int i = 8; i < 16; i++)
		assert_int_equal(slots[i], 9);
	/* Slot 3 goes: the shared blocks stay, now held by slot 9. */
	assert_int_equal(kvmm_prefix_remove(px, 3), 0);
	assert_int_equal(kvmm_prefix_lookup(px, sys, 10, slots, &m), 0);
	assert_int_equal(m, 8);
	for (int i = 0; i < 8; i++)
		assert_int_equal(slots[i], 9);
	assert_int_equal(kvmm_prefix_stats(px, &st), 0);
	assert_int_equal(st.blocks, 16);
	assert_int_equal(st.lookups, 3);
	assert_int_equal(st.lookup_blocks, 16 + 16 + 10);
	assert_int_equal(st.hit_blocks, 8 + 16 + 8);
	assert_int_equal(kvmm_prefix_remove(px, 3), -ENOENT);
	assert_int_equal(kvmm_prefix_lookup(px, req, 0, NULL, &m), 0);
	assert_int_equal(m, 0);
	kvmm_prefix_destroy(px);
}

static void a_slot_grows_and_must_keep_its_beginning(void **state)
{
	struct kvmm_prefix *px = make(0, NULL, NULL);
	struct kvmm_block_hash h[32], other[32];
	size_t n;

	(void)state;
	assert_int_equal(hashes_of(px, 1, 128, h), 32);
	assert_int_equal(hashes_of(px, 2, 128, other), 32);
	assert_int_equal(kvmm_prefix_insert(px, 0, h, 4), 0);
	assert_int_equal(kvmm_prefix_insert(px, 0, h, 32), 0); /* decode went on */
	assert_int_equal(kvmm_prefix_slot_blocks(px, 0, &n), 0);
	assert_int_equal(n, 32);
	assert_int_equal(kvmm_prefix_insert(px, 0, h, 2), 0); /* a prefix: no change */
	assert_int_equal(kvmm_prefix_slot_blocks(px, 0, &n), 0);
	assert_int_equal(n, 32);
	/* Another sequence into the same slot: refused, nothing changed. */
	assert_int_equal(kvmm_prefix_insert(px, 0, other, 8), -EINVAL);
	assert_int_equal(kvmm_prefix_slot_blocks(px, 0, &n), 0);
	assert_int_equal(n, 32);
	/* A hash at a position it does not have in its chain: refused. */
	assert_int_equal(kvmm_prefix_insert(px, 1, h + 1, 3), -EEXIST);
	assert_int_equal(kvmm_prefix_slot_blocks(px, 1, &n), -ENOENT);
	/* The same hash twice in one insert: refused, nothing left behind. */
	{
		struct kvmm_block_hash twice[3] = {other[0], other[1], other[1]};
		struct kvmm_prefix_stats st;

		assert_int_equal(kvmm_prefix_insert(px, 2, twice, 3), -EEXIST);
		assert_int_equal(kvmm_prefix_stats(px, &st), 0);
		assert_int_equal(st.blocks, 32);
		assert_int_equal(st.slots, 1);
	}
	kvmm_prefix_destroy(px);
}

static void released_slots_are_evicted_least_recently_used_first(void **state)
{
	struct kvmm_prefix *px = make(0, NULL, NULL);
	struct kvmm_block_hash h[4][8];
	struct kvmm_prefix_stats st;
	uint32_t slots[8], victim;
	size_t m;

	(void)state;
	for (uint32_t s = 0; s < 4; s++) {
		assert_int_equal(hashes_of(px, 100 * (s + 1), 32, h[s]), 8);
		assert_int_equal(kvmm_prefix_insert(px, s, h[s], 8), 0);
	}
	/* In use: nothing to evict. */
	assert_int_equal(kvmm_prefix_evict(px, &victim), -ENOENT);
	for (uint32_t s = 0; s < 4; s++)
		assert_int_equal(kvmm_prefix_release(px, s), 0);
	assert_int_equal(kvmm_prefix_release(px, 0), -EINVAL);
	assert_int_equal(kvmm_prefix_release(px, 77), -ENOENT);
	assert_int_equal(kvmm_prefix_stats(px, &st), 0);
	assert_int_equal(st.cached_slots, 4);
	/* A lookup hit on slot 0 makes it recent; slot 1 is taken back. */
	assert_int_equal(kvmm_prefix_lookup(px, h[0], 8, slots, &m), 0);
	assert_int_equal(m, 8);
	assert_int_equal(kvmm_prefix_acquire(px, 1), 0);
	assert_int_equal(kvmm_prefix_evict(px, &victim), 0);
	assert_int_equal(victim, 2);
	assert_int_equal(kvmm_prefix_evict(px, &victim), 0);
	assert_int_equal(victim, 3);
	assert_int_equal(kvmm_prefix_evict(px, &victim), 0);
	assert_int_equal(victim, 0);
	assert_int_equal(kvmm_prefix_evict(px, &victim), -ENOENT);
	assert_int_equal(kvmm_prefix_stats(px, &st), 0);
	assert_int_equal(st.slots, 1);
	assert_int_equal(st.cached_slots, 0);
	assert_int_equal(st.evictions, 3);
	assert_int_equal(st.evicted_blocks, 24);
	assert_int_equal(st.blocks, 8);
	assert_int_equal(kvmm_prefix_lookup(px, h[2], 8, slots, &m), 0);
	assert_int_equal(m, 0);
	/* Inserting a cached slot again puts it in use. */
	assert_int_equal(kvmm_prefix_release(px, 1), 0);
	assert_int_equal(kvmm_prefix_insert(px, 1, h[1], 8), 0);
	assert_int_equal(kvmm_prefix_evict(px, &victim), -ENOENT);
	kvmm_prefix_destroy(px);
}

struct evicted_log {
	uint32_t slots[16];
	int n;
};

static void log_evicted(void *arg, uint32_t slot)
{
	struct evicted_log *log = arg;

	log->slots[log->n++] = slot;
}

static void max_blocks_evicts_cached_slots_through_the_callback(void **state)
{
	struct evicted_log log = {.n = 0};
	struct kvmm_prefix *px = make(20, log_evicted, &log), *strict;
	struct kvmm_block_hash h[4][8];
	struct kvmm_prefix_stats st;

	(void)state;
	for (uint32_t s = 0; s < 4; s++)
		assert_int_equal(hashes_of(px, 100 * (s + 1), 32, h[s]), 8);
	assert_int_equal(kvmm_prefix_insert(px, 0, h[0], 8), 0);
	assert_int_equal(kvmm_prefix_insert(px, 1, h[1], 8), 0);
	/* 16 + 8 > 20 and nothing is cached: no room. */
	assert_int_equal(kvmm_prefix_insert(px, 2, h[2], 8), -ENOSPC);
	assert_int_equal(log.n, 0);
	assert_int_equal(kvmm_prefix_release(px, 1), 0);
	assert_int_equal(kvmm_prefix_release(px, 0), 0);
	/* Slot 1 was released first: it goes. */
	assert_int_equal(kvmm_prefix_insert(px, 2, h[2], 8), 0);
	assert_int_equal(log.n, 1);
	assert_int_equal(log.slots[0], 1);
	assert_int_equal(kvmm_prefix_stats(px, &st), 0);
	assert_int_equal(st.blocks, 16);
	assert_int_equal(st.evictions, 1);
	kvmm_prefix_destroy(px);

	/* Without a callback an insert never evicts. */
	strict = make(8, NULL, NULL);
	assert_int_equal(kvmm_prefix_insert(strict, 0, h[0], 8), 0);
	assert_int_equal(kvmm_prefix_release(strict, 0), 0);
	assert_int_equal(kvmm_prefix_insert(strict, 1, h[1], 1), -ENOSPC);
	assert_int_equal(kvmm_prefix_stats(strict, &st), 0);
	assert_int_equal(st.slots, 1);
	kvmm_prefix_destroy(strict);
}

static void bad_arguments_are_refused(void **state)
{
	struct kvmm_prefix_config cfg = {.size = sizeof(cfg), .block_tokens = 0};
	struct kvmm_prefix *px = NULL;
	struct kvmm_block_hash h[1] = {{1, 2}};
	uint32_t slot;
	size_t m;

	(void)state;
	assert_int_equal(kvmm_prefix_create(&cfg, &px), -EINVAL);
	cfg.block_tokens = 16;
	cfg.size = 8;
	assert_int_equal(kvmm_prefix_create(&cfg, &px), -EINVAL);
	assert_int_equal(kvmm_prefix_create(NULL, &px), -EINVAL);
	cfg.size = sizeof(cfg);
	assert_int_equal(kvmm_prefix_create(&cfg, NULL), -EINVAL);
	assert_int_equal(kvmm_prefix_create(&cfg, &px), 0);
	assert_int_equal(kvmm_prefix_insert(px, 1U << 24, h, 1), -EINVAL);
	assert_int_equal(kvmm_prefix_insert(px, 0, NULL, 1), -EINVAL);
	assert_int_equal(kvmm_prefix_insert(NULL, 0, h, 1), -EINVAL);
	assert_int_equal(kvmm_prefix_lookup(px, h, 1, NULL, &m), -EINVAL);
	assert_int_equal(kvmm_prefix_lookup(px, h, 1, &slot, NULL), -EINVAL);
	assert_int_equal(kvmm_prefix_evict(px, NULL), -EINVAL);
	assert_int_equal(kvmm_prefix_stats(px, NULL), -EINVAL);
	assert_int_equal(kvmm_prefix_slot_blocks(px, 0, NULL), -EINVAL);
	assert_int_equal(kvmm_prefix_acquire(px, 0), -ENOENT);
	assert_int_equal(kvmm_prefix_acquire(NULL, 0), -EINVAL);
	kvmm_prefix_destroy(px);
	kvmm_prefix_destroy(NULL);
}

/* ---- a random run against a model ------------------------------------- */

#define MSLOTS	24
#define MCHAINS 6
#define MBLOCKS 40

struct model {
	bool live[MSLOTS];
	int chain[MSLOTS]; /* which chain the slot holds */
	size_t n[MSLOTS];
	int users[MSLOTS];
	uint64_t used_at[MSLOTS]; /* when it was last cached or hit */
	uint64_t clock;
};

static struct kvmm_block_hash chains[MCHAINS][MBLOCKS];

/* Chains share beginnings: chain c shares its first 8 * (c % 3) blocks with chain 0. */
static void make_chains(struct kvmm_prefix *px)
{
	uint32_t tok[MBLOCKS * BT];

	for (int c = 0; c < MCHAINS; c++) {
		for (int i = 0; i < MBLOCKS * BT; i++)
			tok[i] = i < 8 * BT * (c % 3) ? (uint32_t)i : (uint32_t)(c * 100000 + i);
		assert_int_equal(kvmm_prefix_hash(px, NULL, tok, MBLOCKS * BT, chains[c]), MBLOCKS);
	}
}

/* Block i of chain c is held by a live slot of the model, and by which ones. */
static bool model_holds(const struct model *md, int c, size_t i, uint32_t slot)
{
	return md->live[slot] && md->n[slot] > i && heq(chains[md->chain[slot]][i], chains[c][i]);
}

static void random_operations_agree_with_a_model(void **state)
{
	struct kvmm_prefix *px = make(0, NULL, NULL);
	struct model md = {.clock = 0};
	struct kvmm_prefix_stats st;
	uint64_t seed = 12345;

	(void)state;
	make_chains(px);
	for (int step = 0; step < 20000; step++) {
		uint32_t slot, slots[MBLOCKS];
		int op, c;
		size_t m, want;

		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		op = (int)((seed >> 33) % 6);
		slot = (uint32_t)((seed >> 40) % MSLOTS);
		c = (int)((seed >> 50) % MCHAINS);
		md.clock++;
		switch (op) {
		case 0: { /* insert or grow */
			size_t n = 1 + (seed >> 20) % MBLOCKS;
			int err = kvmm_prefix_insert(px, slot, chains[c], n);
			bool same = true;

			/* A slot's blocks and the new ones must agree where both exist. */
			for (size_t i = 0; md.live[slot] && i < md.n[slot] && i < n; i++)
				same &= heq(chains[md.chain[slot]][i], chains[c][i]);
			if (!same) {
				assert_int_equal(err, -EINVAL);
				break;
			}
			assert_int_equal(err, 0);
			if (!md.live[slot] || n > md.n[slot]) {
				md.chain[slot] = c;
				md.n[slot] = n;
			}
			md.live[slot] = true;
			if (md.users[slot] == 0)
				md.users[slot] = 1;
			break;
		}
		case 1: /* lookup */
			assert_int_equal(kvmm_prefix_lookup(px, chains[c], MBLOCKS, slots, &m), 0);
			want = 0;
			while (want < MBLOCKS) {
				bool any = false;

				for (uint32_t s = 0; s < MSLOTS; s++)
					any |= model_holds(&md, c, want, s);
				if (!any)
					break;
				want++;
			}
			assert_int_equal(m, want);
			for (size_t i = 0; i < m; i++) {
				if (!model_holds(&md, c, i, slots[i]))
					fail_msg("step %d: block %zu of chain %d named slot %u, "
						 "which does not hold it",
						 step, i, c, slots[i]);
				if (md.users[slots[i]] == 0)
					md.used_at[slots[i]] = ++md.clock;
			}
			break;
		case 2: /* release */
			if (!md.live[slot]) {
				assert_int_equal(kvmm_prefix_release(px, slot), -ENOENT);
			} else if (!md.users[slot]) {
				assert_int_equal(kvmm_prefix_release(px, slot), -EINVAL);
			} else {
				assert_int_equal(kvmm_prefix_release(px, slot), 0);
				if (--md.users[slot] == 0)
					md.used_at[slot] = md.clock;
			}
			break;
		case 3: /* acquire */
			assert_int_equal(kvmm_prefix_acquire(px, slot),
					 md.live[slot] ? 0 : -ENOENT);
			if (md.live[slot])
				md.users[slot]++;
			break;
		case 4: { /* evict: the least recently used cached slot */
			int64_t best = -1;
			uint32_t got;

			for (uint32_t s = 0; s < MSLOTS; s++)
				if (md.live[s] && !md.users[s] &&
				    (best < 0 || md.used_at[s] < md.used_at[best]))
					best = s;
			if (best < 0) {
				assert_int_equal(kvmm_prefix_evict(px, &got), -ENOENT);
				break;
			}
			assert_int_equal(kvmm_prefix_evict(px, &got), 0);
			assert_int_equal(got, (uint32_t)best);
			md.live[best] = false;
			md.n[best] = 0;
			md.users[best] = 0;
			break;
		}
		case 5: /* remove, now and then */
			if ((seed >> 12) % 4)
				break;
			assert_int_equal(kvmm_prefix_remove(px, slot), md.live[slot] ? 0 : -ENOENT);
			md.live[slot] = false;
			md.n[slot] = 0;
			md.users[slot] = 0;
			break;
		}
	}
	/* The counts agree with the model too. */
	assert_int_equal(kvmm_prefix_stats(px, &st), 0);
	{
		uint64_t live = 0, cached = 0;

		for (uint32_t s = 0; s < MSLOTS; s++) {
			live += md.live[s];
			cached += md.live[s] && !md.users[s];
		}
		assert_int_equal(st.slots, live);
		assert_int_equal(st.cached_slots, cached);
	}
	kvmm_prefix_destroy(px);
}

/* ---- threads ------------------------------------------------------------ */

struct worker {
	struct kvmm_prefix *px;
	uint32_t first_slot;
	int err;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	struct kvmm_block_hash h[16];
	uint32_t tok[64], slots[16];
	size_t m;

	for (int i = 0; i < 64; i++)
		tok[i] = (uint32_t)i;
	for (int round = 0; round < 2000 && !w->err; round++) {
		uint32_t slot = w->first_slot + (uint32_t)(round % 8);

		tok[63] = (uint32_t)round; /* the last block differs per round */
		if (kvmm_prefix_hash(w->px, NULL, tok, 64, h) != 16)
			w->err = 1;
		if (kvmm_prefix_lookup(w->px, h, 16, slots, &m) || m < 15)
			w->err = 2;
		kvmm_prefix_remove(w->px, slot);
		if (kvmm_prefix_insert(w->px, slot, h, 16))
			w->err = 3;
		if (kvmm_prefix_release(w->px, slot))
			w->err = 4;
	}
	return NULL;
}

static void threads_share_one_index(void **state)
{
	struct kvmm_prefix *px = make(0, NULL, NULL);
	struct worker w[4];
	pthread_t t[4];
	struct kvmm_prefix_stats st;

	(void)state;
	/* A shared 15-block head stays indexed by a slot nobody removes. */
	{
		struct kvmm_block_hash h[15];

		assert_int_equal(hashes_of(px, 0, 60, h), 15);
		assert_int_equal(kvmm_prefix_insert(px, 1000, h, 15), 0);
	}
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){.px = px, .first_slot = (uint32_t)i * 8};
		assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].err, 0);
	}
	assert_int_equal(kvmm_prefix_stats(px, &st), 0);
	assert_int_equal(st.slots, 33);
	assert_int_equal(st.cached_slots, 32);
	kvmm_prefix_destroy(px);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(hashes_name_whole_prefixes),
	    cmocka_unit_test(lookup_finds_the_longest_cached_prefix_and_its_holders),
	    cmocka_unit_test(a_slot_grows_and_must_keep_its_beginning),
	    cmocka_unit_test(released_slots_are_evicted_least_recently_used_first),
	    cmocka_unit_test(max_blocks_evicts_cached_slots_through_the_callback),
	    cmocka_unit_test(bad_arguments_are_refused),
	    cmocka_unit_test(random_operations_agree_with_a_model),
	    cmocka_unit_test(threads_share_one_index),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests_name("prefix", tests, NULL, NULL);
}
