/* SPDX-License-Identifier: MIT */
/*
 * The driver stand-in's own contract (mock_cuda.h), through the driver
 * API as libkvmm calls it: refusals the real driver documents, work that
 * completes later and in stream order, legacy and non-blocking streams,
 * faults that stick, hazards, contexts, attributes and the synchronous
 * copies. What libkvmm's tests prove holds only as far as this does.
 */
#include "helpers.h"

#include <dlfcn.h>

#include "mock_cuda.h"

#ifdef KVMM_HAVE_CUDA_H
#include <cuda.h>

#define GRAN (192U << 10)

#define DRV_FUNCS(X)                                                                               \
	X(cuInit)                                                                                  \
	X(cuDeviceGet)                                                                             \
	X(cuDeviceGetAttribute)                                                                    \
	X(cuDevicePrimaryCtxRetain)                                                                \
	X(cuDevicePrimaryCtxRelease)                                                               \
	X(cuCtxPushCurrent)                                                                        \
	X(cuCtxPopCurrent)                                                                         \
	X(cuCtxSynchronize)                                                                        \
	X(cuMemGetAllocationGranularity)                                                           \
	X(cuMemAddressReserve)                                                                     \
	X(cuMemAddressFree)                                                                        \
	X(cuMemCreate)                                                                             \
	X(cuMemRelease)                                                                            \
	X(cuMemMap)                                                                                \
	X(cuMemUnmap)                                                                              \
	X(cuMemSetAccess)                                                                          \
	X(cuMemsetD8)                                                                              \
	X(cuMemsetD8Async)                                                                         \
	X(cuMemcpyHtoD)                                                                            \
	X(cuMemcpyDtoH)                                                                            \
	X(cuMemcpyHtoDAsync)                                                                       \
	X(cuMemcpyDtoHAsync)                                                                       \
	X(cuMemHostAlloc)                                                                          \
	X(cuMemFreeHost)                                                                           \
	X(cuStreamCreate)                                                                          \
	X(cuStreamDestroy)                                                                         \
	X(cuStreamSynchronize)                                                                     \
	X(cuStreamQuery)                                                                           \
	X(cuStreamWaitEvent)                                                                       \
	X(cuEventCreate)                                                                           \
	X(cuEventDestroy)                                                                          \
	X(cuEventRecord)                                                                           \
	X(cuEventQuery)                                                                            \
	X(cuEventSynchronize)

static struct {
#define DRV_FIELD(name) __typeof__(&name) name;
	DRV_FUNCS(DRV_FIELD)
#undef DRV_FIELD
} d;

static mock_cuda_stats_fn mock_stats;
static mock_cuda_set_attr_fn mock_set_attr;
static mock_cuda_reset_fn mock_reset;
static mock_cuda_hold_fn mock_hold;

static CUcontext ctx;

/* Fails the test unless @call returns @want (a CUresult). */
#define CU_EQ(call, want)                                                                          \
	do {                                                                                       \
		CUresult r_ = (call);                                                              \
		if (r_ != (want))                                                                  \
			fail_msg("%s: expected CUresult %d, seen %d", #call, (int)(want),          \
				 (int)r_);                                                         \
	} while (0)
#define CU_OK(call) CU_EQ(call, CUDA_SUCCESS)

static struct mock_cuda_stats stats(void)
{
	struct mock_cuda_stats st;

	mock_stats(&st);
	return st;
}

static CUmemAllocationProp prop(void)
{
	CUmemAllocationProp p;

	memset(&p, 0, sizeof(p));
	p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	p.location.id = 0;
	return p;
}

/* @chunks granules of device memory, mapped read-write at *va. */
struct dev {
	CUdeviceptr va;
	size_t bytes;
	CUmemGenericAllocationHandle h;
};

static void dev_get(struct dev *m, size_t chunks)
{
	CUmemAllocationProp p = prop();
	CUmemAccessDesc a = {.location = p.location, .flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE};

	m->bytes = chunks * GRAN;
	CU_OK(d.cuMemAddressReserve(&m->va, m->bytes, 0, 0, 0));
	CU_OK(d.cuMemCreate(&m->h, m->bytes, &p, 0));
	CU_OK(d.cuMemMap(m->va, m->bytes, 0, m->h, 0));
	CU_OK(d.cuMemSetAccess(m->va, m->bytes, &a, 1));
}

static void dev_put(struct dev *m)
{
	CU_OK(d.cuMemUnmap(m->va, m->bytes));
	CU_OK(d.cuMemRelease(m->h));
	CU_OK(d.cuMemAddressFree(m->va, m->bytes));
}

static int setup(void **state)
{
	(void)state;
	mock_reset();
	CU_OK(d.cuCtxPushCurrent(ctx));
	return 0;
}

static int teardown(void **state)
{
	CUcontext c;

	(void)state;
	d.cuCtxPopCurrent(&c);
	return 0;
}

static void map_offset_must_be_zero(void **state)
{
	CUmemAllocationProp p = prop();
	CUmemGenericAllocationHandle h;
	CUdeviceptr va;

	(void)state;
	CU_OK(d.cuMemAddressReserve(&va, 2 * GRAN, 0, 0, 0));
	CU_OK(d.cuMemCreate(&h, 2 * GRAN, &p, 0));
	CU_EQ(d.cuMemMap(va, GRAN, GRAN, h, 0), CUDA_ERROR_INVALID_VALUE);
	CU_EQ(d.cuMemMap(va, GRAN, 0, h, 1), CUDA_ERROR_INVALID_VALUE); /* flags */
	T_EQ(stats().rule_violations, 2);
	CU_OK(d.cuMemMap(va, GRAN, 0, h, 0)); /* part of an allocation, from offset 0 */
	CU_OK(d.cuMemUnmap(va, GRAN));
	CU_OK(d.cuMemRelease(h));
	CU_OK(d.cuMemAddressFree(va, 2 * GRAN));
	T_EQ(stats().rule_violations, 2);
}

static void sizes_and_addresses_off_the_granularity_are_refused(void **state)
{
	CUmemAllocationProp p = prop();
	CUmemAccessDesc a = {.location = p.location, .flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
	CUmemGenericAllocationHandle h, h2;
	CUdeviceptr va, va2;
	size_t g = 0;

	(void)state;
	CU_OK(d.cuMemGetAllocationGranularity(&g, &p, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
	T_EQ(g, GRAN);
	CU_EQ(d.cuMemCreate(&h, GRAN + 4096, &p, 0), CUDA_ERROR_INVALID_VALUE);
	CU_EQ(d.cuMemAddressReserve(&va, 4 * GRAN + 100, 0, 0, 0), CUDA_ERROR_INVALID_VALUE);
	CU_EQ(d.cuMemAddressReserve(&va, 4 * GRAN, 3 << 12, 0, 0), CUDA_ERROR_INVALID_VALUE);
	CU_OK(d.cuMemAddressReserve(&va, 4 * GRAN, 0, 0, 0));
	T_EQ(va % GRAN, 0);
	CU_OK(d.cuMemCreate(&h, 2 * GRAN, &p, 0));
	CU_EQ(d.cuMemMap(va + 4096, GRAN, 0, h, 0), CUDA_ERROR_INVALID_VALUE);
	CU_EQ(d.cuMemMap(va, GRAN + 4096, 0, h, 0), CUDA_ERROR_INVALID_VALUE);
	CU_EQ(d.cuMemMap(va, 4 * GRAN, 0, h, 0), CUDA_ERROR_INVALID_VALUE); /* past the handle */
	CU_EQ(d.cuMemMap(va + 4 * GRAN, GRAN, 0, h, 0), CUDA_ERROR_INVALID_VALUE); /* unreserved */
	CU_OK(d.cuMemMap(va, 2 * GRAN, 0, h, 0));
	CU_OK(d.cuMemCreate(&h2, GRAN, &p, 0));
	CU_EQ(d.cuMemMap(va + GRAN, GRAN, 0, h2, 0), CUDA_ERROR_INVALID_VALUE); /* mapped */
	CU_EQ(d.cuMemSetAccess(va, 3 * GRAN, &a, 1), CUDA_ERROR_INVALID_VALUE); /* a hole */
	CU_EQ(d.cuMemSetAccess(va, GRAN, &a, 1), CUDA_ERROR_INVALID_VALUE);	/* half a mapping */
	CU_EQ(d.cuMemUnmap(va, GRAN), CUDA_ERROR_INVALID_VALUE);		/* a sub-range */
	CU_EQ(d.cuMemAddressFree(va, 2 * GRAN), CUDA_ERROR_INVALID_VALUE);	/* another size */
	CU_EQ(d.cuMemAddressFree(va, 4 * GRAN), CUDA_ERROR_INVALID_VALUE);	/* still mapped */
	T_EQ(stats().rule_violations, 13);
	CU_OK(d.cuMemSetAccess(va, 2 * GRAN, &a, 1));
	CU_OK(d.cuMemUnmap(va, 2 * GRAN));
	CU_OK(d.cuMemRelease(h));
	CU_OK(d.cuMemRelease(h2));
	CU_EQ(d.cuMemRelease(h2), CUDA_ERROR_INVALID_VALUE); /* twice */
	CU_OK(d.cuMemAddressFree(va, 4 * GRAN));
	/* 768 KiB, a multiple of the granularity, but not a power of two */
	CU_EQ(d.cuMemAddressReserve(&va2, 4 * GRAN, 4 * GRAN, 0, 0), CUDA_ERROR_INVALID_VALUE);
	T_EQ(stats().rule_violations, 15);
	T_EQ(stats().live, 0);
}

static void work_completes_later_in_stream_order(void **state)
{
	unsigned char *host, want[64];
	CUevent ev;
	CUstream s;
	struct dev m;

	(void)state;
	dev_get(&m, 1);
	CU_OK(d.cuMemHostAlloc((void **)&host, 64, 0));
	memset(host, 7, 64);
	CU_OK(d.cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CU_OK(d.cuEventCreate(&ev, CU_EVENT_DISABLE_TIMING));
	CU_OK(d.cuMemsetD8Async(m.va, 1, 64, s));
	CU_OK(d.cuMemcpyHtoDAsync(m.va + 8, host, 8, s));
	CU_OK(d.cuEventRecord(ev, s));
	T_EQ(((unsigned char *)m.va)[0], 0); /* nothing ran yet */
	memset(host, 9, 64);		     /* the copy reads the source when it runs */
	CU_EQ(d.cuEventQuery(ev), CUDA_ERROR_NOT_READY);
	CU_EQ(d.cuStreamQuery(s), CUDA_ERROR_NOT_READY);
	CU_OK(d.cuEventSynchronize(ev));
	memset(want, 1, 64);
	memset(want + 8, 9, 8);
	T_SAME_BYTES((unsigned char *)m.va, want, 64); /* memset, then the copy */
	CU_OK(d.cuEventQuery(ev));
	CU_OK(d.cuStreamQuery(s));
	CU_OK(d.cuEventDestroy(ev));
	CU_OK(d.cuStreamDestroy(s));
	CU_OK(d.cuMemFreeHost(host));
	dev_put(&m);
	T_EQ(stats().rule_violations, 0);
}

static void a_poll_loop_ends_but_never_at_once(void **state)
{
	CUevent ev;
	CUstream s;
	struct dev m;
	int polls = 0;

	(void)state;
	dev_get(&m, 1);
	CU_OK(d.cuStreamCreate(&s, 0));
	CU_OK(d.cuEventCreate(&ev, 0));
	CU_OK(d.cuEventQuery(ev)); /* never recorded: nothing to wait for */
	for (int i = 0; i < 3; i++)
		CU_OK(d.cuMemsetD8Async(m.va, (unsigned char)i, 4096, s));
	CU_OK(d.cuEventRecord(ev, s));
	while (d.cuEventQuery(ev) == CUDA_ERROR_NOT_READY)
		polls++;
	T_EQ(polls, 4); /* one op per query: three memsets and the record */
	CU_OK(d.cuEventDestroy(ev));
	CU_OK(d.cuStreamDestroy(s));
	dev_put(&m);
}

static void legacy_stream_orders_with_blocking_streams_only(void **state)
{
	unsigned char seen[2];
	CUstream blk, nb;
	struct dev m;

	(void)state;
	dev_get(&m, 1);
	CU_OK(d.cuStreamCreate(&blk, CU_STREAM_DEFAULT));
	CU_OK(d.cuStreamCreate(&nb, CU_STREAM_NON_BLOCKING));
	CU_OK(d.cuMemsetD8Async(m.va, 5, 1, blk));
	CU_OK(d.cuMemsetD8Async(m.va + 1, 6, 1, nb));
	CU_OK(d.cuMemcpyDtoHAsync(seen, m.va, 2, NULL));
	CU_OK(d.cuStreamSynchronize(NULL));
	T_EQ(seen[0], 5); /* the legacy stream waited for the blocking one */
	T_EQ(seen[1], 0); /* not for the non-blocking one */
	CU_OK(d.cuMemsetD8Async(m.va, 8, 1, NULL));
	CU_OK(d.cuMemcpyDtoHAsync(seen, m.va, 1, blk));
	CU_OK(d.cuStreamSynchronize(blk));
	T_EQ(seen[0], 8); /* and the blocking one waits for the legacy one */
	CU_OK(d.cuCtxSynchronize());
	T_EQ(((unsigned char *)m.va)[1], 6);
	CU_OK(d.cuStreamDestroy(blk));
	CU_OK(d.cuStreamDestroy(nb));
	dev_put(&m);
}

static void a_stream_waits_for_an_event_of_another(void **state)
{
	unsigned char seen = 0;
	CUstream a, b;
	CUevent ev;
	struct dev m;

	(void)state;
	dev_get(&m, 1);
	CU_OK(d.cuStreamCreate(&a, CU_STREAM_NON_BLOCKING));
	CU_OK(d.cuStreamCreate(&b, CU_STREAM_NON_BLOCKING));
	CU_OK(d.cuEventCreate(&ev, CU_EVENT_DISABLE_TIMING));
	mock_hold(a, 1); /* a kernel on a still runs */
	CU_OK(d.cuMemsetD8Async(m.va, 3, 1, a));
	CU_OK(d.cuEventRecord(ev, a));
	CU_OK(d.cuStreamWaitEvent(b, ev, 0));
	CU_OK(d.cuEventDestroy(ev)); /* allowed before it completes; the wait holds */
	CU_OK(d.cuMemcpyDtoHAsync(&seen, m.va, 1, b));
	CU_EQ(d.cuStreamQuery(b), CUDA_ERROR_NOT_READY);
	CU_EQ(d.cuStreamQuery(b), CUDA_ERROR_NOT_READY); /* stuck behind the kernel */
	mock_hold(a, 0);
	CU_OK(d.cuStreamSynchronize(b));
	T_EQ(seen, 3);
	CU_OK(d.cuStreamDestroy(a));
	CU_OK(d.cuStreamDestroy(b));
	dev_put(&m);
}

static void bad_addresses_fault_and_the_error_sticks(void **state)
{
	CUmemAccessDesc ro = {.location = prop().location, .flags = CU_MEM_ACCESS_FLAGS_PROT_READ};
	unsigned char b[16];
	CUstream s;
	CUevent ev;
	struct dev m;

	(void)state;
	dev_get(&m, 2);
	CU_OK(d.cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CU_OK(d.cuMemcpyDtoHAsync(b, m.va + 2 * GRAN, 16, s)); /* past the mapping */
	CU_EQ(d.cuStreamSynchronize(s), CUDA_ERROR_ILLEGAL_ADDRESS);
	T_EQ(stats().faults, 1);
	CU_EQ(d.cuEventCreate(&ev, 0), CUDA_ERROR_ILLEGAL_ADDRESS); /* the context is lost */
	CU_EQ(d.cuStreamDestroy(s), CUDA_ERROR_ILLEGAL_ADDRESS);    /* releases still release */
	mock_reset();
	CU_OK(d.cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CU_OK(d.cuMemSetAccess(m.va, 2 * GRAN, &ro, 1));
	CU_OK(d.cuMemsetD8Async(m.va, 1, 16, s)); /* queued: checked when it runs */
	CU_EQ(d.cuStreamSynchronize(s), CUDA_ERROR_ILLEGAL_ADDRESS);
	T_EQ(((unsigned char *)m.va)[0], 0); /* not done */
	mock_reset();
	CU_OK(d.cuStreamDestroy(s));
	dev_put(&m);
	T_EQ(stats().rule_violations, 0);
}

static void host_calls_racing_queued_work_are_hazards(void **state)
{
	unsigned char *host;
	CUstream s;
	struct dev m;

	(void)state;
	dev_get(&m, 1);
	CU_OK(d.cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CU_OK(d.cuMemHostAlloc((void **)&host, 4096, 0));
	CU_OK(d.cuMemcpyDtoHAsync(host, m.va, 4096, s));
	CU_OK(d.cuMemUnmap(m.va, m.bytes)); /* the driver does it... */
	T_EQ(stats().hazards, 1);	    /* ...but the copy may run before or after */
	CU_OK(d.cuMemFreeHost(host));
	T_EQ(stats().hazards, 2);
	mock_reset(); /* the queued copy is dropped with the rest */
	CU_OK(d.cuMemRelease(m.h));
	CU_OK(d.cuMemAddressFree(m.va, m.bytes));
	CU_OK(d.cuStreamDestroy(s));
}

static void stream_work_needs_a_current_context(void **state)
{
	CUcontext c;
	CUstream s;
	void *p = malloc(64);

	(void)state;
	CU_OK(d.cuCtxPopCurrent(&c));
	CU_EQ(d.cuStreamCreate(&s, 0), CUDA_ERROR_INVALID_CONTEXT);
	CU_EQ(d.cuCtxPopCurrent(&c), CUDA_ERROR_INVALID_CONTEXT);
	CU_OK(d.cuCtxPushCurrent(ctx));
	CU_EQ(d.cuMemFreeHost(p), CUDA_ERROR_INVALID_VALUE); /* malloc, not cuMemHostAlloc */
	CU_EQ(d.cuStreamCreate(&s, 0x80), CUDA_ERROR_INVALID_VALUE);
	T_EQ(stats().rule_violations, 4);
	free(p);
}

static void attributes_are_reported_and_vmm_can_be_missing(void **state)
{
	CUmemAllocationProp p = prop();
	CUmemGenericAllocationHandle h;
	CUdevice dev;
	int v;

	(void)state;
	CU_OK(d.cuDeviceGet(&dev, 0));
	CU_EQ(d.cuDeviceGet(&dev, 1), CUDA_ERROR_INVALID_DEVICE);
	CU_OK(d.cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED,
				     dev));
	T_EQ(v, 1);
	CU_OK(d.cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING, dev));
	T_EQ(v, 1);
	CU_OK(d.cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev));
	T_EQ(v, 9);
	CU_OK(d.cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev));
	T_EQ(v, 0);
	CU_EQ(d.cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_MAX, dev), CUDA_ERROR_INVALID_VALUE);
	mock_set_attr(CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, 0);
	CU_OK(d.cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED,
				     dev));
	T_EQ(v, 0);
	CU_EQ(d.cuMemCreate(&h, GRAN, &p, 0), CUDA_ERROR_NOT_SUPPORTED);
	mock_set_attr(CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, 1);
}

static void synchronous_copies_behave_as_documented(void **state)
{
	unsigned char src[32], seen[32];
	CUstream s;
	struct dev m;

	(void)state;
	dev_get(&m, 1);
	CU_OK(d.cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	mock_hold(s, 1); /* nothing syncs with a non-blocking stream */
	memset(src, 4, sizeof(src));
	CU_OK(d.cuMemcpyHtoD(m.va, src, sizeof(src))); /* pageable: staged at the call */
	memset(src, 0, sizeof(src));
	CU_OK(d.cuMemsetD8(m.va + 16, 2, 16)); /* to the device: asynchronous */
	T_EQ(((unsigned char *)m.va)[16], 0);
	CU_OK(d.cuMemcpyDtoH(seen, m.va, sizeof(seen))); /* returns once done */
	T_EQ(seen[0], 4);
	T_EQ(seen[16], 2);
	mock_hold(s, 0);
	CU_OK(d.cuStreamDestroy(s));
	dev_put(&m);
}

#define RESOLVE(var, name)                                                                         \
	do {                                                                                       \
		*(void **)&(var) = dlsym(h, name);                                                 \
		if (!(var)) {                                                                      \
			printf("skip: %s has no %s: not the stand-in\n", lib, name);               \
			return T_SKIP_EXIT;                                                        \
		}                                                                                  \
	} while (0)

#define TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
#else
/* Built without cuda.h: the tests' names only, for --list; the program skips. */
#define TEST(f) T_NOT_BUILT(f)
#endif

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    TEST(map_offset_must_be_zero),
	    TEST(sizes_and_addresses_off_the_granularity_are_refused),
	    TEST(work_completes_later_in_stream_order),
	    TEST(a_poll_loop_ends_but_never_at_once),
	    TEST(legacy_stream_orders_with_blocking_streams_only),
	    TEST(a_stream_waits_for_an_event_of_another),
	    TEST(bad_addresses_fault_and_the_error_sticks),
	    TEST(host_calls_racing_queued_work_are_hazards),
	    TEST(stream_work_needs_a_current_context),
	    TEST(attributes_are_reported_and_vmm_can_be_missing),
	    TEST(synchronous_copies_behave_as_documented),
	};

	T_LIST(argc, argv, T_GROUP(tests));
#ifndef KVMM_HAVE_CUDA_H
	t_skip_program(
	    "built without cuda.h (no $CUDA_HOME/include/cuda.h): no CUDA driver stand-in to "
	    "test; install the CUDA toolkit, or set CUDA_HOME to it");
#else
	const char *lib = getenv("KVMM_TEST_MOCK_CUDA");
	CUresult (*gpa)(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *);
	void *h;

	if (!lib || !(h = dlopen(lib, RTLD_NOW))) {
		printf(
		    "skip: no CUDA driver stand-in: %s\n",
		    lib ? dlerror()
			: "KVMM_TEST_MOCK_CUDA is unset (make check-cuda builds the stand-in and "
			  "sets it)");
		return T_SKIP_EXIT;
	}
	if (getenv("MOCK_CUDA_SEED")) {
		printf(
		    "skip: these tests count the stand-in's steps: run without MOCK_CUDA_SEED\n");
		return T_SKIP_EXIT;
	}
	RESOLVE(mock_stats, "mock_cuda_stats");
	RESOLVE(mock_set_attr, "mock_cuda_set_attr");
	RESOLVE(mock_reset, "mock_cuda_reset");
	RESOLVE(mock_hold, "mock_cuda_hold");
	RESOLVE(gpa, "cuGetProcAddress_v2");
#define DRV_RESOLVE(name)                                                                          \
	if (gpa(#name, (void **)&d.name, CUDA_VERSION, CU_GET_PROC_ADDRESS_DEFAULT, NULL)) {       \
		printf("the stand-in has no %s\n", #name);                                         \
		return 1;                                                                          \
	}
	DRV_FUNCS(DRV_RESOLVE)
#undef DRV_RESOLVE
	setenv("MOCK_CUDA_GRAN", "196608", 1);
	if (d.cuInit(0) || d.cuDevicePrimaryCtxRetain(&ctx, 0)) {
		printf("the stand-in did not start\n");
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
#endif
}
