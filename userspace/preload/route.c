/* SPDX-License-Identifier: MIT */
/*
 * Pools and routed regions. A pool is one libkvmm context (kernel mode
 * when kvmm.ko is there, user mode otherwise; KVMM_MODE chooses), made
 * when its first allocation comes, with the pool's flash directory and
 * chunk size. Each routed allocation is one region of it, registered in
 * the range table before the pointer is handed out. Anything kvmm cannot
 * do sends the allocation back to the real allocator (stats.c counts why).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shim.h"

#define SHIM_MPOL_PREFERRED 1

pthread_mutex_t shim_lock = PTHREAD_MUTEX_INITIALIZER;
struct shim_config shim_cfg;
struct shim_pool shim_pools[SHIM_MAX_POOLS];
struct shim_region *shim_regions;
bool shim_enabled;
static uint32_t shim_next_id;
static struct shim_region *shim_free_list; /* region records to reuse */

static uint64_t shim_round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

/* Region records come from the real allocator, with depth raised. */
static struct shim_region *shim_region_new(void)
{
	struct shim_region *r = shim_free_list;

	if (r) {
		shim_free_list = r->next;
	} else {
		r = shim_real.malloc(sizeof(*r));
		if (!r)
			return NULL;
	}
	shim_plain_memset(r, 0, sizeof(*r));
	return r;
}

static int shim_pool_open(struct shim_pool *p)
{
	struct kvmm_config kc = KVMM_CONFIG_INIT;
	struct stat st;
	int ret;

	p->flash_ok = true;
	if (p->cfg.flash_dir[0]) {
		if (stat(p->cfg.flash_dir, &st) || !S_ISDIR(st.st_mode)) {
			shim_say("pool '%s': flash directory %s: %s; its memory is demand-paged "
				 "but cannot move to flash (no limit, no evict)",
				 p->cfg.name, p->cfg.flash_dir,
				 errno ? strerror(errno) : "not a directory");
			p->flash_ok = false;
		} else {
			kc.flash_dir = p->cfg.flash_dir;
		}
	}
	kc.flash_bytes = p->cfg.flash_bytes;
	kc.chunk_bytes = p->cfg.chunk_bytes ? p->cfg.chunk_bytes : (2u << 20);
	ret = kvmm_open(&p->ctx, &kc);
	if (ret) {
		p->failed = true;
		p->ctx = NULL;
		shim_fallback(
		    SHIM_FB_NO_KVMM,
		    "pool '%s': kvmm_open: %s; its allocations go to the normal allocator",
		    p->cfg.name, kvmm_strerror(ret));
		return ret;
	}
	p->mode = kvmm_mode(p->ctx);
	return 0;
}

struct shim_pool *shim_pool_get(uint32_t idx)
{
	struct shim_pool *p = idx < SHIM_MAX_POOLS ? &shim_pools[idx] : NULL;

	if (!p)
		return NULL;
	pthread_mutex_lock(&shim_lock);
	if (!p->ctx && !p->failed)
		shim_pool_open(p);
	else if (p->failed)
		atomic_fetch_add(&shim_stats.fallbacks[SHIM_FB_NO_KVMM], 1);
	pthread_mutex_unlock(&shim_lock);
	return p->ctx ? p : NULL;
}

/* User mode has no NUMA field in the region: the range's policy prefers the node. */
static void shim_region_node(void *base, uint64_t bytes, int32_t node)
{
	unsigned long mask[16] = {0};

	if (node < 0)
		return;
	mask[node / (8 * sizeof(long))] |= 1UL << (node % (8 * sizeof(long)));
	syscall(SYS_mbind, base, bytes, SHIM_MPOL_PREFERRED, mask, 8 * sizeof(mask) + 1, 0);
}

/* shim_lock held. */
static struct shim_region *shim_region_make(int rule, uint32_t call, size_t size, size_t align)
{
	const struct shim_rule *ru = &shim_cfg.rules[rule];
	struct shim_pool *p = &shim_pools[ru->pool];
	struct kvmm_region_config rc = KVMM_REGION_CONFIG_INIT;
	struct shim_region *r;
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	char *res = NULL;
	uint64_t res_bytes = 0;
	int ret;

	if (!p->ctx && !p->failed && shim_pool_open(p))
		return NULL;
	if (p->failed) {
		atomic_fetch_add(&shim_stats.fallbacks[SHIM_FB_NO_KVMM], 1);
		return NULL;
	}
	if (shim_ranges_count() == SHIM_RANGES_MAX) {
		shim_fallback(SHIM_FB_TABLE_FULL,
			      "%d routed regions live; more go to the "
			      "normal allocator",
			      SHIM_RANGES_MAX);
		return NULL;
	}
	rc.chunk_bytes = ru->chunk_bytes ? ru->chunk_bytes
					 : (p->cfg.chunk_bytes ? p->cfg.chunk_bytes : (2u << 20));
	rc.bytes = shim_round_up(size, rc.chunk_bytes);
	rc.numa_node = ru->numa_node;
	rc.priority = ru->priority;
	if (align > page) {
		/* An aligned spot in a reservation; what is left over goes back. */
		res_bytes = rc.bytes + align;
		res = shim_real.mmap(NULL, res_bytes, PROT_NONE,
				     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (res == MAP_FAILED) {
			shim_fallback(SHIM_FB_REGION, "no address space for an aligned region");
			return NULL;
		}
		rc.addr = (void *)shim_round_up((uintptr_t)res, align);
	}
	r = shim_region_new();
	if (!r)
		goto fail;
	ret = kvmm_region_create(p->ctx, &rc, &r->kr);
	if (ret) {
		shim_fallback(SHIM_FB_REGION, "kvmm_region_create(%llu bytes): %s",
			      (unsigned long long)rc.bytes, kvmm_strerror(ret));
		goto fail;
	}
	r->base = kvmm_region_base(r->kr);
	if (res) {
		char *end = (char *)rc.addr + rc.bytes;

		if ((char *)rc.addr > res)
			shim_real.munmap(res, (size_t)((char *)rc.addr - res));
		if (end < res + res_bytes)
			shim_real.munmap(end, (size_t)(res + res_bytes - end));
		r->fixed = true;
	}
	if (p->mode == KVMM_MODE_USER)
		shim_region_node(r->base, rc.bytes, ru->numa_node);
	r->rule = (uint32_t)rule;
	r->pool = p;
	r->user_bytes = size;
	r->bytes = rc.bytes;
	r->chunk_bytes = rc.chunk_bytes;
	r->call = call;
	r->numa_node = ru->numa_node;
	r->priority = ru->priority;
	do
		r->id = ++shim_next_id;
	while (!r->id);
	if (shim_ranges_insert((uintptr_t)r->base, (uintptr_t)r->base + r->bytes, r->id)) {
		kvmm_region_destroy(r->kr);
		if (r->fixed)
			shim_real.munmap(r->base, r->bytes);
		r->next = shim_free_list;
		shim_free_list = r;
		shim_fallback(SHIM_FB_TABLE_FULL, "the range table is full");
		return NULL;
	}
	r->next = shim_regions;
	shim_regions = r;
	atomic_fetch_add(&shim_stats.routed, 1);
	atomic_fetch_add(&shim_stats.routed_bytes, size);
	atomic_fetch_add(&shim_stats.reserved_bytes, r->bytes);
	return r;
fail:
	if (r) {
		r->next = shim_free_list;
		shim_free_list = r;
	}
	if (res)
		shim_real.munmap(res, res_bytes);
	return NULL;
}

void *shim_route_alloc(int rule, uint32_t call, size_t bytes, size_t align)
{
	struct shim_region *r;

	if (!bytes || shim_cfg.rules[rule].skip)
		return NULL;
	pthread_mutex_lock(&shim_lock);
	r = shim_region_make(rule, call, bytes, align);
	if (r)
		shim_registry_write_locked();
	pthread_mutex_unlock(&shim_lock);
	if (r)
		shim_evict_start();
	return r ? r->base : NULL;
}

struct shim_region *shim_region_by_id(uint32_t id)
{
	for (struct shim_region *r = shim_regions; r; r = r->next) {
		if (r->id == id)
			return r;
	}
	return NULL;
}

struct shim_region *shim_region_by_base(const void *p)
{
	for (struct shim_region *r = shim_regions; r; r = r->next) {
		if (r->base == p)
			return r;
	}
	return NULL;
}

void shim_region_destroy_locked(struct shim_region *r)
{
	struct shim_region **pp;

	for (pp = &shim_regions; *pp; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	}
	shim_ranges_remove((uintptr_t)r->base);
	if (r->kr)
		kvmm_region_destroy(r->kr);
	if (r->orphan || r->fixed)
		shim_real.munmap(r->base, r->bytes);
	atomic_fetch_add(&shim_stats.freed, 1);
	atomic_fetch_sub(&shim_stats.reserved_bytes, r->bytes);
	r->next = shim_free_list;
	shim_free_list = r;
}

bool shim_route_free(void *p)
{
	uint32_t id = shim_ranges_find((uintptr_t)p, 1);
	struct shim_region *r;

	if (!id)
		return false;
	pthread_mutex_lock(&shim_lock);
	r = shim_region_by_id(id);
	if (r && r->base == p) {
		shim_region_destroy_locked(r);
		shim_registry_write_locked();
	} else if (r) {
		shim_say("free(%p): not the start of the routed block at %p; ignored", p,
			 (void *)r->base);
	}
	pthread_mutex_unlock(&shim_lock);
	return r != NULL;
}

uint64_t shim_region_resident(struct shim_region *r)
{
	struct kvmm_region_stats st;

	if (!r->kr || kvmm_region_stats(r->kr, &st))
		return 0;
	return st.resident_bytes;
}

/*
 * Copies the first @n bytes of @r to @dst chunk by chunk: a chunk still
 * empty reads as zeros, so it is written as zeros (or skipped when @dst is
 * known to be zero) instead of being faulted in.
 */
static void shim_copy_chunks(struct shim_region *r, void *dst, uint64_t n, bool dst_zero)
{
	uint8_t st;

	for (uint64_t off = 0; off < n; off += r->chunk_bytes) {
		uint64_t len = n - off < r->chunk_bytes ? n - off : r->chunk_bytes;

		st = KVMM_STATE_RESIDENT;
		if (r->kr)
			kvmm_region_query(r->kr, off / r->chunk_bytes, 1, &st);
		if ((st & KVMM_STATE_MASK) == KVMM_STATE_EMPTY) {
			if (!dst_zero)
				shim_real.memset((char *)dst + off, 0, len);
		} else {
			shim_copy((char *)dst + off, r->base + off, len);
		}
	}
}

void shim_route_copy_out(struct shim_region *r, void *dst, uint64_t n)
{
	shim_copy_chunks(r, dst, n, false);
}

/*
 * realloc of routed memory: in place when it fits the region (whole chunks
 * past the new end are given back), else a new block (routed if a rule
 * takes the new size, else from the real allocator) and a chunk-wise copy.
 */
void *shim_route_realloc(struct shim_region *r, size_t bytes, bool *handled)
{
	uint64_t keep;
	void *np = NULL;
	struct shim_region *nr = NULL;
	int rule;

	*handled = true;
	if (bytes <= r->bytes) {
		keep = shim_round_up(bytes ? bytes : 1, r->chunk_bytes);
		if (keep < r->bytes && r->kr)
			kvmm_region_discard(r->kr, keep, r->bytes - keep);
		r->user_bytes = bytes;
		return r->base;
	}
	rule = shim_rules_match(&shim_cfg, r->call, bytes, NULL);
	if (rule >= 0 && !shim_cfg.rules[rule].skip)
		nr = shim_region_make(rule, r->call, bytes, 64);
	if (nr) {
		np = nr->base;
		shim_copy_chunks(r, np, r->user_bytes, true);
	} else {
		np = shim_real.malloc(bytes);
		if (!np)
			return NULL; /* the old block stays, as realloc promises */
		shim_copy_chunks(r, np, r->user_bytes, false);
	}
	atomic_fetch_add(&shim_stats.reallocs_copied, 1);
	shim_region_destroy_locked(r);
	return np;
}

void shim_route_prefault(uintptr_t p, size_t n)
{
	uint32_t id = shim_ranges_find(p, n);
	struct shim_region *r;

	if (!id)
		return;
	shim_depth++;
	pthread_mutex_lock(&shim_lock);
	r = shim_region_by_id(id);
	if (r && r->kr) {
		uintptr_t a = p < (uintptr_t)r->base ? (uintptr_t)r->base : p;
		uintptr_t e = p + n;
		uint64_t first, last;

		if (e > (uintptr_t)r->base + r->bytes)
			e = (uintptr_t)r->base + r->bytes;
		first = (a - (uintptr_t)r->base) / r->chunk_bytes * r->chunk_bytes;
		last = shim_round_up(e - (uintptr_t)r->base, r->chunk_bytes);
		if (last > first && !kvmm_region_ensure(r->kr, first, last - first))
			atomic_fetch_add(&shim_stats.prefaults, 1);
	}
	pthread_mutex_unlock(&shim_lock);
	shim_depth--;
}

static void shim_say_rules(const char *text)
{
	char err[512];
	int bad = shim_rules_parse(text, &shim_cfg, err, sizeof(err));

	if (bad) {
		shim_fallback(SHIM_FB_BAD_RULE, "KVMM_PRELOAD_RULES: %s%s; %s left out", err,
			      bad > 1 ? " (and more)" : "",
			      bad > 1 ? "those rules are" : "that rule is");
	}
}

void shim_init(void)
{
	const char *off = getenv("KVMM_PRELOAD");

	shim_depth++;
	shim_ensure_real();
	shim_children_env();
	if (off && !strcmp(off, "0")) {
		shim_depth--;
		return;
	}
	shim_say_rules(getenv("KVMM_PRELOAD_RULES"));
	for (uint32_t i = 0; i < shim_cfg.nr_pools; i++)
		shim_pools[i].cfg = shim_cfg.pools[i];
	shim_fork_install();
	shim_stats_atexit();
	shim_enabled = shim_cfg.nr_rules > 0;
	if (shim_enabled && getenv("KVMM_PRELOAD_SIGNAL"))
		shim_evict_start(); /* the evict signal is caught from the start */
	shim_depth--;
}
