/* SPDX-License-Identifier: MIT */
/*
 * The host device of the slot core (kv.h): a cache's memory is host
 * regions mapped side by side in one PROT_NONE reservation; a slot grows
 * by ensure and shrinks by discard; swapped to DRAM it is one compact
 * copy, to flash its regions' own evict, one batch over every part.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kv.h"

/* kv->dev_data: per slot, the KVMM_SLOT_HOST copy (nparts x bytes), or NULL. */
struct kvmm_kv_host {
	void **copy;
};

static struct kvmm_kv_host *kvmm_host(const struct kvmm_kv *kv)
{
	return kv->dev_data;
}

/* One PROT_NONE reservation, chunk aligned; regions are mapped into it. */
static int kvmm_host_reserve(struct kvmm_kv *kv)
{
	uint64_t extra = kv->chunk_bytes;
	char *p = mmap(NULL, kv->geom.va_bytes + extra, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint64_t head;

	if (p == MAP_FAILED)
		return -ENOMEM;
	head = kvmm_round_up((uintptr_t)p, kv->chunk_bytes) - (uintptr_t)p;
	if (head)
		munmap(p, head);
	if (extra - head)
		munmap(p + head + kv->geom.va_bytes, extra - head);
	kv->va = (uintptr_t)(p + head);
	return 0;
}

static int kvmm_host_create(struct kvmm_kv *kv)
{
	struct kvmm_kv_config *c = &kv->cfg;
	struct kvmm_kv_host *h;
	int ret;

	if (!c->chunk_bytes)
		c->chunk_bytes = kv->ctx->chunk_bytes;
	if (c->chunk_bytes < kv->ctx->page_size || c->chunk_bytes > KVMM_CHUNK_MAX ||
	    (c->chunk_bytes & (c->chunk_bytes - 1)))
		return -EINVAL;
	kv->chunk_bytes = c->chunk_bytes;
	ret = kvmm_kv_geometry(c, kv->chunk_bytes, &kv->geom);
	if (ret)
		return ret;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	kv->dev_data = h;
	h->copy = calloc(c->max_slots, sizeof(*h->copy));
	if (!h->copy)
		return -ENOMEM;
	ret = kvmm_host_reserve(kv);
	return ret ? ret : kvmm_kv_regions_create(kv, kv->chunk_bytes, -1, true);
}

static void kvmm_host_destroy(struct kvmm_kv *kv)
{
	struct kvmm_kv_host *h = kvmm_host(kv);

	kvmm_kv_regions_destroy(kv);
	if (kv->va)
		munmap((void *)kv->va, kv->geom.va_bytes);
	for (uint32_t s = 0; h && h->copy && s < kv->cfg.max_slots; s++)
		free(h->copy[s]);
	if (h)
		free(h->copy);
	free(h);
	kv->dev_data = NULL;
}

/* Releases [from, to) of every part now (host memory has no late readers). */
static void kvmm_host_shrink(struct kvmm_kv *kv, uint32_t slot, uint64_t from, uint64_t to,
			     bool fenced)
{
	uint64_t off;

	(void)fenced;
	for (uint32_t p = 0; to > from && p < kv->geom.nparts; p++) {
		struct kvmm_region *r = kvmm_kv_part(kv, slot, p, &off);

		kvmm_region_discard(r, off + from, to - from);
	}
}

/* Maps [from, to) of every part (zero-filled, or read back from flash). */
static int kvmm_host_grow(struct kvmm_kv *kv, uint32_t slot, uint64_t from, uint64_t to, bool zero)
{
	uint64_t off;
	uint32_t p;
	int ret = 0;

	(void)zero; /* new host memory is always zero */
	for (p = 0; p < kv->geom.nparts && !ret; p++) {
		struct kvmm_region *r = kvmm_kv_part(kv, slot, p, &off);

		ret = kvmm_region_ensure(r, off + from, to - from);
	}
	if (ret) {
		/* All parts keep one length: undo the parts grown, and the failed one's start. */
		for (uint32_t q = 0; q < p; q++) {
			struct kvmm_region *r = kvmm_kv_part(kv, slot, q, &off);

			kvmm_region_discard(r, off + from, to - from);
		}
	}
	return ret;
}

/* [from, to) of every part of the slot, as one batch (one queue for all layers). */
static struct kvmm_range_span *kvmm_host_spans(struct kvmm_kv *kv, uint32_t slot, uint64_t from,
					       uint64_t to)
{
	struct kvmm_range_span *v = calloc(kv->geom.nparts, sizeof(*v));

	for (uint32_t p = 0; v && p < kv->geom.nparts; p++) {
		v[p].r = kvmm_kv_part(kv, slot, p, &v[p].offset);
		v[p].offset += from;
		v[p].length = to - from;
	}
	return v;
}

/* Copies each part past what stays shared (j->keep) into one DRAM buffer. */
static int kvmm_host_out_dram(struct kvmm_kv_swap *j)
{
	struct kvmm_kv *kv = j->kv;
	uint64_t off, n = j->bytes - j->keep;
	char *buf;

	if (!n)
		return 0;
	buf = malloc(n * kv->geom.nparts);
	if (!buf)
		return -ENOMEM;
	for (uint32_t p = 0; p < kv->geom.nparts; p++) {
		struct kvmm_region *r = kvmm_kv_part(kv, j->slot, p, &off);

		memcpy(buf + p * n, (char *)kvmm_region_base(r) + off + j->keep, n);
	}
	kvmm_host(kv)->copy[j->slot] = buf;
	return 0;
}

/*
 * Out: evict every part past what stays on the device (j->keep: shared
 * chunks a slot there maps; a shared chunk evicted here goes to flash once
 * for every slot that shares it); on failure bring back what already went,
 * so the slot stays usable. In: ensure every part (a shared chunk is read
 * back once for all its slots); each is tried, so one bad chunk does not
 * hold back the rest.
 */
static int kvmm_host_flash(struct kvmm_kv_swap *j, bool out)
{
	uint32_t n = j->kv->geom.nparts;
	uint64_t from = out ? j->keep : 0;
	struct kvmm_range_span *v;
	int ret;

	if (j->bytes <= from)
		return 0;
	v = kvmm_host_spans(j->kv, j->slot, from, j->bytes);
	if (!v)
		return -ENOMEM;
	if (out) {
		ret = kvmm_region_evict_many(v, n);
		if (ret && kvmm_region_ensure_many(v, n))
			j->stuck = true; /* partly on flash: swap_in retries */
	} else {
		ret = kvmm_region_ensure_many(v, n);
	}
	free(v);
	return ret;
}

static int kvmm_host_copy_out(struct kvmm_kv_swap *j)
{
	int ret = j->to == KVMM_SLOT_HOST ? kvmm_host_out_dram(j) : kvmm_host_flash(j, true);

	if (!ret) /* what the copy holds, or what was only mapped ahead, goes */
		kvmm_host_shrink(j->kv, j->slot, j->to == KVMM_SLOT_HOST ? j->keep : j->bytes,
				 j->mapped, false);
	return ret;
}

static int kvmm_host_in_dram(struct kvmm_kv_swap *j)
{
	struct kvmm_kv *kv = j->kv;
	char *buf = kvmm_host(kv)->copy[j->slot];
	uint64_t off, n = j->bytes - j->keep; /* the shared prefix stayed in place */
	uint32_t p;
	int ret = 0;

	for (p = 0; n && p < kv->geom.nparts && !ret; p++) {
		struct kvmm_region *r = kvmm_kv_part(kv, j->slot, p, &off);

		ret = kvmm_region_ensure(r, off + j->keep, n);
		if (!ret)
			memcpy((char *)kvmm_region_base(r) + off + j->keep, buf + p * n, n);
	}
	if (ret) {
		kvmm_host_shrink(kv, j->slot, j->keep, j->bytes, false);
		return ret;
	}
	free(buf);
	kvmm_host(kv)->copy[j->slot] = NULL;
	return 0;
}

/* The slot arrives whole: its layers are published when the swap ends. */
static int kvmm_host_copy_in(struct kvmm_kv_swap *j)
{
	return j->from == KVMM_SLOT_HOST ? kvmm_host_in_dram(j) : kvmm_host_flash(j, false);
}

/*
 * @dst maps @src's first @shared bytes of every part (kvmm_region_share:
 * the same pages, copy-on-write), and a chunk of its own after them with
 * a copy of the next @tail bytes. On failure @dst has nothing again.
 */
static int kvmm_host_share(struct kvmm_kv *kv, uint32_t dst, uint32_t src, uint64_t shared,
			   uint64_t tail)
{
	uint64_t doff, soff;
	uint32_t p;
	int ret = 0;

	for (p = 0; p < kv->geom.nparts && !ret; p++) {
		struct kvmm_region *rd = kvmm_kv_part(kv, dst, p, &doff);
		struct kvmm_region *rs = kvmm_kv_part(kv, src, p, &soff);

		if (shared)
			ret = kvmm_region_share(rd, doff, rs, soff, shared);
		if (!ret && tail)
			ret = kvmm_region_ensure(rd, doff + shared, kv->chunk_bytes);
		if (!ret && tail)
			memcpy((char *)kvmm_region_base(rd) + doff + shared,
			       (char *)kvmm_region_base(rs) + soff + shared, tail);
	}
	if (ret)
		kvmm_host_shrink(kv, dst, 0, shared + kv->chunk_bytes, false);
	return ret;
}

/* Chunks nobody on the device maps any more: to flash, once (the regions
 * drop a shared chunk from every range that shares it). */
static void kvmm_host_share_settle(struct kvmm_kv *kv, uint32_t slot, uint64_t from, uint64_t to)
{
	struct kvmm_range_span *v = kvmm_host_spans(kv, slot, from, to);

	if (v)
		kvmm_region_evict_many(v, kv->geom.nparts);
	free(v);
}

const struct kvmm_kv_device kvmm_kv_host_device = {
    .policy_tier = KVMM_TIER_FLASH,
    /* DRAM the cache holds: mapped memory and DRAM copies. */
    .charged = 1U << KVMM_SLOT_FREE | 1U << KVMM_SLOT_ACTIVE | 1U << KVMM_SLOT_HOST,
    .keeps_shared = true,
    .create = kvmm_host_create,
    .destroy = kvmm_host_destroy,
    .grow = kvmm_host_grow,
    .shrink = kvmm_host_shrink,
    .copy_out = kvmm_host_copy_out,
    .copy_in = kvmm_host_copy_in,
    .share = kvmm_host_share,
    .share_settle = kvmm_host_share_settle,
};
