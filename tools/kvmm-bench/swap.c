/* SPDX-License-Identifier: MIT */
/*
 * kvmm-bench-swap: user-mode flash store throughput against fio.
 *
 *   kvmm-bench-swap [--dir DIR] [--bytes N] [--qd N] [--rounds N] [--layout token|layer]
 *                   [--json] [--no-fio]
 *
 * 1. A KV cache (token-major by default; layer-major keeps one region per
 *    layer and K/V, so a slot's swap spans 64 regions) whose slots total
 *    --bytes (default 1 GiB) is filled, then every slot is swapped out to
 *    flash and back in, --rounds times; throughput = bytes moved / wall time.
 * 2. In each round fio also writes then reads a file of the same size in
 *    the same directory, O_DIRECT, io_uring, same block size (the chunk)
 *    and queue depth, after libkvmm in odd rounds and before it in even
 *    ones; the ratio is the median of the per-round ratios.
 * 3. Fault-back latency: chunks evicted to flash are touched one at a time;
 *    each touch is one userfaultfd fault that reads one chunk back.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <kvmm/kvmm.h>

#define MIB (1ull << 20)

struct opts {
	const char *dir;
	uint64_t bytes;
	uint32_t chunk;
	uint32_t qd;
	uint32_t rounds;
	uint32_t fault_chunks;
	int json;
	int fio;
	int layer_major;
};

struct result {
	double out_mbs, in_mbs, both_mbs; /* MiB/s, median round */
	double fio_write_mbs, fio_read_mbs, fio_both_mbs;
	double ratio;			/* median over rounds of libkvmm both / fio both */
	double zero_us[3], flash_us[3]; /* p50, p99, mean per chunk */
	uint32_t fault_chunks;
	long huge_kib; /* transparent huge pages of the process, -1: unknown */
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, uint32_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int die(const char *what, int err)
{
	fprintf(stderr, "kvmm-bench-swap: %s: %s\n", what, kvmm_strerror(err));
	return 1;
}

/* Time to write, then read, @bytes: the combined rate. */
static double combined(double w, double r)
{
	return w > 0 && r > 0 ? 2 / (1 / w + 1 / r) : 0;
}

static double fio_run(const struct opts *o, const char *rw);

static int bench_swap(const struct opts *o, struct kvmm_ctx *ctx, struct result *res)
{
	struct kvmm_kv_config c = KVMM_KV_CONFIG_INIT;
	struct kvmm_kv *kv;
	struct kvmm_op **ops;
	uint32_t *slots, *lens;
	double *tout, *tin, *tboth, *fw, *fr, *ratio;
	uint64_t tok_bytes;
	int ret;

	/* A 32-layer, 8-KV-head, head_dim 128, fp16 model: 128 KiB per token. */
	c.layers = 32;
	c.kv_heads = 8;
	c.head_dim = 128;
	c.dtype_bytes = 2;
	c.layout = o->layer_major ? KVMM_LAYOUT_LAYER_MAJOR : KVMM_LAYOUT_TOKEN_MAJOR;
	c.chunk_bytes = o->chunk;
	c.max_tokens = 1024;
	tok_bytes = 2ull * c.layers * c.kv_heads * c.head_dim * c.dtype_bytes;
	c.max_slots = o->bytes / (tok_bytes * c.max_tokens);
	if (!c.max_slots)
		return die("--bytes below one 128 MiB slot", -EINVAL);
	ret = kvmm_kv_create(ctx, &c, &kv);
	if (ret)
		return die("kvmm_kv_create", ret);
	slots = calloc(c.max_slots, sizeof(*slots));
	lens = calloc(c.max_slots, sizeof(*lens));
	ops = calloc(c.max_slots, sizeof(*ops));
	tout = calloc(o->rounds, sizeof(double));
	tin = calloc(o->rounds, sizeof(double));
	tboth = calloc(o->rounds, sizeof(double));
	fw = calloc(o->rounds, sizeof(double));
	fr = calloc(o->rounds, sizeof(double));
	ratio = calloc(o->rounds, sizeof(double));
	for (uint32_t s = 0; s < c.max_slots; s++) {
		slots[s] = s;
		lens[s] = c.max_tokens;
	}
	ret = kvmm_kv_step(kv, c.max_slots, slots, lens);
	if (ret)
		return die("kvmm_kv_step", ret);
	for (uint32_t l = 0; l < c.layers; l++) {
		for (int w = 0; w < 2; w++) {
			struct kvmm_kv_tensor t;

			kvmm_kv_tensor(kv, l, w, &t);
			for (uint32_t s = 0; s < c.max_slots; s++)
				for (uint32_t tok = 0; tok < c.max_tokens; tok++)
					memset((char *)t.base + s * t.slot_stride_bytes +
						   tok * t.token_stride_bytes,
					       (int)(s + tok + l),
					       t.head_stride_bytes * c.kv_heads);
		}
	}
	uint64_t moved = (uint64_t)c.max_slots * c.max_tokens * tok_bytes;

	for (uint32_t r = 0; r < o->rounds; r++) {
		double t0, t1, t2;

		/* fio goes first every other round, so neither side always runs
		 * right after the other's writes on a shared device. */
		if (o->fio && r % 2) {
			fw[r] = fio_run(o, "write");
			fr[r] = fio_run(o, "read");
		}
		t0 = now();
		for (uint32_t s = 0; s < c.max_slots; s++)
			if ((ret = kvmm_kv_swap_out(kv, s, KVMM_TIER_FLASH, &ops[s])))
				return die("kvmm_kv_swap_out", ret);
		for (uint32_t s = 0; s < c.max_slots; s++)
			if ((ret = kvmm_wait(ops[s])))
				return die("swap out", ret);
		t1 = now();
		for (uint32_t s = 0; s < c.max_slots; s++)
			if ((ret = kvmm_kv_swap_in(kv, s, &ops[s])))
				return die("kvmm_kv_swap_in", ret);
		for (uint32_t s = 0; s < c.max_slots; s++)
			if ((ret = kvmm_wait(ops[s])))
				return die("swap in", ret);
		t2 = now();
		tout[r] = moved / MIB / (t1 - t0);
		tin[r] = moved / MIB / (t2 - t1);
		tboth[r] = 2.0 * moved / MIB / (t2 - t0);
		if (o->fio && !(r % 2)) {
			fw[r] = fio_run(o, "write");
			fr[r] = fio_run(o, "read");
		}
		if (o->fio)
			ratio[r] = tboth[r] / combined(fw[r], fr[r]);
		if (!o->json)
			fprintf(
			    stderr,
			    "round %u: libkvmm out %.0f in %.0f MiB/s; fio write %.0f read %.0f "
			    "MiB/s; ratio %.2f\n",
			    r + 1, tout[r], tin[r], fw[r], fr[r], ratio[r]);
	}
	res->out_mbs = median(tout, o->rounds);
	res->in_mbs = median(tin, o->rounds);
	res->both_mbs = median(tboth, o->rounds);
	if (o->fio) {
		res->fio_write_mbs = median(fw, o->rounds);
		res->fio_read_mbs = median(fr, o->rounds);
		res->fio_both_mbs = combined(res->fio_write_mbs, res->fio_read_mbs);
		res->ratio = median(ratio, o->rounds);
	}
	free(slots);
	free(lens);
	free(ops);
	free(tout);
	free(tin);
	free(tboth);
	free(fw);
	free(fr);
	free(ratio);
	ret = kvmm_kv_destroy(kv);
	return ret ? die("kvmm_kv_destroy", ret) : 0;
}

/* Runs one fio job and returns its bandwidth in MiB/s, or -1. */
static double fio_run(const struct opts *o, const char *rw)
{
	char cmd[1024], line[8192];
	double bw = -1;
	FILE *p;

	snprintf(cmd, sizeof(cmd),
		 "fio --name=kvmm-bench --directory='%s' --filename=kvmm-bench-fio.dat "
		 "--size=%llu --bs=%u --rw=%s --direct=1 --ioengine=io_uring --iodepth=%u "
		 "--output-format=terse --terse-version=3 2>/dev/null",
		 o->dir, (unsigned long long)o->bytes, o->chunk, rw, o->qd);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	while (fgets(line, sizeof(line), p)) {
		/* terse v3: field 7 is read KiB/s, field 48 write KiB/s */
		int want = strcmp(rw, "read") ? 48 : 7, field = 1;

		for (char *s = line; *s && field <= want; s++) {
			if (field == want) {
				bw = strtod(s, NULL) / 1024.0;
				break;
			}
			if (*s == ';')
				field++;
		}
	}
	pclose(p);
	return bw;
}

static void fio_cleanup(const struct opts *o)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/kvmm-bench-fio.dat", o->dir);
	unlink(path);
}

static void stats_us(double *v, uint32_t n, double out[3])
{
	double sum = 0;

	for (uint32_t i = 0; i < n; i++)
		sum += v[i];
	qsort(v, n, sizeof(*v), cmp_double);
	out[0] = v[n / 2];
	out[1] = v[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1];
	out[2] = sum / n;
}

/* Per-chunk latency of a first-touch zero fill and of a flash fault-back. */
static int bench_faults(const struct opts *o, struct kvmm_ctx *ctx, struct result *res)
{
	struct kvmm_region_config rc = KVMM_REGION_CONFIG_INIT;
	struct kvmm_region *r;
	uint32_t n = o->fault_chunks;
	double *lat = calloc(n, sizeof(double));
	volatile char *p;
	int ret;

	rc.bytes = (uint64_t)n * o->chunk;
	rc.chunk_bytes = o->chunk;
	ret = kvmm_region_create(ctx, &rc, &r);
	if (ret)
		return die("kvmm_region_create", ret);
	p = kvmm_region_base(r);
	for (uint32_t i = 0; i < n; i++) {
		double t0 = now();

		p[(uint64_t)i * o->chunk] = (char)i; /* one fault: zero-fill the chunk */
		lat[i] = (now() - t0) * 1e6;
	}
	stats_us(lat, n, res->zero_us);
	ret = kvmm_region_evict(r, 0, rc.bytes);
	if (ret)
		return die("kvmm_region_evict", ret);
	for (uint32_t i = 0; i < n; i++) {
		double t0 = now();
		char v = p[(uint64_t)i * o->chunk + 1]; /* one fault: read back */

		lat[i] = (now() - t0) * 1e6;
		if (v != 0 || p[(uint64_t)i * o->chunk] != (char)i)
			return die("fault-back returned wrong data", -EIO);
	}
	stats_us(lat, n, res->flash_us);
	res->fault_chunks = n;
	free(lat);
	ret = kvmm_region_destroy(r);
	return ret ? die("kvmm_region_destroy", ret) : 0;
}

/*
 * The process's anonymous huge pages. Regions never use them, so this is
 * the flash staging, which asks for them: the rates depend on getting them.
 */
static long anon_huge_kib(void)
{
	char line[256];
	long kib = -1;
	FILE *f = fopen("/proc/self/smaps_rollup", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "AnonHugePages: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

static void print_human(const struct opts *o, const struct result *r)
{
	printf("kvmm-bench-swap: %s, %llu MiB slot set, %s, chunk %u KiB, queue depth %u, %u "
	       "rounds\n",
	       o->dir, (unsigned long long)(o->bytes / MIB),
	       o->layer_major ? "layer-major" : "token-major", o->chunk >> 10, o->qd, o->rounds);
	printf("%-34s %12s %12s %12s\n", "", "write MiB/s", "read MiB/s", "both MiB/s");
	printf("%-34s %12.0f %12.0f %12.0f\n", "libkvmm swap_out / swap_in", r->out_mbs, r->in_mbs,
	       r->both_mbs);
	if (o->fio) {
		printf("%-34s %12.0f %12.0f %12.0f\n", "fio O_DIRECT sequential", r->fio_write_mbs,
		       r->fio_read_mbs, r->fio_both_mbs);
		printf("%-34s %12.2f %12.2f %12.2f\n", "ratio libkvmm / fio",
		       r->out_mbs / r->fio_write_mbs, r->in_mbs / r->fio_read_mbs, r->ratio);
	}
	printf("%-34s %12s %12s %12s\n", "fault latency per chunk", "p50 us", "p99 us", "mean us");
	printf("%-34s %12.1f %12.1f %12.1f\n", "first touch (zero fill)", r->zero_us[0],
	       r->zero_us[1], r->zero_us[2]);
	printf("%-34s %12.1f %12.1f %12.1f\n", "evicted chunk (flash read back)", r->flash_us[0],
	       r->flash_us[1], r->flash_us[2]);
	if (r->huge_kib >= 0)
		printf("staging in huge pages: %ld of %llu MiB\n", r->huge_kib / 1024,
		       (unsigned long long)((uint64_t)o->qd * o->chunk / MIB));
}

static void print_json(const struct opts *o, const struct result *r)
{
	printf("{\"dir\": \"%s\", \"bytes\": %llu, \"layout\": \"%s\", \"chunk_bytes\": %u, "
	       "\"queue_depth\": %u, \"rounds\": %u,\n",
	       o->dir, (unsigned long long)o->bytes, o->layer_major ? "layer" : "token", o->chunk,
	       o->qd, o->rounds);
	printf(" \"swap_out_mib_s\": %.1f, \"swap_in_mib_s\": %.1f, \"swap_both_mib_s\": %.1f,\n",
	       r->out_mbs, r->in_mbs, r->both_mbs);
	if (o->fio)
		printf(" \"fio_write_mib_s\": %.1f, \"fio_read_mib_s\": %.1f, "
		       "\"fio_both_mib_s\": %.1f, \"ratio_both\": %.3f,\n",
		       r->fio_write_mbs, r->fio_read_mbs, r->fio_both_mbs, r->ratio);
	printf(" \"fault_chunks\": %u, \"zero_fill_us\": {\"p50\": %.1f, \"p99\": %.1f, \"mean\": "
	       "%.1f},\n",
	       r->fault_chunks, r->zero_us[0], r->zero_us[1], r->zero_us[2]);
	printf(" \"flash_fault_us\": {\"p50\": %.1f, \"p99\": %.1f, \"mean\": %.1f},\n",
	       r->flash_us[0], r->flash_us[1], r->flash_us[2]);
	printf(" \"staging_huge_kib\": %ld}\n", r->huge_kib);
}

static void usage(void)
{
	fprintf(stderr, "usage: kvmm-bench-swap [--dir DIR] [--bytes MiB] [--qd N] [--rounds N] "
			"[--layout token|layer] [--fault-chunks N] [--json] [--no-fio]\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"dir", required_argument, NULL, 'd'},
	    {"bytes", required_argument, NULL, 'b'},
	    {"qd", required_argument, NULL, 'q'},
	    {"rounds", required_argument, NULL, 'r'},
	    {"fault-chunks", required_argument, NULL, 'f'},
	    {"layout", required_argument, NULL, 'l'},
	    {"json", no_argument, NULL, 'j'},
	    {"no-fio", no_argument, NULL, 'n'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct opts o = {.bytes = 1024 * MIB,
			 .chunk = 2 * MIB,
			 .qd = 32,
			 .rounds = 3,
			 .fault_chunks = 64,
			 .fio = 1};
	struct kvmm_config cfg = KVMM_CONFIG_INIT;
	struct result res = {0};
	struct kvmm_ctx *ctx;
	int opt, ret;

	o.dir = getenv("KVMM_FLASH_DIR");
	if (!o.dir)
		o.dir = getenv("TMPDIR");
	if (!o.dir)
		o.dir = "/var/tmp";
	while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (opt) {
		case 'd':
			o.dir = optarg;
			break;
		case 'b':
			o.bytes = strtoull(optarg, NULL, 0) * MIB;
			break;
		case 'q':
			o.qd = strtoul(optarg, NULL, 0);
			break;
		case 'r':
			o.rounds = strtoul(optarg, NULL, 0);
			break;
		case 'f':
			o.fault_chunks = strtoul(optarg, NULL, 0);
			break;
		case 'l':
			if (strcmp(optarg, "token") && strcmp(optarg, "layer")) {
				fprintf(stderr,
					"kvmm-bench-swap: --layout: token or layer, not "
					"'%s'\n",
					optarg);
				return 2;
			}
			o.layer_major = !strcmp(optarg, "layer");
			break;
		case 'j':
			o.json = 1;
			break;
		case 'n':
			o.fio = 0;
			break;
		default:
			usage();
			return opt == 'h' ? 0 : 2;
		}
	}
	if (!o.rounds || !o.fault_chunks || !o.qd) {
		usage();
		return 2;
	}
	cfg.mode = KVMM_MODE_USER; /* the user-mode flash store is what is measured */
	cfg.flash_dir = o.dir;
	cfg.flash_bytes = o.bytes + (uint64_t)o.fault_chunks * o.chunk + 64 * MIB;
	cfg.queue_depth = o.qd;
	cfg.chunk_bytes = o.chunk;
	ret = kvmm_open(&ctx, &cfg);
	if (ret)
		return die("kvmm_open", ret);
	if (bench_swap(&o, ctx, &res) || bench_faults(&o, ctx, &res))
		return 1;
	res.huge_kib = anon_huge_kib();
	kvmm_close(ctx);
	if (o.fio)
		fio_cleanup(&o);
	if (o.json)
		print_json(&o, &res);
	else
		print_human(&o, &res);
	return 0;
}
