/*
 * kvmm_fuzz: hammer the kvmm.ko ABI from several threads and processes,
 * inside the test VM, for a bounded time.
 *
 *   kvmm_fuzz [--seconds N] [--seed S] [--threads T] [--no-inject] [--verbose]
 *   (or KVMM_FUZZ_SECONDS, KVMM_FUZZ_SEED, KVMM_FUZZ_THREADS in the environment)
 *
 * What it does, all chosen from the seed:
 *   - random and boundary ioctl numbers and argument structs on /dev/kvmm and
 *     region fds: valid ones, every way of being invalid (reserved fields,
 *     flags, misaligned or overflowing ranges, huge sizes) and bad pointers
 *     (NULL, kernel addresses, unmapped and read-only pages);
 *   - mmap/munmap/mremap/madvise/mprotect/touch/pread/pwrite/poll/close/fork
 *     sequences on regions; forked children are SIGKILLed at random points;
 *   - two worker processes in two cgroup v2 groups of different memory.max:
 *     the main process (main thread, some race threads, forked children) and
 *     a second process with the other race threads, which is sent the
 *     regions' fds as slots change;
 *   - race threads running ENSURE/DISCARD/PIN/UNPIN/EVICT/PREFETCH/WAIT/QUERY
 *     and their own mappings on the same regions, which have backing files
 *     on the flash disk;
 *   - SET_BACKING with every kind of store in store_rules[] (the errno each
 *     must get): fresh files, files of other filesystems (tmpfs, memfd,
 *     debugfs), fds of the wrong kind or mode, O_APPEND, append-only and
 *     immutable files, an active swap file, files with data; a refused store
 *     must leave the region's store and the file as they were;
 *   - pool_limit_bytes, the watermarks, the refault window, the default chunk
 *     size, the default backing file and debugfs fail_ios/fail_skip changed at
 *     random;
 *   - where debugfs offers failslab and fail_page_alloc (the debug kernel):
 *     fault-injection windows (probability, interval, times, task filter)
 *     and fail-nth on single calls.
 *
 * Every result is checked against the ABI (include/uapi/linux/kvmm.h,
 * docs/abi.md): an errno the ABI does not allow for those arguments is
 * printed and fails the run. One region (the "shadow" region) has a copy of
 * its contents in this program: whatever is read back through a mapping or
 * pread must equal what was last written, or zeros after DISCARD. At the end
 * every region is gone and pool_used_bytes must be back to 0.
 *
 * The sequence of operations each thread chooses is a function of the seed;
 * what the kernel answers depends on timing (threads, reclaim, I/O), so two
 * runs with one seed make the same kinds of calls with the same arguments
 * but not always with the same results.
 *
 * Exit status: 0 when nothing unexpected happened, 1 otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/fs.h>
#include <linux/kvmm.h>
#include <linux/magic.h>

#define SYSFS	      "/sys/kernel/kvmm"
#define DEBUGFS	      "/sys/kernel/debug"
#define KiB	      (1024ULL)
#define MiB	      (1024ULL * KiB)
#define MAX_REGIONS   10
#define MAX_MAPS      16
#define MAX_THREADS   8
#define MAX_PINS      8
#define MAX_REPORTS   60
#define SHADOW_BYTES  (4 * MiB)
#define QBUF_BYTES    (KVMM_QUERY_MAX_CHUNKS + 4096)
#define FUZZ_POOL_MAX (96 * MiB)

/* ---- what is counted ---------------------------------------------------- */

enum kind {
	K_VERSION,
	K_CREATE,
	K_GPU_CHARGE,
	K_GPU_UNCHARGE,
	K_LIST,
	K_DEV_OTHER_CMD,
	K_ENSURE,
	K_DISCARD,
	K_STAT,
	K_QUERY,
	K_PIN,
	K_UNPIN,
	K_SET_BACKING,
	K_EVICT,
	K_PREFETCH,
	K_WAIT,
	K_SHARE,
	K_REGION_OTHER_CMD,
	K_MMAP,
	K_MUNMAP,
	K_MREMAP,
	K_MADVISE,
	K_MPROTECT,
	K_TOUCH,
	K_PREAD,
	K_PWRITE,
	K_POLL,
	K_LSEEK,
	K_CLOSE,
	K_FORK,
	K_SYSFS,
	K_INJECT_WINDOW,
	K_FAIL_NTH,
	K_VERIFY,
	K_NKINDS
};

static const char *const kind_name[K_NKINDS] = {
    [K_VERSION] = "ioctl VERSION",
    [K_CREATE] = "ioctl REGION_CREATE",
    [K_GPU_CHARGE] = "ioctl GPU_CHARGE",
    [K_GPU_UNCHARGE] = "ioctl GPU_UNCHARGE",
    [K_LIST] = "ioctl REGION_LIST",
    [K_DEV_OTHER_CMD] = "ioctl /dev/kvmm other cmd",
    [K_ENSURE] = "ioctl ENSURE",
    [K_DISCARD] = "ioctl DISCARD",
    [K_STAT] = "ioctl STAT",
    [K_QUERY] = "ioctl QUERY",
    [K_PIN] = "ioctl PIN",
    [K_UNPIN] = "ioctl UNPIN",
    [K_SET_BACKING] = "ioctl SET_BACKING",
    [K_EVICT] = "ioctl EVICT",
    [K_PREFETCH] = "ioctl PREFETCH",
    [K_WAIT] = "ioctl WAIT",
    [K_SHARE] = "ioctl SHARE",
    [K_REGION_OTHER_CMD] = "ioctl region other cmd",
    [K_MMAP] = "mmap",
    [K_MUNMAP] = "munmap",
    [K_MREMAP] = "mremap",
    [K_MADVISE] = "madvise",
    [K_MPROTECT] = "mprotect",
    [K_TOUCH] = "touch (page accesses)",
    [K_PREAD] = "pread/preadv",
    [K_PWRITE] = "pwrite/pwritev",
    [K_POLL] = "poll",
    [K_LSEEK] = "lseek",
    [K_CLOSE] = "close",
    [K_FORK] = "fork (child killed)",
    [K_SYSFS] = "sysfs knob write",
    [K_INJECT_WINDOW] = "fault-injection window",
    [K_FAIL_NTH] = "fail-nth call",
    [K_VERIFY] = "shadow verify",
};

/* Counted by every process of the run (the worker in the second cgroup, forked children). */
struct shared {
	atomic_ulong calls[K_NKINDS], errs[K_NKINDS], bad[K_NKINDS];
	atomic_ulong sigbus, sigsegv, killed, mismatch, reports;
	atomic_bool io_faults; /* debugfs fail_ios or fault injection was used */
};
static struct shared *S;
static atomic_ulong my_reports; /* this process's own */

/* ---- options and shared state -------------------------------------------- */

static unsigned int opt_seconds = 180, opt_threads = 3;
static uint64_t opt_seed = 1;
static bool opt_inject = true, opt_verbose;

static atomic_bool stop;
static __thread const char *cur_op = "setup";
static const char *proc_tag = ""; /* which process reports */
static bool fi_avail;		  /* failslab and fail_page_alloc in debugfs */
static long page_size;
static uint8_t *bad_rw_page;   /* PROT_READ page: output there gives EFAULT */
static uint8_t *bad_none_page; /* PROT_NONE page */
static double t0;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- deterministic randomness --------------------------------------------- */

struct rng {
	uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t below(struct rng *r, uint64_t n)
{
	return n ? rnd(r) % n : 0;
}

static bool chance(struct rng *r, unsigned int pct)
{
	return below(r, 100) < pct;
}

/* ---- per-thread context ---------------------------------------------------- */

struct th {
	struct rng rng;
	int id;		/* 0: main thread */
	bool inject;	/* inside a fault-injection window */
	bool nth;	/* fail-nth armed for the next call */
	uint8_t *qbuf;	/* QUERY output */
	uint8_t *iobuf; /* pread/pwrite */
	size_t iobuf_len;
	struct {
		int fd;
		struct kvmm_range r;
	} pins[MAX_PINS];
	int npins;
};

/* ---- reports ------------------------------------------------------------- */

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void report(const char *fmt, ...)
{
	va_list ap;

	atomic_fetch_add(&my_reports, 1);
	if (atomic_fetch_add(&S->reports, 1) >= MAX_REPORTS)
		return;
	pthread_mutex_lock(&out_lock);
	printf("UNEXPECTED [%.1f s]%s ", now() - t0, proc_tag);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
}

#define END_OF_LIST (-1)

/* A set of errno values (0 = success), below 128. */
struct eset {
	uint64_t w[2];
};

static struct eset mkset(int first, ...)
{
	struct eset s = {{0, 0}};
	va_list ap;
	int e;

	va_start(ap, first);
	for (e = first; e != END_OF_LIST; e = va_arg(ap, int))
		if (e >= 0 && e < 128)
			s.w[e / 64] |= 1ULL << (e % 64);
	va_end(ap);
	return s;
}

static bool in_set(struct eset s, int e)
{
	return e >= 0 && e < 128 && (s.w[e / 64] >> (e % 64) & 1);
}

/*
 * Count a call of @kind that returned @ret (errno @err when negative) and
 * check it: @ok lists what the ABI allows (0 = success) and ends with
 * END_OF_LIST. Inside a fault-injection window ENOMEM, EIO and ENOSPC are
 * allowed as well; EIO anywhere once I/O errors were injected.
 */
static bool check(struct th *t, enum kind k, long ret, int err, struct eset ok, const char *fmt,
		  ...)
{
	int got = ret < 0 ? err : 0;
	char what[256];
	va_list ap;

	atomic_fetch_add(&S->calls[k], 1);
	if (got)
		atomic_fetch_add(&S->errs[k], 1);
	if (in_set(ok, got)) {
		t->nth = false;
		return true;
	}
	if ((t->inject || t->nth) && (got == ENOMEM || got == EIO || got == ENOSPC)) {
		t->nth = false;
		return true;
	}
	if (got == EIO && atomic_load(&S->io_faults))
		return true;
	atomic_fetch_add(&S->bad[k], 1);
	t->nth = false;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	report("%s: %s -> %s (thread %d%s)", kind_name[k], what, got ? strerror(got) : "success",
	       t->id,
	       t->inject ? ", injection window"
	       : t->nth	 ? ", fail-nth"
			 : "");
	return false;
}

#define OK(...) mkset(__VA_ARGS__, END_OF_LIST)

static void count(enum kind k, long ret)
{
	atomic_fetch_add(&S->calls[k], 1);
	if (ret < 0)
		atomic_fetch_add(&S->errs[k], 1);
}

/* ---- sysfs and debugfs ------------------------------------------------------ */

static int write_file(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), err = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		err = -errno;
	close(fd);
	return err;
}

static int read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = 0;
	return 0;
}

static uint64_t sysfs_u64(const char *name)
{
	char path[128], buf[64];

	snprintf(path, sizeof(path), SYSFS "/%s", name);
	if (read_file(path, buf, sizeof(buf)))
		return UINT64_MAX;
	return strtoull(buf, NULL, 0);
}

static int sysfs_write(const char *name, const char *val)
{
	char path[128];

	snprintf(path, sizeof(path), SYSFS "/%s", name);
	return write_file(path, val);
}

/* kvmm.ko's test hooks live in debugfs, not in its sysfs. */
static int debugfs_write(const char *name, const char *val)
{
	char path[128];

	snprintf(path, sizeof(path), "/sys/kernel/debug/kvmm/%s", name);
	return write_file(path, val);
}

/* Knobs this program changes, saved at start and put back at the end. */
static const char *const knob_names[] = {
    "pool_limit_bytes",	 "pool_low_wmark_pct",	"pool_high_wmark_pct",
    "refault_window_ms", "default_chunk_bytes", "default_backing",
};
#define NKNOBS (sizeof(knob_names) / sizeof(knob_names[0]))
static char knob_saved[NKNOBS][256];
static uint64_t cur_limit, cur_low, cur_high, cur_default_chunk, mem_total;
static bool default_set; /* default_backing names a file */

static void knobs_save(void)
{
	char path[128];
	unsigned int i;

	for (i = 0; i < NKNOBS; i++) {
		snprintf(path, sizeof(path), SYSFS "/%s", knob_names[i]);
		if (read_file(path, knob_saved[i], sizeof(knob_saved[i])))
			knob_saved[i][0] = 0;
	}
	cur_limit = sysfs_u64("pool_limit_bytes");
	cur_low = sysfs_u64("pool_low_wmark_pct");
	cur_high = sysfs_u64("pool_high_wmark_pct");
	cur_default_chunk = sysfs_u64("default_chunk_bytes");
	default_set = knob_saved[5][0] && strcmp(knob_saved[5], "none");
}

static void knobs_restore(void)
{
	unsigned int i;

	/* Lower the low watermark first so any saved pair is accepted. */
	sysfs_write("pool_low_wmark_pct", "0");
	sysfs_write("pool_high_wmark_pct", knob_saved[2]);
	for (i = 0; i < NKNOBS; i++) {
		if (!knob_saved[i][0])
			continue;
		if (sysfs_write(knob_names[i], knob_saved[i]))
			printf("note: could not restore %s to '%s'\n", knob_names[i],
			       knob_saved[i]);
	}
}

/* Fault injection (debugfs on the debug kernel). */
static void fi_write(const char *attr, const char *file, const char *val)
{
	char path[160];

	snprintf(path, sizeof(path), DEBUGFS "/%s/%s", attr, file);
	if (write_file(path, val) && opt_verbose)
		printf("note: cannot write %s\n", path);
}

static void fi_setup(void)
{
	static const char *const attrs[] = {"failslab", "fail_page_alloc"};
	unsigned int i;

	fi_avail = !access(DEBUGFS "/failslab/probability", W_OK) &&
		   !access(DEBUGFS "/fail_page_alloc/probability", W_OK) &&
		   !access("/proc/thread-self/make-it-fail", W_OK);
	if (!fi_avail || !opt_inject)
		return;
	for (i = 0; i < 2; i++) {
		fi_write(attrs[i], "probability", "0");
		fi_write(attrs[i], "verbose", "0");
		fi_write(attrs[i], "task-filter", "Y");
		fi_write(attrs[i], "ignore-gfp-wait", "N");
		fi_write(attrs[i], "space", "0");
	}
	fi_write("fail_page_alloc", "ignore-gfp-highmem", "N");
	fi_write("fail_page_alloc", "min-order", "0");
}

static void fi_params(struct rng *r)
{
	static const char *const attrs[] = {"failslab", "fail_page_alloc"};
	char v[32];
	unsigned int i;

	for (i = 0; i < 2; i++) {
		snprintf(v, sizeof(v), "%u", (unsigned int)(1 + below(r, 40)));
		fi_write(attrs[i], "probability", v);
		snprintf(v, sizeof(v), "%u", (unsigned int)(1 + below(r, 8)));
		fi_write(attrs[i], "interval", v);
		/* Always bounded: a failing user page fault is retried until it works. */
		snprintf(v, sizeof(v), "%u", (unsigned int)(1 + below(r, 64)));
		fi_write(attrs[i], "times", v);
	}
}

static void fi_off_all(void)
{
	fi_write("failslab", "probability", "0");
	fi_write("fail_page_alloc", "probability", "0");
	fi_write("failslab", "task-filter", "N");
	fi_write("fail_page_alloc", "task-filter", "N");
}

/* Make this thread's allocations fail (inside a window) or not. */
static void fi_self(struct th *t, bool on)
{
	int k;

	if (!fi_avail || !opt_inject)
		return;
	for (k = 0; k < 1000; k++)
		if (!write_file("/proc/thread-self/make-it-fail", on ? "1" : "0"))
			break;
	t->inject = on;
	if (on)
		atomic_store(&S->io_faults, true);
}

/* Fail the nth fault-injection site of the next call of this thread. */
static void fi_nth(unsigned int n)
{
	char v[16];
	int k;

	if (!fi_avail || !opt_inject)
		return;
	snprintf(v, sizeof(v), "%u", n);
	for (k = 0; k < 1000; k++)
		if (!write_file("/proc/thread-self/fail-nth", v))
			break;
	if (n)
		atomic_store(&S->io_faults, true);
}

/* Arm fail-nth for the next call now and then (race threads and main). */
static void maybe_nth(struct th *t)
{
	if (fi_avail && opt_inject && !t->inject && chance(&t->rng, 4)) {
		fi_nth(1 + below(&t->rng, 24));
		t->nth = true;
		atomic_fetch_add(&S->calls[K_FAIL_NTH], 1);
	}
}

/* Disarm it; t->nth stays set until check() has judged the call. */
static void end_nth(struct th *t)
{
	if (t->nth)
		fi_nth(0);
}

/* ---- guarded memory access (SIGBUS, SIGSEGV) ------------------------------ */

static __thread sigjmp_buf *volatile guard_jb;
static __thread volatile sig_atomic_t guard_sig;

static void on_fault(int sig, siginfo_t *si, void *uc)
{
	char msg[160];
	int n;

	(void)uc;
	if (guard_jb) {
		guard_sig = sig;
		siglongjmp(*guard_jb, 1);
	}
	/* A fault outside a guarded access: say where, then die of it. */
	n = snprintf(
	    msg, sizeof(msg), "kvmm_fuzz: unguarded %s (code %d) at %p during %s (tid %d)\n",
	    sig == SIGBUS ? "SIGBUS" : "SIGSEGV", si->si_code, si->si_addr, cur_op, (int)gettid());
	if (write(STDOUT_FILENO, msg, n) < 0)
		n = 0;
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Copy with faults caught: 0, or the signal that stopped it. */
static int g_copy(void *dst, const void *src, size_t len)
{
	sigjmp_buf jb;

	if (sigsetjmp(jb, 1)) {
		guard_jb = NULL;
		if (guard_sig == SIGBUS)
			atomic_fetch_add(&S->sigbus, 1);
		else
			atomic_fetch_add(&S->sigsegv, 1);
		return guard_sig;
	}
	guard_jb = &jb;
	memcpy(dst, src, len);
	guard_jb = NULL;
	return 0;
}

/* Touch one byte per page, reading or writing. */
static int g_touch(uint8_t *p, size_t len, bool write, uint8_t val)
{
	sigjmp_buf jb;
	size_t i;

	if (sigsetjmp(jb, 1)) {
		guard_jb = NULL;
		if (guard_sig == SIGBUS)
			atomic_fetch_add(&S->sigbus, 1);
		else
			atomic_fetch_add(&S->sigsegv, 1);
		return guard_sig;
	}
	guard_jb = &jb;
	for (i = 0; i < len; i += page_size) {
		if (write)
			((volatile uint8_t *)p)[i] = val;
		else
			(void)((volatile uint8_t *)p)[i];
	}
	guard_jb = NULL;
	return 0;
}

/* ---- regions -------------------------------------------------------------- */

enum backing {
	B_NONE,	 /* none set (the default backing may apply) */
	B_FLASH, /* a file on the 2 GiB flash disk */
	B_SMALL, /* a file on the 64 MiB disk: ENOSPC happens */
	B_TMPFS, /* a file on tmpfs: buffered I/O */
	B_OTHER, /* a store the rules below refuse, taken all the same */
};

struct region {
	int fd; /* -1: free slot */
	uint64_t size;
	uint32_t chunk;
	uint32_t id;
	bool shadow;	    /* slot 0: contents mirrored in this program */
	bool fixed_backing; /* its backing is never changed */
	enum backing backing;
};

static struct region regions[MAX_REGIONS];
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static int dev_fd = -1, dev_fd2 = -1;
static const char *flash_dir = "/mnt/flash", *small_dir = "/mnt/small";

/*
 * The worker process in the second cgroup has its own fds of the regions:
 * whenever a slot changes, the main process sends it the slot (with the
 * region's fd, SCM_RIGHTS). Slot -1 tells it to stop.
 */
struct region_msg {
	int slot;
	struct region r; /* r.fd >= 0: an fd comes with it */
};

static int peer_sock = -1; /* main process: to the worker; worker: from the main process */
static pid_t main_pid;

static void region_publish(int slot, const struct region *r)
{
	struct region_msg m = {.slot = slot};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cm;
	struct iovec iov = {&m, sizeof(m)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	static bool said;
	ssize_t ret;
	int k;

	if (peer_sock < 0 || getpid() != main_pid)
		return;
	if (r)
		m.r = *r;
	else
		m.r.fd = -1;
	if (m.r.fd >= 0) {
		struct cmsghdr *c;

		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = sizeof(cm.buf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &m.r.fd, sizeof(int));
	}
	/* Inside a fault-injection window the skb allocation may fail: the window is bounded. */
	for (k = 0; (ret = sendmsg(peer_sock, &mh, MSG_NOSIGNAL)) < 0 && k < 100000; k++)
		if (errno != ENOMEM && errno != ENOBUFS && errno != EINTR)
			break;
	if (ret < 0 && !said) {
		said = true;
		report("cannot send slot %d to the worker process: %s", slot, strerror(errno));
	}
}

/* A copy of slot @i with its own fd (dup), or fd -1 if the slot is free. */
static struct region region_get(int i)
{
	struct region r;

	pthread_mutex_lock(&reg_lock);
	r = regions[i];
	if (r.fd >= 0)
		r.fd = fcntl(r.fd, F_DUPFD_CLOEXEC, 0);
	pthread_mutex_unlock(&reg_lock);
	return r;
}

static int backing_open(const char *dir)
{
	char path[256];
	static atomic_uint seq;
	int fd;

	snprintf(path, sizeof(path), "%s/fuzz-%d-%u", dir, (int)getpid(),
		 atomic_fetch_add(&seq, 1));
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd >= 0)
		unlink(path);
	return fd;
}

static int set_backing(int fd, int bfd)
{
	struct kvmm_backing b = {.fd = bfd};

	return ioctl(fd, KVMM_IOC_SET_BACKING, &b) ? -errno : 0;
}

/* ---- backing stores: what SET_BACKING is offered, and its answer for each ---- */

enum store_kind {
	ST_FLASH,	 /* an empty file on the flash disk (ext4) */
	ST_SMALL,	 /* an empty file on the 64 MiB disk (ext4) */
	ST_TMPFS,	 /* an empty file on tmpfs (/tmp) */
	ST_MEMFD,	 /* memfd_create() */
	ST_MEMFD_SEALED, /* a memfd with F_SEAL_WRITE and/or F_SEAL_GROW */
	ST_DEBUGFS,	 /* a debugfs file, opened O_RDWR and never written */
	ST_NOT_FD,	 /* a number that is no open fd */
	ST_READ_ONLY,	 /* a flash file open O_RDONLY */
	ST_WRITE_ONLY,	 /* a flash file open O_WRONLY */
	ST_DIRECTORY,	 /* a directory (open O_RDONLY: it cannot be opened for writing) */
	ST_DEV_NULL,	 /* /dev/null, a char device, O_RDWR */
	ST_KVMM_FD,	 /* /dev/kvmm or a region fd */
	ST_PIPE,	 /* one end of a pipe (open for reading or for writing only) */
	ST_FIFO,	 /* a FIFO opened O_RDWR */
	ST_SOCKET,	 /* a Unix socket */
	ST_O_APPEND,	 /* an empty flash file opened O_RDWR | O_APPEND */
	ST_SETFL_APPEND, /* an empty flash file given O_APPEND by F_SETFL */
	ST_APPEND_ONLY,	 /* an empty flash file, FS_APPEND_FL set after the O_RDWR open */
	ST_IMMUTABLE,	 /* an empty flash file, FS_IMMUTABLE_FL set after the O_RDWR open */
	ST_SWAP_FILE,	 /* an active swap file on the flash disk, opened O_RDWR */
	ST_NOT_EMPTY,	 /* a flash file holding bytes kvmm did not write */
	ST_NKINDS
};

/*
 * What SET_BACKING answers for each kind of store (0: it takes it; kvmm
 * formats an empty file). A store is judged before the region's EBUSY (slots
 * held on its current store). @shared: the store may also be given to the
 * regions the other threads use, where wrongly taking it does no harm beyond
 * the report; the others (writes would fail, or must not happen) go only to
 * a region of their own.
 */
static const struct store_rule {
	const char *what;
	int err;
	bool shared;
	enum backing as; /* what the region has once it took the store */
} store_rules[ST_NKINDS] = {
    [ST_FLASH] = {"empty file on the flash disk", 0, true, B_FLASH},
    [ST_SMALL] = {"empty file on the 64 MiB disk", 0, true, B_SMALL},
    [ST_TMPFS] = {"file on tmpfs", EOPNOTSUPP, true, B_TMPFS},
    [ST_MEMFD] = {"memfd", EOPNOTSUPP, true, B_TMPFS},
    [ST_MEMFD_SEALED] = {"sealed memfd", EOPNOTSUPP, false, B_OTHER},
    [ST_DEBUGFS] = {"debugfs file", EOPNOTSUPP, false, B_OTHER},
    [ST_NOT_FD] = {"not an fd", EBADF, true, B_OTHER},
    [ST_READ_ONLY] = {"file open read-only", EBADF, true, B_OTHER},
    [ST_WRITE_ONLY] = {"file open write-only", EBADF, true, B_OTHER},
    [ST_DIRECTORY] = {"directory", EINVAL, true, B_OTHER},
    [ST_DEV_NULL] = {"/dev/null", EINVAL, true, B_OTHER},
    [ST_KVMM_FD] = {"a kvmm fd", EINVAL, true, B_OTHER},
    [ST_PIPE] = {"pipe", EINVAL, true, B_OTHER},
    [ST_FIFO] = {"FIFO open O_RDWR", EINVAL, true, B_OTHER},
    [ST_SOCKET] = {"socket", EINVAL, true, B_OTHER},
    [ST_O_APPEND] = {"file opened O_APPEND", EINVAL, false, B_OTHER},
    [ST_SETFL_APPEND] = {"file given O_APPEND by F_SETFL", EINVAL, false, B_OTHER},
    [ST_APPEND_ONLY] = {"append-only file (FS_APPEND_FL)", EPERM, false, B_OTHER},
    [ST_IMMUTABLE] = {"immutable file (FS_IMMUTABLE_FL)", EPERM, false, B_OTHER},
    [ST_SWAP_FILE] = {"active swap file", ETXTBSY, false, B_OTHER},
    [ST_NOT_EMPTY] = {"non-empty file kvmm did not format", ENOTEMPTY, true, B_FLASH},
};

/* An fd of one kind of store and what goes with it. */
struct store {
	enum store_kind kind;
	int fd;		   /* what SET_BACKING is given */
	int aux;	   /* kept open beside it (the pipe's other end, the peer socket) */
	char path[256];	   /* a file to remove at the end, or "" */
	int flag;	   /* FS_*_FL to clear at the end */
	bool swap_on;	   /* a swap file to swapoff */
	bool check;	   /* a file whose size and first bytes must stay as they are */
	uint64_t size;	   /* ... its size */
	uint8_t data[256]; /* ... its first bytes */
	size_t data_len;
};

static const char *swap_path; /* the swap file, made once; NULL: not yet */
static bool swap_broken;      /* swapon is not possible here */

/* A kind of store this VM cannot make: said once. */
static bool store_skip(enum store_kind k, const char *fmt, ...)
{
	static bool said[ST_NKINDS];
	va_list ap;

	if (said[k])
		return false;
	said[k] = true;
	printf("kvmm_fuzz: note: no %s store here (", store_rules[k].what);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("): skipped\n");
	return false;
}

/* Set or clear an inode flag (FS_IOC_SETFLAGS takes an int). */
static int fs_flag(int fd, int flag, bool on)
{
	int f;

	if (ioctl(fd, FS_IOC_GETFLAGS, &f))
		return -errno;
	f = on ? f | flag : f & ~flag;
	return ioctl(fd, FS_IOC_SETFLAGS, &f) ? -errno : 0;
}

/* A new file on the flash disk that keeps its name until store_close(). */
static int flash_file(struct store *s, int oflags)
{
	static atomic_uint seq;

	snprintf(s->path, sizeof(s->path), "%s/fuzz-store-%d-%u", flash_dir, (int)getpid(),
		 atomic_fetch_add(&seq, 1));
	return open(s->path, oflags | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
}

/* A 1 MiB swap file with the header mkswap writes (version 1, no bad pages), made once. */
static bool swap_make(void)
{
	static char path[256];
	size_t len = MiB;
	uint32_t *info;
	uint8_t *p;
	bool ok;
	int fd;

	if (swap_path || swap_broken)
		return swap_path;
	snprintf(path, sizeof(path), "%s/fuzz-swap-%d", flash_dir, (int)getpid());
	p = calloc(1, len);
	if (!p)
		return false;
	info = (uint32_t *)(p + 1024); /* after the boot block */
	info[0] = 1;		       /* version */
	info[1] = len / page_size - 1; /* last_page */
	memcpy(p + page_size - 10, "SWAPSPACE2", 10);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	/* Written and synced: swapon refuses holes and unwritten extents. */
	ok = fd >= 0 && write(fd, p, len) == (ssize_t)len && !fsync(fd);
	if (!ok)
		store_skip(ST_SWAP_FILE, "cannot write %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	free(p);
	if (!ok) {
		unlink(path);
		swap_broken = true;
		return false;
	}
	swap_path = path;
	return true;
}

static void store_swapoff(struct store *s)
{
	if (!s->swap_on)
		return;
	if (swapoff(swap_path))
		report("swapoff %s: %s", swap_path, strerror(errno));
	s->swap_on = false;
}

static void store_close(struct store *s);

/*
 * Open a store of kind @k in @s (@region: a region fd, for ST_KVMM_FD).
 * False when this VM cannot make that kind (said once).
 */
static bool store_open(struct th *t, enum store_kind k, struct store *s, int region)
{
	static const char *const debugfs_files[] = {DEBUGFS "/fault_around_bytes",
						    DEBUGFS "/dynamic_debug/control"};
	char path[64];
	struct stat st;
	size_t i;
	int tmp, sv[2], err;
	ssize_t n;

	memset(s, 0, sizeof(*s));
	s->kind = k;
	s->fd = s->aux = -1;
	switch (k) {
	case ST_FLASH:
	case ST_SMALL:
	case ST_TMPFS:
		s->fd = backing_open(k == ST_FLASH   ? flash_dir
				     : k == ST_SMALL ? small_dir
						     : "/tmp");
		break;
	case ST_MEMFD:
		s->fd = memfd_create("kvmm_fuzz", MFD_CLOEXEC);
		break;
	case ST_MEMFD_SEALED:
		s->fd = memfd_create("kvmm_fuzz", MFD_CLOEXEC | MFD_ALLOW_SEALING);
		if (s->fd >= 0 && chance(&t->rng, 50) && ftruncate(s->fd, 64 * KiB))
			report("ftruncate of a memfd: %s", strerror(errno));
		i = below(&t->rng, 3);
		if (s->fd >= 0 && fcntl(s->fd, F_ADD_SEALS,
					i == 0	 ? F_SEAL_WRITE
					: i == 1 ? F_SEAL_GROW
						 : F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK)) {
			store_skip(k, "F_ADD_SEALS: %s", strerror(errno));
			goto fail;
		}
		break;
	case ST_DEBUGFS:
		for (i = 0; i < sizeof(debugfs_files) / sizeof(debugfs_files[0]) && s->fd < 0; i++)
			s->fd = open(debugfs_files[i], O_RDWR | O_CLOEXEC);
		if (s->fd < 0)
			return store_skip(k, "no debugfs file opens O_RDWR");
		break;
	case ST_NOT_FD:
		s->fd = chance(&t->rng, 50) ? 100000 : -2 - (int)below(&t->rng, 100);
		return true;
	case ST_READ_ONLY:
	case ST_WRITE_ONLY:
		tmp = backing_open(flash_dir);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", tmp);
		s->fd = open(path, (k == ST_READ_ONLY ? O_RDONLY : O_WRONLY) | O_CLOEXEC);
		close(tmp);
		break;
	case ST_DIRECTORY:
		s->fd = open(chance(&t->rng, 50) ? flash_dir : "/tmp",
			     O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		break;
	case ST_DEV_NULL:
		s->fd = open("/dev/null", O_RDWR | O_CLOEXEC);
		break;
	case ST_KVMM_FD: /* a dup of /dev/kvmm or of the region's fd */
		s->fd = fcntl(chance(&t->rng, 50) ? region : dev_fd, F_DUPFD_CLOEXEC, 0);
		break;
	case ST_PIPE:
		if (pipe2(sv, O_CLOEXEC))
			return false;
		i = below(&t->rng, 2);
		s->fd = sv[i];
		s->aux = sv[1 - i];
		break;
	case ST_FIFO:
		snprintf(s->path, sizeof(s->path), "/tmp/fuzz-fifo-%d-%u", (int)getpid(),
			 (unsigned int)below(&t->rng, 1U << 30));
		if (mkfifo(s->path, 0600)) {
			store_skip(k, "mkfifo: %s", strerror(errno));
			s->path[0] = 0;
			return false;
		}
		s->fd = open(s->path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
		break;
	case ST_SOCKET:
		if (socketpair(AF_UNIX,
			       (chance(&t->rng, 50) ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0,
			       sv))
			return false;
		s->fd = sv[0];
		s->aux = sv[1];
		break;
	case ST_O_APPEND:
		s->fd = flash_file(s, O_RDWR | O_APPEND);
		break;
	case ST_SETFL_APPEND:
		s->fd = flash_file(s, O_RDWR);
		if (s->fd >= 0 && fcntl(s->fd, F_SETFL, O_APPEND))
			report("F_SETFL O_APPEND: %s", strerror(errno));
		break;
	case ST_APPEND_ONLY:
	case ST_IMMUTABLE:
		s->fd = flash_file(s, O_RDWR);
		if (s->fd < 0)
			break;
		err = fs_flag(s->fd, k == ST_APPEND_ONLY ? FS_APPEND_FL : FS_IMMUTABLE_FL, true);
		if (err) {
			store_skip(k, "FS_IOC_SETFLAGS: %s", strerror(-err));
			goto fail;
		}
		s->flag = k == ST_APPEND_ONLY ? FS_APPEND_FL : FS_IMMUTABLE_FL;
		break;
	case ST_SWAP_FILE:
		if (!swap_make())
			return false;
		if (swapon(swap_path, 0)) {
			swap_broken = true;
			return store_skip(k, "swapon %s: %s", swap_path, strerror(errno));
		}
		/* Until store_swapoff(), swap counts in the overcommit check. */
		s->swap_on = true;
		s->fd = open(swap_path, O_RDWR | O_CLOEXEC);
		break;
	case ST_NOT_EMPTY:
		s->fd = flash_file(s, O_RDWR);
		n = 1 + below(&t->rng, 2 * page_size);
		if (s->fd >= 0) {
			for (i = 0; i < (size_t)n; i++)
				t->iobuf[i] = rnd(&t->rng);
			if (pwrite(s->fd, t->iobuf, n, 0) != n)
				report("cannot write %zd bytes into %s", n, s->path);
		}
		break;
	default:
		return false;
	}
	if (s->fd < 0) {
		if (errno != ENOSPC) /* a full disk has no room for a new file */
			report("cannot open a %s store: %s", store_rules[k].what, strerror(errno));
		goto fail;
	}
	/* A file kvmm must leave alone when it refuses it: its size and first bytes. */
	if (k != ST_DEBUGFS && !fstat(s->fd, &st) && S_ISREG(st.st_mode)) {
		s->check = true;
		s->size = st.st_size;
		n = pread(s->fd, s->data, sizeof(s->data), 0);
		s->data_len = n > 0 ? n : 0;
	}
	return true;
fail:
	store_close(s);
	return false;
}

static void store_close(struct store *s)
{
	if (s->flag && fs_flag(s->fd, s->flag, false))
		report("cannot clear the inode flag of %s", s->path);
	store_swapoff(s);
	if (s->fd >= 0 && s->kind != ST_NOT_FD)
		close(s->fd);
	if (s->aux >= 0)
		close(s->aux);
	if (s->path[0])
		unlink(s->path);
	s->fd = s->aux = -1;
	s->path[0] = 0;
}

/* A store SET_BACKING refused is as it was: same size, same first bytes. */
static void store_unchanged(const struct store *s)
{
	uint8_t buf[sizeof(s->data)];
	struct stat st;
	ssize_t n;

	if (!s->check)
		return;
	if (fstat(s->fd, &st) || (uint64_t)st.st_size != s->size)
		report("SET_BACKING refused a %s, whose size went from %llu to %lld",
		       store_rules[s->kind].what, (unsigned long long)s->size,
		       (long long)st.st_size);
	if (!s->data_len)
		return;
	n = pread(s->fd, buf, s->data_len, 0);
	if (n != (ssize_t)s->data_len || memcmp(buf, s->data, s->data_len))
		report("SET_BACKING refused a %s, whose first bytes changed",
		       store_rules[s->kind].what);
}

/* The errnos SET_BACKING may answer for a store of kind @k on a region that may hold slots. */
static struct eset store_ok(enum store_kind k, bool may_hold_slots)
{
	if (store_rules[k].err)
		return OK(store_rules[k].err);
	/*
	 * kvmm writes its header into an empty file as write(2) would: on a
	 * full disk (the 64 MiB one fills up) that fails with ENOSPC.
	 */
	if (k == ST_SMALL || k == ST_FLASH)
		return may_hold_slots ? OK(0, EBUSY, ENOSPC) : OK(0, ENOSPC);
	return may_hold_slots ? OK(0, EBUSY) : OK(0);
}

static uint64_t pick_chunk(struct rng *r)
{
	static const uint64_t sizes[] = {4 * KiB, 8 * KiB, 64 * KiB, 256 * KiB, 2 * MiB};

	return sizes[below(r, 5)];
}

/* Create a region with valid arguments and put it in slot @slot. */
static int region_new(struct th *t, int slot, bool shadow)
{
	struct kvmm_region_create c = {.numa_node = KVMM_NUMA_LOCAL, .flags = KVMM_CREATE_CLOEXEC};
	struct region nr = {0};
	enum backing b;
	long ret;

	c.chunk_bytes = shadow ? 64 * KiB : pick_chunk(&t->rng);
	if (shadow)
		c.size = SHADOW_BYTES;
	else if (chance(&t->rng, 10))
		c.size = KVMM_REGION_MAX_BYTES;
	else
		c.size = c.chunk_bytes * (1 + below(&t->rng, 64));
	c.numa_node = chance(&t->rng, 70) ? KVMM_NUMA_LOCAL : (int)below(&t->rng, 2);
	c.priority = below(&t->rng, 4);
	ret = ioctl(dev_fd, KVMM_IOC_REGION_CREATE, &c);
	if (!check(t, K_CREATE, ret, errno, OK(0, ENOMEM, EMFILE),
		   "valid create size %llu chunk %u", (unsigned long long)c.size, c.chunk_bytes) ||
	    ret)
		return -1;
	nr.fd = c.fd;
	nr.size = c.size;
	nr.chunk = c.chunk_bytes;
	nr.id = c.id;
	nr.shadow = shadow;
	b = shadow ? B_FLASH : (enum backing)below(&t->rng, 4);
	nr.fixed_backing = shadow || chance(&t->rng, 50);
	if (b != B_NONE) {
		enum store_kind k = b == B_FLASH ? ST_FLASH : b == B_SMALL ? ST_SMALL : ST_TMPFS;
		struct store st;

		if (store_open(t, k, &st, nr.fd)) {
			ret = set_backing(nr.fd, st.fd);
			check(t, K_SET_BACKING, ret, -ret, store_ok(k, false),
			      "%s for a new region", store_rules[k].what);
			store_close(&st);
			nr.backing = ret ? B_NONE : store_rules[k].as;
		}
	}
	if (nr.backing == B_NONE)
		nr.fixed_backing = false;
	pthread_mutex_lock(&reg_lock);
	regions[slot] = nr;
	pthread_mutex_unlock(&reg_lock);
	region_publish(slot, &nr);
	return 0;
}

static void region_close(int slot)
{
	int fd;

	pthread_mutex_lock(&reg_lock);
	fd = regions[slot].fd;
	regions[slot].fd = -1;
	pthread_mutex_unlock(&reg_lock);
	if (fd >= 0) {
		region_publish(slot, NULL);
		count(K_CLOSE, close(fd));
	}
}

/* ---- argument generators --------------------------------------------------- */

/* A pointer the kernel cannot read (or, with @ro, can read but not write). */
static void *bad_ptr(struct rng *r, bool ro)
{
	switch (below(r, ro ? 6 : 5)) {
	case 0:
		return NULL;
	case 1:
		return (void *)(uintptr_t)1;
	case 2:
		return (void *)(uintptr_t)0xffffffff81000000ULL;
	case 3:
		return bad_none_page + below(r, 64);
	case 4:
		return (void *)(uintptr_t)0x00007ffffffff000ULL;
	default:
		return bad_rw_page;
	}
}

/*
 * Fill @a with a range of @rg: valid (return true) or invalid in one of the
 * ways the ABI calls EINVAL (return false). Valid ranges are kept short.
 */
static bool gen_range(struct rng *r, const struct region *rg, struct kvmm_range *a)
{
	uint64_t nchunks = rg->size / rg->chunk, first, n;

	memset(a, 0, sizeof(*a));
	first = below(r, nchunks);
	if (chance(r, 20))
		first = nchunks > 32 && chance(r, 50) ? nchunks - 1 - below(r, 4) : 0;
	n = 1 + below(r, nchunks - first < 16 ? nchunks - first : 16);
	if (chance(r, 10))
		n = nchunks - first; /* to the end: huge for a 1 TiB region */
	a->offset = first * rg->chunk;
	a->length = n * rg->chunk;
	if (chance(r, 80))
		return true;
	switch (below(r, 9)) {
	case 0:
		a->length = 0;
		break;
	case 1:
		a->offset += 1 + below(r, rg->chunk - 1);
		break;
	case 2:
		a->length += 1 + below(r, rg->chunk - 1);
		break;
	case 3:
		a->offset = rg->size + rg->chunk * below(r, 3);
		break;
	case 4: /* offset + length wraps around to 0 */
		a->offset = rg->chunk * (1 + below(r, nchunks));
		a->length = 0 - a->offset;
		break;
	case 5:
		a->length = rg->size - a->offset + rg->chunk;
		break;
	case 6:
		a->flags = 1U << below(r, 32);
		break;
	case 7:
		a->reserved0 = 1 + (uint32_t)below(r, UINT32_MAX);
		break;
	default:
		a->reserved[below(r, 2)] = 1ULL << below(r, 64);
		break;
	}
	return false;
}

/* ---- region-fd ioctls ------------------------------------------------------ */

static const unsigned long range_cmds[] = {
    KVMM_IOC_ENSURE, KVMM_IOC_DISCARD,	KVMM_IOC_PIN,  KVMM_IOC_UNPIN,
    KVMM_IOC_EVICT,  KVMM_IOC_PREFETCH, KVMM_IOC_WAIT,
};
static const enum kind range_kinds[] = {
    K_ENSURE, K_DISCARD, K_PIN, K_UNPIN, K_EVICT, K_PREFETCH, K_WAIT,
};

/* The errnos the ABI allows for a valid range on @rg. */
static struct eset range_ok(enum kind k, const struct region *rg)
{
	bool may_unbacked = !rg->fixed_backing;
	bool may_full = !rg->shadow; /* other regions may fill the disk */

	switch (k) {
	case K_ENSURE:
	case K_PIN:
		return OK(0, ENOMEM);
	case K_DISCARD:
		return OK(0, EBUSY);
	case K_UNPIN:
		return OK(0, EINVAL);
	case K_EVICT:
		if (may_unbacked && may_full)
			return OK(0, EBUSY, ENODEV, ENOSPC);
		if (may_full)
			return OK(0, EBUSY, ENOSPC);
		return OK(0, EBUSY);
	case K_PREFETCH:
		return OK(0, ENOMEM);
	default:
		return OK(0);
	}
}

static void pin_remember(struct th *t, int fd, const struct kvmm_range *a)
{
	if (t->npins == MAX_PINS)
		return;
	t->pins[t->npins].fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (t->pins[t->npins].fd < 0)
		return;
	t->pins[t->npins].r = *a;
	t->npins++;
}

static void pins_release(struct th *t, bool all)
{
	while (t->npins > 0 && (all || chance(&t->rng, 50))) {
		int i = t->npins - 1;
		long ret = ioctl(t->pins[i].fd, KVMM_IOC_UNPIN, &t->pins[i].r);

		/* Another thread's random UNPIN may have taken this pin. */
		check(t, K_UNPIN, ret, errno, OK(0, EINVAL), "unpin of an own pin");
		close(t->pins[i].fd);
		t->npins--;
	}
}

/* One range ioctl on @rg; destructive ones are never aimed at the shadow. */
static void op_range(struct th *t, const struct region *rg)
{
	cur_op = __func__;
	unsigned int i = below(&t->rng, 7);
	struct kvmm_range a;
	bool valid, ptr_bad = chance(&t->rng, 4);
	void *arg = &a;
	long ret;
	int e;

	if (rg->shadow && range_kinds[i] == K_DISCARD)
		i = 0;
	valid = gen_range(&t->rng, rg, &a);
	if (ptr_bad)
		arg = bad_ptr(&t->rng, false);
	maybe_nth(t);
	ret = ioctl(rg->fd, range_cmds[i], arg);
	e = errno;
	end_nth(t);
	if (ptr_bad)
		check(t, range_kinds[i], ret, e, OK(EFAULT), "bad pointer %p", arg);
	else if (!valid)
		check(t, range_kinds[i], ret, e, OK(EINVAL),
		      "invalid range off %#llx len %#llx flags %#x r0 %#x r %#llx/%#llx on size "
		      "%#llx "
		      "chunk %#x",
		      (unsigned long long)a.offset, (unsigned long long)a.length, a.flags,
		      a.reserved0, (unsigned long long)a.reserved[0],
		      (unsigned long long)a.reserved[1], (unsigned long long)rg->size, rg->chunk);
	else
		check(t, range_kinds[i], ret, e, range_ok(range_kinds[i], rg),
		      "off %#llx len %#llx on region %u (size %#llx chunk %#x backing %d)",
		      (unsigned long long)a.offset, (unsigned long long)a.length, rg->id,
		      (unsigned long long)rg->size, rg->chunk, rg->backing);
	if (!ret && valid && !ptr_bad && range_kinds[i] == K_PIN)
		pin_remember(t, rg->fd, &a);
}

/*
 * KVMM_IOC_SHARE into @dst from a random region (the shadow too: sharing
 * never changes what the source reads, and the shadow's later writes must
 * copy); never into the shadow, whose contents it would replace.
 */
static void op_share(struct th *t, const struct region *dst)
{
	cur_op = __func__;
	struct region src = {.fd = -1};
	uint64_t chunk = dst->chunk, dn = dst->size / chunk, sn, n;
	struct kvmm_share a = {0};
	bool valid = true, same_chunk, overlap;
	struct eset ok;
	long ret;
	int e;

	if (dst->shadow)
		return;
	/* Mostly a region of the same chunk size, so that shares happen. */
	for (int k = 0; k < 4; k++) {
		int slot = chance(&t->rng, 30) ? 0 : (int)below(&t->rng, MAX_REGIONS);

		if (src.fd >= 0)
			close(src.fd);
		src = region_get(slot);
		if (src.fd >= 0 && src.chunk == dst->chunk)
			break;
	}
	if (src.fd < 0)
		return;
	same_chunk = src.chunk == chunk;
	sn = src.size / chunk;
	n = 1 + below(&t->rng, same_chunk ? (dn < sn ? dn : sn) : 1);
	a.src_fd = src.fd;
	a.length = n * chunk;
	a.src_offset = (sn >= n ? below(&t->rng, sn - n + 1) : 0) * chunk;
	a.dst_offset = below(&t->rng, dn - n + 1) * chunk;
	if (chance(&t->rng, 25)) {
		valid = false;
		switch (below(&t->rng, 7)) {
		case 0:
			a.flags = 1U << below(&t->rng, 32);
			break;
		case 1:
			a.reserved[below(&t->rng, 3)] = 1ULL << below(&t->rng, 64);
			break;
		case 2:
			a.length = 0;
			break;
		case 3:
			/* Unaligned, or (4 KiB chunks) past the end. */
			a.dst_offset +=
			    chunk > (uint64_t)page_size ? (uint64_t)page_size : dst->size;
			break;
		case 4:
			a.src_offset = UINT64_MAX - below(&t->rng, 2) * chunk;
			break;
		case 5:
			a.length = dst->size + chunk;
			break;
		default:
			a.src_fd = chance(&t->rng, 50) ? -1 : dev_fd;
			break;
		}
	}
	maybe_nth(t);
	ret = ioctl(dst->fd, KVMM_IOC_SHARE, &a);
	e = errno;
	end_nth(t);
	overlap = src.id == dst->id && a.src_offset < a.dst_offset + a.length &&
		  a.dst_offset < a.src_offset + a.length;
	if (!valid)
		ok = OK(EINVAL, EBADF);
	else if (!same_chunk || overlap || a.src_offset + a.length > src.size)
		ok = OK(EINVAL);
	else
		ok = OK(0, EXDEV, EBUSY, ENOMEM);
	check(t, K_SHARE, ret, e, ok,
	      "region %u %#llx+%#llx from region %u %#llx (chunks %#x/%#x, flags %#x)", dst->id,
	      (unsigned long long)a.dst_offset, (unsigned long long)a.length, src.id,
	      (unsigned long long)a.src_offset, dst->chunk, src.chunk, a.flags);
	close(src.fd);
}

static void op_stat(struct th *t, const struct region *rg)
{
	cur_op = __func__;
	struct kvmm_region_stat st;
	bool ptr_bad = chance(&t->rng, 10);
	void *arg = ptr_bad ? bad_ptr(&t->rng, true) : &st;
	long ret;
	int e;
	unsigned int i;

	memset(&st, 0xa5, sizeof(st));
	ret = ioctl(rg->fd, KVMM_IOC_STAT, arg);
	e = errno;
	if (ptr_bad) {
		check(t, K_STAT, ret, e, OK(EFAULT), "bad pointer %p", arg);
		return;
	}
	if (!check(t, K_STAT, ret, e, OK(0), "region %u", rg->id) || ret)
		return;
	if (st.size != rg->size || st.chunk_bytes != rg->chunk || st.id != rg->id)
		report("STAT: region %u says size %#llx chunk %#x id %u, created with %#llx %#x %u",
		       rg->id, (unsigned long long)st.size, st.chunk_bytes, st.id,
		       (unsigned long long)rg->size, rg->chunk, rg->id);
	for (i = 0; i < sizeof(st.reserved) / sizeof(st.reserved[0]); i++)
		if (st.reserved[i])
			report("STAT: reserved[%u] = %#llx", i, (unsigned long long)st.reserved[i]);
	if (st.pinned_bytes > st.size || st.resident_bytes > st.size ||
	    st.flash_resident_bytes > st.size)
		report("STAT: byte counts beyond the region size (resident %#llx pinned %#llx "
		       "flash %#llx)",
		       (unsigned long long)st.resident_bytes, (unsigned long long)st.pinned_bytes,
		       (unsigned long long)st.flash_resident_bytes);
}

static void op_query(struct th *t, const struct region *rg)
{
	cur_op = __func__;
	uint64_t nchunks = rg->size / rg->chunk;
	struct kvmm_query q = {0};
	bool valid = true, ptr_bad = false;
	long ret;
	int e;

	q.first_chunk = below(&t->rng, nchunks);
	q.nr_chunks =
	    1 + below(&t->rng, nchunks - q.first_chunk < 4096 ? nchunks - q.first_chunk : 4096);
	if (chance(&t->rng, 5) && nchunks >= KVMM_QUERY_MAX_CHUNKS) {
		q.first_chunk = nchunks - KVMM_QUERY_MAX_CHUNKS;
		q.nr_chunks = KVMM_QUERY_MAX_CHUNKS;
	}
	q.states = (uintptr_t)t->qbuf;
	if (chance(&t->rng, 25)) {
		valid = false;
		switch (below(&t->rng, 7)) {
		case 0:
			q.nr_chunks = 0;
			break;
		case 1:
			q.nr_chunks = KVMM_QUERY_MAX_CHUNKS + 1 + below(&t->rng, 4);
			break;
		case 2:
			q.first_chunk = nchunks + below(&t->rng, 3);
			break;
		case 3:
			q.nr_chunks = nchunks - q.first_chunk + 1;
			if (q.nr_chunks > KVMM_QUERY_MAX_CHUNKS)
				q.first_chunk = UINT64_MAX - below(&t->rng, 2);
			break;
		case 4:
			q.flags = 1U << below(&t->rng, 32);
			break;
		case 5:
			q.reserved0 = 1;
			break;
		default:
			q.reserved[below(&t->rng, 2)] = 1ULL << below(&t->rng, 64);
			break;
		}
	} else if (chance(&t->rng, 5)) {
		ptr_bad = true;
		q.states = (uintptr_t)bad_ptr(&t->rng, true);
	}
	ret = ioctl(rg->fd, KVMM_IOC_QUERY, &q);
	e = errno;
	if (!valid)
		check(t, K_QUERY, ret, e, OK(EINVAL), "invalid query first %llu nr %llu of %llu",
		      (unsigned long long)q.first_chunk, (unsigned long long)q.nr_chunks,
		      (unsigned long long)nchunks);
	else if (ptr_bad)
		check(t, K_QUERY, ret, e, OK(EFAULT), "bad states pointer %#llx",
		      (unsigned long long)q.states);
	else
		check(t, K_QUERY, ret, e, OK(0), "first %llu nr %llu of %llu",
		      (unsigned long long)q.first_chunk, (unsigned long long)q.nr_chunks,
		      (unsigned long long)nchunks);
}

static void op_poll(struct th *t, int fd)
{
	cur_op = __func__;
	struct pollfd p = {.fd = fd, .events = POLLIN | POLLPRI | POLLOUT};
	long ret = poll(&p, 1, chance(&t->rng, 10) ? 5 : 0);

	check(t, K_POLL, ret, errno, OK(0), "poll");
}

/* An ioctl number kvmm does not define, on a region fd or /dev/kvmm. */
static unsigned long other_cmd(struct rng *r, bool region)
{
	static const unsigned long dev_cmds[] = {KVMM_IOC_VERSION, KVMM_IOC_REGION_CREATE,
						 KVMM_IOC_GPU_CHARGE, KVMM_IOC_GPU_UNCHARGE,
						 KVMM_IOC_REGION_LIST};
	unsigned long c;

	switch (below(r, 4)) {
	case 0: /* the other object's ioctls */
		return region ? dev_cmds[below(r, 5)] : range_cmds[below(r, 7)];
	case 1: /* a known number with a wrong size or direction */
		c = region ? range_cmds[below(r, 7)] : dev_cmds[below(r, 5)];
		return c ^ (1UL << (16 + below(r, 16)));
	default: /* another number of the kvmm magic */
		c = _IOC(below(r, 4), KVMM_IOC_MAGIC, 0x1a + below(r, 0xe6), below(r, 1 << 14));
		return c;
	}
}

static bool is_kvmm_cmd(unsigned long c)
{
	static const unsigned long all[] = {
	    KVMM_IOC_VERSION,	   KVMM_IOC_REGION_CREATE, KVMM_IOC_GPU_CHARGE,
	    KVMM_IOC_GPU_UNCHARGE, KVMM_IOC_REGION_LIST,   KVMM_IOC_ENSURE,
	    KVMM_IOC_DISCARD,	   KVMM_IOC_STAT,	   KVMM_IOC_QUERY,
	    KVMM_IOC_PIN,	   KVMM_IOC_UNPIN,	   KVMM_IOC_SET_BACKING,
	    KVMM_IOC_EVICT,	   KVMM_IOC_PREFETCH,	   KVMM_IOC_WAIT,
	};
	unsigned int i;

	for (i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (all[i] == c)
			return true;
	return false;
}

static void op_other_cmd(struct th *t, int fd, bool region)
{
	cur_op = __func__;
	unsigned long c = other_cmd(&t->rng, region);
	uint8_t junk[256];
	long ret;
	unsigned int i;

	for (i = 0; i < sizeof(junk); i++)
		junk[i] = rnd(&t->rng);
	/* A region fd is also a valid target of the region ioctls it defines. */
	if (region && is_kvmm_cmd(c) && _IOC_NR(c) >= 0x10)
		return;
	if (!region && is_kvmm_cmd(c) && _IOC_NR(c) < 0x10)
		return;
	ret = ioctl(fd, c, junk);
	check(t, region ? K_REGION_OTHER_CMD : K_DEV_OTHER_CMD, ret, errno, OK(ENOTTY), "cmd %#lx",
	      c);
}

/* A fully random number: counted, not judged (the VFS answers some itself). */
static void op_random_cmd(struct th *t, int fd, bool region)
{
	cur_op = __func__;
	static const unsigned long vfs[] = {FIOCLEX, FIONCLEX, FIONBIO, FIOASYNC, FIOQSIZE};
	unsigned long c = (uint32_t)rnd(&t->rng);
	uint8_t junk[256];
	long ret;
	unsigned int i;

	for (i = 0; i < sizeof(vfs) / sizeof(vfs[0]); i++)
		if (c == vfs[i])
			return;
	if (_IOC_TYPE(c) == KVMM_IOC_MAGIC || _IOC_TYPE(c) == 'f' || _IOC_TYPE(c) == 'X' ||
	    _IOC_TYPE(c) == 'T' || _IOC_TYPE(c) == 0x94)
		return;
	memset(junk, 0, sizeof(junk));
	ret = ioctl(fd, c, junk);
	count(region ? K_REGION_OTHER_CMD : K_DEV_OTHER_CMD, ret);
}

/* ---- /dev/kvmm ioctls ------------------------------------------------------- */

static uint64_t charged[2][KVMM_MAX_GPUS]; /* per dev fd, as this program counts */

static void op_version(struct th *t)
{
	cur_op = __func__;
	struct kvmm_version v;
	bool ptr_bad = chance(&t->rng, 20);
	void *arg = ptr_bad ? bad_ptr(&t->rng, true) : &v;
	long ret;
	int e;

	memset(&v, 0xa5, sizeof(v));
	ret = ioctl(dev_fd, KVMM_IOC_VERSION, arg);
	e = errno;
	if (ptr_bad) {
		check(t, K_VERSION, ret, e, OK(EFAULT), "bad pointer %p", arg);
		return;
	}
	if (!check(t, K_VERSION, ret, e, OK(0), "version") || ret)
		return;
	if (v.abi_version != KVMM_ABI_VERSION || v.page_size != page_size || v.reserved[0] ||
	    v.reserved[1] || v.reserved[2])
		report("VERSION: abi %u page %u reserved %#llx %#llx %#llx", v.abi_version,
		       v.page_size, (unsigned long long)v.reserved[0],
		       (unsigned long long)v.reserved[1], (unsigned long long)v.reserved[2]);
}

/* REGION_CREATE with garbage or boundary arguments; valid ones go to a slot. */
static void op_create(struct th *t)
{
	cur_op = __func__;
	struct kvmm_region_create c = {.numa_node = KVMM_NUMA_LOCAL};
	uint64_t chunk;
	bool valid = true, ptr_bad = false;
	long ret;
	int e, slot;

	c.chunk_bytes = chance(&t->rng, 20) ? 0 : pick_chunk(&t->rng);
	chunk = c.chunk_bytes ? c.chunk_bytes : cur_default_chunk;
	c.size = chunk * (1 + below(&t->rng, 32));
	if (chance(&t->rng, 10))
		c.size = KVMM_REGION_MAX_BYTES;
	c.flags = chance(&t->rng, 50) ? KVMM_CREATE_CLOEXEC : 0;
	c.numa_node = chance(&t->rng, 80) ? KVMM_NUMA_LOCAL : (int)below(&t->rng, 2);
	c.priority = rnd(&t->rng);
	if (chance(&t->rng, 50)) {
		valid = false;
		switch (below(&t->rng, 13)) {
		case 0:
			c.size = 0;
			break;
		case 1:
			c.size += 1 + below(&t->rng, chunk - 1);
			break;
		case 2:
			c.size = KVMM_REGION_MAX_BYTES + chunk;
			break;
		case 3:
			c.size = UINT64_MAX - below(&t->rng, 2) * (chunk - 1);
			break;
		case 4:
			c.chunk_bytes = page_size / 2;
			break;
		case 5:
			c.chunk_bytes = KVMM_CHUNK_MAX_BYTES * 2;
			break;
		case 6:
			c.chunk_bytes = (uint32_t)chunk * 3; /* never a power of two */
			break;
		case 7:
			c.numa_node = 2 + below(&t->rng, 1000);
			break;
		case 8:
			c.numa_node = chance(&t->rng, 50) ? -2 : INT_MIN;
			break;
		case 9:
			c.flags = 1U << (1 + below(&t->rng, 31));
			break;
		case 10:
			c.reserved0 = 1;
			break;
		case 11:
			c.reserved1 = 1U << below(&t->rng, 32);
			break;
		default:
			c.reserved[below(&t->rng, 4)] = 1ULL << below(&t->rng, 64);
			break;
		}
	} else if (chance(&t->rng, 8)) {
		ptr_bad = true;
	}
	maybe_nth(t);
	ret = ioctl(dev_fd, KVMM_IOC_REGION_CREATE, ptr_bad ? bad_ptr(&t->rng, false) : &c);
	e = errno;
	end_nth(t);
	if (ptr_bad) {
		check(t, K_CREATE, ret, e, OK(EFAULT), "bad pointer");
		return;
	}
	if (!valid) {
		check(t, K_CREATE, ret, e, OK(EINVAL),
		      "invalid create size %#llx chunk %#x node %d flags %#x r0 %#x r1 %#x",
		      (unsigned long long)c.size, c.chunk_bytes, c.numa_node, c.flags, c.reserved0,
		      c.reserved1);
		if (!ret)
			close(c.fd);
		return;
	}
	check(t, K_CREATE, ret, e, OK(0, ENOMEM, EMFILE), "create size %#llx chunk %#x node %d",
	      (unsigned long long)c.size, c.chunk_bytes, c.numa_node);
	if (ret)
		return;
	if (c.chunk_bytes != chunk || c.id == 0 || c.reserved0 || c.reserved1)
		report("REGION_CREATE output: chunk %u (want %llu) id %u", c.chunk_bytes,
		       (unsigned long long)chunk, c.id);
	slot = 1 + below(&t->rng, MAX_REGIONS - 1);
	region_close(slot);
	pthread_mutex_lock(&reg_lock);
	regions[slot] = (struct region){
	    .fd = c.fd, .size = c.size, .chunk = c.chunk_bytes, .id = c.id, .backing = B_NONE};
	pthread_mutex_unlock(&reg_lock);
	region_publish(slot, &regions[slot]);
}

static void op_gpu(struct th *t)
{
	cur_op = __func__;
	int which = below(&t->rng, 2), fd = which ? dev_fd2 : dev_fd;
	bool charge = chance(&t->rng, 55), valid = true, ptr_bad = false;
	struct kvmm_gpu_charge a = {0};
	enum kind k = charge ? K_GPU_CHARGE : K_GPU_UNCHARGE;
	long ret;
	int e;

	a.gpu = below(&t->rng, KVMM_MAX_GPUS);
	a.bytes = chance(&t->rng, 70) ? (1 + below(&t->rng, 64)) * MiB : rnd(&t->rng);
	if (!charge && chance(&t->rng, 60) && charged[which][a.gpu])
		a.bytes = 1 + below(&t->rng, charged[which][a.gpu]);
	if (chance(&t->rng, 25)) {
		valid = false;
		switch (below(&t->rng, 4)) {
		case 0:
			a.gpu = KVMM_MAX_GPUS + below(&t->rng, 1000);
			break;
		case 1:
			a.bytes = 0;
			break;
		case 2:
			a.flags = 1U << below(&t->rng, 32);
			break;
		default:
			a.reserved[below(&t->rng, 3)] = 1;
			break;
		}
	} else if (chance(&t->rng, 5)) {
		ptr_bad = true;
	}
	ret = ioctl(fd, charge ? KVMM_IOC_GPU_CHARGE : KVMM_IOC_GPU_UNCHARGE,
		    ptr_bad ? bad_ptr(&t->rng, false) : &a);
	e = errno;
	if (ptr_bad) {
		check(t, k, ret, e, OK(EFAULT), "bad pointer");
	} else if (!valid) {
		check(t, k, ret, e, OK(EINVAL), "invalid gpu %u bytes %#llx flags %#x", a.gpu,
		      (unsigned long long)a.bytes, a.flags);
	} else if (charge) {
		/* Budgets are unlimited: only overflow of the GPU's total refuses. */
		check(t, k, ret, e, OK(0, EDQUOT, EOVERFLOW), "charge gpu %u bytes %#llx", a.gpu,
		      (unsigned long long)a.bytes);
		if (!ret)
			charged[which][a.gpu] += a.bytes;
	} else {
		bool over = a.bytes > charged[which][a.gpu];

		check(t, k, ret, e, over ? OK(EINVAL) : OK(0),
		      "uncharge gpu %u bytes %#llx of %#llx", a.gpu, (unsigned long long)a.bytes,
		      (unsigned long long)charged[which][a.gpu]);
		if (!ret)
			charged[which][a.gpu] -= a.bytes;
	}
	if (!ret && !ptr_bad && valid && a.charged != charged[which][a.gpu])
		report("GPU ledger: fd charged %#llx, this program counts %#llx",
		       (unsigned long long)a.charged, (unsigned long long)charged[which][a.gpu]);
}

static void op_list(struct th *t)
{
	cur_op = __func__;
	struct kvmm_region_info info[16];
	struct kvmm_region_list l = {0};
	bool valid = true, ptr_bad = false;
	long ret;
	int e;
	unsigned int i;

	l.capacity = below(&t->rng, 17);
	l.regions = (uintptr_t)info;
	if (chance(&t->rng, 10)) {
		ptr_bad = true;
		l.capacity = 1 + below(&t->rng, 70000);
		l.regions = (uintptr_t)bad_ptr(&t->rng, true);
	} else if (chance(&t->rng, 15)) {
		valid = false;
		if (chance(&t->rng, 33))
			l.flags = 1U << below(&t->rng, 32);
		else if (chance(&t->rng, 50))
			l.reserved0 = 1;
		else
			l.reserved[below(&t->rng, 2)] = 1;
	}
	memset(info, 0xa5, sizeof(info));
	ret = ioctl(dev_fd, KVMM_IOC_REGION_LIST, &l);
	e = errno;
	if (!valid) {
		check(t, K_LIST, ret, e, OK(EINVAL), "invalid list");
		return;
	}
	/* The shadow region always exists, so a bad array is written to. */
	if (ptr_bad) {
		check(t, K_LIST, ret, e, OK(EFAULT), "bad array, capacity %u", l.capacity);
		return;
	}
	if (!check(t, K_LIST, ret, e, OK(0), "capacity %u", l.capacity) || ret)
		return;
	for (i = 0; i < l.capacity && i < l.count; i++) {
		if (info[i].reserved[0] || info[i].reserved[1] || info[i].reserved[2] ||
		    info[i].shared_bytes > info[i].size || (i && info[i].id <= info[i - 1].id))
			report("REGION_LIST entry %u: id %u (previous %u), reserved not zero", i,
			       info[i].id, i ? info[i - 1].id : 0);
	}
}

/* ---- the shadow region ------------------------------------------------------ */

static struct {
	int fd;
	uint8_t *map;	/* MAP_SHARED of the whole region, never moved */
	uint8_t *data;	/* what the region must hold */
	uint8_t *known; /* per page: data is exact (0 after a write that faulted) */
	uint64_t pages;
	uint32_t chunk;
} sh;

static void sh_fill(struct rng *r, uint8_t *p, size_t len)
{
	cur_op = __func__;
	uint64_t v = rnd(r);
	size_t i;

	for (i = 0; i < len; i++) {
		if (!(i & 7))
			v = rnd(r);
		p[i] = v >> (8 * (i & 7));
	}
}

/* Write pages through the mapping; a page whose write faulted is unknown. */
static void sh_write_map(struct th *t)
{
	cur_op = __func__;
	uint64_t p = below(&t->rng, sh.pages), n = 1 + below(&t->rng, 8), i;

	if (p + n > sh.pages)
		n = sh.pages - p;
	for (i = p; i < p + n; i++) {
		uint8_t *buf = t->iobuf;

		sh_fill(&t->rng, buf, page_size);
		sh.known[i] = 0;
		if (!g_copy(sh.map + i * page_size, buf, page_size)) {
			memcpy(sh.data + i * page_size, buf, page_size);
			sh.known[i] = 1;
		}
	}
	count(K_TOUCH, 0);
}

static void sh_pwrite(struct th *t)
{
	cur_op = __func__;
	uint64_t size = sh.pages * page_size;
	uint64_t off = below(&t->rng, size), len = 1 + below(&t->rng, 3 * page_size);
	long ret;
	int e;

	if (off + len > size)
		len = size - off;
	sh_fill(&t->rng, t->iobuf, len);
	maybe_nth(t);
	ret = pwrite(sh.fd, t->iobuf, len, off);
	e = errno;
	end_nth(t);
	check(t, K_PWRITE, ret, e, OK(0, ENOMEM), "shadow pwrite off %#llx len %#llx",
	      (unsigned long long)off, (unsigned long long)len);
	if (ret > 0)
		memcpy(sh.data + off, t->iobuf, ret);
}

static void sh_discard(struct th *t)
{
	cur_op = __func__;
	uint64_t nchunks = sh.pages * page_size / sh.chunk;
	uint64_t first = below(&t->rng, nchunks), n = 1 + below(&t->rng, 4), i;
	struct kvmm_range a = {0};
	long ret;

	if (first + n > nchunks)
		n = nchunks - first;
	a.offset = first * sh.chunk;
	a.length = n * sh.chunk;
	ret = ioctl(sh.fd, KVMM_IOC_DISCARD, &a);
	check(t, K_DISCARD, ret, errno, OK(0, EBUSY), "shadow discard");
	if (ret)
		return;
	memset(sh.data + a.offset, 0, a.length);
	for (i = a.offset / page_size; i < (a.offset + a.length) / page_size; i++)
		sh.known[i] = 1;
}

static void sh_mismatch(uint64_t off, size_t len, const uint8_t *got, const char *how)
{
	cur_op = __func__;
	size_t i;

	for (i = 0; i < len; i++) {
		if (got[i] == sh.data[off + i])
			continue;
		atomic_fetch_add(&S->mismatch, 1);
		report("shadow region: byte %#llx read through %s is %#04x, last written %#04x",
		       (unsigned long long)(off + i), how, got[i], sh.data[off + i]);
		return;
	}
}

/* Make a range readable again after SIGBUS or EIO (read-back error, full pool). */
static void sh_ensure(uint64_t off, uint64_t len)
{
	cur_op = __func__;
	struct kvmm_range a = {0};

	a.offset = off & ~(uint64_t)(sh.chunk - 1);
	a.length = ((off + len + sh.chunk - 1) & ~(uint64_t)(sh.chunk - 1)) - a.offset;
	if (ioctl(sh.fd, KVMM_IOC_ENSURE, &a))
		ioctl(sh.fd, KVMM_IOC_PREFETCH, &a);
}

/*
 * Read pages back through pread or the mapping and compare the known ones.
 * @final: every page, retried until readable (the pool and errors are back
 * to normal at the end); returns false if a page cannot be read at all.
 */
static bool sh_verify(struct th *t, bool final)
{
	cur_op = __func__;
	uint64_t p = final ? 0 : below(&t->rng, sh.pages);
	uint64_t n = final ? sh.pages : 1 + below(&t->rng, 16), i;
	bool via_map = final ? false : chance(&t->rng, 50);
	bool readable = true;

	if (p + n > sh.pages)
		n = sh.pages - p;
	for (i = p; i < p + n; i++) {
		uint8_t *buf = t->iobuf;
		int tries, got = -1;

		for (tries = 0; tries < (final ? 50 : 2); tries++) {
			if (via_map) {
				got = g_copy(buf, sh.map + i * page_size, page_size) ? -1 : 0;
			} else {
				long ret = pread(sh.fd, buf, page_size, i * page_size);

				if (ret != page_size && ret >= 0)
					report("shadow pread of page %llu returned %ld",
					       (unsigned long long)i, ret);
				else if (ret < 0)
					check(t, K_PREAD, ret, errno, OK(ENOMEM),
					      "shadow pread page %llu", (unsigned long long)i);
				got = ret == page_size ? 0 : -1;
			}
			if (!got)
				break;
			sh_ensure(i * page_size, page_size);
			if (final)
				usleep(20000);
		}
		if (got) {
			if (final) {
				report("shadow region: page %llu unreadable at the end",
				       (unsigned long long)i);
				readable = false;
			}
			continue;
		}
		if (sh.known[i])
			sh_mismatch(i * page_size, page_size, buf,
				    via_map ? "the mapping" : "pread");
	}
	count(K_VERIFY, 0);
	return readable;
}

/* ---- mappings (main thread) --------------------------------------------------- */

struct mapping {
	uint8_t *addr;
	size_t len;
	int prot;
	bool shadow;
};

static struct mapping maps[MAX_MAPS];

/* ---- what the core mm refuses before kvmm's ->mmap is asked ------------------- */

static int overcommit_mode;    /* vm.overcommit_memory */
static uint64_t max_map_count; /* vm.max_map_count */

/* A field of /proc/meminfo or /proc/self/status, in bytes (UINT64_MAX: not there). */
static uint64_t proc_field(const char *path, const char *field)
{
	char buf[8192], *p;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return UINT64_MAX;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return UINT64_MAX;
	buf[n] = 0;
	for (p = buf; (p = strstr(p, field)); p++)
		if ((p == buf || p[-1] == '\n') && p[strlen(field)] == ':')
			return strtoull(p + strlen(field) + 1, NULL, 10) * KiB;
	return UINT64_MAX;
}

static unsigned long map_count(void)
{
	char buf[4096];
	unsigned long lines = 0;
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	ssize_t n, i;

	if (fd < 0)
		return 0;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		for (i = 0; i < n; i++)
			lines += buf[i] == '\n';
	close(fd);
	return lines;
}

enum core_verdict {
	CORE_PASSES,	 /* the core mm lets the call through to kvmm */
	CORE_MAY_REFUSE, /* near a limit: ENOMEM depends on what other threads map */
	CORE_REFUSES,	 /* ENOMEM before kvmm is asked */
};

/* @len more bytes against a limit of @limit with @used in use (others map meanwhile). */
static enum core_verdict limit_verdict(uint64_t len, uint64_t used, uint64_t limit)
{
	uint64_t slack = 64 * MiB + MAX_THREADS * 64 * (uint64_t)page_size;

	if (len > limit)
		return CORE_REFUSES;
	if (used == UINT64_MAX || used + len + slack > limit)
		return CORE_MAY_REFUSE;
	return CORE_PASSES;
}

static enum core_verdict rlimit_verdict(uint64_t len, const char *field, uint64_t limit)
{
	return limit_verdict(len, proc_field("/proc/self/status", field), limit);
}

#define MAX_VERDICT(a, b) ((a) > (b) ? (a) : (b))

/*
 * An mmap of @len bytes of a region fd with @prot and @flags: what do_mmap()
 * and mmap_region() (mm/mmap.c) decide before they call the region's ->mmap.
 * They answer ENOMEM first when the length is beyond the user address space,
 * when the process has vm.max_map_count mappings, when RLIMIT_AS (or
 * RLIMIT_DATA, for a private writable mapping) would be exceeded, and when a
 * private writable mapping, which is charged to the commit account unless it
 * is MAP_NORESERVE (ignored in overcommit mode 2), fails the overcommit check
 * (__vm_enough_memory): mode 0 refuses more pages than RAM plus swap, mode 1
 * refuses nothing, mode 2 refuses past CommitLimit. A 1 TiB region makes the
 * last one happen here; the others only where the VM sets tight limits. No
 * hole for the length is never the case: the mappings here take a few TiB of
 * the 128 TiB.
 */
static enum core_verdict core_mmap_verdict(uint64_t len, int prot, int flags)
{
	bool priv_write = !(flags & MAP_SHARED) && (prot & PROT_WRITE);
	bool accounted = priv_write && (!(flags & MAP_NORESERVE) || overcommit_mode == 2);
	enum core_verdict v = CORE_PASSES;
	struct rlimit rl;
	uint64_t limit;

	if (len > (1ULL << 47) - page_size)
		return CORE_REFUSES;
	if (map_count() + 2 * MAX_THREADS + 8 >= max_map_count)
		v = CORE_MAY_REFUSE;
	if (!getrlimit(RLIMIT_AS, &rl) && rl.rlim_cur != RLIM_INFINITY)
		v = MAX_VERDICT(v, rlimit_verdict(len, "VmSize", rl.rlim_cur));
	if (priv_write && !getrlimit(RLIMIT_DATA, &rl) && rl.rlim_cur != RLIM_INFINITY)
		v = MAX_VERDICT(v, rlimit_verdict(len, "VmData", rl.rlim_cur));
	if (!accounted || overcommit_mode == 1)
		return v;
	if (overcommit_mode == 0) {
		uint64_t ram = proc_field("/proc/meminfo", "MemTotal");
		uint64_t swap = proc_field("/proc/meminfo", "SwapTotal");

		if (ram == UINT64_MAX || swap == UINT64_MAX)
			return CORE_MAY_REFUSE;
		/* Exact: swap changes only in the main thread (the swap-file store). */
		return len / page_size > (ram + swap) / page_size ? CORE_REFUSES : v;
	}
	limit = proc_field("/proc/meminfo", "CommitLimit");
	if (limit == UINT64_MAX)
		return CORE_MAY_REFUSE;
	return MAX_VERDICT(v,
			   limit_verdict(len, proc_field("/proc/meminfo", "Committed_AS"), limit));
}

static void map_drop(int i)
{
	if (!maps[i].addr)
		return;
	count(K_MUNMAP, munmap(maps[i].addr, maps[i].len));
	maps[i].addr = NULL;
}

static void op_mmap(struct th *t)
{
	cur_op = __func__;
	int slot = below(&t->rng, MAX_REGIONS), i = below(&t->rng, MAX_MAPS), flags = MAP_SHARED;
	int prot = PROT_READ | PROT_WRITE;
	struct region rg = region_get(slot);
	static const char *const core_why[] = {"", " (near a core mm limit)",
					       " (the core mm refuses it first)"};
	const struct eset core_ok[] = {OK(EINVAL), OK(EINVAL, ENOMEM), OK(ENOMEM)};
	enum core_verdict core = CORE_PASSES;
	uint64_t off, len, maxlen;
	bool valid = true;
	void *p;
	int e;

	if (rg.fd < 0)
		return;
	off = rg.chunk * below(&t->rng, rg.size / rg.chunk);
	maxlen = rg.size - off < 64 * MiB ? rg.size - off : 64 * MiB;
	len = page_size * (1 + below(&t->rng, maxlen / page_size));
	if (chance(&t->rng, 5))
		len = rg.size - off; /* up to 1 TiB of address space */
	if (chance(&t->rng, 20)) {
		valid = false;
		switch (below(&t->rng, 4)) {
		case 0: /* kvmm refuses these; a huge writable one may not get that far */
			flags = MAP_PRIVATE;
			if (chance(&t->rng, 30))
				flags |= MAP_NORESERVE;
			else if (chance(&t->rng, 30))
				prot = PROT_READ;
			break;
		case 1:
			if (rg.chunk == page_size) {
				valid = true;
				break;
			}
			off += page_size * (1 + below(&t->rng, rg.chunk / page_size - 1));
			break;
		case 2:
			off = rg.size + rg.chunk * below(&t->rng, 4);
			break;
		default:
			len = rg.size - off + page_size * (1 + below(&t->rng, 4));
			break;
		}
	}
	map_drop(i);
	if (!valid)
		core = core_mmap_verdict(len, prot, flags);
	p = mmap(NULL, len, prot, flags, rg.fd, off);
	e = errno;
	if (!valid)
		check(
		    t, K_MMAP, p == MAP_FAILED ? -1 : 0, e, core_ok[core],
		    "invalid mmap off %#llx len %#llx prot %#x flags %#x of size %#llx chunk %#x%s",
		    (unsigned long long)off, (unsigned long long)len, prot, flags,
		    (unsigned long long)rg.size, rg.chunk, core_why[core]);
	else
		check(t, K_MMAP, p == MAP_FAILED ? -1 : 0, e, OK(0, ENOMEM),
		      "mmap off %#llx len %#llx of size %#llx", (unsigned long long)off,
		      (unsigned long long)len, (unsigned long long)rg.size);
	close(rg.fd);
	if (p == MAP_FAILED)
		return;
	if (!valid) {
		munmap(p, len);
		return;
	}
	maps[i] = (struct mapping){
	    .addr = p, .len = len, .prot = PROT_READ | PROT_WRITE, .shadow = rg.shadow};
}

static int map_pick(struct th *t)
{
	int i = below(&t->rng, MAX_MAPS), k;

	for (k = 0; k < MAX_MAPS; k++, i = (i + 1) % MAX_MAPS)
		if (maps[i].addr)
			return i;
	return -1;
}

static void op_map_touch(struct th *t)
{
	cur_op = __func__;
	int i = map_pick(t);
	uint64_t off, len;
	bool write;

	if (i < 0)
		return;
	off = page_size * below(&t->rng, maps[i].len / page_size);
	len = page_size * (1 + below(&t->rng, 32));
	if (off + len > maps[i].len)
		len = maps[i].len - off;
	write = !maps[i].shadow && chance(&t->rng, 60);
	g_touch(maps[i].addr + off, len, write, rnd(&t->rng));
	count(K_TOUCH, 0);
}

static void op_map_change(struct th *t)
{
	cur_op = __func__;
	int i = map_pick(t), j, advice;
	static const int advices[] = {
	    MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED,	MADV_DONTNEED,
	    MADV_FREE,	 MADV_REMOVE, MADV_DONTFORK,   MADV_DOFORK,	MADV_DONTDUMP,
	    MADV_DODUMP, MADV_COLD,   MADV_PAGEOUT,    MADV_WIPEONFORK, 22 /* POPULATE_READ */,
	    23 /* POPULATE_WRITE */};
	static const int prots[] = {PROT_NONE, PROT_READ, PROT_READ | PROT_WRITE, PROT_WRITE};
	size_t npages, off, len;
	void *p;
	long ret;

	if (i < 0)
		return;
	npages = maps[i].len / page_size;
	off = page_size * below(&t->rng, npages);
	len = page_size * (1 + below(&t->rng, npages - off / page_size));
	switch (below(&t->rng, 5)) {
	case 0:
		advice = advices[below(&t->rng, sizeof(advices) / sizeof(advices[0]))];
		if (maps[i].shadow && (advice == 23 || advice == MADV_REMOVE))
			advice = MADV_WILLNEED;
		count(K_MADVISE, madvise(maps[i].addr + off, len, advice));
		break;
	case 1:
		/* The shadow mapping stays readable only: its data is checked. */
		count(K_MPROTECT, mprotect(maps[i].addr + off, len,
					   maps[i].shadow ? PROT_READ : prots[below(&t->rng, 4)]));
		break;
	case 2: /* shrink from the end, or grow (refused: VM_DONTEXPAND) */
		if (chance(&t->rng, 50) && npages > 1) {
			size_t nl = page_size * (1 + below(&t->rng, npages - 1));

			p = mremap(maps[i].addr, maps[i].len, nl, 0);
			count(K_MREMAP, p == MAP_FAILED ? -1 : 0);
			if (p != MAP_FAILED)
				maps[i].len = nl;
		} else {
			p = mremap(maps[i].addr, maps[i].len, maps[i].len + page_size,
				   MREMAP_MAYMOVE);
			ret = p == MAP_FAILED ? -1 : 0;
			check(t, K_MREMAP, ret, errno, OK(EFAULT), "mremap growth");
			if (p != MAP_FAILED) {
				maps[i].addr = p;
				maps[i].len += page_size;
			}
		}
		break;
	case 3: /* move */
		p = mmap(NULL, maps[i].len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			break;
		ret = (long)mremap(maps[i].addr, maps[i].len, maps[i].len,
				   MREMAP_MAYMOVE | MREMAP_FIXED, p);
		count(K_MREMAP, ret == -1 ? -1 : 0);
		if (ret == -1)
			munmap(p, maps[i].len);
		else
			maps[i].addr = p;
		break;
	default: /* split: unmap a piece in the middle or at an end */
		for (j = 0; j < MAX_MAPS && maps[j].addr; j++)
			;
		if (off && off + len < maps[i].len && j < MAX_MAPS) {
			maps[j] = maps[i];
			maps[j].addr = maps[i].addr + off + len;
			maps[j].len = maps[i].len - off - len;
			count(K_MUNMAP, munmap(maps[i].addr + off, len));
			maps[i].len = off;
		} else if (off) {
			count(K_MUNMAP, munmap(maps[i].addr + off, maps[i].len - off));
			maps[i].len = off;
		} else {
			map_drop(i);
		}
		break;
	}
}

/* ---- pread/pwrite on any region ---------------------------------------------- */

static void op_rw(struct th *t, bool allow_write)
{
	cur_op = __func__;
	int slot = below(&t->rng, MAX_REGIONS), m;
	struct region rg = region_get(slot);
	bool write = allow_write && !rg.shadow && chance(&t->rng, 50);
	uint64_t off, len = 1 + below(&t->rng, t->iobuf_len);
	void *buf = t->iobuf;
	bool ptr_bad = false, self_map = false;
	long ret;
	int e;

	if (rg.fd < 0)
		return;
	off = below(&t->rng, rg.size);
	if (chance(&t->rng, 10))
		off = rg.size + below(&t->rng, 3 * page_size) - page_size;
	if (chance(&t->rng, 5)) {
		ptr_bad = true;
		buf = bad_ptr(&t->rng, !write);
	} else if (t->id == 0 && chance(&t->rng, 10) && (m = map_pick(t)) >= 0 && !maps[m].shadow &&
		   maps[m].prot == (PROT_READ | PROT_WRITE)) {
		/* The buffer is a region mapping (maybe of the same region). */
		self_map = true;
		buf = maps[m].addr;
		if (len > maps[m].len)
			len = maps[m].len;
	}
	maybe_nth(t);
	if (chance(&t->rng, 20) && !ptr_bad && len > 1) {
		struct iovec iov[2] = {{buf, len / 2}, {(uint8_t *)buf + len / 2, len - len / 2}};

		ret = write ? pwritev(rg.fd, iov, 2, off) : preadv(rg.fd, iov, 2, off);
	} else {
		ret = write ? pwrite(rg.fd, buf, len, off) : pread(rg.fd, buf, len, off);
	}
	e = errno;
	end_nth(t);
	close(rg.fd);
	if (off >= rg.size)
		check(t, write ? K_PWRITE : K_PREAD, ret, e,
		      write ? OK(ENOSPC, EFAULT) : OK(0, EFAULT), "at %#llx, past the end",
		      (unsigned long long)off);
	else if (ptr_bad) /* the chunk is looked up (and allocated) before the copy */
		check(t, write ? K_PWRITE : K_PREAD, ret, e, OK(EFAULT, ENOMEM), "bad buffer");
	else if (self_map) /* a fault on the buffer that SIGBUSes is EFAULT */
		check(t, write ? K_PWRITE : K_PREAD, ret, e, OK(0, ENOMEM, EFAULT),
		      "buffer in a region mapping");
	else
		check(t, write ? K_PWRITE : K_PREAD, ret, e, OK(0, ENOMEM),
		      "off %#llx len %#llx of %#llx", (unsigned long long)off,
		      (unsigned long long)len, (unsigned long long)rg.size);
	if (ret > (long)len)
		report("%s returned %ld for %llu bytes", write ? "pwrite" : "pread", ret,
		       (unsigned long long)len);
}

/*
 * write(2) from a region mapping into a file and read(2) from the file into
 * one: the file's inode lock is held while the copy faults on the region,
 * while EVICT may be growing a backing file on the same filesystem.
 */
static void op_file_copy(struct th *t)
{
	static int file = -1;
	int m = map_pick(t);
	bool write = chance(&t->rng, 50);
	size_t len;
	long ret;

	if (m < 0)
		return;
	if (file < 0)
		file = backing_open(chance(&t->rng, 50) ? flash_dir : "/tmp");
	if (file < 0)
		return;
	len = maps[m].len < 8 * (size_t)page_size ? maps[m].len : 8 * (size_t)page_size;
	if (write)
		ret = pwrite(file, maps[m].addr, len, below(&t->rng, 64) * page_size);
	else if (!maps[m].shadow && maps[m].prot == (PROT_READ | PROT_WRITE))
		ret = pread(file, maps[m].addr, len, below(&t->rng, 64) * page_size);
	else
		return;
	/* A region fault that fails (full pool) is a short copy or EFAULT. */
	check(t, write ? K_PWRITE : K_PREAD, ret, errno, OK(0, EFAULT, ENOMEM),
	      "%s between a file and a region mapping", write ? "write" : "read");
}

static void op_lseek(struct th *t)
{
	cur_op = __func__;
	struct region rg = region_get(below(&t->rng, MAX_REGIONS));
	off_t r;

	if (rg.fd < 0)
		return;
	r = lseek(rg.fd, 0, SEEK_END);
	check(t, K_LSEEK, r < 0 ? -1 : 0, errno, OK(0), "SEEK_END");
	if (r >= 0 && (uint64_t)r != rg.size)
		report("lseek SEEK_END gives %lld, region size %llu", (long long)r,
		       (unsigned long long)rg.size);
	close(rg.fd);
}

/*
 * SET_BACKING on a region of its own, which no other thread sees, and then
 * what it has: a refused store must change nothing. The region had no store
 * or an empty flash file; a chunk written and evicted goes there (EVICT is
 * ENODEV with no store and no default_backing) and reads back, and the
 * refused file is as it was.
 */
static void op_backing_probe(struct th *t)
{
	cur_op = __func__;
	struct kvmm_region_create c = {.size = 16 * page_size,
				       .chunk_bytes = page_size,
				       .numa_node = KVMM_NUMA_LOCAL,
				       .flags = KVMM_CREATE_CLOEXEC};
	enum store_kind k = below(&t->rng, ST_NKINDS);
	const struct store_rule *rule = &store_rules[k];
	struct kvmm_range a = {.offset = 0, .length = page_size};
	struct store prior = {.fd = -1, .aux = -1}, st = {.fd = -1, .aux = -1};
	bool had = chance(&t->rng, 50), has, refused;
	uint8_t *buf = t->iobuf, *back = t->iobuf + page_size;
	long ret;
	size_t i;
	int e;

	ret = ioctl(dev_fd, KVMM_IOC_REGION_CREATE, &c);
	if (!check(t, K_CREATE, ret, errno, OK(0, ENOMEM, EMFILE),
		   "region for a SET_BACKING probe") ||
	    ret)
		return;
	if (had && store_open(t, ST_FLASH, &prior, c.fd)) {
		ret = set_backing(c.fd, prior.fd);
		check(t, K_SET_BACKING, ret, -ret, store_ok(ST_FLASH, false), "%s for a new region",
		      store_rules[ST_FLASH].what);
		had = !ret;
	} else {
		had = false;
	}
	if (!store_open(t, k, &st, c.fd))
		goto out;
	ret = set_backing(c.fd, st.fd);
	e = -ret;
	store_swapoff(&st);
	refused = ret;
	check(t, K_SET_BACKING, ret, e, store_ok(k, false), "%s (fd %d) on a region %s", rule->what,
	      st.fd, had ? "backed by a flash file" : "without a store");
	if (!ret && rule->err) {
		/* Taken against the rules (reported): give it back before any I/O goes there. */
		ret = set_backing(c.fd, KVMM_BACKING_NONE);
		check(t, K_SET_BACKING, ret, -ret, OK(0), "none after a wrongly taken store");
		goto out;
	}
	has = refused ? had : true;

	/* A chunk with data, evicted: to the store the region has, or nowhere. */
	for (i = 0; i < (size_t)page_size; i++)
		buf[i] = rnd(&t->rng);
	ret = pwrite(c.fd, buf, page_size, 0);
	if (!check(t, K_PWRITE, ret, errno, OK(0, ENOMEM), "chunk 0 of a SET_BACKING probe") ||
	    ret != page_size)
		goto out;
	ret = ioctl(c.fd, KVMM_IOC_EVICT, &a);
	e = errno;
	check(t, K_EVICT, ret, e,
	      has	    ? OK(0, ENOSPC)
	      : default_set ? OK(0, ENOSPC, ENODEV)
			    : OK(ENODEV),
	      "chunk 0 after SET_BACKING %s %s; the region has %s", rule->what,
	      refused ? "was refused" : "was taken",
	      has	    ? "a flash file"
	      : default_set ? "no store of its own (default_backing set)"
			    : "no store");
	if (ret)
		goto out_refused;
	ret = pread(c.fd, back, page_size, 0);
	if (check(t, K_PREAD, ret, errno, OK(0, ENOMEM), "evicted chunk of a SET_BACKING probe") &&
	    ret == page_size && memcmp(buf, back, page_size))
		report("SET_BACKING probe: chunk 0 reads back changed after EVICT (%s %s)",
		       rule->what, refused ? "refused" : "taken");
out_refused:
	if (refused)
		store_unchanged(&st);
out:
	close(c.fd);
	store_close(&prior);
	store_close(&st);
}

/* SET_BACKING on the shared regions: the stores of the table, none, bad fields. */
static void op_set_backing(struct th *t)
{
	cur_op = __func__;
	int slot = 1 + below(&t->rng, MAX_REGIONS - 1);
	struct region rg;
	struct kvmm_backing b = {0};
	struct store st = {.fd = -1, .aux = -1};
	enum store_kind k = ST_NKINDS;
	struct eset ok;
	enum backing kind = B_NONE;
	const char *what;
	long ret;
	int e;

	if (chance(&t->rng, 50)) {
		op_backing_probe(t);
		return;
	}
	rg = region_get(slot);
	if (rg.fd < 0)
		return;
	if (rg.fixed_backing) {
		close(rg.fd);
		return;
	}
	switch (below(&t->rng, 8)) {
	default:
		/* Half of them fresh files, as regions are given; then any store of the table. */
		k = ST_FLASH + below(&t->rng, 3);
		while (chance(&t->rng, 50) || !store_rules[k].shared)
			k = below(&t->rng, ST_NKINDS);
		if (!store_open(t, k, &st, rg.fd)) {
			close(rg.fd);
			return;
		}
		b.fd = st.fd;
		ok = store_ok(k, true);
		kind = store_rules[k].as;
		what = store_rules[k].what;
		break;
	case 5:
		b.fd = KVMM_BACKING_NONE;
		ok = OK(0, EBUSY);
		what = "none";
		break;
	case 6:
		b.fd = KVMM_BACKING_NONE;
		b.flags = 1U << below(&t->rng, 32);
		ok = OK(EINVAL);
		what = "flags";
		break;
	case 7:
		b.fd = KVMM_BACKING_NONE;
		if (chance(&t->rng, 50))
			b.reserved0 = 1;
		else
			b.reserved[below(&t->rng, 2)] = 1ULL << below(&t->rng, 64);
		ok = OK(EINVAL);
		what = "reserved";
		break;
	}
	ret = ioctl(rg.fd, KVMM_IOC_SET_BACKING, &b);
	e = errno;
	check(t, K_SET_BACKING, ret, e, ok, "%s (fd %d)", what, b.fd);
	if (!ret && k != ST_NKINDS && store_rules[k].err) {
		/* Taken against the rules (reported): give it back if it is not in use yet. */
		kind = set_backing(rg.fd, KVMM_BACKING_NONE) ? B_OTHER : B_NONE;
	}
	if (!ret) {
		pthread_mutex_lock(&reg_lock);
		if (regions[slot].id == rg.id && regions[slot].fd >= 0)
			regions[slot].backing = kind;
		pthread_mutex_unlock(&reg_lock);
	}
	if (k != ST_NKINDS)
		store_close(&st);
	close(rg.fd);
}

/* ---- sysfs knobs ---------------------------------------------------------------- */

static void op_sysfs(struct th *t)
{
	cur_op = __func__;
	char v[64];
	long ret;
	uint64_t x;

	switch (below(&t->rng, 7)) {
	case 0:
	case 1: /* the pool limit: often tight, never above what the VM can hold */
		x = chance(&t->rng, 50) ? (1 + below(&t->rng, 24)) * MiB
					: (1 + below(&t->rng, FUZZ_POOL_MAX / MiB)) * MiB;
		if (chance(&t->rng, 3))
			x = below(&t->rng, 3) * page_size;
		if (chance(&t->rng, 3)) {
			snprintf(v, sizeof(v), "%llu", (unsigned long long)(mem_total * 4));
			ret = sysfs_write("pool_limit_bytes", v);
			check(t, K_SYSFS, ret, -ret, OK(EINVAL), "pool_limit_bytes above RAM");
			break;
		}
		snprintf(v, sizeof(v), "%llu", (unsigned long long)x);
		ret = sysfs_write("pool_limit_bytes", v);
		check(t, K_SYSFS, ret, -ret, OK(0), "pool_limit_bytes %s", v);
		if (!ret)
			cur_limit = x;
		break;
	case 2: { /* watermarks, valid or not */
		bool high = chance(&t->rng, 50);
		uint64_t val = below(&t->rng, 110);
		bool valid = val <= 100 && (high ? val > cur_low : val < cur_high);

		snprintf(v, sizeof(v), "%llu", (unsigned long long)val);
		ret = sysfs_write(high ? "pool_high_wmark_pct" : "pool_low_wmark_pct", v);
		check(t, K_SYSFS, ret, -ret, valid ? OK(0) : OK(EINVAL), "%s watermark %s",
		      high ? "high" : "low", v);
		if (!ret)
			*(high ? &cur_high : &cur_low) = val;
		break;
	}
	case 3:
		x = chance(&t->rng, 80) ? below(&t->rng, 2000) : 3600 * 1000 + 1;
		snprintf(v, sizeof(v), "%llu", (unsigned long long)x);
		ret = sysfs_write("refault_window_ms", v);
		check(t, K_SYSFS, ret, -ret, x <= 3600 * 1000 ? OK(0) : OK(EINVAL),
		      "refault_window_ms %s", v);
		break;
	case 4:
		x = chance(&t->rng, 80) ? pick_chunk(&t->rng) : (uint64_t)page_size * 3;
		snprintf(v, sizeof(v), "%llu", (unsigned long long)x);
		ret = sysfs_write("default_chunk_bytes", v);
		check(t, K_SYSFS, ret, -ret, x == (uint64_t)page_size * 3 ? OK(EINVAL) : OK(0),
		      "default_chunk_bytes %s", v);
		if (!ret)
			cur_default_chunk = x;
		break;
	case 5: /* the default backing file (regions without their own use it) */
		if (chance(&t->rng, 50)) {
			snprintf(v, sizeof(v), "%s/fuzz-default-%d", flash_dir, (int)getpid());
			close(open(v, O_RDWR | O_CREAT | O_CLOEXEC, 0600));
		} else {
			snprintf(v, sizeof(v), "none");
		}
		ret = sysfs_write("default_backing", v);
		check(t, K_SYSFS, ret, -ret, OK(0), "default_backing %s", v);
		if (!ret)
			default_set = strcmp(v, "none");
		break;
	default: /* the next flash I/Os fail, after a few pass */
		if (!chance(&t->rng, 30))
			break;
		atomic_store(&S->io_faults, true);
		snprintf(v, sizeof(v), "%u", (unsigned int)below(&t->rng, 8));
		ret = debugfs_write("fail_skip", v);
		check(t, K_SYSFS, ret, -ret, OK(0), "debugfs fail_skip %s", v);
		snprintf(v, sizeof(v), "%u", (unsigned int)below(&t->rng, 4));
		ret = debugfs_write("fail_ios", v);
		check(t, K_SYSFS, ret, -ret, OK(0), "debugfs fail_ios %s", v);
		break;
	}
}

/* ---- race threads ------------------------------------------------------------- */

static void thread_own_map(struct th *t, const struct region *rg)
{
	cur_op = __func__;
	uint64_t off = rg->chunk * below(&t->rng, rg->size / rg->chunk);
	uint64_t len = page_size * (1 + below(&t->rng, 64));
	uint8_t *p;
	long ret;

	if (len > rg->size - off)
		len = rg->size - off;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, rg->fd, off);
	check(t, K_MMAP, p == MAP_FAILED ? -1 : 0, errno, OK(0, ENOMEM), "thread mmap");
	if (p == MAP_FAILED)
		return;
	g_touch(p, len, !rg->shadow && chance(&t->rng, 50), rnd(&t->rng));
	count(K_TOUCH, 0);
	/*
	 * munmap itself allocates (VMA tree nodes) and fails with ENOMEM inside
	 * an injection window; the mapping must not outlive the run.
	 */
	ret = munmap(p, len);
	if (ret && t->inject) {
		count(K_MUNMAP, ret);
		fi_self(t, false);
		ret = munmap(p, len);
		fi_self(t, true);
	}
	count(K_MUNMAP, ret);
}

static void *race_thread(void *arg)
{
	struct th *t = arg;

	while (!atomic_load(&stop)) {
		int slot = chance(&t->rng, 40) ? 0 : below(&t->rng, MAX_REGIONS);
		struct region rg = region_get(slot);
		unsigned int op = below(&t->rng, 100);
		bool window = fi_avail && opt_inject && chance(&t->rng, 3);

		if (rg.fd < 0) {
			usleep(100);
			continue;
		}
		if (window)
			fi_self(t, true);
		if (op < 50)
			op_range(t, &rg);
		else if (op < 55)
			op_share(t, &rg);
		else if (op < 65)
			op_query(t, &rg);
		else if (op < 72)
			op_stat(t, &rg);
		else if (op < 80)
			thread_own_map(t, &rg);
		else if (op < 88)
			op_rw(t, false);
		else if (op < 93)
			op_poll(t, rg.fd);
		else
			pins_release(t, false);
		if (window)
			fi_self(t, false);
		close(rg.fd);
	}
	pins_release(t, true);
	return NULL;
}

/* ---- fork and kill ----------------------------------------------------------- */

static void child_run(struct th *t)
{
	cur_op = __func__;
	int k;

	t->id = 100 + getpid() % 100;
	for (k = 0; k < 200; k++) {
		int slot = below(&t->rng, MAX_REGIONS);
		struct region rg = regions[slot];
		unsigned int op = below(&t->rng, 10);

		if (rg.fd < 0)
			continue;
		if (op < 3) {
			op_range(t, &rg);
		} else if (op < 4) {
			op_share(t, &rg);
		} else if (op < 6) {
			thread_own_map(t, &rg);
		} else if (op < 8) {
			int m = map_pick(t);

			size_t len = 16 * (size_t)page_size;

			if (m >= 0)
				g_touch(maps[m].addr, maps[m].len < len ? maps[m].len : len,
					!maps[m].shadow, 0x5a);
		} else if (op < 9) {
			struct kvmm_region_create c = {.size = 16 * page_size,
						       .numa_node = KVMM_NUMA_LOCAL};

			if (!ioctl(dev_fd, KVMM_IOC_REGION_CREATE, &c)) {
				void *p =
				    mmap(NULL, c.size, PROT_READ | PROT_WRITE, MAP_SHARED, c.fd, 0);

				if (p != MAP_FAILED)
					g_touch(p, c.size, true, 1);
			}
		} else {
			op_rw(t, true);
		}
	}
}

static void op_fork(struct th *t)
{
	cur_op = __func__;
	struct rng child = {rnd(&t->rng)};
	unsigned int delay = below(&t->rng, 30000);
	pid_t pid;
	int st;

	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		count(K_FORK, -1);
		return;
	}
	if (!pid) {
		/* Only this thread lives on: locks other threads held are reset. */
		proc_tag = " (forked child)";
		pthread_mutex_init(&reg_lock, NULL);
		pthread_mutex_init(&out_lock, NULL);
		atomic_store(&my_reports, 0);
		t->rng = child;
		child_run(t);
		_exit(atomic_load(&my_reports) ? 3 : 0);
	}
	usleep(delay);
	if (!kill(pid, SIGKILL))
		atomic_fetch_add(&S->killed, 1);
	waitpid(pid, &st, 0);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 3)
		report("a forked child saw unexpected results (printed above)");
	count(K_FORK, 0);
}

/* ---- main loop ---------------------------------------------------------------- */

static void main_op(struct th *t)
{
	unsigned int op = below(&t->rng, 1000);
	int slot;

	if (op < 60) {
		sh_write_map(t);
	} else if (op < 100) {
		sh_pwrite(t);
	} else if (op < 115) {
		sh_discard(t);
	} else if (op < 175) {
		sh_verify(t, false);
	} else if (op < 215) {
		op_create(t);
	} else if (op < 230) {
		slot = 1 + below(&t->rng, MAX_REGIONS - 1);
		region_close(slot);
		if (chance(&t->rng, 50))
			region_new(t, slot, false);
	} else if (op < 250) {
		op_version(t);
	} else if (op < 275) {
		op_gpu(t);
	} else if (op < 295) {
		op_list(t);
	} else if (op < 325) {
		op_other_cmd(t, dev_fd, false);
	} else if (op < 345) {
		struct region rg = region_get(below(&t->rng, MAX_REGIONS));

		if (rg.fd >= 0) {
			op_other_cmd(t, rg.fd, true);
			close(rg.fd);
		}
	} else if (op < 360) {
		op_random_cmd(t, chance(&t->rng, 50) ? dev_fd : sh.fd, chance(&t->rng, 50));
	} else if (op < 470) {
		struct region rg = region_get(below(&t->rng, MAX_REGIONS));

		if (rg.fd >= 0) {
			op_range(t, &rg);
			close(rg.fd);
		}
	} else if (op < 500) {
		struct region rg = region_get(below(&t->rng, MAX_REGIONS));

		if (rg.fd >= 0) {
			if (chance(&t->rng, 50))
				op_query(t, &rg);
			else
				op_stat(t, &rg);
			close(rg.fd);
		}
	} else if (op < 560) {
		op_mmap(t);
	} else if (op < 660) {
		op_map_touch(t);
	} else if (op < 720) {
		op_map_change(t);
	} else if (op < 800) {
		op_rw(t, true);
	} else if (op < 815) {
		op_poll(t, chance(&t->rng, 30) ? dev_fd : sh.fd);
	} else if (op < 820) {
		op_lseek(t);
	} else if (op < 825) {
		op_file_copy(t);
	} else if (op < 855) {
		op_set_backing(t);
	} else if (op < 885) {
		op_sysfs(t);
	} else if (op < 905) {
		op_fork(t);
	} else if (op < 925) {
		pins_release(t, false);
	} else if (op < 935) {
		map_drop(below(&t->rng, MAX_MAPS));
	} else if (fi_avail && opt_inject && op < 960) {
		/* A window: the next few main-thread operations may fail allocations. */
		int n = 1 + below(&t->rng, 12), k;

		fi_params(&t->rng);
		atomic_fetch_add(&S->calls[K_INJECT_WINDOW], 1);
		fi_self(t, true);
		for (k = 0; k < n; k++) {
			unsigned int w = below(&t->rng, 4);
			struct region rg = region_get(below(&t->rng, MAX_REGIONS));

			if (w == 0)
				sh_write_map(t);
			else if (w == 1)
				op_create(t);
			else if (rg.fd >= 0)
				op_range(t, &rg);
			if (rg.fd >= 0)
				close(rg.fd);
		}
		fi_self(t, false);
	} else {
		struct region rg = region_get(0);

		if (rg.fd >= 0) {
			op_range(t, &rg);
			close(rg.fd);
		}
	}
}

static uint64_t mem_total_bytes(void)
{
	char buf[4096], *p;
	int fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return 1ULL << 30;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 1ULL << 30;
	buf[n] = 0;
	p = strstr(buf, "MemTotal:");
	return p ? strtoull(p + 9, NULL, 10) * KiB : 1ULL << 30;
}

static void usage(void)
{
	fprintf(stderr, "usage: kvmm_fuzz [--seconds N] [--seed S] [--threads T] [--no-inject] "
			"[--verbose]\n");
	exit(2);
}

static void parse_args(int argc, char **argv)
{
	const char *e;
	int i;

	if ((e = getenv("KVMM_FUZZ_SECONDS")) && *e)
		opt_seconds = strtoul(e, NULL, 0);
	if ((e = getenv("KVMM_FUZZ_SEED")) && *e)
		opt_seed = strtoull(e, NULL, 0);
	if ((e = getenv("KVMM_FUZZ_THREADS")) && *e)
		opt_threads = strtoul(e, NULL, 0);
	if ((e = getenv("KVMM_FLASH_DIR")) && *e)
		flash_dir = e;
	if ((e = getenv("KVMM_SMALL_DIR")) && *e)
		small_dir = e;
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			opt_seconds = strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			opt_seed = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			opt_threads = strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--no-inject"))
			opt_inject = false;
		else if (!strcmp(argv[i], "--verbose"))
			opt_verbose = true;
		else
			usage();
	}
	if (opt_threads > MAX_THREADS)
		opt_threads = MAX_THREADS;
}

static void th_init(struct th *t, int id)
{
	memset(t, 0, sizeof(*t));
	t->id = id;
	t->rng.s = opt_seed * 0x2545f4914f6cdd1dULL + (uint64_t)id * 0x9e3779b97f4a7c15ULL;
	t->qbuf = malloc(QBUF_BYTES);
	t->iobuf_len = 4 * page_size;
	t->iobuf = malloc(t->iobuf_len);
	if (!t->qbuf || !t->iobuf) {
		perror("malloc");
		exit(1);
	}
	/* Populated now: inside an injection window a first touch could fail (EFAULT). */
	memset(t->qbuf, 0, QBUF_BYTES);
	memset(t->iobuf, 0, t->iobuf_len);
}

/* Wait up to @ms for a sysfs value to read @want. */
static uint64_t sysfs_wait(const char *name, uint64_t want, int ms)
{
	uint64_t v = sysfs_u64(name);

	while (v != want && ms > 0) {
		usleep(10000);
		ms -= 10;
		v = sysfs_u64(name);
	}
	return v;
}

static void print_summary(double secs)
{
	unsigned long total = 0, bad = 0;
	int k;

	printf("kvmm_fuzz: seed %llu, %.0f s, %u race threads, fault injection %s\n",
	       (unsigned long long)opt_seed, secs, opt_threads,
	       fi_avail && opt_inject ? "on (failslab, fail_page_alloc)"
				      : "off (no debugfs knobs)");
	printf("%-28s %10s %10s %10s\n", "kind", "calls", "errors", "unexpected");
	for (k = 0; k < K_NKINDS; k++) {
		unsigned long c = atomic_load(&S->calls[k]);

		total += c;
		bad += atomic_load(&S->bad[k]);
		printf("%-28s %10lu %10lu %10lu\n", kind_name[k], c, atomic_load(&S->errs[k]),
		       atomic_load(&S->bad[k]));
	}
	printf("%-28s %10lu %10s %10lu\n", "total", total, "", bad);
	printf(
	    "kvmm_fuzz: SIGBUS %lu, SIGSEGV %lu (caught), children killed %lu, shadow mismatches "
	    "%lu\n",
	    atomic_load(&S->sigbus), atomic_load(&S->sigsegv), atomic_load(&S->killed),
	    atomic_load(&S->mismatch));
}

/* ---- two cgroups: the main process in one, a second worker process in the other ---- */

/*
 * The workers run in two cgroup v2 groups with different memory.max: the
 * main process (main thread, race threads, forked children) in "a", a
 * second process with the other race threads in "b". Memory kvmm or the
 * kernel charges to a group can run out at its limit: that is ENOMEM where
 * the ABI already allows it for a full pool (ENSURE, PIN, PREFETCH,
 * REGION_CREATE, pread/pwrite, mmap) or SIGBUS on a touch, which is counted,
 * not judged; nothing else needs more.
 */
#define CG_ROOT "/sys/fs/cgroup"
static const struct {
	const char *name;
	uint64_t max;
} cg_groups[2] = {{"a", 512 * MiB}, {"b", 256 * MiB}};

static struct {
	bool on;	     /* both groups exist */
	bool mounted;	     /* cgroup2 mounted here by this program */
	bool memory_enabled; /* +memory written to the root's subtree_control here */
	char dir[2][128];
	char home[256]; /* the cgroup this program started in */
} cg;

static void cg_note(const char *what, int err)
{
	printf("kvmm_fuzz: note: %s: %s; the workers share one cgroup\n", what, strerror(err));
}

static int cg_write(const char *dir, const char *file, const char *val)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	return write_file(path, val);
}

static void cg_setup(void)
{
	char buf[512], *p;
	struct statfs sf;
	int i, err;

	if (statfs(CG_ROOT, &sf) || sf.f_type != CGROUP2_SUPER_MAGIC) {
		if (mount("cgroup2", CG_ROOT, "cgroup2", 0, NULL)) {
			cg_note("cannot mount cgroup2 on " CG_ROOT, errno);
			return;
		}
		cg.mounted = true;
	}
	snprintf(cg.home, sizeof(cg.home), CG_ROOT);
	if (!read_file("/proc/self/cgroup", buf, sizeof(buf)) && (p = strstr(buf, "0::")))
		snprintf(cg.home, sizeof(cg.home), CG_ROOT "%s", strcmp(p + 3, "/") ? p + 3 : "");
	/* The groups go under the root, which may have processes beside child groups. */
	if (read_file(CG_ROOT "/cgroup.subtree_control", buf, sizeof(buf)))
		buf[0] = 0;
	if (!strstr(buf, "memory")) {
		err = cg_write(CG_ROOT, "cgroup.subtree_control", "+memory");
		if (err) {
			cg_note("cannot enable the memory controller", -err);
			return;
		}
		cg.memory_enabled = true;
	}
	for (i = 0; i < 2; i++) {
		char v[32];

		snprintf(cg.dir[i], sizeof(cg.dir[i]), CG_ROOT "/kvmm_fuzz-%d-%s", (int)getpid(),
			 cg_groups[i].name);
		if (mkdir(cg.dir[i], 0755)) {
			cg_note("cannot make a cgroup", errno);
			cg.dir[i][0] = 0;
			return;
		}
		snprintf(v, sizeof(v), "%llu", (unsigned long long)cg_groups[i].max);
		err = cg_write(cg.dir[i], "memory.max", v);
		if (err) {
			cg_note("cannot set memory.max", -err);
			return;
		}
	}
	cg.on = true;
}

/* Move this process (all its threads) into group @i. */
static void cg_enter(int i)
{
	char v[32];
	int err;

	if (!cg.on)
		return;
	snprintf(v, sizeof(v), "%d", (int)getpid());
	err = cg_write(cg.dir[i], "cgroup.procs", v);
	if (err)
		report("cannot move pid %s into %s: %s", v, cg.dir[i], strerror(-err));
}

/* Back where this program started; the groups, the controller and the mount go. */
static void cg_cleanup(void)
{
	char v[32];
	int i, k, err;

	snprintf(v, sizeof(v), "%d", (int)getpid());
	if (cg.on && (err = cg_write(cg.home, "cgroup.procs", v)))
		report("cannot move pid %s back to %s: %s", v, cg.home, strerror(-err));
	for (i = 0; i < 2; i++) {
		if (!cg.dir[i][0])
			continue;
		/* A process that just exited may leave its group a moment later. */
		for (k = 0; rmdir(cg.dir[i]) && errno == EBUSY && k < 250; k++)
			usleep(20000);
		if (!access(cg.dir[i], F_OK))
			report("cannot remove cgroup %s: %s", cg.dir[i], strerror(errno));
	}
	if (cg.memory_enabled) {
		for (k = 0;
		     (err = cg_write(CG_ROOT, "cgroup.subtree_control", "-memory")) == -EBUSY &&
		     k < 250;
		     k++)
			usleep(20000);
		if (err)
			printf("kvmm_fuzz: note: cannot disable the memory controller again: %s\n",
			       strerror(-err));
	}
	if (cg.mounted && umount(CG_ROOT))
		printf("kvmm_fuzz: note: cannot unmount %s: %s\n", CG_ROOT, strerror(errno));
}

/*
 * The worker process in group b: race threads @first.. (@n of them) on the
 * regions the main process sends; stops on slot -1 (or when the main process
 * is gone). Its results count in the shared counters.
 */
static void worker_run(unsigned int first, unsigned int n)
{
	struct th *ths = calloc(n, sizeof(*ths));
	pthread_t tids[MAX_THREADS];
	unsigned int i;

	proc_tag = " (worker process in cgroup b)";
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != main_pid)
		_exit(1);
	cg_enter(1);
	for (i = 0; i < n; i++) {
		th_init(&ths[i], first + i);
		pthread_create(&tids[i], NULL, race_thread, &ths[i]);
	}
	for (;;) {
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} cm;
		struct region_msg m;
		struct iovec iov = {&m, sizeof(m)};
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = cm.buf,
				    .msg_controllen = sizeof(cm.buf)};
		struct cmsghdr *c;
		int fd = -1, old;
		ssize_t len = recvmsg(peer_sock, &mh, MSG_CMSG_CLOEXEC);

		if (len < 0 && errno == EINTR)
			continue;
		if (len != sizeof(m) || m.slot < 0 || m.slot >= MAX_REGIONS)
			break;
		for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
				memcpy(&fd, CMSG_DATA(c), sizeof(int));
		if (m.r.fd >= 0 && fd < 0)
			report("slot %d came without its fd", m.slot);
		m.r.fd = fd;
		pthread_mutex_lock(&reg_lock);
		old = regions[m.slot].fd;
		regions[m.slot] = m.r;
		pthread_mutex_unlock(&reg_lock);
		if (old >= 0)
			close(old);
	}
	atomic_store(&stop, true);
	for (i = 0; i < n; i++)
		pthread_join(tids[i], NULL);
	for (i = 0; i < MAX_REGIONS; i++)
		if (regions[i].fd >= 0)
			close(regions[i].fd);
	fflush(stdout);
	_exit(atomic_load(&my_reports) ? 3 : 0);
}

/* Fork the worker process; -1 if there is none. */
static pid_t worker_start(unsigned int first, unsigned int n)
{
	int sv[2];
	pid_t pid;

	if (!n || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) {
		if (n)
			report("socketpair: %s", strerror(errno));
		return -1;
	}
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		report("fork of the worker process: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (!pid) {
		close(sv[0]);
		peer_sock = sv[1];
		worker_run(first, n);
	}
	close(sv[1]);
	peer_sock = sv[0];
	return pid;
}

static void worker_stop(pid_t pid)
{
	int st;

	if (pid < 0)
		return;
	region_publish(-1, NULL);
	if (waitpid(pid, &st, 0) < 0)
		report("waitpid of the worker process: %s", strerror(errno));
	else if (WIFSIGNALED(st))
		report("the worker process in cgroup b died of signal %d", WTERMSIG(st));
	else if (WEXITSTATUS(st) && WEXITSTATUS(st) != 3)
		report("the worker process in cgroup b exited with %d", WEXITSTATUS(st));
	close(peer_sock);
	peer_sock = -1;
}

int main(int argc, char **argv)
{
	struct sigaction sa = {0};
	struct th threads[MAX_THREADS + 1];
	pthread_t tids[MAX_THREADS];
	unsigned int i, n_a, n_b;
	uint64_t used, nreg;
	pid_t worker;
	bool ok;

	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_args(argc, argv);
	S = mmap(NULL, sizeof(*S), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (S == MAP_FAILED) {
		perror("kvmm_fuzz: shared counters");
		return 1;
	}
	main_pid = getpid();
	page_size = sysconf(_SC_PAGESIZE);
	mem_total = mem_total_bytes();
	{
		char v[32];

		if (!read_file("/proc/sys/vm/overcommit_memory", v, sizeof(v)))
			overcommit_mode = atoi(v);
		max_map_count = 65530;
		if (!read_file("/proc/sys/vm/max_map_count", v, sizeof(v)))
			max_map_count = strtoull(v, NULL, 10);
	}
	t0 = now();
	printf("kvmm_fuzz: seed %llu, %u s, %u race threads (rerun: kvmm_fuzz --seed %llu "
	       "--seconds %u)\n",
	       (unsigned long long)opt_seed, opt_seconds, opt_threads, (unsigned long long)opt_seed,
	       opt_seconds);

	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	bad_rw_page = mmap(NULL, 2 * page_size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	bad_none_page = mmap(NULL, page_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	dev_fd = open(KVMM_DEVICE_PATH, O_RDWR | O_CLOEXEC);
	dev_fd2 = open(KVMM_DEVICE_PATH, O_RDWR | O_CLOEXEC);
	if (dev_fd < 0 || dev_fd2 < 0 || bad_rw_page == MAP_FAILED || bad_none_page == MAP_FAILED) {
		perror("kvmm_fuzz: setup");
		return 1;
	}
	for (i = 0; i < MAX_REGIONS; i++)
		regions[i].fd = -1;

	knobs_save();
	/* A pool that fits the VM beside everything else. */
	if (cur_limit > FUZZ_POOL_MAX) {
		char v[32];

		snprintf(v, sizeof(v), "%llu", (unsigned long long)FUZZ_POOL_MAX);
		sysfs_write("pool_limit_bytes", v);
		cur_limit = FUZZ_POOL_MAX;
	}
	fi_setup();

	th_init(&threads[0], 0);
	if (region_new(&threads[0], 0, true)) {
		printf("kvmm_fuzz: cannot create the shadow region\n");
		return 1;
	}
	sh.fd = regions[0].fd;
	sh.chunk = regions[0].chunk;
	sh.pages = SHADOW_BYTES / page_size;
	sh.data = calloc(SHADOW_BYTES, 1);
	sh.known = malloc(sh.pages);
	memset(sh.known, 1, sh.pages);
	sh.map = mmap(NULL, SHADOW_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, sh.fd, 0);
	printf("kvmm_fuzz: shadow mapping at %p (pid %d)\n", (void *)sh.map, (int)getpid());
	if (sh.map == MAP_FAILED || !sh.data || !sh.known) {
		perror("kvmm_fuzz: shadow mapping");
		return 1;
	}
	for (i = 1; i < 5; i++)
		region_new(&threads[0], i, false);

	/* Race threads 1..n_a beside the main thread in group a, the others in group b. */
	n_b = (opt_threads + 1) / 2;
	n_a = opt_threads - n_b;
	cg_setup();
	cg_enter(0);
	worker = worker_start(n_a + 1, n_b);
	if (cg.on)
		printf(
		    "kvmm_fuzz: cgroup %s (memory.max %llu MiB): pid %d, the main thread and %u "
		    "race thread(s); cgroup %s (memory.max %llu MiB): pid %d, %u race thread(s)\n",
		    cg.dir[0], (unsigned long long)(cg_groups[0].max / MiB), (int)getpid(), n_a,
		    cg.dir[1], (unsigned long long)(cg_groups[1].max / MiB), (int)worker, n_b);
	for (i = 0; i < n_a; i++) {
		th_init(&threads[i + 1], i + 1);
		pthread_create(&tids[i], NULL, race_thread, &threads[i + 1]);
	}

	{
		double end = t0 + opt_seconds, next = t0 + 10;

		while (now() < end) {
			main_op(&threads[0]);
			if (now() >= next) {
				unsigned long total = 0;
				int k;

				for (k = 0; k < K_NKINDS; k++)
					total += atomic_load(&S->calls[k]);
				printf("kvmm_fuzz: %.0f s, %lu calls, %lu unexpected\n", now() - t0,
				       total, atomic_load(&S->reports));
				next += 10;
			}
		}
	}
	atomic_store(&stop, true);
	for (i = 0; i < n_a; i++)
		pthread_join(tids[i], NULL);
	worker_stop(worker);
	pins_release(&threads[0], true);

	/* Back to normal: no injection, no failing I/O, the saved knobs. */
	if (fi_avail && opt_inject)
		fi_off_all();
	debugfs_write("fail_ios", "0");
	debugfs_write("fail_skip", "0");
	knobs_restore();
	if (sysfs_u64("pool_limit_bytes") < SHADOW_BYTES * 2) {
		char v[32];

		snprintf(v, sizeof(v), "%llu", (unsigned long long)(SHADOW_BYTES * 4));
		sysfs_write("pool_limit_bytes", v);
	}
	ok = sh_verify(&threads[0], true);

	/* Everything goes: mappings, regions, backing files; the pool must be empty. */
	for (i = 0; i < MAX_MAPS; i++)
		map_drop(i);
	munmap(sh.map, SHADOW_BYTES);
	for (i = 0; i < MAX_REGIONS; i++)
		region_close(i);
	close(dev_fd);
	close(dev_fd2);
	if (swap_path)
		unlink(swap_path);
	knobs_restore();
	used = sysfs_wait("pool_used_bytes", 0, 5000);
	nreg = sysfs_wait("regions", 0, 5000);
	if (used != 0)
		report("pool_used_bytes is %llu after every region was closed",
		       (unsigned long long)used);
	if (nreg != 0)
		report("%llu regions live after every region was closed", (unsigned long long)nreg);
	cg_cleanup();

	print_summary(now() - t0);
	if (atomic_load(&S->reports) || !ok) {
		printf("kvmm_fuzz: FAILED with %lu unexpected result(s) (seed %llu)\n",
		       atomic_load(&S->reports), (unsigned long long)opt_seed);
		return 1;
	}
	printf("kvmm_fuzz: passed (seed %llu): pool back to 0, no regions left\n",
	       (unsigned long long)opt_seed);
	return 0;
}
