/*
 * No tenant stalls or escapes another through the flash tier: a frozen
 * (hung) backing store blocks only the regions on it and never a fatal
 * signal; its writes wait for the thaw instead of writing a frozen
 * filesystem; the store's growth honours the RLIMIT_FSIZE of whoever set it,
 * also when reclaim grows it; kvmm's writes are seen by inotify; a fault
 * that reads from flash counts as a major fault; and faults on different
 * chunks of one region run side by side.
 */
#include "common/kt_flash.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

static int frozen_fd = -1;

/* Freeze the small filesystem: writes to it block until thaw_small(). */
static void freeze_small(void)
{
	frozen_fd = open(kf_small_dir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(frozen_fd >= 0);
	if (ioctl(frozen_fd, FIFREEZE, 0))
		fail_msg("FIFREEZE %s: %s", kf_small_dir(), strerror(errno));
}

static void thaw_small(void)
{
	if (frozen_fd < 0)
		return;
	if (ioctl(frozen_fd, FITHAW, 0))
		fail_msg("FITHAW %s: %s", kf_small_dir(), strerror(errno));
	close(frozen_fd);
	frozen_fd = -1;
}

static int teardown(void **state)
{
	if (frozen_fd >= 0) {
		ioctl(frozen_fd, FITHAW, 0);
		close(frozen_fd);
		frozen_fd = -1;
	}
	return kf_teardown(state);
}

/* Wait up to ms for pid; returns its wait status, or -1 if still running. */
static int wait_child(pid_t pid, int ms)
{
	int status;

	for (int i = 0; i < ms / 10; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return status;
		kf_msleep(10);
	}
	return -1;
}

/* A forked child that EVICTs [0, len) of fd and exits with the errno. */
static pid_t evict_in_child(int fd, uint64_t len)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (!pid)
		_exit(-kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, len) & 0xff);
	return pid;
}

/* Wait (up to 30 s) until no chunk of fd has I/O in flight. */
static void wait_settled(int fd)
{
	for (int i = 0; i < 3000 && kf_stat(fd).inflight_ios; i++)
		kf_msleep(10);
	assert_int_equal(kf_stat(fd).inflight_ios, 0);
}

static void evict_to_a_frozen_store_waits_for_the_thaw_and_dies_on_sigkill(void **state)
{
	int file = kf_backing_open(kf_small_dir());
	int fd = kf_region(4 * MiB, 1 * MiB);
	uint8_t *p = kf_map(fd, 0, 4 * MiB);
	struct stat st;
	pid_t pid;
	int status;

	(void)state;
	assert_int_equal(kf_set_backing(fd, file), 0);
	kf_fill(p, 4 * MiB, 0, 11);
	freeze_small();
	pid = evict_in_child(fd, 4 * MiB);
	/* Frozen: the writes wait for the thaw, so the EVICT cannot finish. */
	status = wait_child(pid, 1500);
	if (status != -1)
		fail_msg("EVICT to a frozen filesystem returned (status %#x) before the thaw",
			 status);
	assert_int_equal(fstat(file, &st), 0);
	if (st.st_size > KVMM_STORE_HEADER_BYTES)
		fail_msg("the frozen file grew to %lld bytes", (long long)st.st_size);
	/* A fatal signal ends the wait at once. */
	kill(pid, SIGKILL);
	status = wait_child(pid, 2000);
	if (status == -1)
		fail_msg("EVICT waiting on a frozen store ignored SIGKILL for 2 s");
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	thaw_small();
	/* The writes go on after the thaw and settle; nothing was lost. */
	wait_settled(fd);
	assert_true(kf_check(p, 4 * MiB, 0, 11, "after EVICT killed during a freeze"));
	kf_unmap(p, 4 * MiB);
	kf_close(fd);
	kf_close(file);
}

static void a_frozen_store_stalls_neither_another_store_nor_reclaim(void **state)
{
	int slow_file = kf_backing_open(kf_small_dir());
	int file = kf_backing_open(kf_flash_dir());
	int slow = kf_region(16 * MiB, 1 * MiB), fd = kf_region(128 * MiB, 1 * MiB);
	uint8_t *sp = kf_map(slow, 0, 16 * MiB), *p = kf_map(fd, 0, 128 * MiB);
	double t0;
	pid_t pid;

	(void)state;
	/*
	 * Blocks of files earlier tests removed (the last reference may go on
	 * a kernel worker) come back at a journal commit: wait for them.
	 */
	for (int i = 0; i < 100; i++) {
		struct statvfs vfs;

		syncfs(slow_file);
		if (!fstatvfs(slow_file, &vfs) && vfs.f_bavail * vfs.f_bsize >= 24 * MiB)
			break;
		kf_msleep(100);
	}
	assert_int_equal(kf_set_backing(slow, slow_file), 0);
	assert_int_equal(kf_set_backing(fd, file), 0);
	kf_fill(sp, 16 * MiB, 0, 21);
	freeze_small();
	/* A caller stuck on the frozen store... */
	pid = evict_in_child(slow, 16 * MiB);
	kf_msleep(300);
	/* ...does not hold up EVICT on a healthy store. */
	t0 = kf_now();
	kf_fill(p, 8 * MiB, 0, 22);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 8 * MiB), 0);
	if (kf_now() - t0 > 10)
		fail_msg("EVICT on a healthy store took %.1f s while another was frozen",
			 kf_now() - t0);
	/* Nor reclaim: a pool of 48 MiB, 128 MiB written through the mapping. */
	kf_sysfs_set("pool_limit_bytes", 48 * MiB);
	t0 = kf_now();
	kf_fill(p, 128 * MiB, 0, 23);
	if (kf_now() - t0 > 60)
		fail_msg("writing 128 MiB through reclaim took %.1f s beside a frozen store",
			 kf_now() - t0);
	assert_true(kf_check(p, 128 * MiB, 0, 23, "after reclaim beside a frozen store"));
	kill(pid, SIGKILL);
	assert_true(wait_child(pid, 2000) != -1);
	thaw_small();
	wait_settled(slow);
	assert_true(kf_check(sp, 16 * MiB, 0, 21, "the frozen store's region after the thaw"));
	kf_unmap(sp, 16 * MiB);
	kf_unmap(p, 128 * MiB);
	kf_close(slow);
	kf_close(fd);
	kf_close(slow_file);
	kf_close(file);
}

/*
 * Hundreds of writes stuck on one frozen store hold only a few of kvmm's
 * I/O workers (KVMM_STORE_WORKERS), not all of them: an EVICT to another
 * store still finishes.
 */
static void hundreds_of_writes_stuck_on_a_frozen_store_leave_workers_for_others(void **state)
{
	int slow_file = kf_backing_open(kf_small_dir());
	int file = kf_backing_open(kf_flash_dir());
	int slow = kf_region(36 * MiB, 64 * KiB), fd = kf_region(8 * MiB, 64 * KiB);
	uint8_t *sp = kf_map(slow, 0, 36 * MiB), *p = kf_map(fd, 0, 8 * MiB);
	pid_t pid, healthy;
	int status;

	(void)state;
	for (int i = 0; i < 100; i++) {
		struct statvfs vfs;

		syncfs(slow_file);
		if (!fstatvfs(slow_file, &vfs) && vfs.f_bavail * vfs.f_bsize >= 44 * MiB)
			break;
		kf_msleep(100);
	}
	assert_int_equal(kf_set_backing(slow, slow_file), 0);
	assert_int_equal(kf_set_backing(fd, file), 0);
	/* Slots and file size first, so the frozen EVICT needs no growth. */
	kf_fill(sp, 36 * MiB, 0, 31);
	assert_int_equal(kt_range_ioctl(slow, KVMM_IOC_EVICT, 0, 36 * MiB), 0);
	kf_fill(sp, 36 * MiB, 0, 32);
	freeze_small();
	/* 576 chunk writes (more than the workqueue's max_active) wait... */
	pid = evict_in_child(slow, 36 * MiB);
	kf_msleep(500);
	/* ...and 128 to a healthy store do not wait behind them. */
	kf_fill(p, 8 * MiB, 0, 33);
	healthy = evict_in_child(fd, 8 * MiB);
	status = wait_child(healthy, 10000);
	if (status == -1) {
		thaw_small();
		wait_child(healthy, 30000);
		kill(pid, SIGKILL);
		wait_child(pid, 30000);
		fail_msg("EVICT of 8 MiB to a healthy store did not finish in 10 s while "
			 "576 writes waited on a frozen store");
	}
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_true(kf_check(p, 8 * MiB, 0, 33, "the healthy store's region"));
	kill(pid, SIGKILL);
	assert_true(wait_child(pid, 2000) != -1);
	thaw_small();
	wait_settled(slow);
	assert_true(kf_check(sp, 36 * MiB, 0, 32, "the frozen store's region after the thaw"));
	kf_unmap(sp, 36 * MiB);
	kf_unmap(p, 8 * MiB);
	kf_close(slow);
	kf_close(fd);
	kf_close(slow_file);
	kf_close(file);
}

/*
 * A store grows one fallocate at a time: 600 callers (more than the I/O
 * workqueue's max_active) that need room on a frozen store wait for one
 * growth, which holds one worker, and an EVICT to another store still
 * finishes.
 */
static void callers_needing_room_on_a_frozen_store_share_one_growth(void **state)
{
	enum { CALLERS = 600 };
	int slow_file = kf_backing_open(kf_small_dir());
	int file = kf_backing_open(kf_flash_dir());
	int fd = kf_region(8 * MiB, 64 * KiB);
	uint8_t *p = kf_map(fd, 0, 8 * MiB);
	static int slow[CALLERS];
	static pid_t kids[CALLERS];
	pid_t healthy;
	int status;

	(void)state;
	assert_int_equal(kf_set_backing(fd, file), 0);
	for (int i = 0; i < CALLERS; i++) {
		uint8_t *q;

		slow[i] = kf_region(64 * KiB, 64 * KiB);
		assert_int_equal(kf_set_backing(slow[i], slow_file), 0);
		q = kf_map(slow[i], 0, 64 * KiB);
		kf_fill(q, 64 * KiB, 0, 40 + i);
		kf_unmap(q, 64 * KiB);
	}
	freeze_small();
	/* Each EVICT needs the empty file to grow, which waits for the thaw. */
	for (int i = 0; i < CALLERS; i++)
		kids[i] = evict_in_child(slow[i], 64 * KiB);
	kf_msleep(1000);
	kf_fill(p, 8 * MiB, 0, 34);
	healthy = evict_in_child(fd, 8 * MiB);
	status = wait_child(healthy, 10000);
	for (int i = 0; i < CALLERS; i++)
		kill(kids[i], SIGKILL);
	thaw_small();
	for (int i = 0; i < CALLERS; i++)
		assert_true(wait_child(kids[i], 5000) != -1);
	if (status == -1) {
		wait_child(healthy, 30000);
		fail_msg("EVICT of 8 MiB to a healthy store did not finish in 10 s while "
			 "%d callers waited for a frozen store to grow",
			 CALLERS);
	}
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_true(kf_check(p, 8 * MiB, 0, 34, "the healthy store's region"));
	for (int i = 0; i < CALLERS; i++) {
		uint8_t *q = kf_map(slow[i], 0, 64 * KiB);

		assert_true(kf_check(q, 64 * KiB, 0, 40 + i, "a frozen store's region"));
		kf_unmap(q, 64 * KiB);
		kf_close(slow[i]);
	}
	kf_unmap(p, 8 * MiB);
	kf_close(fd);
	kf_close(slow_file);
	kf_close(file);
}

static void store_growth_honours_the_setters_rlimit_fsize_also_in_reclaim(void **state)
{
	int fd = kf_region(64 * MiB, 1 * MiB), file, status;
	struct rlimit lim = {8 * MiB, 8 * MiB};
	uint8_t *p = kf_map(fd, 0, 64 * MiB);
	struct stat st;
	pid_t pid;

	(void)state;
	/* The store is set by a process limited to 8 MiB files. */
	file = kf_backing_open(kf_flash_dir());
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		signal(SIGXFSZ, SIG_IGN);
		if (setrlimit(RLIMIT_FSIZE, &lim))
			_exit(100);
		_exit(-kf_set_backing(fd, file) & 0xff);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* Reclaim (a kernel worker) moves chunks out under a 24 MiB pool. */
	kf_sysfs_set("pool_limit_bytes", 24 * MiB);
	kf_fill(p, 20 * MiB, 0, 31);
	kf_fill(p + 20 * MiB, 4 * MiB, 20 * MiB, 31);
	assert_int_equal(fstat(file, &st), 0);
	if (st.st_size > (off_t)(8 * MiB))
		fail_msg("the store grew to %lld bytes past its setter's RLIMIT_FSIZE of 8 MiB",
			 (long long)st.st_size);
	/* EVICT past the limit fails like a full store and keeps the data. */
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 24 * MiB), -ENOSPC);
	assert_int_equal(fstat(file, &st), 0);
	assert_true(st.st_size <= (off_t)(8 * MiB));
	assert_true(kf_check(p, 24 * MiB, 0, 31, "after EVICT past RLIMIT_FSIZE"));
	kf_unmap(p, 64 * MiB);
	kf_close(fd);
	kf_close(file);
}

static void evict_writes_are_seen_by_inotify(void **state)
{
	int fd = kf_region(2 * MiB, 1 * MiB), file, in, wd;
	char path[256], buf[4096];
	uint8_t *p = kf_map(fd, 0, 2 * MiB);
	int modified = 0;
	ssize_t n;

	(void)state;
	snprintf(path, sizeof(path), "%s/kvmm-inotify-%d", kf_flash_dir(), (int)getpid());
	file = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(file >= 0);
	kf_track(file);
	in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	assert_true(in >= 0);
	kf_track(in);
	wd = inotify_add_watch(in, path, IN_MODIFY);
	assert_true(wd >= 0);
	unlink(path);
	assert_int_equal(kf_set_backing(fd, file), 0);
	/* A first round grows the file (fallocate reports that itself)... */
	kf_fill(p, 2 * MiB, 0, 40);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 2 * MiB), 0);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_DISCARD, 0, 2 * MiB), 0);
	while (read(in, buf, sizeof(buf)) > 0)
		;
	/* ...the second reuses its slots: only the writes can be reported. */
	kf_fill(p, 2 * MiB, 0, 41);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 2 * MiB), 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		for (char *q = buf; q < buf + n;) {
			struct inotify_event *e = (struct inotify_event *)q;

			modified += !!(e->mask & IN_MODIFY);
			q += sizeof(*e) + e->len;
		}
	if (!modified)
		fail_msg("EVICT wrote the store and inotify saw no IN_MODIFY");
	kf_unmap(p, 2 * MiB);
	kf_close(in);
	kf_close(fd);
	kf_close(file);
}

static long majflt(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_majflt;
}

static void a_fault_that_reads_from_flash_is_a_major_fault(void **state)
{
	int file, fd = kf_region_backed(4 * MiB, 1 * MiB, &file);
	volatile uint8_t *p = kf_map(fd, 0, 4 * MiB);
	long before;

	(void)state;
	kf_fill((void *)p, 4 * MiB, 0, 51);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 4 * MiB), 0);
	before = majflt();
	for (uint64_t off = 0; off < 4 * MiB; off += 1 * MiB)
		(void)p[off];
	if (majflt() - before < 4)
		fail_msg("4 chunks read back from flash by faults: %ld major faults",
			 majflt() - before);
	assert_true(kf_check((void *)p, 4 * MiB, 0, 51, "after the faults"));
	kf_unmap((void *)p, 4 * MiB);
	kf_close(fd);
	kf_close(file);
}

struct toucher {
	uint8_t *p;
	uint64_t len;
	uint32_t seed;
};

static void *touch_thread(void *arg)
{
	struct toucher *t = arg;

	kf_fill(t->p, t->len, 0, t->seed);
	return NULL;
}

static void faults_on_different_chunks_of_one_region_run_side_by_side(void **state)
{
	int fd = kf_region(256 * MiB, 2 * MiB);
	uint8_t *p = kf_map(fd, 0, 256 * MiB);
	struct toucher t[2] = {{p, 128 * MiB, 61}, {p + 128 * MiB, 128 * MiB, 62}};
	pthread_t th[2];

	(void)state;
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, touch_thread, &t[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	/* Each thread's half holds its own pattern, zero-filled chunks first. */
	assert_true(kf_check(p, 128 * MiB, 0, 61, "first half"));
	assert_true(kf_check(p + 128 * MiB, 128 * MiB, 0, 62, "second half"));
	assert_int_equal(kf_stat(fd).zero_fills, 128);
	kf_unmap(p, 256 * MiB);
	kf_close(fd);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(
		evict_to_a_frozen_store_waits_for_the_thaw_and_dies_on_sigkill, teardown),
	    cmocka_unit_test_teardown(a_frozen_store_stalls_neither_another_store_nor_reclaim,
				      teardown),
	    cmocka_unit_test_teardown(
		hundreds_of_writes_stuck_on_a_frozen_store_leave_workers_for_others, teardown),
	    cmocka_unit_test_teardown(callers_needing_room_on_a_frozen_store_share_one_growth,
				      teardown),
	    cmocka_unit_test_teardown(store_growth_honours_the_setters_rlimit_fsize_also_in_reclaim,
				      teardown),
	    cmocka_unit_test_teardown(evict_writes_are_seen_by_inotify, teardown),
	    cmocka_unit_test_teardown(a_fault_that_reads_from_flash_is_a_major_fault, teardown),
	    cmocka_unit_test_teardown(faults_on_different_chunks_of_one_region_run_side_by_side,
				      teardown),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests(tests, kf_setup, NULL);
}
