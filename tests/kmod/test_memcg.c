/*
 * Memory cgroups (v2): a region's DRAM is charged to the memory cgroup of
 * the process that created it. Past memory.max kvmm fails ENSURE with
 * ENOMEM and faults with SIGBUS when it has no store, or moves the group's
 * chunks to flash when it has one; it never gets the group's processes
 * OOM-killed, and everything it charged goes back when the regions go.
 *
 * Two groups, A (memory.max 64 MiB) and B (128 MiB), each run one forked
 * child; the test process stays in the root group and reads the groups'
 * files itself, so the children allocate as little as possible besides
 * their regions. Children report their first failed check through shared
 * memory and never return into cmocka. cgroup2 with the memory controller
 * is required: without it the tests fail.
 */
#include "common/kt_flash.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define CG_ROOT "/sys/fs/cgroup"
#define CHUNK	(64 * KiB)
#define REGION	(256 * MiB)
#define NKIDS	2

static const char *const cg_name[NKIDS] = {CG_ROOT "/kvmm-test-A", CG_ROOT "/kvmm-test-B"};
static const uint64_t cg_max[NKIDS] = {64 * MiB, 128 * MiB};

/* ---- cgroup files -------------------------------------------------------- */

static int write_file(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		ret = -errno;
	close(fd);
	return ret;
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
	return 0;
}

static uint64_t cg_u64(int g, const char *file)
{
	char path[256], buf[64];
	int err;

	snprintf(path, sizeof(path), "%s/%s", cg_name[g], file);
	err = read_file(path, buf, sizeof(buf));
	if (err)
		fail_msg("read %s: %s", path, kt_errname(err));
	return strtoull(buf, NULL, 10);
}

static uint64_t cg_current(int g)
{
	return cg_u64(g, "memory.current");
}

/* A key of memory.events. */
static uint64_t cg_event(int g, const char *key)
{
	char path[256], buf[1024], *p;
	size_t n = strlen(key);
	int err;

	snprintf(path, sizeof(path), "%s/memory.events", cg_name[g]);
	err = read_file(path, buf, sizeof(buf));
	if (err)
		fail_msg("read %s: %s", path, kt_errname(err));
	for (p = buf; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (!strncmp(p, key, n) && p[n] == ' ')
			return strtoull(p + n + 1, NULL, 10);
	fail_msg("%s has no \"%s\" line", path, key);
	return 0;
}

/* Kill whatever is left in the groups (cgroup.kill), wait for them to empty, remove them. */
static int cg_remove(void)
{
	int ret = 0;

	for (int g = 0; g < NKIDS; g++) {
		char path[256], buf[256] = "";

		if (access(cg_name[g], F_OK))
			continue;
		snprintf(path, sizeof(path), "%s/cgroup.kill", cg_name[g]);
		write_file(path, "1");
		snprintf(path, sizeof(path), "%s/cgroup.procs", cg_name[g]);
		for (int i = 0; i < 500; i++) {
			if (read_file(path, buf, sizeof(buf)) || !buf[0])
				break;
			kf_msleep(10);
		}
		/* The killed ones are our children or grandchildren: reap what is ours. */
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		if (rmdir(cg_name[g]) && errno != ENOENT) {
			print_error("rmdir %s: %s (cgroup.procs: %s)\n", cg_name[g],
				    strerror(errno), buf);
			ret = -1;
		}
	}
	return ret;
}

/*
 * Mount cgroup2 if it is not, enable the memory controller for children of
 * the root and make A and B afresh. Fails (does not skip) where it cannot.
 */
static void cg_setup(void)
{
	char buf[512];
	int err;

	if (access(CG_ROOT "/cgroup.controllers", R_OK)) {
		mkdir(CG_ROOT, 0755);
		if (mount("cgroup2", CG_ROOT, "cgroup2", 0, NULL))
			fail_msg("cgroup2 is required: mount -t cgroup2 at %s: expected success, "
				 "saw %s",
				 CG_ROOT, strerror(errno));
	}
	err = read_file(CG_ROOT "/cgroup.controllers", buf, sizeof(buf));
	if (err)
		fail_msg("cgroup2 is required: read %s/cgroup.controllers: %s", CG_ROOT,
			 kt_errname(err));
	if (!strstr(buf, "memory"))
		fail_msg("the memory controller is required: %s/cgroup.controllers: expected "
			 "\"memory\" in it, saw \"%s\"",
			 CG_ROOT, buf);
	err = write_file(CG_ROOT "/cgroup.subtree_control", "+memory");
	if (err)
		fail_msg("write +memory to %s/cgroup.subtree_control: %s", CG_ROOT,
			 kt_errname(err));
	if (cg_remove())
		fail_msg("the groups of an earlier test could not be removed");
	for (int g = 0; g < NKIDS; g++) {
		char path[256], val[32];

		if (mkdir(cg_name[g], 0755))
			fail_msg("mkdir %s: %s", cg_name[g], strerror(errno));
		snprintf(path, sizeof(path), "%s/memory.max", cg_name[g]);
		snprintf(val, sizeof(val), "%llu", (unsigned long long)cg_max[g]);
		err = write_file(path, val);
		if (err)
			fail_msg("write %s to %s: %s", val, path, kt_errname(err));
		if (cg_u64(g, "memory.max") != cg_max[g])
			fail_msg("%s: expected %s, saw %llu", path, val,
				 (unsigned long long)cg_u64(g, "memory.max"));
		/* No swap for the groups' own memory: kvmm's chunks are what is measured. */
		snprintf(path, sizeof(path), "%s/memory.swap.max", cg_name[g]);
		if (!access(path, W_OK))
			write_file(path, "0");
	}
}

static void cg_add(int g, pid_t pid)
{
	char path[256], val[32];
	int err;

	snprintf(path, sizeof(path), "%s/cgroup.procs", cg_name[g]);
	snprintf(val, sizeof(val), "%d", (int)pid);
	err = write_file(path, val);
	if (err)
		fail_msg("write pid %s to %s: %s", val, path, kt_errname(err));
}

/* The pool must hold both children's regions so that memory.max is the limit that binds. */
static void pool_big_enough(void)
{
	const uint64_t want = NKIDS * REGION + 128 * MiB;

	if (kt_sysfs_u64("pool_limit_bytes") < want)
		kf_sysfs_set("pool_limit_bytes", want);
	if (kt_sysfs_u64("pool_limit_bytes") < want)
		fail_msg("pool_limit_bytes: expected at least %llu, saw %llu",
			 (unsigned long long)want,
			 (unsigned long long)kt_sysfs_u64("pool_limit_bytes"));
	if (kt_sysfs_u64("pool_used_bytes"))
		fail_msg("pool_used_bytes before the test: expected 0, saw %llu",
			 (unsigned long long)kt_sysfs_u64("pool_used_bytes"));
}

/* ---- children ------------------------------------------------------------- */

struct kid {
	char msg[1024];
	volatile int stage;	/* child -> parent */
	volatile int go;	/* parent -> child */
	volatile uint64_t v[8]; /* results */
};
static struct kid *kids; /* NKIDS, shared */
static pid_t kid_pid[NKIDS];

#define KFAIL(k, ...)                                                                              \
	do {                                                                                       \
		if (!(k)->msg[0])                                                                  \
			snprintf((k)->msg, sizeof((k)->msg), __VA_ARGS__);                         \
		_exit(1);                                                                          \
	} while (0)
#define KEXPECT(k, cond, ...)                                                                      \
	do {                                                                                       \
		if (!(cond))                                                                       \
			KFAIL(k, __VA_ARGS__);                                                     \
	} while (0)

static void kid_wait_go(struct kid *k, int n)
{
	for (int i = 0; i < 30000 && k->go < n; i++)
		kf_msleep(10);
	KEXPECT(k, k->go >= n, "the parent did not answer in 300 s");
}

static int setup(void **state)
{
	kids = mmap(NULL, NKIDS * sizeof(*kids), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		    -1, 0);
	if (kids == MAP_FAILED)
		return -1;
	return kf_setup(state);
}

static int teardown(void **state)
{
	for (int g = 0; g < NKIDS; g++) {
		if (kid_pid[g] > 0) {
			kill(kid_pid[g], SIGKILL);
			waitpid(kid_pid[g], NULL, 0);
			kid_pid[g] = 0;
		}
	}
	cg_remove();
	return kf_teardown(state);
}

/* Fork the child of group g running fn(k, g); it is in the group before it runs fn. */
static void start_kid(int g, void (*fn)(struct kid *, int))
{
	struct kid *k = &kids[g];
	pid_t pid;

	memset(k, 0, sizeof(*k));
	pid = fork();
	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		signal(SIGBUS, SIG_DFL);
		signal(SIGSEGV, SIG_DFL);
		/* Nothing of kvmm before the parent has moved us into the group. */
		kid_wait_go(k, 1);
		fn(k, g);
		_exit(0);
	}
	kid_pid[g] = pid;
	cg_add(g, pid);
	k->go = 1;
}

static void kid_died(int g, int status, const char *what)
{
	struct kid *k = &kids[g];

	kid_pid[g] = 0;
	if (WIFSIGNALED(status))
		fail_msg("%s: the child in %s: expected it to live, saw it killed by signal %d "
			 "(oom_kill %llu)%s%s",
			 what, cg_name[g], WTERMSIG(status),
			 (unsigned long long)cg_event(g, "oom_kill"), k->msg[0] ? " after: " : "",
			 k->msg);
	fail_msg("%s: the child in %s: %s", what, cg_name[g],
		 k->msg[0] ? k->msg : "exited before it was done");
}

/* Fail if a child died; returns 1 if all children reached stage. */
static int kids_at(int stage, const char *what)
{
	int all = 1;

	for (int g = 0; g < NKIDS; g++) {
		int status;

		if (kids[g].stage >= stage)
			continue;
		all = 0;
		if (kid_pid[g] > 0 && waitpid(kid_pid[g], &status, WNOHANG) == kid_pid[g])
			kid_died(g, status, what);
	}
	return all;
}

static void wait_kids(int stage, int seconds, const char *what)
{
	double t0 = kf_now();

	while (!kids_at(stage, what)) {
		if (kf_now() - t0 > seconds)
			fail_msg("%s: the children did not get there in %d s (stages %d and %d, "
				 "at offsets %llu and %llu)",
				 what, seconds, kids[0].stage, kids[1].stage,
				 (unsigned long long)kids[0].v[0],
				 (unsigned long long)kids[1].v[0]);
		kf_msleep(5);
	}
}

static void go_kids(int n)
{
	for (int g = 0; g < NKIDS; g++)
		kids[g].go = n;
}

/* Reap both children; each must exit 0 (so none was OOM-killed). */
static void reap_kids(const char *what)
{
	for (int g = 0; g < NKIDS; g++) {
		int status;

		if (waitpid(kid_pid[g], &status, 0) != kid_pid[g])
			fail_msg("waitpid: %s", strerror(errno));
		if (!WIFEXITED(status) || WEXITSTATUS(status))
			kid_died(g, status, what);
		kid_pid[g] = 0;
	}
}

static void expect_no_oom_kill(const char *when)
{
	for (int g = 0; g < NKIDS; g++) {
		uint64_t n = cg_event(g, "oom_kill");

		if (n)
			fail_msg("%s: %s memory.events oom_kill: expected 0, saw %llu", when,
				 cg_name[g], (unsigned long long)n);
	}
}

static void expect_within_max(const char *when)
{
	for (int g = 0; g < NKIDS; g++) {
		uint64_t cur = cg_current(g);

		if (cur > cg_max[g])
			fail_msg(
			    "%s: %s memory.current: expected at most memory.max %llu, saw %llu",
			    when, cg_name[g], (unsigned long long)cg_max[g],
			    (unsigned long long)cur);
	}
}

/* (c) Both groups back within 4 MiB of where they started, and the pool empty. */
static void expect_given_back(const uint64_t *start, const char *when)
{
	for (int g = 0; g < NKIDS; g++) {
		uint64_t cur = cg_current(g);

		for (int i = 0; i < 500 && (cur > start[g] + 4 * MiB); i++) {
			kf_msleep(10);
			cur = cg_current(g);
		}
		if (cur > start[g] + 4 * MiB)
			fail_msg("%s: %s memory.current: expected within 4 MiB of the %llu it "
				 "started at, saw %llu",
				 when, cg_name[g], (unsigned long long)start[g],
				 (unsigned long long)cur);
	}
	if (kf_sysfs_wait("pool_used_bytes", 0, 5000))
		fail_msg("%s: pool_used_bytes: expected 0, saw %llu", when,
			 (unsigned long long)kt_sysfs_u64("pool_used_bytes"));
}

static int kid_region(struct kid *k, uint64_t size)
{
	int dev = open(KVMM_DEVICE_PATH, O_RDWR | O_CLOEXEC), fd;

	KEXPECT(k, dev >= 0, "open %s: %s", KVMM_DEVICE_PATH, strerror(errno));
	fd = kt_region_create(dev, size, CHUNK, KVMM_NUMA_LOCAL);
	KEXPECT(k, fd >= 0, "REGION_CREATE of %llu bytes: %s", (unsigned long long)size,
		kt_errname(fd));
	close(dev);
	return fd;
}

static uint8_t *kid_map(struct kid *k, int fd, uint64_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	KEXPECT(k, p != MAP_FAILED, "mmap of %llu bytes: %s", (unsigned long long)size,
		strerror(errno));
	return p;
}

static struct kvmm_region_stat kid_stat(struct kid *k, int fd)
{
	struct kvmm_region_stat st;
	int err = kt_stat(fd, &st);

	KEXPECT(k, !err, "STAT: %s", kt_errname(err));
	return st;
}

/* ---- (a) without a store: ENOMEM and SIGBUS at memory.max, no OOM kill ---- */

static void kid_without_store(struct kid *k, int g)
{
	int fd = kid_region(k, REGION), err, status;
	uint8_t *p = kid_map(k, fd, REGION);
	static uint8_t s[REGION / CHUNK];
	struct kvmm_query q = {
	    .first_chunk = 0, .nr_chunks = REGION / CHUNK, .states = (uintptr_t)s};
	struct kvmm_region_stat st;
	pid_t pid;

	err = kt_range_ioctl(fd, KVMM_IOC_ENSURE, 0, 32 * MiB);
	KEXPECT(k, !err, "ENSURE of 32 MiB in %s (memory.max %llu): expected success, saw %s",
		cg_name[g], (unsigned long long)cg_max[g], kt_errname(err));
	k->stage = 1;
	kid_wait_go(k, 2);

	err = kt_range_ioctl(fd, KVMM_IOC_ENSURE, 32 * MiB, REGION - 32 * MiB);
	KEXPECT(k, err == -ENOMEM,
		"ENSURE of the other 224 MiB in %s (memory.max %llu, no "
		"store): expected ENOMEM, saw %s",
		cg_name[g], (unsigned long long)cg_max[g], kt_errname(err));
	KEXPECT(k, !ioctl(fd, KVMM_IOC_QUERY, &q), "QUERY: %s", strerror(errno));
	for (uint64_t i = 32 * MiB / CHUNK; i < REGION / CHUNK; i++)
		KEXPECT(k, s[i] == KVMM_CHUNK_EMPTY,
			"after the refused ENSURE: chunk %llu: "
			"expected EMPTY, saw state 0x%02x",
			(unsigned long long)i, s[i]);
	st = kid_stat(k, fd);
	KEXPECT(k, st.resident_bytes == 32 * MiB,
		"after the refused ENSURE: expected "
		"resident_bytes %llu, saw %llu",
		32 * MiB, (unsigned long long)st.resident_bytes);
	k->stage = 2;
	kid_wait_go(k, 3);

	/* Touch past what fits, in a grandchild (same group): SIGBUS, not the OOM killer. */
	pid = fork();
	KEXPECT(k, pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		for (uint64_t off = 32 * MiB; off < REGION; off += CHUNK) {
			k->v[0] = off;
			p[off] = 1;
		}
		k->v[0] = REGION;
		_exit(0);
	}
	for (int i = 0; i < 12000 && !waitpid(pid, &status, WNOHANG); i++)
		kf_msleep(10);
	if (waitpid(pid, &status, WNOHANG) == 0) {
		uint64_t at = k->v[0];

		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		KFAIL(k,
		      "touching all 256 MiB in %s (memory.max %llu, no store): expected SIGBUS, "
		      "saw the toucher neither done nor killed after 120 s, in the fault at offset "
		      "%llu",
		      cg_name[g], (unsigned long long)cg_max[g], (unsigned long long)at);
	}
	KEXPECT(k, WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS,
		"touching all 256 MiB in %s (memory.max %llu, no store): expected SIGBUS, saw %s "
		"%d after %llu bytes",
		cg_name[g], (unsigned long long)cg_max[g],
		WIFSIGNALED(status) ? "signal" : "exit status",
		WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
		(unsigned long long)k->v[0]);
	st = kid_stat(k, fd);
	KEXPECT(k, st.fault_failures >= 1,
		"after the SIGBUS: expected fault_failures >= 1, saw "
		"%llu",
		(unsigned long long)st.fault_failures);
	KEXPECT(k, st.resident_bytes <= cg_max[g],
		"after the SIGBUS: expected resident_bytes "
		"at most memory.max %llu, saw %llu",
		(unsigned long long)cg_max[g], (unsigned long long)st.resident_bytes);
	k->v[1] = st.resident_bytes;
	k->stage = 3;
	kid_wait_go(k, 4);
	munmap(p, REGION);
	close(fd);
}

static void without_a_store_memory_max_gives_enomem_and_sigbus_never_an_oom_kill(void **state)
{
	uint64_t start[NKIDS], cur;

	(void)state;
	cg_setup();
	pool_big_enough();
	for (int g = 0; g < NKIDS; g++)
		start[g] = cg_current(g);
	for (int g = 0; g < NKIDS; g++)
		start_kid(g, kid_without_store);
	wait_kids(1, 120, "ENSURE of 32 MiB");
	for (int g = 0; g < NKIDS; g++) {
		cur = cg_current(g);
		if (cur < start[g] + 32 * MiB)
			fail_msg(
			    "%s memory.current after its child's ENSURE of 32 MiB: expected at "
			    "least %llu + 32 MiB, saw %llu (the region's DRAM is not charged to "
			    "its creator's group)",
			    cg_name[g], (unsigned long long)start[g], (unsigned long long)cur);
	}
	go_kids(2);
	wait_kids(2, 120, "ENSURE of the rest");
	expect_within_max("after the refused ENSURE");
	expect_no_oom_kill("after the refused ENSURE");
	go_kids(3);
	wait_kids(3, 240, "touching past memory.max");
	expect_within_max("after touching past memory.max");
	expect_no_oom_kill("after touching past memory.max");
	go_kids(4);
	reap_kids("the children after touching past memory.max");
	expect_no_oom_kill("after the children exited");
	expect_given_back(start, "after the children without a store exited");
}

/* ---- (b) with a store: the group's chunks go to flash and come back ------ */

static inline uint64_t word(uint64_t pos, uint64_t seed)
{
	return (pos * 0x9e3779b97f4a7c15ULL) ^ seed;
}

static void kid_with_store(struct kid *k, int g)
{
	const uint64_t seed = 0x5eed0000ULL + (uint64_t)g;
	int fd = kid_region(k, REGION), store, err;
	uint64_t *w;
	char path[256];
	struct kvmm_region_stat st;

	snprintf(path, sizeof(path), "%s/kvmm-memcg-%d", kf_flash_dir(), (int)getpid());
	store = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	KEXPECT(k, store >= 0, "create %s: %s", path, strerror(errno));
	unlink(path);
	err = kf_set_backing(fd, store);
	KEXPECT(k, !err, "SET_BACKING with an empty file in %s: %s", kf_flash_dir(),
		kt_errname(err));
	close(store);
	w = (uint64_t *)kid_map(k, fd, REGION);
	k->stage = 1;
	kid_wait_go(k, 2);

	/* v[0]: how far it got (written bytes, then 256 MiB + bytes read back). */
	for (uint64_t i = 0; i < REGION / 8; i++) {
		if (!(i & (CHUNK / 8 - 1)))
			k->v[0] = i * 8;
		w[i] = word(i * 8, seed);
	}
	k->stage = 2;
	for (uint64_t i = 0; i < REGION / 8; i++) {
		if (!(i & (CHUNK / 8 - 1)))
			k->v[0] = REGION + i * 8;
		KEXPECT(k, w[i] == word(i * 8, seed),
			"%s, read back after writing 256 MiB: "
			"offset %llu: expected 0x%016llx, saw 0x%016llx",
			cg_name[g], (unsigned long long)(i * 8),
			(unsigned long long)word(i * 8, seed), (unsigned long long)w[i]);
	}
	st = kid_stat(k, fd);
	k->v[0] = st.evictions;
	k->v[1] = st.fault_backs + st.prefetches;
	k->v[2] = st.resident_bytes;
	k->v[3] = st.io_errors + st.csum_failures;
	k->v[4] = st.fault_failures;
	k->stage = 3;
	kid_wait_go(k, 3);
	munmap(w, REGION);
	close(fd);
}

static void with_a_store_groups_over_memory_max_move_their_chunks_to_flash(void **state)
{
	uint64_t start[NKIDS], peak[NKIDS] = {0};
	double t0;

	(void)state;
	cg_setup();
	pool_big_enough();
	for (int g = 0; g < NKIDS; g++)
		start[g] = cg_current(g);
	for (int g = 0; g < NKIDS; g++)
		start_kid(g, kid_with_store);
	wait_kids(1, 120, "setting up regions with a store");
	/* Both write at once; sample both groups while they do. */
	go_kids(2);
	t0 = kf_now();
	while (!kids_at(3, "writing and reading back 256 MiB")) {
		for (int g = 0; g < NKIDS; g++) {
			uint64_t cur = cg_current(g);

			if (cur > peak[g])
				peak[g] = cur;
		}
		if (kf_now() - t0 > 270)
			fail_msg("writing and reading back 256 MiB: not done in 270 s (stages %d "
				 "and %d, at byte %llu and %llu of 512 MiB written and read)",
				 kids[0].stage, kids[1].stage, (unsigned long long)kids[0].v[0],
				 (unsigned long long)kids[1].v[0]);
		kf_msleep(5);
	}
	for (int g = 0; g < NKIDS; g++) {
		const uint64_t over = (REGION - cg_max[g]) / CHUNK;

		/*
		 * kvmm keeps a headroom below memory.max for the group's page
		 * tables: without it the page table that maps the next chunk
		 * (charged after the chunk) OOM-killed the tenant on 6.12.
		 */
		if (peak[g] > cg_max[g])
			fail_msg("%s memory.current while writing 256 MiB: expected at most "
				 "memory.max %llu, saw %llu",
				 cg_name[g], (unsigned long long)cg_max[g],
				 (unsigned long long)peak[g]);
		if (peak[g] < start[g] + cg_max[g] / 2)
			fail_msg(
			    "%s memory.current while writing 256 MiB: expected it to reach at "
			    "least half of memory.max (%llu), saw a peak of %llu (the region's "
			    "DRAM is not charged to its creator's group)",
			    cg_name[g], (unsigned long long)cg_max[g] / 2,
			    (unsigned long long)peak[g]);
		if (kids[g].v[0] < over)
			fail_msg(
			    "%s: evictions after writing 256 MiB with memory.max %llu: expected "
			    "at least %llu chunks, saw %llu",
			    cg_name[g], (unsigned long long)cg_max[g], (unsigned long long)over,
			    (unsigned long long)kids[g].v[0]);
		if (kids[g].v[1] < over)
			fail_msg(
			    "%s: chunks read back (fault_backs + prefetches) while reading 256 "
			    "MiB with memory.max %llu: expected at least %llu, saw %llu",
			    cg_name[g], (unsigned long long)cg_max[g], (unsigned long long)over,
			    (unsigned long long)kids[g].v[1]);
		if (kids[g].v[2] > cg_max[g])
			fail_msg(
			    "%s: resident_bytes after reading back: expected at most memory.max "
			    "%llu, saw %llu",
			    cg_name[g], (unsigned long long)cg_max[g],
			    (unsigned long long)kids[g].v[2]);
		if (kids[g].v[3] || kids[g].v[4])
			fail_msg(
			    "%s: expected no I/O errors, checksum failures or failed faults, saw "
			    "%llu and %llu",
			    cg_name[g], (unsigned long long)kids[g].v[3],
			    (unsigned long long)kids[g].v[4]);
	}
	expect_within_max("after writing and reading back");
	expect_no_oom_kill("after writing and reading back");
	go_kids(3);
	reap_kids("the children with a store");
	expect_no_oom_kill("after the children exited");
	expect_given_back(start, "after the children with a store exited");
}

/* ---- (c) everything charged comes back ------------------------------------ */

static void kid_holding_everything(struct kid *k, int g)
{
	int a = kid_region(k, 32 * MiB), b = kid_region(k, 32 * MiB), store, ro, err;
	struct kvmm_dup d = {.flags = KVMM_DUP_CLOEXEC};
	char path[256];
	uint8_t *p, *q;

	(void)g;
	snprintf(path, sizeof(path), "%s/kvmm-memcg-c-%d", kf_flash_dir(), (int)getpid());
	store = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	KEXPECT(k, store >= 0, "create %s: %s", path, strerror(errno));
	unlink(path);
	err = kf_set_backing(a, store);
	KEXPECT(k, !err, "SET_BACKING: %s", kt_errname(err));
	p = kid_map(k, a, 32 * MiB);
	memset(p, 0x5a, 32 * MiB);
	err = kt_range_ioctl(a, KVMM_IOC_EVICT, 0, 16 * MiB);
	KEXPECT(k, !err, "EVICT of 16 MiB: %s", kt_errname(err));
	err = kt_range_ioctl(b, KVMM_IOC_ENSURE, 0, 16 * MiB);
	KEXPECT(k, !err, "ENSURE of 16 MiB: %s", kt_errname(err));
	err = kt_range_ioctl(b, KVMM_IOC_PIN, 0, 1 * MiB);
	KEXPECT(k, !err, "PIN of 1 MiB: %s", kt_errname(err));
	KEXPECT(k, !ioctl(b, KVMM_IOC_DUP_RDONLY, &d), "DUP_RDONLY: %s", strerror(errno));
	ro = d.fd;
	q = mmap(NULL, 32 * MiB, PROT_READ, MAP_SHARED, ro, 0);
	KEXPECT(k, q != MAP_FAILED, "mmap of the read-only fd: %s", strerror(errno));
	KEXPECT(k, q[0] == 0, "read through the read-only mapping");
	k->stage = 1;
	kid_wait_go(k, 2);
	/* Exit holding all of it: the fds, the mappings, the pin, the flash slots. */
}

static void groups_get_all_their_memory_back_when_their_children_exit(void **state)
{
	uint64_t start[NKIDS];

	(void)state;
	cg_setup();
	pool_big_enough();
	for (int g = 0; g < NKIDS; g++)
		start[g] = cg_current(g);
	for (int g = 0; g < NKIDS; g++)
		start_kid(g, kid_holding_everything);
	wait_kids(1, 120, "setting up regions");
	for (int g = 0; g < NKIDS; g++) {
		uint64_t cur = cg_current(g);

		/* 16 MiB resident in a, 16 MiB in b. */
		if (cur < start[g] + 32 * MiB)
			fail_msg("%s memory.current with 32 MiB of chunks resident: expected at "
				 "least %llu + 32 MiB, saw %llu",
				 cg_name[g], (unsigned long long)start[g], (unsigned long long)cur);
	}
	go_kids(2);
	reap_kids("children exiting with their regions open");
	expect_no_oom_kill("after the children exited");
	expect_given_back(start, "after the children exited holding fds, mappings, pins and "
				 "flash slots");
}

/* ---- whose group pays: the creator's, not the toucher's -------------------- */

static void send_fd(struct kid *k, int sock, int fd)
{
	char c = 'f', cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {.iov_base = &c, .iov_len = 1};
	struct msghdr m = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&m);

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	KEXPECT(k, sendmsg(sock, &m, 0) == 1, "sendmsg: %s", strerror(errno));
}

static int recv_fd(int sock)
{
	char c, cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {.iov_base = &c, .iov_len = 1};
	struct msghdr m = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cm;
	int fd;

	if (recvmsg(sock, &m, 0) != 1)
		fail_msg("recvmsg: %s", strerror(errno));
	cm = CMSG_FIRSTHDR(&m);
	if (!cm || cm->cmsg_type != SCM_RIGHTS)
		fail_msg("recvmsg: no fd came");
	memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return kf_track(fd);
}

static int sock_pair[2] = {-1, -1};

static void kid_creating_for_the_parent(struct kid *k, int g)
{
	int fd;

	(void)g;
	fd = kid_region(k, 96 * MiB);
	send_fd(k, sock_pair[1], fd);
	close(fd);
	k->stage = 1;
	kid_wait_go(k, 2);
}

static void kid_idle(struct kid *k, int g)
{
	(void)g;
	k->stage = 1;
	kid_wait_go(k, 2);
}

static void chunks_are_charged_to_the_creators_group_not_to_whoever_touches_them(void **state)
{
	uint64_t start[NKIDS], cur;
	uint8_t *p;
	int fd, err;

	(void)state;
	cg_setup();
	pool_big_enough();
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sock_pair), 0);
	kf_track(sock_pair[0]);
	kf_track(sock_pair[1]);
	for (int g = 0; g < NKIDS; g++)
		start[g] = cg_current(g);
	start_kid(0, kid_creating_for_the_parent);
	start_kid(1, kid_idle);
	fd = recv_fd(sock_pair[0]);
	wait_kids(1, 120, "creating a region for the parent");
	go_kids(2);
	reap_kids("children creating and idling");
	/* The creator has exited; the test process (root group) touches 24 MiB. */
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_ENSURE, 0, 16 * MiB), 0);
	p = kf_map(fd, 0, 96 * MiB);
	memset(p + 16 * MiB, 0xa5, 8 * MiB);
	cur = cg_current(0);
	if (cur < start[0] + 24 * MiB)
		fail_msg("%s memory.current with 24 MiB of its child's region made resident by "
			 "another process: expected at least %llu + 24 MiB, saw %llu",
			 cg_name[0], (unsigned long long)start[0], (unsigned long long)cur);
	cur = cg_current(1);
	if (cur > start[1] + 4 * MiB)
		fail_msg("%s memory.current: expected it unchanged (within 4 MiB of %llu), saw "
			 "%llu",
			 cg_name[1], (unsigned long long)start[1], (unsigned long long)cur);
	/* Past the creator's memory.max, ENSURE fails though the toucher has room. */
	err = kt_range_ioctl(fd, KVMM_IOC_ENSURE, 0, 96 * MiB);
	if (err != -ENOMEM)
		fail_msg("ENSURE of all 96 MiB of a region whose creator's group has memory.max "
			 "64 MiB, from the root group: expected ENOMEM, saw %s",
			 kt_errname(err));
	kf_unmap(p, 96 * MiB);
	kf_close(fd);
	expect_given_back(start, "after the last fd of the region closed");
}

/*
 * A group filled with chunks up to what kvmm allows still has room for the
 * page tables that map them: kvmm's chunks are not on the LRU, so memcg
 * reclaim cannot take them back, and a page table the fault needs after
 * the chunk is charged to the tenant. Filled to memory.max itself (64 KiB
 * chunks, then 4 KiB chunks to the last page), mapping what was ensured
 * OOM-killed the tenant.
 */
static void kid_fills_then_maps(struct kid *k, int g)
{
	int big = kid_region(k, 2 * cg_max[g]), dev, small, err = 0;
	uint64_t ensured = 0, filled = 0;
	volatile uint8_t *p;
	uint64_t sum = 0;

	(void)g;
	while (ensured < 2 * cg_max[g] &&
	       !(err = kt_range_ioctl(big, KVMM_IOC_ENSURE, ensured, CHUNK)))
		ensured += CHUNK;
	KEXPECT(k, err == -ENOMEM,
		"ENSURE of 64 KiB chunks up to memory.max: expected ENOMEM, "
		"saw %s after %llu bytes",
		kt_errname(err), (unsigned long long)ensured);
	/* The last pages too, 4 KiB at a time. */
	dev = open(KVMM_DEVICE_PATH, O_RDWR | O_CLOEXEC);
	KEXPECT(k, dev >= 0, "open %s: %s", KVMM_DEVICE_PATH, strerror(errno));
	small = kt_region_create(dev, 4 * MiB, 4096, KVMM_NUMA_LOCAL);
	KEXPECT(k, small >= 0, "REGION_CREATE of 4 KiB chunks: %s", kt_errname(small));
	close(dev);
	while (filled < 4 * MiB && !(err = kt_range_ioctl(small, KVMM_IOC_ENSURE, filled, 4096)))
		filled += 4096;
	KEXPECT(k, err == -ENOMEM, "ENSURE of 4 KiB chunks at memory.max: expected ENOMEM, saw %s",
		kt_errname(err));
	k->v[0] = ensured;
	k->v[1] = filled;
	/* Map and read everything ensured: one page table per 2 MiB. */
	p = kid_map(k, big, ensured);
	for (uint64_t off = 0; off < ensured; off += 4096)
		sum += p[off];
	KEXPECT(k, sum == 0, "the ensured chunks: expected zeros, saw a byte sum of %llu",
		(unsigned long long)sum);
	k->stage = 2;
	munmap((void *)p, ensured);
	close(small);
	close(big);
}

static void a_group_filled_with_chunks_still_maps_them(void **state)
{
	uint64_t start[NKIDS];

	(void)state;
	cg_setup();
	pool_big_enough();
	for (int g = 0; g < NKIDS; g++)
		start[g] = cg_current(g);
	start_kid(0, kid_fills_then_maps);
	for (int i = 0; i < 12000 && kids[0].stage < 2; i++) {
		int status;

		if (waitpid(kid_pid[0], &status, WNOHANG) == kid_pid[0])
			kid_died(0, status, "filling a group with chunks, then mapping them");
		kf_msleep(10);
	}
	if (kids[0].stage < 2)
		fail_msg("filling a group with chunks, then mapping them: not done in 120 s");
	{
		int status;

		if (waitpid(kid_pid[0], &status, 0) != kid_pid[0] || !WIFEXITED(status) ||
		    WEXITSTATUS(status))
			kid_died(0, status, "filling a group with chunks, then mapping them");
		kid_pid[0] = 0;
	}
	if (kids[0].v[0] < cg_max[0] / 2)
		fail_msg("%s: ENSURE stopped after %llu bytes, expected at least half of "
			 "memory.max %llu",
			 cg_name[0], (unsigned long long)kids[0].v[0],
			 (unsigned long long)cg_max[0]);
	expect_no_oom_kill("after mapping what filled the group");
	expect_given_back(start, "after the child exited");
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(
		without_a_store_memory_max_gives_enomem_and_sigbus_never_an_oom_kill, teardown),
	    cmocka_unit_test_teardown(
		with_a_store_groups_over_memory_max_move_their_chunks_to_flash, teardown),
	    cmocka_unit_test_teardown(groups_get_all_their_memory_back_when_their_children_exit,
				      teardown),
	    cmocka_unit_test_teardown(
		chunks_are_charged_to_the_creators_group_not_to_whoever_touches_them, teardown),
	    cmocka_unit_test_teardown(a_group_filled_with_chunks_still_maps_them, teardown),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests(tests, setup, NULL);
}
