/*
 * Flash tier moves: EVICT, fault-back, pread, PREFETCH + WAIT and poll()
 * return byte-exact data for every chunk size; QUERY flags, STAT and sysfs
 * counters account for every move; clean chunks are dropped without a
 * rewrite; DISCARD frees flash slots; refaults are counted.
 */
#include "common/kt_flash.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define FLASH	 KVMM_CHUNK_FLASH
#define RESIDENT KVMM_CHUNK_RESIDENT

/* a - b of a counter, failing with both values if it is not want. */
#define DELTA(what, before, after, want)                                                           \
	do {                                                                                       \
		unsigned long long d_ = (unsigned long long)((after) - (before));                  \
		unsigned long long w_ = (unsigned long long)(want);                                \
		if (d_ != w_)                                                                      \
			fail_msg("%s: expected +%llu, saw +%llu (%llu -> %llu)", what, w_, d_,     \
				 (unsigned long long)(before), (unsigned long long)(after));       \
	} while (0)

static int evict(int fd, uint64_t off, uint64_t len)
{
	return kt_range_ioctl(fd, KVMM_IOC_EVICT, off, len);
}

static void prefetch_wait(int fd, uint64_t off, uint64_t len)
{
	int err = kt_range_ioctl(fd, KVMM_IOC_PREFETCH, off, len);

	if (err)
		fail_msg("PREFETCH %llu+%llu: expected 0, saw %s", (unsigned long long)off,
			 (unsigned long long)len, strerror(-err));
	err = kt_range_ioctl(fd, KVMM_IOC_WAIT, off, len);
	if (err)
		fail_msg("WAIT %llu+%llu: expected 0, saw %s", (unsigned long long)off,
			 (unsigned long long)len, strerror(-err));
}

static void evict_then_read_back_is_byte_exact_at_every_chunk_size(void **state)
{
	const uint32_t chunks[] = {4 * KiB, 64 * KiB, 2 * MiB};

	(void)state;
	for (unsigned int c = 0; c < 3; c++) {
		uint64_t size = chunks[c] == 2 * MiB ? 8 * MiB : 2 * MiB, nr = size / chunks[c];
		int file, fd = kf_region_backed(size, chunks[c], &file);
		uint8_t *p = kf_map(fd, 0, size), *buf = malloc(size);
		uint64_t used0 = kt_sysfs_u64("pool_used_bytes");
		struct kvmm_region_stat st;
		char what[96];

		assert_non_null(buf);
		kf_fill(p, size, 0, 10 + c);
		assert_int_equal(kt_sysfs_u64("pool_used_bytes") - used0, size);
		assert_int_equal(evict(fd, 0, size), 0);
		snprintf(what, sizeof(what), "chunk %u KiB: after EVICT", chunks[c] >> 10);
		kf_expect_states(fd, 0, nr, FLASH, what);
		st = kf_stat(fd);
		if (st.resident_bytes || st.flash_bytes != size || st.flash_resident_bytes != size)
			fail_msg("%s: expected resident 0, flash %llu, flash-only %llu; saw %llu, "
				 "%llu, %llu",
				 what, (unsigned long long)size, (unsigned long long)size,
				 (unsigned long long)st.resident_bytes,
				 (unsigned long long)st.flash_bytes,
				 (unsigned long long)st.flash_resident_bytes);
		assert_int_equal(kt_sysfs_u64("pool_used_bytes"), used0);

		/* 1: pread, at an odd offset and length that cross chunks. */
		memset(buf, 0, size);
		assert_int_equal(pread(fd, buf + 8, size - 24, 8), (ssize_t)(size - 24));
		snprintf(what, sizeof(what), "chunk %u KiB: pread after EVICT", chunks[c] >> 10);
		assert_true(kf_check(buf + 8, size - 24, 8, 10 + c, what));

		/* 2: through the mapping (the fault reads it back). */
		assert_int_equal(evict(fd, 0, size), 0);
		kf_expect_states(fd, 0, nr, FLASH, "after the second EVICT");
		snprintf(what, sizeof(what), "chunk %u KiB: mapping after EVICT", chunks[c] >> 10);
		assert_true(kf_check(p, size, 0, 10 + c, what));

		/* 3: PREFETCH + WAIT, then reading costs no fault-back. */
		assert_int_equal(evict(fd, 0, size), 0);
		kf_expect_states(fd, 0, nr, FLASH, "after the third EVICT");
		prefetch_wait(fd, 0, size);
		kf_expect_states(fd, 0, nr, RESIDENT, "after PREFETCH + WAIT");
		st = kf_stat(fd);
		snprintf(what, sizeof(what), "chunk %u KiB: mapping after PREFETCH + WAIT",
			 chunks[c] >> 10);
		assert_true(kf_check(p, size, 0, 10 + c, what));
		assert_int_equal(kf_stat(fd).fault_backs, st.fault_backs);
		assert_int_equal(kf_stat(fd).inflight_ios, 0);

		free(buf);
		kf_unmap(p, size);
		kf_close(fd);
		kf_close(file);
	}
	assert_int_equal(kf_sysfs_wait("flash_bytes", 0, 2000), 0);
}

static void query_reports_flash_resident_and_dirty_flags(void **state)
{
	int file, fd = kf_region_backed(1 * MiB, 64 * KiB, &file);
	volatile uint8_t *p = kf_map(fd, 0, 1 * MiB);
	uint8_t s[16], one = 0x5a;

	(void)state;
	/* Chunks 0-3 written, 4-15 empty. */
	for (int i = 0; i < 4; i++)
		p[i * 64 * KiB + 7] = (uint8_t)(i + 1);
	assert_int_equal(evict(fd, 0, 1 * MiB), 0);
	kf_query(fd, 0, 16, s);
	for (int i = 0; i < 16; i++)
		if (s[i] != (i < 4 ? FLASH : KVMM_CHUNK_EMPTY))
			fail_msg("after EVICT: chunk %d: expected 0x%02x, saw 0x%02x", i,
				 i < 4 ? FLASH : KVMM_CHUNK_EMPTY, s[i]);
	/* Read back and only read: resident and clean. */
	prefetch_wait(fd, 0, 64 * KiB);
	assert_int_equal(p[7], 1);
	assert_int_equal(p[64 * KiB + 7], 2);
	kf_query(fd, 0, 4, s);
	if (s[0] != RESIDENT || s[1] != RESIDENT || s[2] != FLASH || s[3] != FLASH)
		fail_msg("after PREFETCH of chunk 0 and a read of chunk 1: expected 01 01 03 03, "
			 "saw %02x %02x %02x %02x",
			 s[0], s[1], s[2], s[3]);
	/* A store through the mapping and a pwrite each make a chunk dirty. */
	p[64 * KiB + 8] = 9;
	assert_int_equal(pwrite(fd, &one, 1, 2 * 64 * KiB + 9), 1);
	kf_query(fd, 0, 4, s);
	if (s[0] != RESIDENT || s[1] != (RESIDENT | KVMM_CHUNK_DIRTY) ||
	    s[2] != (RESIDENT | KVMM_CHUNK_DIRTY) || s[3] != FLASH)
		fail_msg("after a store to chunk 1 and a pwrite to chunk 2: expected 01 41 41 03, "
			 "saw %02x %02x %02x %02x",
			 s[0], s[1], s[2], s[3]);
	/* Evicting again cleans everything; then a pin shows beside FLASH-free RESIDENT. */
	assert_int_equal(evict(fd, 0, 1 * MiB), 0);
	kf_expect_states(fd, 0, 4, FLASH, "after the second EVICT");
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_PIN, 0, 64 * KiB), 0);
	assert_int_equal(kf_state(fd, 0), RESIDENT | KVMM_CHUNK_PINNED);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 128 * KiB), -EBUSY);
	assert_int_equal(kf_state(fd, 1), FLASH);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_UNPIN, 0, 64 * KiB), 0);
	assert_int_equal(p[7], 1);
	assert_int_equal(p[64 * KiB + 8], 9);
	assert_int_equal(p[2 * 64 * KiB + 9], 0x5a);
	assert_int_equal(p[3 * 64 * KiB + 7], 4);
	kf_unmap((void *)p, 1 * MiB);
	kf_close(fd);
	kf_close(file);
}

static void stat_and_sysfs_counters_add_up(void **state)
{
	const uint64_t chunk = 256 * KiB, n = 16, size = n * chunk;
	int file, fd = kf_region_backed(2 * size, chunk, &file);
	uint8_t *p = kf_map(fd, 0, 2 * size);
	struct kvmm_region_stat a, b;
	uint64_t ev0 = kt_sysfs_u64("stats/evictions");
	uint64_t wr0 = kt_sysfs_u64("stats/flash_bytes_written");
	uint64_t fb0 = kt_sysfs_u64("stats/fault_backs");
	uint64_t pf0 = kt_sysfs_u64("stats/prefetches");
	uint64_t rd0 = kt_sysfs_u64("stats/flash_bytes_read");
	uint64_t fl0 = kt_sysfs_u64("flash_bytes");

	(void)state;
	/* Only the first half is written: EVICT leaves the empty half alone. */
	kf_fill(p, size, 0, 20);
	a = kf_stat(fd);
	assert_int_equal(evict(fd, 0, 2 * size), 0);
	b = kf_stat(fd);
	DELTA("region evictions", a.evictions, b.evictions, n);
	DELTA("region clean_drops", a.clean_drops, b.clean_drops, 0);
	DELTA("region flash_bytes_written", a.flash_bytes_written, b.flash_bytes_written, size);
	DELTA("sysfs stats/evictions", ev0, kt_sysfs_u64("stats/evictions"), n);
	DELTA("sysfs stats/flash_bytes_written", wr0, kt_sysfs_u64("stats/flash_bytes_written"),
	      size);
	DELTA("sysfs flash_bytes", fl0, kt_sysfs_u64("flash_bytes"), size);
	assert_int_equal(b.flash_bytes, size);
	assert_int_equal(b.flash_resident_bytes, size);
	assert_int_equal(b.resident_bytes, 0);
	assert_int_equal(b.inflight_ios, 0);
	kf_expect_states(fd, n, n, KVMM_CHUNK_EMPTY, "empty half after EVICT");

	/*
	 * Touch the first quarter backwards, one fault-back per chunk (a
	 * forward scan would read around the faults: see the read-around test).
	 */
	a = b;
	for (uint64_t i = n / 2; i-- > 0;)
		(void)*(volatile uint8_t *)(p + i * chunk);
	assert_true(kf_check(p, size / 2, 0, 20, "fault-back"));
	b = kf_stat(fd);
	DELTA("region fault_backs", a.fault_backs, b.fault_backs, n / 2);
	DELTA("region prefetches", a.prefetches, b.prefetches, 0);
	DELTA("region flash_bytes_read", a.flash_bytes_read, b.flash_bytes_read, size / 2);
	assert_int_equal(b.flash_resident_bytes, size / 2);
	assert_int_equal(b.resident_bytes, size / 2);
	/* Clean copies still hold their slots. */
	assert_int_equal(b.flash_bytes, size);

	/* PREFETCH a quarter, ENSURE a quarter: both count as prefetches. */
	a = b;
	prefetch_wait(fd, size / 2, size / 4);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_ENSURE, 3 * size / 4, size / 4), 0);
	b = kf_stat(fd);
	DELTA("region prefetches", a.prefetches, b.prefetches, n / 2);
	DELTA("region fault_backs", a.fault_backs, b.fault_backs, 0);
	DELTA("region flash_bytes_read", a.flash_bytes_read, b.flash_bytes_read, size / 2);
	assert_int_equal(b.flash_resident_bytes, 0);
	assert_int_equal(b.resident_bytes, size);
	assert_true(kf_check(p, size, 0, 20, "after PREFETCH and ENSURE"));
	assert_int_equal(kf_stat(fd).fault_backs, b.fault_backs);

	DELTA("sysfs stats/fault_backs", fb0, kt_sysfs_u64("stats/fault_backs"), n / 2);
	DELTA("sysfs stats/prefetches", pf0, kt_sysfs_u64("stats/prefetches"), n / 2);
	DELTA("sysfs stats/flash_bytes_read", rd0, kt_sysfs_u64("stats/flash_bytes_read"), size);
	assert_int_equal(b.csum_failures, 0);
	assert_int_equal(b.io_errors, 0);
	assert_int_equal(b.inflight_ios, 0);
	kf_unmap(p, 2 * size);
	kf_close(fd);
	kf_close(file);
	/* Closing the region gives its slots back. */
	assert_int_equal(kf_sysfs_wait("flash_bytes", fl0, 2000), fl0);
}

static void clean_chunks_are_dropped_without_a_rewrite(void **state)
{
	const uint64_t chunk = 64 * KiB, size = 1 * MiB;
	int file, fd = kf_region_backed(size, chunk, &file);
	uint8_t *p = kf_map(fd, 0, size);
	struct kvmm_region_stat a, b;
	uint64_t drops0;

	(void)state;
	kf_fill(p, size, 0, 30);
	assert_int_equal(evict(fd, 0, size), 0);
	/* Read everything back without writing, evict again: all dropped. */
	assert_true(kf_check(p, size, 0, 30, "first read-back"));
	a = kf_stat(fd);
	drops0 = kt_sysfs_u64("stats/clean_drops");
	assert_int_equal(evict(fd, 0, size), 0);
	b = kf_stat(fd);
	DELTA("evictions of clean chunks", a.evictions, b.evictions, 16);
	DELTA("clean_drops", a.clean_drops, b.clean_drops, 16);
	DELTA("flash_bytes_written for clean chunks", a.flash_bytes_written, b.flash_bytes_written,
	      0);
	DELTA("sysfs stats/clean_drops", drops0, kt_sysfs_u64("stats/clean_drops"), 16);
	assert_int_equal(b.flash_bytes, size);
	kf_expect_states(fd, 0, 16, FLASH, "after dropping clean chunks");

	/* Same through PREFETCH; then one byte changes in chunk 5 only. */
	prefetch_wait(fd, 0, size);
	p[5 * chunk + 123] ^= 0xff;
	a = kf_stat(fd);
	assert_int_equal(evict(fd, 0, size), 0);
	b = kf_stat(fd);
	DELTA("evictions", a.evictions, b.evictions, 16);
	DELTA("clean_drops with one dirty chunk", a.clean_drops, b.clean_drops, 15);
	DELTA("flash_bytes_written with one dirty chunk", a.flash_bytes_written,
	      b.flash_bytes_written, chunk);
	assert_int_equal(b.flash_bytes, size);
	/* The rewritten chunk holds the new byte, the others the old data. */
	p[5 * chunk + 123] ^= 0xff;
	assert_true(kf_check(p, size, 0, 30, "after the rewrite (byte restored)"));
	/* That restore was a write: exactly one chunk is dirty again. */
	a = kf_stat(fd);
	assert_int_equal(evict(fd, 0, size), 0);
	b = kf_stat(fd);
	DELTA("flash_bytes_written after restoring the byte", a.flash_bytes_written,
	      b.flash_bytes_written, chunk);
	assert_true(kf_check(p, size, 0, 30, "final"));
	kf_unmap(p, size);
	kf_close(fd);
	kf_close(file);
}

static void discard_of_flash_chunks_frees_their_slots(void **state)
{
	const uint64_t chunk = 128 * KiB, size = 4 * MiB;
	int file, fd = kf_region_backed(size, chunk, &file);
	uint8_t *p = kf_map(fd, 0, size);
	uint64_t fl0 = kt_sysfs_u64("flash_bytes"), used0;
	struct kvmm_region_stat st;

	(void)state;
	kf_fill(p, size, 0, 40);
	assert_int_equal(evict(fd, 0, size), 0);
	DELTA("sysfs flash_bytes after EVICT", fl0, kt_sysfs_u64("flash_bytes"), size);
	used0 = kt_sysfs_u64("pool_used_bytes");
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_DISCARD, 1 * MiB, 2 * MiB), 0);
	st = kf_stat(fd);
	assert_int_equal(st.flash_bytes, 2 * MiB);
	assert_int_equal(st.flash_resident_bytes, 2 * MiB);
	DELTA("sysfs flash_bytes after DISCARD of half", fl0, kt_sysfs_u64("flash_bytes"), 2 * MiB);
	assert_int_equal(kt_sysfs_u64("pool_used_bytes"), used0);
	kf_expect_states(fd, 8, 16, KVMM_CHUNK_EMPTY, "discarded flash chunks");
	/* Discarded chunks read as zeros, the rest as before. */
	assert_true(kt_all_zero(p + 1 * MiB, 2 * MiB));
	assert_true(kf_check(p, 1 * MiB, 0, 40, "before the discarded range"));
	assert_true(kf_check(p + 3 * MiB, 1 * MiB, 3 * MiB, 40, "after the discarded range"));
	/* A resident chunk with a clean copy gives its slot back too. */
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_DISCARD, 0, 1 * MiB), 0);
	assert_int_equal(kf_stat(fd).flash_bytes, 1 * MiB);
	/* Freed slots are reused: the file does not grow past what was used. */
	{
		off_t len0 = lseek(file, 0, SEEK_END);

		kf_fill(p, 3 * MiB, 0, 41);
		assert_int_equal(evict(fd, 0, size), 0);
		assert_int_equal(kf_stat(fd).flash_bytes, size);
		if (lseek(file, 0, SEEK_END) > len0)
			fail_msg("backing file grew from %lld to %lld bytes though slots were free",
				 (long long)len0, (long long)lseek(file, 0, SEEK_END));
		assert_true(kf_check(p, 3 * MiB, 0, 41, "rewritten range"));
		assert_true(kf_check(p + 3 * MiB, 1 * MiB, 3 * MiB, 40, "kept range"));
	}
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_DISCARD, 0, size), 0);
	assert_int_equal(kf_stat(fd).flash_bytes, 0);
	assert_int_equal(kf_sysfs_wait("flash_bytes", fl0, 2000), fl0);
	kf_unmap(p, size);
	kf_close(fd);
	kf_close(file);
}

static void poll_reports_epollin_once_prefetched_reads_complete(void **state)
{
	const uint64_t chunk = 2 * MiB, size = 32 * MiB;
	int file, fd = kf_region_backed(size, chunk, &file);
	uint8_t *p = kf_map(fd, 0, size);
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	struct kvmm_region_stat st;
	uint8_t s[16];
	int n;

	(void)state;
	/* Nothing in flight: ready at once. */
	n = poll(&pfd, 1, 0);
	if (n != 1 || !(pfd.revents & POLLIN))
		fail_msg("poll with no I/O in flight: expected POLLIN, saw n=%d revents=0x%x", n,
			 pfd.revents);
	kf_fill(p, size, 0, 50);
	assert_int_equal(evict(fd, 0, size), 0);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_PREFETCH, 0, size), 0);
	pfd.revents = 0;
	n = poll(&pfd, 1, 60000);
	if (n != 1 || !(pfd.revents & POLLIN))
		fail_msg("poll after PREFETCH: expected POLLIN within 60 s, saw n=%d revents=0x%x",
			 n, pfd.revents);
	/* POLLIN means every read has completed: no READING flag, nothing in flight. */
	st = kf_stat(fd);
	kf_query(fd, 0, 16, s);
	for (int i = 0; i < 16; i++)
		if (s[i] != RESIDENT)
			fail_msg("after POLLIN: chunk %d: expected 0x01, saw 0x%02x", i, s[i]);
	assert_int_equal(st.inflight_ios, 0);
	assert_int_equal(st.flash_resident_bytes, 0);
	assert_true(kf_check(p, size, 0, 50, "after poll"));
	assert_int_equal(kf_stat(fd).fault_backs, st.fault_backs);
	kf_unmap(p, size);
	kf_close(fd);
	kf_close(file);
}

static void touching_a_chunk_soon_after_eviction_counts_a_refault(void **state)
{
	int file, fd = kf_region_backed(1 * MiB, 64 * KiB, &file);
	volatile uint8_t *p = kf_map(fd, 0, 1 * MiB);
	uint64_t r0 = kt_sysfs_u64("stats/refaults");
	struct kvmm_region_stat a, b;

	(void)state;
	kf_sysfs_set("refault_window_ms", 60000);
	assert_int_equal(kt_sysfs_u64("refault_window_ms"), 60000);
	p[0] = 1;
	p[64 * KiB] = 2;
	a = kf_stat(fd);
	assert_int_equal(evict(fd, 0, 1 * MiB), 0);
	assert_int_equal(p[0], 1);
	b = kf_stat(fd);
	DELTA("refaults after a touch within the window", a.refaults, b.refaults, 1);
	DELTA("sysfs stats/refaults", r0, kt_sysfs_u64("stats/refaults"), 1);
	/* With the window at 0 nothing counts as a refault. */
	kf_sysfs_set("refault_window_ms", 0);
	assert_int_equal(evict(fd, 0, 1 * MiB), 0);
	assert_int_equal(p[0], 1);
	assert_int_equal(p[64 * KiB], 2);
	DELTA("refaults with refault_window_ms = 0", b.refaults, kf_stat(fd).refaults, 0);
	kf_unmap((void *)p, 1 * MiB);
	kf_close(fd);
	kf_close(file);
}

static void backing_without_direct_io_falls_back_to_buffered_io_and_counts_it(void **state)
{
	/*
	 * Every disk filesystem in the guest takes O_DIRECT, so the store is
	 * opened with the debugfs hook that makes kvmm use buffered I/O.
	 */
	int fd = kf_region(2 * MiB, 256 * KiB), file;
	uint8_t *p = kf_map(fd, 0, 2 * MiB);
	uint64_t b0 = kt_sysfs_u64("stats/buffered_ios");
	struct kvmm_region_stat st;

	(void)state;
	assert_int_equal(kf_debugfs_set("force_buffered", 1), 0);
	file = kf_backing_open(kf_flash_dir());
	assert_int_equal(kf_set_backing(fd, file), 0);
	assert_int_equal(kf_debugfs_set("force_buffered", 0), 0);
	kf_fill(p, 2 * MiB, 0, 60);
	assert_int_equal(evict(fd, 0, 2 * MiB), 0);
	kf_expect_states(fd, 0, 8, FLASH, "after EVICT to a buffered backing file");
	assert_true(kf_check(p, 1 * MiB, 0, 60, "fault-back from a buffered backing file"));
	prefetch_wait(fd, 1 * MiB, 1 * MiB);
	assert_true(
	    kf_check(p + 1 * MiB, 1 * MiB, 1 * MiB, 60, "PREFETCH from a buffered backing file"));
	st = kf_stat(fd);
	/*
	 * The 8 writes merge into one I/O (adjacent slots), and the first
	 * fault-back reads the rest around it in one more: all buffered.
	 */
	if (st.buffered_ios < 2)
		fail_msg("buffered_ios: expected at least 2, saw %llu",
			 (unsigned long long)st.buffered_ios);
	if (kt_sysfs_u64("stats/buffered_ios") - b0 < 2)
		fail_msg("sysfs stats/buffered_ios: expected at least +2, saw +%llu",
			 (unsigned long long)(kt_sysfs_u64("stats/buffered_ios") - b0));
	assert_int_equal(st.io_errors, 0);
	assert_int_equal(st.csum_failures, 0);
	kf_unmap(p, 2 * MiB);
	kf_close(fd);
	kf_close(file);
}

/* EVICT of a range with a pinned chunk anywhere in it gives EBUSY and moves nothing. */
static void evict_of_a_range_with_a_pin_moves_nothing(void **state)
{
	int file, fd = kf_region_backed(1 * MiB, 64 * KiB, &file);
	struct kvmm_region_stat st;

	(void)state;
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_ENSURE, 0, 256 * KiB), 0);
	/* The last chunk of the range: the ones before it come first in a walk. */
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_PIN, 192 * KiB, 64 * KiB), 0);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 256 * KiB), -EBUSY);
	kf_expect_states(fd, 0, 3, KVMM_CHUNK_RESIDENT | KVMM_CHUNK_DIRTY,
			 "after EVICT refused for a pin on the range's last chunk");
	st = kf_stat(fd);
	if (st.evictions || st.resident_bytes != 256 * KiB)
		fail_msg("after the refused EVICT: expected 0 evictions and 256 KiB resident, saw "
			 "%llu evictions and %llu bytes resident",
			 (unsigned long long)st.evictions, (unsigned long long)st.resident_bytes);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_UNPIN, 192 * KiB, 64 * KiB), 0);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 256 * KiB), 0);
	kf_close(fd);
	kf_close(file);
}

/*
 * A forward scan over evicted chunks faults back the first ones alone and
 * then reads around each fault-back (up to 2 MiB per I/O); a fault that is
 * not where the scan would go next reads its own chunk only.
 */
static void forward_scan_reads_around_fault_backs_and_a_jump_does_not(void **state)
{
	const uint64_t size = 8 * MiB, chunk = 64 * KiB, nr = size / chunk;
	int file, fd = kf_region_backed(size, chunk, &file);
	volatile uint8_t *p = kf_map(fd, 0, size);
	struct kvmm_region_stat a, b;
	uint64_t sum = 0;

	(void)state;
	kf_fill((void *)p, size, 0, 70);
	assert_int_equal(evict(fd, 0, size), 0);
	a = kf_stat(fd);
	for (uint64_t off = 0; off < size; off += 4096)
		sum += p[off];
	(void)sum;
	b = kf_stat(fd);
	kf_expect_states(fd, 0, nr, RESIDENT, "after the scan");
	if (b.fault_backs - a.fault_backs + b.prefetches - a.prefetches != nr)
		fail_msg("scan of %llu chunks: %llu fault-backs + %llu read around, expected %llu "
			 "in all",
			 (unsigned long long)nr,
			 (unsigned long long)(b.fault_backs - a.fault_backs),
			 (unsigned long long)(b.prefetches - a.prefetches), (unsigned long long)nr);
	/* One fault-back per 2 MiB of the scan. */
	if (b.fault_backs - a.fault_backs > 4)
		fail_msg(
		    "scan of %llu chunks: %llu fault-backs, expected at most 4 with read-around",
		    (unsigned long long)nr, (unsigned long long)(b.fault_backs - a.fault_backs));
	assert_true(kf_check((void *)p, size, 0, 70, "after a scan with read-around"));

	/* Out again; touch chunk 40 first: no scan led there, so it comes alone. */
	assert_int_equal(evict(fd, 0, size), 0);
	a = kf_stat(fd);
	sum += p[40 * chunk];
	b = kf_stat(fd);
	assert_int_equal(b.fault_backs - a.fault_backs, 1);
	assert_int_equal(b.prefetches - a.prefetches, 0);
	assert_int_equal(kf_state(fd, 41), FLASH);
	assert_true(kf_check((void *)(p + 40 * chunk), chunk, 40 * chunk, 70, "chunk 40"));
	kf_unmap((void *)p, size);
	kf_close(fd);
	kf_close(file);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(evict_then_read_back_is_byte_exact_at_every_chunk_size,
				      kf_teardown),
	    cmocka_unit_test_teardown(query_reports_flash_resident_and_dirty_flags, kf_teardown),
	    cmocka_unit_test_teardown(evict_of_a_range_with_a_pin_moves_nothing, kf_teardown),
	    cmocka_unit_test_teardown(stat_and_sysfs_counters_add_up, kf_teardown),
	    cmocka_unit_test_teardown(clean_chunks_are_dropped_without_a_rewrite, kf_teardown),
	    cmocka_unit_test_teardown(discard_of_flash_chunks_frees_their_slots, kf_teardown),
	    cmocka_unit_test_teardown(poll_reports_epollin_once_prefetched_reads_complete,
				      kf_teardown),
	    cmocka_unit_test_teardown(forward_scan_reads_around_fault_backs_and_a_jump_does_not,
				      kf_teardown),
	    cmocka_unit_test_teardown(touching_a_chunk_soon_after_eviction_counts_a_refault,
				      kf_teardown),
	    cmocka_unit_test_teardown(
		backing_without_direct_io_falls_back_to_buffered_io_and_counts_it, kf_teardown),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests(tests, kf_setup, NULL);
}
