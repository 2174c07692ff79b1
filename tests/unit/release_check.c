/* SPDX-License-Identifier: MIT */
/* Released memory observed from outside libkvmm (see release_check.h). */
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>

#include <linux/kvmm.h>

#include "kv_helpers.h"
#include "release_check.h"

/* The kvmm.ko region fd behind @r, or -1 in user mode. */
static int t_kernel_fd(struct kvmm_region *r)
{
	int fd = kvmm_test_region_fd(r);

	if (fd == -ENODEV)
		return -1;
	if (fd < 0)
		fail_msg("kvmm_test_region_fd: %s", kvmm_strerror(fd));
	return fd;
}

static struct kvmm_region_stat t_kernel_stat(int fd)
{
	struct kvmm_region_stat st;

	memset(&st, 0, sizeof(st));
	if (ioctl(fd, KVMM_IOC_STAT, &st) < 0)
		fail_msg("KVMM_IOC_STAT: %s", strerror(errno));
	return st;
}

static uint64_t t_region_bytes(struct kvmm_region *r)
{
	struct kvmm_region_stats st;
	int fd = t_kernel_fd(r);

	if (fd >= 0)
		return t_kernel_stat(fd).size;
	T_OK(kvmm_region_stats(r, &st)); /* its size, not a counter */
	return st.bytes;
}

/* Bytes of resident pages in [addr, addr + len), by mincore(). */
static uint64_t t_mincore(const char *addr, uint64_t len)
{
	uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE), n = (len + pg - 1) / pg, bytes = 0;
	unsigned char *vec = malloc(n);

	assert_non_null(vec);
	if (mincore((void *)addr, len, vec) < 0)
		fail_msg("mincore(%p, %llu): %s", (const void *)addr, (unsigned long long)len,
			 strerror(errno));
	for (uint64_t i = 0; i < n; i++)
		bytes += vec[i] & 1 ? pg : 0;
	free(vec);
	return bytes;
}

/* Bytes of the chunks in [off, off + len) that kvmm.ko reports resident. */
static uint64_t t_kernel_resident(int fd, uint64_t off, uint64_t len)
{
	uint32_t chunk = t_kernel_stat(fd).chunk_bytes;
	uint64_t nr = len / chunk, bytes = 0;
	uint8_t *states = malloc(nr ? nr : 1);
	struct kvmm_query q;

	assert_non_null(states);
	assert_true(off % chunk == 0 && len % chunk == 0);
	memset(&q, 0, sizeof(q));
	q.first_chunk = off / chunk;
	q.nr_chunks = nr;
	q.states = (uintptr_t)states;
	if (nr && ioctl(fd, KVMM_IOC_QUERY, &q) < 0)
		fail_msg("KVMM_IOC_QUERY: %s", strerror(errno));
	for (uint64_t i = 0; i < nr; i++)
		if ((states[i] & KVMM_CHUNK_STATE_MASK) == KVMM_CHUNK_RESIDENT)
			bytes += chunk;
	free(states);
	return bytes;
}

uint64_t t_backed(struct kvmm_region *r, uint64_t off, uint64_t len)
{
	int fd = t_kernel_fd(r);

	if (fd >= 0)
		return t_kernel_resident(fd, off, len);
	return t_mincore((const char *)kvmm_region_base(r) + off, len);
}

uint64_t t_region_backed(struct kvmm_region *r)
{
	int fd = t_kernel_fd(r);

	if (fd >= 0)
		return t_kernel_stat(fd).resident_bytes;
	return t_mincore(kvmm_region_base(r), t_region_bytes(r));
}

uint64_t t_kv_backed(struct kvmm_kv *kv)
{
	struct kvmm_region *r;
	uint64_t bytes = 0;

	for (uint32_t i = 0; (r = kvmm_test_kv_region(kv, i)); i++)
		bytes += t_region_backed(r);
	return bytes;
}

uint64_t t_kv_slot_backed(struct kvmm_kv *kv, const struct kvmm_kv_config *c, uint32_t slot)
{
	struct kvmm_kv_tensor t;
	uint64_t bytes = 0;

	if (c->layout == KVMM_LAYOUT_TOKEN_MAJOR)
		return t_region_backed(kvmm_test_kv_region(kv, slot));
	/* Layer-major: the slot's stride of each layer's K and V region. */
	T_OK(kvmm_kv_tensor(kv, 0, KVMM_K, &t));
	for (uint32_t i = 0; i < 2 * c->layers; i++)
		bytes += t_backed(kvmm_test_kv_region(kv, i), slot * t.slot_stride_bytes,
				  t.slot_stride_bytes);
	return bytes;
}

struct t_watch t_watch_region(struct kvmm_region *r)
{
	return (struct t_watch){
	    .kernel = t_kernel_fd(r) >= 0,
	    .addr = kvmm_region_base(r),
	    .len = t_region_bytes(r),
	};
}

struct t_watch t_watch_kv(struct kvmm_kv *kv)
{
	struct kvmm_region *r = kvmm_test_kv_region(kv, 0);
	uintptr_t lo = UINTPTR_MAX, hi = 0;

	assert_non_null(r);
	for (uint32_t i = 0; (r = kvmm_test_kv_region(kv, i)); i++) {
		uintptr_t b = (uintptr_t)kvmm_region_base(r);

		lo = b < lo ? b : lo;
		hi = b + t_region_bytes(r) > hi ? b + t_region_bytes(r) : hi;
	}
	return (struct t_watch){
	    .kernel = t_kernel_fd(kvmm_test_kv_region(kv, 0)) >= 0,
	    .addr = (const char *)lo,
	    .len = hi - lo,
	};
}

/* A whole /proc or /sys file, NUL-terminated; NULL if it cannot be read. */
static char *t_slurp(const char *path)
{
	size_t n = 0, cap = 1 << 16;
	char *buf = malloc(cap);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t got;

	if (fd < 0 || !buf) {
		if (fd >= 0)
			close(fd);
		free(buf);
		return NULL;
	}
	while ((got = read(fd, buf + n, cap - n - 1)) > 0) {
		n += got;
		if (cap - n - 1 == 0) {
			char *more = realloc(buf, cap * 2);

			if (!more) {
				got = -1;
				break;
			}
			buf = more;
			cap *= 2;
		}
	}
	close(fd);
	if (got < 0) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

/* Sum of field @f ("Rss:", "Pss:", ...) over the mappings of /proc/self/smaps
 * overlapping [lo, hi). */
uint64_t t_smaps_sum(const char *f, uintptr_t lo, uintptr_t hi)
{
	char *buf = t_slurp("/proc/self/smaps"), *line, *next;
	uint64_t rss = 0;
	bool in = false;

	if (!buf)
		fail_msg("cannot read /proc/self/smaps: %s", strerror(errno));
	for (line = buf; *line; line = next) {
		unsigned long start, end;
		unsigned long long kb;

		next = strchr(line, '\n');
		next = next ? (*next = '\0', next + 1) : line + strlen(line);
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2)
			in = start < hi && end > lo;
		else if (in && !strncmp(line, f, strlen(f)) &&
			 sscanf(line + strlen(f), " %llu kB", &kb) == 1)
			rss += kb << 10;
	}
	free(buf);
	return rss;
}

static uint64_t t_pool_used(void)
{
	static const char *const paths[] = {
	    "/sys/kernel/kvmm/pool_used_bytes",
	    "/sys/class/misc/kvmm/pool_used_bytes",
	};

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		char *s = t_slurp(paths[i]);

		if (s) {
			uint64_t v = strtoull(s, NULL, 10);

			free(s);
			return v;
		}
	}
	fail_msg("kernel mode: cannot read kvmm.ko's pool_used_bytes in sysfs");
	return 0;
}

uint64_t t_held(const struct t_watch *w)
{
	if (w->kernel)
		return t_pool_used();
	return t_smaps_sum("Rss:", (uintptr_t)w->addr, (uintptr_t)w->addr + w->len);
}

uint64_t t_held_once(const struct t_watch *w)
{
	if (w->kernel)
		return t_pool_used();
	return t_smaps_sum("Pss:", (uintptr_t)w->addr, (uintptr_t)w->addr + w->len);
}

const char *t_backed_how(struct kvmm_region *r, bool whole)
{
	if (t_kernel_fd(r) < 0)
		return "mincore";
	return whole ? "kvmm.ko KVMM_IOC_STAT resident_bytes" : "kvmm.ko KVMM_IOC_QUERY";
}

void t_check_bytes(const char *what, uint64_t seen, uint64_t expected, const char *how,
		   const char *file, int line)
{
	if (seen == expected)
		return;
	print_error("%s: expected %llu bytes backed by memory, seen %llu (%s)\n", what,
		    (unsigned long long)expected, (unsigned long long)seen, how);
	_fail(file, line);
}

void t_check_given_back(const struct t_watch *w, uint64_t before, uint64_t bytes, const char *what,
			const char *file, int line)
{
	const struct timespec tick = {.tv_nsec = 10 * 1000 * 1000};
	int64_t want = (int64_t)(bytes - bytes / 16), drop = 0;
	uint64_t now = before;

	for (int i = 0; i <= 200; i++) {
		if (i)
			nanosleep(&tick, NULL);
		now = t_held(w);
		drop = (int64_t)(before - now);
		if (drop >= want)
			return;
	}
	print_error("%s: expected the memory held (%s) to drop by %llu bytes (at least %lld), "
		    "it went from %llu to %llu (%lld)\n",
		    what, w->kernel ? "kvmm.ko pool_used_bytes" : "Rss in /proc/self/smaps",
		    (unsigned long long)bytes, (long long)want, (unsigned long long)before,
		    (unsigned long long)now, (long long)drop);
	_fail(file, line);
}

/* Index of the first nonzero byte of [p, p + n), or -1. */
static long t_first_nonzero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return (long)i;
	return -1;
}

void t_check_reads_zero(struct kvmm_region *r, uint64_t off, uint64_t len, const char *what,
			const char *file, int line)
{
	const unsigned char *p = (const unsigned char *)kvmm_region_base(r) + off;
	long d;

	if (t_kernel_fd(r) < 0 && RUNNING_ON_VALGRIND) {
		int ret = kvmm_region_ensure(r, off, len);

		if (ret) {
			print_error("%s: ensure before reading it back: %s\n", what,
				    kvmm_strerror(ret));
			_fail(file, line);
		}
	}
	d = t_first_nonzero(p, len);
	if (d < 0)
		return;
	print_error("%s: expected zeros after the release, byte %ld (offset %llu) is 0x%02x\n",
		    what, d, (unsigned long long)(off + d), p[d]);
	_fail(file, line);
}

void t_check_kv_slot_zero(struct kvmm_kv *kv, const struct kvmm_kv_config *c, uint32_t slot,
			  uint32_t tokens, const char *file, int line)
{
	size_t n = t_row_bytes(c);

	for (uint32_t l = 0; l < c->layers; l++)
		for (uint32_t w = 0; w < 2; w++)
			for (uint32_t tok = 0; tok < tokens; tok++) {
				const unsigned char *row =
				    (const unsigned char *)t_row(kv, l, w, slot, tok);
				long d = t_first_nonzero(row, n);

				if (d < 0)
					continue;
				print_error("slot %u layer %u %c token %u byte %ld: expected zero "
					    "(released memory), seen 0x%02x\n",
					    slot, l, w ? 'V' : 'K', tok, d, row[d]);
				_fail(file, line);
			}
}
