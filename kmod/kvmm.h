/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kvmm.ko internals shared between its files. The user ABI is in
 * include/uapi/linux/kvmm.h; the lock order is documented in region.c.
 */
#ifndef KVMM_INTERNAL_H
#define KVMM_INTERNAL_H

#include <linux/atomic.h>
#include <linux/list.h>
#include <linux/mutex.h>
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
};

extern struct kvmm_stats kvmm_stats;

/* A chunk with memory: its pages (chunk_pages of them) and pin count. */
struct kvmm_chunk {
	struct page **pages;
	unsigned int pins;
	bool created;		/* allocated by the ENSURE in progress */
};

struct kvmm_region {
	struct mutex lock;	/* chunks, chunk contents of the table */
	struct xarray chunks;	/* chunk index -> struct kvmm_chunk */
	struct inode *inode;	/* private inode: its i_mapping has our VMAs */
	struct list_head node;	/* on kvmm_regions, under kvmm_regions_lock */

	u64 size;
	u64 nr_chunks;
	unsigned int chunk_shift;	/* log2(chunk bytes) */
	unsigned int chunk_order;	/* log2(pages per chunk) */
	int nid;			/* KVMM_NUMA_LOCAL or a node */
	u32 priority;
	u32 id;
	pid_t owner_tgid;
	char owner_comm[TASK_COMM_LEN];

	atomic_t mappings;
	atomic64_t resident_chunks;
	atomic64_t pinned_chunks;
	atomic64_t faults;
	atomic64_t zero_fills;
	atomic64_t discards;
	atomic64_t fault_failures;
	atomic64_t bytes_read;
	atomic64_t bytes_written;
};

static inline u64 kvmm_chunk_bytes(const struct kvmm_region *r)
{
	return 1ULL << r->chunk_shift;
}

static inline unsigned int kvmm_chunk_pages(const struct kvmm_region *r)
{
	return 1U << r->chunk_order;
}

/* main.c */
extern unsigned int kvmm_default_chunk_bytes;
bool kvmm_chunk_bytes_valid(u64 bytes);

/* region.c */
extern struct mutex kvmm_regions_lock;
extern struct list_head kvmm_regions;
extern unsigned int kvmm_nr_regions;
int kvmm_region_create(struct kvmm_region_create __user *uarg);
int kvmm_region_fs_init(void);
void kvmm_region_fs_exit(void);

/* pool.c: the module's DRAM pool. */
int kvmm_pool_init(u64 limit_bytes);
void kvmm_pool_exit(void);
int kvmm_pool_charge(u64 bytes);
void kvmm_pool_uncharge(u64 bytes);
int kvmm_pool_alloc_pages(int nid, unsigned int order, struct page **pages);
void kvmm_pool_free_pages(struct page **pages, unsigned int nr);
u64 kvmm_pool_limit(void);
int kvmm_pool_set_limit(u64 bytes);
u64 kvmm_pool_used(void);
u64 kvmm_pool_node_used(int nid);

/* sysfs.c */
extern const struct attribute_group *kvmm_attr_groups[];
int kvmm_sysfs_init(void);
void kvmm_sysfs_exit(void);

#endif /* KVMM_INTERNAL_H */
