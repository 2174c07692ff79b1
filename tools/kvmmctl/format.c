/* SPDX-License-Identifier: MIT */
/*
 * kvmmctl format PATH [--force]: write kvmm's store header into a block
 * device (or file), so KVMM_IOC_SET_BACKING and default_backing accept it,
 * as mkswap prepares a swap area. kvmm.ko formats empty files itself and
 * refuses anything else that lacks the header, so it never overwrites data
 * it did not write; this is the one place a person says "this device is
 * kvmm's". Without --force, a target whose first 64 KiB hold anything but
 * zeros or a kvmm header is left alone.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvmmctl.h"

#define PROBE_BYTES (64 * 1024)

static bool is_kvmm_header(const unsigned char *b)
{
	const struct kvmm_store_header *h = (const void *)b;

	return !memcmp(h->magic, KVMM_STORE_MAGIC, sizeof(h->magic));
}

static bool all_zero(const unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

int cmd_format(const struct ctl *c, int argc, char **argv)
{
	static unsigned char buf[PROBE_BYTES];
	struct kvmm_store_header h = {.version = KVMM_STORE_VERSION,
				      .header_bytes = KVMM_STORE_HEADER_BYTES};
	const char *path = NULL;
	bool force = false;
	struct stat st;
	ssize_t n;
	int fd;

	(void)c;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--force"))
			force = true;
		else if (!path)
			path = argv[i];
		else
			path = NULL, i = argc;
	}
	if (!path) {
		fprintf(stderr, "usage: kvmmctl format PATH [--force]\n");
		return CTL_USAGE;
	}
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "kvmmctl: format: %s: %s\n", path, strerror(errno));
		return CTL_ERR;
	}
	if (fstat(fd, &st) || (!S_ISBLK(st.st_mode) && !S_ISREG(st.st_mode))) {
		fprintf(stderr,
			"kvmmctl: format: %s is neither a block device nor a regular file\n", path);
		close(fd);
		return CTL_ERR;
	}
	n = pread(fd, buf, sizeof(buf), 0);
	if (n < 0) {
		fprintf(stderr, "kvmmctl: format: reading %s: %s\n", path, strerror(errno));
		close(fd);
		return CTL_ERR;
	}
	if (!force && !all_zero(buf, n) && !is_kvmm_header(buf)) {
		fprintf(
		    stderr,
		    "kvmmctl: format: %s holds data in its first %d KiB (a filesystem or partition "
		    "table?); nothing written. Use --force to give all of it to kvmm.\n",
		    path, PROBE_BYTES / 1024);
		close(fd);
		return CTL_ERR;
	}
	memset(buf, 0, KVMM_STORE_HEADER_BYTES);
	memcpy(h.magic, KVMM_STORE_MAGIC, sizeof(h.magic));
	memcpy(buf, &h, sizeof(h));
	if (pwrite(fd, buf, KVMM_STORE_HEADER_BYTES, 0) != KVMM_STORE_HEADER_BYTES || fsync(fd)) {
		fprintf(stderr, "kvmmctl: format: writing %s: %s\n", path, strerror(errno));
		close(fd);
		return CTL_ERR;
	}
	close(fd);
	printf("%s: kvmm store header written (%d bytes); slots follow it\n", path,
	       KVMM_STORE_HEADER_BYTES);
	return CTL_OK;
}
