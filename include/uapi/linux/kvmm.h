/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * kvmm: demand-paged, virtually contiguous KV-cache memory.
 *
 * This header is the whole contract between kvmm.ko and userspace.
 *
 * Objects:
 *   /dev/kvmm           the control device; one open fd per client.
 *   region fd           returned by KVMM_IOC_REGION_CREATE. mmap() it
 *                       (MAP_SHARED) to get one virtually contiguous range
 *                       whose physical memory is allocated a chunk at a time
 *                       on first touch (zero-filled) or by KVMM_IOC_ENSURE.
 *                       pread()/pwrite() on it copy data without a mapping.
 *                       The region lives until its last fd and last mapping
 *                       are gone; the fd may be passed to other processes.
 *
 * Rules that hold for every ioctl:
 *   - Every struct has reserved fields; they must be zero on input and are
 *     written as zero on output. A nonzero reserved field or an unknown flag
 *     gives -EINVAL and changes nothing.
 *   - Offsets and lengths are bytes. Where a range is taken, offset and
 *     length must be multiples of the region's chunk size, length must be
 *     nonzero and offset + length must not exceed the region size
 *     (-EINVAL otherwise).
 *   - Region ioctls on /dev/kvmm, or device ioctls on a region fd, give
 *     -ENOTTY.
 *   - No output ever contains a kernel pointer.
 *
 * Chunks are in one of the states KVMM_CHUNK_*; see KVMM_IOC_QUERY.
 */
#ifndef _UAPI_LINUX_KVMM_H
#define _UAPI_LINUX_KVMM_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* Bumped on any incompatible change of this header. */
#define KVMM_ABI_VERSION 1

#define KVMM_DEVICE_PATH "/dev/kvmm"

/* Limits enforced by KVMM_IOC_REGION_CREATE. */
#define KVMM_REGION_MAX_BYTES (1ULL << 40)	/* 1 TiB of virtual space */
#define KVMM_CHUNK_MAX_BYTES (1U << 21)		/* 2 MiB; the minimum is PAGE_SIZE */
/* Most chunk states one KVMM_IOC_QUERY call returns. */
#define KVMM_QUERY_MAX_CHUNKS (1U << 20)

/**
 * struct kvmm_version - KVMM_IOC_VERSION output.
 * @abi_version: KVMM_ABI_VERSION the module implements.
 * @major:       module release, major.
 * @minor:       module release, minor.
 * @patch:       module release, patch.
 * @page_size:   the kernel's PAGE_SIZE (the smallest chunk size).
 * @default_chunk_bytes: chunk size used when a create asks for 0.
 * @reserved:    zero.
 */
struct kvmm_version {
	__u32 abi_version;
	__u32 major;
	__u32 minor;
	__u32 patch;
	__u32 page_size;
	__u32 default_chunk_bytes;
	__u64 reserved[3];
};

/* struct kvmm_region_create.flags */
#define KVMM_CREATE_CLOEXEC (1U << 0)	/* the new fd gets FD_CLOEXEC */
#define KVMM_CREATE_FLAGS_ALL (KVMM_CREATE_CLOEXEC)

/* struct kvmm_region_create.numa_node: allocate on the faulting CPU's node. */
#define KVMM_NUMA_LOCAL (-1)

/**
 * struct kvmm_region_create - KVMM_IOC_REGION_CREATE argument.
 * @size:        in: region size in bytes; a nonzero multiple of the chunk
 *               size, at most KVMM_REGION_MAX_BYTES.
 * @chunk_bytes: in: unit of allocation and of tier moves; a power of two
 *               from PAGE_SIZE to KVMM_CHUNK_MAX_BYTES, or 0 for the
 *               module's default_chunk_bytes. out: the size used.
 * @numa_node:   in: node to allocate from, strictly (allocation on that node
 *               or failure), or KVMM_NUMA_LOCAL. An offline node is -EINVAL.
 * @priority:    in: eviction priority; lower values are evicted first.
 * @flags:       in: KVMM_CREATE_*.
 * @fd:          out: the new region fd (O_RDWR).
 * @id:          out: region id, unique while the module is loaded; names the
 *               region in sysfs and tools.
 * @reserved0:   zero.
 * @reserved:    zero.
 */
struct kvmm_region_create {
	__u64 size;
	__u32 chunk_bytes;
	__s32 numa_node;
	__u32 priority;
	__u32 flags;
	__s32 fd;
	__u32 id;
	__u32 reserved0;
	__u32 reserved1;
	__u64 reserved[4];
};

/**
 * struct kvmm_range - a chunk-aligned byte range of a region.
 * @offset:   in: first byte, a multiple of the chunk size.
 * @length:   in: bytes, a nonzero multiple of the chunk size.
 * @flags:    in: must be 0.
 * @reserved0: zero.
 * @reserved: zero.
 */
struct kvmm_range {
	__u64 offset;
	__u64 length;
	__u32 flags;
	__u32 reserved0;
	__u64 reserved[2];
};

/**
 * struct kvmm_region_stat - KVMM_IOC_STAT output; counters since creation.
 * @size:           region size in bytes.
 * @chunk_bytes:    chunk size in bytes.
 * @id:             region id.
 * @numa_node:      node asked for at create (KVMM_NUMA_LOCAL or a node).
 * @priority:       eviction priority.
 * @resident_bytes: bytes of chunks backed by DRAM now.
 * @pinned_bytes:   bytes of chunks pinned now.
 * @mappings:       VMAs currently mapping the region (all processes).
 * @faults:         CPU faults handled (one per chunk mapped into a VMA).
 * @zero_fills:     chunks allocated and zero-filled.
 * @discards:       chunks freed by KVMM_IOC_DISCARD.
 * @fault_failures: faults answered with SIGBUS (no memory for the chunk).
 * @bytes_read:     bytes copied out by pread().
 * @bytes_written:  bytes copied in by pwrite().
 * @reserved:       zero.
 */
struct kvmm_region_stat {
	__u64 size;
	__u32 chunk_bytes;
	__u32 id;
	__s32 numa_node;
	__u32 priority;
	__u64 resident_bytes;
	__u64 pinned_bytes;
	__u64 mappings;
	__u64 faults;
	__u64 zero_fills;
	__u64 discards;
	__u64 fault_failures;
	__u64 bytes_read;
	__u64 bytes_written;
	__u64 reserved[20];
};

/* Chunk states reported by KVMM_IOC_QUERY (low 4 bits of each byte). */
#define KVMM_CHUNK_EMPTY	0	/* no memory; reads as zeros */
#define KVMM_CHUNK_RESIDENT	1	/* backed by DRAM of the module's pool */
#define KVMM_CHUNK_STATE_MASK	0x0f
/* Flag bits reported beside the state. */
#define KVMM_CHUNK_PINNED	0x80	/* pinned: never discarded or moved */

/**
 * struct kvmm_query - KVMM_IOC_QUERY argument: per-chunk states.
 * @first_chunk: in: index of the first chunk (offset / chunk size).
 * @nr_chunks:   in: number of chunks, 1..KVMM_QUERY_MAX_CHUNKS, within the
 *               region.
 * @states:      in: user pointer to nr_chunks bytes; each receives
 *               KVMM_CHUNK_<state> | flags.
 * @flags:       in: must be 0.
 * @reserved0:   zero.
 * @reserved:    zero.
 */
struct kvmm_query {
	__u64 first_chunk;
	__u64 nr_chunks;
	__u64 states;
	__u32 flags;
	__u32 reserved0;
	__u64 reserved[2];
};

#define KVMM_IOC_MAGIC 0xB8

/* /dev/kvmm ioctls. */
#define KVMM_IOC_VERSION	_IOR(KVMM_IOC_MAGIC, 0x00, struct kvmm_version)
/* Create a region; returns 0 and fills @fd and @id. */
#define KVMM_IOC_REGION_CREATE	_IOWR(KVMM_IOC_MAGIC, 0x01, struct kvmm_region_create)

/* Region fd ioctls. */
/*
 * Make every chunk of the range resident now, zero-filled where new.
 * All or nothing: -ENOMEM when the pool cannot hold the missing chunks,
 * and then no chunk changes state. -EINTR when a fatal signal arrives.
 */
#define KVMM_IOC_ENSURE		_IOW(KVMM_IOC_MAGIC, 0x10, struct kvmm_range)
/*
 * Free the chunks of the range and remove them from every mapping; the
 * range reads as zeros afterwards. -EBUSY (and nothing changes) when a
 * chunk of the range is pinned.
 */
#define KVMM_IOC_DISCARD	_IOW(KVMM_IOC_MAGIC, 0x11, struct kvmm_range)
#define KVMM_IOC_STAT		_IOR(KVMM_IOC_MAGIC, 0x12, struct kvmm_region_stat)
#define KVMM_IOC_QUERY		_IOW(KVMM_IOC_MAGIC, 0x13, struct kvmm_query)
/*
 * Pin: ensure the range (as KVMM_IOC_ENSURE) and keep it resident until
 * unpinned. Pins nest: each chunk counts its pins. Unpinning a chunk that
 * is not pinned gives -EINVAL and changes nothing.
 */
#define KVMM_IOC_PIN		_IOW(KVMM_IOC_MAGIC, 0x14, struct kvmm_range)
#define KVMM_IOC_UNPIN		_IOW(KVMM_IOC_MAGIC, 0x15, struct kvmm_range)

#endif /* _UAPI_LINUX_KVMM_H */
