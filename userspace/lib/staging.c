/* SPDX-License-Identifier: MIT */
/* Staging buffers for flash I/O, placed on a chosen NUMA node when there is one. */
#include <numa.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

#define KVMM_HUGE (2ULL << 20)

/*
 * Maps @bytes aligned to 2 MiB and asks for transparent huge pages: a
 * buffer made of whole huge pages is physically contiguous, so a chunk's
 * I/O is a few large segments instead of one per 4 KiB page.
 */
static void *kvmm_staging_map(uint64_t bytes)
{
	uint64_t len;
	char *p, *a;

	bytes = kvmm_round_up(bytes, KVMM_HUGE);
	len = bytes + KVMM_HUGE;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	a = (char *)kvmm_round_up((uintptr_t)p, KVMM_HUGE);
	if (a > p)
		munmap(p, a - p);
	if (p + len > a + bytes)
		munmap(a + bytes, p + len - (a + bytes));
	madvise(a, bytes, MADV_HUGEPAGE); /* advice only: 4 KiB pages still work */
	return a;
}

/* Returns zeroed memory aligned to 2 MiB, or NULL. *node_used is the node
 * the memory was bound to, or -1 when it follows the default policy (no
 * node asked for, or libnuma reports NUMA unavailable). */
void *kvmm_staging_alloc(uint64_t bytes, int node, int *node_used)
{
	void *p;

	*node_used = -1;
	p = kvmm_staging_map(bytes);
	if (!p)
		return NULL;
	if (node >= 0 && numa_available() >= 0 && node <= numa_max_node()) {
		numa_tonode_memory(p, bytes, node);
		*node_used = node;
	}
	/* Fault it in now, on the bound node, not on the first I/O. */
	memset(p, 0, bytes);
	return p;
}

void kvmm_staging_free(void *p, uint64_t bytes)
{
	if (p)
		munmap(p, kvmm_round_up(bytes, KVMM_HUGE));
}
