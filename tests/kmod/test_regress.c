/*
 * Regressions found by kvmm_fuzz and the debug kernel (docs/reliability.md):
 * each test is the smallest program that showed the bug.
 */
#include "common/kmod_test.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * PREFETCH "starts reading the range's flash chunks back and returns at
 * once". On a 1 TiB region of 4 KiB chunks with nothing on flash it must
 * not walk all 2^28 chunk indices one by one (the fuzzer's threads hung
 * there, unkillable), and a fatal signal must end it.
 */
static void prefetch_of_a_huge_empty_range_returns_at_once(void **state)
{
	int fd = kt_region(KVMM_REGION_MAX_BYTES, 4 * KiB), status;
	struct kvmm_range r = {.offset = 0, .length = KVMM_REGION_MAX_BYTES};
	double t0, took, killed_after;
	pid_t pid;

	(void)state;
	/* One chunk is resident, so the region is not trivially empty. */
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_ENSURE, 0, 4 * KiB), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid)
		_exit(ioctl(fd, KVMM_IOC_PREFETCH, &r) ? 1 : 0);
	t0 = now();
	while (waitpid(pid, &status, WNOHANG) == 0 && now() - t0 < 5)
		usleep(10000);
	took = now() - t0;
	if (took >= 5) {
		/* Still in the ioctl: it must at least die of SIGKILL. */
		kill(pid, SIGKILL);
		t0 = now();
		while (waitpid(pid, &status, WNOHANG) == 0 && now() - t0 < 60)
			usleep(10000);
		killed_after = now() - t0;
		if (killed_after >= 60)
			print_message("# the PREFETCH ignored SIGKILL for 60 s\n");
		fail_msg("PREFETCH of [0, 1 TiB) with 4 KiB chunks still running after 5 s "
			 "(SIGKILL took %.1f s)",
			 killed_after);
	}
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(fd);
}

/*
 * A GPU charge whose result cannot be copied out fails with EFAULT, so the
 * caller takes it as not made and never uncharges it: it must change
 * nothing (as REGION_CREATE installs no fd it cannot report).
 */
static void gpu_charge_that_cannot_report_changes_nothing(void **state)
{
	long page = sysconf(_SC_PAGESIZE);
	struct kvmm_gpu_charge *a;
	int dev = kt_dev_open();
	uint64_t before = kt_sysfs_u64("gpus/gpu3_charged_bytes");
	void *p;

	(void)state;
	p = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(p != MAP_FAILED);
	a = p;
	memset(a, 0, sizeof(*a));
	a->gpu = 3;
	a->bytes = 1 * MiB;
	assert_int_equal(mprotect(p, page, PROT_READ), 0);
	assert_int_equal(ioctl(dev, KVMM_IOC_GPU_CHARGE, a), -1);
	assert_int_equal(errno, EFAULT);
	assert_int_equal(kt_sysfs_u64("gpus/gpu3_charged_bytes"), before);
	munmap(p, page);
	close(dev);
}

/*
 * Lock order: EVICT holds the region lock while it grows the backing file
 * (kvmm_store_alloc -> vfs_fallocate takes the file's inode lock), and a
 * write(2) to a file holds that file's inode lock while it faults in its
 * source buffer, which may be a mapping of the region (the fault takes the
 * region lock). Two tasks doing both at once deadlock; lockdep reports the
 * cycle as soon as both orders were seen once, which this test does. It
 * passes on a kernel without lockdep: the harness's log check is the test.
 */
static void evict_growing_the_file_and_a_write_from_the_mapping_keep_lock_order(void **state)
{
	const char *dir = getenv("KVMM_FLASH_DIR") ? getenv("KVMM_FLASH_DIR") : "/mnt/flash";
	struct kvmm_backing b = {0};
	char path[256];
	uint8_t *map;
	int fd, file;

	(void)state;
	snprintf(path, sizeof(path), "%s/regress-lock-order", dir);
	file = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(file >= 0);
	unlink(path);
	fd = kt_region(1 * MiB, 64 * KiB);
	b.fd = file;
	assert_int_equal(ioctl(fd, KVMM_IOC_SET_BACKING, &b), 0);
	map = kt_map(fd, 0, 1 * MiB);
	memset(map, 0x5a, 64 * KiB);
	/* region lock -> the file's inode lock (the store grows the empty file) */
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 64 * KiB), 0);
	/*
	 * the file's inode lock -> mmap_lock -> region lock: chunk 2 is empty,
	 * so its fault zero-fills it. (Faulting a chunk on flash there would
	 * need a direct read of the very file whose lock this write holds: a
	 * backing file, like a swap file, is kvmm's alone; see docs/abi.md.)
	 */
	assert_int_equal(pwrite(file, map + 128 * KiB, 4096, 512 * MiB), 4096);
	munmap(map, 1 * MiB);
	close(fd);
	close(file);
}

/* A test KVMM_REGRESS_SKIP leaves out. */
static void left_out(void **state)
{
	(void)state;
	print_message("skip: left out by KVMM_REGRESS_SKIP=%s\n", getenv("KVMM_REGRESS_SKIP"));
	skip();
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(gpu_charge_that_cannot_report_changes_nothing),
	    cmocka_unit_test(evict_growing_the_file_and_a_write_from_the_mapping_keep_lock_order),
	    /* Last: while the bug is there, its child stays stuck in the kernel. */
	    cmocka_unit_test(prefetch_of_a_huge_empty_range_returns_at_once),
	};

	struct CMUnitTest run[sizeof(tests) / sizeof(tests[0])];
	const char *leave_out = getenv("KVMM_REGRESS_SKIP");

	T_LIST(argc, argv, T_GROUP(tests));
	/* KVMM_REGRESS_SKIP=pattern leaves tests out (e.g. "prefetch*"); each counts as skipped. */
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		run[i] = tests[i];
		if (leave_out && *leave_out && !fnmatch(leave_out, tests[i].name, 0))
			run[i].test_func = left_out;
	}
	return cmocka_run_group_tests_name("regress", run, NULL, NULL);
}
