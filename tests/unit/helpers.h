/* SPDX-License-Identifier: MIT */
/*
 * Shared helpers for the libkvmm unit tests (cmocka). Every test program
 * runs in the mode KVMM_MODE selects (auto, kernel, user), exits 0 when
 * all its tests pass and 77 when it cannot run here at all (after one line
 * "skip: why"); main() starts with T_LIST (tests/common/t_list.h), so that
 * `PROGRAM --list` names the tests a harness then counts as skipped.
 */
#ifndef KVMM_TEST_HELPERS_H
#define KVMM_TEST_HELPERS_H

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/magic.h>

#include <kvmm/kvmm.h>

#include "../common/t_list.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

/* Fails the test, printing what was expected and what was seen. */
#define T_EQ(seen, expected)                                                                       \
	do {                                                                                       \
		long long s_ = (long long)(seen), e_ = (long long)(expected);                      \
		if (s_ != e_)                                                                      \
			fail_msg("%s: expected %lld (%s), seen %lld (%s)", #seen, e_,              \
				 e_ < 0 ? kvmm_strerror((int)e_) : "", s_,                         \
				 s_ < 0 ? kvmm_strerror((int)s_) : "");                            \
	} while (0)
#define T_OK(expr) T_EQ(expr, 0)

/* Skips the current test with a reason. */
#define T_SKIP(...)                                                                                \
	do {                                                                                       \
		print_message("skip: " __VA_ARGS__);                                               \
		print_message("\n");                                                               \
		skip();                                                                            \
	} while (0)

/* The directory for flash files: $KVMM_FLASH_DIR, $TMPDIR or /tmp. */
static inline const char *t_flash_dir(void)
{
	const char *d = getenv("KVMM_FLASH_DIR");

	if (!d || !*d)
		d = getenv("TMPDIR");
	return d && *d ? d : "/tmp";
}

#define T_FLASH_HINT "set KVMM_FLASH_DIR to a directory on a disk filesystem"

/*
 * NULL when the flash directory can hold a flash store, else why not: it
 * must take O_DIRECT and be on a disk, not in memory (tmpfs takes O_DIRECT
 * since Linux 6.6; a store there would be RAM, and libkvmm refuses it).
 */
static inline const char *t_flash_unusable(void)
{
	static char why[512];
	const char *dir = t_flash_dir();
	struct statfs sfs;
	void *buf;
	int fd;

	if (statfs(dir, &sfs)) {
		snprintf(why, sizeof(why), "flash directory %s: %s (%s)", dir, strerror(errno),
			 T_FLASH_HINT);
		return why;
	}
	if (sfs.f_type == TMPFS_MAGIC || sfs.f_type == RAMFS_MAGIC) {
		snprintf(why, sizeof(why),
			 "flash directory %s is on %s: a flash store there would be RAM (%s)", dir,
			 sfs.f_type == TMPFS_MAGIC ? "tmpfs" : "ramfs", T_FLASH_HINT);
		return why;
	}
	fd = open(dir, O_TMPFILE | O_RDWR | O_DIRECT, 0600);
	if (fd < 0) {
		snprintf(why, sizeof(why), "no O_DIRECT file in %s: %s (%s that takes O_DIRECT)",
			 dir, strerror(errno), T_FLASH_HINT);
		return why;
	}
	if (posix_memalign(&buf, 4096, 4096)) {
		close(fd);
		return "out of memory";
	}
	memset(buf, 1, 4096);
	if (pwrite(fd, buf, 4096, 0) != 4096) {
		snprintf(why, sizeof(why), "no O_DIRECT write in %s: %s (%s that takes O_DIRECT)",
			 dir, strerror(errno), T_FLASH_HINT);
		free(buf);
		close(fd);
		return why;
	}
	free(buf);
	close(fd);
	return NULL;
}

/* A context in the mode KVMM_MODE selects, flash in t_flash_dir(). */
static inline struct kvmm_ctx *t_open(uint32_t chunk_bytes, uint64_t flash_bytes)
{
	struct kvmm_config cfg = KVMM_CONFIG_INIT;
	struct kvmm_ctx *ctx = NULL;

	cfg.flash_dir = t_flash_dir();
	cfg.chunk_bytes = chunk_bytes;
	cfg.flash_bytes = flash_bytes;
	T_OK(kvmm_open(&ctx, &cfg));
	return ctx;
}

static inline bool t_user_mode(struct kvmm_ctx *ctx)
{
	return kvmm_mode(ctx) == KVMM_MODE_USER;
}

/* Whether this context can evict to flash: always in user mode; in kernel
 * mode when kvmm.ko has a flash tier and a backing store (probed). */
static inline bool t_flash_tier(struct kvmm_ctx *ctx)
{
	struct kvmm_region_config rc = KVMM_REGION_CONFIG_INIT;
	struct kvmm_region *r;
	int ret;

	if (t_user_mode(ctx))
		return true;
	rc.bytes = 1 << 21;
	rc.chunk_bytes = 1 << 21;
	if (kvmm_region_create(ctx, &rc, &r))
		return false;
	ret = kvmm_region_ensure(r, 0, rc.bytes);
	if (!ret)
		ret = kvmm_region_evict(r, 0, rc.bytes);
	kvmm_region_destroy(r);
	return ret == 0;
}

#define T_NO_FLASH_TIER                                                                            \
	"kernel mode: kvmm.ko has no flash tier or backing store here (KVMM_FLASH_DIR on a disk "  \
	"filesystem, or kvmmctl set default_backing PATH)"

/* Deterministic pseudo-random bytes (xorshift), so failures reproduce. */
static inline void t_fill(void *p, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
	unsigned char *b = p;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		b[i] = (unsigned char)x;
	}
}

/* Index of the first differing byte, or -1. */
static inline long t_diff(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;

	for (size_t i = 0; i < n; i++)
		if (x[i] != y[i])
			return (long)i;
	return -1;
}

#define T_SAME_BYTES(seen, expected, n)                                                            \
	do {                                                                                       \
		long d_ = t_diff(seen, expected, n);                                               \
		if (d_ >= 0)                                                                       \
			fail_msg("%s: byte %ld differs: expected 0x%02x, seen 0x%02x", #seen, d_,  \
				 ((const unsigned char *)(expected))[d_],                          \
				 ((const unsigned char *)(seen))[d_]);                             \
	} while (0)

/* Whole-program skip before any test runs (after T_LIST). */
static inline void t_require_flash(void)
{
	const char *why = t_flash_unusable();

	if (why)
		t_skip_program("these tests need a flash store: %s", why);
}

#endif
