/* SPDX-License-Identifier: MIT */
/*
 * A plain program that the preload tests run with and without
 * LD_PRELOAD=libkvmm-preload.so. It knows nothing of kvmm: each mode does
 * what an engine does to its memory and checks the results itself, and
 * prints "key=value" lines the driver (test_preload_exec.c) reads.
 * Exit status 0 when every check of the mode held.
 *   probe MODE [ARG]
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MiB (1UL << 20)

static int fails;
static void *(*volatile vmalloc)(size_t) = malloc;
static void (*volatile vfree)(void *) = free;

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "probe: check failed at line %d: %s\n", __LINE__, #c);     \
			fails++;                                                                   \
		}                                                                                  \
	} while (0)

/* Resident kB of the whole process. */
static long rss_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "VmRSS:", 6))
			kb = strtol(line + 6, NULL, 10);
	}
	if (f)
		fclose(f);
	return kb;
}

/* Bytes of [p, p+n) the kernel has pages for. */
static size_t present(const void *p, size_t n)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE), np = (n + pg - 1) / pg, got = 0;
	unsigned char *v = malloc(np);

	if (!v || mincore((void *)((uintptr_t)p & ~(pg - 1)), n, v))
		return (size_t)-1;
	for (size_t i = 0; i < np; i++)
		got += v[i] & 1;
	free(v);
	return got * pg;
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i += 4096)
		p[i] = (unsigned char)(seed + i / 4096 * 7 + 1);
}

static int same(const unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i += 4096) {
		if (p[i] != (unsigned char)(seed + i / 4096 * 7 + 1))
			return 0;
	}
	return 1;
}

/* An engine's KV buffer: one big aligned allocation, cleared, then a
 * little of it used. */
static void mode_rss(void)
{
	size_t n = 512 * MiB;
	void *p = NULL;
	long before = rss_kb();

	CHECK(posix_memalign(&p, 64, n) == 0);
	memset(p, 0, n);
	fill(p, 8 * MiB, 3);
	printf("rss_growth_kb=%ld\n", rss_kb() - before);
	printf("present_bytes=%zu\n", present(p, n));
	CHECK(same(p, 8 * MiB, 3));
	CHECK(((unsigned char *)p)[n - 1] == 0);
	free(p);
}

/* A routed buffer held until stdin closes, for kvmmctl to see. */
static void mode_hold(void)
{
	size_t n = 96 * MiB;
	unsigned char *p = malloc(n);
	char c;

	CHECK(p != NULL);
	fill(p, 8 * MiB, 5);
	printf("ready\n");
	fflush(stdout);
	while (read(0, &c, 1) > 0)
		;
	CHECK(same(p, 8 * MiB, 5));
	free(p);
}

static void mode_data(void)
{
	unsigned char *a = malloc(100 * MiB), *b, *c, *m;
	void *al = aligned_alloc(2 * MiB, 96 * MiB);

	CHECK(a && al);
	CHECK(((uintptr_t)al & (2 * MiB - 1)) == 0);
	CHECK(malloc_usable_size(a) >= 100 * MiB);
	fill(a, 100 * MiB, 1);
	/* realloc: grow (a move), then shrink below every rule's floor */
	b = realloc(a, 200 * MiB);
	CHECK(b && same(b, 100 * MiB, 1));
	b[150 * MiB] = 9;
	c = realloc(b, 1 * MiB);
	CHECK(c && same(c, 1 * MiB, 1));
	/* and from a small block up into routed sizes */
	c = realloc(c, 300 * MiB);
	CHECK(c && same(c, 1 * MiB, 1));
	free(c);
	/* calloc reads zeros */
	m = calloc(80, MiB);
	CHECK(m && m[0] == 0 && m[80 * MiB - 1] == 0 && m[33 * MiB + 5] == 0);
	free(m);
	/* anonymous mmap, mremap, munmap */
	m = mmap(NULL, 128 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(m != MAP_FAILED);
	fill(m, 128 * MiB, 2);
	m = mremap(m, 128 * MiB, 256 * MiB, MREMAP_MAYMOVE);
	CHECK(m != MAP_FAILED && same(m, 128 * MiB, 2) && m[200 * MiB] == 0);
	/* madvise(DONTNEED) gives the range back: it reads as zeros */
	CHECK(madvise(m, 64 * MiB, MADV_DONTNEED) == 0);
	CHECK(m[0] == 0 && m[63 * MiB] == 0 &&
	      same(m + 64 * MiB, 64 * MiB, 2 + 64 * 256 * 7 % 256));
	CHECK(munmap(m, 256 * MiB) == 0);
	memset(al, 0x5a, 96 * MiB); /* not zero: written */
	CHECK(((unsigned char *)al)[50 * MiB] == 0x5a);
	free(al);
	/* small allocations are untouched (called through pointers the
	 * compiler cannot see through, or it drops the pairs) */
	for (int i = 0; i < 1000; i++) {
		char *s = vmalloc((size_t)i + 1);

		memset(s, i, (size_t)i + 1);
		CHECK(s[i] == (char)i);
		vfree(s);
	}
	printf("data=ok\n");
}

static void mode_fork(void)
{
	size_t n = 128 * MiB;
	unsigned char *p = malloc(n);
	pid_t pid;
	int st;

	fill(p, n, 5);
	pid = fork();
	if (!pid) {
		/* the child sees the parent's data and writes its own copy */
		int ok = same(p, n, 5);
		unsigned char *q = malloc(n); /* the child routes on its own */

		memset(p, 0, n);
		fill(q, n, 6);
		ok = ok && same(q, n, 6) && p[12345] == 0;
		free(q);
		free(p);
		_exit(ok ? 0 : 1);
	}
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK(same(p, n, 5));
	free(p);
	printf("fork=ok\n");
}

static void *thread_main(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;

	for (int i = 0; i < 20; i++) {
		size_t n = (64 + (size_t)((seed + (unsigned)i) % 4) * 16) * MiB;
		unsigned char *p = malloc(n);

		if (!p)
			return (void *)1;
		memset(p, 0, n);
		fill(p, 4 * MiB, seed + (unsigned)i);
		if (!same(p, 4 * MiB, seed + (unsigned)i) || p[n - 1])
			return (void *)1;
		free(p);
		free(malloc(100)); /* small ones in between */
	}
	return NULL;
}

static void mode_threads(void)
{
	pthread_t t[4];
	void *ret;

	for (uintptr_t i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, thread_main, (void *)(i * 31));
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], &ret);
		CHECK(ret == NULL);
	}
	printf("threads=ok\n");
}

/* Waits until at most @max bytes of [p, p+n) are present. */
static int wait_present(const void *p, size_t n, size_t max, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		if (present(p, n) <= max)
			return 1;
		usleep(10000);
	}
	return 0;
}

/* Evict on a signal while a thread keeps writing, then check every byte. */
static volatile int writer_stop;
static unsigned char *writer_buf;

static void *writer_main(void *arg)
{
	uint64_t k = 0;

	(void)arg;
	while (!writer_stop) {
		size_t at = (k * 4096 * 13) % (8 * MiB);

		writer_buf[at + 1] = (unsigned char)(at / 4096);
		k++;
	}
	return NULL;
}

static void mode_evict(void)
{
	size_t n = 64 * MiB;
	unsigned char *p = malloc(n);
	pthread_t w;

	fill(p, n, 7);
	writer_buf = p;
	pthread_create(&w, NULL, writer_main, NULL);
	CHECK(raise(SIGUSR2) == 0);
	CHECK(wait_present(p + 8 * MiB, n - 8 * MiB, 0, 10000));
	printf("present_after_evict=%zu\n", present(p, n));
	writer_stop = 1;
	pthread_join(w, NULL);
	CHECK(same(p, n, 7));
	for (size_t at = 0; at < 8 * MiB; at += 4096)
		CHECK(p[at + 1] == 0 || p[at + 1] == (unsigned char)(at / 4096));
	printf("present_after_read=%zu\n", present(p, n));
	free(p);
	printf("evict=ok\n");
}

/* A pool limit below what is written: the rest goes to flash. */
static void mode_limit(void)
{
	size_t n = 192 * MiB, max = 0;
	unsigned char *p = malloc(n);

	for (size_t off = 0; off < n; off += 4 * MiB) {
		size_t got;

		fill(p + off, 4 * MiB, (unsigned)(off / MiB));
		usleep(20000);
		got = present(p, n);
		max = got > max ? got : max;
	}
	usleep(200000);
	printf("present_max=%zu present_end=%zu\n", max, present(p, n));
	for (size_t off = 0; off < n; off += 4 * MiB)
		CHECK(same(p + off, 4 * MiB, (unsigned)(off / MiB)));
	free(p);
	printf("limit=ok\n");
}

/* read() and fread() into memory never touched. */
static void mode_read(const char *path)
{
	size_t n = 80 * MiB;
	unsigned char *p = malloc(n), *q = malloc(n);
	int fd = open(path, O_RDONLY);
	FILE *f = fopen(path, "r");
	ssize_t got;

	CHECK(fd >= 0 && f);
	got = read(fd, p + 3 * MiB + 17, 2 * MiB);
	CHECK(got > 0);
	CHECK(fread(q + 70 * MiB, 1, 4096, f) > 0);
	CHECK(p[3 * MiB + 17] == q[70 * MiB]);
	close(fd);
	fclose(f);
	free(p);
	free(q);
	printf("read=ok\n");
}

static void mode_exec(void)
{
	const char *v = getenv("LD_PRELOAD");

	printf("ld_preload=%s\n", v ? v : "");
	fflush(stdout);
	execl("/bin/sh", "sh", "-c", "echo child_ld_preload=$LD_PRELOAD", (char *)NULL);
}

/* ns per call of a small memset, inside and outside the routed box. */
static void mode_bench(void)
{
	enum { N = 20000000 };
	char small[64];
	unsigned char *big = malloc(128 * MiB);
	char *near = malloc(4096);
	struct timespec a, b;
	void *(*volatile ms)(void *, int, size_t) = memset;

	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < N; i++)
		ms(small, i, sizeof(small));
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("memset64_ns=%.2f\n",
	       ((b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / N);
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < N; i++)
		vfree(vmalloc(32));
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("malloc_free_ns=%.2f\n",
	       ((b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / N);
	free(near);
	free(big);
}

int main(int argc, char **argv)
{
	const char *m = argc > 1 ? argv[1] : "";

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(m, "rss"))
		mode_rss();
	else if (!strcmp(m, "data"))
		mode_data();
	else if (!strcmp(m, "fork"))
		mode_fork();
	else if (!strcmp(m, "threads"))
		mode_threads();
	else if (!strcmp(m, "evict"))
		mode_evict();
	else if (!strcmp(m, "limit"))
		mode_limit();
	else if (!strcmp(m, "read") && argc > 2)
		mode_read(argv[2]);
	else if (!strcmp(m, "exec"))
		mode_exec();
	else if (!strcmp(m, "bench"))
		mode_bench();
	else if (!strcmp(m, "hold"))
		mode_hold();
	else {
		fprintf(
		    stderr,
		    "usage: probe rss|data|fork|threads|evict|limit|read FILE|exec|bench|hold\n");
		return 2;
	}
	return fails ? 1 : 0;
}
