/* SPDX-License-Identifier: MIT */
/*
 * Registry files that libkvmm's users write for kvmmctl (the LD_PRELOAD
 * shim's regions, the remote tier's counters): lines of key=value words,
 * one file per process or per object, in $ENV or /tmp/PREFIX-UID. Root reads
 * every user's directory; others their own. Files of processes that are
 * gone (no such pid, or a pid that started at another time than the file
 * says) are skipped. The files are untrusted text: bounded reads, values
 * copied with their length checked, nothing unprintable shown.
 */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvmmctl.h"

#define REG_FILE_MAX (256 << 10)

const char *reg_word(const char *line, const char *key, char *buf, size_t len)
{
	size_t klen = strlen(key);

	buf[0] = 0;
	for (const char *p = line; *p && *p != '\n';) {
		const char *end = p;

		while (*end && *end != ' ' && *end != '\n')
			end++;
		if ((size_t)(end - p) > klen && !strncmp(p, key, klen) && p[klen] == '=') {
			size_t n = (size_t)(end - p) - klen - 1;

			if (n >= len)
				n = len - 1;
			memcpy(buf, p + klen + 1, n);
			buf[n] = 0;
			/* Shown on a terminal: nothing that is not printable. */
			for (size_t i = 0; i < n; i++)
				if (!isprint((unsigned char)buf[i]))
					buf[i] = '?';
			return buf;
		}
		p = *end == ' ' ? end + 1 : end;
	}
	return buf;
}

uint64_t reg_u64(const char *line, const char *key)
{
	char buf[32];

	return strtoull(reg_word(line, key, buf, sizeof(buf)), NULL, 10);
}

const char *reg_line(const char *text, const char *tag)
{
	size_t n = strlen(tag);

	for (const char *p = text; *p;) {
		if (!strncmp(p, tag, n) && p[n] == ' ')
			return p;
		p = strchr(p, '\n');
		if (!p)
			break;
		p++;
	}
	return NULL;
}

static bool all_digits(const char *s, size_t n)
{
	if (!n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]))
			return false;
	return true;
}

bool ctl_registry_alive(const char *pid, unsigned long long start)
{
	char path[300], buf[1024], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%.255s/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	if (!start)
		return true;
	buf[n] = 0;
	p = strrchr(buf, ')');
	for (int field = 2; p && field < 22; field++)
		p = strchr(p + 1, ' ');
	return p && strtoull(p + 1, NULL, 10) == start;
}

/* Reads at most REG_FILE_MAX bytes of @path; malloc'ed, NUL-terminated, or NULL. */
static char *slurp(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	char *buf;
	size_t n = 0;
	ssize_t got;

	if (fd < 0)
		return NULL;
	buf = malloc(REG_FILE_MAX + 1);
	while (buf && n < REG_FILE_MAX && (got = read(fd, buf + n, REG_FILE_MAX - n)) > 0)
		n += (size_t)got;
	close(fd);
	if (buf)
		buf[n] = 0;
	return buf;
}

/* Files named PID or PID-N: @fn gets the pid part. */
static void one_dir(const char *dir, ctl_registry_fn fn, void *arg)
{
	struct dirent **ents = NULL;
	int n = scandir(dir, &ents, NULL, alphasort);

	for (int i = 0; i < n; i++) {
		const char *d = ents[i]->d_name, *dash = strchr(d, '-');
		size_t plen = dash ? (size_t)(dash - d) : strlen(d);

		if (plen < 16 && all_digits(d, plen) && (!dash || all_digits(dash + 1, strlen(dash + 1)))) {
			char path[4096 + 300], pid[16];
			char *text;

			memcpy(pid, d, plen);
			pid[plen] = 0;
			snprintf(path, sizeof(path), "%s/%s", dir, d);
			text = slurp(path);
			if (text)
				fn(arg, pid, text);
			free(text);
		}
		free(ents[i]);
	}
	free(ents);
}

void ctl_registry_each(const char *env, const char *prefix, ctl_registry_fn fn, void *arg)
{
	const char *e = getenv(env);
	struct dirent **ents = NULL;
	size_t plen = strlen(prefix);
	char own[300];
	int n;

	if (e && !strcmp(e, "none"))
		return;
	if (e && e[0] == '/') {
		one_dir(e, fn, arg);
		return;
	}
	if (geteuid()) {
		snprintf(own, sizeof(own), "/tmp/%s-%u", prefix, (unsigned)getuid());
		one_dir(own, fn, arg);
		return;
	}
	n = scandir("/tmp", &ents, NULL, alphasort);
	for (int i = 0; i < n; i++) {
		const char *d = ents[i]->d_name;

		if (!strncmp(d, prefix, plen) && d[plen] == '-' &&
		    all_digits(d + plen + 1, strlen(d + plen + 1))) {
			snprintf(own, sizeof(own), "/tmp/%s", d);
			one_dir(own, fn, arg);
		}
		free(ents[i]);
	}
	free(ents);
}
