/*
 * kvmm under real memory pressure: stress-ng's vm, mmap and page-fault
 * stressors run beside a region three times the DRAM pool, which is cycled
 * through touch, EVICT, PREFETCH and ENSURE while the reclaim worker and the
 * shrinker (system reclaim, and drop_caches) move it to flash and back.
 * Afterwards every byte must be what was last written.
 *
 * stress-ng must be in the VM (the harness copies it with --extra); without
 * it the test is skipped. KVMM_STRESS_SECONDS sets the duration (default 15).
 */
#include "common/kt_flash.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define POOL   (32 * MiB)
#define REGION (3 * POOL)
#define CHUNK  (256 * KiB)
#define NCHUNK (REGION / CHUNK)

static const char *stress_ng_path(void)
{
	static const char *const paths[] = {"/usr/bin/stress-ng", "/bin/stress-ng",
					    "/usr/local/bin/stress-ng"};

	for (unsigned int i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (!access(paths[i], X_OK))
			return paths[i];
	return NULL;
}

/* MemAvailable in MiB (a debug kernel leaves less than the stock one). */
static unsigned long mem_available_mib(void)
{
	char line[128];
	unsigned long kib = 0;
	FILE *f = fopen("/proc/meminfo", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %lu kB", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib / 1024;
}

/*
 * Two vm workers of a sixth of the available memory each, an mmap worker of
 * a twelfth, and a page-fault worker: pressure that makes the kernel reclaim
 * (and call kvmm's shrinker) without running into the OOM killer.
 */
static pid_t start_stress_ng(const char *path, int seconds)
{
	unsigned long avail = mem_available_mib();
	char timeout[32], vm_bytes[32], mmap_bytes[32];
	pid_t pid;

	if (!avail)
		avail = 1024;
	snprintf(timeout, sizeof(timeout), "%ds", seconds);
	snprintf(vm_bytes, sizeof(vm_bytes), "%lum", avail / 6);
	snprintf(mmap_bytes, sizeof(mmap_bytes), "%lum", avail / 12);
	print_message("# stress-ng: 2 vm workers of %s, mmap of %s, page faults, for %s\n",
		      vm_bytes, mmap_bytes, timeout);
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		/* Its chatter stays out of the TAP stream. */
		if (null >= 0) {
			dup2(null, STDOUT_FILENO);
			dup2(null, STDERR_FILENO);
		}
		execl(path, "stress-ng", "--vm", "2", "--vm-bytes", vm_bytes, "--mmap", "1",
		      "--mmap-bytes", mmap_bytes, "--fault", "1", "--oom-avoid", "--timeout",
		      timeout, "--temp-path", "/tmp", (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void write_sysctl(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY);

	if (fd >= 0) {
		if (write(fd, val, strlen(val)) < 0)
			print_message("# %s: %s\n", path, strerror(errno));
		close(fd);
	}
}

static sigjmp_buf bus_jb;

static void on_sigbus(int sig)
{
	(void)sig;
	siglongjmp(bus_jb, 1);
}

/* Fill chunk @c with the pattern of @gen through the mapping; -1 on SIGBUS. */
static int write_chunk(uint8_t *map, unsigned int c, uint32_t gen)
{
	if (sigsetjmp(bus_jb, 1))
		return -1;
	kf_fill(map + (uint64_t)c * CHUNK, CHUNK, (uint64_t)c * CHUNK, gen);
	return 0;
}

/* 1 if chunk @c holds the pattern of @gen, 0 if not, -1 on SIGBUS. */
static int check_chunk(uint8_t *map, unsigned int c, uint32_t gen)
{
	if (sigsetjmp(bus_jb, 1))
		return -1;
	return kf_check(map + (uint64_t)c * CHUNK, CHUNK, (uint64_t)c * CHUNK, gen, "after stress");
}

static int range_ioctl(int fd, unsigned long cmd, uint64_t first, uint64_t n)
{
	struct kvmm_range r = {.offset = first * CHUNK, .length = n * CHUNK};

	return ioctl(fd, cmd, &r) ? -errno : 0;
}

static void region_survives_stress_ng(void **state)
{
	const char *sng = stress_ng_path();
	const char *env = getenv("KVMM_STRESS_SECONDS");
	int seconds = env && atoi(env) > 0 ? atoi(env) : 15;
	uint64_t scans0, runs0, evict0, rounds = 0, writes = 0, evicts = 0, prefetches = 0;
	uint32_t gen[NCHUNK];
	struct sigaction sa = {0}, old;
	int backing, fd, status, bad = 0, sigbus_chunk = -1;
	uint8_t *map;
	double end;
	pid_t pid;

	(void)state;
	if (!sng) {
		print_message(
		    "skip: no stress-ng in the VM (apt-get install stress-ng: the harness "
		    "copies the host's /usr/bin/stress-ng, or KMOD_STRESS_NG=PATH)\n");
		skip();
	}
	kf_sysfs_set("pool_limit_bytes", POOL);
	kf_sysfs_set("pool_low_wmark_pct", 50);
	kf_sysfs_set("pool_high_wmark_pct", 80);
	fd = kf_region_backed(REGION, CHUNK, &backing);
	map = kf_map(fd, 0, REGION);
	scans0 = kt_sysfs_u64("stats/shrinker_scans");
	runs0 = kt_sysfs_u64("stats/reclaim_runs");
	evict0 = kt_sysfs_u64("stats/evictions");

	/* Every chunk written once: the region is three pools, so most go to flash. */
	for (unsigned int c = 0; c < NCHUNK; c++) {
		gen[c] = c + 1;
		kf_fill(map + (uint64_t)c * CHUNK, CHUNK, (uint64_t)c * CHUNK, gen[c]);
	}

	sa.sa_handler = on_sigbus;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &old);
	pid = start_stress_ng(sng, seconds);
	assert_true(pid > 0);
	end = kf_now() + seconds;
	srand(seconds);
	while (kf_now() < end) {
		unsigned int c = rand() % NCHUNK, n = 1 + rand() % 8, op = rand() % 10;
		int err;

		if (c + n > NCHUNK)
			n = NCHUNK - c;
		rounds++;
		if (op < 4) {
			/* Rewrite chunks through the mapping: faults back what is on flash. */
			for (unsigned int k = c; k < c + n; k++) {
				gen[k] += NCHUNK;
				if (write_chunk(map, k, gen[k])) {
					sigbus_chunk = k;
					break;
				}
				writes++;
			}
			if (sigbus_chunk >= 0)
				break;
		} else if (op < 6) {
			err = range_ioctl(fd, KVMM_IOC_EVICT, c, n);
			if (err && err != -EBUSY)
				fail_msg("EVICT of chunks %u+%u: %s", c, n, strerror(-err));
			evicts++;
		} else if (op < 8) {
			err = range_ioctl(fd, KVMM_IOC_PREFETCH, c, n);
			if (err && err != -ENOMEM)
				fail_msg("PREFETCH of chunks %u+%u: %s", c, n, strerror(-err));
			prefetches++;
		} else if (op < 9) {
			err = range_ioctl(fd, KVMM_IOC_ENSURE, c, n);
			if (err && err != -ENOMEM)
				fail_msg("ENSURE of chunks %u+%u: %s", c, n, strerror(-err));
		} else {
			/* System reclaim of slab caches calls every shrinker, kvmm's too. */
			write_sysctl("/proc/sys/vm/drop_caches", "2");
		}
	}
	if (sigbus_chunk >= 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		sigaction(SIGBUS, &old, NULL);
		fail_msg("SIGBUS writing chunk %d: the pool could not make room", sigbus_chunk);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	print_message("# stress-ng exited with status %d; %llu rounds: %llu chunk writes, "
		      "%llu evicts, %llu prefetches\n",
		      WIFEXITED(status) ? WEXITSTATUS(status) : -1, (unsigned long long)rounds,
		      (unsigned long long)writes, (unsigned long long)evicts,
		      (unsigned long long)prefetches);
	assert_int_equal(range_ioctl(fd, KVMM_IOC_WAIT, 0, NCHUNK), 0);

	/* Every byte, read through the mapping (faulting flash chunks back). */
	for (unsigned int c = 0; c < NCHUNK && bad <= 3; c++) {
		int ok = check_chunk(map, c, gen[c]);

		if (ok < 0) {
			sigaction(SIGBUS, &old, NULL);
			fail_msg("SIGBUS reading chunk %u back", c);
		}
		bad += !ok;
	}
	sigaction(SIGBUS, &old, NULL);
	assert_int_equal(bad, 0);
	print_message("# reclaim runs %llu, shrinker scans %llu, evictions %llu\n",
		      (unsigned long long)(kt_sysfs_u64("stats/reclaim_runs") - runs0),
		      (unsigned long long)(kt_sysfs_u64("stats/shrinker_scans") - scans0),
		      (unsigned long long)(kt_sysfs_u64("stats/evictions") - evict0));
	assert_true(kt_sysfs_u64("stats/reclaim_runs") > runs0);
	assert_true(kt_sysfs_u64("stats/shrinker_scans") > scans0);
	assert_true(kt_sysfs_u64("stats/evictions") > evict0);
	kf_unmap(map, REGION);
	kf_close(fd);
	kf_close(backing);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(region_survives_stress_ng, kf_setup, kf_teardown),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
