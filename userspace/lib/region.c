/* SPDX-License-Identifier: MIT */
/* Host regions: argument checks, then the mode's provider does the work. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int kvmm_region_create(struct kvmm_ctx *ctx, const struct kvmm_region_config *cfg,
		       struct kvmm_region **regionp)
{
	struct kvmm_region_config c = KVMM_REGION_CONFIG_INIT;
	struct kvmm_region *r;
	int ret;

	if (!ctx || !cfg || !regionp)
		return -EINVAL;
	if (cfg->size < offsetof(struct kvmm_region_config, addr) + sizeof(cfg->addr) ||
	    cfg->size > sizeof(c))
		return -EINVAL;
	memcpy(&c, cfg, cfg->size);
	if (!c.chunk_bytes)
		c.chunk_bytes = ctx->chunk_bytes;
	if (c.chunk_bytes < ctx->page_size || c.chunk_bytes > KVMM_CHUNK_MAX ||
	    (c.chunk_bytes & (c.chunk_bytes - 1)))
		return -EINVAL;
	if (!c.bytes || c.bytes % c.chunk_bytes || c.bytes > (1ULL << 40))
		return -EINVAL;
	if ((uintptr_t)c.addr % ctx->page_size || c.numa_node < -1)
		return -EINVAL;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->ctx = ctx;
	r->ops = ctx->mode == KVMM_MODE_KERNEL ? &kvmm_region_kernel_ops : &kvmm_region_user_ops;
	r->bytes = c.bytes;
	r->chunk_bytes = c.chunk_bytes;
	r->nr_chunks = c.bytes / c.chunk_bytes;
	r->fixed = c.addr != NULL;
	r->fd = -1;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);

	pthread_rwlock_wrlock(&ctx->regions_lock);
	r->id = ++ctx->next_region_id;
	pthread_rwlock_unlock(&ctx->regions_lock);

	ret = r->ops->create(r, &c);
	if (ret) {
		pthread_mutex_destroy(&r->lock);
		pthread_cond_destroy(&r->cond);
		free(r);
		return ret;
	}
	pthread_rwlock_wrlock(&ctx->regions_lock);
	r->next = ctx->regions;
	ctx->regions = r;
	pthread_rwlock_unlock(&ctx->regions_lock);
	*regionp = r;
	return 0;
}

int kvmm_region_destroy(struct kvmm_region *r)
{
	struct kvmm_ctx *ctx;
	struct kvmm_region **pp;

	if (!r)
		return -EINVAL;
	/* Queued or running prefetches of this region finish first. */
	pthread_mutex_lock(&r->lock);
	while (atomic_load(&r->busy))
		pthread_cond_wait(&r->cond, &r->lock);
	pthread_mutex_unlock(&r->lock);
	ctx = r->ctx;
	/* Unlinked first: the fault handler no longer finds it. */
	pthread_rwlock_wrlock(&ctx->regions_lock);
	for (pp = &ctx->regions; *pp; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	}
	pthread_rwlock_unlock(&ctx->regions_lock);
	r->ops->destroy(r);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	free(r);
	return 0;
}

void *kvmm_region_base(const struct kvmm_region *r)
{
	return r ? r->base : NULL;
}

static int kvmm_region_range(const struct kvmm_region *r, uint64_t offset, uint64_t length,
			     uint64_t *first, uint64_t *nr)
{
	if (!r || !length || offset % r->chunk_bytes || length % r->chunk_bytes ||
	    offset > r->bytes || length > r->bytes - offset)
		return -EINVAL;
	*first = offset / r->chunk_bytes;
	*nr = length / r->chunk_bytes;
	return 0;
}

#define KVMM_REGION_RANGE_OP(name)                                                                 \
	int kvmm_region_##name(struct kvmm_region *r, uint64_t offset, uint64_t length)            \
	{                                                                                          \
		uint64_t first, nr;                                                                \
		int ret = kvmm_region_range(r, offset, length, &first, &nr);                       \
		return ret ? ret : r->ops->name(r, first, nr);                                     \
	}

KVMM_REGION_RANGE_OP(ensure)
KVMM_REGION_RANGE_OP(discard)
KVMM_REGION_RANGE_OP(evict)
KVMM_REGION_RANGE_OP(pin)
KVMM_REGION_RANGE_OP(unpin)

/* Checks every span, then hands the batch to the provider. */
static int kvmm_region_spans(const struct kvmm_range_span *v, uint32_t n, bool evict)
{
	struct kvmm_chunk_span *cv;
	const struct kvmm_region_ops *ops;
	int ret = 0;

	if (!v || !n || !v[0].r)
		return -EINVAL;
	ops = v[0].r->ops;
	cv = calloc(n, sizeof(*cv));
	if (!cv)
		return -ENOMEM;
	for (uint32_t i = 0; i < n && !ret; i++) {
		cv[i].r = v[i].r;
		ret = kvmm_region_range(v[i].r, v[i].offset, v[i].length, &cv[i].first, &cv[i].nr);
		if (!ret && v[i].r->ops != ops)
			ret = -EINVAL;
	}
	if (!ret)
		ret = evict ? ops->evict_spans(cv, n) : ops->ensure_spans(cv, n);
	free(cv);
	return ret;
}

int kvmm_region_ensure_many(const struct kvmm_range_span *v, uint32_t n)
{
	return kvmm_region_spans(v, n, false);
}

int kvmm_region_evict_many(const struct kvmm_range_span *v, uint32_t n)
{
	return kvmm_region_spans(v, n, true);
}

struct kvmm_prefetch_job {
	struct kvmm_region *r;
	uint64_t first, nr;
};

static int kvmm_region_prefetch_job(void *arg)
{
	struct kvmm_prefetch_job *job = arg;
	struct kvmm_region *r = job->r;
	int ret = r->ops->prefetch(r, job->first, job->nr);

	pthread_mutex_lock(&r->lock);
	atomic_fetch_sub(&r->busy, 1);
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	free(job);
	return ret;
}

int kvmm_region_prefetch(struct kvmm_region *r, uint64_t offset, uint64_t length,
			 struct kvmm_op **opp)
{
	struct kvmm_prefetch_job *job;
	uint64_t first, nr;
	int ret = kvmm_region_range(r, offset, length, &first, &nr);

	if (ret)
		return ret;
	job = malloc(sizeof(*job));
	if (!job)
		return -ENOMEM;
	*job = (struct kvmm_prefetch_job){.r = r, .first = first, .nr = nr};
	atomic_fetch_add(&r->busy, 1);
	ret = kvmm_worker_submit(r->ctx, kvmm_region_prefetch_job, job, opp);
	if (ret) {
		atomic_fetch_sub(&r->busy, 1);
		free(job);
	}
	return ret;
}

int kvmm_region_stats(struct kvmm_region *r, struct kvmm_region_stats *st)
{
	if (!r || !st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	st->bytes = r->bytes;
	st->chunk_bytes = r->chunk_bytes;
	st->id = r->id;
	return r->ops->stat(r, st);
}

int kvmm_region_share(struct kvmm_region *dst, uint64_t dst_offset, struct kvmm_region *src,
		      uint64_t src_offset, uint64_t length)
{
	uint64_t dfirst, sfirst, nr;
	int ret;

	if (!dst || !src)
		return -EINVAL;
	if (dst->ctx != src->ctx)
		return -EXDEV;
	if (dst->chunk_bytes != src->chunk_bytes)
		return -EINVAL;
	ret = kvmm_region_range(dst, dst_offset, length, &dfirst, &nr);
	if (!ret)
		ret = kvmm_region_range(src, src_offset, length, &sfirst, &nr);
	if (ret)
		return ret;
	if (dst == src && dfirst < sfirst + nr && sfirst < dfirst + nr)
		return -EINVAL;
	return dst->ops->share(dst, dfirst, src, sfirst, nr);
}

int kvmm_region_query(struct kvmm_region *r, uint64_t first, uint64_t nr, uint8_t *states)
{
	if (!r || !states || !nr || first >= r->nr_chunks || nr > r->nr_chunks - first)
		return -EINVAL;
	return r->ops->query(r, first, nr, states);
}
