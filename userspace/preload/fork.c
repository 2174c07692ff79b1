/* SPDX-License-Identifier: MIT */
/*
 * fork and exec.
 *
 * fork: libkvmm's threads (the user-mode fault handler, the workers) and
 * its userfaultfd registrations do not pass to a child, and a kernel-mode
 * region is a MAP_SHARED mapping the child would share with the parent.
 * So the child gets plain private memory with the parent's contents:
 *   - before fork, chunks on flash are read back (a child reading them
 *     would otherwise see zeros) while shim_lock keeps the pool thread
 *     and every routing call out;
 *   - in the child, user-mode regions already are private copy-on-write
 *     anonymous memory (the kernel drops the registration); kernel-mode
 *     regions are copied into private memory at the same address.
 * The child's routed blocks become orphans: still in the range table, so
 * free, realloc and munmap know them, and given back with munmap. Pools
 * start again empty; the child's next routed allocation opens its own
 * libkvmm context. The parent keeps everything.
 *
 * exec: LD_PRELOAD passes to children as usual, so they are routed by the
 * same rules; KVMM_PRELOAD_CHILDREN=0 takes the shim out of LD_PRELOAD at
 * start, so programs this one starts run without it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shim.h"
#include "../lib/internal.h"

int shim_privatize(void *p, uint64_t bytes, struct kvmm_region *kr, uint32_t chunk)
{
	void *q = shim_real.mmap(NULL, bytes, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (q == MAP_FAILED)
		return -errno;
	for (uint64_t off = 0; off < bytes; off += chunk) {
		uint8_t st = KVMM_STATE_RESIDENT;
		uint64_t len = bytes - off < chunk ? bytes - off : chunk;

		/* An empty chunk stays unallocated (and untouched in the parent). */
		if (kr)
			kvmm_region_query(kr, off / chunk, 1, &st);
		if ((st & KVMM_STATE_MASK) != KVMM_STATE_EMPTY)
			shim_copy((char *)q + off, (char *)p + off, len);
	}
	if (shim_real.mremap(q, bytes, bytes, MREMAP_MAYMOVE | MREMAP_FIXED, p) == MAP_FAILED) {
		int err = -errno;

		shim_real.munmap(q, bytes);
		return err;
	}
	return 0;
}

/* Reads back every chunk of @r that is on flash. */
static void shim_fork_restore(struct shim_region *r)
{
	uint64_t nr = r->bytes / r->chunk_bytes;
	uint8_t st[64];

	for (uint64_t c = 0; c < nr; c += 64) {
		uint64_t k = nr - c < 64 ? nr - c : 64;

		if (kvmm_region_query(r->kr, c, k, st))
			return;
		for (uint64_t i = 0; i < k; i++) {
			if ((st[i] & KVMM_STATE_MASK) == KVMM_STATE_FLASH &&
			    !kvmm_region_ensure(r->kr, (c + i) * r->chunk_bytes, r->chunk_bytes))
				atomic_fetch_add(&shim_stats.restored_chunks, 1);
		}
	}
}

static void shim_fork_prepare(void)
{
	shim_depth++;
	pthread_mutex_lock(&shim_lock);
	for (struct shim_region *r = shim_regions; r; r = r->next) {
		struct kvmm_region_stats st;

		if (r->kr && !kvmm_region_stats(r->kr, &st) && st.flash_bytes)
			shim_fork_restore(r);
	}
}

static void shim_fork_parent(void)
{
	pthread_mutex_unlock(&shim_lock);
	shim_depth--;
}

/* Copies the region's chunks that hold data into private memory. */
static void shim_fork_private(struct shim_region *r)
{
	if (shim_privatize(r->base, r->bytes, r->kr, r->chunk_bytes))
		shim_say("fork: could not copy routed memory at %p into the child", r->base);
}

static void shim_fork_child(void)
{
	uint64_t reserved = 0;

	for (struct shim_region *r = shim_regions; r; r = r->next) {
		if (r->kr && r->pool->mode == KVMM_MODE_KERNEL)
			shim_fork_private(r);
		r->kr = NULL; /* the parent's; its memory here is the child's own */
		r->orphan = true;
		reserved += r->bytes;
	}
	for (uint32_t i = 0; i < SHIM_MAX_POOLS; i++) {
		struct kvmm_ctx *ctx = shim_pools[i].ctx;

		/* The parent's context: its threads are not here. Only its
		 * userfaultfd is closed, so it does not outlive the parent. */
		if (ctx && ctx->mode == KVMM_MODE_USER && ctx->uffd >= 0)
			close(ctx->uffd);
		shim_pools[i].ctx = NULL;
		shim_pools[i].failed = false;
		shim_pools[i].resident_peak = 0;
	}
	shim_plain_memset(&shim_stats, 0, sizeof(shim_stats));
	atomic_store(&shim_stats.reserved_bytes, reserved);
	shim_caller_reset();
	shim_evict_fork_child();
	shim_gpu_fork_child();
	shim_control_fork_child();
	pthread_mutex_unlock(&shim_lock);
	shim_depth--;
}

void shim_fork_install(void)
{
	pthread_atfork(shim_fork_prepare, shim_fork_parent, shim_fork_child);
}

/* Drops every LD_PRELOAD entry naming libkvmm-preload. */
void shim_children_env(void)
{
	const char *v = getenv("KVMM_PRELOAD_CHILDREN");
	const char *pre = getenv("LD_PRELOAD");
	char out[4096];
	size_t n = 0;

	if (!v || strcmp(v, "0") || !pre)
		return;
	for (const char *s = pre; *s;) {
		size_t len = strcspn(s, ": ");

		if (len && !memmem(s, len, "libkvmm-preload", 15) && n + len + 2 < sizeof(out)) {
			if (n)
				out[n++] = ':';
			memcpy(out + n, s, len);
			n += len;
		}
		s += len;
		s += *s ? 1 : 0;
	}
	out[n] = 0;
	if (n)
		setenv("LD_PRELOAD", out, 1);
	else
		unsetenv("LD_PRELOAD");
}
