/* SPDX-License-Identifier: MIT */
/*
 * The CUDA driver, loaded at run time: dlopen("libcuda.so.1") and every
 * entry point resolved through cuGetProcAddress for the ABI of the cuda.h
 * libkvmm was built against (capped at the installed driver's version).
 * libkvmm never links libcuda. Built without cuda.h, KVMM_HAVE_CUDA_H is
 * undefined and kvmm_cuda_drv_get() always returns -ENODEV.
 */
#ifndef KVMM_LIB_CUDA_DRV_H
#define KVMM_LIB_CUDA_DRV_H

#ifdef KVMM_HAVE_CUDA_H
#include <stdbool.h>

#include <cuda.h>

/* Entry points: the name passed to cuGetProcAddress, typed from cuda.h. */
#define KVMM_CUDA_FUNCS(X)                                                                         \
	X(cuInit)                                                                                  \
	X(cuGetErrorString)                                                                        \
	X(cuDeviceGet)                                                                             \
	X(cuDeviceGetCount)                                                                        \
	X(cuDeviceGetAttribute)                                                                    \
	X(cuDeviceGetPCIBusId)                                                                     \
	X(cuDevicePrimaryCtxRetain)                                                                \
	X(cuDevicePrimaryCtxRelease)                                                               \
	X(cuCtxPushCurrent)                                                                        \
	X(cuCtxPopCurrent)                                                                         \
	X(cuCtxSynchronize)                                                                        \
	X(cuThreadExchangeStreamCaptureMode)                                                       \
	X(cuStreamGetCtx)                                                                          \
	X(cuMemGetAllocationGranularity)                                                           \
	X(cuMemAddressReserve)                                                                     \
	X(cuMemAddressFree)                                                                        \
	X(cuMemCreate)                                                                             \
	X(cuMemRelease)                                                                            \
	X(cuMemMap)                                                                                \
	X(cuMemUnmap)                                                                              \
	X(cuMemSetAccess)                                                                          \
	X(cuMemsetD8Async)                                                                         \
	X(cuMemcpyDtoHAsync)                                                                       \
	X(cuMemcpyHtoDAsync)                                                                       \
	X(cuMemcpyDtoDAsync)                                                                       \
	X(cuMemHostAlloc)                                                                          \
	X(cuMemFreeHost)                                                                           \
	X(cuMemHostRegister)                                                                       \
	X(cuMemHostUnregister)                                                                     \
	X(cuStreamCreate)                                                                          \
	X(cuStreamDestroy)                                                                         \
	X(cuStreamSynchronize)                                                                     \
	X(cuStreamWaitEvent)                                                                       \
	X(cuEventCreate)                                                                           \
	X(cuEventDestroy)                                                                          \
	X(cuEventRecord)                                                                           \
	X(cuEventQuery)                                                                            \
	X(cuEventSynchronize)                                                                      \
	X(cuEventElapsedTime)

/* cuda.h maps some names to versioned symbols (cuMemcpyDtoHAsync_v2, ...);
 * the field and its type follow, the looked-up name stays the base one. */
struct kvmm_cuda_drv {
	void *lib;
	int driver_version; /* cuDriverGetVersion */
	int abi_version;    /* the version asked of cuGetProcAddress */
#define KVMM_CUDA_FIELD(name) __typeof__(&name) name;
	KVMM_CUDA_FUNCS(KVMM_CUDA_FIELD)
#undef KVMM_CUDA_FIELD
};

/* Every event libkvmm makes: no timing, and a host wait on it sleeps
 * instead of spinning a core (waits may run under the cache's lock). */
#define KVMM_CUDA_EVENT_FLAGS (CU_EVENT_DISABLE_TIMING | CU_EVENT_BLOCKING_SYNC)

/* A negative errno for a CUresult (0 for CUDA_SUCCESS). */
int kvmm_cuda_err(CUresult r);

/*
 * Relaxed stream-capture mode for this thread, for libkvmm's own threads
 * and moves (mapper, pool, swaps): their synchronizing calls then never
 * invalidate a CUDA graph an engine thread captures in global mode.
 * Returns the mode to give back to kvmm_cuda_capture_restore().
 */
static inline int kvmm_cuda_capture_relax(const struct kvmm_cuda_drv *d)
{
	CUstreamCaptureMode m = CU_STREAM_CAPTURE_MODE_RELAXED;

	return d->cuThreadExchangeStreamCaptureMode(&m) == CUDA_SUCCESS ? (int)m : -1;
}

static inline void kvmm_cuda_capture_restore(const struct kvmm_cuda_drv *d, int mode)
{
	CUstreamCaptureMode m = (CUstreamCaptureMode)mode;

	if (mode >= 0)
		d->cuThreadExchangeStreamCaptureMode(&m);
}

/* Whether @r is a sticky error: the context is lost, no work runs in it
 * any more, and every later call returns the error. Release calls
 * (cuMemUnmap, cuMemRelease, cuEventDestroy ...) still release then. */
bool kvmm_cuda_lost(CUresult r);
#else
struct kvmm_cuda_drv;
#endif

/*
 * kvmm_cuda_drv_get() - the process-wide driver table, loaded on first use.
 * Return: 0; -ENODEV built without cuda.h, libcuda.so.1 missing, an entry
 * point missing or cuInit failed (kvmm_cuda_why() says which); the
 * same result on every later call.
 */
int kvmm_cuda_drv_get(const struct kvmm_cuda_drv **drvp);

/* kvmm_cuda_why() (public, kvmm.h) says why the last load failed, or ""
 * after a successful one; also why the last CUDA cache refused its device. */

/* Sets what kvmm_cuda_why() says, printf-style. */
void kvmm_cuda_set_why(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Pure helper: the ABI version to request, min(driver, header). */
int kvmm_cuda_abi_version(int driver_version, int header_version);

#endif
