/* SPDX-License-Identifier: MIT */
/*
 * Shared by the GPU test programs (include after cmocka.h): each test skips
 * with the reason when there is no GPU, and CUDA runtime calls are checked.
 */
#ifndef KVMM_TESTS_GPU_TEST_H
#define KVMM_TESTS_GPU_TEST_H

#include <errno.h>
#include <stdio.h>

#include <cuda_runtime_api.h>

#include "../common/t_list.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static int skipped;
static char no_gpu[400]; /* why there is no GPU, or empty */

/* How to get what NEED_GPU found missing. */
#define GPU_HINT "needs an NVIDIA GPU and its driver's libcuda.so.1"

#define NEED_GPU()                                                                                 \
	do {                                                                                       \
		if (no_gpu[0]) {                                                                   \
			printf("SKIP %s: %s: %s\n", program_invocation_short_name, __func__,       \
			       no_gpu);                                                            \
			skipped++;                                                                 \
			skip();                                                                    \
		}                                                                                  \
	} while (0)

#define CUDA_OK(call)                                                                              \
	do {                                                                                       \
		cudaError_t e_ = (call);                                                           \
		if (e_ != cudaSuccess)                                                             \
			fail_msg("%s: expected cudaSuccess, seen %s", #call,                       \
				 cudaGetErrorString(e_));                                          \
	} while (0)

#endif /* KVMM_TESTS_GPU_TEST_H */
