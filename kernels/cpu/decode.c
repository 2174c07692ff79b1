/*
 * Threaded CPU decode. The plan (decode_plan.c) cuts every entry's cache
 * tokens into items over all KV heads; a thread takes one item at a time
 * (numa.c: its own node's first) and walks it a softmax block of tokens at
 * a time, running the query heads of each KV head over the block, so K/V
 * bytes are read once and nearly in address order. The per-item partials (unnormalised
 * output, max, sum) are then merged in item order with a log-sum-exp
 * weighting. With opts->tier (decode_tier.c) items wait for their bytes.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "cpu.h"
#include "decode.h"
#include "dtype.h"

int kvmm_attn_cpu_has_simd(void)
{
#if defined(__x86_64__)
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
	       __builtin_cpu_supports("f16c");
#else
	return 0;
#endif
}

int kvmm_attn_cpu_has_avx512(void)
{
#if defined(__x86_64__)
	return kvmm_attn_cpu_has_simd() && __builtin_cpu_supports("avx512f");
#else
	return 0;
#endif
}

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t slot_of(const struct kvmm_attn_params *p, int b)
{
	return p->slots ? p->slots[b] : b;
}

void attn_item_range(const struct attn_job *job, int i, int which, const char **addr, size_t *len)
{
	const struct kvmm_attn_params *p = job->p;
	const struct kvmm_attn_tensor *t = which ? &p->v : &p->k;
	const struct attn_item *it = &job->plan.items[i];
	int64_t es = (int64_t)kvmm_attn_dtype_size(t->dtype);
	int64_t lo = slot_of(p, it->b) * t->slot_stride + (int64_t)it->start * t->token_stride;
	int64_t hi = slot_of(p, it->b) * t->slot_stride + (int64_t)(it->end - 1) * t->token_stride +
		     (int64_t)(p->kv_heads - 1) * t->head_stride + p->head_dim;

	*addr = (const char *)t->data + lo * es;
	*len = (size_t)((hi - lo) * es);
}

static void run_item(struct attn_job *job, int i)
{
	const struct kvmm_attn_params *p = job->p;
	const struct attn_item *it = &job->plan.items[i];
	size_t es = kvmm_attn_dtype_size(p->k.dtype);
	int dim = p->head_dim, g = job->g;
	float *o = job->po + (int64_t)i * p->q_heads * dim;
	float *m = job->pm + (int64_t)i * p->q_heads, *l = job->pl + (int64_t)i * p->q_heads;
	struct attn_chunk c = {
	    .k_tok = p->k.token_stride * (int64_t)es,
	    .v_tok = p->v.token_stride * (int64_t)es,
	    .k_blk = p->k.slot_stride * (int64_t)es,
	    .v_blk = p->v.slot_stride * (int64_t)es,
	    .block_size = p->paged.block_size,
	    .dtype = p->k.dtype,
	    .g = g,
	    .dim = dim,
	    .pf_ahead = job->plan.prefetch,
	    .pf_end = it->end,
	};
	const char *k = p->k.data, *v = p->v.data;

	if (p->paged.block_table) {
		c.table = p->paged.block_table + (int64_t)it->b * p->paged.max_blocks;
	} else {
		k += slot_of(p, it->b) * p->k.slot_stride * (int64_t)es;
		v += slot_of(p, it->b) * p->v.slot_stride * (int64_t)es;
	}
	for (int h = 0; h < p->q_heads; h++) {
		m[h] = -INFINITY;
		l[h] = 0;
		for (int d = 0; d < dim; d++)
			o[(int64_t)h * dim + d] = 0;
	}
	/* Pass by pass: ATTN_BLOCK tokens of each KV head of a group, group by group. */
	for (int k0 = 0; k0 < p->kv_heads; k0 += job->plan.heads) {
		int k1 = p->kv_heads - k0 > job->plan.heads ? k0 + job->plan.heads : p->kv_heads;

		for (int32_t t0 = it->start; t0 < it->end; t0 += ATTN_BLOCK) {
			c.start = t0;
			c.end = it->end - t0 > ATTN_BLOCK ? t0 + ATTN_BLOCK : it->end;
			for (int kvh = k0; kvh < k1; kvh++) {
				int h0 = kvh * g;

				c.q = job->q + ((int64_t)it->b * p->q_heads + h0) * dim;
				c.k = k + (int64_t)kvh * p->k.head_stride * (int64_t)es;
				c.v = v + (int64_t)kvh * p->v.head_stride * (int64_t)es;
				c.o = o + (int64_t)h0 * dim;
				c.m = m + h0;
				c.l = l + h0;
				job->chunk(&c);
			}
		}
	}
}

static void worker(void *arg)
{
	struct attn_job *job = arg;
	int node = job->queue.ngroups > 1 ? attn_numa_self() : -1;
	long long wait = 0, compute = 0;
	int i, local = 0, remote = 0;

	while ((i = attn_queue_next(&job->queue, node)) >= 0) {
		long long t0 = now_ns(), t1;

		if (atomic_load(&job->err)) {
			if (job->tier)
				attn_tier_drop(job, i);
			continue;
		}
		if (job->tier) {
			int err = attn_tier_acquire(job, i);

			if (err) {
				int zero = 0;

				atomic_compare_exchange_strong(&job->err, &zero, err);
				continue;
			}
		}
		t1 = now_ns();
		run_item(job, i);
		if (job->tier)
			attn_tier_release(job, i);
		wait += t1 - t0;
		compute += now_ns() - t1;
		if (job->plan.items[i].node >= 0 && node >= 0)
			*(job->plan.items[i].node == node ? &local : &remote) += 1;
	}
	atomic_fetch_add(&job->local, local);
	atomic_fetch_add(&job->remote, remote);
	atomic_fetch_add(&job->wait_ns, wait);
	atomic_fetch_add(&job->compute_ns, compute);
}

/* o = sum_i o_i 2^(m_i - M) / sum_i l_i 2^(m_i - M), M = max_i m_i, over entry b's items. */
static void merge(const struct attn_job *job)
{
	const struct kvmm_attn_params *p = job->p;
	int dim = p->head_dim, qh = p->q_heads;
	float acc[128];

	for (int b = 0; b < p->batch; b++)
		for (int h = 0; h < qh; h++) {
			int i0 = job->plan.first[b], i1 = job->plan.first[b + 1];
			int64_t oo = attn_q_offset(&p->o, b, 0, h);
			float mx = -INFINITY, sum = 0;

			for (int i = i0; i < i1; i++)
				mx = fmaxf(mx, job->pm[(int64_t)i * qh + h]);
			for (int d = 0; d < dim; d++)
				acc[d] = 0;
			for (int i = i0; i < i1; i++) {
				float w = exp2f(job->pm[(int64_t)i * qh + h] - mx);
				const float *po = job->po + ((int64_t)i * qh + h) * dim;

				sum += w * job->pl[(int64_t)i * qh + h];
				for (int d = 0; d < dim; d++)
					acc[d] += w * po[d];
			}
			for (int d = 0; d < dim; d++)
				attn_store(p->o.data, p->o.dtype, oo + d,
					   sum > 0 ? acc[d] / sum : 0.0f);
		}
}

static float *scaled_q(const struct kvmm_attn_params *p)
{
	int dim = p->head_dim;
	float *q = malloc(sizeof(*q) * (size_t)p->batch * p->q_heads * dim);
	float f = p->scale * (float)M_LOG2E;

	if (!q)
		return NULL;
	for (int b = 0; b < p->batch; b++)
		for (int h = 0; h < p->q_heads; h++) {
			int64_t qo = attn_q_offset(&p->q, b, 0, h);

			for (int d = 0; d < dim; d++)
				q[((int64_t)b * p->q_heads + h) * dim + d] =
				    attn_load(p->q.data, p->q.dtype, qo + d) * f;
		}
	return q;
}

/* Checks a decode call; *one is params with one new token per entry. */
static int decode_check(const struct kvmm_attn_params *params,
			const struct kvmm_attn_cpu_opts *opts, struct kvmm_attn_params *one)
{
	int err;

	if (!params)
		return -EINVAL;
	*one = *params;
	one->q_lens = NULL; /* decode: one new token per entry, whatever q_lens says */
	err = kvmm_attn_params_check(one);
	if (!err)
		err = attn_check_lens(one, 1);
	if (!err)
		err = attn_check_dense_dim(one);
	if (!err && opts && opts->tier &&
	    (one->paged.block_table || !opts->tier->fetch || !opts->tier->acquire ||
	     !opts->tier->release || !opts->tier->drop))
		err = -EINVAL;
	return err;
}

/* 2: AVX-512, 1: AVX2, 0: portable. */
static int use_simd(const struct kvmm_attn_cpu_opts *opts)
{
	if ((opts && opts->no_simd) || !kvmm_attn_cpu_has_simd())
		return 0;
	return !(opts && opts->no_avx512) && kvmm_attn_cpu_has_avx512() ? 2 : 1;
}

/* Nodes of each item's first K byte, when there is more than one node. */
static void place_items(struct attn_job *job)
{
	const void **addrs;
	int *nodes, n = job->plan.nitems;

	if (attn_numa_nodes() < 2 || n == 0)
		return;
	addrs = malloc(sizeof(*addrs) * (size_t)n);
	nodes = malloc(sizeof(*nodes) * (size_t)n);
	if (addrs && nodes) {
		for (int i = 0; i < n; i++) {
			size_t len;
			const char *a;

			attn_item_range(job, i, 0, &a, &len);
			addrs[i] = a;
		}
		if (!attn_numa_where(addrs, n, nodes))
			for (int i = 0; i < n; i++)
				job->plan.items[i].node = nodes[i];
	}
	free(addrs);
	free(nodes);
}

int kvmm_attn_cpu_decode_plan(const struct kvmm_attn_params *params,
			      const struct kvmm_attn_cpu_opts *opts,
			      struct kvmm_attn_cpu_plan_info *info)
{
	const struct attn_caches *c = attn_caches();
	struct kvmm_attn_params one;
	struct attn_plan plan;
	int err = decode_check(params, opts, &one);

	if (err || !info)
		return err ? err : -EINVAL;
	err = attn_plan_make(&one, opts, c, &plan);
	if (err)
		return err;
	*info = (struct kvmm_attn_cpu_plan_info){
	    .threads = plan.threads,
	    .items = plan.nitems,
	    .simd = use_simd(opts),
	    .chunk_tokens = plan.chunk,
	    .heads_per_pass = plan.heads,
	    .prefetch_tokens = plan.prefetch,
	    .l1d_bytes = c->l1d,
	    .l2_bytes = c->l2,
	    .llc_bytes = c->llc,
	    .cache_source = c->source,
	    .numa_nodes = attn_numa_nodes(),
	};
	attn_plan_free(&plan);
	return 0;
}

int kvmm_attn_cpu_decode(const struct kvmm_attn_params *params,
			 const struct kvmm_attn_cpu_opts *opts)
{
	struct kvmm_attn_params one;
	struct attn_job job = {.p = &one, .opts = opts};
	int *rank = NULL, err, n;
	float *q = NULL;

	err = decode_check(params, opts, &one);
	if (err || one.batch == 0)
		return err;
	job.g = one.q_heads / one.kv_heads;
	job.chunk = attn_decode_chunk_scalar;
#if defined(__x86_64__)
	if (use_simd(opts))
		job.chunk = use_simd(opts) == 2 ? attn_decode_chunk_avx512 : attn_decode_chunk_avx2;
#endif
	job.tier = opts ? opts->tier : NULL;
	atomic_init(&job.err, 0);
	atomic_init(&job.local, 0);
	atomic_init(&job.remote, 0);
	atomic_init(&job.wait_ns, 0);
	atomic_init(&job.compute_ns, 0);
	err = attn_plan_make(&one, opts, attn_caches(), &job.plan);
	if (err)
		return err;
	n = job.plan.nitems;
	q = scaled_q(&one);
	job.po = malloc(sizeof(float) * ((size_t)n * one.q_heads * (one.head_dim + 2) + 1));
	rank = malloc(sizeof(*rank) * (size_t)(n ? n : 1));
	if (!q || !job.po || !rank) {
		err = -ENOMEM;
		goto out;
	}
	job.q = q;
	job.pm = job.po + (size_t)n * one.q_heads * one.head_dim;
	job.pl = job.pm + (size_t)n * one.q_heads;
	place_items(&job);
	for (int i = 0; i < n; i++)
		rank[i] = i;
	if (job.tier) {
		err = attn_tier_begin(&job, rank);
		if (err)
			goto out;
	}
	err = attn_queue_init(&job.queue, job.plan.items, n, rank, attn_numa_nodes());
	if (!err)
		err = attn_parallel(job.plan.threads < n ? job.plan.threads : n, worker, &job);
	if (err && job.tier) /* no thread ran: every ticket is still out */
		for (int i = 0; i < n; i++)
			attn_tier_drop(&job, i);
	if (!err)
		err = atomic_load(&job.err);
	if (!err)
		merge(&job); /* nothing is written unless every item ran */
	if (opts && opts->stats)
		*opts->stats = (struct kvmm_attn_cpu_stats){
		    .items = n,
		    .items_local = atomic_load(&job.local),
		    .items_remote = atomic_load(&job.remote),
		    .items_fetched = job.nfetched,
		    .fetch_wait_s = (double)atomic_load(&job.wait_ns) * 1e-9,
		    .compute_s = (double)atomic_load(&job.compute_ns) * 1e-9,
		};
out:
	if (job.tier)
		attn_tier_end(&job);
	attn_queue_free(&job.queue);
	free(job.po);
	free(q);
	free(rank);
	attn_plan_free(&job.plan);
	return err;
}
