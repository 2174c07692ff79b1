/*
 * Tenancy: who sees which region in KVMM_IOC_REGION_LIST (effective uid,
 * CAP_SYS_ADMIN, pid namespaces), who may raise a region's priority
 * (CAP_SYS_NICE), how pins are charged to RLIMIT_MEMLOCK and tied to the fd
 * they were made through, and what a read-only fd (KVMM_IOC_DUP_RDONLY)
 * allows.
 *
 * Checks that must run as another user or in another namespace run in a
 * forked child; it reports its first failed check through shared memory
 * and its exit status, and never returns into cmocka.
 */
#include "common/kt_flash.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NOBODY	 65534
#define CHUNK	 (64 * KiB)
#define MAX_LIST 256

/* ---- children ----------------------------------------------------------- */

/* Shared with forked children: their failure message and a few handshakes. */
struct shared {
	char msg[2048];
	volatile int stage; /* child -> parent */
	volatile int go;    /* parent -> child */
	volatile int pid;   /* a grandchild's pid as its parent sees it */
	volatile uint32_t id[4];
};
static struct shared *sh;

static int setup(void **state)
{
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return -1;
	return kf_setup(state);
}

/* In a child: record the first failure and exit 1. */
#define CFAIL(...)                                                                                 \
	do {                                                                                       \
		if (!sh->msg[0])                                                                   \
			snprintf(sh->msg, sizeof(sh->msg), __VA_ARGS__);                           \
		_exit(1);                                                                          \
	} while (0)
#define CEXPECT(cond, ...)                                                                         \
	do {                                                                                       \
		if (!(cond))                                                                       \
			CFAIL(__VA_ARGS__);                                                        \
	} while (0)
/* In a child: call must give want (0 or -errno). */
#define CERR(call, want, what)                                                                     \
	do {                                                                                       \
		int err_ = (call);                                                                 \
		if (err_ != (want))                                                                \
			CFAIL("%s: expected %s, saw %s", what, kt_errname(want),                   \
			      kt_errname(err_));                                                   \
	} while (0)

static pid_t fork_child(void)
{
	pid_t pid;

	memset(sh, 0, sizeof(*sh));
	pid = fork();
	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		signal(SIGBUS, SIG_DFL);
		signal(SIGSEGV, SIG_DFL);
	}
	return pid;
}

/* Wait for a child; fail with its message unless it exited 0. */
static void reap(pid_t pid, const char *what)
{
	int status;

	if (waitpid(pid, &status, 0) != pid)
		fail_msg("waitpid: %s", strerror(errno));
	if (WIFSIGNALED(status))
		fail_msg("%s: expected the child to exit 0, saw it killed by signal %d%s%s", what,
			 WTERMSIG(status), sh->msg[0] ? " after: " : "", sh->msg);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail_msg("%s: %s", what,
			 sh->msg[0] ? sh->msg : "the child exited nonzero without a message");
}

/* Wait (up to 60 s) for the child to reach stage; fails if it died first. */
static void wait_stage(pid_t pid, int stage, const char *what)
{
	for (int i = 0; i < 6000 && sh->stage < stage; i++) {
		int status;

		if (waitpid(pid, &status, WNOHANG) == pid) {
			if (WIFEXITED(status) && !WEXITSTATUS(status))
				fail_msg("%s: the child exited before stage %d", what, stage);
			fail_msg("%s: %s", what, sh->msg[0] ? sh->msg : "the child died");
		}
		kf_msleep(10);
	}
	if (sh->stage < stage)
		fail_msg("%s: the child did not reach stage %d in 60 s", what, stage);
}

/* In a child: wait until the parent says go >= n. */
static void child_wait_go(int n)
{
	for (int i = 0; i < 6000 && sh->go < n; i++)
		kf_msleep(10);
	CEXPECT(sh->go >= n, "child: the parent did not answer in 60 s");
}

/* capset(2) without libcap: keep only the capabilities in keep (both words). */
static int caps_keep(uint64_t keep)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d))
		return -errno;
	for (int i = 0; i < 2; i++) {
		uint32_t k = (uint32_t)(keep >> (32 * i));

		d[i].effective &= k;
		d[i].permitted &= k;
		d[i].inheritable &= k;
	}
	return syscall(SYS_capset, &h, d) ? -errno : 0;
}

#define CAP(c)	 (1ULL << (c))
#define ALL_CAPS (~0ULL)

/* CapEff from /proc/self/status. */
static uint64_t cap_eff(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	unsigned long long v = ~0ULL;

	if (!f)
		return v;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &v) == 1)
			break;
	fclose(f);
	return v;
}

/* VmPin of this process in KiB, or -1. */
static long vm_pin_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmPin: %ld kB", &v) == 1)
			break;
	fclose(f);
	return v;
}

/* In a child: become uid/gid 65534 (which drops every capability). */
static void child_become_nobody(void)
{
	CEXPECT(!setgroups(0, NULL), "setgroups: %s", strerror(errno));
	CEXPECT(!setresgid(NOBODY, NOBODY, NOBODY), "setresgid: %s", strerror(errno));
	CEXPECT(!setresuid(NOBODY, NOBODY, NOBODY), "setresuid: %s", strerror(errno));
	CEXPECT(cap_eff() == 0, "after dropping to uid %d: expected CapEff 0, saw %llx", NOBODY,
		(unsigned long long)cap_eff());
}

/* ---- helpers on kvmm ----------------------------------------------------- */

static int create_prio(int dev, uint64_t size, uint32_t priority, uint32_t *id)
{
	struct kvmm_region_create c = {.size = size,
				       .chunk_bytes = CHUNK,
				       .numa_node = KVMM_NUMA_LOCAL,
				       .priority = priority,
				       .flags = KVMM_CREATE_CLOEXEC};

	if (ioctl(dev, KVMM_IOC_REGION_CREATE, &c))
		return -errno;
	if (id)
		*id = c.id;
	return c.fd;
}

/* REGION_LIST into info (MAX_LIST entries); returns count or -errno. */
static int list_regions(int dev, struct kvmm_region_info *info)
{
	struct kvmm_region_list l = {.regions = (uintptr_t)info, .capacity = MAX_LIST};

	memset(info, 0, MAX_LIST * sizeof(*info));
	if (ioctl(dev, KVMM_IOC_REGION_LIST, &l))
		return -errno;
	return (int)l.count;
}

static int list_count(int dev)
{
	struct kvmm_region_list l = {.capacity = 0};

	return ioctl(dev, KVMM_IOC_REGION_LIST, &l) ? -errno : (int)l.count;
}

static const struct kvmm_region_info *find_id(const struct kvmm_region_info *info, int n,
					      uint32_t id)
{
	for (int i = 0; i < n && i < MAX_LIST; i++)
		if (info[i].id == id)
			return &info[i];
	return NULL;
}

static int dup_rdonly(int fd, uint32_t flags)
{
	struct kvmm_dup d = {.flags = flags};

	if (ioctl(fd, KVMM_IOC_DUP_RDONLY, &d))
		return -errno;
	return d.fd;
}

/* Bitwise OR of the state bytes of [first, first + nr) (nr <= 4096), or -errno. */
static int states_or(int fd, uint64_t first, uint64_t nr)
{
	static uint8_t s[4096];
	struct kvmm_query q = {.first_chunk = first, .nr_chunks = nr, .states = (uintptr_t)s};
	int v = 0;

	if (ioctl(fd, KVMM_IOC_QUERY, &q))
		return -errno;
	for (uint64_t i = 0; i < nr; i++)
		v |= s[i];
	return v;
}

static uint64_t pinned_bytes(int fd)
{
	struct kvmm_region_stat st;

	return kt_stat(fd, &st) ? ~0ULL : st.pinned_bytes;
}

/* ---- (a) REGION_LIST and the caller's uid ------------------------------- */

static void region_list_without_cap_sys_admin_shows_only_the_callers_uids_regions(void **state)
{
	struct kvmm_region_info *info = calloc(MAX_LIST, sizeof(*info));
	const struct kvmm_region_info *e;
	uint32_t root_id = 0;
	int dev = kf_track(kt_dev_open()), root_fd, n;
	pid_t pid;

	(void)state;
	assert_non_null(info);
	root_fd = kf_track(create_prio(dev, 1 * MiB, 0, &root_id));
	assert_true(root_fd >= 0);
	pid = fork_child();
	if (pid == 0) {
		uint32_t id = 0;
		int fd, cnt;

		child_become_nobody();
		fd = create_prio(dev, 2 * MiB, 0, &id);
		CEXPECT(fd >= 0, "REGION_CREATE as uid %d: expected success, saw %s", NOBODY,
			kt_errname(fd));
		sh->id[0] = id;
		cnt = list_regions(dev, info);
		CEXPECT(cnt >= 0, "REGION_LIST as uid %d: expected success, saw %s", NOBODY,
			kt_errname(cnt));
		CEXPECT(cnt == 1,
			"REGION_LIST as uid %d (one region of its own, root's region "
			"%u live): expected count 1, saw %d",
			NOBODY, root_id, cnt);
		CEXPECT(info[0].id == id,
			"REGION_LIST as uid %d: expected entry 0 to be region "
			"%u, saw %u",
			NOBODY, id, info[0].id);
		CEXPECT(info[0].size == 2 * MiB && info[0].owner_pid == getpid(),
			"REGION_LIST as uid %d: expected its region of %llu bytes, owner %d; saw "
			"%llu bytes, owner %d",
			NOBODY, 2 * MiB, (int)getpid(), (unsigned long long)info[0].size,
			info[0].owner_pid);
		CEXPECT(!find_id(info, cnt, root_id),
			"REGION_LIST as uid %d: expected root's "
			"region %u hidden, saw it",
			NOBODY, root_id);
		cnt = list_count(dev);
		CEXPECT(cnt == 1, "REGION_LIST as uid %d with capacity 0: expected count 1, saw %d",
			NOBODY, cnt);
		sh->stage = 1;
		child_wait_go(1);
		_exit(0);
	}
	wait_stage(pid, 1, "uid 65534 listing regions");
	/* Root (CAP_SYS_ADMIN) sees both, the child's with the child's pid. */
	n = list_regions(dev, info);
	assert_true(n >= 2);
	if (!find_id(info, n, root_id))
		fail_msg("REGION_LIST as root: expected root's region %u, saw it missing", root_id);
	e = find_id(info, n, sh->id[0]);
	if (!e)
		fail_msg("REGION_LIST as root: expected uid %d's region %u, saw it missing", NOBODY,
			 sh->id[0]);
	if (e->owner_pid != pid)
		fail_msg("REGION_LIST as root: uid %d's region: expected owner_pid %d, saw %d",
			 NOBODY, (int)pid, e->owner_pid);
	sh->go = 1;
	reap(pid, "uid 65534 listing regions");
	free(info);
	kf_close(root_fd);
	kf_close(dev);
}

static void region_list_as_root_without_cap_sys_admin_hides_other_uids_regions(void **state)
{
	struct kvmm_region_info *info = calloc(MAX_LIST, sizeof(*info));
	uint32_t root_id = 0;
	int dev = kf_track(kt_dev_open()), root_fd;
	pid_t pid, nobody;

	(void)state;
	assert_non_null(info);
	root_fd = kf_track(create_prio(dev, 1 * MiB, 0, &root_id));
	assert_true(root_fd >= 0);
	/* A region of uid 65534, alive while the second child lists. */
	nobody = fork_child();
	if (nobody == 0) {
		uint32_t id = 0;
		int fd;

		child_become_nobody();
		fd = create_prio(dev, 1 * MiB, 0, &id);
		CEXPECT(fd >= 0, "REGION_CREATE as uid %d: %s", NOBODY, kt_errname(fd));
		sh->id[0] = id;
		sh->stage = 1;
		child_wait_go(2);
		_exit(0);
	}
	wait_stage(nobody, 1, "uid 65534 holding a region");
	pid = fork();
	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		int cnt, err = caps_keep(ALL_CAPS & ~CAP(CAP_SYS_ADMIN));

		CEXPECT(!err, "capset without CAP_SYS_ADMIN: %s", kt_errname(err));
		CEXPECT(!(cap_eff() & CAP(CAP_SYS_ADMIN)), "CAP_SYS_ADMIN still effective");
		cnt = list_regions(dev, info);
		CEXPECT(cnt >= 1,
			"REGION_LIST as uid 0 without CAP_SYS_ADMIN: expected at least "
			"root's region, saw %s",
			cnt < 0 ? kt_errname(cnt) : "count 0");
		CEXPECT(find_id(info, cnt, root_id),
			"REGION_LIST as uid 0 without CAP_SYS_ADMIN: "
			"expected root's region %u, saw it missing",
			root_id);
		CEXPECT(!find_id(info, cnt, sh->id[0]),
			"REGION_LIST as uid 0 without "
			"CAP_SYS_ADMIN: expected uid %d's region %u hidden, saw it",
			NOBODY, sh->id[0]);
		for (int i = 0; i < cnt && i < MAX_LIST; i++)
			CEXPECT(info[i].id != sh->id[0], "entry %d is uid %d's region", i, NOBODY);
		_exit(0);
	}
	{
		int status;

		assert_int_equal(waitpid(pid, &status, 0), pid);
		sh->go = 2;
		if (!WIFEXITED(status) || WEXITSTATUS(status)) {
			waitpid(nobody, NULL, 0);
			fail_msg("%s", sh->msg[0] ? sh->msg : "the listing child failed");
		}
	}
	reap(nobody, "uid 65534 holding a region");
	free(info);
	kf_close(root_fd);
	kf_close(dev);
}

/* ---- (b) owner_pid in pid namespaces ------------------------------------ */

static void region_list_gives_owner_pids_in_the_callers_pid_namespace(void **state)
{
	struct kvmm_region_info *info = calloc(MAX_LIST, sizeof(*info));
	const struct kvmm_region_info *e;
	uint32_t outer_id = 0;
	int dev = kf_track(kt_dev_open()), outer_fd, n;
	pid_t pid;

	(void)state;
	assert_non_null(info);
	outer_fd = kf_track(create_prio(dev, 1 * MiB, 0, &outer_id));
	assert_true(outer_fd >= 0);
	pid = fork_child();
	if (pid == 0) {
		pid_t init;
		int status;

		/* Only this child's children go into the new namespace. */
		CEXPECT(!unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID): %s", strerror(errno));
		init = fork();
		CEXPECT(init >= 0, "fork into the new pid namespace: %s", strerror(errno));
		if (init == 0) {
			const struct kvmm_region_info *me, *outer;
			uint32_t id = 0;
			int fd, cnt;

			CEXPECT(getpid() == 1, "in the new pid namespace: expected pid 1, saw %d",
				(int)getpid());
			fd = create_prio(dev, 2 * MiB, 0, &id);
			CEXPECT(fd >= 0, "REGION_CREATE in a new pid namespace: %s",
				kt_errname(fd));
			sh->id[0] = id;
			cnt = list_regions(dev, info);
			CEXPECT(cnt >= 2,
				"REGION_LIST in a new pid namespace (root): expected at "
				"least 2 regions, saw %s",
				cnt < 0 ? kt_errname(cnt) : "fewer");
			me = find_id(info, cnt, id);
			outer = find_id(info, cnt, outer_id);
			CEXPECT(me, "REGION_LIST in a new pid namespace: own region %u missing",
				id);
			CEXPECT(me->owner_pid == 1,
				"REGION_LIST in a new pid namespace: own "
				"region: expected owner_pid 1, saw %d",
				me->owner_pid);
			CEXPECT(outer,
				"REGION_LIST in a new pid namespace: expected the outer "
				"region %u (root sees all), saw it missing",
				outer_id);
			CEXPECT(outer->owner_pid == 0,
				"REGION_LIST in a new pid namespace: region "
				"of a process outside it: expected owner_pid 0, saw %d",
				outer->owner_pid);
			/* The parent publishes our outer pid; report only once it has. */
			for (int i = 0; i < 1000 && !sh->pid; i++)
				kf_msleep(10);
			sh->stage = 1;
			child_wait_go(1);
			_exit(0);
		}
		sh->pid = init;
		CEXPECT(waitpid(init, &status, 0) == init, "waitpid: %s", strerror(errno));
		if (WIFSIGNALED(status))
			CFAIL("the namespace's init was killed by signal %d", WTERMSIG(status));
		_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
	}
	wait_stage(pid, 1, "a process in a new pid namespace listing regions");
	/* From outside, the namespace's init has its pid in our namespace. */
	n = list_regions(dev, info);
	e = find_id(info, n, sh->id[0]);
	if (!e)
		fail_msg("REGION_LIST outside: expected region %u of the namespace's init, saw it "
			 "missing",
			 sh->id[0]);
	if (e->owner_pid != sh->pid)
		fail_msg("REGION_LIST outside: region of the namespace's init: expected owner_pid "
			 "%d, saw %d",
			 sh->pid, e->owner_pid);
	e = find_id(info, n, outer_id);
	if (!e || e->owner_pid != getpid())
		fail_msg("REGION_LIST outside: own region: expected owner_pid %d, saw %d",
			 (int)getpid(), e ? e->owner_pid : -1);
	sh->go = 1;
	reap(pid, "a process in a new pid namespace listing regions");
	free(info);
	kf_close(outer_fd);
	kf_close(dev);
}

/* ---- (c) priority needs CAP_SYS_NICE ------------------------------------ */

static void priority_above_default_needs_cap_sys_nice(void **state)
{
	int dev = kf_track(kt_dev_open()), fd;
	struct kvmm_region_stat st;
	pid_t pid;

	(void)state;
	pid = fork_child();
	if (pid == 0) {
		int before, f, after;

		child_become_nobody();
		before = list_count(dev);
		CEXPECT(before >= 0, "REGION_LIST as uid %d: %s", NOBODY, kt_errname(before));
		f = create_prio(dev, 1 * MiB, KVMM_PRIORITY_DEFAULT + 1, NULL);
		CERR(f < 0 ? f : 0, -EPERM, "REGION_CREATE with priority 1 as uid 65534");
		f = create_prio(dev, 1 * MiB, 5, NULL);
		CERR(f < 0 ? f : 0, -EPERM, "REGION_CREATE with priority 5 as uid 65534");
		f = create_prio(dev, 1 * MiB, 0xffffffffu, NULL);
		CERR(f < 0 ? f : 0, -EPERM, "REGION_CREATE with priority 0xffffffff as uid 65534");
		after = list_count(dev);
		CEXPECT(after == before,
			"uid %d after refused creates: expected %d regions, saw %d", NOBODY, before,
			after);
		f = create_prio(dev, 1 * MiB, KVMM_PRIORITY_DEFAULT, NULL);
		CEXPECT(f >= 0,
			"REGION_CREATE with priority KVMM_PRIORITY_DEFAULT as uid %d: "
			"expected success, saw %s",
			NOBODY, kt_errname(f));
		_exit(0);
	}
	reap(pid, "uid 65534 creating regions with priorities");

	/* Root without CAP_SYS_NICE is refused too: it is the capability that counts. */
	pid = fork_child();
	if (pid == 0) {
		int f, err = caps_keep(ALL_CAPS & ~CAP(CAP_SYS_NICE));

		CEXPECT(!err, "capset without CAP_SYS_NICE: %s", kt_errname(err));
		f = create_prio(dev, 1 * MiB, 5, NULL);
		CERR(f < 0 ? f : 0, -EPERM,
		     "REGION_CREATE with priority 5 as uid 0 without "
		     "CAP_SYS_NICE");
		f = create_prio(dev, 1 * MiB, 0, NULL);
		CEXPECT(f >= 0,
			"REGION_CREATE with priority 0 as uid 0 without CAP_SYS_NICE: "
			"expected success, saw %s",
			kt_errname(f));
		_exit(0);
	}
	reap(pid, "uid 0 without CAP_SYS_NICE creating regions");

	fd = create_prio(dev, 1 * MiB, 5, NULL);
	if (fd < 0)
		fail_msg("REGION_CREATE with priority 5 as root: expected success, saw %s",
			 kt_errname(fd));
	kf_track(fd);
	assert_int_equal(kt_stat(fd, &st), 0);
	assert_int_equal(st.priority, 5);
	kf_close(fd);
	kf_close(dev);
}

/* ---- (d) pins and RLIMIT_MEMLOCK ---------------------------------------- */

static void pins_are_charged_to_rlimit_memlock(void **state)
{
	int dev = kf_track(kt_dev_open());
	pid_t pid;

	(void)state;
	pid = fork_child();
	if (pid == 0) {
		struct rlimit rl = {.rlim_cur = 1 * MiB, .rlim_max = 1 * MiB};
		long lck0, lck;
		int fd, s;

		CEXPECT(!setrlimit(RLIMIT_MEMLOCK, &rl), "setrlimit: %s", strerror(errno));
		child_become_nobody();
		fd = create_prio(dev, 4 * MiB, 0, NULL);
		CEXPECT(fd >= 0, "REGION_CREATE as uid %d: %s", NOBODY, kt_errname(fd));
		lck0 = vm_pin_kib();
		CEXPECT(lck0 >= 0, "no VmPin in /proc/self/status");

		CERR(kt_range_ioctl(fd, KVMM_IOC_PIN, 0, 2 * MiB), -ENOMEM,
		     "PIN of 2 MiB with RLIMIT_MEMLOCK 1 MiB, uid 65534");
		s = states_or(fd, 0, 64);
		CEXPECT(s >= 0 && !(s & KVMM_CHUNK_PINNED),
			"QUERY after the refused PIN: "
			"expected no PINNED chunk, saw state bits 0x%02x",
			s);
		CEXPECT(pinned_bytes(fd) == 0,
			"STAT after the refused PIN: expected pinned_bytes "
			"0, saw %llu",
			(unsigned long long)pinned_bytes(fd));
		lck = vm_pin_kib();
		CEXPECT(lck == lck0, "VmPin after the refused PIN: expected %ld kB, saw %ld kB",
			lck0, lck);

		CERR(kt_range_ioctl(fd, KVMM_IOC_PIN, 0, 512 * KiB), 0,
		     "PIN of 512 KiB with RLIMIT_MEMLOCK 1 MiB, uid 65534");
		CEXPECT(pinned_bytes(fd) == 512 * KiB,
			"STAT after PIN of 512 KiB: expected "
			"pinned_bytes %llu, saw %llu",
			512 * KiB, (unsigned long long)pinned_bytes(fd));
		lck = vm_pin_kib();
		CEXPECT(lck == lck0 + 512,
			"VmPin after PIN of 512 KiB: expected %ld kB, saw %ld kB", lck0 + 512, lck);
		/* 512 KiB more would be 1 MiB; 768 KiB more is past the limit. */
		CERR(kt_range_ioctl(fd, KVMM_IOC_PIN, 1 * MiB, 768 * KiB), -ENOMEM,
		     "PIN of 768 KiB more with 512 KiB of 1 MiB RLIMIT_MEMLOCK pinned");
		s = states_or(fd, 16, 12);
		CEXPECT(s >= 0 && !(s & KVMM_CHUNK_PINNED),
			"QUERY after the second refused PIN: "
			"expected no PINNED chunk in it, saw state bits 0x%02x",
			s);
		CEXPECT(vm_pin_kib() == lck0 + 512,
			"VmPin after the second refused PIN: expected "
			"%ld kB, saw %ld kB",
			lck0 + 512, vm_pin_kib());

		CERR(kt_range_ioctl(fd, KVMM_IOC_UNPIN, 0, 512 * KiB), 0, "UNPIN of 512 KiB");
		lck = vm_pin_kib();
		CEXPECT(lck == lck0, "VmPin after UNPIN: expected %ld kB, saw %ld kB", lck0, lck);
		CEXPECT(pinned_bytes(fd) == 0,
			"STAT after UNPIN: expected pinned_bytes 0, saw "
			"%llu",
			(unsigned long long)pinned_bytes(fd));
		/* What UNPIN gave back can be pinned again. */
		CERR(kt_range_ioctl(fd, KVMM_IOC_PIN, 2 * MiB, 1 * MiB), 0,
		     "PIN of 1 MiB after UNPIN, RLIMIT_MEMLOCK 1 MiB");
		CERR(kt_range_ioctl(fd, KVMM_IOC_UNPIN, 2 * MiB, 1 * MiB), 0, "UNPIN of 1 MiB");
		close(fd);
		_exit(0);
	}
	reap(pid, "uid 65534 pinning with RLIMIT_MEMLOCK 1 MiB");
	kf_close(dev);
}

static void cap_ipc_lock_lifts_rlimit_memlock_for_pins(void **state)
{
	int dev = kf_track(kt_dev_open());
	pid_t pid;

	(void)state;
	pid = fork_child();
	if (pid == 0) {
		struct rlimit rl = {.rlim_cur = 1 * MiB, .rlim_max = 1 * MiB};
		int fd;

		CEXPECT(!setrlimit(RLIMIT_MEMLOCK, &rl), "setrlimit: %s", strerror(errno));
		fd = create_prio(dev, 4 * MiB, 0, NULL);
		CEXPECT(fd >= 0, "REGION_CREATE: %s", kt_errname(fd));
		CERR(kt_range_ioctl(fd, KVMM_IOC_PIN, 0, 2 * MiB), 0,
		     "PIN of 2 MiB with RLIMIT_MEMLOCK 1 MiB as root (CAP_IPC_LOCK)");
		CEXPECT(pinned_bytes(fd) == 2 * MiB, "pinned_bytes: expected %llu, saw %llu",
			2 * MiB, (unsigned long long)pinned_bytes(fd));
		CERR(kt_range_ioctl(fd, KVMM_IOC_UNPIN, 0, 2 * MiB), 0, "UNPIN of 2 MiB");
		close(fd);
		_exit(0);
	}
	reap(pid, "root pinning past RLIMIT_MEMLOCK");
	kf_close(dev);
}

/*
 * RLIMIT_MEMLOCK bounds a user, not one process or one fd: pins made by a
 * child that exits, or through another region, count in the same budget.
 */
static void pins_count_once_per_user_across_processes_and_regions(void **state)
{
	int dev = kf_track(kt_dev_open());
	pid_t pid;

	(void)state;
	pid = fork_child();
	if (pid == 0) {
		struct rlimit rl = {.rlim_cur = 1 * MiB, .rlim_max = 1 * MiB};
		int a, b, status = 0;
		pid_t kid;

		CEXPECT(!setrlimit(RLIMIT_MEMLOCK, &rl), "setrlimit: %s", strerror(errno));
		child_become_nobody();
		a = create_prio(dev, 4 * MiB, 0, NULL);
		b = create_prio(dev, 4 * MiB, 0, NULL);
		CEXPECT(a >= 0 && b >= 0, "REGION_CREATE as uid %d: %s", NOBODY,
			kt_errname(a < 0 ? a : b));

		/* A child pins 768 KiB of region A through the inherited fd and exits. */
		kid = fork();
		CEXPECT(kid >= 0, "fork: %s", strerror(errno));
		if (kid == 0)
			_exit(kt_range_ioctl(a, KVMM_IOC_PIN, 0, 768 * KiB) ? 1 : 0);
		CEXPECT(waitpid(kid, &status, 0) == kid && WIFEXITED(status) &&
			    !WEXITSTATUS(status),
			"PIN of 768 KiB of region A by a child of uid %d: expected it to "
			"exit 0, saw status 0x%x",
			NOBODY, status);
		CEXPECT(pinned_bytes(a) == 768 * KiB,
			"after the child exited: expected region A's 768 KiB still pinned "
			"(its fd is open), saw pinned_bytes %llu",
			(unsigned long long)pinned_bytes(a));

		CERR(kt_range_ioctl(b, KVMM_IOC_PIN, 0, 512 * KiB), -ENOMEM,
		     "PIN of 512 KiB of region B with 768 KiB of the user's 1 MiB "
		     "RLIMIT_MEMLOCK pinned by an exited child through region A");
		CEXPECT(pinned_bytes(b) == 0,
			"after the refused PIN: expected region B's pinned_bytes 0, saw %llu",
			(unsigned long long)pinned_bytes(b));
		CERR(kt_range_ioctl(b, KVMM_IOC_PIN, 0, 256 * KiB), 0,
		     "PIN of 256 KiB of region B, which fills the user's 1 MiB");

		/* Closing region A's fd gives its 768 KiB back to the user. */
		close(a);
		CERR(kt_range_ioctl(b, KVMM_IOC_PIN, 1 * MiB, 768 * KiB), 0,
		     "PIN of 768 KiB of region B after region A's pinning fd closed");
		close(b);
		_exit(0);
	}
	reap(pid, "uid 65534 pinning from two processes and two regions");
	kf_close(dev);
}

/*
 * A PIN of a range the pool can never hold fails at once, whatever the
 * caller's limits: it must not walk a 1 TiB range chunk by chunk while
 * holding the fd's pin lock.
 */
static void a_pin_larger_than_the_pool_fails_at_once(void **state)
{
	int dev = kf_track(kt_dev_open());
	struct kvmm_region_create c = {.size = 1ULL << 40,
				       .chunk_bytes = 4096,
				       .numa_node = KVMM_NUMA_LOCAL,
				       .flags = KVMM_CREATE_CLOEXEC};
	int fd = ioctl(dev, KVMM_IOC_REGION_CREATE, &c) ? -errno : kf_track(c.fd);
	struct timespec t0, t1;
	double secs;
	pid_t pid;
	int status = 0;

	(void)state;
	if (fd < 0)
		fail_msg("REGION_CREATE of 1 TiB in 4 KiB chunks: %s", kt_errname(fd));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pid = fork_child();
	if (pid == 0) {
		CERR(kt_range_ioctl(fd, KVMM_IOC_PIN, 0, 1ULL << 40), -ENOMEM,
		     "PIN of a whole 1 TiB region of 4 KiB chunks as root");
		_exit(0);
	}
	for (int i = 0; i < 500 && waitpid(pid, &status, WNOHANG) == 0; i++)
		usleep(10000);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (secs >= 5)
		fail_msg("PIN of a 1 TiB range (4 KiB chunks) had not returned after %.1f s", secs);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail_msg("PIN of a 1 TiB range: %s", sh->msg[0] ? sh->msg : "the child failed");
	assert_int_equal(pinned_bytes(fd), 0);
	kf_close(fd);
	kf_close(dev);
}

/* ---- (e) a pin lasts at most as long as its fd -------------------------- */

static void a_pin_dies_with_the_fd_it_was_made_through(void **state)
{
	int dev = kf_track(kt_dev_open());
	int store = kf_backing_open(kf_flash_dir());
	pid_t pid;

	(void)state;
	pid = fork_child();
	if (pid == 0) {
		struct rlimit rl = {.rlim_cur = 8 * MiB, .rlim_max = 8 * MiB};
		long lck0, lck;
		int a, d, d2, s;

		CEXPECT(!setrlimit(RLIMIT_MEMLOCK, &rl), "setrlimit: %s", strerror(errno));
		child_become_nobody();
		a = create_prio(dev, 4 * MiB, 0, NULL);
		CEXPECT(a >= 0, "REGION_CREATE as uid %d: %s", NOBODY, kt_errname(a));
		/* The store was opened by root; its I/O runs as root. */
		CERR(kf_set_backing(a, store), 0, "SET_BACKING with a file root opened");
		CERR(kt_range_ioctl(a, KVMM_IOC_ENSURE, 0, 4 * MiB), 0, "ENSURE of 4 MiB");
		lck0 = vm_pin_kib();

		d = dup_rdonly(a, KVMM_DUP_CLOEXEC);
		CEXPECT(d >= 0, "DUP_RDONLY: expected an fd, saw %s", kt_errname(d));
		CERR(kt_range_ioctl(d, KVMM_IOC_PIN, 0, 1 * MiB), 0,
		     "PIN of 1 MiB through a read-only fd");
		lck = vm_pin_kib();
		CEXPECT(lck == lck0 + 1024, "VmPin after PIN of 1 MiB: expected %ld kB, saw %ld kB",
			lck0 + 1024, lck);
		CERR(kt_range_ioctl(a, KVMM_IOC_EVICT, 0, 1 * MiB), -EBUSY,
		     "EVICT through the rw fd of chunks pinned through the read-only fd");
		CERR(kt_range_ioctl(a, KVMM_IOC_DISCARD, 0, 1 * MiB), -EBUSY,
		     "DISCARD through the rw fd of chunks pinned through the read-only fd");
		/* Another pin through fd A is not the pin of fd D. */
		CERR(kt_range_ioctl(a, KVMM_IOC_UNPIN, 0, 1 * MiB), -EINVAL,
		     "UNPIN through the rw fd of a pin made through the read-only fd");
		CEXPECT(pinned_bytes(a) == 1 * MiB,
			"after the refused UNPIN: expected pinned_bytes "
			"%llu, saw %llu",
			1 * MiB, (unsigned long long)pinned_bytes(a));

		/* dup(2) shares the open file: closing one of two keeps the pin. */
		d2 = dup(d);
		CEXPECT(d2 >= 0, "dup: %s", strerror(errno));
		close(d);
		s = states_or(a, 0, 16);
		CEXPECT(s >= 0 && (s & KVMM_CHUNK_PINNED) && pinned_bytes(a) == 1 * MiB,
			"after closing one of two fds of the pinning file: expected the pin kept, "
			"saw pinned_bytes %llu",
			(unsigned long long)pinned_bytes(a));
		close(d2);
		/* The file's last reference is gone, and its pins with it. */
		s = states_or(a, 0, 64);
		CEXPECT(s >= 0 && !(s & KVMM_CHUNK_PINNED),
			"after closing the read-only fd that "
			"pinned: expected no PINNED chunk, saw state bits 0x%02x",
			s);
		CEXPECT(pinned_bytes(a) == 0,
			"after closing the read-only fd that pinned: "
			"expected pinned_bytes 0, saw %llu",
			(unsigned long long)pinned_bytes(a));
		lck = vm_pin_kib();
		CEXPECT(lck == lck0,
			"VmPin after closing the fd that pinned: expected %ld kB, saw "
			"%ld kB",
			lck0, lck);
		CERR(kt_range_ioctl(a, KVMM_IOC_EVICT, 0, 512 * KiB), 0,
		     "EVICT after the pinning fd was closed");
		CERR(kt_range_ioctl(a, KVMM_IOC_DISCARD, 512 * KiB, 512 * KiB), 0,
		     "DISCARD after the pinning fd was closed");

		/* A pin through B is B's: UNPIN through A is refused and changes nothing. */
		d = dup_rdonly(a, 0);
		CEXPECT(d >= 0, "DUP_RDONLY: %s", kt_errname(d));
		CERR(kt_range_ioctl(d, KVMM_IOC_PIN, 2 * MiB, 512 * KiB), 0, "PIN through fd B");
		CERR(kt_range_ioctl(a, KVMM_IOC_UNPIN, 2 * MiB, 512 * KiB), -EINVAL,
		     "UNPIN through fd A of a pin made through fd B");
		CERR(kt_range_ioctl(a, KVMM_IOC_PIN, 2 * MiB, 512 * KiB), 0, "PIN through fd A");
		CERR(kt_range_ioctl(a, KVMM_IOC_UNPIN, 2 * MiB, 512 * KiB), 0,
		     "UNPIN through fd A of its own pin");
		CERR(kt_range_ioctl(a, KVMM_IOC_UNPIN, 2 * MiB, 512 * KiB), -EINVAL,
		     "a second UNPIN through fd A, only fd B's pin left");
		CEXPECT(pinned_bytes(a) == 512 * KiB,
			"fd B's pin: expected pinned_bytes %llu, saw "
			"%llu",
			512 * KiB, (unsigned long long)pinned_bytes(a));
		CERR(kt_range_ioctl(d, KVMM_IOC_UNPIN, 2 * MiB, 512 * KiB), 0,
		     "UNPIN through fd B of its pin");
		CEXPECT(pinned_bytes(a) == 0 && vm_pin_kib() == lck0,
			"after every UNPIN: expected "
			"pinned_bytes 0 and VmPin %ld kB, saw %llu and %ld kB",
			lck0, (unsigned long long)pinned_bytes(a), vm_pin_kib());
		close(d);
		close(a);
		_exit(0);
	}
	reap(pid, "pins through read-only fds");
	kf_close(store);
	kf_close(dev);
}

/* ---- (f) read-only fds -------------------------------------------------- */

static void dup_rdonly_checks_its_argument_and_honours_cloexec(void **state)
{
	int dev = kf_track(kt_dev_open()), fd = kf_region(1 * MiB, CHUNK), r;
	struct kvmm_dup d;
	int fds_before, fds_after;

	(void)state;
	fds_before = dup(0);
	close(fds_before);
	d = (struct kvmm_dup){.reserved = {1, 0}};
	REFUSED(ioctl(fd, KVMM_IOC_DUP_RDONLY, &d) ? -errno : 0, -EINVAL,
		"DUP_RDONLY with reserved[0] = 1");
	d = (struct kvmm_dup){.reserved = {0, 1ULL << 63}};
	REFUSED(ioctl(fd, KVMM_IOC_DUP_RDONLY, &d) ? -errno : 0, -EINVAL,
		"DUP_RDONLY with reserved[1] set");
	d = (struct kvmm_dup){.flags = 1U << 1};
	REFUSED(ioctl(fd, KVMM_IOC_DUP_RDONLY, &d) ? -errno : 0, -EINVAL,
		"DUP_RDONLY with unknown flag 0x2");
	d = (struct kvmm_dup){.flags = 0x80000000u | KVMM_DUP_CLOEXEC};
	REFUSED(ioctl(fd, KVMM_IOC_DUP_RDONLY, &d) ? -errno : 0, -EINVAL,
		"DUP_RDONLY with unknown flag 0x80000000");
	REFUSED(ioctl(fd, KVMM_IOC_DUP_RDONLY, (void *)16) ? -errno : 0, -EFAULT,
		"DUP_RDONLY with a bad pointer");
	d = (struct kvmm_dup){0};
	REFUSED(ioctl(dev, KVMM_IOC_DUP_RDONLY, &d) ? -errno : 0, -ENOTTY,
		"DUP_RDONLY on /dev/kvmm");
	fds_after = dup(0);
	close(fds_after);
	if (fds_after != fds_before)
		fail_msg("after refused DUP_RDONLY calls: expected the next fd %d, saw %d (an fd "
			 "leaked)",
			 fds_before, fds_after);

	d = (struct kvmm_dup){.flags = 0};
	REFUSED(ioctl(fd, KVMM_IOC_DUP_RDONLY, &d) ? -errno : 0, 0, "DUP_RDONLY without flags");
	kf_track(d.fd);
	assert_true(d.fd >= 0 && d.fd != fd);
	if (d.reserved[0] || d.reserved[1])
		fail_msg("DUP_RDONLY output: expected reserved zero, saw %llx %llx",
			 (unsigned long long)d.reserved[0], (unsigned long long)d.reserved[1]);
	if (fcntl(d.fd, F_GETFD) & FD_CLOEXEC)
		fail_msg("DUP_RDONLY without KVMM_DUP_CLOEXEC: expected no FD_CLOEXEC, saw it set");
	if ((fcntl(d.fd, F_GETFL) & O_ACCMODE) != O_RDONLY)
		fail_msg("DUP_RDONLY fd: expected F_GETFL access mode O_RDONLY, saw %d",
			 fcntl(d.fd, F_GETFL) & O_ACCMODE);
	kf_close(d.fd);

	r = dup_rdonly(fd, KVMM_DUP_CLOEXEC);
	if (r < 0)
		fail_msg("DUP_RDONLY with KVMM_DUP_CLOEXEC: expected an fd, saw %s", kt_errname(r));
	kf_track(r);
	if (!(fcntl(r, F_GETFD) & FD_CLOEXEC))
		fail_msg("DUP_RDONLY with KVMM_DUP_CLOEXEC: expected FD_CLOEXEC, saw it clear");
	if ((fcntl(r, F_GETFL) & O_ACCMODE) != O_RDONLY)
		fail_msg("DUP_RDONLY fd: expected F_GETFL access mode O_RDONLY, saw %d",
			 fcntl(r, F_GETFL) & O_ACCMODE);
	/* The original keeps O_RDWR. */
	assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDWR);
	kf_close(r);
	kf_close(fd);
	kf_close(dev);
}

static void dup_rdonly_takes_any_value_in_its_output_fd_field(void **state)
{
	int fd = kf_region(1 * MiB, CHUNK);
	struct kvmm_dup d;

	(void)state;
	/* @fd is out only (not a reserved field): what it holds on input does not matter. */
	for (int i = 0; i < 2; i++) {
		d = (struct kvmm_dup){.flags = KVMM_DUP_CLOEXEC, .fd = i ? fd : -1};
		REFUSED(ioctl(fd, KVMM_IOC_DUP_RDONLY, &d) ? -errno : 0, 0,
			i ? "DUP_RDONLY with @fd holding an open fd on input"
			  : "DUP_RDONLY with @fd = -1 on input");
		kf_track(d.fd);
		if (d.fd < 0 || d.fd == fd || (fcntl(d.fd, F_GETFL) & O_ACCMODE) != O_RDONLY)
			fail_msg("DUP_RDONLY output: expected a new O_RDONLY fd, saw fd %d", d.fd);
		kf_close(d.fd);
	}
	kf_close(fd);
}

static void a_read_only_fd_maps_read_only_and_sees_the_writers_data(void **state)
{
	int fd = kf_region(2 * MiB, CHUNK), ro;
	uint8_t *w = kf_map(fd, 0, 2 * MiB), *r;
	void *bad;
	int sig, rc;

	(void)state;
	ro = dup_rdonly(fd, KVMM_DUP_CLOEXEC);
	if (ro < 0)
		fail_msg("DUP_RDONLY: expected an fd, saw %s", kt_errname(ro));
	kf_track(ro);
	kf_fill(w, 1 * MiB, 0, 1);
	r = mmap(NULL, 2 * MiB, PROT_READ, MAP_SHARED, ro, 0);
	if (r == MAP_FAILED)
		fail_msg("mmap(PROT_READ, MAP_SHARED) of a read-only fd: expected success, saw %s",
			 strerror(errno));
	assert_true(kf_check(r, 1 * MiB, 0, 1, "read-only mapping, data written before it"));
	assert_true(kt_all_zero(r + 1 * MiB, 1 * MiB));
	/* Later writes by the writer show through the reader's mapping. */
	kf_fill(w + 1 * MiB, 1 * MiB, 1 * MiB, 2);
	kf_fill(w, 64 * KiB, 0, 3);
	assert_true(kf_check(r + 1 * MiB, 1 * MiB, 1 * MiB, 2, "read-only mapping, later write"));
	assert_true(kf_check(r, 64 * KiB, 0, 3, "read-only mapping, overwritten chunk"));

	bad = mmap(NULL, 1 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0);
	if (bad != MAP_FAILED || errno != EACCES)
		fail_msg("mmap(PROT_READ | PROT_WRITE, MAP_SHARED) of a read-only fd: expected "
			 "EACCES, saw %s",
			 bad != MAP_FAILED ? "success" : strerror(errno));
	bad = mmap(NULL, 1 * MiB, PROT_WRITE, MAP_SHARED, ro, 0);
	if (bad != MAP_FAILED || errno != EACCES)
		fail_msg("mmap(PROT_WRITE, MAP_SHARED) of a read-only fd: expected EACCES, saw %s",
			 bad != MAP_FAILED ? "success" : strerror(errno));
	rc = mprotect(r, 2 * MiB, PROT_READ | PROT_WRITE) ? -errno : 0;
	if (rc != -EACCES)
		fail_msg("mprotect(PROT_READ | PROT_WRITE) of a read-only fd's mapping: expected "
			 "EACCES, saw %s",
			 kt_errname(rc));
	rc = mprotect(r, 64 * KiB, PROT_WRITE) ? -errno : 0;
	if (rc != -EACCES)
		fail_msg("mprotect(PROT_WRITE) of part of a read-only fd's mapping: expected "
			 "EACCES, saw %s",
			 kt_errname(rc));
	/* A store through it kills the writer. */
	sig = kf_touch_in_child(r + 128 * KiB, 4096, 1);
	if (sig != SIGSEGV)
		fail_msg("a write through a read-only fd's mapping: expected SIGSEGV, saw %s %d",
			 sig > 0 ? "signal" : "exit", sig);
	assert_true(kf_check(r, 64 * KiB, 0, 3, "after the write that was refused"));
	assert_true(kf_check(w + 64 * KiB, 1 * MiB - 64 * KiB, 64 * KiB, 1,
			     "the writer's view after the refused write"));
	munmap(r, 2 * MiB);
	kf_unmap(w, 2 * MiB);
	kf_close(ro);
	kf_close(fd);
}

static void a_read_only_fd_refuses_writes_discard_and_set_backing_with_ebadf(void **state)
{
	int fd = kf_region(2 * MiB, CHUNK), ro, file = kf_backing_open(kf_flash_dir());
	uint8_t buf[4096];
	ssize_t n;

	(void)state;
	ro = dup_rdonly(fd, KVMM_DUP_CLOEXEC);
	if (ro < 0)
		fail_msg("DUP_RDONLY: expected an fd, saw %s", kt_errname(ro));
	kf_track(ro);
	memset(buf, 0xab, sizeof(buf));
	assert_int_equal(pwrite(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	n = pwrite(ro, buf, sizeof(buf), 8192);
	if (n != -1 || errno != EBADF)
		fail_msg("pwrite on a read-only fd: expected EBADF, saw %s",
			 n >= 0 ? "success" : strerror(errno));
	REFUSED(kt_range_ioctl(ro, KVMM_IOC_DISCARD, 0, CHUNK), -EBADF,
		"DISCARD through a read-only fd");
	kf_expect_states(fd, 0, 1, KVMM_CHUNK_RESIDENT | KVMM_CHUNK_DIRTY,
			 "after DISCARD through a read-only fd");
	REFUSED(kf_set_backing(ro, file), -EBADF, "SET_BACKING through a read-only fd");
	REFUSED(kf_set_backing(ro, KVMM_BACKING_NONE), -EBADF,
		"clearing the backing through a read-only fd");
	/* Neither changed anything: the data is there and the region has no store. */
	memset(buf, 0, sizeof(buf));
	assert_int_equal(pread(ro, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	for (size_t i = 0; i < sizeof(buf); i++)
		if (buf[i] != 0xab)
			fail_msg("byte %zu after refused calls: expected 0xab, saw 0x%02x", i,
				 buf[i]);
	REFUSED(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, CHUNK), -ENODEV,
		"EVICT after SET_BACKING through a read-only fd was refused");
	assert_int_equal(kf_stat(fd).bytes_written, sizeof(buf));
	kf_close(file);
	kf_close(ro);
	kf_close(fd);
}

static void a_read_only_fd_can_stat_query_pin_prefetch_wait_and_ensure(void **state)
{
	int file, fd = kf_region_backed(2 * MiB, CHUNK, &file), ro;
	uint8_t *w = kf_map(fd, 0, 2 * MiB), *r;
	struct kvmm_region_stat st;
	uint8_t s[32];

	(void)state;
	ro = dup_rdonly(fd, KVMM_DUP_CLOEXEC);
	if (ro < 0)
		fail_msg("DUP_RDONLY: expected an fd, saw %s", kt_errname(ro));
	kf_track(ro);
	kf_fill(w, 1 * MiB, 0, 5);
	REFUSED(kt_stat(ro, &st), 0, "STAT through a read-only fd");
	assert_int_equal(st.size, 2 * MiB);
	assert_int_equal(st.resident_bytes, 1 * MiB);
	kf_query(ro, 0, 32, s);
	assert_int_equal(s[0], KVMM_CHUNK_RESIDENT | KVMM_CHUNK_DIRTY);
	assert_int_equal(s[31], KVMM_CHUNK_EMPTY);
	REFUSED(kt_range_ioctl(ro, KVMM_IOC_ENSURE, 1 * MiB, 1 * MiB), 0,
		"ENSURE through a read-only fd");
	kf_expect_states(fd, 16, 16, KVMM_CHUNK_RESIDENT | KVMM_CHUNK_DIRTY,
			 "after ENSURE through a read-only fd");
	REFUSED(kt_range_ioctl(ro, KVMM_IOC_PIN, 0, 256 * KiB), 0, "PIN through a read-only fd");
	kf_expect_states(ro, 0, 4, KVMM_CHUNK_RESIDENT | KVMM_CHUNK_DIRTY | KVMM_CHUNK_PINNED,
			 "after PIN through a read-only fd");
	REFUSED(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 256 * KiB), -EBUSY,
		"EVICT of chunks pinned through a read-only fd");
	REFUSED(kt_range_ioctl(ro, KVMM_IOC_UNPIN, 0, 256 * KiB), 0,
		"UNPIN through a read-only fd");
	/* Move the data to flash; the reader brings it back. */
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 1 * MiB), 0);
	kf_expect_states(fd, 0, 16, KVMM_CHUNK_FLASH, "after EVICT");
	REFUSED(kt_range_ioctl(ro, KVMM_IOC_PREFETCH, 0, 1 * MiB), 0,
		"PREFETCH through a read-only fd");
	REFUSED(kt_range_ioctl(ro, KVMM_IOC_WAIT, 0, 1 * MiB), 0, "WAIT through a read-only fd");
	kf_expect_states(fd, 0, 16, KVMM_CHUNK_RESIDENT,
			 "after PREFETCH and WAIT through a "
			 "read-only fd");
	r = mmap(NULL, 2 * MiB, PROT_READ, MAP_SHARED, ro, 0);
	assert_ptr_not_equal(r, MAP_FAILED);
	assert_true(kf_check(r, 1 * MiB, 0, 5, "read back by a reader"));
	munmap(r, 2 * MiB);
	kf_unmap(w, 2 * MiB);
	kf_close(ro);
	kf_close(fd);
	kf_close(file);
}

static void a_read_only_fd_keeps_the_region_after_the_writer_closes(void **state)
{
	int fd = kf_region(2 * MiB, CHUNK), ro;
	uint8_t *w = kf_map(fd, 0, 2 * MiB), *r, *buf = malloc(2 * MiB);
	uint64_t regions;

	(void)state;
	assert_non_null(buf);
	ro = dup_rdonly(fd, KVMM_DUP_CLOEXEC);
	if (ro < 0)
		fail_msg("DUP_RDONLY: expected an fd, saw %s", kt_errname(ro));
	kf_track(ro);
	r = mmap(NULL, 2 * MiB, PROT_READ, MAP_SHARED, ro, 0);
	assert_ptr_not_equal(r, MAP_FAILED);
	kf_fill(w, 2 * MiB, 0, 6);
	regions = kt_sysfs_u64("regions");
	/* The writer goes away entirely. */
	kf_unmap(w, 2 * MiB);
	kf_close(fd);
	if (kt_sysfs_u64("regions") != regions)
		fail_msg("regions after the writer closed: expected %llu, saw %llu",
			 (unsigned long long)regions, (unsigned long long)kt_sysfs_u64("regions"));
	assert_true(kf_check(r, 2 * MiB, 0, 6, "reader's mapping after the writer closed"));
	assert_int_equal(pread(ro, buf, 2 * MiB, 0), (ssize_t)(2 * MiB));
	assert_true(kf_check(buf, 2 * MiB, 0, 6, "pread through the read-only fd"));
	assert_int_equal(kf_stat(ro).resident_bytes, 2 * MiB);
	/* Only the fd now: a new mapping still sees it. */
	munmap(r, 2 * MiB);
	r = mmap(NULL, 2 * MiB, PROT_READ, MAP_SHARED, ro, 0);
	assert_ptr_not_equal(r, MAP_FAILED);
	assert_true(kf_check(r, 2 * MiB, 0, 6, "a new mapping of the read-only fd"));
	munmap(r, 2 * MiB);
	free(buf);
	kf_close(ro);
	if (kf_sysfs_wait("regions", regions - 1, 2000) != regions - 1)
		fail_msg("regions after the read-only fd closed: expected %llu, saw %llu",
			 (unsigned long long)regions - 1,
			 (unsigned long long)kt_sysfs_u64("regions"));
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(
		region_list_without_cap_sys_admin_shows_only_the_callers_uids_regions, kf_teardown),
	    cmocka_unit_test_teardown(
		region_list_as_root_without_cap_sys_admin_hides_other_uids_regions, kf_teardown),
	    cmocka_unit_test_teardown(region_list_gives_owner_pids_in_the_callers_pid_namespace,
				      kf_teardown),
	    cmocka_unit_test_teardown(priority_above_default_needs_cap_sys_nice, kf_teardown),
	    cmocka_unit_test_teardown(pins_are_charged_to_rlimit_memlock, kf_teardown),
	    cmocka_unit_test_teardown(cap_ipc_lock_lifts_rlimit_memlock_for_pins, kf_teardown),
	    cmocka_unit_test_teardown(pins_count_once_per_user_across_processes_and_regions,
				      kf_teardown),
	    cmocka_unit_test_teardown(a_pin_larger_than_the_pool_fails_at_once, kf_teardown),
	    cmocka_unit_test_teardown(a_pin_dies_with_the_fd_it_was_made_through, kf_teardown),
	    cmocka_unit_test_teardown(dup_rdonly_checks_its_argument_and_honours_cloexec,
				      kf_teardown),
	    cmocka_unit_test_teardown(dup_rdonly_takes_any_value_in_its_output_fd_field,
				      kf_teardown),
	    cmocka_unit_test_teardown(a_read_only_fd_maps_read_only_and_sees_the_writers_data,
				      kf_teardown),
	    cmocka_unit_test_teardown(
		a_read_only_fd_refuses_writes_discard_and_set_backing_with_ebadf, kf_teardown),
	    cmocka_unit_test_teardown(a_read_only_fd_can_stat_query_pin_prefetch_wait_and_ensure,
				      kf_teardown),
	    cmocka_unit_test_teardown(a_read_only_fd_keeps_the_region_after_the_writer_closes,
				      kf_teardown),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests(tests, setup, NULL);
}
