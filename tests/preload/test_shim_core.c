/* SPDX-License-Identifier: MIT */
/*
 * The shim's parts, called directly (built with ASan/UBSan; the entry
 * points that replace malloc are left out, the sanitizer has its own):
 * rule parsing and matching, the lock-free range table, zeroing and
 * madvise on routed memory, eviction under a writer, the fork copy.
 * What is checked is what a program would see: bytes, and the pages the
 * kernel holds (mincore), not only the shim's counters.
 */
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#include "../unit/helpers.h"
#include "../../userspace/preload/shim.h"

#define MiB (1ull << 20)

/* ---------------------------------------------------------------- rules */

static void test_no_rules_give_the_64MiB_default(void **state)
{
	struct shim_config c;

	(void)state;
	T_EQ(shim_rules_parse(NULL, &c, NULL, 0), 0);
	T_EQ(c.nr_rules, 1);
	T_EQ(c.rules[0].min_bytes, 64 * MiB);
	T_EQ(c.rules[0].calls, SHIM_CALL_ALL);
	T_EQ(c.nr_pools, 1);
	assert_string_equal(c.pools[0].name, "default");
	T_EQ(shim_rules_match(&c, SHIM_CALL_MALLOC, 64 * MiB - 1, NULL), -1);
	T_EQ(shim_rules_match(&c, SHIM_CALL_MMAP, 64 * MiB, NULL), 0);
}

static void test_every_rule_key_is_parsed(void **state)
{
	struct shim_config c;
	char err[256];
	const char *s =
	    "name=kv,sizes=1M-2M|1G-,lib=libggml-base.so:llama-server,calls=aligned+mmap,"
	    "pool=kvpool,chunk=64K,node=0,prio=7,limit=512M,flash=/var/tmp,"
	    "flash_bytes=8G;skip,lib=libcuda.so;min=1G,pool=other";

	(void)state;
	T_EQ(shim_rules_parse(s, &c, err, sizeof(err)), 0);
	T_EQ(c.nr_rules, 3);
	assert_string_equal(c.rules[0].name, "kv");
	T_EQ(c.rules[0].nr_sizes, 2);
	T_EQ(c.rules[0].sizes[0].lo, MiB);
	T_EQ(c.rules[0].sizes[0].hi, 2 * MiB);
	T_EQ(c.rules[0].sizes[1].hi, UINT64_MAX);
	T_EQ(c.rules[0].nr_libs, 2);
	T_EQ(c.rules[0].calls, SHIM_CALL_ALIGNED | SHIM_CALL_MMAP);
	T_EQ(c.rules[0].chunk_bytes, 64 << 10);
	T_EQ(c.rules[0].numa_node, 0);
	T_EQ(c.rules[0].priority, 7);
	assert_string_equal(c.pools[c.rules[0].pool].name, "kvpool");
	T_EQ(c.pools[c.rules[0].pool].limit_bytes, 512 * MiB);
	T_EQ(c.pools[c.rules[0].pool].flash_bytes, 8192 * MiB);
	assert_string_equal(c.pools[c.rules[0].pool].flash_dir, "/var/tmp");
	assert_true(c.rules[1].skip);
	T_EQ(c.nr_pools, 3);
}

static void test_rules_match_size_call_and_library(void **state)
{
	struct shim_config c;

	(void)state;
	T_EQ(shim_rules_parse("skip,lib=libcuda.so;lib=libggml-base.so,min=16M,calls=aligned;"
			      "sizes=100M-200M,calls=malloc",
			      &c, NULL, 0),
	     0);
	/* a prefix up to a dot: the versioned file name matches */
	T_EQ(shim_rules_match(&c, SHIM_CALL_ALIGNED, 16 * MiB, "libggml-base.so.0"), 1);
	T_EQ(shim_rules_match(&c, SHIM_CALL_ALIGNED, 16 * MiB, "libggml-base.so"), 1);
	T_EQ(shim_rules_match(&c, SHIM_CALL_ALIGNED, 16 * MiB, "libggml-base-x.so"), -1);
	T_EQ(shim_rules_match(&c, SHIM_CALL_ALIGNED, 16 * MiB - 1, "libggml-base.so"), -1);
	T_EQ(shim_rules_match(&c, SHIM_CALL_MALLOC, 16 * MiB, "libggml-base.so"), -1);
	T_EQ(shim_rules_match(&c, SHIM_CALL_ALIGNED, 16 * MiB, NULL), -1);
	/* the first rule that matches decides, skip rules too */
	T_EQ(shim_rules_match(&c, SHIM_CALL_ALIGNED, 150 * MiB, "libcuda.so.1"), 0);
	T_EQ(shim_rules_match(&c, SHIM_CALL_MALLOC, 150 * MiB, "a.so"), 2);
	T_EQ(shim_rules_match(&c, SHIM_CALL_MALLOC, 250 * MiB, "a.so"), -1);
	assert_true(shim_rules_need_lib(&c, SHIM_CALL_ALIGNED, 16 * MiB));
	assert_true(shim_rules_need_lib(&c, SHIM_CALL_MALLOC, 150 * MiB)); /* the skip rule */
	assert_false(shim_rules_need_lib(&c, SHIM_CALL_MALLOC, 32 * MiB));
}

static void test_a_bad_rule_is_left_out_with_its_reason(void **state)
{
	struct shim_config c;
	char err[256];
	static const char *const bad[] = {
	    "min=64Q",	      "chunk=3K",    "sizes=2G-1G", "calls=cudaMalloc",		"node=x",
	    "flash=relative", "colour=blue", "limit=",	    "min=99999999999999999999",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[128];

		snprintf(text, sizeof(text), "min=1G;%s", bad[i]);
		T_EQ(shim_rules_parse(text, &c, err, sizeof(err)), 1);
		T_EQ(c.nr_rules, 1); /* the good one stays */
		if (!strstr(err, "rule 2 '") || !strstr(err, bad[i]))
			fail_msg("'%s': the message does not name the rule: %s", bad[i], err);
	}
	/* two rules giving one pool two limits: the second is left out */
	T_EQ(shim_rules_parse("pool=p,limit=1G;pool=p,limit=2G", &c, err, sizeof(err)), 1);
	T_EQ(c.nr_rules, 1);
	T_EQ(c.pools[0].limit_bytes, 1024 * MiB);
	assert_non_null(strstr(err, "already has another limit"));
}

/* --------------------------------------------------------------- ranges */

static void test_range_table_finds_overlaps_in_order(void **state)
{
	(void)state;
	shim_ranges_clear();
	T_OK(shim_ranges_insert(0x30000, 0x40000, 3));
	T_OK(shim_ranges_insert(0x10000, 0x20000, 1));
	T_OK(shim_ranges_insert(0x50000, 0x60000, 5));
	T_EQ(shim_ranges_find(0x10000, 1), 1);
	T_EQ(shim_ranges_find(0x1ffff, 1), 1);
	T_EQ(shim_ranges_find(0x20000, 1), 0);
	T_EQ(shim_ranges_find(0x20000, 0x10001), 3); /* [0x20000, 0x30001) overlaps 3 */
	T_EQ(shim_ranges_find(0x20000, 0x10000), 0);
	T_EQ(shim_ranges_find(0x5ffff, 100), 5);
	assert_true(shim_ranges_maybe(0x10000, 1));
	assert_true(shim_ranges_maybe(0x5ffff, 1)); /* the box ends where the last range does */
	assert_false(shim_ranges_maybe(0x60000, 100));
	assert_false(shim_ranges_maybe(0x0, 0x10000));
	shim_ranges_remove(0x30000);
	T_EQ(shim_ranges_find(0x30000, 1), 0);
	T_EQ(shim_ranges_find(0x50000, 1), 5);
	shim_ranges_remove(0x10000);
	shim_ranges_remove(0x50000);
	T_EQ(shim_ranges_count(), 0);
	assert_false(shim_ranges_maybe(0x50000, 1));
}

static void test_range_table_refuses_past_its_size(void **state)
{
	(void)state;
	shim_ranges_clear();
	for (uintptr_t i = 0; i < SHIM_RANGES_MAX; i++)
		T_OK(shim_ranges_insert(0x100000 + i * 0x2000, 0x100000 + i * 0x2000 + 0x1000,
					(uint32_t)i + 1));
	T_EQ(shim_ranges_insert(0x10, 0x20, 99999), -ENOSPC);
	T_EQ(shim_ranges_find(0x100000 + 77 * 0x2000 + 5, 1), 78);
	shim_ranges_clear();
}

static atomic_bool race_stop;
static atomic_ullong race_wrong;

/* Readers must always find the range that stays, and never the holes. */
static void *race_reader(void *arg)
{
	(void)arg;
	while (!atomic_load(&race_stop)) {
		if (shim_ranges_find(0x800000 + 100, 1) != 7)
			atomic_fetch_add(&race_wrong, 1);
		if (shim_ranges_find(0x7ff000, 0x800) != 0)
			atomic_fetch_add(&race_wrong, 1);
	}
	return NULL;
}

static void test_range_table_lookups_race_writers_safely(void **state)
{
	pthread_t t[2];

	(void)state;
	shim_ranges_clear();
	T_OK(shim_ranges_insert(0x800000, 0x801000, 7));
	atomic_store(&race_stop, false);
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, race_reader, NULL);
	/* ranges come and go on both sides of the one that stays */
	for (int k = 0; k < 200000; k++) {
		uintptr_t a = (k & 1) ? 0x100000 + (uintptr_t)(k % 64) * 0x1000
				      : 0x900000 + (uintptr_t)(k % 64) * 0x1000;

		shim_ranges_insert(a, a + 0x800, (uint32_t)k + 100);
		if (k % 3)
			shim_ranges_remove(a);
	}
	atomic_store(&race_stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	T_EQ(atomic_load(&race_wrong), 0);
	shim_ranges_clear();
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void test_range_table_miss_costs_nanoseconds(void **state)
{
	enum { N = 10000000 };
	volatile uint32_t sink = 0;
	double t0, box, search;

	(void)state;
	shim_ranges_clear();
	for (uintptr_t i = 0; i < 64; i++)
		T_OK(shim_ranges_insert(0x40000000 + i * 0x400000,
					0x40000000 + i * 0x400000 + 0x200000, (uint32_t)i + 1));
	t0 = now_ns();
	for (int i = 0; i < N; i++)
		sink += shim_ranges_maybe(0x1000 + (uintptr_t)(i & 4095), 64);
	box = (now_ns() - t0) / N;
	t0 = now_ns();
	for (int i = 0; i < N; i++)
		sink += shim_ranges_find(0x40000000 + 0x300000 + (uintptr_t)(i & 4095), 64);
	search = (now_ns() - t0) / N;
	print_message("range table: outside the box %.2f ns, a miss inside it (64 ranges) %.2f ns "
		      "(sanitizer build)\n",
		      box, search);
	T_EQ(sink, 0);
	/* generous bounds for a loaded 2-core machine and an ASan build */
	assert_true(box < 20);
	assert_true(search < 400);
	shim_ranges_clear();
}

/* ---------------------------------------------------- routed memory */

static size_t present(const void *p, size_t n)
{
	size_t pg = 4096, np = n / pg, got = 0;
	unsigned char *v = malloc(np);

	assert_int_equal(mincore((void *)p, n, v), 0);
	for (size_t i = 0; i < np; i++)
		got += v[i] & 1;
	free(v);
	return got * pg;
}

static bool faults_ok(void)
{
	return !RUNNING_ON_VALGRIND;
}

/* A routed block through the shim's own path, with rule @rules. */
static unsigned char *routed(const char *rules, size_t bytes, struct shim_region **rp)
{
	unsigned char *p;

	shim_ensure_real();
	T_EQ(shim_rules_parse(rules, &shim_cfg, NULL, 0), 0);
	for (uint32_t i = 0; i < shim_cfg.nr_pools; i++) {
		if (!shim_pools[i].ctx)
			shim_pools[i].cfg = shim_cfg.pools[i];
	}
	p = shim_route_alloc(0, SHIM_CALL_ALIGNED, bytes, 64);
	assert_non_null(p);
	pthread_mutex_lock(&shim_lock);
	*rp = shim_region_by_base(p);
	pthread_mutex_unlock(&shim_lock);
	assert_non_null(*rp);
	return p;
}

#define CH (64u << 10)

static void test_zeroing_empty_chunks_touches_nothing(void **state)
{
	struct shim_region *r;
	unsigned char *p;

	(void)state;
	if (!faults_ok())
		T_SKIP("userfaultfd faults cannot be served under valgrind");
	p = routed("min=1M,chunk=64K", 8 * MiB, &r);
	assert_true(shim_zero(p, 8 * MiB));
	T_EQ(present(p, 8 * MiB), 0);
	T_EQ(shim_region_resident(r), 0);
	T_EQ(p[5 * MiB + 3], 0); /* reads zeros: one chunk now */
	T_EQ(shim_region_resident(r), CH);
	assert_true(shim_route_free(p));
	T_EQ(shim_ranges_find((uintptr_t)p, 1), 0);
}

static void test_zeroing_gives_whole_chunks_back_and_writes_the_edges(void **state)
{
	struct shim_region *r;
	unsigned char *p;

	(void)state;
	if (!faults_ok())
		T_SKIP("userfaultfd faults cannot be served under valgrind");
	p = routed("min=1M,chunk=64K", 2 * MiB, &r);
	memset(p, 0xab, 2 * MiB); /* the sanitizer's memset: not the shim's */
	T_EQ(present(p, 2 * MiB), 2 * MiB);
	/* from 100 bytes into chunk 1 to 100 bytes into chunk 6 */
	assert_true(shim_zero(p + CH + 100, 5 * CH));
	T_EQ(p[CH + 99], 0xab);
	T_EQ(p[CH + 100], 0);
	T_EQ(p[2 * CH - 1], 0);
	T_EQ(p[6 * CH + 99], 0);
	T_EQ(p[6 * CH + 100], 0xab);
	/* chunks 2..5 went back to the kernel; 1 and 6 were written */
	T_EQ(present(p + 2 * CH, 4 * CH), 0);
	T_EQ(present(p + CH, CH), CH);
	T_EQ(present(p + 6 * CH, CH), CH);
	T_EQ(shim_region_resident(r), 2 * MiB - 4 * CH);
	for (size_t i = 2 * CH; i < 6 * CH; i += 4096)
		T_EQ(p[i], 0);
	assert_true(shim_route_free(p));
}

static void test_madvise_dontneed_and_free_on_routed_memory(void **state)
{
	struct shim_region *r;
	unsigned char *p;
	int ret = -1;

	(void)state;
	if (!faults_ok())
		T_SKIP("userfaultfd faults cannot be served under valgrind");
	p = routed("min=1M,chunk=64K", 1 * MiB, &r);
	memset(p, 0x11, 1 * MiB);
	/* DONTNEED: whole chunks back, partial pages read zeros */
	assert_true(shim_madvise(p + 4096, 3 * CH, MADV_DONTNEED, &ret));
	T_EQ(ret, 0);
	T_EQ(p[4095], 0x11);
	T_EQ(p[4096], 0);
	T_EQ(p[3 * CH + 4095], 0);
	T_EQ(p[3 * CH + 4096], 0x11);
	T_EQ(present(p + CH, 2 * CH), 0);
	/* FREE: whole chunks back, partial ones keep their bytes */
	memset(p + 8 * CH, 0x22, 4 * CH);
	assert_true(shim_madvise(p + 8 * CH + 4096, 2 * CH, MADV_FREE, &ret));
	T_EQ(p[8 * CH + 4096], 0x22);
	T_EQ(present(p + 9 * CH, CH), 0);
	T_EQ(p[9 * CH + 7], 0);
	/* advice about pages libkvmm owns is accepted and ignored */
	assert_true(shim_madvise(p, CH, MADV_HUGEPAGE, &ret));
	T_EQ(ret, 0);
	T_EQ(p[7], 0x11);
	assert_true(shim_route_free(p));
}

static void test_realloc_copies_only_chunks_with_data(void **state)
{
	struct shim_region *r, *nr;
	unsigned char *p, *q;
	bool handled;

	(void)state;
	if (!faults_ok())
		T_SKIP("userfaultfd faults cannot be served under valgrind");
	p = routed("min=1M,chunk=64K", 4 * MiB, &r);
	p[3] = 1;
	p[3 * MiB + 3] = 2;
	pthread_mutex_lock(&shim_lock);
	q = shim_route_realloc(r, 16 * MiB, &handled);
	nr = shim_region_by_base(q);
	pthread_mutex_unlock(&shim_lock);
	assert_non_null(nr);
	T_EQ(shim_region_resident(nr), 2 * CH); /* the two chunks with data, nothing else */
	T_EQ(q[3], 1);
	T_EQ(q[3 * MiB + 3], 2);
	T_EQ(shim_ranges_find((uintptr_t)p, 1), 0);
	assert_true(shim_route_free(q));
}

static atomic_bool wr_done;
static unsigned char *wr_buf;

/* Writes each of 8192 places once, slowly, so evictions land in between. */
static void *writer(void *arg)
{
	struct timespec pause = {0, 5000};

	(void)arg;
	for (size_t k = 0; k < 8192; k++) {
		wr_buf[k * 512 + 1] = (unsigned char)(k % 250 + 1);
		if (k % 8 == 0)
			nanosleep(&pause, NULL);
	}
	atomic_store(&wr_done, true);
	return NULL;
}

static void test_evict_under_a_writer_loses_no_write(void **state)
{
	struct shim_region *r;
	struct kvmm_region_stats st;
	unsigned char *p;
	pthread_t t;
	char rules[512];
	const char *why = t_flash_unusable();
	int rounds = 0;

	(void)state;
	if (!faults_ok())
		T_SKIP("userfaultfd faults cannot be served under valgrind");
	if (why)
		T_SKIP("%s", why);
	snprintf(rules, sizeof(rules), "min=1M,chunk=64K,pool=flash,flash=%s,flash_bytes=64M",
		 t_flash_dir());
	p = routed(rules, 4 * MiB, &r);
	for (size_t i = 0; i < 4 * MiB; i += 4096)
		p[i] = (unsigned char)(i / 4096 + 7);
	wr_buf = p;
	atomic_store(&wr_done, false);
	pthread_create(&t, NULL, writer, NULL);
	while (!atomic_load(&wr_done)) {
		T_OK(shim_evict_all());
		rounds++;
	}
	pthread_join(t, NULL);
	print_message("%d evictions of the whole region while the writer ran\n", rounds);
	assert_true(rounds >= 2);
	T_OK(kvmm_region_stats(r->kr, &st));
	assert_true(st.flash_writes >= 64);
	/* every write landed once, in a chunk that was evicted around it */
	for (size_t k = 0; k < 8192; k++) {
		if (p[k * 512 + 1] != (unsigned char)(k % 250 + 1))
			fail_msg("write %zu lost: byte %zu is %u", k, k * 512 + 1, p[k * 512 + 1]);
	}
	for (size_t i = 0; i < 4 * MiB; i += 4096)
		T_EQ(p[i], (unsigned char)(i / 4096 + 7));
	T_OK(shim_evict_all());
	T_OK(kvmm_region_stats(r->kr, &st));
	T_EQ(st.resident_bytes, 0);
	T_EQ(present(p, 4 * MiB), 0);
	T_EQ(p[MiB], (unsigned char)(MiB / 4096 + 7)); /* back from flash */
	assert_true(shim_route_free(p));
}

static void test_a_pool_without_kvmm_falls_back_and_counts_it(void **state)
{
	uint64_t before = atomic_load(&shim_stats.fallbacks[SHIM_FB_NO_KVMM]);
	const char *old = getenv("KVMM_MODE");

	(void)state;
	if (!access("/dev/kvmm", F_OK))
		T_SKIP("kvmm.ko is loaded here: kernel mode works");
	setenv("KVMM_MODE", "kernel", 1);
	shim_ensure_real();
	T_EQ(shim_rules_parse("min=1M,pool=nomodule", &shim_cfg, NULL, 0), 0);
	/* a fresh pool slot, opened in kernel mode */
	shim_pools[SHIM_MAX_POOLS - 1].cfg = shim_cfg.pools[0];
	shim_pools[SHIM_MAX_POOLS - 1].ctx = NULL;
	shim_pools[SHIM_MAX_POOLS - 1].failed = false;
	shim_cfg.rules[0].pool = SHIM_MAX_POOLS - 1;
	assert_null(shim_route_alloc(0, SHIM_CALL_ALIGNED, 2 * MiB, 64));
	assert_null(shim_route_alloc(0, SHIM_CALL_ALIGNED, 2 * MiB, 64));
	T_EQ(atomic_load(&shim_stats.fallbacks[SHIM_FB_NO_KVMM]), before + 2);
	if (old)
		setenv("KVMM_MODE", old, 1);
	else
		unsetenv("KVMM_MODE");
}

static void test_privatize_gives_a_child_its_own_copy(void **state)
{
	unsigned char *p =
	    mmap(NULL, 1 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t pid;
	int st;

	(void)state;
	shim_ensure_real();
	assert_true(p != MAP_FAILED);
	memset(p, 0x33, 1 * MiB);
	pid = fork();
	if (!pid) {
		/* what the child does with kernel-mode (MAP_SHARED) memory */
		int ok = shim_privatize(p, 1 * MiB, NULL, 64 << 10) == 0 && p[100] == 0x33;

		memset(p, 0x44, 1 * MiB);
		_exit(ok ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	T_EQ(p[100], 0x33); /* the child's writes stayed in the child */
	munmap(p, 1 * MiB);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_no_rules_give_the_64MiB_default),
	    cmocka_unit_test(test_every_rule_key_is_parsed),
	    cmocka_unit_test(test_rules_match_size_call_and_library),
	    cmocka_unit_test(test_a_bad_rule_is_left_out_with_its_reason),
	    cmocka_unit_test(test_range_table_finds_overlaps_in_order),
	    cmocka_unit_test(test_range_table_refuses_past_its_size),
	    cmocka_unit_test(test_range_table_lookups_race_writers_safely),
	    cmocka_unit_test(test_range_table_miss_costs_nanoseconds),
	    cmocka_unit_test(test_zeroing_empty_chunks_touches_nothing),
	    cmocka_unit_test(test_zeroing_gives_whole_chunks_back_and_writes_the_edges),
	    cmocka_unit_test(test_madvise_dontneed_and_free_on_routed_memory),
	    cmocka_unit_test(test_realloc_copies_only_chunks_with_data),
	    cmocka_unit_test(test_evict_under_a_writer_loses_no_write),
	    cmocka_unit_test(test_a_pool_without_kvmm_falls_back_and_counts_it),
	    cmocka_unit_test(test_privatize_gives_a_child_its_own_copy),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	setenv("KVMM_PRELOAD_REGISTRY", "none", 1);
	return cmocka_run_group_tests_name("shim_core", tests, NULL, NULL);
}
