/*
 * Shared by the CUDA attention kernels: 16-byte vector loads of K/V/Q rows
 * converted to f32, stores in the output dtype, and the addressing of a
 * cache row (contiguous slot or block table). Plain C-style device code.
 */
#ifndef KVMM_KERNELS_CUDA_COMMON_CUH
#define KVMM_KERNELS_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <kvmm/attention.h>

/* Bytes of one vector load; every row start must be aligned to it. */
#define ATTN_LOAD_BYTES 16

/* Elements of T in one 16-byte load. */
template <typename T> struct VecOf {
	static constexpr int n = ATTN_LOAD_BYTES / (int)sizeof(T);
};

__device__ __forceinline__ float to_f32(float x)
{
	return x;
}
__device__ __forceinline__ float to_f32(__half x)
{
	return __half2float(x);
}
__device__ __forceinline__ float to_f32(__nv_bfloat16 x)
{
	return __bfloat162float(x);
}

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x)
{
	return x;
}
template <> __device__ __forceinline__ __half from_f32<__half>(float x)
{
	return __float2half_rn(x);
}
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x)
{
	return __float2bfloat16_rn(x);
}

/* One 16-byte load (read-only path) of VecOf<T>::n elements, widened to f32. */
template <typename T> __device__ __forceinline__ void load_vec(const T *src, float *dst)
{
	uint4 raw = __ldg(reinterpret_cast<const uint4 *>(src));
	const T *e = reinterpret_cast<const T *>(&raw);

#pragma unroll
	for (int i = 0; i < VecOf<T>::n; i++)
		dst[i] = to_f32(e[i]);
}

template <typename T> __device__ __forceinline__ void store_vec(T *dst, const float *src)
{
	uint4 raw;
	T *e = reinterpret_cast<T *>(&raw);

#pragma unroll
	for (int i = 0; i < VecOf<T>::n; i++)
		e[i] = from_f32<T>(src[i]);
	*reinterpret_cast<uint4 *>(dst) = raw;
}

/* Device-side copy of the parts of kvmm_attn_params a kernel needs. */
struct AttnArgs {
	const void *q, *k, *v;
	void *o;
	int64_t q_slot, q_tok, q_head;
	int64_t k_slot, k_tok, k_head;
	int64_t v_slot, v_tok, v_head;
	int64_t o_slot, o_tok, o_head;
	const int32_t *seq_lens, *q_lens, *slots, *block_table;
	int32_t max_blocks, block_size;
	int32_t batch, q_heads, kv_heads, group, max_q_len;
	float scale_log2; /* softmax scale times log2(e): scores feed exp2 */
	/* decode only */
	int32_t head_tiles, num_splits, split_tokens;
	float *part_o, *part_lse;
};

/* Element offset of the cache row (token tok, head 0) of batch entry b. */
template <bool PAGED>
__device__ __forceinline__ int64_t kv_row(const AttnArgs &a, int64_t slot_stride,
					  int64_t tok_stride, int b, int32_t slot, int32_t tok)
{
	if (PAGED) {
		int32_t blk = a.block_table[(int64_t)b * a.max_blocks + tok / a.block_size];

		return blk * slot_stride + (int64_t)(tok % a.block_size) * tok_stride;
	}
	return slot * slot_stride + (int64_t)tok * tok_stride;
}

/* Host: fills AttnArgs from validated params; 0 or -EINVAL (alignment, dim stride). */
int attn_cuda_args(const struct kvmm_attn_params *p, AttnArgs *a);
/* Host: decode kernel over max_q_len causal tokens per entry without splitting (f32 prefill). */
int attn_cuda_decode_unsplit(const struct kvmm_attn_params *p, int32_t max_q, cudaStream_t s);
/* Host: split count by wave efficiency (kernels/cpu/split_plan.c). */
extern "C" int attn_plan_splits(double blocks, double slots, int32_t max_seq_len);
/* Host: cudaError_t to a negative errno. */
int attn_cuda_err(cudaError_t e);

#endif /* KVMM_KERNELS_CUDA_COMMON_CUH */
