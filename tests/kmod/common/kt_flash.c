#include "kt_flash.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *kf_flash_dir(void)
{
	const char *d = getenv("KVMM_FLASH_DIR");

	return d && *d ? d : "/mnt/flash";
}

const char *kf_small_dir(void)
{
	const char *d = getenv("KVMM_SMALL_DIR");

	return d && *d ? d : "/mnt/small";
}

#define MAX_TRACKED 64
static int tracked_fds[MAX_TRACKED];
static int nr_fds;
static struct {
	void *p;
	uint64_t len;
} tracked_maps[MAX_TRACKED];
static int nr_maps;

int kf_track(int fd)
{
	if (fd >= 0 && nr_fds < MAX_TRACKED)
		tracked_fds[nr_fds++] = fd;
	return fd;
}

void kf_close(int fd)
{
	for (int i = 0; i < nr_fds; i++) {
		if (tracked_fds[i] == fd) {
			tracked_fds[i] = tracked_fds[--nr_fds];
			break;
		}
	}
	close(fd);
}

void *kf_map(int fd, uint64_t off, uint64_t len)
{
	void *p = kt_map(fd, off, len);

	if (nr_maps < MAX_TRACKED) {
		tracked_maps[nr_maps].p = p;
		tracked_maps[nr_maps++].len = len;
	}
	return p;
}

void kf_unmap(void *p, uint64_t len)
{
	for (int i = 0; i < nr_maps; i++) {
		if (tracked_maps[i].p == p) {
			tracked_maps[i] = tracked_maps[--nr_maps];
			break;
		}
	}
	munmap(p, len);
}

int kf_region(uint64_t size, uint32_t chunk)
{
	return kf_track(kt_region(size, chunk));
}

/* Give back what a failed test left behind. */
static void kf_release_tracked(void)
{
	while (nr_maps > 0) {
		nr_maps--;
		munmap(tracked_maps[nr_maps].p, tracked_maps[nr_maps].len);
	}
	while (nr_fds > 0)
		close(tracked_fds[--nr_fds]);
}

int kf_backing_open(const char *dir)
{
	static unsigned int seq;
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/kvmm-test-%d-%u", dir, (int)getpid(), seq++);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		fail_msg("create backing file %s: %s", path, strerror(errno));
	unlink(path);
	return kf_track(fd);
}

int kf_set_backing(int region, int fd)
{
	struct kvmm_backing b = {.fd = fd};

	return ioctl(region, KVMM_IOC_SET_BACKING, &b) ? -errno : 0;
}

int kf_region_backed(uint64_t size, uint32_t chunk, int *backing)
{
	int fd = kf_region(size, chunk), err;

	*backing = kf_backing_open(kf_flash_dir());
	err = kf_set_backing(fd, *backing);
	if (err)
		fail_msg("SET_BACKING on a fresh file in %s: expected 0, saw %s", kf_flash_dir(),
			 strerror(-err));
	return fd;
}

void kf_query(int fd, uint64_t first, uint64_t nr, uint8_t *states)
{
	struct kvmm_query q = {.first_chunk = first, .nr_chunks = nr, .states = (uintptr_t)states};

	if (ioctl(fd, KVMM_IOC_QUERY, &q))
		fail_msg("QUERY chunks %llu+%llu: %s", (unsigned long long)first,
			 (unsigned long long)nr, strerror(errno));
}

uint8_t kf_state(int fd, uint64_t chunk)
{
	uint8_t s;

	kf_query(fd, chunk, 1, &s);
	return s;
}

void kf_expect_states(int fd, uint64_t first, uint64_t nr, uint8_t want, const char *when)
{
	uint8_t *s = malloc(nr);

	assert_non_null(s);
	kf_query(fd, first, nr, s);
	for (uint64_t i = 0; i < nr; i++) {
		if (s[i] != want) {
			uint8_t seen = s[i];

			free(s);
			fail_msg("%s: chunk %llu: expected state 0x%02x, saw 0x%02x", when,
				 (unsigned long long)(first + i), want, seen);
		}
	}
	free(s);
}

struct kvmm_region_stat kf_stat(int fd)
{
	struct kvmm_region_stat st;
	int err = kt_stat(fd, &st);

	if (err)
		fail_msg("STAT: %s", strerror(-err));
	return st;
}

uint64_t kf_word(uint64_t pos, uint32_t seed)
{
	uint64_t x = pos + ((uint64_t)seed << 40) + 0x9e3779b97f4a7c15ULL;

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

void kf_fill(void *p, uint64_t len, uint64_t base, uint32_t seed)
{
	uint64_t *w = p;

	for (uint64_t i = 0; i < len / 8; i++)
		w[i] = kf_word(base + i * 8, seed);
}

int kf_check(const void *p, uint64_t len, uint64_t base, uint32_t seed, const char *what)
{
	const uint64_t *w = p;

	for (uint64_t i = 0; i < len / 8; i++) {
		uint64_t want = kf_word(base + i * 8, seed);

		if (w[i] != want) {
			print_error("%s: bytes at offset %llu: expected 0x%016llx, saw 0x%016llx\n",
				    what, (unsigned long long)(base + i * 8),
				    (unsigned long long)want, (unsigned long long)w[i]);
			return 0;
		}
	}
	return 1;
}

void kf_sysfs_str(const char *name, char *buf, size_t size)
{
	char path[256];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), KVMM_SYSFS "/%s", name);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		fail_msg("open %s: %s", path, strerror(errno));
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		fail_msg("read %s: %s", path, strerror(errno));
	buf[n] = 0;
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = 0;
}

void kf_sysfs_set(const char *name, uint64_t val)
{
	char s[32];
	int err;

	snprintf(s, sizeof(s), "%llu", (unsigned long long)val);
	err = kt_sysfs_write(name, s);
	if (err)
		fail_msg("write %s to %s: %s", s, name, strerror(-err));
}

/* kvmm.ko's test hooks in debugfs; 0 or -errno (-ENOENT without debugfs). */
int kf_debugfs_set(const char *name, uint64_t val)
{
	char path[256], s[32];
	int fd, n, err = 0;

	snprintf(path, sizeof(path), KVMM_DEBUGFS "/%s", name);
	n = snprintf(s, sizeof(s), "%llu", (unsigned long long)val);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, s, n) != n)
		err = -errno;
	close(fd);
	return err;
}

uint64_t kf_debugfs_u64(const char *name)
{
	char path[256], s[32] = "";
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), KVMM_DEBUGFS "/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fail_msg("open %s: %s", path, strerror(errno));
	n = read(fd, s, sizeof(s) - 1);
	close(fd);
	if (n <= 0)
		fail_msg("read %s: %s", path, n ? strerror(errno) : "empty");
	return strtoull(s, NULL, 0);
}

uint64_t kf_sysfs_wait(const char *name, uint64_t want, int ms)
{
	uint64_t v = kt_sysfs_u64(name);

	for (int i = 0; v != want && i < ms / 10; i++) {
		kf_msleep(10);
		v = kt_sysfs_u64(name);
	}
	return v;
}

/* Knobs a flash test may change, saved before the first test. */
static const char *const knob_names[] = {
    "pool_limit_bytes",
    "pool_high_wmark_pct",
    "pool_low_wmark_pct",
    "refault_window_ms",
};
#define NR_KNOBS (sizeof(knob_names) / sizeof(knob_names[0]))
static char knob_vals[NR_KNOBS][64];
static int knobs_saved;

void kf_knobs_save(void)
{
	for (unsigned int i = 0; i < NR_KNOBS; i++) {
		char path[256];

		snprintf(path, sizeof(path), KVMM_SYSFS "/%s", knob_names[i]);
		knob_vals[i][0] = 0;
		if (!access(path, R_OK))
			kf_sysfs_str(knob_names[i], knob_vals[i], sizeof(knob_vals[i]));
	}
	knobs_saved = 1;
}

void kf_knobs_restore(void)
{
	kf_debugfs_set("fail_ios", 0);
	kf_debugfs_set("fail_skip", 0);
	kf_debugfs_set("fail_merged", 0);
	kf_debugfs_set("force_buffered", 0);
	if (!access(KVMM_SYSFS "/default_backing", W_OK))
		kt_sysfs_write("default_backing", "none");
	if (!knobs_saved)
		return;
	/* Low before high and high before low can each be refused; try twice. */
	for (int pass = 0; pass < 2; pass++)
		for (unsigned int i = 0; i < NR_KNOBS; i++)
			if (knob_vals[i][0])
				kt_sysfs_write(knob_names[i], knob_vals[i]);
}

int kf_setup(void **state)
{
	(void)state;
	kf_knobs_save();
	return 0;
}

int kf_teardown(void **state)
{
	(void)state;
	kf_release_tracked();
	kf_knobs_restore();
	return 0;
}

int kf_touch_in_child(volatile uint8_t *p, uint64_t len, int write)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		/* cmocka catches SIGBUS and SIGSEGV in the test process; not here. */
		signal(SIGBUS, SIG_DFL);
		signal(SIGSEGV, SIG_DFL);
		for (uint64_t off = 0; off < len; off += 4096) {
			if (write)
				p[off] = p[off];
			else
				(void)p[off];
		}
		_exit(0);
	}
	if (waitpid(pid, &status, 0) != pid)
		fail_msg("waitpid: %s", strerror(errno));
	if (WIFSIGNALED(status))
		return WTERMSIG(status);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

double kf_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void kf_msleep(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}
