/* SPDX-License-Identifier: MIT */
/*
 * Fault injection for tests (declared in userspace/lib/kvmm_test.h). In
 * kernel mode the hooks drive kvmm.ko's own: its debugfs fail_* hooks and
 * the context's backing file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv.h"
#include "kvmm_test.h"

#define KVMM_TEST_DEBUGFS "/sys/kernel/debug/kvmm/"

static int kvmm_test_debugfs_set(const char *knob, uint64_t v)
{
	char path[128], val[32];
	int fd, n, ret = 0;

	snprintf(path, sizeof(path), KVMM_TEST_DEBUGFS "%s", knob);
	n = snprintf(val, sizeof(val), "%llu", (unsigned long long)v);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, val, n) != n)
		ret = -EIO;
	close(fd);
	return ret;
}

int kvmm_test_fail_io(struct kvmm_ctx *ctx, uint64_t nth)
{
	int ret;

	if (ctx->mode == KVMM_MODE_KERNEL) {
		ret = kvmm_test_debugfs_set("fail_skip", nth ? nth - 1 : 0);
		return ret ? ret : kvmm_test_debugfs_set("fail_ios", nth ? 1 : 0);
	}
	ctx->test_fail_io = nth;
	if (ctx->flash)
		kvmm_flash_reset_count(ctx->flash);
	return 0;
}

/*
 * Kernel mode: the module does not say which slot holds a chunk, so the
 * chunk is read back (its flash copy stays current), its bytes are looked
 * up in the backing file, and the chunk is dropped again without a write.
 * Every place holding those bytes is corrupted (a stale copy in a free
 * slot does no harm).
 */
static int kvmm_test_corrupt_kernel(struct kvmm_region *r, uint64_t chunk)
{
	uint64_t off = chunk * r->chunk_bytes, pos;
	int fd = r->ctx->backing_fd, ret, hits = 0;
	char *want, *have;
	uint8_t st;

	ret = kvmm_region_query(r, chunk, 1, &st);
	if (ret)
		return ret;
	if ((st & KVMM_STATE_MASK) != KVMM_STATE_FLASH || fd < 0)
		return -ENOENT;
	want = malloc(r->chunk_bytes);
	have = malloc(r->chunk_bytes);
	ret = -ENOMEM;
	if (!want || !have)
		goto out;
	ret = kvmm_region_ensure(r, off, r->chunk_bytes);
	if (ret)
		goto out;
	memcpy(want, r->base + off, r->chunk_bytes);
	ret = kvmm_region_evict(r, off, r->chunk_bytes);
	if (ret)
		goto out;
	for (pos = 0; pread(fd, have, r->chunk_bytes, pos) == (ssize_t)r->chunk_bytes;
	     pos += 4096) {
		if (memcmp(have, want, r->chunk_bytes))
			continue;
		have[100] ^= 0x5a;
		if (pwrite(fd, have + 100, 1, pos + 100) != 1) {
			ret = -EIO;
			goto out;
		}
		hits++;
	}
	ret = hits ? 0 : -ENOENT;
out:
	free(want);
	free(have);
	return ret;
}

int kvmm_test_corrupt_chunk(struct kvmm_region *r, uint64_t chunk)
{
	uint32_t slot;

	if (!r || chunk >= r->nr_chunks)
		return -EINVAL;
	if (r->ctx->mode == KVMM_MODE_KERNEL)
		return kvmm_test_corrupt_kernel(r, chunk);
	pthread_mutex_lock(&r->lock);
	slot = r->slot[chunk];
	pthread_mutex_unlock(&r->lock);
	if (slot == KVMM_NO_SLOT)
		return -ENOENT;
	return kvmm_flash_corrupt(r->ctx->flash, slot);
}

void kvmm_test_no_poison(struct kvmm_ctx *ctx)
{
	ctx->uffd_poison = false;
}

struct kvmm_region *kvmm_test_kv_region(struct kvmm_kv *kv, uint32_t i)
{
	return kv && i < kv->geom.nr_regions ? kv->regions[i] : NULL;
}

int kvmm_test_region_fd(struct kvmm_region *r)
{
	if (!r)
		return -EINVAL;
	return r->ctx->mode == KVMM_MODE_KERNEL ? r->fd : -ENODEV;
}
