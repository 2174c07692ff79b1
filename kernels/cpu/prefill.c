/*
 * CPU causal prefill: tiles of Q_TILE new tokens for all the query heads of
 * one KV head walk the visible keys K_TILE at a time. Each K/V tile is
 * converted to f32 once and used by every head of the group; the softmax is
 * online (base 2) with f32 accumulators. Threads take (entry, KV head, tile)
 * items from a shared counter.
 */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "dtype.h"

#define Q_TILE 16
#define K_TILE 64

struct prefill_item {
	int32_t b, kvh, i0, i1; /* new tokens [i0, i1) of entry b */
};

struct prefill_job {
	const struct kvmm_attn_params *p;
	const struct prefill_item *items;
	int nitems, g;
	atomic_int next;
	atomic_int failed;
};

/* Per-thread scratch, sized for the group. */
struct prefill_buf {
	float *q, *acc, *m, *l; /* [g][Q_TILE][dim], [g][Q_TILE][dim], [g][Q_TILE], [g][Q_TILE] */
	float *k, *v;		/* [K_TILE][dim] */
	float s[K_TILE];
};

static void load_kv_tile(const struct kvmm_attn_params *p, const struct kvmm_attn_tensor *t, int b,
			 int kvh, int32_t k0, int kn, float *dst)
{
	int dim = p->head_dim;

	for (int j = 0; j < kn; j++) {
		int64_t off = attn_kv_offset(p, t, b, k0 + j, kvh);

		for (int d = 0; d < dim; d++)
			dst[j * dim + d] = attn_load(t->data, t->dtype, off + d);
	}
}

/* One query row against kn keys of the tile: online softmax update. */
static void row_update(struct prefill_buf *w, int dim, const float *q, float *acc, float *m,
		       float *l, int kn)
{
	float mx = *m, alpha, sum = 0;

	for (int j = 0; j < kn; j++) {
		float dot = 0;

		for (int d = 0; d < dim; d++)
			dot += q[d] * w->k[j * dim + d];
		w->s[j] = dot;
		mx = fmaxf(mx, dot);
	}
	alpha = exp2f(*m - mx);
	for (int d = 0; d < dim; d++)
		acc[d] *= alpha;
	for (int j = 0; j < kn; j++) {
		float pj = exp2f(w->s[j] - mx);
		const float *v = w->v + j * dim;

		sum += pj;
		for (int d = 0; d < dim; d++)
			acc[d] += pj * v[d];
	}
	*l = *l * alpha + sum;
	*m = mx;
}

static void run_item(struct prefill_job *job, const struct prefill_item *it, struct prefill_buf *w)
{
	const struct kvmm_attn_params *p = job->p;
	int dim = p->head_dim, g = job->g, rows = it->i1 - it->i0;
	int32_t len = p->seq_lens[it->b];
	int32_t pos0 = len - attn_q_len(p, it->b, p->max_q_len), kend = pos0 + it->i1;
	float f = p->scale * (float)M_LOG2E;

	for (int hh = 0; hh < g; hh++)
		for (int r = 0; r < rows; r++) {
			int h = it->kvh * g + hh, idx = hh * Q_TILE + r;
			int64_t qo = attn_q_offset(&p->q, it->b, it->i0 + r, h);

			for (int d = 0; d < dim; d++) {
				w->q[idx * dim + d] = attn_load(p->q.data, p->q.dtype, qo + d) * f;
				w->acc[idx * dim + d] = 0;
			}
			w->m[idx] = -INFINITY;
			w->l[idx] = 0;
		}
	for (int32_t k0 = 0; k0 < kend; k0 += K_TILE) {
		int kn = kend - k0 < K_TILE ? kend - k0 : K_TILE;

		load_kv_tile(p, &p->k, it->b, it->kvh, k0, kn, w->k);
		load_kv_tile(p, &p->v, it->b, it->kvh, k0, kn, w->v);
		for (int hh = 0; hh < g; hh++)
			for (int r = 0; r < rows; r++) {
				int idx = hh * Q_TILE + r;
				int32_t visible = pos0 + it->i0 + r + 1 - k0;

				if (visible > 0)
					row_update(w, dim, w->q + idx * dim, w->acc + idx * dim,
						   &w->m[idx], &w->l[idx],
						   visible < kn ? visible : kn);
			}
	}
	for (int hh = 0; hh < g; hh++)
		for (int r = 0; r < rows; r++) {
			int idx = hh * Q_TILE + r;
			int64_t oo = attn_q_offset(&p->o, it->b, it->i0 + r, it->kvh * g + hh);
			float inv = w->l[idx] > 0 ? 1.0f / w->l[idx] : 0.0f;

			for (int d = 0; d < dim; d++)
				attn_store(p->o.data, p->o.dtype, oo + d,
					   w->acc[idx * dim + d] * inv);
		}
}

static void prefill_worker(void *arg)
{
	struct prefill_job *job = arg;
	int dim = job->p->head_dim, g = job->g, i;
	size_t qn = (size_t)g * Q_TILE * dim, mn = (size_t)g * Q_TILE;
	struct prefill_buf w;
	float *mem = malloc(sizeof(float) * (2 * qn + 2 * mn + 2 * (size_t)K_TILE * dim));

	if (!mem) {
		atomic_store(&job->failed, 1);
		return;
	}
	w.q = mem;
	w.acc = w.q + qn;
	w.m = w.acc + qn;
	w.l = w.m + mn;
	w.k = w.l + mn;
	w.v = w.k + (size_t)K_TILE * dim;
	while ((i = atomic_fetch_add(&job->next, 1)) < job->nitems)
		run_item(job, &job->items[i], &w);
	free(mem);
}

int kvmm_attn_cpu_prefill(const struct kvmm_attn_params *p, const struct kvmm_attn_cpu_opts *opts)
{
	struct prefill_job job = {.p = p};
	struct prefill_item *items;
	int64_t n = 0;
	int threads, err;

	err = kvmm_attn_params_check(p);
	if (!err && p->max_q_len < 1)
		err = -EINVAL;
	if (!err)
		err = attn_check_lens(p, p->max_q_len);
	if (!err)
		err = attn_check_dense_dim(p);
	if (err || p->batch == 0)
		return err;
	job.g = p->q_heads / p->kv_heads;
	for (int b = 0; b < p->batch; b++)
		n += (attn_q_len(p, b, p->max_q_len) + Q_TILE - 1) / Q_TILE * p->kv_heads;
	items = malloc(sizeof(*items) * (size_t)(n ? n : 1));
	if (!items)
		return -ENOMEM;
	for (int b = 0; b < p->batch; b++) {
		int32_t ql = attn_q_len(p, b, p->max_q_len);

		for (int kvh = 0; kvh < p->kv_heads; kvh++)
			for (int32_t i = 0; i < ql; i += Q_TILE)
				items[job.nitems++] = (struct prefill_item){
				    b, kvh, i, ql - i > Q_TILE ? i + Q_TILE : ql};
	}
	job.items = items;
	atomic_init(&job.next, 0);
	atomic_init(&job.failed, 0);
	threads = attn_threads(opts);
	err = attn_parallel(threads < job.nitems ? threads : job.nitems, prefill_worker, &job);
	if (!err && atomic_load(&job.failed))
		err = -ENOMEM;
	free(items);
	return err;
}
