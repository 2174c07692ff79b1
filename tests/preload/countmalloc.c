/* SPDX-License-Identifier: MIT */
/*
 * Another interposer, for the chaining tests: counts malloc, free and
 * posix_memalign and passes them on with dlsym(RTLD_NEXT), as memory
 * profilers do. Prints "countmalloc: N calls" at exit.
 */
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_ulong calls;
static _Thread_local int inside;
static char early[65536];
static atomic_size_t early_used;

static void *next(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}

void *malloc(size_t n)
{
	static void *(*f)(size_t);

	atomic_fetch_add(&calls, 1);
	if (!f) {
		if (inside) {
			size_t at = atomic_fetch_add(&early_used, (n + 15) / 16 * 16);
			return at + n <= sizeof(early) ? early + at : NULL;
		}
		inside = 1;
		f = (void *(*)(size_t))next("malloc");
		inside = 0;
	}
	return f(n);
}

void free(void *p)
{
	static void (*f)(void *);

	if ((char *)p >= early && (char *)p < early + sizeof(early))
		return;
	atomic_fetch_add(&calls, 1);
	if (!f)
		f = (void (*)(void *))next("free");
	f(p);
}

int posix_memalign(void **pp, size_t a, size_t n)
{
	static int (*f)(void **, size_t, size_t);

	atomic_fetch_add(&calls, 1);
	if (!f)
		f = (int (*)(void **, size_t, size_t))next("posix_memalign");
	return f(pp, a, n);
}

__attribute__((destructor)) static void report(void)
{
	char buf[64];
	int n = snprintf(buf, sizeof(buf), "countmalloc: %lu calls\n", atomic_load(&calls));

	if (write(2, buf, (size_t)n) < 0)
		return;
}
