/*
 * Module lifetime: rmmod is refused while any region fd or mapping lives
 * and works afterwards with the pool back at zero; load parameters apply.
 */
#include "common/kmod_test.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define KMOD_PATH "/kvmm.ko"

static int rmmod(void)
{
	return syscall(SYS_delete_module, "kvmm", O_NONBLOCK) ? -errno : 0;
}

/* The harness puts kvmm.ko at KMOD_PATH in its VM; elsewhere these tests cannot reload it. */
#define SKIP_NO_MODULE_FILE()                                                                      \
	do {                                                                                       \
		print_message("skip: no " KMOD_PATH " to load the module again from (the "         \
			      "harness's VM has one)\n");                                          \
		skip();                                                                            \
	} while (0)

static int insmod(const char *params)
{
	int fd = open(KMOD_PATH, O_RDONLY | O_CLOEXEC), ret;

	if (fd < 0)
		return -errno;
	ret = syscall(SYS_finit_module, fd, params, 0) ? -errno : 0;
	close(fd);
	return ret;
}

static void rmmod_is_refused_while_a_region_lives(void **state)
{
	int fd = kt_region(4 * MiB, 64 * KiB);
	uint8_t *p = kt_map(fd, 0, 4 * MiB);

	(void)state;
	if (access(KMOD_PATH, R_OK))
		SKIP_NO_MODULE_FILE();
	kt_fill(p, 4 * MiB, 0, 1);
	/* Held by the fd and the mapping. */
	assert_int_equal(rmmod(), -EWOULDBLOCK);
	close(fd);
	/* Held by the mapping alone. */
	assert_int_equal(rmmod(), -EWOULDBLOCK);
	assert_true(kt_check(p, 4 * MiB, 0, 1));
	munmap(p, 4 * MiB);
	assert_int_equal(kt_sysfs_u64("pool_used_bytes"), 0);
	assert_int_equal(kt_sysfs_u64("regions"), 0);
	assert_int_equal(rmmod(), 0);
	assert_int_equal(access(KVMM_DEVICE_PATH, F_OK), -1);
	assert_int_equal(insmod(""), 0);
}

static void open_device_fd_holds_the_module(void **state)
{
	int dev = kt_dev_open();

	(void)state;
	if (access(KMOD_PATH, R_OK))
		SKIP_NO_MODULE_FILE();
	assert_int_equal(rmmod(), -EWOULDBLOCK);
	close(dev);
	assert_int_equal(rmmod(), 0);
	assert_int_equal(insmod(""), 0);
}

static void load_parameters_are_applied_and_validated(void **state)
{
	struct stat st;

	(void)state;
	if (access(KMOD_PATH, R_OK))
		SKIP_NO_MODULE_FILE();
	assert_int_equal(rmmod(), 0);
	assert_int_equal(insmod("default_chunk_bytes=12345"), -EINVAL);
	assert_int_equal(insmod("pool_limit_bytes=1125899906842624"), -EINVAL);
	assert_int_equal(insmod("dev_gid=1234 pool_limit_bytes=268435456 "
				"default_chunk_bytes=262144"),
			 0);
	assert_int_equal(stat(KVMM_DEVICE_PATH, &st), 0);
	assert_int_equal(st.st_gid, 1234);
	assert_int_equal(st.st_mode & 0777, 0660);
	assert_true(S_ISCHR(st.st_mode));
	assert_int_equal(kt_sysfs_u64("pool_limit_bytes"), 268435456);
	assert_int_equal(kt_sysfs_u64("default_chunk_bytes"), 262144);
	assert_int_equal(rmmod(), 0);
	assert_int_equal(insmod(""), 0);
	assert_int_equal(stat(KVMM_DEVICE_PATH, &st), 0);
	assert_int_equal(st.st_gid, 0);
}

static void sysfs_exists_with_every_file(void **state)
{
	const char *files[] = {
	    "version",
	    "abi_version",
	    "pool_limit_bytes",
	    "pool_used_bytes",
	    "default_chunk_bytes",
	    "regions",
	    "nodes/node0_used_bytes",
	    "stats/faults",
	    "stats/zero_fills",
	    "stats/discards",
	    "stats/fault_failures",
	    "stats/ensure_failures",
	    "stats/bytes_read",
	    "stats/bytes_written",
	    "stats/regions_created",
	};

	(void)state;
	for (unsigned int i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char path[128];

		snprintf(path, sizeof(path), KVMM_SYSFS "/%s", files[i]);
		if (access(path, R_OK))
			fail_msg("missing %s", path);
	}
	assert_int_equal(kt_sysfs_u64("abi_version"), KVMM_ABI_VERSION);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(sysfs_exists_with_every_file),
	    cmocka_unit_test(rmmod_is_refused_while_a_region_lives),
	    cmocka_unit_test(open_device_fd_holds_the_module),
	    cmocka_unit_test(load_parameters_are_applied_and_validated),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
