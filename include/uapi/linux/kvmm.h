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
 *   read-only fd        returned by KVMM_IOC_DUP_RDONLY on a region fd: the
 *                       same region, opened O_RDONLY. Its mappings can never
 *                       become writable (PROT_WRITE is -EACCES at mmap and
 *                       mprotect), pwrite() is -EBADF, and so are the ioctls
 *                       that change the region's data or store (DISCARD,
 *                       SET_BACKING). Use it to hand KV to a reader.
 *
 * Tenancy: a region's DRAM and its per-chunk kernel memory are charged to
 * the memory cgroup of the process that created it (memory.current grows
 * with its resident chunks; short of memory.max, by a headroom kept for the
 * cgroup's page tables (1 MiB or 1/128 of the limit), kvmm moves that
 * cgroup's chunks to flash, or fails its ENSURE with -ENOMEM and its faults
 * with SIGBUS).
 * Flash I/O runs with the credentials of whoever opened the backing fd and
 * charges the region creator's memory and io cgroups. Pinned bytes count
 * in the locked_vm of the user that opened the fd, against the pinning
 * process's RLIMIT_MEMLOCK (CAP_IPC_LOCK lifts it), and last at most as
 * long as the fd they were made through.
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
 *
 * poll() on a region fd reports EPOLLIN when none of its chunks has flash
 * I/O in flight. poll() on a /dev/kvmm fd reports EPOLLPRI while a GPU on
 * which that fd holds a ledger charge is over its budget (pressure: the
 * budget was lowered below what is charged).
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
/* Most ranges one chunk's memory may be shared by (KVMM_IOC_SHARE). */
#define KVMM_SHARE_MAX_SHARERS 65536
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

/* struct kvmm_region_create.priority of a region nobody asked to protect. */
#define KVMM_PRIORITY_DEFAULT 0

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
 *               Above KVMM_PRIORITY_DEFAULT needs CAP_SYS_NICE (-EPERM).
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
 * @flash_bytes:    bytes of flash slots held by the region now (chunks on
 *                  flash, and resident chunks that keep a clean flash copy).
 * @evictions:      chunks moved out of DRAM to flash (written or dropped).
 * @clean_drops:    of those, chunks dropped without a write because their
 *                  flash copy was still current.
 * @flash_bytes_written: bytes written to flash.
 * @prefetches:     chunks read back by KVMM_IOC_PREFETCH, KVMM_IOC_ENSURE or
 *                  pread/pwrite, or read around a fault-back (a forward scan).
 * @fault_backs:    chunks read back because a CPU fault touched them.
 * @flash_bytes_read: bytes read from flash.
 * @refaults:       chunks touched again within refault_window_ms of their
 *                  eviction (such chunks are then held back from eviction).
 * @csum_failures:  read-backs whose crc32c did not match (data kept on flash).
 * @io_errors:      failed flash reads and writes (including short ones).
 * @buffered_ios:   flash I/Os done buffered because the backing file refused
 *                  direct I/O.
 * @flash_resident_bytes: bytes of chunks on flash only (not in DRAM).
 * @inflight_ios:   flash reads and writes in flight now.
 * @shared_bytes:   bytes of chunks that read shared memory
 *                  (KVMM_CHUNK_SHARED), in DRAM or on flash. They count here
 *                  and not in @resident_bytes, @flash_bytes or
 *                  @flash_resident_bytes, which count memory the region
 *                  holds alone, nor in the I/O counters: their moves count
 *                  in sysfs stats/, where each shared chunk counts once.
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
	__u64 flash_bytes;
	__u64 evictions;
	__u64 clean_drops;
	__u64 flash_bytes_written;
	__u64 prefetches;
	__u64 fault_backs;
	__u64 flash_bytes_read;
	__u64 refaults;
	__u64 csum_failures;
	__u64 io_errors;
	__u64 buffered_ios;
	__u64 flash_resident_bytes;
	__u64 inflight_ios;
	__u64 shared_bytes;
	__u64 reserved[6];
};

/* Chunk states reported by KVMM_IOC_QUERY (the bits of KVMM_CHUNK_STATE_MASK). */
#define KVMM_CHUNK_EMPTY	0	/* no memory; reads as zeros */
#define KVMM_CHUNK_RESIDENT	1	/* backed by DRAM of the module's pool */
/* 2 is reserved: kvmm.ko never reports it (libkvmm's GPU regions use it). */
#define KVMM_CHUNK_FLASH	3	/* on flash only; a touch reads it back */
#define KVMM_CHUNK_STATE_MASK	0x03
/* Flag bits reported beside the state. */
#define KVMM_CHUNK_SHARED	0x04	/* its memory (DRAM or flash slot) was
					 * shared by KVMM_IOC_SHARE and is held
					 * apart from the region's own: other
					 * ranges may read it too, and a write
					 * through this one copies it first */
#define KVMM_CHUNK_WRITING	0x10	/* being written to flash (evicting) */
#define KVMM_CHUNK_READING	0x20	/* being read back from flash */
#define KVMM_CHUNK_DIRTY	0x40	/* resident with no current flash copy
					 * (new, or written since its last
					 * write-out): evicting it writes it */
#define KVMM_CHUNK_PINNED	0x80	/* pinned: never discarded or moved */
#define KVMM_CHUNK_ERROR	0x08	/* last read-back failed (I/O error or
					 * checksum); data kept on flash */

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

/* struct kvmm_backing.fd: no backing store (clear it). */
#define KVMM_BACKING_NONE (-1)

/*
 * The first KVMM_STORE_HEADER_BYTES of every backing store hold this header:
 * kvmm writes it into an empty regular file at SET_BACKING, and refuses a
 * non-empty file or a block device that does not start with it, so it never
 * overwrites data it did not write. `kvmmctl format` writes it (a block
 * device must be formatted before use). Chunk slots lie after it.
 */
#define KVMM_STORE_MAGIC "KVMMSTOR"
#define KVMM_STORE_VERSION 1
#define KVMM_STORE_HEADER_BYTES 4096

/**
 * struct kvmm_store_header - the start of a backing store.
 * @magic:        KVMM_STORE_MAGIC, not NUL-terminated.
 * @version:      KVMM_STORE_VERSION.
 * @header_bytes: KVMM_STORE_HEADER_BYTES.
 * @reserved:     zero; the rest of the header's bytes are zero too.
 */
struct kvmm_store_header {
	char magic[8];
	__u32 version;
	__u32 header_bytes;
	__u64 reserved[6];
};

/**
 * struct kvmm_backing - KVMM_IOC_SET_BACKING argument.
 * @fd:        in: an fd the caller opened read-write on a regular file of a
 *             disk filesystem (direct I/O where it allows, else buffered
 *             I/O, counted) or on a block device; or KVMM_BACKING_NONE to
 *             clear. The module keeps its own reference: the caller may
 *             close it. Its I/O runs with the credentials of the fd's opener.
 *             The file grows (fallocate) as chunks are written and never
 *             shrinks below what is in use. Several regions may share one
 *             file; each slot belongs to one chunk. See KVMM_IOC_SET_BACKING
 *             for what is refused.
 * @flags:     in: must be 0.
 * @reserved0: zero.
 * @reserved:  zero.
 */
struct kvmm_backing {
	__s32 fd;
	__u32 flags;
	__u64 reserved0;
	__u64 reserved[2];
};

/* GPUs the ledger knows: indices 0..KVMM_MAX_GPUS-1. */
#define KVMM_MAX_GPUS 16
/* A budget of KVMM_BUDGET_UNLIMITED ("max" in sysfs) never refuses. */
#define KVMM_BUDGET_UNLIMITED (~0ULL)

/**
 * struct kvmm_gpu_charge - KVMM_IOC_GPU_CHARGE / KVMM_IOC_GPU_UNCHARGE.
 *
 * The host-wide GPU ledger: userspace drivers charge the physical GPU
 * memory they map to their /dev/kvmm fd. A charge that would take the GPU
 * past its budget (sysfs gpus/gpu<N>_budget_bytes) is refused with -EDQUOT
 * and changes nothing. Charges are released when the fd is closed, so the
 * share of a process that dies returns.
 * @gpu:      in: GPU index, below KVMM_MAX_GPUS (-EINVAL otherwise).
 * @flags:    in: must be 0.
 * @bytes:    in: bytes to charge or uncharge; nonzero. Uncharging more
 *            than this fd holds on that GPU is -EINVAL.
 * @charged:  out: this fd's charge on the GPU after the call.
 * @used:     out: all fds' charges on the GPU after the call.
 * @budget:   out: the GPU's budget (KVMM_BUDGET_UNLIMITED if none).
 * @reserved: zero.
 */
struct kvmm_gpu_charge {
	__u32 gpu;
	__u32 flags;
	__u64 bytes;
	__u64 charged;
	__u64 used;
	__u64 budget;
	__u64 reserved[3];
};

/**
 * struct kvmm_region_info - one entry of KVMM_IOC_REGION_LIST.
 * @id:            region id.
 * @owner_pid:     thread-group id of the process that created it, in the
 *                 caller's pid namespace (0 if not visible there).
 * @size:          region size in bytes.
 * @chunk_bytes:   chunk size.
 * @numa_node:     node asked for at create.
 * @priority:      eviction priority.
 * @mappings:      VMAs mapping it now.
 * @resident_bytes: bytes in DRAM.
 * @pinned_bytes:  bytes pinned.
 * @flash_bytes:   bytes of flash slots held.
 * @flash_resident_bytes: bytes on flash only.
 * @owner_comm:    command name of the creator, NUL-terminated.
 * @shared_bytes:  bytes of chunks reading shared memory (KVMM_IOC_SHARE),
 *                 counted here and not in the other byte counts.
 * @reserved:      zero.
 */
struct kvmm_region_info {
	__u32 id;
	__s32 owner_pid;
	__u64 size;
	__u32 chunk_bytes;
	__s32 numa_node;
	__u32 priority;
	__u32 mappings;
	__u64 resident_bytes;
	__u64 pinned_bytes;
	__u64 flash_bytes;
	__u64 flash_resident_bytes;
	char owner_comm[16];
	__u64 shared_bytes;
	__u64 reserved[3];
};

/**
 * struct kvmm_region_list - KVMM_IOC_REGION_LIST argument.
 * @regions:   in: user pointer to an array of struct kvmm_region_info.
 * @capacity:  in: entries the array holds (may be 0 to only count).
 * @count:     out: live regions the caller may see; min(count, capacity)
 *             entries are written, in increasing id order. Without
 *             CAP_SYS_ADMIN a caller sees only regions created by its own
 *             effective uid.
 * @flags:     in: must be 0.
 * @reserved0: zero.
 * @reserved:  zero.
 */
struct kvmm_region_list {
	__u64 regions;
	__u32 capacity;
	__u32 count;
	__u32 flags;
	__u32 reserved0;
	__u64 reserved[2];
};

/* struct kvmm_dup.flags */
#define KVMM_DUP_CLOEXEC (1U << 0)	/* the new fd gets FD_CLOEXEC */
#define KVMM_DUP_FLAGS_ALL (KVMM_DUP_CLOEXEC)

/**
 * struct kvmm_dup - KVMM_IOC_DUP_RDONLY argument.
 * @flags:     in: KVMM_DUP_*.
 * @fd:        out: a new O_RDONLY fd on the same region.
 * @reserved:  zero.
 */
struct kvmm_dup {
	__u32 flags;
	__s32 fd;
	__u64 reserved[2];
};

/**
 * struct kvmm_share - KVMM_IOC_SHARE argument, given to the destination
 * region's fd (read-write).
 * @src_fd:     in: a read-write region fd of the source region (sharing
 *              changes how the source's memory is held); it may be the
 *              destination's own.
 * @flags:      in: must be 0.
 * @src_offset: in: start of the source range; a multiple of the chunk size.
 * @dst_offset: in: start of the destination range; a multiple of the chunk
 *              size.
 * @length:     in: bytes; a nonzero multiple of the chunk size, both ranges
 *              inside their regions, not overlapping when in one region.
 * @reserved:   zero.
 */
struct kvmm_share {
	__s32 src_fd;
	__u32 flags;
	__u64 src_offset;
	__u64 dst_offset;
	__u64 length;
	__u64 reserved[3];
};

#define KVMM_IOC_MAGIC 0xB8

/* /dev/kvmm ioctls. */
#define KVMM_IOC_VERSION	_IOR(KVMM_IOC_MAGIC, 0x00, struct kvmm_version)
/* Create a region; returns 0 and fills @fd and @id. */
#define KVMM_IOC_REGION_CREATE	_IOWR(KVMM_IOC_MAGIC, 0x01, struct kvmm_region_create)

/* Charge or uncharge GPU memory to this fd in the host-wide ledger. */
#define KVMM_IOC_GPU_CHARGE	_IOWR(KVMM_IOC_MAGIC, 0x02, struct kvmm_gpu_charge)
#define KVMM_IOC_GPU_UNCHARGE	_IOWR(KVMM_IOC_MAGIC, 0x03, struct kvmm_gpu_charge)
/* List live regions (no kernel pointers: ids, pids and sizes only). */
#define KVMM_IOC_REGION_LIST	_IOWR(KVMM_IOC_MAGIC, 0x04, struct kvmm_region_list)

/* Region fd ioctls. */
/*
 * Make every chunk of the range resident now: zero-filled where new, read
 * back where on flash (waiting for it). -ENOMEM when the pool cannot hold
 * the chunks that need memory, and then no chunk changes state. -EIO when a
 * read-back fails (that chunk stays on flash). -EINTR on a fatal signal.
 */
#define KVMM_IOC_ENSURE		_IOW(KVMM_IOC_MAGIC, 0x10, struct kvmm_range)
/*
 * Free the chunks of the range, in DRAM and on flash, and remove them from
 * every mapping; the range reads as zeros afterwards. -EBUSY (and nothing
 * changes) when a chunk of the range is pinned.
 */
#define KVMM_IOC_DISCARD	_IOW(KVMM_IOC_MAGIC, 0x11, struct kvmm_range)
#define KVMM_IOC_STAT		_IOR(KVMM_IOC_MAGIC, 0x12, struct kvmm_region_stat)
#define KVMM_IOC_QUERY		_IOW(KVMM_IOC_MAGIC, 0x13, struct kvmm_query)
/*
 * Pin: ensure the range (as KVMM_IOC_ENSURE) and keep it resident until
 * unpinned. Pins nest: each chunk counts its pins. A pin belongs to the
 * region fd (the open file) it was made through: UNPIN through that fd
 * undoes it, and closing that file's last reference drops every pin made
 * through it. Pinned bytes count in the locked_vm of the user that opened
 * this fd (one counter per user, shared with io_uring), checked against
 * the caller's RLIMIT_MEMLOCK unless it has CAP_IPC_LOCK: -ENOMEM past it,
 * or when the range is larger than the pool limit, and nothing is pinned. The first pinner's /proc/PID/status shows them
 * as VmPin. Unpinning a chunk not pinned through this fd gives
 * -EINVAL and changes nothing.
 */
#define KVMM_IOC_PIN		_IOW(KVMM_IOC_MAGIC, 0x14, struct kvmm_range)
#define KVMM_IOC_UNPIN		_IOW(KVMM_IOC_MAGIC, 0x15, struct kvmm_range)
/*
 * Set or clear the region's flash backing store. Without one, a region uses
 * the module's default backing file (sysfs default_backing) if set. A
 * refusal changes nothing:
 *   -EBUSY       a chunk of the region holds a flash slot.
 *   -EBADF       the fd is not open for both reading and writing, or the
 *                region fd is read-only.
 *   -EINVAL      neither a regular file nor a block device (pipe, socket,
 *                character device, directory), a kvmm region fd, or an fd
 *                opened O_APPEND.
 *   -EOPNOTSUPP  a file on a filesystem that is not a disk or network
 *                filesystem (procfs, sysfs, debugfs, tmpfs, memfd, ...), on
 *                one any user may mount (FUSE), or whose files lack the
 *                read_iter/write_iter methods kvmm uses.
 *   -EPERM       an append-only or immutable file.
 *   -ETXTBSY     an active swap file or swap device.
 *   -ENOTEMPTY   a non-empty file or a block device not formatted by kvmm
 *                (see struct kvmm_store_header).
 * Writing the header into an empty file can fail as write(2) fails there.
 */
#define KVMM_IOC_SET_BACKING	_IOW(KVMM_IOC_MAGIC, 0x16, struct kvmm_backing)
/*
 * Write the resident chunks of the range to flash and free their DRAM;
 * returns when done. Chunks whose flash copy is current are dropped without
 * a write; empty chunks and chunks already on flash are left alone.
 * -EBUSY (nothing changed) when a chunk of the range is pinned. -ENODEV
 * without a backing store. -ENOSPC when the backing store is full and -EIO
 * when a write fails: the chunks not written stay resident and unchanged.
 */
#define KVMM_IOC_EVICT		_IOW(KVMM_IOC_MAGIC, 0x17, struct kvmm_range)
/*
 * Start reading the range's flash chunks back into DRAM and return at
 * once. KVMM_IOC_WAIT, poll() or a touch completes it. -ENOMEM when the
 * pool cannot hold them (the reads started so far go on).
 */
#define KVMM_IOC_PREFETCH	_IOW(KVMM_IOC_MAGIC, 0x18, struct kvmm_range)
/*
 * Wait until no chunk of the range has flash I/O in flight. -EIO when a
 * chunk of the range failed its last read-back (KVMM_CHUNK_ERROR; its data
 * stays on flash and a later PREFETCH retries). -EINTR on a signal.
 */
#define KVMM_IOC_WAIT		_IOW(KVMM_IOC_MAGIC, 0x19, struct kvmm_range)
/* A read-only fd on the same region (see "read-only fd" above). */
#define KVMM_IOC_DUP_RDONLY	_IOWR(KVMM_IOC_MAGIC, 0x1a, struct kvmm_dup)
/*
 * Make the destination range read the memory of the source range, chunk by
 * chunk, without copying: afterwards both ranges map the same DRAM (or
 * flash slot), and each chunk reports KVMM_CHUNK_SHARED. What the
 * destination range held before is freed (as DISCARD); empty source chunks
 * make empty destination chunks. A write (store, pwrite) to a shared chunk
 * through either range first copies it for that range only (copy-on-write);
 * DISCARD, closing the region and writes drop one chunk's share. Eviction
 * writes a shared chunk to flash once and unmaps it from every range that
 * shares it; a touch through any of them reads it back for all. The shared
 * memory stays charged to the cgroup and pool it was first allocated from
 * (a copy is charged to its writer's region), and its flash copy stays in
 * the source's backing store: a sharer's touches and EVICTs spend the
 * source cgroup's memory (reading a chunk back may evict the source's own
 * chunks to make room there) and the source store's bandwidth. PIN copies the shared chunks of its range
 * first (pinned memory is the region's own; copies made before a PIN that
 * then fails stay, with the same bytes). ENSURE makes the region's own
 * chunks resident first and then reads back its shared ones: -ENOMEM or
 * -EIO from the second step leaves the first done. SHARE waits for
 * pread/pwrite still copying a source chunk. poll() reports the region's
 * own I/O; WAIT and a touch also wait for shared chunks' reads. A write
 * racing with the SHARE may land before the share (and be shared) or
 * after it (and be copied). A refusal changes nothing:
 *   -EINVAL  flags or reserved fields not zero, a range not chunk-aligned,
 *            empty, outside its region, or overlapping the other in one
 *            region; the regions' chunk sizes differ.
 *   -EBADF   src_fd is not a read-write kvmm region fd, or the
 *            destination fd is read-only.
 *   -EXDEV   the regions use different backing stores (a region without
 *            its own uses the module's default_backing).
 *   -EMLINK  a source chunk already has KVMM_SHARE_MAX_SHARERS sharers.
 *   -EBUSY   a chunk of either range is pinned.
 *   -ENOMEM  no memory for the sharing bookkeeping.
 *   -EIO     a source chunk's last read-back failed (KVMM_CHUNK_ERROR).
 *   -EINTR   a fatal signal while waiting for I/O of the ranges.
 */
#define KVMM_IOC_SHARE		_IOW(KVMM_IOC_MAGIC, 0x1b, struct kvmm_share)

#endif /* _UAPI_LINUX_KVMM_H */
