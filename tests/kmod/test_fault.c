/*
 * Demand paging: first touch allocates one zeroed chunk and maps all of it;
 * concurrent faults allocate each chunk once; NUMA placement is honoured;
 * split and partial mappings see the right bytes.
 */
#include "common/kmod_test.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void first_touch_reads_zeros(void **state)
{
	int fd = kt_region(4 * MiB, 64 * KiB);
	uint8_t *p = kt_map(fd, 0, 4 * MiB);
	struct kvmm_region_stat st;

	(void)state;
	assert_true(kt_all_zero(p, 4 * MiB));
	assert_int_equal(kt_stat(fd, &st), 0);
	assert_int_equal(st.resident_bytes, 4 * MiB);
	assert_int_equal(st.zero_fills, 64);
	munmap(p, 4 * MiB);
	close(fd);
}

static void one_fault_maps_the_whole_chunk(void **state)
{
	const uint32_t chunks[] = {4096, 64 * KiB, 256 * KiB, 2 * MiB};

	(void)state;
	for (unsigned int i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		uint64_t size = 8 * MiB, nr = size / chunks[i];
		int fd = kt_region(size, chunks[i]);
		volatile uint8_t *p = kt_map(fd, 0, size);
		uint64_t faults_before = kt_sysfs_u64("stats/faults");
		struct kvmm_region_stat st;

		/* Touch every page: only the first page of each chunk faults. */
		for (uint64_t off = 0; off < size; off += 4096)
			p[off] = (uint8_t)(off >> 12);
		assert_int_equal(kt_stat(fd, &st), 0);
		if (st.faults != nr || st.zero_fills != nr)
			fail_msg("chunk %u: expected %llu faults and zero fills, saw %llu and %llu",
				 chunks[i], (unsigned long long)nr, (unsigned long long)st.faults,
				 (unsigned long long)st.zero_fills);
		assert_int_equal(kt_sysfs_u64("stats/faults") - faults_before, nr);
		for (uint64_t off = 0; off < size; off += 4096)
			assert_int_equal(p[off], (uint8_t)(off >> 12));
		munmap((void *)p, size);
		close(fd);
	}
}

struct toucher {
	volatile uint8_t *p;
	uint64_t size;
	pthread_barrier_t *go;
	int id;
};

static void *touch_all(void *arg)
{
	struct toucher *t = arg;

	pthread_barrier_wait(t->go);
	/* Each thread starts at a different chunk and wraps around. */
	for (uint64_t i = 0; i < t->size; i += 4096) {
		uint64_t off = (i + (uint64_t)t->id * (t->size / 4)) % t->size;

		(void)t->p[off];
	}
	return NULL;
}

static void concurrent_faults_allocate_each_chunk_once(void **state)
{
	uint64_t size = 32 * MiB, chunk = 64 * KiB;
	int fd = kt_region(size, chunk);
	volatile uint8_t *p = kt_map(fd, 0, size);
	pthread_t th[4];
	struct toucher t[4];
	pthread_barrier_t go;
	struct kvmm_region_stat st;

	(void)state;
	pthread_barrier_init(&go, NULL, 4);
	for (int i = 0; i < 4; i++) {
		t[i] = (struct toucher){.p = p, .size = size, .go = &go, .id = i};
		assert_int_equal(pthread_create(&th[i], NULL, touch_all, &t[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&go);

	assert_int_equal(kt_stat(fd, &st), 0);
	assert_int_equal(st.zero_fills, size / chunk);
	assert_int_equal(st.resident_bytes, size);
	assert_int_equal(kt_sysfs_u64("pool_used_bytes") >= size, 1);
	munmap((void *)p, size);
	close(fd);
}

static uint64_t node_used(int node)
{
	char name[64];

	snprintf(name, sizeof(name), "nodes/node%d_used_bytes", node);
	return kt_sysfs_u64(name);
}

static void numa_node_placement_is_honoured(void **state)
{
	int dev = kt_dev_open();

	(void)state;
	if (access(KVMM_SYSFS "/nodes/node1_used_bytes", F_OK)) {
		close(dev);
		print_message("skip: kvmm.ko sees no NUMA node 1 (needs a kernel with CONFIG_NUMA "
			      "on two nodes, as the harness's VM has)\n");
		skip();
	}
	for (int node = 0; node < 2; node++) {
		int fd = kt_region_create(dev, 16 * MiB, 2 * MiB, node);
		uint64_t before[2] = {node_used(0), node_used(1)};

		assert_true(fd >= 0);
		assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_ENSURE, 0, 16 * MiB), 0);
		assert_int_equal(node_used(node) - before[node], 16 * MiB);
		assert_int_equal(node_used(!node), before[!node]);
		close(fd);
		assert_int_equal(node_used(node), before[node]);
	}
	close(dev);
}

static void partial_mapping_at_offset_sees_the_right_bytes(void **state)
{
	int fd = kt_region(4 * MiB, 64 * KiB);
	uint8_t *whole = kt_map(fd, 0, 4 * MiB);
	uint8_t *part = kt_map(fd, 1 * MiB, 512 * KiB);

	(void)state;
	kt_fill(whole, 4 * MiB, 0, 11);
	assert_true(kt_check(part, 512 * KiB, 1 * MiB, 11));
	munmap(whole, 4 * MiB);
	munmap(part, 512 * KiB);
	close(fd);
}

static void split_vmas_keep_working(void **state)
{
	uint64_t size = 2 * MiB, chunk = 256 * KiB;
	int fd = kt_region(size, chunk);
	uint8_t *p = kt_map(fd, 0, size);
	struct kvmm_region_stat st;

	(void)state;
	/* Punch a hole in the middle of a chunk: three pieces, two VMAs. */
	assert_int_equal(munmap(p + 300 * KiB, 8 * KiB), 0);
	assert_int_equal(kt_stat(fd, &st), 0);
	assert_int_equal(st.mappings, 2);
	kt_fill(p, 300 * KiB, 0, 3);
	kt_fill(p + 308 * KiB, size - 308 * KiB, 308 * KiB, 3);
	assert_true(kt_check(p, 300 * KiB, 0, 3));
	assert_true(kt_check(p + 308 * KiB, size - 308 * KiB, 308 * KiB, 3));
	/* mprotect splits again; the data stays. */
	assert_int_equal(mprotect(p + 1 * MiB, 256 * KiB, PROT_READ), 0);
	assert_true(kt_check(p + 1 * MiB, 256 * KiB, 1 * MiB, 3));
	assert_int_equal(kt_stat(fd, &st), 0);
	assert_int_equal(st.mappings, 4);
	munmap(p, size);
	assert_int_equal(kt_stat(fd, &st), 0);
	assert_int_equal(st.mappings, 0);
	close(fd);
}

static void region_outlives_its_fd_while_mapped(void **state)
{
	int fd = kt_region(1 * MiB, 64 * KiB);
	uint8_t *p = kt_map(fd, 0, 1 * MiB);
	uint64_t regions = kt_sysfs_u64("regions");

	(void)state;
	kt_fill(p, 1 * MiB, 0, 5);
	close(fd);
	assert_int_equal(kt_sysfs_u64("regions"), regions);
	assert_true(kt_check(p, 1 * MiB, 0, 5));
	munmap(p, 1 * MiB);
	assert_int_equal(kt_sysfs_u64("regions"), regions - 1);
}

static void write_to_read_only_mapping_faults(void **state)
{
	int fd = kt_region(1 * MiB, 64 * KiB);
	uint8_t *p = mmap(NULL, 1 * MiB, PROT_READ, MAP_SHARED, fd, 0);

	(void)state;
	assert_ptr_not_equal(p, MAP_FAILED);
	assert_int_equal(p[100], 0);
	assert_int_equal(mprotect(p, 1 * MiB, PROT_READ | PROT_WRITE), 0);
	p[100] = 9;
	assert_int_equal(p[100], 9);
	munmap(p, 1 * MiB);
	close(fd);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(first_touch_reads_zeros),
	    cmocka_unit_test(one_fault_maps_the_whole_chunk),
	    cmocka_unit_test(concurrent_faults_allocate_each_chunk_once),
	    cmocka_unit_test(numa_node_placement_is_honoured),
	    cmocka_unit_test(partial_mapping_at_offset_sees_the_right_bytes),
	    cmocka_unit_test(split_vmas_keep_working),
	    cmocka_unit_test(region_outlives_its_fd_while_mapped),
	    cmocka_unit_test(write_to_read_only_mapping_faults),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
