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

/*
 * Wait (up to 10 s) until the filesystem of @fd has @bytes free: blocks of
 * files earlier tests removed (the last reference may go on a kernel
 * worker) come back at a journal commit.
 */
static void wait_free(int fd, uint64_t bytes)
{
	for (int i = 0; i < 100; i++) {
		struct statvfs vfs;

		syncfs(fd);
		if (!fstatvfs(fd, &vfs) && (uint64_t)vfs.f_bavail * vfs.f_bsize >= bytes)
			return;
		kf_msleep(100);
	}
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
	wait_free(slow_file, 24 * MiB);
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
	wait_free(slow_file, 44 * MiB);
	assert_int_equal(kf_set_backing(slow, slow_file), 0);
	assert_int_equal(kf_set_backing(fd, file), 0);
	/*
	 * Slots and file size first, so the frozen EVICT needs no growth:
	 * odd chunks first, then even ones, so that no two neighbours hold
	 * adjacent slots and every write below is an I/O of its own (kvmm
	 * merges writes to adjacent slots).
	 */
	kf_fill(sp, 36 * MiB, 0, 31);
	for (int odd = 1; odd >= 0; odd--)
		for (uint64_t c = (uint64_t)odd; c < 36 * MiB / (64 * KiB); c += 2)
			assert_int_equal(
			    kt_range_ioctl(slow, KVMM_IOC_EVICT, c * 64 * KiB, 64 * KiB), 0);
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

/* Shared with the child of the next test: how far it got. */
struct mmap_probe {
	volatile int stage;
	volatile double mmap_secs;
	volatile uint32_t sum;
};

static int lock_fd;
static volatile uint8_t *lock_p;

static void *evict_first_chunk(void *arg)
{
	(void)arg;
	kt_range_ioctl(lock_fd, KVMM_IOC_EVICT, 0, 1 * MiB);
	return NULL;
}

static void *touch_chunk(void *arg)
{
	uint64_t off = (uint64_t)(uintptr_t)arg;
	uint32_t sum = 0;

	for (uint64_t i = 0; i < 1 * MiB; i += 4096)
		sum += lock_p[off + i];
	return (void *)(uintptr_t)sum;
}

/*
 * A fault waiting for a chunk's I/O holds no mmap_lock, also after another
 * chunk's I/O woke it and the core retried it: meanwhile mmap() in the same
 * process goes on. (Chunk 0's write waits for the thaw of its frozen store;
 * chunk 1's read-back finishes at once.)
 */
static void a_fault_waiting_for_a_stuck_write_holds_no_mmap_lock(void **state)
{
	int file = kf_backing_open(kf_small_dir());
	int fd = kf_region(4 * MiB, 1 * MiB);
	uint8_t *p = kf_map(fd, 0, 4 * MiB);
	struct mmap_probe *pr =
	    mmap(NULL, sizeof(*pr), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t pid;
	int status = -1;

	(void)state;
	assert_true(pr != MAP_FAILED);
	assert_int_equal(kf_set_backing(fd, file), 0);
	kf_fill(p, 4 * MiB, 0, 51);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, 1 * MiB, 1 * MiB), 0);
	freeze_small();
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		pthread_t ev, a, c;
		double t0;
		void *rs;

		lock_fd = fd;
		lock_p = p;
		pthread_create(&ev, NULL, evict_first_chunk, NULL);
		kf_msleep(300); /* chunk 0 is WRITING, stuck */
		pthread_create(&a, NULL, touch_chunk, (void *)(uintptr_t)0);
		kf_msleep(300); /* its fault waits for chunk 0 */
		pthread_create(&c, NULL, touch_chunk, (void *)(uintptr_t)(1 * MiB));
		pthread_join(c, &rs); /* chunk 1 read back: the region's I/O moved */
		pr->sum = (uint32_t)(uintptr_t)rs;
		pr->stage = 1;
		kf_msleep(300);
		t0 = kf_now();
		void *q =
		    mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		munmap(q, 4096);
		pr->mmap_secs = kf_now() - t0;
		pr->stage = 2;
		pthread_join(a, NULL);
		pthread_join(ev, NULL);
		_exit(0);
	}
	for (int i = 0; i < 1000 && pr->stage < 2; i++)
		kf_msleep(10);
	int stage = pr->stage;

	thaw_small();
	status = wait_child(pid, 30000);
	if (status == -1) {
		kill(pid, SIGKILL);
		wait_child(pid, 5000);
	}
	if (stage < 1)
		fail_msg(
		    "reading chunk 1 back from a store frozen for writes did not finish in 10 s");
	if (stage < 2)
		fail_msg("mmap() blocked for more than 9 s while a fault of the same process "
			 "waited for a chunk whose write waits for a thaw (the fault holds "
			 "mmap_lock)");
	if (pr->mmap_secs > 2)
		fail_msg("mmap() took %.1f s beside a fault waiting for a stuck write",
			 pr->mmap_secs);
	assert_true(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	wait_settled(fd);
	assert_true(kf_check(p, 4 * MiB, 0, 51, "after the thaw"));
	munmap(pr, sizeof(*pr));
	kf_unmap(p, 4 * MiB);
	kf_close(fd);
	kf_close(file);
}

/* The guest's null_blk with every request taking @ms; -1 (and why) if it cannot be had. */
static int slow_nullb(int ms, char *why, size_t whylen)
{
	char cmd[256];
	int fd = -1;

	if (access("/lib/kvmm-vm/null_blk.ko", R_OK)) {
		snprintf(why, whylen,
			 "no null_blk.ko for this kernel in the guest (its modules "
			 "are not installed; the debug kernel is built without them)");
		return -1;
	}
	system("insmod /lib/kvmm-vm/configfs.ko 2>/dev/null");
	snprintf(cmd, sizeof(cmd),
		 "insmod /lib/kvmm-vm/null_blk.ko nr_devices=1 gb=1 memory_backed=1 "
		 "queue_mode=2 irqmode=2 completion_nsec=%llu",
		 (unsigned long long)ms * 1000000ULL);
	if (system(cmd)) {
		snprintf(why, whylen, "insmod null_blk.ko failed");
		return -1;
	}
	for (int i = 0; i < 200 && fd < 0; i++) {
		fd = open("/dev/nullb0", O_RDWR | O_CLOEXEC);
		if (fd < 0)
			kf_msleep(10);
	}
	if (fd < 0)
		snprintf(why, whylen, "no /dev/nullb0 after loading null_blk: %s", strerror(errno));
	return fd;
}

/*
 * A fault waiting for its chunk's read holds no mmap_lock, also after the
 * read of another chunk of the region finished first and woke it: mmap()
 * in the same process goes on meanwhile. The store is a null_blk device
 * whose every request takes 3 s.
 */
static void a_fault_waiting_for_a_slow_read_holds_no_mmap_lock(void **state)
{
	struct kvmm_store_header h = {.version = KVMM_STORE_VERSION,
				      .header_bytes = KVMM_STORE_HEADER_BYTES};
	static uint8_t hdr[KVMM_STORE_HEADER_BYTES];
	struct mmap_probe *pr;
	char why[256];
	int dev, fd, status;
	uint8_t *p;
	pid_t pid;

	(void)state;
	dev = slow_nullb(3000, why, sizeof(why));
	if (dev < 0) {
		print_message("# SKIP: %s\n", why);
		skip();
	}
	memcpy(h.magic, KVMM_STORE_MAGIC, sizeof(h.magic));
	memcpy(hdr, &h, sizeof(h));
	assert_int_equal(pwrite(dev, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
	assert_int_equal(fsync(dev), 0);
	fd = kf_region(4 * MiB, 1 * MiB);
	p = kf_map(fd, 0, 4 * MiB);
	pr = mmap(NULL, sizeof(*pr), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(pr != MAP_FAILED);
	assert_int_equal(kf_set_backing(fd, dev), 0);
	kf_fill(p, 4 * MiB, 0, 52);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 2 * MiB), 0);

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		pthread_t a, c;
		double t0;
		void *rs, *q;

		lock_p = p;
		/* Chunk 1's read starts first and ends first... */
		pthread_create(&c, NULL, touch_chunk, (void *)(uintptr_t)(1 * MiB));
		kf_msleep(1500);
		/* ...while chunk 0's fault still waits for its own. */
		pthread_create(&a, NULL, touch_chunk, (void *)(uintptr_t)0);
		pthread_join(c, &rs);
		pr->sum = (uint32_t)(uintptr_t)rs;
		pr->stage = 1;
		kf_msleep(300);
		t0 = kf_now();
		q = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		munmap(q, 4096);
		pr->mmap_secs = kf_now() - t0;
		pr->stage = 2;
		pthread_join(a, NULL);
		_exit(0);
	}
	status = wait_child(pid, 60000);
	if (status == -1) {
		kill(pid, SIGKILL);
		wait_child(pid, 5000);
		fail_msg("two faults reading from a device that takes 3 s per request did not end "
			 "in 60 s (stage %d)",
			 pr->stage);
	}
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	print_message("# mmap() beside a fault waiting for a read: %.3f s\n", pr->mmap_secs);
	if (pr->mmap_secs > 0.5)
		fail_msg("mmap() took %.1f s while a fault of the same process waited for its "
			 "chunk's read (the fault held mmap_lock)",
			 pr->mmap_secs);
	assert_true(kf_check(p, 4 * MiB, 0, 52, "after both read-backs"));
	munmap(pr, sizeof(*pr));
	kf_unmap(p, 4 * MiB);
	kf_close(fd);
	close(dev);
	/* The store's last reference may go on a kernel worker. */
	for (int i = 0; i < 100 && system("rmmod null_blk 2>/dev/null"); i++)
		kf_msleep(50);
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
	/* Backwards: a forward scan would read around (those are minor faults). */
	for (uint64_t off = 4 * MiB; off;) {
		off -= 1 * MiB;
		(void)p[off];
	}
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
	    cmocka_unit_test_teardown(a_fault_waiting_for_a_stuck_write_holds_no_mmap_lock,
				      teardown),
	    cmocka_unit_test_teardown(a_fault_waiting_for_a_slow_read_holds_no_mmap_lock, teardown),
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
