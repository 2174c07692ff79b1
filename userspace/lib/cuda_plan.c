/* SPDX-License-Identifier: MIT */
/* GPU region planning: pure functions (declared in cuda_plan.h). */
#include <dirent.h>
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
						int (*passed)(void *arg, void *event), void *arg,
						int *err)
{
	struct kvmm_cuda_fence *done = NULL, **tail = &done, **pp = &l->head;

	while (*pp) {
		struct kvmm_cuda_fence *f = *pp;
		int r = passed(arg, f->event);

		if (r < 0 && err && !*err)
			*err = r;
		if (r > 0) {
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

/* sysfs's name for a PCI bus id ("0000:3B:00.0", or with the 8-digit
 * domain nvidia-smi prints): "0000:3b:00.0". -1 when it is not one. */
static int kvmm_pci_name(const char *busid, char *id, size_t len)
{
	unsigned dom, bus, dev, fn;
	int end = 0;

	if (sscanf(busid, "%x:%x:%x.%x%n", &dom, &bus, &dev, &fn, &end) != 4 || busid[end] ||
	    dom > 0xffff || bus > 0xff || dev > 0x1f || fn > 7)
		return -1;
	snprintf(id, len, "%04x:%02x:%02x.%x", dom, bus, dev, fn);
	return 0;
}

int kvmm_cuda_numa_node(const char *sysfs, const char *busid)
{
	char path[512], id[64];
	FILE *fp;
	int node = -1;

	if (kvmm_pci_name(busid, id, sizeof(id)))
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

/* A value of a PCI device's sysfs file (hex, as "0x10de"); -1 when unreadable. */
static long kvmm_pci_attr(const char *dir, const char *name, const char *attr)
{
	char path[512];
	long v = -1;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s/%s", dir, name, attr);
	fp = fopen(path, "re");
	if (!fp)
		return -1;
	if (fscanf(fp, "%li", &v) != 1)
		v = -1;
	fclose(fp);
	return v;
}

static bool kvmm_pci_is_nvidia_gpu(const char *dir, const char *name)
{
	long cls = kvmm_pci_attr(dir, name, "class");

	/* 0x0300xx VGA-compatible, 0x0302xx 3D controller (the data center parts). */
	return kvmm_pci_attr(dir, name, "vendor") == 0x10de &&
	       (cls >> 8 == 0x0300 || cls >> 8 == 0x0302);
}

int kvmm_cuda_ledger_index(const char *sysfs, const char *busid)
{
	char dir[512], id[64];
	struct dirent *e;
	bool found = false;
	int below = 0;
	DIR *d;

	if (kvmm_pci_name(busid, id, sizeof(id)))
		return -1;
	snprintf(dir, sizeof(dir), "%s/bus/pci/devices", sysfs);
	d = opendir(dir);
	if (!d)
		return -1;
	/* Names are fixed-width lower-case hex (dddd:bb:dd.f): strcmp is PCI order. */
	while ((e = readdir(d))) {
		int c = strcmp(e->d_name, id);

		if (e->d_name[0] == '.' || !kvmm_pci_is_nvidia_gpu(dir, e->d_name))
			continue;
		if (!c)
			found = true;
		else if (c < 0)
			below++;
	}
	closedir(d);
	return found ? below : -1;
}
