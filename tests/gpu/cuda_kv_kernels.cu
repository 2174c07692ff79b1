// SPDX-License-Identifier: MIT
// Kernels for the CUDA KV cache tests (test_cuda_kv.c): they read KV
// memory the way an attention kernel does, through plain device pointers.
#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "cuda_kv_kernels.h"

// Thread i copies bytes i, i + stride, ...: any byte past seq_len is read.
__global__ void copy_bytes(const unsigned char *src, unsigned char *dst, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		dst[i] = src[i];
}

static __device__ uint64_t now_ns()
{
	uint64_t t;

	asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
	return t;
}

// Every thread waits @ns of GPU time first, so the host frees and reclaims
// the source while this kernel is still running and has not read it yet.
__global__ void spin_then_copy(const unsigned char *src, unsigned char *dst, size_t n, uint64_t ns)
{
	uint64_t start = now_ns();

	while (now_ns() - start < ns)
		;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		dst[i] = src[i];
}

extern "C" int kvmm_gpu_test_copy(const void *src, void *dst, size_t n, void *stream)
{
	copy_bytes<<<64, 256, 0, (cudaStream_t)stream>>>((const unsigned char *)src,
							 (unsigned char *)dst, n);
	return cudaGetLastError() == cudaSuccess ? 0 : -1;
}

extern "C" int kvmm_gpu_test_spin_copy(const void *src, void *dst, size_t n, double ms,
				       void *stream)
{
	spin_then_copy<<<64, 256, 0, (cudaStream_t)stream>>>(
	    (const unsigned char *)src, (unsigned char *)dst, n, (uint64_t)(ms * 1e6));
	return cudaGetLastError() == cudaSuccess ? 0 : -1;
}
