/* SPDX-License-Identifier: MIT */
/*
 * libkvmm-preload.so as a program meets it: each test runs the plain
 * program `probe` (which knows nothing of kvmm) under LD_PRELOAD with some
 * environment, and checks what it printed, its exit status, its stderr,
 * and the shim's stats file (KVMM_PRELOAD_STATS=FILE).
 * Environment: KVMM_TEST_PRELOAD_SO, KVMM_TEST_PROBE, KVMM_TEST_COUNTMALLOC,
 * KVMM_TEST_KVMMCTL (the kvmmctl test skips without it).
 */
#include <signal.h>
#include <sys/wait.h>

#include "probe_run.h"

#define MiB (1ull << 20)

static const char *so, *probe, *countso;

/* Runs `probe MODE [ARG]` with LD_PRELOAD=@preload (NULL: none), @env added. */
static void run(struct probe_run *r, const char *preload, const char *const *env, const char *mode,
		const char *arg)
{
	char *argv[] = {"probe", (char *)mode, (char *)arg, NULL};

	probe_run(r, probe, argv, preload, NULL, env);
}

static int lines_with(const char *text, const char *what)
{
	int n = 0;

	for (const char *p = text; (p = strstr(p, what)); p += strlen(what))
		n++;
	return n;
}

#define T_EXIT_OK(r) assert_true(WIFEXITED((r)->status) && WEXITSTATUS((r)->status) == 0)

/*
 * Whether the shim makes kvmm.ko regions here (the QEMU guest of suite
 * preload-kernel). Their pages are VM_PFNMAP, which mincore() does not see,
 * so the probe's "present" counts are 0 there and only user mode checks
 * them; eviction is then checked through the shim's counters and the
 * probe's own data checks.
 */
static bool kernel_mode(void)
{
	return !access("/dev/kvmm", R_OK | W_OK);
}

static void test_a_cleared_kv_buffer_stays_unallocated(void **state)
{
	struct probe_run r;

	(void)state;
	run(&r, NULL, NULL, "rss", NULL);
	T_EXIT_OK(&r);
	/* without the shim the memset allocates all 512 MiB */
	assert_true(probe_value(r.out, "present_bytes=") >= 500 * MiB);
	run(&r, so, NULL, "rss", NULL);
	T_EXIT_OK(&r);
	/* with it, only the 8 MiB the program wrote (plus chunk rounding) */
	if (probe_value(r.out, "present_bytes=") > 10 * MiB)
		fail_msg("512 MiB cleared, 8 MiB written: %llu bytes resident",
			 probe_value(r.out, "present_bytes="));
	T_EQ(probe_value(r.stats, "routed_allocations: "), 1);
	T_EQ(probe_value(r.stats, "zero_elided_bytes: "), 512 * MiB);
	T_EQ(probe_value(r.stats, "fallbacks: "), 0);
}

static void test_every_allocation_call_keeps_its_data(void **state)
{
	struct probe_run r;

	(void)state;
	run(&r, so, NULL, "data", NULL);
	T_EXIT_OK(&r);
	assert_non_null(strstr(r.out, "data=ok"));
	/* malloc, realloc (twice into routed sizes), calloc, mmap, mremap, aligned_alloc */
	assert_true(probe_value(r.stats, "routed_allocations: ") >= 6);
	T_EQ(probe_value(r.stats, "freed: "), probe_value(r.stats, "routed_allocations: "));
	assert_true(probe_value(r.stats, "madvise_chunks: ") >= 30);
	T_EQ(probe_value(r.stats, "reserved_bytes: "), 0);
	T_EQ(r.err[0] == 0 || !strstr(r.err, "kvmm-preload"), 1);
}

static void test_fork_child_sees_the_data_and_shares_nothing(void **state)
{
	struct probe_run r;

	(void)state;
	run(&r, so, NULL, "fork", NULL);
	T_EXIT_OK(&r);
	assert_non_null(strstr(r.out, "fork=ok"));
	T_EQ(probe_value(r.stats, "routed_allocations: "), 1);
}

static void test_threads_allocate_and_clear_at_once(void **state)
{
	struct probe_run r;

	(void)state;
	run(&r, so, NULL, "threads", NULL);
	T_EXIT_OK(&r);
	T_EQ(probe_value(r.stats, "routed_allocations: "), 80);
	T_EQ(probe_value(r.stats, "freed: "), 80);
}

static void test_evict_signal_moves_memory_to_flash_and_back(void **state)
{
	struct probe_run r;
	char dir[600];
	const char *env[] = {"KVMM_PRELOAD_SIGNAL=USR2", dir, NULL};
	const char *why = t_flash_unusable();

	(void)state;
	if (why)
		T_SKIP("%s", why);
	snprintf(dir, sizeof(dir), "KVMM_FLASH_DIR=%s", t_flash_dir());
	run(&r, so, env, "evict", NULL);
	T_EXIT_OK(&r);
	/* 56 of the 64 MiB stayed on flash until read; the writer's 8 came back */
	if (!kernel_mode()) {
		assert_true(probe_value(r.out, "present_after_evict=") <= 10 * MiB);
		T_EQ(probe_value(r.out, "present_after_read="), 64 * MiB);
	}
	assert_true(probe_value(r.stats, "evicted_chunks: ") >= 28);
}

static void test_pool_limit_keeps_memory_near_it_and_data_whole(void **state)
{
	struct probe_run r;
	char rules[700];
	const char *env[] = {rules, NULL};
	const char *why = t_flash_unusable();

	(void)state;
	if (why)
		T_SKIP("%s", why);
	snprintf(rules, sizeof(rules), "KVMM_PRELOAD_RULES=name=kv,min=64M,limit=32M,flash=%s",
		 t_flash_dir());
	run(&r, so, env, "limit", NULL);
	T_EXIT_OK(&r);
	/* the limit is kept by a thread every 20 ms: a little over it meanwhile */
	if (!kernel_mode()) {
		assert_true(probe_value(r.out, "present_end=") <= 34 * MiB);
		assert_true(probe_value(r.out, "present_max=") <= 80 * MiB);
	}
	/* 192 MiB written under a 32 MiB limit: at least 160 MiB went out */
	assert_true(probe_value(r.stats, "evicted_chunks: ") >= 80);
}

static void test_system_calls_fill_untouched_routed_memory(void **state)
{
	struct probe_run r;

	(void)state;
	run(&r, so, NULL, "read", probe);
	T_EXIT_OK(&r);
	assert_non_null(strstr(r.out, "read=ok"));
	T_EQ(probe_value(r.stats, "prefaults: "), 2);
}

static void test_children_keep_or_drop_the_shim_as_configured(void **state)
{
	struct probe_run r;
	const char *drop[] = {"KVMM_PRELOAD_CHILDREN=0", NULL};
	char want[1024];

	(void)state;
	run(&r, so, NULL, "exec", NULL);
	snprintf(want, sizeof(want), "child_ld_preload=%s\n", so);
	assert_non_null(strstr(r.out, want));
	run(&r, so, drop, "exec", NULL);
	assert_non_null(strstr(r.out, "child_ld_preload=\n"));
}

static void test_bad_rule_says_one_line_and_falls_back(void **state)
{
	struct probe_run r;
	const char *env[] = {"KVMM_PRELOAD_RULES=min=64Q", NULL};

	(void)state;
	run(&r, so, env, "data", NULL);
	T_EXIT_OK(&r);
	T_EQ(lines_with(r.err, "kvmm-preload:"), 1);
	assert_non_null(strstr(r.err, "rule 1 'min=64Q': bad size '64Q'"));
	T_EQ(probe_value(r.stats, "routed_allocations: "), 0);
}

static void test_no_module_says_one_line_and_falls_back(void **state)
{
	struct probe_run r;
	const char *env[] = {"KVMM_MODE=kernel", NULL};

	(void)state;
	if (!access("/dev/kvmm", F_OK))
		T_SKIP("kvmm.ko is loaded here: kernel mode works");
	run(&r, so, env, "data", NULL);
	T_EXIT_OK(&r);
	T_EQ(lines_with(r.err, "kvmm-preload:"), 1);
	assert_non_null(strstr(r.err, "kvmm_open: kvmm.ko not available"));
	T_EQ(probe_value(r.stats, "routed_allocations: "), 0);
	assert_true(probe_value(r.stats, "fallbacks: ") >= 6);
}

static void test_missing_flash_store_says_one_line_and_still_pages(void **state)
{
	struct probe_run r;
	const char *env[] = {"KVMM_PRELOAD_RULES=min=64M,flash=/nonexistent/kvmm", NULL};

	(void)state;
	run(&r, so, env, "rss", NULL);
	T_EXIT_OK(&r);
	T_EQ(lines_with(r.err, "kvmm-preload:"), 1);
	assert_non_null(strstr(r.err, "flash directory /nonexistent/kvmm"));
	assert_true(probe_value(r.out, "present_bytes=") <= 10 * MiB);
}

static void test_library_rule_routes_only_the_named_caller(void **state)
{
	struct probe_run r;
	const char *mine[] = {"KVMM_PRELOAD_RULES=lib=probe,min=64M", NULL};
	const char *other[] = {"KVMM_PRELOAD_RULES=lib=libggml-base.so,min=64M", NULL};

	(void)state;
	run(&r, so, mine, "rss", NULL);
	T_EQ(probe_value(r.stats, "routed_allocations: "), 1);
	run(&r, so, other, "rss", NULL);
	T_EQ(probe_value(r.stats, "routed_allocations: "), 0);
	assert_true(probe_value(r.out, "present_bytes=") >= 500 * MiB);
}

static void test_chains_with_an_interposer_before_or_after(void **state)
{
	struct probe_run r;
	char list[2048];

	(void)state;
	snprintf(list, sizeof(list), "%s:%s", countso, so);
	run(&r, list, NULL, "data", NULL);
	T_EXIT_OK(&r);
	assert_true(probe_value(r.err, "countmalloc: ") > 100);
	assert_true(probe_value(r.stats, "routed_allocations: ") >= 6);
	snprintf(list, sizeof(list), "%s:%s", so, countso);
	run(&r, list, NULL, "data", NULL);
	T_EXIT_OK(&r);
	assert_true(probe_value(r.err, "countmalloc: ") > 100);
	assert_true(probe_value(r.stats, "routed_allocations: ") >= 6);
}

static void test_small_calls_cost_what_they_cost_without_the_shim(void **state)
{
	struct probe_run base, with;
	double b, w, bm, wm;

	(void)state;
	run(&base, NULL, NULL, "bench", NULL);
	run(&with, so, NULL, "bench", NULL);
	b = strtod(strstr(base.out, "memset64_ns=") + 12, NULL);
	w = strtod(strstr(with.out, "memset64_ns=") + 12, NULL);
	bm = strtod(strstr(base.out, "malloc_free_ns=") + 15, NULL);
	wm = strtod(strstr(with.out, "malloc_free_ns=") + 15, NULL);
	print_message("memset(64 B): %.2f ns without, %.2f ns with the shim; malloc+free(32 B): "
		      "%.2f ns without, %.2f ns with\n",
		      b, w, bm, wm);
	/* a few ns on top, with room for a loaded machine */
	assert_true(w < b * 2 + 10);
	assert_true(wm < bm * 2 + 10);
}

/* A registry of this test's own: other shim processes may run meanwhile. */
static char ctl_registry[] = "/tmp/kvmm-preload-ctl-XXXXXX";

/* Runs kvmmctl ARGS with that registry; its output and exit status. */
static int kvmmctl(const char *args, char *out, size_t cap)
{
	char cmd[1024];
	FILE *f;
	size_t n;

	snprintf(cmd, sizeof(cmd),
		 "KVMM_PRELOAD_REGISTRY=%s KVMMCTL_SYSFS=/nonexistent KVMMCTL_DEV=/nonexistent "
		 "%s %s 2>&1",
		 ctl_registry, getenv("KVMM_TEST_KVMMCTL"), args);
	f = popen(cmd, "r");
	assert_non_null(f);
	n = fread(out, 1, cap - 1, f);
	out[n] = 0;
	return WEXITSTATUS(pclose(f));
}

static void test_kvmmctl_regions_shows_each_shim_region_with_its_rule(void **state)
{
	const char *env[] = {"KVMM_PRELOAD_RULES=name=kvcache,min=64M,chunk=256K", NULL};
	char out[16384], line[64], pidword[32];
	int in[2], from[2], status;
	bool kernel;
	ssize_t got;
	pid_t pid;

	(void)state;
	if (!getenv("KVMM_TEST_KVMMCTL"))
		T_SKIP("KVMM_TEST_KVMMCTL not set (make check-preload sets it)");
	assert_non_null(mkdtemp(ctl_registry));
	assert_true(!pipe(in) && !pipe(from));
	pid = fork();
	if (!pid) {
		dup2(in[0], 0);
		dup2(from[1], 1);
		close(in[1]);
		close(from[0]);
		setenv("KVMM_PRELOAD_REGISTRY", ctl_registry, 1);
		putenv((char *)env[0]);
		setenv("LD_PRELOAD", so, 1);
		execl(probe, "probe", "hold", (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(from[1]);
	got = read(from[0], line, sizeof(line) - 1);
	line[got > 0 ? got : 0] = 0;
	assert_non_null(strstr(line, "ready"));

	/* Without kvmm.ko the shim's user-mode regions are still listed. */
	assert_int_equal(kvmmctl("regions", out, sizeof(out)), 0);
	snprintf(pidword, sizeof(pidword), " %d ", (int)pid);
	if (!strstr(out, "LD_PRELOAD shim regions") || !strstr(out, pidword) ||
	    !strstr(out, "kvcache") || !strstr(out, "probe") || !strstr(out, "96.0 MiB"))
		fail_msg(
		    "kvmmctl regions does not show pid %d's 96 MiB region of rule kvcache:\n%s",
		    (int)pid, out);
	assert_int_equal(kvmmctl("--json regions", out, sizeof(out)), 0);
	snprintf(pidword, sizeof(pidword), "\"pid\": %d", (int)pid);
	/* With kvmm.ko (the QEMU guest) the shim makes kvmm.ko regions. */
	kernel = !access("/dev/kvmm", R_OK | W_OK);
	if (!strstr(out, pidword) || !strstr(out, "\"rule\": \"kvcache\"") ||
	    !strstr(out, "\"chunk_bytes\": 262144") ||
	    !strstr(out, kernel ? "\"mode\": \"kernel\"" : "\"mode\": \"user\"") ||
	    (kernel && strstr(out, "\"kvmm_id\": 0,")))
		fail_msg("kvmmctl --json regions lacks pid %d's %s-mode region:\n%s", (int)pid,
			 kernel ? "kernel" : "user", out);

	close(in[1]); /* the probe checks its data, frees and exits */
	assert_int_equal(waitpid(pid, &status, 0), pid);
	close(from[0]);
	T_EXIT_OK(&(struct probe_run){.status = status});
	/* Gone with its process: no module and nothing else to show. */
	assert_int_equal(kvmmctl("regions", out, sizeof(out)), 3);
	assert_null(strstr(out, "LD_PRELOAD shim regions"));
	rmdir(ctl_registry); /* the probe removed its file at exit */
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_a_cleared_kv_buffer_stays_unallocated),
	    cmocka_unit_test(test_every_allocation_call_keeps_its_data),
	    cmocka_unit_test(test_fork_child_sees_the_data_and_shares_nothing),
	    cmocka_unit_test(test_threads_allocate_and_clear_at_once),
	    cmocka_unit_test(test_evict_signal_moves_memory_to_flash_and_back),
	    cmocka_unit_test(test_pool_limit_keeps_memory_near_it_and_data_whole),
	    cmocka_unit_test(test_system_calls_fill_untouched_routed_memory),
	    cmocka_unit_test(test_children_keep_or_drop_the_shim_as_configured),
	    cmocka_unit_test(test_bad_rule_says_one_line_and_falls_back),
	    cmocka_unit_test(test_no_module_says_one_line_and_falls_back),
	    cmocka_unit_test(test_missing_flash_store_says_one_line_and_still_pages),
	    cmocka_unit_test(test_library_rule_routes_only_the_named_caller),
	    cmocka_unit_test(test_chains_with_an_interposer_before_or_after),
	    cmocka_unit_test(test_small_calls_cost_what_they_cost_without_the_shim),
	    cmocka_unit_test(test_kvmmctl_regions_shows_each_shim_region_with_its_rule),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	so = getenv("KVMM_TEST_PRELOAD_SO");
	probe = getenv("KVMM_TEST_PROBE");
	countso = getenv("KVMM_TEST_COUNTMALLOC");
	if (!so || !probe || !countso)
		t_skip_program("KVMM_TEST_PRELOAD_SO, KVMM_TEST_PROBE and KVMM_TEST_COUNTMALLOC "
			       "not set (make check-preload sets them)");
	return cmocka_run_group_tests_name("preload_exec", tests, NULL, NULL);
}
