/* SPDX-License-Identifier: MIT */
/* Launchers of the CUDA KV cache test kernels; 0 or -1 (launch failed). */
#ifndef KVMM_GPU_CUDA_KV_KERNELS_H
#define KVMM_GPU_CUDA_KV_KERNELS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A kernel copies @n bytes of device memory @src to @dst on @stream. */
int kvmm_gpu_test_copy(const void *src, void *dst, size_t n, void *stream);

/* Same, after spinning @ms milliseconds of GPU time first. */
int kvmm_gpu_test_spin_copy(const void *src, void *dst, size_t n, double ms, void *stream);

#ifdef __cplusplus
}
#endif

#endif
