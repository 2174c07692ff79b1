/*
 * kvmm's shrinker under system memory pressure: it drops clean chunks (their
 * flash copy is current) of the NUMA node that is short of memory, and only
 * those; chunks on the other node stay resident. Needs a guest with two
 * nodes (the VM harness gives it two).
 */
#include "common/kt_flash.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define REGION	  (128 * MiB)
#define CHUNK	  (64 * KiB)
#define MPOL_BIND 2

/* MemFree of a node, in bytes (0 if it cannot be read). */
static uint64_t node_free(int node)
{
	char path[64], line[256];
	unsigned long long kib = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/meminfo", node);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Node %*d MemFree: %llu kB", &kib) == 1)
			break;
	fclose(f);
	return (uint64_t)kib * KiB;
}

/* A region on @node whose every chunk is resident and clean. */
static int clean_region(int node, int store, uint32_t seed, uint8_t **map)
{
	int dev = kt_dev_open();
	int fd = kt_region_create(dev, REGION, CHUNK, node);
	uint8_t *p;

	close(dev);
	if (fd < 0)
		fail_msg("REGION_CREATE on node %d: %s", node, kt_errname(fd));
	kf_track(fd);
	assert_int_equal(kf_set_backing(fd, store), 0);
	p = kf_map(fd, 0, REGION);
	kf_fill(p, REGION, 0, seed);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, REGION), 0);
	/* Read back: resident again, and clean, since its slot holds the same bytes. */
	assert_true(kf_check(p, REGION, 0, seed, "after read-back"));
	if (kf_stat(fd).resident_bytes != REGION)
		fail_msg("node %d region after read-back: expected %llu bytes resident, saw %llu",
			 node, (unsigned long long)REGION,
			 (unsigned long long)kf_stat(fd).resident_bytes);
	*map = p;
	return fd;
}

static void pressure_on_one_node_drops_only_that_nodes_clean_chunks(void **state)
{
	int store = kf_backing_open(kf_flash_dir());
	uint8_t *pa, *pb, *anon;
	unsigned long mask = 1UL << 1;
	uint64_t len, a_res, b_res, scans, touched;
	int a, b;

	(void)state;
	if (access("/sys/devices/system/node/node1", F_OK)) {
		print_message("# SKIP: the guest has one NUMA node (this test needs two)\n");
		skip();
	}
	kf_sysfs_set("pool_limit_bytes", 4 * REGION);
	/*
	 * Chunks read back at once count as refaults and are held back a while
	 * (refault_window_ms stays at its default): the shrinker gives them one
	 * second chance, not immunity.
	 */
	a = clean_region(0, store, 61, &pa);
	b = clean_region(1, store, 62, &pb);

	/*
	 * Node 1 only: anonymous memory, 4 MiB at a time, until the shrinker
	 * has dropped 32 MiB of the node 1 region (at most what the node had
	 * free and 64 MiB more; its clean chunks are 128 MiB). Many scans, so
	 * many chances to reach for the other node's chunks.
	 */
	len = node_free(1) + 64 * MiB;
	anon = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(anon != MAP_FAILED);
	if (syscall(SYS_mbind, anon, len, MPOL_BIND, &mask, 8 * sizeof(mask), 0))
		fail_msg("mbind to node 1: %s", strerror(errno));
	scans = kt_sysfs_u64("stats/shrinker_scans");
	for (touched = 0; touched < len; touched += 4 * MiB) {
		for (uint64_t off = 0; off < 4 * MiB && touched + off < len; off += 4096)
			anon[touched + off] = 1;
		if (kf_stat(b).resident_bytes <= REGION - 32 * MiB)
			break;
	}
	a_res = kf_stat(a).resident_bytes;
	b_res = kf_stat(b).resident_bytes;
	scans = kt_sysfs_u64("stats/shrinker_scans") - scans;
	munmap(anon, len);
	print_message("# %llu MiB touched on node 1, %llu shrinker scans\n",
		      (unsigned long long)(touched / MiB), (unsigned long long)scans);
	print_message("# node 0 region: %llu MiB resident, node 1 region: %llu MiB\n",
		      (unsigned long long)(a_res / MiB), (unsigned long long)(b_res / MiB));
	if (b_res == REGION)
		fail_msg("memory pressure on node 1 dropped none of the node 1 region's clean "
			 "chunks");
	if (a_res != REGION)
		fail_msg("memory pressure on node 1 dropped %llu bytes of the node 0 region's "
			 "chunks",
			 (unsigned long long)(REGION - a_res));
	/* What was dropped reads back from flash. */
	assert_true(kf_check(pb, REGION, 0, 62, "the node 1 region after the pressure"));
	assert_true(kf_check(pa, REGION, 0, 61, "the node 0 region after the pressure"));
	kf_unmap(pa, REGION);
	kf_unmap(pb, REGION);
	kf_close(a);
	kf_close(b);
	kf_close(store);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(pressure_on_one_node_drops_only_that_nodes_clean_chunks,
				      kf_teardown),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests(tests, kf_setup, NULL);
}
