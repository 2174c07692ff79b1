/* SPDX-License-Identifier: MIT */
/*
 * Memory that libkvmm says it released, observed from outside libkvmm.
 * Tests of discard, evict, trim, reclaim and swap-out check these as well
 * as the library's own counters, so a release that updates the counters but
 * keeps the memory (or releases the wrong range) fails.
 *
 *   observation        user mode                    kernel mode
 *   backed bytes of    mincore() of the range       kvmm.ko's KVMM_IOC_QUERY
 *   a range                                         (resident chunks)
 *   backed bytes of    mincore() of the region      kvmm.ko's KVMM_IOC_STAT
 *   a region                                        resident_bytes
 *   memory held        Rss of the mappings over it  kvmm.ko's pool_used_bytes
 *                      (/proc/self/smaps)           (sysfs)
 *   released range     reads as zeros               reads as zeros
 *
 * Kernel-mode region memory is VM_PFNMAP, which mincore() and Rss never
 * see, so there the module is asked, on the region fd and in sysfs. The
 * unit programs run one at a time in the test VM: pool_used_bytes is theirs.
 */
#ifndef KVMM_TEST_RELEASE_CHECK_H
#define KVMM_TEST_RELEASE_CHECK_H

#include <stdbool.h>
#include <stdint.h>

#include <kvmm/kvmm.h>

#include "../../userspace/lib/kvmm_test.h"

/* Bytes of [@off, @off + @len) of @r that memory backs now (chunk aligned). */
uint64_t t_backed(struct kvmm_region *r, uint64_t off, uint64_t len);

/* Bytes of all of @r that memory backs now. */
uint64_t t_region_backed(struct kvmm_region *r);

/* Bytes of every region of @kv that memory backs now. */
uint64_t t_kv_backed(struct kvmm_kv *kv);

/* Bytes of @slot's share of @kv's regions that memory backs now. */
uint64_t t_kv_slot_backed(struct kvmm_kv *kv, const struct kvmm_kv_config *c, uint32_t slot);

/* Where t_held() looks: the mappings of a region or of a KV cache. */
struct t_watch {
	bool kernel;
	const char *addr;
	uint64_t len;
};

struct t_watch t_watch_region(struct kvmm_region *r);
struct t_watch t_watch_kv(struct kvmm_kv *kv);

/* Memory held now: user mode the Rss of the mappings overlapping @w's
 * range; kernel mode the module's pool_used_bytes. */
uint64_t t_held(const struct t_watch *w);
/* The same with pages that several of those mappings share counted once:
 * user mode sums Pss (a page mapped at two addresses counts half at each),
 * kernel mode reads pool_used_bytes, which counts a shared chunk once. */
uint64_t t_held_once(const struct t_watch *w);
/* Sum of an smaps field ("Rss:", "Pss:", "Anonymous:") over [lo, hi). */
uint64_t t_smaps_sum(const char *field, uintptr_t lo, uintptr_t hi);

void t_check_bytes(const char *what, uint64_t seen, uint64_t expected, const char *how,
		   const char *file, int line);
void t_check_given_back(const struct t_watch *w, uint64_t before, uint64_t bytes, const char *what,
			const char *file, int line);
void t_check_reads_zero(struct kvmm_region *r, uint64_t off, uint64_t len, const char *what,
			const char *file, int line);
void t_check_kv_slot_zero(struct kvmm_kv *kv, const struct kvmm_kv_config *c, uint32_t slot,
			  uint32_t tokens, const char *file, int line);
const char *t_backed_how(struct kvmm_region *r, bool whole);

/* No memory behind [@off, @off + @len) of @r. */
#define T_UNBACKED(r, off, len)                                                                    \
	t_check_bytes(#r " [" #off ", +" #len ")", t_backed(r, off, len), 0,                       \
		      t_backed_how(r, false), __FILE__, __LINE__)

/* Memory behind all of [@off, @off + @len) of @r. */
#define T_BACKED(r, off, len)                                                                      \
	t_check_bytes(#r " [" #off ", +" #len ")", t_backed(r, off, len), len,                     \
		      t_backed_how(r, false), __FILE__, __LINE__)

/* Exactly @bytes of memory behind all of @r. */
#define T_REGION_BACKED(r, bytes)                                                                  \
	t_check_bytes(#r, t_region_backed(r), bytes, t_backed_how(r, true), __FILE__, __LINE__)

/* Exactly @bytes of memory behind the regions of @kv. */
#define T_KV_BACKED(kv, bytes)                                                                     \
	t_check_bytes(#kv, t_kv_backed(kv), bytes, t_backed_how(kvmm_test_kv_region(kv, 0), true), \
		      __FILE__, __LINE__)

/* Exactly @bytes of memory behind @slot of @kv. */
#define T_KV_SLOT_BACKED(kv, c, slot, bytes)                                                       \
	t_check_bytes(#kv " slot " #slot, t_kv_slot_backed(kv, c, slot), bytes,                    \
		      t_backed_how(kvmm_test_kv_region(kv, 0), false), __FILE__, __LINE__)

/*
 * The memory held for watch @w dropped from @before by at least @bytes,
 * less a sixteenth of @bytes for anything else that moved meanwhile; waits
 * up to 2 s for frees deferred to a worker.
 */
#define T_GIVEN_BACK(w, before, bytes)                                                             \
	t_check_given_back(&(w), before, bytes, #w, __FILE__, __LINE__)

/*
 * [@off, @off + @len) of @r reads as zeros. Under valgrind in user mode a
 * fault cannot be served, so the range is ensured first (which fails if
 * stale pages are still mapped there). The range is resident afterwards.
 */
#define T_READS_ZERO(r, off, len)                                                                  \
	t_check_reads_zero(r, off, len, #r " [" #off ", +" #len ")", __FILE__, __LINE__)

/* Tokens [0, @tokens) of @slot read as zeros in every layer, K and V; the
 * slot must be resident (stepped), so nothing faults. */
#define T_KV_SLOT_ZERO(kv, c, slot, tokens)                                                        \
	t_check_kv_slot_zero(kv, c, slot, tokens, __FILE__, __LINE__)

#endif
