/* SPDX-License-Identifier: MIT */
/*
 * The CUDA KV cache when libkvmm is built without cuda.h: a config is
 * still checked, then the device is reported missing (-ENODEV). No cache
 * can exist, so the other operations are never reached with one.
 */
#include <errno.h>

#include "cuda_drv.h"
#include "cuda_kv.h"
#include "cuda_plan.h"

#ifndef KVMM_HAVE_CUDA_H
int kvmm_cuda_kv_create(struct kvmm_ctx *ctx, const struct kvmm_kv_config *cfg,
			struct kvmm_cuda_kv **ckp)
{
	const struct kvmm_cuda_drv *d;
	int ret = kvmm_cuda_config_check(cfg);

	(void)ctx;
	(void)ckp;
	return ret ? ret : kvmm_cuda_drv_get(&d);
}

int kvmm_cuda_kv_destroy(struct kvmm_cuda_kv *ck)
{
	(void)ck;
	return -EINVAL;
}

int kvmm_cuda_kv_tensor(struct kvmm_cuda_kv *ck, uint32_t layer, enum kvmm_kv_which which,
			struct kvmm_kv_tensor *t)
{
	(void)ck, (void)layer, (void)which, (void)t;
	return -EINVAL;
}

int kvmm_cuda_kv_alloc_slot(struct kvmm_cuda_kv *ck, uint32_t expected_tokens, uint32_t *slotp)
{
	(void)ck, (void)expected_tokens, (void)slotp;
	return -EINVAL;
}

int kvmm_cuda_kv_step(struct kvmm_cuda_kv *ck, uint32_t n, const uint32_t *slots,
		      const uint32_t *seq_lens)
{
	(void)ck, (void)n, (void)slots, (void)seq_lens;
	return -EINVAL;
}

int kvmm_cuda_kv_free_slot(struct kvmm_cuda_kv *ck, uint32_t slot)
{
	(void)ck, (void)slot;
	return -EINVAL;
}

int kvmm_cuda_kv_trim(struct kvmm_cuda_kv *ck, uint64_t keep_bytes)
{
	(void)ck, (void)keep_bytes;
	return -EINVAL;
}

int kvmm_cuda_kv_swap_out(struct kvmm_cuda_kv *ck, uint32_t slot, enum kvmm_tier tier,
			  struct kvmm_op **opp)
{
	(void)ck, (void)slot, (void)tier, (void)opp;
	return -EINVAL;
}

int kvmm_cuda_kv_swap_in(struct kvmm_cuda_kv *ck, uint32_t slot, struct kvmm_op **opp)
{
	(void)ck, (void)slot, (void)opp;
	return -EINVAL;
}

int kvmm_cuda_kv_pin_slot(struct kvmm_cuda_kv *ck, uint32_t slot)
{
	(void)ck, (void)slot;
	return -EINVAL;
}

int kvmm_cuda_kv_unpin_slot(struct kvmm_cuda_kv *ck, uint32_t slot)
{
	(void)ck, (void)slot;
	return -EINVAL;
}

int kvmm_cuda_kv_set_priority(struct kvmm_cuda_kv *ck, uint32_t slot, int32_t priority)
{
	(void)ck, (void)slot, (void)priority;
	return -EINVAL;
}

int kvmm_cuda_kv_slot_state(struct kvmm_cuda_kv *ck, uint32_t slot)
{
	(void)ck, (void)slot;
	return -EINVAL;
}

int kvmm_cuda_kv_stats(struct kvmm_cuda_kv *ck, struct kvmm_kv_stats *st)
{
	(void)ck, (void)st;
	return -EINVAL;
}

int kvmm_cuda_kv_set_stream(struct kvmm_cuda_kv *ck, void *stream)
{
	(void)ck, (void)stream;
	return -EINVAL;
}

int kvmm_cuda_kv_swap_in_wait_layer(struct kvmm_cuda_kv *ck, uint32_t slot, uint32_t layer,
				    void *stream)
{
	(void)ck, (void)slot, (void)layer, (void)stream;
	return -EINVAL;
}

int kvmm_cuda_kv_cuda_stats(struct kvmm_cuda_kv *ck, struct kvmm_kv_cuda_stats *st)
{
	(void)ck, (void)st;
	return -EINVAL;
}
#endif
