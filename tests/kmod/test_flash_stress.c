/*
 * Flash tier under pressure: a region four times the DRAM pool stays
 * byte-exact through random evict / fault / prefetch / write cycles; the
 * reclaim worker holds the pool near its watermarks while four threads
 * read and write the whole region; a process killed in the middle of
 * prefetches and evictions leaks no pool memory, flash slot or region.
 */
#include "common/kt_flash.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define POOL	  (32 * MiB)
#define REGION	  (128 * MiB)
#define CHUNK	  (256 * KiB)
#define NR_CHUNKS (REGION / CHUNK)

static uint64_t rng_state = 0x2545f4914f6cdd1dULL;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Seed the chunk's data was written with; 0 = never written (zeros). */
static uint32_t seeds[NR_CHUNKS];

static int check_chunks(const uint8_t *p, uint64_t first, uint64_t n, const char *what)
{
	for (uint64_t c = first; c < first + n; c++) {
		char w[128];

		snprintf(w, sizeof(w), "%s, chunk %llu", what, (unsigned long long)c);
		if (!seeds[c]) {
			if (!kt_all_zero(p + c * CHUNK, CHUNK)) {
				print_error("%s: expected zeros\n", w);
				return 0;
			}
		} else if (!kf_check(p + c * CHUNK, CHUNK, c * CHUNK, seeds[c], w)) {
			return 0;
		}
	}
	return 1;
}

static void random_data_survives_evict_fault_prefetch_cycles_over_4x_the_pool(void **state)
{
	int file, fd;
	uint8_t *p, *buf = malloc(8 * CHUNK);
	uint64_t reclaim0 = kt_sysfs_u64("stats/reclaim_runs"), max_used = 0;
	uint64_t ops[6] = {0}, enomem = 0;
	struct kvmm_region_stat st;
	uint32_t next_seed = 1;
	const int rounds = 3, ops_per_round = 150;

	(void)state;
	assert_non_null(buf);
	assert_int_equal(kf_sysfs_wait("pool_used_bytes", 0, 2000), 0);
	kf_sysfs_set("pool_limit_bytes", POOL);
	fd = kf_region_backed(REGION, CHUNK, &file);
	p = kf_map(fd, 0, REGION);
	/* Fill all 128 MiB through a 32 MiB pool: reclaim must make room. */
	for (uint64_t c = 0; c < NR_CHUNKS; c++) {
		seeds[c] = next_seed++;
		kf_fill(p + c * CHUNK, CHUNK, c * CHUNK, seeds[c]);
	}
	assert_true(check_chunks(p, 0, NR_CHUNKS, "after the first fill"));
	for (int r = 0; r < rounds; r++) {
		char what[64];

		for (int i = 0; i < ops_per_round; i++) {
			uint64_t n = 1 + rnd() % 8, first = rnd() % (NR_CHUNKS - n + 1);
			uint64_t off = first * CHUNK, len = n * CHUNK, used;
			int op = (int)(rnd() % 6), err;

			ops[op]++;
			snprintf(what, sizeof(what), "round %d op %d (%d)", r, i, op);
			switch (op) {
			case 0: /* EVICT */
				err = kt_range_ioctl(fd, KVMM_IOC_EVICT, off, len);
				if (err)
					fail_msg("%s: EVICT %llu+%llu: %s", what,
						 (unsigned long long)off, (unsigned long long)len,
						 strerror(-err));
				break;
			case 1: /* PREFETCH, waited for half the time, then read */
				err = kt_range_ioctl(fd, KVMM_IOC_PREFETCH, off, len);
				if (err == -ENOMEM)
					enomem++;
				else if (err)
					fail_msg("%s: PREFETCH: %s", what, strerror(-err));
				if (rnd() & 1) {
					err = kt_range_ioctl(fd, KVMM_IOC_WAIT, off, len);
					if (err)
						fail_msg("%s: WAIT: %s", what, strerror(-err));
				}
				assert_true(check_chunks(p, first, n, what));
				break;
			case 2: /* new data through the mapping */
				for (uint64_t c = first; c < first + n; c++) {
					seeds[c] = next_seed++;
					kf_fill(p + c * CHUNK, CHUNK, c * CHUNK, seeds[c]);
				}
				break;
			case 3: /* read through the mapping (fault-back) */
				assert_true(check_chunks(p, first, n, what));
				break;
			case 4: /* pread */
				assert_int_equal(pread(fd, buf, len, off), (ssize_t)len);
				for (uint64_t c = first; c < first + n; c++) {
					const uint8_t *q = buf + (c - first) * CHUNK;

					if (seeds[c]
						? !kf_check(q, CHUNK, c * CHUNK, seeds[c], what)
						: !kt_all_zero(q, CHUNK))
						fail_msg("%s: pread of chunk %llu", what,
							 (unsigned long long)c);
				}
				break;
			case 5: /* pwrite new data */
				for (uint64_t c = first; c < first + n; c++) {
					seeds[c] = next_seed++;
					kf_fill(buf + (c - first) * CHUNK, CHUNK, c * CHUNK,
						seeds[c]);
				}
				assert_int_equal(pwrite(fd, buf, len, off), (ssize_t)len);
				break;
			}
			used = kt_sysfs_u64("pool_used_bytes");
			max_used = used > max_used ? used : max_used;
			if (used > POOL)
				fail_msg("%s: pool_used_bytes %llu above the limit %llu", what,
					 (unsigned long long)used, (unsigned long long)POOL);
		}
		snprintf(what, sizeof(what), "whole region after round %d", r);
		assert_true(check_chunks(p, 0, NR_CHUNKS, what));
	}
	st = kf_stat(fd);
	print_message("# ops evict %llu prefetch %llu write %llu read %llu pread %llu pwrite %llu;"
		      " PREFETCH ENOMEM %llu; evictions %llu clean drops %llu fault-backs %llu"
		      " prefetches %llu refaults %llu; max pool use %llu KiB\n",
		      (unsigned long long)ops[0], (unsigned long long)ops[1],
		      (unsigned long long)ops[2], (unsigned long long)ops[3],
		      (unsigned long long)ops[4], (unsigned long long)ops[5],
		      (unsigned long long)enomem, (unsigned long long)st.evictions,
		      (unsigned long long)st.clean_drops, (unsigned long long)st.fault_backs,
		      (unsigned long long)st.prefetches, (unsigned long long)st.refaults,
		      (unsigned long long)(max_used >> 10));
	if (enomem * 2 > ops[1])
		fail_msg("PREFETCH gave ENOMEM %llu times out of %llu: reclaim does not make room",
			 (unsigned long long)enomem, (unsigned long long)ops[1]);
	assert_true(st.evictions >= NR_CHUNKS - POOL / CHUNK);
	assert_true(st.fault_backs > 0);
	assert_int_equal(st.csum_failures, 0);
	assert_int_equal(st.io_errors, 0);
	assert_int_equal(st.fault_failures, 0);
	assert_true(kt_sysfs_u64("stats/reclaim_runs") > reclaim0);
	kf_unmap(p, REGION);
	kf_close(fd);
	kf_close(file);
	free(buf);
	assert_int_equal(kf_sysfs_wait("pool_used_bytes", 0, 2000), 0);
	assert_int_equal(kf_sysfs_wait("flash_bytes", 0, 2000), 0);
}

/* Four threads, each owning one 8-byte word per page, walk the whole region. */
#define NR_THREADS 4
#define PASSES	   2

struct walker {
	volatile uint64_t *p;
	int id;
	int bad;
};

static atomic_int walkers_running;

static uint64_t walker_word(int id, int pass, uint64_t page)
{
	return kf_word(page * 4096 + (uint64_t)id * 8, 1000 + pass);
}

static void *walk(void *arg)
{
	struct walker *w = arg;
	const uint64_t pages = REGION / 4096;

	for (int pass = 0; pass < PASSES && !w->bad; pass++) {
		/* Each thread starts at its own quarter and wraps around. */
		for (uint64_t i = 0; i < pages; i++) {
			uint64_t page = (i + (uint64_t)w->id * pages / NR_THREADS) % pages;
			volatile uint64_t *word = w->p + page * 512 + w->id;
			uint64_t want = pass ? walker_word(w->id, pass - 1, page)
					     : kf_word(page * 4096 + (uint64_t)w->id * 8, 1);

			if (*word != want) {
				fprintf(stderr,
					"thread %d pass %d page %llu: expected 0x%016llx, "
					"saw 0x%016llx\n",
					w->id, pass, (unsigned long long)page,
					(unsigned long long)want, (unsigned long long)*word);
				w->bad = 1;
				break;
			}
			*word = walker_word(w->id, pass, page);
		}
	}
	atomic_fetch_sub(&walkers_running, 1);
	return NULL;
}

static void reclaim_keeps_the_pool_at_its_watermarks_while_four_threads_write(void **state)
{
	const uint64_t high_pct = 75, low_pct = 50;
	const uint64_t high = POOL * high_pct / 100;
	int file, fd;
	uint64_t *p;
	pthread_t th[NR_THREADS];
	struct walker w[NR_THREADS];
	uint64_t samples = 0, above_high = 0, above_limit = 0, max_used = 0, sum = 0, used;
	uint64_t reclaim0 = kt_sysfs_u64("stats/reclaim_runs");
	struct kvmm_region_stat st;
	double t0;

	(void)state;
	assert_int_equal(kf_sysfs_wait("pool_used_bytes", 0, 2000), 0);
	kf_sysfs_set("pool_limit_bytes", POOL);
	kf_sysfs_set("pool_low_wmark_pct", low_pct);
	kf_sysfs_set("pool_high_wmark_pct", high_pct);
	assert_int_equal(kt_sysfs_u64("pool_high_wmark_pct"), high_pct);
	assert_int_equal(kt_sysfs_u64("pool_low_wmark_pct"), low_pct);
	fd = kf_region_backed(REGION, CHUNK, &file);
	p = kf_map(fd, 0, REGION);
	kf_fill(p, REGION, 0, 1);

	atomic_store(&walkers_running, NR_THREADS);
	for (int i = 0; i < NR_THREADS; i++) {
		w[i] = (struct walker){.p = p, .id = i};
		assert_int_equal(pthread_create(&th[i], NULL, walk, &w[i]), 0);
	}
	t0 = kf_now();
	while (atomic_load(&walkers_running) > 0) {
		used = kt_sysfs_u64("pool_used_bytes");
		samples++;
		sum += used;
		above_high += used > high;
		above_limit += used > POOL;
		max_used = used > max_used ? used : max_used;
		kf_msleep(2);
	}
	for (int i = 0; i < NR_THREADS; i++)
		pthread_join(th[i], NULL);
	st = kf_stat(fd);
	print_message("# %.1f s, %llu samples: mean %llu KiB, max %llu KiB, %llu above the high "
		      "watermark (%llu KiB); reclaim runs %llu, evictions %llu, refaults %llu\n",
		      kf_now() - t0, (unsigned long long)samples,
		      (unsigned long long)(samples ? sum / samples >> 10 : 0),
		      (unsigned long long)(max_used >> 10), (unsigned long long)above_high,
		      (unsigned long long)(high >> 10),
		      (unsigned long long)(kt_sysfs_u64("stats/reclaim_runs") - reclaim0),
		      (unsigned long long)st.evictions, (unsigned long long)st.refaults);
	for (int i = 0; i < NR_THREADS; i++)
		if (w[i].bad)
			fail_msg("thread %d read back a wrong word (printed above)", i);
	if (above_limit)
		fail_msg("pool_used_bytes exceeded pool_limit_bytes in %llu of %llu samples "
			 "(max %llu)",
			 (unsigned long long)above_limit, (unsigned long long)samples,
			 (unsigned long long)max_used);
	/* The worker runs asynchronously: brief excursions above high are allowed, most
	 * samples are at or below it. */
	if (above_high * 4 > samples)
		fail_msg("pool_used_bytes above the high watermark (%llu) in %llu of %llu samples; "
			 "expected at most a quarter",
			 (unsigned long long)high, (unsigned long long)above_high,
			 (unsigned long long)samples);
	/* Quiet again, the worker brings usage below high within a second or two. */
	for (int i = 0; i < 200 && (used = kt_sysfs_u64("pool_used_bytes")) > high; i++)
		kf_msleep(10);
	if (used > high)
		fail_msg(
		    "2 s after the threads stopped: expected pool_used_bytes <= %llu, saw %llu",
		    (unsigned long long)high, (unsigned long long)used);
	assert_true(kt_sysfs_u64("stats/reclaim_runs") > reclaim0);
	assert_int_equal(st.fault_failures, 0);
	/* Every byte: the threads' last words and the original fill elsewhere. */
	for (uint64_t page = 0; page < REGION / 4096; page++) {
		uint64_t *pg = p + page * 512;

		for (int id = 0; id < NR_THREADS; id++)
			if (pg[id] != walker_word(id, PASSES - 1, page))
				fail_msg("page %llu word %d: expected 0x%016llx, saw 0x%016llx",
					 (unsigned long long)page, id,
					 (unsigned long long)walker_word(id, PASSES - 1, page),
					 (unsigned long long)pg[id]);
		if (!kf_check(pg + NR_THREADS, 4096 - NR_THREADS * 8, page * 4096 + NR_THREADS * 8,
			      1, "rest of the page"))
			fail_msg("page %llu: the bytes no thread wrote changed",
				 (unsigned long long)page);
	}
	kf_unmap(p, REGION);
	kf_close(fd);
	kf_close(file);
	assert_int_equal(kf_sysfs_wait("pool_used_bytes", 0, 2000), 0);
}

/* Writes and reads racing evictions of the same chunks: no write is lost. */
struct racer {
	int fd;
	uint64_t size;
	atomic_int stop;
};

static void *evict_loop(void *arg)
{
	struct racer *r = arg;

	while (!atomic_load(&r->stop)) {
		kt_range_ioctl(r->fd, KVMM_IOC_EVICT, 0, r->size);
		kt_range_ioctl(r->fd, KVMM_IOC_PREFETCH, 0, r->size / 2);
	}
	return NULL;
}

#define RACE_CHUNK (64 * KiB)
#define RACE_SIZE  (2 * MiB)
#define RACE_ITERS 3000

/* Word written by iteration i: one of 61 words in chunk i % 32. */
static uint64_t race_word(int i)
{
	return (uint64_t)(i % (RACE_SIZE / RACE_CHUNK)) * (RACE_CHUNK / 8) +
	       (uint64_t)(i % 61) * 64;
}

static void writes_racing_evictions_are_never_lost(void **state)
{
	int file, fd = kf_region_backed(RACE_SIZE, RACE_CHUNK, &file);
	volatile uint64_t *p = kf_map(fd, 0, RACE_SIZE);
	struct racer r = {.fd = fd, .size = RACE_SIZE};
	static uint64_t want[RACE_SIZE / 8];
	int bad = 0;
	uint64_t v = 0, seen = 0;
	pthread_t th;

	(void)state;
	kf_fill((void *)p, RACE_SIZE, 0, 5);
	for (uint64_t w = 0; w < RACE_SIZE / 8; w++)
		want[w] = kf_word(w * 8, 5);
	assert_int_equal(pthread_create(&th, NULL, evict_loop, &r), 0);
	for (int i = 1; i <= RACE_ITERS && !bad; i++) {
		uint64_t word = race_word(i);

		/* Odd iterations store through the mapping, even ones pwrite. */
		if (i & 1) {
			p[word] = (uint64_t)i;
		} else {
			v = (uint64_t)i;
			if (pwrite(fd, &v, 8, word * 8) != 8)
				bad = i;
		}
		want[word] = (uint64_t)i;
		/* Read back both ways, right away. */
		seen = p[word];
		if (seen != (uint64_t)i)
			bad = i;
		else if (pread(fd, &v, 8, word * 8) != 8 || v != (uint64_t)i)
			bad = i, seen = v;
	}
	atomic_store(&r.stop, 1);
	pthread_join(th, NULL);
	if (bad)
		fail_msg("iteration %d: word %llu read back %llu right after being written", bad,
			 (unsigned long long)race_word(bad), (unsigned long long)seen);
	for (uint64_t w = 0; w < RACE_SIZE / 8; w++)
		if (p[w] != want[w])
			fail_msg("word %llu: expected 0x%016llx, saw 0x%016llx",
				 (unsigned long long)w, (unsigned long long)want[w],
				 (unsigned long long)p[w]);
	print_message("# evictions %llu, clean drops %llu, fault-backs %llu, prefetches %llu\n",
		      (unsigned long long)kf_stat(fd).evictions,
		      (unsigned long long)kf_stat(fd).clean_drops,
		      (unsigned long long)kf_stat(fd).fault_backs,
		      (unsigned long long)kf_stat(fd).prefetches);
	assert_true(kf_stat(fd).evictions > 0);
	kf_unmap((void *)p, RACE_SIZE);
	kf_close(fd);
	kf_close(file);
}

/* In the child: keep evicting, prefetching, touching and writing until killed. */
static void __attribute__((noreturn)) churn(int ready)
{
	const uint64_t size = 64 * MiB, chunk = 256 * KiB, nr = size / chunk;
	int dev = open(KVMM_DEVICE_PATH, O_RDWR | O_CLOEXEC);
	int fd = dev < 0 ? -1 : kt_region_create(dev, size, chunk, KVMM_NUMA_LOCAL);
	int file = open(kf_flash_dir(), O_TMPFILE | O_RDWR, 0600);
	volatile uint8_t *p;
	struct kvmm_backing b = {.fd = file};
	uint64_t x = 88172645463325252ULL;

	if (fd < 0 || file < 0 || ioctl(fd, KVMM_IOC_SET_BACKING, &b))
		_exit(2);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		_exit(3);
	for (uint64_t off = 0; off < size; off += 4096)
		p[off] = 1;
	if (write(ready, "r", 1) != 1)
		_exit(4);
	for (;;) {
		uint64_t first, n;
		struct kvmm_range r;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		n = 1 + x % 32;
		first = (x >> 8) % (nr - n + 1);
		r = (struct kvmm_range){.offset = first * chunk, .length = n * chunk};
		switch ((x >> 40) % 4) {
		case 0:
		case 1:
			ioctl(fd, KVMM_IOC_EVICT, &r);
			break;
		case 2:
			ioctl(fd, KVMM_IOC_PREFETCH, &r);
			break;
		case 3:
			for (uint64_t off = r.offset; off < r.offset + r.length; off += 4096)
				p[off]++;
			break;
		}
	}
}

static void killed_process_leaks_no_pool_memory_flash_slots_or_regions(void **state)
{
	const int delays_ms[] = {150, 700, 1500};

	(void)state;
	assert_int_equal(kf_sysfs_wait("regions", 0, 2000), 0);
	for (int i = 0; i < 3; i++) {
		int pipefd[2], status;
		char c;
		pid_t pid;
		uint64_t regions, used, flash;

		assert_int_equal(pipe(pipefd), 0);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			kf_close(pipefd[0]);
			churn(pipefd[1]);
		}
		kf_close(pipefd[1]);
		if (read(pipefd[0], &c, 1) != 1) {
			waitpid(pid, &status, 0);
			fail_msg("child failed to set up its region (status 0x%x)", status);
		}
		kf_close(pipefd[0]);
		kf_msleep(delays_ms[i]);
		assert_true(kt_sysfs_u64("flash_bytes") > 0 || delays_ms[i] < 500);
		kill(pid, SIGKILL);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
		regions = kf_sysfs_wait("regions", 0, 5000);
		used = kf_sysfs_wait("pool_used_bytes", 0, 5000);
		flash = kf_sysfs_wait("flash_bytes", 0, 5000);
		if (regions || used || flash)
			fail_msg("killed after %d ms: expected 0 regions, 0 pool bytes, 0 flash "
				 "bytes; saw %llu, %llu, %llu",
				 delays_ms[i], (unsigned long long)regions,
				 (unsigned long long)used, (unsigned long long)flash);
	}
	/* Nothing holds the module: it unloads (and is loaded again). */
	if (!access("/kvmm.ko", R_OK)) {
		int ko;

		if (syscall(SYS_delete_module, "kvmm", O_NONBLOCK))
			fail_msg("rmmod after the killed processes: %s", strerror(errno));
		ko = open("/kvmm.ko", O_RDONLY | O_CLOEXEC);
		assert_true(ko >= 0);
		assert_int_equal(syscall(SYS_finit_module, ko, "", 0), 0);
		kf_close(ko);
		kf_knobs_save();
	}
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(
		random_data_survives_evict_fault_prefetch_cycles_over_4x_the_pool, kf_teardown),
	    cmocka_unit_test_teardown(
		reclaim_keeps_the_pool_at_its_watermarks_while_four_threads_write, kf_teardown),
	    cmocka_unit_test_teardown(writes_racing_evictions_are_never_lost, kf_teardown),
	    cmocka_unit_test_teardown(killed_process_leaks_no_pool_memory_flash_slots_or_regions,
				      kf_teardown),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests(tests, kf_setup, NULL);
}
