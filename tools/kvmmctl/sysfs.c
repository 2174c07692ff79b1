/* SPDX-License-Identifier: MIT */
/* Reading and writing /sys/kernel/kvmm, and what the host says about modules. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "../common/fmt.h"
#include "kvmmctl.h"

static void ctl_path(const struct ctl *c, const char *knob, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", c->sysfs, knob);
}

bool ctl_loaded(const struct ctl *c)
{
	char p[512];

	ctl_path(c, "version", p, sizeof(p));
	return access(p, R_OK) == 0;
}

int ctl_read(const struct ctl *c, const char *knob, char *buf, size_t len)
{
	char p[512];
	ssize_t n;
	int fd;

	ctl_path(c, knob, p, sizeof(p));
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	if (n < 0) {
		n = -errno;
		close(fd);
		return (int)n;
	}
	close(fd);
	buf[n] = 0;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = 0;
	return 0;
}

int ctl_read_u64(const struct ctl *c, const char *knob, uint64_t *v)
{
	char buf[64];
	int ret = ctl_read(c, knob, buf, sizeof(buf));

	if (ret)
		return ret;
	if (!strcmp(buf, "max")) {
		*v = KVMM_BUDGET_UNLIMITED;
		return 0;
	}
	return parse_u64(buf, v);
}

bool ctl_exists(const struct ctl *c, const char *knob)
{
	char p[512];

	ctl_path(c, knob, p, sizeof(p));
	return access(p, F_OK) == 0;
}

int ctl_write(const struct ctl *c, const char *knob, const char *val)
{
	char p[512];
	size_t len = strlen(val);
	ssize_t n;
	int fd, ret = 0;

	ctl_path(c, knob, p, sizeof(p));
	fd = open(p, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = write(fd, val, len);
	if (n < 0)
		ret = -errno;
	else if ((size_t)n != len)
		ret = -EIO;
	if (close(fd) && !ret)
		ret = -errno;
	return ret;
}

/* Natural order: node2 before node10. */
static int name_cmp(const void *a, const void *b)
{
	const char *x = a, *y = b;

	while (*x && *y) {
		if (*x >= '0' && *x <= '9' && *y >= '0' && *y <= '9') {
			unsigned long nx = strtoul(x, (char **)&x, 10);
			unsigned long ny = strtoul(y, (char **)&y, 10);

			if (nx != ny)
				return nx < ny ? -1 : 1;
			continue;
		}
		if (*x != *y)
			return (unsigned char)*x < (unsigned char)*y ? -1 : 1;
		x++;
		y++;
	}
	return *x ? 1 : *y ? -1 : 0;
}

int ctl_list(const struct ctl *c, const char *dir, char names[][64], int max)
{
	char p[512];
	struct dirent *e;
	DIR *d;
	int n = 0;

	ctl_path(c, dir, p, sizeof(p));
	d = opendir(p);
	if (!d)
		return -errno;
	while ((e = readdir(d)) && n < max) {
		if (e->d_name[0] == '.' || strlen(e->d_name) >= 64)
			continue;
		snprintf(names[n++], 64, "%s", e->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(names[0]), name_cmp);
	return n;
}

bool ctl_in_proc_modules(void)
{
	char line[256];
	bool found = false;
	FILE *f = fopen("/proc/modules", "re");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = strncmp(line, "kvmm ", 5) == 0;
	fclose(f);
	return found;
}

bool ctl_modules_supported(void)
{
	return access("/proc/modules", R_OK) == 0;
}

const char *ctl_module_file(char *buf, size_t len)
{
	static const char *const where[] = {"extra/kvmm.ko", "updates/kvmm.ko",
					    "kernel/drivers/misc/kvmm.ko", "extra/kvmm.ko.xz"};
	struct utsname u;

	if (uname(&u))
		return NULL;
	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		snprintf(buf, len, "/lib/modules/%s/%s", u.release, where[i]);
		if (access(buf, R_OK) == 0)
			return buf;
	}
	return NULL;
}

bool ctl_userfaultfd_usable(void)
{
#ifdef SYS_userfaultfd
	long fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd >= 0) {
		close((int)fd);
		return true;
	}
#endif
	return false;
}
