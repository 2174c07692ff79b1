/*
 * CUDA causal prefill with tensor cores (mma.sync m16n8k16, f16/bf16 in,
 * f32 accumulate; sm_80+). FlashAttention-2 structure: a block owns BM new
 * tokens of one query head, keeps Q in registers and walks the visible keys
 * BN at a time through shared memory with an online softmax. f32 KV runs on
 * the decode kernel (one new token per block row) instead.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>

#include "common.cuh"

#define PREFILL_WARPS	4
#define PREFILL_THREADS (PREFILL_WARPS * 32)
#define MMA_M		16 /* rows per mma, and per warp */
#define MMA_N		8
#define MMA_K		16
#define BM		(PREFILL_WARPS * MMA_M) /* new tokens per block */
#define BN		64			/* keys per shared-memory tile */
/* Row padding in elements: 16 bytes, so rows start in different banks. */
#define SMEM_PAD (ATTN_LOAD_BYTES / 2)

template <typename T> struct MmaOp;

template <> struct MmaOp<__half> {
	static __device__ __forceinline__ void run(float c[4], const uint32_t a[4], uint32_t b0,
						   uint32_t b1)
	{
		asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
			     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
			     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
			     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
	}
	static __device__ __forceinline__ uint32_t pack(float lo, float hi)
	{
		__half2 h = __floats2half2_rn(lo, hi);

		return *reinterpret_cast<uint32_t *>(&h);
	}
};

template <> struct MmaOp<__nv_bfloat16> {
	static __device__ __forceinline__ void run(float c[4], const uint32_t a[4], uint32_t b0,
						   uint32_t b1)
	{
		asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
			     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
			     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
			     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
	}
	static __device__ __forceinline__ uint32_t pack(float lo, float hi)
	{
		__nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);

		return *reinterpret_cast<uint32_t *>(&h);
	}
};

/* Two 16-bit elements as one register, the first in the low half. */
__device__ __forceinline__ uint32_t pack_raw(uint16_t lo, uint16_t hi)
{
	return (uint32_t)lo | ((uint32_t)hi << 16);
}

/*
 * Copies keys [n0, n0 + BN) of one KV head into a [BN][D + SMEM_PAD] tile,
 * 16 bytes per thread per step; rows at or past kend are zero (a zero V row
 * times a zero probability stays zero, never NaN).
 */
template <typename T, int D, bool PAGED>
__device__ __forceinline__ void load_tile(const AttnArgs &a, const T *base, int64_t slot_stride,
					  int64_t tok_stride, int b, int32_t slot, int32_t n0,
					  int32_t kend, uint16_t *tile)
{
	constexpr int VEC = VecOf<T>::n, CHUNKS = D / VEC, STRIDE = D + SMEM_PAD;

	for (int i = threadIdx.x; i < BN * CHUNKS; i += PREFILL_THREADS) {
		int row = i / CHUNKS, c = i % CHUNKS;
		int32_t t = n0 + row;
		uint4 v = make_uint4(0, 0, 0, 0);

		if (t < kend)
			v = __ldg(reinterpret_cast<const uint4 *>(
			    base + kv_row<PAGED>(a, slot_stride, tok_stride, b, slot, t) +
			    c * VEC));
		*reinterpret_cast<uint4 *>(tile + row * STRIDE + c * VEC) = v;
	}
}

/*
 * Thread mapping: 4 warps; warp w owns new tokens m0 + 16w .. m0 + 16w + 15
 * of query head blockIdx.y of entry blockIdx.z (m0 = blockIdx.x * BM). In the
 * m16n8k16 fragments lane = 4*g + c: a thread holds rows g and g + 8 of its
 * warp's 16, and columns 2c, 2c+1 (+8) of each 8-wide n tile. Q fragments
 * live in registers for the whole block (D/16 k steps x 4 registers). Per key
 * tile: S = Q K^T (BN/8 n tiles), masked and scaled to base 2, row max over the
 * quad (shfl_xor 1, 2), P = 2^(S - m) repacked from the S accumulators
 * straight into A fragments, O += P V (D/8 n tiles of f32 accumulators).
 * All 128 threads load the K and V tiles with 16-byte loads.
 */
template <typename T, int D, bool PAGED>
__global__ void __launch_bounds__(PREFILL_THREADS) prefill_kernel(const AttnArgs a)
{
	constexpr int STRIDE = D + SMEM_PAD, KSTEPS = D / MMA_K, NT_S = BN / MMA_N,
		      NT_O = D / MMA_N;
	__shared__ __align__(16) uint16_t sk[BN * STRIDE];
	__shared__ __align__(16) uint16_t sv[BN * STRIDE];

	const int b = blockIdx.z, h = blockIdx.y, kvh = h / a.group;
	const int m0 = blockIdx.x * BM;
	const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
	/* q_lens past max_q_len (o's token extent) are clamped, never written past o. */
	const int32_t ql = a.q_lens ? min(a.q_lens[b], a.max_q_len) : a.max_q_len;

	if (m0 >= ql)
		return;

	const int32_t pos0 = a.seq_lens[b] - ql;      /* cache position of new token 0 */
	const int32_t kend = pos0 + min(m0 + BM, ql); /* keys the block's last row sees */
	const int32_t slot = PAGED ? 0 : (a.slots ? a.slots[b] : b);
	const int row0 = m0 + warp * MMA_M + g; /* and row0 + 8 */
	const T *kbase = (const T *)a.k + kvh * a.k_head;
	const T *vbase = (const T *)a.v + kvh * a.v_head;
	uint32_t qf[KSTEPS][4];
	float o[NT_O][4], mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.0f, 0.0f};

	/* a0: (g, 2c), a1: (g + 8, 2c), a2: (g, 2c + 8), a3: (g + 8, 2c + 8). */
#pragma unroll
	for (int ks = 0; ks < KSTEPS; ks++)
#pragma unroll
		for (int i = 0; i < 4; i++) {
			int r = row0 + 8 * (i & 1), col = ks * MMA_K + 2 * c + (i & 2 ? 8 : 0);
			const T *src = (const T *)a.q + b * a.q_slot + (int64_t)r * a.q_tok +
				       h * a.q_head + col;

			qf[ks][i] = r < ql ? *reinterpret_cast<const uint32_t *>(src) : 0u;
		}
#pragma unroll
	for (int nt = 0; nt < NT_O; nt++)
#pragma unroll
		for (int e = 0; e < 4; e++)
			o[nt][e] = 0.0f;

	for (int32_t n0 = 0; n0 < kend; n0 += BN) {
		float s[NT_S][4];

		__syncthreads(); /* the previous tile is no longer read */
		load_tile<T, D, PAGED>(a, kbase, a.k_slot, a.k_tok, b, slot, n0, kend, sk);
		load_tile<T, D, PAGED>(a, vbase, a.v_slot, a.v_tok, b, slot, n0, kend, sv);
		__syncthreads();

		/* S = Q K^T; b0: K[key 8j + g][2c, 2c+1], b1: the same 8 columns on. */
#pragma unroll
		for (int j = 0; j < NT_S; j++) {
#pragma unroll
			for (int e = 0; e < 4; e++)
				s[j][e] = 0.0f;
#pragma unroll
			for (int ks = 0; ks < KSTEPS; ks++) {
				const uint16_t *kr =
				    sk + (j * MMA_N + g) * STRIDE + ks * MMA_K + 2 * c;

				MmaOp<T>::run(s[j], qf[ks], *reinterpret_cast<const uint32_t *>(kr),
					      *reinterpret_cast<const uint32_t *>(kr + 8));
			}
		}

		/* Causal mask, scale to base 2, online softmax per row. */
#pragma unroll
		for (int rr = 0; rr < 2; rr++) {
			const int32_t qpos = pos0 + (row0 + 8 * rr);
			float mx = mrow[rr], ms, alpha, sum = 0.0f;

#pragma unroll
			for (int j = 0; j < NT_S; j++)
#pragma unroll
				for (int e = 0; e < 2; e++) {
					int32_t key = n0 + j * MMA_N + 2 * c + e;
					float *x = &s[j][2 * rr + e];

					*x = ((row0 + 8 * rr) < ql && key <= qpos)
						 ? *x * a.scale_log2
						 : -INFINITY;
					mx = fmaxf(mx, *x);
				}
			mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
			mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
			ms = mx == -INFINITY ? 0.0f : mx; /* no NaN from -inf - -inf */
			alpha = exp2f(mrow[rr] - ms);
#pragma unroll
			for (int j = 0; j < NT_S; j++)
#pragma unroll
				for (int e = 0; e < 2; e++) {
					float p = exp2f(s[j][2 * rr + e] - ms);

					s[j][2 * rr + e] = p;
					sum += p;
				}
			/* lrow stays a per-thread partial: the quad sums it once at the end. */
			lrow[rr] = lrow[rr] * alpha + sum;
			mrow[rr] = mx;
#pragma unroll
			for (int nt = 0; nt < NT_O; nt++) {
				o[nt][2 * rr] *= alpha;
				o[nt][2 * rr + 1] *= alpha;
			}
		}

		/* O += P V; P's A fragment for keys 16kk.. is S tiles 2kk and 2kk+1. */
#pragma unroll
		for (int kk = 0; kk < BN / MMA_K; kk++) {
			uint32_t pa[4] = {
			    MmaOp<T>::pack(s[2 * kk][0], s[2 * kk][1]),
			    MmaOp<T>::pack(s[2 * kk][2], s[2 * kk][3]),
			    MmaOp<T>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]),
			    MmaOp<T>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]),
			};
			const uint16_t *v0 = sv + (kk * MMA_K + 2 * c) * STRIDE + g;

#pragma unroll
			for (int nt = 0; nt < NT_O; nt++) {
				const uint16_t *vr = v0 + nt * MMA_N;
				/* b0: V[keys 2c, 2c+1][col g], b1: keys 2c+8, 2c+9. */
				uint32_t b0 = pack_raw(vr[0], vr[STRIDE]);
				uint32_t b1 = pack_raw(vr[8 * STRIDE], vr[9 * STRIDE]);

				MmaOp<T>::run(o[nt], pa, b0, b1);
			}
		}
	}

#pragma unroll
	for (int rr = 0; rr < 2; rr++) {
		float l = lrow[rr], inv;

		l += __shfl_xor_sync(0xffffffffu, l, 1);
		l += __shfl_xor_sync(0xffffffffu, l, 2);
		inv = l > 0.0f ? 1.0f / l : 0.0f;
		if ((row0 + 8 * rr) >= ql)
			continue;
#pragma unroll
		for (int nt = 0; nt < NT_O; nt++) {
			T *dst = (T *)a.o + b * a.o_slot + (int64_t)(row0 + 8 * rr) * a.o_tok +
				 h * a.o_head + nt * MMA_N + 2 * c;
			uint32_t v = MmaOp<T>::pack(o[nt][2 * rr] * inv, o[nt][2 * rr + 1] * inv);

			*reinterpret_cast<uint32_t *>(dst) = v;
		}
	}
}

typedef void (*prefill_fn)(const AttnArgs);

template <typename T> static prefill_fn prefill_for(int dim, bool paged)
{
	if (dim == 64)
		return paged ? prefill_kernel<T, 64, true> : prefill_kernel<T, 64, false>;
	return paged ? prefill_kernel<T, 128, true> : prefill_kernel<T, 128, false>;
}

extern "C" int kvmm_attn_cuda_prefill(const struct kvmm_attn_params *p, void *stream)
{
	cudaStream_t s = (cudaStream_t)stream;
	bool paged = p && p->paged.block_table != NULL;
	AttnArgs a;
	prefill_fn fn;
	int err;

	if (!p || p->max_q_len < 1)
		return -EINVAL;
	err = attn_cuda_args(p, &a);
	if (err || p->batch == 0)
		return err;
	if (p->k.dtype != p->q.dtype)
		return -EINVAL;
	if (p->q.dtype == KVMM_ATTN_F32)
		return attn_cuda_decode_unsplit(p, p->max_q_len, s);
	a.max_q_len = p->max_q_len;
	if (p->batch > 65535 || p->q_heads > 65535) /* grid z and y */
		return -EINVAL;
	fn = p->q.dtype == KVMM_ATTN_F16 ? prefill_for<__half>(p->head_dim, paged)
					 : prefill_for<__nv_bfloat16>(p->head_dim, paged);
	fn<<<dim3((unsigned)((p->max_q_len + BM - 1) / BM), (unsigned)p->q_heads,
		  (unsigned)p->batch),
	     PREFILL_THREADS, 0, s>>>(a);
	return attn_cuda_err(cudaGetLastError());
}
