/* SPDX-License-Identifier: MIT */
/*
 * The LD_PRELOAD shim's regions, for kvmmctl regions: each process under
 * libkvmm-preload.so keeps a registry file (one per pid) in
 * $KVMM_PRELOAD_REGISTRY or /tmp/kvmm-preload-UID, with a "process" line
 * and one "region" line per routed region, as key=value words. Root reads
 * every user's directory; others their own (the directories are 0700).
 * Files of processes that are gone (no such pid, or a pid that started at
 * another time than the file says) are skipped. The files are treated as
 * untrusted text: bounded reads, values copied with their length checked.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/fmt.h"
#include "../common/json.h"
#include "kvmmctl.h"

#define REG_FILE_MAX (256 << 10)

/* The value of @key in a line of key=value words, copied into @buf ("" if absent). */
static const char *word(const char *line, const char *key, char *buf, size_t len)
{
	size_t klen = strlen(key);

	buf[0] = 0;
	for (const char *p = line; *p;) {
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
		p = *end ? end + 1 : end;
	}
	return buf;
}

static uint64_t word_u64(const char *line, const char *key)
{
	char buf[32];

	return strtoull(word(line, key, buf, sizeof(buf)), NULL, 10);
}

static bool all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

/*
 * Whether the process that wrote a file still runs: pid @pid exists and
 * started at @start (a killed process leaves its file; its pid may since
 * belong to another process). @start 0: the pid alone decides.
 */
static bool alive(const char *pid, unsigned long long start)
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

struct reg_out {
	struct jw *w; /* JSON, or NULL for the table */
	bool quiet;   /* only count */
	int processes, regions;
};

static void one_file(struct reg_out *o, const char *pid, const char *text)
{
	char comm[64], mode[16], rule[64], pool[64], call[16], a[32], b[32], c[32], d[32];
	const char *line = text, *proc = NULL;

	for (const char *p = text; *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p))
		if (!strncmp(p, "process ", 8)) {
			proc = p;
			break;
		}
	if (!proc || !alive(pid, word_u64(proc, "start")))
		return; /* not a registry file, or its process is gone */
	word(proc, "comm", comm, sizeof(comm));
	word(proc, "mode", mode, sizeof(mode));
	o->processes++;
	if (o->quiet)
		return;
	if (o->w) {
		jw_obj(o->w, NULL);
		jw_i64(o->w, "pid", strtol(pid, NULL, 10));
		jw_str(o->w, "comm", comm);
		jw_str(o->w, "mode", mode);
		jw_u64(o->w, "routed", word_u64(proc, "routed"));
		jw_u64(o->w, "reserved_bytes", word_u64(proc, "reserved_bytes"));
		jw_u64(o->w, "resident_bytes", word_u64(proc, "resident_bytes"));
		jw_u64(o->w, "resident_peak_bytes", word_u64(proc, "resident_peak_bytes"));
		jw_u64(o->w, "flash_bytes", word_u64(proc, "flash_bytes"));
		jw_u64(o->w, "zero_elided_bytes", word_u64(proc, "zero_elided_bytes"));
		jw_u64(o->w, "fallbacks", word_u64(proc, "fallbacks"));
		jw_arr(o->w, "regions");
	}
	for (; *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : line + strlen(line)) {
		if (strncmp(line, "region ", 7))
			continue;
		word(line, "rule", rule, sizeof(rule));
		word(line, "pool", pool, sizeof(pool));
		word(line, "call", call, sizeof(call));
		o->regions++;
		if (o->w) {
			jw_obj(o->w, NULL);
			jw_u64(o->w, "id", word_u64(line, "id"));
			jw_u64(o->w, "kvmm_id", word_u64(line, "kvmm_id"));
			jw_str(o->w, "rule", rule);
			jw_str(o->w, "pool", pool);
			jw_str(o->w, "call", call);
			jw_u64(o->w, "size_bytes", word_u64(line, "bytes"));
			jw_u64(o->w, "asked_bytes", word_u64(line, "asked_bytes"));
			jw_u64(o->w, "chunk_bytes", word_u64(line, "chunk_bytes"));
			jw_u64(o->w, "resident_bytes", word_u64(line, "resident_bytes"));
			jw_u64(o->w, "flash_bytes", word_u64(line, "flash_bytes"));
			jw_end(o->w);
			continue;
		}
		if (o->regions == 1)
			printf("\nLD_PRELOAD shim regions (libkvmm-preload.so):\n"
			       "%7s %-16s %-6s %-12s %-10s %-7s %10s %9s %10s %10s %7s\n",
			       "PID", "COMM", "MODE", "RULE", "POOL", "CALL", "SIZE", "CHUNK",
			       "RESIDENT", "FLASH", "KVMM-ID");
		printf("%7s %-16s %-6s %-12s %-10s %-7s %10s %9s %10s %10s %7llu\n", pid, comm,
		       mode, rule, pool, call, fmt_bytes(a, sizeof(a), word_u64(line, "bytes")),
		       fmt_bytes(b, sizeof(b), word_u64(line, "chunk_bytes")),
		       fmt_bytes(c, sizeof(c), word_u64(line, "resident_bytes")),
		       fmt_bytes(d, sizeof(d), word_u64(line, "flash_bytes")),
		       (unsigned long long)word_u64(line, "kvmm_id"));
	}
	if (o->w) {
		jw_end(o->w);
		jw_end(o->w);
	}
}

static void one_dir(struct reg_out *o, const char *dir)
{
	struct dirent **ents = NULL;
	int n = scandir(dir, &ents, NULL, alphasort);

	for (int i = 0; i < n; i++) {
		char path[4096 + 300];
		char *text;

		if (all_digits(ents[i]->d_name)) {
			snprintf(path, sizeof(path), "%s/%s", dir, ents[i]->d_name);
			text = slurp(path);
			if (text)
				one_file(o, ents[i]->d_name, text);
			free(text);
		}
		free(ents[i]);
	}
	free(ents);
}

/* Every registry directory this caller may read, in order. */
static void each_dir(struct reg_out *o)
{
	const char *env = getenv("KVMM_PRELOAD_REGISTRY");
	struct dirent **ents = NULL;
	char own[64];
	int n;

	if (env && !strcmp(env, "none"))
		return;
	if (env && env[0] == '/') {
		one_dir(o, env);
		return;
	}
	if (geteuid()) {
		snprintf(own, sizeof(own), "/tmp/kvmm-preload-%u", (unsigned)getuid());
		one_dir(o, own);
		return;
	}
	n = scandir("/tmp", &ents, NULL, alphasort);
	for (int i = 0; i < n; i++) {
		const char *d = ents[i]->d_name;
		char path[300];

		if (!strncmp(d, "kvmm-preload-", 13) && all_digits(d + 13)) {
			snprintf(path, sizeof(path), "/tmp/%s", d);
			one_dir(o, path);
		}
		free(ents[i]);
	}
	free(ents);
}

int ctl_preload_regions(struct jw *w, bool print)
{
	struct reg_out o = {.w = w, .quiet = !print};

	if (w && print)
		jw_arr(w, "preload");
	each_dir(&o);
	if (w && print)
		jw_end(w);
	return o.processes;
}
