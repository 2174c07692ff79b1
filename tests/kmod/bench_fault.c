/*
 * First-touch throughput of a 1 GiB kvmm region against anonymous memory,
 * with one faulting thread and with two (each touching its own half of the
 * same region or mapping), and ENSURE throughput, measured side by side in
 * one boot. Prints GB/s and ratios; run by `make bench-kmod`.
 *
 * Both sides zero every page they hand out, and under an emulator the
 * zeroing instruction can cost most of a fault; so it also times zeroing
 * resident memory the way the kernel's clear_page() does and prints what
 * each side spends beyond it, and the ratio that zeroing alone allows.
 */
#include "common/kmod_test.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define SIZE (1ULL << 30)
#define REPS 3

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void touch(volatile uint8_t *p, uint64_t size)
{
	for (uint64_t off = 0; off < size; off += 4096)
		p[off] = 1;
}

static void *touch_half(void *arg)
{
	touch(arg, SIZE / 2);
	return NULL;
}

/* Touch [p, p + SIZE) with @threads threads (1 or 2); returns seconds. */
static double touch_timed(uint8_t *p, int threads)
{
	pthread_t th;
	double t = now();

	if (threads == 1) {
		touch(p, SIZE);
	} else {
		if (pthread_create(&th, NULL, touch_half, p + SIZE / 2)) {
			perror("pthread_create");
			exit(1);
		}
		touch(p, SIZE / 2);
		pthread_join(th, NULL);
	}
	return now() - t;
}

static double best(double *v)
{
	double b = v[0];

	for (int i = 1; i < REPS; i++)
		b = v[i] < b ? v[i] : b;
	return b;
}

/* SIZE bytes of anonymous memory in 4 KiB pages (THP off), nothing touched. */
static uint8_t *anon_map(void)
{
	uint8_t *p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap anon");
		exit(1);
	}
	madvise(p, SIZE, MADV_NOHUGEPAGE);
	return p;
}

static double anon_touch(int threads)
{
	uint8_t *p = anon_map();
	double t;

	t = touch_timed(p, threads);
	munmap(p, SIZE);
	return t;
}

static int region(uint32_t chunk)
{
	int dev = open(KVMM_DEVICE_PATH, O_RDWR);
	int fd = dev < 0 ? -1 : kt_region_create(dev, SIZE, chunk, KVMM_NUMA_LOCAL);

	if (fd < 0) {
		fprintf(stderr, "region create failed: %d\n", fd);
		exit(1);
	}
	close(dev);
	return fd;
}

static double kvmm_touch(uint32_t chunk, int threads)
{
	int fd = region(chunk);
	uint8_t *p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	double t;

	if (p == MAP_FAILED) {
		perror("mmap kvmm");
		exit(1);
	}
	t = touch_timed(p, threads);
	munmap(p, SIZE);
	close(fd);
	return t;
}

/* Does the CPU advertise ERMS (the kernel's clear_page() then uses rep stosb)? */
static int cpu_has_erms(void)
{
	char line[4096];
	FILE *f = fopen("/proc/cpuinfo", "r");
	int erms = 0;

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "flags", 5)) {
			erms = strstr(line, " erms") != NULL;
			break;
		}
	if (f)
		fclose(f);
	return erms;
}

/* Seconds to zero SIZE bytes of resident memory page by page as clear_page() does. */
static double zero_like_clear_page(int erms)
{
	uint8_t *p = anon_map();
	double t;

	touch(p, SIZE);
	t = now();
	for (uint64_t off = 0; off < SIZE; off += 4096) {
		void *d = p + off;
		unsigned long n = erms ? 4096 : 512;

		if (erms)
			__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(0) : "memory");
		else
			__asm__ volatile("rep stosq" : "+D"(d), "+c"(n) : "a"(0UL) : "memory");
	}
	t = now() - t;
	munmap(p, SIZE);
	return t;
}

static double kvmm_ensure(uint32_t chunk)
{
	int fd = region(chunk), err;
	double t;

	t = now();
	err = kt_range_ioctl(fd, KVMM_IOC_ENSURE, 0, SIZE);
	t = now() - t;
	if (err) {
		fprintf(stderr, "ENSURE: %s\n", strerror(-err));
		exit(1);
	}
	close(fd);
	return t;
}

int main(void)
{
	const uint32_t chunks[] = {64 << 10, 2 << 20};
	double anon[REPS], anon2[REPS], t[REPS], t2[REPS], zero[REPS], fault64 = 0;
	const double pages = SIZE / 4096.0;
	int erms = cpu_has_erms();
	char limit[32];

	snprintf(limit, sizeof(limit), "%llu", SIZE + (SIZE >> 3));
	if (kt_sysfs_write("pool_limit_bytes", limit)) {
		fprintf(stderr, "cannot raise pool_limit_bytes to %s\n", limit);
		return 1;
	}
	for (int i = 0; i < REPS; i++)
		anon[i] = anon_touch(1);
	for (int i = 0; i < REPS; i++)
		anon2[i] = anon_touch(2);
	printf("first touch of 1 GiB, best of %d (GB/s; ratio = kvmm / anonymous mmap with as many "
	       "threads; 2T/1T = two faulting threads against one)\n",
	       REPS);
	printf("%-28s %10s %8s %10s %8s %8s\n", "method", "1T GB/s", "ratio", "2T GB/s", "ratio",
	       "2T/1T");
	printf("%-28s %10.2f %8.2f %10.2f %8.2f %8.2f\n", "anonymous mmap (4 KiB)",
	       SIZE / best(anon) / 1e9, 1.0, SIZE / best(anon2) / 1e9, 1.0,
	       best(anon) / best(anon2));
	for (unsigned int c = 0; c < 2; c++) {
		char name[64];

		for (int i = 0; i < REPS; i++)
			t[i] = kvmm_touch(chunks[c], 1);
		for (int i = 0; i < REPS; i++)
			t2[i] = kvmm_touch(chunks[c], 2);
		if (!c)
			fault64 = best(t);
		snprintf(name, sizeof(name), "kvmm fault, chunk %u KiB", chunks[c] >> 10);
		printf("%-28s %10.2f %8.2f %10.2f %8.2f %8.2f\n", name, SIZE / best(t) / 1e9,
		       best(anon) / best(t), SIZE / best(t2) / 1e9, best(anon2) / best(t2),
		       best(t) / best(t2));
		for (int i = 0; i < REPS; i++)
			t[i] = kvmm_ensure(chunks[c]);
		snprintf(name, sizeof(name), "kvmm ENSURE, chunk %u KiB", chunks[c] >> 10);
		printf("%-28s %10.2f %8.2f\n", name, SIZE / best(t) / 1e9, best(anon) / best(t));
	}
	for (int i = 0; i < REPS; i++)
		zero[i] = zero_like_clear_page(erms);
	printf("zeroing resident memory as clear_page() does (%s), best of %d: %.2f GB/s, "
	       "%.2f us per 4 KiB page\n",
	       erms ? "rep stosb" : "rep stosq", REPS, SIZE / best(zero) / 1e9,
	       best(zero) / pages * 1e6);
	printf("per 4 KiB page, one thread: anonymous fault %.2f us (%.2f beyond zeroing), "
	       "kvmm 64 KiB fault %.2f us (%.2f beyond zeroing)\n",
	       best(anon) / pages * 1e6, (best(anon) - best(zero)) / pages * 1e6,
	       fault64 / pages * 1e6, (fault64 - best(zero)) / pages * 1e6);
	printf("ceiling on the 1T ratio while a page costs its zeroing: %.2f "
	       "(anonymous time / zeroing time)\n",
	       best(anon) / best(zero));
	return 0;
}
