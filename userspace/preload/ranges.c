/* SPDX-License-Identifier: MIT */
/*
 * The table of routed ranges, sorted by address, in static memory (it is
 * never freed, so a reader can never touch freed memory). Every call of
 * memset, free, madvise, ... asks it whether an address is kvmm's:
 *
 *   1. the box [lo, hi) around every range: two relaxed loads answer
 *      "not ours" for almost every call (shim_ranges_maybe, inlined);
 *   2. inside the box, a binary search under a sequence counter: an odd
 *      count or a count that changed during the search means a writer was
 *      at work, and the search runs again. No lock, no atomic write.
 *
 * Writers (insert, remove) hold shim_lock. A range is in the table before
 * the allocation that made it returns, and leaves it only when the program
 * frees it, so a thread that got a pointer from another through any
 * synchronisation finds it: lookups of live routed pointers are exact.
 */
#include <errno.h>
#include <string.h>

#include "shim.h"

struct shim_range {
	_Atomic uintptr_t start, end;
	_Atomic uint32_t id;
};

static struct shim_range shim_tab[SHIM_RANGES_MAX];
static atomic_size_t shim_nr;
static atomic_uint shim_seq;
_Atomic uintptr_t shim_ranges_lo = UINTPTR_MAX, shim_ranges_hi;

#define LD(x)	 atomic_load_explicit(&(x), memory_order_relaxed)
#define ST(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)

static void shim_write_begin(void)
{
	atomic_fetch_add_explicit(&shim_seq, 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
}

static void shim_write_end(void)
{
	atomic_fetch_add_explicit(&shim_seq, 1, memory_order_release);
}

static void shim_box_update(void)
{
	size_t n = LD(shim_nr);

	if (!n) {
		ST(shim_ranges_lo, UINTPTR_MAX);
		ST(shim_ranges_hi, 0);
		return;
	}
	ST(shim_ranges_lo, LD(shim_tab[0].start));
	ST(shim_ranges_hi, LD(shim_tab[n - 1].end));
}

/* The index of the first range whose end is above @addr (n if none). */
static size_t shim_lower(uintptr_t addr, size_t n)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (LD(shim_tab[mid].end) <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int shim_ranges_insert(uintptr_t start, uintptr_t end, uint32_t id)
{
	size_t n = LD(shim_nr), i;

	if (n == SHIM_RANGES_MAX)
		return -ENOSPC;
	i = shim_lower(start, n);
	shim_write_begin();
	for (size_t j = n; j > i; j--) {
		ST(shim_tab[j].start, LD(shim_tab[j - 1].start));
		ST(shim_tab[j].end, LD(shim_tab[j - 1].end));
		ST(shim_tab[j].id, LD(shim_tab[j - 1].id));
	}
	ST(shim_tab[i].start, start);
	ST(shim_tab[i].end, end);
	ST(shim_tab[i].id, id);
	ST(shim_nr, n + 1);
	shim_box_update();
	shim_write_end();
	return 0;
}

void shim_ranges_remove(uintptr_t start)
{
	size_t n = LD(shim_nr), i = shim_lower(start, n);

	if (i == n || LD(shim_tab[i].start) != start)
		return;
	shim_write_begin();
	for (; i + 1 < n; i++) {
		ST(shim_tab[i].start, LD(shim_tab[i + 1].start));
		ST(shim_tab[i].end, LD(shim_tab[i + 1].end));
		ST(shim_tab[i].id, LD(shim_tab[i + 1].id));
	}
	ST(shim_nr, n - 1);
	shim_box_update();
	shim_write_end();
}

void shim_ranges_clear(void)
{
	shim_write_begin();
	ST(shim_nr, 0);
	shim_box_update();
	shim_write_end();
}

size_t shim_ranges_count(void)
{
	return LD(shim_nr);
}

uint32_t shim_ranges_find(uintptr_t addr, size_t len)
{
	uintptr_t last = len ? addr + len : addr + 1;

	for (;;) {
		unsigned s1 = atomic_load_explicit(&shim_seq, memory_order_acquire);
		uint32_t id = 0;
		size_t n, i;

		if (s1 & 1)
			continue; /* a writer is at work (for a microsecond) */
		n = LD(shim_nr);
		if (n > SHIM_RANGES_MAX)
			n = SHIM_RANGES_MAX;
		i = shim_lower(addr, n);
		if (i < n && LD(shim_tab[i].start) < last)
			id = LD(shim_tab[i].id);
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&shim_seq, memory_order_relaxed) == s1)
			return id;
	}
}
