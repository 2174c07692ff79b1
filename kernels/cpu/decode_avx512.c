/*
 * AVX-512 decode step: the AVX2 step (decode_avx2.c) with 16 dims per
 * vector in the dot products and the weighted V sums, which halves the
 * instructions of the two loops that bound the decode when its K/V sit in
 * cache and the GQA group is large. Scores and the softmax stay eight lanes
 * wide (lane = query head). Same softmax blocks as the AVX2 step; the dot
 * products' sums go in another order, so the two differ in the last bits.
 * Only called after __builtin_cpu_supports("avx512f").
 */
#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "cpu.h"
#include "simd_avx2.h"

#define AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))

enum {
	V16 = 16,    /* f32 lanes in a 512-bit vector */
	CHAINS = 16, /* accumulators per loop: tokens x heads or heads x vectors */
};
#define UNROLL_CHAINS _Pragma("GCC unroll 16")

AVX512 static INLINE __m512 load_row16(const char *row, int j, enum kvmm_attn_dtype dt)
{
	if (dt == KVMM_ATTN_F16)
		return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 2 * j)));
	if (dt == KVMM_ATTN_BF16) {
		__m512i w =
		    _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(row + 2 * j)));

		return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
	}
	return _mm512_loadu_ps((const float *)row + j);
}

/*
 * hn query heads (1, 2, 4 or 8: a compile-time constant after inlining)
 * with q[hn][dim], carrying the state o[hn][dim], m[hn] and l[hn] on.
 */
AVX512 static INLINE void chunk_tile512(const struct attn_chunk *c, const float *q, float *o,
					float *mo, float *lo, const int hn,
					const enum kvmm_attn_dtype dt)
{
	const int dim = c->dim, row_bytes = dim * (dt == KVMM_ATTN_F32 ? 4 : 2);
	/*
	 * Sixteen independent FMA chains in each loop (32 registers hold them,
	 * so a q load or a p broadcast feeds two tokens or two output vectors):
	 * TP = CHAINS / hn tokens per scoring pass, JV = CHAINS / hn output
	 * vectors of 16 dims per V pass, but 64 dims at most so head_dim 64
	 * takes whole passes.
	 */
	const int TP = CHAINS / hn, JV = CHAINS / hn < 4 ? CHAINS / hn : 4;
	float sc[ATTN_BLOCK][LANES] __attribute__((aligned(32)));
	float al[LANES] __attribute__((aligned(32)));
	const char *kr[ATTN_BLOCK + CHAINS], *vr[ATTN_BLOCK];
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
		/* Scores: TP tokens x hn heads per pass, sixteen independent FMA chains. */
		for (int ts = 0; ts < tn; ts += TP) {
			float sv[CHAINS] __attribute__((aligned(32)));
			__m512 s[CHAINS];
			__m256 s8[CHAINS];

			UNROLL_CHAINS
			for (int x = 0; x < CHAINS; x++)
				s[x] = _mm512_setzero_ps();
			for (int j = 0; j < dim; j += 2 * LANES) {
				__m512 kv[TP];

				UNROLL_HEADS
				for (int t = 0; t < TP; t++)
					kv[t] = load_row16(kr[ts + t], j, dt);
				UNROLL_HEADS
				for (int h = 0; h < hn; h++) {
					__m512 qv = _mm512_loadu_ps(q + h * dim + j);

					UNROLL_HEADS
					for (int t = 0; t < TP; t++)
						s[t * hn + h] =
						    _mm512_fmadd_ps(qv, kv[t], s[t * hn + h]);
				}
			}
			/* Halves added: then the AVX2 sums, eight dot products per vector. */
			UNROLL_CHAINS
			for (int x = 0; x < CHAINS; x++)
				s8[x] = _mm256_add_ps(_mm512_castps512_ps256(s[x]),
						      _mm256_castpd_ps(_mm512_extractf64x4_pd(
							  _mm512_castps_pd(s[x]), 1)));
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
			_mm256_store_ps(sv, hsum8x8(s8));
			_mm256_store_ps(sv + LANES, hsum8x8(s8 + LANES));
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
		for (int j = 0; j < dim; j += V16 * JV) {
			__m512 a[LANES][LANES];

			UNROLL_HEADS
			for (int h = 0; h < hn; h++)
				UNROLL_HEADS
			for (int x = 0; x < JV; x++)
				a[h][x] = _mm512_mul_ps(_mm512_loadu_ps(o + h * dim + j + x * V16),
							_mm512_set1_ps(al[h]));
			for (int t = 0; t < tn; t++) {
				__m512 vv[LANES];

				UNROLL_HEADS
				for (int x = 0; x < JV; x++)
					vv[x] = load_row16(vr[t], j + x * V16, dt);
				UNROLL_HEADS
				for (int h = 0; h < hn; h++) {
					__m512 p = _mm512_set1_ps(sc[t][h]);

					UNROLL_HEADS
					for (int x = 0; x < JV; x++)
						a[h][x] = _mm512_fmadd_ps(p, vv[x], a[h][x]);
				}
			}
			UNROLL_HEADS
			for (int h = 0; h < hn; h++)
				UNROLL_HEADS
			for (int x = 0; x < JV; x++)
				_mm512_storeu_ps(o + h * dim + j + x * V16, a[h][x]);
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
			chunk_tile512(c, q, o, m, l, hn, KVMM_ATTN_F16);                           \
		else if (c->dtype == KVMM_ATTN_BF16)                                               \
			chunk_tile512(c, q, o, m, l, hn, KVMM_ATTN_BF16);                          \
		else                                                                               \
			chunk_tile512(c, q, o, m, l, hn, KVMM_ATTN_F32);                           \
	} while (0)

AVX512 static void chunk_heads512(const struct attn_chunk *c, const float *q, float *o, float *m,
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

AVX512 void attn_decode_chunk_avx512(const struct attn_chunk *c)
{
	const int dim = c->dim;

	for (int h0 = 0; h0 < c->g; h0 += LANES) {
		int hn = c->g - h0 < LANES ? c->g - h0 : LANES;
		const float *q = c->q + (int64_t)h0 * dim;

		if (hn == 1 || hn == 2 || hn == 4 || hn == 8) {
			chunk_heads512(c, q, c->o + (int64_t)h0 * dim, c->m + h0, c->l + h0, hn);
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
			chunk_heads512(c, qp, op, mp, lp, LANES);
			memcpy(c->o + (int64_t)h0 * dim, op,
			       sizeof(float) * (size_t)hn * (size_t)dim);
			memcpy(c->m + h0, mp, sizeof(float) * (size_t)hn);
			memcpy(c->l + h0, lp, sizeof(float) * (size_t)hn);
		}
	}
}

#endif /* __x86_64__ */
