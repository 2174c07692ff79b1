/* SPDX-License-Identifier: MIT */
/*
 * The C API of libkvmm-preload.so (kvmm-preload(7), docs/preload.md):
 * park and unpark a process's GPU allocations by tag, at the same virtual
 * addresses, and tag scopes that say which tag an allocation gets.
 *
 * A program does not link the shim: it may run without it. Look the
 * functions up at run time, and do without when they are not there:
 *
 *     int (*park)(const char *, int) =
 *         (int (*)(const char *, int))dlsym(RTLD_DEFAULT, "kvmm_preload_park");
 *     if (park && park("kv", KVMM_PRELOAD_PARK_HOST) == 0)
 *             ... the "kv" memory is released; do not touch it until unpark
 *
 * Every function returns 0 or a negative errno and never exits. Not yet
 * run on a GPU: tested against the driver stand-in (tests/cuda).
 */
#ifndef KVMM_PRELOAD_H
#define KVMM_PRELOAD_H

#ifdef __cplusplus
extern "C" {
#endif

/* kvmm_preload_park() policies (where the contents go), and a flag. */
#define KVMM_PRELOAD_PARK_DISCARD 0	/* dropped: unpark gives zeroed memory */
#define KVMM_PRELOAD_PARK_HOST	  1	/* kept in DRAM (a kvmm host region) */
#define KVMM_PRELOAD_PARK_FLASH	  2	/* kept on flash (that region, evicted) */
#define KVMM_PRELOAD_ASYNC	  0x100 /* return at once; kvmm_preload_wait() */

/*
 * kvmm_preload_park() - after the work queued on the devices has finished
 * (cuCtxSynchronize), copy out the contents of every GPU allocation of
 * @tag (NULL or "*": every tag) as @policy says and release its GPU memory
 * and ledger charge, keeping its address. Until kvmm_preload_unpark(), the
 * memory must not be touched (a kernel reading it faults); freeing it is
 * allowed. New allocations for a parked tag go to the real allocator.
 * Return: 0; -ENOENT no such tag; -EBUSY the tag is being moved; -EINVAL
 * bad policy; a copy's or the driver's error, after which the tag is
 * resident again as before.
 */
int kvmm_preload_park(const char *tag, int policy);

/*
 * kvmm_preload_unpark() - map GPU memory again at the same addresses and
 * put the contents back (zeros for DISCARD). All or nothing: when memory
 * (or the GPU ledger) runs out, what was mapped is unmapped again, the tag
 * stays parked with its contents kept, and -ENOMEM (-EDQUOT) says so; it
 * can be retried. Each unpark that succeeds increments the tag's
 * generation (kvmm_preload_generation()): the physical memory behind the
 * addresses is new, so anything registered with it (NCCL, IPC handles)
 * must be registered again.
 */
int kvmm_preload_unpark(const char *tag);

/* kvmm_preload_wait() - wait for the asynchronous moves of @tag (NULL:
 * all); the result of the latest one. */
int kvmm_preload_wait(const char *tag);

/*
 * kvmm_preload_tag_push() - until the matching pop, GPU allocations of the
 * calling thread that a rule takes get @tag (rules with `scoped` take only
 * these). Scopes nest (8 deep). -EINVAL bad tag, -ENOSPC too deep or too
 * many tags (16).
 */
int kvmm_preload_tag_push(const char *tag);
int kvmm_preload_tag_pop(void);

/* Successful unparks of @tag so far, or -ENOENT. */
long long kvmm_preload_generation(const char *tag);

/* 0 resident, 1 parked, or -ENOENT. */
int kvmm_preload_state(const char *tag);

#ifdef __cplusplus
}
#endif

#endif
