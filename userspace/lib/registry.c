/* SPDX-License-Identifier: MIT */
/*
 * Registry files: one small text file per process (or per object of a
 * process) in a directory that kvmmctl reads, so that a tool can show what
 * libkvmm users are doing without talking to them. The LD_PRELOAD shim's
 * regions and the remote tier's counters are published this way.
 *
 * The default directories are in /tmp, where another user may have made
 * the directory first, or left a symbolic link where the file will be.
 * So the directory must be ours (owner the effective uid, not writable by
 * group or others, not a link), the file is made new (O_EXCL, no link
 * followed) under a temporary name and renamed over the old one: a reader
 * sees a whole file, and a writer never writes through someone's link.
 * Nothing here allocates (the shim calls it from inside malloc).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

const char *kvmm_registry_dir(const char *env, const char *prefix, char *buf, size_t len)
{
	const char *d = getenv(env);

	if (d && !strcmp(d, "none"))
		return NULL;
	if (d && d[0] == '/')
		snprintf(buf, len, "%s", d);
	else
		snprintf(buf, len, "/tmp/%s-%u", prefix, (unsigned)getuid());
	return buf;
}

/* The directory @dir, made if missing, open; -EPERM if it is not safely ours. */
static int registry_open_dir(const char *dir)
{
	struct stat st;
	int dfd;

	if (mkdir(dir, 0700) && errno != EEXIST)
		return -errno;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	if (fstat(dfd, &st) || st.st_uid != geteuid() || (st.st_mode & 022)) {
		close(dfd);
		return -EPERM;
	}
	return dfd;
}

int kvmm_registry_begin(struct kvmm_registry_file *f, const char *dir, const char *name)
{
	int n;

	f->dfd = f->fd = -1;
	n = snprintf(f->name, sizeof(f->name), "%s", name);
	if (n < 0 || (size_t)n >= sizeof(f->name))
		return -ENAMETOOLONG;
	snprintf(f->tmp, sizeof(f->tmp), ".%s.tmp", name);
	f->dfd = registry_open_dir(dir);
	if (f->dfd < 0)
		return f->dfd;
	/* A stale temporary of ours (a writer killed between open and rename). */
	unlinkat(f->dfd, f->tmp, 0);
	f->fd = openat(f->dfd, f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (f->fd < 0) {
		int err = -errno;

		close(f->dfd);
		f->dfd = -1;
		return err;
	}
	return 0;
}

int kvmm_registry_end(struct kvmm_registry_file *f, bool keep)
{
	int err = 0;

	if (f->fd < 0)
		return -EBADF;
	if (close(f->fd))
		err = -errno;
	if (keep && !err && renameat(f->dfd, f->tmp, f->dfd, f->name))
		err = -errno;
	if (!keep || err)
		unlinkat(f->dfd, f->tmp, 0);
	close(f->dfd);
	f->fd = f->dfd = -1;
	return err;
}

void kvmm_registry_remove(const char *dir, const char *name)
{
	int dfd = registry_open_dir(dir);

	if (dfd < 0)
		return;
	unlinkat(dfd, name, 0);
	close(dfd);
}

unsigned long long kvmm_proc_start_time(void)
{
	char buf[1024], *p;
	int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	p = strrchr(buf, ')'); /* the comm may hold anything, even ')' */
	for (int field = 2; p && field < 22; field++)
		p = strchr(p + 1, ' ');
	return p ? strtoull(p + 1, NULL, 10) : 0;
}

const char *kvmm_proc_comm(char *buf, size_t len)
{
	int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, len - 1) : -1;

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		n = 0;
	buf[n] = 0;
	if (n && buf[n - 1] == '\n')
		buf[--n] = 0;
	/* One word in the files' key=value lines. */
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] == ' ' || buf[i] == '=' || buf[i] == '\t' || buf[i] == '\n')
			buf[i] = '_';
	return buf;
}
