/*
 * Flash tier failures lose nothing: a corrupted slot gives EIO and SIGBUS,
 * never bad data, and reads back once repaired; a full filesystem gives
 * ENOSPC and the chunks stay resident; injected write and read errors
 * (debugfs kvmm/fail_ios) leave the data where it was; chunks with adjacent
 * slots move in merged I/Os, and a merged I/O that fails (debugfs
 * kvmm/fail_merged) is tried again chunk by chunk.
 */
#include "common/kt_flash.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define FLASH	 KVMM_CHUNK_FLASH
#define RESIDENT KVMM_CHUNK_RESIDENT
#define CHUNK	 (64 * KiB)

#define EXPECT_ERR(call, want, what)                                                               \
	do {                                                                                       \
		int err_ = (call);                                                                 \
		if (err_ != (want))                                                                \
			fail_msg("%s: expected %s, saw %s", what,                                  \
				 (want) ? strerror(-(want)) : "success",                           \
				 err_ ? strerror(-err_) : "success");                              \
	} while (0)

/* Offset in the backing file of the slot whose data starts with word. */
static off_t find_slot(int file, uint64_t word)
{
	off_t size = lseek(file, 0, SEEK_END);
	uint64_t *buf = malloc(1 * MiB);
	off_t found = -1;

	assert_non_null(buf);
	for (off_t off = 0; off < size && found < 0; off += 1 * MiB) {
		ssize_t n = pread(file, buf, 1 * MiB, off);

		assert_true(n > 0);
		for (ssize_t i = 0; i < n; i += 4096)
			if (buf[i / 8] == word) {
				found = off + i;
				break;
			}
	}
	free(buf);
	if (found < 0)
		fail_msg("no slot in the %lld-byte backing file starts with 0x%016llx",
			 (long long)size, (unsigned long long)word);
	return found;
}

static void flip_byte(int file, off_t off)
{
	uint8_t b;

	assert_int_equal(pread(file, &b, 1, off), 1);
	b ^= 0xff;
	assert_int_equal(pwrite(file, &b, 1, off), 1);
	assert_int_equal(fdatasync(file), 0);
}

static void corrupted_slot_gives_eio_and_sigbus_never_bad_data(void **state)
{
	int file, fd = kf_region_backed(1 * MiB, CHUNK, &file);
	uint8_t *p = kf_map(fd, 0, 1 * MiB), buf[CHUNK];
	uint64_t cs0 = kt_sysfs_u64("stats/csum_failures");
	struct kvmm_region_stat a, b;
	off_t slot;
	int sig;

	(void)state;
	kf_fill(p, 1 * MiB, 0, 60);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 1 * MiB), 0);
	slot = find_slot(file, kf_word(3 * CHUNK, 60));
	flip_byte(file, slot + 1000);
	a = kf_stat(fd);

	/* PREFETCH starts the read; WAIT reports the checksum failure. */
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_PREFETCH, 3 * CHUNK, CHUNK), 0);
	EXPECT_ERR(kt_range_ioctl(fd, KVMM_IOC_WAIT, 3 * CHUNK, CHUNK), -EIO,
		   "WAIT on a chunk whose slot was corrupted");
	assert_int_equal(kf_state(fd, 3), FLASH | KVMM_CHUNK_ERROR);
	b = kf_stat(fd);
	if (b.csum_failures < a.csum_failures + 1)
		fail_msg("csum_failures: expected at least +1, saw %llu -> %llu",
			 (unsigned long long)a.csum_failures, (unsigned long long)b.csum_failures);
	if (kt_sysfs_u64("stats/csum_failures") < cs0 + 1)
		fail_msg("sysfs stats/csum_failures did not count the failure");
	/* ENSURE retries and fails the same way; nothing else changes. */
	EXPECT_ERR(kt_range_ioctl(fd, KVMM_IOC_ENSURE, 2 * CHUNK, 2 * CHUNK), -EIO,
		   "ENSURE over a corrupted chunk");
	assert_int_equal(KF_STATE(kf_state(fd, 3)), FLASH);
	/* pread of the chunk fails rather than returning wrong bytes or zeros. */
	errno = 0;
	if (pread(fd, buf, CHUNK, 3 * CHUNK) != -1 || errno != EIO)
		fail_msg("pread of a corrupted chunk: expected EIO, saw %s",
			 errno ? strerror(errno) : "data");
	/* A touch is SIGBUS; a touch of a good chunk is fine. */
	sig = kf_touch_in_child(p + 3 * CHUNK, CHUNK, 0);
	if (sig != SIGBUS)
		fail_msg("touching a corrupted chunk: expected SIGBUS, saw %s",
			 sig > 0 ? strsignal(sig)
			 : sig	 ? "abnormal exit"
				 : "no signal");
	assert_int_equal(kf_touch_in_child(p + 4 * CHUNK, CHUNK, 0), 0);
	b = kf_stat(fd);
	/* WAIT and ENSURE each read the slot back at least; pread and the touch may retry. */
	if (b.csum_failures < a.csum_failures + 2)
		fail_msg("csum_failures after WAIT, ENSURE, pread and a touch: expected at least "
			 "+2, saw +%llu",
			 (unsigned long long)(b.csum_failures - a.csum_failures));
	/* The flash copy is kept. */
	assert_int_equal(b.flash_bytes, 1 * MiB);
	assert_int_equal(KF_STATE(kf_state(fd, 3)), FLASH);
	assert_true(kf_check(p, 3 * CHUNK, 0, 60, "chunks before the corrupted one"));
	assert_true(
	    kf_check(p + 4 * CHUNK, 12 * CHUNK, 4 * CHUNK, 60, "chunks after the corrupted one"));

	/* Repair the byte: PREFETCH brings back the right data and clears ERROR. */
	flip_byte(file, slot + 1000);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_PREFETCH, 3 * CHUNK, CHUNK), 0);
	EXPECT_ERR(kt_range_ioctl(fd, KVMM_IOC_WAIT, 3 * CHUNK, CHUNK), 0,
		   "WAIT after repairing the slot");
	assert_int_equal(kf_state(fd, 3), RESIDENT);
	assert_true(kf_check(p, 1 * MiB, 0, 60, "after repairing the slot"));
	kf_unmap(p, 1 * MiB);
	kf_close(fd);
	kf_close(file);
}

static void full_filesystem_gives_enospc_and_loses_nothing(void **state)
{
	const uint64_t chunk = 1 * MiB, size = 96 * MiB, nr = size / chunk;
	struct statvfs vfs;
	int file, fd;
	uint8_t *p, *s = malloc(nr);
	uint64_t on_flash = 0, resident = 0, last_res = 0;
	struct kvmm_region_stat st;

	(void)state;
	assert_non_null(s);
	if (statvfs(kf_small_dir(), &vfs))
		fail_msg("statvfs %s: %s", kf_small_dir(), strerror(errno));
	if ((uint64_t)vfs.f_bavail * vfs.f_frsize >= size)
		fail_msg("%s has %llu bytes free; the test needs less than %llu", kf_small_dir(),
			 (unsigned long long)vfs.f_bavail * vfs.f_frsize, (unsigned long long)size);
	fd = kf_region(size, chunk);
	file = kf_backing_open(kf_small_dir());
	assert_int_equal(kf_set_backing(fd, file), 0);
	p = kf_map(fd, 0, size);
	kf_fill(p, size, 0, 70);
	EXPECT_ERR(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, size), -ENOSPC,
		   "EVICT of 96 MiB to a 64 MiB filesystem");
	kf_query(fd, 0, nr, s);
	for (uint64_t i = 0; i < nr; i++) {
		if (s[i] == FLASH) {
			on_flash++;
		} else if (KF_STATE(s[i]) == RESIDENT &&
			   !(s[i] & (KVMM_CHUNK_WRITING | KVMM_CHUNK_ERROR))) {
			resident++;
			last_res = i;
		} else {
			fail_msg("after ENOSPC: chunk %llu: expected FLASH or RESIDENT, saw 0x%02x",
				 (unsigned long long)i, s[i]);
		}
	}
	print_message("# %llu chunks on flash, %llu resident after ENOSPC\n",
		      (unsigned long long)on_flash, (unsigned long long)resident);
	assert_true(resident > 0);
	st = kf_stat(fd);
	assert_int_equal(st.flash_bytes, on_flash * chunk);
	assert_int_equal(st.resident_bytes, resident * chunk);
	/* A single resident chunk: ENOSPC again, and it stays resident with its data. */
	EXPECT_ERR(kt_range_ioctl(fd, KVMM_IOC_EVICT, last_res * chunk, chunk), -ENOSPC,
		   "EVICT of one more chunk to the full filesystem");
	assert_int_equal(KF_STATE(kf_state(fd, last_res)), RESIDENT);
	assert_true(kf_check(p + last_res * chunk, chunk, last_res * chunk, 70,
			     "the chunk refused by ENOSPC"));
	/* Every byte reads back: from DRAM or from flash. */
	assert_true(kf_check(p, size, 0, 70, "whole region after ENOSPC"));
	/* Freed slots are reused: discard a flash chunk, then one more eviction fits. */
	if (on_flash) {
		uint64_t first_flash = 0;

		while (s[first_flash] != FLASH)
			first_flash++;
		assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_DISCARD, first_flash * chunk, chunk),
				 0);
		EXPECT_ERR(kt_range_ioctl(fd, KVMM_IOC_EVICT, last_res * chunk, chunk), 0,
			   "EVICT into a slot freed by DISCARD");
		assert_int_equal(kf_state(fd, last_res), FLASH);
		assert_true(kf_check(p + last_res * chunk, chunk, last_res * chunk, 70,
				     "the chunk evicted into a reused slot"));
	}
	free(s);
	kf_unmap(p, size);
	kf_close(fd);
	kf_close(file);
	assert_int_equal(kf_sysfs_wait("flash_bytes", 0, 2000), 0);
}

static void failed_write_leaves_the_chunk_resident_and_unchanged(void **state)
{
	int file, fd = kf_region_backed(1 * MiB, CHUNK, &file);
	uint8_t *p = kf_map(fd, 0, 1 * MiB), s[16];
	uint64_t io0 = kt_sysfs_u64("stats/io_errors");
	struct kvmm_region_stat a, b;
	int nres = 0;

	(void)state;
	kf_fill(p, 1 * MiB, 0, 80);
	/* One chunk, one failed write. */
	a = kf_stat(fd);
	assert_int_equal(kf_debugfs_set("fail_ios", 1), 0);
	EXPECT_ERR(kt_range_ioctl(fd, KVMM_IOC_EVICT, 2 * CHUNK, CHUNK), -EIO,
		   "EVICT with the write failing");
	assert_int_equal(kf_debugfs_u64("fail_ios"), 0);
	b = kf_stat(fd);
	assert_int_equal(kf_state(fd, 2), RESIDENT | KVMM_CHUNK_DIRTY);
	assert_int_equal(b.io_errors - a.io_errors, 1);
	assert_int_equal(kt_sysfs_u64("stats/io_errors") - io0, 1);
	assert_int_equal(b.resident_bytes, 1 * MiB);
	assert_true(kf_check(p, 1 * MiB, 0, 80, "after a failed write"));

	/* The whole region with the first write failing: the rest goes out. */
	assert_int_equal(kf_debugfs_set("fail_ios", 1), 0);
	EXPECT_ERR(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 1 * MiB), -EIO,
		   "EVICT of 16 chunks with one write failing");
	kf_query(fd, 0, 16, s);
	for (int i = 0; i < 16; i++) {
		if (KF_STATE(s[i]) == RESIDENT)
			nres++;
		else if (s[i] != FLASH)
			fail_msg("chunk %d: expected FLASH or RESIDENT, saw 0x%02x", i, s[i]);
	}
	assert_true(nres >= 1);
	assert_true(kf_check(p, 1 * MiB, 0, 80, "after a failed write among 16"));
	/* Without the fault injection everything evicts. */
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 1 * MiB), 0);
	kf_expect_states(fd, 0, 16, FLASH, "after EVICT without errors");
	assert_true(kf_check(p, 1 * MiB, 0, 80, "read back after the failures"));
	kf_unmap(p, 1 * MiB);
	kf_close(fd);
	kf_close(file);
}

static void failed_write_holds_no_flash_slot(void **state)
{
	int file, fd = kf_region_backed(1 * MiB, CHUNK, &file);
	uint8_t *p = kf_map(fd, 0, 1 * MiB);
	struct kvmm_region_stat st;

	(void)state;
	kf_fill(p, 1 * MiB, 0, 81);
	assert_int_equal(kf_debugfs_set("fail_ios", 1), 0);
	EXPECT_ERR(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, CHUNK), -EIO,
		   "EVICT with the write failing");
	/* Nothing is on flash and no resident chunk has a clean copy. */
	st = kf_stat(fd);
	if (st.flash_bytes || kt_sysfs_u64("flash_bytes"))
		fail_msg("after a failed write: expected flash_bytes 0 (region) and 0 (sysfs), "
			 "saw %llu and %llu",
			 (unsigned long long)st.flash_bytes,
			 (unsigned long long)kt_sysfs_u64("flash_bytes"));
	/* So the backing can be cleared. */
	EXPECT_ERR(kf_set_backing(fd, KVMM_BACKING_NONE), 0,
		   "clearing the backing after a failed write");
	assert_true(kf_check(p, 1 * MiB, 0, 81, "after a failed write"));
	kf_unmap(p, 1 * MiB);
	kf_close(fd);
	kf_close(file);
}

static void failed_read_gives_eio_and_sigbus_and_keeps_the_data_on_flash(void **state)
{
	int file, fd = kf_region_backed(1 * MiB, CHUNK, &file);
	uint8_t *p = kf_map(fd, 0, 1 * MiB);
	struct kvmm_region_stat a, b;
	int sig;

	(void)state;
	kf_fill(p, 1 * MiB, 0, 90);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 1 * MiB), 0);
	a = kf_stat(fd);
	assert_int_equal(kf_debugfs_set("fail_ios", 1), 0);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_PREFETCH, 0, CHUNK), 0);
	EXPECT_ERR(kt_range_ioctl(fd, KVMM_IOC_WAIT, 0, CHUNK), -EIO, "WAIT with the read failing");
	assert_int_equal(kf_state(fd, 0), FLASH | KVMM_CHUNK_ERROR);
	b = kf_stat(fd);
	assert_int_equal(b.io_errors - a.io_errors, 1);
	assert_int_equal(b.flash_bytes, 1 * MiB);
	/* ENSURE with the read failing. */
	assert_int_equal(kf_debugfs_set("fail_ios", 1), 0);
	EXPECT_ERR(kt_range_ioctl(fd, KVMM_IOC_ENSURE, CHUNK, CHUNK), -EIO,
		   "ENSURE with the read failing");
	assert_int_equal(KF_STATE(kf_state(fd, 1)), FLASH);
	/* A fault with the read failing. */
	assert_int_equal(kf_debugfs_set("fail_ios", 1), 0);
	sig = kf_touch_in_child(p + 2 * CHUNK, CHUNK, 0);
	if (sig != SIGBUS)
		fail_msg("touching a chunk whose read fails: expected SIGBUS, saw %s",
			 sig > 0 ? strsignal(sig)
			 : sig	 ? "abnormal exit"
				 : "no signal");
	assert_int_equal(kf_debugfs_set("fail_ios", 0), 0);
	b = kf_stat(fd);
	assert_int_equal(b.io_errors - a.io_errors, 3);
	assert_int_equal(b.flash_bytes, 1 * MiB);
	/* The data is still on flash: PREFETCH retries and reads it back. */
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_PREFETCH, 0, 1 * MiB), 0);
	EXPECT_ERR(kt_range_ioctl(fd, KVMM_IOC_WAIT, 0, 1 * MiB), 0, "WAIT on the retry");
	kf_expect_states(fd, 0, 16, RESIDENT, "after the retry");
	assert_true(kf_check(p, 1 * MiB, 0, 90, "after the failed reads"));
	kf_unmap(p, 1 * MiB);
	kf_close(fd);
	kf_close(file);
}

/* 4 MiB of 64 KiB chunks: two merged writes and two merged reads of 2 MiB. */
static void adjacent_chunks_move_in_merged_ios_and_read_back_exact(void **state)
{
	(void)state;
	for (int buffered = 0; buffered < 2; buffered++) {
		int file, fd;
		uint8_t *p;
		uint64_t m0, m1;

		assert_int_equal(kf_debugfs_set("force_buffered", buffered), 0);
		fd = kf_region_backed(4 * MiB, CHUNK, &file);
		p = kf_map(fd, 0, 4 * MiB);
		kf_fill(p, 4 * MiB, 0, 100 + buffered);
		m0 = kt_sysfs_u64("stats/merged_ios");
		assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 4 * MiB), 0);
		kf_expect_states(fd, 0, 64, FLASH, "after EVICT");
		m1 = kt_sysfs_u64("stats/merged_ios");
		if (m1 - m0 < 2)
			fail_msg("%s store: 64 chunks in adjacent slots went out in %llu merged "
				 "writes, expected at least 2",
				 buffered ? "buffered" : "direct", (unsigned long long)(m1 - m0));
		assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_PREFETCH, 0, 4 * MiB), 0);
		EXPECT_ERR(kt_range_ioctl(fd, KVMM_IOC_WAIT, 0, 4 * MiB), 0, "WAIT");
		kf_expect_states(fd, 0, 64, RESIDENT, "after PREFETCH");
		if (kt_sysfs_u64("stats/merged_ios") - m1 < 2)
			fail_msg("%s store: 64 chunks read back in %llu merged reads, expected at "
				 "least 2",
				 buffered ? "buffered" : "direct",
				 (unsigned long long)(kt_sysfs_u64("stats/merged_ios") - m1));
		assert_true(kf_check(p, 4 * MiB, 0, 100 + buffered, "after merged I/O"));
		kf_unmap(p, 4 * MiB);
		kf_close(fd);
		kf_close(file);
	}
}

static void failed_merged_ios_are_retried_chunk_by_chunk(void **state)
{
	int file, fd = kf_region_backed(1 * MiB, CHUNK, &file);
	uint8_t *p = kf_map(fd, 0, 1 * MiB);
	uint64_t r0 = kt_sysfs_u64("stats/merged_retries");
	struct kvmm_region_stat a, b;

	(void)state;
	kf_fill(p, 1 * MiB, 0, 110);
	a = kf_stat(fd);
	assert_int_equal(kf_debugfs_set("fail_merged", 1), 0);
	EXPECT_ERR(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 1 * MiB), 0,
		   "EVICT with the merged write failing");
	assert_int_equal(kf_debugfs_u64("fail_merged"), 0);
	assert_int_equal(kt_sysfs_u64("stats/merged_retries") - r0, 1);
	kf_expect_states(fd, 0, 16, FLASH, "after the retried write");
	b = kf_stat(fd);
	assert_int_equal(b.io_errors - a.io_errors, 0);

	assert_int_equal(kf_debugfs_set("fail_merged", 1), 0);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_PREFETCH, 0, 1 * MiB), 0);
	EXPECT_ERR(kt_range_ioctl(fd, KVMM_IOC_WAIT, 0, 1 * MiB), 0,
		   "WAIT with the merged read failing");
	assert_int_equal(kt_sysfs_u64("stats/merged_retries") - r0, 2);
	kf_expect_states(fd, 0, 16, RESIDENT, "after the retried read");
	assert_true(kf_check(p, 1 * MiB, 0, 110, "after retried merged I/O"));
	kf_unmap(p, 1 * MiB);
	kf_close(fd);
	kf_close(file);
}

/* The merged write fails, then every retry: all 16 chunks stay resident. */
static void failed_merged_write_and_retries_keep_every_chunk_resident(void **state)
{
	int file, fd = kf_region_backed(1 * MiB, CHUNK, &file);
	uint8_t *p = kf_map(fd, 0, 1 * MiB);
	struct kvmm_region_stat a, b;

	(void)state;
	kf_fill(p, 1 * MiB, 0, 120);
	a = kf_stat(fd);
	/* 16 chunks pass their check at submission, then the retries fail. */
	assert_int_equal(kf_debugfs_set("fail_skip", 16), 0);
	assert_int_equal(kf_debugfs_set("fail_ios", 16), 0);
	assert_int_equal(kf_debugfs_set("fail_merged", 1), 0);
	EXPECT_ERR(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 1 * MiB), -EIO,
		   "EVICT with the merged write and every retry failing");
	assert_int_equal(kf_debugfs_u64("fail_merged"), 0);
	assert_int_equal(kf_debugfs_u64("fail_ios"), 0);
	kf_expect_states(fd, 0, 16, RESIDENT | KVMM_CHUNK_DIRTY, "after the failed retries");
	b = kf_stat(fd);
	assert_int_equal(b.io_errors - a.io_errors, 16);
	assert_int_equal(b.flash_bytes, 0);
	assert_true(kf_check(p, 1 * MiB, 0, 120, "after failed merged write"));
	assert_int_equal(kf_debugfs_set("fail_skip", 0), 0);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 1 * MiB), 0);
	kf_expect_states(fd, 0, 16, FLASH, "after EVICT without errors");
	assert_true(kf_check(p, 1 * MiB, 0, 120, "read back after the failures"));
	kf_unmap(p, 1 * MiB);
	kf_close(fd);
	kf_close(file);
}

/*
 * Chunks evicted one at a time in a shuffled order hold slots out of order:
 * only neighbours in the file may share an I/O, and everything reads back.
 */
static void chunks_in_shuffled_slots_read_back_exact(void **state)
{
	static const int order[16] = {5, 2, 9, 0, 14, 7, 1, 12, 3, 15, 8, 10, 4, 13, 6, 11};
	int file, fd = kf_region_backed(1 * MiB, CHUNK, &file);
	uint8_t *p = kf_map(fd, 0, 1 * MiB);

	(void)state;
	kf_fill(p, 1 * MiB, 0, 130);
	for (int i = 0; i < 16; i++)
		assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, order[i] * CHUNK, CHUNK), 0);
	kf_expect_states(fd, 0, 16, FLASH, "after shuffled EVICTs");
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_PREFETCH, 0, 1 * MiB), 0);
	EXPECT_ERR(kt_range_ioctl(fd, KVMM_IOC_WAIT, 0, 1 * MiB), 0, "WAIT");
	assert_true(kf_check(p, 1 * MiB, 0, 130, "read back from shuffled slots"));
	/* Rewritten in place: each chunk goes back to its own slot. */
	kf_fill(p, 1 * MiB, 0, 131);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 1 * MiB), 0);
	kf_expect_states(fd, 0, 16, FLASH, "after the second EVICT");
	assert_true(kf_check(p, 1 * MiB, 0, 131, "faulted back from shuffled slots"));
	kf_unmap(p, 1 * MiB);
	kf_close(fd);
	kf_close(file);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(corrupted_slot_gives_eio_and_sigbus_never_bad_data,
				      kf_teardown),
	    cmocka_unit_test_teardown(full_filesystem_gives_enospc_and_loses_nothing, kf_teardown),
	    cmocka_unit_test_teardown(failed_write_leaves_the_chunk_resident_and_unchanged,
				      kf_teardown),
	    cmocka_unit_test_teardown(failed_write_holds_no_flash_slot, kf_teardown),
	    cmocka_unit_test_teardown(failed_read_gives_eio_and_sigbus_and_keeps_the_data_on_flash,
				      kf_teardown),
	    cmocka_unit_test_teardown(adjacent_chunks_move_in_merged_ios_and_read_back_exact,
				      kf_teardown),
	    cmocka_unit_test_teardown(chunks_in_shuffled_slots_read_back_exact, kf_teardown),
	    cmocka_unit_test_teardown(failed_merged_ios_are_retried_chunk_by_chunk, kf_teardown),
	    cmocka_unit_test_teardown(failed_merged_write_and_retries_keep_every_chunk_resident,
				      kf_teardown),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests(tests, kf_setup, NULL);
}
