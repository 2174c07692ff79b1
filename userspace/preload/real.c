/* SPDX-License-Identifier: MIT */
/*
 * The next definition of every function the shim interposes, found with
 * dlsym(RTLD_NEXT) so the shim chains with interposers loaded before or
 * after it. dlsym itself may allocate (dlerror's buffer, the first lookup's
 * tables): while it runs, the shim's own malloc & co serve those calls from
 * a small static arena, whose blocks are never given back (free ignores
 * them, realloc copies them out).
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <unistd.h>

#include "shim.h"

struct shim_real shim_real;
atomic_int shim_real_state;
__thread int shim_depth __attribute__((tls_model("initial-exec")));

#define SHIM_ARENA_BYTES (256u << 10)

static _Alignas(64) unsigned char shim_arena[SHIM_ARENA_BYTES];
static atomic_size_t shim_arena_used;

/* Each arena block is preceded by its size, so realloc can copy it out. */
void *shim_arena_alloc(size_t size, size_t align)
{
	size_t off, start, want;

	if (align < 16)
		align = 16;
	if (align > 4096 || size > SHIM_ARENA_BYTES)
		return NULL;
	off = atomic_load(&shim_arena_used);
	do {
		start = (off + 16 + align - 1) / align * align;
		want = start + (size + 15) / 16 * 16;
		if (want > SHIM_ARENA_BYTES)
			return NULL;
	} while (!atomic_compare_exchange_weak(&shim_arena_used, &off, want));
	*(size_t *)(shim_arena + start - 16) = size;
	return shim_arena + start;
}

bool shim_arena_owns(const void *p)
{
	return (const unsigned char *)p >= shim_arena &&
	       (const unsigned char *)p < shim_arena + SHIM_ARENA_BYTES;
}

size_t shim_arena_size(const void *p)
{
	return *(const size_t *)((const unsigned char *)p - 16);
}

/* volatile: the compiler may not turn these loops into library calls. */
void shim_plain_memset(void *p, int c, size_t n)
{
	volatile unsigned char *d = p;

	while (n--)
		*d++ = (unsigned char)c;
}

void shim_plain_memcpy(void *d, const void *s, size_t n)
{
	volatile unsigned char *dd = d;
	const unsigned char *ss = s;

	while (n--)
		*dd++ = *ss++;
}

void shim_copy(void *dst, const void *src, size_t n)
{
	memcpy(dst, src, n); /* memcpy is not interposed: libc's own */
}

#define SHIM_NEXT(field, name)                                                                     \
	do {                                                                                       \
		void *f = dlsym(RTLD_NEXT, name);                                                  \
		memcpy(&shim_real.field, &f, sizeof(f));                                           \
	} while (0)

static pthread_mutex_t shim_real_lock = PTHREAD_MUTEX_INITIALIZER;

void shim_real_resolve(void)
{
	int expect = 0;

	if (atomic_load(&shim_real_state) == 2)
		return;
	/* The thread that resolves is the one that sees 0; others wait for
	 * it, unless they are that thread re-entering through dlsym. */
	if (!atomic_compare_exchange_strong(&shim_real_state, &expect, 1)) {
		if (shim_depth)
			return; /* our own recursion: the caller uses the arena */
		pthread_mutex_lock(&shim_real_lock);
		pthread_mutex_unlock(&shim_real_lock);
		while (atomic_load(&shim_real_state) != 2)
			sched_yield();
		return;
	}
	pthread_mutex_lock(&shim_real_lock);
	shim_depth++;
	SHIM_NEXT(malloc, "malloc");
	SHIM_NEXT(calloc, "calloc");
	SHIM_NEXT(realloc, "realloc");
	SHIM_NEXT(free, "free");
	SHIM_NEXT(posix_memalign, "posix_memalign");
	SHIM_NEXT(aligned_alloc, "aligned_alloc");
	SHIM_NEXT(memalign, "memalign");
	SHIM_NEXT(valloc, "valloc");
	SHIM_NEXT(pvalloc, "pvalloc");
	SHIM_NEXT(malloc_usable_size, "malloc_usable_size");
	SHIM_NEXT(mmap, "mmap");
	SHIM_NEXT(munmap, "munmap");
	SHIM_NEXT(mremap, "mremap");
	SHIM_NEXT(madvise, "madvise");
	SHIM_NEXT(memset, "memset");
	SHIM_NEXT(bzero, "bzero");
	SHIM_NEXT(explicit_bzero, "explicit_bzero");
	SHIM_NEXT(memset_chk, "__memset_chk");
	SHIM_NEXT(explicit_bzero_chk, "__explicit_bzero_chk");
	SHIM_NEXT(read, "read");
	SHIM_NEXT(pread, "pread");
	SHIM_NEXT(fread, "fread");
	SHIM_NEXT(recv, "recv");
	shim_depth--;
	atomic_store_explicit(&shim_real_state, 2, memory_order_release);
	pthread_mutex_unlock(&shim_real_lock);
}
