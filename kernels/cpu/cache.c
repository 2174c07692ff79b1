/*
 * Data cache sizes of this machine, for the decode plan: read once from
 * sysfs (/sys/devices/system/cpu/cpu0/cache/index*), else from sysconf, else
 * left 0 (unknown) so the plan falls back to what it needs least.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu.h"

#define CACHE_SYSFS "/sys/devices/system/cpu/cpu0/cache"

static struct attn_caches caches;
static pthread_once_t caches_once = PTHREAD_ONCE_INIT;

/* First line of a sysfs file; 0 or -1. */
static int read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	int ok;

	if (!f)
		return -1;
	ok = fgets(buf, (int)len, f) != NULL;
	fclose(f);
	buf[strcspn(buf, "\n")] = 0;
	return ok ? 0 : -1;
}

/* "48K", "2048K", "480M" -> bytes; 0 when unreadable. */
static int64_t parse_size(const char *s)
{
	char *end;
	long long v = strtoll(s, &end, 10);

	if (v <= 0)
		return 0;
	if (*end == 'K')
		v <<= 10;
	else if (*end == 'M')
		v <<= 20;
	else if (*end == 'G')
		v <<= 30;
	return v;
}

static void from_sysfs(struct attn_caches *c)
{
	for (int i = 0; i < 16; i++) {
		char path[128], level[16], type[32], size[32], line[16];
		int64_t bytes;

		snprintf(path, sizeof(path), CACHE_SYSFS "/index%d/level", i);
		if (read_line(path, level, sizeof(level)))
			break;
		snprintf(path, sizeof(path), CACHE_SYSFS "/index%d/type", i);
		if (read_line(path, type, sizeof(type)) || !strcmp(type, "Instruction"))
			continue;
		snprintf(path, sizeof(path), CACHE_SYSFS "/index%d/size", i);
		if (read_line(path, size, sizeof(size)))
			continue;
		bytes = parse_size(size);
		if (atoi(level) == 1)
			c->l1d = bytes;
		else if (atoi(level) == 2)
			c->l2 = bytes;
		else if (atoi(level) >= 3)
			c->llc = bytes;
		snprintf(path, sizeof(path), CACHE_SYSFS "/index%d/coherency_line_size", i);
		if (!read_line(path, line, sizeof(line)) && atoi(line) > 0)
			c->line = atoi(line);
	}
	if (c->l1d || c->l2 || c->llc)
		c->source = "sysfs";
}

static void from_sysconf(struct attn_caches *c)
{
#ifdef _SC_LEVEL1_DCACHE_SIZE
	long l1 = sysconf(_SC_LEVEL1_DCACHE_SIZE), l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
	long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE), line = sysconf(_SC_LEVEL1_DCACHE_LINESIZE);

	c->l1d = l1 > 0 ? l1 : 0;
	c->l2 = l2 > 0 ? l2 : 0;
	c->llc = l3 > 0 ? l3 : c->l2;
	c->line = line > 0 ? (int)line : c->line;
	if (c->l1d || c->l2)
		c->source = "sysconf";
#else
	(void)c;
#endif
}

static void caches_init(void)
{
	caches.line = 64;
	caches.source = "unknown";
	from_sysfs(&caches);
	if (!caches.l2)
		from_sysconf(&caches);
	if (!caches.llc)
		caches.llc = caches.l2;
}

const struct attn_caches *attn_caches(void)
{
	pthread_once(&caches_once, caches_init);
	return &caches;
}
