/* SPDX-License-Identifier: MIT */
/*
 * User-mode flash store: one preallocated O_DIRECT file of chunk-sized
 * slots, driven through io_uring rings (one per I/O thread). Reads land in
 * registered staging buffers and are copied into place only once their
 * checksum passes; writes are copied into them before they go out. Every
 * slot written records an XXH3 checksum and an owner tag; a read that
 * fails either check is an error and its bytes are never delivered.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <xxhash.h>

#include "internal.h"

struct kvmm_flash_sum {
	uint64_t hash;
	uint64_t tag;
	uint32_t len;
	bool valid;
};

/* One ring and its share of the staging buffers; one thread uses it at a time. */
struct kvmm_flash_ring {
	pthread_mutex_t lock;
	struct io_uring ring;
	bool ready;
	bool fixed;	  /* staging buffers registered with the ring */
	atomic_bool dead; /* abandoned after a failure, lock held for ever */
	char *staging;	  /* depth buffers of slot_bytes */
	uint32_t depth;
	uint32_t *free_bufs;
	uint64_t *buf_hash; /* XXH3 of the write in flight on each buffer index */
};

#define KVMM_FLASH_MAX_RINGS 16

struct kvmm_flash {
	struct kvmm_ctx *ctx;
	int fd;
	uint32_t slot_bytes;
	uint32_t nr_slots;
	uint32_t qd;

	/* Several rings, so I/O threads and the fault handler do not queue
	 * behind each other; the queue depth is split between them. */
	struct kvmm_flash_ring rings[KVMM_FLASH_MAX_RINGS];
	uint32_t nr_rings;
	atomic_uint next_ring;
	char *staging;
	int staging_node;
	atomic_uint_fast64_t ios; /* I/Os issued, for the failure hook */

	pthread_mutex_t slot_lock;
	uint64_t *bitmap; /* bit set: slot in use */
	uint32_t used;
	uint32_t hint; /* no free slot below word hint of the bitmap */
	struct kvmm_flash_sum *sums;
};

static bool kvmm_flash_in_memory(int fd)
{
	struct statfs sfs;

	return !fstatfs(fd, &sfs) && (sfs.f_type == TMPFS_MAGIC || sfs.f_type == RAMFS_MAGIC);
}

static int kvmm_flash_open_file(struct kvmm_ctx *ctx, uint64_t bytes)
{
	int fd, err;

	fd = open(ctx->flash_dir, O_TMPFILE | O_RDWR | O_DIRECT | O_CLOEXEC, 0600);
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR)) {
		/* No O_TMPFILE here: a named file, unlinked at once. */
		size_t n = strlen(ctx->flash_dir) + 32;
		char *path = malloc(n);

		if (!path)
			return -ENOMEM;
		snprintf(path, n, "%s/kvmm-flash-XXXXXX", ctx->flash_dir);
		fd = mkostemp(path, O_CLOEXEC);
		if (fd >= 0) {
			unlink(path);
			if (fcntl(fd, F_SETFL, O_DIRECT) < 0) {
				close(fd);
				fd = -1;
				errno = EINVAL;
			}
		}
		free(path);
	}
	if (fd < 0)
		return errno == EINVAL ? -EOPNOTSUPP : -errno;
	/*
	 * A store in memory is no flash tier: evicting there would only move
	 * the bytes from one kind of RAM to another (tmpfs takes O_DIRECT since
	 * Linux 6.6). Refused as kvmm.ko refuses such a backing file.
	 */
	if (kvmm_flash_in_memory(fd)) {
		close(fd);
		return -EOPNOTSUPP;
	}
	err = fallocate(fd, 0, 0, bytes);
	if (err < 0 && errno == EOPNOTSUPP)
		err = ftruncate(fd, bytes);
	if (err < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static void kvmm_flash_free(struct kvmm_flash *f)
{
	for (uint32_t i = 0; i < f->nr_rings; i++) {
		struct kvmm_flash_ring *r = &f->rings[i];

		if (r->ready)
			io_uring_queue_exit(&r->ring);
		if (!atomic_load(&r->dead)) /* a dead ring's lock stays held */
			pthread_mutex_destroy(&r->lock);
		free(r->free_bufs);
		free(r->buf_hash);
	}
	if (f->fd >= 0)
		close(f->fd);
	kvmm_staging_free(f->staging, (uint64_t)f->qd * f->slot_bytes);
	pthread_mutex_destroy(&f->slot_lock);
	free(f->bitmap);
	free(f->sums);
	free(f);
}

static int kvmm_flash_ring_init(struct kvmm_flash *f, struct kvmm_flash_ring *r, char *staging,
				uint32_t depth)
{
	struct iovec *iov;
	int ret;

	r->staging = staging;
	r->depth = depth;
	r->free_bufs = calloc(depth, sizeof(*r->free_bufs));
	r->buf_hash = calloc(depth, sizeof(*r->buf_hash));
	iov = calloc(depth, sizeof(*iov));
	if (!r->free_bufs || !r->buf_hash || !iov) {
		free(iov);
		return -ENOMEM;
	}
	ret = io_uring_queue_init(depth, &r->ring, 0);
	if (ret < 0) {
		free(iov);
		return ret;
	}
	r->ready = true;
	for (uint32_t i = 0; i < depth; i++) {
		iov[i].iov_base = staging + (uint64_t)i * f->slot_bytes;
		iov[i].iov_len = f->slot_bytes;
	}
	/* Registration can fail on RLIMIT_MEMLOCK; plain reads/writes still work. */
	r->fixed = io_uring_register_buffers(&r->ring, iov, depth) == 0;
	free(iov);
	return 0;
}

static int kvmm_flash_create(struct kvmm_ctx *ctx, struct kvmm_flash **fp)
{
	struct kvmm_flash *f;
	uint32_t left;
	char *staging;
	int ret;

	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->ctx = ctx;
	f->fd = -1;
	f->slot_bytes = ctx->chunk_bytes;
	f->nr_slots = ctx->flash_bytes / f->slot_bytes;
	f->qd = ctx->queue_depth;
	f->nr_rings = ctx->io_threads < f->qd ? ctx->io_threads : f->qd;
	pthread_mutex_init(&f->slot_lock, NULL);
	for (uint32_t i = 0; i < f->nr_rings; i++)
		pthread_mutex_init(&f->rings[i].lock, NULL);

	ret = -ENOMEM;
	f->bitmap = calloc((f->nr_slots + 63) / 64, sizeof(uint64_t));
	f->sums = calloc(f->nr_slots, sizeof(*f->sums));
	if (!f->bitmap || !f->sums)
		goto fail;
	/* The file first: where it fails (no O_DIRECT there), it fails cheaply,
	 * and a later evict tries again without touching the staging. */
	ret = kvmm_flash_open_file(ctx, (uint64_t)f->nr_slots * f->slot_bytes);
	if (ret < 0)
		goto fail;
	f->fd = ret;
	ret = -ENOMEM;
	f->staging = kvmm_staging_alloc((uint64_t)f->qd * f->slot_bytes, ctx->staging_node,
					&f->staging_node);
	if (!f->staging)
		goto fail;
	staging = f->staging;
	left = f->qd;
	for (uint32_t i = 0; i < f->nr_rings; i++) {
		uint32_t depth = left / (f->nr_rings - i);

		ret = kvmm_flash_ring_init(f, &f->rings[i], staging, depth);
		if (ret)
			goto fail;
		staging += (uint64_t)depth * f->slot_bytes;
		left -= depth;
	}
	*fp = f;
	return 0;
fail:
	kvmm_flash_free(f);
	return ret;
}

/* The context's store, created on first use. */
int kvmm_flash_get(struct kvmm_ctx *ctx, struct kvmm_flash **fp)
{
	int ret = 0;

	pthread_mutex_lock(&ctx->flash_lock);
	if (!ctx->flash)
		ret = kvmm_flash_create(ctx, &ctx->flash);
	*fp = ctx->flash;
	pthread_mutex_unlock(&ctx->flash_lock);
	return ret;
}

void kvmm_flash_close(struct kvmm_flash *f)
{
	kvmm_flash_free(f);
}

uint32_t kvmm_flash_slot_bytes(const struct kvmm_flash *f)
{
	return f->slot_bytes;
}

/*
 * The lowest free slot: the store's used part stays compact, and a slot set
 * swapped out again lands where it was before.
 */
int kvmm_flash_slot_alloc(struct kvmm_flash *f, uint32_t *slot)
{
	uint32_t words = (f->nr_slots + 63) / 64;

	pthread_mutex_lock(&f->slot_lock);
	if (f->used == f->nr_slots) {
		pthread_mutex_unlock(&f->slot_lock);
		return -ENOSPC;
	}
	while (f->hint < words && !~f->bitmap[f->hint])
		f->hint++;
	/* used < nr_slots, and the bits past nr_slots are never set. */
	*slot = f->hint * 64 + __builtin_ctzll(~f->bitmap[f->hint]);
	f->bitmap[*slot / 64] |= 1ULL << (*slot % 64);
	f->sums[*slot].valid = false;
	f->used++;
	pthread_mutex_unlock(&f->slot_lock);
	return 0;
}

void kvmm_flash_slot_free(struct kvmm_flash *f, uint32_t slot)
{
	pthread_mutex_lock(&f->slot_lock);
	if (f->bitmap[slot / 64] & (1ULL << (slot % 64))) {
		f->bitmap[slot / 64] &= ~(1ULL << (slot % 64));
		f->sums[slot].valid = false;
		f->used--;
		if (slot / 64 < f->hint)
			f->hint = slot / 64;
	}
	pthread_mutex_unlock(&f->slot_lock);
}

/* Checks a completed read against the slot's record. */
static int kvmm_flash_verify(struct kvmm_flash *f, const struct kvmm_flash_io *io, const void *buf)
{
	struct kvmm_flash_sum s;

	pthread_mutex_lock(&f->slot_lock);
	s = f->sums[io->slot];
	pthread_mutex_unlock(&f->slot_lock);
	if (!s.valid || s.tag != io->tag || s.len != io->len)
		return -EIO;
	return XXH3_64bits(buf, io->len) == s.hash ? 0 : -EIO;
}

static void kvmm_flash_prep(struct kvmm_flash *f, struct kvmm_flash_ring *r,
			    struct kvmm_flash_io *io, uint32_t idx, uint32_t buf)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
	char *p = r->staging + (uint64_t)buf * f->slot_bytes;
	uint64_t off = (uint64_t)io->slot * f->slot_bytes;

	if (io->write) {
		/* Copied, not written in place: a staging buffer is a few huge
		 * pages, a region chunk 4 KiB pages scattered in memory, and a
		 * device moves few large segments faster than many small ones. */
		memcpy(p, io->src, io->len);
		if (r->fixed)
			io_uring_prep_write_fixed(sqe, f->fd, p, io->len, off, buf);
		else
			io_uring_prep_write(sqe, f->fd, p, io->len, off);
	} else {
		if (r->fixed)
			io_uring_prep_read_fixed(sqe, f->fd, p, io->len, off, buf);
		else
			io_uring_prep_read(sqe, f->fd, p, io->len, off);
	}
	io_uring_sqe_set_data64(sqe, (uint64_t)idx << 32 | buf);
}

/* Starts one I/O; a write's copy is hashed while the device reads it. */
static void kvmm_flash_issue(struct kvmm_flash *f, struct kvmm_flash_ring *r,
			     struct kvmm_flash_io *io, uint32_t idx, uint32_t buf)
{
	kvmm_flash_prep(f, r, io, idx, buf);
	io_uring_submit(&r->ring);
	if (io->write)
		r->buf_hash[buf] = XXH3_64bits(r->staging + (uint64_t)buf * f->slot_bytes, io->len);
}

static void kvmm_flash_finish(struct kvmm_flash *f, struct kvmm_flash_ring *r,
			      struct kvmm_flash_io *io, uint32_t buf, int res)
{
	const char *p = r->staging + (uint64_t)buf * f->slot_bytes;
	uint64_t nth = atomic_fetch_add(&f->ios, 1) + 1;

	if (res >= 0 && (uint32_t)res != io->len)
		res = -EIO; /* short I/O */
	if (f->ctx->test_fail_io && nth == f->ctx->test_fail_io)
		res = -EIO;
	if (res >= 0 && io->write) {
		struct kvmm_flash_sum s = {
		    .hash = r->buf_hash[buf],
		    .tag = io->tag,
		    .len = io->len,
		    .valid = true,
		};

		pthread_mutex_lock(&f->slot_lock);
		f->sums[io->slot] = s;
		pthread_mutex_unlock(&f->slot_lock);
		res = 0;
		/* Stored: the caller may free its copy while the rest still run. */
		if (io->written)
			io->written(io->arg);
	} else if (res >= 0) {
		res = kvmm_flash_verify(f, io, p);
		if (!res && io->deliver)
			res = io->deliver(io->arg, p, io->len);
	}
	io->result = res < 0 ? res : 0;
}

/* A free ring if there is one, else wait for the next live one in turn. */
static struct kvmm_flash_ring *kvmm_flash_ring_get(struct kvmm_flash *f)
{
	uint32_t start = atomic_fetch_add(&f->next_ring, 1);

	for (uint32_t i = 0; i < f->nr_rings; i++) {
		struct kvmm_flash_ring *r = &f->rings[(start + i) % f->nr_rings];

		if (pthread_mutex_trylock(&r->lock) == 0)
			return r;
	}
	for (uint32_t i = 0; i < f->nr_rings; i++) {
		struct kvmm_flash_ring *r = &f->rings[(start + i) % f->nr_rings];

		if (!atomic_load(&r->dead)) {
			pthread_mutex_lock(&r->lock);
			return r;
		}
	}
	return NULL;
}

/*
 * Runs @n chunk I/Os, up to the queue depth at once, and returns when all
 * are done: 0, or the first error (each io->result says which failed).
 * Slots must have been allocated; lengths are multiples of 4 KiB.
 */
int kvmm_flash_run(struct kvmm_flash *f, struct kvmm_flash_io *ios, uint32_t n)
{
	struct kvmm_flash_ring *r;
	uint32_t next = 0, done = 0, nfree;
	int first_err = 0, ret;

	for (uint32_t i = 0; i < n; i++) {
		if (ios[i].slot >= f->nr_slots || !ios[i].len || ios[i].len > f->slot_bytes ||
		    ios[i].len % 4096) {
			/* Nothing runs: every I/O reports it, none reads as done. */
			for (uint32_t k = 0; k < n; k++)
				ios[k].result = -EINVAL;
			return -EINVAL;
		}
		ios[i].result = 1; /* pending */
	}
	r = kvmm_flash_ring_get(f);
	if (!r) {
		for (uint32_t i = 0; i < n; i++)
			ios[i].result = -EIO;
		return -EIO;
	}
	nfree = r->depth;
	for (uint32_t i = 0; i < r->depth; i++)
		r->free_bufs[i] = i;
	while (done < n) {
		struct io_uring_cqe *cqe;

		/* Each I/O goes out as soon as its buffer is ready, so the device
		 * never waits for a batch of copies or checksums. */
		while (next < n && nfree) {
			kvmm_flash_issue(f, r, &ios[next], next, r->free_bufs[--nfree]);
			next++;
		}
		ret = io_uring_submit_and_wait(&r->ring, 1);
		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
			/* The ring failed: nothing more goes out; what is in flight
			 * is still reaped below, so no late completion can touch a
			 * buffer or slot after this call returns. */
			if (!first_err)
				first_err = ret;
			for (uint32_t i = next; i < n; i++)
				ios[i].result = ret;
			n = next;
			if (done < n && io_uring_wait_cqe(&r->ring, &cqe) < 0) {
				/* Cannot even wait: abandon the ring, still locked. */
				atomic_store(&r->dead, true);
				for (uint32_t i = 0; i < n; i++)
					if (ios[i].result > 0)
						ios[i].result = ret;
				return first_err;
			}
		}
		/* Reap one at a time and refill its buffer right away. */
		while (io_uring_peek_cqe(&r->ring, &cqe) == 0) {
			uint64_t d = io_uring_cqe_get_data64(cqe);
			uint32_t idx = d >> 32, buf = (uint32_t)d;
			int res = cqe->res;

			io_uring_cqe_seen(&r->ring, cqe);
			kvmm_flash_finish(f, r, &ios[idx], buf, res);
			if (ios[idx].result && !first_err)
				first_err = ios[idx].result;
			done++;
			if (next < n) {
				kvmm_flash_issue(f, r, &ios[next], next, buf);
				next++;
			} else {
				r->free_bufs[nfree++] = buf;
			}
		}
	}
	pthread_mutex_unlock(&r->lock);
	return first_err;
}

void kvmm_flash_reset_count(struct kvmm_flash *f)
{
	atomic_store(&f->ios, 0);
}

/* Test hook: flips one byte of @slot on flash, bypassing the checksum. */
int kvmm_flash_corrupt(struct kvmm_flash *f, uint32_t slot)
{
	uint64_t off = (uint64_t)slot * f->slot_bytes;
	void *blk;
	int ret = 0;

	if (posix_memalign(&blk, 4096, 4096))
		return -ENOMEM;
	if (pread(f->fd, blk, 4096, off) != 4096) {
		ret = -EIO;
	} else {
		((unsigned char *)blk)[100] ^= 0x5a;
		if (pwrite(f->fd, blk, 4096, off) != 4096)
			ret = -EIO;
	}
	free(blk);
	return ret;
}
