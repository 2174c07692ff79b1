/* SPDX-License-Identifier: MIT */
/*
 * A GPU program for the preload tests (test_preload_cuda.c), run with
 * and without LD_PRELOAD=libkvmm-preload.so. It is linked against the
 * runtime stand-in (libcudart-standin.so) and finds the driver as
 * libcuda.so.1 (the driver stand-in, through LD_LIBRARY_PATH); it does not
 * link the shim, and looks up the shim's C API (kvmm/preload.h) with dlsym
 * as a server would. Device memory of the stand-in is host memory, so the
 * probe checks contents through cudaMemcpy only, as on a GPU.
 * Each mode checks its own results, prints "key=value" lines, and exits 0
 * when every check held.
 *   cuprobe MODE
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cuda.h>

#include <kvmm/preload.h>

#include "../cuda/mock_cuda.h"

#undef cuMemAlloc
#undef cuMemFree
#undef cuMemcpyHtoD
#undef cuMemcpyDtoH
#undef cuGetProcAddress

#define MiB (1UL << 20)

/* The runtime stand-in (cudart_standin.c). */
int cudaMalloc(void **p, size_t n);
int cudaFree(void *p);
int cudaMallocAsync(void **p, size_t n, void *stream);
int cudaFreeAsync(void *p, void *stream);
int cudaMemcpy(void *dst, const void *src, size_t n, int kind);
int cudaDeviceSynchronize(void);

static int fails;

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "cuprobe: check failed at line %d: %s\n", __LINE__, #c);   \
			fails++;                                                                   \
		}                                                                                  \
	} while (0)

static void *driver(void)
{
	void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);

	if (!h)
		h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	return h;
}

static struct mock_cuda_stats mock(void)
{
	struct mock_cuda_stats st;
	mock_cuda_stats_fn fn = (mock_cuda_stats_fn)dlsym(driver(), "mock_cuda_stats");

	memset(&st, 0, sizeof(st));
	if (fn)
		fn(&st);
	return st;
}

/* The shim's C API, or NULL without the shim. */
static void *api(const char *name)
{
	return dlsym(RTLD_DEFAULT, name);
}

static int park(const char *tag, int policy)
{
	int (*f)(const char *, int) = (int (*)(const char *, int))api("kvmm_preload_park");

	return f ? f(tag, policy) : -ENOSYS;
}

static int unpark(const char *tag)
{
	int (*f)(const char *) = (int (*)(const char *))api("kvmm_preload_unpark");

	return f ? f(tag) : -ENOSYS;
}

static int call1(const char *name, const char *tag)
{
	int (*f)(const char *) = (int (*)(const char *))api(name);

	return f ? f(tag) : -ENOSYS;
}

static long long generation(const char *tag)
{
	long long (*f)(const char *) = (long long (*)(const char *))api("kvmm_preload_generation");

	return f ? f(tag) : -ENOSYS;
}

static int push(const char *tag)
{
	return call1("kvmm_preload_tag_push", tag);
}

static int pop(void)
{
	int (*f)(void) = (int (*)(void))api("kvmm_preload_tag_pop");

	return f ? f() : -ENOSYS;
}

/* Writes @n bytes of pattern @seed to device memory @d. */
static void fill(void *d, size_t n, unsigned seed)
{
	unsigned char *b = malloc(n);

	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)(i * 31 + seed);
	CHECK(cudaMemcpy(d, b, n, 1) == 0);
	free(b);
}

/* Whether device memory @d holds pattern @seed (or zeros when @seed < 0). */
static bool holds(const void *d, size_t n, int seed)
{
	unsigned char *b = malloc(n);
	bool ok = cudaMemcpy(b, d, n, 2) == 0;

	for (size_t i = 0; ok && i < n; i++)
		ok = b[i] == (seed < 0 ? 0 : (unsigned char)(i * 31 + (unsigned)seed));
	free(b);
	return ok;
}

static int mode_runtime(void)
{
	void *big = NULL, *small = NULL, *as = NULL;
	uint64_t before;

	CHECK(cudaFree(NULL) == 0); /* the runtime's start */
	before = mock().mem_allocs;
	CHECK(cudaMalloc(&big, 64 * MiB) == 0);
	CHECK(cudaMalloc(&small, 1 * MiB) == 0);
	CHECK(cudaMallocAsync(&as, 48 * MiB, NULL) == 0);
	fill(big, 64 * MiB, 1);
	fill(small, 1 * MiB, 2);
	fill(as, 48 * MiB, 3);
	CHECK(holds(big, 64 * MiB, 1));
	CHECK(holds(small, 1 * MiB, 2));
	CHECK(holds(as, 48 * MiB, 3));
	printf("driver_allocs=%llu\n", (unsigned long long)(mock().mem_allocs - before));
	CHECK(cudaFreeAsync(as, NULL) == 0);
	CHECK(cudaFree(big) == 0);
	CHECK(cudaFree(small) == 0);
	printf("hazards=%llu faults=%llu violations=%llu\n", (unsigned long long)mock().hazards,
	       (unsigned long long)mock().faults, (unsigned long long)mock().rule_violations);
	return fails;
}

typedef CUresult (*gpa2_fn)(const char *, void **, int, cuuint64_t,
			    CUdriverProcAddressQueryResult *);
typedef CUresult (*gpa1_fn)(const char *, void **, int, cuuint64_t);

static const char *object_of(void *fn)
{
	Dl_info di;
	const char *s;

	if (!fn || !dladdr(fn, &di) || !di.dli_fname)
		return "none";
	s = strrchr(di.dli_fname, '/');
	return s ? s + 1 : di.dli_fname;
}

/* The driver the way the runtime reaches it: dlsym of cuGetProcAddress on
 * the library's handle, then every function through it. */
static int mode_driver(void)
{
	void *h = driver();
	gpa2_fn gpa2 = h ? (gpa2_fn)dlsym(h, "cuGetProcAddress_v2") : NULL;
	gpa1_fn gpa1 = h ? (gpa1_fn)dlsym(h, "cuGetProcAddress") : NULL;
	CUresult (*init)(unsigned) = NULL;
	CUresult (*dev_get)(CUdevice *, int) = NULL;
	CUresult (*retain)(CUcontext *, CUdevice) = NULL;
	CUresult (*push_ctx)(CUcontext) = NULL;
	CUresult (*alloc2)(CUdeviceptr *, size_t) = NULL, (*alloc1)(CUdeviceptr *, size_t) = NULL;
	CUresult (*free2)(CUdeviceptr) = NULL;
	CUresult (*alloc_async)(CUdeviceptr *, size_t, CUstream) = NULL;
	CUresult (*free_async)(CUdeviceptr, CUstream) = NULL;
	CUresult (*h2d)(CUdeviceptr, const void *, size_t) = NULL;
	CUresult (*d2h)(void *, CUdeviceptr, size_t) = NULL;
	void *gpa_again = NULL;
	CUdeviceptr a = 0, b = 0, c = 0;
	CUcontext ctx;
	CUdevice dev;
	uint64_t before;
	char buf[4096];

	CHECK(gpa2 && gpa1);
	if (!gpa2 || !gpa1)
		return fails;
	printf("cuGetProcAddress_v2_from=%s\n", object_of((void *)gpa2));
	printf("cuGetProcAddress_from=%s\n", object_of((void *)gpa1));
#define GPA(name, var)                                                                             \
	CHECK(gpa2(name, (void **)&var, 12000, CU_GET_PROC_ADDRESS_DEFAULT, NULL) == 0 && var)
	GPA("cuInit", init);
	GPA("cuDeviceGet", dev_get);
	GPA("cuDevicePrimaryCtxRetain", retain);
	GPA("cuCtxPushCurrent", push_ctx);
	GPA("cuMemAlloc", alloc2);
	GPA("cuMemFree", free2);
	GPA("cuMemAllocAsync", alloc_async);
	GPA("cuMemFreeAsync", free_async);
	GPA("cuMemcpyHtoD", h2d);
	GPA("cuMemcpyDtoH", d2h);
	GPA("cuGetProcAddress", gpa_again);
#undef GPA
	CHECK(gpa1("cuMemAlloc", (void **)&alloc1, 11000, CU_GET_PROC_ADDRESS_DEFAULT) == 0);
	if (fails)
		return fails;
	printf("cuMemAlloc_from=%s\n", object_of((void *)alloc2));
	printf("cuMemAlloc_v1_gpa_from=%s\n", object_of((void *)alloc1));
	printf("cuGetProcAddress_gpa_from=%s\n", object_of(gpa_again));
	CHECK(init(0) == 0 && dev_get(&dev, 0) == 0 && retain(&ctx, dev) == 0 &&
	      push_ctx(ctx) == 0);
	before = mock().mem_allocs;
	CHECK(alloc2(&a, 64 * MiB) == 0);
	CHECK(alloc1(&b, 64 * MiB) == 0);
	CHECK(alloc_async(&c, 64 * MiB, NULL) == 0);
	for (int i = 0; i < 3; i++) {
		CUdeviceptr p = i == 0 ? a : i == 1 ? b : c;

		memset(buf, 'a' + i, sizeof(buf));
		CHECK(h2d(p + 32 * MiB, buf, sizeof(buf)) == 0);
		memset(buf, 0, sizeof(buf));
		CHECK(d2h(buf, p + 32 * MiB, sizeof(buf)) == 0);
		CHECK(buf[0] == 'a' + i && buf[sizeof(buf) - 1] == 'a' + i);
	}
	printf("driver_allocs=%llu\n", (unsigned long long)(mock().mem_allocs - before));
	CHECK(free2(a) == 0);
	CHECK(free2(b) == 0);
	CHECK(free_async(c, NULL) == 0);
	printf("hazards=%llu faults=%llu violations=%llu\n", (unsigned long long)mock().hazards,
	       (unsigned long long)mock().faults, (unsigned long long)mock().rule_violations);
	return fails;
}

/* Park and unpark by tag, every policy, a free while parked, async. */
static int mode_park(void)
{
	void *kv[3] = {NULL}, *other = NULL, *late = NULL;
	uint64_t live;
	int ret;

	CHECK(cudaFree(NULL) == 0);
	CHECK(push("kv") == 0);
	for (int i = 0; i < 3; i++)
		CHECK(cudaMalloc(&kv[i], 64 * MiB) == 0);
	CHECK(pop() == 0);
	CHECK(cudaMalloc(&other, 64 * MiB) == 0);
	for (int i = 0; i < 3; i++)
		fill(kv[i], 64 * MiB, 10 + (unsigned)i);
	fill(other, 64 * MiB, 20);
	CHECK(park("nope", KVMM_PRELOAD_PARK_HOST) == -ENOENT);
	CHECK(generation("kv") == 0);

	static const int policies[] = {KVMM_PRELOAD_PARK_HOST, KVMM_PRELOAD_PARK_FLASH,
				       KVMM_PRELOAD_PARK_HOST | KVMM_PRELOAD_ASYNC};
	for (int k = 0; k < 3; k++) {
		live = mock().live;
		ret = park("kv", policies[k]);
		CHECK(ret == 0);
		if (policies[k] & KVMM_PRELOAD_ASYNC)
			CHECK(call1("kvmm_preload_wait", "kv") == 0);
		CHECK(call1("kvmm_preload_state", "kv") == 1);
		CHECK(mock().live == live - 3);			/* the three handles went back */
		CHECK(park("kv", KVMM_PRELOAD_PARK_HOST) == 0); /* parked already: nothing */
		/* A parked tag's new allocations go to the real allocator. */
		if (k == 0) {
			uint64_t before = mock().mem_allocs;

			CHECK(push("kv") == 0);
			CHECK(cudaMalloc(&late, 64 * MiB) == 0);
			CHECK(pop() == 0);
			CHECK(mock().mem_allocs == before + 1);
			CHECK(cudaFree(late) == 0);
		}
		CHECK(holds(other, 64 * MiB, 20)); /* another tag is not touched */
		CHECK(unpark("kv") == 0);
		CHECK(call1("kvmm_preload_state", "kv") == 0);
		CHECK(mock().live == live);
		CHECK(generation("kv") == k + 1);
		for (int i = 0; i < 3; i++)
			CHECK(holds(kv[i], 64 * MiB, 10 + i));
	}
	/* Free while parked: the other two come back whole. */
	CHECK(park("kv", KVMM_PRELOAD_PARK_FLASH) == 0);
	CHECK(cudaFree(kv[1]) == 0);
	CHECK(unpark("kv") == 0);
	CHECK(holds(kv[0], 64 * MiB, 10) && holds(kv[2], 64 * MiB, 12));
	/* Discard: zeros at the same addresses. */
	CHECK(park(NULL, KVMM_PRELOAD_PARK_DISCARD) == 0); /* every tag */
	CHECK(unpark("*") == 0);
	CHECK(holds(kv[0], 64 * MiB, -1) && holds(kv[2], 64 * MiB, -1) &&
	      holds(other, 64 * MiB, -1));
	CHECK(cudaFree(kv[0]) == 0 && cudaFree(kv[2]) == 0 && cudaFree(other) == 0);
	printf("hazards=%llu faults=%llu violations=%llu\n", (unsigned long long)mock().hazards,
	       (unsigned long long)mock().faults, (unsigned long long)mock().rule_violations);
	return fails;
}

/* Unpark with the device full: fails, maps nothing, and works later. */
static int mode_nomem(void)
{
	void *kv[2] = {NULL}, *fill_blocks[64];
	int nfill = 0, ret;
	uint64_t live;

	CHECK(cudaFree(NULL) == 0);
	CHECK(push("kv") == 0);
	for (int i = 0; i < 2; i++) {
		CHECK(cudaMalloc(&kv[i], 64 * MiB) == 0);
		fill(kv[i], 64 * MiB, 40 + (unsigned)i);
	}
	CHECK(pop() == 0);
	CHECK(park("kv", KVMM_PRELOAD_PARK_HOST) == 0);
	/* The device memory the two held goes to someone else, but 32 MiB:
	 * the first allocation maps again, the second cannot. */
	while (nfill < 64 && cudaMalloc(&fill_blocks[nfill], 16 * MiB) == 0)
		nfill++;
	CHECK(nfill > 2);
	CHECK(cudaFree(fill_blocks[--nfill]) == 0);
	CHECK(cudaFree(fill_blocks[--nfill]) == 0);
	CHECK(cudaFree(fill_blocks[--nfill]) == 0);
	CHECK(cudaFree(fill_blocks[--nfill]) == 0);
	live = mock().live;
	ret = unpark("kv");
	printf("unpark_full=%d\n", ret);
	CHECK(ret == -ENOMEM);
	CHECK(call1("kvmm_preload_state", "kv") == 1);
	CHECK(mock().live == live); /* what it mapped went back */
	CHECK(generation("kv") == 0);
	while (nfill)
		CHECK(cudaFree(fill_blocks[--nfill]) == 0);
	CHECK(unpark("kv") == 0);
	CHECK(holds(kv[0], 64 * MiB, 40) && holds(kv[1], 64 * MiB, 41));
	CHECK(cudaFree(kv[0]) == 0 && cudaFree(kv[1]) == 0);
	return fails;
}

static int run_ctl(const char *args)
{
	char cmd[512];
	const char *ctl = getenv("KVMM_TEST_KVMMCTL");
	int st;

	/* run as an operator would, from outside: without the shim */
	snprintf(cmd, sizeof(cmd), "env -u LD_PRELOAD %s %s", ctl ? ctl : "kvmmctl", args);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* A child with uid 65534 sends @req to the control socket of @pid; its
 * reply in @reply. */
static int other_uid_asks(int pid, const char *req, char *reply, size_t len)
{
	int pfd[2], st;
	pid_t c;
	ssize_t n;

	if (pipe(pfd))
		return -1;
	c = fork();
	if (!c) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		socklen_t sl;
		char buf[256];
		int fd;

		close(pfd[0]);
		if (setgid(65534) || setuid(65534))
			_exit(3);
		snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "kvmm-preload.%d", pid);
		sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
				 strlen(sa.sun_path + 1));
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sl) ||
		    send(fd, req, strlen(req), MSG_NOSIGNAL) < 0)
			_exit(4);
		n = read(fd, buf, sizeof(buf) - 1);
		if (n > 0 && write(pfd[1], buf, (size_t)n) < 0)
			_exit(5);
		_exit(0);
	}
	close(pfd[1]);
	n = read(pfd[0], reply, len - 1);
	reply[n > 0 ? n : 0] = 0;
	close(pfd[0]);
	waitpid(c, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* kvmmctl park/unpark from outside, with the peer's uid checked. */
static int mode_ctl(void)
{
	void *kv = NULL, *other = NULL;
	char args[128];
	int pid = (int)getpid();

	CHECK(cudaFree(NULL) == 0);
	CHECK(push("kv") == 0);
	CHECK(cudaMalloc(&kv, 64 * MiB) == 0);
	CHECK(pop() == 0);
	CHECK(cudaMalloc(&other, 64 * MiB) == 0);
	fill(kv, 64 * MiB, 50);
	fill(other, 64 * MiB, 51);
	snprintf(args, sizeof(args), "park %d --tag kv --to flash", pid);
	CHECK(run_ctl(args) == 0);
	CHECK(call1("kvmm_preload_state", "kv") == 1);
	CHECK(call1("kvmm_preload_state", "default") == 0);
	snprintf(args, sizeof(args), "park %d --tag nope", pid);
	CHECK(run_ctl(args) == 1);
	snprintf(args, sizeof(args), "park %d --to nowhere", pid);
	CHECK(run_ctl(args) == 2);
	if (getuid() == 0) {
		/* Another uid is refused, and nothing moves. */
		char reply[256] = "";

		int st = other_uid_asks(pid, "unpark *\n", reply, sizeof(reply));

		printf("other_uid_child=%d\n", st);
		CHECK(st == 0);
		printf("other_uid_reply=%s", reply);
		CHECK(!strncmp(reply, "error 1 ", 8));
		CHECK(call1("kvmm_preload_state", "kv") == 1);
	}
	snprintf(args, sizeof(args), "unpark %d", pid);
	CHECK(run_ctl(args) == 0);
	CHECK(call1("kvmm_preload_state", "kv") == 0);
	CHECK(holds(kv, 64 * MiB, 50) && holds(other, 64 * MiB, 51));
	snprintf(args, sizeof(args), "park %d", pid); /* every tag, to host */
	CHECK(run_ctl(args) == 0);
	CHECK(call1("kvmm_preload_state", "default") == 1);
	snprintf(args, sizeof(args), "unpark %d --tag default", pid);
	CHECK(run_ctl(args) == 0);
	CHECK(call1("kvmm_preload_state", "kv") == 1);
	snprintf(args, sizeof(args), "unpark %d", pid);
	CHECK(run_ctl(args) == 0);
	CHECK(holds(kv, 64 * MiB, 50) && holds(other, 64 * MiB, 51));
	CHECK(cudaFree(kv) == 0 && cudaFree(other) == 0);
	return fails;
}

/* fork: the child routes no GPU memory and knows none of the parent's;
 * the parent keeps everything, its control socket included. */
static int mode_fork(void)
{
	void *kv = NULL;
	pid_t c;
	int st;

	CHECK(cudaFree(NULL) == 0);
	CHECK(push("kv") == 0);
	CHECK(cudaMalloc(&kv, 64 * MiB) == 0);
	CHECK(pop() == 0);
	fill(kv, 64 * MiB, 60);
	c = fork();
	if (!c) {
		void *p = NULL;
		uint64_t before = mock().mem_allocs;
		int bad = 0;

		bad += call1("kvmm_preload_state", "kv") != -ENOENT;
		bad += park("kv", KVMM_PRELOAD_PARK_HOST) != -ENOENT;
		bad += cudaMalloc(&p, 64 * MiB) != 0;
		bad += mock().mem_allocs != before + 1; /* the real allocator's */
		bad += cudaFree(p) != 0;
		_exit(bad); /* no atexit: the stats are the parent's */
	}
	CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	printf("child_status=%d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	CHECK(park("kv", KVMM_PRELOAD_PARK_HOST) == 0);
	CHECK(unpark("kv") == 0);
	CHECK(holds(kv, 64 * MiB, 60));
	CHECK(cudaFree(kv) == 0);
	return fails;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	int ret;

	setvbuf(stdout, NULL, _IONBF, 0);
	if (!strcmp(mode, "runtime"))
		ret = mode_runtime();
	else if (!strcmp(mode, "driver"))
		ret = mode_driver();
	else if (!strcmp(mode, "park"))
		ret = mode_park();
	else if (!strcmp(mode, "nomem"))
		ret = mode_nomem();
	else if (!strcmp(mode, "ctl"))
		ret = mode_ctl();
	else if (!strcmp(mode, "fork"))
		ret = mode_fork();
	else {
		fprintf(stderr, "usage: cuprobe runtime|driver|park|nomem|ctl|fork\n");
		return 2;
	}
	printf("checks_failed=%d\n", ret);
	return ret ? 1 : 0;
}
