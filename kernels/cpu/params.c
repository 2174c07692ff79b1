/* Parameter validation shared by every attention kernel. */
#include <errno.h>
#include <math.h>

#include "cpu.h"

size_t kvmm_attn_dtype_size(enum kvmm_attn_dtype dtype)
{
	switch (dtype) {
	case KVMM_ATTN_F32:
		return 4;
	case KVMM_ATTN_F16:
	case KVMM_ATTN_BF16:
		return 2;
	}
	return 0;
}

const char *kvmm_attn_dtype_name(enum kvmm_attn_dtype dtype)
{
	switch (dtype) {
	case KVMM_ATTN_F32:
		return "f32";
	case KVMM_ATTN_F16:
		return "f16";
	case KVMM_ATTN_BF16:
		return "bf16";
	}
	return "?";
}

static int tensor_ok(const struct kvmm_attn_tensor *t)
{
	return t->data && kvmm_attn_dtype_size(t->dtype) != 0;
}

int kvmm_attn_params_check(const struct kvmm_attn_params *p)
{
	if (!p || p->batch < 0 || p->kv_heads <= 0 || p->q_heads <= 0 ||
	    p->q_heads % p->kv_heads != 0)
		return -EINVAL;
	if (p->head_dim != 64 && p->head_dim != 128)
		return -EINVAL;
	if (!isfinite(p->scale) || p->max_seq_len < 0 || p->max_q_len < 0)
		return -EINVAL;
	if (p->batch == 0)
		return 0;
	if (!p->seq_lens || !tensor_ok(&p->q) || !tensor_ok(&p->k) || !tensor_ok(&p->v) ||
	    !tensor_ok(&p->o))
		return -EINVAL;
	if (p->k.dtype != p->v.dtype || p->o.dtype != p->q.dtype)
		return -EINVAL;
	if (p->paged.block_table && (p->paged.block_size <= 0 || p->paged.max_blocks <= 0))
		return -EINVAL;
	return 0;
}

int attn_check_lens(const struct kvmm_attn_params *p, int32_t max_q)
{
	for (int b = 0; b < p->batch; b++) {
		int32_t len = p->seq_lens[b], ql = attn_q_len(p, b, max_q);

		if (len < 0 || ql < 0 || ql > max_q || (len > 0 && ql > len))
			return -EINVAL;
		if (p->max_seq_len && len > p->max_seq_len)
			return -EINVAL;
		if (p->paged.block_table) {
			int64_t blocks =
			    ((int64_t)len + p->paged.block_size - 1) / p->paged.block_size;

			if (blocks > p->paged.max_blocks)
				return -EINVAL;
		} else if (p->slots && p->slots[b] < 0) {
			return -EINVAL;
		}
	}
	return 0;
}

int attn_check_dense_dim(const struct kvmm_attn_params *p)
{
	if (p->q.dim_stride != 1 || p->k.dim_stride != 1 || p->v.dim_stride != 1 ||
	    p->o.dim_stride != 1)
		return -EINVAL;
	return 0;
}
