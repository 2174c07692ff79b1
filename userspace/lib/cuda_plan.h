/* SPDX-License-Identifier: MIT */
/*
 * Pure arithmetic and planning for GPU regions, free of CUDA types so the
 * unit tests check it on any machine: chunk sizes from the allocation
 * granularity, runs of chunks to remap, and the deferred-release list that
 * keeps a chunk mapped until the fence after its last reader has passed.
 */
#ifndef KVMM_LIB_CUDA_PLAN_H
#define KVMM_LIB_CUDA_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The default GPU chunk before rounding up to the granularity. */
#define KVMM_CUDA_DEFAULT_CHUNK (2ULL << 20)
#define KVMM_CUDA_MAX_CHUNK	(1ULL << 30)

/* Per-chunk mapping state of a GPU region. */
enum kvmm_cuda_chunk {
	KVMM_CUDA_ZERO = 0,  /* the shared zero chunk, read-only */
	KVMM_CUDA_REAL = 1,  /* a physical handle of its own, read-write */
	KVMM_CUDA_DRAIN = 2, /* still REAL; unmapped once its fence passes */
	KVMM_CUDA_HOLE = 3,  /* no mapping: the zero chunk could not be put back */
};

/*
 * kvmm_cuda_chunk_size() - the GPU chunk for a request of @want bytes
 * (0: the default) at allocation granularity @gran.
 * Return: 0 and *chunk; -EINVAL when @gran is 0 or @want is not a
 * multiple of it, or past KVMM_CUDA_MAX_CHUNK.
 */
int kvmm_cuda_chunk_size(uint64_t want, uint64_t gran, uint64_t *chunk);

/*
 * kvmm_cuda_shadow_chunk() - the chunk of the host shadow region: the
 * largest power of two that divides @gpu_chunk, at most 2 MiB and at least
 * @page. Return: 0; -EINVAL when there is none.
 */
int kvmm_cuda_shadow_chunk(uint64_t gpu_chunk, uint64_t page, uint32_t *shadow);

struct kvmm_cuda_run {
	uint64_t first, nr;
};

/*
 * kvmm_cuda_plan() - the runs of chunks in [first, first + nr) whose state
 * is @from, in address order: each run is remapped chunk by chunk, then
 * given its access with one cuMemSetAccess. Fills up to @max runs.
 * Return: the number of runs (which may exceed @max: call again with more).
 */
size_t kvmm_cuda_plan(const uint8_t *state, uint64_t first, uint64_t nr, uint8_t from,
		      struct kvmm_cuda_run *runs, size_t max);

/*
 * The deferred-release list: a range of chunks waits on its fence (an
 * event recorded after the last kernel that could read it) before it is
 * unmapped. Fences may pass out of order (different streams).
 */
struct kvmm_cuda_fence {
	struct kvmm_cuda_fence *next;
	void *event; /* opaque: a CUevent for the backend */
	/* chunks first + k * stride + [0, nr) for k < count: one slot's parts */
	uint64_t first, nr, count, stride;
};

struct kvmm_cuda_fences {
	struct kvmm_cuda_fence *head;
	uint64_t pending_chunks;
};

void kvmm_cuda_fence_push(struct kvmm_cuda_fences *l, struct kvmm_cuda_fence *f);

/* Unlinks and returns every fence for which passed(arg, event) is > 0,
 * oldest first. passed() returning < 0 (an error: the event can no longer
 * be known to pass) keeps that fence listed and, with @err non-NULL, puts
 * the first such value in *err (left alone when there is none). */
struct kvmm_cuda_fence *kvmm_cuda_fence_collect(struct kvmm_cuda_fences *l,
						int (*passed)(void *arg, void *event), void *arg,
						int *err);

/* The oldest pending fence covering a chunk of [first, first + nr), or NULL. */
struct kvmm_cuda_fence *kvmm_cuda_fence_find(const struct kvmm_cuda_fences *l, uint64_t first,
					     uint64_t nr);

/* Unlinks @f (found with kvmm_cuda_fence_find); false when not listed. */
bool kvmm_cuda_fence_remove(struct kvmm_cuda_fences *l, struct kvmm_cuda_fence *f);

/*
 * kvmm_cuda_numa_node() - the NUMA node of the PCI device @busid (as
 * cuDeviceGetPCIBusId gives it, any case) read from
 * @sysfs/bus/pci/devices/<busid>/numa_node; -1 when unknown.
 */
int kvmm_cuda_numa_node(const char *sysfs, const char *busid);

/*
 * kvmm_cuda_ledger_index() - the GPU ledger's index for the PCI device
 * @busid (as cuDeviceGetPCIBusId gives it, any case): its place among the
 * host's NVIDIA GPUs (vendor 0x10de, PCI class display VGA or 3D) under
 * @sysfs/bus/pci/devices, in PCI address order. Unlike the CUDA device
 * ordinal, which CUDA_VISIBLE_DEVICES renumbers in each process, every
 * process on the host gets the same index for the same GPU (nvidia-smi's
 * numbering). Return: the index; -1 when @busid is not such a device.
 */
int kvmm_cuda_ledger_index(const char *sysfs, const char *busid);

#endif
