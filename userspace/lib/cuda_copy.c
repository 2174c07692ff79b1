/* SPDX-License-Identifier: MIT */
/* Pinned staging pool and the copy stream. */
#include <errno.h>
#include <string.h>

#include "internal.h"
#include "cuda_copy.h"
#include "cuda_plan.h"

#ifdef KVMM_HAVE_CUDA_H
#define KVMM_STAGE_DEFAULT (8ULL << 20)

static int kvmm_cuda_stage_alloc(struct kvmm_cuda_copy *c, unsigned i)
{
	int used = -1;

	if (c->node >= 0) {
		/* Placed on the GPU's node by libnuma, then pinned for DMA. */
		void *p = kvmm_staging_alloc(c->buf_bytes, c->node, &used);

		if (p && !c->d->cuMemHostRegister(p, c->buf_bytes, CU_MEMHOSTREGISTER_PORTABLE)) {
			c->buf[i] = p;
			c->registered[i] = true;
			return 0;
		}
		kvmm_staging_free(p, c->buf_bytes);
	}
	c->registered[i] = false;
	return kvmm_cuda_err(
	    c->d->cuMemHostAlloc((void **)&c->buf[i], c->buf_bytes, CU_MEMHOSTALLOC_PORTABLE));
}

static void kvmm_cuda_stage_free(struct kvmm_cuda_copy *c, unsigned i)
{
	if (!c->buf[i])
		return;
	if (c->registered[i]) {
		c->d->cuMemHostUnregister(c->buf[i]);
		kvmm_staging_free(c->buf[i], c->buf_bytes);
	} else {
		c->d->cuMemFreeHost(c->buf[i]);
	}
	c->buf[i] = NULL;
}

int kvmm_cuda_copy_init(struct kvmm_cuda_copy *c, const struct kvmm_cuda_drv *d, CUdevice dev,
			int node_hint)
{
	char busid[32];
	uint64_t bytes = KVMM_CUDA_STAGE_BUFS * KVMM_STAGE_DEFAULT;
	int ret;

	memset(c, 0, sizeof(*c));
	c->d = d;
	c->node = node_hint;
	if (c->node < 0 && !d->cuDeviceGetPCIBusId(busid, sizeof(busid), dev))
		c->node = kvmm_cuda_numa_node("/sys", busid);
	if (kvmm_env_u64("KVMM_CUDA_STAGE_BYTES", &bytes) < 0 ||
	    bytes < KVMM_CUDA_STAGE_BUFS * 4096)
		return -EINVAL;
	c->buf_bytes = kvmm_round_up(bytes / KVMM_CUDA_STAGE_BUFS, 4096);
	ret = kvmm_cuda_err(d->cuStreamCreate(&c->stream, CU_STREAM_NON_BLOCKING));
	for (unsigned i = 0; i < KVMM_CUDA_STAGE_BUFS && !ret; i++) {
		ret = kvmm_cuda_err(d->cuEventCreate(&c->ev[i], KVMM_CUDA_EVENT_FLAGS));
		if (!ret)
			ret = kvmm_cuda_stage_alloc(c, i);
	}
	return ret;
}

void kvmm_cuda_copy_fini(struct kvmm_cuda_copy *c)
{
	if (c->stream)
		c->d->cuStreamSynchronize(c->stream);
	for (unsigned i = 0; i < KVMM_CUDA_STAGE_BUFS; i++) {
		kvmm_cuda_stage_free(c, i);
		if (c->ev[i])
			c->d->cuEventDestroy(c->ev[i]);
	}
	if (c->stream)
		c->d->cuStreamDestroy(c->stream);
	memset(c, 0, sizeof(*c));
}

int kvmm_cuda_copy_after(struct kvmm_cuda_copy *c, CUevent ev)
{
	return kvmm_cuda_err(c->d->cuStreamWaitEvent(c->stream, ev, 0));
}

/* Takes the next buffer once its last DMA is done (and its D2H bytes out). */
static int kvmm_cuda_stage_next(struct kvmm_cuda_copy *c, unsigned *bi)
{
	unsigned i = c->next;
	int ret;

	c->next = (i + 1) % KVMM_CUDA_STAGE_BUFS;
	ret = kvmm_cuda_err(c->d->cuEventSynchronize(c->ev[i]));
	if (ret)
		return ret;
	if (c->pending_len[i])
		memcpy(c->pending_dst[i], c->buf[i], c->pending_len[i]);
	c->pending_len[i] = 0;
	*bi = i;
	return 0;
}

/* Records buffer @i's event behind the copy just queued on it. Without
 * the event nothing would keep the next user of the buffer behind that
 * DMA: then the stream is waited for here. */
static int kvmm_cuda_stage_fence(struct kvmm_cuda_copy *c, unsigned i)
{
	int ret = kvmm_cuda_err(c->d->cuEventRecord(c->ev[i], c->stream));

	if (ret)
		c->d->cuStreamSynchronize(c->stream);
	return ret;
}

int kvmm_cuda_copy_d2h(struct kvmm_cuda_copy *c, void *dst, CUdeviceptr src, uint64_t len)
{
	for (uint64_t off = 0; off < len;) {
		uint64_t n = len - off < c->buf_bytes ? len - off : c->buf_bytes;
		unsigned i;
		int ret = kvmm_cuda_stage_next(c, &i);

		if (!ret)
			ret = kvmm_cuda_err(
			    c->d->cuMemcpyDtoHAsync(c->buf[i], src + off, n, c->stream));
		if (!ret)
			ret = kvmm_cuda_stage_fence(c, i);
		if (ret)
			return ret;
		c->pending_dst[i] = (char *)dst + off;
		c->pending_len[i] = n;
		off += n;
	}
	return 0;
}

int kvmm_cuda_copy_h2d(struct kvmm_cuda_copy *c, CUdeviceptr dst, const void *src, uint64_t len)
{
	for (uint64_t off = 0; off < len;) {
		uint64_t n = len - off < c->buf_bytes ? len - off : c->buf_bytes;
		unsigned i;
		int ret = kvmm_cuda_stage_next(c, &i);

		if (ret)
			return ret;
		memcpy(c->buf[i], (const char *)src + off, n);
		ret = kvmm_cuda_err(c->d->cuMemcpyHtoDAsync(dst + off, c->buf[i], n, c->stream));
		if (!ret)
			ret = kvmm_cuda_stage_fence(c, i);
		if (ret)
			return ret;
		off += n;
	}
	return 0;
}

int kvmm_cuda_copy_drain(struct kvmm_cuda_copy *c)
{
	int ret = 0;

	for (unsigned k = 0; k < KVMM_CUDA_STAGE_BUFS; k++) {
		unsigned i;
		int err = kvmm_cuda_stage_next(c, &i);

		ret = ret ? ret : err;
	}
	return ret;
}
#endif
