/* SPDX-License-Identifier: MIT */
/* Host-memory stand-in for libcuda.so.1 (see mock_cuda.h). */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cuda.h>

#include "mock_cuda.h"

#define EXPORT	 __attribute__((visibility("default")))
#define MAX_MAPS 65536

struct mock_handle {
	int fd;
	size_t size;
	int maps; /* live mappings: the memory lives until release and unmap */
	bool released;
};

struct mock_map {
	uintptr_t va;
	size_t size;
	struct mock_handle *h;
};

struct mock_stream {
	bool held;
	uint64_t gen; /* bumped when a hold ends */
};

struct mock_event {
	struct mock_stream *s;
	uint64_t gen;
	bool pending; /* recorded while its stream was held */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct mock_map maps[MAX_MAPS];
static struct mock_stream legacy; /* the NULL stream */
static struct mock_cuda_stats st;
static uint64_t gran = 2 << 20, mem_bytes = 1ULL << 30, mem_used;
static char fail_name[64];
static uint64_t fail_nth;
static int ctx_dummy;

static struct mock_stream *mock_stream(CUstream s)
{
	return s ? (struct mock_stream *)s : &legacy;
}

/* Whether this call is the one a test asked to fail. */
static bool mock_fail(const char *name)
{
	bool f = false;

	pthread_mutex_lock(&lock);
	if (fail_nth && !strcmp(name, fail_name))
		f = --fail_nth == 0;
	pthread_mutex_unlock(&lock);
	return f;
}

static CUresult violation(void)
{
	st.rule_violations++;
	return CUDA_ERROR_INVALID_VALUE;
}

EXPORT void mock_cuda_hold(void *stream, int held)
{
	struct mock_stream *s = mock_stream(stream);

	pthread_mutex_lock(&lock);
	if (s->held && !held)
		s->gen++;
	s->held = held;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
}

EXPORT void mock_cuda_stats(struct mock_cuda_stats *out)
{
	pthread_mutex_lock(&lock);
	*out = st;
	pthread_mutex_unlock(&lock);
}

EXPORT void mock_cuda_set_mem(uint64_t bytes)
{
	pthread_mutex_lock(&lock);
	mem_bytes = bytes;
	pthread_mutex_unlock(&lock);
}

EXPORT void mock_cuda_fail(const char *name, uint64_t nth)
{
	pthread_mutex_lock(&lock);
	snprintf(fail_name, sizeof(fail_name), "%s", name);
	fail_nth = nth;
	pthread_mutex_unlock(&lock);
}

EXPORT CUresult cuDriverGetVersion(int *v)
{
	*v = CUDA_VERSION;
	return CUDA_SUCCESS;
}

CUresult cuInit(unsigned int flags)
{
	const char *g = getenv("MOCK_CUDA_GRAN"), *m = getenv("MOCK_CUDA_MEM_BYTES");

	(void)flags;
	if (g)
		gran = strtoull(g, NULL, 0);
	if (m)
		mem_bytes = strtoull(m, NULL, 0);
	return CUDA_SUCCESS;
}

CUresult cuGetErrorString(CUresult e, const char **s)
{
	*s = e ? "mock error" : "no error";
	return CUDA_SUCCESS;
}

CUresult cuDeviceGet(CUdevice *d, int ordinal)
{
	if (ordinal != 0)
		return CUDA_ERROR_INVALID_DEVICE;
	*d = 0;
	return CUDA_SUCCESS;
}

CUresult cuDeviceGetCount(int *n)
{
	*n = 1;
	return CUDA_SUCCESS;
}

CUresult cuDeviceGetAttribute(int *v, CUdevice_attribute a, CUdevice d)
{
	(void)a, (void)d;
	*v = 0;
	return CUDA_SUCCESS;
}

CUresult cuDeviceGetPCIBusId(char *id, int len, CUdevice d)
{
	(void)d;
	snprintf(id, (size_t)len, "0000:00:00.0");
	return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRetain(CUcontext *c, CUdevice d)
{
	(void)d;
	*c = (CUcontext)&ctx_dummy;
	return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRelease(CUdevice d)
{
	(void)d;
	return CUDA_SUCCESS;
}

CUresult cuCtxPushCurrent(CUcontext c)
{
	(void)c;
	return CUDA_SUCCESS;
}

CUresult cuCtxPopCurrent(CUcontext *c)
{
	*c = (CUcontext)&ctx_dummy;
	return CUDA_SUCCESS;
}

CUresult cuMemGetAllocationGranularity(size_t *g, const CUmemAllocationProp *p,
				       CUmemAllocationGranularity_flags f)
{
	(void)p, (void)f;
	*g = gran;
	return CUDA_SUCCESS;
}

CUresult cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t align, CUdeviceptr addr,
			     unsigned long long flags)
{
	char *p;
	uintptr_t a;

	(void)addr, (void)flags;
	if (!size || size % gran || (align && align % gran))
		return violation();
	if (!align)
		align = gran;
	p = mmap(NULL, size + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return CUDA_ERROR_OUT_OF_MEMORY;
	a = ((uintptr_t)p + align - 1) / align * align;
	if (a > (uintptr_t)p)
		munmap(p, a - (uintptr_t)p);
	munmap((char *)a + size, (uintptr_t)p + align - a);
	*ptr = a;
	return CUDA_SUCCESS;
}

CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size)
{
	pthread_mutex_lock(&lock);
	for (int i = 0; i < MAX_MAPS; i++) {
		if (maps[i].h && maps[i].va >= ptr && maps[i].va < ptr + size)
			st.rule_violations++; /* still mapped */
	}
	pthread_mutex_unlock(&lock);
	munmap((void *)ptr, size);
	return CUDA_SUCCESS;
}

CUresult cuMemCreate(CUmemGenericAllocationHandle *out, size_t size,
		     const CUmemAllocationProp *prop, unsigned long long flags)
{
	struct mock_handle *h;

	(void)prop, (void)flags;
	if (!size || size % gran)
		return violation();
	if (mock_fail("cuMemCreate"))
		return CUDA_ERROR_OUT_OF_MEMORY;
	pthread_mutex_lock(&lock);
	if (mem_used + size > mem_bytes) {
		pthread_mutex_unlock(&lock);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	mem_used += size;
	st.creates++;
	st.live++;
	pthread_mutex_unlock(&lock);
	h = calloc(1, sizeof(*h));
	h->fd = memfd_create("mock-cuda", MFD_CLOEXEC);
	h->size = size;
	if (h->fd < 0 || ftruncate(h->fd, (off_t)size))
		abort();
	*out = (CUmemGenericAllocationHandle)(uintptr_t)h;
	return CUDA_SUCCESS;
}

static void mock_put(struct mock_handle *h)
{
	if (h->released && !h->maps) {
		mem_used -= h->size;
		close(h->fd);
		free(h);
	}
}

CUresult cuMemRelease(CUmemGenericAllocationHandle handle)
{
	struct mock_handle *h = (struct mock_handle *)(uintptr_t)handle;

	pthread_mutex_lock(&lock);
	if (h->released) {
		pthread_mutex_unlock(&lock);
		return violation();
	}
	h->released = true;
	st.releases++;
	st.live--;
	mock_put(h);
	pthread_mutex_unlock(&lock);
	return CUDA_SUCCESS;
}

static int mock_find(uintptr_t va, size_t size)
{
	for (int i = 0; i < MAX_MAPS; i++) {
		if (maps[i].h && maps[i].va < va + size && va < maps[i].va + maps[i].size)
			return i;
	}
	return -1;
}

CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle,
		  unsigned long long flags)
{
	struct mock_handle *h = (struct mock_handle *)(uintptr_t)handle;
	int i;

	(void)flags;
	if (ptr % gran || size % gran || offset % gran || offset + size > h->size)
		return violation();
	if (mock_fail("cuMemMap"))
		return CUDA_ERROR_OUT_OF_MEMORY;
	pthread_mutex_lock(&lock);
	if (h->released || mock_find(ptr, size) >= 0) {
		pthread_mutex_unlock(&lock);
		return violation();
	}
	for (i = 0; i < MAX_MAPS && maps[i].h; i++)
		;
	if (i == MAX_MAPS || mmap((void *)ptr, size, PROT_NONE, MAP_SHARED | MAP_FIXED, h->fd,
				  (off_t)offset) == MAP_FAILED) {
		pthread_mutex_unlock(&lock);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	maps[i] = (struct mock_map){.va = ptr, .size = size, .h = h};
	h->maps++;
	st.maps++;
	pthread_mutex_unlock(&lock);
	return CUDA_SUCCESS;
}

CUresult cuMemUnmap(CUdeviceptr ptr, size_t size)
{
	int i;

	pthread_mutex_lock(&lock);
	i = mock_find(ptr, size);
	if (i < 0 || maps[i].va != ptr || maps[i].size != size) {
		pthread_mutex_unlock(&lock);
		return violation(); /* must be exactly one earlier mapping */
	}
	mmap((void *)ptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED,
	     -1, 0);
	maps[i].h->maps--;
	mock_put(maps[i].h);
	maps[i].h = NULL;
	st.unmaps++;
	pthread_mutex_unlock(&lock);
	return CUDA_SUCCESS;
}

CUresult cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc, size_t count)
{
	size_t covered = 0;
	int prot;

	if (count != 1 || desc->location.type != CU_MEM_LOCATION_TYPE_DEVICE)
		return violation();
	pthread_mutex_lock(&lock);
	for (int i = 0; i < MAX_MAPS; i++) {
		if (maps[i].h && maps[i].va >= ptr && maps[i].va + maps[i].size <= ptr + size)
			covered += maps[i].size;
	}
	st.set_access++;
	pthread_mutex_unlock(&lock);
	if (covered != size)
		return violation(); /* every byte must be mapped */
	prot = desc->flags == CU_MEM_ACCESS_FLAGS_PROT_READWRITE ? PROT_READ | PROT_WRITE
	       : desc->flags == CU_MEM_ACCESS_FLAGS_PROT_READ	 ? PROT_READ
								 : PROT_NONE;
	return mprotect((void *)ptr, size, prot) ? CUDA_ERROR_INVALID_VALUE : CUDA_SUCCESS;
}

CUresult cuMemsetD8(CUdeviceptr ptr, unsigned char v, size_t n)
{
	memset((void *)ptr, v, n);
	return CUDA_SUCCESS;
}

CUresult cuMemsetD8Async(CUdeviceptr ptr, unsigned char v, size_t n, CUstream s)
{
	(void)s;
	memset((void *)ptr, v, n);
	return CUDA_SUCCESS;
}

/* A copy waits for its stream's hold: it stands behind the held kernel. */
static void mock_stream_wait(struct mock_stream *s)
{
	pthread_mutex_lock(&lock);
	while (s->held)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
}

CUresult cuMemcpyDtoHAsync(void *dst, CUdeviceptr src, size_t n, CUstream s)
{
	if (mock_fail("cuMemcpyDtoHAsync"))
		return CUDA_ERROR_ILLEGAL_ADDRESS;
	mock_stream_wait(mock_stream(s));
	memcpy(dst, (const void *)src, n);
	return CUDA_SUCCESS;
}

CUresult cuMemcpyHtoDAsync(CUdeviceptr dst, const void *src, size_t n, CUstream s)
{
	if (mock_fail("cuMemcpyHtoDAsync"))
		return CUDA_ERROR_ILLEGAL_ADDRESS;
	mock_stream_wait(mock_stream(s));
	memcpy((void *)dst, src, n);
	return CUDA_SUCCESS;
}

CUresult cuMemHostAlloc(void **p, size_t n, unsigned int flags)
{
	(void)flags;
	return posix_memalign(p, 4096, n) ? CUDA_ERROR_OUT_OF_MEMORY : CUDA_SUCCESS;
}

CUresult cuMemFreeHost(void *p)
{
	free(p);
	return CUDA_SUCCESS;
}

CUresult cuMemHostRegister(void *p, size_t n, unsigned int flags)
{
	(void)p, (void)n, (void)flags;
	return CUDA_SUCCESS;
}

CUresult cuMemHostUnregister(void *p)
{
	(void)p;
	return CUDA_SUCCESS;
}

CUresult cuStreamCreate(CUstream *s, unsigned int flags)
{
	(void)flags;
	*s = (CUstream)calloc(1, sizeof(struct mock_stream));
	return CUDA_SUCCESS;
}

CUresult cuStreamDestroy(CUstream s)
{
	free(s);
	return CUDA_SUCCESS;
}

CUresult cuStreamSynchronize(CUstream s)
{
	st.stream_syncs++;
	mock_stream_wait(mock_stream(s));
	return CUDA_SUCCESS;
}

static bool mock_event_pending(const struct mock_event *e)
{
	return e->pending && e->s->held && e->s->gen == e->gen;
}

CUresult cuStreamWaitEvent(CUstream s, CUevent ev, unsigned int flags)
{
	struct mock_event *e = (struct mock_event *)ev;

	(void)s, (void)flags;
	pthread_mutex_lock(&lock);
	while (mock_event_pending(e)) /* copies run at once: wait here */
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
	return CUDA_SUCCESS;
}

CUresult cuEventCreate(CUevent *ev, unsigned int flags)
{
	(void)flags;
	*ev = (CUevent)calloc(1, sizeof(struct mock_event));
	return CUDA_SUCCESS;
}

CUresult cuEventDestroy(CUevent ev)
{
	free(ev);
	return CUDA_SUCCESS;
}

CUresult cuEventRecord(CUevent ev, CUstream s)
{
	struct mock_event *e = (struct mock_event *)ev;

	pthread_mutex_lock(&lock);
	e->s = mock_stream(s);
	e->gen = e->s->gen;
	e->pending = e->s->held;
	pthread_mutex_unlock(&lock);
	return CUDA_SUCCESS;
}

CUresult cuEventQuery(CUevent ev)
{
	CUresult r;

	pthread_mutex_lock(&lock);
	r = mock_event_pending((struct mock_event *)ev) ? CUDA_ERROR_NOT_READY : CUDA_SUCCESS;
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuEventSynchronize(CUevent ev)
{
	pthread_mutex_lock(&lock);
	st.event_syncs++;
	while (mock_event_pending((struct mock_event *)ev))
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
	return CUDA_SUCCESS;
}

CUresult cuEventElapsedTime(float *ms, CUevent a, CUevent b)
{
	(void)a, (void)b;
	*ms = 0;
	return CUDA_SUCCESS;
}

struct mock_fn {
	const char *name;
	void *fn;
};

#define FN(n)                                                                                      \
	{                                                                                          \
#n, (void *)n                                                                      \
	}
static const struct mock_fn fns[] = {
    FN(cuInit),
    FN(cuGetErrorString),
    FN(cuDeviceGet),
    FN(cuDeviceGetCount),
    FN(cuDeviceGetAttribute),
    FN(cuDeviceGetPCIBusId),
    FN(cuDevicePrimaryCtxRetain),
    FN(cuDevicePrimaryCtxRelease),
    FN(cuCtxPushCurrent),
    FN(cuCtxPopCurrent),
    FN(cuMemGetAllocationGranularity),
    FN(cuMemAddressReserve),
    FN(cuMemAddressFree),
    FN(cuMemCreate),
    FN(cuMemRelease),
    FN(cuMemMap),
    FN(cuMemUnmap),
    FN(cuMemSetAccess),
    FN(cuMemsetD8),
    FN(cuMemsetD8Async),
    FN(cuMemcpyDtoHAsync),
    FN(cuMemcpyHtoDAsync),
    FN(cuMemHostAlloc),
    FN(cuMemFreeHost),
    FN(cuMemHostRegister),
    FN(cuMemHostUnregister),
    FN(cuStreamCreate),
    FN(cuStreamDestroy),
    FN(cuStreamSynchronize),
    FN(cuStreamWaitEvent),
    FN(cuEventCreate),
    FN(cuEventDestroy),
    FN(cuEventRecord),
    FN(cuEventQuery),
    FN(cuEventSynchronize),
    FN(cuEventElapsedTime),
};

EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int version, cuuint64_t flags,
				    CUdriverProcAddressQueryResult *status)
{
	(void)version, (void)flags;
	for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
		if (!strcmp(fns[i].name, symbol)) {
			*pfn = fns[i].fn;
			if (status)
				*status = CU_GET_PROC_ADDRESS_SUCCESS;
			return CUDA_SUCCESS;
		}
	}
	*pfn = NULL;
	if (status)
		*status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
	return CUDA_ERROR_NOT_FOUND;
}
