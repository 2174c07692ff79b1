/* SPDX-License-Identifier: MIT */
/* Physical GPU chunk pool with watermarks and ledger charges. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include <linux/kvmm.h>

#include "internal.h"
#include "cuda_pool.h"

#ifdef KVMM_HAVE_CUDA_H
#define KVMM_POOL_LOW  4
#define KVMM_POOL_HIGH 16

static int kvmm_cuda_ledger(struct kvmm_cuda_pool *p, unsigned long cmd, uint64_t bytes)
{
	struct kvmm_gpu_charge c;

	if (p->ledger_fd < 0)
		return 0; /* user mode: no ledger */
	memset(&c, 0, sizeof(c));
	c.gpu = p->gpu;
	c.bytes = bytes;
	return ioctl(p->ledger_fd, cmd, &c) < 0 ? -errno : 0;
}

/* One new handle, charged first so a refused charge creates nothing. */
static int kvmm_cuda_pool_create(struct kvmm_cuda_pool *p, CUmemGenericAllocationHandle *h)
{
	int ret = kvmm_cuda_ledger(p, KVMM_IOC_GPU_CHARGE, p->chunk);

	if (ret)
		return ret;
	ret = kvmm_cuda_err(p->d->cuMemCreate(h, p->chunk, &p->prop, 0));
	if (ret)
		kvmm_cuda_ledger(p, KVMM_IOC_GPU_UNCHARGE, p->chunk);
	return ret;
}

/* A chunk the driver did not say it released stays charged: the ledger
 * never counts less than the GPU may still hold (the fd's close ends it). */
static void kvmm_cuda_pool_release(struct kvmm_cuda_pool *p, CUmemGenericAllocationHandle h)
{
	if (p->d->cuMemRelease(h) != CUDA_SUCCESS) {
		pthread_mutex_lock(&p->lock);
		p->release_failures++;
		pthread_mutex_unlock(&p->lock);
		return;
	}
	kvmm_cuda_ledger(p, KVMM_IOC_GPU_UNCHARGE, p->chunk);
}

static int kvmm_cuda_pool_reserve(struct kvmm_cuda_pool *p, uint32_t n)
{
	CUmemGenericAllocationHandle *f;
	uint32_t cap;

	if (n <= p->cap)
		return 0;
	cap = n > 2 * p->cap ? n : 2 * p->cap;
	f = realloc(p->free, cap * sizeof(*f));
	if (!f)
		return -ENOMEM;
	p->free = f;
	p->cap = cap;
	return 0;
}

/* kvmm.ko reports EPOLLPRI while a GPU this fd charges is over budget. */
static bool kvmm_cuda_ledger_pressure(struct kvmm_cuda_pool *p)
{
	struct pollfd pfd = {.fd = p->ledger_fd, .events = POLLPRI};

	return poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLPRI);
}

/* Sleeps until woken or 100 ms passed (to look at the ledger again). */
static void kvmm_cuda_pool_wait(struct kvmm_cuda_pool *p)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 100 * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&p->cond, &p->lock, &ts);
}

/* Refill below low, shrink above twice high; driver calls without the lock. */
static void *kvmm_cuda_pool_main(void *arg)
{
	struct kvmm_cuda_pool *p = arg;
	/* cuMemCreate and cuMemRelease take no context; it is pushed for
	 * drivers that want one, and popped only when pushed. */
	bool in = p->d->cuCtxPushCurrent(p->cuctx) == CUDA_SUCCESS;
	CUcontext unused;

	kvmm_cuda_capture_relax(p->d); /* the thread's own: never given back */
	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		CUmemGenericAllocationHandle h;
		int ret;

		if (p->nr_free < p->low && !p->refill_err && !p->resting) {
			while (!p->stop && !p->resting && p->nr_free < p->high) {
				pthread_mutex_unlock(&p->lock);
				ret = kvmm_cuda_pool_create(p, &h);
				pthread_mutex_lock(&p->lock);
				if (!ret && p->resting) {
					/* A trim came while it was made: keep none ready. */
					pthread_mutex_unlock(&p->lock);
					kvmm_cuda_pool_release(p, h);
					pthread_mutex_lock(&p->lock);
					break;
				}
				if (!ret)
					ret = kvmm_cuda_pool_reserve(p, p->nr_free + 1);
				if (ret) {
					/* Stop refilling until a put: step reports the error. */
					p->refill_err = ret;
					break;
				}
				p->free[p->nr_free++] = h;
				p->created++;
				p->creates++;
				pthread_cond_broadcast(&p->cond);
			}
			continue;
		}
		if (p->nr_free > 2 * p->high) {
			h = p->free[--p->nr_free];
			p->created--;
			p->releases++;
			pthread_mutex_unlock(&p->lock);
			kvmm_cuda_pool_release(p, h);
			pthread_mutex_lock(&p->lock);
			continue;
		}
		if (p->ledger_fd < 0) {
			pthread_cond_wait(&p->cond, &p->lock);
			continue;
		}
		kvmm_cuda_pool_wait(p);
		if (kvmm_cuda_ledger_pressure(p)) {
			/* Budget lowered below the charges: give back what is idle. */
			p->refill_err = -EDQUOT;
			pthread_mutex_unlock(&p->lock);
			kvmm_cuda_pool_trim(p, 0);
			pthread_mutex_lock(&p->lock);
		}
	}
	pthread_mutex_unlock(&p->lock);
	if (in)
		p->d->cuCtxPopCurrent(&unused);
	return NULL;
}

static uint32_t kvmm_cuda_env_chunks(const char *name, uint32_t def)
{
	uint64_t v = def;

	if (kvmm_env_u64(name, &v) < 0 || v > (1U << 20))
		v = def;
	return (uint32_t)v;
}

int kvmm_cuda_pool_init(struct kvmm_cuda_pool *p, const struct kvmm_cuda_drv *d, CUcontext cuctx,
			int dev, uint64_t chunk, int ledger_fd, uint32_t ledger_gpu)
{
	int err;

	memset(p, 0, sizeof(*p));
	p->d = d;
	p->cuctx = cuctx;
	p->chunk = chunk;
	p->ledger_fd = ledger_fd;
	p->gpu = ledger_gpu;
	p->prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	p->prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	p->prop.location.id = dev;
	p->low = kvmm_cuda_env_chunks("KVMM_CUDA_POOL_LOW", KVMM_POOL_LOW);
	p->high = kvmm_cuda_env_chunks("KVMM_CUDA_POOL_HIGH", KVMM_POOL_HIGH);
	if (p->high < p->low)
		p->high = p->low;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	err = pthread_create(&p->thread, NULL, kvmm_cuda_pool_main, p);
	if (err) {
		pthread_mutex_destroy(&p->lock);
		pthread_cond_destroy(&p->cond);
		return -err;
	}
	p->started = true;
	return 0;
}

void kvmm_cuda_pool_fini(struct kvmm_cuda_pool *p)
{
	if (p->started) {
		pthread_mutex_lock(&p->lock);
		p->stop = true;
		pthread_cond_broadcast(&p->cond);
		pthread_mutex_unlock(&p->lock);
		pthread_join(p->thread, NULL);
		p->started = false;
	}
	kvmm_cuda_pool_trim(p, 0);
	free(p->free);
	p->free = NULL;
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
}

int kvmm_cuda_pool_get(struct kvmm_cuda_pool *p, uint32_t n, CUmemGenericAllocationHandle *h)
{
	uint32_t have, made = 0;
	int ret = 0;

	pthread_mutex_lock(&p->lock);
	p->resting = false; /* demand again: keep chunks ready */
	have = p->nr_free < n ? p->nr_free : n;
	p->nr_free -= have;
	if (have)
		memcpy(h, p->free + p->nr_free, have * sizeof(*h));
	if (p->nr_free < p->low)
		pthread_cond_broadcast(&p->cond); /* wake the refill */
	pthread_mutex_unlock(&p->lock);
	/* Short: create the rest here (the caller is waiting for them anyway). */
	for (made = have; made < n && !ret; made++)
		ret = kvmm_cuda_pool_create(p, &h[made]);
	if (ret) {
		made--;
		pthread_mutex_lock(&p->lock);
		p->refusals++;
		pthread_mutex_unlock(&p->lock);
		kvmm_cuda_pool_put(p, have, h);
		for (uint32_t i = have; i < made; i++)
			kvmm_cuda_pool_release(p, h[i]);
		return ret;
	}
	pthread_mutex_lock(&p->lock);
	p->created += n - have;
	p->creates += n - have;
	pthread_mutex_unlock(&p->lock);
	return 0;
}

void kvmm_cuda_pool_put(struct kvmm_cuda_pool *p, uint32_t n, const CUmemGenericAllocationHandle *h)
{
	uint32_t i = 0;

	pthread_mutex_lock(&p->lock);
	if (n && !p->resting && !kvmm_cuda_pool_reserve(p, p->nr_free + n)) {
		memcpy(p->free + p->nr_free, h, n * sizeof(*h));
		p->nr_free += n;
		i = n;
	}
	p->refill_err = 0; /* memory came back: refilling may work again */
	pthread_cond_broadcast(&p->cond);
	p->created -= n - i;
	pthread_mutex_unlock(&p->lock);
	for (; i < n; i++) /* no room to keep them: give them back */
		kvmm_cuda_pool_release(p, h[i]);
}

void kvmm_cuda_pool_trim(struct kvmm_cuda_pool *p, uint32_t keep)
{
	pthread_mutex_lock(&p->lock);
	while (p->nr_free > keep) {
		CUmemGenericAllocationHandle h = p->free[--p->nr_free];

		p->created--;
		p->releases++;
		pthread_mutex_unlock(&p->lock);
		kvmm_cuda_pool_release(p, h);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
}

void kvmm_cuda_pool_rest(struct kvmm_cuda_pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->resting = true;
	pthread_mutex_unlock(&p->lock);
	kvmm_cuda_pool_trim(p, 0);
}
#endif
