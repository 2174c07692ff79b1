/*
 * Flash backing store: KVMM_IOC_SET_BACKING validation, EBUSY while chunks
 * hold slots, the module's own file reference, the sysfs default backing
 * file, and a raw block device as backing (formatted with the store header
 * first; an unformatted one is refused).
 */
#include "common/kt_flash.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static void set_backing_refuses_fds_not_open_read_write_with_ebadf(void **state)
{
	int fd = kf_region(1 * MiB, 64 * KiB);
	char path[256];
	int rd, wr;

	(void)state;
	snprintf(path, sizeof(path), "%s/kvmm-ro-%d", kf_flash_dir(), (int)getpid());
	wr = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(wr >= 0);
	rd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(rd >= 0);
	unlink(path);
	REFUSED(kf_set_backing(fd, rd), -EBADF, "SET_BACKING with a read-only fd");
	REFUSED(kf_set_backing(fd, wr), -EBADF, "SET_BACKING with a write-only fd");
	REFUSED(kf_set_backing(fd, 1000000), -EBADF, "SET_BACKING with an fd that is not open");
	/* Nothing was set: EVICT has no backing store. */
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_ENSURE, 0, 64 * KiB), 0);
	REFUSED(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 64 * KiB), -ENODEV,
		"EVICT after refused SET_BACKING calls");
	kf_close(rd);
	kf_close(wr);
	kf_close(fd);
}

static void set_backing_refuses_pipes_sockets_and_char_devices_with_einval(void **state)
{
	int fd = kf_region(1 * MiB, 64 * KiB);
	char fifo[256];
	int sv[2], ff, null;

	(void)state;
	/* A FIFO opened O_RDWR and a socket are open for reading and writing. */
	snprintf(fifo, sizeof(fifo), "/tmp/kvmm-fifo-%d", (int)getpid());
	assert_int_equal(mkfifo(fifo, 0600), 0);
	ff = open(fifo, O_RDWR | O_CLOEXEC);
	assert_true(ff >= 0);
	unlink(fifo);
	REFUSED(kf_set_backing(fd, ff), -EINVAL, "SET_BACKING with a FIFO opened O_RDWR");
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	REFUSED(kf_set_backing(fd, sv[0]), -EINVAL, "SET_BACKING with a socket");
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	assert_true(null >= 0);
	REFUSED(kf_set_backing(fd, null), -EINVAL, "SET_BACKING with /dev/null");
	/* A region fd is not a file to back onto either. */
	REFUSED(kf_set_backing(fd, fd), -EINVAL, "SET_BACKING with a kvmm region fd");
	kf_close(ff);
	kf_close(sv[0]);
	kf_close(sv[1]);
	kf_close(null);
	kf_close(fd);
}

static void set_backing_refuses_a_directory(void **state)
{
	int fd = kf_region(1 * MiB, 64 * KiB);
	int dir = open(kf_flash_dir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int err;

	(void)state;
	assert_true(dir >= 0);
	/*
	 * A directory cannot be opened read-write, so it fails both checks;
	 * the ABI does not order them: either EINVAL or EBADF is right.
	 */
	err = kf_set_backing(fd, dir);
	if (err != -EINVAL && err != -EBADF)
		fail_msg("SET_BACKING with a directory: expected EINVAL (or EBADF), saw %s",
			 err ? strerror(-err) : "success");
	kf_close(dir);
	kf_close(fd);
}

static void set_backing_refuses_unknown_flags_and_reserved_fields_with_einval(void **state)
{
	int fd = kf_region(1 * MiB, 64 * KiB);
	int file = kf_backing_open(kf_flash_dir());
	struct kvmm_backing b;

	(void)state;
	b = (struct kvmm_backing){.fd = file, .flags = 1};
	assert_int_equal(ioctl(fd, KVMM_IOC_SET_BACKING, &b), -1);
	assert_int_equal(errno, EINVAL);
	b = (struct kvmm_backing){.fd = file, .flags = 0x80000000u};
	assert_int_equal(ioctl(fd, KVMM_IOC_SET_BACKING, &b), -1);
	assert_int_equal(errno, EINVAL);
	b = (struct kvmm_backing){.fd = file, .reserved0 = 1};
	assert_int_equal(ioctl(fd, KVMM_IOC_SET_BACKING, &b), -1);
	assert_int_equal(errno, EINVAL);
	for (int i = 0; i < 2; i++) {
		b = (struct kvmm_backing){.fd = file};
		b.reserved[i] = 1ULL << 63;
		assert_int_equal(ioctl(fd, KVMM_IOC_SET_BACKING, &b), -1);
		assert_int_equal(errno, EINVAL);
	}
	/* None of them set anything. */
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_ENSURE, 0, 64 * KiB), 0);
	REFUSED(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 64 * KiB), -ENODEV,
		"EVICT after refused SET_BACKING calls");
	/* The same call with zeros works. */
	b = (struct kvmm_backing){.fd = file};
	assert_int_equal(ioctl(fd, KVMM_IOC_SET_BACKING, &b), 0);
	/* A bad pointer is EFAULT. */
	assert_int_equal(ioctl(fd, KVMM_IOC_SET_BACKING, (void *)16), -1);
	assert_int_equal(errno, EFAULT);
	kf_close(file);
	kf_close(fd);
}

static void set_backing_on_the_device_fd_gives_enotty(void **state)
{
	int dev = kt_dev_open();
	int file = kf_backing_open(kf_flash_dir());

	(void)state;
	REFUSED(kf_set_backing(dev, file), -ENOTTY, "SET_BACKING on /dev/kvmm");
	REFUSED(kt_range_ioctl(dev, KVMM_IOC_EVICT, 0, 4096), -ENOTTY, "EVICT on /dev/kvmm");
	REFUSED(kt_range_ioctl(dev, KVMM_IOC_PREFETCH, 0, 4096), -ENOTTY, "PREFETCH on /dev/kvmm");
	REFUSED(kt_range_ioctl(dev, KVMM_IOC_WAIT, 0, 4096), -ENOTTY, "WAIT on /dev/kvmm");
	kf_close(file);
	kf_close(dev);
}

static void evict_without_backing_gives_enodev_and_keeps_the_data(void **state)
{
	int fd = kf_region(1 * MiB, 64 * KiB);
	uint8_t *p = kf_map(fd, 0, 1 * MiB);

	(void)state;
	kf_fill(p, 1 * MiB, 0, 1);
	REFUSED(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 1 * MiB), -ENODEV,
		"EVICT of a region without backing");
	kf_expect_states(fd, 0, 16, KVMM_CHUNK_RESIDENT | KVMM_CHUNK_DIRTY, "after refused EVICT");
	assert_true(kf_check(p, 1 * MiB, 0, 1, "after refused EVICT"));
	kf_unmap(p, 1 * MiB);
	kf_close(fd);
}

static void range_checks_apply_to_evict_prefetch_and_wait(void **state)
{
	int file, fd = kf_region_backed(1 * MiB, 64 * KiB, &file);
	const unsigned long cmds[] = {KVMM_IOC_EVICT, KVMM_IOC_PREFETCH, KVMM_IOC_WAIT};
	const char *names[] = {"EVICT", "PREFETCH", "WAIT"};

	(void)state;
	for (int i = 0; i < 3; i++) {
		struct kvmm_range r = {.offset = 0, .length = 64 * KiB, .flags = 1};
		char what[64];

		snprintf(what, sizeof(what), "%s of an unaligned offset", names[i]);
		REFUSED(kt_range_ioctl(fd, cmds[i], 4096, 64 * KiB), -EINVAL, what);
		snprintf(what, sizeof(what), "%s of length 0", names[i]);
		REFUSED(kt_range_ioctl(fd, cmds[i], 0, 0), -EINVAL, what);
		snprintf(what, sizeof(what), "%s past the end", names[i]);
		REFUSED(kt_range_ioctl(fd, cmds[i], 960 * KiB, 128 * KiB), -EINVAL, what);
		snprintf(what, sizeof(what), "%s with offset + length overflowing", names[i]);
		REFUSED(kt_range_ioctl(fd, cmds[i], 64 * KiB, ~0ULL - 64 * KiB + 1), -EINVAL, what);
		assert_int_equal(ioctl(fd, cmds[i], &r), -1);
		assert_int_equal(errno, EINVAL);
		r.flags = 0;
		r.reserved[1] = 1;
		assert_int_equal(ioctl(fd, cmds[i], &r), -1);
		assert_int_equal(errno, EINVAL);
		/* On chunks that are empty each is a no-op. */
		assert_int_equal(kt_range_ioctl(fd, cmds[i], 0, 1 * MiB), 0);
	}
	kf_expect_states(fd, 0, 16, KVMM_CHUNK_EMPTY, "after no-op EVICT/PREFETCH/WAIT");
	assert_int_equal(kf_stat(fd).flash_bytes, 0);
	kf_close(file);
	kf_close(fd);
}

static void backing_change_is_busy_while_chunks_hold_flash_slots(void **state)
{
	int file, fd = kf_region_backed(1 * MiB, 64 * KiB, &file);
	int other = kf_backing_open(kf_flash_dir());
	uint8_t *p = kf_map(fd, 0, 1 * MiB);

	(void)state;
	kf_fill(p, 1 * MiB, 0, 2);
	/* Resident chunks hold no slot yet: re-setting and clearing work. */
	assert_int_equal(kf_set_backing(fd, other), 0);
	assert_int_equal(kf_set_backing(fd, KVMM_BACKING_NONE), 0);
	assert_int_equal(kf_set_backing(fd, file), 0);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 64 * KiB), 0);
	REFUSED(kf_set_backing(fd, other), -EBUSY, "re-SET_BACKING with one chunk on flash");
	REFUSED(kf_set_backing(fd, KVMM_BACKING_NONE), -EBUSY,
		"clearing the backing with one chunk on flash");
	REFUSED(kf_set_backing(fd, file), -EBUSY, "SET_BACKING to the same file while in use");
	/* Read back, the chunk keeps its clean flash copy: still busy. */
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_PREFETCH, 0, 64 * KiB), 0);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_WAIT, 0, 64 * KiB), 0);
	if (kf_stat(fd).flash_bytes)
		REFUSED(kf_set_backing(fd, KVMM_BACKING_NONE), -EBUSY,
			"clearing the backing while a resident chunk keeps a flash copy");
	/* The refusals changed nothing: data is intact and EVICT still goes to file. */
	assert_true(kf_check(p, 1 * MiB, 0, 2, "after refused backing changes"));
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 1 * MiB), 0);
	assert_int_equal(kf_stat(fd).flash_bytes, 1 * MiB);
	/* other got only the store header when it was set; no chunk went there. */
	if (lseek(other, 0, SEEK_END) > (off_t)KVMM_STORE_HEADER_BYTES)
		fail_msg("the store set and then replaced: expected at most the %u header bytes, "
			 "saw %lld bytes",
			 KVMM_STORE_HEADER_BYTES, (long long)lseek(other, 0, SEEK_END));
	assert_true(lseek(file, 0, SEEK_END) >= (off_t)(1 * MiB));
	/* DISCARD frees every slot; then the backing can be cleared. */
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_DISCARD, 0, 1 * MiB), 0);
	assert_int_equal(kf_stat(fd).flash_bytes, 0);
	assert_int_equal(kf_set_backing(fd, KVMM_BACKING_NONE), 0);
	kf_fill(p, 64 * KiB, 0, 3);
	REFUSED(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 64 * KiB), -ENODEV,
		"EVICT after clearing the backing");
	kf_unmap(p, 1 * MiB);
	kf_close(other);
	kf_close(file);
	kf_close(fd);
}

static void closing_the_backing_fd_after_set_backing_changes_nothing(void **state)
{
	int file, fd = kf_region_backed(4 * MiB, 256 * KiB, &file);
	uint8_t *p = kf_map(fd, 0, 4 * MiB);
	int decoy;

	(void)state;
	kf_fill(p, 4 * MiB, 0, 4);
	kf_close(file);
	/* Another file now takes the same fd number: the module must not look it up again. */
	decoy = kf_backing_open(kf_flash_dir());
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 4 * MiB), 0);
	kf_expect_states(fd, 0, 16, KVMM_CHUNK_FLASH, "after EVICT with the caller's fd closed");
	assert_int_equal(kf_stat(fd).flash_bytes, 4 * MiB);
	assert_true(lseek(decoy, 0, SEEK_END) == 0);
	assert_true(kf_check(p, 4 * MiB, 0, 4, "read back with the caller's fd closed"));
	/* And again after prefetching. */
	kf_fill(p, 4 * MiB, 0, 5);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 4 * MiB), 0);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_PREFETCH, 0, 4 * MiB), 0);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_WAIT, 0, 4 * MiB), 0);
	assert_true(kf_check(p, 4 * MiB, 0, 5, "second round with the caller's fd closed"));
	assert_true(lseek(decoy, 0, SEEK_END) == 0);
	kf_close(decoy);
	kf_unmap(p, 4 * MiB);
	kf_close(fd);
	assert_int_equal(kf_sysfs_wait("flash_bytes", 0, 2000), 0);
}

static void default_backing_serves_regions_without_their_own(void **state)
{
	char path[256], buf[300];
	int fd, own, own_file, file;
	uint8_t *p;
	struct stat sb, sb2;

	(void)state;
	snprintf(path, sizeof(path), "%s/kvmm-default-%d", kf_flash_dir(), (int)getpid());
	file = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(file >= 0);
	kf_sysfs_str("default_backing", buf, sizeof(buf));
	assert_string_equal(buf, "none");
	assert_int_equal(kt_sysfs_write("default_backing", path), 0);
	kf_sysfs_str("default_backing", buf, sizeof(buf));
	assert_string_equal(buf, path);
	/* A path that is not a usable file is refused and changes nothing. */
	assert_true(kt_sysfs_write("default_backing", "/nonexistent/kvmm") < 0);
	assert_true(kt_sysfs_write("default_backing", kf_flash_dir()) < 0);
	kf_sysfs_str("default_backing", buf, sizeof(buf));
	assert_string_equal(buf, path);

	fd = kf_region(2 * MiB, 64 * KiB);
	p = kf_map(fd, 0, 2 * MiB);
	kf_fill(p, 2 * MiB, 0, 6);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 2 * MiB), 0);
	kf_expect_states(fd, 0, 32, KVMM_CHUNK_FLASH, "after EVICT to the default backing");
	assert_int_equal(fstat(file, &sb), 0);
	if (sb.st_size < (off_t)(2 * MiB))
		fail_msg("default backing file: expected at least 2 MiB, saw %lld bytes",
			 (long long)sb.st_size);
	assert_int_equal(kf_sysfs_wait("flash_bytes", 2 * MiB, 2000), 2 * MiB);
	/* A region with its own backing does not use the default file. */
	own = kf_region_backed(1 * MiB, 64 * KiB, &own_file);
	assert_int_equal(kt_range_ioctl(own, KVMM_IOC_ENSURE, 0, 1 * MiB), 0);
	assert_int_equal(kt_range_ioctl(own, KVMM_IOC_EVICT, 0, 1 * MiB), 0);
	assert_true(lseek(own_file, 0, SEEK_END) >= (off_t)(1 * MiB));
	assert_int_equal(fstat(file, &sb2), 0);
	if (sb2.st_size != sb.st_size || sb2.st_blocks != sb.st_blocks)
		fail_msg("default backing file changed by a region with its own: "
			 "size %lld -> %lld, blocks %lld -> %lld",
			 (long long)sb.st_size, (long long)sb2.st_size, (long long)sb.st_blocks,
			 (long long)sb2.st_blocks);
	kf_close(own);
	kf_close(own_file);
	assert_true(kf_check(p, 2 * MiB, 0, 6, "read back from the default backing"));
	kf_unmap(p, 2 * MiB);
	kf_close(fd);
	assert_int_equal(kf_sysfs_wait("flash_bytes", 0, 2000), 0);
	assert_int_equal(kt_sysfs_write("default_backing", "none"), 0);
	kf_sysfs_str("default_backing", buf, sizeof(buf));
	assert_string_equal(buf, "none");
	fd = kf_region(1 * MiB, 64 * KiB);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_ENSURE, 0, 64 * KiB), 0);
	REFUSED(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 64 * KiB), -ENODEV,
		"EVICT after default_backing was set to none");
	kf_close(fd);
	kf_close(file);
	unlink(path);
}

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

/* The unformatted, unmounted disk run.sh attaches (serial kvmmraw), opened O_RDWR; or skip. */
static int raw_disk(char *dev, size_t size)
{
	int bdev;

	nvme_by_serial("kvmmraw", dev, size);
	if (!dev[0]) {
		print_message("skip: no unused NVMe disk (serial kvmmraw) in this VM (the "
			      "harness's run.sh attaches one)\n");
		skip();
	}
	bdev = kf_track(open(dev, O_RDWR | O_CLOEXEC));
	if (bdev < 0)
		fail_msg("open %s: %s", dev, strerror(errno));
	return bdev;
}

/* Write KVMM_STORE_HEADER_BYTES at offset 0: the header, the rest zero. */
static void format_store(int fd, int valid)
{
	static uint8_t buf[KVMM_STORE_HEADER_BYTES];
	struct kvmm_store_header h;

	memset(buf, 0, sizeof(buf));
	if (valid) {
		memset(&h, 0, sizeof(h));
		memcpy(h.magic, KVMM_STORE_MAGIC, sizeof(h.magic));
		h.version = KVMM_STORE_VERSION;
		h.header_bytes = KVMM_STORE_HEADER_BYTES;
		memcpy(buf, &h, sizeof(h));
	}
	assert_int_equal(pwrite(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	assert_int_equal(fsync(fd), 0);
}

static void an_unformatted_block_device_is_refused_with_enotempty(void **state)
{
	char dev[300];
	int bdev = raw_disk(dev, sizeof(dev));
	int fd = kf_region(4 * MiB, 256 * KiB);

	(void)state;
	format_store(bdev, 0);
	REFUSED(kf_set_backing(fd, bdev), -ENOTEMPTY,
		"SET_BACKING with a block device that does not start with the store header");
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_ENSURE, 0, 256 * KiB), 0);
	REFUSED(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 256 * KiB), -ENODEV,
		"EVICT after SET_BACKING with an unformatted block device was refused");
	kf_close(fd);
	kf_close(bdev);
}

static void block_device_backing_round_trips_the_data(void **state)
{
	char dev[300];
	int bdev, fd;
	uint8_t *p, *buf;
	uint64_t found = 0, want = kf_word(0, 7);

	(void)state;
	bdev = raw_disk(dev, sizeof(dev));
	/* A block device must be formatted (as kvmmctl format does) before use. */
	format_store(bdev, 1);
	fd = kf_region(4 * MiB, 256 * KiB);
	assert_int_equal(kf_set_backing(fd, bdev), 0);
	p = kf_map(fd, 0, 4 * MiB);
	kf_fill(p, 4 * MiB, 0, 7);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_EVICT, 0, 4 * MiB), 0);
	kf_expect_states(fd, 0, 16, KVMM_CHUNK_FLASH, "after EVICT to a block device");
	assert_int_equal(kf_stat(fd).flash_bytes, 4 * MiB);
	/* The data is on the device: find chunk 0's first words in its first 64 MiB. */
	buf = malloc(1 * MiB);
	assert_non_null(buf);
	for (uint64_t off = 0; off < 64 * MiB && !found; off += 1 * MiB) {
		assert_int_equal(pread(bdev, buf, 1 * MiB, off), (ssize_t)(1 * MiB));
		for (uint64_t i = 0; i < 1 * MiB; i += 4096)
			if (!memcmp(buf + i, &want, 8)) {
				found = 1;
				break;
			}
	}
	/* ...and the header kvmm did not write is still there. */
	assert_int_equal(pread(bdev, buf, 8, 0), 8);
	if (memcmp(buf, KVMM_STORE_MAGIC, 8))
		fail_msg("block device after EVICT: expected the store magic at offset 0, saw "
			 "\"%.8s\"",
			 (char *)buf);
	free(buf);
	assert_true(found);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_PREFETCH, 0, 2 * MiB), 0);
	assert_int_equal(kt_range_ioctl(fd, KVMM_IOC_WAIT, 0, 2 * MiB), 0);
	assert_true(kf_check(p, 4 * MiB, 0, 7, "read back from a block device"));
	kf_unmap(p, 4 * MiB);
	kf_close(fd);
	kf_close(bdev);
	assert_int_equal(kf_sysfs_wait("flash_bytes", 0, 2000), 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(set_backing_refuses_fds_not_open_read_write_with_ebadf,
				      kf_teardown),
	    cmocka_unit_test_teardown(
		set_backing_refuses_pipes_sockets_and_char_devices_with_einval, kf_teardown),
	    cmocka_unit_test_teardown(set_backing_refuses_a_directory, kf_teardown),
	    cmocka_unit_test_teardown(
		set_backing_refuses_unknown_flags_and_reserved_fields_with_einval, kf_teardown),
	    cmocka_unit_test_teardown(set_backing_on_the_device_fd_gives_enotty, kf_teardown),
	    cmocka_unit_test_teardown(evict_without_backing_gives_enodev_and_keeps_the_data,
				      kf_teardown),
	    cmocka_unit_test_teardown(range_checks_apply_to_evict_prefetch_and_wait, kf_teardown),
	    cmocka_unit_test_teardown(backing_change_is_busy_while_chunks_hold_flash_slots,
				      kf_teardown),
	    cmocka_unit_test_teardown(closing_the_backing_fd_after_set_backing_changes_nothing,
				      kf_teardown),
	    cmocka_unit_test_teardown(default_backing_serves_regions_without_their_own,
				      kf_teardown),
	    cmocka_unit_test_teardown(an_unformatted_block_device_is_refused_with_enotempty,
				      kf_teardown),
	    cmocka_unit_test_teardown(block_device_backing_round_trips_the_data, kf_teardown),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests(tests, kf_setup, NULL);
}
