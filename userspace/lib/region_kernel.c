/* SPDX-License-Identifier: MIT */
/*
 * Kernel-mode host regions: a kvmm.ko region fd mapped MAP_SHARED. The
 * module does residency, zero fill, pinning and the flash tier; libkvmm
 * gives every region of a context one backing file in the flash directory
 * (KVMM_IOC_SET_BACKING). When that directory was asked for (the config or
 * KVMM_FLASH_DIR) and the file cannot be made there or the module refuses
 * it, region creation fails: the user's data must not go to another store.
 * A defaulted directory ($TMPDIR, /var/tmp) that fails leaves the module's
 * default backing (sysfs) in charge, as does a module without a flash tier.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvmm.h>

#include "internal.h"

static pthread_mutex_t kvmm_backing_lock = PTHREAD_MUTEX_INITIALIZER;

/* The context's backing file, opened once; -errno when it cannot be. */
static int kvmm_kernel_backing(struct kvmm_ctx *ctx)
{
	int fd;

	pthread_mutex_lock(&kvmm_backing_lock);
	if (ctx->backing_fd < 0)
		ctx->backing_fd = open(ctx->flash_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	fd = ctx->backing_fd < 0 ? -errno : ctx->backing_fd;
	pthread_mutex_unlock(&kvmm_backing_lock);
	return fd;
}

/*
 * Give region fd @fd the context's backing file. 0 when it has it, or when
 * a defaulted directory could not take it (the module's default applies);
 * -errno when an asked-for directory cannot be used.
 */
static int kvmm_kernel_set_backing(struct kvmm_ctx *ctx, int fd)
{
	struct kvmm_backing b;
	int bfd = kvmm_kernel_backing(ctx), err;

	if (bfd < 0)
		return ctx->flash_dir_asked ? bfd : 0;
	memset(&b, 0, sizeof(b));
	b.fd = bfd;
	if (!ioctl(fd, KVMM_IOC_SET_BACKING, &b))
		return 0;
	err = -errno;
	/* A module without a flash tier knows no SET_BACKING: evict reports it. */
	if (err == -ENOTTY || !ctx->flash_dir_asked)
		return 0;
	return err;
}

static int kvmm_kernel_create(struct kvmm_region *r, const struct kvmm_region_config *cfg)
{
	struct kvmm_region_create rc;
	int flags = MAP_SHARED, err;
	void *p;

	memset(&rc, 0, sizeof(rc));
	rc.size = r->bytes;
	rc.chunk_bytes = r->chunk_bytes;
	rc.numa_node = cfg->numa_node < 0 ? KVMM_NUMA_LOCAL : cfg->numa_node;
	rc.priority = cfg->priority;
	rc.flags = KVMM_CREATE_CLOEXEC;
	if (ioctl(r->ctx->dev_fd, KVMM_IOC_REGION_CREATE, &rc) < 0)
		return -errno;
	err = kvmm_kernel_set_backing(r->ctx, rc.fd);
	if (err) {
		close(rc.fd);
		return err;
	}
	if (cfg->addr)
		flags |= MAP_FIXED;
	p = mmap(cfg->addr, r->bytes, PROT_READ | PROT_WRITE, flags, rc.fd, 0);
	if (p == MAP_FAILED) {
		err = -errno;
		close(rc.fd);
		return err;
	}
	r->fd = rc.fd;
	r->id = rc.id;
	r->base = p;
	return 0;
}

static void kvmm_kernel_destroy(struct kvmm_region *r)
{
	if (r->fixed)
		mmap(r->base, r->bytes, PROT_NONE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	else
		munmap(r->base, r->bytes);
	close(r->fd);
}

static int kvmm_kernel_range(struct kvmm_region *r, unsigned long cmd, uint64_t first, uint64_t nr)
{
	struct kvmm_range range;

	memset(&range, 0, sizeof(range));
	range.offset = first * r->chunk_bytes;
	range.length = nr * r->chunk_bytes;
	return ioctl(r->fd, cmd, &range) < 0 ? -errno : 0;
}

static int kvmm_kernel_ensure(struct kvmm_region *r, uint64_t first, uint64_t nr)
{
	return kvmm_kernel_range(r, KVMM_IOC_ENSURE, first, nr);
}

static int kvmm_kernel_discard(struct kvmm_region *r, uint64_t first, uint64_t nr)
{
	return kvmm_kernel_range(r, KVMM_IOC_DISCARD, first, nr);
}

static int kvmm_kernel_pin(struct kvmm_region *r, uint64_t first, uint64_t nr)
{
	return kvmm_kernel_range(r, KVMM_IOC_PIN, first, nr);
}

static int kvmm_kernel_unpin(struct kvmm_region *r, uint64_t first, uint64_t nr)
{
	return kvmm_kernel_range(r, KVMM_IOC_UNPIN, first, nr);
}

/* An older module without the flash ioctls answers -ENOTTY. */
static int kvmm_kernel_flash_err(int err)
{
	return err == -ENOTTY ? -EOPNOTSUPP : err;
}

static int kvmm_kernel_evict(struct kvmm_region *r, uint64_t first, uint64_t nr)
{
	return kvmm_kernel_flash_err(kvmm_kernel_range(r, KVMM_IOC_EVICT, first, nr));
}

/* Runs on the worker thread: start the reads, then wait for them. */
static int kvmm_kernel_prefetch(struct kvmm_region *r, uint64_t first, uint64_t nr)
{
	int ret = kvmm_kernel_range(r, KVMM_IOC_PREFETCH, first, nr);

	if (!ret || ret == -ENOMEM) {
		int err;

		do
			err = kvmm_kernel_range(r, KVMM_IOC_WAIT, first, nr);
		while (err == -EINTR);
		if (!ret)
			ret = err;
	}
	return kvmm_kernel_flash_err(ret);
}

/*
 * Starts every span's reads first, so the module has all of them queued,
 * then waits for each span and makes it resident (ENSURE zero-fills what
 * is new). A span whose read-back failed reports -EIO without a second
 * read in the same call, as in user mode.
 */
static int kvmm_kernel_ensure_spans(const struct kvmm_chunk_span *v, uint32_t n)
{
	int ret = 0, err;

	for (uint32_t i = 0; i < n; i++)
		kvmm_kernel_range(v[i].r, KVMM_IOC_PREFETCH, v[i].first, v[i].nr);
	for (uint32_t i = 0; i < n; i++) {
		do
			err = kvmm_kernel_range(v[i].r, KVMM_IOC_WAIT, v[i].first, v[i].nr);
		while (err == -EINTR);
		if (err != -EIO)
			err = kvmm_kernel_ensure(v[i].r, v[i].first, v[i].nr);
		if (err && !ret)
			ret = err;
	}
	return ret;
}

/* EVICT is synchronous in the module: one span after the other. */
static int kvmm_kernel_evict_spans(const struct kvmm_chunk_span *v, uint32_t n)
{
	int ret = 0;

	for (uint32_t i = 0; i < n && !ret; i++)
		ret = kvmm_kernel_evict(v[i].r, v[i].first, v[i].nr);
	return ret;
}

static int kvmm_kernel_stat(struct kvmm_region *r, struct kvmm_region_stats *st)
{
	struct kvmm_region_stat k;

	memset(&k, 0, sizeof(k));
	if (ioctl(r->fd, KVMM_IOC_STAT, &k) < 0)
		return -errno;
	st->resident_bytes = k.resident_bytes;
	st->pinned_bytes = k.pinned_bytes;
	st->faults = k.faults;
	st->zero_fills = k.zero_fills;
	st->discards = k.discards;
	st->fault_failures = k.fault_failures;
	st->flash_bytes = k.flash_resident_bytes;
	st->flash_writes = k.evictions - k.clean_drops;
	st->flash_reads = k.prefetches + k.fault_backs;
	st->flash_errors = k.io_errors + k.csum_failures;
	st->shared_bytes = k.shared_bytes;
	return 0;
}

/* KVMM_IOC_SHARE on the destination's fd; a module that predates it
 * answers -ENOTTY. */
static int kvmm_kernel_share(struct kvmm_region *dst, uint64_t dfirst, struct kvmm_region *src,
			     uint64_t sfirst, uint64_t nr)
{
	struct kvmm_share sh;
	int err;

	memset(&sh, 0, sizeof(sh));
	sh.src_fd = src->fd;
	sh.src_offset = sfirst * src->chunk_bytes;
	sh.dst_offset = dfirst * dst->chunk_bytes;
	sh.length = nr * dst->chunk_bytes;
	do
		err = ioctl(dst->fd, KVMM_IOC_SHARE, &sh) < 0 ? -errno : 0;
	while (err == -EINTR);
	return err == -ENOTTY ? -EOPNOTSUPP : err;
}

static int kvmm_kernel_query(struct kvmm_region *r, uint64_t first, uint64_t nr, uint8_t *states)
{
	struct kvmm_query q;

	memset(&q, 0, sizeof(q));
	q.first_chunk = first;
	q.nr_chunks = nr;
	q.states = (uintptr_t)states;
	return ioctl(r->fd, KVMM_IOC_QUERY, &q) < 0 ? -errno : 0;
}

const struct kvmm_region_ops kvmm_region_kernel_ops = {
    .create = kvmm_kernel_create,
    .destroy = kvmm_kernel_destroy,
    .ensure = kvmm_kernel_ensure,
    .discard = kvmm_kernel_discard,
    .evict = kvmm_kernel_evict,
    .prefetch = kvmm_kernel_prefetch,
    .pin = kvmm_kernel_pin,
    .unpin = kvmm_kernel_unpin,
    .stat = kvmm_kernel_stat,
    .query = kvmm_kernel_query,
    .ensure_spans = kvmm_kernel_ensure_spans,
    .evict_spans = kvmm_kernel_evict_spans,
    .share = kvmm_kernel_share,
};
