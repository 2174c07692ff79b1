/*
 * A request that starts with a cached prefix: giving its range the
 * prefix's memory with KVMM_IOC_SHARE against copying the prefix into it
 * (pwrite from the source's mapping, which is what an engine without
 * sharing does), side by side in one boot, for prefixes of 16 MiB to
 * 256 MiB at 64 KiB and 2 MiB chunks. Prints the time and the pool bytes
 * each way costs, then the time to read the prefix through the new range
 * (faults that map the shared pages against reading the private copy).
 * Run by `make bench-kmod KMOD_TESTS=share`.
 */
#include "common/kmod_test.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define REPS 3

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double best(const double *v)
{
	double b = v[0];

	for (int i = 1; i < REPS; i++)
		b = v[i] < b ? v[i] : b;
	return b;
}

static double read_all(const uint8_t *p, uint64_t size)
{
	volatile uint64_t sum = 0;
	double t = now();

	for (uint64_t off = 0; off < size; off += 64)
		sum += p[off];
	(void)sum;
	return now() - t;
}

struct result {
	double secs, read_secs;
	uint64_t pool_bytes;
};

/* One way of giving a new region the first @prefix bytes of @src (mapped at @s). */
static int run(int src, const uint8_t *s, uint64_t prefix, uint32_t chunk, int share,
	       struct result *res)
{
	int dst = kt_region(prefix, chunk);
	uint64_t used = kt_sysfs_u64("pool_used_bytes");
	uint8_t *d;
	double t = now();

	if (share) {
		struct kvmm_share a = {.src_fd = src, .length = prefix};

		if (ioctl(dst, KVMM_IOC_SHARE, &a)) {
			perror("KVMM_IOC_SHARE");
			return -1;
		}
	} else if (pwrite(dst, s, prefix, 0) != (ssize_t)prefix) {
		perror("pwrite");
		return -1;
	}
	res->secs = now() - t;
	res->pool_bytes = kt_sysfs_u64("pool_used_bytes") - used;
	d = kt_map(dst, 0, prefix);
	res->read_secs = read_all(d, prefix);
	if (memcmp(d, s, prefix)) {
		fprintf(stderr, "the new range does not read the prefix\n");
		return -1;
	}
	munmap(d, prefix);
	close(dst);
	return 0;
}

int main(void)
{
	const uint64_t prefixes[] = {16 << 20, 64 << 20, 256 << 20};
	const uint32_t chunks[] = {64 << 10, 2 << 20};

	if (kt_sysfs_write("pool_limit_bytes", "1073741824")) {
		fprintf(stderr, "cannot set pool_limit_bytes to 1 GiB\n");
		return 1;
	}
	printf("a new request's range given a cached prefix: KVMM_IOC_SHARE against a copy "
	       "(pwrite), best of %d\n",
	       REPS);
	printf("%-8s %-7s %11s %11s %8s %12s %12s %10s %10s %8s\n", "prefix", "chunk", "share ms",
	       "copy ms", "ratio", "share bytes", "copy bytes", "read sh ms", "read cp ms",
	       "ratio");
	for (unsigned int c = 0; c < 2; c++) {
		for (unsigned int p = 0; p < 3; p++) {
			uint64_t size = prefixes[p];
			int src = kt_region(size, chunks[c]);
			uint8_t *s = kt_map(src, 0, size);
			double sh[REPS], cp[REPS], rsh[REPS], rcp[REPS];
			struct result r[2];

			kt_fill(s, size, 0, 5);
			for (int i = 0; i < REPS; i++) {
				if (run(src, s, size, chunks[c], 1, &r[0]) ||
				    run(src, s, size, chunks[c], 0, &r[1]))
					return 1;
				sh[i] = r[0].secs, cp[i] = r[1].secs;
				rsh[i] = r[0].read_secs, rcp[i] = r[1].read_secs;
			}
			printf("%5llu MiB %4u KiB %11.3f %11.3f %8.1f %12llu %12llu %10.2f %10.2f "
			       "%8.2f\n",
			       (unsigned long long)(size >> 20), chunks[c] >> 10, best(sh) * 1e3,
			       best(cp) * 1e3, best(cp) / best(sh),
			       (unsigned long long)r[0].pool_bytes,
			       (unsigned long long)r[1].pool_bytes, best(rsh) * 1e3,
			       best(rcp) * 1e3, best(rcp) / best(rsh));
			munmap(s, size);
			close(src);
		}
	}
	printf("ratio: copy time / share time; read ratio: reading the private copy / reading "
	       "through the shared pages (first touch of the new range's mapping)\n");
	return 0;
}
