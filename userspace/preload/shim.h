/* SPDX-License-Identifier: MIT */
/*
 * libkvmm-preload internals: the LD_PRELOAD shim that routes large host
 * allocations of an unmodified program to kvmm regions (docs/preload.md,
 * kvmm-preload(7)).
 *
 * Files, one responsibility each:
 *   real.c      the next definition of every interposed function (RTLD_NEXT)
 *               and the static arena that serves allocations made while
 *               those are being looked up
 *   interpose.c the exported entry points: decide "ours or not", then route
 *   rules.c     KVMM_PRELOAD_RULES parsing (pure: no allocation of ours)
 *   caller.c    the calling library of an allocation (dladdr, cached)
 *   ranges.c    the sorted table of routed ranges: lock-free lookups
 *   route.c     pools (one libkvmm context each), region create/destroy,
 *               realloc/mremap copies
 *   zero.c      memset/bzero elision and madvise on routed memory
 *   evict.c     the pool thread: pool limits, evict on request, the write
 *               window that makes user-mode eviction safe under writers
 *   stats.c     counters, the exit summary, the per-process registry file
 *   fork.c      fork and exec: what a child keeps, LD_PRELOAD for children
 *   cuda_entry.c the GPU entry points (cudaMalloc & co, cuMemAlloc & co,
 *               cuGetProcAddress, dlsym) and the park/unpark C API
 *   cuda.c      GPU allocations on libkvmm's CUDA VMM allocators, one per
 *               tag; tag scopes; park and unpark
 *   control.c   the mover thread and the control socket (kvmmctl park)
 *
 * Devices: the rule table, the range table and the region registry know
 * nothing of where memory lives. Host regions are libkvmm regions
 * (route.c). GPU allocations (rule key calls=cuda) are kept in cuda.c's own
 * table, not the range table: their addresses are not host memory that
 * memset or free could meet. Stats and the registry file show both.
 *
 * Locks (outer first): shim_lock (pools, the region list, the range table's
 * writers), then shim_gpu_lock (cuda.c), then the mover's mv_lock
 * (control.c, taken alone), then libkvmm's own. Readers of the range table take no lock.
 * Every entry point that can call into libkvmm or libc allocation raises
 * shim_depth first, so nothing the shim calls is routed again.
 */
#ifndef KVMM_PRELOAD_SHIM_H
#define KVMM_PRELOAD_SHIM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <kvmm/kvmm.h>

#define SHIM_EXPORT	 __attribute__((visibility("default")))
#define SHIM_LIKELY(x)	 __builtin_expect(!!(x), 1)
#define SHIM_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ------------------------------------------------------------- real.c */

struct shim_real {
	void *(*malloc)(size_t);
	void *(*calloc)(size_t, size_t);
	void *(*realloc)(void *, size_t);
	void (*free)(void *);
	int (*posix_memalign)(void **, size_t, size_t);
	void *(*aligned_alloc)(size_t, size_t);
	void *(*memalign)(size_t, size_t);
	void *(*valloc)(size_t);
	void *(*pvalloc)(size_t);
	size_t (*malloc_usable_size)(void *);
	void *(*mmap)(void *, size_t, int, int, int, off_t);
	int (*munmap)(void *, size_t);
	void *(*mremap)(void *, size_t, size_t, int, ...);
	int (*madvise)(void *, size_t, int);
	void *(*memset)(void *, int, size_t);
	void (*bzero)(void *, size_t);
	void (*explicit_bzero)(void *, size_t);
	void *(*memset_chk)(void *, int, size_t, size_t);
	void (*explicit_bzero_chk)(void *, size_t, size_t);
	ssize_t (*read)(int, void *, size_t);
	ssize_t (*pread)(int, void *, size_t, off_t);
	size_t (*fread)(void *, size_t, size_t, void *);
	ssize_t (*recv)(int, void *, size_t, int);
};

extern struct shim_real shim_real;
/* 0 before resolution, 1 while dlsym runs, 2 once every pointer is set. */
extern atomic_int shim_real_state;
extern __thread int shim_depth __attribute__((tls_model("initial-exec")));

void shim_real_resolve(void);
void *shim_arena_alloc(size_t size, size_t align);
bool shim_arena_owns(const void *p);
size_t shim_arena_size(const void *p);
/* A byte loop the compiler may not turn into a call to memset. */
void shim_plain_memset(void *p, int c, size_t n);
void shim_plain_memcpy(void *d, const void *s, size_t n);
/* memcpy through the real library (resolving it first). */
void shim_copy(void *dst, const void *src, size_t n);

static inline void shim_ensure_real(void)
{
	if (SHIM_UNLIKELY(atomic_load_explicit(&shim_real_state, memory_order_acquire) != 2))
		shim_real_resolve();
}

/* ------------------------------------------------------------ rules.c */

enum shim_call {
	SHIM_CALL_MALLOC = 1u << 0,  /* malloc, calloc, realloc */
	SHIM_CALL_ALIGNED = 1u << 1, /* posix_memalign, aligned_alloc, memalign, valloc, pvalloc */
	SHIM_CALL_MMAP = 1u << 2,    /* anonymous private mmap */
	SHIM_CALL_ALL = 7u,	     /* every host call ("calls=all") */
	SHIM_CALL_CUDA = 1u << 3,    /* cudaMalloc(Async), cuMemAlloc(Async): GPU memory (cuda.c) */
};

enum shim_device { SHIM_DEVICE_HOST = 0, SHIM_DEVICE_CUDA = 1 };

#define SHIM_MAX_RULES	 16
#define SHIM_MAX_POOLS	 8
#define SHIM_MAX_LIBS	 4
#define SHIM_MAX_SIZES	 4
#define SHIM_NAME_MAX	 32
#define SHIM_PATH_MAX	 256
#define SHIM_DEFAULT_MIN (64ULL << 20)

struct shim_size_range {
	uint64_t lo, hi; /* inclusive */
};

struct shim_rule {
	char name[SHIM_NAME_MAX]; /* label shown in the registry and stats */
	uint32_t calls;		  /* enum shim_call mask */
	uint64_t min_bytes;	  /* threshold when no size list is given */
	uint32_t nr_sizes;
	struct shim_size_range sizes[SHIM_MAX_SIZES];
	uint32_t nr_libs;
	char libs[SHIM_MAX_LIBS][SHIM_NAME_MAX]; /* basenames; a prefix up to ".so" matches */
	uint32_t pool;				 /* index into the pools */
	uint32_t chunk_bytes;			 /* 0: the pool's */
	int32_t numa_node;			 /* -1: local */
	uint32_t priority;
	bool skip; /* a matching allocation stays with the real allocator */
	enum shim_device device;
	bool scoped;		 /* matches only inside a tag scope (kvmm_preload_tag_push) */
	char tag[SHIM_NAME_MAX]; /* GPU allocations' tag outside a scope ("": "default") */
};

struct shim_pool_cfg {
	char name[SHIM_NAME_MAX];
	uint64_t limit_bytes;	       /* 0: no limit */
	uint64_t flash_bytes;	       /* 0: libkvmm's default */
	char flash_dir[SHIM_PATH_MAX]; /* "": libkvmm's default ($KVMM_FLASH_DIR, ...) */
	uint32_t chunk_bytes;	       /* 0: 2 MiB */
};

struct shim_config {
	uint32_t nr_rules;
	struct shim_rule rules[SHIM_MAX_RULES];
	uint32_t nr_pools;
	struct shim_pool_cfg pools[SHIM_MAX_POOLS];
};

/*
 * Parses a rule string ("RULE;RULE", each "key=value,key=value"; NULL or
 * "" gives the default rule). Rules that do not parse are left out; for
 * each, one message goes into @err (the first only; @err may be NULL).
 * Returns the number of rules left out.
 */
int shim_rules_parse(const char *text, struct shim_config *cfg, char *err, size_t errlen);
/* The first rule that takes an allocation of @bytes by @call from a
 * library named @lib (NULL: unknown), or -1. */
int shim_rules_match(const struct shim_config *cfg, uint32_t call, uint64_t bytes, const char *lib);
/* The same, with scoped rules taking part when @in_scope. */
int shim_rules_match_scoped(const struct shim_config *cfg, uint32_t call, uint64_t bytes,
			    const char *lib, bool in_scope);
/* Whether any rule names libraries (then the caller must be looked up). */
bool shim_rules_need_lib(const struct shim_config *cfg, uint32_t call, uint64_t bytes);
int shim_parse_size(const char *s, const char *end, uint64_t *out);

/* ----------------------------------------------------------- caller.c */

/* The basename of the object holding @addr ("" if none); cached.
 * *is_self is set when that object is the shim itself. */
const char *shim_caller_lib(const void *addr, bool *is_self);
void shim_caller_reset(void);

/* ----------------------------------------------------------- ranges.c */

#define SHIM_RANGES_MAX 4096

/*
 * The sorted table of routed ranges [start, end). Lookups take no lock: a
 * sequence counter tells them to retry when a writer changed the table
 * meanwhile, and a global [lo, hi) box answers most of them in two loads.
 * Writers hold shim_lock.
 */
int shim_ranges_insert(uintptr_t start, uintptr_t end, uint32_t id);
void shim_ranges_remove(uintptr_t start);
/* The id of the range that overlaps [addr, addr+len), or 0. */
uint32_t shim_ranges_find(uintptr_t addr, size_t len);
/* The quick "surely not ours" test, inlined in every entry point. */
extern _Atomic uintptr_t shim_ranges_lo, shim_ranges_hi;
static inline bool shim_ranges_maybe(uintptr_t addr, size_t len)
{
	uintptr_t lo = atomic_load_explicit(&shim_ranges_lo, memory_order_relaxed);
	uintptr_t hi = atomic_load_explicit(&shim_ranges_hi, memory_order_relaxed);

	return addr < hi && addr + len > lo;
}
void shim_ranges_clear(void);
size_t shim_ranges_count(void);

/* ------------------------------------------------------------ route.c */

struct shim_pool;

/* A routed allocation: one kvmm region. */
struct shim_region {
	struct shim_region *next;
	uint32_t id;   /* the range table's id */
	uint32_t rule; /* the rule that made it */
	struct shim_pool *pool;
	struct kvmm_region *kr; /* NULL once the region was orphaned by fork */
	char *base;		/* what the program got */
	uint64_t user_bytes;	/* what the program asked for */
	uint64_t bytes;		/* the region (a multiple of chunk_bytes) */
	uint32_t chunk_bytes;
	uint32_t call; /* enum shim_call it came from */
	bool fixed;    /* made at an aligned address of ours: munmap after destroy */
	int32_t numa_node;
	uint32_t priority;
	uint64_t evict_hand; /* the pool thread's next chunk to look at */
	bool orphan;	     /* plain private memory after fork: munmap frees it */
};

struct shim_pool {
	struct shim_pool_cfg cfg;
	struct kvmm_ctx *ctx;
	bool failed; /* kvmm_open failed: its rules fall back */
	bool flash_ok;
	int mode;
	uint64_t resident_peak;
	uint64_t evicted_bytes, evict_failures, limit_evictions;
};

extern pthread_mutex_t shim_lock;
extern struct shim_config shim_cfg;
extern struct shim_pool shim_pools[SHIM_MAX_POOLS];
extern struct shim_region *shim_regions;
extern bool shim_enabled;

void shim_init(void);
/* Pool @idx with its libkvmm context opened (takes shim_lock); NULL when
 * kvmm_open failed (counted and said once). */
struct shim_pool *shim_pool_get(uint32_t idx);
/* Route @bytes for @call by rule @rule; NULL when kvmm cannot (counted). */
void *shim_route_alloc(int rule, uint32_t call, size_t bytes, size_t align);
/* shim_lock held: the region with range id @id, or NULL. */
struct shim_region *shim_region_by_id(uint32_t id);
struct shim_region *shim_region_by_base(const void *p);
/* Frees the region holding @p (which must be its base); false if none. */
bool shim_route_free(void *p);
/* realloc of a routed pointer (or a move into routed memory). */
void *shim_route_realloc(struct shim_region *r, size_t bytes, bool *handled);
/* Copies the non-empty chunks of [src, src+n) into dst (zeros elsewhere). */
void shim_route_copy_out(struct shim_region *r, void *dst, uint64_t n);
void shim_region_destroy_locked(struct shim_region *r);
uint64_t shim_region_resident(struct shim_region *r);
/* Makes [p, p+n) of routed memory resident (before a system call fills it). */
void shim_route_prefault(uintptr_t p, size_t n);

/* ------------------------------------------------------------- zero.c */

/* memset(p, 0, n) on memory that may be routed: true when it was handled. */
bool shim_zero(void *p, size_t n);
/* madvise on routed memory: true (and *ret) when it was handled. */
bool shim_madvise(void *p, size_t n, int advice, int *ret);

/* ------------------------------------------------------------ evict.c */

void shim_evict_start(void);
/* Evicts every unpinned resident chunk of every region now (0 or -errno). */
int shim_evict_all(void);
void shim_evict_fork_child(void);
/* Installs the handler of the user-mode write window (once). */
void shim_evict_install_segv(void);

/* ------------------------------------------------------------ stats.c */

enum shim_fallback {
	SHIM_FB_NO_KVMM,    /* kvmm_open failed (no module in kernel mode, no userfaultfd) */
	SHIM_FB_REGION,	    /* kvmm_region_create failed (pool, address space) */
	SHIM_FB_TABLE_FULL, /* SHIM_RANGES_MAX routed regions live */
	SHIM_FB_BAD_RULE,   /* a rule named a pool that could not be made */
	SHIM_FB_GPU,	    /* a GPU allocation kvmm could not back (driver, memory, ledger) */
	SHIM_FB_GPU_PARKED, /* a GPU allocation for a tag that is parked */
	SHIM_FB_NR,
};

struct shim_stats {
	atomic_ullong routed, routed_bytes, freed;
	atomic_ullong reserved_bytes; /* live region bytes */
	atomic_ullong resident_peak;  /* sampled by the pool thread, and at exit */
	atomic_ullong zero_calls, zero_elided_bytes, zero_written_bytes, zero_discarded_chunks;
	atomic_ullong madvise_chunks, prefaults;
	atomic_ullong reallocs_copied, evicted_chunks, restored_chunks;
	atomic_ullong fallbacks[SHIM_FB_NR];
	/* GPU (cuda.c) */
	atomic_ullong gpu_routed, gpu_routed_bytes, gpu_freed, gpu_freed_parked, gpu_passed;
	atomic_ullong gpu_reserved_bytes; /* live routed GPU bytes (granularity-rounded) */
	atomic_ullong gpu_parks, gpu_unparks, gpu_park_failures, gpu_unpark_failures;
	atomic_ullong gpu_unpark_rollbacks; /* allocations unmapped again by a failed unpark */
	atomic_ullong gpu_parked_bytes;	    /* GPU bytes parked now */
};

extern struct shim_stats shim_stats;

/* Counts a fallback and prints its reason on stderr the first time. */
void shim_fallback(enum shim_fallback why, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* One line on stderr, prefixed "kvmm-preload: ", without allocating. */
void shim_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void shim_stats_atexit(void);
void shim_stats_print(int fd);
/* Rewrites this process's registry file (shim_lock held). */
void shim_registry_write_locked(void);
void shim_registry_remove(void);
const char *shim_registry_dir(char *buf, size_t len);

/* ------------------------------------------------------------- fork.c */

void shim_fork_install(void);
/* KVMM_PRELOAD_CHILDREN=0: takes the shim out of LD_PRELOAD for exec. */
void shim_children_env(void);
/* Replaces a shared mapping with a private copy at the same address (in a
 * child): chunks of @kr (may be NULL: all) that are empty are not copied. */
int shim_privatize(void *p, uint64_t bytes, struct kvmm_region *kr, uint32_t chunk);

/* ------------------------------------------------------------- cuda.c */

/*
 * GPU memory: allocations that a rule with calls=cuda takes are backed by
 * CUDA VMM through libkvmm's allocator (cuda_alloc.c: one VA range and
 * handle each, the GPU ledger charged in kernel mode), one allocator per
 * tag, so a tag can be parked (its memory released, contents kept in a
 * host region or on flash, or dropped) and unparked at the same addresses.
 * cuda_entry.c holds the exported entry points, control.c the mover
 * thread and the control socket.
 */
#define SHIM_GPU_MAX_TAGS 16
#define SHIM_GPU_SCOPES	  8

enum shim_gpu_kind {
	SHIM_GPU_RUNTIME,
	SHIM_GPU_RUNTIME_ASYNC,
	SHIM_GPU_DRIVER,
	SHIM_GPU_DRIVER_ASYNC
};
/* Park policies: KVMM_CUDA_SLEEP_DISCARD, _HOST, _FLASH. */

/* A routed GPU block for @bytes on CUDA device @device, or NULL: then the
 * real function serves it (counted in gpu_passed or a fallback). */
void *shim_gpu_alloc(uint32_t kind, size_t bytes, int device, const char *lib);
/* Frees @p if it is a routed GPU block: after the device's work (@async
 * false: cuCtxSynchronize) or @stream's (@async). False: not ours. */
bool shim_gpu_free(void *p, void *stream, bool async);
bool shim_gpu_owns(const void *p);
/* Moves now (the mover thread calls these): 0 or -errno. @tag NULL or "":
 * every tag. A failed park is rolled back (the tag stays resident); a
 * failed unpark unmaps what it mapped (the tag stays parked). */
int shim_gpu_park_now(const char *tag, uint32_t how, char *msg, size_t msglen);
int shim_gpu_unpark_now(const char *tag, char *msg, size_t msglen);
int shim_gpu_tag_push(const char *tag);
int shim_gpu_tag_pop(void);
/* Unparks of @tag so far (its physical backing changed each time), or -ENOENT. */
long long shim_gpu_generation(const char *tag);
/* 0 resident, 1 parked, -ENOENT no such tag. */
int shim_gpu_state(const char *tag);
void shim_gpu_stats_print(int fd);
void shim_gpu_registry_write(int fd);
/* In a fork child: CUDA does not work across fork; the child routes no
 * GPU memory and keeps none of the parent's records. */
void shim_gpu_fork_child(void);

/* ---------------------------------------------------------- control.c */

/*
 * The mover thread runs park and unpark requests one at a time, for the C
 * API (kvmm_preload_park & co, possibly asynchronous) and for the control
 * socket (kvmmctl park PID / unpark PID): the abstract unix socket
 * "kvmm-preload.PID", which serves a peer of the same uid or root only.
 */
enum shim_move { SHIM_MOVE_PARK, SHIM_MOVE_UNPARK };
/* Queues a move; waits for it and returns its result unless @async (0). */
int shim_move(enum shim_move op, const char *tag, uint32_t how, bool async, char *msg,
	      size_t msglen);
/* Waits until every queued move of @tag (NULL: all) is done; the last
 * one's result. */
int shim_move_wait(const char *tag);
/* Starts the control socket (once; after the first routed GPU block). */
void shim_control_start(void);
void shim_control_fork_child(void);
/* The socket's name for @pid, without the leading NUL byte. */
void shim_control_name(int pid, char *buf, size_t len);

#endif /* KVMM_PRELOAD_SHIM_H */
