/* SPDX-License-Identifier: MIT */
/*
 * libkvmm internals shared by its files.
 *
 * Lock order (outer first), what each protects:
 *   kv->lock           a KV cache's slots and counters (kv.h)
 *   kv->progress_lock  its per-layer swap-in progress (taken alone, or
 *                      inside a CUDA cache's copy lock)
 *   ctx->regions_lock  (rwlock) the context's region list; the fault
 *                      handler holds it for reading while it serves a fault
 *   region->lock       a user-mode region's chunk states, pins, flash slots
 *   ctx->share_lock    user mode: shared chunks (struct kvmm_share_grp), their
 *                      members and the memfd that holds them; a region's
 *                      grp[] changes under both its lock and this one
 *   flash ring->lock   one flash ring and its staging buffers
 *   flash->slot_lock   the flash store's slot bitmap and checksums
 *   ctx->worker.lock   the asynchronous job queue
 * Flash I/O runs with no region lock held: the chunks it moves are marked
 * KVMM_STATE_WRITING or _READING, and whoever needs them waits on
 * region->cond.
 */
#ifndef KVMM_LIB_INTERNAL_H
#define KVMM_LIB_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kvmm/kvmm.h>

#define KVMM_NO_SLOT   UINT32_MAX
#define KVMM_CHUNK_MAX (2U << 20)

struct kvmm_flash;
struct kvmm_region;
struct kvmm_share_grp;

/* One queued asynchronous job; also the public struct kvmm_op. */
struct kvmm_op {
	struct kvmm_op *next;
	int (*fn)(void *arg);
	void *arg;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	atomic_int done;
	int result;
	bool detached;
};

#define KVMM_MAX_IO_THREADS 16

struct kvmm_worker {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct kvmm_op *head, *tail;
	pthread_t threads[KVMM_MAX_IO_THREADS];
	uint32_t nr_threads;
	bool stop;
};

struct kvmm_ctx {
	int mode;
	char *flash_dir;
	bool flash_dir_asked; /* named by the config or KVMM_FLASH_DIR, not a default */
	uint64_t flash_bytes;
	uint32_t queue_depth;
	uint32_t io_threads; /* worker threads and flash rings */
	int32_t staging_node;
	uint32_t chunk_bytes;
	uint32_t page_size;

	int dev_fd;	/* kernel mode: /dev/kvmm */
	int backing_fd; /* kernel mode: flash file given to every region, or -1 */

	/* user mode: one userfaultfd and its handler thread */
	int uffd;
	int stop_fd;
	bool uffd_poison;
	pthread_t uffd_thread;
	bool uffd_started;
	void *zero_chunk; /* KVMM_CHUNK_MAX zero bytes, the source of zero fills */

	pthread_rwlock_t regions_lock;
	struct kvmm_region *regions;
	uint32_t nr_kv;
	uint32_t next_region_id;

	pthread_mutex_t flash_lock; /* creates the store once */
	struct kvmm_flash *flash;

	/* user mode, shared chunks (share_user.c), under share_lock */
	pthread_mutex_t share_lock;
	pthread_cond_t share_cond; /* a shared chunk's I/O ended */
	int shm_fd;		   /* memfd holding every shared chunk's memory, or -1 */
	uint64_t shm_end;	   /* its size */
	uint64_t *shm_free[10];	   /* free extents per size class (4 KiB << i) */
	uint32_t shm_nfree[10], shm_capfree[10];
	uint64_t next_grp;
	int pagemap_fd; /* /proc/self/pagemap, or -1 (-2: could not open) */

	struct kvmm_worker worker;
	uint64_t test_fail_io; /* fail the Nth flash I/O (1-based), 0: never */
};

/* A chunk range of one region, for one batch of I/O over several regions. */
struct kvmm_chunk_span {
	struct kvmm_region *r;
	uint64_t first, nr;
};

/*
 * The provider vtable: chunk-index ranges, already checked. The _spans
 * forms act on several regions at once (spans must not overlap), so their
 * I/O shares one queue; every span is tried and the first error returned.
 */
struct kvmm_region_ops {
	int (*create)(struct kvmm_region *r, const struct kvmm_region_config *cfg);
	void (*destroy)(struct kvmm_region *r);
	int (*ensure)(struct kvmm_region *r, uint64_t first, uint64_t nr);
	int (*discard)(struct kvmm_region *r, uint64_t first, uint64_t nr);
	int (*evict)(struct kvmm_region *r, uint64_t first, uint64_t nr);
	int (*prefetch)(struct kvmm_region *r, uint64_t first, uint64_t nr);
	int (*pin)(struct kvmm_region *r, uint64_t first, uint64_t nr);
	int (*unpin)(struct kvmm_region *r, uint64_t first, uint64_t nr);
	int (*stat)(struct kvmm_region *r, struct kvmm_region_stats *st);
	int (*query)(struct kvmm_region *r, uint64_t first, uint64_t nr, uint8_t *states);
	int (*ensure_spans)(const struct kvmm_chunk_span *v, uint32_t n);
	int (*evict_spans)(const struct kvmm_chunk_span *v, uint32_t n);
	/* Chunks [sfirst, +nr) of @src shared at [dfirst, +nr) of @dst
	 * (checked: one context and chunk size, no overlap). */
	int (*share)(struct kvmm_region *dst, uint64_t dfirst, struct kvmm_region *src,
		     uint64_t sfirst, uint64_t nr);
};

extern const struct kvmm_region_ops kvmm_region_user_ops;
extern const struct kvmm_region_ops kvmm_region_kernel_ops;

struct kvmm_region {
	struct kvmm_ctx *ctx;
	const struct kvmm_region_ops *ops;
	struct kvmm_region *next;
	char *base;
	uint64_t bytes;
	uint32_t chunk_bytes;
	uint64_t nr_chunks;
	uint32_t id;
	bool fixed;	 /* mapped at a caller's address: give it back PROT_NONE */
	atomic_int busy; /* asynchronous operations running */

	/* kernel mode */
	int fd;

	/* user mode */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint8_t *state;
	uint32_t *pins;
	uint32_t *slot;
	struct kvmm_share_grp **grp; /* per chunk: the shared chunk it maps, or NULL; allocated
				      * by the first share */
	uint64_t faults, zero_fills, discards, fault_failures;
	uint64_t flash_writes, flash_reads, flash_errors;
};

/* region.c: ensure or evict byte ranges of several regions of one mode. */
struct kvmm_range_span {
	struct kvmm_region *r;
	uint64_t offset, length;
};
int kvmm_region_ensure_many(const struct kvmm_range_span *v, uint32_t n);
int kvmm_region_evict_many(const struct kvmm_range_span *v, uint32_t n);

/* ctx.c */
int kvmm_env_u64(const char *name, uint64_t *val);

/* worker.c */
int kvmm_worker_submit(struct kvmm_ctx *ctx, int (*fn)(void *), void *arg, struct kvmm_op **opp);
void kvmm_worker_stop(struct kvmm_ctx *ctx);

/* uffd.c */
int kvmm_uffd_open(struct kvmm_ctx *ctx);
void kvmm_uffd_close(struct kvmm_ctx *ctx);
int kvmm_uffd_copy(struct kvmm_ctx *ctx, void *dst, const void *src, uint64_t len);
int kvmm_uffd_poison(struct kvmm_ctx *ctx, void *dst, uint64_t len);
void kvmm_uffd_unpoison(struct kvmm_ctx *ctx, void *dst, uint64_t len);
int kvmm_uffd_wake(struct kvmm_ctx *ctx, void *dst, uint64_t len);
void kvmm_region_user_fault(struct kvmm_region *r, uint64_t addr);

/* flash.c: chunk-sized slots in one O_DIRECT file, checksummed. */
typedef int (*kvmm_flash_deliver_fn)(void *arg, const void *buf, uint32_t len);
struct kvmm_flash_io {
	bool write;
	uint32_t slot;
	uint32_t len;
	uint64_t tag;		       /* who owns the slot; checked on read */
	const void *src;	       /* write: the bytes to store */
	kvmm_flash_deliver_fn deliver; /* read: gets verified bytes */
	void (*written)(void *arg);    /* write: the bytes are stored (may be NULL) */
	void *arg;
	int result;
};
int kvmm_flash_get(struct kvmm_ctx *ctx, struct kvmm_flash **fp);
void kvmm_flash_close(struct kvmm_flash *f);
uint32_t kvmm_flash_slot_bytes(const struct kvmm_flash *f);
int kvmm_flash_slot_alloc(struct kvmm_flash *f, uint32_t *slot);
void kvmm_flash_slot_free(struct kvmm_flash *f, uint32_t slot);
int kvmm_flash_run(struct kvmm_flash *f, struct kvmm_flash_io *ios, uint32_t n);
int kvmm_flash_corrupt(struct kvmm_flash *f, uint32_t slot);
void kvmm_flash_reset_count(struct kvmm_flash *f);

/*
 * share_user.c: user-mode shared chunks. A shared chunk's memory is an
 * extent of the context's memfd, mapped MAP_PRIVATE at every member's
 * address while it is resident (a write copies the page: the kernel's
 * copy-on-write); while on flash its members are anonymous userfaultfd
 * ranges again, so a touch faults into the handler, which reads it back
 * once for all of them. State and members under ctx->share_lock.
 */
struct kvmm_share_member {
	struct kvmm_region *r;
	uint64_t c;
};
struct kvmm_share_grp {
	uint32_t refs;	   /* members, plus references held by a share in progress */
	uint32_t bytes;	   /* the chunk size */
	uint64_t off;	   /* its extent in ctx->shm_fd */
	uint64_t tag;	   /* owner tag of its flash slot */
	uint8_t state;	   /* KVMM_STATE_RESIDENT or _FLASH, | _WRITING, _READING, _ERROR */
	uint32_t slot;	   /* flash slot while on flash */
	const void *batch; /* the I/O batch that has it in flight */
	struct kvmm_share_member *m;
	uint32_t nm, capm;
};
void kvmm_share_ctx_init(struct kvmm_ctx *ctx);
void kvmm_share_ctx_fini(struct kvmm_ctx *ctx);
/* r->lock and ctx->share_lock held for all of these. */
int kvmm_share_convert(struct kvmm_region *r, uint64_t c, struct kvmm_share_grp **gp);
int kvmm_share_join(struct kvmm_region *r, uint64_t c, struct kvmm_share_grp *g);
void kvmm_share_leave(struct kvmm_region *r, uint64_t c, bool remap);
void kvmm_share_put(struct kvmm_ctx *ctx, struct kvmm_share_grp *g);
/* Waits until @g has no I/O in flight but that of @batch (may be NULL). */
void kvmm_share_wait(struct kvmm_ctx *ctx, struct kvmm_share_grp *g, const void *batch);
void kvmm_share_map_members(struct kvmm_ctx *ctx, struct kvmm_share_grp *g, bool resident);
bool kvmm_share_written(struct kvmm_ctx *ctx, const struct kvmm_share_grp *g);
bool kvmm_share_pinned(const struct kvmm_share_grp *g);
int kvmm_share_grp_array(struct kvmm_region *r);
int kvmm_share_store(struct kvmm_ctx *ctx, struct kvmm_share_grp *g, const void *buf);
void kvmm_share_drop_memory(struct kvmm_ctx *ctx, struct kvmm_share_grp *g);

static inline struct kvmm_share_grp *kvmm_share_of(const struct kvmm_region *r, uint64_t c)
{
	return r->grp ? r->grp[c] : NULL;
}

/* staging.c: I/O buffers on a chosen NUMA node. */
void *kvmm_staging_alloc(uint64_t bytes, int node, int *node_used);
void kvmm_staging_free(void *p, uint64_t bytes);

static inline uint64_t kvmm_round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

static inline uint64_t kvmm_region_tag(const struct kvmm_region *r, uint64_t chunk)
{
	return ((uint64_t)r->id << 40) | chunk;
}

/*
 * registry.c: per-process files kvmmctl reads (the shim's regions, the
 * remote tier's counters). kvmm_registry_dir: $@env ("none": NULL, an
 * absolute path: that) or /tmp/@prefix-UID. begin makes a new temporary
 * file in @dir (made 0700 if missing; -EPERM unless it is the caller's and
 * writable by nobody else) and end renames it to @name (@keep) or drops it.
 */
struct kvmm_registry_file {
	int dfd, fd;
	char name[64], tmp[72];
};

const char *kvmm_registry_dir(const char *env, const char *prefix, char *buf, size_t len);
int kvmm_registry_begin(struct kvmm_registry_file *f, const char *dir, const char *name);
int kvmm_registry_end(struct kvmm_registry_file *f, bool keep);
void kvmm_registry_remove(const char *dir, const char *name);
/* This process's start (field 22 of /proc/self/stat; 0 if unknown), and
 * its comm as one word. */
unsigned long long kvmm_proc_start_time(void);
const char *kvmm_proc_comm(char *buf, size_t len);

#endif /* KVMM_LIB_INTERNAL_H */
