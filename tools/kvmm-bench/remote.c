/* SPDX-License-Identifier: MIT */
/*
 * kvmm-bench-remote: the remote tier's throughput and lookup cost against a
 * running server (docs/benchmarks.md). Prints measurements; judges nothing.
 *
 *   kvmm-bench-remote --servers HOST:PORT [--conns N] [--mib M] [--sizes K,K,...]
 *
 * For each value size (KiB): PUT then GET M MiB of distinct values, all
 * submitted at once (in flight: the config's default cap), GB/s of payload
 * and CPU seconds (this process, user + system) per GB. Then lookups of a
 * 32k-token prefix whose chunks are all stored, at 256 and at 16 tokens
 * per chunk: milliseconds and pipelined round trips. The store is flushed
 * (FLUSHALL) before each size: run it against a server of its own.
 */
#include <errno.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <kvmm/remote.h>

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int open_remote(const char *servers, uint32_t conns, uint32_t chunk_tokens,
		       struct kvmm_remote **r)
{
	struct kvmm_remote_config c = KVMM_REMOTE_CONFIG_INIT;

	c.servers = servers;
	c.connections = conns;
	c.hash_seed = "0";
	c.budget_ms = 60000;
	c.timeout_ms = 10000;
	c.layout = (struct kvmm_remote_layout){.model = "bench",
					       .dtype = "bf16",
					       .layers = 1,
					       .kv_heads = 1,
					       .head_dim = 64,
					       .dtype_bytes = 2,
					       .block_tokens = 16,
					       .chunk_tokens = chunk_tokens,
					       .tp_size = 1};
	return kvmm_remote_open(&c, r);
}

static void flushall(const char *servers)
{
	char host[64];
	const char *colon = strchr(servers, ':');
	redisContext *c;

	snprintf(host, sizeof(host), "%.*s", (int)(colon - servers), servers);
	c = redisConnect(host, atoi(colon + 1));
	if (c && !c->err)
		freeReplyObject(redisCommand(c, "FLUSHALL"));
	if (c)
		redisFree(c);
}

static void name(struct kvmm_hash256 *h, uint64_t i)
{
	memset(h, 0, sizeof(*h));
	memcpy(h->b, &i, sizeof(i));
	h->b[31] = 0xbe;
}

/* PUT then GET n values of @size bytes; prints one line. */
static int bench_size(const char *servers, uint32_t conns, size_t size, uint64_t total)
{
	uint64_t n = total / size < 4 ? 4 : total / size;
	struct kvmm_op **ops = calloc(n, sizeof(*ops));
	char *buf = malloc(size), *dst = malloc(size * (n < 64 ? n : 64));
	struct kvmm_remote *r;
	struct kvmm_hash256 h;
	double t0, c0, put_s, put_cpu, get_s, get_cpu;
	uint64_t ok = 0, hit = 0;
	int err;

	if (!ops || !buf || !dst)
		return -ENOMEM;
	for (size_t i = 0; i < size; i++)
		buf[i] = (char)(i * 31 + 7);
	flushall(servers);
	err = open_remote(servers, conns, 256, &r);
	if (err)
		return err;
	t0 = now_s(), c0 = cpu_s();
	for (uint64_t i = 0; i < n; i++) {
		name(&h, i);
		err = kvmm_remote_put(r, &h, NULL, buf, size, 0, &ops[i]);
		if (err)
			return err;
	}
	for (uint64_t i = 0; i < n; i++)
		ok += kvmm_wait(ops[i]) == 1;
	put_s = now_s() - t0, put_cpu = cpu_s() - c0;
	/* GETs land in a ring of 64 destinations (bounded memory) */
	t0 = now_s(), c0 = cpu_s();
	for (uint64_t i = 0; i < n; i++) {
		name(&h, i);
		err = kvmm_remote_get(r, &h, NULL, dst + (i % 64) * size, size, 0, &ops[i]);
		if (err)
			return err;
	}
	for (uint64_t i = 0; i < n; i++)
		hit += kvmm_wait(ops[i]) == 1;
	get_s = now_s() - t0, get_cpu = cpu_s() - c0;
	printf("%9zu  %6llu  %9.2f  %9.2f  %11.2f  %11.2f  %llu/%llu\n", size >> 10,
	       (unsigned long long)n, (double)(n * size) / put_s / 1e9,
	       (double)(n * size) / get_s / 1e9, put_cpu / ((double)(n * size) / 1e9),
	       get_cpu / ((double)(n * size) / 1e9), (unsigned long long)ok,
	       (unsigned long long)hit);
	kvmm_remote_close(r);
	free(ops);
	free(buf);
	free(dst);
	return 0;
}

/* Stores every chunk of a 32k-token prefix, then times lookups of it. */
static int bench_lookup(const char *servers, uint32_t conns, uint32_t chunk_tokens)
{
	const uint32_t ntok = 32768, nchunks = ntok / chunk_tokens;
	struct kvmm_hash256 none, *blocks = malloc(ntok / 16 * sizeof(*blocks)),
				  *chunks = malloc(nchunks * sizeof(*chunks));
	uint32_t *tok = malloc(ntok * sizeof(*tok));
	struct kvmm_remote_stats s0, s1;
	struct kvmm_remote *r;
	char small[64] = {0};
	double t0, best = 1e9;
	size_t found = 0;
	int err;

	for (uint32_t i = 0; i < ntok; i++)
		tok[i] = i * 2654435761u % 128000;
	kvmm_vllm_none_hash("0", &none);
	t0 = now_s();
	kvmm_vllm_hash_blocks(&none, tok, ntok, 16, blocks);
	double hash_ms = (now_s() - t0) * 1e3;
	err = open_remote(servers, conns, chunk_tokens, &r);
	if (err)
		return err;
	kvmm_remote_chunk_hashes(r, blocks, ntok / 16, chunks);
	for (uint32_t i = 0; i < nchunks; i++) {
		struct kvmm_op *op;

		kvmm_remote_put(r, &chunks[i], i ? &chunks[i - 1] : NULL, small, sizeof(small), 0,
				&op);
		kvmm_wait(op);
	}
	kvmm_remote_stats(r, &s0);
	for (int rep = 0; rep < 20; rep++) {
		t0 = now_s();
		kvmm_remote_lookup(r, chunks, nchunks, 0, &found);
		if (now_s() - t0 < best)
			best = now_s() - t0;
	}
	kvmm_remote_stats(r, &s1);
	printf("%12u  %6u  %7zu  %11.2f  %10.2f  %9.2f\n", chunk_tokens, nchunks, found,
	       (double)(s1.lookup_round_trips - s0.lookup_round_trips) / 20, best * 1e3, hash_ms);
	kvmm_remote_close(r);
	free(blocks);
	free(chunks);
	free(tok);
	return 0;
}

int main(int argc, char **argv)
{
	const char *servers = NULL, *sizes = "64,256,1024,2048,4096,8192,32768";
	uint32_t conns = 4;
	uint64_t mib = 512;
	int o;

	while ((o = getopt_long(argc, argv, "s:c:m:z:",
				(const struct option[]){{"servers", 1, NULL, 's'},
							{"conns", 1, NULL, 'c'},
							{"mib", 1, NULL, 'm'},
							{"sizes", 1, NULL, 'z'},
							{0}},
				NULL)) != -1) {
		if (o == 's')
			servers = optarg;
		else if (o == 'c')
			conns = (uint32_t)atoi(optarg);
		else if (o == 'm')
			mib = strtoull(optarg, NULL, 10);
		else if (o == 'z')
			sizes = optarg;
		else
			return 2;
	}
	if (!servers) {
		fprintf(stderr,
			"usage: %s --servers HOST:PORT [--conns N] [--mib M] "
			"[--sizes KIB,...]\n",
			argv[0]);
		return 2;
	}
	printf("connections %u, %llu MiB per size, payload GB/s (1e9 bytes), CPU s per GB\n", conns,
	       (unsigned long long)mib);
	printf("value_KiB  values  put_GB/s  get_GB/s  put_cpu_s/GB  get_cpu_s/GB  stored/hit\n");
	for (const char *p = sizes; *p;) {
		size_t kib = strtoull(p, NULL, 10);
		int err = bench_size(servers, conns, kib << 10, mib << 20);

		if (err) {
			fprintf(stderr, "size %zu KiB: %s\n", kib, strerror(-err));
			return 1;
		}
		p = strchr(p, ',');
		if (!p)
			break;
		p++;
	}
	flushall(servers);
	printf("\nlookup of a 32768-token prefix, every chunk stored (best of 20)\n");
	printf("chunk_tokens  chunks  found  round_trips  lookup_ms  hash_ms\n");
	if (bench_lookup(servers, conns, 256) || bench_lookup(servers, conns, 16))
		return 1;
	flushall(servers);
	return 0;
}
