/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kvmm.ko internals shared between its files. The user ABI is in
 * include/uapi/linux/kvmm.h; the lock order is documented in region.c.
 */
#ifndef KVMM_INTERNAL_H
#define KVMM_INTERNAL_H

#include <linux/atomic.h>
#include <linux/bvec.h>
#include <linux/fs.h>
#include <linux/kref.h>
#include <linux/refcount.h>
#include <linux/sizes.h>
#include <linux/list.h>
#include <linux/memcontrol.h>
#include <linux/pid.h>
#include <linux/uidgid.h>
#include <linux/uio.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/mutex.h>
#include <linux/numa.h>
#include <linux/sched.h>
#include <linux/types.h>
#include <linux/xarray.h>
#include <uapi/linux/kvmm.h>

#define KVMM_VERSION_MAJOR 0
#define KVMM_VERSION_MINOR 1
#define KVMM_VERSION_PATCH 0
#define KVMM_VERSION_STRING "0.1.0"

/* Module-wide counters, exported under stats/ in sysfs. */
struct kvmm_stats {
	atomic64_t faults;
	atomic64_t zero_fills;
	atomic64_t discards;
	atomic64_t fault_failures;
	atomic64_t ensure_failures;
	atomic64_t bytes_read;
	atomic64_t bytes_written;
	atomic64_t regions_created;
	atomic64_t evictions;
	atomic64_t clean_drops;
	atomic64_t flash_bytes_written;
	atomic64_t prefetches;
	atomic64_t fault_backs;
	atomic64_t flash_bytes_read;
	atomic64_t refaults;
	atomic64_t csum_failures;
	atomic64_t io_errors;
	atomic64_t buffered_ios;
	atomic64_t merged_ios;
	atomic64_t merged_retries;
	atomic64_t reclaim_runs;
	atomic64_t shrinker_scans;
	atomic64_t cow_copies;
	atomic64_t shared_bytes;	/* memory of shared chunks, each once */
};

extern struct kvmm_stats kvmm_stats;

/*
 * Where a chunk's data is. A chunk without data (EMPTY) has no struct at
 * all. Moves between DRAM and flash pass through WRITING or READING, during
 * which the I/O owns the pages and nobody maps or frees them.
 */
enum kvmm_chunk_where {
	KVMM_CS_RESIDENT,	/* pages hold the data */
	KVMM_CS_FLASH,		/* only the flash slot holds it */
	KVMM_CS_WRITING,	/* pages being written to the slot */
	KVMM_CS_READING,	/* slot being read into new pages */
};

#define KVMM_NO_SLOT U64_MAX

/*
 * Memory charged to a tenant's memory cgroup: at memory.max the allocation
 * fails (and kvmm evicts or refuses) instead of invoking the memcg OOM killer.
 */
#define KVMM_GFP_ACCOUNT (GFP_KERNEL_ACCOUNT | __GFP_RETRY_MAYFAIL | __GFP_NOWARN)

/* A chunk with data, in DRAM or on flash. Fields under its region's lock. */
struct kvmm_chunk {
	struct page **pages;	/* chunk_pages pages; NULL when on flash only */
	struct list_head lru;	/* region->lru while resident and unpinned */
	struct list_head clean;	/* on kvmm_clean_lru while droppable (reclaim.c) */
	struct kvmm_region *r;	/* its region, for the shrinker */
	int clean_nid;		/* node it was added to kvmm_clean_lru with */
	unsigned long idx;	/* chunk number in the region */
	unsigned long evicted_at;	/* jiffies of the last eviction */
	unsigned long hold_until;	/* refaulted: not evicted before this */
	u64 slot;		/* first PAGE_SIZE unit of its flash slot */
	u32 crc;		/* crc32c of the data in the slot */
	unsigned int pins;
	int io_err;		/* last read-back failed: data stays on flash */
	u8 where;		/* enum kvmm_chunk_where */
	bool dirty;		/* changed since written to its slot (or never written) */
	bool created;		/* allocated by the ENSURE in progress */
	bool on_lru;
	bool on_clean;
	struct list_head aliases;	/* a shared chunk's struct kvmm_alias */
	unsigned int nr_aliases;	/* on @aliases: KVMM_SHARE_MAX_SHARERS at most */
};

/*
 * Chunk @idx of region @r reads shared chunk @hc (KVMM_IOC_SHARE, share.c).
 * A shared chunk lives in a home region, a region with no file that only
 * holds shared chunks; every region that maps it has an alias in its
 * ->shared table, and a chunk index is in ->chunks or in ->shared, never
 * both. Fields under the home's lock, the alias's place in r->shared under
 * r->lock.
 */
struct kvmm_alias {
	struct list_head node;	/* on hc->aliases */
	struct kvmm_region *r;
	unsigned long idx;
	struct kvmm_chunk *hc;
};

/* A backing file or block device, shared by the regions that use it. */
struct kvmm_grow;

struct kvmm_store {
	struct kref ref;
	struct list_head node;	/* on kvmm_stores */
	struct file *file;
	struct inode *host;	/* file->f_mapping->host: identifies the store */
	struct mutex lock;	/* map, nbits, used, size */
	struct mutex grow_lock;	/* one fallocate at a time */
	unsigned long *map;	/* one bit per PAGE_SIZE unit of the file */
	unsigned long nbits;
	u64 used;		/* units allocated */
	loff_t size;		/* bytes the file is known to cover */
	loff_t max_size;	/* device size, or the opener's RLIMIT_FSIZE */
	unsigned long first_unit;	/* units before it hold the header */
	gfp_t old_gfp;		/* mapping gfp mask to restore */
	atomic_t inflight;	/* its I/Os and growths in flight */
	unsigned long last_progress;	/* jiffies of its last finished I/O */
	struct kvmm_grow *growing;	/* the one growth in flight, under lock */
	spinlock_t work_lock;	/* backlog, running */
	struct list_head backlog;	/* I/Os waiting for one of its workers */
	unsigned int running;	/* its works on kvmm_io_wq: KVMM_STORE_WORKERS */
	bool direct;		/* direct I/O works on it */
	bool is_bdev;
};

/* A group of flash I/Os a caller waits for (EVICT, ENSURE, reclaim). */
struct kvmm_io_batch {
	refcount_t ref;		/* the waiter's and one per I/O */
	atomic_t pending;
	int err;
	atomic64_t written;	/* bytes its writes moved to flash */
	struct completion done;
};

/* One chunk-sized flash read or write. */
struct kvmm_io {
	struct kiocb iocb;
	struct iov_iter iter;
	struct work_struct work;	/* completion (and buffered I/O) */
	struct work_struct start;	/* checksum and submit a write */
	struct list_head node;	/* on the submitter's list, then on a run */
	struct list_head run;	/* a merged I/O's other chunks, on its first io */
	struct bio_vec *run_bvec;	/* every page of a merged I/O */
	unsigned int run_pages;	/* pages a merged I/O moves; 0 when alone */
	struct kvmm_region *r;
	struct kvmm_store *store;	/* held until the I/O is finished */
	struct kvmm_chunk *c;
	struct kvmm_io_batch *batch;
	atomic_t refs;		/* submitter + completion: see kvmm_flash_submit */
	long res;
	u32 crc;
	unsigned long c_idx;	/* io->c->idx, for the wakeup after c settles */
	bool write;
	bool by_fault;
	bool sb_write;		/* holds freeze protection (kiocb_start_write) */
	bool solo;		/* a merged I/O of it failed: alone from now on */
	struct list_head backlog;	/* on its store's backlog */
	struct work_struct *queued;	/* what to run when a worker is free */
	struct bio_vec bvec[];
};

struct kvmm_region {
	struct kref ref;	/* the file holds one; I/O and reclaim hold more */
	struct mutex lock;	/* chunk table, chunks, lru, backing, io_seq */
	struct xarray chunks;	/* chunk index -> struct kvmm_chunk */
	struct list_head lru;	/* resident unpinned chunks, coldest first */
	struct kvmm_store *store;
	wait_queue_head_t io_wait;	/* woken at every I/O completion */
	wait_queue_head_t chunk_wait;	/* keyed by chunk: see kvmm_chunk_wait_io */
	unsigned long io_seq;	/* bumped at every I/O completion */
	unsigned long ra_next;	/* the chunk a forward scan's next fault-back hits */
	atomic_t inflight;	/* flash I/Os in flight */
	bool dying;		/* file released: no new I/O */
	bool is_home;		/* holds shared chunks only; no file (share.c) */
	struct xarray shared;	/* chunk index -> struct kvmm_alias */
	struct kvmm_region *home;	/* where its chunks go when shared */
	unsigned long home_next;	/* a home's next chunk index */
	struct inode *inode;	/* private inode: its i_mapping has our VMAs */
	struct list_head node;	/* on kvmm_regions, under kvmm_regions_lock */

	u64 size;
	u64 nr_chunks;
	unsigned int chunk_shift;	/* log2(chunk bytes) */
	unsigned int chunk_order;	/* log2(pages per chunk) */
	int nid;			/* KVMM_NUMA_LOCAL or a node */
	u32 priority;
	u32 id;
	pid_t owner_tgid;	/* in the initial pid namespace, for logs */
	struct pid *owner_pid;	/* reported in each reader's pid namespace */
	kuid_t owner_uid;	/* creator's euid: who may list it */
	char owner_comm[TASK_COMM_LEN];
	struct mem_cgroup *memcg;	/* creator's: charged for DRAM and page cache */
	struct cgroup_subsys_state *blkcg_css;	/* creator's io cgroup, or NULL */
	atomic_t files;		/* open files (the fd and read-only dups) */
	struct work_struct free_work;	/* a free deferred by the shrinker */
	unsigned long memcg_stuck_until;	/* jiffies: its cgroup freed nothing */

	atomic_t mappings;
	atomic64_t resident_chunks;
	atomic64_t pinned_chunks;
	atomic64_t faults;
	atomic64_t zero_fills;
	atomic64_t discards;
	atomic64_t fault_failures;
	atomic64_t bytes_read;
	atomic64_t bytes_written;
	atomic64_t slot_chunks;		/* chunks holding a flash slot */
	atomic64_t flash_chunks;	/* chunks on flash only */
	atomic64_t evictions;
	atomic64_t clean_drops;
	atomic64_t flash_bytes_written;
	atomic64_t prefetches;
	atomic64_t fault_backs;
	atomic64_t flash_bytes_read;
	atomic64_t refaults;
	atomic64_t csum_failures;
	atomic64_t io_errors;
	atomic64_t buffered_ios;
	atomic64_t shared_chunks;	/* aliases in ->shared */
	atomic64_t cow_copies;
};

static inline u64 kvmm_chunk_bytes(const struct kvmm_region *r)
{
	return 1ULL << r->chunk_shift;
}

static inline unsigned int kvmm_chunk_pages(const struct kvmm_region *r)
{
	return 1U << r->chunk_order;
}

static inline bool kvmm_chunk_in_flight(const struct kvmm_chunk *c)
{
	return c->where == KVMM_CS_WRITING || c->where == KVMM_CS_READING;
}

static inline int kvmm_region_nid(const struct kvmm_region *r)
{
	return r->nid == KVMM_NUMA_LOCAL ? NUMA_NO_NODE : r->nid;
}

/*
 * An open region file (the creator's, or one from KVMM_IOC_DUP_RDONLY):
 * the pins made through it. They count in the opener's user->locked_vm,
 * the RLIMIT_MEMLOCK counter io_uring and perf share, so that neither
 * fork nor more fds nor more regions multiply the limit; the first
 * pinner's mm shows them as VmPin.
 */
struct kvmm_file {
	struct kvmm_region *r;
	struct mutex lock;	/* pins, pin_mm, pinned_pages */
	struct xarray pins;	/* chunk index -> xa_mk_value(pins through this file) */
	struct user_struct *pin_user;	/* the opener's: locked_vm holds the pins */
	struct mm_struct *pin_mm;	/* pinned_vm shows them; NULL until a pin */
	unsigned long pinned_pages;	/* charged to pin_user and pin_mm */
	bool rdonly;
};

/* Who flash I/O runs as and whom it charges (flash.c). */
struct kvmm_io_ctx {
	const struct cred *cred;
	struct mem_cgroup *memcg;
	bool blkcg;
};

/* A /dev/kvmm opener: its GPU ledger charges. */
struct kvmm_client {
	u64 charged[KVMM_MAX_GPUS];
};

/* ledger.c */
extern struct attribute_group kvmm_gpus_group;
struct kvmm_client *kvmm_client_alloc(void);
void kvmm_client_free(struct kvmm_client *cl);
long kvmm_ledger_ioctl(struct kvmm_client *cl, void __user *uarg, bool charge);
__poll_t kvmm_ledger_poll(struct kvmm_client *cl, struct file *file,
			  struct poll_table_struct *wait);
void kvmm_ledger_sysfs_init(void);

/* main.c */
extern unsigned int kvmm_default_chunk_bytes;
bool kvmm_chunk_bytes_valid(u64 bytes);

/* region.c */
extern struct mutex kvmm_regions_lock;
extern struct list_head kvmm_regions;
extern unsigned int kvmm_nr_regions;
extern unsigned int kvmm_nr_homes;
struct kvmm_region *kvmm_region_of_file(struct file *file, bool *rdonly);
struct kvmm_region *kvmm_home_new(struct kvmm_region *src);
int kvmm_region_create(struct kvmm_region_create __user *uarg);
long kvmm_region_list(struct kvmm_region_list __user *uarg);
void kvmm_region_put(struct kvmm_region *r);
void kvmm_region_put_deferred(struct kvmm_region *r);
void kvmm_region_unmap(struct kvmm_region *r, unsigned long first,
		       unsigned long nr);

/* share.c: shared chunks, their home regions and aliases. */
long kvmm_region_share(struct kvmm_region *r, void __user *uarg);
struct kvmm_region *kvmm_alias_lock_home(struct kvmm_alias *a);
bool kvmm_alias_unlink(struct kvmm_region *r, struct kvmm_alias *a);
void kvmm_alias_drop(struct kvmm_region *r, struct kvmm_alias *a);
void kvmm_region_drop_aliases(struct kvmm_region *r);
int kvmm_alias_break(struct kvmm_region *r, struct kvmm_alias *a,
		     struct kvmm_chunk *fresh, bool *put);
int kvmm_range_unshare(struct kvmm_region *r, unsigned long first,
		       unsigned long last);
int kvmm_range_ensure_shared(struct kvmm_region *r, unsigned long first,
			     unsigned long last);
int kvmm_home_ensure(struct kvmm_region *h, unsigned long idx);
bool kvmm_home_orphan(struct kvmm_region *h, struct kvmm_chunk *c);
void kvmm_home_unmap(struct kvmm_region *h, unsigned long idx);

/* chunk.c: chunk memory, LRU and moves between DRAM and flash. */
struct kvmm_chunk *kvmm_chunk_new(struct kvmm_region *r, unsigned long idx);
void kvmm_chunk_free_new(struct kvmm_region *r, struct kvmm_chunk *c);
struct kvmm_chunk *kvmm_chunk_install(struct kvmm_region *r,
				      struct kvmm_chunk *c);
struct kvmm_chunk *kvmm_chunk_populate(struct kvmm_region *r,
				       unsigned long idx, bool charged);
void kvmm_chunk_remove(struct kvmm_region *r, struct kvmm_chunk *c);
void kvmm_chunk_lru_update(struct kvmm_region *r, struct kvmm_chunk *c);
bool kvmm_chunk_busy(struct kvmm_region *r, struct kvmm_chunk *c);
int kvmm_chunk_evict(struct kvmm_region *r, struct kvmm_chunk *c,
		     struct kvmm_io_batch *batch, struct list_head *ios);
int kvmm_chunk_read_back(struct kvmm_region *r, struct kvmm_chunk *c,
			 struct kvmm_io_batch *batch, bool by_fault,
			 struct list_head *ios);
void kvmm_io_submit(struct list_head *ios, bool async);
void kvmm_io_submit_all(struct list_head *ios);
struct kvmm_io_batch *kvmm_io_batch_new(void);
int kvmm_io_batch_wait(struct kvmm_io_batch *batch, bool killable);
s64 kvmm_io_batch_wait_timeout(struct kvmm_io_batch *batch,
			       unsigned long timeout, bool killable);
int kvmm_chunk_wait_io(struct kvmm_region *r, unsigned long idx,
		       unsigned long seq);

/* flash.c: backing stores, slots and chunk I/O. */
extern atomic64_t kvmm_flash_bytes;
extern atomic_t kvmm_nr_stores;
struct kvmm_store *kvmm_store_from_file(struct file *file);
struct kvmm_store *kvmm_store_get_default(void);
int kvmm_store_set_default(const char *path);
ssize_t kvmm_store_default_show(char *buf);
void kvmm_store_put(struct kvmm_store *b);
int kvmm_store_alloc(struct kvmm_store *b, unsigned int order, u64 *slot);
int kvmm_store_grow(struct kvmm_store *b, struct kvmm_region *r);
int kvmm_store_grow_wait(struct kvmm_store *b, struct kvmm_region *r,
			 unsigned long timeout);
void kvmm_io_ctx_enter(struct kvmm_io_ctx *ctx, struct kvmm_store *b,
		       struct kvmm_region *r);
void kvmm_io_ctx_leave(struct kvmm_io_ctx *ctx);
void kvmm_flash_io_done(struct kvmm_io *io, bool ok);
/* A store with I/O in flight that finished none for this long is stalled. */
#define KVMM_STORE_STALL (5 * HZ)
/*
 * What kvmm leaves free below a cgroup's memory.max (at least; 1/128 of the
 * limit when that is more) for the cgroup's own page tables and kernel
 * memory: see kvmm_memcg_room().
 */
#define KVMM_MEMCG_HEADROOM SZ_1M
/* Pages one merged flash I/O moves at most (chunk.c): a swap cluster's 2 MiB. */
#define KVMM_IO_RUN_PAGES (SZ_2M >> PAGE_SHIFT)
/* Works of one store that may run at once on kvmm's I/O workers. */
#define KVMM_STORE_WORKERS 8
void kvmm_store_progress(struct kvmm_store *b);
bool kvmm_store_stalled(struct kvmm_store *b);
void kvmm_store_free(struct kvmm_store *b, u64 slot, unsigned int order);
void kvmm_flash_submit(struct kvmm_store *b, struct kvmm_io *io,
		       struct bio_vec *bvec, unsigned int nr_pages, loff_t pos);
bool kvmm_io_inject_failure(void);
bool kvmm_io_inject_merged_failure(void);
u32 kvmm_flash_crc(struct page **pages, unsigned int nr);
int kvmm_flash_init(void);
void kvmm_flash_exit(void);
void kvmm_io_queue_done(struct kvmm_io *io, work_func_t fn);
void kvmm_queue_done_work(struct work_struct *work);
void kvmm_store_queue(struct kvmm_store *b, struct kvmm_io *io,
		      struct work_struct *work);
void kvmm_store_work_done(struct kvmm_store *b);
void kvmm_io_complete(struct kvmm_io *io, long res);
void kvmm_io_finish(struct kvmm_io *io, long res);

/* reclaim.c: watermarks, the reclaim worker and the shrinker. */
extern unsigned int kvmm_high_wmark_pct, kvmm_low_wmark_pct;
extern unsigned int kvmm_refault_window_ms;
int kvmm_pool_charge_reclaim(u64 bytes);
int kvmm_pool_charge_nowait(u64 bytes);
void kvmm_reclaim_kick(void);
u64 kvmm_reclaim_memcg(struct kvmm_region *r, u64 bytes);
extern struct list_lru kvmm_clean_lru;
void kvmm_reclaim_wake_waiters(void);
int kvmm_reclaim_init(void);
void kvmm_reclaim_exit(void);

/* pool.c: the module's DRAM pool. */
int kvmm_pool_init(u64 limit_bytes);
void kvmm_pool_exit(void);
int kvmm_pool_charge(u64 bytes);
void kvmm_pool_uncharge(u64 bytes);
int kvmm_pool_alloc_pages(int nid, unsigned int order, struct page **pages,
			  bool zero);
void kvmm_pool_free_pages(struct page **pages, unsigned int nr);
u64 kvmm_pool_limit(void);
int kvmm_pool_set_limit(u64 bytes);
u64 kvmm_pool_used(void);
u64 kvmm_pool_node_used(int nid);

/* debugfs.c: test hooks. */
extern atomic_t kvmm_fail_ios;
extern atomic_t kvmm_fail_skip;
extern atomic_t kvmm_fail_merged;
extern atomic_t kvmm_force_buffered;
void kvmm_debugfs_init(void);
void kvmm_debugfs_exit(void);

/* sysfs.c */
extern const struct attribute_group *kvmm_attr_groups[];
int kvmm_sysfs_init(void);
void kvmm_sysfs_exit(void);

#endif /* KVMM_INTERNAL_H */
