/*
 * Every bad input to /dev/kvmm and to region fds gets its errno and
 * changes nothing.
 */
#include "common/kmod_test.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static int create_raw(struct kvmm_region_create *c)
{
	int dev = kt_dev_open(), ret;

	ret = ioctl(dev, KVMM_IOC_REGION_CREATE, c) ? -errno : 0;
	if (!ret)
		close(c->fd);
	close(dev);
	return ret;
}

static int create_sized(uint64_t size, uint32_t chunk)
{
	struct kvmm_region_create c = {
	    .size = size, .chunk_bytes = chunk, .numa_node = KVMM_NUMA_LOCAL};

	return create_raw(&c);
}

static void version_reports_abi_and_page_size(void **state)
{
	struct kvmm_version v;
	int dev = kt_dev_open();

	(void)state;
	memset(&v, 0xff, sizeof(v));
	assert_int_equal(ioctl(dev, KVMM_IOC_VERSION, &v), 0);
	assert_int_equal(v.abi_version, KVMM_ABI_VERSION);
	assert_int_equal(v.page_size, sysconf(_SC_PAGESIZE));
	assert_int_equal(v.default_chunk_bytes, kt_sysfs_u64("default_chunk_bytes"));
	assert_true(v.reserved[0] == 0 && v.reserved[1] == 0 && v.reserved[2] == 0);
	close(dev);
}

static void create_rejects_bad_sizes(void **state)
{
	uint64_t before = kt_sysfs_u64("regions");

	(void)state;
	assert_int_equal(create_sized(0, 0), -EINVAL);
	assert_int_equal(create_sized(64 * KiB + 4096, 64 * KiB), -EINVAL);
	assert_int_equal(create_sized(4096, 64 * KiB), -EINVAL);
	assert_int_equal(create_sized(KVMM_REGION_MAX_BYTES + 2 * MiB, 2 * MiB), -EINVAL);
	assert_int_equal(create_sized(UINT64_MAX & ~(2 * MiB - 1), 2 * MiB), -EINVAL);
	/* The largest allowed region is only virtual space: it succeeds. */
	assert_int_equal(create_sized(KVMM_REGION_MAX_BYTES, 2 * MiB), 0);
	assert_int_equal(kt_sysfs_u64("regions"), before);
}

static void create_rejects_bad_chunk_sizes(void **state)
{
	(void)state;
	assert_int_equal(create_sized(4 * MiB, 2048), -EINVAL);
	assert_int_equal(create_sized(4 * MiB, 3 * 4096), -EINVAL);
	assert_int_equal(create_sized(8 * MiB, 4 * MiB), -EINVAL);
	assert_int_equal(create_sized(4 * MiB, 1), -EINVAL);
	assert_int_equal(create_sized(4 * MiB, 4096), 0);
	assert_int_equal(create_sized(4 * MiB, 2 * MiB), 0);
}

static void create_rejects_flags_reserved_and_nodes(void **state)
{
	struct kvmm_region_create c;

	(void)state;
	memset(&c, 0, sizeof(c));
	c.size = 1 * MiB;
	c.numa_node = KVMM_NUMA_LOCAL;
	c.flags = 1U << 5;
	assert_int_equal(create_raw(&c), -EINVAL);
	c.flags = 0;
	c.reserved0 = 1;
	assert_int_equal(create_raw(&c), -EINVAL);
	c.reserved0 = 0;
	c.reserved1 = 1;
	assert_int_equal(create_raw(&c), -EINVAL);
	c.reserved1 = 0;
	c.reserved[3] = 1;
	assert_int_equal(create_raw(&c), -EINVAL);
	c.reserved[3] = 0;
	c.numa_node = 64;
	assert_int_equal(create_raw(&c), -EINVAL);
	c.numa_node = -2;
	assert_int_equal(create_raw(&c), -EINVAL);
	c.numa_node = KVMM_NUMA_LOCAL;
	assert_int_equal(create_raw(&c), 0);
	assert_int_equal(c.chunk_bytes, kt_sysfs_u64("default_chunk_bytes"));
	assert_true(c.id > 0);
}

static void create_honours_cloexec(void **state)
{
	int dev = kt_dev_open();
	struct kvmm_region_create c = {.size = 1 * MiB, .numa_node = -1};

	(void)state;
	assert_int_equal(ioctl(dev, KVMM_IOC_REGION_CREATE, &c), 0);
	assert_int_equal(fcntl(c.fd, F_GETFD) & FD_CLOEXEC, 0);
	close(c.fd);
	c.flags = KVMM_CREATE_CLOEXEC;
	assert_int_equal(ioctl(dev, KVMM_IOC_REGION_CREATE, &c), 0);
	assert_int_equal(fcntl(c.fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	close(c.fd);
	close(dev);
}

static void bad_user_pointers_give_efault(void **state)
{
	int dev = kt_dev_open(), fd = kt_region(1 * MiB, 0);
	struct kvmm_query q = {.first_chunk = 0, .nr_chunks = 1, .states = 8};
	uint64_t before = kt_sysfs_u64("regions");

	(void)state;
	assert_int_equal(ioctl(dev, KVMM_IOC_VERSION, (void *)8), -1);
	assert_int_equal(errno, EFAULT);
	assert_int_equal(ioctl(dev, KVMM_IOC_REGION_CREATE, (void *)8), -1);
	assert_int_equal(errno, EFAULT);
	assert_int_equal(ioctl(fd, KVMM_IOC_ENSURE, (void *)8), -1);
	assert_int_equal(errno, EFAULT);
	assert_int_equal(ioctl(fd, KVMM_IOC_STAT, (void *)8), -1);
	assert_int_equal(errno, EFAULT);
	assert_int_equal(ioctl(fd, KVMM_IOC_QUERY, &q), -1);
	assert_int_equal(errno, EFAULT);
	/* A valid request whose result cannot be written back: no fd leaks. */
	void *ro = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct kvmm_region_create *c = ro;
	assert_ptr_not_equal(ro, MAP_FAILED);
	c->size = 1 * MiB;
	c->numa_node = KVMM_NUMA_LOCAL;
	assert_int_equal(mprotect(ro, 4096, PROT_READ), 0);
	int fds_before = dup(0);
	close(fds_before);
	assert_int_equal(ioctl(dev, KVMM_IOC_REGION_CREATE, c), -1);
	assert_int_equal(errno, EFAULT);
	int fds_after = dup(0);
	close(fds_after);
	assert_int_equal(fds_after, fds_before);
	munmap(ro, 4096);
	assert_int_equal(kt_sysfs_u64("regions"), before);
	close(fd);
	close(dev);
}

static void ioctls_on_wrong_fd_type_give_enotty(void **state)
{
	int dev = kt_dev_open(), fd = kt_region(1 * MiB, 0);
	struct kvmm_version v;
	struct kvmm_range r = {.offset = 0, .length = 64 * KiB};
	struct kvmm_region_create c = {.size = 1 * MiB, .numa_node = -1};

	(void)state;
	assert_int_equal(ioctl(dev, KVMM_IOC_ENSURE, &r), -1);
	assert_int_equal(errno, ENOTTY);
	assert_int_equal(ioctl(fd, KVMM_IOC_VERSION, &v), -1);
	assert_int_equal(errno, ENOTTY);
	assert_int_equal(ioctl(fd, KVMM_IOC_REGION_CREATE, &c), -1);
	assert_int_equal(errno, ENOTTY);
	assert_int_equal(ioctl(dev, _IO(KVMM_IOC_MAGIC, 0x7f)), -1);
	assert_int_equal(errno, ENOTTY);
	assert_int_equal(ioctl(fd, _IO(KVMM_IOC_MAGIC, 0x7f)), -1);
	assert_int_equal(errno, ENOTTY);
	close(fd);
	close(dev);
}

static void ranges_must_be_aligned_nonzero_and_inside(void **state)
{
	int fd = kt_region(1 * MiB, 64 * KiB);
	struct kvmm_range r = {.offset = 0, .length = 64 * KiB, .flags = 1};
	struct kvmm_region_stat st;

	(void)state;
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_ENSURE, 0, 0), -EINVAL);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_ENSURE, 4096, 64 * KiB), -EINVAL);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_ENSURE, 0, 4096), -EINVAL);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_ENSURE, 960 * KiB, 128 * KiB), -EINVAL);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_DISCARD, 2 * MiB, 64 * KiB), -EINVAL);
	assert_int_equal(
	    kt_range_ioctl(fd, KVMM_IOC_ENSURE, UINT64_MAX & ~(64 * KiB - 1), 128 * KiB), -EINVAL);
	assert_int_equal(ioctl(fd, KVMM_IOC_ENSURE, &r), -1);
	assert_int_equal(errno, EINVAL);
	r.flags = 0;
	r.reserved[1] = 1;
	assert_int_equal(ioctl(fd, KVMM_IOC_ENSURE, &r), -1);
	assert_int_equal(errno, EINVAL);
	r.reserved[1] = 0;
	r.reserved0 = 1;
	assert_int_equal(ioctl(fd, KVMM_IOC_PIN, &r), -1);
	assert_int_equal(errno, EINVAL);
	/* Nothing above changed the region. */
	assert_int_equal(kt_stat(fd, &st), 0);
	assert_int_equal(st.resident_bytes, 0);
	assert_int_equal(st.zero_fills, 0);
	close(fd);
}

static void query_rejects_bad_ranges(void **state)
{
	int fd = kt_region(1 * MiB, 64 * KiB);
	uint8_t states[32];
	struct kvmm_query q = {.first_chunk = 0, .nr_chunks = 16, .states = (uintptr_t)states};

	(void)state;
	assert_int_equal(ioctl(fd, KVMM_IOC_QUERY, &q), 0);
	q.nr_chunks = 17;
	assert_int_equal(ioctl(fd, KVMM_IOC_QUERY, &q), -1);
	assert_int_equal(errno, EINVAL);
	q.nr_chunks = 0;
	assert_int_equal(ioctl(fd, KVMM_IOC_QUERY, &q), -1);
	assert_int_equal(errno, EINVAL);
	q.first_chunk = 16;
	q.nr_chunks = 1;
	assert_int_equal(ioctl(fd, KVMM_IOC_QUERY, &q), -1);
	assert_int_equal(errno, EINVAL);
	q.first_chunk = 0;
	q.nr_chunks = KVMM_QUERY_MAX_CHUNKS + 1ULL;
	assert_int_equal(ioctl(fd, KVMM_IOC_QUERY, &q), -1);
	assert_int_equal(errno, EINVAL);
	q.nr_chunks = 1;
	q.flags = 2;
	assert_int_equal(ioctl(fd, KVMM_IOC_QUERY, &q), -1);
	assert_int_equal(errno, EINVAL);
	close(fd);
}

static void mmap_private_is_refused(void **state)
{
	int fd = kt_region(1 * MiB, 0);

	(void)state;
	assert_ptr_equal(mmap(NULL, 1 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0),
			 MAP_FAILED);
	assert_int_equal(errno, EINVAL);
	close(fd);
}

static void mmap_past_end_or_unaligned_is_refused(void **state)
{
	int fd = kt_region(1 * MiB, 64 * KiB);
	void *p;

	(void)state;
	assert_ptr_equal(mmap(NULL, 2 * MiB, PROT_READ, MAP_SHARED, fd, 0), MAP_FAILED);
	assert_int_equal(errno, EINVAL);
	assert_ptr_equal(mmap(NULL, 128 * KiB, PROT_READ, MAP_SHARED, fd, 960 * KiB), MAP_FAILED);
	assert_int_equal(errno, EINVAL);
	assert_ptr_equal(mmap(NULL, 64 * KiB, PROT_READ, MAP_SHARED, fd, 4096), MAP_FAILED);
	assert_int_equal(errno, EINVAL);
	assert_ptr_equal(mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 1ULL << 50), MAP_FAILED);
	/* A chunk-aligned partial mapping is fine. */
	p = mmap(NULL, 128 * KiB, PROT_READ, MAP_SHARED, fd, 896 * KiB);
	assert_ptr_not_equal(p, MAP_FAILED);
	munmap(p, 128 * KiB);
	close(fd);
}

static void mremap_growth_is_refused(void **state)
{
	int fd = kt_region(1 * MiB, 64 * KiB);
	char *p = kt_map(fd, 0, 512 * KiB);

	(void)state;
	p[0] = 1;
	assert_ptr_equal(mremap(p, 512 * KiB, 1 * MiB, MREMAP_MAYMOVE), MAP_FAILED);
	assert_int_equal(errno, EFAULT);
	assert_int_equal(p[0], 1);
	munmap(p, 512 * KiB);
	close(fd);
}

static void core_dumps_and_gup_skip_regions(void **state)
{
	int fd = kt_region(1 * MiB, 64 * KiB);
	char *p = kt_map(fd, 0, 1 * MiB);
	int pipefd[2];
	struct iovec iov = {.iov_base = p, .iov_len = 4096};

	(void)state;
	p[0] = 7;
	/* vmsplice needs page references; PFNMAP memory cannot give them. */
	assert_int_equal(pipe(pipefd), 0);
	assert_int_equal(vmsplice(pipefd[1], &iov, 1, 0), -1);
	assert_int_equal(errno, EFAULT);
	close(pipefd[0]);
	close(pipefd[1]);
	munmap(p, 1 * MiB);
	close(fd);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(version_reports_abi_and_page_size),
	    cmocka_unit_test(create_rejects_bad_sizes),
	    cmocka_unit_test(create_rejects_bad_chunk_sizes),
	    cmocka_unit_test(create_rejects_flags_reserved_and_nodes),
	    cmocka_unit_test(create_honours_cloexec),
	    cmocka_unit_test(bad_user_pointers_give_efault),
	    cmocka_unit_test(ioctls_on_wrong_fd_type_give_enotty),
	    cmocka_unit_test(ranges_must_be_aligned_nonzero_and_inside),
	    cmocka_unit_test(query_rejects_bad_ranges),
	    cmocka_unit_test(mmap_private_is_refused),
	    cmocka_unit_test(mmap_past_end_or_unaligned_is_refused),
	    cmocka_unit_test(mremap_growth_is_refused),
	    cmocka_unit_test(core_dumps_and_gup_skip_regions),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
