/* SPDX-License-Identifier: MIT */
/*
 * GPU <-> host shadow copies through a pinned staging pool. The shadow is
 * a libkvmm host region (a kvmm.ko region in kernel mode) that cannot be
 * registered with the driver, so data goes through a few pinned buffers
 * placed on the GPU's NUMA node: the DMA of one buffer overlaps the CPU
 * copy of the previous one. Copies run on a dedicated stream.
 */
#ifndef KVMM_LIB_CUDA_COPY_H
#define KVMM_LIB_CUDA_COPY_H

#include <stdint.h>

#include "cuda_drv.h"

#define KVMM_CUDA_STAGE_BUFS 4

#ifdef KVMM_HAVE_CUDA_H
struct kvmm_cuda_copy {
	const struct kvmm_cuda_drv *d;
	CUstream stream;
	uint64_t buf_bytes;
	char *buf[KVMM_CUDA_STAGE_BUFS];
	CUevent ev[KVMM_CUDA_STAGE_BUFS];
	int node; /* NUMA node of the buffers, or -1 */
	/* per buffer: libnuma memory + cuMemHostRegister, else cuMemHostAlloc */
	bool registered[KVMM_CUDA_STAGE_BUFS];
	/* D2H: where buffer i's bytes go once its DMA is done. */
	char *pending_dst[KVMM_CUDA_STAGE_BUFS];
	uint64_t pending_len[KVMM_CUDA_STAGE_BUFS];
	unsigned next;
};

/* Staging of KVMM_CUDA_STAGE_BYTES (default 4 x 8 MiB) on @dev's node. */
int kvmm_cuda_copy_init(struct kvmm_cuda_copy *c, const struct kvmm_cuda_drv *d, CUdevice dev,
			int node_hint);
void kvmm_cuda_copy_fini(struct kvmm_cuda_copy *c);

/* Makes later copies wait for @ev (recorded on the engine's stream). */
int kvmm_cuda_copy_after(struct kvmm_cuda_copy *c, CUevent ev);

/* Device -> host; the bytes are in @dst once kvmm_cuda_copy_drain returns 0. */
int kvmm_cuda_copy_d2h(struct kvmm_cuda_copy *c, void *dst, CUdeviceptr src, uint64_t len);
/* Host -> device; @src may be reused at once; the DMA is queued on the stream. */
int kvmm_cuda_copy_h2d(struct kvmm_cuda_copy *c, CUdeviceptr dst, const void *src, uint64_t len);
/* Waits for every queued copy and delivers D2H bytes. */
int kvmm_cuda_copy_drain(struct kvmm_cuda_copy *c);
#endif

#endif
