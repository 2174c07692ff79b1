/* SPDX-License-Identifier: MIT */
/* Fault injection for tests (declared in userspace/lib/kvmm_test.h). */
#include <errno.h>

#include "kv.h"
#include "kvmm_test.h"

void kvmm_test_fail_io(struct kvmm_ctx *ctx, uint64_t nth)
{
	ctx->test_fail_io = nth;
	if (ctx->flash)
		kvmm_flash_reset_count(ctx->flash);
}

int kvmm_test_corrupt_chunk(struct kvmm_region *r, uint64_t chunk)
{
	uint32_t slot;

	if (!r || chunk >= r->nr_chunks || r->ctx->mode != KVMM_MODE_USER)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	slot = r->slot[chunk];
	pthread_mutex_unlock(&r->lock);
	if (slot == KVMM_NO_SLOT)
		return -ENOENT;
	return kvmm_flash_corrupt(r->ctx->flash, slot);
}

struct kvmm_region *kvmm_test_kv_region(struct kvmm_kv *kv, uint32_t i)
{
	return kv && i < kv->nr_regions ? kv->regions[i] : NULL;
}
