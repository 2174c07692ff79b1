/* SPDX-License-Identifier: MIT */
/* Staging buffers for flash I/O, placed on a chosen NUMA node when there is one. */
#include <numa.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

/* Returns page-aligned, zeroed memory or NULL. *node_used is the node the
 * memory was bound to, or -1 when it follows the default policy (no node
 * asked for, or libnuma reports NUMA unavailable). */
void *kvmm_staging_alloc(uint64_t bytes, int node, int *node_used)
{
	void *p = MAP_FAILED;

	*node_used = -1;
	if (node >= 0 && numa_available() >= 0 && node <= numa_max_node()) {
		p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return NULL;
		numa_tonode_memory(p, bytes, node);
		*node_used = node;
	} else {
		p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return NULL;
	}
	/* Fault it in now, on the bound node, not on the first I/O. */
	memset(p, 0, bytes);
	return p;
}

void kvmm_staging_free(void *p, uint64_t bytes)
{
	if (p)
		munmap(p, bytes);
}
