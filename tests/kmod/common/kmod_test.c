#include "kmod_test.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

int kt_dev_open(void)
{
	int dev = open(KVMM_DEVICE_PATH, O_RDWR | O_CLOEXEC);

	if (dev < 0)
		fail_msg("open %s: %s", KVMM_DEVICE_PATH, strerror(errno));
	return dev;
}

int kt_region_create(int dev, uint64_t size, uint32_t chunk, int node)
{
	struct kvmm_region_create c = {
	    .size = size,
	    .chunk_bytes = chunk,
	    .numa_node = node,
	    .flags = KVMM_CREATE_CLOEXEC,
	};

	if (ioctl(dev, KVMM_IOC_REGION_CREATE, &c))
		return -errno;
	return c.fd;
}

int kt_region(uint64_t size, uint32_t chunk)
{
	int dev = kt_dev_open();
	int fd = kt_region_create(dev, size, chunk, KVMM_NUMA_LOCAL);

	if (fd < 0)
		fail_msg("create region of %llu bytes, chunk %u: %s", (unsigned long long)size,
			 chunk, strerror(-fd));
	close(dev);
	return fd;
}

int kt_range_ioctl(int fd, unsigned long cmd, uint64_t off, uint64_t len)
{
	struct kvmm_range r = {.offset = off, .length = len};

	return ioctl(fd, cmd, &r) ? -errno : 0;
}

int kt_stat(int fd, struct kvmm_region_stat *st)
{
	memset(st, 0xff, sizeof(*st));
	return ioctl(fd, KVMM_IOC_STAT, st) ? -errno : 0;
}

void *kt_map(int fd, uint64_t off, uint64_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);

	if (p == MAP_FAILED)
		fail_msg("mmap %llu@%llu: %s", (unsigned long long)len, (unsigned long long)off,
			 strerror(errno));
	return p;
}

uint64_t kt_sysfs_u64(const char *name)
{
	char path[256], buf[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), KVMM_SYSFS "/%s", name);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		fail_msg("open %s: %s", path, strerror(errno));
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		fail_msg("read %s", path);
	buf[n] = 0;
	return strtoull(buf, NULL, 0);
}

int kt_sysfs_write(const char *name, const char *val)
{
	char path[256];
	int fd, ret = 0;

	snprintf(path, sizeof(path), KVMM_SYSFS "/%s", name);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

int kt_all_zero(const void *p, size_t len)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < len; i++)
		if (b[i])
			return 0;
	return 1;
}

uint8_t kt_pattern(uint64_t pos, uint32_t seed)
{
	uint64_t x = pos * 0x9e3779b97f4a7c15ULL + seed;

	x ^= x >> 29;
	return (uint8_t)(x ^ (x >> 8) ^ 0x5a);
}

void kt_fill(void *p, size_t len, uint64_t base, uint32_t seed)
{
	uint8_t *b = p;

	for (size_t i = 0; i < len; i++)
		b[i] = kt_pattern(base + i, seed);
}

int kt_check(const void *p, size_t len, uint64_t base, uint32_t seed)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < len; i++) {
		if (b[i] != kt_pattern(base + i, seed)) {
			print_error("byte %llu: expected 0x%02x, saw 0x%02x\n",
				    (unsigned long long)(base + i), kt_pattern(base + i, seed),
				    b[i]);
			return 0;
		}
	}
	return 1;
}
