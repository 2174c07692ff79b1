/* SPDX-License-Identifier: MIT */
/*
 * GPU allocations on kvmm. A rule with calls=cuda takes cudaMalloc,
 * cudaMallocAsync, cuMemAlloc and cuMemAllocAsync calls by size, caller
 * library and tag scope (cuda_entry.c sees the calls); each one it takes
 * is served by libkvmm's CUDA VMM allocator (cuda_alloc.c: its own VA
 * range and physical handle, charged to the kvmm.ko GPU ledger in kernel
 * mode). Every tag has one allocator, so parking a tag is
 * kvmm_cuda_alloc_sleep() (after cuCtxSynchronize, contents copied through
 * pinned staging into a kvmm host region, evicted to flash for
 * --to flash, or dropped) and unparking it is kvmm_cuda_alloc_wake_all(),
 * which maps every allocation again at its address or, when memory runs
 * out, unmaps what it mapped and leaves the tag parked.
 *
 * Anything this file cannot do sends the call to the real function
 * (counted, said once on stderr); it never aborts.
 *
 * Locks: shim_lock (registry writes) before shim_gpu_lock (the tag table
 * and the block table), then libkvmm's allocator locks. No driver or
 * allocator call is made with shim_gpu_lock held: a park holds its
 * allocator's lock for the whole move, and frees and allocations of other
 * tags go on meanwhile. A tag being moved is marked busy.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/kvmm.h>

#include "shim.h"
#include "../lib/cuda_alloc.h"
#include "../lib/cuda_drv.h"

#ifdef KVMM_HAVE_CUDA_H

#define SHIM_GPU_BUCKETS 256

struct shim_gpu_tag {
	char name[SHIM_NAME_MAX];
	uint32_t pool;
	struct kvmm_cuda_alloc *alloc; /* NULL until its first allocation */
	bool parked, busy;
	uint32_t how; /* while parked: KVMM_CUDA_SLEEP_* */
	uint64_t generation;
	uint64_t blocks, bytes; /* live routed blocks */
};

struct shim_gpu_block {
	struct shim_gpu_block *next;
	uintptr_t va;
	uint64_t asked, bytes;
	int device;
	uint32_t tag, rule, kind;
};

static pthread_mutex_t shim_gpu_lock = PTHREAD_MUTEX_INITIALIZER;
static struct shim_gpu_tag shim_gpu_tags[SHIM_GPU_MAX_TAGS];
static uint32_t shim_gpu_nr_tags;
static struct shim_gpu_block *shim_gpu_table[SHIM_GPU_BUCKETS];
static bool shim_gpu_off; /* in a fork child */

static __thread uint32_t shim_gpu_scope[SHIM_GPU_SCOPES];
static __thread uint32_t shim_gpu_nr_scopes;

static const char *const shim_gpu_kind_names[] = {
    [SHIM_GPU_RUNTIME] = "cudaMalloc",
    [SHIM_GPU_RUNTIME_ASYNC] = "cudaMallocAsync",
    [SHIM_GPU_DRIVER] = "cuMemAlloc",
    [SHIM_GPU_DRIVER_ASYNC] = "cuMemAllocAsync",
};

static const char *const shim_gpu_how_names[] = {
    [KVMM_CUDA_SLEEP_DISCARD] = "discard",
    [KVMM_CUDA_SLEEP_HOST] = "host",
    [KVMM_CUDA_SLEEP_FLASH] = "flash",
};

static unsigned shim_gpu_bucket(uintptr_t va)
{
	return (unsigned)((va >> 21) ^ (va >> 33)) % SHIM_GPU_BUCKETS;
}

/* shim_gpu_lock held: the tag named @name, made when @make (else -1). */
static int shim_gpu_tag_find(const char *name, bool make, uint32_t pool)
{
	for (uint32_t i = 0; i < shim_gpu_nr_tags; i++) {
		if (!strcmp(shim_gpu_tags[i].name, name))
			return (int)i;
	}
	if (!make || shim_gpu_nr_tags == SHIM_GPU_MAX_TAGS || !name[0] ||
	    strlen(name) >= SHIM_NAME_MAX)
		return -1;
	memset(&shim_gpu_tags[shim_gpu_nr_tags], 0, sizeof(shim_gpu_tags[0]));
	strcpy(shim_gpu_tags[shim_gpu_nr_tags].name, name);
	shim_gpu_tags[shim_gpu_nr_tags].pool = pool;
	return (int)shim_gpu_nr_tags++;
}

static void shim_gpu_registry(void)
{
	pthread_mutex_lock(&shim_lock);
	shim_registry_write_locked();
	pthread_mutex_unlock(&shim_lock);
}

/* @bytes rounded up to @device's granularity, as the allocator rounds them. */
static uint64_t shim_gpu_round(uint64_t bytes, int device)
{
	static size_t gran[KVMM_MAX_GPUS];
	const struct kvmm_cuda_drv *d;
	CUmemAllocationProp prop;
	size_t g = device >= 0 && device < KVMM_MAX_GPUS ? gran[device] : 0;

	if (!g && device >= 0 && device < KVMM_MAX_GPUS && !kvmm_cuda_drv_get(&d)) {
		memset(&prop, 0, sizeof(prop));
		prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
		prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
		prop.location.id = device;
		if (d->cuMemGetAllocationGranularity(&g, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM))
			g = 0;
		gran[device] = g;
	}
	return g ? (bytes + g - 1) / g * g : bytes;
}

void *shim_gpu_alloc(uint32_t kind, size_t bytes, int device, const char *lib)
{
	struct kvmm_cuda_alloc_config ac = KVMM_CUDA_ALLOC_CONFIG_INIT;
	struct kvmm_cuda_alloc *a = NULL, *prev = NULL;
	struct kvmm_cuda_alloc_stats st;
	struct shim_gpu_block *b;
	const struct shim_rule *ru;
	struct shim_pool *pool;
	const char *tagname;
	bool scoped = shim_gpu_nr_scopes > 0;
	void *p;
	int rule, t, ret;

	if (!shim_enabled || shim_gpu_off || !bytes)
		return NULL;
	rule = shim_rules_match_scoped(&shim_cfg, SHIM_CALL_CUDA, bytes, lib, scoped);
	if (rule < 0 || shim_cfg.rules[rule].skip) {
		atomic_fetch_add(&shim_stats.gpu_passed, 1);
		return NULL;
	}
	ru = &shim_cfg.rules[rule];
	pool = shim_pool_get(ru->pool);
	if (!pool)
		return NULL; /* counted as SHIM_FB_NO_KVMM */
	b = shim_real.malloc(sizeof(*b));
	if (!b) {
		shim_fallback(SHIM_FB_GPU, "GPU allocation of %zu bytes: no memory for its record",
			      bytes);
		return NULL;
	}
	pthread_mutex_lock(&shim_gpu_lock);
	if (scoped)
		t = (int)shim_gpu_scope[shim_gpu_nr_scopes - 1];
	else
		t = shim_gpu_tag_find(ru->tag[0] ? ru->tag : "default", true, ru->pool);
	if (t >= 0 && shim_gpu_tags[t].parked) {
		tagname = shim_gpu_tags[t].name;
		pthread_mutex_unlock(&shim_gpu_lock);
		shim_fallback(SHIM_FB_GPU_PARKED,
			      "GPU allocation of %zu bytes for tag '%s', which is parked: it goes "
			      "to the normal allocator",
			      bytes, tagname);
		shim_real.free(b);
		return NULL;
	}
	if (t >= 0 && !shim_gpu_tags[t].alloc) {
		ac.tag = shim_gpu_tags[t].name;
		ret = kvmm_cuda_alloc_create(pool->ctx, &ac, &shim_gpu_tags[t].alloc);
		if (ret) {
			pthread_mutex_unlock(&shim_gpu_lock);
			shim_fallback(SHIM_FB_GPU,
				      "no CUDA VMM allocator (%s%s%s); GPU allocations "
				      "go to the normal allocator",
				      kvmm_strerror(ret), kvmm_cuda_why()[0] ? ": " : "",
				      kvmm_cuda_why());
			shim_real.free(b);
			return NULL;
		}
	}
	if (t >= 0)
		a = shim_gpu_tags[t].alloc;
	pthread_mutex_unlock(&shim_gpu_lock);
	if (t < 0) {
		shim_fallback(SHIM_FB_GPU,
			      "more than %d GPU tags; the allocation goes to the "
			      "normal allocator",
			      SHIM_GPU_MAX_TAGS);
		shim_real.free(b);
		return NULL;
	}
	kvmm_cuda_alloc_use(a, &prev);
	p = kvmm_torch_malloc((ssize_t)bytes, device, NULL);
	kvmm_cuda_alloc_use(prev, NULL);
	if (!p) {
		kvmm_cuda_alloc_stats(a, &st);
		if (st.last_error == -EAGAIN)
			shim_fallback(SHIM_FB_GPU_PARKED,
				      "GPU allocation of %zu bytes for a tag being parked: it goes "
				      "to the normal allocator",
				      bytes);
		else
			shim_fallback(
			    SHIM_FB_GPU,
			    "GPU allocation of %zu bytes on device %d: %s%s%s; it goes to "
			    "the normal allocator",
			    bytes, device, kvmm_strerror(st.last_error),
			    kvmm_cuda_why()[0] ? ": " : "", kvmm_cuda_why());
		shim_real.free(b);
		return NULL;
	}
	memset(b, 0, sizeof(*b));
	b->va = (uintptr_t)p;
	b->asked = bytes;
	b->device = device;
	b->tag = (uint32_t)t;
	b->rule = (uint32_t)rule;
	b->kind = kind;
	b->bytes = shim_gpu_round(bytes, device);
	pthread_mutex_lock(&shim_gpu_lock);
	b->next = shim_gpu_table[shim_gpu_bucket(b->va)];
	shim_gpu_table[shim_gpu_bucket(b->va)] = b;
	shim_gpu_tags[t].blocks++;
	shim_gpu_tags[t].bytes += b->bytes;
	pthread_mutex_unlock(&shim_gpu_lock);
	atomic_fetch_add(&shim_stats.gpu_routed, 1);
	atomic_fetch_add(&shim_stats.gpu_routed_bytes, bytes);
	atomic_fetch_add(&shim_stats.gpu_reserved_bytes, b->bytes);
	shim_gpu_registry();
	shim_control_start();
	return p;
}

/* cuCtxSynchronize on @device's primary context. */
static void shim_gpu_sync(int device)
{
	static CUcontext ctxs[KVMM_MAX_GPUS];
	static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;
	const struct kvmm_cuda_drv *d;
	CUcontext c = NULL, unused;
	CUdevice dev;

	if (device < 0 || device >= KVMM_MAX_GPUS || kvmm_cuda_drv_get(&d))
		return;
	pthread_mutex_lock(&ctx_lock);
	if (!ctxs[device] && !d->cuDeviceGet(&dev, device))
		d->cuDevicePrimaryCtxRetain(&ctxs[device], dev); /* kept for the process */
	c = ctxs[device];
	pthread_mutex_unlock(&ctx_lock);
	if (!c || d->cuCtxPushCurrent(c))
		return;
	d->cuCtxSynchronize();
	d->cuCtxPopCurrent(&unused);
}

bool shim_gpu_owns(const void *p)
{
	bool ours = false;

	pthread_mutex_lock(&shim_gpu_lock);
	for (struct shim_gpu_block *b = shim_gpu_table[shim_gpu_bucket((uintptr_t)p)]; b;
	     b = b->next)
		ours |= b->va == (uintptr_t)p;
	pthread_mutex_unlock(&shim_gpu_lock);
	return ours;
}

bool shim_gpu_free(void *p, void *stream, bool async)
{
	struct shim_gpu_block **pp, *b = NULL;
	bool parked = false;

	if (!p)
		return false;
	pthread_mutex_lock(&shim_gpu_lock);
	for (pp = &shim_gpu_table[shim_gpu_bucket((uintptr_t)p)]; *pp; pp = &(*pp)->next) {
		if ((*pp)->va == (uintptr_t)p) {
			b = *pp;
			*pp = b->next;
			shim_gpu_tags[b->tag].blocks--;
			shim_gpu_tags[b->tag].bytes -= b->bytes;
			parked = shim_gpu_tags[b->tag].parked;
			break;
		}
	}
	pthread_mutex_unlock(&shim_gpu_lock);
	if (!b)
		return false;
	/* cudaFree waits for the device as the runtime's does; cudaFreeAsync
	 * for its stream (kvmm_torch_free waits for @stream). A parked block
	 * has no GPU memory: the allocator drops its kept copy. */
	if (!async)
		shim_gpu_sync(b->device);
	kvmm_torch_free(p, (ssize_t)b->asked, b->device, async ? stream : NULL);
	atomic_fetch_add(&shim_stats.gpu_freed, 1);
	atomic_fetch_sub(&shim_stats.gpu_reserved_bytes, b->bytes);
	if (parked) {
		atomic_fetch_add(&shim_stats.gpu_freed_parked, 1);
		atomic_fetch_sub(&shim_stats.gpu_parked_bytes, b->bytes);
	}
	shim_real.free(b);
	shim_gpu_registry();
	return true;
}

/* Marks the tags a move is for busy (shim_gpu_lock held): their indices in
 * @idx; -ENOENT when @tag names none, -EBUSY when one is being moved. */
static int shim_gpu_claim(const char *tag, uint32_t *idx, uint32_t *n)
{
	*n = 0;
	for (uint32_t i = 0; i < shim_gpu_nr_tags; i++) {
		if (tag && tag[0] && strcmp(shim_gpu_tags[i].name, tag))
			continue;
		if (shim_gpu_tags[i].busy)
			return -EBUSY;
		idx[(*n)++] = i;
	}
	if (!*n)
		return -ENOENT;
	for (uint32_t i = 0; i < *n; i++)
		shim_gpu_tags[idx[i]].busy = true;
	return 0;
}

static void shim_gpu_release(const uint32_t *idx, uint32_t n)
{
	pthread_mutex_lock(&shim_gpu_lock);
	for (uint32_t i = 0; i < n; i++)
		shim_gpu_tags[idx[i]].busy = false;
	pthread_mutex_unlock(&shim_gpu_lock);
}

__attribute__((format(printf, 3, 4))) static void shim_gpu_msg(char *msg, size_t len,
							       const char *fmt, ...)
{
	va_list ap;

	if (!msg || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, len, fmt, ap);
	va_end(ap);
}

/*
 * Claims the tags a park or unpark of @tag moves (shim_depth raised on
 * success, for the caller to lower); on failure says why in @msg.
 */
static int shim_gpu_claim_for_move(const char *tag, uint32_t *idx, uint32_t *n, char *msg,
				   size_t msglen)
{
	int ret;

	shim_depth++;
	pthread_mutex_lock(&shim_gpu_lock);
	ret = shim_gpu_claim(tag, idx, n);
	pthread_mutex_unlock(&shim_gpu_lock);
	if (ret) {
		shim_gpu_msg(msg, msglen,
			     ret == -ENOENT ? "no GPU tag '%s'" : "tag '%s' is being moved",
			     tag && tag[0] ? tag : "*");
		shim_depth--;
	}
	return ret;
}

int shim_gpu_park_now(const char *tag, uint32_t how, char *msg, size_t msglen)
{
	uint32_t idx[SHIM_GPU_MAX_TAGS], n, parked = 0;
	uint64_t bytes = 0;
	int ret = 0, r;

	shim_gpu_msg(msg, msglen, "%s", "");
	if (how > KVMM_CUDA_SLEEP_FLASH)
		return -EINVAL;
	ret = shim_gpu_claim_for_move(tag, idx, &n, msg, msglen);
	if (ret)
		return ret;
	for (uint32_t i = 0; i < n && !ret; i++) {
		struct shim_gpu_tag *t = &shim_gpu_tags[idx[i]];

		if (t->parked)
			continue; /* already: nothing to move */
		if (t->alloc) {
			r = kvmm_cuda_alloc_sleep(t->alloc, how);
			if (r) {
				uint64_t undone = 0;
				int w = kvmm_cuda_alloc_wake_all(t->alloc, &undone);

				shim_gpu_msg(msg, msglen, "park of tag '%s' to %s failed: %s; %s",
					     t->name, shim_gpu_how_names[how], kvmm_strerror(r),
					     w ? "putting it back failed too, it stays parked"
					       : "it stays resident, as before");
				shim_say("%s", msg ? msg : "park failed");
				if (w) {
					pthread_mutex_lock(&shim_gpu_lock);
					t->parked = true;
					t->how = how;
					pthread_mutex_unlock(&shim_gpu_lock);
				}
				ret = r;
				break;
			}
		}
		pthread_mutex_lock(&shim_gpu_lock);
		t->parked = true;
		t->how = how;
		bytes += t->bytes;
		pthread_mutex_unlock(&shim_gpu_lock);
		parked++;
	}
	shim_gpu_release(idx, n);
	atomic_fetch_add(&shim_stats.gpu_parked_bytes, bytes);
	if (ret) {
		atomic_fetch_add(&shim_stats.gpu_park_failures, 1);
	} else {
		atomic_fetch_add(&shim_stats.gpu_parks, parked);
		shim_gpu_msg(msg, msglen, "parked %u tag(s), %llu bytes, to %s", parked,
			     (unsigned long long)bytes, shim_gpu_how_names[how]);
	}
	shim_gpu_registry();
	shim_depth--;
	return ret;
}

int shim_gpu_unpark_now(const char *tag, char *msg, size_t msglen)
{
	uint32_t idx[SHIM_GPU_MAX_TAGS], n, woken = 0;
	uint64_t bytes = 0;
	int ret;

	shim_gpu_msg(msg, msglen, "%s", "");
	ret = shim_gpu_claim_for_move(tag, idx, &n, msg, msglen);
	if (ret)
		return ret;
	for (uint32_t i = 0; i < n && !ret; i++) {
		struct shim_gpu_tag *t = &shim_gpu_tags[idx[i]];
		uint64_t undone = 0;

		if (!t->parked)
			continue;
		ret = t->alloc ? kvmm_cuda_alloc_wake_all(t->alloc, &undone) : 0;
		if (ret) {
			atomic_fetch_add(&shim_stats.gpu_unpark_rollbacks, undone);
			shim_gpu_msg(msg, msglen,
				     "unpark of tag '%s' failed: %s; the %llu allocation(s) it had "
				     "mapped were unmapped again, the tag stays parked (its data "
				     "kept in %s)",
				     t->name, kvmm_strerror(ret), (unsigned long long)undone,
				     shim_gpu_how_names[t->how]);
			shim_say("%s", msg ? msg : "unpark failed");
			break;
		}
		pthread_mutex_lock(&shim_gpu_lock);
		t->parked = false;
		t->generation++;
		bytes += t->bytes;
		pthread_mutex_unlock(&shim_gpu_lock);
		woken++;
	}
	shim_gpu_release(idx, n);
	atomic_fetch_sub(&shim_stats.gpu_parked_bytes, bytes);
	if (ret) {
		atomic_fetch_add(&shim_stats.gpu_unpark_failures, 1);
	} else {
		atomic_fetch_add(&shim_stats.gpu_unparks, woken);
		shim_gpu_msg(msg, msglen, "unparked %u tag(s), %llu bytes", woken,
			     (unsigned long long)bytes);
	}
	shim_gpu_registry();
	shim_depth--;
	return ret;
}

int shim_gpu_tag_push(const char *tag)
{
	int t;

	if (!tag || !tag[0] || strlen(tag) >= SHIM_NAME_MAX)
		return -EINVAL;
	if (shim_gpu_nr_scopes == SHIM_GPU_SCOPES)
		return -ENOSPC;
	pthread_mutex_lock(&shim_gpu_lock);
	/* A scope's allocations use the pool of the rule that takes them
	 * first; until then, pool 0. */
	t = shim_gpu_tag_find(tag, true, 0);
	pthread_mutex_unlock(&shim_gpu_lock);
	if (t < 0)
		return -ENOSPC;
	shim_gpu_scope[shim_gpu_nr_scopes++] = (uint32_t)t;
	return 0;
}

int shim_gpu_tag_pop(void)
{
	if (!shim_gpu_nr_scopes)
		return -ENOENT;
	shim_gpu_nr_scopes--;
	return 0;
}

long long shim_gpu_generation(const char *tag)
{
	long long g = -ENOENT;
	int t;

	pthread_mutex_lock(&shim_gpu_lock);
	t = tag ? shim_gpu_tag_find(tag, false, 0) : -1;
	if (t >= 0)
		g = (long long)shim_gpu_tags[t].generation;
	pthread_mutex_unlock(&shim_gpu_lock);
	return g;
}

int shim_gpu_state(const char *tag)
{
	int s = -ENOENT, t;

	pthread_mutex_lock(&shim_gpu_lock);
	t = tag ? shim_gpu_tag_find(tag, false, 0) : -1;
	if (t >= 0)
		s = shim_gpu_tags[t].parked ? 1 : 0;
	pthread_mutex_unlock(&shim_gpu_lock);
	return s;
}

static void shim_gpu_out(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void shim_gpu_out(int fd, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0 && write(fd, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1) < 0)
		return;
}

#define SHIM_GPU_STAT(name) (unsigned long long)atomic_load(&shim_stats.name)

void shim_gpu_stats_print(int fd)
{
	shim_gpu_out(fd, "  gpu_routed_allocations: %llu\n", SHIM_GPU_STAT(gpu_routed));
	shim_gpu_out(fd, "  gpu_routed_bytes: %llu\n", SHIM_GPU_STAT(gpu_routed_bytes));
	shim_gpu_out(fd, "  gpu_freed: %llu\n", SHIM_GPU_STAT(gpu_freed));
	shim_gpu_out(fd, "  gpu_freed_parked: %llu\n", SHIM_GPU_STAT(gpu_freed_parked));
	shim_gpu_out(fd, "  gpu_reserved_bytes: %llu\n", SHIM_GPU_STAT(gpu_reserved_bytes));
	shim_gpu_out(fd, "  gpu_passed: %llu\n", SHIM_GPU_STAT(gpu_passed));
	shim_gpu_out(fd, "  gpu_parks: %llu\n", SHIM_GPU_STAT(gpu_parks));
	shim_gpu_out(fd, "  gpu_unparks: %llu\n", SHIM_GPU_STAT(gpu_unparks));
	shim_gpu_out(fd, "  gpu_park_failures: %llu\n", SHIM_GPU_STAT(gpu_park_failures));
	shim_gpu_out(fd, "  gpu_unpark_failures: %llu\n", SHIM_GPU_STAT(gpu_unpark_failures));
	shim_gpu_out(fd, "  gpu_unpark_rollbacks: %llu\n", SHIM_GPU_STAT(gpu_unpark_rollbacks));
	shim_gpu_out(fd, "  gpu_parked_bytes: %llu\n", SHIM_GPU_STAT(gpu_parked_bytes));
}

void shim_gpu_registry_write(int fd)
{
	pthread_mutex_lock(&shim_gpu_lock);
	for (uint32_t i = 0; i < shim_gpu_nr_tags; i++) {
		const struct shim_gpu_tag *t = &shim_gpu_tags[i];

		shim_gpu_out(
		    fd, "gpu_tag name=%s state=%s%s%s blocks=%llu bytes=%llu generation=%llu\n",
		    t->name, t->parked ? "parked" : "resident", t->parked ? "-" : "",
		    t->parked ? shim_gpu_how_names[t->how] : "", (unsigned long long)t->blocks,
		    (unsigned long long)t->bytes, (unsigned long long)t->generation);
	}
	for (unsigned k = 0; k < SHIM_GPU_BUCKETS; k++) {
		for (const struct shim_gpu_block *b = shim_gpu_table[k]; b; b = b->next) {
			shim_gpu_out(fd,
				     "gpu_block base=%#lx bytes=%llu asked_bytes=%llu device=%d "
				     "tag=%s rule=%s call=%s\n",
				     (unsigned long)b->va, (unsigned long long)b->bytes,
				     (unsigned long long)b->asked, b->device,
				     shim_gpu_tags[b->tag].name, shim_cfg.rules[b->rule].name,
				     shim_gpu_kind_names[b->kind]);
		}
	}
	pthread_mutex_unlock(&shim_gpu_lock);
}

void shim_gpu_fork_child(void)
{
	/* The parent's records name GPU memory the child cannot use; they
	 * are dropped (never freed through the driver), and the child's GPU
	 * allocations go to the real functions. */
	pthread_mutex_init(&shim_gpu_lock, NULL);
	memset(shim_gpu_table, 0, sizeof(shim_gpu_table));
	shim_gpu_nr_tags = 0;
	shim_gpu_off = true;
}
#else
/* Built without cuda.h: no GPU allocation is taken. */
void *shim_gpu_alloc(uint32_t kind, size_t bytes, int device, const char *lib)
{
	(void)kind, (void)bytes, (void)device, (void)lib;
	return NULL;
}

bool shim_gpu_free(void *p, void *stream, bool async)
{
	(void)p, (void)stream, (void)async;
	return false;
}

bool shim_gpu_owns(const void *p)
{
	(void)p;
	return false;
}

int shim_gpu_park_now(const char *tag, uint32_t how, char *msg, size_t msglen)
{
	(void)tag, (void)how;
	if (msg && msglen)
		snprintf(msg, msglen, "libkvmm-preload was built without cuda.h");
	return -ENODEV;
}

int shim_gpu_unpark_now(const char *tag, char *msg, size_t msglen)
{
	return shim_gpu_park_now(tag, 0, msg, msglen);
}

int shim_gpu_tag_push(const char *tag)
{
	(void)tag;
	return -ENODEV;
}

int shim_gpu_tag_pop(void)
{
	return -ENOENT;
}

long long shim_gpu_generation(const char *tag)
{
	(void)tag;
	return -ENOENT;
}

int shim_gpu_state(const char *tag)
{
	(void)tag;
	return -ENOENT;
}

void shim_gpu_stats_print(int fd)
{
	(void)fd;
}

void shim_gpu_registry_write(int fd)
{
	(void)fd;
}

void shim_gpu_fork_child(void)
{
}
#endif
