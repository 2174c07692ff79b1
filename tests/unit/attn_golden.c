/*
 * Naive f64 attention golden and the error bound (see attn_golden.h).
 * Nothing here comes from kernels/: the layout is read off the public
 * header's description of a view, the number formats off their bit layouts.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn_golden.h"

/* ---- number formats ---- */

/* 2^e for -1022 <= e <= 1023, exact, built from the binary64 layout (no libm call). */
static double pow2(int e)
{
	uint64_t bits = (uint64_t)(1023 + e) << 52;
	double x;

	memcpy(&x, &bits, sizeof(x));
	return x;
}

/*
 * IEEE 754 binary16: sign (bit 15), 5 exponent bits (14..10, bias 15), 10
 * fraction bits. Exponent 0 holds zero and the subnormals f * 2^-24, 31 the
 * infinities and NaNs; otherwise (1024 + f) * 2^(e - 15 - 10).
 */
double attn_gold_f16_value(uint16_t bits)
{
	int sign = bits >> 15, e = (bits >> 10) & 0x1f, f = bits & 0x3ff;
	double mag;

	if (e == 0x1f)
		mag = f ? NAN : INFINITY;
	else if (e == 0)
		mag = f * pow2(-24);
	else
		mag = (1024 + f) * pow2(e - 25);
	return sign ? -mag : mag;
}

/*
 * bfloat16: the upper half of a binary32. Sign (bit 15), 8 exponent bits
 * (14..7, bias 127), 7 fraction bits: (128 + f) * 2^(e - 127 - 7), the
 * subnormals f * 2^-133.
 */
double attn_gold_bf16_value(uint16_t bits)
{
	int sign = bits >> 15, e = (bits >> 7) & 0xff, f = bits & 0x7f;
	double mag;

	if (e == 0xff)
		mag = f ? NAN : INFINITY;
	else if (e == 0)
		mag = f * pow2(-133);
	else
		mag = (128 + f) * pow2(e - 134);
	return sign ? -mag : mag;
}

double attn_gold_load(const void *base, enum kvmm_attn_dtype dt, int64_t idx)
{
	uint16_t h;
	float f;

	switch (dt) {
	case KVMM_ATTN_F16:
		memcpy(&h, (const char *)base + idx * 2, 2);
		return attn_gold_f16_value(h);
	case KVMM_ATTN_BF16:
		memcpy(&h, (const char *)base + idx * 2, 2);
		return attn_gold_bf16_value(h);
	case KVMM_ATTN_F32:
		break;
	}
	memcpy(&f, (const char *)base + idx * 4, 4);
	return f;
}

/* Significand bits (with the implicit one) and smallest normal exponent of dt. */
static void format_of(enum kvmm_attn_dtype dt, int *digits, int *emin)
{
	*digits = dt == KVMM_ATTN_F16 ? 11 : dt == KVMM_ATTN_BF16 ? 8 : 24;
	*emin = dt == KVMM_ATTN_F16 ? -14 : -126;
}

double attn_gold_unit(enum kvmm_attn_dtype dt)
{
	int digits, emin;

	format_of(dt, &digits, &emin);
	return ldexp(1.0, -digits);
}

double attn_gold_tiny(enum kvmm_attn_dtype dt)
{
	int digits, emin;

	format_of(dt, &digits, &emin);
	return ldexp(1.0, emin - digits);
}

/*
 * Scale x so that one unit in the last place of dt at x's binade (or of the
 * subnormals) is 1, round to an integer (nearbyint: ties to even in the
 * default rounding mode), scale back. Exact in f64 for these formats.
 */
double attn_gold_round(enum kvmm_attn_dtype dt, double x)
{
	int digits, emin, e;

	if (x == 0 || !isfinite(x))
		return x;
	format_of(dt, &digits, &emin);
	e = ilogb(x);
	if (e < emin)
		e = emin;
	return nearbyint(x * pow2(digits - 1 - e)) * pow2(e - (digits - 1));
}

/* Bits of x exactly held by a format with `frac` fraction bits and exponent bias `bias`. */
static uint16_t bits_of(double x, int frac, int bias)
{
	uint16_t sign = signbit(x) ? 0x8000 : 0;
	double a = fabs(x), f;
	int e;

	if (a == 0)
		return sign;
	e = ilogb(a);
	if (e < 1 - bias) { /* subnormal: a = f * 2^(1 - bias - frac) */
		f = a * pow2(frac + bias - 1);
		e = 0;
	} else {
		f = a * pow2(frac - e) - pow2(frac);
		e += bias;
	}
	if (f != floor(f) || e >= (1 << (15 - frac)) - 1)
		abort(); /* not representable: a test bug */
	return (uint16_t)(sign | (uint16_t)(e << frac) | (uint16_t)f);
}

uint16_t attn_gold_f16_bits(double x)
{
	return bits_of(x, 10, 15);
}

uint16_t attn_gold_bf16_bits(double x)
{
	return bits_of(x, 7, 127);
}

void attn_gold_store(void *base, enum kvmm_attn_dtype dt, int64_t idx, double x)
{
	uint16_t h;
	float f = (float)x;

	switch (dt) {
	case KVMM_ATTN_F16:
		h = attn_gold_f16_bits(x);
		memcpy((char *)base + idx * 2, &h, 2);
		return;
	case KVMM_ATTN_BF16:
		h = attn_gold_bf16_bits(x);
		memcpy((char *)base + idx * 2, &h, 2);
		return;
	case KVMM_ATTN_F32:
		break;
	}
	if ((double)f != x)
		abort();
	memcpy((char *)base + idx * 4, &f, 4);
}

/* ---- attention ---- */

/*
 * Element offset in a view [outer][row][head][dim]: outer is the slot (or
 * physical block), row the token (or row inside the block).
 */
static int64_t view_at(const struct kvmm_attn_tensor *t, int64_t outer, int64_t row, int head,
		       int d)
{
	return outer * t->slot_stride + row * t->token_stride + head * t->head_stride +
	       d * t->dim_stride;
}

/* Where cache token tok of entry b is, as (outer, row) of the K/V views. */
static void cache_place(const struct kvmm_attn_params *p, int b, int32_t tok, int64_t *outer,
			int64_t *row)
{
	const struct kvmm_attn_paged *pg = &p->paged;

	if (pg->block_table) {
		*outer = pg->block_table[(int64_t)b * pg->max_blocks + tok / pg->block_size];
		*row = tok % pg->block_size;
	} else {
		*outer = p->slots ? p->slots[b] : b;
		*row = tok;
	}
}

/*
 * Keys first .. first+n-1 of entry b, KV head kvh, as f64 rows: kv[n][dim] from view t.
 */
static void load_rows(const struct kvmm_attn_params *p, const struct kvmm_attn_tensor *t, int b,
		      int kvh, int32_t first, int32_t n, double *kv)
{
	int dim = p->head_dim;

	for (int32_t tok = 0; tok < n; tok++) {
		int64_t outer, row;

		cache_place(p, b, first + tok, &outer, &row);
		for (int d = 0; d < dim; d++)
			kv[(int64_t)tok * dim + d] =
			    attn_gold_load(t->data, t->dtype, view_at(t, outer, row, kvh, d));
	}
}

/*
 * One row: query q[dim] against the first n rows of k[][dim] and v[][dim].
 * Two passes over the scores (max, then exponentials), all in f64: products
 * of stored values are exact, sums of at most 128 of them lose < 2^-45.
 */
static void gold_row(int dim, double scale, int32_t n, const double *q, const double *k,
		     const double *v, double *s, double *o, double *mag, double *smax, double *lse)
{
	double mx = -INFINITY, sum = 0, big = 0;

	for (int d = 0; d < dim; d++)
		o[d] = mag[d] = 0;
	for (int32_t t = 0; t < n; t++) {
		const double *kr = k + (int64_t)t * dim;
		double dot = 0, adot = 0;

		for (int d = 0; d < dim; d++) {
			dot += q[d] * kr[d];
			adot += fabs(q[d] * kr[d]);
		}
		s[t] = scale * dot;
		big = fmax(big, fabs(scale) * adot);
		mx = fmax(mx, s[t]);
	}
	*smax = big;
	*lse = -INFINITY;
	if (n <= 0)
		return;
	for (int32_t t = 0; t < n; t++) {
		s[t] = exp(s[t] - mx);
		sum += s[t];
	}
	*lse = mx + log(sum);
	for (int d = 0; d < dim; d++) {
		double acc = 0, aacc = 0;

		for (int32_t t = 0; t < n; t++) {
			double x = s[t] * v[(int64_t)t * dim + d];

			acc += x;
			aacc += fabs(x);
		}
		o[d] = acc / sum;
		mag[d] = aacc / sum;
	}
}

/* Rows of entry b that read KV head kvh: its new tokens times the heads of the group. */
static void gold_entry_head(const struct kvmm_attn_params *p, int prefill, int b, int kvh,
			    const double *k, const double *v, double *s, double *q,
			    struct attn_gold *g)
{
	int dim = p->head_dim, group = p->q_heads / p->kv_heads;
	int32_t len = p->seq_lens[b];
	int32_t ql = !prefill ? 1 : p->q_lens ? p->q_lens[b] : p->max_q_len;

	for (int32_t i = 0; i < ql; i++) {
		/* New token i sits at cache position len - ql + i and sees 0 .. that one. */
		int32_t n = len - ql + i + 1;

		n = n < 0 ? 0 : n;
		/* GQA: query heads kvh * group .. kvh * group + group - 1 share KV head kvh. */
		for (int h = kvh * group; h < (kvh + 1) * group; h++) {
			size_t r = ((size_t)b * g->max_q + i) * p->q_heads + h;
			int64_t qbase =
			    b * p->q.slot_stride + i * p->q.token_stride + h * p->q.head_stride;

			for (int d = 0; d < dim; d++)
				q[d] = attn_gold_load(p->q.data, p->q.dtype,
						      qbase + d * p->q.dim_stride);
			double lse;

			gold_row(dim, p->scale, n, q, k, v, s, g->o + r * dim, g->mag + r * dim,
				 &g->smax[r], &lse);
			g->keys[r] = n;
		}
	}
}

int attn_gold_run(const struct kvmm_attn_params *p, int prefill, struct attn_gold *g)
{
	int dim = p->head_dim;
	int32_t longest = 1;
	double *s, *q, *k, *v;

	memset(g, 0, sizeof(*g));
	g->max_q = prefill ? p->max_q_len : 1;
	g->q_heads = p->q_heads;
	g->dim = dim;
	g->rows = (size_t)p->batch * g->max_q * p->q_heads;
	for (int b = 0; b < p->batch; b++)
		longest = p->seq_lens[b] > longest ? p->seq_lens[b] : longest;
	g->o = calloc(g->rows * dim + 1, sizeof(double));
	g->mag = calloc(g->rows * dim + 1, sizeof(double));
	g->smax = calloc(g->rows + 1, sizeof(double));
	g->keys = malloc(sizeof(int32_t) * (g->rows + 1));
	s = malloc(sizeof(double) * (size_t)longest);
	q = malloc(sizeof(double) * (size_t)dim);
	k = malloc(sizeof(double) * (size_t)longest * dim);
	v = malloc(sizeof(double) * (size_t)longest * dim);
	if (!g->o || !g->mag || !g->smax || !g->keys || !s || !q || !k || !v) {
		free(s);
		free(q);
		free(k);
		free(v);
		attn_gold_free(g);
		return -1;
	}
	for (size_t r = 0; r < g->rows; r++)
		g->keys[r] = -1;
	for (int b = 0; b < p->batch; b++)
		for (int kvh = 0; kvh < p->kv_heads; kvh++) {
			load_rows(p, &p->k, b, kvh, 0, p->seq_lens[b], k);
			load_rows(p, &p->v, b, kvh, 0, p->seq_lens[b], v);
			gold_entry_head(p, prefill, b, kvh, k, v, s, q, g);
		}
	free(s);
	free(q);
	free(k);
	free(v);
	return 0;
}

/*
 * Merges a segment's softmax (o_s, mag_s: normalised over its keys; lse_s
 * = log of its sum of exp(scores)) into the running one (o, mag, *lse) of
 * the keys before it, in f64: the weights are exp(lse - L) with L the log
 * of the sum of both sums, which is the softmax over all the keys.
 */
static void gold_merge(int dim, double *o, double *mag, double *lse, const double *o_s,
		       const double *mag_s, double lse_s)
{
	double mx, l, wa, ws;

	if (lse_s == -INFINITY)
		return;
	mx = fmax(*lse, lse_s);
	l = mx + log(exp(*lse - mx) + exp(lse_s - mx));
	wa = *lse == -INFINITY ? 0 : exp(*lse - l);
	ws = exp(lse_s - l);
	for (int d = 0; d < dim; d++) {
		o[d] = wa * o[d] + ws * o_s[d];
		mag[d] = wa * mag[d] + ws * mag_s[d];
	}
	*lse = l;
}

int attn_gold_run_segmented(const struct kvmm_attn_params *p, int32_t seg, struct attn_gold *g)
{
	int dim = p->head_dim, group = p->q_heads / p->kv_heads;
	double *s, *q, *k, *v, *os, *ms, *lse;

	if (seg <= 0)
		return -1;
	memset(g, 0, sizeof(*g));
	g->max_q = 1;
	g->q_heads = p->q_heads;
	g->dim = dim;
	g->rows = (size_t)p->batch * p->q_heads;
	g->o = calloc(g->rows * dim + 1, sizeof(double));
	g->mag = calloc(g->rows * dim + 1, sizeof(double));
	g->smax = calloc(g->rows + 1, sizeof(double));
	g->keys = calloc(g->rows + 1, sizeof(int32_t));
	lse = malloc(sizeof(double) * (g->rows + 1));
	s = malloc(sizeof(double) * (size_t)seg);
	q = malloc(sizeof(double) * (size_t)dim);
	k = malloc(sizeof(double) * (size_t)seg * dim);
	v = malloc(sizeof(double) * (size_t)seg * dim);
	os = malloc(sizeof(double) * (size_t)dim * 2);
	if (!g->o || !g->mag || !g->smax || !g->keys || !lse || !s || !q || !k || !v || !os) {
		free(lse);
		free(s);
		free(q);
		free(k);
		free(v);
		free(os);
		attn_gold_free(g);
		return -1;
	}
	ms = os + dim;
	for (size_t r = 0; r < g->rows; r++)
		lse[r] = -INFINITY;
	for (int b = 0; b < p->batch; b++)
		for (int kvh = 0; kvh < p->kv_heads; kvh++)
			for (int32_t t0 = 0; t0 < p->seq_lens[b]; t0 += seg) {
				int32_t n = p->seq_lens[b] - t0 < seg ? p->seq_lens[b] - t0 : seg;

				load_rows(p, &p->k, b, kvh, t0, n, k);
				load_rows(p, &p->v, b, kvh, t0, n, v);
				for (int h = kvh * group; h < (kvh + 1) * group; h++) {
					size_t r = (size_t)b * p->q_heads + h;
					int64_t qb = b * p->q.slot_stride + h * p->q.head_stride;
					double big, ls;

					for (int d = 0; d < dim; d++)
						q[d] = attn_gold_load(p->q.data, p->q.dtype,
								      qb + d * p->q.dim_stride);
					gold_row(dim, p->scale, n, q, k, v, s, os, ms, &big, &ls);
					gold_merge(dim, g->o + r * dim, g->mag + r * dim, &lse[r],
						   os, ms, ls);
					g->smax[r] = fmax(g->smax[r], big);
					g->keys[r] += n;
				}
			}
	free(lse);
	free(s);
	free(q);
	free(k);
	free(v);
	free(os);
	return 0;
}

void attn_gold_free(struct attn_gold *g)
{
	free(g->o);
	free(g->mag);
	free(g->smax);
	free(g->keys);
	memset(g, 0, sizeof(*g));
}

int attn_gold_same_kv(const struct kvmm_attn_params *a, const struct kvmm_attn_params *b)
{
	int dim = a->head_dim;

	if (a->batch != b->batch || a->kv_heads != b->kv_heads || dim != b->head_dim)
		return 0;
	for (int e = 0; e < a->batch; e++) {
		if (a->seq_lens[e] != b->seq_lens[e])
			return 0;
		for (int32_t tok = 0; tok < a->seq_lens[e]; tok++) {
			int64_t ao, ar, bo, br;

			cache_place(a, e, tok, &ao, &ar);
			cache_place(b, e, tok, &bo, &br);
			for (int h = 0; h < a->kv_heads; h++)
				for (int d = 0; d < dim; d++) {
					double ak = attn_gold_load(a->k.data, a->k.dtype,
								   view_at(&a->k, ao, ar, h, d));
					double bk = attn_gold_load(b->k.data, b->k.dtype,
								   view_at(&b->k, bo, br, h, d));
					double av = attn_gold_load(a->v.data, a->v.dtype,
								   view_at(&a->v, ao, ar, h, d));
					double bv = attn_gold_load(b->v.data, b->v.dtype,
								   view_at(&b->v, bo, br, h, d));

					if (memcmp(&ak, &bk, sizeof(ak)) ||
					    memcmp(&av, &bv, sizeof(av)))
						return 0;
				}
		}
	}
	return 1;
}

int attn_gold_equal(const struct attn_gold *a, const struct attn_gold *b)
{
	size_t n = a->rows * (size_t)a->dim;

	return a->rows == b->rows && a->dim == b->dim &&
	       memcmp(a->o, b->o, n * sizeof(double)) == 0 &&
	       memcmp(a->mag, b->mag, n * sizeof(double)) == 0 &&
	       memcmp(a->smax, b->smax, a->rows * sizeof(double)) == 0 &&
	       memcmp(a->keys, b->keys, a->rows * sizeof(int32_t)) == 0;
}

/* ---- error bound ---- */

/*
 * Error bound for element e of a row with n keys and head dim D, against
 * the golden g_e = sum_j p_j v_je, where p = softmax(s), s_j = scale q.k_j,
 * A_e = sum_j p_j |v_je| and S = max_j |scale| sum_d |q_d k_jd| >= |s_j|.
 * Both sides read the same stored values, so only the arithmetic differs.
 *
 * Model. Each operation of the implementation (product, sum, fma, division,
 * the scale's conversion) rounds with relative error at most u, its unit
 * roundoff (2^-24 for f32). An exp2 is within 2 ulp = 4u (CUDA's exp2f is
 * documented at 2 ulp, glibc's exp2f at 1; the AVX2 polynomial measures
 * 1.23 u over [-60, 1]). Rounding errors are taken as independent and mean
 * zero (Higham & Mary, "A new approach to probabilistic rounding error
 * analysis", SIAM J. Sci. Comput. 41(5), 2019): a value that went through k
 * of them has relative error at most
 * gt_k = exp(lambda sqrt(k) u + k u^2/(1-u)) - 1 except with probability
 * 2k exp(-lambda^2 (1-u)^2 / 2); lambda = 8 keeps that below 2e-9 for every
 * k here (k <= 2n + 4, n <= 20011). Sums inside a tensor-core mma truncate
 * (Fasi, Higham, Mikaitis, Pranesh, PeerJ CS 7:e330, 2021): those take the
 * worst case g_k = k u'/(1 - k u') with u' = 2u instead.
 *
 * 1. Scores: D products, D sums and the scaling of q by fl(scale log2 e)
 *    (3 roundings): |s^_j - s_j| <= gt_(D+3) S =: es (natural-log units).
 * 2. exp2 arguments are differences of scores, running maxima (scores) and
 *    LSEs m + log2 l (|.| <= (S + ln n) log2 e, l <= n): the weight's own
 *    argument (<= 2uS), the rescales' (they telescope: <= 2uS), an LSE's sum
 *    and log2 (<= u(S + 3 ln n)) and the merges' (they telescope too:
 *    <= 2u(S + ln n)) put at most ea = 8u (S + ln n) into a weight.
 * 3. A weight passes through its own exp2, one per rescale of its running
 *    state (the max grew: fewer than the keys of that state) and one per
 *    merge with another non-empty state (fewer than the other keys), so at
 *    most n + 1: ex = gt_(n+1) at unit 4u.
 *    So every weight is w_j (1 + t_j), |t_j| <= ew = es + ea + ex, and
 *    normalising moves the output by at most 2 ew A_e.
 * 4. A term of the numerator sum_j w_j v_je takes a product, the sums of
 *    its state (fewer than its keys), a product and a sum per merge (fewer
 *    than the other keys) and at most 4 for normalising (a split's partial
 *    and the final result, each a division or a reciprocal and a product);
 *    the denominator l no more: 2 gt_(2n+4) A_e.
 * 5. Where P is rounded to u_p before P.V (the CUDA tensor-core prefill;
 *    the denominator uses the unrounded P): u_p A_e.
 * 6. The output is rounded once to its dtype: u_o |o^_e| (the reference
 *    rounds f64 -> f32 -> dtype: u_o + 2^-24), plus half the spacing of
 *    dtype's subnormals, t_o, for outputs below its smallest normal
 *    (2^-25 for f16: those keep an absolute, not a relative, precision).
 * 7. The golden's own f64 error: items 1-4 again at u = 2^-53.
 *
 * bound = uo |g_e| + t_o + (1 + uo) (u_p + 2 ew + 2 gt_(2n+4)) A_e + golden's,
 * with uo = u_o + 2^-24. First order in the u's: the products left out are
 * below 1e-3 of the bound. An idle row (n = 0) must be exactly zero.
 */
#define LAMBDA 8.0

/* Probabilistic bound on k relative errors of at most u each. */
static double gamma_prob(double k, double u)
{
	return expm1(LAMBDA * sqrt(k) * u + k * u * u / (1 - u));
}

/* Worst case of k relative errors of at most u each (k u < 1). */
static double gamma_worst(double k, double u)
{
	return k * u / (1 - k * u);
}

/* Items 1-4: relative error of the f32 (or f64) work, in units of A_e. */
static double work_error(double n, double dim, double big, double u, int mma)
{
	double es = (mma ? gamma_worst(dim + 3, 2 * u) : gamma_prob(dim + 3, u)) * big;
	double ea = 8 * u * (big + log(n));
	double ex = gamma_prob(n + 1, 4 * u);
	double acc = mma ? gamma_worst(2 * n + 4, 2 * u) : gamma_prob(2 * n + 4, u);

	return 2 * (es + ea + ex) + 2 * acc;
}

double attn_gold_bound(const struct attn_gold *g, size_t r, int e, const struct attn_gold_prec *pr)
{
	double n = g->keys[r], big = g->smax[r], dim = g->dim;
	double go = fabs(g->o[r * g->dim + e]), a = g->mag[r * g->dim + e];
	double uo = attn_gold_unit(pr->out) + 0x1p-24, work;

	if (n <= 0)
		return 0;
	work = pr->u_p + work_error(n, dim, big, pr->u_acc, pr->mma);
	return uo * go + attn_gold_tiny(pr->out) + (1 + uo) * work * a +
	       work_error(n, dim, big, 0x1p-53, 0) * a;
}
