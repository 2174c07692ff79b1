/* SPDX-License-Identifier: MIT */
/*
 * User-mode shared chunks (kvmm_region_share without kvmm.ko). Anonymous
 * memory cannot be mapped at a second address, so a chunk that is shared
 * moves, once, into an extent of the context's memfd, and every range that
 * shares it maps that extent MAP_PRIVATE: both read the same page cache
 * pages, and a write through one of them makes the kernel copy the page
 * for that range only (copy-on-write, page by page). While the chunk is on
 * flash, its members are plain anonymous userfaultfd ranges again, so the
 * first touch through any of them faults into the handler, which reads the
 * chunk back once into the extent and maps it at every member.
 *
 * A member that was written since the share holds private pages the
 * extent does not have; eviction checks /proc/self/pagemap for them and
 * leaves such a chunk resident (as it leaves pinned chunks), so no write
 * is ever lost. Everything here runs under ctx->share_lock, and under the
 * lock of the region whose chunk it is given.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/falloc.h>
#include <linux/userfaultfd.h>

#include "internal.h"

#define KVMM_SHM_CLASSES 10 /* extents of 4 KiB << 0 .. 9 (2 MiB) */

void kvmm_share_ctx_init(struct kvmm_ctx *ctx)
{
	pthread_mutex_init(&ctx->share_lock, NULL);
	pthread_cond_init(&ctx->share_cond, NULL);
	ctx->shm_fd = -1;
	ctx->pagemap_fd = -1;
}

void kvmm_share_ctx_fini(struct kvmm_ctx *ctx)
{
	if (ctx->shm_fd >= 0)
		close(ctx->shm_fd);
	if (ctx->pagemap_fd >= 0)
		close(ctx->pagemap_fd);
	for (int i = 0; i < KVMM_SHM_CLASSES; i++)
		free(ctx->shm_free[i]);
	pthread_mutex_destroy(&ctx->share_lock);
	pthread_cond_destroy(&ctx->share_cond);
}

static int kvmm_shm_class(uint32_t bytes)
{
	int k = 0;

	while ((4096U << k) < bytes)
		k++;
	return k;
}

/* An extent of @bytes (a power of two, 4 KiB .. 2 MiB) of the memfd. */
static int kvmm_shm_alloc(struct kvmm_ctx *ctx, uint32_t bytes, uint64_t *off)
{
	int k = kvmm_shm_class(bytes);
	uint64_t end;

	if (k >= KVMM_SHM_CLASSES)
		return -EINVAL;
	if (ctx->shm_nfree[k]) {
		*off = ctx->shm_free[k][--ctx->shm_nfree[k]];
		return 0;
	}
	if (ctx->shm_fd < 0) {
		ctx->shm_fd = memfd_create("kvmm-shared", MFD_CLOEXEC);
		if (ctx->shm_fd < 0)
			return -errno;
	}
	*off = kvmm_round_up(ctx->shm_end, 4096U << k);
	end = *off + (4096U << k);
	if (ftruncate(ctx->shm_fd, (off_t)end) < 0)
		return -errno;
	ctx->shm_end = end;
	return 0;
}

/* Gives the extent's memory back and keeps the extent for the next chunk. */
static void kvmm_shm_free(struct kvmm_ctx *ctx, uint32_t bytes, uint64_t off)
{
	int k = kvmm_shm_class(bytes);

	fallocate(ctx->shm_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, bytes);
	if (ctx->shm_nfree[k] == ctx->shm_capfree[k]) {
		uint32_t cap = ctx->shm_capfree[k] ? 2 * ctx->shm_capfree[k] : 16;
		uint64_t *v = realloc(ctx->shm_free[k], cap * sizeof(*v));

		if (!v)
			return; /* the extent is lost, its memory is not */
		ctx->shm_free[k] = v;
		ctx->shm_capfree[k] = cap;
	}
	ctx->shm_free[k][ctx->shm_nfree[k]++] = off;
}

void kvmm_share_drop_memory(struct kvmm_ctx *ctx, struct kvmm_share_grp *g)
{
	fallocate(ctx->shm_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)g->off, g->bytes);
}

int kvmm_share_store(struct kvmm_ctx *ctx, struct kvmm_share_grp *g, const void *buf)
{
	uint64_t done = 0;

	while (done < g->bytes) {
		ssize_t n = pwrite(ctx->shm_fd, (const char *)buf + done, g->bytes - done,
				   (off_t)(g->off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (uint64_t)n;
	}
	return 0;
}

int kvmm_share_grp_array(struct kvmm_region *r)
{
	if (!r->grp)
		r->grp = calloc(r->nr_chunks, sizeof(*r->grp));
	return r->grp ? 0 : -ENOMEM;
}

static char *kvmm_share_addr(const struct kvmm_region *r, uint64_t c)
{
	return r->base + c * r->chunk_bytes;
}

/* The member's range maps the extent (privately: writes copy). */
static int kvmm_share_map_resident(struct kvmm_region *r, uint64_t c, struct kvmm_share_grp *g)
{
	void *p = mmap(kvmm_share_addr(r, c), g->bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_FIXED, r->ctx->shm_fd, (off_t)g->off);

	return p == MAP_FAILED ? -errno : 0;
}

/* The member's range is anonymous memory under userfaultfd again. */
static int kvmm_share_map_anon(struct kvmm_region *r, uint64_t c)
{
	struct uffdio_register reg;
	char *a = kvmm_share_addr(r, c);

	if (mmap(a, r->chunk_bytes, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) == MAP_FAILED)
		return -errno;
	madvise(a, r->chunk_bytes, MADV_NOHUGEPAGE);
	memset(&reg, 0, sizeof(reg));
	reg.range.start = (uintptr_t)a;
	reg.range.len = r->chunk_bytes;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	return ioctl(r->ctx->uffd, UFFDIO_REGISTER, &reg) < 0 ? -errno : 0;
}

static int kvmm_share_add(struct kvmm_share_grp *g, struct kvmm_region *r, uint64_t c)
{
	if (g->nm == g->capm) {
		uint32_t cap = g->capm ? 2 * g->capm : 4;
		struct kvmm_share_member *m = realloc(g->m, cap * sizeof(*m));

		if (!m)
			return -ENOMEM;
		g->m = m;
		g->capm = cap;
	}
	g->m[g->nm++] = (struct kvmm_share_member){.r = r, .c = c};
	return 0;
}

static struct kvmm_share_grp *kvmm_share_new(struct kvmm_ctx *ctx, uint32_t bytes)
{
	struct kvmm_share_grp *g = calloc(1, sizeof(*g));

	if (!g)
		return NULL;
	g->bytes = bytes;
	g->slot = KVMM_NO_SLOT;
	if (kvmm_shm_alloc(ctx, bytes, &g->off)) {
		free(g);
		return NULL;
	}
	/* Its own owner tag: region ids stay below 2^24. */
	g->tag = (0xffffffULL << 40) | ++ctx->next_grp;
	return g;
}

void kvmm_share_put(struct kvmm_ctx *ctx, struct kvmm_share_grp *g)
{
	if (--g->refs)
		return;
	if (g->slot != KVMM_NO_SLOT)
		kvmm_flash_slot_free(ctx->flash, g->slot);
	kvmm_shm_free(ctx, g->bytes, g->off);
	free(g->m);
	free(g);
}

void kvmm_share_wait(struct kvmm_ctx *ctx, struct kvmm_share_grp *g, const void *batch)
{
	while ((g->state & KVMM_STATE_IN_FLIGHT) && g->batch != batch)
		pthread_cond_wait(&ctx->share_cond, &ctx->share_lock);
}

/*
 * Chunk @c of @r as a shared chunk: *gp gets it with a reference for the
 * caller, or NULL when the chunk is empty (nothing to share). A private
 * resident chunk moves into the memfd (one copy) and is mapped from there;
 * a private flash chunk hands its slot over.
 */
int kvmm_share_convert(struct kvmm_region *r, uint64_t c, struct kvmm_share_grp **gp)
{
	struct kvmm_ctx *ctx = r->ctx;
	struct kvmm_share_grp *g = kvmm_share_of(r, c);
	uint8_t st = r->state[c] & KVMM_STATE_MASK;
	int ret;

	*gp = NULL;
	if (g) {
		if (g->state & KVMM_STATE_ERROR)
			return -EIO;
		g->refs++;
		*gp = g;
		return 0;
	}
	if (r->state[c] & KVMM_STATE_ERROR)
		return -EIO;
	if (st == KVMM_STATE_EMPTY)
		return 0;
	ret = kvmm_share_grp_array(r);
	if (ret)
		return ret;
	g = kvmm_share_new(ctx, r->chunk_bytes);
	if (!g)
		return -ENOMEM;
	g->refs = 1; /* until it is whole: a failure below frees it */
	if (kvmm_share_add(g, r, c)) {
		kvmm_share_put(ctx, g);
		return -ENOMEM;
	}
	if (st == KVMM_STATE_RESIDENT) {
		ret = kvmm_share_store(ctx, g, kvmm_share_addr(r, c));
		if (!ret)
			ret = kvmm_share_map_resident(r, c, g);
		if (ret) { /* the chunk is still its own anonymous memory */
			kvmm_share_put(ctx, g);
			return ret;
		}
		g->state = KVMM_STATE_RESIDENT;
	} else { /* on flash: the slot and its owner tag go to the shared chunk */
		g->state = KVMM_STATE_FLASH;
		g->slot = r->slot[c];
		g->tag = kvmm_region_tag(r, c);
		r->slot[c] = KVMM_NO_SLOT;
	}
	r->state[c] = KVMM_STATE_EMPTY; /* the shared chunk's state applies */
	r->grp[c] = g;
	g->refs = 2; /* the member and the caller */
	*gp = g;
	return 0;
}

/* Chunk @c of @r (empty, as after discard) becomes a member of @g, taking
 * over the caller's reference. */
int kvmm_share_join(struct kvmm_region *r, uint64_t c, struct kvmm_share_grp *g)
{
	int ret = kvmm_share_grp_array(r);

	if (!ret)
		ret = kvmm_share_add(g, r, c);
	if (!ret && !(g->state & KVMM_STATE_READING) &&
	    (g->state & KVMM_STATE_MASK) == KVMM_STATE_RESIDENT)
		ret = kvmm_share_map_resident(r, c, g);
	if (ret) {
		if (g->nm && g->m[g->nm - 1].r == r && g->m[g->nm - 1].c == c)
			g->nm--;
		kvmm_share_put(r->ctx, g);
		return ret;
	}
	r->grp[c] = g;
	r->state[c] = KVMM_STATE_EMPTY;
	return 0;
}

/* Chunk @c of @r leaves its shared chunk; with @remap its range becomes
 * anonymous (empty) memory under userfaultfd again. */
void kvmm_share_leave(struct kvmm_region *r, uint64_t c, bool remap)
{
	struct kvmm_share_grp *g = r->grp[c];

	for (uint32_t i = 0; i < g->nm; i++) {
		if (g->m[i].r == r && g->m[i].c == c) {
			g->m[i] = g->m[--g->nm];
			break;
		}
	}
	r->grp[c] = NULL;
	r->state[c] = KVMM_STATE_EMPTY;
	if (remap)
		kvmm_share_map_anon(r, c);
	kvmm_share_put(r->ctx, g);
}

/* Every member maps the extent (@resident) or is anonymous again, and
 * threads waiting in a fault on any of them retry. */
void kvmm_share_map_members(struct kvmm_ctx *ctx, struct kvmm_share_grp *g, bool resident)
{
	for (uint32_t i = 0; i < g->nm; i++) {
		struct kvmm_region *r = g->m[i].r;
		uint64_t c = g->m[i].c;

		if (resident)
			kvmm_share_map_resident(r, c, g);
		else
			kvmm_share_map_anon(r, c);
		kvmm_uffd_wake(ctx, kvmm_share_addr(r, c), r->chunk_bytes);
	}
}

/* Whether a member's range holds pages of its own (written since it was
 * shared), which the extent does not have. Unknown counts as written. */
static bool kvmm_share_member_written(struct kvmm_ctx *ctx, const struct kvmm_share_member *m)
{
	uint64_t pages = m->r->chunk_bytes / ctx->page_size, ent[512];
	uintptr_t a = (uintptr_t)kvmm_share_addr(m->r, m->c);

	if (ctx->pagemap_fd == -1) {
		ctx->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		if (ctx->pagemap_fd < 0)
			ctx->pagemap_fd = -2;
	}
	if (ctx->pagemap_fd < 0)
		return true;
	for (uint64_t done = 0; done < pages;) {
		uint64_t n = pages - done < 512 ? pages - done : 512;
		off_t at = (off_t)((a / ctx->page_size + done) * sizeof(uint64_t));

		if (pread(ctx->pagemap_fd, ent, n * sizeof(uint64_t), at) !=
		    (ssize_t)(n * sizeof(uint64_t)))
			return true;
		for (uint64_t i = 0; i < n; i++) {
			bool there = ent[i] >> 63 & 1 || ent[i] >> 62 & 1; /* present or swapped */

			if (there && !(ent[i] >> 61 & 1)) /* not the file's page: a private copy */
				return true;
		}
		done += n;
	}
	return false;
}

bool kvmm_share_written(struct kvmm_ctx *ctx, const struct kvmm_share_grp *g)
{
	for (uint32_t i = 0; i < g->nm; i++) {
		if (kvmm_share_member_written(ctx, &g->m[i]))
			return true;
	}
	return false;
}

bool kvmm_share_pinned(const struct kvmm_share_grp *g)
{
	for (uint32_t i = 0; i < g->nm; i++) {
		if (g->m[i].r->pins[g->m[i].c])
			return true;
	}
	return false;
}
