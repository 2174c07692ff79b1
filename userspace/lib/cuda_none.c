/* SPDX-License-Identifier: MIT */
/*
 * The CUDA device when libkvmm is built without cuda.h: the slot core has
 * checked the config, then every CUDA cache is -ENODEV and
 * kvmm_cuda_why() says why. No cache can exist, so no other operation is
 * ever reached.
 */
#include <errno.h>

#include "cuda_drv.h"
#include "kv.h"

#ifndef KVMM_HAVE_CUDA_H
static int kvmm_cuda_none_create(struct kvmm_kv *kv)
{
	const struct kvmm_cuda_drv *d;

	(void)kv;
	return kvmm_cuda_drv_get(&d); /* -ENODEV, with the reason */
}

static void kvmm_cuda_none_destroy(struct kvmm_kv *kv)
{
	(void)kv;
}

const struct kvmm_kv_device kvmm_kv_cuda_device = {
    .create = kvmm_cuda_none_create,
    .destroy = kvmm_cuda_none_destroy,
};
#endif
