/*
 * CUDA split-K decode over a strided KV cache, its paged twin (the same
 * kernel with block-table addressing), and the combine step that merges the
 * splits by log-sum-exp. One block handles every query head of a KV head (up
 * to GT at a time), so K/V bytes are read from memory once per KV head.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>

#include "common.cuh"

#define DECODE_THREADS 256
template <typename T, int D> struct DecodeShape {
	static constexpr int vec = VecOf<T>::n;		    /* elements per 16-byte load */
	static constexpr int bdx = D / vec;		    /* lanes covering one row */
	static constexpr int groups = DECODE_THREADS / bdx; /* rows in flight per pass */
	static_assert(bdx <= 32 && 32 % bdx == 0, "a row group must sit inside one warp");
};

/* Consecutive tokens per group per pass; fewer with 8 heads to bound registers. */
template <int GT> struct TokensPerPass {
	static constexpr int n = GT >= 8 ? 2 : 4;
};

/*
 * Thread mapping (T = f16, D = 128 as the example): a 16-byte load holds
 * vec = 8 elements, so bdx = D / vec = 16 lanes cover one 256-byte K or V
 * row and a warp reads two rows per load instruction; the 256 threads form
 * groups = 16 row groups. Group gi takes U consecutive tokens at
 * start + gi*U + k*groups*U; lane x of a group owns dims [x*vec, x*vec+vec)
 * of the K/V rows and of the accumulators of the GT query heads of the tile.
 * Each score is summed across the group's lanes with shfl_xor, so all lanes
 * hold it. The groups' (max, sum, acc) states are merged in shared memory in
 * a fixed tree order (deterministic, so paged and contiguous runs match).
 * Grid: x = entry * max_q_len + new token, y = KV head * head tiles, z = split.
 */
template <typename T, int D, int GT, bool PAGED>
__global__ void __launch_bounds__(DECODE_THREADS) decode_kernel(const AttnArgs a)
{
	using S = DecodeShape<T, D>;
	constexpr int VEC = S::vec, BDX = S::bdx, NG = S::groups, U = TokensPerPass<GT>::n;
	__shared__ float sm_m[NG][GT];
	__shared__ float sm_l[NG / 2][GT];
	__shared__ __align__(16) float sm_acc[NG / 2][GT][D];

	const int b = blockIdx.x / a.max_q_len, qi = blockIdx.x % a.max_q_len;
	const int kvh = blockIdx.y / a.head_tiles, tile = blockIdx.y % a.head_tiles;
	const int split = blockIdx.z;
	const int lane = threadIdx.x % BDX, grp = threadIdx.x / BDX;
	/* q_lens past max_q_len (o's token extent) are clamped, never written past o. */
	const int32_t ql = a.q_lens ? min(a.q_lens[b], a.max_q_len) : a.max_q_len;

	if (qi >= ql)
		return; /* the whole block: no new token here */

	const int32_t limit = a.seq_lens[b] - ql + qi + 1; /* causal: keys [0, limit) */
	const int h0 = kvh * a.group + tile * GT;
	const int nh = min(GT, a.group - tile * GT);
	const int32_t slot = PAGED ? 0 : (a.slots ? a.slots[b] : b);
	const T *kbase = (const T *)a.k + kvh * a.k_head + lane * VEC;
	const T *vbase = (const T *)a.v + kvh * a.v_head + lane * VEC;
	const int32_t start = split * a.split_tokens;
	/* The last split runs to the real length: a seq_len past the
	 * max_seq_len the splits were planned with loses no token. */
	const int32_t end = split == a.num_splits - 1 ? limit : min(limit, start + a.split_tokens);
	float q[GT][VEC], acc[GT][VEC], m[GT], l[GT], mtot[GT];

#pragma unroll
	for (int h = 0; h < GT; h++) {
		if (h < nh)
			load_vec((const T *)a.q + b * a.q_slot + qi * a.q_tok +
				     (h0 + h) * a.q_head + lane * VEC,
				 q[h]);
#pragma unroll
		for (int e = 0; e < VEC; e++) {
			q[h][e] = h < nh ? q[h][e] * a.scale_log2 : 0.0f;
			acc[h][e] = 0.0f;
		}
		m[h] = -INFINITY;
		l[h] = 0.0f;
	}

	/* The loop bound is the same for every thread: shfl_xor needs whole warps. */
	for (int32_t base = start; base < end; base += NG * U) {
		const int32_t t0 = base + grp * U;
		float kf[U][VEC], vf[U][VEC], s[U][GT];

#pragma unroll
		for (int u = 0; u < U; u++) {
			if (t0 + u < end) {
				load_vec(kbase +
					     kv_row<PAGED>(a, a.k_slot, a.k_tok, b, slot, t0 + u),
					 kf[u]);
				load_vec(vbase +
					     kv_row<PAGED>(a, a.v_slot, a.v_tok, b, slot, t0 + u),
					 vf[u]);
			} else {
#pragma unroll
				for (int e = 0; e < VEC; e++)
					kf[u][e] = vf[u][e] = 0.0f;
			}
		}
#pragma unroll
		for (int u = 0; u < U; u++)
#pragma unroll
			for (int h = 0; h < GT; h++) {
				float dot = 0.0f;

#pragma unroll
				for (int e = 0; e < VEC; e++)
					dot = fmaf(q[h][e], kf[u][e], dot);
#pragma unroll
				for (int off = BDX / 2; off >= 1; off /= 2)
					dot += __shfl_xor_sync(0xffffffffu, dot, off);
				s[u][h] = t0 + u < end ? dot : -INFINITY;
			}
#pragma unroll
		for (int h = 0; h < GT; h++) {
			float mx = m[h], ms, alpha;

#pragma unroll
			for (int u = 0; u < U; u++)
				mx = fmaxf(mx, s[u][h]);
			ms = mx == -INFINITY ? 0.0f : mx; /* no NaN from -inf - -inf */
			alpha = exp2f(m[h] - ms);
			l[h] *= alpha;
#pragma unroll
			for (int e = 0; e < VEC; e++)
				acc[h][e] *= alpha;
#pragma unroll
			for (int u = 0; u < U; u++) {
				float p = exp2f(s[u][h] - ms);

				l[h] += p;
#pragma unroll
				for (int e = 0; e < VEC; e++)
					acc[h][e] = fmaf(p, vf[u][e], acc[h][e]);
			}
			m[h] = mx;
		}
	}

	/* Merge the groups: common max first, then a fixed-order tree sum. */
	if (lane == 0)
#pragma unroll
		for (int h = 0; h < GT; h++)
			sm_m[grp][h] = m[h];
	__syncthreads();
#pragma unroll
	for (int h = 0; h < GT; h++) {
		float mx = -INFINITY, f;

		for (int g = 0; g < NG; g++)
			mx = fmaxf(mx, sm_m[g][h]);
		f = m[h] == -INFINITY ? 0.0f : exp2f(m[h] - mx);
		l[h] *= f;
#pragma unroll
		for (int e = 0; e < VEC; e++)
			acc[h][e] *= f;
		mtot[h] = mx;
	}
	for (int half = NG / 2; half >= 1; half /= 2) {
		if (grp >= half && grp < 2 * half)
#pragma unroll
			for (int h = 0; h < GT; h++) {
#pragma unroll
				for (int e = 0; e < VEC; e++)
					sm_acc[grp - half][h][lane * VEC + e] = acc[h][e];
				if (lane == 0)
					sm_l[grp - half][h] = l[h];
			}
		__syncthreads();
		if (grp < half)
#pragma unroll
			for (int h = 0; h < GT; h++) {
#pragma unroll
				for (int e = 0; e < VEC; e++)
					acc[h][e] += sm_acc[grp][h][lane * VEC + e];
				l[h] += sm_l[grp][h];
			}
		__syncthreads();
	}
	if (grp != 0)
		return;
#pragma unroll
	for (int h = 0; h < GT; h++) {
		float inv = l[h] > 0.0f ? 1.0f / l[h] : 0.0f, r[VEC];

		if (h >= nh)
			continue;
#pragma unroll
		for (int e = 0; e < VEC; e++)
			r[e] = acc[h][e] * inv;
		if (a.num_splits == 1) {
			store_vec((T *)a.o + b * a.o_slot + qi * a.o_tok + (h0 + h) * a.o_head +
				      lane * VEC,
				  r);
		} else {
			int64_t pi =
			    (((int64_t)split * a.batch + b) * a.max_q_len + qi) * a.q_heads + h0 +
			    h;
			float4 *dst = reinterpret_cast<float4 *>(a.part_o + pi * D + lane * VEC);

#pragma unroll
			for (int e = 0; e < VEC; e += 4)
				dst[e / 4] = make_float4(r[e], r[e + 1], r[e + 2], r[e + 3]);
			if (lane == 0)
				a.part_lse[pi] = l[h] > 0.0f ? mtot[h] + log2f(l[h]) : -INFINITY;
		}
	}
}

/*
 * Thread mapping: one block per (entry * max_q_len + new token, query head)
 * with D threads; thread d merges dim d over the splits:
 * out = sum_s 2^(lse_s - M) o_s / sum_s 2^(lse_s - M), M = max_s lse_s.
 * Every split kernel shares this combine.
 */
template <typename T, int D> __global__ void __launch_bounds__(D) combine_kernel(const AttnArgs a)
{
	const int b = blockIdx.x / a.max_q_len, qi = blockIdx.x % a.max_q_len;
	const int h = blockIdx.y, d = threadIdx.x;
	const int32_t ql = a.q_lens ? min(a.q_lens[b], a.max_q_len) : a.max_q_len;
	const int64_t split_stride = (int64_t)a.batch * a.max_q_len * a.q_heads;
	const int64_t pi0 = ((int64_t)b * a.max_q_len + qi) * a.q_heads + h;
	float mx = -INFINITY, acc = 0.0f, w = 0.0f;

	if (qi >= ql)
		return;
	for (int s = 0; s < a.num_splits; s++)
		mx = fmaxf(mx, a.part_lse[pi0 + s * split_stride]);
	if (mx != -INFINITY)
		for (int s = 0; s < a.num_splits; s++) {
			int64_t pi = pi0 + s * split_stride;
			float f = exp2f(a.part_lse[pi] - mx);

			w += f;
			acc = fmaf(f, a.part_o[pi * D + d], acc);
		}
	((T *)a.o)[b * a.o_slot + qi * a.o_tok + h * a.o_head + d] =
	    from_f32<T>(w > 0.0f ? acc / w : 0.0f);
}

typedef void (*decode_fn)(const AttnArgs);
typedef void (*combine_fn)(const AttnArgs);

template <typename T, int D, bool PAGED> static decode_fn decode_for_tile(int gt)
{
	switch (gt) {
	case 1:
		return decode_kernel<T, D, 1, PAGED>;
	case 2:
		return decode_kernel<T, D, 2, PAGED>;
	case 4:
		return decode_kernel<T, D, 4, PAGED>;
	default:
		return decode_kernel<T, D, 8, PAGED>;
	}
}

template <typename T, int D> static decode_fn decode_for(int gt, bool paged)
{
	return paged ? decode_for_tile<T, D, true>(gt) : decode_for_tile<T, D, false>(gt);
}

static decode_fn pick_decode(enum kvmm_attn_dtype dt, int dim, int gt, bool paged)
{
	switch (dt) {
	case KVMM_ATTN_F16:
		return dim == 64 ? decode_for<__half, 64>(gt, paged)
				 : decode_for<__half, 128>(gt, paged);
	case KVMM_ATTN_BF16:
		return dim == 64 ? decode_for<__nv_bfloat16, 64>(gt, paged)
				 : decode_for<__nv_bfloat16, 128>(gt, paged);
	default:
		return dim == 64 ? decode_for<float, 64>(gt, paged)
				 : decode_for<float, 128>(gt, paged);
	}
}

static combine_fn pick_combine(enum kvmm_attn_dtype dt, int dim)
{
	switch (dt) {
	case KVMM_ATTN_F16:
		return dim == 64 ? combine_kernel<__half, 64> : combine_kernel<__half, 128>;
	case KVMM_ATTN_BF16:
		return dim == 64 ? combine_kernel<__nv_bfloat16, 64>
				 : combine_kernel<__nv_bfloat16, 128>;
	default:
		return dim == 64 ? combine_kernel<float, 64> : combine_kernel<float, 128>;
	}
}

/* Query heads per block: the group, rounded up to a compiled tile (1, 2, 4, 8). */
static int tile_heads(int group)
{
	return group <= 1 ? 1 : group <= 2 ? 2 : group <= 4 ? 4 : 8;
}

int attn_cuda_err(cudaError_t e)
{
	switch (e) {
	case cudaSuccess:
		return 0;
	case cudaErrorMemoryAllocation:
		return -ENOMEM;
	case cudaErrorInvalidValue:
	case cudaErrorInvalidConfiguration:
		return -EINVAL;
	case cudaErrorNoDevice:
	case cudaErrorInsufficientDriver:
		return -ENODEV;
	default:
		return -EIO;
	}
}

static bool aligned(int64_t stride_elems, size_t es)
{
	return (stride_elems * (int64_t)es) % ATTN_LOAD_BYTES == 0;
}

static bool tensor_aligned(const struct kvmm_attn_tensor *t)
{
	size_t es = kvmm_attn_dtype_size(t->dtype);

	return (uintptr_t)t->data % ATTN_LOAD_BYTES == 0 && aligned(t->slot_stride, es) &&
	       aligned(t->token_stride, es) && aligned(t->head_stride, es) && t->dim_stride == 1;
}

int attn_cuda_args(const struct kvmm_attn_params *p, AttnArgs *a)
{
	int err = kvmm_attn_params_check(p);

	if (err)
		return err;
	if (p->batch > 0 && (!tensor_aligned(&p->q) || !tensor_aligned(&p->k) ||
			     !tensor_aligned(&p->v) || !tensor_aligned(&p->o)))
		return -EINVAL;
	*a = AttnArgs{};
	a->q = p->q.data;
	a->k = p->k.data;
	a->v = p->v.data;
	a->o = p->o.data;
	a->q_slot = p->q.slot_stride, a->q_tok = p->q.token_stride, a->q_head = p->q.head_stride;
	a->k_slot = p->k.slot_stride, a->k_tok = p->k.token_stride, a->k_head = p->k.head_stride;
	a->v_slot = p->v.slot_stride, a->v_tok = p->v.token_stride, a->v_head = p->v.head_stride;
	a->o_slot = p->o.slot_stride, a->o_tok = p->o.token_stride, a->o_head = p->o.head_stride;
	a->seq_lens = p->seq_lens;
	a->q_lens = p->q_lens;
	a->slots = p->slots;
	a->block_table = p->paged.block_table;
	a->max_blocks = p->paged.max_blocks;
	a->block_size = p->paged.block_size;
	a->batch = p->batch;
	a->q_heads = p->q_heads;
	a->kv_heads = p->kv_heads;
	a->group = p->q_heads / p->kv_heads;
	a->max_q_len = 1;
	a->scale_log2 = p->scale * (float)M_LOG2E;
	a->head_tiles = (a->group + tile_heads(a->group) - 1) / tile_heads(a->group);
	a->num_splits = 1;
	a->split_tokens = INT32_MAX;
	return 0;
}

/*
 * Split count by wave efficiency (attn_plan_splits). Uses the contiguous
 * kernel's occupancy for the paged twin too, so both run the same plan.
 */
static int plan_splits(const struct kvmm_attn_params *p, const AttnArgs *a)
{
	int dev, sms = 0, occ = 0;
	int gt = tile_heads(a->group);

	if (p->batch == 0)
		return 1;
	if (cudaGetDevice(&dev) != cudaSuccess ||
	    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
	    cudaOccupancyMaxActiveBlocksPerMultiprocessor(
		&occ, (const void *)pick_decode(p->k.dtype, p->head_dim, gt, false), DECODE_THREADS,
		0) != cudaSuccess)
		return 1;
	return attn_plan_splits((double)p->batch * p->kv_heads * a->head_tiles,
				(double)sms * (occ > 0 ? occ : 1), p->max_seq_len);
}

static size_t workspace_bytes(const struct kvmm_attn_params *p, int splits)
{
	if (splits <= 1)
		return 0;
	return (size_t)splits * p->batch * p->q_heads * ((size_t)p->head_dim + 1) * sizeof(float);
}

extern "C" int kvmm_attn_cuda_decode_splits(const struct kvmm_attn_params *p)
{
	AttnArgs a;
	int err = attn_cuda_args(p, &a);

	return err ? err : plan_splits(p, &a);
}

extern "C" size_t kvmm_attn_cuda_decode_workspace(const struct kvmm_attn_params *p)
{
	AttnArgs a;

	if (attn_cuda_args(p, &a))
		return 0;
	return workspace_bytes(p, plan_splits(p, &a));
}

static int launch(const struct kvmm_attn_params *p, AttnArgs *a, cudaStream_t s)
{
	int gt = tile_heads(a->group);

	if ((int64_t)p->batch * a->max_q_len > INT32_MAX) /* grid x, and b * max_q_len */
		return -EINVAL;
	dim3 grid((unsigned)(p->batch * a->max_q_len), (unsigned)(p->kv_heads * a->head_tiles),
		  (unsigned)a->num_splits);

	pick_decode(p->k.dtype, p->head_dim, gt,
		    p->paged.block_table != NULL)<<<grid, DECODE_THREADS, 0, s>>>(*a);
	if (a->num_splits > 1)
		pick_combine(
		    p->o.dtype,
		    p->head_dim)<<<dim3((unsigned)(p->batch * a->max_q_len), (unsigned)p->q_heads),
				   p->head_dim, 0, s>>>(*a);
	return attn_cuda_err(cudaGetLastError());
}

extern "C" int kvmm_attn_cuda_decode(const struct kvmm_attn_params *p, void *workspace,
				     size_t workspace_bytes_given, void *stream)
{
	AttnArgs a;
	int err = attn_cuda_args(p, &a), splits;

	if (err || p->batch == 0)
		return err;
	if (p->k.dtype != p->q.dtype)
		return -EINVAL;
	a.q_lens = NULL; /* decode: one new token per entry, whatever q_lens says */
	splits = plan_splits(p, &a);
	if (splits > 1 && !workspace)
		splits = 1;
	else if (splits > 1 && (workspace_bytes_given < workspace_bytes(p, splits) ||
				(uintptr_t)workspace % ATTN_LOAD_BYTES))
		return -EINVAL; /* too small, or not 16-byte aligned (float4 stores) */
	if (splits > 1) {
		a.num_splits = splits;
		a.split_tokens = (p->max_seq_len + splits - 1) / splits;
		a.part_o = (float *)workspace;
		a.part_lse = a.part_o + (size_t)splits * p->batch * p->q_heads * p->head_dim;
	}
	return launch(p, &a, (cudaStream_t)stream);
}

int attn_cuda_decode_unsplit(const struct kvmm_attn_params *p, int32_t max_q, cudaStream_t s)
{
	AttnArgs a;
	int err = attn_cuda_args(p, &a);

	if (err || p->batch == 0)
		return err;
	if (p->k.dtype != p->q.dtype)
		return -EINVAL;
	a.max_q_len = max_q;
	return launch(p, &a, s);
}
