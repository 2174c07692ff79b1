/* SPDX-License-Identifier: MIT */
/*
 * The GPU entry points libkvmm-preload.so exports: the CUDA runtime's
 * cudaMalloc, cudaFree, cudaMallocAsync, cudaFreeAsync; the driver's
 * cuMemAlloc_v2, cuMemFree_v2, cuMemAllocAsync, cuMemFreeAsync (and their
 * per-thread-stream _ptsz forms); cuGetProcAddress and cuGetProcAddress_v2;
 * dlsym; and the park/unpark C API (include/kvmm/preload.h).
 *
 * Interposing the symbols is not enough: the runtime does not link
 * libcuda. It dlopen()s libcuda.so.1, looks up cuGetProcAddress with
 * dlsym on that handle (which never sees an LD_PRELOAD definition) and
 * resolves every driver function through it. So dlsym is interposed too:
 * a lookup of one of the names below on a library handle returns the
 * shim's function (the library's own becomes the one it calls next), and
 * the shim's cuGetProcAddress does the same for "cuMemAlloc",
 * "cuMemFree", "cuMemAllocAsync", "cuMemFreeAsync" and "cuGetProcAddress"
 * itself. Every other dlsym call goes to libc's dlsym by a jump, with the
 * caller's return address intact, so dlsym(RTLD_NEXT, ...) of other
 * interposers still means "next after the caller".
 *
 * Built without cuda.h this file defines nothing: the shim is host-only.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h"
#include "../lib/cuda_drv.h"

#ifdef KVMM_HAVE_CUDA_H
#include <kvmm/preload.h>

/* cuda.h names some entry points by macros; these are the symbols. */
#undef cuGetProcAddress
#undef cuMemAlloc
#undef cuMemFree
#undef cuMemAllocAsync
#undef cuMemFreeAsync

typedef int (*shim_rt_malloc_fn)(void **, size_t);
typedef int (*shim_rt_free_fn)(void *);
typedef int (*shim_rt_malloc_async_fn)(void **, size_t, void *);
typedef int (*shim_rt_free_async_fn)(void *, void *);
typedef int (*shim_rt_get_device_fn)(int *);
typedef CUresult (*shim_gpa1_fn)(const char *, void **, int, cuuint64_t);
typedef CUresult (*shim_gpa2_fn)(const char *, void **, int, cuuint64_t,
				 CUdriverProcAddressQueryResult *);
typedef CUresult (*shim_mem_alloc_fn)(CUdeviceptr *, size_t);
typedef CUresult (*shim_mem_free_fn)(CUdeviceptr);
typedef CUresult (*shim_mem_alloc_async_fn)(CUdeviceptr *, size_t, CUstream);
typedef CUresult (*shim_mem_free_async_fn)(CUdeviceptr, CUstream);
typedef CUresult (*shim_ctx_get_device_fn)(CUdevice *);

SHIM_EXPORT int cudaMalloc(void **p, size_t n);
SHIM_EXPORT int cudaFree(void *p);
SHIM_EXPORT int cudaMallocAsync(void **p, size_t n, void *stream);
SHIM_EXPORT int cudaFreeAsync(void *p, void *stream);
SHIM_EXPORT int cudaMallocAsync_ptsz(void **p, size_t n, void *stream);
SHIM_EXPORT int cudaFreeAsync_ptsz(void *p, void *stream);
SHIM_EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n);
SHIM_EXPORT CUresult cuMemFree_v2(CUdeviceptr p);
SHIM_EXPORT CUresult cuMemAllocAsync(CUdeviceptr *p, size_t n, CUstream s);
SHIM_EXPORT CUresult cuMemFreeAsync(CUdeviceptr p, CUstream s);
SHIM_EXPORT CUresult cuMemAllocAsync_ptsz(CUdeviceptr *p, size_t n, CUstream s);
SHIM_EXPORT CUresult cuMemFreeAsync_ptsz(CUdeviceptr p, CUstream s);
SHIM_EXPORT CUresult cuGetProcAddress(const char *sym, void **pfn, int ver, cuuint64_t flags);
SHIM_EXPORT CUresult cuGetProcAddress_v2(const char *sym, void **pfn, int ver, cuuint64_t flags,
					 CUdriverProcAddressQueryResult *st);

/* The functions the shim wraps, by the name a lookup uses. */
enum shim_wrap {
	W_CUDA_MALLOC,
	W_CUDA_FREE,
	W_CUDA_MALLOC_ASYNC,
	W_CUDA_FREE_ASYNC,
	W_CUDA_MALLOC_ASYNC_PTSZ,
	W_CUDA_FREE_ASYNC_PTSZ,
	W_CUDA_GET_DEVICE, /* not wrapped: only called */
	W_MEM_ALLOC,
	W_MEM_FREE,
	W_MEM_ALLOC_ASYNC,
	W_MEM_FREE_ASYNC,
	W_MEM_ALLOC_ASYNC_PTSZ,
	W_MEM_FREE_ASYNC_PTSZ,
	W_GPA1,
	W_GPA2,
	W_CTX_GET_DEVICE, /* not wrapped: only called */
	W_NR,
};

static const struct {
	const char *symbol; /* as dlsym looks it up */
	const char *driver; /* as cuGetProcAddress looks it up, or NULL */
	void *fn;	    /* the shim's, or NULL */
} shim_wraps[W_NR] = {
    [W_CUDA_MALLOC] = {"cudaMalloc", NULL, (void *)cudaMalloc},
    [W_CUDA_FREE] = {"cudaFree", NULL, (void *)cudaFree},
    [W_CUDA_MALLOC_ASYNC] = {"cudaMallocAsync", NULL, (void *)cudaMallocAsync},
    [W_CUDA_FREE_ASYNC] = {"cudaFreeAsync", NULL, (void *)cudaFreeAsync},
    [W_CUDA_MALLOC_ASYNC_PTSZ] = {"cudaMallocAsync_ptsz", NULL, (void *)cudaMallocAsync_ptsz},
    [W_CUDA_FREE_ASYNC_PTSZ] = {"cudaFreeAsync_ptsz", NULL, (void *)cudaFreeAsync_ptsz},
    [W_CUDA_GET_DEVICE] = {"cudaGetDevice", NULL, NULL},
    [W_MEM_ALLOC] = {"cuMemAlloc_v2", "cuMemAlloc", (void *)cuMemAlloc_v2},
    [W_MEM_FREE] = {"cuMemFree_v2", "cuMemFree", (void *)cuMemFree_v2},
    [W_MEM_ALLOC_ASYNC] = {"cuMemAllocAsync", "cuMemAllocAsync", (void *)cuMemAllocAsync},
    [W_MEM_FREE_ASYNC] = {"cuMemFreeAsync", "cuMemFreeAsync", (void *)cuMemFreeAsync},
    [W_MEM_ALLOC_ASYNC_PTSZ] = {"cuMemAllocAsync_ptsz", NULL, (void *)cuMemAllocAsync_ptsz},
    [W_MEM_FREE_ASYNC_PTSZ] = {"cuMemFreeAsync_ptsz", NULL, (void *)cuMemFreeAsync_ptsz},
    [W_GPA1] = {"cuGetProcAddress", NULL, (void *)cuGetProcAddress},
    [W_GPA2] = {"cuGetProcAddress_v2", NULL, (void *)cuGetProcAddress_v2},
    [W_CTX_GET_DEVICE] = {"cuCtxGetDevice", "cuCtxGetDevice", NULL},
};

/* What each wrapper calls next: recorded from a dlsym or cuGetProcAddress
 * lookup it answered, else found on first use. */
static void *_Atomic shim_next[W_NR];
static __thread int shim_gpu_inside; /* in a real allocation call: pass its inner ones on */
static uint64_t shim_gpu_floor = UINT64_MAX;
static pthread_once_t shim_gpu_floor_once = PTHREAD_ONCE_INIT;

static void shim_gpu_floor_init(void)
{
	for (uint32_t i = 0; i < shim_cfg.nr_rules; i++) {
		const struct shim_rule *r = &shim_cfg.rules[i];
		uint64_t lo = r->nr_sizes ? r->sizes[0].lo : r->min_bytes;

		for (uint32_t j = 1; j < r->nr_sizes; j++)
			lo = r->sizes[j].lo < lo ? r->sizes[j].lo : lo;
		if (!r->skip && (r->calls & SHIM_CALL_CUDA) && lo < shim_gpu_floor)
			shim_gpu_floor = lo ? lo : 1;
	}
}

static void shim_record(enum shim_wrap w, void *real)
{
	void *none = NULL;

	if (real && real != shim_wraps[w].fn)
		atomic_compare_exchange_strong(&shim_next[w], &none, real);
}

/* The next @w: recorded, else the next definition after the shim, else
 * the driver libkvmm loaded (the same libcuda.so.1 the program uses). */
static void *shim_next_fn(enum shim_wrap w)
{
	const struct kvmm_cuda_drv *d;
	void *fn = atomic_load(&shim_next[w]);
	shim_gpa2_fn gpa2;
	shim_gpa1_fn gpa1;

	if (SHIM_LIKELY(fn))
		return fn;
	shim_depth++;
	fn = dlsym(RTLD_NEXT, shim_wraps[w].symbol);
	if (!fn && (shim_wraps[w].driver || w == W_GPA1 || w == W_GPA2) && !kvmm_cuda_drv_get(&d)) {
		if (w == W_GPA1 || w == W_GPA2) {
			fn = dlsym(d->lib, shim_wraps[w].symbol);
		} else if ((gpa2 = (shim_gpa2_fn)dlsym(d->lib, "cuGetProcAddress_v2"))) {
			if (gpa2(shim_wraps[w].driver, &fn, d->abi_version,
				 CU_GET_PROC_ADDRESS_DEFAULT, NULL))
				fn = NULL;
		} else if ((gpa1 = (shim_gpa1_fn)dlsym(d->lib, "cuGetProcAddress"))) {
			if (gpa1(shim_wraps[w].driver, &fn, d->abi_version,
				 CU_GET_PROC_ADDRESS_DEFAULT))
				fn = NULL;
		}
	}
	shim_depth--;
	shim_record(w, fn);
	return atomic_load(&shim_next[w]);
}

static int shim_rt_device(void);
static int shim_drv_device(void);

/* A routed block, or NULL for the real function. */
static void *shim_gpu_try(uint32_t kind, size_t n, int (*device_of)(void), const void *ret_addr)
{
	const char *lib;
	bool self = false;
	void *p = NULL;
	int device;

	if (!shim_enabled || shim_depth || shim_gpu_inside)
		return NULL;
	pthread_once(&shim_gpu_floor_once, shim_gpu_floor_init);
	if (n < shim_gpu_floor)
		return NULL;
	device = device_of();
	if (device < 0) {
		atomic_fetch_add(&shim_stats.gpu_passed, 1);
		return NULL; /* no current device: the real function says why */
	}
	shim_depth++;
	lib = shim_caller_lib(ret_addr, &self);
	if (!self)
		p = shim_gpu_alloc(kind, n, device, lib);
	shim_depth--;
	return p;
}

/* The current device of the runtime (cudaGetDevice), else of the driver's
 * current context, else 0 (the runtime's default). */
static int shim_rt_device(void)
{
	shim_rt_get_device_fn get = (shim_rt_get_device_fn)shim_next_fn(W_CUDA_GET_DEVICE);
	shim_ctx_get_device_fn ctx;
	CUdevice dev = 0;
	int d = 0;

	shim_gpu_inside++;
	if (get && get(&d) != 0)
		d = -1;
	else if (!get && (ctx = (shim_ctx_get_device_fn)shim_next_fn(W_CTX_GET_DEVICE)) &&
		 ctx(&dev) == CUDA_SUCCESS)
		d = dev;
	shim_gpu_inside--;
	return d;
}

/* The device of the driver's current context, or -1 without one. */
static int shim_drv_device(void)
{
	shim_ctx_get_device_fn ctx = (shim_ctx_get_device_fn)shim_next_fn(W_CTX_GET_DEVICE);
	CUdevice dev = 0;

	return ctx && ctx(&dev) == CUDA_SUCCESS ? (int)dev : -1;
}

#define SHIM_CALLER	       __builtin_return_address(0)
#define SHIM_RT_NO_FUNCTION    35	     /* cudaErrorInsufficientDriver: no runtime behind */
#define SHIM_PER_THREAD_STREAM ((void *)0x2) /* CU_STREAM_PER_THREAD */

#define SHIM_CALL_NEXT(w, type, fail, ...)                                                         \
	do {                                                                                       \
		type f_ = (type)shim_next_fn(w);                                                   \
		__typeof__(fail) r_;                                                               \
		if (!f_)                                                                           \
			return fail;                                                               \
		shim_gpu_inside++;                                                                 \
		r_ = f_(__VA_ARGS__);                                                              \
		shim_gpu_inside--;                                                                 \
		return r_;                                                                         \
	} while (0)

/* ---------------------------------------------------------------- runtime */

SHIM_EXPORT int cudaMalloc(void **p, size_t n)
{
	void *q = p ? shim_gpu_try(SHIM_GPU_RUNTIME, n, shim_rt_device, SHIM_CALLER) : NULL;

	if (q) {
		*p = q;
		return 0;
	}
	SHIM_CALL_NEXT(W_CUDA_MALLOC, shim_rt_malloc_fn, SHIM_RT_NO_FUNCTION, p, n);
}

SHIM_EXPORT int cudaFree(void *p)
{
	if (p && shim_gpu_free(p, NULL, false))
		return 0;
	SHIM_CALL_NEXT(W_CUDA_FREE, shim_rt_free_fn, SHIM_RT_NO_FUNCTION, p);
}

/* Stream-ordered allocation: a routed block is ready at return, so it is
 * ready on @stream too. */
static int shim_cuda_malloc_async(enum shim_wrap w, void **p, size_t n, void *stream,
				  const void *caller)
{
	void *q = p ? shim_gpu_try(SHIM_GPU_RUNTIME_ASYNC, n, shim_rt_device, caller) : NULL;

	if (q) {
		*p = q;
		return 0;
	}
	SHIM_CALL_NEXT(w, shim_rt_malloc_async_fn, SHIM_RT_NO_FUNCTION, p, n, stream);
}

static int shim_cuda_free_async(enum shim_wrap w, void *p, void *stream, void *null_stream)
{
	if (p && shim_gpu_free(p, stream ? stream : null_stream, true))
		return 0;
	SHIM_CALL_NEXT(w, shim_rt_free_async_fn, SHIM_RT_NO_FUNCTION, p, stream);
}

SHIM_EXPORT int cudaMallocAsync(void **p, size_t n, void *stream)
{
	return shim_cuda_malloc_async(W_CUDA_MALLOC_ASYNC, p, n, stream, SHIM_CALLER);
}

SHIM_EXPORT int cudaFreeAsync(void *p, void *stream)
{
	return shim_cuda_free_async(W_CUDA_FREE_ASYNC, p, stream, NULL);
}

SHIM_EXPORT int cudaMallocAsync_ptsz(void **p, size_t n, void *stream)
{
	return shim_cuda_malloc_async(W_CUDA_MALLOC_ASYNC_PTSZ, p, n, stream, SHIM_CALLER);
}

SHIM_EXPORT int cudaFreeAsync_ptsz(void *p, void *stream)
{
	return shim_cuda_free_async(W_CUDA_FREE_ASYNC_PTSZ, p, stream, SHIM_PER_THREAD_STREAM);
}

/* ----------------------------------------------------------------- driver */

SHIM_EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n)
{
	void *q = p ? shim_gpu_try(SHIM_GPU_DRIVER, n, shim_drv_device, SHIM_CALLER) : NULL;

	if (q) {
		*p = (CUdeviceptr)(uintptr_t)q;
		return CUDA_SUCCESS;
	}
	SHIM_CALL_NEXT(W_MEM_ALLOC, shim_mem_alloc_fn, CUDA_ERROR_NOT_INITIALIZED, p, n);
}

SHIM_EXPORT CUresult cuMemFree_v2(CUdeviceptr p)
{
	if (p && shim_gpu_free((void *)(uintptr_t)p, NULL, false))
		return CUDA_SUCCESS;
	SHIM_CALL_NEXT(W_MEM_FREE, shim_mem_free_fn, CUDA_ERROR_NOT_INITIALIZED, p);
}

static CUresult shim_mem_alloc_async(enum shim_wrap w, CUdeviceptr *p, size_t n, CUstream s,
				     const void *caller)
{
	void *q = p ? shim_gpu_try(SHIM_GPU_DRIVER_ASYNC, n, shim_drv_device, caller) : NULL;

	if (q) {
		*p = (CUdeviceptr)(uintptr_t)q;
		return CUDA_SUCCESS;
	}
	SHIM_CALL_NEXT(w, shim_mem_alloc_async_fn, CUDA_ERROR_NOT_INITIALIZED, p, n, s);
}

static CUresult shim_mem_free_async(enum shim_wrap w, CUdeviceptr p, CUstream s, void *null_s)
{
	if (p && shim_gpu_free((void *)(uintptr_t)p, s ? (void *)s : null_s, true))
		return CUDA_SUCCESS;
	SHIM_CALL_NEXT(w, shim_mem_free_async_fn, CUDA_ERROR_NOT_INITIALIZED, p, s);
}

SHIM_EXPORT CUresult cuMemAllocAsync(CUdeviceptr *p, size_t n, CUstream s)
{
	return shim_mem_alloc_async(W_MEM_ALLOC_ASYNC, p, n, s, SHIM_CALLER);
}

SHIM_EXPORT CUresult cuMemFreeAsync(CUdeviceptr p, CUstream s)
{
	return shim_mem_free_async(W_MEM_FREE_ASYNC, p, s, NULL);
}

SHIM_EXPORT CUresult cuMemAllocAsync_ptsz(CUdeviceptr *p, size_t n, CUstream s)
{
	return shim_mem_alloc_async(W_MEM_ALLOC_ASYNC_PTSZ, p, n, s, SHIM_CALLER);
}

SHIM_EXPORT CUresult cuMemFreeAsync_ptsz(CUdeviceptr p, CUstream s)
{
	return shim_mem_free_async(W_MEM_FREE_ASYNC_PTSZ, p, s, SHIM_PER_THREAD_STREAM);
}

/* A driver function cuGetProcAddress found: the shim's instead, for the
 * names it wraps (CUDA >= 3.2 for the 64-bit cuMemAlloc/cuMemFree). */
static void shim_gpa_wrap(const char *sym, void **pfn, int ver, cuuint64_t flags)
{
	bool ptds = flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM;
	enum shim_wrap w = W_NR;

	if (!sym || !pfn || !*pfn || shim_depth)
		return;
	if (!strcmp(sym, "cuMemAlloc") && ver >= 3020)
		w = W_MEM_ALLOC;
	else if (!strcmp(sym, "cuMemFree") && ver >= 3020)
		w = W_MEM_FREE;
	else if (!strcmp(sym, "cuMemAllocAsync"))
		w = ptds ? W_MEM_ALLOC_ASYNC_PTSZ : W_MEM_ALLOC_ASYNC;
	else if (!strcmp(sym, "cuMemFreeAsync"))
		w = ptds ? W_MEM_FREE_ASYNC_PTSZ : W_MEM_FREE_ASYNC;
	else if (!strcmp(sym, "cuGetProcAddress"))
		w = ver >= 12050 ? W_GPA2 : W_GPA1;
	else if (!strcmp(sym, "cuCtxGetDevice"))
		shim_record(W_CTX_GET_DEVICE, *pfn);
	if (w == W_NR)
		return;
	shim_record(w, *pfn);
	*pfn = shim_wraps[w].fn;
}

SHIM_EXPORT CUresult cuGetProcAddress(const char *sym, void **pfn, int ver, cuuint64_t flags)
{
	shim_gpa1_fn next = (shim_gpa1_fn)shim_next_fn(W_GPA1);
	CUresult r;

	if (!next)
		return CUDA_ERROR_NOT_INITIALIZED;
	r = next(sym, pfn, ver, flags);
	if (r == CUDA_SUCCESS)
		shim_gpa_wrap(sym, pfn, ver, flags);
	return r;
}

SHIM_EXPORT CUresult cuGetProcAddress_v2(const char *sym, void **pfn, int ver, cuuint64_t flags,
					 CUdriverProcAddressQueryResult *st)
{
	shim_gpa2_fn next = (shim_gpa2_fn)shim_next_fn(W_GPA2);
	CUresult r;

	if (!next)
		return CUDA_ERROR_NOT_INITIALIZED;
	r = next(sym, pfn, ver, flags, st);
	if (r == CUDA_SUCCESS)
		shim_gpa_wrap(sym, pfn, ver, flags);
	return r;
}

/* ------------------------------------------------------------------ dlsym */

typedef void *(*shim_dlsym_fn)(void *, const char *);
__attribute__((visibility("hidden"))) shim_dlsym_fn shim_dlsym_real;

static void shim_dlsym_resolve(void)
{
	static const char *const versions[] = {"GLIBC_2.34", "GLIBC_2.2.5", "GLIBC_2.17"};

	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]) && !shim_dlsym_real; i++)
		shim_dlsym_real = (shim_dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", versions[i]);
	if (!shim_dlsym_real) {
		shim_say("cannot find libc's dlsym; GPU calls are not interposed");
		abort(); /* dlsym cannot be served at all */
	}
}

/*
 * Called by dlsym (below) with its arguments: the shim's function for a
 * lookup on a library handle of a name it wraps (recording the library's
 * own), or NULL: then dlsym jumps to libc's. Lookups with RTLD_NEXT or
 * RTLD_DEFAULT, and the shim's own (shim_depth), are never changed.
 */
__attribute__((visibility("hidden"), used)) void *shim_dlsym_hook(void *h, const char *name)
{
	void *real;

	if (SHIM_UNLIKELY(!shim_dlsym_real))
		shim_dlsym_resolve();
	if (SHIM_LIKELY(!name || name[0] != 'c' || name[1] != 'u') || h == RTLD_NEXT ||
	    h == RTLD_DEFAULT || shim_depth)
		return NULL;
	for (int w = 0; w < W_NR; w++) {
		if (!shim_wraps[w].fn || strcmp(shim_wraps[w].symbol, name))
			continue;
		real = shim_dlsym_real(h, name);
		if (!real)
			return NULL;
		shim_record((enum shim_wrap)w, real);
		return shim_wraps[w].fn;
	}
	return NULL;
}

/* dlsym itself: a call of the hook, then a return of its answer or a jump
 * to libc's dlsym with the caller's arguments and return address. */
#if defined(__x86_64__)
__asm__(".text\n"
	".globl dlsym\n"
	".type dlsym, @function\n"
	"dlsym:\n"
	"	.cfi_startproc\n"
	"	endbr64\n"
	"	pushq %rdi\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	pushq %rsi\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	subq $8, %rsp\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	call shim_dlsym_hook\n"
	"	addq $8, %rsp\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	popq %rsi\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	popq %rdi\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	testq %rax, %rax\n"
	"	jz 1f\n"
	"	ret\n"
	"1:	jmp *shim_dlsym_real(%rip)\n"
	"	.cfi_endproc\n"
	".size dlsym, .-dlsym\n");
#elif defined(__aarch64__)
__asm__(".text\n"
	".globl dlsym\n"
	".type dlsym, %function\n"
	"dlsym:\n"
	"	.cfi_startproc\n"
	"	stp x29, x30, [sp, #-32]!\n"
	"	.cfi_def_cfa_offset 32\n"
	"	.cfi_offset 29, -32\n"
	"	.cfi_offset 30, -24\n"
	"	mov x29, sp\n"
	"	stp x0, x1, [sp, #16]\n"
	"	bl shim_dlsym_hook\n"
	"	mov x2, x0\n"
	"	ldp x0, x1, [sp, #16]\n"
	"	ldp x29, x30, [sp], #32\n"
	"	.cfi_restore 29\n"
	"	.cfi_restore 30\n"
	"	.cfi_def_cfa_offset 0\n"
	"	cbz x2, 1f\n"
	"	mov x0, x2\n"
	"	ret\n"
	"1:	adrp x16, shim_dlsym_real\n"
	"	ldr x16, [x16, :lo12:shim_dlsym_real]\n"
	"	br x16\n"
	"	.cfi_endproc\n"
	".size dlsym, .-dlsym\n");
#else
#warning                                                                                           \
    "dlsym is not interposed on this architecture: the CUDA runtime's cuGetProcAddress lookups are not seen"
#endif

/* ------------------------------------------------------------------ C API */

SHIM_EXPORT int kvmm_preload_park(const char *tag, int policy)
{
	uint32_t how = (uint32_t)policy & ~(uint32_t)KVMM_PRELOAD_ASYNC;

	if (how > KVMM_PRELOAD_PARK_FLASH || ((uint32_t)policy & ~(KVMM_PRELOAD_ASYNC | 3u)))
		return -EINVAL;
	return shim_move(SHIM_MOVE_PARK, tag, how, policy & KVMM_PRELOAD_ASYNC, NULL, 0);
}

SHIM_EXPORT int kvmm_preload_unpark(const char *tag)
{
	return shim_move(SHIM_MOVE_UNPARK, tag, 0, false, NULL, 0);
}

SHIM_EXPORT int kvmm_preload_wait(const char *tag)
{
	return shim_move_wait(tag);
}

SHIM_EXPORT int kvmm_preload_tag_push(const char *tag)
{
	return shim_gpu_tag_push(tag);
}

SHIM_EXPORT int kvmm_preload_tag_pop(void)
{
	return shim_gpu_tag_pop();
}

SHIM_EXPORT long long kvmm_preload_generation(const char *tag)
{
	return shim_gpu_generation(tag);
}

SHIM_EXPORT int kvmm_preload_state(const char *tag)
{
	return shim_gpu_state(tag);
}
#endif
