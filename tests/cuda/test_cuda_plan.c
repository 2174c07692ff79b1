/* SPDX-License-Identifier: MIT */
/*
 * The CUDA backend's pure parts, on any machine: chunk sizes from the
 * granularity, shadow chunks, CUDA config checks, remap runs, the
 * deferred-release (fence) list and the GPU's NUMA node from sysfs.
 */
#include "helpers.h"

#include <ftw.h>
#include <sys/stat.h>

#include "cuda_plan.h"

static void chunk_size_is_a_multiple_of_the_granularity(void **state)
{
	uint64_t c = 0;

	(void)state;
	T_OK(kvmm_cuda_chunk_size(0, 2 << 20, &c));
	T_EQ(c, 2 << 20);
	T_OK(kvmm_cuda_chunk_size(0, 192 << 10, &c)); /* default rounds up: 11 x 192 KiB */
	T_EQ(c, 11 * (192 << 10));
	T_OK(kvmm_cuda_chunk_size(0, 4 << 20, &c)); /* never below the granularity */
	T_EQ(c, 4 << 20);
	T_OK(kvmm_cuda_chunk_size(6 << 20, 2 << 20, &c));
	T_EQ(c, 6 << 20);
	T_EQ(kvmm_cuda_chunk_size(1 << 20, 2 << 20, &c), -EINVAL);
	T_EQ(kvmm_cuda_chunk_size(2 << 20, 192 << 10, &c), -EINVAL);
	T_EQ(kvmm_cuda_chunk_size(0, 0, &c), -EINVAL);
	T_EQ(kvmm_cuda_chunk_size(2ULL << 30, 2 << 20, &c), -EINVAL);
}

static void shadow_chunk_divides_the_gpu_chunk(void **state)
{
	uint32_t s = 0;

	(void)state;
	T_OK(kvmm_cuda_shadow_chunk(2 << 20, 4096, &s));
	T_EQ(s, 2 << 20);
	T_OK(kvmm_cuda_shadow_chunk(6 << 20, 4096, &s)); /* 3 x 2 MiB */
	T_EQ(s, 2 << 20);
	T_OK(kvmm_cuda_shadow_chunk(64ULL << 20, 4096, &s)); /* host chunks stop at 2 MiB */
	T_EQ(s, 2 << 20);
	T_OK(kvmm_cuda_shadow_chunk(11 * (192 << 10), 4096, &s));
	T_EQ(s, 64 << 10);
	T_EQ(kvmm_cuda_shadow_chunk(3 * 4096 / 2, 4096, &s), -EINVAL);
	T_EQ(kvmm_cuda_shadow_chunk(0, 4096, &s), -EINVAL);
}

static void plan_finds_runs_of_one_state(void **state)
{
	/* chunk:           0  1  2  3  4  5  6  7  8  9 */
	const uint8_t st[] = {0, 0, 1, 0, 2, 0, 0, 0, 1, 0};
	struct kvmm_cuda_run r[4];
	size_t n;

	(void)state;
	n = kvmm_cuda_plan(st, 0, 10, KVMM_CUDA_ZERO, r, 4);
	T_EQ(n, 4);
	T_EQ(r[0].first, 0);
	T_EQ(r[0].nr, 2);
	T_EQ(r[1].first, 3);
	T_EQ(r[1].nr, 1);
	T_EQ(r[2].first, 5);
	T_EQ(r[2].nr, 3);
	T_EQ(r[3].first, 9);
	T_EQ(r[3].nr, 1);
	n = kvmm_cuda_plan(st, 1, 7, KVMM_CUDA_ZERO, r, 1); /* more runs than room */
	T_EQ(n, 3);
	T_EQ(r[0].first, 1);
	T_EQ(r[0].nr, 1);
	n = kvmm_cuda_plan(st, 0, 10, KVMM_CUDA_REAL, r, 4);
	T_EQ(n, 2);
	T_EQ(r[1].first, 8);
	T_EQ(kvmm_cuda_plan(st, 2, 1, KVMM_CUDA_ZERO, r, 4), 0);
}

static int passed_if_odd(void *arg, void *event)
{
	(void)arg;
	return (int)((uintptr_t)event & 1);
}

static void fences_release_only_passed_ranges(void **state)
{
	struct kvmm_cuda_fences l = {0};
	struct kvmm_cuda_fence f[4], *done;

	(void)state;
	for (int i = 0; i < 4; i++) /* events 1..4; odd ones have passed */
		f[i] = (struct kvmm_cuda_fence){
		    .event = (void *)(uintptr_t)(i + 1), .first = 10 * i, .nr = 2, .count = 1};
	f[3].count = 3, f[3].stride = 100; /* chunks 30-31, 130-131, 230-231 */
	for (int i = 0; i < 4; i++)
		kvmm_cuda_fence_push(&l, &f[i]);
	T_EQ(l.pending_chunks, 2 + 2 + 2 + 6);
	assert_ptr_equal(kvmm_cuda_fence_find(&l, 131, 1), &f[3]);
	assert_null(kvmm_cuda_fence_find(&l, 132, 50));
	assert_ptr_equal(kvmm_cuda_fence_find(&l, 0, 40), &f[0]); /* oldest first */
	done = kvmm_cuda_fence_collect(&l, passed_if_odd, NULL, NULL);
	assert_ptr_equal(done, &f[0]);
	assert_ptr_equal(done->next, &f[2]);
	assert_null(f[2].next);
	T_EQ(l.pending_chunks, 2 + 6);
	assert_null(kvmm_cuda_fence_find(&l, 0, 2)); /* released ranges are gone */
	assert_true(kvmm_cuda_fence_remove(&l, &f[3]));
	assert_false(kvmm_cuda_fence_remove(&l, &f[3]));
	T_EQ(l.pending_chunks, 2);
	assert_ptr_equal(l.head, &f[1]);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(path);
}

static void numa_node_comes_from_the_pci_device(void **state)
{
	char root[] = "/tmp/kvmm-sysfs-XXXXXX", path[256];
	FILE *fp;

	(void)state;
	assert_non_null(mkdtemp(root));
	snprintf(path, sizeof(path), "%s/bus/pci/devices/0000:3b:00.0", root);
	for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
		*p = 0;
		mkdir(path, 0700);
		*p = '/';
	}
	mkdir(path, 0700);
	strcat(path, "/numa_node");
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("1\n", fp);
	fclose(fp);
	T_EQ(kvmm_cuda_numa_node(root, "0000:3B:00.0"), 1); /* the driver's upper case */
	T_EQ(kvmm_cuda_numa_node(root, "0000:3c:00.0"), -1);
	T_EQ(kvmm_cuda_numa_node(root, "../../x"), -1);
	fp = fopen(path, "w");
	fputs("-1\n", fp);
	fclose(fp);
	T_EQ(kvmm_cuda_numa_node(root, "0000:3b:00.0"), -1);
	unlink(path);
	nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A PCI device directory under @root/bus/pci/devices with vendor and class. */
static void pci_dev(const char *root, const char *name, const char *vendor, const char *cls)
{
	char path[512];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/bus", root);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/bus/pci", root);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/bus/pci/devices", root);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/bus/pci/devices/%s", root, name);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/bus/pci/devices/%s/vendor", root, name);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fprintf(fp, "%s\n", vendor);
	fclose(fp);
	snprintf(path, sizeof(path), "%s/bus/pci/devices/%s/class", root, name);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fprintf(fp, "%s\n", cls);
	fclose(fp);
}

/* CUDA_VISIBLE_DEVICES renumbers ordinals per process; the ledger's index
 * is the GPU's place among the host's NVIDIA GPUs in PCI order. */
static void ledger_index_is_the_gpus_place_in_pci_order(void **state)
{
	char root[] = "/tmp/kvmm-sysfs-XXXXXX";

	(void)state;
	assert_non_null(mkdtemp(root));
	pci_dev(root, "0000:00:00.0", "0x8086", "0x060000"); /* a host bridge */
	pci_dev(root, "0000:19:00.0", "0x10de", "0x030200"); /* 3D controller (H100) */
	pci_dev(root, "0000:19:00.1", "0x10de", "0x040300"); /* its audio function */
	pci_dev(root, "0000:3b:00.0", "0x10de", "0x030000"); /* VGA */
	pci_dev(root, "0000:3c:00.0", "0x15b3", "0x020700"); /* a NIC */
	pci_dev(root, "0001:05:00.0", "0x10de", "0x030200"); /* a second domain */
	T_EQ(kvmm_cuda_ledger_index(root, "0000:19:00.0"), 0);
	T_EQ(kvmm_cuda_ledger_index(root, "0000:3B:00.0"), 1);	   /* the driver's upper case */
	T_EQ(kvmm_cuda_ledger_index(root, "00000000:3b:00.0"), 1); /* nvidia-smi's domain */
	T_EQ(kvmm_cuda_ledger_index(root, "0001:05:00.0"), 2);
	T_EQ(kvmm_cuda_ledger_index(root, "0000:19:00.1"), -1); /* not a GPU */
	T_EQ(kvmm_cuda_ledger_index(root, "0000:3c:00.0"), -1);
	T_EQ(kvmm_cuda_ledger_index(root, "0000:5e:00.0"), -1); /* not there */
	T_EQ(kvmm_cuda_ledger_index(root, "../../x"), -1);
	T_EQ(kvmm_cuda_ledger_index("/nonexistent", "0000:19:00.0"), -1);
	nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(chunk_size_is_a_multiple_of_the_granularity),
	    cmocka_unit_test(shadow_chunk_divides_the_gpu_chunk),
	    cmocka_unit_test(plan_finds_runs_of_one_state),
	    cmocka_unit_test(fences_release_only_passed_ranges),
	    cmocka_unit_test(numa_node_comes_from_the_pci_device),
	    cmocka_unit_test(ledger_index_is_the_gpus_place_in_pci_order),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
