/* SPDX-License-Identifier: MIT */
/*
 * A stand-in for libcuda.so.1 on machines without a GPU: the driver calls
 * libkvmm's CUDA backend makes, on host memory. A "device" allocation is a
 * memfd, cuMemMap maps it into a PROT_NONE reservation, cuMemSetAccess is
 * mprotect, so tests read "device" memory directly and a read of an
 * unmapped chunk faults. It enforces the rules the real driver has
 * (unmap exactly one earlier mapping, access only over mapped ranges,
 * map only into reserved, unmapped VA) and counts calls. Streams run
 * copies at once; a held stream keeps the events recorded on it pending,
 * which stands for a kernel that is still running.
 * libkvmm loads it through KVMM_CUDA_LIBRARY; tests reach the controls
 * below with dlsym on the same library.
 */
#ifndef KVMM_MOCK_CUDA_H
#define KVMM_MOCK_CUDA_H

#include <stdint.h>

struct mock_cuda_stats {
	uint64_t creates, releases, live; /* cuMemCreate handles */
	uint64_t maps, unmaps, set_access;
	uint64_t rule_violations; /* calls the real driver would refuse */
	uint64_t event_syncs, stream_syncs;
};

/* Environment read at cuInit: MOCK_CUDA_GRAN (bytes, default 2 MiB),
 * MOCK_CUDA_MEM_BYTES (device memory, default 1 GiB). */
typedef void (*mock_cuda_hold_fn)(void *stream, int held);
typedef void (*mock_cuda_stats_fn)(struct mock_cuda_stats *st);
typedef void (*mock_cuda_set_mem_fn)(uint64_t bytes);
/* Fails the Nth call of the named function from now on (1-based; 0: never). */
typedef void (*mock_cuda_fail_fn)(const char *name, uint64_t nth);

#endif
