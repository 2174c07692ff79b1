/* SPDX-License-Identifier: MIT */
/*
 * The public calls that only a CUDA KV cache has. kv.c hands every other
 * kvmm_kv_* call of a KVMM_DEVICE_CUDA cache to cuda_kv.c.
 */
#include <errno.h>

#include "cuda_kv.h"
#include "kv.h"

int kvmm_kv_set_stream(struct kvmm_kv *kv, void *stream)
{
	if (!kv || !kv->gpu)
		return -EINVAL; /* a host cache has no stream to order behind */
	return kvmm_cuda_kv_set_stream(kv->gpu, stream);
}

int kvmm_kv_swap_in_wait_layer(struct kvmm_kv *kv, uint32_t slot, uint32_t layer, void *stream)
{
	int state;

	if (!kv || layer >= kv->cfg.layers)
		return -EINVAL;
	if (kv->gpu)
		return kvmm_cuda_kv_swap_in_wait_layer(kv->gpu, slot, layer, stream);
	/* Host caches swap in whole: the op says when. */
	state = kvmm_kv_slot_state(kv, slot);
	if (state < 0)
		return state;
	return state == KVMM_SLOT_ACTIVE ? 0 : -EAGAIN;
}

int kvmm_kv_cuda_stats(struct kvmm_kv *kv, struct kvmm_kv_cuda_stats *st)
{
	if (!kv || !kv->gpu)
		return -EINVAL; /* a host cache makes no driver calls */
	return kvmm_cuda_kv_cuda_stats(kv->gpu, st);
}
