/* SPDX-License-Identifier: MIT */
/*
 * libkvmm-preload.so's GPU part on a real GPU (suite "gpu-preload"): a
 * plain CUDA runtime program that runs itself again under
 * LD_PRELOAD=$KVMM_TEST_PRELOAD_SO with KVMM_PRELOAD_RULES routing GPU
 * allocations of 64 MiB and more, and checks routing, park/unpark at the
 * same addresses (host, flash, discard), the all-or-nothing unpark with
 * the device full, and that a driver entry point the runtime hands out
 * (cudaGetDriverEntryPointByVersion, i.e. the driver's cuGetProcAddress)
 * is the shim's. Built twice: against libcudart.so (test_preload_gpu) and
 * the static runtime (test_preload_gpu_static, where cudaMalloc cannot be
 * interposed by symbol: only the cuGetProcAddress path sees it). Without
 * a GPU every test skips with the reason.
 */
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../unit/helpers.h"
#include "gpu_test.h"

#include <kvmm/preload.h>

#define MiB (1ull << 20)
#define BIG (256 * MiB)

static int (*park)(const char *, int);
static int (*unpark)(const char *);
static int (*state)(const char *);
static int (*tag_push)(const char *);
static int (*tag_pop)(void);
static long long (*generation)(const char *);

static void fill(void *d, size_t n, unsigned seed)
{
	unsigned char *b = malloc(n);

	assert_non_null(b);
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)(i * 13 + seed);
	CUDA_OK(cudaMemcpy(d, b, n, cudaMemcpyHostToDevice));
	free(b);
}

static bool holds(const void *d, size_t n, int seed)
{
	unsigned char *b = malloc(n);
	bool ok = b && cudaMemcpy(b, d, n, cudaMemcpyDeviceToHost) == cudaSuccess;

	for (size_t i = 0; ok && i < n; i++)
		ok = b[i] == (seed < 0 ? 0 : (unsigned char)(i * 13 + (unsigned)seed));
	free(b);
	return ok;
}

static size_t free_bytes(void)
{
	size_t f = 0, t = 0;

	CUDA_OK(cudaMemGetInfo(&f, &t));
	return f;
}

static void gpu_preload_cudamalloc_is_on_vmm(void **st)
{
	struct cudaPointerAttributes at;
	void *p = NULL;

	(void)st;
	NEED_GPU();
	CUDA_OK(cudaMalloc(&p, BIG));
	T_EQ(state("default"), 0); /* the rule's tag exists: the shim took it */
	CUDA_OK(cudaPointerGetAttributes(&at, p));
	T_EQ(at.type, cudaMemoryTypeDevice);
	CUDA_OK(cudaMemset(p, 0x5a, BIG));
	fill((char *)p + MiB, MiB, 3);
	assert_true(holds((char *)p + MiB, MiB, 3));
	CUDA_OK(cudaFree(p));
}

static void gpu_preload_park_keeps_addresses_and_contents(void **st)
{
	const int policies[] = {KVMM_PRELOAD_PARK_HOST, KVMM_PRELOAD_PARK_FLASH,
				KVMM_PRELOAD_PARK_DISCARD};
	void *kv[2] = {NULL, NULL};
	size_t before;

	(void)st;
	NEED_GPU();
	T_OK(tag_push("kv"));
	CUDA_OK(cudaMalloc(&kv[0], BIG));
	CUDA_OK(cudaMalloc(&kv[1], BIG));
	T_OK(tag_pop());
	for (int k = 0; k < 3; k++) {
		fill(kv[0], BIG, 1 + (unsigned)k);
		fill(kv[1], BIG, 7 + (unsigned)k);
		before = free_bytes();
		T_OK(park("kv", policies[k]));
		T_EQ(state("kv"), 1);
		/* the 512 MiB went back to the device */
		assert_true(free_bytes() >= before + 2 * BIG - 64 * MiB);
		T_OK(unpark("kv"));
		T_EQ(generation("kv"), k + 1);
		assert_true(
		    holds(kv[0], BIG, policies[k] == KVMM_PRELOAD_PARK_DISCARD ? -1 : 1 + k));
		assert_true(
		    holds(kv[1], BIG, policies[k] == KVMM_PRELOAD_PARK_DISCARD ? -1 : 7 + k));
	}
	T_OK(park("kv", KVMM_PRELOAD_PARK_HOST));
	CUDA_OK(cudaFree(kv[0])); /* freed while parked */
	T_OK(unpark("kv"));
	CUDA_OK(cudaFree(kv[1]));
}

static void gpu_preload_unpark_without_memory_rolls_back(void **st)
{
	void *kv[2] = {NULL, NULL}, **fillers;
	size_t n = 0, cap = 16384, before; /* 32 MiB blocks: 512 GiB */

	(void)st;
	NEED_GPU();
	T_OK(tag_push("full"));
	CUDA_OK(cudaMalloc(&kv[0], BIG));
	CUDA_OK(cudaMalloc(&kv[1], BIG));
	T_OK(tag_pop());
	fill(kv[0], BIG, 21);
	fill(kv[1], BIG, 22);
	T_OK(park("full", KVMM_PRELOAD_PARK_HOST));
	/* 32 MiB blocks (no rule takes them) until the device is full, then
	 * room for one of the two back */
	fillers = calloc(cap, sizeof(*fillers));
	assert_non_null(fillers);
	while (n < cap && cudaMalloc(&fillers[n], 32 * MiB) == cudaSuccess)
		n++;
	cudaGetLastError();
	for (int i = 0; i < 9 && n; i++)
		CUDA_OK(cudaFree(fillers[--n]));
	before = free_bytes();
	T_EQ(unpark("full"), -ENOMEM);
	T_EQ(state("full"), 1);
	assert_true(free_bytes() + 16 * MiB >= before); /* nothing left mapped */
	while (n)
		CUDA_OK(cudaFree(fillers[--n]));
	free(fillers);
	T_OK(unpark("full"));
	assert_true(holds(kv[0], BIG, 21) && holds(kv[1], BIG, 22));
	CUDA_OK(cudaFree(kv[0]));
	CUDA_OK(cudaFree(kv[1]));
}

static void gpu_preload_driver_entry_points_are_the_shims(void **st)
{
	enum cudaDriverEntryPointQueryResult qr;
	void *fn = NULL;
	Dl_info di;

	(void)st;
	NEED_GPU();
	CUDA_OK(cudaGetDriverEntryPointByVersion("cuMemAlloc", &fn, 12000, cudaEnableDefault, &qr));
	assert_non_null(fn);
	assert_true(dladdr(fn, &di) && di.dli_fname);
	print_message("cuMemAlloc from the runtime: %s\n", di.dli_fname);
	assert_non_null(strstr(di.dli_fname, "libkvmm-preload"));
}

static void probe_gpu(void)
{
	int count = 0;

	if (cudaGetDeviceCount(&count) != cudaSuccess || count < 1)
		snprintf(no_gpu, sizeof(no_gpu), "no GPU (no CUDA device; %s)", GPU_HINT);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(gpu_preload_cudamalloc_is_on_vmm),
	    cmocka_unit_test(gpu_preload_park_keeps_addresses_and_contents),
	    cmocka_unit_test(gpu_preload_unpark_without_memory_rolls_back),
	    cmocka_unit_test(gpu_preload_driver_entry_points_are_the_shims),
	};
	const char *so = getenv("KVMM_TEST_PRELOAD_SO");
	char rules[600];
	int failed;

	T_LIST(argc, argv, T_GROUP(tests));
	setvbuf(stdout, NULL, _IOLBF, 0);
	*(void **)&park = dlsym(RTLD_DEFAULT, "kvmm_preload_park");
	if (!park && so && *so && !getenv("KVMM_TEST_PRELOAD_AGAIN")) {
		/* Once more, under the shim. */
		snprintf(rules, sizeof(rules), "name=gpu,calls=cuda,min=64M,flash=%s",
			 t_flash_dir());
		setenv("KVMM_PRELOAD_RULES", rules, 1);
		setenv("LD_PRELOAD", so, 1);
		setenv("KVMM_TEST_PRELOAD_AGAIN", "1", 1);
		execv("/proc/self/exe", argv);
		printf("gpu-preload: cannot run again under the shim\n");
		return 1;
	}
	probe_gpu();
	if (!park && !no_gpu[0])
		snprintf(no_gpu, sizeof(no_gpu),
			 "not under libkvmm-preload.so (set KVMM_TEST_PRELOAD_SO; make "
			 "check-gpu-preload does)");
	*(void **)&unpark = dlsym(RTLD_DEFAULT, "kvmm_preload_unpark");
	*(void **)&state = dlsym(RTLD_DEFAULT, "kvmm_preload_state");
	*(void **)&tag_push = dlsym(RTLD_DEFAULT, "kvmm_preload_tag_push");
	*(void **)&tag_pop = dlsym(RTLD_DEFAULT, "kvmm_preload_tag_pop");
	*(void **)&generation = dlsym(RTLD_DEFAULT, "kvmm_preload_generation");
	failed = cmocka_run_group_tests(tests, NULL, NULL);
	printf("%s: %d passed, %d failed, %d skipped\n", program_invocation_short_name,
	       (int)N(tests) - failed - skipped, failed, skipped);
	return failed ? 1 : 0;
}
