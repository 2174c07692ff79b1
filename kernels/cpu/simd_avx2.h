/*
 * Pieces shared by the AVX2 and AVX-512 decode steps: row loads, the
 * softmax's exp2 and the horizontal sums that put eight dot products in the
 * eight lanes of one vector (lane = query head). Included by those files
 * only; every function carries its target attribute.
 */
#ifndef KVMM_KERNELS_CPU_SIMD_AVX2_H
#define KVMM_KERNELS_CPU_SIMD_AVX2_H

#include <immintrin.h>

#include "cpu.h"

#define AVX2   __attribute__((target("avx2,fma,f16c")))
#define INLINE inline __attribute__((always_inline))
/* Keeps the per-head accumulators in registers. */
#define UNROLL_HEADS _Pragma("GCC unroll 8")

/* ATTN_BLOCK (cpu.h) tokens per softmax update: 2 x 32 rows of 256 B fit L1. */
enum {
	LANES = 8, /* f32 lanes in a 256-bit vector: query heads per tile */
	MAX_DIM = 128,
};

AVX2 static INLINE __m256 load_row8(const char *row, int j, enum kvmm_attn_dtype dt)
{
	if (dt == KVMM_ATTN_F16)
		return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * j)));
	if (dt == KVMM_ATTN_BF16) {
		__m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(row + 2 * j)));

		return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
	}
	return _mm256_loadu_ps((const float *)row + j);
}

/* 2^x for the softmax: 2^round(x) times a degree-7 Taylor series on [-0.5, 0.5]. */
AVX2 static INLINE __m256 exp2_avx2(__m256 x)
{
	__m256 fi, f, p;
	__m256i e;

	x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-126.0f)), _mm256_set1_ps(126.0f));
	fi = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	f = _mm256_sub_ps(x, fi);
	p = _mm256_set1_ps(1.5252734e-5f);
	p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.5403530e-4f));
	p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.3333558e-3f));
	p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.6181291e-3f));
	p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.5504109e-2f));
	p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.4022651e-1f));
	p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.9314718e-1f));
	p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
	e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fi), _mm256_set1_epi32(127)), 23);
	return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* Lane h of the result is the horizontal sum of s[h]. */
AVX2 static INLINE __m256 hsum8x8(const __m256 s[LANES])
{
	__m256 s0123 = _mm256_hadd_ps(_mm256_hadd_ps(s[0], s[1]), _mm256_hadd_ps(s[2], s[3]));
	__m256 s4567 = _mm256_hadd_ps(_mm256_hadd_ps(s[4], s[5]), _mm256_hadd_ps(s[6], s[7]));

	return _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20),
			     _mm256_permute2f128_ps(s0123, s4567, 0x31));
}

/* Into L2 (T1): rows a pass ahead, while the other heads of the pass still need L1. */
AVX2 static INLINE void prefetch_row(const char *row, int bytes)
{
	for (int off = 0; off < bytes; off += 64)
		_mm_prefetch(row + off, _MM_HINT_T1);
}

#endif /* KVMM_KERNELS_CPU_SIMD_AVX2_H */
