/* SPDX-License-Identifier: MIT */
/*
 * The shim's GPU core (userspace/preload/cuda.c, control.c) called
 * directly, built with ASan/UBSan, against the driver stand-in
 * (KVMM_TEST_MOCK_CUDA) loaded by libkvmm as its CUDA driver. The stand-in's
 * device memory is host memory the host may touch once mapped, so these
 * tests read it through queued "kernels" (mock_cuda_kernel_read), which
 * fault if the memory is not mapped when they run.
 */
#include <dlfcn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "../unit/helpers.h"
#include "../../userspace/preload/shim.h"
#include "../cuda/mock_cuda.h"

#ifdef KVMM_HAVE_CUDA_H
#include <cuda.h>
#endif

#define MiB (1ull << 20)

#ifdef KVMM_HAVE_CUDA_H
static mock_cuda_stats_fn mock_stats;
static mock_cuda_set_mem_fn mock_set_mem;
static mock_cuda_fail_fn mock_fail;
static mock_cuda_kernel_read_fn mock_kread;
static mock_cuda_kernel_write_fn mock_kwrite;
static mock_cuda_sync_fn mock_sync;
static mock_cuda_reset_fn mock_reset;
static mock_cuda_stream_fn mock_new_stream;

static struct mock_cuda_stats mst(void)
{
	struct mock_cuda_stats st;

	mock_stats(&st);
	return st;
}

/* A kernel on the legacy stream writes pattern @seed over [p, p+n). */
static void dev_fill(void *p, size_t n, unsigned seed)
{
	unsigned char *b = malloc(n);

	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)(i * 7 + seed);
	T_OK(mock_kwrite(NULL, p, b, n));
	free(b);
}

/* Whether a kernel reads pattern @seed (zeros if < 0) at [p, p+n). */
static bool dev_holds(const void *p, size_t n, int seed)
{
	unsigned char *b = malloc(n);
	bool ok;

	memset(b, 0xee, n);
	ok = !mock_kread(NULL, b, p, n) && !mock_sync(NULL);
	for (size_t i = 0; ok && i < n; i++)
		ok = b[i] == (seed < 0 ? 0 : (unsigned char)(i * 7 + (unsigned)seed));
	free(b);
	return ok;
}

static void use_rules(const char *text)
{
	shim_ensure_real();
	T_EQ(shim_rules_parse(text, &shim_cfg, NULL, 0), 0);
	for (uint32_t i = 0; i < shim_cfg.nr_pools; i++) {
		if (!shim_pools[i].ctx)
			shim_pools[i].cfg = shim_cfg.pools[i];
	}
	shim_enabled = true;
}

static int setup(void **state)
{
	char rules[600];

	(void)state;
	mock_reset();
	snprintf(rules, sizeof(rules), "name=gpu,calls=cuda,min=4M,flash=%s;name=big,min=1G",
		 t_flash_dir());
	use_rules(rules);
	return 0;
}

static int teardown(void **state)
{
	struct mock_cuda_stats st = mst();

	(void)state;
	/* Every test leaves the stand-in clean: no fault, hazard or bad call. */
	T_EQ(st.faults, 0);
	T_EQ(st.hazards, 0);
	T_EQ(st.rule_violations, 0);
	mock_set_mem(1ULL << 30);
	mock_fail("", 0);
	return 0;
}

static void test_rules_take_cuda_calls_by_size_and_scope(void **state)
{
	void *p, *q;

	(void)state;
	/* under the floor, and a host-only rule: not taken */
	assert_null(shim_gpu_alloc(SHIM_GPU_RUNTIME, 1 * MiB, 0, NULL));
	T_EQ(shim_rules_match(&shim_cfg, SHIM_CALL_CUDA, 2ULL << 30, NULL), 0);
	T_EQ(shim_rules_match(&shim_cfg, SHIM_CALL_MALLOC, 8 * MiB, NULL), -1);
	p = shim_gpu_alloc(SHIM_GPU_RUNTIME, 6 * MiB, 0, NULL);
	assert_non_null(p);
	assert_true(shim_gpu_owns(p));
	T_EQ(shim_gpu_state("default"), 0);
	/* a scoped rule takes only allocations inside a scope, with its tag */
	use_rules("name=s,calls=cuda,min=4M,scoped");
	assert_null(shim_gpu_alloc(SHIM_GPU_DRIVER, 8 * MiB, 0, NULL));
	T_OK(shim_gpu_tag_push("weights"));
	q = shim_gpu_alloc(SHIM_GPU_DRIVER, 8 * MiB, 0, NULL);
	T_OK(shim_gpu_tag_pop());
	assert_non_null(q);
	T_EQ(shim_gpu_state("weights"), 0);
	T_EQ(shim_gpu_tag_pop(), -ENOENT);
	assert_true(shim_gpu_free(p, NULL, false));
	assert_true(shim_gpu_free(q, NULL, false));
	assert_false(shim_gpu_free(q, NULL, false)); /* no longer ours */
	T_EQ(shim_rules_parse("calls=cuda+gpu", &shim_cfg, NULL, 0), 1);
}

static void test_park_keeps_contents_and_addresses_for_each_policy(void **state)
{
	const uint32_t hows[] = {KVMM_CUDA_SLEEP_HOST, KVMM_CUDA_SLEEP_FLASH,
				 KVMM_CUDA_SLEEP_DISCARD};
	char msg[320];
	void *a, *b;
	uint64_t live;

	(void)state;
	T_OK(shim_gpu_tag_push("kv"));
	a = shim_gpu_alloc(SHIM_GPU_RUNTIME, 6 * MiB, 0, NULL);
	b = shim_gpu_alloc(SHIM_GPU_RUNTIME_ASYNC, 10 * MiB, 0, NULL);
	T_OK(shim_gpu_tag_pop());
	assert_true(a && b);
	for (int k = 0; k < 3; k++) {
		if (hows[k] == KVMM_CUDA_SLEEP_FLASH && t_flash_unusable())
			continue;
		dev_fill(a, 6 * MiB, 1 + (unsigned)k);
		dev_fill(b, 10 * MiB, 9 + (unsigned)k);
		live = mst().live;
		/* the kernels queued above finish before the copy (cuCtxSynchronize) */
		T_OK(shim_gpu_park_now("kv", hows[k], msg, sizeof(msg)));
		T_EQ(shim_gpu_state("kv"), 1);
		T_EQ(mst().live, live - 2);
		T_OK(shim_gpu_unpark_now("kv", msg, sizeof(msg)));
		T_EQ(mst().live, live);
		assert_true(dev_holds(a, 6 * MiB, hows[k] == KVMM_CUDA_SLEEP_DISCARD ? -1 : 1 + k));
		assert_true(
		    dev_holds(b, 10 * MiB, hows[k] == KVMM_CUDA_SLEEP_DISCARD ? -1 : 9 + k));
	}
	assert_true(shim_gpu_generation("kv") >= 2);
	assert_true(shim_gpu_free(a, NULL, false));
	assert_true(shim_gpu_free(b, NULL, true));
}

static void test_free_of_a_parked_block_gives_everything_back(void **state)
{
	char msg[320];
	void *a, *b;
	uint64_t live = mst().live;

	(void)state;
	T_OK(shim_gpu_tag_push("kv2"));
	a = shim_gpu_alloc(SHIM_GPU_RUNTIME, 6 * MiB, 0, NULL);
	b = shim_gpu_alloc(SHIM_GPU_RUNTIME, 6 * MiB, 0, NULL);
	T_OK(shim_gpu_tag_pop());
	dev_fill(b, 6 * MiB, 77);
	T_OK(shim_gpu_park_now("kv2", KVMM_CUDA_SLEEP_HOST, msg, sizeof(msg)));
	assert_true(shim_gpu_free(a, NULL, false)); /* parked: no GPU memory to release */
	T_EQ(mst().live, live);
	T_OK(shim_gpu_unpark_now("kv2", msg, sizeof(msg)));
	assert_true(dev_holds(b, 6 * MiB, 77));
	assert_true(shim_gpu_free(b, NULL, false));
	T_EQ(mst().live, live);
}

static void test_unpark_without_memory_unmaps_what_it_mapped(void **state)
{
	char msg[320];
	void *a, *b;
	uint64_t live, rollbacks = atomic_load(&shim_stats.gpu_unpark_rollbacks);

	(void)state;
	T_OK(shim_gpu_tag_push("kv3"));
	a = shim_gpu_alloc(SHIM_GPU_RUNTIME, 6 * MiB, 0, NULL);
	b = shim_gpu_alloc(SHIM_GPU_RUNTIME, 6 * MiB, 0, NULL);
	T_OK(shim_gpu_tag_pop());
	dev_fill(a, 6 * MiB, 3);
	dev_fill(b, 6 * MiB, 4);
	T_OK(shim_gpu_park_now("kv3", KVMM_CUDA_SLEEP_HOST, msg, sizeof(msg)));
	live = mst().live;
	T_EQ(live, 0);	       /* no other GPU memory: the limit below is all there is */
	mock_set_mem(6 * MiB); /* room for one of the two */
	T_EQ(shim_gpu_unpark_now("kv3", msg, sizeof(msg)), -ENOMEM);
	assert_non_null(strstr(msg, "were unmapped again, the tag stays parked"));
	T_EQ(shim_gpu_state("kv3"), 1);
	T_EQ(mst().live, live); /* nothing left mapped */
	T_EQ(atomic_load(&shim_stats.gpu_unpark_rollbacks), rollbacks + 1);
	mock_set_mem(1ULL << 30);
	T_OK(shim_gpu_unpark_now("kv3", msg, sizeof(msg)));
	assert_true(dev_holds(a, 6 * MiB, 3) && dev_holds(b, 6 * MiB, 4));
	assert_true(shim_gpu_free(a, NULL, false));
	assert_true(shim_gpu_free(b, NULL, false));
}

static void test_failed_park_leaves_the_tag_resident(void **state)
{
	char msg[320];
	void *a, *b;

	(void)state;
	T_OK(shim_gpu_tag_push("kv4"));
	a = shim_gpu_alloc(SHIM_GPU_RUNTIME, 6 * MiB, 0, NULL);
	b = shim_gpu_alloc(SHIM_GPU_RUNTIME, 6 * MiB, 0, NULL);
	T_OK(shim_gpu_tag_pop());
	dev_fill(a, 6 * MiB, 5);
	dev_fill(b, 6 * MiB, 6);
	/* 6 MiB staging buffers (this tag's copier is made at its first
	 * park): one copy each; the second allocation's copy fails, and the
	 * first allocation, already released, is put back */
	setenv("KVMM_CUDA_STAGE_BYTES", "24M", 1);
	mock_fail("cuMemcpyDtoHAsync", 2);
	assert_true(shim_gpu_park_now("kv4", KVMM_CUDA_SLEEP_HOST, msg, sizeof(msg)) < 0);
	mock_fail("", 0);
	setenv("KVMM_CUDA_STAGE_BYTES", "1M", 1);
	assert_non_null(strstr(msg, "it stays resident, as before"));
	T_EQ(shim_gpu_state("kv4"), 0);
	assert_true(dev_holds(a, 6 * MiB, 5) && dev_holds(b, 6 * MiB, 6));
	assert_true(shim_gpu_free(a, NULL, false));
	assert_true(shim_gpu_free(b, NULL, false));
}

static void test_async_moves_run_in_order_on_the_mover(void **state)
{
	void *a;

	(void)state;
	T_OK(shim_gpu_tag_push("kv5"));
	a = shim_gpu_alloc(SHIM_GPU_RUNTIME, 6 * MiB, 0, NULL);
	T_OK(shim_gpu_tag_pop());
	dev_fill(a, 6 * MiB, 8);
	T_OK(shim_move(SHIM_MOVE_PARK, "kv5", KVMM_CUDA_SLEEP_HOST, true, NULL, 0));
	T_OK(shim_move(SHIM_MOVE_UNPARK, "kv5", 0, true, NULL, 0));
	T_OK(shim_move(SHIM_MOVE_PARK, "kv5", KVMM_CUDA_SLEEP_HOST, true, NULL, 0));
	T_OK(shim_move_wait("kv5"));
	T_EQ(shim_gpu_state("kv5"), 1);
	T_EQ(shim_move(SHIM_MOVE_PARK, "none", KVMM_CUDA_SLEEP_HOST, false, NULL, 0), -ENOENT);
	T_EQ(shim_move(SHIM_MOVE_PARK, "kv5", 7, false, NULL, 0), -EINVAL);
	T_OK(shim_move(SHIM_MOVE_UNPARK, "kv5", 0, false, NULL, 0));
	assert_true(dev_holds(a, 6 * MiB, 8));
	assert_true(shim_gpu_free(a, NULL, false));
}

/* One request on the control socket of this process, as uid @uid. */
static void ask(uid_t uid, const char *req, char *reply, size_t len)
{
	int pfd[2], st;
	pid_t c, self = getpid();
	ssize_t n;

	assert_int_equal(pipe(pfd), 0);
	c = fork();
	if (!c) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		char buf[512];
		socklen_t sl;
		int fd;

		if (uid && (setgid(uid) || setuid(uid)))
			_exit(3);
		shim_control_name((int)self, sa.sun_path + 1, sizeof(sa.sun_path) - 1);
		sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
				 strlen(sa.sun_path + 1));
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sl) ||
		    send(fd, req, strlen(req), MSG_NOSIGNAL) < 0)
			_exit(4);
		n = 0;
		for (ssize_t got; n < (ssize_t)sizeof(buf) &&
				  (got = read(fd, buf + n, sizeof(buf) - (size_t)n)) > 0;)
			n += got;
		if (n > 0 && write(pfd[1], buf, (size_t)n) < 0)
			_exit(5);
		_exit(0);
	}
	close(pfd[1]);
	n = read(pfd[0], reply, len - 1);
	reply[n > 0 ? n : 0] = 0;
	close(pfd[0]);
	assert_int_equal(waitpid(c, &st, 0), c);
	T_EQ(WIFEXITED(st) ? WEXITSTATUS(st) : -1, 0);
}

static void test_control_socket_serves_its_uid_and_root_only(void **state)
{
	char reply[512];
	void *a;

	(void)state;
	T_OK(shim_gpu_tag_push("kv6"));
	a = shim_gpu_alloc(SHIM_GPU_RUNTIME, 6 * MiB, 0, NULL); /* starts the socket */
	T_OK(shim_gpu_tag_pop());
	assert_non_null(a);
	dev_fill(a, 6 * MiB, 11);
	ask(0, "park kv6 host\n", reply, sizeof(reply));
	assert_true(!strncmp(reply, "ok parked 1 tag(s)", 18));
	T_EQ(shim_gpu_state("kv6"), 1);
	ask(0, "status\n", reply, sizeof(reply));
	assert_non_null(strstr(reply, "gpu_tag name=kv6 state=parked-host blocks=1"));
	ask(0, "park kv6 elsewhere\n", reply, sizeof(reply));
	assert_true(!strncmp(reply, "error 22 unknown destination 'elsewhere'", 40));
	ask(0, "frobnicate\n", reply, sizeof(reply));
	assert_true(!strncmp(reply, "error 22 unknown request", 24));
	if (getuid() == 0) {
		ask(65534, "unpark kv6\n", reply, sizeof(reply));
		assert_true(!strncmp(reply, "error 1 uid 65534 may not control", 33));
		T_EQ(shim_gpu_state("kv6"), 1);
	}
	ask(0, "unpark *\n", reply, sizeof(reply));
	assert_true(!strncmp(reply, "ok unparked", 11));
	assert_true(dev_holds(a, 6 * MiB, 11));
	assert_true(shim_gpu_free(a, NULL, false));
}

/* cudaFree semantics: work queued on any stream, a non-blocking one too,
 * finishes before the memory is unmapped (teardown counts hazards). */
static void test_free_waits_for_work_on_every_stream(void **state)
{
	void *s = mock_new_stream(CU_STREAM_NON_BLOCKING);
	char buf[4096];
	void *a;

	(void)state;
	a = shim_gpu_alloc(SHIM_GPU_RUNTIME, 6 * MiB, 0, NULL);
	assert_non_null(a);
	memset(buf, 1, sizeof(buf));
	T_OK(mock_kwrite(s, (char *)a + 4 * MiB, buf, sizeof(buf)));
	T_EQ(mst().pending > 0, 1);
	assert_true(shim_gpu_free(a, NULL, false));
	T_EQ(mst().hazards, 0);
}

static void test_stats_and_registry_show_gpu_memory(void **state)
{
	char path[] = "/tmp/kvmm-shim-cuda-XXXXXX", buf[8192];
	int fd = mkstemp(path);
	ssize_t n;
	void *a;

	(void)state;
	assert_true(fd >= 0);
	a = shim_gpu_alloc(SHIM_GPU_DRIVER, 5 * MiB, 0, NULL);
	assert_non_null(a);
	shim_gpu_registry_write(fd);
	shim_gpu_stats_print(fd);
	lseek(fd, 0, SEEK_SET);
	n = read(fd, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = 0;
	close(fd);
	unlink(path);
	/* 5 MiB rounded up to the stand-in's 2 MiB granularity */
	assert_non_null(strstr(buf, "bytes=6291456 asked_bytes=5242880 device=0 tag=default "
				    "rule=gpu call=cuMemAlloc"));
	assert_non_null(strstr(buf, "gpu_routed_allocations: "));
	assert_non_null(strstr(buf, "gpu_unpark_rollbacks: "));
	assert_true(shim_gpu_free(a, NULL, false));
}

#define RESOLVE(var, name)                                                                         \
	do {                                                                                       \
		*(void **)&(var) = dlsym(h, name);                                                 \
		if (!(var)) {                                                                      \
			printf("skip: the stand-in has no %s\n", name);                            \
			return T_SKIP_EXIT;                                                        \
		}                                                                                  \
	} while (0)

#define TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
#else
#define TEST(f) T_NOT_BUILT(f)
#endif

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    TEST(test_rules_take_cuda_calls_by_size_and_scope),
	    TEST(test_park_keeps_contents_and_addresses_for_each_policy),
	    TEST(test_free_of_a_parked_block_gives_everything_back),
	    TEST(test_unpark_without_memory_unmaps_what_it_mapped),
	    TEST(test_failed_park_leaves_the_tag_resident),
	    TEST(test_async_moves_run_in_order_on_the_mover),
	    TEST(test_control_socket_serves_its_uid_and_root_only),
	    TEST(test_free_waits_for_work_on_every_stream),
	    TEST(test_stats_and_registry_show_gpu_memory),
	};

	T_LIST(argc, argv, T_GROUP(tests));
#ifndef KVMM_HAVE_CUDA_H
	t_skip_program("built without cuda.h: the shim has no GPU part (install the CUDA toolkit, "
		       "or set CUDA_HOME)");
#else
	const char *lib = getenv("KVMM_TEST_MOCK_CUDA");
	void *h;

	if (!lib || !*lib || !(h = dlopen(lib, RTLD_NOW))) {
		printf("skip: no CUDA driver stand-in: %s\n",
		       lib && *lib
			   ? dlerror()
			   : "KVMM_TEST_MOCK_CUDA is unset (make check-preload-cuda sets it)");
		return T_SKIP_EXIT;
	}
	RESOLVE(mock_stats, "mock_cuda_stats");
	RESOLVE(mock_set_mem, "mock_cuda_set_mem");
	RESOLVE(mock_fail, "mock_cuda_fail");
	RESOLVE(mock_kread, "mock_cuda_kernel_read");
	RESOLVE(mock_kwrite, "mock_cuda_kernel_write");
	RESOLVE(mock_sync, "mock_cuda_sync");
	RESOLVE(mock_reset, "mock_cuda_reset");
	RESOLVE(mock_new_stream, "mock_cuda_stream");
	setenv("KVMM_CUDA_LIBRARY", lib, 1);
	setenv("KVMM_CUDA_STAGE_BYTES", "1M", 1);
	setenv("KVMM_PRELOAD_REGISTRY", "none", 1);
	if (!getenv("KVMM_MODE"))
		setenv("KVMM_MODE", "user", 1);
	return cmocka_run_group_tests(tests, NULL, NULL);
#endif
}
