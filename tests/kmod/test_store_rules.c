/*
 * What KVMM_IOC_SET_BACKING accepts as a backing store and what it refuses,
 * with the errno the ABI gives for each refusal, and the store header: kvmm
 * formats an empty file, accepts a store that starts with its header, and
 * never writes over bytes it did not write. Every refusal is checked to
 * change nothing: a region without a store still has none (EVICT gives
 * ENODEV) and a region with a store still evicts to that store.
 */
#include "common/kt_flash.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <unistd.h>

#define CHUNK (64 * KiB)
#define HDR   KVMM_STORE_HEADER_BYTES

/* ---- what a test must undo even when it fails half-way ---------------- */

static char flag_path[256]; /* ext4 file with FS_APPEND_FL or FS_IMMUTABLE_FL set */
static int flag_fd = -1;
static char swap_path[300]; /* swap file or device swapon'd by a test */
#define NR_UNLINK 8
static char unlink_paths[NR_UNLINK][256];
static char debugfs_path[128];
static char debugfs_val[64];

static void remember_unlink(const char *path)
{
	for (int i = 0; i < NR_UNLINK; i++) {
		if (!unlink_paths[i][0]) {
			snprintf(unlink_paths[i], sizeof(unlink_paths[i]), "%s", path);
			return;
		}
	}
}

static void clear_inode_flags(void)
{
	if (flag_fd >= 0) {
		int flags = 0;

		if (!ioctl(flag_fd, FS_IOC_GETFLAGS, &flags)) {
			flags &= ~(FS_APPEND_FL | FS_IMMUTABLE_FL);
			if (ioctl(flag_fd, FS_IOC_SETFLAGS, &flags))
				print_error("clearing the flags of %s: %s\n", flag_path,
					    strerror(errno));
		}
		close(flag_fd);
		flag_fd = -1;
	}
	if (flag_path[0]) {
		unlink(flag_path);
		flag_path[0] = 0;
	}
}

static void write_string_file(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd >= 0) {
		if (write(fd, val, strlen(val)) < 0)
			print_error("restoring %s: %s\n", path, strerror(errno));
		close(fd);
	}
}

static int teardown(void **state)
{
	clear_inode_flags();
	if (swap_path[0]) {
		if (swapoff(swap_path))
			print_error("swapoff %s: %s\n", swap_path, strerror(errno));
		swap_path[0] = 0;
	}
	if (debugfs_path[0]) {
		write_string_file(debugfs_path, debugfs_val);
		debugfs_path[0] = 0;
	}
	for (int i = 0; i < NR_UNLINK; i++) {
		if (unlink_paths[i][0]) {
			unlink(unlink_paths[i]);
			unlink_paths[i][0] = 0;
		}
	}
	return kf_teardown(state);
}

/* ---- helpers ----------------------------------------------------------- */

/* A new empty ext4 file in the flash dir, opened with flags, kept linked. */
static int ext4_file(const char *tag, int flags, char *path, size_t size)
{
	int fd;

	snprintf(path, size, "%s/kvmm-rules-%s-%d", kf_flash_dir(), tag, (int)getpid());
	fd = open(path, flags | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		fail_msg("create %s: %s", path, strerror(errno));
	remember_unlink(path);
	return kf_track(fd);
}

static off_t file_size(int fd)
{
	struct stat sb;

	assert_int_equal(fstat(fd, &sb), 0);
	return sb.st_size;
}

/* Read len bytes at off; fails unless all of them came. */
static void read_exact(int fd, void *buf, size_t len, off_t off, const char *what)
{
	ssize_t n = pread(fd, buf, len, off);

	if (n != (ssize_t)len)
		fail_msg("%s: pread of %zu bytes at %lld: expected %zu, saw %zd (%s)", what, len,
			 (long long)off, len, n, n < 0 ? strerror(errno) : "short");
}

static void header_bytes(uint8_t *buf)
{
	struct kvmm_store_header h;

	memset(&h, 0, sizeof(h));
	memcpy(h.magic, KVMM_STORE_MAGIC, sizeof(h.magic));
	h.version = KVMM_STORE_VERSION;
	h.header_bytes = KVMM_STORE_HEADER_BYTES;
	memset(buf, 0, HDR);
	memcpy(buf, &h, sizeof(h));
}

/* Format a store the way `kvmmctl format` does: the header, the rest zero. */
static void write_header(int fd)
{
	static uint8_t buf[HDR];

	header_bytes(buf);
	assert_int_equal(pwrite(fd, buf, HDR, 0), (ssize_t)HDR);
	assert_int_equal(fsync(fd), 0);
}

/* Fail unless the first KVMM_STORE_HEADER_BYTES of fd are a valid header. */
static void expect_header(int fd, const char *when)
{
	static uint8_t buf[HDR], want[HDR];
	struct kvmm_store_header h;

	posix_fadvise(fd, 0, HDR, POSIX_FADV_DONTNEED);
	read_exact(fd, buf, HDR, 0, when);
	memcpy(&h, buf, sizeof(h));
	if (memcmp(h.magic, KVMM_STORE_MAGIC, sizeof(h.magic)))
		fail_msg("%s: header magic: expected \"%s\", saw \"%.8s\" (%02x %02x %02x %02x...)",
			 when, KVMM_STORE_MAGIC, h.magic, (uint8_t)h.magic[0], (uint8_t)h.magic[1],
			 (uint8_t)h.magic[2], (uint8_t)h.magic[3]);
	if (h.version != KVMM_STORE_VERSION)
		fail_msg("%s: header version: expected %u, saw %u", when, KVMM_STORE_VERSION,
			 h.version);
	if (h.header_bytes != KVMM_STORE_HEADER_BYTES)
		fail_msg("%s: header_bytes: expected %u, saw %u", when, KVMM_STORE_HEADER_BYTES,
			 h.header_bytes);
	header_bytes(want);
	for (size_t i = 0; i < HDR; i++)
		if (buf[i] != want[i])
			fail_msg("%s: header byte %zu: expected 0x%02x, saw 0x%02x", when, i,
				 want[i], buf[i]);
}

/*
 * Offset in fd (searched up to limit, at 4 KiB steps) of the one chunk the
 * test filled with seed; fails if it is not there whole, or lies before
 * min_off.
 */
static off_t find_chunk(int fd, off_t limit, off_t min_off, uint32_t seed, const char *what)
{
	uint64_t first = kf_word(0, seed);
	uint8_t *buf = malloc(1 * MiB + CHUNK);
	off_t found = -1;

	assert_non_null(buf);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	for (off_t off = 0; off < limit && found < 0; off += 1 * MiB) {
		ssize_t n = pread(fd, buf, 1 * MiB + CHUNK, off);

		if (n < 0)
			fail_msg("%s: pread at %lld: %s", what, (long long)off, strerror(errno));
		for (ssize_t i = 0; i + 8 <= n && i < (ssize_t)(1 * MiB); i += 4096) {
			if (!memcmp(buf + i, &first, 8)) {
				found = off + i;
				if (i + (ssize_t)CHUNK > n ||
				    !kf_check(buf + i, CHUNK, 0, seed, what)) {
					free(buf);
					fail_msg("%s: the chunk at offset %lld of the store is not "
						 "the data written",
						 what, (long long)found);
				}
				break;
			}
		}
	}
	free(buf);
	if (found < 0)
		fail_msg("%s: expected the evicted chunk in the first %lld bytes of the store, "
			 "saw none",
			 what, (long long)limit);
	if (found < min_off)
		fail_msg("%s: chunk written at offset %lld: expected an offset at or after "
			 "KVMM_STORE_HEADER_BYTES (%lld)",
			 what, (long long)found, (long long)min_off);
	return found;
}

/*
 * The store now set on region fd takes an evicted chunk after its header and
 * gives it back: chunk 0 filled with seed, EVICT, find it in store, read back.
 */
static void expect_store_works(int fd, int store, off_t limit, uint32_t seed, const char *what)
{
	uint8_t *p = kf_map(fd, 0, CHUNK);
	char msg[256];

	kf_fill(p, CHUNK, 0, seed);
	snprintf(msg, sizeof(msg), "%s: EVICT of a filled chunk", what);
	REFUSED(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, CHUNK), 0, msg);
	kf_expect_states(fd, 0, 1, KVMM_CHUNK_FLASH, msg);
	find_chunk(store, limit, HDR, seed, what);
	expect_header(store, what);
	snprintf(msg, sizeof(msg), "%s: chunk read back from the store", what);
	assert_true(kf_check(p, CHUNK, 0, seed, msg));
	kf_unmap(p, CHUNK);
}

/*
 * SET_BACKING with bad gives want, on a region without a store and on one
 * with a store, and changes neither: the first still has no store, the
 * second still evicts to its own.
 */
static void expect_refused(int bad, int want, const char *what)
{
	int bare = kf_region(1 * MiB, CHUNK), store, backed;
	char msg[300];
	uint8_t *p;
	off_t size0;

	assert_int_equal(kt_range_ioctl(bare, KVMM_IOC_ENSURE, 0, CHUNK), 0);
	snprintf(msg, sizeof(msg), "SET_BACKING with %s (region without a store)", what);
	REFUSED(kf_set_backing(bare, bad), want, msg);
	snprintf(msg, sizeof(msg), "EVICT after SET_BACKING with %s was refused", what);
	REFUSED(kt_range_ioctl(bare, KVMM_IOC_EVICT, 0, CHUNK), -ENODEV, msg);
	kf_expect_states(bare, 0, 1, KVMM_CHUNK_RESIDENT | KVMM_CHUNK_DIRTY, msg);
	kf_close(bare);

	backed = kf_region_backed(1 * MiB, CHUNK, &store);
	size0 = file_size(store);
	p = kf_map(backed, 0, CHUNK);
	kf_fill(p, CHUNK, 0, 99);
	snprintf(msg, sizeof(msg), "SET_BACKING with %s (region with a store)", what);
	REFUSED(kf_set_backing(backed, bad), want, msg);
	snprintf(msg, sizeof(msg), "EVICT to the previous store after SET_BACKING with %s", what);
	REFUSED(kt_range_ioctl(backed, KVMM_IOC_EVICT, 0, CHUNK), 0, msg);
	kf_expect_states(backed, 0, 1, KVMM_CHUNK_FLASH, msg);
	if (kf_stat(backed).flash_bytes != CHUNK)
		fail_msg("%s: flash_bytes: expected %llu, saw %llu", msg, CHUNK,
			 (unsigned long long)kf_stat(backed).flash_bytes);
	if (file_size(store) <= size0)
		fail_msg("%s: the previous store: expected it to grow past %lld bytes, saw %lld",
			 msg, (long long)size0, (long long)file_size(store));
	/* Where it lies is the header tests' concern; here only that it is there. */
	find_chunk(store, file_size(store), 0, 99, msg);
	assert_true(kf_check(p, CHUNK, 0, 99, msg));
	kf_unmap(p, CHUNK);
	kf_close(backed);
	kf_close(store);
}

/* ---- files that are not on a disk filesystem: EOPNOTSUPP --------------- */

static void set_backing_refuses_a_tmpfs_file_with_eopnotsupp(void **state)
{
	char path[256];
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "/tmp/kvmm-rules-tmpfs-%d", (int)getpid());
	fd = kf_track(open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
	if (fd < 0)
		fail_msg("create %s: %s", path, strerror(errno));
	remember_unlink(path);
	expect_refused(fd, -EOPNOTSUPP, "an empty file on tmpfs (/tmp)");
	if (file_size(fd))
		fail_msg("the tmpfs file after the refusals: expected 0 bytes, saw %lld",
			 (long long)file_size(fd));
	kf_close(fd);
}

static void set_backing_refuses_memfds_plain_and_sealed_with_eopnotsupp(void **state)
{
	int plain = kf_track(memfd_create("kvmm-plain", MFD_CLOEXEC));
	int sealed = kf_track(memfd_create("kvmm-sealed", MFD_CLOEXEC | MFD_ALLOW_SEALING));

	(void)state;
	assert_true(plain >= 0 && sealed >= 0);
	assert_int_equal(fcntl(sealed, F_ADD_SEALS, F_SEAL_WRITE), 0);
	assert_int_equal(fcntl(sealed, F_GET_SEALS) & F_SEAL_WRITE, F_SEAL_WRITE);
	assert_int_equal(fcntl(plain, F_GETFL) & O_ACCMODE, O_RDWR);
	assert_int_equal(fcntl(sealed, F_GETFL) & O_ACCMODE, O_RDWR);
	expect_refused(plain, -EOPNOTSUPP, "a memfd");
	expect_refused(sealed, -EOPNOTSUPP, "a memfd sealed with F_SEAL_WRITE");
	if (file_size(plain) || file_size(sealed))
		fail_msg("the memfds after the refusals: expected 0 bytes, saw %lld and %lld",
			 (long long)file_size(plain), (long long)file_size(sealed));
	kf_close(plain);
	kf_close(sealed);
}

/* Contents of a small pseudo-file, for checking a refusal wrote nothing. */
static void read_small(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		fail_msg("open %s: %s", path, strerror(errno));
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		fail_msg("read %s: %s", path, strerror(errno));
	buf[n] = 0;
}

static void expect_pseudo_file_refused(const char *path, const char *what)
{
	char before[256], after[256], msg[300];
	int fd;

	read_small(path, before, sizeof(before));
	fd = kf_track(open(path, O_RDWR | O_CLOEXEC));
	if (fd < 0)
		fail_msg("open %s O_RDWR: %s", path, strerror(errno));
	snprintf(msg, sizeof(msg), "%s (%s)", what, path);
	expect_refused(fd, -EOPNOTSUPP, msg);
	kf_close(fd);
	read_small(path, after, sizeof(after));
	if (strcmp(before, after))
		fail_msg("%s after the refusals: expected \"%s\", saw \"%s\"", path, before, after);
}

static void set_backing_refuses_procfs_and_sysfs_files_with_eopnotsupp(void **state)
{
	char sysfs[128];

	(void)state;
	/* Writing our own comm is harmless; it is a regular file of procfs. */
	expect_pseudo_file_refused("/proc/self/comm", "a procfs file");
	/* A kvmm knob: refuses anything but a number, and the teardown restores it. */
	snprintf(sysfs, sizeof(sysfs), KVMM_SYSFS "/refault_window_ms");
	expect_pseudo_file_refused(sysfs, "a sysfs file");
}

static void set_backing_refuses_a_debugfs_file_with_eopnotsupp(void **state)
{
	const char *dbg = "/sys/kernel/debug/fault_around_bytes";

	(void)state;
	/* Refuses anything but a number too; put back in the teardown. */
	if (access(dbg, R_OK | W_OK)) {
		print_message("skip: %s is not there (%s): needs debugfs mounted on a kernel with "
			      "CONFIG_DEBUG_FS, as in the harness's VM\n",
			      dbg, strerror(errno));
		skip();
	}
	read_small(dbg, debugfs_val, sizeof(debugfs_val));
	snprintf(debugfs_path, sizeof(debugfs_path), "%s", dbg);
	expect_pseudo_file_refused(dbg, "a debugfs file");
}

/* ---- ext4 files opened or flagged so that kvmm may not write them ------- */

static void set_backing_refuses_an_fd_opened_o_append_with_einval(void **state)
{
	char path[256];
	int fd = ext4_file("append-fd", O_RDWR | O_APPEND, path, sizeof(path));

	(void)state;
	expect_refused(fd, -EINVAL, "an ext4 file opened O_RDWR | O_APPEND");
	if (file_size(fd))
		fail_msg("the O_APPEND file after the refusals: expected 0 bytes, saw %lld",
			 (long long)file_size(fd));
	kf_close(fd);
}

static void expect_flagged_file_refused(int flag, const char *what)
{
	int flags = 0;

	flag_fd = open(flag_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (flag_fd < 0)
		fail_msg("create %s: %s", flag_path, strerror(errno));
	assert_int_equal(ioctl(flag_fd, FS_IOC_GETFLAGS, &flags), 0);
	flags |= flag;
	if (ioctl(flag_fd, FS_IOC_SETFLAGS, &flags))
		fail_msg("FS_IOC_SETFLAGS on %s: %s", flag_path, strerror(errno));
	flags = 0;
	assert_int_equal(ioctl(flag_fd, FS_IOC_GETFLAGS, &flags), 0);
	assert_int_equal(flags & flag, flag);
	expect_refused(flag_fd, -EPERM, what);
	if (file_size(flag_fd))
		fail_msg("%s after the refusals: expected 0 bytes, saw %lld", what,
			 (long long)file_size(flag_fd));
	clear_inode_flags();
}

static void set_backing_refuses_append_only_and_immutable_files_with_eperm(void **state)
{
	(void)state;
	snprintf(flag_path, sizeof(flag_path), "%s/kvmm-rules-appendfl-%d", kf_flash_dir(),
		 (int)getpid());
	expect_flagged_file_refused(FS_APPEND_FL, "an ext4 file with FS_APPEND_FL");
	snprintf(flag_path, sizeof(flag_path), "%s/kvmm-rules-immutable-%d", kf_flash_dir(),
		 (int)getpid());
	expect_flagged_file_refused(FS_IMMUTABLE_FL, "an ext4 file with FS_IMMUTABLE_FL");
}

/* ---- swap --------------------------------------------------------------- */

/* A mkswap-style header (version 1, 4 KiB pages) for pages pages at offset 0. */
static void write_swap_header(int fd, uint64_t pages)
{
	static uint8_t page[4096];
	uint32_t v[2] = {1, (uint32_t)(pages - 1)}; /* version, last_page */

	memset(page, 0, sizeof(page));
	memcpy(page + 1024, v, sizeof(v));
	memcpy(page + 4096 - 10, "SWAPSPACE2", 10);
	assert_int_equal(pwrite(fd, page, sizeof(page), 0), (ssize_t)sizeof(page));
	assert_int_equal(fsync(fd), 0);
}

static void set_backing_refuses_an_active_swap_file_with_etxtbsy(void **state)
{
	const uint64_t bytes = 4 * MiB;
	char path[256];
	int fd = ext4_file("swap", O_RDWR, path, sizeof(path));
	uint8_t *zero = calloc(1, 1 * MiB);

	(void)state;
	assert_non_null(zero);
	/* swapon wants every block allocated: write the zeros, no holes. */
	for (uint64_t off = 0; off < bytes; off += 1 * MiB)
		assert_int_equal(pwrite(fd, zero, 1 * MiB, off), (ssize_t)(1 * MiB));
	free(zero);
	write_swap_header(fd, bytes / 4096);
	if (swapon(path, 0))
		fail_msg("swapon %s: %s", path, strerror(errno));
	snprintf(swap_path, sizeof(swap_path), "%s", path);
	expect_refused(fd, -ETXTBSY, "an active swap file opened O_RDWR");
	if (swapoff(path))
		fail_msg("swapoff %s: %s", path, strerror(errno));
	swap_path[0] = 0;
	kf_close(fd);
}

/* ---- kvmm's own fds ----------------------------------------------------- */

static void set_backing_refuses_kvmm_region_fds_with_einval(void **state)
{
	int other = kf_region(1 * MiB, CHUNK), fd = kf_region(1 * MiB, CHUNK);

	(void)state;
	expect_refused(other, -EINVAL, "the fd of another kvmm region");
	REFUSED(kf_set_backing(fd, fd), -EINVAL, "SET_BACKING of a region with its own fd");
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_ENSURE, 0, CHUNK), 0);
	REFUSED(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, CHUNK), -ENODEV,
		"EVICT after SET_BACKING with the region's own fd was refused");
	kf_close(other);
	kf_close(fd);
}

/* ---- the store header: never overwrite bytes kvmm did not write -------- */

static void set_backing_refuses_non_empty_unformatted_files_and_leaves_their_bytes(void **state)
{
	char path[256];
	int data = ext4_file("data", O_RDWR, path, sizeof(path));
	int sparse = ext4_file("sparse", O_RDWR, path, sizeof(path));
	int magic = ext4_file("badmagic", O_RDWR, path, sizeof(path));
	int one = ext4_file("onebyte", O_RDWR, path, sizeof(path));
	uint8_t *want = malloc(2 * HDR), *seen = malloc(2 * HDR);
	struct stat sb0, sb1;

	(void)state;
	assert_true(want && seen);
	/* Someone's data. */
	kf_fill(want, 2 * HDR, 0, 11);
	assert_int_equal(pwrite(data, want, 2 * HDR, 0), (ssize_t)(2 * HDR));
	assert_int_equal(fsync(data), 0);
	expect_refused(data, -ENOTEMPTY, "an ext4 file holding 8 KiB of data");
	assert_int_equal(file_size(data), 2 * HDR);
	posix_fadvise(data, 0, 0, POSIX_FADV_DONTNEED);
	read_exact(data, seen, 2 * HDR, 0, "the data file after the refusals");
	if (memcmp(want, seen, 2 * HDR))
		fail_msg("the data file after the refusals: expected its bytes unchanged, saw "
			 "them changed");

	/* A non-empty file of zeros does not start with the header either. */
	assert_int_equal(ftruncate(sparse, 1 * MiB), 0);
	assert_int_equal(fstat(sparse, &sb0), 0);
	expect_refused(sparse, -ENOTEMPTY, "a 1 MiB ext4 file of zeros (a hole)");
	assert_int_equal(fstat(sparse, &sb1), 0);
	if (sb1.st_size != sb0.st_size || sb1.st_blocks != sb0.st_blocks)
		fail_msg("the zero file after the refusals: expected %lld bytes in %lld blocks, "
			 "saw %lld in %lld",
			 (long long)sb0.st_size, (long long)sb0.st_blocks, (long long)sb1.st_size,
			 (long long)sb1.st_blocks);
	read_exact(sparse, seen, HDR, 0, "the zero file after the refusals");
	if (!kt_all_zero(seen, HDR))
		fail_msg("the zero file after the refusals: expected zeros, saw data written");

	/* A header with one letter of the magic wrong is not kvmm's header. */
	header_bytes(want);
	want[7] ^= 0x20;
	assert_int_equal(pwrite(magic, want, HDR, 0), (ssize_t)HDR);
	assert_int_equal(fsync(magic), 0);
	expect_refused(magic, -ENOTEMPTY, "an ext4 file whose header magic is \"KVMMSTOr\"");
	posix_fadvise(magic, 0, 0, POSIX_FADV_DONTNEED);
	read_exact(magic, seen, HDR, 0, "the bad-magic file after the refusals");
	if (memcmp(want, seen, HDR) || file_size(magic) != (off_t)HDR)
		fail_msg("the bad-magic file after the refusals: expected it unchanged, saw it "
			 "changed");

	/* One byte is not empty. */
	assert_int_equal(pwrite(one, "x", 1, 0), 1);
	expect_refused(one, -ENOTEMPTY, "an ext4 file of one byte");
	read_exact(one, seen, 1, 0, "the one-byte file after the refusals");
	if (file_size(one) != 1 || seen[0] != 'x')
		fail_msg("the one-byte file after the refusals: expected 1 byte 'x', saw %lld "
			 "bytes starting 0x%02x",
			 (long long)file_size(one), seen[0]);
	free(want);
	free(seen);
}

static void an_empty_file_gets_the_store_header_and_slots_after_it(void **state)
{
	char path[256];
	int file = ext4_file("empty", O_RDWR, path, sizeof(path));
	int fd = kf_region(1 * MiB, CHUNK);

	(void)state;
	REFUSED(kf_set_backing(fd, file), 0, "SET_BACKING with an empty ext4 file");
	if (file_size(file) < (off_t)HDR)
		fail_msg("store after SET_BACKING: expected at least %u bytes (the header), saw "
			 "%lld",
			 HDR, (long long)file_size(file));
	expect_header(file, "an empty file after SET_BACKING");
	expect_store_works(fd, file, 64 * MiB, 21, "an empty file formatted by SET_BACKING");
	kf_close(fd);

	/* The store kvmm formatted is accepted again by a later region. */
	fd = kf_region(1 * MiB, CHUNK);
	kf_close(file);
	file = kf_track(open(path, O_RDWR | O_CLOEXEC));
	assert_true(file >= 0);
	REFUSED(kf_set_backing(fd, file), 0,
		"SET_BACKING with a file kvmm formatted for an earlier region");
	expect_store_works(fd, file, 64 * MiB, 22, "a store formatted by an earlier region");
	kf_close(fd);
	kf_close(file);
}

static void a_non_empty_file_that_starts_with_the_header_is_accepted(void **state)
{
	char path[256];
	int file = ext4_file("formatted", O_RDWR, path, sizeof(path));
	int fd = kf_region(1 * MiB, CHUNK);

	(void)state;
	write_header(file);
	assert_int_equal(ftruncate(file, 2 * MiB), 0);
	REFUSED(kf_set_backing(fd, file), 0,
		"SET_BACKING with a 2 MiB ext4 file that starts with the store header");
	expect_header(file, "a formatted file after SET_BACKING");
	expect_store_works(fd, file, 64 * MiB, 23, "a file formatted by the test");
	kf_close(fd);
	kf_close(file);
}

/* ---- block devices ------------------------------------------------------ */

/* The /dev node of the NVMe namespace whose controller has this serial, or "" if none. */
static void nvme_by_serial(const char *serial, char *dev, size_t size)
{
	DIR *d = opendir("/sys/class/nvme");
	struct dirent *e;

	dev[0] = 0;
	if (!d)
		return;
	while ((e = readdir(d))) {
		char path[600], s[64] = "";
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/class/nvme/%s/serial", e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fscanf(f, "%63s", s) == 1 && !strcmp(s, serial))
			snprintf(dev, size, "/dev/%sn1", e->d_name);
		fclose(f);
	}
	closedir(d);
}

static int is_mounted(const char *dev)
{
	FILE *f = fopen("/proc/mounts", "r");
	char line[512];
	size_t n = strlen(dev);
	int found = 0;

	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f))
		found = !strncmp(line, dev, n) && line[n] == ' ';
	fclose(f);
	return found;
}

/* An unmounted raw disk opened O_RDWR (run.sh attaches one, serial kvmmraw), or skip. */
static int raw_disk(char *dev, size_t size)
{
	int fd;

	nvme_by_serial("kvmmraw", dev, size);
	if (!dev[0] || is_mounted(dev)) {
		print_message("skip: no unmounted NVMe disk (serial kvmmraw) in this VM (the "
			      "harness's run.sh attaches one)\n");
		skip();
	}
	fd = kf_track(open(dev, O_RDWR | O_CLOEXEC));
	if (fd < 0)
		fail_msg("open %s: %s", dev, strerror(errno));
	return fd;
}

static void set_backing_refuses_an_unformatted_block_device_with_enotempty(void **state)
{
	char dev[300];
	int bdev = raw_disk(dev, sizeof(dev));
	uint8_t *want = malloc(1 * MiB), *seen = malloc(1 * MiB);

	(void)state;
	assert_true(want && seen);
	/* A disk of zeros is not formatted. */
	memset(want, 0, 1 * MiB);
	assert_int_equal(pwrite(bdev, want, 1 * MiB, 0), (ssize_t)(1 * MiB));
	assert_int_equal(fsync(bdev), 0);
	expect_refused(bdev, -ENOTEMPTY, "a block device of zeros");
	/* Nor is one holding someone's data, which must stay as it was. */
	kf_fill(want, 1 * MiB, 0, 31);
	assert_int_equal(pwrite(bdev, want, 1 * MiB, 0), (ssize_t)(1 * MiB));
	assert_int_equal(fsync(bdev), 0);
	expect_refused(bdev, -ENOTEMPTY, "a block device holding data");
	posix_fadvise(bdev, 0, 0, POSIX_FADV_DONTNEED);
	read_exact(bdev, seen, 1 * MiB, 0, "the block device after the refusals");
	if (memcmp(want, seen, 1 * MiB))
		fail_msg("the first MiB of %s after the refusals: expected it unchanged, saw it "
			 "changed",
			 dev);
	free(want);
	free(seen);
	kf_close(bdev);
}

static void a_formatted_block_device_is_accepted_and_keeps_its_header(void **state)
{
	char dev[300];
	int bdev = raw_disk(dev, sizeof(dev)), fd;

	(void)state;
	write_header(bdev);
	fd = kf_region(1 * MiB, CHUNK);
	REFUSED(kf_set_backing(fd, bdev), 0,
		"SET_BACKING with a block device that starts with the store header");
	expect_header(bdev, "a formatted block device after SET_BACKING");
	expect_store_works(fd, bdev, 64 * MiB, 32, "a formatted block device");
	kf_close(fd);
	kf_close(bdev);
	assert_int_equal(kf_sysfs_wait("flash_bytes", 0, 2000), 0);
}

static void set_backing_refuses_an_active_swap_device_with_etxtbsy(void **state)
{
	char dev[300];
	int bdev = raw_disk(dev, sizeof(dev));
	off_t bytes = lseek(bdev, 0, SEEK_END);

	(void)state;
	assert_true(bytes >= (off_t)(16 * MiB));
	write_swap_header(bdev, (uint64_t)bytes / 4096);
	if (swapon(dev, 0))
		fail_msg("swapon %s: %s", dev, strerror(errno));
	snprintf(swap_path, sizeof(swap_path), "%s", dev);
	expect_refused(bdev, -ETXTBSY, "an active swap device opened O_RDWR");
	if (swapoff(dev))
		fail_msg("swapoff %s: %s", dev, strerror(errno));
	swap_path[0] = 0;
	kf_close(bdev);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(set_backing_refuses_a_tmpfs_file_with_eopnotsupp, teardown),
	    cmocka_unit_test_teardown(set_backing_refuses_memfds_plain_and_sealed_with_eopnotsupp,
				      teardown),
	    cmocka_unit_test_teardown(set_backing_refuses_procfs_and_sysfs_files_with_eopnotsupp,
				      teardown),
	    cmocka_unit_test_teardown(set_backing_refuses_a_debugfs_file_with_eopnotsupp, teardown),
	    cmocka_unit_test_teardown(set_backing_refuses_an_fd_opened_o_append_with_einval,
				      teardown),
	    cmocka_unit_test_teardown(
		set_backing_refuses_append_only_and_immutable_files_with_eperm, teardown),
	    cmocka_unit_test_teardown(set_backing_refuses_an_active_swap_file_with_etxtbsy,
				      teardown),
	    cmocka_unit_test_teardown(set_backing_refuses_kvmm_region_fds_with_einval, teardown),
	    cmocka_unit_test_teardown(
		set_backing_refuses_non_empty_unformatted_files_and_leaves_their_bytes, teardown),
	    cmocka_unit_test_teardown(an_empty_file_gets_the_store_header_and_slots_after_it,
				      teardown),
	    cmocka_unit_test_teardown(a_non_empty_file_that_starts_with_the_header_is_accepted,
				      teardown),
	    cmocka_unit_test_teardown(
		set_backing_refuses_an_unformatted_block_device_with_enotempty, teardown),
	    cmocka_unit_test_teardown(a_formatted_block_device_is_accepted_and_keeps_its_header,
				      teardown),
	    cmocka_unit_test_teardown(set_backing_refuses_an_active_swap_device_with_etxtbsy,
				      teardown),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests(tests, kf_setup, NULL);
}
