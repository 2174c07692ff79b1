/*
 * KVMM_IOC_SHARE: ranges of one or several regions read the same memory
 * without a copy; a write copies the chunk for the writer only; DISCARD and
 * close drop one share; eviction writes a shared chunk once and unmaps it
 * from every sharer, and a touch through any of them brings it back for
 * all; QUERY, STAT and sysfs count shared memory once; every refusal
 * changes nothing.
 */
#include "common/kt_flash.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define CH	 (64 * KiB)
#define SHARED	 KVMM_CHUNK_SHARED
#define RESIDENT KVMM_CHUNK_RESIDENT
#define FLASH	 KVMM_CHUNK_FLASH
#define DIRTY	 KVMM_CHUNK_DIRTY

static int share(int dst, uint64_t doff, int src, uint64_t soff, uint64_t len)
{
	struct kvmm_share a = {
	    .src_fd = src, .src_offset = soff, .dst_offset = doff, .length = len};

	return ioctl(dst, KVMM_IOC_SHARE, &a) ? -errno : 0;
}

static void share_ok(int dst, uint64_t doff, int src, uint64_t soff, uint64_t len)
{
	int err = share(dst, doff, src, soff, len);

	if (err)
		fail_msg("SHARE %llu bytes: expected success, saw %s", (unsigned long long)len,
			 strerror(-err));
}

static uint64_t stat_u64(const char *name)
{
	char path[64];

	snprintf(path, sizeof(path), "stats/%s", name);
	return kt_sysfs_u64(path);
}

/* Every chunk of [first, first + nr) has the flag (or has not, want 0). */
static void expect_flag(int fd, uint64_t first, uint64_t nr, uint8_t flag, int want,
			const char *when)
{
	uint8_t *s = malloc(nr);

	assert_non_null(s);
	kf_query(fd, first, nr, s);
	for (uint64_t i = 0; i < nr; i++)
		if (!!(s[i] & flag) != want)
			fail_msg("%s: chunk %llu state 0x%02x, expected flag 0x%02x %s", when,
				 (unsigned long long)(first + i), s[i], flag,
				 want ? "set" : "clear");
	free(s);
}

static void shared_ranges_read_one_memory_and_a_write_copies_for_the_writer(void **state)
{
	uint64_t size = 2 * MiB, half = size / 2, nr = half / CH;
	int src = kf_region(size, CH), dst = kf_region(size, CH);
	uint8_t *s = kf_map(src, 0, size), *d = kf_map(dst, 0, size), buf[CH];
	uint64_t used, cow, shared0 = stat_u64("shared_bytes");
	struct kvmm_region_stat st;

	(void)state;
	kt_fill(s, size, 0, 1);
	used = kt_sysfs_u64("pool_used_bytes");
	share_ok(dst, 0, src, 0, half);

	/* One memory: nothing allocated, both read it, both say so. */
	assert_int_equal(kt_sysfs_u64("pool_used_bytes"), used);
	assert_int_equal(stat_u64("shared_bytes") - shared0, half);
	assert_true(kt_check(d, half, 0, 1));
	/* pread reads an empty chunk as zeros without allocating it. */
	assert_int_equal(pread(dst, buf, CH, half), (ssize_t)CH);
	assert_true(kt_all_zero(buf, CH));
	kf_expect_states(dst, 0, nr, RESIDENT | SHARED | DIRTY, "destination after SHARE");
	kf_expect_states(src, 0, nr, RESIDENT | SHARED | DIRTY, "source after SHARE");
	expect_flag(src, nr, nr, SHARED, 0, "the source's unshared half");
	st = kf_stat(dst);
	assert_int_equal(st.shared_bytes, half);
	assert_int_equal(st.resident_bytes, 0);
	st = kf_stat(src);
	assert_int_equal(st.shared_bytes, half);
	assert_int_equal(st.resident_bytes, half);
	assert_int_equal(kt_sysfs_u64("pool_used_bytes"), used);
	{
		/* REGION_LIST says the same; the home regions are not listed. */
		struct kvmm_region_info info[64];
		struct kvmm_region_list l = {.capacity = 64, .regions = (uintptr_t)info};
		int dev = kf_track(kt_dev_open()), seen = 0;

		assert_int_equal(ioctl(dev, KVMM_IOC_REGION_LIST, &l), 0);
		assert_int_equal(l.count, 2);
		for (unsigned int i = 0; i < l.count; i++) {
			assert_int_equal(info[i].shared_bytes, half);
			seen += info[i].resident_bytes == half;
		}
		assert_int_equal(seen, 1);
		kf_close(dev);
	}

	/* A store through the destination copies that chunk for it alone. */
	cow = stat_u64("cow_copies");
	d[3 * CH + 5] ^= 0xff;
	assert_int_equal(stat_u64("cow_copies") - cow, 1);
	assert_int_equal(kt_sysfs_u64("pool_used_bytes") - used, CH);
	assert_int_equal(kf_state(dst, 3), RESIDENT | DIRTY);
	assert_int_equal(kf_state(src, 3), RESIDENT | SHARED | DIRTY);
	assert_true(kt_check(s, half, 0, 1));
	assert_int_equal(d[3 * CH + 5], (uint8_t)(kt_pattern(3 * CH + 5, 1) ^ 0xff));
	assert_true(kt_check(d + 3 * CH + 6, CH - 6, 3 * CH + 6, 1));

	/* And through the source, for the source alone. */
	s[5 * CH] ^= 0xff;
	assert_int_equal(stat_u64("cow_copies") - cow, 2);
	assert_int_equal(kf_state(src, 5), RESIDENT | DIRTY);
	assert_true(kt_check(d + 5 * CH, CH, 5 * CH, 1));

	/* pwrite copies too; pread reads the shared memory. */
	kt_fill(buf, CH, 0, 9);
	assert_int_equal(pwrite(dst, buf, 100, 7 * CH + 10), 100);
	assert_int_equal(stat_u64("cow_copies") - cow, 3);
	assert_true(kt_check(d + 7 * CH + 10, 100, 0, 9));
	assert_true(kt_check(s + 7 * CH, CH, 7 * CH, 1));
	assert_true(kt_check(d + 7 * CH, 10, 7 * CH, 1));
	assert_int_equal(pread(dst, buf, CH, 8 * CH), (ssize_t)CH);
	assert_true(kt_check(buf, CH, 8 * CH, 1));
	assert_int_equal(kf_state(dst, 8), RESIDENT | SHARED | DIRTY);

	st = kf_stat(dst);
	assert_int_equal(st.shared_bytes, half - 2 * CH);
	assert_int_equal(st.resident_bytes, 2 * CH);
	/* Every chunk still has a sharer: the shared memory is all kept. */
	assert_int_equal(stat_u64("shared_bytes") - shared0, half);
	assert_int_equal(kf_stat(src).shared_bytes, half - CH);
	kf_unmap(s, size);
	kf_unmap(d, size);
	kf_close(src);
	kf_close(dst);
	assert_int_equal(stat_u64("shared_bytes"), shared0);
}

static void discard_and_close_drop_one_share_and_the_last_frees(void **state)
{
	uint64_t size = 1 * MiB, nr = size / CH;
	int src = kf_region(size, CH), dst = kf_region(size, CH);
	uint8_t *s = kf_map(src, 0, size), *d = kf_map(dst, 0, size), *buf = malloc(size);
	uint64_t used, shared0 = stat_u64("shared_bytes");

	(void)state;
	assert_non_null(buf);
	kt_fill(s, size, 0, 2);
	used = kt_sysfs_u64("pool_used_bytes");
	share_ok(dst, 0, src, 0, size);
	assert_int_equal(kt_range_ioctl(src, KVMM_IOC_DISCARD, 0, size), 0);
	/* The source reads zeros (pread allocates nothing); the destination still holds the data.
	 */
	assert_int_equal(pread(src, buf, size, 0), (ssize_t)size);
	assert_true(kt_all_zero(buf, size));
	assert_true(kt_check(d, size, 0, 2));
	assert_int_equal(kt_sysfs_u64("pool_used_bytes"), used);
	kf_expect_states(dst, 0, nr, RESIDENT | SHARED | DIRTY, "after the source's DISCARD");
	kf_expect_states(src, 0, nr, KVMM_CHUNK_EMPTY, "the source after its DISCARD");
	assert_int_equal(kf_stat(src).shared_bytes, 0);
	kf_unmap(s, size);
	free(buf);

	/* Closing the last sharer frees the memory. */
	kf_unmap(d, size);
	kf_close(dst);
	assert_int_equal(kt_sysfs_u64("pool_used_bytes"), used - size);
	assert_int_equal(stat_u64("shared_bytes"), shared0);
	kf_close(src);
}

static void shares_chain_and_a_range_may_share_its_own_region(void **state)
{
	uint64_t size = 1 * MiB, q = size / 4;
	int a = kf_region(size, CH), b = kf_region(size, CH), c = kf_region(size, CH);
	uint8_t *pa = kf_map(a, 0, size), *pb = kf_map(b, 0, size), *pc = kf_map(c, 0, size);
	uint64_t used;

	(void)state;
	kt_fill(pa, q, 0, 3);
	used = kt_sysfs_u64("pool_used_bytes");
	/* Within one region: its second quarter reads its first. */
	share_ok(a, q, a, 0, q);
	/* A shared range passed on: b from a's copy, c from b. */
	share_ok(b, 0, a, q, q);
	share_ok(c, 2 * q, b, 0, q);
	assert_int_equal(kt_sysfs_u64("pool_used_bytes"), used);
	assert_true(kt_check(pa + q, q, 0, 3));
	assert_true(kt_check(pb, q, 0, 3));
	assert_true(kt_check(pc + 2 * q, q, 0, 3));
	/* Writes stay with their writer. */
	pb[10] = 0;
	pa[q + 10] = 1;
	assert_int_equal(pa[10], kt_pattern(10, 3));
	assert_int_equal(pc[2 * q + 10], kt_pattern(10, 3));
	assert_int_equal(pb[10], 0);
	assert_int_equal(pa[q + 10], 1);
	/* Sharing again replaces what the destination held. */
	share_ok(b, 0, c, 2 * q, q);
	assert_int_equal(pb[10], kt_pattern(10, 3));
	assert_int_equal(kt_sysfs_u64("pool_used_bytes"), used + CH); /* a's own copy */
	kf_unmap(pa, size);
	kf_unmap(pb, size);
	kf_unmap(pc, size);
	kf_close(a);
	kf_close(b);
	kf_close(c);
}

static void eviction_writes_a_shared_chunk_once_and_any_sharer_brings_it_back(void **state)
{
	uint64_t size = 2 * MiB, nr = size / CH, written, fb;
	int file, src = kf_region_backed(size, CH, &file), dst = kf_region(size, CH);
	uint8_t *s = kf_map(src, 0, size), *d = kf_map(dst, 0, size);
	struct kvmm_region_stat a, b;

	(void)state;
	assert_int_equal(kf_set_backing(dst, file), 0);
	kt_fill(s, size, 0, 4);
	share_ok(dst, 0, src, 0, size);
	/* Both map it now. */
	assert_true(kt_check(d, size, 0, 4));
	assert_true(kt_check(s, size, 0, 4));

	written = stat_u64("flash_bytes_written");
	assert_int_equal(kt_range_ioctl(dst, KVMM_IOC_EVICT, 0, size), 0);
	assert_int_equal(stat_u64("flash_bytes_written") - written, size);
	kf_expect_states(src, 0, nr, FLASH | SHARED, "source after the destination's EVICT");
	kf_expect_states(dst, 0, nr, FLASH | SHARED, "destination after its EVICT");
	/* Evicting the other sharer moves nothing more. */
	assert_int_equal(kt_range_ioctl(src, KVMM_IOC_EVICT, 0, size), 0);
	assert_int_equal(stat_u64("flash_bytes_written") - written, size);
	a = kf_stat(src);
	assert_int_equal(a.resident_bytes, 0);
	assert_int_equal(a.flash_bytes, 0); /* the slots are the shared chunks' */
	assert_int_equal(a.shared_bytes, size);

	/* Touching through the source brings it back for the destination too. */
	fb = stat_u64("fault_backs");
	assert_true(kt_check(s, size, 0, 4));
	assert_int_equal(stat_u64("fault_backs") - fb, nr);
	kf_expect_states(dst, 0, nr, RESIDENT | SHARED, "destination after the source's touch");
	b = kf_stat(dst);
	assert_true(kt_check(d, size, 0, 4));
	assert_int_equal(stat_u64("fault_backs") - fb, nr);
	assert_int_equal(kf_stat(dst).faults - b.faults, nr); /* minor faults: no I/O */

	/* Clean now: a second eviction drops it without writing. */
	written = stat_u64("flash_bytes_written");
	assert_int_equal(kt_range_ioctl(src, KVMM_IOC_EVICT, 0, size), 0);
	assert_int_equal(stat_u64("flash_bytes_written"), written);
	/* PREFETCH + WAIT through the destination; pread through the source. */
	assert_int_equal(kt_range_ioctl(dst, KVMM_IOC_PREFETCH, 0, size), 0);
	assert_int_equal(kt_range_ioctl(dst, KVMM_IOC_WAIT, 0, size), 0);
	kf_expect_states(src, 0, nr, RESIDENT | SHARED, "after the destination's PREFETCH");
	assert_int_equal(kt_range_ioctl(src, KVMM_IOC_EVICT, 0, size), 0);
	{
		uint8_t *buf = malloc(size);

		assert_non_null(buf);
		assert_int_equal(pread(src, buf, size, 0), (ssize_t)size);
		assert_true(kt_check(buf, size, 0, 4));
		free(buf);
	}
	/* ENSURE too; a write after all that still copies. */
	assert_int_equal(kt_range_ioctl(src, KVMM_IOC_EVICT, 0, size), 0);
	assert_int_equal(kt_range_ioctl(dst, KVMM_IOC_ENSURE, 0, size), 0);
	kf_expect_states(src, 0, nr, RESIDENT | SHARED, "after the destination's ENSURE");
	d[0] = 0;
	assert_int_equal(s[0], kt_pattern(0, 4));
	kf_unmap(s, size);
	kf_unmap(d, size);
	kf_close(src);
	kf_close(dst);
	assert_int_equal(kf_sysfs_wait("flash_bytes", 0, 2000), 0);
	kf_close(file);
}

static void a_write_to_a_shared_chunk_on_flash_reads_it_back_and_copies(void **state)
{
	uint64_t size = 1 * MiB;
	int file, src = kf_region_backed(size, CH, &file), dst = kf_region(size, CH);
	uint8_t *s = kf_map(src, 0, size), *d = kf_map(dst, 0, size);

	(void)state;
	assert_int_equal(kf_set_backing(dst, file), 0);
	kt_fill(s, size, 0, 5);
	share_ok(dst, 0, src, 0, size);
	assert_int_equal(kt_range_ioctl(src, KVMM_IOC_EVICT, 0, size), 0);
	d[2 * CH + 1] = 0xee;
	assert_int_equal(kf_state(dst, 2), RESIDENT | DIRTY);
	assert_true(kt_check(d + 2 * CH + 2, CH - 2, 2 * CH + 2, 5));
	assert_true(kt_check(s, size, 0, 5));
	kf_unmap(s, size);
	kf_unmap(d, size);
	kf_close(src);
	kf_close(dst);
	kf_close(file);
}

static void pin_gives_a_shared_range_memory_of_its_own(void **state)
{
	uint64_t size = 1 * MiB, nr = size / CH, used;
	int src = kf_region(size, CH), dst = kf_region(size, CH);
	uint8_t *s = kf_map(src, 0, size), *d = kf_map(dst, 0, size);

	(void)state;
	kt_fill(s, size, 0, 6);
	share_ok(dst, 0, src, 0, size);
	used = kt_sysfs_u64("pool_used_bytes");
	assert_int_equal(kt_range_ioctl(dst, KVMM_IOC_PIN, 0, size), 0);
	expect_flag(dst, 0, nr, SHARED, 0, "after PIN");
	expect_flag(dst, 0, nr, KVMM_CHUNK_PINNED, 1, "after PIN");
	assert_int_equal(kt_sysfs_u64("pool_used_bytes") - used, size);
	assert_true(kt_check(d, size, 0, 6));
	/* The source is the only sharer left: still marked shared, still its data. */
	assert_true(kt_check(s, size, 0, 6));
	/* A pinned range is refused as either end of a share. */
	REFUSED(share(src, 0, dst, 0, CH), -EBUSY, "SHARE from a pinned chunk");
	REFUSED(share(dst, 0, src, 0, CH), -EBUSY, "SHARE into a pinned chunk");
	assert_int_equal(kt_range_ioctl(dst, KVMM_IOC_UNPIN, 0, size), 0);
	kf_unmap(s, size);
	kf_unmap(d, size);
	kf_close(src);
	kf_close(dst);
}

/* Snapshot of a region's chunk states and bytes, to see that nothing changed. */
struct snap {
	uint8_t states[32];
	uint8_t data[512 * KiB];
};

static void take(int fd, struct snap *sn)
{
	kf_query(fd, 0, 8, sn->states);
	assert_int_equal(pread(fd, sn->data, 512 * KiB, 0), (ssize_t)(512 * KiB));
}

static void same(int fd, const struct snap *sn, const char *what)
{
	static struct snap now;

	take(fd, &now);
	if (memcmp(now.states, sn->states, 8) || memcmp(now.data, sn->data, sizeof(now.data)))
		fail_msg("%s changed the region", what);
}

static void every_refusal_has_its_errno_and_changes_nothing(void **state)
{
	static struct snap s0, d0;
	uint64_t size = 512 * KiB;
	int src = kf_region(size, CH), dst = kf_region(size, CH), other = kf_region(size, 4 * KiB);
	int dev = kt_dev_open(), plain = open("/proc/self/exe", O_RDONLY), file, backed, ro;
	struct kvmm_dup dup = {0};
	struct kvmm_share a;
	uint8_t *s = kf_map(src, 0, size);

	(void)state;
	kf_track(dev);
	kf_track(plain);
	kt_fill(s, size / 2, 0, 7);
	assert_int_equal(pwrite(dst, s, CH, 3 * CH), (ssize_t)CH);
	take(src, &s0);
	take(dst, &d0);

	a = (struct kvmm_share){.src_fd = src, .length = CH, .flags = 1};
	REFUSED(ioctl(dst, KVMM_IOC_SHARE, &a) ? -errno : 0, -EINVAL, "flags");
	a = (struct kvmm_share){.src_fd = src, .length = CH, .reserved = {0, 0, 1}};
	REFUSED(ioctl(dst, KVMM_IOC_SHARE, &a) ? -errno : 0, -EINVAL, "reserved");
	REFUSED(share(dst, 0, src, 0, 0), -EINVAL, "empty");
	REFUSED(share(dst, 0, src, 4096, CH), -EINVAL, "unaligned source");
	REFUSED(share(dst, 4096, src, 0, CH), -EINVAL, "unaligned destination");
	REFUSED(share(dst, 0, src, 0, CH + 4096), -EINVAL, "unaligned length");
	REFUSED(share(dst, 0, src, size - CH, 2 * CH), -EINVAL, "source past the end");
	REFUSED(share(dst, size - CH, src, 0, 2 * CH), -EINVAL, "destination past the end");
	REFUSED(share(dst, 0, src, UINT64_MAX - CH + 1, CH), -EINVAL, "source offset wraps");
	REFUSED(share(dst, 0, src, 0, UINT64_MAX - CH + 1), -EINVAL, "huge length");
	REFUSED(share(src, CH, src, 0, 2 * CH), -EINVAL, "overlap in one region");
	REFUSED(share(dst, 0, other, 0, CH), -EINVAL, "different chunk sizes");
	REFUSED(share(dst, 0, plain, 0, CH), -EBADF, "source not a region");
	REFUSED(share(dst, 0, dev, 0, CH), -EBADF, "source /dev/kvmm");
	REFUSED(share(dst, 0, 999, 0, CH), -EBADF, "source fd not open");
	assert_int_equal(ioctl(src, KVMM_IOC_DUP_RDONLY, &dup), 0);
	ro = kf_track(dup.fd);
	REFUSED(share(dst, 0, ro, 0, CH), -EBADF, "read-only source");
	REFUSED(share(ro, 0, dst, 0, CH), -EBADF, "read-only destination");
	backed = kf_region_backed(size, CH, &file);
	REFUSED(share(dst, 0, backed, 0, CH), -EXDEV, "source with another store");
	REFUSED(share(backed, 0, dst, 0, CH), -EXDEV, "destination with another store");
	assert_int_equal(kt_range_ioctl(src, KVMM_IOC_PIN, 0, CH), 0);
	REFUSED(share(dst, 0, src, 0, 2 * CH), -EBUSY, "pinned source chunk");
	assert_int_equal(kt_range_ioctl(src, KVMM_IOC_UNPIN, 0, CH), 0);
	assert_int_equal(kt_range_ioctl(dst, KVMM_IOC_PIN, 3 * CH, CH), 0);
	REFUSED(share(dst, 0, src, 0, 4 * CH), -EBUSY, "pinned destination chunk");
	assert_int_equal(kt_range_ioctl(dst, KVMM_IOC_UNPIN, 3 * CH, CH), 0);
	same(src, &s0, "the refusals");
	same(dst, &d0, "the refusals");

	/* A source chunk whose read-back failed. */
	assert_int_equal(pwrite(backed, s, CH, 0), (ssize_t)CH);
	assert_int_equal(kt_range_ioctl(backed, KVMM_IOC_EVICT, 0, CH), 0);
	assert_int_equal(kf_debugfs_set("fail_ios", 1), 0);
	assert_int_equal(kt_range_ioctl(backed, KVMM_IOC_PREFETCH, 0, CH), 0);
	REFUSED(kt_range_ioctl(backed, KVMM_IOC_WAIT, 0, CH), -EIO, "the failed read-back");
	REFUSED(share(backed, 2 * CH, backed, 0, CH), -EIO, "source with a failed read-back");
	expect_flag(backed, 2, 1, SHARED, 0, "after the refused share");
	kf_unmap(s, size);
	kf_close(backed);
	kf_close(file);
	kf_close(ro);
	kf_close(src);
	kf_close(dst);
	kf_close(other);
}

static void a_sharer_that_dies_leaks_nothing(void **state)
{
	uint64_t size = 1 * MiB, used, shared0 = stat_u64("shared_bytes");
	int src = kf_region(size, CH), status;
	uint8_t *s = kf_map(src, 0, size);
	pid_t pid;

	(void)state;
	kt_fill(s, size, 0, 8);
	used = kt_sysfs_u64("pool_used_bytes");
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		int dst = kt_region_create(kt_dev_open(), size, CH, KVMM_NUMA_LOCAL);
		uint8_t *d;

		if (dst < 0 || share(dst, 0, src, 0, size))
			_exit(2);
		d = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, dst, 0);
		if (d == MAP_FAILED || !kt_check(d, size, 0, 8))
			_exit(3);
		d[CH] = 0; /* one copy of its own */
		raise(SIGKILL);
		_exit(4);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(kt_sysfs_u64("pool_used_bytes"), used);
	assert_int_equal(stat_u64("shared_bytes") - shared0, size); /* the source still shares */
	assert_true(kt_check(s, size, 0, 8));
	kf_unmap(s, size);
	kf_close(src);
	assert_int_equal(stat_u64("shared_bytes"), shared0);
}

/*
 * A share of a whole 1 TiB region of 4 KiB chunks (2^28 of them) visits
 * only the chunks that exist: it returns at once, not after 2^28 steps
 * with both regions locked.
 */
static void sharing_a_huge_sparse_range_visits_only_its_chunks(void **state)
{
	uint64_t size = KVMM_REGION_MAX_BYTES, page = 4 * KiB;
	int src = kf_region(size, page), dst = kf_region(size, page);
	uint8_t buf[4096], got[4096];
	double t0;

	(void)state;
	kt_fill(buf, page, 0, 12);
	assert_int_equal(pwrite(src, buf, page, size / 2), (ssize_t)page);
	assert_int_equal(pwrite(dst, buf, page, size - page), (ssize_t)page);
	t0 = kf_now();
	share_ok(dst, 0, src, 0, size);
	/* Per-index work would take minutes here; an unrelated stall, seconds. */
	if (kf_now() - t0 > 20)
		fail_msg("SHARE of a sparse 1 TiB range took %.1f s", kf_now() - t0);
	assert_int_equal(kf_stat(dst).shared_bytes, page);
	assert_int_equal(kf_stat(dst).resident_bytes, 0); /* its last chunk went */
	assert_int_equal(pread(dst, got, page, size / 2), (ssize_t)page);
	assert_memory_equal(got, buf, page);
	kf_close(src);
	kf_close(dst);
}

/* One chunk shared by KVMM_SHARE_MAX_SHARERS ranges: one more is refused. */
static void a_chunk_has_at_most_the_maximum_of_sharers(void **state)
{
	uint64_t page = 4 * KiB, n = KVMM_SHARE_MAX_SHARERS;
	int fd = kf_region(2 * n * page, page);
	uint8_t b = 0x3c, got;

	(void)state;
	assert_int_equal(pwrite(fd, &b, 1, 0), 1);
	/* Doubling: after k shares chunk 0 has 2^k sharers. */
	for (uint64_t have = 1; have < n; have *= 2)
		share_ok(fd, have * page, fd, 0, have * page);
	REFUSED(share(fd, n * page, fd, 0, page), -EMLINK, "a sharer past the maximum");
	assert_int_equal(kf_state(fd, n), KVMM_CHUNK_EMPTY);
	assert_int_equal(pread(fd, &got, 1, (n - 1) * page), 1);
	assert_int_equal(got, 0x3c);
	/* A copy frees a place. */
	assert_int_equal(pwrite(fd, &b, 1, 5 * page), 1);
	share_ok(fd, n * page, fd, 0, page);
	kf_close(fd);
}

/*
 * PREFETCH of a shared chunk racing with its DISCARD leaves no pool charge
 * behind. A filler region keeps the pool at its limit, so PREFETCH waits
 * for reclaim with the locks dropped, and the DISCARD lands meanwhile.
 */
struct churn {
	int src, dst, stop, bad;
	uint8_t *fill;
	uint64_t fill_bytes;
};

static void *churn_prefetch(void *arg)
{
	struct churn *c = arg;

	while (!__atomic_load_n(&c->stop, __ATOMIC_RELAXED))
		if (kt_range_ioctl(c->dst, KVMM_IOC_PREFETCH, 0, 4 * CH) == -EINVAL)
			__atomic_store_n(&c->bad, 1, __ATOMIC_RELAXED);
	return NULL;
}

static void *churn_fill(void *arg)
{
	struct churn *c = arg;

	for (uint8_t v = 1; !__atomic_load_n(&c->stop, __ATOMIC_RELAXED); v++)
		for (uint64_t off = 0; off < c->fill_bytes; off += 4096)
			c->fill[off] = v;
	return NULL;
}

static void prefetch_racing_discard_of_shared_chunks_leaks_no_memory(void **state)
{
	struct churn c = {.fill_bytes = 16 * MiB};
	pthread_t t, f;
	int file, fill;
	uint8_t buf[CH];
	double end;

	(void)state;
	c.src = kf_region_backed(4 * CH, CH, &file);
	c.dst = kf_region(4 * CH, CH);
	fill = kf_region(c.fill_bytes, CH);
	assert_int_equal(kf_set_backing(c.dst, file), 0);
	assert_int_equal(kf_set_backing(fill, file), 0);
	kf_sysfs_set("pool_limit_bytes", 8 * MiB);
	c.fill = kf_map(fill, 0, c.fill_bytes);
	kt_fill(buf, CH, 0, 13);
	assert_int_equal(pthread_create(&f, NULL, churn_fill, &c), 0);
	assert_int_equal(pthread_create(&t, NULL, churn_prefetch, &c), 0);
	for (end = kf_now() + 2; kf_now() < end;) {
		for (int i = 0; i < 4; i++)
			assert_int_equal(pwrite(c.src, buf, CH, i * CH), (ssize_t)CH);
		share_ok(c.dst, 0, c.src, 0, 4 * CH);
		assert_int_equal(kt_range_ioctl(c.src, KVMM_IOC_DISCARD, 0, 4 * CH), 0);
		assert_int_equal(kt_range_ioctl(c.dst, KVMM_IOC_EVICT, 0, 4 * CH), 0);
		assert_int_equal(kt_range_ioctl(c.dst, KVMM_IOC_DISCARD, 0, 4 * CH), 0);
	}
	__atomic_store_n(&c.stop, 1, __ATOMIC_RELAXED);
	pthread_join(t, NULL);
	pthread_join(f, NULL);
	assert_int_equal(c.bad, 0);
	kf_unmap(c.fill, c.fill_bytes);
	kf_close(fill);
	kf_close(c.src);
	kf_close(c.dst);
	kf_close(file);
	/* Every chunk is gone: so must every byte charged for one be. */
	assert_int_equal(kf_sysfs_wait("pool_used_bytes", 0, 2000), 0);
}

/* Readers, copy-on-write writers and evictions at once on one shared range. */
struct race {
	int src, dst, stop;
	uint8_t *s, *d;
	uint64_t size;
	int bad;
};

static void *race_reader(void *arg)
{
	struct race *r = arg;

	while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED))
		for (uint64_t off = r->size / 2; off < r->size; off += CH)
			if (r->d[off + 100] != kt_pattern(off + 100, 11) ||
			    r->s[off + 200] != kt_pattern(off + 200, 11))
				__atomic_store_n(&r->bad, 1, __ATOMIC_RELAXED);
	return NULL;
}

static void *race_evictor(void *arg)
{
	struct race *r = arg;

	while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED))
		if (kt_range_ioctl(r->src, KVMM_IOC_EVICT, 0, r->size) &&
		    kt_range_ioctl(r->src, KVMM_IOC_EVICT, 0, r->size))
			__atomic_store_n(&r->bad, 2, __ATOMIC_RELAXED);
	return NULL;
}

static void sharers_read_write_and_evict_at_once_and_see_their_own_data(void **state)
{
	struct race r = {.size = 4 * MiB};
	pthread_t reader, evictor;
	int file;

	(void)state;
	r.src = kf_region_backed(r.size, CH, &file);
	r.dst = kf_region(r.size, CH);
	assert_int_equal(kf_set_backing(r.dst, file), 0);
	r.s = kf_map(r.src, 0, r.size);
	r.d = kf_map(r.dst, 0, r.size);
	kt_fill(r.s, r.size, 0, 11);
	share_ok(r.dst, 0, r.src, 0, r.size);
	assert_int_equal(pthread_create(&reader, NULL, race_reader, &r), 0);
	assert_int_equal(pthread_create(&evictor, NULL, race_evictor, &r), 0);
	/* The first half: each chunk written once through each side. */
	for (uint64_t off = 0; off < r.size / 2; off += CH) {
		r.d[off] = 0xd0;
		r.s[off + 1] = 0x50;
	}
	kf_msleep(300);
	__atomic_store_n(&r.stop, 1, __ATOMIC_RELAXED);
	pthread_join(reader, NULL);
	pthread_join(evictor, NULL);
	assert_int_equal(r.bad, 0);
	for (uint64_t off = 0; off < r.size / 2; off += CH) {
		assert_int_equal(r.d[off], 0xd0);
		assert_int_equal(r.d[off + 1], kt_pattern(off + 1, 11));
		assert_int_equal(r.s[off], kt_pattern(off, 11));
		assert_int_equal(r.s[off + 1], 0x50);
	}
	assert_true(kt_check(r.d + r.size / 2, r.size / 2, r.size / 2, 11));
	kf_unmap(r.s, r.size);
	kf_unmap(r.d, r.size);
	kf_close(r.src);
	kf_close(r.dst);
	kf_close(file);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(
		shared_ranges_read_one_memory_and_a_write_copies_for_the_writer, kf_teardown),
	    cmocka_unit_test_teardown(discard_and_close_drop_one_share_and_the_last_frees,
				      kf_teardown),
	    cmocka_unit_test_teardown(shares_chain_and_a_range_may_share_its_own_region,
				      kf_teardown),
	    cmocka_unit_test_teardown(
		eviction_writes_a_shared_chunk_once_and_any_sharer_brings_it_back, kf_teardown),
	    cmocka_unit_test_teardown(a_write_to_a_shared_chunk_on_flash_reads_it_back_and_copies,
				      kf_teardown),
	    cmocka_unit_test_teardown(pin_gives_a_shared_range_memory_of_its_own, kf_teardown),
	    cmocka_unit_test_teardown(every_refusal_has_its_errno_and_changes_nothing, kf_teardown),
	    cmocka_unit_test_teardown(a_sharer_that_dies_leaks_nothing, kf_teardown),
	    cmocka_unit_test_teardown(sharing_a_huge_sparse_range_visits_only_its_chunks,
				      kf_teardown),
	    cmocka_unit_test_teardown(a_chunk_has_at_most_the_maximum_of_sharers, kf_teardown),
	    cmocka_unit_test_teardown(prefetch_racing_discard_of_shared_chunks_leaks_no_memory,
				      kf_teardown),
	    cmocka_unit_test_teardown(sharers_read_write_and_evict_at_once_and_see_their_own_data,
				      kf_teardown),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests(tests, kf_setup, NULL);
}
