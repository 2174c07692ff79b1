/* SPDX-License-Identifier: MIT */
/*
 * CUDA driver loader. KVMM_CUDA_LIBRARY names another driver library
 * (tests use it to load a host-memory stand-in); otherwise libcuda.so.1.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kvmm/kvmm.h>

#include "cuda_drv.h"

static char why[320];
static pthread_mutex_t why_lock = PTHREAD_MUTEX_INITIALIZER;

const char *kvmm_cuda_why(void)
{
	return why;
}

void kvmm_cuda_set_why(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&why_lock);
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&why_lock);
}

int kvmm_cuda_abi_version(int driver_version, int header_version)
{
	return driver_version < header_version ? driver_version : header_version;
}

#ifdef KVMM_HAVE_CUDA_H
#include <dlfcn.h>

static struct kvmm_cuda_drv drv;
static int drv_err;
static pthread_once_t drv_once = PTHREAD_ONCE_INIT;

int kvmm_cuda_err(CUresult r)
{
	switch (r) {
	case CUDA_SUCCESS:
		return 0;
	case CUDA_ERROR_OUT_OF_MEMORY:
		return -ENOMEM;
	case CUDA_ERROR_NOT_READY:
		return -EAGAIN;
	case CUDA_ERROR_INVALID_VALUE:
	case CUDA_ERROR_INVALID_HANDLE:
		return -EINVAL;
	case CUDA_ERROR_NOT_SUPPORTED:
		return -EOPNOTSUPP;
	case CUDA_ERROR_NO_DEVICE:
	case CUDA_ERROR_INVALID_DEVICE:
	case CUDA_ERROR_NOT_INITIALIZED:
	case CUDA_ERROR_DEINITIALIZED:
	case CUDA_ERROR_STUB_LIBRARY:
	case CUDA_ERROR_SYSTEM_DRIVER_MISMATCH:
		return -ENODEV;
	default:
		return -EIO; /* illegal address, launch failure, ...: the context is gone */
	}
}

bool kvmm_cuda_lost(CUresult r)
{
	switch (r) {
	case CUDA_ERROR_ILLEGAL_ADDRESS:
	case CUDA_ERROR_LAUNCH_FAILED:
	case CUDA_ERROR_LAUNCH_TIMEOUT:
	case CUDA_ERROR_HARDWARE_STACK_ERROR:
	case CUDA_ERROR_ILLEGAL_INSTRUCTION:
	case CUDA_ERROR_MISALIGNED_ADDRESS:
	case CUDA_ERROR_INVALID_ADDRESS_SPACE:
	case CUDA_ERROR_INVALID_PC:
	case CUDA_ERROR_ECC_UNCORRECTABLE:
		return true;
	default:
		return false;
	}
}

/* cuGetProcAddress before CUDA 12.5 had no symbolStatus argument. */
typedef CUresult (*kvmm_gpa_v1)(const char *, void **, int, cuuint64_t);
typedef CUresult (*kvmm_gpa_v2)(const char *, void **, int, cuuint64_t,
				CUdriverProcAddressQueryResult *);
typedef CUresult (*kvmm_get_version)(int *);

static int kvmm_cuda_resolve(void *lib, const char *name)
{
	kvmm_gpa_v2 gpa2 = (kvmm_gpa_v2)dlsym(lib, "cuGetProcAddress_v2");
	kvmm_gpa_v1 gpa1 = (kvmm_gpa_v1)dlsym(lib, "cuGetProcAddress");
	kvmm_get_version get_version = (kvmm_get_version)dlsym(lib, "cuDriverGetVersion");
	CUresult r;

	if (!get_version || (!gpa2 && !gpa1)) {
		snprintf(why, sizeof(why),
			 "%s is no CUDA driver (no cuDriverGetVersion or cuGetProcAddress)", name);
		return -ENODEV;
	}
	if (get_version(&drv.driver_version) != CUDA_SUCCESS) {
		snprintf(why, sizeof(why), "cuDriverGetVersion failed");
		return -ENODEV;
	}
	/* Ask for the ABI our cuda.h describes, or the older one the driver has. */
	drv.abi_version = kvmm_cuda_abi_version(drv.driver_version, CUDA_VERSION);
#define KVMM_CUDA_RESOLVE(name)                                                                    \
	{                                                                                          \
		void *fn = NULL;                                                                   \
		CUdriverProcAddressQueryResult st = CU_GET_PROC_ADDRESS_SUCCESS;                   \
		r = gpa2 ? gpa2(#name, &fn, drv.abi_version, CU_GET_PROC_ADDRESS_DEFAULT, &st)     \
			 : gpa1(#name, &fn, drv.abi_version, CU_GET_PROC_ADDRESS_DEFAULT);         \
		if (r != CUDA_SUCCESS || !fn || st != CU_GET_PROC_ADDRESS_SUCCESS) {               \
			snprintf(why, sizeof(why),                                                 \
				 "driver %d has no %s for CUDA %d (cuGetProcAddress: %d)",         \
				 drv.driver_version, #name, drv.abi_version, (int)r);              \
			return -ENODEV;                                                            \
		}                                                                                  \
		memcpy(&drv.name, &fn, sizeof(fn));                                                \
	}
	KVMM_CUDA_FUNCS(KVMM_CUDA_RESOLVE)
#undef KVMM_CUDA_RESOLVE
	return 0;
}

static void kvmm_cuda_load(void)
{
	const char *name = getenv("KVMM_CUDA_LIBRARY");
	void *lib;
	CUresult r;

	if (!name || !*name)
		name = "libcuda.so.1";
	lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		snprintf(why, sizeof(why), "cannot load %s (no NVIDIA driver?): %s", name,
			 dlerror());
		drv_err = -ENODEV;
		return;
	}
	drv_err = kvmm_cuda_resolve(lib, name);
	if (!drv_err && (r = drv.cuInit(0)) != CUDA_SUCCESS) {
		snprintf(why, sizeof(why), "cuInit failed: CUresult %d", (int)r);
		drv_err = -ENODEV;
	}
	if (drv_err) {
		dlclose(lib);
		memset(&drv, 0, sizeof(drv));
		return;
	}
	drv.lib = lib; /* kept for the life of the process */
	why[0] = 0;
}

int kvmm_cuda_drv_get(const struct kvmm_cuda_drv **drvp)
{
	pthread_once(&drv_once, kvmm_cuda_load);
	if (drv_err)
		return drv_err;
	*drvp = &drv;
	return 0;
}
#else
int kvmm_cuda_drv_get(const struct kvmm_cuda_drv **drvp)
{
	(void)drvp;
	snprintf(why, sizeof(why), "libkvmm was built without cuda.h (no CUDA toolkit)");
	return -ENODEV;
}
#endif
