/* SPDX-License-Identifier: MIT */
/*
 * User-mode host regions: anonymous memory registered with userfaultfd.
 * Chunks become resident whole (UFFDIO_COPY of zeros or of data read back
 * from flash), so a resident chunk never faults, and evicted chunks fault
 * into the handler instead of reading zeros.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <linux/userfaultfd.h>

#include "internal.h"

#define ST(r, c) ((r)->state[c] & KVMM_STATE_MASK)

static char *kvmm_chunk_addr(struct kvmm_region *r, uint64_t c)
{
	return r->base + c * r->chunk_bytes;
}

static int kvmm_user_create(struct kvmm_region *r, const struct kvmm_region_config *cfg)
{
	struct uffdio_register reg;
	int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
	void *p;

	r->state = calloc(r->nr_chunks, 1);
	r->pins = calloc(r->nr_chunks, sizeof(*r->pins));
	r->slot = malloc(r->nr_chunks * sizeof(*r->slot));
	if (!r->state || !r->pins || !r->slot)
		goto nomem;
	for (uint64_t c = 0; c < r->nr_chunks; c++)
		r->slot[c] = KVMM_NO_SLOT;
	if (cfg->addr)
		flags |= MAP_FIXED;
	p = mmap(cfg->addr, r->bytes, PROT_READ | PROT_WRITE, flags, -1, 0);
	if (p == MAP_FAILED)
		goto nomem;
	r->base = p;
	/* THP would fill a whole 2 MiB on one fault behind our back. */
	madvise(p, r->bytes, MADV_NOHUGEPAGE);
	memset(&reg, 0, sizeof(reg));
	reg.range.start = (uintptr_t)p;
	reg.range.len = r->bytes;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(r->ctx->uffd, UFFDIO_REGISTER, &reg) < 0) {
		int err = -errno;

		munmap(p, r->bytes);
		r->base = NULL;
		free(r->state);
		free(r->pins);
		free(r->slot);
		return err;
	}
	return 0;
nomem:
	free(r->state);
	free(r->pins);
	free(r->slot);
	return -ENOMEM;
}

static void kvmm_user_destroy(struct kvmm_region *r)
{
	struct uffdio_range range = {.start = (uintptr_t)r->base, .len = r->bytes};
	struct kvmm_flash *f = r->ctx->flash;

	pthread_mutex_lock(&r->lock);
	for (uint64_t c = 0; r->grp && c < r->nr_chunks; c++) {
		if (!r->grp[c])
			continue;
		pthread_mutex_lock(&r->ctx->share_lock);
		kvmm_share_wait(r->ctx, r->grp[c], NULL);
		kvmm_share_leave(r, c, false);
		pthread_mutex_unlock(&r->ctx->share_lock);
	}
	pthread_mutex_unlock(&r->lock);
	ioctl(r->ctx->uffd, UFFDIO_UNREGISTER, &range);
	if (r->fixed)
		mmap(r->base, r->bytes, PROT_NONE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	else
		munmap(r->base, r->bytes);
	for (uint64_t c = 0; f && c < r->nr_chunks; c++) {
		if (r->slot[c] != KVMM_NO_SLOT)
			kvmm_flash_slot_free(f, r->slot[c]);
	}
	free(r->state);
	free(r->pins);
	free(r->slot);
	free(r->grp);
}

/*
 * Waits until no chunk of the range is in flight. Called with r->lock held.
 * A wait drops the lock, so another thread may have started I/O on a chunk
 * already looked at: the range is looked at again from its start.
 */
static void kvmm_user_wait_idle(struct kvmm_region *r, uint64_t first, uint64_t nr)
{
	uint64_t c = first;

	while (c < first + nr) {
		if (r->state[c] & KVMM_STATE_IN_FLIGHT) {
			pthread_cond_wait(&r->cond, &r->lock);
			c = first;
		} else {
			c++;
		}
	}
}

/* A failed read-back may have poisoned the chunk: clear that to refill. */
static void kvmm_user_unpoison(struct kvmm_region *r, uint64_t c)
{
	if (r->state[c] & KVMM_STATE_ERROR)
		kvmm_uffd_unpoison(r->ctx, kvmm_chunk_addr(r, c), r->chunk_bytes);
}

/* UFFDIO_COPY of a whole chunk; one that stops part way is undone, so the
 * chunk stays empty and can be filled again. */
/* A fault on chunk @c that cannot be served: SIGBUS (or SIGSEGV, see
 * kvmm_uffd_poison) for the thread, never wrong data. r->lock held. */
static void kvmm_user_fault_fail(struct kvmm_region *r, uint64_t c)
{
	r->fault_failures++;
	r->state[c] |= KVMM_STATE_ERROR;
	kvmm_uffd_poison(r->ctx, kvmm_chunk_addr(r, c), r->chunk_bytes);
}

static int kvmm_user_copy(struct kvmm_region *r, uint64_t c, const void *src)
{
	int ret = kvmm_uffd_copy(r->ctx, kvmm_chunk_addr(r, c), src, r->chunk_bytes);

	if (ret)
		madvise(kvmm_chunk_addr(r, c), r->chunk_bytes, MADV_DONTNEED);
	return ret;
}

static int kvmm_user_zero_fill(struct kvmm_region *r, uint64_t c)
{
	int ret;

	kvmm_user_unpoison(r, c);
	ret = kvmm_user_copy(r, c, r->ctx->zero_chunk);

	if (!ret) {
		r->state[c] = KVMM_STATE_RESIDENT;
		r->zero_fills++;
	}
	return ret;
}

struct kvmm_user_fill {
	struct kvmm_region *r;
	uint64_t c;
	struct kvmm_share_grp *g; /* a shared chunk's I/O, once for all its members */
};

static int kvmm_user_deliver(void *arg, const void *buf, uint32_t len)
{
	struct kvmm_user_fill *fill = arg;

	(void)len;   /* always the chunk */
	if (fill->g) /* into the shared extent; every member maps it once the batch settles */
		return kvmm_share_store(fill->r->ctx, fill->g, buf);
	return kvmm_user_copy(fill->r, fill->c, buf);
}

/*
 * The chunk I/Os of one batch, gathered span by span under each region's
 * lock and run through the store together, so a slot spread over many
 * regions (one per layer) still keeps the queue full.
 */
struct kvmm_user_batch {
	struct kvmm_flash_io *ios;
	struct kvmm_user_fill *fills; /* the region and chunk of each I/O */
	uint32_t n, cap;
	uint32_t *span_end; /* span i's I/Os end at index span_end[i] */
};

static int kvmm_user_batch_init(struct kvmm_user_batch *b, uint32_t nspans)
{
	memset(b, 0, sizeof(*b));
	b->span_end = calloc(nspans, sizeof(*b->span_end));
	return b->span_end ? 0 : -ENOMEM;
}

static int kvmm_user_batch_grow(struct kvmm_user_batch *b, uint64_t more)
{
	uint64_t want = (uint64_t)b->n + more;
	struct kvmm_flash_io *ios;
	struct kvmm_user_fill *fills;

	if (want <= b->cap)
		return 0;
	if (want > UINT32_MAX)
		return -ENOMEM;
	ios = realloc(b->ios, want * sizeof(*ios));
	if (!ios)
		return -ENOMEM;
	b->ios = ios;
	fills = realloc(b->fills, want * sizeof(*fills));
	if (!fills)
		return -ENOMEM;
	b->fills = fills;
	b->cap = want;
	return 0;
}

static void kvmm_user_batch_free(struct kvmm_user_batch *b)
{
	free(b->ios);
	free(b->fills);
	free(b->span_end);
}

/* The index of span @i's first I/O. */
static uint32_t kvmm_user_span_start(const struct kvmm_user_batch *b, uint32_t i)
{
	return i ? b->span_end[i - 1] : 0;
}

/*
 * Shared chunk @c of @r in a fill: its read is queued once per batch for
 * every member; a chunk that another batch moves is waited for first.
 * r->lock held.
 */
static int kvmm_user_share_fill(struct kvmm_region *r, uint64_t c, struct kvmm_user_batch *b)
{
	struct kvmm_share_grp *g = r->grp[c];
	int ret = 0;

	pthread_mutex_lock(&r->ctx->share_lock);
	kvmm_share_wait(r->ctx, g, b);
	if (!(g->state & KVMM_STATE_IN_FLIGHT) && (g->state & KVMM_STATE_MASK) == KVMM_STATE_FLASH)
		ret = kvmm_user_batch_grow(b, 1);
	if (!ret && !(g->state & KVMM_STATE_IN_FLIGHT) &&
	    (g->state & KVMM_STATE_MASK) == KVMM_STATE_FLASH) {
		if (r->state[c] & KVMM_STATE_ERROR) /* this member's poisoned fault */
			kvmm_user_unpoison(r, c);
		r->state[c] &= ~KVMM_STATE_ERROR;
		g->state |= KVMM_STATE_READING;
		g->batch = b;
		b->fills[b->n] = (struct kvmm_user_fill){.r = r, .c = c, .g = g};
		b->ios[b->n] = (struct kvmm_flash_io){
		    .slot = g->slot,
		    .len = g->bytes,
		    .tag = g->tag,
		    .deliver = kvmm_user_deliver,
		};
		b->n++;
	}
	pthread_mutex_unlock(&r->ctx->share_lock);
	return ret;
}

/*
 * Shared chunk @c of @r in an evict: written once per batch, from this
 * member's range, unless a member pinned it or wrote to it since it was
 * shared (its own pages would be lost): then it stays resident, as pinned
 * chunks do. r->lock held.
 */
static int kvmm_user_share_evict(struct kvmm_flash *f, struct kvmm_region *r, uint64_t c,
				 struct kvmm_user_batch *b)
{
	struct kvmm_ctx *ctx = r->ctx;
	struct kvmm_share_grp *g = r->grp[c];
	uint32_t slot;
	int ret = 0;

	pthread_mutex_lock(&ctx->share_lock);
	kvmm_share_wait(ctx, g, b);
	if ((g->state & KVMM_STATE_IN_FLIGHT) ||
	    (g->state & KVMM_STATE_MASK) != KVMM_STATE_RESIDENT || kvmm_share_pinned(g) ||
	    kvmm_share_written(ctx, g))
		goto out;
	ret = kvmm_flash_slot_alloc(f, &slot);
	if (ret)
		goto out;
	g->state |= KVMM_STATE_WRITING;
	g->batch = b;
	b->fills[b->n] = (struct kvmm_user_fill){.r = r, .c = c, .g = g};
	b->ios[b->n] = (struct kvmm_flash_io){
	    .write = true,
	    .slot = slot,
	    .len = g->bytes,
	    .tag = g->tag,
	    .src = kvmm_chunk_addr(r, c),
	};
	b->n++;
out:
	pthread_mutex_unlock(&ctx->share_lock);
	return ret;
}

/*
 * After a batch ran, before its spans settle: every shared chunk it moved
 * is mapped at all its members (read back) or leaves their memory (written),
 * and whoever waits for it is woken. A failed read wakes the members but
 * the faulting one (@fault), which its span poisons.
 */
static void kvmm_user_share_settle(struct kvmm_ctx *ctx, struct kvmm_user_batch *b, bool write,
				   bool fault)
{
	bool any = false;

	for (uint32_t k = 0; k < b->n; k++) {
		struct kvmm_share_grp *g = b->fills[k].g;
		int res = b->ios[k].result;

		if (!g)
			continue;
		if (!any)
			pthread_mutex_lock(&ctx->share_lock);
		any = true;
		g->state &= ~KVMM_STATE_IN_FLIGHT;
		g->batch = NULL;
		if (write && !res) {
			g->slot = b->ios[k].slot;
			g->state = KVMM_STATE_FLASH;
			kvmm_share_map_members(ctx, g, false);
			kvmm_share_drop_memory(ctx, g);
		} else if (write) {
			kvmm_flash_slot_free(ctx->flash, b->ios[k].slot);
		} else if (!res) {
			kvmm_flash_slot_free(ctx->flash, g->slot);
			g->slot = KVMM_NO_SLOT;
			g->state = KVMM_STATE_RESIDENT;
			kvmm_share_map_members(ctx, g, true);
		} else {
			g->state |= KVMM_STATE_ERROR;
			for (uint32_t i = 0; i < g->nm; i++) {
				const struct kvmm_share_member *m = &g->m[i];

				if (fault && m->r == b->fills[k].r && m->c == b->fills[k].c)
					continue;
				kvmm_uffd_wake(ctx, kvmm_chunk_addr(m->r, m->c), m->r->chunk_bytes);
			}
		}
	}
	if (any) {
		pthread_cond_broadcast(&ctx->share_cond);
		pthread_mutex_unlock(&ctx->share_lock);
	}
}

/*
 * One span's part of a fill: zero-fills empty chunks (with @zero) and
 * queues the flash chunks' reads, marked READING.
 */
static int kvmm_user_fill_collect(const struct kvmm_chunk_span *sp, bool zero,
				  struct kvmm_user_batch *b)
{
	struct kvmm_region *r = sp->r;
	uint64_t m = 0;
	int ret = 0;

	pthread_mutex_lock(&r->lock);
	kvmm_user_wait_idle(r, sp->first, sp->nr);
	for (uint64_t c = sp->first; c < sp->first + sp->nr; c++) {
		if (kvmm_share_of(r, c))
			ret = kvmm_user_share_fill(r, c, b);
		else if (ST(r, c) == KVMM_STATE_FLASH)
			m++;
		else if (ST(r, c) == KVMM_STATE_EMPTY && zero)
			ret = kvmm_user_zero_fill(r, c);
		if (ret)
			break;
	}
	if (!ret && m)
		ret = kvmm_user_batch_grow(b, m);
	for (uint64_t c = sp->first; !ret && m && c < sp->first + sp->nr; c++) {
		if (kvmm_share_of(r, c) || ST(r, c) != KVMM_STATE_FLASH)
			continue;
		kvmm_user_unpoison(r, c);
		r->state[c] |= KVMM_STATE_READING;
		b->fills[b->n] = (struct kvmm_user_fill){.r = r, .c = c};
		b->ios[b->n] = (struct kvmm_flash_io){
		    .slot = r->slot[c],
		    .len = r->chunk_bytes,
		    .tag = kvmm_region_tag(r, c),
		    .deliver = kvmm_user_deliver,
		};
		b->n++;
	}
	pthread_mutex_unlock(&r->lock);
	return ret;
}

/* Settles span @i's reads once the batch has run. */
static void kvmm_user_fill_finish(const struct kvmm_chunk_span *sp, struct kvmm_user_batch *b,
				  uint32_t i, bool fault)
{
	struct kvmm_region *r = sp->r;
	struct kvmm_flash *f = r->ctx->flash;

	pthread_mutex_lock(&r->lock);
	for (uint32_t k = kvmm_user_span_start(b, i); k < b->span_end[i]; k++) {
		uint64_t c = b->fills[k].c;

		if (b->fills[k].g) { /* settled for every member already */
			if (!b->ios[k].result) {
				r->flash_reads++;
				continue;
			}
			r->flash_errors++;
			if (fault)
				kvmm_user_fault_fail(r, c);
			continue;
		}
		r->state[c] &= ~KVMM_STATE_READING;
		if (b->ios[k].result) {
			r->flash_errors++;
			r->state[c] |= KVMM_STATE_ERROR;
			if (fault) {
				kvmm_user_fault_fail(r, c);
			} else {
				kvmm_uffd_wake(r->ctx, kvmm_chunk_addr(r, c), r->chunk_bytes);
			}
			continue;
		}
		kvmm_flash_slot_free(f, r->slot[c]);
		r->slot[c] = KVMM_NO_SLOT;
		r->state[c] = KVMM_STATE_RESIDENT;
		r->flash_reads++;
	}
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

/*
 * Reads the spans' chunks that are on flash back into memory, all through
 * one queue; with @zero, empty chunks are zero-filled too. -EIO when any
 * read fails; those chunks stay on flash, and a thread faulting on one gets
 * SIGBUS (with @fault, the chunk is poisoned) or faults again (it is woken).
 */
static int kvmm_user_fill(const struct kvmm_chunk_span *v, uint32_t nspans, bool zero, bool fault)
{
	struct kvmm_user_batch b;
	uint32_t i;
	int ret, err = 0;

	ret = kvmm_user_batch_init(&b, nspans);
	if (ret)
		return ret;
	for (i = 0; i < nspans && !ret; i++) {
		ret = kvmm_user_fill_collect(&v[i], zero, &b);
		b.span_end[i] = b.n;
	}
	for (; i < nspans; i++)
		b.span_end[i] = b.n;
	if (b.n) {
		for (uint32_t k = 0; k < b.n; k++)
			b.ios[k].arg = &b.fills[k];
		/* Chunks on flash: the store exists. */
		err = kvmm_flash_run(v[0].r->ctx->flash, b.ios, b.n);
		kvmm_user_share_settle(v[0].r->ctx, &b, false, fault);
		for (i = 0; i < nspans; i++)
			kvmm_user_fill_finish(&v[i], &b, i, fault);
	}
	kvmm_user_batch_free(&b);
	if (ret)
		return ret;
	return err ? (err == -ENOMEM ? err : -EIO) : 0;
}

static int kvmm_user_ensure_spans(const struct kvmm_chunk_span *v, uint32_t n)
{
	return kvmm_user_fill(v, n, true, false);
}

static int kvmm_user_ensure(struct kvmm_region *r, uint64_t first, uint64_t nr)
{
	struct kvmm_chunk_span sp = {.r = r, .first = first, .nr = nr};

	return kvmm_user_fill(&sp, 1, true, false);
}

static int kvmm_user_prefetch(struct kvmm_region *r, uint64_t first, uint64_t nr)
{
	struct kvmm_chunk_span sp = {.r = r, .first = first, .nr = nr};

	return kvmm_user_fill(&sp, 1, false, false);
}

/* r->lock held; the range is idle and has no pin. */
static void kvmm_user_discard_locked(struct kvmm_region *r, uint64_t first, uint64_t nr)
{
	for (uint64_t c = first; r->grp && c < first + nr; c++) {
		if (!r->grp[c])
			continue;
		pthread_mutex_lock(&r->ctx->share_lock);
		kvmm_share_wait(r->ctx, r->grp[c], NULL);
		r->discards++;
		kvmm_share_leave(r, c, true);
		pthread_mutex_unlock(&r->ctx->share_lock);
	}
	madvise(kvmm_chunk_addr(r, first), nr * r->chunk_bytes, MADV_DONTNEED);
	for (uint64_t c = first; c < first + nr; c++) {
		kvmm_user_unpoison(r, c);
		if (ST(r, c) != KVMM_STATE_EMPTY)
			r->discards++;
		if (r->slot[c] != KVMM_NO_SLOT) {
			kvmm_flash_slot_free(r->ctx->flash, r->slot[c]);
			r->slot[c] = KVMM_NO_SLOT;
		}
		r->state[c] = KVMM_STATE_EMPTY;
	}
}

static bool kvmm_user_pinned(const struct kvmm_region *r, uint64_t first, uint64_t nr)
{
	for (uint64_t c = first; c < first + nr; c++) {
		if (r->pins[c])
			return true;
	}
	return false;
}

static int kvmm_user_discard(struct kvmm_region *r, uint64_t first, uint64_t nr)
{
	int ret = 0;

	pthread_mutex_lock(&r->lock);
	kvmm_user_wait_idle(r, first, nr);
	if (kvmm_user_pinned(r, first, nr))
		ret = -EBUSY;
	else
		kvmm_user_discard_locked(r, first, nr);
	pthread_mutex_unlock(&r->lock);
	return ret;
}

/*
 * A chunk's write is done: its memory goes now, overlapping the writes
 * still running. It stays marked WRITING, so a touch faults and waits.
 */
static void kvmm_user_written(void *arg)
{
	struct kvmm_user_fill *fill = arg;

	madvise(kvmm_chunk_addr(fill->r, fill->c), fill->r->chunk_bytes, MADV_DONTNEED);
}

/* One span's part of an evict: a slot and a queued write per resident chunk. */
static int kvmm_user_evict_collect(struct kvmm_flash *f, const struct kvmm_chunk_span *sp,
				   struct kvmm_user_batch *b)
{
	struct kvmm_region *r = sp->r;
	uint64_t m = 0;
	int err = 0;

	pthread_mutex_lock(&r->lock);
	kvmm_user_wait_idle(r, sp->first, sp->nr);
	for (uint64_t c = sp->first; c < sp->first + sp->nr; c++) {
		if (kvmm_share_of(r, c))
			m++;
		else
			m += ST(r, c) == KVMM_STATE_RESIDENT && !r->pins[c];
	}
	if (m)
		err = kvmm_user_batch_grow(b, m);
	for (uint64_t c = sp->first; !err && m && c < sp->first + sp->nr; c++) {
		uint32_t slot;

		if (kvmm_share_of(r, c)) {
			err = kvmm_user_share_evict(f, r, c, b);
			continue;
		}
		if (ST(r, c) != KVMM_STATE_RESIDENT || r->pins[c])
			continue;
		err = kvmm_flash_slot_alloc(f, &slot);
		if (err)
			break;
		r->state[c] |= KVMM_STATE_WRITING;
		b->fills[b->n] = (struct kvmm_user_fill){.r = r, .c = c};
		b->ios[b->n] = (struct kvmm_flash_io){
		    .write = true,
		    .slot = slot,
		    .len = r->chunk_bytes,
		    .tag = kvmm_region_tag(r, c),
		    .src = kvmm_chunk_addr(r, c),
		    .written = kvmm_user_written,
		};
		b->n++;
	}
	pthread_mutex_unlock(&r->lock);
	return err;
}

/* Settles span @i's writes: written chunks leave memory, failed ones stay. */
static void kvmm_user_evict_finish(struct kvmm_flash *f, const struct kvmm_chunk_span *sp,
				   struct kvmm_user_batch *b, uint32_t i)
{
	struct kvmm_region *r = sp->r;

	pthread_mutex_lock(&r->lock);
	for (uint32_t k = kvmm_user_span_start(b, i); k < b->span_end[i]; k++) {
		uint64_t c = b->fills[k].c;

		if (b->fills[k].g) { /* settled for every member already */
			if (b->ios[k].result)
				r->flash_errors++;
			else
				r->flash_writes++;
			continue;
		}
		r->state[c] &= ~KVMM_STATE_WRITING;
		if (b->ios[k].result) {
			/* The data never left memory: the chunk stays resident. */
			kvmm_flash_slot_free(f, b->ios[k].slot);
			r->flash_errors++;
			continue;
		}
		r->slot[c] = b->ios[k].slot;
		r->state[c] = KVMM_STATE_FLASH;
		r->flash_writes++;
		/* A thread that touched it after its write faults again now. */
		kvmm_uffd_wake(r->ctx, kvmm_chunk_addr(r, c), r->chunk_bytes);
	}
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

/*
 * Writes the spans' resident, unpinned chunks to flash through one queue
 * and frees their memory. Gathering stops at the first slot that cannot be
 * had (-ENOSPC); what was gathered is still written.
 */
static int kvmm_user_evict_spans(const struct kvmm_chunk_span *v, uint32_t nspans)
{
	struct kvmm_user_batch b;
	struct kvmm_flash *f;
	uint32_t i;
	int ret, err = 0;

	ret = kvmm_flash_get(v[0].r->ctx, &f);
	if (ret)
		return ret;
	for (i = 0; i < nspans; i++) {
		if (v[i].r->chunk_bytes > kvmm_flash_slot_bytes(f) || v[i].r->chunk_bytes % 4096)
			return -EINVAL;
	}
	ret = kvmm_user_batch_init(&b, nspans);
	if (ret)
		return ret;
	for (i = 0; i < nspans && !err; i++) {
		err = kvmm_user_evict_collect(f, &v[i], &b);
		b.span_end[i] = b.n;
	}
	for (; i < nspans; i++)
		b.span_end[i] = b.n;
	for (uint32_t k = 0; k < b.n; k++)
		b.ios[k].arg = &b.fills[k];
	ret = b.n ? kvmm_flash_run(f, b.ios, b.n) : 0;
	if (b.n)
		kvmm_user_share_settle(v[0].r->ctx, &b, true, false);
	for (i = 0; b.n && i < nspans; i++)
		kvmm_user_evict_finish(f, &v[i], &b, i);
	kvmm_user_batch_free(&b);
	if (ret)
		return ret == -ENOMEM ? ret : -EIO;
	return err;
}

static int kvmm_user_evict(struct kvmm_region *r, uint64_t first, uint64_t nr)
{
	struct kvmm_chunk_span sp = {.r = r, .first = first, .nr = nr};

	return kvmm_user_evict_spans(&sp, 1);
}

static int kvmm_user_pin(struct kvmm_region *r, uint64_t first, uint64_t nr)
{
	int ret;

	/* Pinned first, so an evict running meanwhile skips these chunks. */
	pthread_mutex_lock(&r->lock);
	for (uint64_t c = first; c < first + nr; c++)
		r->pins[c]++;
	pthread_mutex_unlock(&r->lock);
	ret = kvmm_user_ensure(r, first, nr);
	if (ret) {
		pthread_mutex_lock(&r->lock);
		for (uint64_t c = first; c < first + nr; c++)
			r->pins[c]--;
		pthread_mutex_unlock(&r->lock);
	}
	return ret;
}

static int kvmm_user_unpin(struct kvmm_region *r, uint64_t first, uint64_t nr)
{
	pthread_mutex_lock(&r->lock);
	for (uint64_t c = first; c < first + nr; c++) {
		if (!r->pins[c]) {
			pthread_mutex_unlock(&r->lock);
			return -EINVAL;
		}
	}
	for (uint64_t c = first; c < first + nr; c++)
		r->pins[c]--;
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static int kvmm_user_stat(struct kvmm_region *r, struct kvmm_region_stats *st)
{
	pthread_mutex_lock(&r->lock);
	pthread_mutex_lock(&r->ctx->share_lock);
	for (uint64_t c = 0; c < r->nr_chunks; c++) {
		const struct kvmm_share_grp *g = kvmm_share_of(r, c);

		if (r->pins[c])
			st->pinned_bytes += r->chunk_bytes;
		if (g && g->refs > 1)
			st->shared_bytes += r->chunk_bytes;
		else if (g && (g->state & KVMM_STATE_MASK) == KVMM_STATE_RESIDENT)
			st->resident_bytes += r->chunk_bytes;
		else if (g)
			st->flash_bytes += r->chunk_bytes;
		if (g)
			continue;
		if (ST(r, c) == KVMM_STATE_RESIDENT)
			st->resident_bytes += r->chunk_bytes;
		else if (ST(r, c) == KVMM_STATE_FLASH)
			st->flash_bytes += r->chunk_bytes;
	}
	pthread_mutex_unlock(&r->ctx->share_lock);
	st->faults = r->faults;
	st->zero_fills = r->zero_fills;
	st->discards = r->discards;
	st->fault_failures = r->fault_failures;
	st->flash_writes = r->flash_writes;
	st->flash_reads = r->flash_reads;
	st->flash_errors = r->flash_errors;
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static int kvmm_user_query(struct kvmm_region *r, uint64_t first, uint64_t nr, uint8_t *states)
{
	pthread_mutex_lock(&r->lock);
	pthread_mutex_lock(&r->ctx->share_lock);
	for (uint64_t i = 0; i < nr; i++) {
		uint64_t c = first + i;
		const struct kvmm_share_grp *g = kvmm_share_of(r, c);

		states[i] = (g ? g->state : r->state[c]) &
			    (KVMM_STATE_MASK | KVMM_STATE_ERROR | KVMM_STATE_IN_FLIGHT);
		if (g && g->refs > 1)
			states[i] |= KVMM_STATE_SHARED;
		if (r->pins[c])
			states[i] |= KVMM_STATE_PINNED;
	}
	pthread_mutex_unlock(&r->ctx->share_lock);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

/*
 * The handler thread's entry for a missing fault at @addr of @r. It never
 * waits for I/O: a chunk in flight is settled by whoever runs that I/O,
 * which wakes the thread (a read's UFFDIO_COPY, a wake after a write or a
 * failed read). Every other way out fills, wakes or fails the fault.
 */
void kvmm_region_user_fault(struct kvmm_region *r, uint64_t addr)
{
	uint64_t c = (addr - (uintptr_t)r->base) / r->chunk_bytes;
	struct kvmm_chunk_span sp = {.r = r, .first = c, .nr = 1};
	char *p = kvmm_chunk_addr(r, c);
	int ret;

	pthread_mutex_lock(&r->lock);
	r->faults++;
	if (r->state[c] & KVMM_STATE_IN_FLIGHT) {
		pthread_mutex_unlock(&r->lock);
		return;
	}
	if (kvmm_share_of(r, c)) {
		struct kvmm_share_grp *g = r->grp[c];
		bool read;

		pthread_mutex_lock(&r->ctx->share_lock);
		/* In flight: its I/O wakes every member. Resident: mapped meanwhile. */
		read = !(g->state & KVMM_STATE_IN_FLIGHT) &&
		       (g->state & KVMM_STATE_MASK) == KVMM_STATE_FLASH;
		if (!read && !(g->state & KVMM_STATE_IN_FLIGHT))
			kvmm_uffd_wake(r->ctx, p, r->chunk_bytes);
		pthread_mutex_unlock(&r->ctx->share_lock);
		pthread_mutex_unlock(&r->lock);
		if (read && kvmm_user_fill(&sp, 1, true, true) != -EIO)
			kvmm_uffd_wake(r->ctx, p, r->chunk_bytes);
		return;
	}
	if (ST(r, c) != KVMM_STATE_FLASH) {
		ret = ST(r, c) == KVMM_STATE_EMPTY ? kvmm_user_zero_fill(r, c) : 0;
		if (!ret)
			kvmm_uffd_wake(r->ctx, p, r->chunk_bytes);
		else
			kvmm_user_fault_fail(r, c);
		pthread_mutex_unlock(&r->lock);
		return;
	}
	pthread_mutex_unlock(&r->lock);
	/* Zero-fill too: the chunk may have been discarded meanwhile. A failed
	 * read has failed the fault already; anything else still needs one. */
	ret = kvmm_user_fill(&sp, 1, true, true);
	if (!ret || ret == -EIO) {
		kvmm_uffd_wake(r->ctx, p, r->chunk_bytes);
		return;
	}
	pthread_mutex_lock(&r->lock);
	kvmm_user_fault_fail(r, c);
	pthread_mutex_unlock(&r->lock);
}

/*
 * Chunks [sfirst, +nr) of @src become shared chunks (moved into the memfd
 * once, if they were private), then [dfirst, +nr) of @dst drops what it
 * held and maps them. Pins are checked on both sides first, so a refusal
 * changes nothing that can be seen.
 */
static int kvmm_user_share(struct kvmm_region *dst, uint64_t dfirst, struct kvmm_region *src,
			   uint64_t sfirst, uint64_t nr)
{
	struct kvmm_ctx *ctx = dst->ctx;
	struct kvmm_share_grp **gv = calloc(nr, sizeof(*gv));
	uint64_t i = 0;
	int ret = 0;

	if (!gv)
		return -ENOMEM;
	pthread_mutex_lock(&dst->lock);
	if (kvmm_user_pinned(dst, dfirst, nr))
		ret = -EBUSY;
	pthread_mutex_unlock(&dst->lock);
	pthread_mutex_lock(&src->lock);
	kvmm_user_wait_idle(src, sfirst, nr);
	if (!ret && kvmm_user_pinned(src, sfirst, nr))
		ret = -EBUSY;
	for (uint64_t c = sfirst; !ret && c < sfirst + nr; c++) {
		if (kvmm_share_of(src, c) || !(src->state[c] & KVMM_STATE_ERROR))
			continue;
		ret = -EIO; /* its last read-back failed: nothing to share */
	}
	pthread_mutex_lock(&ctx->share_lock);
	for (; !ret && i < nr; i++) {
		if (kvmm_share_of(src, sfirst + i))
			kvmm_share_wait(ctx, src->grp[sfirst + i], NULL);
		ret = kvmm_share_convert(src, sfirst + i, &gv[i]);
	}
	pthread_mutex_unlock(&ctx->share_lock);
	pthread_mutex_unlock(&src->lock);
	if (!ret) {
		pthread_mutex_lock(&dst->lock);
		kvmm_user_wait_idle(dst, dfirst, nr);
		if (kvmm_user_pinned(dst, dfirst, nr))
			ret = -EBUSY;
		else
			kvmm_user_discard_locked(dst, dfirst, nr);
		pthread_mutex_lock(&ctx->share_lock);
		for (i = 0; i < nr; i++) {
			if (!gv[i])
				continue;
			if (!ret)
				ret = kvmm_share_join(dst, dfirst + i, gv[i]);
			else
				kvmm_share_put(ctx, gv[i]);
			gv[i] = NULL;
		}
		pthread_mutex_unlock(&ctx->share_lock);
		pthread_mutex_unlock(&dst->lock);
	}
	pthread_mutex_lock(&ctx->share_lock);
	for (i = 0; i < nr; i++) {
		if (gv[i])
			kvmm_share_put(ctx, gv[i]);
	}
	pthread_mutex_unlock(&ctx->share_lock);
	free(gv);
	return ret;
}

const struct kvmm_region_ops kvmm_region_user_ops = {
    .create = kvmm_user_create,
    .destroy = kvmm_user_destroy,
    .ensure = kvmm_user_ensure,
    .discard = kvmm_user_discard,
    .evict = kvmm_user_evict,
    .prefetch = kvmm_user_prefetch,
    .pin = kvmm_user_pin,
    .unpin = kvmm_user_unpin,
    .stat = kvmm_user_stat,
    .query = kvmm_user_query,
    .ensure_spans = kvmm_user_ensure_spans,
    .evict_spans = kvmm_user_evict_spans,
    .share = kvmm_user_share,
};
