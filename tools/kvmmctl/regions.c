/* SPDX-License-Identifier: MIT */
/*
 * kvmmctl regions and top: every live region from KVMM_IOC_REGION_LIST
 * (ids, owners and bytes per tier; no kernel pointers), once or refreshed;
 * regions also lists the LD_PRELOAD shim's regions (preload.c), which in
 * user mode exist without kvmm.ko.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "../common/fmt.h"
#include "../common/json.h"
#include "snapshot.h"

int ctl_region_list(const struct ctl *c, struct kvmm_region_info **infos)
{
	struct kvmm_region_list l;
	struct kvmm_region_info *r = NULL;
	int fd, ret = 0;

	*infos = NULL;
	fd = open(c->dev, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* Count, then fetch; retry if regions appeared in between. */
	for (int tries = 0; tries < 8; tries++) {
		uint32_t cap;

		memset(&l, 0, sizeof(l));
		if (ioctl(fd, KVMM_IOC_REGION_LIST, &l)) {
			ret = -errno;
			break;
		}
		cap = l.count + 16;
		free(r);
		r = calloc(cap, sizeof(*r));
		if (!r) {
			ret = -ENOMEM;
			break;
		}
		memset(&l, 0, sizeof(l));
		l.regions = (uint64_t)(uintptr_t)r;
		l.capacity = cap;
		if (ioctl(fd, KVMM_IOC_REGION_LIST, &l)) {
			ret = -errno;
			break;
		}
		if (l.count <= cap) {
			ret = (int)l.count;
			break;
		}
	}
	close(fd);
	if (ret < 0) {
		free(r);
		return ret;
	}
	*infos = r;
	return ret;
}

enum sort_key { SORT_USAGE, SORT_ID, SORT_SIZE, SORT_FLASH };
static enum sort_key sort_by;

static uint64_t usage(const struct kvmm_region_info *r)
{
	return r->resident_bytes + r->flash_resident_bytes + r->shared_bytes;
}

static int region_cmp(const void *a, const void *b)
{
	const struct kvmm_region_info *x = a, *y = b;
	uint64_t vx, vy;

	switch (sort_by) {
	case SORT_ID:
		return x->id < y->id ? -1 : x->id > y->id;
	case SORT_SIZE:
		vx = x->size, vy = y->size;
		break;
	case SORT_FLASH:
		vx = x->flash_bytes, vy = y->flash_bytes;
		break;
	default:
		vx = usage(x), vy = usage(y);
	}
	if (vx != vy)
		return vx > vy ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static void regions_json(struct jw *w, const struct kvmm_region_info *r, int n)
{
	jw_arr(w, "regions");
	for (int i = 0; i < n; i++) {
		jw_obj(w, NULL);
		jw_u64(w, "id", r[i].id);
		jw_i64(w, "owner_pid", r[i].owner_pid);
		jw_str(w, "owner_comm", r[i].owner_comm);
		jw_u64(w, "size_bytes", r[i].size);
		jw_u64(w, "chunk_bytes", r[i].chunk_bytes);
		jw_i64(w, "numa_node", r[i].numa_node);
		jw_u64(w, "priority", r[i].priority);
		jw_u64(w, "mappings", r[i].mappings);
		jw_u64(w, "resident_bytes", r[i].resident_bytes);
		jw_u64(w, "pinned_bytes", r[i].pinned_bytes);
		jw_u64(w, "flash_bytes", r[i].flash_bytes);
		jw_u64(w, "flash_only_bytes", r[i].flash_resident_bytes);
		jw_u64(w, "shared_bytes", r[i].shared_bytes);
		jw_end(w);
	}
	jw_end(w);
}

static void regions_table(const struct kvmm_region_info *r, int n)
{
	char sz[32], ch[32], res[32], pin[32], fl[32], flo[32], sh[32];

	printf("%5s %7s %-16s %10s %9s %10s %10s %10s %10s %10s %4s\n", "ID", "PID", "COMM", "SIZE",
	       "CHUNK", "RESIDENT", "PINNED", "FLASH", "FLASH-ONLY", "SHARED", "MAPS");
	for (int i = 0; i < n; i++)
		printf("%5u %7d %-16s %10s %9s %10s %10s %10s %10s %10s %4u\n", r[i].id,
		       r[i].owner_pid, r[i].owner_comm, fmt_bytes(sz, sizeof(sz), r[i].size),
		       fmt_bytes(ch, sizeof(ch), r[i].chunk_bytes),
		       fmt_bytes(res, sizeof(res), r[i].resident_bytes),
		       fmt_bytes(pin, sizeof(pin), r[i].pinned_bytes),
		       fmt_bytes(fl, sizeof(fl), r[i].flash_bytes),
		       fmt_bytes(flo, sizeof(flo), r[i].flash_resident_bytes),
		       fmt_bytes(sh, sizeof(sh), r[i].shared_bytes), r[i].mappings);
	if (!n)
		printf("(no live regions)\n");
}

static int list_or_fail(const struct ctl *c, struct kvmm_region_info **r)
{
	int n;

	if (!ctl_loaded(c))
		return ctl_no_module(c), -ENODEV;
	n = ctl_region_list(c, r);
	if (n < 0)
		fprintf(stderr, "kvmmctl: listing regions through %s: %s%s\n", c->dev, strerror(-n),
			n == -EACCES || n == -EPERM ? " (needs root or the dev_gid group)" : "");
	return n;
}

static int parse_sort(const char *s)
{
	if (!strcmp(s, "usage"))
		sort_by = SORT_USAGE;
	else if (!strcmp(s, "id"))
		sort_by = SORT_ID;
	else if (!strcmp(s, "size"))
		sort_by = SORT_SIZE;
	else if (!strcmp(s, "flash"))
		sort_by = SORT_FLASH;
	else
		return -1;
	return 0;
}

int cmd_regions(const struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {{"sort", required_argument, NULL, 's'}, {0}};
	struct kvmm_region_info *r;
	int n, o;

	sort_by = SORT_ID;
	optind = 1;
	while ((o = getopt_long(argc, argv, "s:", opts, NULL)) != -1) {
		if (o != 's' || parse_sort(optarg)) {
			fprintf(stderr, "usage: kvmmctl regions [--sort usage|id|size|flash]\n");
			return CTL_USAGE;
		}
	}
	/* The shim in user mode needs no module: its regions are listed anyway. */
	if (!ctl_loaded(c) && ctl_preload_regions(NULL, false) > 0) {
		ctl_no_module(c);
		n = 0;
		r = NULL;
	} else {
		n = list_or_fail(c, &r);
		if (n == -ENODEV)
			return CTL_NOMODULE;
		if (n < 0)
			return CTL_ERR;
		qsort(r, n, sizeof(*r), region_cmp);
	}
	if (c->json) {
		struct jw w;

		jw_init(&w, stdout);
		jw_obj(&w, NULL);
		jw_u64(&w, "count", n);
		regions_json(&w, r, n);
		ctl_preload_regions(&w, true);
		jw_end(&w);
	} else {
		if (ctl_loaded(c))
			regions_table(r, n);
		ctl_preload_regions(NULL, true);
	}
	free(r);
	return CTL_OK;
}

static volatile sig_atomic_t top_stop;

static void top_signal(int sig)
{
	(void)sig;
	top_stop = 1;
}

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Counter rates between two snapshots @dt seconds apart. */
static double rate(const struct snapshot *a, const struct snapshot *b, const char *name, double dt)
{
	uint64_t x = snapshot_counter(a, name), y = snapshot_counter(b, name);

	return dt > 0 && y >= x ? (double)(y - x) / dt : 0.0;
}

static void top_frame(const struct ctl *c, struct jw *w, const struct snapshot *prev,
		      const struct snapshot *s, double dt, struct kvmm_region_info *r, int n,
		      bool clear)
{
	char a[32], b[32], f[32];
	time_t t = time(NULL);
	char ts[32];

	strftime(ts, sizeof(ts), "%H:%M:%S", localtime(&t));
	if (c->json) {
		jw_obj(w, NULL);
		jw_i64(w, "time_unix_s", (int64_t)t);
		jw_u64(w, "pool_used_bytes", s->pool_used_bytes);
		jw_u64(w, "pool_limit_bytes", s->pool_limit_bytes);
		jw_u64(w, "flash_used_bytes", s->flash_bytes);
		jw_f64(w, "faults_per_s", rate(prev, s, "faults", dt));
		jw_f64(w, "flash_read_bytes_per_s", rate(prev, s, "flash_bytes_read", dt));
		jw_f64(w, "flash_written_bytes_per_s", rate(prev, s, "flash_bytes_written", dt));
		jw_f64(w, "evictions_per_s", rate(prev, s, "evictions", dt));
		regions_json(w, r, n);
		jw_end(w);
		return;
	}
	if (clear)
		fputs("\033[H\033[2J", stdout);
	printf("kvmm %s  %s  pool %s / %s  flash %s  regions %d\n", s->version, ts,
	       fmt_bytes(a, sizeof(a), s->pool_used_bytes),
	       fmt_bytes(b, sizeof(b), s->pool_limit_bytes),
	       fmt_bytes(f, sizeof(f), s->flash_bytes), n);
	printf("faults %.0f/s  evictions %.0f/s  flash read %s/s  written %s/s\n",
	       rate(prev, s, "faults", dt), rate(prev, s, "evictions", dt),
	       fmt_bytes(a, sizeof(a), (uint64_t)rate(prev, s, "flash_bytes_read", dt)),
	       fmt_bytes(b, sizeof(b), (uint64_t)rate(prev, s, "flash_bytes_written", dt)));
	regions_table(r, n);
	if (!clear)
		printf("\n");
	fflush(stdout);
}

int cmd_top(const struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {{"interval", required_argument, NULL, 'd'},
					     {"count", required_argument, NULL, 'n'},
					     {"sort", required_argument, NULL, 's'},
					     {0}};
	struct snapshot prev, cur;
	double interval = 1.0, t0;
	long count = -1;
	bool clear;
	struct jw w;
	int o;

	sort_by = SORT_USAGE;
	optind = 1;
	while ((o = getopt_long(argc, argv, "d:n:s:", opts, NULL)) != -1) {
		char *end = "";
		bool bad;

		switch (o) {
		case 'd':
			interval = strtod(optarg, &end);
			bad = *end || !(interval >= 0.05 && interval <= 3600);
			break;
		case 'n':
			count = strtol(optarg, &end, 10);
			bad = *end || count < 1;
			break;
		case 's':
			bad = parse_sort(optarg) != 0;
			break;
		default:
			bad = true;
		}
		if (bad) {
			fprintf(stderr, "usage: kvmmctl top [--interval SECONDS (0.05..3600)] "
					"[--count N] [--sort usage|id|size|flash]\n");
			return CTL_USAGE;
		}
	}
	if (!ctl_loaded(c))
		return ctl_no_module(c);
	if (c->json && count < 0)
		count = 1; /* one document; --count N gives an array of N frames */
	clear = count < 0 && isatty(STDOUT_FILENO);
	signal(SIGINT, top_signal);
	signal(SIGTERM, top_signal);
	if (c->json) {
		jw_init(&w, stdout);
		jw_arr(&w, NULL);
	}
	snapshot_take(c, &prev);
	t0 = now_s();
	for (long i = 0; !top_stop && (count < 0 || i < count); i++) {
		struct kvmm_region_info *r;
		double t1;
		int n;

		if (i) {
			struct timespec ts = {(time_t)interval,
					      (long)((interval - (long)interval) * 1e9)};

			nanosleep(&ts, NULL);
			if (top_stop)
				break;
		}
		snapshot_take(c, &cur);
		t1 = now_s();
		n = ctl_region_list(c, &r);
		if (n < 0) {
			fprintf(stderr, "kvmmctl: listing regions: %s\n", strerror(-n));
			if (c->json)
				jw_end(&w);
			return CTL_ERR;
		}
		qsort(r, n, sizeof(*r), region_cmp);
		top_frame(c, &w, &prev, &cur, t1 - t0, r, n, clear);
		free(r);
		prev = cur;
		t0 = t1;
	}
	if (c->json)
		jw_end(&w);
	return CTL_OK;
}
