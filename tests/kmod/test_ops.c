/*
 * Region operations (ENSURE, DISCARD, PIN, QUERY, STAT) and the DRAM pool:
 * its limit, exhaustion (ENOMEM, SIGBUS) and its sysfs knobs.
 */
#include "common/kmod_test.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static void query(int fd, uint64_t first, uint64_t nr, uint8_t *states)
{
	struct kvmm_query q = {.first_chunk = first, .nr_chunks = nr, .states = (uintptr_t)states};

	assert_int_equal(ioctl(fd, KVMM_IOC_QUERY, &q), 0);
}

static void ensure_populates_and_query_shows_it(void **state)
{
	int fd = kt_region(1 * MiB, 64 * KiB);
	uint8_t s[16];
	struct kvmm_region_stat st;

	(void)state;
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_ENSURE, 128 * KiB, 256 * KiB), 0);
	query(fd, 0, 16, s);
	for (int i = 0; i < 16; i++)
		assert_int_equal(s[i], i >= 2 && i < 6 ? KVMM_CHUNK_RESIDENT | KVMM_CHUNK_DIRTY
						       : KVMM_CHUNK_EMPTY);
	assert_int_equal(kt_stat(fd, &st), 0);
	assert_int_equal(st.resident_bytes, 256 * KiB);
	assert_int_equal(st.zero_fills, 4);
	assert_int_equal(st.size, 1 * MiB);
	assert_int_equal(st.chunk_bytes, 64 * KiB);
	assert_int_equal(st.faults, 0);
	/* Ensuring again changes nothing. */
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_ENSURE, 0, 1 * MiB), 0);
	assert_int_equal(kt_stat(fd, &st), 0);
	assert_int_equal(st.zero_fills, 16);
	close(fd);
}

static void discard_gives_zeros_again(void **state)
{
	int fd = kt_region(2 * MiB, 64 * KiB);
	uint8_t *p = kt_map(fd, 0, 2 * MiB), *q = kt_map(fd, 0, 2 * MiB);
	uint8_t s[32];
	struct kvmm_region_stat st;
	uint64_t used;

	(void)state;
	kt_fill(p, 2 * MiB, 0, 1);
	used = kt_sysfs_u64("pool_used_bytes");
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_DISCARD, 512 * KiB, 1 * MiB), 0);
	assert_int_equal(kt_sysfs_u64("pool_used_bytes"), used - 1 * MiB);
	/* Both mappings read zeros in the range and the old data elsewhere. */
	assert_true(kt_all_zero(p + 512 * KiB, 1 * MiB));
	assert_true(kt_all_zero(q + 512 * KiB, 1 * MiB));
	assert_true(kt_check(q, 512 * KiB, 0, 1));
	assert_true(kt_check(p + 1536 * KiB, 512 * KiB, 1536 * KiB, 1));
	assert_int_equal(kt_stat(fd, &st), 0);
	assert_int_equal(st.discards, 16);
	/* Reading faulted the range back in, zeroed. */
	query(fd, 0, 32, s);
	for (int i = 0; i < 32; i++)
		assert_int_equal(s[i], KVMM_CHUNK_RESIDENT | KVMM_CHUNK_DIRTY);
	/* Discarding empty chunks is fine and counts nothing. */
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_DISCARD, 0, 2 * MiB), 0);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_DISCARD, 0, 2 * MiB), 0);
	assert_int_equal(kt_stat(fd, &st), 0);
	assert_int_equal(st.discards, 48);
	assert_int_equal(st.resident_bytes, 0);
	munmap(p, 2 * MiB);
	munmap(q, 2 * MiB);
	close(fd);
}

static void pinned_chunks_refuse_discard_and_unpin_nests(void **state)
{
	int fd = kt_region(1 * MiB, 64 * KiB);
	uint8_t s[16];
	struct kvmm_region_stat st;

	(void)state;
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_PIN, 0, 128 * KiB), 0);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_PIN, 64 * KiB, 64 * KiB), 0);
	query(fd, 0, 3, s);
	assert_int_equal(s[0], KVMM_CHUNK_RESIDENT | KVMM_CHUNK_DIRTY | KVMM_CHUNK_PINNED);
	assert_int_equal(s[1], KVMM_CHUNK_RESIDENT | KVMM_CHUNK_DIRTY | KVMM_CHUNK_PINNED);
	assert_int_equal(s[2], KVMM_CHUNK_EMPTY);
	assert_int_equal(kt_stat(fd, &st), 0);
	assert_int_equal(st.pinned_bytes, 128 * KiB);

	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_DISCARD, 0, 1 * MiB), -EBUSY);
	assert_int_equal(kt_stat(fd, &st), 0);
	assert_int_equal(st.resident_bytes, 128 * KiB);
	/* Unpinning a range with an unpinned chunk changes nothing. */
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_UNPIN, 0, 192 * KiB), -EINVAL);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_UNPIN, 0, 128 * KiB), 0);
	query(fd, 0, 2, s);
	assert_int_equal(s[0], KVMM_CHUNK_RESIDENT | KVMM_CHUNK_DIRTY);
	assert_int_equal(s[1], KVMM_CHUNK_RESIDENT | KVMM_CHUNK_DIRTY | KVMM_CHUNK_PINNED);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_DISCARD, 64 * KiB, 64 * KiB), -EBUSY);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_UNPIN, 64 * KiB, 64 * KiB), 0);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_UNPIN, 64 * KiB, 64 * KiB), -EINVAL);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_DISCARD, 0, 1 * MiB), 0);
	assert_int_equal(kt_stat(fd, &st), 0);
	assert_int_equal(st.pinned_bytes, 0);
	close(fd);
}

/* Run the rest of a test with a pool limit of @limit bytes. */
static uint64_t set_pool_limit(uint64_t limit)
{
	uint64_t old = kt_sysfs_u64("pool_limit_bytes");
	char buf[32];

	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)limit);
	assert_int_equal(kt_sysfs_write("pool_limit_bytes", buf), 0);
	return old;
}

static void ensure_past_the_pool_gives_enomem_and_changes_nothing(void **state)
{
	uint64_t used = kt_sysfs_u64("pool_used_bytes");
	uint64_t old = set_pool_limit(used + 4 * MiB);
	int fd = kt_region(16 * MiB, 1 * MiB);
	struct kvmm_region_stat st;

	(void)state;
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_ENSURE, 0, 2 * MiB), 0);
	/* 2 MiB more fit, 6 more do not: all or nothing. */
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_ENSURE, 0, 8 * MiB), -ENOMEM);
	assert_int_equal(kt_stat(fd, &st), 0);
	assert_int_equal(st.resident_bytes, 2 * MiB);
	assert_int_equal(kt_sysfs_u64("pool_used_bytes"), used + 2 * MiB);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_PIN, 0, 8 * MiB), -ENOMEM);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_ENSURE, 0, 4 * MiB), 0);
	assert_int_equal(kt_sysfs_u64("pool_used_bytes"), used + 4 * MiB);
	/* pwrite into an empty chunk needs memory too. */
	char b = 1;
	assert_int_equal(pwrite(fd, &b, 1, 10 * MiB), -1);
	assert_int_equal(errno, ENOMEM);
	close(fd);
	set_pool_limit(old);
	assert_int_equal(kt_sysfs_u64("pool_used_bytes"), used);
}

static sigjmp_buf sigbus_jmp;

static void on_sigbus(int sig)
{
	(void)sig;
	siglongjmp(sigbus_jmp, 1);
}

static void fault_past_the_pool_gets_sigbus_and_module_stays_healthy(void **state)
{
	uint64_t used = kt_sysfs_u64("pool_used_bytes");
	uint64_t old = set_pool_limit(used + 1 * MiB);
	uint64_t failures = kt_sysfs_u64("stats/fault_failures");
	int fd = kt_region(4 * MiB, 1 * MiB);
	volatile uint8_t *p = kt_map(fd, 0, 4 * MiB);
	struct sigaction sa = {.sa_handler = on_sigbus}, old_sa;
	struct kvmm_region_stat st;
	volatile int got_sigbus = 0;

	(void)state;
	p[0] = 1; /* the one chunk that fits */
	sigaction(SIGBUS, &sa, &old_sa);
	if (!sigsetjmp(sigbus_jmp, 1))
		p[1 * MiB] = 2;
	else
		got_sigbus = 1;
	sigaction(SIGBUS, &old_sa, NULL);
	assert_true(got_sigbus);
	assert_int_equal(kt_sysfs_u64("stats/fault_failures"), failures + 1);
	assert_int_equal(kt_stat(fd, &st), 0);
	assert_int_equal(st.fault_failures, 1);
	assert_int_equal(p[0], 1);

	/* Raise the limit and the same address works. */
	set_pool_limit(used + 4 * MiB);
	p[1 * MiB] = 3;
	assert_int_equal(p[1 * MiB], 3);
	munmap((void *)p, 4 * MiB);
	close(fd);
	set_pool_limit(old);
}

static void sysfs_knobs_validate_their_input(void **state)
{
	uint64_t limit = kt_sysfs_u64("pool_limit_bytes");
	uint64_t chunk = kt_sysfs_u64("default_chunk_bytes");

	(void)state;
	assert_int_equal(kt_sysfs_write("pool_limit_bytes", "lots"), -EINVAL);
	assert_int_equal(kt_sysfs_write("pool_limit_bytes", "-1"), -EINVAL);
	assert_int_equal(kt_sysfs_write("pool_limit_bytes", "1125899906842624"), -EINVAL);
	assert_int_equal(kt_sysfs_u64("pool_limit_bytes"), limit);
	assert_int_equal(kt_sysfs_write("default_chunk_bytes", "12288"), -EINVAL);
	assert_int_equal(kt_sysfs_write("default_chunk_bytes", "4194304"), -EINVAL);
	assert_int_equal(kt_sysfs_write("default_chunk_bytes", "1024"), -EINVAL);
	assert_int_equal(kt_sysfs_u64("default_chunk_bytes"), chunk);
	assert_int_equal(kt_sysfs_write("default_chunk_bytes", "2097152"), 0);
	{
		int fd = kt_region(4 * MiB, 0);
		struct kvmm_region_stat st;

		assert_int_equal(kt_stat(fd, &st), 0);
		assert_int_equal(st.chunk_bytes, 2 * MiB);
		close(fd);
	}
	char buf[32];
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)chunk);
	assert_int_equal(kt_sysfs_write("default_chunk_bytes", buf), 0);
	assert_int_equal(kt_sysfs_write("pool_used_bytes", "0"), -EACCES);
}

static void stat_reports_identity_and_zeroes_reserved(void **state)
{
	int dev = kt_dev_open();
	struct kvmm_region_create c = {
	    .size = 8 * MiB, .chunk_bytes = 2 * MiB, .numa_node = 0, .priority = 7};
	struct kvmm_region_stat st;

	(void)state;
	assert_int_equal(ioctl(dev, KVMM_IOC_REGION_CREATE, &c), 0);
	assert_int_equal(kt_stat(c.fd, &st), 0);
	assert_int_equal(st.id, c.id);
	assert_int_equal(st.numa_node, 0);
	assert_int_equal(st.priority, 7);
	assert_int_equal(st.mappings, 0);
	for (unsigned int i = 0; i < sizeof(st.reserved) / sizeof(st.reserved[0]); i++)
		assert_int_equal(st.reserved[i], 0);
	close(c.fd);
	close(dev);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(ensure_populates_and_query_shows_it),
	    cmocka_unit_test(discard_gives_zeros_again),
	    cmocka_unit_test(pinned_chunks_refuse_discard_and_unpin_nests),
	    cmocka_unit_test(ensure_past_the_pool_gives_enomem_and_changes_nothing),
	    cmocka_unit_test(fault_past_the_pool_gets_sigbus_and_module_stays_healthy),
	    cmocka_unit_test(sysfs_knobs_validate_their_input),
	    cmocka_unit_test(stat_reports_identity_and_zeroes_reserved),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
