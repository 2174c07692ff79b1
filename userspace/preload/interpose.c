/* SPDX-License-Identifier: MIT */
/*
 * The entry points libkvmm-preload.so exports. Each one first asks the
 * cheapest question that can send the call on to the real function: is
 * the shim on, is the size above every rule's floor, is the address inside
 * the box of routed ranges. Only what gets past that looks at rules or at
 * the range table.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shim.h"

static uint64_t shim_floor = UINT64_MAX; /* the smallest size any rule takes */

static void shim_floor_init(void)
{
	for (uint32_t i = 0; i < shim_cfg.nr_rules; i++) {
		const struct shim_rule *r = &shim_cfg.rules[i];
		uint64_t lo = r->nr_sizes ? r->sizes[0].lo : r->min_bytes;

		for (uint32_t j = 1; j < r->nr_sizes; j++)
			lo = r->sizes[j].lo < lo ? r->sizes[j].lo : lo;
		if (!r->skip && (r->calls & SHIM_CALL_ALL) && lo < shim_floor)
			shim_floor = lo ? lo : 1;
	}
}

__attribute__((constructor)) static void shim_ctor(void)
{
	shim_init();
	shim_floor_init();
}

/* A routed block for this call, or NULL for the real allocator. */
static void *shim_try(uint32_t call, size_t size, size_t align, const void *ret_addr)
{
	const char *lib = NULL;
	bool self = false;
	void *p = NULL;
	int rule;

	if (SHIM_LIKELY(size < shim_floor) || !shim_enabled || shim_depth)
		return NULL;
	shim_depth++;
	lib = shim_caller_lib(ret_addr, &self);
	if (!self) {
		rule = shim_rules_match(&shim_cfg, call, size, lib);
		if (rule >= 0)
			p = shim_route_alloc(rule, call, size, align);
	}
	shim_depth--;
	return p;
}

#define SHIM_CALLER __builtin_return_address(0)

SHIM_EXPORT void *malloc(size_t size)
{
	void *p = shim_try(SHIM_CALL_MALLOC, size, 16, SHIM_CALLER);

	if (p)
		return p;
	shim_ensure_real();
	if (SHIM_UNLIKELY(!shim_real.malloc))
		return shim_arena_alloc(size, 16);
	return shim_real.malloc(size);
}

SHIM_EXPORT void *calloc(size_t n, size_t size)
{
	size_t total;
	void *p;

	if (__builtin_mul_overflow(n, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	p = shim_try(SHIM_CALL_MALLOC, total, 16, SHIM_CALLER);
	if (p)
		return p; /* kvmm memory reads as zeros until written */
	shim_ensure_real();
	if (SHIM_UNLIKELY(!shim_real.calloc))
		return shim_arena_alloc(total, 16); /* never used before: zero */
	return shim_real.calloc(n, size);
}

/* The routed region whose first byte is @p, with shim_lock held, or NULL. */
static struct shim_region *shim_lock_region(const void *p)
{
	uint32_t id;
	struct shim_region *r;

	if (!shim_ranges_maybe((uintptr_t)p, 1) || !(id = shim_ranges_find((uintptr_t)p, 1)))
		return NULL;
	pthread_mutex_lock(&shim_lock);
	r = shim_region_by_id(id);
	if (r && r->base == p)
		return r;
	pthread_mutex_unlock(&shim_lock);
	return NULL;
}

SHIM_EXPORT void free(void *p)
{
	if (!p || shim_arena_owns(p))
		return;
	if (shim_ranges_maybe((uintptr_t)p, 1)) {
		shim_depth++;
		bool ours = shim_route_free(p);
		shim_depth--;
		if (ours)
			return;
	}
	shim_ensure_real();
	shim_real.free(p);
}

SHIM_EXPORT void *realloc(void *p, size_t size)
{
	struct shim_region *r;
	void *np;

	if (!p)
		return malloc(size);
	if (shim_arena_owns(p)) {
		size_t old = shim_arena_size(p);

		np = malloc(size);
		if (np)
			shim_copy(np, p, old < size ? old : size);
		return np;
	}
	shim_depth++;
	r = shim_lock_region(p);
	if (r) {
		bool handled;

		if (!size) {
			shim_region_destroy_locked(r);
			np = NULL;
		} else {
			np = shim_route_realloc(r, size, &handled);
		}
		shim_registry_write_locked();
		pthread_mutex_unlock(&shim_lock);
		shim_depth--;
		return np;
	}
	shim_depth--;
	shim_ensure_real();
	if (size >= shim_floor && shim_enabled && !shim_depth) {
		/* Growing past a rule's floor: the new block may be kvmm's. */
		np = shim_try(SHIM_CALL_MALLOC, size, 16, SHIM_CALLER);
		if (np) {
			size_t old = shim_real.malloc_usable_size(p);

			shim_copy(np, p, old < size ? old : size);
			atomic_fetch_add(&shim_stats.reallocs_copied, 1);
			shim_real.free(p);
			return np;
		}
	}
	return shim_real.realloc(p, size);
}

static bool shim_align_ok(size_t align)
{
	return align && !(align & (align - 1)) && !(align % sizeof(void *));
}

SHIM_EXPORT int posix_memalign(void **memptr, size_t align, size_t size)
{
	void *p;

	if (shim_align_ok(align) && (p = shim_try(SHIM_CALL_ALIGNED, size, align, SHIM_CALLER))) {
		*memptr = p;
		return 0;
	}
	shim_ensure_real();
	if (SHIM_UNLIKELY(!shim_real.posix_memalign)) {
		p = shim_arena_alloc(size, align);
		if (!p)
			return ENOMEM;
		*memptr = p;
		return 0;
	}
	return shim_real.posix_memalign(memptr, align, size);
}

SHIM_EXPORT void *aligned_alloc(size_t align, size_t size)
{
	void *p = NULL;

	if (align && !(align & (align - 1)))
		p = shim_try(SHIM_CALL_ALIGNED, size, align, SHIM_CALLER);
	if (p)
		return p;
	shim_ensure_real();
	if (SHIM_UNLIKELY(!shim_real.aligned_alloc))
		return shim_arena_alloc(size, align);
	return shim_real.aligned_alloc(align, size);
}

SHIM_EXPORT void *memalign(size_t align, size_t size)
{
	void *p = NULL;

	if (align && !(align & (align - 1)))
		p = shim_try(SHIM_CALL_ALIGNED, size, align, SHIM_CALLER);
	if (p)
		return p;
	shim_ensure_real();
	if (SHIM_UNLIKELY(!shim_real.memalign))
		return shim_arena_alloc(size, align);
	return shim_real.memalign(align, size);
}

SHIM_EXPORT void *valloc(size_t size)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	void *p = shim_try(SHIM_CALL_ALIGNED, size, page, SHIM_CALLER);

	if (p)
		return p;
	shim_ensure_real();
	return shim_real.valloc ? shim_real.valloc(size) : shim_arena_alloc(size, page);
}

SHIM_EXPORT void *pvalloc(size_t size)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t sz = (size + page - 1) / page * page;
	void *p = shim_try(SHIM_CALL_ALIGNED, sz, page, SHIM_CALLER);

	if (p)
		return p;
	shim_ensure_real();
	return shim_real.pvalloc ? shim_real.pvalloc(size) : shim_arena_alloc(sz, page);
}

SHIM_EXPORT size_t malloc_usable_size(void *p)
{
	struct shim_region *r;
	size_t n;

	if (!p)
		return 0;
	if (shim_arena_owns(p))
		return shim_arena_size(p);
	shim_depth++;
	r = shim_lock_region(p);
	if (r) {
		n = r->bytes;
		pthread_mutex_unlock(&shim_lock);
		shim_depth--;
		return n;
	}
	shim_depth--;
	shim_ensure_real();
	return shim_real.malloc_usable_size(p);
}

/* ---------------------------------------------------------------- mmap */

SHIM_EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	const int odd = MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_STACK | MAP_GROWSDOWN | MAP_HUGETLB |
			MAP_POPULATE;

	if (!addr && (flags & MAP_ANONYMOUS) && (flags & MAP_TYPE) == MAP_PRIVATE &&
	    !(flags & odd) && prot == (PROT_READ | PROT_WRITE)) {
		void *p = shim_try(SHIM_CALL_MMAP, len, (size_t)sysconf(_SC_PAGESIZE), SHIM_CALLER);

		if (p)
			return p;
	}
	shim_ensure_real();
	return shim_real.mmap(addr, len, prot, flags, fd, off);
}

SHIM_EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
    __attribute__((alias("mmap")));

SHIM_EXPORT int munmap(void *addr, size_t len)
{
	uint32_t id;

	if (shim_ranges_maybe((uintptr_t)addr, len) &&
	    (id = shim_ranges_find((uintptr_t)addr, len))) {
		struct shim_region *r;

		shim_depth++;
		pthread_mutex_lock(&shim_lock);
		r = shim_region_by_id(id);
		if (r && (char *)addr <= r->base &&
		    (char *)addr + len >= r->base + (r->user_bytes & ~(uint64_t)4095)) {
			shim_region_destroy_locked(r);
			shim_registry_write_locked();
			r = NULL;
		} else if (r && r->kr) {
			/* Part of it: whole chunks go back; the addresses stay
			 * reserved until the rest is unmapped. */
			pthread_mutex_unlock(&shim_lock);
			int ret;
			shim_madvise(addr, len, MADV_FREE, &ret);
			shim_depth--;
			return 0;
		}
		pthread_mutex_unlock(&shim_lock);
		shim_depth--;
		if (!r)
			return 0;
	}
	shim_ensure_real();
	return shim_real.munmap(addr, len);
}

SHIM_EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	void *new_addr = NULL;
	struct shim_region *r;
	va_list ap;

	va_start(ap, flags);
	if (flags & MREMAP_FIXED)
		new_addr = va_arg(ap, void *);
	va_end(ap);
	shim_depth++;
	r = shim_lock_region(old);
	if (r) {
		void *np = MAP_FAILED;

		if (new_len <= r->bytes) {
			bool handled;

			np = shim_route_realloc(r, new_len, &handled);
		} else if ((flags & MREMAP_MAYMOVE) && !(flags & MREMAP_FIXED)) {
			/* A new mapping (routed when a rule takes it) and a copy. */
			int rule = shim_rules_match(&shim_cfg, SHIM_CALL_MMAP, new_len, NULL);

			pthread_mutex_unlock(&shim_lock);
			if (rule >= 0)
				np = shim_route_alloc(rule, SHIM_CALL_MMAP, new_len, 4096);
			if (!np)
				np = shim_real.mmap(NULL, new_len, PROT_READ | PROT_WRITE,
						    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			pthread_mutex_lock(&shim_lock);
			if (np != MAP_FAILED && np) {
				shim_route_copy_out(
				    r, np, r->user_bytes < old_len ? r->user_bytes : old_len);
				shim_region_destroy_locked(r);
			} else {
				np = MAP_FAILED;
				errno = ENOMEM;
			}
		} else {
			errno = ENOMEM; /* it cannot grow where it is */
		}
		shim_registry_write_locked();
		pthread_mutex_unlock(&shim_lock);
		shim_depth--;
		return np;
	}
	shim_depth--;
	shim_ensure_real();
	if (flags & MREMAP_FIXED)
		return shim_real.mremap(old, old_len, new_len, flags, new_addr);
	return shim_real.mremap(old, old_len, new_len, flags);
}

SHIM_EXPORT int madvise(void *addr, size_t len, int advice)
{
	int ret;

	if (shim_ranges_maybe((uintptr_t)addr, len) && !shim_depth &&
	    shim_madvise(addr, len, advice, &ret))
		return ret;
	shim_ensure_real();
	return shim_real.madvise(addr, len, advice);
}

/* ------------------------------------------------------------- zeroing */

/* Zeroing smaller than the smallest chunk cannot hold a whole chunk. */
#define SHIM_ZERO_MIN 4096

static inline bool shim_zero_try(void *p, size_t n)
{
	return n >= SHIM_ZERO_MIN && shim_ranges_maybe((uintptr_t)p, n) && !shim_depth &&
	       shim_zero(p, n);
}

SHIM_EXPORT void *memset(void *p, int c, size_t n)
{
	if (!c && SHIM_UNLIKELY(shim_zero_try(p, n)))
		return p;
	if (SHIM_UNLIKELY(!shim_real.memset)) {
		if (!shim_depth)
			shim_ensure_real();
		if (!shim_real.memset) {
			shim_plain_memset(p, c, n); /* while dlsym runs */
			return p;
		}
	}
	return shim_real.memset(p, c, n);
}

SHIM_EXPORT void *__memset_chk(void *p, int c, size_t n, size_t dstlen)
{
	if (!c && n <= dstlen && SHIM_UNLIKELY(shim_zero_try(p, n)))
		return p;
	shim_ensure_real();
	return shim_real.memset_chk(p, c, n, dstlen);
}

SHIM_EXPORT void bzero(void *p, size_t n)
{
	memset(p, 0, n);
}

SHIM_EXPORT void explicit_bzero(void *p, size_t n)
{
	/* Discarded memory is gone, which is what explicit_bzero is for. */
	if (SHIM_UNLIKELY(shim_zero_try(p, n)))
		return;
	shim_ensure_real();
	shim_real.explicit_bzero(p, n);
}

SHIM_EXPORT void __explicit_bzero_chk(void *p, size_t n, size_t dstlen)
{
	if (n <= dstlen && SHIM_UNLIKELY(shim_zero_try(p, n)))
		return;
	shim_ensure_real();
	shim_real.explicit_bzero_chk(p, n, dstlen);
}

/* ------------------------------------------ system calls into routed memory */

/*
 * A system call that writes into routed memory: in user mode (a
 * userfaultfd for user faults only) the kernel cannot fault a chunk in for
 * it and would fail with EFAULT, so the chunks are made resident first.
 */
static inline void shim_io_target(uintptr_t buf, size_t n)
{
	if (SHIM_UNLIKELY(shim_ranges_maybe(buf, n)) && !shim_depth)
		shim_route_prefault(buf, n);
}

SHIM_EXPORT ssize_t read(int fd, void *buf, size_t n)
{
	shim_io_target((uintptr_t)buf, n);
	shim_ensure_real();
	return shim_real.read(fd, buf, n);
}

SHIM_EXPORT ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
	shim_io_target((uintptr_t)buf, n);
	shim_ensure_real();
	return shim_real.pread(fd, buf, n, off);
}

SHIM_EXPORT ssize_t pread64(int fd, void *buf, size_t n, off_t off) __attribute__((alias("pread")));

SHIM_EXPORT size_t fread(void *buf, size_t size, size_t n, FILE *f)
{
	size_t total;

	if (!__builtin_mul_overflow(size, n, &total))
		shim_io_target((uintptr_t)buf, total);
	shim_ensure_real();
	return shim_real.fread(buf, size, n, f);
}

SHIM_EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
	shim_io_target((uintptr_t)buf, n);
	shim_ensure_real();
	return shim_real.recv(fd, buf, n, flags);
}
