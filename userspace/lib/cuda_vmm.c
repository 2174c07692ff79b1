/* SPDX-License-Identifier: MIT */
/* GPU virtual range, zero chunk and chunk remapping. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_vmm.h"

#ifdef KVMM_HAVE_CUDA_H
#define KVMM_RUNS 16

static CUdeviceptr kvmm_chunk_va(const struct kvmm_cuda_vmm *v, uint64_t c)
{
	return v->va + c * v->chunk;
}

static int kvmm_cuda_access(struct kvmm_cuda_vmm *v, uint64_t first, uint64_t nr,
			    const CUmemAccessDesc *a)
{
	v->set_access++;
	return kvmm_cuda_err(v->d->cuMemSetAccess(kvmm_chunk_va(v, first), nr * v->chunk, a, 1));
}

/* Unmaps chunk @c (exactly its earlier mapping): it is a HOLE after, its
 * handle the caller's. A HOLE stays one; on failure the chunk is as it was. */
static int kvmm_cuda_unmap_chunk(struct kvmm_cuda_vmm *v, uint64_t c)
{
	CUresult r;

	if (v->state[c] == KVMM_CUDA_HOLE)
		return 0;
	v->unmaps++;
	r = v->d->cuMemUnmap(kvmm_chunk_va(v, c), v->chunk);
	if (r == CUDA_SUCCESS || kvmm_cuda_lost(r)) { /* a lost context still unmaps */
		v->handle[c] = 0;
		v->state[c] = KVMM_CUDA_HOLE;
	}
	return kvmm_cuda_err(r);
}

static struct kvmm_cuda_shared *kvmm_cuda_shared_of(struct kvmm_cuda_vmm *v,
						    CUmemGenericAllocationHandle h)
{
	for (uint32_t i = 0; i < v->nshared; i++) {
		if (v->shared[i].h == h)
			return &v->shared[i];
	}
	return NULL;
}

/* One more mapping of @h. */
static int kvmm_cuda_shared_get(struct kvmm_cuda_vmm *v, CUmemGenericAllocationHandle h)
{
	struct kvmm_cuda_shared *e = kvmm_cuda_shared_of(v, h);

	if (e) {
		e->extra++;
		return 0;
	}
	if (v->nshared == v->capshared) {
		uint32_t cap = v->capshared ? 2 * v->capshared : 16;
		struct kvmm_cuda_shared *n = realloc(v->shared, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		v->shared = n;
		v->capshared = cap;
	}
	v->shared[v->nshared++] = (struct kvmm_cuda_shared){.h = h, .extra = 1};
	return 0;
}

/* A mapping of @h went: true while another chunk still maps it (the
 * handle is not the caller's to put back). */
static bool kvmm_cuda_shared_put(struct kvmm_cuda_vmm *v, CUmemGenericAllocationHandle h)
{
	struct kvmm_cuda_shared *e = kvmm_cuda_shared_of(v, h);

	if (!e)
		return false;
	if (!--e->extra)
		*e = v->shared[--v->nshared];
	return true;
}

/* Maps @h at the HOLE @c; it stays a HOLE on failure. */
static int kvmm_cuda_map_chunk(struct kvmm_cuda_vmm *v, uint64_t c, CUmemGenericAllocationHandle h,
			       uint8_t state)
{
	int ret;

	v->maps++;
	ret = kvmm_cuda_err(v->d->cuMemMap(kvmm_chunk_va(v, c), v->chunk, 0, h, 0));
	if (!ret) {
		v->handle[c] = h;
		v->state[c] = state;
	}
	return ret;
}

/* Read-only access for every ZERO run of [first, first + nr) (newly
 * mapped zero chunks have none yet; HOLEs have no mapping to set). */
static int kvmm_cuda_access_zero(struct kvmm_cuda_vmm *v, uint64_t first, uint64_t nr)
{
	struct kvmm_cuda_run runs[KVMM_RUNS];
	int ret = 0;
	size_t n;

	do {
		n = kvmm_cuda_plan(v->state, first, nr, KVMM_CUDA_ZERO, runs, KVMM_RUNS);
		for (size_t i = 0; i < n && i < KVMM_RUNS; i++) {
			int err = kvmm_cuda_access(v, runs[i].first, runs[i].nr, v->zacc);

			ret = ret ? ret : err;
		}
		if (n > KVMM_RUNS) { /* more runs past the last one seen */
			uint64_t end = runs[KVMM_RUNS - 1].first + runs[KVMM_RUNS - 1].nr;

			nr -= end - first;
			first = end;
		}
	} while (n > KVMM_RUNS);
	return ret;
}

/* Puts the zero chunk back at every HOLE of [first, first + nr). */
static int kvmm_cuda_fill_holes(struct kvmm_cuda_vmm *v, uint64_t first, uint64_t nr)
{
	bool any = false;
	int ret = 0;

	for (uint64_t c = first; c < first + nr && !ret; c++) {
		if (v->state[c] != KVMM_CUDA_HOLE)
			continue;
		ret = kvmm_cuda_map_chunk(v, c, v->zero, KVMM_CUDA_ZERO);
		any = true;
	}
	if (any) {
		int err = kvmm_cuda_access_zero(v, first, nr);

		ret = ret ? ret : err;
	}
	return ret;
}

int kvmm_cuda_vmm_init(struct kvmm_cuda_vmm *v, const struct kvmm_cuda_drv *d,
		       struct kvmm_cuda_pool *pool, int dev, uint64_t bytes, uint64_t chunk)
{
	int ret;

	memset(v, 0, sizeof(*v));
	v->d = d;
	v->pool = pool;
	v->bytes = bytes;
	v->chunk = chunk;
	v->nr_chunks = bytes / chunk;
	v->rw.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	v->rw.location.id = dev;
	v->rw.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	v->ro = v->rw;
	v->ro.flags = CU_MEM_ACCESS_FLAGS_PROT_READ;
	v->zacc = &v->ro;
	v->zero_ro = true;
	pthread_mutex_init(&v->lock, NULL);
	v->state = calloc(v->nr_chunks, 1);
	v->handle = calloc(v->nr_chunks, sizeof(*v->handle));
	if (!v->state || !v->handle)
		return -ENOMEM;
	ret = kvmm_cuda_err(d->cuStreamCreate(&v->stream, CU_STREAM_NON_BLOCKING));
	if (ret)
		return ret;
	/* Alignment 0: the granularity; a chunk need not be a power of two. */
	ret = kvmm_cuda_err(d->cuMemAddressReserve(&v->va, bytes, 0, 0, 0));
	if (ret) {
		v->va = 0;
		return ret;
	}
	/* The zero chunk: a pool chunk, zeroed through a writable mapping. */
	ret = kvmm_cuda_pool_get(pool, 1, &v->zero);
	if (ret)
		return ret;
	for (uint64_t c = 0; c < v->nr_chunks && !ret; c++) {
		ret = kvmm_cuda_err(d->cuMemMap(kvmm_chunk_va(v, c), chunk, 0, v->zero, 0));
		if (!ret)
			v->handle[c] = v->zero; /* mapped: fini unmaps it */
	}
	if (!ret)
		ret = kvmm_cuda_access(v, 0, 1, &v->rw);
	if (!ret)
		ret = kvmm_cuda_err(d->cuMemsetD8Async(v->va, 0, chunk, v->stream));
	if (!ret) /* the memset must land before the range turns read-only */
		ret = kvmm_cuda_err(d->cuStreamSynchronize(v->stream));
	if (!ret)
		ret = kvmm_cuda_access(v, 0, v->nr_chunks, &v->ro);
	if (ret == -EOPNOTSUPP || ret == -EINVAL) {
		/* No read-only mappings: the zero chunk is writable instead. */
		v->zacc = &v->rw;
		v->zero_ro = false;
		ret = kvmm_cuda_access(v, 0, v->nr_chunks, &v->rw);
	}
	return ret;
}

void kvmm_cuda_vmm_fini(struct kvmm_cuda_vmm *v)
{
	for (uint64_t c = 0; v->handle && c < v->nr_chunks; c++) {
		if (!v->handle[c]) /* never mapped, or a HOLE */
			continue;
		v->d->cuMemUnmap(kvmm_chunk_va(v, c), v->chunk);
		if (v->handle[c] != v->zero && !kvmm_cuda_shared_put(v, v->handle[c]))
			kvmm_cuda_pool_put(v->pool, 1, &v->handle[c]);
	}
	if (v->zero)
		kvmm_cuda_pool_put(v->pool, 1, &v->zero);
	if (v->va)
		v->d->cuMemAddressFree(v->va, v->bytes);
	if (v->stream)
		v->d->cuStreamDestroy(v->stream);
	pthread_mutex_destroy(&v->lock);
	free(v->state);
	free(v->handle);
	free(v->shared);
	memset(v, 0, sizeof(*v));
}

/*
 * Puts the zero chunk back at [first, first + nr), which now map real
 * chunks, and returns those; used by unmap and to roll back a failed map.
 * A chunk whose unmap fails stays REAL (mapped, its handle kept); one
 * whose zero mapping cannot be put back is a HOLE (no mapping: reads
 * there fault) until the next map or unmap over it retries.
 */
static int kvmm_cuda_unmap_run(struct kvmm_cuda_vmm *v, uint64_t first, uint64_t nr)
{
	int ret = 0, err;

	for (uint64_t c = first; c < first + nr; c++) {
		CUmemGenericAllocationHandle h = v->handle[c];

		err = kvmm_cuda_unmap_chunk(v, c);
		ret = ret ? ret : err;
		if (v->state[c] != KVMM_CUDA_HOLE)
			continue; /* still mapped */
		/* A handle another chunk still maps stays: only its last unmap frees it. */
		if (h && h != v->zero && !kvmm_cuda_shared_put(v, h))
			kvmm_cuda_pool_put(v->pool, 1, &h);
		err = kvmm_cuda_map_chunk(v, c, v->zero, KVMM_CUDA_ZERO);
		ret = ret ? ret : err;
	}
	err = kvmm_cuda_access_zero(v, first, nr);
	return ret ? ret : err;
}

static int kvmm_cuda_map_run(struct kvmm_cuda_vmm *v, const struct kvmm_cuda_run *run, bool zero)
{
	CUmemGenericAllocationHandle *h = malloc(run->nr * sizeof(*h));
	uint64_t done = 0;
	int ret;

	if (!h)
		return -ENOMEM;
	ret = kvmm_cuda_pool_get(v->pool, (uint32_t)run->nr, h);
	if (ret) {
		free(h);
		return ret;
	}
	for (; done < run->nr && !ret; done++) {
		uint64_t c = run->first + done;

		ret = kvmm_cuda_unmap_chunk(v, c);
		if (!ret)
			ret = kvmm_cuda_map_chunk(v, c, h[done], KVMM_CUDA_REAL);
		if (ret)
			break;
	}
	if (!ret)
		ret = kvmm_cuda_access(v, run->first, run->nr, &v->rw);
	/* Queued last: a failure before it leaves no fill running on the
	 * chunks the rollback below unmaps. */
	if (!ret && zero)
		ret = kvmm_cuda_err(v->d->cuMemsetD8Async(kvmm_chunk_va(v, run->first), 0,
							  run->nr * v->chunk, v->stream));
	if (ret) {
		/* Chunk run->first + done may have lost its zero mapping: put
		 * it back (a failure leaves a HOLE, retried by the next map). */
		if (done < run->nr) {
			int err = kvmm_cuda_fill_holes(v, run->first + done, 1);

			if (err)
				v->holes++;
			kvmm_cuda_pool_put(v->pool, (uint32_t)(run->nr - done), h + done);
		}
		if (done)
			kvmm_cuda_unmap_run(v, run->first, done);
	}
	free(h);
	return ret;
}

int kvmm_cuda_vmm_map(struct kvmm_cuda_vmm *v, uint64_t first, uint64_t nr, bool zero)
{
	struct kvmm_cuda_run runs[KVMM_RUNS];
	size_t n, i;
	int ret = 0;

	pthread_mutex_lock(&v->lock);
	ret = kvmm_cuda_fill_holes(v, first, nr); /* zero mappings an earlier failure lost */
	do {
		if (ret)
			break;
		n = kvmm_cuda_plan(v->state, first, nr, KVMM_CUDA_ZERO, runs, KVMM_RUNS);
		for (i = 0; i < n && i < KVMM_RUNS && !ret; i++)
			ret = kvmm_cuda_map_run(v, &runs[i], zero);
	} while (!ret && n > KVMM_RUNS);
	/* The zero fill lands before anyone is told the chunks exist, and
	 * before a caller rolls back the runs mapped before a failed one. */
	if (zero) {
		int err = kvmm_cuda_err(v->d->cuStreamSynchronize(v->stream));

		ret = ret ? ret : err;
	}
	pthread_mutex_unlock(&v->lock);
	return ret; /* a failed run rolled back; earlier runs stay (caller unmaps) */
}

int kvmm_cuda_vmm_unmap(struct kvmm_cuda_vmm *v, uint64_t first, uint64_t nr)
{
	struct kvmm_cuda_run runs[KVMM_RUNS];
	int ret = 0, err;

	pthread_mutex_lock(&v->lock);
	for (uint64_t c = first; c < first + nr; c++) {
		if (v->state[c] == KVMM_CUDA_DRAIN)
			v->state[c] = KVMM_CUDA_REAL;
	}
	ret = kvmm_cuda_fill_holes(v, first, nr);
	for (;;) {
		size_t n = kvmm_cuda_plan(v->state, first, nr, KVMM_CUDA_REAL, runs, KVMM_RUNS);

		for (size_t i = 0; i < n && i < KVMM_RUNS; i++) {
			err = kvmm_cuda_unmap_run(v, runs[i].first, runs[i].nr);
			ret = ret ? ret : err;
		}
		if (n <= KVMM_RUNS || ret)
			break;
	}
	pthread_mutex_unlock(&v->lock);
	return ret;
}

void kvmm_cuda_vmm_drain(struct kvmm_cuda_vmm *v, uint64_t first, uint64_t nr)
{
	pthread_mutex_lock(&v->lock);
	for (uint64_t c = first; c < first + nr; c++) {
		if (v->state[c] == KVMM_CUDA_REAL)
			v->state[c] = KVMM_CUDA_DRAIN;
	}
	pthread_mutex_unlock(&v->lock);
}
#endif

#ifdef KVMM_HAVE_CUDA_H
int kvmm_cuda_vmm_share(struct kvmm_cuda_vmm *v, uint64_t dfirst, uint64_t sfirst, uint64_t nr)
{
	uint64_t done = 0;
	int ret;

	pthread_mutex_lock(&v->lock);
	ret = kvmm_cuda_fill_holes(v, dfirst, nr);
	for (uint64_t i = 0; !ret && i < nr; i++) {
		if (v->state[sfirst + i] != KVMM_CUDA_REAL)
			ret = -EINVAL;
		else if (v->state[dfirst + i] != KVMM_CUDA_ZERO)
			ret = -EBUSY;
	}
	for (; !ret && done < nr; done++) {
		uint64_t c = dfirst + done;
		CUmemGenericAllocationHandle h = v->handle[sfirst + done];

		ret = kvmm_cuda_shared_get(v, h);
		if (ret)
			break;
		ret = kvmm_cuda_unmap_chunk(v, c);
		if (!ret)
			ret = kvmm_cuda_map_chunk(v, c, h, KVMM_CUDA_REAL);
		if (ret) {
			kvmm_cuda_shared_put(v, h);
			if (kvmm_cuda_fill_holes(v, c, 1))
				v->holes++;
			break;
		}
	}
	if (!ret && nr)
		ret = kvmm_cuda_access(v, dfirst, nr, &v->rw);
	if (ret && done) /* the mappings made go; the handles stay the source's */
		kvmm_cuda_unmap_run(v, dfirst, done);
	pthread_mutex_unlock(&v->lock);
	return ret;
}
#endif
