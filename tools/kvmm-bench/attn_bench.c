/*
 * kvmm-bench-attn: attention kernel throughput next to the copy of the same
 * bytes in the same run. CPU: decode GB/s of K/V read vs multi-threaded
 * memcpy GB/s; GPU (where built with CUDA and a GPU is present): see
 * attn_bench_gpu.c. A human table by default, --json for one JSON object.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "attn_bench.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
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
	size_t bytes; /* per buffer */
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

	for (int i = 0; i < 2 && off < c->job->bytes; i++)
		memcpy(c->job->dst[i] + off, c->job->src[i] + off,
		       c->job->bytes - off < per ? c->job->bytes - off : per);
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

static int bench_cpu(const struct bench_opts *o)
{
	size_t es = kvmm_attn_dtype_size(o->dtype);
	int threads = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);

	if (o->json)
		printf("\"cpu\":{\"simd\":%s,\"threads\":%d,\"stat\":\"%s\",\"runs\":[",
		       kvmm_attn_cpu_has_simd() ? "true" : "false", threads,
		       o->median ? "median" : "best");
	else
		printf(
		    "CPU decode (%s, batch %d, %d q / %d kv heads, head_dim %d, %d threads, %s;\n"
		    "%s of alternating runs; memcpy copies the same K/V bytes)\n"
		    "%8s %10s %12s %12s %12s %7s\n",
		    kvmm_attn_dtype_name(o->dtype), o->batch, o->q_heads, o->kv_heads, o->head_dim,
		    threads, kvmm_attn_cpu_has_simd() ? "AVX2+F16C" : "portable",
		    o->median ? "median" : "best", "seq_len", "KV MiB", "decode us", "decode GB/s",
		    "memcpy GB/s", "ratio");
	for (int i = 0; i < o->nlens; i++) {
		int L = o->lens[i], hd = o->kv_heads * o->head_dim;
		size_t kv = (size_t)o->batch * L * hd * es,
		       qn = (size_t)o->batch * o->q_heads * o->head_dim;
		struct decode_run r = {.opts = {.threads = threads}};
		struct copy_job cj = {.bytes = kv, .threads = threads};
		int32_t *lens = xalloc(sizeof(int32_t) * (size_t)o->batch);
		void *k = xalloc(kv), *v = xalloc(kv), *q = xalloc(qn * es), *out = xalloc(qn * es);
		struct pair_times pt;
		double td, tc;

		fill(k, kv);
		fill(v, kv);
		fill(q, qn * es);
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
		    .q = {q, o->dtype, (int64_t)o->q_heads * o->head_dim, 0, o->head_dim, 1},
		    .k = {k, o->dtype, (int64_t)L * hd, hd, o->head_dim, 1},
		    .v = {v, o->dtype, (int64_t)L * hd, hd, o->head_dim, 1},
		    .o = {out, o->dtype, (int64_t)o->q_heads * o->head_dim, 0, o->head_dim, 1},
		};
		/* Copy K/V to fresh buffers: the decode's memory stays what it reads. */
		cj.src[0] = k;
		cj.src[1] = v;
		cj.dst[0] = xalloc(kv);
		cj.dst[1] = xalloc(kv);
		memset(cj.dst[0], 0, kv);
		memset(cj.dst[1], 0, kv);
		time_pair(decode_once, &r, copy_run, &cj, o->min_seconds, &pt);
		td = o->median ? pt.a_median : pt.a_best;
		tc = o->median ? pt.b_median : pt.b_best;
		if (r.rc) {
			fprintf(stderr, "kvmm-bench-attn: decode failed: %s\n", strerror(-r.rc));
			return 1;
		}
		{
			double dg = 2 * kv / td / 1e9, cg = 2 * kv / tc / 1e9;

			if (o->json)
				printf("%s{\"seq_len\":%d,\"kv_bytes\":%zu,\"decode_us\":%.1f,"
				       "\"decode_us_median\":%.1f,\"memcpy_us\":%.1f,"
				       "\"memcpy_us_median\":%.1f,\"decode_gbps\":%.2f,"
				       "\"memcpy_gbps\":%.2f,\"ratio\":%.3f}",
				       i ? "," : "", L, 2 * kv, td * 1e6, pt.a_median * 1e6,
				       tc * 1e6, pt.b_median * 1e6, dg, cg, dg / cg);
			else
				printf("%8d %10.1f %12.1f %12.2f %12.2f %7.2f\n", L,
				       2.0 * kv / (1 << 20), td * 1e6, dg, cg, dg / cg);
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
		   "       [--layers N]  (GPU: token-major view with N layers, 8; 0: none)\n"
		   "Decode GB/s counts the K and V bytes read; memcpy GB/s copies the same bytes\n"
		   "with the same number of threads; ratio = decode / memcpy. CPU times are the\n"
		   "best of alternating runs (--median: their median).\n");
}

static int parse_lens(struct bench_opts *o, char *s)
{
	o->nlens = 0;
	for (char *tok = strtok(s, ","); tok && o->nlens < BENCH_MAX_LENS;
	     tok = strtok(NULL, ",")) {
		o->lens[o->nlens] = atoi(tok);
		if (o->lens[o->nlens] <= 0)
			return -1;
		o->nlens++;
	}
	return o->nlens ? 0 : -1;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"dtype", required_argument, NULL, 'd'},
	    {"batch", required_argument, NULL, 'b'},
	    {"q-heads", required_argument, NULL, 'q'},
	    {"kv-heads", required_argument, NULL, 'k'},
	    {"head-dim", required_argument, NULL, 'D'},
	    {"lens", required_argument, NULL, 'l'},
	    {"threads", required_argument, NULL, 't'},
	    {"seconds", required_argument, NULL, 's'},
	    {"cpu-only", no_argument, NULL, 'c'},
	    {"gpu-only", no_argument, NULL, 'g'},
	    {"median", no_argument, NULL, 'm'},
	    {"layers", required_argument, NULL, 'L'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
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
