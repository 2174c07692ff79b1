/* SPDX-License-Identifier: MIT */
/*
 * libkvmm-preload.so's GPU part as a CUDA program meets it, against the
 * driver stand-in (tests/cuda/mock_cuda.c, work completing late in stream
 * order) found as libcuda.so.1, and the runtime stand-in
 * (cudart_standin.c) that reaches it the way libcudart does. Each test
 * runs `cuprobe MODE` under LD_PRELOAD with some environment and checks
 * its output, its stderr and the shim's stats file; cuprobe checks the
 * contents of GPU memory itself.
 * Environment: KVMM_TEST_PRELOAD_SO, KVMM_TEST_CUPROBE, KVMM_TEST_CUDA_LIBDIR
 * (the directory holding libcuda.so.1), KVMM_TEST_KVMMCTL.
 */
#include <signal.h>
#include <sys/wait.h>

#include "probe_run.h"

#define MiB (1ull << 20)

static const char *so, *probe, *libdir, *kvmmctl;

/* What every cuprobe run gets besides the stats file and the registry. */
static void cuda_env(void)
{
	setenv("LD_LIBRARY_PATH", libdir, 1);
	setenv("KVMM_TEST_KVMMCTL", kvmmctl, 1);
	setenv("KVMM_MODE", getenv("KVMM_MODE") ? getenv("KVMM_MODE") : "user", 1);
	setenv("KVMM_CUDA_STAGE_BYTES", "1M", 1); /* many staging turns per move */
	unsetenv("KVMM_CUDA_LIBRARY");
}

/* Runs `cuprobe MODE` with LD_PRELOAD=@preload (NULL: none), @env added. */
static void run(struct probe_run *r, const char *preload, const char *const *env, const char *mode)
{
	char *argv[] = {"cuprobe", (char *)mode, NULL};

	probe_run(r, probe, argv, preload, cuda_env, env);
}

static const char *word(const char *text, const char *key, char *buf, size_t len)
{
	const char *p = strstr(text, key);
	size_t n = 0;

	if (!p)
		fail_msg("'%s' not in:\n%s", key, text);
	p += strlen(key);
	while (n + 1 < len && p[n] && p[n] != '\n' && p[n] != ' ') {
		buf[n] = p[n];
		n++;
	}
	buf[n] = 0;
	return buf;
}

static int lines_with(const char *text, const char *what)
{
	int n = 0;

	for (const char *p = text; (p = strstr(p, what)); p += strlen(what))
		n++;
	return n;
}

#define T_EXIT_OK(r) assert_true(WIFEXITED((r)->status) && WEXITSTATUS((r)->status) == 0)
/* The stand-in saw no unmap under queued work, no bad call, no fault. */
#define T_CLEAN(r)                                                                                 \
	do {                                                                                       \
		T_EQ(probe_value((r)->out, "hazards="), 0);                                        \
		T_EQ(probe_value((r)->out, "faults="), 0);                                         \
		T_EQ(probe_value((r)->out, "violations="), 0);                                     \
	} while (0)

static const char *rules_cuda = "KVMM_PRELOAD_RULES=name=gpu,calls=cuda,min=32M";

static void test_runtime_allocations_above_the_threshold_go_to_vmm(void **state)
{
	const char *env[] = {rules_cuda, NULL};
	struct probe_run r;

	(void)state;
	run(&r, NULL, env, "runtime");
	T_EXIT_OK(&r);
	T_EQ(probe_value(r.out, "driver_allocs="), 3); /* without the shim: all three */
	run(&r, so, env, "runtime");
	T_EXIT_OK(&r);
	T_CLEAN(&r);
	/* 64 MiB (cudaMalloc) and 48 MiB (cudaMallocAsync) on VMM; 1 MiB not */
	T_EQ(probe_value(r.out, "driver_allocs="), 1);
	T_EQ(probe_value(r.stats, "gpu_routed_allocations: "), 2);
	T_EQ(probe_value(r.stats, "gpu_routed_bytes: "), 112 * MiB);
	T_EQ(probe_value(r.stats, "gpu_freed: "), 2);
	T_EQ(probe_value(r.stats, "gpu_reserved_bytes: "), 0);
	T_EQ(probe_value(r.stats, "fallbacks: "), 0);
}

static void test_driver_lookups_through_cuGetProcAddress_reach_the_shim(void **state)
{
	const char *env[] = {rules_cuda, NULL};
	char w[128];
	struct probe_run r;

	(void)state;
	run(&r, NULL, env, "driver");
	T_EXIT_OK(&r);
	assert_string_equal(word(r.out, "cuMemAlloc_from=", w, sizeof(w)), "libcuda.so.1");
	T_EQ(probe_value(r.out, "driver_allocs="), 3);
	run(&r, so, env, "driver");
	T_EXIT_OK(&r);
	T_CLEAN(&r);
	/* dlsym on the driver's handle and cuGetProcAddress answer with the shim */
	assert_string_equal(word(r.out, "cuGetProcAddress_v2_from=", w, sizeof(w)),
			    "libkvmm-preload.so");
	assert_string_equal(word(r.out, "cuGetProcAddress_from=", w, sizeof(w)),
			    "libkvmm-preload.so");
	assert_string_equal(word(r.out, "cuMemAlloc_from=", w, sizeof(w)), "libkvmm-preload.so");
	assert_string_equal(word(r.out, "cuMemAlloc_v1_gpa_from=", w, sizeof(w)),
			    "libkvmm-preload.so");
	assert_string_equal(word(r.out, "cuGetProcAddress_gpa_from=", w, sizeof(w)),
			    "libkvmm-preload.so");
	/* cuMemAlloc by both lookups and cuMemAllocAsync: all three on VMM */
	T_EQ(probe_value(r.out, "driver_allocs="), 0);
	T_EQ(probe_value(r.stats, "gpu_routed_allocations: "), 3);
	T_EQ(probe_value(r.stats, "gpu_freed: "), 3);
}

static void test_without_a_cuda_rule_nothing_is_routed(void **state)
{
	const char *env[] = {"KVMM_PRELOAD_RULES=min=32M", NULL};
	struct probe_run r;

	(void)state;
	run(&r, so, env, "runtime");
	T_EXIT_OK(&r);
	T_EQ(probe_value(r.out, "driver_allocs="), 3);
	T_EQ(probe_value(r.stats, "gpu_routed_allocations: "), 0);
	run(&r, so, env, "driver");
	T_EXIT_OK(&r);
	T_EQ(probe_value(r.out, "driver_allocs="), 3);
}

static void test_no_vmm_allocator_says_one_line_and_falls_back(void **state)
{
	const char *env[] = {rules_cuda, "KVMM_CUDA_LIBRARY=/nonexistent/libcuda.so.1", NULL};
	struct probe_run r;

	(void)state;
	run(&r, so, env, "runtime");
	T_EXIT_OK(&r); /* the program works, on the real allocations */
	T_EQ(probe_value(r.out, "driver_allocs="), 3);
	T_EQ(lines_with(r.err, "kvmm-preload: no CUDA VMM allocator"), 1);
	T_EQ(probe_value(r.stats, "gpu_routed_allocations: "), 0);
	T_EQ(probe_value(r.stats, "fallbacks: "), 2);
}

static const char *flash_rules(char *buf, size_t len)
{
	snprintf(buf, len, "KVMM_PRELOAD_RULES=name=gpu,calls=cuda,min=32M,flash=%s",
		 t_flash_dir());
	return buf;
}

static void test_park_and_unpark_keep_addresses_and_contents(void **state)
{
	char rules[700];
	const char *env[] = {flash_rules(rules, sizeof(rules)), NULL};
	const char *why = t_flash_unusable();
	struct probe_run r;

	(void)state;
	if (why)
		T_SKIP("%s", why);
	run(&r, so, env, "park");
	T_EXIT_OK(&r);
	T_CLEAN(&r);
	/* host, flash, host (async), flash with a free, discard of both tags */
	T_EQ(probe_value(r.stats, "gpu_parks: "), 6);
	T_EQ(probe_value(r.stats, "gpu_unparks: "), 6);
	T_EQ(probe_value(r.stats, "gpu_freed_parked: "), 1);
	T_EQ(probe_value(r.stats, "gpu_parked_bytes: "), 0);
	T_EQ(probe_value(r.stats, "gpu_park_failures: "), 0);
	/* the allocation for the parked tag went to the real allocator */
	T_EQ(lines_with(r.err, "which is parked"), 1);
}

static void test_unpark_without_memory_rolls_back_and_says_so(void **state)
{
	const char *env[] = {rules_cuda, "MOCK_CUDA_MEM_BYTES=268435456", NULL};
	struct probe_run r;

	(void)state;
	run(&r, so, env, "nomem");
	T_EXIT_OK(&r);
	T_EQ(probe_value(r.out, "unpark_full="), (unsigned long long)-ENOMEM);
	T_EQ(lines_with(r.err, "unpark of tag 'kv' failed: "), 1);
	T_EQ(lines_with(r.err, "were unmapped again, the tag stays parked"), 1);
	T_EQ(probe_value(r.stats, "gpu_unpark_failures: "), 1);
	T_EQ(probe_value(r.stats, "gpu_unpark_rollbacks: "), 1);
	T_EQ(probe_value(r.stats, "gpu_unparks: "), 1);
}

static void test_kvmmctl_parks_from_outside_and_checks_the_peer(void **state)
{
	char rules[700];
	const char *env[] = {flash_rules(rules, sizeof(rules)), NULL};
	const char *why = t_flash_unusable();
	struct probe_run r;

	(void)state;
	if (why)
		T_SKIP("%s", why);
	run(&r, so, env, "ctl");
	T_EXIT_OK(&r);
	T_EQ(lines_with(r.out, "parked 1 tag(s), 67108864 bytes, to flash"), 1);
	T_EQ(lines_with(r.err, "no GPU tag 'nope'"), 1);
	T_EQ(lines_with(r.err, "--to nowhere: not host, flash or discard"), 1);
	if (getuid() == 0)
		T_EQ(lines_with(r.out, "other_uid_reply=error 1 uid 65534 may not control"), 1);
	T_EQ(probe_value(r.stats, "gpu_parks: "), 3);
	T_EQ(probe_value(r.stats, "gpu_unparks: "), 3);
}

static void test_fork_child_routes_nothing_and_parent_keeps_all(void **state)
{
	const char *env[] = {rules_cuda, NULL};
	struct probe_run r;

	(void)state;
	run(&r, so, env, "fork");
	T_EXIT_OK(&r);
	T_EQ(probe_value(r.out, "child_status="), 0);
	T_EQ(probe_value(r.stats, "gpu_routed_allocations: "), 1);
	T_EQ(probe_value(r.stats, "gpu_parks: "), 1);
	T_EQ(probe_value(r.stats, "gpu_unparks: "), 1);
}

#define TEST(f) cmocka_unit_test(f)

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    TEST(test_runtime_allocations_above_the_threshold_go_to_vmm),
	    TEST(test_driver_lookups_through_cuGetProcAddress_reach_the_shim),
	    TEST(test_without_a_cuda_rule_nothing_is_routed),
	    TEST(test_no_vmm_allocator_says_one_line_and_falls_back),
	    TEST(test_park_and_unpark_keep_addresses_and_contents),
	    TEST(test_unpark_without_memory_rolls_back_and_says_so),
	    TEST(test_kvmmctl_parks_from_outside_and_checks_the_peer),
	    TEST(test_fork_child_routes_nothing_and_parent_keeps_all),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	so = getenv("KVMM_TEST_PRELOAD_SO");
	probe = getenv("KVMM_TEST_CUPROBE");
	libdir = getenv("KVMM_TEST_CUDA_LIBDIR");
	kvmmctl = getenv("KVMM_TEST_KVMMCTL");
	if (!so || !probe || !libdir || !kvmmctl || !*probe) {
		printf("skip: %s\n",
		       probe && !*probe
			   ? "built without cuda.h: no GPU part and no driver stand-in "
			     "(install the CUDA toolkit, or set CUDA_HOME)"
			   : "KVMM_TEST_PRELOAD_SO, KVMM_TEST_CUPROBE, KVMM_TEST_CUDA_LIBDIR "
			     "or KVMM_TEST_KVMMCTL unset (make check-preload-cuda sets "
			     "them)");
		return T_SKIP_EXIT;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
