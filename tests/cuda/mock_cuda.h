/* SPDX-License-Identifier: MIT */
/*
 * A stand-in for libcuda.so.1 on machines without a GPU: the driver calls
 * libkvmm's CUDA backend makes, on host memory, with the contract libkvmm
 * relies on and nothing kinder. libkvmm loads it through KVMM_CUDA_LIBRARY;
 * tests reach the controls below with dlsym on the same library.
 *
 * Work completes later, in stream order. Every copy, memset and event
 * record is queued on its stream (a FIFO) and runs only when something
 * needs it: cuStreamSynchronize, cuEventSynchronize, cuCtxSynchronize, a
 * synchronous copy, or a stream that waits (cuStreamWaitEvent) on an event
 * behind it; then exactly the work that is needed runs, nothing else.
 * cuEventQuery and cuStreamQuery run one queued op toward what they ask
 * about and still say CUDA_ERROR_NOT_READY, so a poll loop ends but never
 * sees work done at once. The legacy stream (NULL) waits for every
 * blocking stream and they for it; CU_STREAM_NON_BLOCKING streams do not.
 * Async copies always run later, from pinned or pageable memory alike (the
 * driver documents that they "might" be synchronous, so nothing may rely on
 * it); the synchronous cuMemcpyHtoD/DtoH and cuMemsetD8 run on the legacy
 * stream as documented (DtoH and pinned HtoD wait; pageable HtoD and memset
 * do not).
 *
 * Seeded mode (MOCK_CUDA_SEED=N, N nonzero): a device thread also runs
 * queued work in the background after random delays, picking among the
 * streams at random, and waits and queries run other streams' work in
 * between, so completion is delayed and reordered across streams (never
 * within one). The seed is printed at cuInit.
 *
 * Memory. A "device" allocation is a memfd; cuMemMap maps it into a
 * PROT_NONE reservation and cuMemSetAccess is mprotect, so the host
 * touching unmapped or no-access device memory takes SIGSEGV. Queued work
 * checks the mappings when it runs: a copy or memset over memory that is
 * unmapped or lacks the access it needs is an illegal address, as on a GPU
 * it is sticky: it is not done and every later call returns
 * CUDA_ERROR_ILLEGAL_ADDRESS (release calls still release) until
 * mock_cuda_reset(). A host call that changes memory queued work still
 * touches (cuMemUnmap, cuMemSetAccess taking access away, cuMemAddressFree,
 * cuMemFreeHost, cuMemHostUnregister) is a hazard: on a GPU it races that
 * work. The driver does not refuse it; the stand-in counts and prints it.
 *
 * Rules the driver documents are refused with CUDA_ERROR_INVALID_VALUE (or
 * the driver's own code) and counted as rule violations: cuMemMap offset
 * not 0, flags not 0, ptr or size not a multiple of the granularity, into
 * VA that is not reserved or already mapped; cuMemCreate size not a
 * multiple of the granularity; cuMemUnmap of anything but exactly one
 * earlier mapping; cuMemSetAccess over VA not wholly mapped; reservations
 * not host-page sized or with an alignment that is not a power of two;
 * freeing a reservation by another size; a stream, event, copy or memset
 * call with no current context; host memory freed or unregistered that
 * CUDA did not allocate or register. Device attributes (VMM support,
 * unified addressing, compute capability 9.0 ...) and the granularity are
 * reported and can be changed.
 */
#ifndef KVMM_MOCK_CUDA_H
#define KVMM_MOCK_CUDA_H

#include <stddef.h>
#include <stdint.h>

/* Mirrored field by field by MockStats in userspace/python/tests/
 * test_cuda_allocator.py: a field added here is added there. */
struct mock_cuda_stats {
	uint64_t creates, releases, live; /* cuMemCreate handles */
	uint64_t maps, unmaps, set_access;
	uint64_t rule_violations; /* calls the real driver would refuse */
	uint64_t event_syncs, stream_syncs;
	uint64_t ops_queued, ops_run;	/* copies, memsets, records, waits, holds */
	uint64_t pending;		/* ops queued and not yet run now */
	uint64_t max_pending;		/* most ops queued and not yet run at once */
	uint64_t faults;		/* work that touched memory it could not */
	uint64_t hazards;		/* host calls racing queued work */
	uint64_t reordered;		/* ops run before an older op of another stream */
	uint64_t events_live;		/* cuEventCreate'd and not destroyed */
	uint64_t streams_live;		/* cuStreamCreate'd and not destroyed */
	uint64_t spin_waits;		/* host waits on an event without CU_EVENT_BLOCKING_SYNC
					   whose work was still queued: a core spins on a GPU */
	uint64_t capture_breaks;	/* unsafe calls from a global-mode thread during a
					   global-mode capture (mock_cuda_capture) */
	uint64_t mem_allocs, mem_frees; /* cuMemAlloc/cuMemAllocAsync, cuMemFree/cuMemFreeAsync */
	uint64_t released_mapped;	/* cuMemRelease of a handle still mapped somewhere (the
					   driver frees it at the last unmap; not a violation) */
};

/* Environment read at cuInit: MOCK_CUDA_GRAN (bytes, default 2 MiB),
 * MOCK_CUDA_MEM_BYTES (device memory, default 1 GiB), MOCK_CUDA_SEED
 * (seeded mode), MOCK_CUDA_DELAY_US (seeded mode's longest background
 * delay, default 300), MOCK_CUDA_VMM=0 (a device without VMM support),
 * MOCK_CUDA_CC (compute capability, "9.0"), MOCK_CUDA_READ_ONLY=0 (no
 * read-only mappings, as mock_cuda_refuse_read_only). */

/* A kernel on @stream that is still running until held is 0 again: work
 * queued behind it waits (held 0 lets every hold on @stream end). */
typedef void (*mock_cuda_hold_fn)(void *stream, int held);
typedef void (*mock_cuda_stats_fn)(struct mock_cuda_stats *st);
typedef void (*mock_cuda_set_mem_fn)(uint64_t bytes);
/* Fails the Nth call of the named function from now on (1-based; 0: never). */
typedef void (*mock_cuda_fail_fn)(const char *name, uint64_t nth);
/* The same, counting only the calling thread's calls (kvmm's own threads
 * may call the function meanwhile: mock_cuda_fail_here). */
typedef mock_cuda_fail_fn mock_cuda_fail_here_fn;
/* Fails @count calls of the named function in a row, from the Nth from now. */
typedef void (*mock_cuda_fail_run_fn)(const char *name, uint64_t nth, uint64_t count);
/* With @on, cuMemSetAccess refuses CU_MEM_ACCESS_FLAGS_PROT_READ with
 * CUDA_ERROR_NOT_SUPPORTED (not a rule broken: a driver that has no
 * read-only device mappings). */
typedef void (*mock_cuda_refuse_read_only_fn)(int on);
/* With @on, an engine thread is capturing a CUDA graph in global mode:
 * until it ends, a synchronizing call (stream, event or context
 * synchronize, event query, a synchronous copy or memset, pinned
 * allocation) from any thread whose capture mode is global
 * (cuThreadExchangeStreamCaptureMode) would invalidate the capture; it is
 * refused with CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED and counted in
 * capture_breaks and as a rule violation. The driver's own list of such
 * calls is not documented in full; these are the ones libkvmm makes. */
typedef void (*mock_cuda_capture_fn)(int on);
/* What cuDeviceGetAttribute reports for @attr (a CUdevice_attribute). */
typedef void (*mock_cuda_set_attr_fn)(int attr, int value);
/* Engine work for tests, needing no context: a kernel on @stream that
 * writes @n bytes (taken from @src now) at device address @dst, or that
 * reads @n bytes at device address @src into @dst when it runs (keep @dst
 * until the stream is synchronized). 0 or a CUresult. */
typedef int (*mock_cuda_kernel_write_fn)(void *stream, void *dst, const void *src, size_t n);
typedef int (*mock_cuda_kernel_read_fn)(void *stream, void *dst, const void *src, size_t n);
/* cuStreamSynchronize without a context; 0 or a CUresult. */
typedef int (*mock_cuda_sync_fn)(void *stream);
/* A new stream (flags as cuStreamCreate), needing no context. */
typedef void *(*mock_cuda_stream_fn)(unsigned int flags);
/* Time passes: the device runs all the work it can (holds stay). */
typedef void (*mock_cuda_idle_fn)(void);
/* A fresh start for the next test: holds end, queued work runs, the
 * sticky error, a capture (mock_cuda_capture) and the violation, fault
 * and hazard counts are cleared. */
typedef void (*mock_cuda_reset_fn)(void);

#endif
