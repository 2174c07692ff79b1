/* SPDX-License-Identifier: MIT */
/*
 * The PyTorch pluggable-allocator pair and the allocators behind it
 * (kvmm.h, "PyTorch allocator"):
 *
 *     torch.cuda.memory.CUDAPluggableAllocator("libkvmm.so.0",
 *                                              "kvmm_torch_malloc", "kvmm_torch_free")
 *
 * Each allocation is one VMM range with one physical handle, so sleep can
 * release the handle and wake map a new one at the same address. Every
 * allocation is in a process-wide table by address (kvmm_torch_free finds
 * its allocator from the pointer alone) and in its allocator's list.
 *
 * Locks: an allocator's lock (its list, its state, its driver calls), then
 * the address table's lock (a leaf). The device table's lock is taken
 * alone. kvmm_torch_free takes the table's lock, lets it go, then the
 * allocator's.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include <linux/kvmm.h>

#include "internal.h"
#include "cuda_copy.h"
#include "cuda_alloc.h"
#include "cuda_drv.h"

#ifdef KVMM_HAVE_CUDA_H
#define KVMM_ALLOC_BUCKETS 1024
#define KVMM_ALLOC_MAX_DEV KVMM_MAX_GPUS

struct kvmm_cuda_block {
	struct kvmm_cuda_block *hnext;	     /* address table bucket */
	struct kvmm_cuda_block *prev, *next; /* the allocator's list */
	struct kvmm_cuda_alloc *owner;
	CUdeviceptr va;
	uint64_t bytes; /* rounded up to the granularity */
	int device;
	CUmemGenericAllocationHandle h;
	bool mapped;
	struct kvmm_region *saved; /* contents while asleep, or NULL */
};

struct kvmm_cuda_alloc {
	struct kvmm_ctx *ctx; /* may be NULL */
	char tag[64];
	pthread_mutex_t lock;
	struct kvmm_cuda_block *blocks;
	struct kvmm_cuda_copy *copy[KVMM_ALLOC_MAX_DEV]; /* made at the first kept sleep */
	struct kvmm_cuda_alloc_stats st;
};

/* One entry per device: its primary context, retained for the process. */
static struct {
	bool tried;
	int err;
	CUdevice dev;
	CUcontext cuctx;
	size_t gran;
} devs[KVMM_ALLOC_MAX_DEV];
static pthread_mutex_t devs_lock = PTHREAD_MUTEX_INITIALIZER;

static struct kvmm_cuda_block *table[KVMM_ALLOC_BUCKETS];
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;

static _Thread_local struct kvmm_cuda_alloc *current;
static struct kvmm_cuda_alloc *default_alloc;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static unsigned kvmm_alloc_bucket(CUdeviceptr va)
{
	return (unsigned)((va >> 21) ^ (va >> 31)) % KVMM_ALLOC_BUCKETS;
}

static int kvmm_alloc_dev(const struct kvmm_cuda_drv *d, int device)
{
	CUmemAllocationProp prop;
	int ret = 0, count = 0;

	if (device < 0 || device >= KVMM_ALLOC_MAX_DEV)
		return -EINVAL;
	pthread_mutex_lock(&devs_lock);
	if (devs[device].tried) {
		ret = devs[device].err;
		goto out;
	}
	ret = kvmm_cuda_err(d->cuDeviceGetCount(&count));
	if (!ret && device >= count)
		ret = -ENODEV;
	if (!ret)
		ret = kvmm_cuda_err(d->cuDeviceGet(&devs[device].dev, device));
	if (!ret)
		ret = kvmm_cuda_err(
		    d->cuDevicePrimaryCtxRetain(&devs[device].cuctx, devs[device].dev));
	if (!ret) {
		CUcontext unused;

		memset(&prop, 0, sizeof(prop));
		prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
		prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
		prop.location.id = devs[device].dev;
		ret = d->cuCtxPushCurrent(devs[device].cuctx) == CUDA_SUCCESS ? 0 : -EIO;
		if (!ret) {
			ret = kvmm_cuda_err(d->cuMemGetAllocationGranularity(
			    &devs[device].gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
			d->cuCtxPopCurrent(&unused);
		}
		if (!ret && !devs[device].gran)
			ret = -EOPNOTSUPP;
		if (ret) {
			d->cuDevicePrimaryCtxRelease(devs[device].dev);
			devs[device].cuctx = NULL;
		}
	}
	devs[device].tried = true;
	devs[device].err = ret;
out:
	pthread_mutex_unlock(&devs_lock);
	return ret;
}

/* The device's primary context current; 0, or -EIO when the push failed
 * (nothing pushed: do not call kvmm_alloc_leave() then). */
static int kvmm_alloc_enter(const struct kvmm_cuda_drv *d, int device)
{
	return d->cuCtxPushCurrent(devs[device].cuctx) == CUDA_SUCCESS ? 0 : -EIO;
}

static void kvmm_alloc_leave(const struct kvmm_cuda_drv *d)
{
	CUcontext unused;

	d->cuCtxPopCurrent(&unused);
}

/* The GPU ledger (kernel mode): charge before creating, uncharge after releasing. */
static int kvmm_alloc_ledger(const struct kvmm_cuda_alloc *a, unsigned long cmd, int device,
			     uint64_t bytes)
{
	struct kvmm_gpu_charge c;

	if (!a->ctx || a->ctx->dev_fd < 0)
		return 0;
	memset(&c, 0, sizeof(c));
	c.gpu = (uint32_t)device;
	c.bytes = bytes;
	return ioctl(a->ctx->dev_fd, cmd, &c) < 0 ? -errno : 0;
}

/* Backs @b with a new handle, mapped read-write at b->va. */
static int kvmm_alloc_back(struct kvmm_cuda_alloc *a, const struct kvmm_cuda_drv *d,
			   struct kvmm_cuda_block *b)
{
	CUmemAllocationProp prop;
	CUmemAccessDesc acc;
	int ret;

	memset(&prop, 0, sizeof(prop));
	prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	prop.location.id = devs[b->device].dev;
	memset(&acc, 0, sizeof(acc));
	acc.location = prop.location;
	acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	ret = kvmm_alloc_ledger(a, KVMM_IOC_GPU_CHARGE, b->device, b->bytes);
	if (ret)
		return ret;
	ret = kvmm_cuda_err(d->cuMemCreate(&b->h, b->bytes, &prop, 0));
	if (ret)
		goto uncharge;
	ret = kvmm_cuda_err(d->cuMemMap(b->va, b->bytes, 0, b->h, 0));
	if (ret)
		goto release;
	ret = kvmm_cuda_err(d->cuMemSetAccess(b->va, b->bytes, &acc, 1));
	if (!ret) {
		b->mapped = true;
		a->st.mapped_bytes += b->bytes;
		return 0;
	}
	d->cuMemUnmap(b->va, b->bytes);
release:
	if (d->cuMemRelease(b->h) != CUDA_SUCCESS)
		return ret; /* the GPU may still hold it: stays charged */
uncharge:
	kvmm_alloc_ledger(a, KVMM_IOC_GPU_UNCHARGE, b->device, b->bytes);
	return ret;
}

/* Unmaps and releases @b's handle; its address range stays reserved. */
static void kvmm_alloc_unback(struct kvmm_cuda_alloc *a, const struct kvmm_cuda_drv *d,
			      struct kvmm_cuda_block *b)
{
	d->cuMemUnmap(b->va, b->bytes);
	/* A chunk the driver did not say it released stays charged. */
	if (d->cuMemRelease(b->h) == CUDA_SUCCESS)
		kvmm_alloc_ledger(a, KVMM_IOC_GPU_UNCHARGE, b->device, b->bytes);
	b->mapped = false;
	a->st.mapped_bytes -= b->bytes;
}

static void kvmm_alloc_unsave(struct kvmm_cuda_alloc *a, struct kvmm_cuda_block *b)
{
	if (!b->saved)
		return;
	kvmm_region_destroy(b->saved);
	b->saved = NULL;
	a->st.saved_bytes -= b->bytes;
}

static int kvmm_alloc_new(struct kvmm_ctx *ctx, const char *tag, struct kvmm_cuda_alloc **ap)
{
	struct kvmm_cuda_alloc *a = calloc(1, sizeof(*a));

	if (!a)
		return -ENOMEM;
	a->ctx = ctx;
	snprintf(a->tag, sizeof(a->tag), "%s", tag ? tag : "");
	pthread_mutex_init(&a->lock, NULL);
	*ap = a;
	return 0;
}

static void kvmm_alloc_make_default(void)
{
	if (kvmm_alloc_new(NULL, "default", &default_alloc))
		default_alloc = NULL;
}

int kvmm_cuda_alloc_create(struct kvmm_ctx *ctx, const struct kvmm_cuda_alloc_config *cfg,
			   struct kvmm_cuda_alloc **allocp)
{
	const struct kvmm_cuda_drv *d;
	int ret;

	if (!allocp || (cfg && (cfg->size < sizeof(*cfg) || cfg->flags)))
		return -EINVAL;
	ret = kvmm_cuda_drv_get(&d);
	if (ret)
		return ret;
	return kvmm_alloc_new(ctx, cfg ? cfg->tag : NULL, allocp);
}

int kvmm_cuda_alloc_destroy(struct kvmm_cuda_alloc *a)
{
	const struct kvmm_cuda_drv *d;

	if (!a || a == default_alloc)
		return -EINVAL;
	pthread_mutex_lock(&a->lock);
	if (a->blocks) {
		pthread_mutex_unlock(&a->lock);
		return -EBUSY;
	}
	pthread_mutex_unlock(&a->lock);
	if (current == a)
		current = NULL;
	if (!kvmm_cuda_drv_get(&d)) {
		for (int i = 0; i < KVMM_ALLOC_MAX_DEV; i++) {
			if (!a->copy[i])
				continue;
			/* Without the context no wait can be made: the staging
			 * stays (DMA may still reach it) until the process exits. */
			if (!kvmm_alloc_enter(d, i)) {
				kvmm_cuda_copy_fini(a->copy[i]);
				kvmm_alloc_leave(d);
			}
			free(a->copy[i]);
		}
	}
	pthread_mutex_destroy(&a->lock);
	free(a);
	return 0;
}

int kvmm_cuda_alloc_use(struct kvmm_cuda_alloc *a, struct kvmm_cuda_alloc **prevp)
{
	if (prevp)
		*prevp = current;
	current = a;
	return 0;
}

int kvmm_cuda_alloc_stats(struct kvmm_cuda_alloc *a, struct kvmm_cuda_alloc_stats *st)
{
	if (!a || !st)
		return -EINVAL;
	pthread_mutex_lock(&a->lock);
	*st = a->st;
	pthread_mutex_unlock(&a->lock);
	return 0;
}

void *kvmm_torch_malloc(ssize_t size, int device, void *stream)
{
	struct kvmm_cuda_alloc *a = current;
	const struct kvmm_cuda_drv *d;
	struct kvmm_cuda_block *b;
	int ret;

	(void)stream; /* ready at return: no stream ordering needed */
	if (!a) {
		pthread_once(&default_once, kvmm_alloc_make_default);
		a = default_alloc;
		if (!a)
			return NULL;
	}
	ret = size <= 0 ? -EINVAL : kvmm_cuda_drv_get(&d);
	if (!ret)
		ret = kvmm_alloc_dev(d, device);
	b = ret ? NULL : calloc(1, sizeof(*b));
	if (!ret && !b)
		ret = -ENOMEM;
	pthread_mutex_lock(&a->lock);
	if (!ret && a->st.asleep)
		ret = -EAGAIN;
	if (!ret) {
		size_t g = devs[device].gran;

		b->owner = a;
		b->device = device;
		b->bytes = ((uint64_t)size + g - 1) / g * g;
		ret = kvmm_alloc_enter(d, device);
		if (!ret) {
			ret = kvmm_cuda_err(d->cuMemAddressReserve(&b->va, b->bytes, 0, 0, 0));
			if (!ret) {
				ret = kvmm_alloc_back(a, d, b);
				if (ret)
					d->cuMemAddressFree(b->va, b->bytes);
			}
			kvmm_alloc_leave(d);
		}
	}
	if (ret) {
		a->st.refusals++;
		a->st.last_error = ret;
		pthread_mutex_unlock(&a->lock);
		free(b);
		return NULL;
	}
	b->next = a->blocks;
	if (a->blocks)
		a->blocks->prev = b;
	a->blocks = b;
	a->st.allocations++;
	a->st.bytes += b->bytes;
	a->st.mallocs++;
	pthread_mutex_lock(&table_lock);
	b->hnext = table[kvmm_alloc_bucket(b->va)];
	table[kvmm_alloc_bucket(b->va)] = b;
	pthread_mutex_unlock(&table_lock);
	pthread_mutex_unlock(&a->lock);
	return (void *)(uintptr_t)b->va;
}

void kvmm_torch_free(void *ptr, ssize_t size, int device, void *stream)
{
	CUdeviceptr va = (CUdeviceptr)(uintptr_t)ptr;
	struct kvmm_cuda_block **pp, *b = NULL;
	const struct kvmm_cuda_drv *d;
	struct kvmm_cuda_alloc *a;
	bool in;

	(void)size;
	(void)device; /* the allocation's own are used */
	if (!ptr || kvmm_cuda_drv_get(&d))
		return;
	pthread_mutex_lock(&table_lock);
	for (pp = &table[kvmm_alloc_bucket(va)]; *pp; pp = &(*pp)->hnext) {
		if ((*pp)->va == va) {
			b = *pp;
			*pp = b->hnext;
			break;
		}
	}
	pthread_mutex_unlock(&table_lock);
	if (!b)
		return; /* not ours */
	a = b->owner;
	in = !kvmm_alloc_enter(d, b->device);
	/* Kernels PyTorch queued on the memory's stream finish first; without
	 * the allocator's lock, so its other calls need not wait for them. A
	 * failed wait (a bad stream) waits for the whole context instead; a
	 * lost context runs nothing more. Without the context pushed nothing
	 * can be waited for: the memory then stays mapped. */
	if (in && d->cuStreamSynchronize((CUstream)stream) != CUDA_SUCCESS)
		d->cuCtxSynchronize();
	pthread_mutex_lock(&a->lock);
	if (b->prev)
		b->prev->next = b->next;
	else
		a->blocks = b->next;
	if (b->next)
		b->next->prev = b->prev;
	if (in) {
		if (b->mapped)
			kvmm_alloc_unback(a, d, b);
		d->cuMemAddressFree(b->va, b->bytes);
		kvmm_alloc_leave(d);
	}
	kvmm_alloc_unsave(a, b);
	a->st.allocations--;
	a->st.bytes -= b->bytes;
	a->st.frees++;
	pthread_mutex_unlock(&a->lock);
	free(b);
}

/* The largest power of two that divides @bytes, at most 2 MiB: a region chunk. */
static uint32_t kvmm_alloc_region_chunk(uint64_t bytes)
{
	uint64_t c = bytes & -bytes;

	return (uint32_t)(c > (2U << 20) ? 2U << 20 : c);
}

static int kvmm_alloc_copier(struct kvmm_cuda_alloc *a, const struct kvmm_cuda_drv *d, int device)
{
	int ret;

	if (a->copy[device])
		return 0;
	a->copy[device] = calloc(1, sizeof(*a->copy[device]));
	if (!a->copy[device])
		return -ENOMEM;
	ret = kvmm_cuda_copy_init(a->copy[device], d, devs[device].dev, -1);
	if (ret) {
		kvmm_cuda_copy_fini(a->copy[device]);
		free(a->copy[device]);
		a->copy[device] = NULL;
	}
	return ret;
}

/* Copies @b's contents into a new host region (evicted to flash for FLASH). */
static int kvmm_alloc_save(struct kvmm_cuda_alloc *a, const struct kvmm_cuda_drv *d,
			   struct kvmm_cuda_block *b, uint32_t how)
{
	struct kvmm_region_config rc = KVMM_REGION_CONFIG_INIT;
	struct kvmm_region *r;
	int ret = kvmm_alloc_copier(a, d, b->device);

	if (ret)
		return ret;
	rc.bytes = b->bytes;
	rc.chunk_bytes = kvmm_alloc_region_chunk(b->bytes);
	ret = kvmm_region_create(a->ctx, &rc, &r);
	if (ret)
		return ret;
	ret = kvmm_region_ensure(r, 0, b->bytes);
	if (!ret)
		ret = kvmm_cuda_copy_d2h(a->copy[b->device], kvmm_region_base(r), b->va, b->bytes);
	if (!ret)
		ret = kvmm_cuda_copy_drain(a->copy[b->device]);
	if (!ret && how == KVMM_CUDA_SLEEP_FLASH)
		ret = kvmm_region_evict(r, 0, b->bytes);
	if (ret) {
		kvmm_cuda_copy_drain(a->copy[b->device]);
		kvmm_region_destroy(r);
		return ret;
	}
	b->saved = r;
	a->st.saved_bytes += b->bytes;
	return 0;
}

int kvmm_cuda_alloc_sleep(struct kvmm_cuda_alloc *a, uint32_t how)
{
	const struct kvmm_cuda_drv *d;
	struct kvmm_cuda_block *b;
	bool synced[KVMM_ALLOC_MAX_DEV] = {false};
	int ret;

	if (!a || how > KVMM_CUDA_SLEEP_FLASH || (how != KVMM_CUDA_SLEEP_DISCARD && !a->ctx))
		return -EINVAL;
	ret = kvmm_cuda_drv_get(&d);
	if (ret)
		return ret;
	pthread_mutex_lock(&a->lock);
	if (a->st.asleep) {
		pthread_mutex_unlock(&a->lock);
		return -EALREADY;
	}
	a->st.asleep = 1;
	for (b = a->blocks; b && !ret; b = b->next) {
		if (!b->mapped)
			continue;
		ret = kvmm_alloc_enter(d, b->device);
		if (ret)
			break;
		if (!synced[b->device]) {
			/* Everything queued on the device that may use the memory. */
			ret = kvmm_cuda_err(d->cuCtxSynchronize());
			synced[b->device] = !ret;
		}
		if (!ret && how != KVMM_CUDA_SLEEP_DISCARD)
			ret = kvmm_alloc_save(a, d, b, how);
		if (!ret)
			kvmm_alloc_unback(a, d, b);
		kvmm_alloc_leave(d);
	}
	if (ret)
		a->st.last_error = ret;
	else
		a->st.sleeps++;
	pthread_mutex_unlock(&a->lock);
	return ret;
}

/* Puts @b's kept contents back, or zeros. */
static int kvmm_alloc_restore(struct kvmm_cuda_alloc *a, const struct kvmm_cuda_drv *d,
			      struct kvmm_cuda_block *b)
{
	int ret;

	if (!b->saved) {
		ret = kvmm_cuda_err(d->cuMemsetD8Async(b->va, 0, b->bytes, NULL));
		return ret ? ret : kvmm_cuda_err(d->cuStreamSynchronize(NULL));
	}
	/* A flash copy is read back as the staging copy touches it. */
	ret = kvmm_alloc_copier(a, d, b->device);
	if (!ret)
		ret = kvmm_cuda_copy_h2d(a->copy[b->device], b->va, kvmm_region_base(b->saved),
					 b->bytes);
	if (!ret)
		ret = kvmm_cuda_copy_drain(a->copy[b->device]);
	if (ret)
		kvmm_cuda_copy_drain(a->copy[b->device]);
	return ret;
}

int kvmm_cuda_alloc_wake(struct kvmm_cuda_alloc *a)
{
	const struct kvmm_cuda_drv *d;
	struct kvmm_cuda_block *b;
	int ret;

	if (!a)
		return -EINVAL;
	ret = kvmm_cuda_drv_get(&d);
	if (ret)
		return ret;
	pthread_mutex_lock(&a->lock);
	if (!a->st.asleep) {
		pthread_mutex_unlock(&a->lock);
		return 0;
	}
	for (b = a->blocks; b && !ret; b = b->next) {
		if (b->mapped) {
			kvmm_alloc_unsave(a, b); /* restored by an earlier, failed wake */
			continue;
		}
		ret = kvmm_alloc_enter(d, b->device);
		if (ret)
			break;
		ret = kvmm_alloc_back(a, d, b);
		if (!ret) {
			ret = kvmm_alloc_restore(a, d, b);
			if (ret)
				kvmm_alloc_unback(a, d, b);
		}
		kvmm_alloc_leave(d);
		if (!ret)
			kvmm_alloc_unsave(a, b);
	}
	if (ret) {
		a->st.last_error = ret;
	} else {
		a->st.asleep = 0;
		a->st.wakes++;
	}
	pthread_mutex_unlock(&a->lock);
	return ret;
}

/*
 * kvmm_cuda_alloc_wake_all() - kvmm_cuda_alloc_wake(), all or nothing
 * (cuda_alloc.h). Blocks still mapped by an earlier, partial wake are
 * left as they are.
 */
int kvmm_cuda_alloc_wake_all(struct kvmm_cuda_alloc *a, uint64_t *undone)
{
	const struct kvmm_cuda_drv *d;
	struct kvmm_cuda_block *b, **woken = NULL;
	size_t n = 0, cap = 0;
	int ret;

	if (undone)
		*undone = 0;
	if (!a)
		return -EINVAL;
	ret = kvmm_cuda_drv_get(&d);
	if (ret)
		return ret;
	pthread_mutex_lock(&a->lock);
	if (!a->st.asleep) {
		pthread_mutex_unlock(&a->lock);
		return 0;
	}
	for (b = a->blocks; b; b = b->next)
		cap += !b->mapped;
	if (cap && !(woken = calloc(cap, sizeof(*woken))))
		ret = -ENOMEM;
	for (b = a->blocks; b && !ret; b = b->next) {
		if (b->mapped)
			continue;
		kvmm_alloc_enter(d, b->device);
		ret = kvmm_alloc_back(a, d, b);
		if (!ret) {
			ret = kvmm_alloc_restore(a, d, b);
			if (ret)
				kvmm_alloc_unback(a, d, b);
		}
		kvmm_alloc_leave(d);
		if (!ret)
			woken[n++] = b;
	}
	for (size_t i = 0; i < n; i++) {
		if (ret) {
			/* Back to asleep: the kept contents were not dropped yet. */
			kvmm_alloc_enter(d, woken[i]->device);
			kvmm_alloc_unback(a, d, woken[i]);
			kvmm_alloc_leave(d);
		} else {
			kvmm_alloc_unsave(a, woken[i]);
		}
	}
	if (ret) {
		a->st.last_error = ret;
		if (undone)
			*undone = n;
	} else {
		a->st.asleep = 0;
		a->st.wakes++;
	}
	pthread_mutex_unlock(&a->lock);
	free(woken);
	return ret;
}
#else
int kvmm_cuda_alloc_wake_all(struct kvmm_cuda_alloc *a, uint64_t *undone)
{
	(void)a;
	if (undone)
		*undone = 0;
	return -EINVAL;
}

int kvmm_cuda_alloc_create(struct kvmm_ctx *ctx, const struct kvmm_cuda_alloc_config *cfg,
			   struct kvmm_cuda_alloc **allocp)
{
	const struct kvmm_cuda_drv *d;

	(void)ctx;
	(void)cfg;
	(void)allocp;
	return kvmm_cuda_drv_get(&d); /* -ENODEV, with the reason */
}

int kvmm_cuda_alloc_destroy(struct kvmm_cuda_alloc *a)
{
	(void)a;
	return -EINVAL;
}

int kvmm_cuda_alloc_use(struct kvmm_cuda_alloc *a, struct kvmm_cuda_alloc **prevp)
{
	(void)a;
	if (prevp)
		*prevp = NULL;
	return -ENODEV;
}

int kvmm_cuda_alloc_sleep(struct kvmm_cuda_alloc *a, uint32_t how)
{
	(void)a;
	(void)how;
	return -EINVAL;
}

int kvmm_cuda_alloc_wake(struct kvmm_cuda_alloc *a)
{
	(void)a;
	return -EINVAL;
}

int kvmm_cuda_alloc_stats(struct kvmm_cuda_alloc *a, struct kvmm_cuda_alloc_stats *st)
{
	(void)a;
	(void)st;
	return -EINVAL;
}

void *kvmm_torch_malloc(ssize_t size, int device, void *stream)
{
	(void)size;
	(void)device;
	(void)stream;
	return NULL;
}

void kvmm_torch_free(void *ptr, ssize_t size, int device, void *stream)
{
	(void)ptr;
	(void)size;
	(void)device;
	(void)stream;
}
#endif
