/* Scalar f16/bf16 <-> f32 conversion (round to nearest even), portable C. */
#ifndef KVMM_KERNELS_CPU_DTYPE_H
#define KVMM_KERNELS_CPU_DTYPE_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <kvmm/attention.h>

static inline float attn_bits_to_f32(uint32_t bits)
{
	float f;
	memcpy(&f, &bits, sizeof(f));
	return f;
}

static inline uint32_t attn_f32_to_bits(float f)
{
	uint32_t bits;
	memcpy(&bits, &f, sizeof(bits));
	return bits;
}

static inline float attn_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;

	if (exp == 0) {
		float f = (float)man * 0x1p-24f; /* zero or subnormal */
		return sign ? -f : f;
	}
	if (exp == 31)
		return attn_bits_to_f32(sign | 0x7f800000u | (man << 13));
	return attn_bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}

static inline uint16_t attn_f32_to_f16(float f)
{
	uint32_t x = attn_f32_to_bits(f);
	uint32_t sign = (x >> 16) & 0x8000;
	uint32_t ax = x & 0x7fffffffu;

	if (ax >= 0x7f800000u) /* inf stays inf, NaN stays quiet NaN */
		return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
	if (ax >= 0x477ff000u) /* rounds past the largest half (65504) */
		return (uint16_t)(sign | 0x7c00);
	if (ax < 0x38800000u) { /* below 2^-14: subnormal half, count of 2^-24 */
		float a = attn_bits_to_f32(ax) * 0x1p24f;
		return (uint16_t)(sign | (uint32_t)nearbyintf(a));
	}
	ax += 0xfffu + ((ax >> 13) & 1);
	return (uint16_t)(sign | ((ax - (112u << 23)) >> 13));
}

static inline float attn_bf16_to_f32(uint16_t h)
{
	return attn_bits_to_f32((uint32_t)h << 16);
}

static inline uint16_t attn_f32_to_bf16(float f)
{
	uint32_t x = attn_f32_to_bits(f);

	if ((x & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((x >> 16) | 0x40);
	return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

/* Element idx of an array of dtype, as f32. */
static inline float attn_load(const void *base, enum kvmm_attn_dtype dt, int64_t idx)
{
	switch (dt) {
	case KVMM_ATTN_F16:
		return attn_f16_to_f32(((const uint16_t *)base)[idx]);
	case KVMM_ATTN_BF16:
		return attn_bf16_to_f32(((const uint16_t *)base)[idx]);
	default:
		return ((const float *)base)[idx];
	}
}

static inline void attn_store(void *base, enum kvmm_attn_dtype dt, int64_t idx, float v)
{
	switch (dt) {
	case KVMM_ATTN_F16:
		((uint16_t *)base)[idx] = attn_f32_to_f16(v);
		break;
	case KVMM_ATTN_BF16:
		((uint16_t *)base)[idx] = attn_f32_to_bf16(v);
		break;
	default:
		((float *)base)[idx] = v;
		break;
	}
}

/* Rounds v to what dtype can hold (used by same-precision comparisons). */
static inline float attn_round(enum kvmm_attn_dtype dt, float v)
{
	switch (dt) {
	case KVMM_ATTN_F16:
		return attn_f16_to_f32(attn_f32_to_f16(v));
	case KVMM_ATTN_BF16:
		return attn_bf16_to_f32(attn_f32_to_bf16(v));
	default:
		return v;
	}
}

#endif /* KVMM_KERNELS_CPU_DTYPE_H */
