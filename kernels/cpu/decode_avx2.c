/*
 * AVX2+F16C decode chunk. Tokens go in blocks of ATTN_BLOCK: scores for up to
 * eight query heads of the group sit in the eight lanes of one vector per
 * token, so the online-softmax update (block max, rescale, exp2) is done once
 * per block and per lane, and each K/V row is loaded and converted once for
 * all the heads. Built with target attributes so the rest of the tree needs
 * no -mavx2; only called after __builtin_cpu_supports says the CPU has them.
 */
#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "cpu.h"
#include "simd_avx2.h"

/*
 * hn query heads (1, 2, 4 or 8: a compile-time constant after inlining)
 * with q[hn][dim], carrying the state o[hn][dim], m[hn] and l[hn] on.
 */
AVX2 static INLINE void chunk_tile(const struct attn_chunk *c, const float *q, float *o, float *mo,
				   float *lo, const int hn, const enum kvmm_attn_dtype dt)
{
	const int dim = c->dim, row_bytes = dim * (dt == KVMM_ATTN_F32 ? 4 : 2);
	/*
	 * Eight independent FMA chains in each loop, so loads of rows still on
	 * their way from memory overlap the arithmetic: TP tokens per scoring
	 * pass and JV output vectors per V pass, both LANES / hn.
	 */
	const int TP = LANES / hn, JV = LANES / hn;
	float sc[ATTN_BLOCK][LANES] __attribute__((aligned(32)));
	float al[LANES] __attribute__((aligned(32)));
	const char *kr[ATTN_BLOCK + LANES], *vr[ATTN_BLOCK];
	__m256 m, l;

	for (int h = 0; h < LANES; h++)
		al[h] = h < hn ? mo[h] : -INFINITY;
	m = _mm256_load_ps(al);
	for (int h = 0; h < LANES; h++)
		al[h] = h < hn ? lo[h] : 0;
	l = _mm256_load_ps(al);
	for (int32_t t0 = c->start; t0 < c->end; t0 += ATTN_BLOCK) {
		int tn = c->end - t0 < ATTN_BLOCK ? c->end - t0 : ATTN_BLOCK;
		__m256 bmax = _mm256_set1_ps(-INFINITY), mnew, psum = _mm256_setzero_ps();

		for (int t = 0; t < tn; t++) {
			kr[t] = attn_chunk_row(c->k, c->k_tok, c->k_blk, c, t0 + t);
			vr[t] = attn_chunk_row(c->v, c->v_tok, c->v_blk, c, t0 + t);
		}
		/* Past the end: repeat the last row, so a pass needs no tail branch. */
		for (int t = tn; t < tn + TP; t++)
			kr[t] = kr[tn - 1];
		/* Scores: TP tokens x hn heads per pass, eight independent FMA chains. */
		for (int ts = 0; ts < tn; ts += TP) {
			float sv[LANES] __attribute__((aligned(32)));
			__m256 s[LANES];

			UNROLL_HEADS
			for (int x = 0; x < LANES; x++)
				s[x] = _mm256_setzero_ps();
			for (int j = 0; j < dim; j += LANES) {
				__m256 kv[TP];

				UNROLL_HEADS
				for (int t = 0; t < TP; t++)
					kv[t] = load_row8(kr[ts + t], j, dt);
				UNROLL_HEADS
				for (int h = 0; h < hn; h++) {
					__m256 qv = _mm256_loadu_ps(q + h * dim + j);

					UNROLL_HEADS
					for (int t = 0; t < TP; t++)
						s[t * hn + h] =
						    _mm256_fmadd_ps(qv, kv[t], s[t * hn + h]);
				}
			}
			/* Spread over the passes, so prefetches never queue up behind each other.
			 */
			for (int t = 0;
			     c->pf_ahead && t < TP && t0 + ts + t + c->pf_ahead < c->pf_end; t++) {
				int32_t nt = t0 + ts + t + c->pf_ahead;

				prefetch_row(attn_chunk_row(c->k, c->k_tok, c->k_blk, c, nt),
					     row_bytes);
				prefetch_row(attn_chunk_row(c->v, c->v_tok, c->v_blk, c, nt),
					     row_bytes);
			}
			/* Lane t * hn + h: token ts + t, head h. */
			_mm256_store_ps(sv, hsum8x8(s));
			for (int t = 0; t < TP && ts + t < tn; t++)
				for (int h = 0; h < LANES; h++)
					sc[ts + t][h] = h < hn ? sv[t * hn + h] : 0.0f;
		}
		for (int t = 0; t < tn; t++)
			bmax = _mm256_max_ps(bmax, _mm256_load_ps(sc[t]));
		mnew = _mm256_max_ps(m, bmax);
		_mm256_store_ps(al, exp2_avx2(_mm256_sub_ps(m, mnew)));
		m = mnew;
		for (int t = 0; t < tn; t++) {
			__m256 p = exp2_avx2(_mm256_sub_ps(_mm256_load_ps(sc[t]), mnew));

			_mm256_store_ps(sc[t], p);
			psum = _mm256_add_ps(psum, p);
		}
		l = _mm256_fmadd_ps(l, _mm256_load_ps(al), psum);
		/* Weighted V rows: JV output vectors of each of the hn heads per pass. */
		for (int j = 0; j < dim; j += LANES * JV) {
			__m256 a[LANES][LANES];

			UNROLL_HEADS
			for (int h = 0; h < hn; h++)
				UNROLL_HEADS
			for (int x = 0; x < JV; x++)
				a[h][x] =
				    _mm256_mul_ps(_mm256_loadu_ps(o + h * dim + j + x * LANES),
						  _mm256_set1_ps(al[h]));
			for (int t = 0; t < tn; t++) {
				__m256 vv[LANES];

				UNROLL_HEADS
				for (int x = 0; x < JV; x++)
					vv[x] = load_row8(vr[t], j + x * LANES, dt);
				UNROLL_HEADS
				for (int h = 0; h < hn; h++) {
					__m256 p = _mm256_broadcast_ss(&sc[t][h]);

					UNROLL_HEADS
					for (int x = 0; x < JV; x++)
						a[h][x] = _mm256_fmadd_ps(p, vv[x], a[h][x]);
				}
			}
			UNROLL_HEADS
			for (int h = 0; h < hn; h++)
				UNROLL_HEADS
			for (int x = 0; x < JV; x++)
				_mm256_storeu_ps(o + h * dim + j + x * LANES, a[h][x]);
		}
	}
	_mm256_store_ps(al, m);
	for (int h = 0; h < hn; h++)
		mo[h] = al[h];
	_mm256_store_ps(al, l);
	for (int h = 0; h < hn; h++)
		lo[h] = al[h];
}

#define TILE_DTYPES(hn)                                                                            \
	do {                                                                                       \
		if (c->dtype == KVMM_ATTN_F16)                                                     \
			chunk_tile(c, q, o, m, l, hn, KVMM_ATTN_F16);                              \
		else if (c->dtype == KVMM_ATTN_BF16)                                               \
			chunk_tile(c, q, o, m, l, hn, KVMM_ATTN_BF16);                             \
		else                                                                               \
			chunk_tile(c, q, o, m, l, hn, KVMM_ATTN_F32);                              \
	} while (0)

AVX2 static void chunk_heads(const struct attn_chunk *c, const float *q, float *o, float *m,
			     float *l, int hn)
{
	switch (hn) {
	case 1:
		TILE_DTYPES(1);
		break;
	case 2:
		TILE_DTYPES(2);
		break;
	case 4:
		TILE_DTYPES(4);
		break;
	default:
		TILE_DTYPES(8);
		break;
	}
}

AVX2 void attn_decode_chunk_avx2(const struct attn_chunk *c)
{
	const int dim = c->dim;

	for (int h0 = 0; h0 < c->g; h0 += LANES) {
		int hn = c->g - h0 < LANES ? c->g - h0 : LANES;
		const float *q = c->q + (int64_t)h0 * dim;

		if (hn == 1 || hn == 2 || hn == 4 || hn == 8) {
			chunk_heads(c, q, c->o + (int64_t)h0 * dim, c->m + h0, c->l + h0, hn);
		} else {
			/* Odd tile: pad to eight heads with zero queries and drop the extras. */
			float qp[LANES * MAX_DIM] = {0}, op[LANES * MAX_DIM] = {0}, mp[LANES],
					 lp[LANES];

			memcpy(qp, q, sizeof(float) * (size_t)hn * (size_t)dim);
			memcpy(op, c->o + (int64_t)h0 * dim,
			       sizeof(float) * (size_t)hn * (size_t)dim);
			for (int h = 0; h < LANES; h++) {
				mp[h] = h < hn ? c->m[h0 + h] : -INFINITY;
				lp[h] = h < hn ? c->l[h0 + h] : 0;
			}
			chunk_heads(c, qp, op, mp, lp, LANES);
			memcpy(c->o + (int64_t)h0 * dim, op,
			       sizeof(float) * (size_t)hn * (size_t)dim);
			memcpy(c->m + h0, mp, sizeof(float) * (size_t)hn);
			memcpy(c->l + h0, lp, sizeof(float) * (size_t)hn);
		}
	}
}

#endif /* __x86_64__ */
