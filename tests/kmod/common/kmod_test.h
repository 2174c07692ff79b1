/* Helpers shared by the kvmm.ko test programs (run inside the QEMU guest). */
#ifndef KMOD_TEST_H
#define KMOD_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <linux/kvmm.h>

#include "../../common/t_list.h"

#define KVMM_SYSFS   "/sys/kernel/kvmm"
#define KVMM_DEBUGFS "/sys/kernel/debug/kvmm"
#define KiB	     (1024ULL)
#define MiB	     (1024ULL * KiB)
#define GiB	     (1024ULL * MiB)

/* Open /dev/kvmm; fails the test if it cannot. */
int kt_dev_open(void);

/*
 * Create a region; returns the region fd or -errno. chunk 0 = default,
 * node KVMM_NUMA_LOCAL for local.
 */
int kt_region_create(int dev, uint64_t size, uint32_t chunk, int node);
/* Create with asserts; returns the fd. */
int kt_region(uint64_t size, uint32_t chunk);

/* ioctl wrappers: 0 or -errno. */
int kt_range_ioctl(int fd, unsigned long cmd, uint64_t off, uint64_t len);
int kt_stat(int fd, struct kvmm_region_stat *st);

/* mmap the whole range shared read-write; fails the test on error. */
void *kt_map(int fd, uint64_t off, uint64_t len);

/* sysfs: read a u64 from KVMM_SYSFS/<name>; write a string (0 or -errno). */
uint64_t kt_sysfs_u64(const char *name);
int kt_sysfs_write(const char *name, const char *val);

/* True if every byte of [p, p + len) is zero. */
int kt_all_zero(const void *p, size_t len);
/* Deterministic pattern for a byte position and seed. */
uint8_t kt_pattern(uint64_t pos, uint32_t seed);
void kt_fill(void *p, size_t len, uint64_t base, uint32_t seed);
/* 1 if the pattern matches, else 0 (and prints the first mismatch). */
int kt_check(const void *p, size_t len, uint64_t base, uint32_t seed);

/*
 * Run the cmocka group; the harness reads its TAP output. Every program's
 * main() starts with T_LIST (tests/common/t_list.h): when a program exits
 * 77 (it cannot run here at all), the harness counts each test --list
 * names as skipped.
 */
#define KT_MAIN(tests)                                                                             \
	int main(int argc, char **argv)                                                            \
	{                                                                                          \
		T_LIST(argc, argv, T_GROUP(tests));                                                \
		return cmocka_run_group_tests(tests, NULL, NULL);                                  \
	}

/* "success" for 0, else strerror(-err). */
static inline const char *kt_errname(int err)
{
	return err ? strerror(-err) : "success";
}

/* Fail unless call (0 or -errno) gives want, naming what was tried. */
#define REFUSED(call, want, what)                                                                  \
	do {                                                                                       \
		int err_ = (call);                                                                 \
		if (err_ != (want))                                                                \
			fail_msg("%s: expected %s, saw %s", what, kt_errname(want),                \
				 kt_errname(err_));                                                \
	} while (0)

#endif
