/*
 * kvmm-bench-attn --flash FRACTION: the CPU decode over a libkvmm K/V
 * region pair (layer-major, one layer) with FRACTION of every slot's tokens
 * (its oldest) evicted to flash before each run, through
 * kvmm_attn_tier_regions(). In the same run and alternately with it: the
 * same decode with everything resident (compute time), libkvmm reading the
 * same chunks back alone (prefetch + wait), and fio reading the same bytes
 * of the same store file (/proc/PID/fd of libkvmm's store: O_DIRECT,
 * io_uring, the chunk as block size, the store's queue depth). Every flash
 * run's output is checked bitwise against the resident decode's.
 *   flash GB/s = flash bytes / decode time over the partly flash slot
 *   vs fio     = that / fio's read GB/s (target >= 0.8 with FRACTION 1)
 *   vs bound   = decode time / max(resident decode time, flash bytes / fio GB/s)
 *                (target <= 1.1 with part of it resident)
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kvmm/attention.h>
#include <kvmm/kvmm.h>

#include "attn_bench.h"

#define CHUNK (2u << 20)
#define QD    32 /* libkvmm's default queue depth, used by fio too */

struct flash_run {
	struct kvmm_ctx *ctx;
	struct kvmm_region *r[2]; /* K, V */
	uint64_t region_bytes, slot_bytes;
	struct kvmm_attn_tier tier;
	struct kvmm_attn_params p;
	struct kvmm_attn_cpu_opts opts;
	int32_t *lens;
	void *q, *o, *ref;
	size_t o_bytes;
};

static void fill16(uint16_t *h, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++)
		h[i] = (uint16_t)(0x3000 + ((i + seed) * 2654435761u >> 20 & 0x3ff));
}

/* libkvmm's store file: the newest fd open on an unlinked file in the flash directory. */
static int store_fd(const char *dir)
{
	char path[64], target[4096];
	struct dirent *e;
	DIR *d = opendir("/proc/self/fd");
	int found = -1;

	while (d && (e = readdir(d))) {
		ssize_t n;
		int fd = atoi(e->d_name);

		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		n = readlink(path, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = 0;
		if (!strncmp(target, dir, strlen(dir)) && strstr(target, "(deleted)") && fd > found)
			found = fd;
	}
	if (d)
		closedir(d);
	return found;
}

/* fio reading bytes from the start of the store file: GB/s, or -1. */
static double fio_read(int fd, uint64_t bytes)
{
	char cmd[1024], line[8192];
	double bw = -1;
	FILE *p;

	snprintf(cmd, sizeof(cmd),
		 "fio --name=kvmm-attn --filename=/proc/%d/fd/%d --readonly --rw=read "
		 "--size=%llu --bs=%u --direct=1 --ioengine=io_uring --iodepth=%u "
		 "--output-format=terse --terse-version=3 2>/dev/null",
		 (int)getpid(), fd, (unsigned long long)bytes, CHUNK, QD);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	while (fgets(line, sizeof(line), p)) {
		int field = 1; /* terse v3: field 7 is the read bandwidth in KiB/s */

		for (char *s = line; *s; s++) {
			if (field == 7) {
				bw = strtod(s, NULL) * 1024 / 1e9;
				break;
			}
			if (*s == ';')
				field++;
		}
	}
	return pclose(p) == 0 ? bw : -1;
}

/* Evicts the oldest fraction of every slot in K and V: bytes now on flash, or -errno. */
static int64_t evict_part(struct flash_run *fr, double fraction)
{
	uint64_t chunks = (uint64_t)(fraction * (double)fr->slot_bytes / CHUNK + 0.5);
	struct kvmm_region_stats st;
	int64_t total = 0;

	for (int i = 0; i < 2; i++) {
		for (int b = 0; b < fr->p.batch && chunks; b++) {
			uint64_t first = b * fr->slot_bytes / CHUNK;
			int ret = kvmm_region_evict(fr->r[i], first * CHUNK, chunks * CHUNK);

			if (ret)
				return ret;
		}
		if (kvmm_region_stats(fr->r[i], &st) == 0)
			total += (int64_t)st.flash_bytes;
	}
	return total;
}

/* Reads every flash chunk back through libkvmm alone: seconds, or < 0. */
static double kvmm_read(struct flash_run *fr)
{
	struct kvmm_op *op[2];
	double t0 = bench_now();

	for (int i = 0; i < 2; i++)
		if (kvmm_region_prefetch(fr->r[i], 0, fr->region_bytes, &op[i]))
			return -1;
	for (int i = 0; i < 2; i++)
		if (kvmm_wait(op[i]))
			return -1;
	return bench_now() - t0;
}

static int decode(struct flash_run *fr, int tier, struct kvmm_attn_cpu_stats *st, double *secs)
{
	struct kvmm_attn_cpu_opts o = fr->opts;
	double t0 = bench_now();
	int ret;

	o.tier = tier ? &fr->tier : NULL;
	o.stats = st;
	ret = kvmm_attn_cpu_decode(&fr->p, &o);
	*secs = bench_now() - t0;
	return ret;
}

static int setup(const struct bench_opts *o, int L, struct flash_run *fr)
{
	struct kvmm_config cfg = KVMM_CONFIG_INIT;
	struct kvmm_region_config rc = KVMM_REGION_CONFIG_INIT;
	int64_t hd = (int64_t)o->kv_heads * o->head_dim;
	size_t qn = (size_t)o->batch * o->q_heads * o->head_dim;
	int ret;

	memset(fr, 0, sizeof(*fr));
	/* Whole chunks per slot, so evicting a slot's part never touches the next. */
	fr->slot_bytes = ((uint64_t)L * hd * 2 + CHUNK - 1) / CHUNK * CHUNK;
	fr->region_bytes = fr->slot_bytes * (uint64_t)o->batch;
	cfg.flash_dir = o->flash_dir;
	cfg.flash_bytes = 2 * fr->region_bytes + CHUNK;
	cfg.chunk_bytes = CHUNK;
	ret = kvmm_open(&fr->ctx, &cfg);
	if (ret)
		return ret;
	rc.bytes = fr->region_bytes;
	for (int i = 0; i < 2; i++) {
		ret = kvmm_region_create(fr->ctx, &rc, &fr->r[i]);
		if (!ret)
			ret = kvmm_region_ensure(fr->r[i], 0, rc.bytes);
		if (ret)
			return ret;
		fill16(kvmm_region_base(fr->r[i]), rc.bytes / 2, (uint64_t)i * 7919);
	}
	ret = kvmm_attn_tier_regions(fr->r, 2, &fr->tier);
	if (ret)
		return ret;
	fr->lens = malloc(sizeof(int32_t) * (size_t)o->batch);
	fr->q = malloc(qn * 2);
	fr->o_bytes = qn * 2;
	fr->o = malloc(qn * 2);
	fr->ref = malloc(qn * 2);
	if (!fr->lens || !fr->q || !fr->o || !fr->ref)
		return -ENOMEM;
	fill16(fr->q, qn, 3);
	for (int b = 0; b < o->batch; b++)
		fr->lens[b] = L;
	fr->p = (struct kvmm_attn_params){
	    .batch = o->batch,
	    .q_heads = o->q_heads,
	    .kv_heads = o->kv_heads,
	    .head_dim = o->head_dim,
	    .scale = 1.0f / sqrtf((float)o->head_dim),
	    .seq_lens = fr->lens,
	    .max_seq_len = L,
	    .q = {fr->q, KVMM_ATTN_F16, (int64_t)o->q_heads * o->head_dim, 0, o->head_dim, 1},
	    .k = {kvmm_region_base(fr->r[0]), KVMM_ATTN_F16, (int64_t)fr->slot_bytes / 2, hd,
		  o->head_dim, 1},
	    .v = {kvmm_region_base(fr->r[1]), KVMM_ATTN_F16, (int64_t)fr->slot_bytes / 2, hd,
		  o->head_dim, 1},
	    .o = {fr->o, KVMM_ATTN_F16, (int64_t)o->q_heads * o->head_dim, 0, o->head_dim, 1},
	};
	fr->opts = (struct kvmm_attn_cpu_opts){
	    .threads = o->threads, .no_simd = o->no_simd, .no_avx512 = o->no_avx512};
	return 0;
}

static void teardown(struct flash_run *fr)
{
	kvmm_attn_tier_free(&fr->tier);
	for (int i = 0; i < 2; i++)
		if (fr->r[i])
			kvmm_region_destroy(fr->r[i]);
	if (fr->ctx)
		kvmm_close(fr->ctx);
	free(fr->lens);
	free(fr->q);
	free(fr->o);
	free(fr->ref);
}

struct flash_result {
	double res_s, flash_s, kvmm_read_s, fio_gbps, wait_s;
	int64_t flash_bytes;
	int items, fetched, exact, runs;
};

static int measure(const struct bench_opts *o, struct flash_run *fr, struct flash_result *res)
{
	double tr[64], tf[64], tk[64], tio[64], tw[64], t;
	struct kvmm_attn_cpu_stats st;
	int n = o->rounds, nio = 0, fd = -1, ret;

	memset(res, 0, sizeof(*res));
	ret = decode(fr, 0, &st, &t); /* warm-up, and the reference bits */
	if (ret)
		return ret;
	memcpy(fr->ref, fr->o, fr->o_bytes);
	for (int r = 0; r < n; r++) {
		int64_t fb;

		ret = decode(fr, 1, &st, &tr[r]); /* resident: the compute alone */
		if (ret)
			return ret;
		res->exact += !memcmp(fr->o, fr->ref, fr->o_bytes);
		fb = evict_part(fr, o->flash);
		if (fb < 0)
			return (int)fb;
		res->flash_bytes = fb;
		if (fd < 0)
			fd = store_fd(o->flash_dir);
		/* fio first every other round, so neither side always runs first. */
		if (!o->no_fio && fd >= 0 && fb > 0 && r % 2)
			tio[nio++] = fio_read(fd, (uint64_t)fb);
		memset(fr->o, 0xff, fr->o_bytes);
		ret = decode(fr, 1, &st, &tf[r]);
		if (ret)
			return ret;
		res->exact += !memcmp(fr->o, fr->ref, fr->o_bytes);
		res->items = st.items;
		res->fetched = st.items_fetched;
		tw[r] = st.fetch_wait_s;
		if (!o->no_fio && fd >= 0 && fb > 0 && !(r % 2))
			tio[nio++] = fio_read(fd, (uint64_t)fb);
		/* libkvmm reading the same chunks alone. */
		fb = evict_part(fr, o->flash);
		if (fb < 0)
			return (int)fb;
		tk[r] = kvmm_read(fr);
		if (tk[r] < 0)
			return -EIO;
	}
	res->runs = 2 * n;
	res->res_s = bench_median(tr, n);
	res->flash_s = bench_median(tf, n);
	res->kvmm_read_s = bench_median(tk, n);
	res->wait_s = bench_median(tw, n);
	res->fio_gbps = nio ? bench_median(tio, nio) : -1;
	return 0;
}

int bench_flash(const struct bench_opts *o)
{
	const char *dir = o->flash_dir ? o->flash_dir : "/var/tmp";
	struct bench_opts oo = *o;
	int rows = 0;

	oo.flash_dir = dir;
	if (o->dtype != KVMM_ATTN_F16) {
		fprintf(stderr, "kvmm-bench-attn: --flash measures f16 K/V\n");
		return 2;
	}
	if (o->json)
		printf("\"flash\":{\"fraction\":%.3f,\"dir\":\"%s\",\"batch\":%d,\"q_heads\":%d,"
		       "\"kv_heads\":%d,\"head_dim\":%d,\"isa\":\"%s\",\"rounds\":%d,\"runs\":[",
		       o->flash, dir, o->batch, o->q_heads, o->kv_heads, o->head_dim, bench_isa(o),
		       o->rounds);
	else
		printf("CPU decode over libkvmm regions with %.0f%% of every slot on flash (%s;\n"
		       "f16, batch %d, %d q / %d kv heads, head_dim %d, %s; medians of %d rounds;\n"
		       "fio reads the same bytes of the same store file, alternately)\n"
		       "%8s %8s %8s %9s %9s %9s %9s %9s %7s %7s\n",
		       o->flash * 100, dir, o->batch, o->q_heads, o->kv_heads, o->head_dim,
		       bench_isa(o), o->rounds, "seq_len", "KV MiB", "flash", "resid ms",
		       "flash ms", "kvmm GB/s", "fio GB/s", "flashGB/s", "vs fio", "vs max");
	for (int i = 0; i < o->nlens; i++) {
		struct flash_run fr;
		struct flash_result res;
		int ret = setup(&oo, o->lens[i], &fr);
		double kv_mib, fgb, bound;

		if (!ret)
			ret = measure(&oo, &fr, &res);
		if (ret) {
			fprintf(stderr, "kvmm-bench-attn: --flash at %d tokens: %s\n", o->lens[i],
				kvmm_strerror(ret));
			teardown(&fr);
			return 1;
		}
		kv_mib = 2.0 * (double)fr.region_bytes / (1 << 20);
		fgb = res.flash_bytes / res.flash_s / 1e9;
		bound = res.fio_gbps > 0 ? res.flash_bytes / (res.fio_gbps * 1e9) : 0;
		bound = bound > res.res_s ? bound : res.res_s;
		if (o->json)
			printf("%s{\"seq_len\":%d,\"kv_bytes\":%llu,\"flash_bytes\":%lld,"
			       "\"items\":%d,\"items_fetched\":%d,\"resident_ms\":%.2f,"
			       "\"flash_ms\":%.2f,\"fetch_wait_ms\":%.2f,\"kvmm_read_gbps\":%.3f,"
			       "\"fio_read_gbps\":%.3f,\"flash_gbps\":%.3f,\"vs_fio\":%.3f,"
			       "\"vs_max\":%.3f,\"bitwise_equal\":%d,\"runs\":%d}",
			       rows++ ? "," : "", o->lens[i],
			       (unsigned long long)(2 * fr.region_bytes),
			       (long long)res.flash_bytes, res.items, res.fetched, res.res_s * 1e3,
			       res.flash_s * 1e3, res.wait_s * 1e3,
			       res.flash_bytes / res.kvmm_read_s / 1e9, res.fio_gbps, fgb,
			       res.fio_gbps > 0 ? fgb / res.fio_gbps : 0,
			       bound > 0 ? res.flash_s / bound : 0, res.exact, res.runs);
		else
			printf("%8d %8.0f %7.0f%% %9.1f %9.1f %9.2f %9.2f %9.2f %7.2f %7.2f%s\n",
			       o->lens[i], kv_mib,
			       100.0 * res.flash_bytes / (2.0 * fr.region_bytes), res.res_s * 1e3,
			       res.flash_s * 1e3, res.flash_bytes / res.kvmm_read_s / 1e9,
			       res.fio_gbps, fgb, res.fio_gbps > 0 ? fgb / res.fio_gbps : 0,
			       bound > 0 ? res.flash_s / bound : 0,
			       res.exact == res.runs ? "" : "  NOT BITWISE EQUAL");
		if (res.exact != res.runs) {
			teardown(&fr);
			return 1;
		}
		teardown(&fr);
	}
	if (o->json)
		printf("]}");
	else
		printf("(flash = share of the K/V bytes on flash; vs fio: flash GB/s / fio GB/s;\n"
		       " vs max: flash ms / max(resident ms, flash bytes at fio's rate); every\n"
		       " flash run's output bitwise equal to the resident run's)\n");
	return 0;
}
