/* SPDX-License-Identifier: MIT */
/*
 * Zeroing routed memory without touching it. A chunk still empty already
 * reads as zeros: zeroing it costs nothing. A whole chunk that holds data
 * (resident or on flash) is given back (kvmm_region_discard) and reads as
 * zeros again. Only the partial chunks at the edges of the range are
 * written. madvise(DONTNEED, FREE, REMOVE) on routed memory takes the same
 * path; the kernel's own would drop pages behind libkvmm's back.
 */
#include <errno.h>
#include <sys/mman.h>

#include "shim.h"

static uint64_t shim_down(uint64_t v, uint64_t a)
{
	return v / a * a;
}

static uint64_t shim_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

/* Gives back whole chunks [first, first + nr) of @r; counts what held data. */
static void shim_discard_chunks(struct shim_region *r, uint64_t first, uint64_t nr)
{
	uint8_t st[256];
	uint64_t had = 0;

	for (uint64_t c = first; c < first + nr;) {
		uint64_t k = first + nr - c < 256 ? first + nr - c : 256;

		if (kvmm_region_query(r->kr, c, k, st))
			break;
		for (uint64_t i = 0; i < k; i++) {
			if ((st[i] & KVMM_STATE_MASK) != KVMM_STATE_EMPTY)
				had++;
		}
		c += k;
	}
	if (!had)
		return; /* nothing there: nothing to do */
	if (kvmm_region_discard(r->kr, first * r->chunk_bytes, nr * r->chunk_bytes) == -EBUSY) {
		/* Pinned chunks keep their memory and are written. */
		for (uint64_t c = first; c < first + nr; c++) {
			if (kvmm_region_discard(r->kr, c * r->chunk_bytes, r->chunk_bytes))
				shim_real.memset(r->base + c * r->chunk_bytes, 0, r->chunk_bytes);
		}
	}
	atomic_fetch_add(&shim_stats.zero_discarded_chunks, had);
}

/*
 * Splits [p, p+n) into the part outside @r (the caller handles it), the
 * partial chunks inside and the whole chunks inside.
 */
struct shim_split {
	uintptr_t a, e;	 /* [a, e): the part inside the region */
	uint64_t cs, ce; /* whole chunks [cs, ce) (offsets), cs >= ce if none */
};

static struct shim_split shim_split(struct shim_region *r, uintptr_t p, size_t n)
{
	uintptr_t b = (uintptr_t)r->base;
	struct shim_split s;

	s.a = p < b ? b : p;
	s.e = p + n > b + r->bytes ? b + r->bytes : p + n;
	s.cs = shim_up(s.a - b, r->chunk_bytes);
	s.ce = shim_down(s.e - b, r->chunk_bytes);
	return s;
}

/*
 * The routed region holding [p, p+n), with shim_lock held and the shim's
 * own calls marked (shim_depth), or NULL (not routed, or being torn down)
 * with nothing held. shim_region_unlock() ends it.
 */
static struct shim_region *shim_region_lock(void *p, size_t n)
{
	uint32_t id = shim_ranges_find((uintptr_t)p, n);
	struct shim_region *r;

	if (!id)
		return NULL;
	shim_depth++;
	pthread_mutex_lock(&shim_lock);
	r = shim_region_by_id(id);
	if (r && r->kr)
		return r;
	pthread_mutex_unlock(&shim_lock);
	shim_depth--;
	return NULL;
}

static void shim_region_unlock(void)
{
	pthread_mutex_unlock(&shim_lock);
	shim_depth--;
}

bool shim_zero(void *p, size_t n)
{
	struct shim_region *r = shim_region_lock(p, n);
	struct shim_split s;
	uintptr_t b;

	if (!r)
		return false;
	s = shim_split(r, (uintptr_t)p, n);
	b = (uintptr_t)r->base;
	atomic_fetch_add(&shim_stats.zero_calls, 1);
	/* Outside the region: written as usual. */
	if ((uintptr_t)p < s.a)
		shim_real.memset(p, 0, s.a - (uintptr_t)p);
	if ((uintptr_t)p + n > s.e)
		shim_real.memset((void *)s.e, 0, (uintptr_t)p + n - s.e);
	if (s.cs >= s.ce) {
		shim_real.memset((void *)s.a, 0, s.e - s.a);
		atomic_fetch_add(&shim_stats.zero_written_bytes, s.e - s.a);
	} else {
		shim_real.memset((void *)s.a, 0, b + s.cs - s.a);
		shim_real.memset((void *)(b + s.ce), 0, s.e - (b + s.ce));
		atomic_fetch_add(&shim_stats.zero_written_bytes,
				 (b + s.cs - s.a) + (s.e - b - s.ce));
		shim_discard_chunks(r, s.cs / r->chunk_bytes, (s.ce - s.cs) / r->chunk_bytes);
		atomic_fetch_add(&shim_stats.zero_elided_bytes, s.ce - s.cs);
	}
	shim_region_unlock();
	return true;
}

bool shim_madvise(void *p, size_t n, int advice, int *ret)
{
	struct shim_region *r;
	struct shim_split s;
	uintptr_t b;

	switch (advice) {
	case MADV_DONTFORK:
	case MADV_DOFORK:
	case MADV_DONTDUMP:
	case MADV_DODUMP:
		return false; /* about the mapping, not its pages: the kernel's */
	default:
		break;
	}
	r = shim_region_lock(p, n);
	if (!r)
		return false;
	s = shim_split(r, (uintptr_t)p, n);
	b = (uintptr_t)r->base;
	*ret = 0;
	if ((uintptr_t)p < s.a)
		*ret |= shim_real.madvise(p, s.a - (uintptr_t)p, advice);
	if ((uintptr_t)p + n > s.e)
		*ret |= shim_real.madvise((void *)s.e, (uintptr_t)p + n - s.e, advice);
	if (advice == MADV_DONTNEED || advice == MADV_REMOVE || advice == MADV_FREE) {
		/* Partial chunks: DONTNEED and REMOVE promise zeros, FREE does not. */
		bool zero = advice != MADV_FREE;
		uint64_t head_end = s.cs < s.ce ? b + s.cs : s.e;

		if (zero)
			shim_real.memset((void *)s.a, 0, head_end - s.a);
		if (s.cs < s.ce) {
			if (zero)
				shim_real.memset((void *)(b + s.ce), 0, s.e - (b + s.ce));
			shim_discard_chunks(r, s.cs / r->chunk_bytes,
					    (s.ce - s.cs) / r->chunk_bytes);
			atomic_fetch_add(&shim_stats.madvise_chunks,
					 (s.ce - s.cs) / r->chunk_bytes);
		}
	}
	/* Other advice (WILLNEED, HUGEPAGE, COLD, PAGEOUT, ...) would fight
	 * libkvmm over the pages: accepted and ignored. */
	shim_region_unlock();
	return true;
}
