/* SPDX-License-Identifier: MIT */
/*
 * Host-memory stand-in for libcuda.so.1; mock_cuda.h describes the model.
 * One lock covers everything: every entry point holds it, and the work
 * queued on streams runs under it, in whichever thread needs it done (or
 * the device thread in seeded mode).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cuda.h>

#include "mock_cuda.h"

#define EXPORT	     __attribute__((visibility("default")))
#define MAX_MAPS     65536
#define MAX_RESV     4096
#define MAX_PINNED   4096
#define HANDLE_MAGIC 0x6b766d6d48616e64ULL
#define EVENT_MAGIC  0x6b766d6d45766e74ULL

/* ------------------------------------------------------------------ state */

struct mock_handle {
	uint64_t magic;
	struct mock_handle *next_all; /* kept for good: a stale handle reads as released */
	int fd;
	size_t size;
	int maps; /* live mappings: the memory lives until release and unmap */
	bool released;
};

struct mock_map {
	uintptr_t va;
	size_t size;
	int prot; /* PROT_* from cuMemSetAccess; 0 until then */
	struct mock_handle *h;
};

struct mock_resv {
	uintptr_t va;
	size_t size;
};

struct mock_pinned {
	char *p;
	size_t size;
	bool alloc; /* cuMemHostAlloc; else cuMemHostRegister */
};

/* OP_D2D: device to device; its source is op->host, as a device address. */
enum op_kind { OP_H2D, OP_D2H, OP_MEMSET, OP_D2D, OP_RECORD, OP_WAIT, OP_HOLD };

struct mock_stream;

struct mock_dep {
	struct mock_stream *s;
	uint64_t seq; /* done once s->done reaches it */
};

struct mock_op {
	struct mock_op *next;
	enum op_kind kind;
	const char *what; /* the call that queued it */
	uint64_t seq;	  /* in its stream */
	uint64_t order;	  /* in the whole device */
	struct mock_dep *deps;
	unsigned nr_deps;
	uintptr_t dev; /* device bytes it touches: [dev, dev + n) */
	size_t n;
	char *host;  /* host side of a copy */
	char *bytes; /* H2D bytes taken when it was queued (owned), else NULL */
	unsigned char value;
	bool open; /* OP_HOLD: the held kernel finished */
};

struct mock_stream {
	struct mock_stream *next_all; /* never freed: events and waits point here */
	bool legacy, blocking, destroyed;
	uint64_t queued, done; /* seq of the last op queued, of the last run */
	struct mock_op *head, *tail;
};

struct mock_event {
	uint64_t magic;
	struct mock_event *next_free;
	struct mock_stream *s; /* NULL until recorded */
	uint64_t seq;
	unsigned int flags;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* Work ran, work was queued or a hold ended. */
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct mock_map maps[MAX_MAPS];
static int maps_end; /* maps[] in use lie below */
static struct mock_resv resv[MAX_RESV];
static struct mock_pinned pinned[MAX_PINNED];
static struct mock_handle *handles;
static struct mock_event *free_events;
static struct mock_stream legacy = {.legacy = true};
static struct mock_stream *streams;
static struct mock_cuda_stats st;
static uint64_t gran = 2 << 20, mem_bytes = 1ULL << 30, mem_used;
static uint64_t order, pending;
static CUresult sticky; /* the context's error after a fault */
static bool inited;
static uint64_t seed, rng, delay_us = 300;
static pthread_t device_thread;
static bool device_started, device_stop;
static char fail_name[64];
static bool refuse_read_only;	     /* mock_cuda_refuse_read_only() */
static uint64_t fail_nth, fail_more; /* fail_more: calls that fail after the nth */
static bool fail_here;		     /* count only the calls of fail_thread */
static pthread_t fail_thread;
static int attrs[CU_DEVICE_ATTRIBUTE_MAX];
static bool attrs_set;
static int ctx_dummy, ctx_refs;
static __thread int ctx_depth;
static bool capturing; /* mock_cuda_capture(): an engine's global-mode capture */
static __thread CUstreamCaptureMode capture_mode = CU_STREAM_CAPTURE_MODE_GLOBAL;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("mock_cuda: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* A call the real driver refuses: counted, printed, refused with @r. */
static CUresult violation(CUresult r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static CUresult violation(CUresult r, const char *fmt, ...)
{
	va_list ap;

	st.rule_violations++;
	va_start(ap, fmt);
	fputs("mock_cuda: refused (as the driver would): ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return r;
}

static uint64_t rnd(uint64_t n)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return n ? (rng * 2685821657736338717ULL >> 11) % n : 0;
}

static void attrs_init(void)
{
	if (attrs_set)
		return;
	attrs_set = true;
	attrs[CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK] = 1024;
	attrs[CU_DEVICE_ATTRIBUTE_WARP_SIZE] = 32;
	attrs[CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT] = 132;
	attrs[CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY] = 1;
	attrs[CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS] = 1;
	attrs[CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR] = 2048;
	attrs[CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT] = 2;
	attrs[CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING] = 1;
	attrs[CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR] = 9;
	attrs[CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR] = 0;
	attrs[CU_DEVICE_ATTRIBUTE_STREAM_PRIORITIES_SUPPORTED] = 1;
	attrs[CU_DEVICE_ATTRIBUTE_HOST_REGISTER_SUPPORTED] = 1;
	attrs[CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED] = 1;
	attrs[CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED] = 1;
	attrs[CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_WITH_CUDA_VMM_SUPPORTED] = 1;
	attrs[CU_DEVICE_ATTRIBUTE_READ_ONLY_HOST_REGISTER_SUPPORTED] = 1;
	attrs[CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED] = 1;
}

/* How begin() treats a call. */
#define NEED_CTX 1 /* streams, events, copies, memsets, pinned memory */
#define RELEASES 2 /* runs after a fault too (and still reports it) */
#define SYNCS	 4 /* would invalidate a global-mode capture from a global-mode thread */

/* Every entry point, with the lock held: not before cuInit, nothing after
 * a fault, no stream work without a current context, and the failure a
 * test asked for. */
static CUresult begin(const char *name, int how)
{
	if (!inited)
		return CUDA_ERROR_NOT_INITIALIZED;
	if (sticky && !(how & RELEASES))
		return sticky;
	if ((how & NEED_CTX) && !ctx_depth)
		return violation(CUDA_ERROR_INVALID_CONTEXT, "%s with no current context", name);
	if ((how & SYNCS) && capturing && capture_mode == CU_STREAM_CAPTURE_MODE_GLOBAL) {
		st.capture_breaks++;
		return violation(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED,
				 "%s from a thread in global capture mode while a graph is "
				 "captured in global mode: the capture is invalidated",
				 name);
	}
	if (fail_nth && !strcmp(name, fail_name) &&
	    (!fail_here || pthread_equal(pthread_self(), fail_thread)) && --fail_nth == 0) {
		if (fail_more) {
			fail_more--;
			fail_nth = 1; /* the next one too */
		}
		return !strcmp(name, "cuMemCreate") || !strcmp(name, "cuMemMap")
			   ? CUDA_ERROR_OUT_OF_MEMORY
			   : CUDA_ERROR_LAUNCH_FAILED;
	}
	return CUDA_SUCCESS;
}

/* The result of a release call: done, but a lost context still says so. */
static CUresult released(CUresult r)
{
	return r ? r : sticky;
}

/* ----------------------------------------------------------- device memory */

static int map_at(uintptr_t p)
{
	for (int i = 0; i < maps_end; i++) {
		if (maps[i].h && maps[i].va <= p && p < maps[i].va + maps[i].size)
			return i;
	}
	return -1;
}

static int map_overlap(uintptr_t va, size_t size)
{
	for (int i = 0; i < maps_end; i++) {
		if (maps[i].h && maps[i].va < va + size && va < maps[i].va + maps[i].size)
			return i;
	}
	return -1;
}

static int resv_of(uintptr_t va, size_t size)
{
	for (int i = 0; i < MAX_RESV; i++) {
		if (resv[i].size && resv[i].va <= va && va + size <= resv[i].va + resv[i].size)
			return i;
	}
	return -1;
}

/* Why the device cannot touch [p, p + n) with @need, or NULL when it can. */
static const char *dev_denied(uintptr_t p, size_t n, int need)
{
	while (n) {
		int i = map_at(p);
		size_t k;

		if (i < 0)
			return "unmapped";
		if ((maps[i].prot & need) != need)
			return maps[i].prot ? "read-only" : "mapped without access";
		k = maps[i].va + maps[i].size - p;
		k = k < n ? k : n;
		p += k;
		n -= k;
	}
	return NULL;
}

static struct mock_handle *handle_of(CUmemGenericAllocationHandle handle)
{
	struct mock_handle *h = (struct mock_handle *)(uintptr_t)handle;

	return h && h->magic == HANDLE_MAGIC ? h : NULL;
}

static void handle_put(struct mock_handle *h)
{
	if (h->released && !h->maps && h->fd >= 0) {
		mem_used -= h->size;
		close(h->fd);
		h->fd = -1;
	}
}

static int pinned_of(const void *p, size_t n)
{
	const char *c = p;

	for (int i = 0; i < MAX_PINNED; i++) {
		if (pinned[i].p && pinned[i].p <= c && c + n <= pinned[i].p + pinned[i].size)
			return i;
	}
	return -1;
}

/* ------------------------------------------------------------ device model */

/* Streams in a fixed order, the legacy one first: t = stream_next(NULL) ... */
static struct mock_stream *stream_next(struct mock_stream *t)
{
	return !t ? &legacy : t == &legacy ? streams : t->next_all;
}

static struct mock_stream *stream_of(CUstream s)
{
	/* The per-thread default stream is taken for the legacy one: more
	 * ordering than a GPU gives, never less. libkvmm does not use it. */
	if (!s || s == CU_STREAM_LEGACY || s == CU_STREAM_PER_THREAD)
		return &legacy;
	return (struct mock_stream *)s;
}

static bool stream_ok(const struct mock_stream *s)
{
	for (const struct mock_stream *t = &legacy; t; t = stream_next((struct mock_stream *)t)) {
		if (t == s)
			return !s->destroyed;
	}
	return false;
}

/* A name for messages. */
static const char *stream_name(const struct mock_stream *s, char *buf, size_t len)
{
	if (s->legacy)
		return "the legacy stream";
	snprintf(buf, len, "stream %p%s", (const void *)s, s->blocking ? "" : " (non-blocking)");
	return buf;
}

static struct mock_op *op_new(enum op_kind kind, const char *what)
{
	struct mock_op *op = calloc(1, sizeof(*op));

	if (!op)
		abort();
	op->kind = kind;
	op->what = what;
	return op;
}

/* @op runs only after (s, seq). */
static void op_dep(struct mock_op *op, struct mock_stream *s, uint64_t seq)
{
	struct mock_dep *d;

	if (s->done >= seq)
		return;
	d = realloc(op->deps, (op->nr_deps + 1) * sizeof(*d));
	if (!d)
		abort();
	op->deps = d;
	op->deps[op->nr_deps++] = (struct mock_dep){.s = s, .seq = seq};
}

/* Appends @op to @s, with the legacy stream's implicit ordering. */
static uint64_t op_queue(struct mock_stream *s, struct mock_op *op)
{
	if (s->legacy) {
		for (struct mock_stream *t = streams; t; t = t->next_all) {
			if (t->blocking)
				op_dep(op, t, t->queued);
		}
	} else if (s->blocking) {
		op_dep(op, &legacy, legacy.queued);
	}
	op->seq = ++s->queued;
	op->order = ++order;
	if (s->tail)
		s->tail->next = op;
	else
		s->head = op;
	s->tail = op;
	st.ops_queued++;
	if (++pending > st.max_pending)
		st.max_pending = pending;
	pthread_cond_broadcast(&cond);
	return op->seq;
}

static const struct mock_dep *op_unmet(const struct mock_op *op)
{
	for (unsigned i = 0; i < op->nr_deps; i++) {
		if (op->deps[i].s->done < op->deps[i].seq)
			return &op->deps[i];
	}
	return NULL;
}

static bool op_held(const struct mock_op *op)
{
	return op->kind == OP_HOLD && !op->open;
}

static bool op_ready(const struct mock_op *op)
{
	return op && !op_held(op) && !op_unmet(op);
}

/* Does what @op stands for; a bad address loses the context. */
static void op_exec(struct mock_stream *s, struct mock_op *op)
{
	int need = op->kind == OP_D2H ? PROT_READ : PROT_WRITE;
	const char *why;
	char buf[64];

	if (op->kind > OP_D2D || !op->n)
		return;
	why = dev_denied(op->dev, op->n, need);
	if (!why && op->kind == OP_D2D) {
		why = dev_denied((uintptr_t)op->host, op->n, PROT_READ);
		if (why) {
			op->dev = (uintptr_t)op->host;
			need = PROT_READ;
		}
	}
	if (why) {
		sticky = CUDA_ERROR_ILLEGAL_ADDRESS;
		st.faults++;
		say("illegal address: %s on %s %s device %#lx+%zu, which is %s; the context is "
		    "lost (CUDA_ERROR_ILLEGAL_ADDRESS from now on)",
		    op->what, stream_name(s, buf, sizeof(buf)),
		    need == PROT_READ ? "reads" : "writes", (unsigned long)op->dev, op->n, why);
		return;
	}
	if (op->kind == OP_H2D || op->kind == OP_D2D)
		memmove((void *)op->dev, op->bytes ? op->bytes : op->host, op->n);
	else if (op->kind == OP_D2H)
		memcpy(op->host, (const void *)op->dev, op->n);
	else
		memset((void *)op->dev, op->value, op->n);
}

/* Runs the head op of @s (ready). After a fault work is dropped, not done. */
static void op_run(struct mock_stream *s)
{
	struct mock_op *op = s->head;

	s->head = op->next;
	if (!s->head)
		s->tail = NULL;
	for (struct mock_stream *t = stream_next(NULL); t; t = stream_next(t)) {
		if (t != s && t->head && t->head->order < op->order) {
			st.reordered++;
			break;
		}
	}
	if (!sticky)
		op_exec(s, op);
	s->done = op->seq;
	st.ops_run++;
	pending--;
	free(op->deps);
	free(op->bytes);
	free(op);
	pthread_cond_broadcast(&cond);
}

/* The stream whose head runs next on the way to (s, seq): follows what
 * each head waits for. NULL when (s, seq) is done or behind a hold. */
static struct mock_stream *next_needed(struct mock_stream *s, uint64_t seq)
{
	while (s->done < seq) {
		const struct mock_dep *d = op_unmet(s->head);

		if (!d)
			return op_held(s->head) ? NULL : s;
		s = d->s;
		seq = d->seq;
	}
	return NULL;
}

/* A stream with a head that can run, chosen at random; NULL if none. */
static struct mock_stream *any_ready(void)
{
	struct mock_stream *pick = NULL;
	uint64_t seen = 0;

	for (struct mock_stream *t = stream_next(NULL); t; t = stream_next(t)) {
		if (op_ready(t->head) && rnd(++seen) == 0)
			pick = t;
	}
	return pick;
}

/* Runs what (s, seq) needs, waiting out holds; seeded mode runs other
 * streams' work in between. The context's error, or 0. */
static CUresult wait_for(struct mock_stream *s, uint64_t seq)
{
	while (!sticky && s->done < seq) {
		struct mock_stream *t;

		if (seed && rnd(4) == 0 && (t = any_ready())) {
			op_run(t);
			continue;
		}
		t = next_needed(s, seq);
		if (t)
			op_run(t);
		else
			pthread_cond_wait(&cond, &lock);
	}
	return sticky;
}

/* A query: work toward (s, seq) makes a little progress, but what was not
 * done when asked is reported not ready (seeded mode: maybe done). */
static CUresult query(struct mock_stream *s, uint64_t seq)
{
	uint64_t steps = seed ? rnd(4) : 1;

	if (s->done >= seq)
		return CUDA_SUCCESS;
	for (uint64_t i = 0; i < steps && !sticky; i++) {
		struct mock_stream *t = next_needed(s, seq);

		if (!t)
			break;
		op_run(t);
	}
	if (sticky)
		return sticky;
	return seed && s->done >= seq ? CUDA_SUCCESS : CUDA_ERROR_NOT_READY;
}

/* Runs every op that can run. */
static void run_all(void)
{
	struct mock_stream *t;

	while (!sticky && (t = any_ready()))
		op_run(t);
}

/* Seeded mode: the device runs queued work on its own, after random delays. */
static void *device_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&lock);
	while (!device_stop) {
		struct mock_stream *t;
		uint64_t us;

		if (!pending || sticky) {
			pthread_cond_wait(&cond, &lock);
			continue;
		}
		us = rnd(delay_us + 1);
		pthread_mutex_unlock(&lock);
		usleep((useconds_t)us);
		pthread_mutex_lock(&lock);
		if (!sticky && (t = any_ready()))
			op_run(t);
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

__attribute__((destructor)) static void mock_fini(void)
{
	if (!device_started)
		return;
	pthread_mutex_lock(&lock);
	device_stop = true;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	pthread_join(device_thread, NULL);
}

/* A host call changes device memory: @newprot is what [p, p + n) keeps
 * (0 for nothing). Work still queued that needs more races it. */
static void hazard_dev(const char *call, uintptr_t p, size_t n, int newprot)
{
	char buf[64];

	for (struct mock_stream *t = stream_next(NULL); t; t = stream_next(t)) {
		for (struct mock_op *op = t->head; op; op = op->next) {
			int need = op->kind == OP_D2H ? PROT_READ : PROT_WRITE;
			uintptr_t src = (uintptr_t)op->host;

			/* A device-to-device copy also reads its source. */
			if (op->kind == OP_D2D && (newprot & PROT_READ) != PROT_READ &&
			    src < p + n && p < src + op->n)
				need = PROT_READ;
			else if (op->kind > OP_D2D || !op->n || (newprot & need) == need ||
				 !(op->dev < p + n && p < op->dev + op->n))
				continue;
			st.hazards++;
			say("hazard: %s of device %#lx+%zu while %s queued on %s, not yet run, "
			    "still %s device %#lx+%zu: on a GPU the two race",
			    call, (unsigned long)p, n, op->what, stream_name(t, buf, sizeof(buf)),
			    need == PROT_READ ? "reads" : "writes", (unsigned long)op->dev, op->n);
			return;
		}
	}
}

/* The same for host memory a queued copy still reads or writes. */
static void hazard_host(const char *call, const char *p, size_t n)
{
	char buf[64];

	for (struct mock_stream *t = stream_next(NULL); t; t = stream_next(t)) {
		for (struct mock_op *op = t->head; op; op = op->next) {
			if ((op->kind != OP_H2D && op->kind != OP_D2H) || op->bytes || !op->n ||
			    !(op->host < p + n && p < op->host + op->n))
				continue;
			st.hazards++;
			say("hazard: %s of host %p+%zu while %s queued on %s, not yet run, still "
			    "uses host %p+%zu",
			    call, (const void *)p, n, op->what, stream_name(t, buf, sizeof(buf)),
			    (void *)op->host, op->n);
			return;
		}
	}
}

/* Drops queued work without doing it (a new context). */
static void drop_all(void)
{
	for (struct mock_stream *t = stream_next(NULL); t; t = stream_next(t)) {
		while (t->head) {
			struct mock_op *op = t->head;

			t->head = op->next;
			t->done = op->seq;
			pending--;
			free(op->deps);
			free(op->bytes);
			free(op);
		}
		t->tail = NULL;
	}
	pthread_cond_broadcast(&cond);
}

/* --------------------------------------------------------------- controls */

EXPORT void mock_cuda_hold(void *stream, int held)
{
	struct mock_stream *s = stream_of(stream);

	pthread_mutex_lock(&lock);
	if (held) {
		op_queue(s, op_new(OP_HOLD, "a held kernel"));
	} else {
		for (struct mock_op *op = s->head; op; op = op->next) {
			if (op->kind == OP_HOLD)
				op->open = true;
		}
		pthread_cond_broadcast(&cond);
	}
	pthread_mutex_unlock(&lock);
}

EXPORT void mock_cuda_stats(struct mock_cuda_stats *out)
{
	pthread_mutex_lock(&lock);
	*out = st;
	out->pending = pending;
	pthread_mutex_unlock(&lock);
}

EXPORT void mock_cuda_set_mem(uint64_t bytes)
{
	pthread_mutex_lock(&lock);
	mem_bytes = bytes;
	pthread_mutex_unlock(&lock);
}

EXPORT void mock_cuda_fail(const char *name, uint64_t nth)
{
	pthread_mutex_lock(&lock);
	snprintf(fail_name, sizeof(fail_name), "%s", name);
	fail_nth = nth;
	fail_more = 0;
	fail_here = false;
	pthread_mutex_unlock(&lock);
}

EXPORT void mock_cuda_fail_here(const char *name, uint64_t nth)
{
	pthread_mutex_lock(&lock);
	snprintf(fail_name, sizeof(fail_name), "%s", name);
	fail_nth = nth;
	fail_more = 0;
	fail_here = nth != 0;
	fail_thread = pthread_self();
	pthread_mutex_unlock(&lock);
}

EXPORT void mock_cuda_fail_run(const char *name, uint64_t nth, uint64_t count)
{
	pthread_mutex_lock(&lock);
	snprintf(fail_name, sizeof(fail_name), "%s", name);
	fail_nth = count ? nth : 0;
	fail_more = count ? count - 1 : 0;
	fail_here = false;
	pthread_mutex_unlock(&lock);
}

EXPORT void mock_cuda_refuse_read_only(int on)
{
	pthread_mutex_lock(&lock);
	refuse_read_only = on != 0;
	pthread_mutex_unlock(&lock);
}

EXPORT void mock_cuda_capture(int on)
{
	pthread_mutex_lock(&lock);
	capturing = on != 0;
	pthread_mutex_unlock(&lock);
}

EXPORT void mock_cuda_set_attr(int attr, int value)
{
	pthread_mutex_lock(&lock);
	attrs_init();
	if (attr > 0 && attr < CU_DEVICE_ATTRIBUTE_MAX)
		attrs[attr] = value;
	pthread_mutex_unlock(&lock);
}

static int mock_kernel(void *stream, enum op_kind kind, void *host, const void *dev,
		       const void *src, size_t n)
{
	struct mock_stream *s = stream_of(stream);
	struct mock_op *op;
	int r;

	pthread_mutex_lock(&lock);
	r = sticky;
	if (!r && !stream_ok(s))
		r = CUDA_ERROR_INVALID_HANDLE;
	if (!r && n) {
		op = op_new(kind, kind == OP_H2D ? "a kernel's write" : "a kernel's read");
		op->dev = (uintptr_t)dev;
		op->n = n;
		op->host = host;
		if (src) {
			op->bytes = malloc(n);
			if (!op->bytes)
				abort();
			memcpy(op->bytes, src, n);
		}
		op_queue(s, op);
	}
	pthread_mutex_unlock(&lock);
	return r;
}

EXPORT int mock_cuda_kernel_write(void *stream, void *dst, const void *src, size_t n)
{
	return mock_kernel(stream, OP_H2D, NULL, dst, src, n);
}

EXPORT int mock_cuda_kernel_read(void *stream, void *dst, const void *src, size_t n)
{
	return mock_kernel(stream, OP_D2H, dst, src, NULL, n);
}

EXPORT int mock_cuda_sync(void *stream)
{
	struct mock_stream *s = stream_of(stream);
	int r;

	pthread_mutex_lock(&lock);
	r = wait_for(s, s->queued);
	pthread_mutex_unlock(&lock);
	return r;
}

static struct mock_stream *stream_new(unsigned int flags)
{
	struct mock_stream *s = calloc(1, sizeof(*s));

	if (!s)
		abort();
	s->blocking = !(flags & CU_STREAM_NON_BLOCKING);
	s->next_all = streams;
	streams = s;
	return s;
}

EXPORT void *mock_cuda_stream(unsigned int flags)
{
	struct mock_stream *s;

	pthread_mutex_lock(&lock);
	s = stream_new(flags);
	pthread_mutex_unlock(&lock);
	return s;
}

EXPORT void mock_cuda_idle(void)
{
	pthread_mutex_lock(&lock);
	run_all();
	pthread_mutex_unlock(&lock);
}

EXPORT void mock_cuda_reset(void)
{
	pthread_mutex_lock(&lock);
	drop_all();
	sticky = CUDA_SUCCESS;
	capturing = false;
	st.rule_violations = st.faults = st.hazards = 0;
	pthread_mutex_unlock(&lock);
}

/* ------------------------------------------------------- init and devices */

EXPORT CUresult cuDriverGetVersion(int *v)
{
	*v = CUDA_VERSION;
	return CUDA_SUCCESS;
}

CUresult cuInit(unsigned int flags)
{
	const char *g = getenv("MOCK_CUDA_GRAN"), *m = getenv("MOCK_CUDA_MEM_BYTES");
	const char *sd = getenv("MOCK_CUDA_SEED"), *dl = getenv("MOCK_CUDA_DELAY_US");
	const char *vmm = getenv("MOCK_CUDA_VMM"), *cc = getenv("MOCK_CUDA_CC");
	const char *ro = getenv("MOCK_CUDA_READ_ONLY");
	CUresult r = CUDA_SUCCESS;

	pthread_mutex_lock(&lock);
	if (flags) {
		r = violation(CUDA_ERROR_INVALID_VALUE, "cuInit flags %u, must be 0", flags);
		goto out;
	}
	if (inited)
		goto out;
	attrs_init();
	if (g)
		gran = strtoull(g, NULL, 0);
	if (m)
		mem_bytes = strtoull(m, NULL, 0);
	if (dl)
		delay_us = strtoull(dl, NULL, 0);
	if (vmm)
		attrs[CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED] = atoi(vmm);
	if (ro && !strcmp(ro, "0"))
		refuse_read_only = true;
	if (cc) {
		int major = 0, minor = 0;

		if (sscanf(cc, "%d.%d", &major, &minor) >= 1) {
			attrs[CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR] = major;
			attrs[CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR] = minor;
		}
	}
	if (!gran || gran % (uint64_t)sysconf(_SC_PAGESIZE)) {
		say("MOCK_CUDA_GRAN=%s is not a multiple of the host page", g);
		abort();
	}
	seed = sd ? strtoull(sd, NULL, 0) : 0;
	rng = seed ? seed : 0x9E3779B97F4A7C15ULL;
	if (seed) {
		say("seeded mode, MOCK_CUDA_SEED=%llu: work completes late and out of order "
		    "across streams",
		    (unsigned long long)seed);
		device_started = !pthread_create(&device_thread, NULL, device_main, NULL);
	}
	inited = true;
out:
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuGetErrorString(CUresult e, const char **s)
{
	static const struct {
		CUresult e;
		const char *s;
	} names[] = {
	    {CUDA_SUCCESS, "no error"},
	    {CUDA_ERROR_INVALID_VALUE, "invalid argument"},
	    {CUDA_ERROR_OUT_OF_MEMORY, "out of memory"},
	    {CUDA_ERROR_NOT_INITIALIZED, "initialization error"},
	    {CUDA_ERROR_NOT_SUPPORTED, "operation not supported"},
	    {CUDA_ERROR_INVALID_DEVICE, "invalid device ordinal"},
	    {CUDA_ERROR_INVALID_CONTEXT, "invalid device context"},
	    {CUDA_ERROR_INVALID_HANDLE, "invalid resource handle"},
	    {CUDA_ERROR_NOT_READY, "device not ready"},
	    {CUDA_ERROR_ILLEGAL_ADDRESS, "an illegal memory access was encountered"},
	    {CUDA_ERROR_LAUNCH_FAILED, "unspecified launch failure"},
	    {CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED, "part or all of the requested memory "
							"range is already mapped"},
	    {CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED, "pointer does not correspond to a "
						    "registered memory region"},
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (names[i].e == e) {
			*s = names[i].s;
			return CUDA_SUCCESS;
		}
	}
	*s = NULL;
	return CUDA_ERROR_INVALID_VALUE;
}

CUresult cuDeviceGet(CUdevice *d, int ordinal)
{
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuDeviceGet", 0);
	if (!r && ordinal != 0)
		r = CUDA_ERROR_INVALID_DEVICE;
	if (!r)
		*d = 0;
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuDeviceGetCount(int *n)
{
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuDeviceGetCount", 0);
	if (!r)
		*n = 1;
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuDeviceGetAttribute(int *v, CUdevice_attribute a, CUdevice d)
{
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuDeviceGetAttribute", 0);
	if (!r && d != 0)
		r = CUDA_ERROR_INVALID_DEVICE;
	if (!r && (a <= 0 || a >= CU_DEVICE_ATTRIBUTE_MAX))
		r = CUDA_ERROR_INVALID_VALUE;
	if (!r)
		*v = attrs[a];
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuDeviceGetName(char *name, int len, CUdevice d)
{
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuDeviceGetName", 0);
	if (!r && d != 0)
		r = CUDA_ERROR_INVALID_DEVICE;
	if (!r && len > 0)
		snprintf(name, (size_t)len, "kvmm CUDA stand-in (host memory)");
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuDeviceTotalMem(size_t *bytes, CUdevice d)
{
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuDeviceTotalMem", 0);
	if (!r && d != 0)
		r = CUDA_ERROR_INVALID_DEVICE;
	if (!r)
		*bytes = mem_bytes;
	pthread_mutex_unlock(&lock);
	return r;
}

/* Free and total device memory (cuMemCreate handles count as used). */
CUresult cuMemGetInfo(size_t *free_bytes, size_t *total)
{
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuMemGetInfo", NEED_CTX);
	if (!r) {
		*free_bytes = mem_used < mem_bytes ? mem_bytes - mem_used : 0;
		*total = mem_bytes;
	}
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuDeviceGetPCIBusId(char *id, int len, CUdevice d)
{
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuDeviceGetPCIBusId", 0);
	if (!r && d != 0)
		r = CUDA_ERROR_INVALID_DEVICE;
	if (!r && len > 0)
		snprintf(id, (size_t)len, "0000:00:00.0");
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuDevicePrimaryCtxRetain(CUcontext *c, CUdevice d)
{
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuDevicePrimaryCtxRetain", 0);
	if (!r && d != 0)
		r = CUDA_ERROR_INVALID_DEVICE;
	if (!r) {
		ctx_refs++;
		*c = (CUcontext)&ctx_dummy;
	}
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuDevicePrimaryCtxRelease(CUdevice d)
{
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuDevicePrimaryCtxRelease", RELEASES);
	if (!r && d != 0)
		r = CUDA_ERROR_INVALID_DEVICE;
	if (!r && !ctx_refs)
		r = violation(CUDA_ERROR_INVALID_CONTEXT, "cuDevicePrimaryCtxRelease of a primary "
							  "context nobody retains");
	if (!r)
		ctx_refs--;
	pthread_mutex_unlock(&lock);
	return released(r);
}

CUresult cuCtxPushCurrent(CUcontext c)
{
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuCtxPushCurrent", RELEASES);
	if (!r && c != (CUcontext)&ctx_dummy)
		r = violation(CUDA_ERROR_INVALID_CONTEXT, "cuCtxPushCurrent of an unknown context");
	if (!r && !ctx_refs)
		r = violation(CUDA_ERROR_INVALID_CONTEXT,
			      "cuCtxPushCurrent of a primary context nobody retains");
	if (!r)
		ctx_depth++;
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuCtxPopCurrent(CUcontext *c)
{
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuCtxPopCurrent", RELEASES);
	if (!r && !ctx_depth)
		r = violation(CUDA_ERROR_INVALID_CONTEXT,
			      "cuCtxPopCurrent with no current context");
	if (!r) {
		ctx_depth--;
		if (c)
			*c = (CUcontext)&ctx_dummy;
	}
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuThreadExchangeStreamCaptureMode(CUstreamCaptureMode *mode)
{
	CUstreamCaptureMode old;
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuThreadExchangeStreamCaptureMode", 0);
	if (!r && (!mode || *mode > CU_STREAM_CAPTURE_MODE_RELAXED))
		r = violation(CUDA_ERROR_INVALID_VALUE,
			      "cuThreadExchangeStreamCaptureMode of mode %d",
			      mode ? (int)*mode : -1);
	if (!r) {
		old = capture_mode;
		capture_mode = *mode;
		*mode = old;
	}
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuStreamGetCtx(CUstream hs, CUcontext *c)
{
	struct mock_stream *s = stream_of(hs);
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuStreamGetCtx", 0);
	if (!r && !stream_ok(s))
		r = CUDA_ERROR_INVALID_HANDLE; /* asking is allowed: not a rule broken */
	if (!r)
		*c = (CUcontext)&ctx_dummy;
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuCtxSynchronize(void)
{
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuCtxSynchronize", NEED_CTX | SYNCS);
	for (struct mock_stream *t = stream_next(NULL); t && !r; t = stream_next(t))
		r = wait_for(t, t->queued);
	pthread_mutex_unlock(&lock);
	return r;
}

/* ---------------------------------------------------------- virtual memory */

static CUresult prop_check(const char *call, const CUmemAllocationProp *p)
{
	if (!p || p->type != CU_MEM_ALLOCATION_TYPE_PINNED ||
	    p->location.type != CU_MEM_LOCATION_TYPE_DEVICE)
		return violation(CUDA_ERROR_INVALID_VALUE,
				 "%s: only pinned device allocations are modelled", call);
	if (p->location.id != 0)
		return violation(CUDA_ERROR_INVALID_DEVICE, "%s: no device %d", call,
				 p->location.id);
	if (!attrs[CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED])
		return CUDA_ERROR_NOT_SUPPORTED; /* the device has no VMM */
	return CUDA_SUCCESS;
}

CUresult cuMemGetAllocationGranularity(size_t *g, const CUmemAllocationProp *p,
				       CUmemAllocationGranularity_flags f)
{
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuMemGetAllocationGranularity", 0);
	if (!r)
		r = prop_check("cuMemGetAllocationGranularity", p);
	if (!r && f != CU_MEM_ALLOC_GRANULARITY_MINIMUM &&
	    f != CU_MEM_ALLOC_GRANULARITY_RECOMMENDED)
		r = violation(CUDA_ERROR_INVALID_VALUE, "cuMemGetAllocationGranularity: option %d",
			      (int)f);
	if (!r)
		*g = gran;
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t align, CUdeviceptr addr,
			     unsigned long long flags)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), al;
	CUresult r;
	uintptr_t a;
	char *p;
	int i;

	(void)addr; /* a hint */
	pthread_mutex_lock(&lock);
	r = begin("cuMemAddressReserve", 0);
	if (!r && !attrs[CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED])
		r = CUDA_ERROR_NOT_SUPPORTED;
	if (!r && flags)
		r = violation(CUDA_ERROR_INVALID_VALUE, "cuMemAddressReserve flags %llu, must be 0",
			      flags);
	if (!r && (!size || size % page))
		r = violation(CUDA_ERROR_INVALID_VALUE,
			      "cuMemAddressReserve size %zu is not a multiple of the host page",
			      size);
	if (!r && (align & (align - 1)))
		r = violation(CUDA_ERROR_INVALID_VALUE,
			      "cuMemAddressReserve alignment %zu is not a power of two", align);
	for (i = 0; !r && i < MAX_RESV && resv[i].size; i++)
		;
	if (!r && i == MAX_RESV)
		r = CUDA_ERROR_OUT_OF_MEMORY;
	if (r)
		goto out;
	/* Chunks are mapped at multiples of the granularity from the start. */
	al = ((align > gran ? align : gran) + gran - 1) / gran * gran;
	p = mmap(NULL, size + al, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		r = CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	a = ((uintptr_t)p + al - 1) / al * al;
	if (a > (uintptr_t)p)
		munmap(p, a - (uintptr_t)p);
	munmap((char *)a + size, (uintptr_t)p + al - a);
	resv[i] = (struct mock_resv){.va = a, .size = size};
	*ptr = a;
out:
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size)
{
	CUresult r;
	int i;

	pthread_mutex_lock(&lock);
	r = begin("cuMemAddressFree", RELEASES);
	for (i = 0; !r && i < MAX_RESV; i++) {
		if (resv[i].size && resv[i].va == ptr)
			break;
	}
	if (!r && (i == MAX_RESV || resv[i].size != size))
		r = violation(CUDA_ERROR_INVALID_VALUE,
			      "cuMemAddressFree(%#llx, %zu) is not a reservation as "
			      "cuMemAddressReserve returned it",
			      (unsigned long long)ptr, size);
	if (!r && map_overlap(ptr, size) >= 0)
		r = violation(CUDA_ERROR_INVALID_VALUE,
			      "cuMemAddressFree of a reservation that still has mappings");
	if (!r) {
		hazard_dev("cuMemAddressFree", ptr, size, 0);
		munmap((void *)ptr, size);
		resv[i].size = 0;
	}
	pthread_mutex_unlock(&lock);
	return released(r);
}

CUresult cuMemCreate(CUmemGenericAllocationHandle *out, size_t size,
		     const CUmemAllocationProp *prop, unsigned long long flags)
{
	struct mock_handle *h;
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuMemCreate", 0);
	if (!r)
		r = prop_check("cuMemCreate", prop);
	if (!r && flags)
		r = violation(CUDA_ERROR_INVALID_VALUE, "cuMemCreate flags %llu, must be 0", flags);
	if (!r && (!size || size % gran))
		r = violation(CUDA_ERROR_INVALID_VALUE,
			      "cuMemCreate size %zu is not a multiple of the %llu-byte granularity",
			      size, (unsigned long long)gran);
	if (!r && mem_used + size > mem_bytes)
		r = CUDA_ERROR_OUT_OF_MEMORY;
	if (r)
		goto out;
	h = calloc(1, sizeof(*h));
	if (!h)
		abort();
	h->magic = HANDLE_MAGIC;
	h->fd = memfd_create("mock-cuda", MFD_CLOEXEC);
	h->size = size;
	if (h->fd < 0 || ftruncate(h->fd, (off_t)size))
		abort();
	h->next_all = handles;
	handles = h;
	mem_used += size;
	st.creates++;
	st.live++;
	*out = (CUmemGenericAllocationHandle)(uintptr_t)h;
out:
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuMemRelease(CUmemGenericAllocationHandle handle)
{
	struct mock_handle *h = handle_of(handle);
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuMemRelease", RELEASES);
	if (!r && (!h || h->released))
		r = violation(CUDA_ERROR_INVALID_VALUE, "cuMemRelease of a handle %s",
			      h ? "already released" : "cuMemCreate never returned");
	if (!r) {
		h->released = true;
		st.releases++;
		st.live--;
		/* The driver allows it (the memory lives until the last unmap);
		 * a caller that still reads through the mapping usually did not
		 * mean to, so it is counted. */
		if (h->maps)
			st.released_mapped++;
		handle_put(h);
	}
	pthread_mutex_unlock(&lock);
	return released(r);
}

CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle,
		  unsigned long long flags)
{
	struct mock_handle *h = handle_of(handle);
	CUresult r;
	int i;

	pthread_mutex_lock(&lock);
	r = begin("cuMemMap", 0);
	if (!r && (!h || h->released))
		r = violation(CUDA_ERROR_INVALID_VALUE, "cuMemMap of a handle %s",
			      h ? "already released" : "cuMemCreate never returned");
	if (!r && flags)
		r = violation(CUDA_ERROR_INVALID_VALUE, "cuMemMap flags %llu, must be 0", flags);
	if (!r && offset)
		r = violation(CUDA_ERROR_INVALID_VALUE,
			      "cuMemMap offset %zu: the driver takes only 0", offset);
	if (!r && (!size || ptr % gran || size % gran))
		r = violation(CUDA_ERROR_INVALID_VALUE,
			      "cuMemMap(%#llx, %zu): address and size must be multiples of the "
			      "%llu-byte granularity",
			      (unsigned long long)ptr, size, (unsigned long long)gran);
	if (!r && size > h->size)
		r = violation(CUDA_ERROR_INVALID_VALUE,
			      "cuMemMap of %zu bytes of a %zu-byte allocation", size, h->size);
	if (!r && resv_of(ptr, size) < 0)
		r = violation(CUDA_ERROR_INVALID_VALUE,
			      "cuMemMap(%#llx, %zu) outside every reservation",
			      (unsigned long long)ptr, size);
	if (!r && map_overlap(ptr, size) >= 0)
		r = violation(CUDA_ERROR_INVALID_VALUE,
			      "cuMemMap(%#llx, %zu) over VA that is already mapped",
			      (unsigned long long)ptr, size);
	for (i = 0; !r && i < MAX_MAPS && maps[i].h; i++)
		;
	if (!r && i == MAX_MAPS)
		r = CUDA_ERROR_OUT_OF_MEMORY;
	if (!r &&
	    mmap((void *)ptr, size, PROT_NONE, MAP_SHARED | MAP_FIXED, h->fd, 0) == MAP_FAILED)
		r = CUDA_ERROR_OUT_OF_MEMORY;
	if (!r) {
		maps[i] = (struct mock_map){.va = ptr, .size = size, .prot = 0, .h = h};
		if (i >= maps_end)
			maps_end = i + 1;
		h->maps++;
		st.maps++;
	}
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuMemUnmap(CUdeviceptr ptr, size_t size)
{
	CUresult r;
	int i;

	pthread_mutex_lock(&lock);
	r = begin("cuMemUnmap", RELEASES);
	i = map_overlap(ptr, size);
	if (!r && (i < 0 || maps[i].va != ptr || maps[i].size != size))
		r = violation(CUDA_ERROR_INVALID_VALUE,
			      "cuMemUnmap(%#llx, %zu) is not exactly one earlier mapping",
			      (unsigned long long)ptr, size);
	if (!r) {
		hazard_dev("cuMemUnmap", ptr, size, 0);
		mmap((void *)ptr, size, PROT_NONE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
		maps[i].h->maps--;
		handle_put(maps[i].h);
		maps[i].h = NULL;
		st.unmaps++;
	}
	pthread_mutex_unlock(&lock);
	return released(r);
}

CUresult cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc, size_t count)
{
	size_t covered = 0;
	int prot = 0;
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuMemSetAccess", 0);
	if (!r && (!count || !desc))
		r = violation(CUDA_ERROR_INVALID_VALUE, "cuMemSetAccess with no descriptor");
	for (size_t k = 0; !r && k < count; k++) {
		if (desc[k].location.type != CU_MEM_LOCATION_TYPE_DEVICE || desc[k].location.id)
			r = violation(CUDA_ERROR_INVALID_DEVICE,
				      "cuMemSetAccess for a location other than device 0");
		else if (desc[k].flags == CU_MEM_ACCESS_FLAGS_PROT_READWRITE)
			prot = PROT_READ | PROT_WRITE;
		else if (desc[k].flags == CU_MEM_ACCESS_FLAGS_PROT_READ && refuse_read_only)
			r = CUDA_ERROR_NOT_SUPPORTED; /* a driver without read-only mappings */
		else if (desc[k].flags == CU_MEM_ACCESS_FLAGS_PROT_READ)
			prot = PROT_READ;
		else if (desc[k].flags == CU_MEM_ACCESS_FLAGS_PROT_NONE)
			prot = PROT_NONE;
		else
			r = violation(CUDA_ERROR_INVALID_VALUE, "cuMemSetAccess flags %d",
				      (int)desc[k].flags);
	}
	for (int i = 0; !r && i < maps_end; i++) {
		if (maps[i].h && maps[i].va >= ptr && maps[i].va + maps[i].size <= ptr + size)
			covered += maps[i].size;
	}
	if (!r && covered != size) /* whole mappings, every byte mapped */
		r = violation(CUDA_ERROR_INVALID_VALUE,
			      "cuMemSetAccess(%#llx, %zu) over VA that is not wholly mapped",
			      (unsigned long long)ptr, size);
	if (!r) {
		hazard_dev("cuMemSetAccess", ptr, size, prot);
		for (int i = 0; i < maps_end; i++) {
			if (maps[i].h && maps[i].va >= ptr &&
			    maps[i].va + maps[i].size <= ptr + size)
				maps[i].prot = prot;
		}
		if (mprotect((void *)ptr, size, prot))
			abort();
		st.set_access++;
	}
	pthread_mutex_unlock(&lock);
	return r;
}

/* ------------------------------------------------------ copies and memsets */

/* Queues a copy or memset on @hs; the lock is held and begin() passed. */
static CUresult queue_op(const char *call, CUstream hs, enum op_kind kind, uintptr_t dev,
			 void *host, size_t n, unsigned char value)
{
	struct mock_stream *s = stream_of(hs);
	struct mock_op *op;

	if (!stream_ok(s))
		return violation(CUDA_ERROR_INVALID_HANDLE, "%s on a stream that is not there",
				 call);
	if (!n)
		return CUDA_SUCCESS;
	op = op_new(kind, call);
	op->dev = dev;
	op->n = n;
	op->host = host;
	op->value = value;
	op_queue(s, op);
	return CUDA_SUCCESS;
}

static CUresult queue_copy(const char *call, CUstream hs, enum op_kind kind, uintptr_t dev,
			   void *host, size_t n, unsigned char value)
{
	CUresult r = begin(call, NEED_CTX);

	return r ? r : queue_op(call, hs, kind, dev, host, n, value);
}

CUresult cuMemsetD8Async(CUdeviceptr ptr, unsigned char v, size_t n, CUstream s)
{
	CUresult r;

	pthread_mutex_lock(&lock);
	r = queue_copy("cuMemsetD8Async", s, OP_MEMSET, ptr, NULL, n, v);
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuMemcpyDtoHAsync(void *dst, CUdeviceptr src, size_t n, CUstream s)
{
	CUresult r;

	pthread_mutex_lock(&lock);
	r = queue_copy("cuMemcpyDtoHAsync", s, OP_D2H, src, dst, n, 0);
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuMemcpyDtoDAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s)
{
	CUresult r;

	pthread_mutex_lock(&lock);
	r = queue_copy("cuMemcpyDtoDAsync", s, OP_D2D, dst, (void *)(uintptr_t)src, n, 0);
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuMemcpyHtoDAsync(CUdeviceptr dst, const void *src, size_t n, CUstream s)
{
	CUresult r;

	pthread_mutex_lock(&lock);
	r = queue_copy("cuMemcpyHtoDAsync", s, OP_H2D, dst, (void *)src, n, 0);
	pthread_mutex_unlock(&lock);
	return r;
}

/* Device memset: asynchronous to the host, on the legacy stream. */
CUresult cuMemsetD8(CUdeviceptr ptr, unsigned char v, size_t n)
{
	CUresult r;

	pthread_mutex_lock(&lock);
	r = queue_copy("cuMemsetD8", NULL, OP_MEMSET, ptr, NULL, n, v);
	pthread_mutex_unlock(&lock);
	return r;
}

/* Returns once the copy is done. */
CUresult cuMemcpyDtoH(void *dst, CUdeviceptr src, size_t n)
{
	CUresult r;

	pthread_mutex_lock(&lock);
	r = queue_copy("cuMemcpyDtoH", NULL, OP_D2H, src, dst, n, 0);
	if (!r)
		r = wait_for(&legacy, legacy.queued);
	pthread_mutex_unlock(&lock);
	return r;
}

/* Pinned source: returns once done. Pageable: the stream's earlier work
 * first, then the bytes are staged and the call returns before the DMA. */
CUresult cuMemcpyHtoD(CUdeviceptr dst, const void *src, size_t n)
{
	bool pin;
	CUresult r;

	pthread_mutex_lock(&lock);
	pin = pinned_of(src, n) >= 0;
	r = begin("cuMemcpyHtoD", NEED_CTX | SYNCS);
	if (!r && !pin)
		r = wait_for(&legacy, legacy.queued);
	if (!r)
		r = queue_op("cuMemcpyHtoD", NULL, OP_H2D, dst, (void *)src, n, 0);
	if (!r && !pin && n) {
		legacy.tail->bytes = malloc(n);
		if (!legacy.tail->bytes)
			abort();
		memcpy(legacy.tail->bytes, src, n);
	}
	if (!r && pin)
		r = wait_for(&legacy, legacy.queued);
	pthread_mutex_unlock(&lock);
	return r;
}

/* ------------------------------------------------------------ host memory */

static int pinned_add(void *p, size_t n, bool alloc)
{
	for (int i = 0; i < MAX_PINNED; i++) {
		if (!pinned[i].p) {
			pinned[i] = (struct mock_pinned){.p = p, .size = n, .alloc = alloc};
			return 0;
		}
	}
	return -1;
}

CUresult cuMemHostAlloc(void **p, size_t n, unsigned int flags)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	CUresult r;

	(void)flags;
	pthread_mutex_lock(&lock);
	r = begin("cuMemHostAlloc", NEED_CTX | SYNCS);
	if (!r && (!n || posix_memalign(p, page, (n + page - 1) / page * page)))
		r = CUDA_ERROR_OUT_OF_MEMORY;
	if (!r && pinned_add(*p, n, true)) {
		free(*p);
		r = CUDA_ERROR_OUT_OF_MEMORY;
	}
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuMemFreeHost(void *p)
{
	CUresult r;
	int i;

	pthread_mutex_lock(&lock);
	r = begin("cuMemFreeHost", NEED_CTX | RELEASES);
	i = pinned_of(p, 1);
	if (!r && (i < 0 || pinned[i].p != p || !pinned[i].alloc))
		r = violation(CUDA_ERROR_INVALID_VALUE,
			      "cuMemFreeHost(%p) of memory cuMemHostAlloc did not return", p);
	if (!r) {
		hazard_host("cuMemFreeHost", pinned[i].p, pinned[i].size);
		pinned[i].p = NULL;
		free(p);
	}
	pthread_mutex_unlock(&lock);
	return released(r);
}

CUresult cuMemHostRegister(void *p, size_t n, unsigned int flags)
{
	CUresult r;

	(void)flags;
	pthread_mutex_lock(&lock);
	r = begin("cuMemHostRegister", NEED_CTX | SYNCS);
	if (!r && !n)
		r = violation(CUDA_ERROR_INVALID_VALUE, "cuMemHostRegister of 0 bytes");
	for (int i = 0; !r && i < MAX_PINNED; i++) {
		if (pinned[i].p && pinned[i].p < (char *)p + n &&
		    (char *)p < pinned[i].p + pinned[i].size)
			r = violation(CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED,
				      "cuMemHostRegister(%p, %zu) over pinned memory", p, n);
	}
	if (!r && pinned_add(p, n, false))
		r = CUDA_ERROR_OUT_OF_MEMORY;
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuMemHostUnregister(void *p)
{
	CUresult r;
	int i;

	pthread_mutex_lock(&lock);
	r = begin("cuMemHostUnregister", NEED_CTX | RELEASES);
	i = pinned_of(p, 1);
	if (!r && (i < 0 || pinned[i].p != p || pinned[i].alloc))
		r = violation(CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED,
			      "cuMemHostUnregister(%p) is not a base cuMemHostRegister was given",
			      p);
	if (!r) {
		hazard_host("cuMemHostUnregister", pinned[i].p, pinned[i].size);
		pinned[i].p = NULL;
	}
	pthread_mutex_unlock(&lock);
	return released(r);
}

/* ------------------------------------------------------- streams and events */

CUresult cuStreamCreate(CUstream *s, unsigned int flags)
{
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuStreamCreate", NEED_CTX);
	if (!r && (flags & ~(unsigned int)CU_STREAM_NON_BLOCKING))
		r = violation(CUDA_ERROR_INVALID_VALUE, "cuStreamCreate flags %#x", flags);
	if (!r) {
		*s = (CUstream)stream_new(flags);
		st.streams_live++;
	}
	pthread_mutex_unlock(&lock);
	return r;
}

/* Work still queued completes; the stream is gone for new work. */
CUresult cuStreamDestroy(CUstream hs)
{
	struct mock_stream *s = stream_of(hs);
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuStreamDestroy", NEED_CTX | RELEASES);
	if (!r && (s->legacy || !stream_ok(s)))
		r = violation(CUDA_ERROR_INVALID_HANDLE, "cuStreamDestroy of %s",
			      s->legacy ? "the legacy stream" : "a stream that is not there");
	if (!r) {
		s->destroyed = true;
		st.streams_live--;
	}
	pthread_mutex_unlock(&lock);
	return released(r);
}

CUresult cuStreamSynchronize(CUstream hs)
{
	struct mock_stream *s = stream_of(hs);
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuStreamSynchronize", NEED_CTX | SYNCS);
	if (!r && !stream_ok(s))
		r = violation(CUDA_ERROR_INVALID_HANDLE, "cuStreamSynchronize of a stream that is "
							 "not there");
	if (!r) {
		st.stream_syncs++;
		r = wait_for(s, s->queued);
	}
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuStreamQuery(CUstream hs)
{
	struct mock_stream *s = stream_of(hs);
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuStreamQuery", NEED_CTX);
	if (!r && !stream_ok(s))
		r = violation(CUDA_ERROR_INVALID_HANDLE, "cuStreamQuery of a stream that is not "
							 "there");
	if (!r)
		r = query(s, s->queued);
	pthread_mutex_unlock(&lock);
	return r;
}

static struct mock_event *event_of(CUevent ev)
{
	struct mock_event *e = (struct mock_event *)ev;

	return e && e->magic == EVENT_MAGIC ? e : NULL;
}

CUresult cuEventCreate(CUevent *ev, unsigned int flags)
{
	struct mock_event *e;
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuEventCreate", NEED_CTX);
	if (!r && (flags & ~(unsigned int)(CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING |
					   CU_EVENT_INTERPROCESS)))
		r = violation(CUDA_ERROR_INVALID_VALUE, "cuEventCreate flags %#x", flags);
	if (!r) {
		/* Destroyed events are kept and reused, so a stale one is caught. */
		e = free_events;
		if (e)
			free_events = e->next_free;
		else if (!(e = malloc(sizeof(*e))))
			abort();
		*e = (struct mock_event){.magic = EVENT_MAGIC, .flags = flags};
		*ev = (CUevent)e;
		st.events_live++;
	}
	pthread_mutex_unlock(&lock);
	return r;
}

/* May be destroyed before it completes; the work still runs. */
CUresult cuEventDestroy(CUevent ev)
{
	struct mock_event *e = event_of(ev);
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuEventDestroy", NEED_CTX | RELEASES);
	if (!r && !e)
		r = violation(CUDA_ERROR_INVALID_HANDLE, "cuEventDestroy of an event that is not "
							 "there");
	if (!r) {
		e->magic = 0;
		e->next_free = free_events;
		free_events = e;
		st.events_live--;
	}
	pthread_mutex_unlock(&lock);
	return released(r);
}

CUresult cuEventRecord(CUevent ev, CUstream hs)
{
	struct mock_event *e = event_of(ev);
	struct mock_stream *s = stream_of(hs);
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuEventRecord", NEED_CTX);
	if (!r && (!e || !stream_ok(s)))
		r = violation(CUDA_ERROR_INVALID_HANDLE, "cuEventRecord of %s",
			      e ? "a stream that is not there" : "an event that is not there");
	if (!r) {
		e->seq = op_queue(s, op_new(OP_RECORD, "cuEventRecord"));
		e->s = s;
	}
	pthread_mutex_unlock(&lock);
	return r;
}

/* Later work on @hs waits for what @ev captured when this is called. */
CUresult cuStreamWaitEvent(CUstream hs, CUevent ev, unsigned int flags)
{
	struct mock_event *e = event_of(ev);
	struct mock_stream *s = stream_of(hs);
	struct mock_op *op;
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuStreamWaitEvent", NEED_CTX);
	if (!r && (!e || !stream_ok(s)))
		r = violation(CUDA_ERROR_INVALID_HANDLE, "cuStreamWaitEvent on %s",
			      e ? "a stream that is not there" : "an event that is not there");
	if (!r && flags != CU_EVENT_WAIT_DEFAULT)
		r = violation(CUDA_ERROR_INVALID_VALUE,
			      "cuStreamWaitEvent flags %#x outside stream capture", flags);
	if (!r && e->s && e->s->done < e->seq) {
		op = op_new(OP_WAIT, "cuStreamWaitEvent");
		op_dep(op, e->s, e->seq);
		op_queue(s, op);
	}
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuEventQuery(CUevent ev)
{
	struct mock_event *e = event_of(ev);
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuEventQuery", NEED_CTX | SYNCS);
	if (!r && !e)
		r = violation(CUDA_ERROR_INVALID_HANDLE, "cuEventQuery of an event that is not "
							 "there");
	if (!r && e->s) /* never recorded: nothing to wait for */
		r = query(e->s, e->seq);
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuEventSynchronize(CUevent ev)
{
	struct mock_event *e = event_of(ev);
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuEventSynchronize", NEED_CTX | SYNCS);
	if (!r && !e)
		r = violation(CUDA_ERROR_INVALID_HANDLE, "cuEventSynchronize of an event that is "
							 "not there");
	if (!r) {
		st.event_syncs++;
		if (e->s && e->s->done < e->seq && !(e->flags & CU_EVENT_BLOCKING_SYNC)) {
			st.spin_waits++;
			say("cuEventSynchronize of an event without CU_EVENT_BLOCKING_SYNC whose "
			    "work is still queued: the host spins a core until it passes");
		}
		if (e->s)
			r = wait_for(e->s, e->seq);
	}
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult cuEventElapsedTime(float *ms, CUevent a, CUevent b)
{
	struct mock_event *ea = event_of(a), *eb = event_of(b);
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuEventElapsedTime", NEED_CTX);
	if (!r && (!ea || !eb || !ea->s || !eb->s || (ea->flags & CU_EVENT_DISABLE_TIMING) ||
		   (eb->flags & CU_EVENT_DISABLE_TIMING)))
		r = violation(CUDA_ERROR_INVALID_HANDLE,
			      "cuEventElapsedTime of events unrecorded or without timing");
	if (!r && (ea->s->done < ea->seq || eb->s->done < eb->seq))
		r = CUDA_ERROR_NOT_READY;
	if (!r)
		*ms = 0;
	pthread_mutex_unlock(&lock);
	return r;
}

/* ---------------------------------------------------- classic allocations */

/*
 * cuMemAlloc and cuMemAllocAsync: what a program gets without VMM, built
 * on the calls above (one reservation, one handle, mapped read-write), so
 * the same faults and hazards apply. cuMemFree does not wait for queued
 * work (a runtime's cudaFree synchronizes first); cuMemFreeAsync frees
 * once the work queued on its stream has run. Needs a current context.
 */
#define MAX_CLASSIC 4096

static struct {
	uintptr_t va;
	size_t size; /* 0: free; SIZE_MAX: being made */
	CUmemGenericAllocationHandle h;
} classic[MAX_CLASSIC];

static CUresult classic_alloc(const char *call, CUdeviceptr *dptr, size_t n)
{
	CUmemAllocationProp prop = {.type = CU_MEM_ALLOCATION_TYPE_PINNED,
				    .location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = 0}};
	CUmemAccessDesc acc = {.location = prop.location,
			       .flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
	CUmemGenericAllocationHandle h = 0;
	CUdeviceptr va = 0;
	size_t size = 0;
	CUresult r;
	int i = 0;

	pthread_mutex_lock(&lock);
	r = begin(call, NEED_CTX);
	if (!r && (!dptr || !n))
		r = violation(CUDA_ERROR_INVALID_VALUE, "%s of 0 bytes or to NULL", call);
	for (i = 0; !r && i < MAX_CLASSIC && classic[i].size; i++)
		;
	if (!r && i == MAX_CLASSIC)
		r = CUDA_ERROR_OUT_OF_MEMORY;
	if (!r) {
		classic[i].size = SIZE_MAX;
		size = (n + gran - 1) / gran * gran;
	}
	pthread_mutex_unlock(&lock);
	if (r)
		return r;
	r = cuMemAddressReserve(&va, size, 0, 0, 0);
	if (!r && (r = cuMemCreate(&h, size, &prop, 0)))
		cuMemAddressFree(va, size);
	if (!r && (r = cuMemMap(va, size, 0, h, 0))) {
		cuMemRelease(h);
		cuMemAddressFree(va, size);
	}
	if (!r && (r = cuMemSetAccess(va, size, &acc, 1))) {
		cuMemUnmap(va, size);
		cuMemRelease(h);
		cuMemAddressFree(va, size);
	}
	pthread_mutex_lock(&lock);
	if (r) {
		classic[i].size = 0;
	} else {
		classic[i].va = va;
		classic[i].size = size;
		classic[i].h = h;
		st.mem_allocs++;
		*dptr = va;
	}
	pthread_mutex_unlock(&lock);
	return r;
}

static CUresult classic_free(const char *call, CUdeviceptr dptr, CUstream hs, bool wait)
{
	CUmemGenericAllocationHandle h = 0;
	size_t size = 0;
	CUresult r;
	int i;

	pthread_mutex_lock(&lock);
	r = begin(call, NEED_CTX | RELEASES);
	for (i = 0; !r && i < MAX_CLASSIC; i++) {
		if (classic[i].size && classic[i].size != SIZE_MAX && classic[i].va == dptr)
			break;
	}
	if (!r && i == MAX_CLASSIC)
		r = violation(CUDA_ERROR_INVALID_VALUE,
			      "%s(%#llx) of memory cuMemAlloc did not return", call,
			      (unsigned long long)dptr);
	if (!r) {
		h = classic[i].h;
		size = classic[i].size;
		classic[i].size = 0;
		st.mem_frees++;
	}
	pthread_mutex_unlock(&lock);
	if (r)
		return released(r);
	if (wait)
		cuStreamSynchronize(hs);
	cuMemUnmap(dptr, size);
	cuMemRelease(h);
	return cuMemAddressFree(dptr, size);
}

CUresult cuMemAlloc(CUdeviceptr *dptr, size_t n)
{
	return classic_alloc("cuMemAlloc_v2", dptr, n);
}

CUresult cuMemFree(CUdeviceptr dptr)
{
	return classic_free("cuMemFree_v2", dptr, NULL, false);
}

CUresult cuMemAllocAsync(CUdeviceptr *dptr, size_t n, CUstream hs)
{
	(void)hs; /* usable on the stream at once */
	return classic_alloc("cuMemAllocAsync", dptr, n);
}

CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream hs)
{
	return classic_free("cuMemFreeAsync", dptr, hs, true);
}

CUresult cuCtxGetDevice(CUdevice *d)
{
	CUresult r;

	pthread_mutex_lock(&lock);
	r = begin("cuCtxGetDevice", NEED_CTX);
	if (!r)
		*d = 0;
	pthread_mutex_unlock(&lock);
	return r;
}

/* ------------------------------------------------------- cuGetProcAddress */

struct mock_fn {
	const char *name;
	void *fn;
};

#define FN(n)                                                                                      \
	{                                                                                          \
#n, (void *)n                                                                      \
	}
static const struct mock_fn fns[] = {
    FN(cuInit),
    FN(cuDriverGetVersion),
    FN(cuGetErrorString),
    FN(cuDeviceGet),
    FN(cuDeviceGetCount),
    FN(cuDeviceGetAttribute),
    FN(cuDeviceGetName),
    FN(cuDeviceGetPCIBusId),
    FN(cuDeviceTotalMem),
    FN(cuMemGetInfo),
    FN(cuDevicePrimaryCtxRetain),
    FN(cuDevicePrimaryCtxRelease),
    FN(cuCtxPushCurrent),
    FN(cuCtxPopCurrent),
    FN(cuCtxSynchronize),
    FN(cuThreadExchangeStreamCaptureMode),
    FN(cuStreamGetCtx),
    FN(cuMemGetAllocationGranularity),
    FN(cuMemAddressReserve),
    FN(cuMemAddressFree),
    FN(cuMemCreate),
    FN(cuMemRelease),
    FN(cuMemMap),
    FN(cuMemUnmap),
    FN(cuMemSetAccess),
    FN(cuMemsetD8),
    FN(cuMemsetD8Async),
    FN(cuMemcpyDtoH),
    FN(cuMemcpyHtoD),
    FN(cuMemcpyDtoHAsync),
    FN(cuMemcpyHtoDAsync),
    FN(cuMemcpyDtoDAsync),
    FN(cuMemHostAlloc),
    FN(cuMemFreeHost),
    FN(cuMemHostRegister),
    FN(cuMemHostUnregister),
    FN(cuStreamCreate),
    FN(cuStreamDestroy),
    FN(cuStreamSynchronize),
    FN(cuStreamQuery),
    FN(cuStreamWaitEvent),
    FN(cuEventCreate),
    FN(cuEventDestroy),
    FN(cuEventRecord),
    FN(cuEventQuery),
    FN(cuEventSynchronize),
    FN(cuEventElapsedTime),
    FN(cuMemAlloc),
    FN(cuMemFree),
    FN(cuMemAllocAsync),
    FN(cuMemFreeAsync),
    FN(cuCtxGetDevice),
    {"cuGetProcAddress", (void *)cuGetProcAddress_v2},
};

EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int version, cuuint64_t flags,
				    CUdriverProcAddressQueryResult *status)
{
	(void)version, (void)flags;
	for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
		if (!strcmp(fns[i].name, symbol)) {
			*pfn = fns[i].fn;
			if (status)
				*status = CU_GET_PROC_ADDRESS_SUCCESS;
			return CUDA_SUCCESS;
		}
	}
	*pfn = NULL;
	if (status)
		*status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
	return CUDA_ERROR_NOT_FOUND;
}

/* The pre-12.5 entry point, without symbolStatus (cuda.h names the new one). */
#undef cuGetProcAddress
EXPORT CUresult cuGetProcAddress(const char *symbol, void **pfn, int version, cuuint64_t flags);
EXPORT CUresult cuGetProcAddress(const char *symbol, void **pfn, int version, cuuint64_t flags)
{
	return cuGetProcAddress_v2(symbol, pfn, version, flags, NULL);
}
