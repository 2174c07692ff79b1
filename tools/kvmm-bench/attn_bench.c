/*
 * kvmm-bench-attn: attention kernel throughput next to the copy of the same
 * bytes in the same run. CPU: decode GB/s of K/V read vs multi-threaded
 * memcpy GB/s, with the decode's plan (split length, pass width, caches)
 * and where the bytes sit on NUMA nodes; --flash: the decode over KV partly
 * on flash against fio on the same file (attn_flash.c); GPU (where built
 * with CUDA and a GPU is present): see attn_bench_gpu.c. A human table by
 * default, --json for one JSON object.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "attn_bench.h"

double bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

#define now bench_now

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

double bench_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(v[0]), cmp_double);
	return n ? v[n / 2] : 0;
}

const char *bench_isa(const struct bench_opts *o)
{
	if (o->no_simd || !kvmm_attn_cpu_has_simd())
		return "portable";
	return !o->no_avx512 && kvmm_attn_cpu_has_avx512() ? "AVX-512" : "AVX2+F16C";
}

/* Resident pages of [p, p + bytes) per node, from every 2 MiB (move_pages, nodes NULL). */
void bench_numa_where(const struct bench_opts *o, const void *p, size_t bytes, const char *what)
{
	enum { MAX_NODES = 64, SAMPLES = 1024 };
	size_t step = bytes / SAMPLES > (2u << 20) ? bytes / SAMPLES : (2u << 20);
	void *pages[SAMPLES];
	int status[SAMPLES], count[MAX_NODES] = {0}, n = 0, other = 0;
	long pg = sysconf(_SC_PAGESIZE);

	for (size_t off = 0; off < bytes && n < SAMPLES; off += step)
		pages[n++] = (void *)(((uintptr_t)p + off) & ~(uintptr_t)(pg - 1));
	if (syscall(SYS_move_pages, 0, (unsigned long)n, pages, NULL, status, 0) != 0)
		n = 0;
	for (int i = 0; i < n; i++) {
		if (status[i] >= 0 && status[i] < MAX_NODES)
			count[status[i]]++;
		else
			other++;
	}
	if (o->json) {
		printf("\"%s_pages_by_node\":{", what);
		for (int k = 0, first = 1; k < MAX_NODES; k++)
			if (count[k]) {
				printf("%s\"%d\":%d", first ? "" : ",", k, count[k]);
				first = 0;
			}
		printf("},\"%s_pages_sampled\":%d,", what, n);
		return;
	}
	printf("  %s pages by NUMA node (%d sampled):", what, n);
	for (int k = 0; k < MAX_NODES; k++)
		if (count[k])
			printf(" node%d %.0f%%", k, 100.0 * count[k] / n);
	if (other)
		printf(" not resident %.0f%%", 100.0 * other / n);
	printf("\n");
}

struct pair_times {
	double a_best, a_median, b_best, b_median; /* seconds */
};

/*
 * Times fa(a) and fb(b) run alternately (at least 5 times each and
 * min_seconds in all, after one warm-up each), so both see the same machine
 * load. On a shared machine the best run is the one least disturbed.
 */
static void time_pair(void (*fa)(void *), void *a, void (*fb)(void *), void *b, double min_seconds,
		      struct pair_times *t)
{
	double sa[256], sb[256], start;
	int n = 0;

	fa(a);
	fb(b);
	start = now();
	while (n < 256 && (n < 5 || now() - start < min_seconds)) {
		double t0 = now();

		fa(a);
		sa[n] = now() - t0;
		t0 = now();
		fb(b);
		sb[n++] = now() - t0;
	}
	qsort(sa, (size_t)n, sizeof(sa[0]), cmp_double);
	qsort(sb, (size_t)n, sizeof(sb[0]), cmp_double);
	*t = (struct pair_times){sa[0], sa[n / 2], sb[0], sb[n / 2]};
}

struct copy_job {
	char *dst[2];
	const char *src[2];
	size_t bytes;  /* per buffer */
	size_t window; /* per destination buffer: the copy goes round it */
	int threads;
};

struct copy_part {
	const struct copy_job *job;
	int index;
	pthread_t id;
};

static void *copy_slice(void *arg)
{
	const struct copy_part *c = arg;
	size_t per = (c->job->bytes + c->job->threads - 1) / c->job->threads;
	size_t off = per * (size_t)c->index;

	size_t end = off + per < c->job->bytes ? off + per : c->job->bytes;
	/* Each thread goes round its own part of the destination window. */
	size_t w = c->job->window / (size_t)c->job->threads / 64 * 64;
	size_t base = w * (size_t)c->index;

	for (int i = 0; i < 2 && off < end; i++)
		for (size_t o = off; o < end;) {
			size_t at = (o - off) % w, n = end - o < w - at ? end - o : w - at;

			memcpy(c->job->dst[i] + base + at, c->job->src[i] + o, n);
			o += n;
		}
	return NULL;
}

/* The same bytes as the decode reads, copied by as many threads as it uses. */
static void copy_run(void *arg)
{
	const struct copy_job *job = arg;
	struct copy_part parts[256];
	int n = job->threads < 256 ? job->threads : 256;

	for (int i = 0; i < n; i++) {
		parts[i] = (struct copy_part){job, i, 0};
		if (i > 0)
			pthread_create(&parts[i].id, NULL, copy_slice, &parts[i]);
	}
	copy_slice(&parts[0]);
	for (int i = 1; i < n; i++)
		pthread_join(parts[i].id, NULL);
}

struct decode_run {
	struct kvmm_attn_params p;
	struct kvmm_attn_cpu_opts opts;
	int rc;
};

static void decode_once(void *arg)
{
	struct decode_run *r = arg;

	r->rc = kvmm_attn_cpu_decode(&r->p, &r->opts);
}

static void fill(void *buf, size_t bytes)
{
	uint16_t *h = buf;

	/* Small values of either 16-bit type (and harmless f32 bit patterns). */
	for (size_t i = 0; i < bytes / 2; i++)
		h[i] = (uint16_t)(0x3000 + (i * 2654435761u >> 20 & 0x3ff));
}

static void *xalloc(size_t bytes)
{
	void *p = NULL;

	if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) {
		fprintf(stderr, "kvmm-bench-attn: out of memory (%zu bytes)\n", bytes);
		exit(1);
	}
	return p;
}

/* Bytes of memory available now (MemAvailable), or 0 if unknown. */
static size_t mem_available(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[128];
	unsigned long long kb = 0;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return (size_t)kb << 10;
}

static void print_plan_head(const struct bench_opts *o, const struct kvmm_attn_cpu_plan_info *pi)
{
	if (o->json) {
		printf("\"isa\":\"%s\",\"l1d_bytes\":%lld,\"l2_bytes\":%lld,\"llc_bytes\":%lld,"
		       "\"cache_source\":\"%s\",\"numa_nodes\":%d,",
		       bench_isa(o), (long long)pi->l1d_bytes, (long long)pi->l2_bytes,
		       (long long)pi->llc_bytes, pi->cache_source, pi->numa_nodes);
		return;
	}
	printf("caches (%s): L1d %lld KiB, L2 %lld KiB, LLC %lld MiB; NUMA nodes: %d%s\n",
	       pi->cache_source, (long long)pi->l1d_bytes >> 10, (long long)pi->l2_bytes >> 10,
	       (long long)pi->llc_bytes >> 20, pi->numa_nodes,
	       pi->numa_nodes > 1 ? " (items go to threads on their node first)"
				  : " (placement by node not exercised)");
}

static int bench_cpu(const struct bench_opts *o)
{
	size_t es = kvmm_attn_dtype_size(o->dtype);
	int threads = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
	int header = 0, rows = 0;

	if (o->json)
		printf("\"cpu\":{\"simd\":%s,\"threads\":%d,\"stat\":\"%s\",\"batch\":%d,"
		       "\"q_heads\":%d,\"kv_heads\":%d,\"head_dim\":%d,\"dtype\":\"%s\",",
		       kvmm_attn_cpu_has_simd() ? "true" : "false", threads,
		       o->median ? "median" : "best", o->batch, o->q_heads, o->kv_heads,
		       o->head_dim, kvmm_attn_dtype_name(o->dtype));
	else
		printf(
		    "CPU decode (%s, batch %d, %d q / %d kv heads, head_dim %d, %d threads, %s;\n"
		    "%s of alternating runs; memcpy copies the same K/V bytes)\n",
		    kvmm_attn_dtype_name(o->dtype), o->batch, o->q_heads, o->kv_heads, o->head_dim,
		    threads, bench_isa(o), o->median ? "median" : "best");
	for (int i = 0; i < o->nlens; i++) {
		int L = o->lens[i], hd = o->kv_heads * o->head_dim;
		size_t kv = (size_t)o->batch * L * hd * es,
		       qn = (size_t)o->batch * o->q_heads * o->head_dim;
		struct kvmm_attn_cpu_stats st;
		struct decode_run r = {.opts = {.threads = threads,
						.no_simd = o->no_simd,
						.no_avx512 = o->no_avx512,
						.stats = &st}};
		/* The copy goes round a destination of at most 1 GiB per buffer (2 x the
		 * LLC if that is more), so 1M-token caches fit; it still misses the LLC. */
		struct kvmm_attn_cpu_plan_info pi;
		struct copy_job cj = {.bytes = kv, .threads = threads};
		int32_t *lens;
		void *k, *v, *q, *out;
		struct pair_times pt;
		size_t need, avail = mem_available();
		double td, tc;

		lens = xalloc(sizeof(int32_t) * (size_t)o->batch);
		for (int b = 0; b < o->batch; b++)
			lens[b] = L;
		r.p = (struct kvmm_attn_params){
		    .batch = o->batch,
		    .q_heads = o->q_heads,
		    .kv_heads = o->kv_heads,
		    .head_dim = o->head_dim,
		    .scale = 1.0f / sqrtf((float)o->head_dim),
		    .seq_lens = lens,
		    .max_seq_len = L,
		    .q = {&pi, o->dtype, (int64_t)o->q_heads * o->head_dim, 0, o->head_dim, 1},
		    .k = {&pi, o->dtype, (int64_t)L * hd, hd, o->head_dim, 1},
		    .v = {&pi, o->dtype, (int64_t)L * hd, hd, o->head_dim, 1},
		    .o = {&pi, o->dtype, (int64_t)o->q_heads * o->head_dim, 0, o->head_dim, 1},
		};
		if (kvmm_attn_cpu_decode_plan(&r.p, &r.opts, &pi)) {
			fprintf(stderr, "kvmm-bench-attn: bad shape\n");
			return 2;
		}
		if (!header++) {
			print_plan_head(o, &pi);
			if (o->json)
				printf("\"runs\":[");
			else
				printf("%8s %10s %7s %7s %12s %12s %12s %7s\n", "seq_len", "KV MiB",
				       "items", "chunk", "decode us", "decode GB/s", "memcpy GB/s",
				       "ratio");
		}
		cj.window = kv < (1ull << 30) ? kv : (1ull << 30);
		if ((size_t)pi.llc_bytes * 2 > cj.window && (size_t)pi.llc_bytes * 2 < kv)
			cj.window = (size_t)pi.llc_bytes * 2;
		need = 2 * kv + 2 * cj.window + (64u << 20);
		if (avail && need > avail / 10 * 9) {
			if (o->json)
				printf("%s{\"seq_len\":%d,\"skipped\":\"needs %zu MiB, %zu MiB "
				       "available\"}",
				       rows++ ? "," : "", L, need >> 20, avail >> 20);
			else
				printf("%8d skipped: needs %zu MiB of memory, %zu MiB available\n",
				       L, need >> 20, avail >> 20);
			free(lens);
			continue;
		}
		k = xalloc(kv);
		v = xalloc(kv);
		q = xalloc(qn * es);
		out = xalloc(qn * es);
		fill(k, kv);
		fill(v, kv);
		fill(q, qn * es);
		r.p.q.data = q;
		r.p.k.data = k;
		r.p.v.data = v;
		r.p.o.data = out;
		/* Copy K/V to fresh buffers: the decode's memory stays what it reads. */
		cj.src[0] = k;
		cj.src[1] = v;
		cj.dst[0] = xalloc(cj.window);
		cj.dst[1] = xalloc(cj.window);
		memset(cj.dst[0], 0, cj.window);
		memset(cj.dst[1], 0, cj.window);
		time_pair(decode_once, &r, copy_run, &cj, o->min_seconds, &pt);
		td = o->median ? pt.a_median : pt.a_best;
		tc = o->median ? pt.b_median : pt.b_best;
		if (r.rc) {
			fprintf(stderr, "kvmm-bench-attn: decode failed: %s\n", strerror(-r.rc));
			return 1;
		}
		{
			double dg = 2 * kv / td / 1e9, cg = 2 * kv / tc / 1e9;

			if (o->json) {
				printf("%s{\"seq_len\":%d,\"kv_bytes\":%zu,\"items\":%d,"
				       "\"chunk_tokens\":%d,\"heads_per_pass\":%d,",
				       rows++ ? "," : "", L, 2 * kv, pi.items, pi.chunk_tokens,
				       pi.heads_per_pass);
				bench_numa_where(o, k, kv, "k");
				printf("\"items_local\":%d,\"items_remote\":%d,"
				       "\"decode_us\":%.1f,\"decode_us_median\":%.1f,"
				       "\"memcpy_us\":%.1f,\"memcpy_us_median\":%.1f,"
				       "\"memcpy_window_bytes\":%zu,\"decode_gbps\":%.2f,"
				       "\"memcpy_gbps\":%.2f,\"ratio\":%.3f}",
				       st.items_local, st.items_remote, td * 1e6, pt.a_median * 1e6,
				       tc * 1e6, pt.b_median * 1e6, cj.window, dg, cg, dg / cg);
			} else {
				printf("%8d %10.1f %7d %7d %12.1f %12.2f %12.2f %7.2f\n", L,
				       2.0 * kv / (1 << 20), pi.items, pi.chunk_tokens, td * 1e6,
				       dg, cg, dg / cg);
				if (pi.numa_nodes > 1) {
					bench_numa_where(o, k, kv, "K");
					printf("  items read on their own node: %d, across nodes: "
					       "%d\n",
					       st.items_local, st.items_remote);
				}
			}
		}
		free(cj.dst[0]);
		free(cj.dst[1]);
		free(k);
		free(v);
		free(q);
		free(out);
		free(lens);
	}
	if (o->json)
		printf("]}");
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: kvmm-bench-attn [--json] [--dtype f16|bf16|f32] [--batch N]\n"
		   "       [--q-heads N] [--kv-heads N] [--head-dim 64|128] [--lens L1,L2,...]\n"
		   "       [--threads N] [--seconds S] [--median] [--cpu-only | --gpu-only]\n"
		   "       [--isa auto|avx512|avx2|portable]\n"
		   "       [--flash FRACTION [--dir DIR] [--rounds N] [--no-fio]]\n"
		   "       [--layers N]  (GPU: token-major view with N layers, 8; 0: none)\n"
		   "Lengths take k and M suffixes (64k, 1M). Decode GB/s counts the K and V\n"
		   "bytes read; memcpy GB/s copies the same bytes with the same number of\n"
		   "threads; ratio = decode / memcpy. CPU times are the best of alternating\n"
		   "runs (--median: their median). --flash: the decode over libkvmm regions\n"
		   "with FRACTION of every slot on flash, against the same decode resident\n"
		   "and fio reading the same store file, alternately.\n");
}

static int parse_lens(struct bench_opts *o, char *s)
{
	o->nlens = 0;
	for (char *tok = strtok(s, ","); tok && o->nlens < BENCH_MAX_LENS;
	     tok = strtok(NULL, ",")) {
		char *end;
		long long v = strtoll(tok, &end, 10);

		if (*end == 'k' || *end == 'K')
			v <<= 10, end++;
		else if (*end == 'M' || *end == 'm')
			v <<= 20, end++;
		if (*end || v <= 0 || v > (1 << 30))
			return -1;
		o->lens[o->nlens++] = (int)v;
	}
	return o->nlens ? 0 : -1;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"json", no_argument, NULL, 'j'},		{"dtype", required_argument, NULL, 'd'},
	    {"batch", required_argument, NULL, 'b'},	{"q-heads", required_argument, NULL, 'q'},
	    {"kv-heads", required_argument, NULL, 'k'}, {"head-dim", required_argument, NULL, 'D'},
	    {"lens", required_argument, NULL, 'l'},	{"threads", required_argument, NULL, 't'},
	    {"seconds", required_argument, NULL, 's'},	{"cpu-only", no_argument, NULL, 'c'},
	    {"gpu-only", no_argument, NULL, 'g'},	{"median", no_argument, NULL, 'm'},
	    {"layers", required_argument, NULL, 'L'},	{"isa", required_argument, NULL, 'i'},
	    {"flash", required_argument, NULL, 'f'},	{"dir", required_argument, NULL, 'F'},
	    {"rounds", required_argument, NULL, 'r'},	{"no-fio", no_argument, NULL, 'n'},
	    {"help", no_argument, NULL, 'h'},		{NULL, 0, NULL, 0},
	};
	struct bench_opts o = {
	    .dtype = KVMM_ATTN_F16,
	    .batch = 4,
	    .q_heads = 32,
	    .kv_heads = 8,
	    .head_dim = 128,
	    .nlens = 3,
	    .lens = {1024, 4096, 16384},
	    .min_seconds = 0.5,
	    .layers = 8,
	    .flash = -1,
	    .rounds = 5,
	};
	int c, rc = 0;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			o.json = 1;
			break;
		case 'd':
			if (!strcmp(optarg, "f16"))
				o.dtype = KVMM_ATTN_F16;
			else if (!strcmp(optarg, "bf16"))
				o.dtype = KVMM_ATTN_BF16;
			else if (!strcmp(optarg, "f32"))
				o.dtype = KVMM_ATTN_F32;
			else
				goto bad;
			break;
		case 'b':
			o.batch = atoi(optarg);
			break;
		case 'q':
			o.q_heads = atoi(optarg);
			break;
		case 'k':
			o.kv_heads = atoi(optarg);
			break;
		case 'D':
			o.head_dim = atoi(optarg);
			break;
		case 'l':
			if (parse_lens(&o, optarg))
				goto bad;
			break;
		case 't':
			o.threads = atoi(optarg);
			break;
		case 's':
			o.min_seconds = atof(optarg);
			break;
		case 'm':
			o.median = 1;
			break;
		case 'L':
			o.layers = atoi(optarg);
			if (o.layers < 0)
				goto bad;
			break;
		case 'c':
			o.cpu_only = 1;
			break;
		case 'i':
			if (!strcmp(optarg, "portable"))
				o.no_simd = 1;
			else if (!strcmp(optarg, "avx2"))
				o.no_avx512 = 1;
			else if (strcmp(optarg, "avx512") && strcmp(optarg, "auto"))
				goto bad;
			break;
		case 'f':
			o.flash = atof(optarg);
			if (o.flash < 0 || o.flash > 1)
				goto bad;
			break;
		case 'F':
			o.flash_dir = optarg;
			break;
		case 'r':
			o.rounds = atoi(optarg);
			if (o.rounds < 1 || o.rounds > 64)
				goto bad;
			break;
		case 'n':
			o.no_fio = 1;
			break;
		case 'g':
			o.gpu_only = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			goto bad;
		}
	}
	if (o.batch <= 0 || o.kv_heads <= 0 || o.q_heads % o.kv_heads ||
	    (o.head_dim != 64 && o.head_dim != 128))
		goto bad;
	if (o.json)
		printf("{");
	if (o.flash >= 0) {
		/* The flash decode is a CPU measurement of its own. */
		rc = bench_flash(&o);
		if (o.json)
			printf("}\n");
		return rc;
	}
	if (!o.gpu_only)
		rc = bench_cpu(&o);
	if (!o.cpu_only && !rc) {
		if (o.json)
			printf("%s\"gpu\":", o.gpu_only ? "" : ",");
		else if (!o.gpu_only)
			printf("\n");
#ifdef KVMM_BENCH_CUDA
		rc = bench_gpu(&o);
		if (rc == 77)
			rc = 0;
#else
		if (o.json)
			printf("{\"skipped\":\"built without CUDA\"}");
		else
			printf("GPU: skipped (built without CUDA)\n");
#endif
	}
	if (o.json)
		printf("}\n");
	return rc;
bad:
	usage(stderr);
	return 2;
}
