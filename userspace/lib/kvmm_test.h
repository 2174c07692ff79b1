/* SPDX-License-Identifier: MIT */
/* libkvmm test hooks: not part of the API; for tests/unit only. */
#ifndef KVMM_LIB_TEST_H
#define KVMM_LIB_TEST_H

#include <kvmm/kvmm.h>

/* Fails the @nth flash I/O from now on (1-based; 0: never); 0 or a
 * negative errno. User mode: the @nth to complete, which really runs and
 * is reported as -EIO (as KVMM_TEST_FAIL_IO=nth before kvmm_open()).
 * Kernel mode: the module's debug_fail_skip/debug_fail_ios (root; global
 * to the module, counted in submission order). */
int kvmm_test_fail_io(struct kvmm_ctx *ctx, uint64_t nth);

/* Flips a byte of @chunk's copy on flash: -ENOENT if the chunk has no
 * flash copy. Kernel mode reads the chunk back and drops it again first. */
int kvmm_test_corrupt_chunk(struct kvmm_region *r, uint64_t chunk);

/* User mode: fail faults as a kernel without UFFDIO_POISON (before 6.6)
 * does, with PROT_NONE (SIGSEGV) instead of SIGBUS. */
void kvmm_test_no_poison(struct kvmm_ctx *ctx);

/* The KV cache's @i-th region (layer-major: 2*layer + K|V; token-major:
 * the slot), or NULL. */
struct kvmm_region *kvmm_test_kv_region(struct kvmm_kv *kv, uint32_t i);

/* Kernel mode: the kvmm.ko region fd behind @r, so a test can ask the
 * module itself (KVMM_IOC_STAT, KVMM_IOC_QUERY); -ENODEV in user mode. */
int kvmm_test_region_fd(struct kvmm_region *r);

#endif
