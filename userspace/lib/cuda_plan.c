/* SPDX-License-Identifier: MIT */
/* GPU region planning: pure functions (declared in cuda_plan.h). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <string.h>

#include "cuda_plan.h"

int kvmm_cuda_chunk_size(uint64_t want, uint64_t gran, uint64_t *chunk)
{
	if (!gran)
		return -EINVAL;
	if (!want) /* the default, never below what the driver can map */
		want = (KVMM_CUDA_DEFAULT_CHUNK + gran - 1) / gran * gran;
	if (want % gran || want > KVMM_CUDA_MAX_CHUNK)
		return -EINVAL;
	*chunk = want;
	return 0;
}

int kvmm_cuda_shadow_chunk(uint64_t gpu_chunk, uint64_t page, uint32_t *shadow)
{
	uint64_t c = gpu_chunk & -gpu_chunk; /* largest power of two dividing it */

	if (!gpu_chunk || !page)
		return -EINVAL;
	if (c > (2U << 20))
		c = 2U << 20;
	if (c < page)
		return -EINVAL;
	*shadow = (uint32_t)c;
	return 0;
}

size_t kvmm_cuda_plan(const uint8_t *state, uint64_t first, uint64_t nr, uint8_t from,
		      struct kvmm_cuda_run *runs, size_t max)
{
	size_t n = 0;

	for (uint64_t c = first; c < first + nr;) {
		uint64_t e = c;

		if (state[c] != from) {
			c++;
			continue;
		}
		while (e < first + nr && state[e] == from)
			e++;
		if (n < max)
			runs[n] = (struct kvmm_cuda_run){.first = c, .nr = e - c};
		n++;
		c = e;
	}
	return n;
}

void kvmm_cuda_fence_push(struct kvmm_cuda_fences *l, struct kvmm_cuda_fence *f)
{
	struct kvmm_cuda_fence **pp = &l->head;

	while (*pp) /* appended: collect hands fences back oldest first */
		pp = &(*pp)->next;
	f->next = NULL;
	*pp = f;
	l->pending_chunks += f->nr * f->count;
}

struct kvmm_cuda_fence *kvmm_cuda_fence_collect(struct kvmm_cuda_fences *l,
						int (*passed)(void *arg, void *event), void *arg)
{
	struct kvmm_cuda_fence *done = NULL, **tail = &done, **pp = &l->head;

	while (*pp) {
		struct kvmm_cuda_fence *f = *pp;

		if (passed(arg, f->event) > 0) {
			*pp = f->next;
			l->pending_chunks -= f->nr * f->count;
			f->next = NULL;
			*tail = f;
			tail = &f->next;
		} else {
			pp = &f->next;
		}
	}
	return done;
}

struct kvmm_cuda_fence *kvmm_cuda_fence_find(const struct kvmm_cuda_fences *l, uint64_t first,
					     uint64_t nr)
{
	for (struct kvmm_cuda_fence *f = l->head; f; f = f->next) {
		for (uint64_t k = 0; k < f->count; k++) {
			uint64_t a = f->first + k * f->stride;

			if (a < first + nr && first < a + f->nr)
				return f;
		}
	}
	return NULL;
}

bool kvmm_cuda_fence_remove(struct kvmm_cuda_fences *l, struct kvmm_cuda_fence *f)
{
	for (struct kvmm_cuda_fence **pp = &l->head; *pp; pp = &(*pp)->next) {
		if (*pp == f) {
			*pp = f->next;
			l->pending_chunks -= f->nr * f->count;
			f->next = NULL;
			return true;
		}
	}
	return false;
}

int kvmm_cuda_numa_node(const char *sysfs, const char *busid)
{
	char path[512], id[64];
	size_t i;
	FILE *fp;
	int node = -1;

	for (i = 0; busid[i] && i < sizeof(id) - 1; i++)
		id[i] = (char)tolower((unsigned char)busid[i]);
	id[i] = 0;
	if (!i || busid[i] || strchr(id, '/'))
		return -1;
	snprintf(path, sizeof(path), "%s/bus/pci/devices/%s/numa_node", sysfs, id);
	fp = fopen(path, "re");
	if (!fp)
		return -1;
	if (fscanf(fp, "%d", &node) != 1 || node < 0)
		node = -1;
	fclose(fp);
	return node;
}
