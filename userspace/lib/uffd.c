/* SPDX-License-Identifier: MIT */
/*
 * User mode: one userfaultfd per context and a thread that serves missing
 * faults of every user-mode region (zero fill or read back from flash).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/userfaultfd.h>

#include "internal.h"

/* Linux 6.6 added poisoning; older headers lack it. */
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFDIO_POISON
struct uffdio_poison {
	struct uffdio_range range;
	__u64 mode;
	__s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, 0x08, struct uffdio_poison)
#endif

static void *kvmm_uffd_main(void *arg);

static int kvmm_uffd_syscall(void)
{
	int fd;

	/* USER_MODE_ONLY lets unprivileged processes in when
	 * vm.unprivileged_userfaultfd is 0; older kernels reject the flag. */
	fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0 && errno == EINVAL)
		fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 && (errno == ENOSYS || errno == EPERM)) {
		/* Syscall filtered (seccomp, valgrind): the device gives the same fd. */
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW,
				   O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
			if (fd < 0 && errno == EINVAL)
				fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
			close(dev);
		}
	}
	return fd < 0 ? -errno : fd;
}

int kvmm_uffd_open(struct kvmm_ctx *ctx)
{
	struct uffdio_api api;
	int fd, err;

	fd = kvmm_uffd_syscall();
	if (fd < 0)
		return fd == -ENOMEM ? -ENOMEM : -ENOSYS;
	memset(&api, 0, sizeof(api));
	api.api = UFFD_API;
	api.features = UFFD_FEATURE_POISON;
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		/* The API handshake is one-shot: retry on a new fd. */
		close(fd);
		fd = kvmm_uffd_syscall();
		if (fd < 0)
			return -ENOSYS;
		memset(&api, 0, sizeof(api));
		api.api = UFFD_API;
		if (ioctl(fd, UFFDIO_API, &api) < 0) {
			close(fd);
			return -ENOSYS;
		}
	} else {
		ctx->uffd_poison = true;
	}
	ctx->uffd = fd;
	ctx->zero_chunk = mmap(NULL, KVMM_CHUNK_MAX, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ctx->zero_chunk == MAP_FAILED) {
		err = -ENOMEM;
		goto fail;
	}
	ctx->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (ctx->stop_fd < 0) {
		err = -errno;
		goto fail;
	}
	err = -pthread_create(&ctx->uffd_thread, NULL, kvmm_uffd_main, ctx);
	if (err)
		goto fail;
	ctx->uffd_started = true;
	return 0;
fail:
	if (ctx->stop_fd >= 0)
		close(ctx->stop_fd);
	if (ctx->zero_chunk && ctx->zero_chunk != MAP_FAILED)
		munmap(ctx->zero_chunk, KVMM_CHUNK_MAX);
	close(fd);
	ctx->uffd = ctx->stop_fd = -1;
	ctx->zero_chunk = NULL;
	return err;
}

void kvmm_uffd_close(struct kvmm_ctx *ctx)
{
	uint64_t one = 1;

	if (ctx->uffd_started) {
		if (write(ctx->stop_fd, &one, sizeof(one)) != sizeof(one))
			return; /* cannot stop the thread: leak rather than crash */
		pthread_join(ctx->uffd_thread, NULL);
	}
	close(ctx->stop_fd);
	close(ctx->uffd);
	munmap(ctx->zero_chunk, KVMM_CHUNK_MAX);
}

/* UFFDIO_COPY of a whole range; -EAGAIN retries cover a concurrent mm change. */
int kvmm_uffd_copy(struct kvmm_ctx *ctx, void *dst, const void *src, uint64_t len)
{
	uint64_t done = 0;

	while (done < len) {
		struct uffdio_copy c = {
		    .dst = (uintptr_t)dst + done,
		    .src = (uintptr_t)src + done,
		    .len = len - done,
		};

		if (ioctl(ctx->uffd, UFFDIO_COPY, &c) == 0) {
			done = len;
			break;
		}
		if (c.copy > 0)
			done += c.copy;
		else if (errno != EAGAIN)
			return -errno;
	}
	return 0;
}

/*
 * Fails the faults on a range: UFFDIO_POISON (SIGBUS) where the kernel has
 * it (6.6+); before that the range is made PROT_NONE and its waiters woken,
 * so they get SIGSEGV instead of waiting for ever. kvmm_uffd_unpoison()
 * undoes either before the range is filled again.
 */
int kvmm_uffd_poison(struct kvmm_ctx *ctx, void *dst, uint64_t len)
{
	struct uffdio_poison p = {.range = {.start = (uintptr_t)dst, .len = len}};

	if (ctx->uffd_poison)
		return ioctl(ctx->uffd, UFFDIO_POISON, &p) < 0 ? -errno : 0;
	if (mprotect(dst, len, PROT_NONE) < 0)
		return -errno;
	return kvmm_uffd_wake(ctx, dst, len);
}

void kvmm_uffd_unpoison(struct kvmm_ctx *ctx, void *dst, uint64_t len)
{
	madvise(dst, len, MADV_DONTNEED); /* drops poison markers */
	if (!ctx->uffd_poison)
		mprotect(dst, len, PROT_READ | PROT_WRITE);
}

int kvmm_uffd_wake(struct kvmm_ctx *ctx, void *dst, uint64_t len)
{
	struct uffdio_range r = {.start = (uintptr_t)dst, .len = len};

	return ioctl(ctx->uffd, UFFDIO_WAKE, &r) < 0 ? -errno : 0;
}

static void kvmm_uffd_dispatch(struct kvmm_ctx *ctx, uint64_t addr)
{
	struct kvmm_region *r;

	pthread_rwlock_rdlock(&ctx->regions_lock);
	for (r = ctx->regions; r; r = r->next) {
		if (addr >= (uintptr_t)r->base && addr < (uintptr_t)r->base + r->bytes) {
			kvmm_region_user_fault(r, addr);
			break;
		}
	}
	pthread_rwlock_unlock(&ctx->regions_lock);
}

static void *kvmm_uffd_main(void *arg)
{
	struct kvmm_ctx *ctx = arg;
	struct pollfd pfd[2] = {
	    {.fd = ctx->uffd, .events = POLLIN},
	    {.fd = ctx->stop_fd, .events = POLLIN},
	};
	struct uffd_msg msg[16];

	for (;;) {
		ssize_t n;

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents)
			break;
		n = read(ctx->uffd, msg, sizeof(msg));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			break;
		}
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(msg[0]); i++) {
			if (msg[i].event == UFFD_EVENT_PAGEFAULT)
				kvmm_uffd_dispatch(ctx, msg[i].arg.pagefault.address);
		}
	}
	return NULL;
}
