/* SPDX-License-Identifier: MIT */
/* Context: configuration, environment, mode detection. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/kvmm.h>

#include "internal.h"

#define KVMM_DEFAULT_FLASH_BYTES (4ULL << 30)
#define KVMM_DEFAULT_QUEUE_DEPTH 32
#define KVMM_MAX_QUEUE_DEPTH	 4096
#define KVMM_DEFAULT_IO_THREADS	 2

/* Parses a decimal or 0x number with an optional K/M/G suffix (powers of 2).
 * Returns 1 when set, 0 when unset, -EINVAL when malformed. */
int kvmm_env_u64(const char *name, uint64_t *val)
{
	const char *s = getenv(name);
	char *end;
	unsigned long long v;

	if (!s || !*s)
		return 0;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k':
	case 'K':
		v <<= 10;
		end++;
		break;
	case 'm':
	case 'M':
		v <<= 20;
		end++;
		break;
	case 'g':
	case 'G':
		v <<= 30;
		end++;
		break;
	default:
		break;
	}
	if (*end)
		return -EINVAL;
	*val = v;
	return 1;
}

static int kvmm_env_mode(uint32_t *mode)
{
	const char *s = getenv("KVMM_MODE");

	if (!s || !*s || !strcmp(s, "auto"))
		return 0;
	if (!strcmp(s, "kernel"))
		*mode = KVMM_MODE_KERNEL;
	else if (!strcmp(s, "user"))
		*mode = KVMM_MODE_USER;
	else
		return -EINVAL;
	return 0;
}

static bool kvmm_is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static int kvmm_ctx_configure(struct kvmm_ctx *ctx, const struct kvmm_config *in, uint32_t *mode)
{
	struct kvmm_config cfg = KVMM_CONFIG_INIT;
	const char *dir;
	uint64_t v;
	int ret;

	if (in) {
		if (in->size < offsetof(struct kvmm_config, flags) + sizeof(in->flags) ||
		    in->size > sizeof(cfg))
			return -EINVAL;
		memcpy(&cfg, in, in->size);
	}
	if (cfg.flags || cfg.mode > KVMM_MODE_USER)
		return -EINVAL;
	*mode = cfg.mode;
	if (*mode == KVMM_MODE_AUTO && (ret = kvmm_env_mode(mode)) < 0)
		return ret;

	dir = cfg.flash_dir;
	if (!dir)
		dir = getenv("KVMM_FLASH_DIR");
	ctx->flash_dir_asked = dir && *dir;
	if (!dir || !*dir)
		dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/var/tmp";
	ctx->flash_dir = strdup(dir);
	if (!ctx->flash_dir)
		return -ENOMEM;

	ctx->flash_bytes = cfg.flash_bytes;
	if (!ctx->flash_bytes) {
		ctx->flash_bytes = KVMM_DEFAULT_FLASH_BYTES;
		if ((ret = kvmm_env_u64("KVMM_FLASH_BYTES", &ctx->flash_bytes)) < 0)
			return ret;
	}
	ctx->queue_depth = cfg.queue_depth;
	if (!ctx->queue_depth) {
		v = KVMM_DEFAULT_QUEUE_DEPTH;
		if ((ret = kvmm_env_u64("KVMM_QUEUE_DEPTH", &v)) < 0)
			return ret;
		if (v > UINT32_MAX)
			return -EINVAL;
		ctx->queue_depth = v;
	}
	if (!ctx->queue_depth || ctx->queue_depth > KVMM_MAX_QUEUE_DEPTH)
		return -EINVAL;
	v = KVMM_DEFAULT_IO_THREADS;
	if ((ret = kvmm_env_u64("KVMM_IO_THREADS", &v)) < 0)
		return ret;
	if (!v || v > KVMM_MAX_IO_THREADS)
		return -EINVAL;
	ctx->io_threads = v;
	ctx->staging_node = cfg.staging_node;
	if (ctx->staging_node == -1 && getenv("KVMM_STAGING_NODE")) {
		char *end;
		long n = strtol(getenv("KVMM_STAGING_NODE"), &end, 10);

		if (*end || n < -1 || n > 1024)
			return -EINVAL;
		ctx->staging_node = n;
	}
	if (ctx->staging_node < -1)
		return -EINVAL;
	ctx->chunk_bytes = cfg.chunk_bytes;
	if (!ctx->chunk_bytes) {
		v = KVMM_CHUNK_MAX;
		if ((ret = kvmm_env_u64("KVMM_CHUNK_BYTES", &v)) < 0)
			return ret;
		if (v > UINT32_MAX)
			return -EINVAL;
		ctx->chunk_bytes = v;
	}
	if (!kvmm_is_pow2(ctx->chunk_bytes) || ctx->chunk_bytes < ctx->page_size ||
	    ctx->chunk_bytes > KVMM_CHUNK_MAX)
		return -EINVAL;
	if (ctx->flash_bytes < ctx->chunk_bytes)
		return -EINVAL;
	v = 0;
	if ((ret = kvmm_env_u64("KVMM_TEST_FAIL_IO", &v)) < 0)
		return ret;
	ctx->test_fail_io = v;
	return 0;
}

/* Kernel mode when /dev/kvmm opens and speaks our ABI version. */
static int kvmm_ctx_open_kernel(struct kvmm_ctx *ctx)
{
	struct kvmm_version ver;
	int fd;

	fd = open(KVMM_DEVICE_PATH, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT || errno == ENXIO || errno == ENODEV ? -ENODEV : -errno;
	memset(&ver, 0, sizeof(ver));
	if (ioctl(fd, KVMM_IOC_VERSION, &ver) < 0) {
		int err = -errno;

		close(fd);
		return err == -ENOTTY ? -EPROTO : err;
	}
	if (ver.abi_version != KVMM_ABI_VERSION) {
		close(fd);
		return -EPROTO;
	}
	ctx->dev_fd = fd;
	return 0;
}

int kvmm_open(struct kvmm_ctx **ctxp, const struct kvmm_config *cfg)
{
	struct kvmm_ctx *ctx;
	uint32_t mode;
	int ret;

	if (!ctxp)
		return -EINVAL;
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	ctx->dev_fd = -1;
	ctx->backing_fd = -1;
	ctx->uffd = -1;
	ctx->stop_fd = -1;
	ctx->page_size = sysconf(_SC_PAGESIZE);
	pthread_rwlock_init(&ctx->regions_lock, NULL);
	pthread_mutex_init(&ctx->flash_lock, NULL);
	kvmm_share_ctx_init(ctx);
	pthread_mutex_init(&ctx->worker.lock, NULL);
	pthread_cond_init(&ctx->worker.cond, NULL);

	ret = kvmm_ctx_configure(ctx, cfg, &mode);
	if (ret)
		goto fail;
	ret = -ENODEV;
	if (mode != KVMM_MODE_USER) {
		ret = kvmm_ctx_open_kernel(ctx);
		if (!ret)
			ctx->mode = KVMM_MODE_KERNEL;
		else if (mode == KVMM_MODE_KERNEL)
			goto fail;
	}
	if (ret) {
		ret = kvmm_uffd_open(ctx);
		if (ret)
			goto fail;
		ctx->mode = KVMM_MODE_USER;
	}
	*ctxp = ctx;
	return 0;
fail:
	free(ctx->flash_dir);
	free(ctx);
	return ret;
}

int kvmm_close(struct kvmm_ctx *ctx)
{
	if (!ctx)
		return -EINVAL;
	pthread_rwlock_rdlock(&ctx->regions_lock);
	if (ctx->regions || ctx->nr_kv) {
		pthread_rwlock_unlock(&ctx->regions_lock);
		return -EBUSY;
	}
	pthread_rwlock_unlock(&ctx->regions_lock);
	kvmm_worker_stop(ctx);
	if (ctx->mode == KVMM_MODE_USER)
		kvmm_uffd_close(ctx);
	if (ctx->dev_fd >= 0)
		close(ctx->dev_fd);
	if (ctx->backing_fd >= 0)
		close(ctx->backing_fd);
	if (ctx->flash)
		kvmm_flash_close(ctx->flash);
	pthread_rwlock_destroy(&ctx->regions_lock);
	pthread_mutex_destroy(&ctx->flash_lock);
	kvmm_share_ctx_fini(ctx);
	pthread_mutex_destroy(&ctx->worker.lock);
	pthread_cond_destroy(&ctx->worker.cond);
	free(ctx->flash_dir);
	free(ctx);
	return 0;
}

int kvmm_mode(const struct kvmm_ctx *ctx)
{
	return ctx ? ctx->mode : -EINVAL;
}

const char *kvmm_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case -ENODEV:
		return "kvmm.ko not available (no /dev/kvmm), no flash backing store, or no CUDA "
		       "driver or device (kvmm_cuda_why() says which)";
	case -EPROTO:
		return "/dev/kvmm speaks a different ABI version than libkvmm";
	case -ENOSYS:
		return "userfaultfd not available for user mode";
	case -EOPNOTSUPP:
		return "not supported here (a flash directory without O_DIRECT or on tmpfs, a "
		       "kvmm.ko without a flash tier, a GPU without CUDA virtual memory "
		       "management?)";
	case -EIO:
		return "flash I/O error or checksum mismatch; data kept where it was";
	case -EAGAIN:
		return "slot is swapped out, in flight or pinned";
	case -ENOSPC:
		return "no free slot or flash space";
	case -ENOMEM:
		return "out of memory or over the byte budget";
	case -EBUSY:
		return "object busy (pinned, in flight, or still in use)";
	case -EINVAL:
		return "invalid argument";
	default:
		return err < 0 ? strerror(-err) : "not an error code";
	}
}
