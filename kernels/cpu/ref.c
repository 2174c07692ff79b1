/*
 * Reference attention: a two-pass softmax over all visible keys with f64
 * accumulation and any strides. It is not the tests' golden: the attn suite
 * holds it, like every kernel, to the independent f64 golden in
 * tests/unit/attn_golden.c, which shares no code with kernels/.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "cpu.h"
#include "dtype.h"

static void ref_one(const struct kvmm_attn_params *p, int b, int i, int h, int32_t n, double *s)
{
	int kvh = h / (p->q_heads / p->kv_heads), dim = p->head_dim;
	int64_t qo = attn_q_offset(&p->q, b, i, h), oo = attn_q_offset(&p->o, b, i, h);
	double mx = -INFINITY, sum = 0;

	for (int d = 0; d < dim; d++)
		attn_store(p->o.data, p->o.dtype, oo + d * p->o.dim_stride, 0.0f);
	if (n <= 0)
		return;
	for (int32_t t = 0; t < n; t++) {
		int64_t ko = attn_kv_offset(p, &p->k, b, t, kvh);
		double dot = 0;

		for (int d = 0; d < dim; d++)
			dot += (double)attn_load(p->q.data, p->q.dtype, qo + d * p->q.dim_stride) *
			       attn_load(p->k.data, p->k.dtype, ko + d * p->k.dim_stride);
		s[t] = dot * p->scale;
		mx = fmax(mx, s[t]);
	}
	for (int32_t t = 0; t < n; t++) {
		s[t] = exp(s[t] - mx);
		sum += s[t];
	}
	for (int d = 0; d < dim; d++) {
		double acc = 0;

		for (int32_t t = 0; t < n; t++) {
			int64_t vo = attn_kv_offset(p, &p->v, b, t, kvh) + d * p->v.dim_stride;

			acc += s[t] * attn_load(p->v.data, p->v.dtype, vo);
		}
		attn_store(p->o.data, p->o.dtype, oo + d * p->o.dim_stride, (float)(acc / sum));
	}
}

static int ref_run(const struct kvmm_attn_params *p, int32_t max_q)
{
	int32_t longest = 1;
	double *s;
	int err;

	err = kvmm_attn_params_check(p);
	if (!err)
		err = attn_check_lens(p, max_q);
	if (err)
		return err;
	for (int b = 0; b < p->batch; b++)
		longest = p->seq_lens[b] > longest ? p->seq_lens[b] : longest;
	s = malloc(sizeof(*s) * (size_t)longest);
	if (!s)
		return -ENOMEM;
	for (int b = 0; b < p->batch; b++) {
		int32_t len = p->seq_lens[b], ql = attn_q_len(p, b, max_q);

		for (int i = 0; i < ql; i++)
			for (int h = 0; h < p->q_heads; h++)
				ref_one(p, b, i, h, len - ql + i + 1, s);
	}
	free(s);
	return 0;
}

int kvmm_attn_ref_decode(const struct kvmm_attn_params *p)
{
	struct kvmm_attn_params d;

	if (!p)
		return -EINVAL;
	d = *p;
	d.q_lens = NULL;
	return ref_run(&d, 1);
}

int kvmm_attn_ref_prefill(const struct kvmm_attn_params *p)
{
	if (!p || p->max_q_len < 1)
		return -EINVAL;
	return ref_run(p, p->max_q_len);
}
