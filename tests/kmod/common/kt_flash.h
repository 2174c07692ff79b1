/* Helpers for the flash-tier tests and benchmark (test_flash_*.c, bench_flash.c). */
#ifndef KT_FLASH_H
#define KT_FLASH_H

#include "kmod_test.h"

#include <stdint.h>

/* Directory of the 2 GiB flash filesystem ($KVMM_FLASH_DIR, default /mnt/flash). */
const char *kf_flash_dir(void);
/* Directory of the 64 MiB filesystem ($KVMM_SMALL_DIR, default /mnt/small). */
const char *kf_small_dir(void);

/*
 * Create a new empty file in dir, open O_RDWR, and unlink it at once, so it
 * disappears when the last reference (ours or the module's) goes. Fails the
 * test if it cannot.
 */
int kf_backing_open(const char *dir);
/* KVMM_IOC_SET_BACKING with fd (or KVMM_BACKING_NONE); 0 or -errno. */
int kf_set_backing(int region, int fd);
/* A region of size/chunk with a fresh backing file in the flash dir; *backing gets its fd. */
int kf_region_backed(uint64_t size, uint32_t chunk, int *backing);

/* QUERY nr chunk states from first; fails the test on error. */
void kf_query(int fd, uint64_t first, uint64_t nr, uint8_t *states);
/* State byte of one chunk. */
uint8_t kf_state(int fd, uint64_t chunk);
/* Fail unless every chunk of [first, first + nr) has exactly the state byte want. */
void kf_expect_states(int fd, uint64_t first, uint64_t nr, uint8_t want, const char *when);

/* The state of a QUERY byte, without its flags. */
#define KF_STATE(s) ((s)&KVMM_CHUNK_STATE_MASK)

/*
 * Resources a test must give back even when it fails half-way (a failed
 * assert jumps out of the test): fds and mappings made with these are
 * closed and unmapped by kf_teardown unless kf_close/kf_unmap did it.
 */
int kf_track(int fd);
void kf_close(int fd);
void *kf_map(int fd, uint64_t off, uint64_t len);
void kf_unmap(void *p, uint64_t len);
/* kt_region, tracked. */
int kf_region(uint64_t size, uint32_t chunk);

/* Region stat with an assert. */
struct kvmm_region_stat kf_stat(int fd);

/*
 * Fast pattern for large ranges: one 64-bit word per 8 bytes, a hash of the
 * byte position and a seed. base and len must be multiples of 8.
 */
uint64_t kf_word(uint64_t pos, uint32_t seed);
void kf_fill(void *p, uint64_t len, uint64_t base, uint32_t seed);
/* 1 if it matches, else 0 after printing the first mismatch and what. */
int kf_check(const void *p, uint64_t len, uint64_t base, uint32_t seed, const char *what);

/* sysfs: read a whole value as a string (trailing newline removed). */
void kf_sysfs_str(const char *name, char *buf, size_t size);
/* Write a u64 to a sysfs file; fails the test if refused. */
void kf_sysfs_set(const char *name, uint64_t val);
/* kvmm.ko's test hooks under KVMM_DEBUGFS: set (0 or -errno) and read one. */
int kf_debugfs_set(const char *name, uint64_t val);
uint64_t kf_debugfs_u64(const char *name);
/* Wait up to ms for KVMM_SYSFS/name to read want; returns the last value read. */
uint64_t kf_sysfs_wait(const char *name, uint64_t want, int ms);

/*
 * Save the knobs flash tests change (pool limit, watermarks, refault window,
 * default backing, debug_fail_ios) and put them back; call from a group's
 * setup and each test's teardown.
 */
void kf_knobs_save(void);
void kf_knobs_restore(void);
int kf_setup(void **state);
int kf_teardown(void **state);

/*
 * Touch [p, p + len) (one byte per page; write if write) in a forked child.
 * Returns the signal that killed the child, 0 if it finished, -1 if it
 * exited otherwise.
 */
int kf_touch_in_child(volatile uint8_t *p, uint64_t len, int write);

/* Monotonic clock in seconds. */
double kf_now(void);
/* Sleep ms milliseconds. */
void kf_msleep(int ms);

#endif
