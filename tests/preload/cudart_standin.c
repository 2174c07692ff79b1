/* SPDX-License-Identifier: MIT */
/*
 * libcudart-standin.so: a stand-in for the CUDA runtime (libcudart), just
 * enough of it for tests/preload/cuprobe.c, built the way the real
 * runtime reaches the driver: it does not link libcuda, it dlopen()s
 * libcuda.so.1 (here the driver stand-in, tests/cuda/mock_cuda.c, found
 * through LD_LIBRARY_PATH), looks up cuGetProcAddress_v2 with dlsym on
 * that handle and resolves every driver function through it, and makes
 * the device's primary context current on each calling thread. cudaFree
 * synchronizes the context first, as the real one does.
 *
 * Not the runtime: no kernels, no streams of its own, device 0 only, and
 * error codes reduced to cudaSuccess (0), cudaErrorInvalidValue (1),
 * cudaErrorMemoryAllocation (2) and cudaErrorUnknown (999).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <cuda.h>

#define EXPORT __attribute__((visibility("default")))

#undef cuMemAlloc
#undef cuMemFree
#undef cuMemcpyHtoD
#undef cuMemcpyDtoH

typedef CUresult (*gpa_fn)(const char *, void **, int, cuuint64_t,
			   CUdriverProcAddressQueryResult *);

static struct {
	CUresult (*cuInit)(unsigned);
	CUresult (*cuDeviceGet)(CUdevice *, int);
	CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
	CUresult (*cuCtxPushCurrent)(CUcontext);
	CUresult (*cuCtxSynchronize)(void);
	CUresult (*cuMemAlloc)(CUdeviceptr *, size_t);
	CUresult (*cuMemFree)(CUdeviceptr);
	CUresult (*cuMemAllocAsync)(CUdeviceptr *, size_t, CUstream);
	CUresult (*cuMemFreeAsync)(CUdeviceptr, CUstream);
	CUresult (*cuMemcpyHtoD)(CUdeviceptr, const void *, size_t);
	CUresult (*cuMemcpyDtoH)(void *, CUdeviceptr, size_t);
} drv;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int init_err;
static CUcontext primary;
static __thread int current; /* the primary context is current on this thread */

static void standin_init(void)
{
	void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	gpa_fn gpa = h ? (gpa_fn)dlsym(h, "cuGetProcAddress_v2") : NULL;
	CUdevice dev;

	if (!gpa) {
		fprintf(stderr, "cudart-standin: no driver: %s\n", dlerror());
		init_err = 35; /* cudaErrorInsufficientDriver */
		return;
	}
#define RESOLVE(name)                                                                              \
	if (gpa(#name, (void **)&drv.name, CUDA_VERSION, CU_GET_PROC_ADDRESS_DEFAULT, NULL) ||     \
	    !drv.name) {                                                                           \
		fprintf(stderr, "cudart-standin: driver has no %s\n", #name);                      \
		init_err = 35;                                                                     \
		return;                                                                            \
	}
	RESOLVE(cuInit)
	RESOLVE(cuDeviceGet)
	RESOLVE(cuDevicePrimaryCtxRetain)
	RESOLVE(cuCtxPushCurrent)
	RESOLVE(cuCtxSynchronize)
	RESOLVE(cuMemAlloc)
	RESOLVE(cuMemFree)
	RESOLVE(cuMemAllocAsync)
	RESOLVE(cuMemFreeAsync)
	RESOLVE(cuMemcpyHtoD)
	RESOLVE(cuMemcpyDtoH)
#undef RESOLVE
	if (drv.cuInit(0) || drv.cuDeviceGet(&dev, 0) ||
	    drv.cuDevicePrimaryCtxRetain(&primary, dev))
		init_err = 3; /* cudaErrorInitializationError */
}

static int err_of(CUresult r)
{
	return r == CUDA_SUCCESS	       ? 0
	       : r == CUDA_ERROR_OUT_OF_MEMORY ? 2
	       : r == CUDA_ERROR_INVALID_VALUE ? 1
					       : 999;
}

/* The runtime's lazy start: the driver, then the context on this thread. */
static int enter(void)
{
	pthread_once(&once, standin_init);
	if (init_err)
		return init_err;
	if (!current) {
		if (drv.cuCtxPushCurrent(primary))
			return 3;
		current = 1;
	}
	return 0;
}

EXPORT int cudaGetDevice(int *d)
{
	*d = 0;
	return 0;
}

EXPORT int cudaMalloc(void **p, size_t n)
{
	CUdeviceptr d = 0;
	int e = enter();

	if (e)
		return e;
	e = err_of(drv.cuMemAlloc(&d, n));
	if (!e)
		*p = (void *)(uintptr_t)d;
	return e;
}

EXPORT int cudaFree(void *p)
{
	int e = enter();

	if (e || !p)
		return e;
	e = err_of(drv.cuCtxSynchronize());
	return e ? e : err_of(drv.cuMemFree((CUdeviceptr)(uintptr_t)p));
}

EXPORT int cudaMallocAsync(void **p, size_t n, void *stream)
{
	CUdeviceptr d = 0;
	int e = enter();

	if (e)
		return e;
	e = err_of(drv.cuMemAllocAsync(&d, n, (CUstream)stream));
	if (!e)
		*p = (void *)(uintptr_t)d;
	return e;
}

EXPORT int cudaFreeAsync(void *p, void *stream)
{
	int e = enter();

	return e ? e : err_of(drv.cuMemFreeAsync((CUdeviceptr)(uintptr_t)p, (CUstream)stream));
}

/* kind: 1 host to device, 2 device to host (cudaMemcpyKind). */
EXPORT int cudaMemcpy(void *dst, const void *src, size_t n, int kind)
{
	int e = enter();

	if (e)
		return e;
	if (kind == 1)
		return err_of(drv.cuMemcpyHtoD((CUdeviceptr)(uintptr_t)dst, src, n));
	if (kind == 2)
		return err_of(drv.cuMemcpyDtoH(dst, (CUdeviceptr)(uintptr_t)src, n));
	return 1;
}

EXPORT int cudaDeviceSynchronize(void)
{
	int e = enter();

	return e ? e : err_of(drv.cuCtxSynchronize());
}
