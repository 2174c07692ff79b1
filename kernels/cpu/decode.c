/*
 * Threaded CPU decode. The KV range of every (entry, KV head) pair is cut
 * into chunks; a thread takes one chunk at a time and runs all the query
 * heads that share that KV head over it, so K/V bytes are read once. The
 * per-chunk partials (unnormalised output, max, sum) are then merged with a
 * log-sum-exp weighting.
 */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "cpu.h"
#include "dtype.h"

/* Tokens per chunk never drop below this: a smaller chunk costs more to merge than to run. */
#define MIN_CHUNK 256
/* Chunks per thread wanted, so uneven lengths still balance. */
#define CHUNKS_PER_THREAD 4

struct decode_item {
	int32_t b, kvh, start, end;
};

struct decode_job {
	const struct kvmm_attn_params *p;
	const float *q; /* [batch][q_heads][dim], times scale*log2(e) */
	const struct decode_item *items;
	int nitems, g;
	float *po, *pm, *pl; /* per item: [g][dim], [g], [g] */
	void (*chunk)(const struct attn_chunk *c);
	atomic_int next;
};

int kvmm_attn_cpu_has_simd(void)
{
#if defined(__x86_64__)
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
	       __builtin_cpu_supports("f16c");
#else
	return 0;
#endif
}

static void run_item(struct decode_job *job, int i)
{
	const struct kvmm_attn_params *p = job->p;
	const struct decode_item *it = &job->items[i];
	size_t es = kvmm_attn_dtype_size(p->k.dtype);
	int dim = p->head_dim;
	struct attn_chunk c = {
	    .q = job->q + ((int64_t)it->b * p->q_heads + (int64_t)it->kvh * job->g) * dim,
	    .k_tok = p->k.token_stride * (int64_t)es,
	    .v_tok = p->v.token_stride * (int64_t)es,
	    .k_blk = p->k.slot_stride * (int64_t)es,
	    .v_blk = p->v.slot_stride * (int64_t)es,
	    .block_size = p->paged.block_size,
	    .dtype = p->k.dtype,
	    .g = job->g,
	    .dim = dim,
	    .start = it->start,
	    .end = it->end,
	    .o = job->po + (int64_t)i * job->g * dim,
	    .m = job->pm + (int64_t)i * job->g,
	    .l = job->pl + (int64_t)i * job->g,
	};
	int64_t k0 = (int64_t)it->kvh * p->k.head_stride, v0 = (int64_t)it->kvh * p->v.head_stride;

	if (p->paged.block_table) {
		c.table = p->paged.block_table + (int64_t)it->b * p->paged.max_blocks;
	} else {
		int64_t slot = p->slots ? p->slots[it->b] : it->b;

		k0 += slot * p->k.slot_stride;
		v0 += slot * p->v.slot_stride;
	}
	c.k = (const char *)p->k.data + k0 * (int64_t)es;
	c.v = (const char *)p->v.data + v0 * (int64_t)es;
	job->chunk(&c);
}

static void decode_worker(void *arg)
{
	struct decode_job *job = arg;
	int i;

	while ((i = atomic_fetch_add(&job->next, 1)) < job->nitems)
		run_item(job, i);
}

static int32_t pick_chunk(const struct kvmm_attn_params *p, int threads, int requested)
{
	int64_t total = 0, chunk;

	if (requested > 0)
		return requested;
	if ((int64_t)p->batch * p->kv_heads >= (int64_t)threads * CHUNKS_PER_THREAD)
		return INT32_MAX;
	for (int b = 0; b < p->batch; b++)
		total += p->seq_lens[b];
	total *= p->kv_heads;
	chunk = (total + threads * CHUNKS_PER_THREAD - 1) / (threads * CHUNKS_PER_THREAD);
	return chunk < MIN_CHUNK ? MIN_CHUNK : (int32_t)(chunk > INT32_MAX ? INT32_MAX : chunk);
}

/* Items for (b, kvh) are consecutive; first[b * kv_heads + kvh] is the first one. */
static int plan_items(const struct kvmm_attn_params *p, int32_t chunk, struct decode_item **out,
		      int **first)
{
	int64_t n = 0;
	int i = 0;

	for (int b = 0; b < p->batch; b++)
		n += ((int64_t)p->seq_lens[b] + chunk - 1) / chunk * p->kv_heads;
	if (n > INT32_MAX / 2)
		return -EINVAL;
	*out = malloc(sizeof(**out) * (size_t)(n ? n : 1));
	*first = malloc(sizeof(**first) * ((size_t)p->batch * p->kv_heads + 1));
	if (!*out || !*first)
		return -ENOMEM;
	for (int b = 0; b < p->batch; b++)
		for (int kvh = 0; kvh < p->kv_heads; kvh++) {
			(*first)[b * p->kv_heads + kvh] = i;
			for (int32_t s = 0; s < p->seq_lens[b]; s += chunk) {
				int32_t e = p->seq_lens[b] - s > chunk ? s + chunk : p->seq_lens[b];

				(*out)[i++] = (struct decode_item){b, kvh, s, e};
			}
		}
	(*first)[p->batch * p->kv_heads] = i;
	return i;
}

/* o = sum_i o_i 2^(m_i - M) / sum_i l_i 2^(m_i - M), M = max_i m_i. */
static void merge(const struct decode_job *job, const int *first)
{
	const struct kvmm_attn_params *p = job->p;
	int dim = p->head_dim, g = job->g;
	float acc[128];

	for (int b = 0; b < p->batch; b++)
		for (int h = 0; h < p->q_heads; h++) {
			int pair = b * p->kv_heads + h / g, hh = h % g;
			int i0 = first[pair], i1 = first[pair + 1];
			int64_t oo = attn_q_offset(&p->o, b, 0, h);
			float mx = -INFINITY, sum = 0;

			for (int i = i0; i < i1; i++)
				mx = fmaxf(mx, job->pm[(int64_t)i * g + hh]);
			for (int d = 0; d < dim; d++)
				acc[d] = 0;
			for (int i = i0; i < i1; i++) {
				float w = exp2f(job->pm[(int64_t)i * g + hh] - mx);
				const float *po = job->po + ((int64_t)i * g + hh) * dim;

				sum += w * job->pl[(int64_t)i * g + hh];
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

int kvmm_attn_cpu_decode(const struct kvmm_attn_params *params,
			 const struct kvmm_attn_cpu_opts *opts)
{
	struct kvmm_attn_params one; /* decode: one new token per entry, whatever q_lens says */
	const struct kvmm_attn_params *p = &one;
	struct decode_job job = {.p = p};
	int threads, *first = NULL, err;
	struct decode_item *items = NULL;
	float *q = NULL;

	if (!params)
		return -EINVAL;
	one = *params;
	one.q_lens = NULL;
	err = kvmm_attn_params_check(p);
	if (!err)
		err = attn_check_lens(p, 1);
	if (!err)
		err = attn_check_dense_dim(p);
	if (err || p->batch == 0)
		return err;
	threads = attn_threads(opts);
	job.g = p->q_heads / p->kv_heads;
	job.chunk = attn_decode_chunk_scalar;
#if defined(__x86_64__)
	if (!(opts && opts->no_simd) && kvmm_attn_cpu_has_simd())
		job.chunk = attn_decode_chunk_avx2;
#endif
	err = plan_items(p, pick_chunk(p, threads, opts ? opts->chunk_tokens : 0), &items, &first);
	if (err < 0)
		goto out;
	job.items = items;
	job.nitems = err;
	q = scaled_q(p);
	job.po = malloc(sizeof(float) * ((size_t)job.nitems * job.g * (p->head_dim + 2) + 1));
	if (!q || !job.po) {
		err = -ENOMEM;
		goto out;
	}
	job.q = q;
	job.pm = job.po + (size_t)job.nitems * job.g * p->head_dim;
	job.pl = job.pm + (size_t)job.nitems * job.g;
	atomic_init(&job.next, 0);
	err = attn_parallel(threads < job.nitems ? threads : job.nitems, decode_worker, &job);
	if (!err)
		merge(&job, first);
out:
	free(job.po);
	free(q);
	free(items);
	free(first);
	return err;
}
