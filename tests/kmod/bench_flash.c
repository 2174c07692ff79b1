/*
 * Flash tier throughput: evict-then-restore of a 1 GiB kvmm region (chunk
 * sizes 64 KiB to 2 MiB; restore by PREFETCH + WAIT and, separately, by
 * touching every page) against Linux swap on a swap file on the same
 * filesystem (MADV_PAGEOUT, then touching everything again) and against
 * raw O_DIRECT I/O on that filesystem (2 MiB requests from 4 threads) as the
 * limit. One VM boot; each phase frees its memory and files before the next.
 * Prints GB/s and ratios; run by `make bench-kmod KMOD_TESTS=flash`.
 */
#include "common/kt_flash.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#define SIZE	(1ULL << 30)
#define PAGE	4096ULL
#define REQ	(2ULL << 20)
#define THREADS 4

struct result {
	char name[64];
	double out, in; /* seconds */
};

static double gbs(double secs, double bytes);

static struct result results[16];
static int nr_results;

static void die(const char *what, int err)
{
	fprintf(stderr, "bench_flash: %s: %s\n", what, strerror(err));
	exit(1);
}

static void add(const char *name, double out, double in)
{
	struct result *r = &results[nr_results++];

	snprintf(r->name, sizeof(r->name), "%s", name);
	r->out = out;
	r->in = in;
}

/* One word per page, different for every page and run. */
static uint64_t mark(uint64_t page, uint32_t seed)
{
	return kf_word(page * PAGE, seed);
}

static void write_marks(volatile uint64_t *p, uint32_t seed)
{
	for (uint64_t pg = 0; pg < SIZE / PAGE; pg++)
		p[pg * (PAGE / 8)] = mark(pg, seed);
}

/* Touch every page by reading its word; returns the number of wrong words. */
static uint64_t read_marks(const volatile uint64_t *p, uint32_t seed)
{
	uint64_t bad = 0;

	for (uint64_t pg = 0; pg < SIZE / PAGE; pg++)
		bad += p[pg * (PAGE / 8)] != mark(pg, seed);
	return bad;
}

static int range(int fd, unsigned long cmd, const char *name)
{
	int err = kt_range_ioctl(fd, cmd, 0, SIZE);

	if (err)
		die(name, -err);
	return 0;
}

static void bench_kvmm(uint32_t chunk)
{
	char path[256], name[64];
	int dev = open(KVMM_DEVICE_PATH, O_RDWR | O_CLOEXEC), fd, file;
	struct kvmm_backing b = {0};
	struct kvmm_region_stat st;
	uint64_t *p;
	double t0, t_evict, t_prefetch, t_drop, t_touch;
	uint64_t faults0, ahead0;
	uint32_t seed = chunk;

	if (dev < 0)
		die("open /dev/kvmm", errno);
	fd = kt_region_create(dev, SIZE, chunk, KVMM_NUMA_LOCAL);
	if (fd < 0)
		die("create region", -fd);
	close(dev);
	snprintf(path, sizeof(path), "%s/bench-kvmm", kf_flash_dir());
	file = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (file < 0)
		die(path, errno);
	unlink(path);
	b.fd = file;
	if (ioctl(fd, KVMM_IOC_SET_BACKING, &b))
		die("SET_BACKING", errno);
	close(file);
	p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("mmap region", errno);
	write_marks(p, seed);

	t0 = kf_now();
	range(fd, KVMM_IOC_EVICT, "EVICT");
	t_evict = kf_now() - t0;
	if (kt_stat(fd, &st) || st.flash_resident_bytes != SIZE || st.resident_bytes)
		die("EVICT left chunks resident", EIO);
	/* Buffered I/O would time the page cache, not the disk: not a flash result. */
	if (st.buffered_ios) {
		fprintf(
		    stderr,
		    "bench_flash: the backing file in %s took %llu buffered I/Os (no direct I/O "
		    "there): these times would be the page cache's; put KVMM_FLASH_DIR on a "
		    "filesystem that takes O_DIRECT\n",
		    kf_flash_dir(), (unsigned long long)st.buffered_ios);
		exit(1);
	}

	t0 = kf_now();
	range(fd, KVMM_IOC_PREFETCH, "PREFETCH");
	range(fd, KVMM_IOC_WAIT, "WAIT");
	t_prefetch = kf_now() - t0;
	if (kt_stat(fd, &st) || st.resident_bytes != SIZE)
		die("PREFETCH + WAIT left chunks on flash", EIO);
	if (read_marks(p, seed))
		die("wrong data after PREFETCH", EIO);

	/* Unchanged since written: this EVICT only drops the clean chunks. */
	t0 = kf_now();
	range(fd, KVMM_IOC_EVICT, "EVICT (clean)");
	t_drop = kf_now() - t0;

	if (kt_stat(fd, &st))
		die("STAT", EIO);
	faults0 = st.fault_backs;
	ahead0 = st.prefetches;
	t0 = kf_now();
	if (read_marks(p, seed))
		die("wrong data after fault-back", EIO);
	t_touch = kf_now() - t0;
	/* Each chunk came back by its own fault or by a fault's read-around. */
	if (kt_stat(fd, &st) || st.resident_bytes != SIZE ||
	    st.fault_backs - faults0 + st.prefetches - ahead0 != SIZE / chunk)
		die("touching did not bring every chunk back", EIO);

	munmap(p, SIZE);
	close(fd);
	printf("  kvmm %4u KiB: EVICT %.2f s, PREFETCH+WAIT %.2f s, clean EVICT %.2f s, "
	       "touch %.2f s (%llu fault-backs, %llu chunks read around them)\n",
	       chunk >> 10, t_evict, t_prefetch, t_drop, t_touch,
	       (unsigned long long)(st.fault_backs - faults0),
	       (unsigned long long)(st.prefetches - ahead0));
	fflush(stdout);
	snprintf(name, sizeof(name), "kvmm %u KiB, PREFETCH+WAIT", chunk >> 10);
	add(name, t_evict, t_prefetch);
	snprintf(name, sizeof(name), "kvmm %u KiB, touch", chunk >> 10);
	add(name, t_evict, t_touch);
}

/* ---- O_DIRECT file I/O from THREADS threads, REQ-sized requests ---------- */

struct dio {
	int fd, write, id;
	uint64_t size;
	int err;
};

static void *dio_thread(void *arg)
{
	struct dio *d = arg;
	void *buf;

	if (posix_memalign(&buf, REQ, REQ)) {
		d->err = ENOMEM;
		return NULL;
	}
	memset(buf, 0x5a + d->id, REQ);
	for (uint64_t off = d->id * REQ; off < d->size; off += THREADS * REQ) {
		ssize_t n = d->write ? pwrite(d->fd, buf, REQ, off) : pread(d->fd, buf, REQ, off);

		if (n != (ssize_t)REQ) {
			d->err = n < 0 ? errno : EIO;
			break;
		}
	}
	free(buf);
	return NULL;
}

static double dio_all(int fd, int write, uint64_t size)
{
	pthread_t th[THREADS];
	struct dio d[THREADS];
	double t0 = kf_now();

	for (int i = 0; i < THREADS; i++) {
		d[i] = (struct dio){.fd = fd, .write = write, .id = i, .size = size};
		if (pthread_create(&th[i], NULL, dio_thread, &d[i]))
			die("pthread_create", errno);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		if (d[i].err)
			die(write ? "O_DIRECT write" : "O_DIRECT read", d[i].err);
	}
	if (write && fdatasync(fd))
		die("fdatasync", errno);
	return kf_now() - t0;
}

static void bench_raw(void)
{
	char path[256];
	int fd;
	double t_write, t_read;

	snprintf(path, sizeof(path), "%s/bench-raw", kf_flash_dir());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0600);
	if (fd < 0)
		die(path, errno);
	unlink(path);
	/* Allocated beforehand, as kvmm grows its backing file with fallocate. */
	if (fallocate(fd, 0, 0, SIZE))
		die("fallocate", errno);
	t_write = dio_all(fd, 1, SIZE);
	t_read = dio_all(fd, 0, SIZE);
	close(fd);
	printf("  raw O_DIRECT: write %.2f s, read %.2f s\n", t_write, t_read);
	fflush(stdout);
	add("raw O_DIRECT, 2 MiB x 4 threads", t_write, t_read);
}

/* ---- Linux swap on a swap file ------------------------------------------ */

static uint64_t meminfo_kb(const char *key)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	uint64_t v = 0;
	size_t n = strlen(key);

	if (!f)
		die("/proc/meminfo", errno);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ':')
			v = strtoull(line + n + 1, NULL, 10);
	fclose(f);
	return v;
}

/*
 * A memory cgroup of our own, so memory.reclaim can free the swap-cache
 * pages MADV_PAGEOUT leaves behind while their writes are in flight (a
 * second MADV_PAGEOUT cannot reach them: they are no longer mapped).
 */
#define CGROOT "/sys/fs/cgroup"
#define CGDIR  CGROOT "/kvmm-bench"

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

static int cgroup_enter(void)
{
	char pid[32];

	if (access(CGROOT "/cgroup.procs", F_OK) && mount("cgroup2", CGROOT, "cgroup2", 0, NULL))
		return -errno;
	write_file(CGROOT "/cgroup.subtree_control", "+memory");
	if (mkdir(CGDIR, 0755) && errno != EEXIST)
		return -errno;
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	if (write_file(CGDIR "/cgroup.procs", pid) || access(CGDIR "/memory.reclaim", W_OK))
		return -ENOENT;
	return 0;
}

static void cgroup_leave(void)
{
	char pid[32];

	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	write_file(CGROOT "/cgroup.procs", pid);
	rmdir(CGDIR);
}

/* Pages of [p, p + SIZE) in memory, swap cache included. */
static uint64_t resident_pages(void *p)
{
	static unsigned char vec[SIZE / PAGE];
	uint64_t n = 0;

	if (mincore(p, SIZE, vec))
		die("mincore", errno);
	for (uint64_t i = 0; i < SIZE / PAGE; i++)
		n += vec[i] & 1;
	return n;
}

static void bench_swap(void)
{
	char path[256], cmd[600], zswap[8] = "";
	const uint64_t swap_size = SIZE + SIZE / 8;
	uint64_t *p, left;
	double t0, t_out, t_in;
	int fd, rounds = 0, cg;
	FILE *z;

	/* Plain swap to the disk: no compressed cache in front of it. */
	z = fopen("/sys/module/zswap/parameters/enabled", "r+");
	if (z) {
		if (fgets(zswap, sizeof(zswap), z) && zswap[0] == 'Y') {
			rewind(z);
			fputs("N", z);
		}
		fclose(z);
	}
	snprintf(path, sizeof(path), "%s/bench-swap", kf_flash_dir());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0600);
	if (fd < 0)
		die(path, errno);
	dio_all(fd, 1, swap_size);
	close(fd);
	snprintf(cmd, sizeof(cmd), "mkswap %s >/dev/null && swapon %s", path, path);
	if (system(cmd)) {
		unlink(path);
		die("mkswap/swapon of the swap file", EIO);
	}

	cg = cgroup_enter();
	if (cg)
		fprintf(stderr, "bench_flash: no memory cgroup (%s): swap-cache pages may stay\n",
			strerror(-cg));
	p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap anonymous", errno);
	madvise(p, SIZE, MADV_NOHUGEPAGE);
	write_marks(p, 77);

	/*
	 * MADV_PAGEOUT writes the pages out and leaves them in the swap cache
	 * until the writes complete; memory.reclaim then frees them without
	 * more I/O. Done when (nearly) nothing is in memory and no writeback
	 * is pending.
	 */
	t0 = kf_now();
	if (madvise(p, SIZE, MADV_PAGEOUT))
		die("MADV_PAGEOUT", errno);
	do {
		while (meminfo_kb("Writeback") > 0)
			kf_msleep(5);
		if (!cg)
			write_file(CGDIR "/memory.reclaim", "2G");
		else if (madvise(p, SIZE, MADV_PAGEOUT))
			die("MADV_PAGEOUT", errno);
		left = resident_pages(p);
	} while (left > SIZE / PAGE / 100 && ++rounds < 10);
	t_out = kf_now() - t0;
	if (left > SIZE / PAGE / 100)
		fprintf(stderr, "bench_flash: %llu pages still in memory after MADV_PAGEOUT\n",
			(unsigned long long)left);

	t0 = kf_now();
	if (read_marks(p, 77))
		die("wrong data after swap-in", EIO);
	t_in = kf_now() - t0;
	printf("  swap: pageout %.2f s (%d reclaim rounds, %llu pages left in memory), "
	       "swap-in by touch %.2f s, zswap %s\n",
	       t_out, rounds + 1, (unsigned long long)left, t_in,
	       zswap[0] == 'Y' ? "disabled for the run" : "off");
	fflush(stdout);
	munmap(p, SIZE);
	if (!cg)
		cgroup_leave();
	snprintf(cmd, sizeof(cmd), "swapoff %s", path);
	if (system(cmd))
		fprintf(stderr, "bench_flash: swapoff failed\n");
	unlink(path);
	if (zswap[0] == 'Y' && (z = fopen("/sys/module/zswap/parameters/enabled", "w"))) {
		fputs("Y", z);
		fclose(z);
	}
	add("Linux swap file, MADV_PAGEOUT / touch", t_out, t_in);
}

/*
 * CPU reference: crc32c the way the kernel's crc32c-generic computes it
 * (slice-by-8 tables), over 1 GiB of memory. kvmm checksums every chunk it
 * writes and reads; in this guest the crc32c-intel module is not loaded, so
 * the kernel uses the generic code, and under TCG that costs real time.
 */
static uint32_t crc_tab[8][256];

static uint32_t crc32c_sb8(uint32_t crc, const uint8_t *p, uint64_t len)
{
	while (len >= 8) {
		uint32_t lo = crc ^ (p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24);

		crc = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^
		      crc_tab[5][(lo >> 16) & 0xff] ^ crc_tab[4][lo >> 24] ^ crc_tab[3][p[4]] ^
		      crc_tab[2][p[5]] ^ crc_tab[1][p[6]] ^ crc_tab[0][p[7]];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = crc_tab[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

/* crc32c with the SSE4.2 instruction, as crc32c-intel computes it (emulated under TCG). */
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p,
							    uint64_t len)
{
	uint64_t c = crc;

	for (uint64_t i = 0; i + 8 <= len; i += 8) {
		uint64_t w;

		memcpy(&w, p + i, 8);
		c = __builtin_ia32_crc32di(c, w);
	}
	return (uint32_t)c;
}

static void bench_cpu_reference(void)
{
	const uint64_t buf_size = 64 * MiB;
	uint8_t *buf = malloc(buf_size), *dst = malloc(buf_size);
	uint32_t crc = ~0u, crc_hw = ~0u;
	double t0, t_crc, t_copy, t_hw = 0;

	if (!buf || !dst)
		die("malloc", ENOMEM);
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78 : c >> 1;
		crc_tab[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_tab[t][i] =
			    (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xff];
	kf_fill(buf, buf_size, 0, 3);
	t0 = kf_now();
	for (uint64_t done = 0; done < SIZE; done += buf_size)
		crc = crc32c_sb8(crc, buf, buf_size);
	t_crc = kf_now() - t0;
	if (__builtin_cpu_supports("sse4.2")) {
		t0 = kf_now();
		for (uint64_t done = 0; done < SIZE; done += buf_size)
			crc_hw = crc32c_hw(crc_hw, buf, buf_size);
		t_hw = kf_now() - t0;
		if (crc_hw != crc)
			fprintf(stderr, "bench_flash: crc32c mismatch %08x / %08x\n", crc, crc_hw);
	}
	t0 = kf_now();
	for (uint64_t done = 0; done < SIZE; done += buf_size)
		memcpy(dst, buf, buf_size);
	/* The copies must happen: dst counts as read from here. */
	__asm__ volatile("" : : "r"(dst) : "memory");
	t_copy = kf_now() - t0;
	printf("  CPU reference (this guest): crc32c slice-by-8 of 1 GiB %.2f s (%.2f GB/s, "
	       "crc %08x), memcpy of 1 GiB %.2f s (%.2f GB/s)\n",
	       t_crc, gbs(t_crc, SIZE), crc, t_copy, gbs(t_copy, SIZE));
	if (t_hw > 0)
		printf("  CPU reference (this guest): crc32c with the SSE4.2 crc32 instruction "
		       "(as crc32c-intel) of 1 GiB %.2f s (%.2f GB/s)\n",
		       t_hw, gbs(t_hw, SIZE));
	free(buf);
	free(dst);
}

static double gbs(double secs, double bytes)
{
	return bytes / secs / 1e9;
}

int main(void)
{
	const uint32_t chunks[] = {64 << 10, 256 << 10, 1 << 20, 2 << 20};
	char limit[32], old_limit[32];
	struct utsname u;
	struct result *swap, *raw;

	setvbuf(stdout, NULL, _IOLBF, 0);
	uname(&u);
	printf("flash tier: evict-then-restore of 1 GiB; kernel %s, %ld CPUs, %llu MiB RAM, "
	       "files on %s\n",
	       u.release, sysconf(_SC_NPROCESSORS_ONLN),
	       (unsigned long long)meminfo_kb("MemTotal") >> 10, kf_flash_dir());
	kf_sysfs_str("pool_limit_bytes", old_limit, sizeof(old_limit));
	snprintf(limit, sizeof(limit), "%llu", SIZE + (SIZE >> 3));
	if (kt_sysfs_write("pool_limit_bytes", limit))
		die("raise pool_limit_bytes", EINVAL);

	for (unsigned int i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++)
		bench_kvmm(chunks[i]);
	kt_sysfs_write("pool_limit_bytes", old_limit);
	bench_swap();
	swap = &results[nr_results - 1];
	bench_raw();
	raw = &results[nr_results - 1];
	bench_cpu_reference();

	printf("\nGB/s of 1 GiB out (EVICT / pageout / write) and back in (restore / swap-in / "
	       "read);\nboth = 2 GiB / (out + in); ratios compare 'both'\n");
	printf("%-40s %7s %7s %7s %9s %8s\n", "method", "out", "in", "both", "vs swap", "vs raw");
	for (int i = 0; i < nr_results; i++) {
		struct result *r = &results[i];
		double both = r->out + r->in;

		printf("%-40s %7.2f %7.2f %7.2f %9.2f %8.2f\n", r->name, gbs(r->out, SIZE),
		       gbs(r->in, SIZE), gbs(both, 2.0 * SIZE), (swap->out + swap->in) / both,
		       (raw->out + raw->in) / both);
	}
	return 0;
}
