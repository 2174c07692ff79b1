/* SPDX-License-Identifier: MIT */
/*
 * The remote tier against real servers that tests/remote/run.sh starts on
 * loopback: $KVMM_TEST_REDIS and $KVMM_TEST_VALKEY (single servers,
 * host:port) and $KVMM_TEST_CLUSTER (any nodes of a 3-master/3-replica
 * Redis Cluster). A test whose server is not there skips, saying so.
 */
#include "../unit/kv_helpers.h"

#include <dirent.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include <kvmm/remote.h>

#define TOKENS	  16 /* per chunk */
#define NCHUNKS	  24
#define ROW_BYTES (2 * 64 * 2) /* kv_heads * head_dim * dtype_bytes */

static const char *server;  /* the single server of the running test */
static const char *cluster; /* any nodes of the cluster */

static struct kvmm_remote_layout t_layout(const char *revision)
{
	return (struct kvmm_remote_layout){
	    .model = "kvmm-test/tiny",
	    .revision = revision,
	    .dtype = "f16",
	    .layers = 4,
	    .kv_heads = 2,
	    .head_dim = 64,
	    .dtype_bytes = 2,
	    .block_tokens = 4,
	    .chunk_tokens = TOKENS,
	    .tp_size = 1,
	};
}

static int t_remote_open(const char *servers, const char *revision, uint32_t timeout_ms,
			 struct kvmm_remote **rp)
{
	struct kvmm_remote_config c = KVMM_REMOTE_CONFIG_INIT;

	c.servers = servers;
	c.hash_seed = "0";
	c.layout = t_layout(revision);
	c.timeout_ms = timeout_ms;
	c.connections = 2;
	return kvmm_remote_open(&c, rp);
}

static uint64_t t_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A control connection to host:port, the first of a list that answers. */
static redisContext *t_raw(const char *servers)
{
	const char *p = servers;

	while (*p) {
		const char *colon = strchr(p, ':'), *comma = strchr(p, ',');
		char host[64];
		redisContext *c;

		assert_non_null(colon);
		snprintf(host, sizeof(host), "%.*s", (int)(colon - p), p);
		c = redisConnect(host, atoi(colon + 1));
		assert_non_null(c);
		if (!c->err)
			return c;
		redisFree(c);
		if (!comma)
			break;
		p = comma + 1;
	}
	fail_msg("no server of %s answers", servers);
	return NULL;
}

static void t_cmd(redisContext *c, const char *cmd)
{
	redisReply *r = redisCommand(c, cmd);

	if (!r || r->type == REDIS_REPLY_ERROR)
		fail_msg("%s: %s", cmd, r ? r->str : c->errstr);
	freeReplyObject(r);
}

/* Tokens of sequence @seq and the names of its chunks. */
static void t_chunks(uint32_t seq, uint32_t n, struct kvmm_remote *r, struct kvmm_hash256 *chunks)
{
	uint32_t ntok = n * TOKENS;
	uint32_t *tok = malloc(ntok * sizeof(*tok));
	struct kvmm_hash256 none, *blocks = malloc(ntok / 4 * sizeof(*blocks));

	for (uint32_t i = 0; i < ntok; i++)
		tok[i] = seq * 100003u + i * 7919u;
	T_OK(kvmm_vllm_none_hash("0", &none));
	T_EQ(kvmm_vllm_hash_blocks(&none, tok, ntok, 4, blocks), ntok / 4);
	T_EQ(kvmm_remote_chunk_hashes(r, blocks, ntok / 4, chunks), n);
	free(tok);
	free(blocks);
}

/* KV content that depends on the sequence, not on the slot. */
static uint64_t t_seed(uint32_t seq, uint32_t l, uint32_t w, uint32_t tok)
{
	return t_row_seed(0, l, w, tok, seq + 1);
}

static struct kvmm_kv_config t_kvc(uint32_t layout)
{
	struct kvmm_kv_config c = t_kv_config(layout, 2);

	c.max_tokens = 1024;
	return c;
}

static void t_kv_write(struct kvmm_kv *kv, uint32_t slot, uint32_t seq, uint32_t ntok)
{
	for (uint32_t l = 0; l < 4; l++)
		for (uint32_t w = 0; w < 2; w++)
			for (uint32_t t = 0; t < ntok; t++)
				t_fill(t_row(kv, l, w, slot, t), ROW_BYTES, t_seed(seq, l, w, t));
}

/* Tokens [0, ntok) of @slot hold sequence @seq's KV, bitwise. */
static bool t_kv_equal(struct kvmm_kv *kv, uint32_t slot, uint32_t seq, uint32_t ntok)
{
	unsigned char ref[ROW_BYTES];

	for (uint32_t l = 0; l < 4; l++)
		for (uint32_t w = 0; w < 2; w++)
			for (uint32_t t = 0; t < ntok; t++) {
				t_fill(ref, ROW_BYTES, t_seed(seq, l, w, t));
				if (memcmp(t_row(kv, l, w, slot, t), ref, ROW_BYTES)) {
					print_message("slot %u layer %u %c token %u differs\n",
						      slot, l, w ? 'V' : 'K', t);
					return false;
				}
			}
	return true;
}

/* A cache with @slot active at @ntok tokens. */
static struct kvmm_kv *t_kv_slot(struct kvmm_ctx *ctx, uint32_t layout, uint32_t slot,
				 uint32_t ntok)
{
	struct kvmm_kv_config c = t_kvc(layout);
	struct kvmm_kv *kv = NULL;

	T_OK(kvmm_kv_create(ctx, &c, &kv));
	T_OK(kvmm_kv_step(kv, 1, &slot, &ntok));
	return kv;
}

/* Publishes sequence @seq's first @n chunks from a layer-major cache of
 * this process: the prefill side. Returns how many the store holds. */
static int t_publish(const char *servers, uint32_t seq, uint32_t n)
{
	struct kvmm_ctx *ctx = t_open(0, 0);
	struct kvmm_remote *r;
	struct kvmm_hash256 chunks[64];
	struct kvmm_kv *kv;
	struct kvmm_op *op;
	int got;

	T_OK(t_remote_open(servers, "r1", 0, &r));
	t_chunks(seq, n, r, chunks);
	kv = t_kv_slot(ctx, KVMM_LAYOUT_LAYER_MAJOR, 1, n * TOKENS);
	t_kv_write(kv, 1, seq, n * TOKENS);
	T_OK(kvmm_remote_publish_kv(r, kv, 1, chunks, 0, n, 5000, &op));
	got = kvmm_wait(op);
	kvmm_remote_close(r);
	T_OK(kvmm_kv_destroy(kv));
	T_OK(kvmm_close(ctx));
	return got;
}

/* The decode side: looks up and fetches sequence @seq into slot 2 of a
 * token-major cache of another context; returns the chunks that arrived,
 * each checked bitwise. */
static int t_fetch(const char *servers, const char *revision, uint32_t seq, uint32_t n,
		   uint32_t budget_ms, size_t *found)
{
	struct kvmm_ctx *ctx = t_open(0, 0);
	struct kvmm_remote *r;
	struct kvmm_hash256 chunks[64];
	struct kvmm_kv *kv;
	struct kvmm_op *op;
	int got;

	T_OK(t_remote_open(servers, revision, 0, &r));
	t_chunks(seq, n, r, chunks);
	T_OK(kvmm_remote_lookup(r, chunks, n, budget_ms, found));
	kv = t_kv_slot(ctx, KVMM_LAYOUT_TOKEN_MAJOR, 2, n * TOKENS);
	T_OK(kvmm_remote_fetch_kv(r, kv, 2, chunks, 0, n, budget_ms, &op));
	got = kvmm_wait(op);
	assert_true(got >= 0 && got <= (int)n);
	if (!t_kv_equal(kv, 2, seq, (uint32_t)got * TOKENS))
		fail_msg("fetched chunks differ from what was published");
	kvmm_remote_close(r);
	T_OK(kvmm_kv_destroy(kv));
	T_OK(kvmm_close(ctx));
	return got;
}

static void t_need(const char *what, const char *env)
{
	if (!what)
		T_SKIP("no server: %s is unset (tests/remote/run.sh starts them)", env);
}

static uint32_t seq_base(void)
{
	static uint32_t s;

	if (!s)
		s = (uint32_t)getpid() * 1000u;
	return ++s;
}

static void published_in_one_process_fetched_bitwise_in_another(void **state)
{
	uint32_t seq = seq_base();
	size_t found = 0;
	pid_t pid;
	int st;

	(void)state;
	t_need(server, "KVMM_TEST_REDIS/VALKEY");
	pid = fork();
	assert_true(pid >= 0);
	if (!pid)
		_exit(t_publish(server, seq, NCHUNKS) == NCHUNKS ? 0 : 1);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	T_EQ(WIFEXITED(st) ? WEXITSTATUS(st) : -1, 0);
	T_EQ(t_fetch(server, "r1", seq, NCHUNKS, 5000, &found), NCHUNKS);
	T_EQ(found, NCHUNKS);
	/* a longer sequence with the same start: the shared chunks, no more */
	T_EQ(t_fetch(server, "r1", seq, NCHUNKS + 4, 5000, &found), NCHUNKS);
	T_EQ(found, NCHUNKS);
}

/* A chunk gone from the middle (deleted by the test) ends both the lookup
 * and the fetch there: what comes after it is recomputed, not used. */
static void a_missing_chunk_ends_lookup_and_fetch(void **state)
{
	uint32_t seq = seq_base();
	struct kvmm_hash256 chunks[8];
	struct kvmm_remote *r;
	char key[128];
	redisContext *c;
	size_t found = 99;
	int kl;

	(void)state;
	t_need(server, "KVMM_TEST_REDIS/VALKEY");
	T_EQ(t_publish(server, seq, 8), 8);
	T_OK(t_remote_open(server, "r1", 0, &r));
	t_chunks(seq, 8, r, chunks);
	kl = kvmm_remote_key(r, &chunks[3], key, sizeof(key));
	kvmm_remote_close(r);
	c = t_raw(server);
	freeReplyObject(redisCommand(c, "DEL %b", key, (size_t)kl));
	redisFree(c);
	T_EQ(t_fetch(server, "r1", seq, 8, 2000, &found), 3);
	T_EQ(found, 3);
}

/*
 * Admission as an engine does it: the prefix index finds the chunks a
 * local slot holds and they are shared into the new slot, the remote tier
 * supplies the chunks after them, the engine computes the rest and
 * publishes its new full chunks; the slot holds the sequence bitwise.
 */
static void admission_shares_local_then_fetches_remote_then_publishes(void **state)
{
	enum { PUBLISHED = 8, LOCAL = 2, TOTAL = 10, BLOCKS = TOTAL * TOKENS / 4 };
	struct kvmm_prefix_config pc = {.size = sizeof(pc), .block_tokens = 4};
	struct kvmm_block_hash ib[BLOCKS];
	struct kvmm_hash256 none, blocks[BLOCKS], chunks[TOTAL];
	uint32_t seq = seq_base(), tok[TOTAL * TOKENS], held[BLOCKS], dst, len;
	struct kvmm_prefix *px;
	struct kvmm_remote *r;
	struct kvmm_ctx *ctx;
	struct kvmm_kv *kv;
	struct kvmm_op *op;
	size_t matched, found, local;

	(void)state;
	t_need(server, "KVMM_TEST_REDIS/VALKEY");
	T_EQ(t_publish(server, seq, PUBLISHED), PUBLISHED); /* another host's prefill */

	ctx = t_open(0, 0);
	T_OK(t_remote_open(server, "r1", 0, &r));
	for (uint32_t i = 0; i < TOTAL * TOKENS; i++)
		tok[i] = seq * 100003u + i * 7919u; /* as t_chunks */
	T_OK(kvmm_vllm_none_hash("0", &none));
	T_EQ(kvmm_vllm_hash_blocks(&none, tok, TOTAL * TOKENS, 4, blocks), BLOCKS);
	T_EQ(kvmm_remote_chunk_hashes(r, blocks, BLOCKS, chunks), TOTAL);
	for (int i = 0; i < BLOCKS; i++)
		ib[i] = kvmm_hash256_block(&blocks[i]);
	T_OK(kvmm_prefix_create(&pc, &px));
	/* slot 0 computed the first LOCAL chunks here */
	kv = t_kv_slot(ctx, KVMM_LAYOUT_LAYER_MAJOR, 0, LOCAL * TOKENS);
	t_kv_write(kv, 0, seq, LOCAL * TOKENS);
	T_OK(kvmm_prefix_insert(px, 0, ib, LOCAL * TOKENS / 4));

	/* a request for the whole sequence arrives */
	T_OK(kvmm_prefix_lookup(px, ib, BLOCKS, held, &matched));
	T_EQ(matched, LOCAL * TOKENS / 4);
	local = matched * 4 / TOKENS;
	T_OK(kvmm_kv_alloc_slot(kv, TOTAL * TOKENS, &dst));
	T_OK(kvmm_kv_share_prefix(kv, dst, held[0], (uint32_t)(local * TOKENS)));
	len = TOTAL * TOKENS;
	T_OK(kvmm_kv_step(kv, 1, &dst, &len));
	T_OK(kvmm_remote_lookup(r, chunks + local, TOTAL - local, 0, &found));
	T_EQ(found, PUBLISHED - LOCAL);
	T_OK(kvmm_remote_fetch_kv(r, kv, dst, chunks, local, found, 0, &op));
	T_EQ(kvmm_wait(op), found);
	/* the engine computes tokens [(local + found) * TOKENS, len) */
	for (uint32_t l = 0; l < 4; l++)
		for (uint32_t w = 0; w < 2; w++)
			for (uint32_t t = (uint32_t)(local + found) * TOKENS; t < len; t++)
				t_fill(t_row(kv, l, w, dst, t), ROW_BYTES, t_seed(seq, l, w, t));
	assert_true(t_kv_equal(kv, dst, seq, len));
	T_OK(kvmm_prefix_insert(px, dst, ib, BLOCKS));
	/* and publishes what the store lacks */
	T_OK(kvmm_remote_publish_kv(r, kv, dst, chunks, local + found, TOTAL - local - found, 0,
				    &op));
	T_EQ(kvmm_wait(op), TOTAL - local - found);
	T_OK(kvmm_remote_lookup(r, chunks, TOTAL, 0, &found));
	T_EQ(found, TOTAL); /* the next host gets the whole sequence */
	kvmm_prefix_destroy(px);
	kvmm_remote_close(r);
	T_OK(kvmm_kv_destroy(kv));
	T_OK(kvmm_close(ctx));
}

static void a_different_fingerprint_never_hits(void **state)
{
	uint32_t seq = seq_base();
	size_t found = 1;

	(void)state;
	t_need(server, "KVMM_TEST_REDIS/VALKEY");
	T_EQ(t_publish(server, seq, 4), 4);
	T_EQ(t_fetch(server, "r2", seq, 4, 2000, &found), 0);
	T_EQ(found, 0);
	T_EQ(t_fetch(server, "r1", seq, 4, 2000, &found), 4);
}

/* One raw value of @len bytes: 1 stored, 0 there already. */
static int t_put(struct kvmm_remote *r, const struct kvmm_hash256 *h, const void *buf, size_t len)
{
	struct kvmm_op *op;

	T_OK(kvmm_remote_put(r, h, NULL, buf, len, 0, &op));
	return kvmm_wait(op);
}

static int t_get(struct kvmm_remote *r, const struct kvmm_hash256 *h, void *buf, size_t len,
		 uint32_t budget_ms)
{
	struct kvmm_op *op;

	T_OK(kvmm_remote_get(r, h, NULL, buf, len, budget_ms, &op));
	return kvmm_wait(op);
}

static void t_random_hash(struct kvmm_hash256 *h)
{
	static uint64_t n;

	t_fill(h->b, sizeof(h->b), (uint64_t)getpid() << 32 ^ ++n ^ (uint64_t)t_ms() << 16);
}

static void the_first_writer_wins(void **state)
{
	struct kvmm_remote *r;
	struct kvmm_hash256 h;
	char a[4096], b[4096], got[4096];

	(void)state;
	t_need(server, "KVMM_TEST_REDIS/VALKEY");
	T_OK(t_remote_open(server, "r1", 0, &r));
	t_random_hash(&h);
	memset(a, 'a', sizeof(a));
	memset(b, 'b', sizeof(b));
	T_EQ(t_put(r, &h, a, sizeof(a)), 1);
	T_EQ(t_put(r, &h, b, sizeof(b)), 0);
	T_EQ(t_get(r, &h, got, sizeof(got), 0), 1);
	assert_memory_equal(got, a, sizeof(a));
	kvmm_remote_close(r);
}

static void corrupted_values_are_misses(void **state)
{
	struct kvmm_remote *r;
	struct kvmm_remote_stats st;
	struct kvmm_hash256 h;
	char key[128], buf[8192], got[8192];
	redisContext *c;
	redisReply *rep;
	int kl;

	(void)state;
	t_need(server, "KVMM_TEST_REDIS/VALKEY");
	c = t_raw(server);
	T_OK(t_remote_open(server, "r1", 0, &r));
	for (int pos = 0; pos < 4; pos++) {
		t_random_hash(&h);
		t_fill(buf, sizeof(buf), (uint64_t)pos);
		T_EQ(t_put(r, &h, buf, sizeof(buf)), 1);
		T_EQ(t_get(r, &h, got, sizeof(got), 0), 1);
		kl = kvmm_remote_key(r, &h, key, sizeof(key));
		assert_true(kl > 0);
		rep = redisCommand(c, "GET %b", key, (size_t)kl);
		assert_non_null(rep);
		assert_int_equal(rep->type, REDIS_REPLY_STRING);
		/* a flipped bit in the header, the payload's start, middle, end; or a
		 * value cut short */
		size_t at[] = {9, 144, 144 + 4000, rep->len - 1};
		if (pos < 3)
			rep->str[at[pos]] ^= 0x10;
		size_t len = pos == 3 ? rep->len - 100 : rep->len;
		freeReplyObject(redisCommand(c, "SET %b %b", key, (size_t)kl, rep->str, len));
		freeReplyObject(rep);
		T_EQ(t_get(r, &h, got, sizeof(got), 0), 0);
	}
	T_OK(kvmm_remote_stats(r, &st));
	T_EQ(st.get_bad, 4);
	kvmm_remote_close(r);
	redisFree(c);
}

static void a_paused_server_times_out_instead_of_hanging(void **state)
{
	struct kvmm_remote *r;
	struct kvmm_remote_stats st;
	struct kvmm_hash256 h[8];
	char buf[1024];
	redisContext *c;
	size_t found = 99;
	uint64_t t0;

	(void)state;
	t_need(server, "KVMM_TEST_REDIS/VALKEY");
	c = t_raw(server);
	T_OK(t_remote_open(server, "r1", 300, &r));
	for (int i = 0; i < 8; i++) {
		t_random_hash(&h[i]);
		T_EQ(t_put(r, &h[i], buf, sizeof(buf)), 1);
	}
	t_cmd(c, "CLIENT PAUSE 4000 ALL");
	t0 = t_ms();
	T_EQ(t_get(r, &h[0], buf, sizeof(buf), 1000), 0);
	T_OK(kvmm_remote_lookup(r, h, 8, 600, &found));
	T_EQ(found, 0);
	if (t_ms() - t0 > 2500)
		fail_msg("a paused server held the calls %llu ms (budgets 1000 + 600 ms)",
			 (unsigned long long)(t_ms() - t0));
	T_OK(kvmm_remote_stats(r, &st));
	assert_true(st.timeouts >= 1);
	t_cmd(c, "CLIENT UNPAUSE");
	/* the client reconnects and the value is there again */
	T_EQ(t_get(r, &h[0], buf, sizeof(buf), 2000), 1);
	kvmm_remote_close(r);
	redisFree(c);
}

static void evicted_values_are_misses(void **state)
{
	enum { N = 48, LEN = 512 << 10 };
	struct kvmm_remote *r;
	struct kvmm_hash256 h[N];
	char *buf = malloc(LEN), *got = malloc(LEN);
	redisContext *c;
	size_t found;
	int hits = 0;

	(void)state;
	if (!server) {
		free(buf);
		free(got);
		t_need(server, "KVMM_TEST_REDIS/VALKEY");
	}
	c = t_raw(server);
	t_cmd(c, "FLUSHALL");
	t_cmd(c, "CONFIG SET maxmemory-policy allkeys-lru");
	t_cmd(c, "CONFIG SET maxmemory 8mb");
	T_OK(t_remote_open(server, "r1", 0, &r));
	for (int i = 0; i < N; i++) {
		t_random_hash(&h[i]);
		t_fill(buf, LEN, (uint64_t)i);
		T_EQ(t_put(r, &h[i], buf, LEN), 1);
	}
	for (int i = 0; i < N; i++) {
		int g = t_get(r, &h[i], got, LEN, 0);

		T_EQ(g == 0 || g == 1, 1);
		if (g) {
			t_fill(buf, LEN, (uint64_t)i);
			assert_memory_equal(got, buf, LEN);
			hits++;
		}
	}
	T_OK(kvmm_remote_lookup(r, h, N, 0, &found));
	if (hits == N || hits == 0 || found >= N)
		fail_msg("8 MiB held %d of %d values of 512 KiB, lookup found %zu", hits, N, found);
	t_cmd(c, "CONFIG SET maxmemory 0");
	kvmm_remote_close(r);
	redisFree(c);
	free(buf);
	free(got);
}

/* ---- cluster ---- */

static void the_cluster_spreads_chunks_over_its_masters(void **state)
{
	struct kvmm_remote *r;
	struct kvmm_remote_stats st;
	uint32_t seq = seq_base();
	size_t found;

	(void)state;
	t_need(cluster, "KVMM_TEST_CLUSTER");
	T_EQ(t_publish(cluster, seq, NCHUNKS), NCHUNKS);
	T_EQ(t_fetch(cluster, "r1", seq, NCHUNKS, 5000, &found), NCHUNKS);
	T_EQ(found, NCHUNKS);
	T_OK(t_remote_open(cluster, "r1", 0, &r));
	T_OK(kvmm_remote_stats(r, &st));
	T_EQ(st.cluster, 1);
	T_EQ(st.nodes, 3);
	kvmm_remote_close(r);
}

/* The master that serves @key, and its pid. */
static void t_master_of(const char *key, char *addr, size_t alen, long *pid)
{
	redisContext *c = t_raw(cluster), *m;
	redisReply *rep = redisCommand(c, "CLUSTER KEYSLOT %s", key), *nodes;
	long long slot;
	char *line, *save = NULL;

	assert_non_null(rep);
	slot = rep->integer;
	freeReplyObject(rep);
	nodes = redisCommand(c, "CLUSTER NODES");
	assert_non_null(nodes);
	addr[0] = 0;
	for (line = strtok_r(nodes->str, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char id[64], ep[128], flags[128], rest[2048];
		const char *p;

		if (sscanf(line, "%63s %127s %127s %*s %*s %*s %*s %*s %2047[^\n]", id, ep, flags,
			   rest) < 3 ||
		    !strstr(flags, "master") || strstr(flags, "fail"))
			continue;
		for (p = rest; *p;) {
			long a, b;
			int n = 0;

			if (sscanf(p, "%ld-%ld%n", &a, &b, &n) == 2 ||
			    (sscanf(p, "%ld%n", &a, &n) == 1 && (b = a, 1))) {
				if (slot >= a && slot <= b) {
					*strchr(ep, '@') = 0;
					snprintf(addr, alen, "%s", ep);
				}
			}
			p += n ? n : 1;
			while (*p == ' ')
				p++;
		}
	}
	freeReplyObject(nodes);
	redisFree(c);
	assert_true(addr[0]);
	m = t_raw(addr);
	rep = redisCommand(m, "INFO server");
	assert_non_null(rep);
	*pid = atol(strstr(rep->str, "process_id:") + 11);
	freeReplyObject(rep);
	redisFree(m);
}

/* Another live master than @not, into @addr. */
static void t_other_master(const char * not, char *addr, size_t alen)
{
	redisContext *c = t_raw(cluster);
	redisReply *nodes = redisCommand(c, "CLUSTER NODES");
	char *line, *save = NULL;

	assert_non_null(nodes);
	addr[0] = 0;
	for (line = strtok_r(nodes->str, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char id[64], ep[128], flags[128];

		if (sscanf(line, "%63s %127s %127s", id, ep, flags) != 3 ||
		    !strstr(flags, "master") || strstr(flags, "fail"))
			continue;
		*strchr(ep, '@') = 0;
		if (strcmp(ep, not )) {
			snprintf(addr, alen, "%s", ep);
			break;
		}
	}
	freeReplyObject(nodes);
	redisFree(c);
	assert_true(addr[0]);
}

/* A live master whose replica is live too (so that it can fail over), its pid. */
static void t_master_with_replica(char *addr, size_t alen, long *pid)
{
	redisContext *c = t_raw(cluster), *m;
	redisReply *nodes = redisCommand(c, "CLUSTER NODES"), *rep;
	char masters[8][64], *line, *save = NULL, *text;
	int nm = 0;

	assert_non_null(nodes);
	text = strdup(nodes->str);
	for (line = strtok_r(nodes->str, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char id[64], ep[128], flags[128], master[64];

		if (sscanf(line, "%63s %127s %127s %63s", id, ep, flags, master) == 4 &&
		    strstr(flags, "slave") && !strstr(flags, "fail") && nm < 8)
			snprintf(masters[nm++], sizeof(masters[0]), "%s", master);
	}
	addr[0] = 0;
	save = NULL;
	for (line = strtok_r(text, "\n", &save); line && !addr[0];
	     line = strtok_r(NULL, "\n", &save)) {
		char id[64], ep[128], flags[128];

		if (sscanf(line, "%63s %127s %127s", id, ep, flags) != 3 ||
		    !strstr(flags, "master") || strstr(flags, "fail"))
			continue;
		for (int i = 0; i < nm; i++)
			if (!strcmp(masters[i], id)) {
				*strchr(ep, '@') = 0;
				snprintf(addr, alen, "%s", ep);
			}
	}
	free(text);
	freeReplyObject(nodes);
	redisFree(c);
	assert_true(addr[0]);
	m = t_raw(addr);
	rep = redisCommand(m, "INFO server");
	assert_non_null(rep);
	*pid = atol(strstr(rep->str, "process_id:") + 11);
	freeReplyObject(rep);
	redisFree(m);
}

static void t_node_id(redisContext *c, char *id, size_t len)
{
	redisReply *rep = redisCommand(c, "CLUSTER MYID");

	assert_non_null(rep);
	assert_int_equal(rep->type, REDIS_REPLY_STRING);
	snprintf(id, len, "%s", rep->str);
	freeReplyObject(rep);
}

/*
 * A slot moved between masters under a handle that knows the old map: in
 * the middle of the move (key already on the target, slot MIGRATING on
 * the source) a GET is answered ASK and followed with ASKING; after it,
 * MOVED rewrites the map, and a lookup retries its window there.
 */
static void moved_and_ask_redirections_are_followed(void **state)
{
	struct kvmm_remote *r;
	struct kvmm_remote_stats st;
	struct kvmm_hash256 h;
	char key[128], a[128], b[128], ida[64], idb[64], buf[4096], got[4096];
	redisContext *ca, *cb;
	redisReply *rep;
	long pid, slot;
	size_t found;
	int kl;

	(void)state;
	t_need(cluster, "KVMM_TEST_CLUSTER");
	T_OK(t_remote_open(cluster, "r1", 0, &r));
	t_random_hash(&h);
	t_fill(buf, sizeof(buf), 77);
	T_EQ(t_put(r, &h, buf, sizeof(buf)), 1);
	kl = kvmm_remote_key(r, &h, key, sizeof(key));
	t_master_of(key, a, sizeof(a), &pid);
	t_other_master(a, b, sizeof(b));
	ca = t_raw(a), cb = t_raw(b);
	t_node_id(ca, ida, sizeof(ida));
	t_node_id(cb, idb, sizeof(idb));
	rep = redisCommand(ca, "CLUSTER KEYSLOT %b", key, (size_t)kl);
	assert_non_null(rep);
	slot = (long)rep->integer;
	freeReplyObject(rep);

	/* half-way: the key is on b, the slot still a's (MIGRATING) */
	rep = redisCommand(cb, "CLUSTER SETSLOT %ld IMPORTING %s", slot, ida);
	assert_true(rep && rep->type == REDIS_REPLY_STATUS);
	freeReplyObject(rep);
	rep = redisCommand(ca, "CLUSTER SETSLOT %ld MIGRATING %s", slot, idb);
	assert_true(rep && rep->type == REDIS_REPLY_STATUS);
	freeReplyObject(rep);
	*strchr(b, ':') = 0;
	rep = redisCommand(ca, "MIGRATE %s %s %s 0 5000 KEYS %b", b, b + strlen(b) + 1, "", key,
			   (size_t)kl);
	b[strlen(b)] = ':';
	if (!rep || rep->type == REDIS_REPLY_ERROR)
		fail_msg("MIGRATE: %s", rep ? rep->str : ca->errstr);
	freeReplyObject(rep);
	T_EQ(t_get(r, &h, got, sizeof(got), 2000), 1);
	assert_memory_equal(got, buf, sizeof(buf));
	T_OK(kvmm_remote_stats(r, &st));
	T_EQ(st.ask >= 1, 1);

	/* done: the slot is b's everywhere */
	freeReplyObject(redisCommand(cb, "CLUSTER SETSLOT %ld NODE %s", slot, idb));
	freeReplyObject(redisCommand(ca, "CLUSTER SETSLOT %ld NODE %s", slot, idb));
	T_EQ(t_get(r, &h, got, sizeof(got), 2000), 1);
	assert_memory_equal(got, buf, sizeof(buf));
	T_OK(kvmm_remote_stats(r, &st));
	T_EQ(st.moved >= 1, 1);
	T_OK(kvmm_remote_lookup(r, &h, 1, 2000, &found));
	T_EQ(found, 1);
	T_OK(kvmm_remote_stats(r, &st));
	print_message("slot %ld moved %s -> %s: ask %llu, moved %llu, refreshes %llu\n", slot, a, b,
		      (unsigned long long)st.ask, (unsigned long long)st.moved,
		      (unsigned long long)st.refreshes);
	kvmm_remote_close(r);
	redisFree(ca);
	redisFree(cb);
}

struct t_fetch_job {
	uint32_t seq;
	int got;
	size_t found;
};

static void *t_fetch_thread(void *arg)
{
	struct t_fetch_job *j = arg;

	j->got = t_fetch(cluster, "r1", j->seq, NCHUNKS, 15000, &j->found);
	return NULL;
}

/* Kill -9 of the master holding chunk 0 while a fetch runs: what arrives
 * is right (checked bitwise), the client follows the failover, and after
 * it every chunk (replicated before the kill: WAIT) is there again. */
static void a_killed_master_fails_over_without_wrong_reads(void **state)
{
	struct kvmm_remote *r;
	struct kvmm_hash256 chunks[NCHUNKS];
	struct t_fetch_job j = {0};
	uint32_t seq = seq_base();
	char key[128], addr[128];
	redisContext *c;
	pthread_t t;
	long pid;
	size_t found;

	(void)state;
	t_need(cluster, "KVMM_TEST_CLUSTER");
	T_EQ(t_publish(cluster, seq, NCHUNKS), NCHUNKS);
	T_OK(t_remote_open(cluster, "r1", 0, &r));
	t_chunks(seq, NCHUNKS, r, chunks);
	assert_true(kvmm_remote_key(r, &chunks[0], key, sizeof(key)) > 0);
	kvmm_remote_close(r);
	t_master_of(key, addr, sizeof(addr), &pid);
	c = t_raw(addr);
	freeReplyObject(redisCommand(c, "WAIT 1 2000"));
	redisFree(c);
	j.seq = seq;
	assert_int_equal(pthread_create(&t, NULL, t_fetch_thread, &j), 0);
	usleep(20000);
	print_message("killing master %s (pid %ld)\n", addr, pid);
	assert_int_equal(kill((pid_t)pid, SIGKILL), 0);
	pthread_join(t, NULL);
	print_message("fetch during the failover: %d of %d chunks (lookup %zu)\n", j.got, NCHUNKS,
		      j.found);
	/* At once, in the failover window: lookup and fetch wait for the
	 * promoted replica, which has every chunk (WAIT before the kill). */
	uint64_t t0 = t_ms();
	T_EQ(t_fetch(cluster, "r1", seq, NCHUNKS, 15000, &found), NCHUNKS);
	T_EQ(found, NCHUNKS);
	print_message("lookup and fetch after the kill: %llu ms\n",
		      (unsigned long long)(t_ms() - t0));
}

/* Kill -9 of a master, then at once a publish, in the failover window:
 * chunks for the dead master wait for its replica's promotion (or are lost
 * to the budget); a fetch afterwards gets at least what the lookup reports,
 * every byte right (checked bitwise). Runs after the failover test, on a master that still
 * has a replica. */
static void a_publish_during_a_failover_stores_or_misses_never_corrupts(void **state)
{
	uint32_t seq = seq_base();
	char addr[128];
	size_t found;
	long pid;
	int stored, got;
	uint64_t t0;

	(void)state;
	t_need(cluster, "KVMM_TEST_CLUSTER");
	t_master_with_replica(addr, sizeof(addr), &pid);
	print_message("killing master %s (pid %ld), then publishing\n", addr, pid);
	assert_int_equal(kill((pid_t)pid, SIGKILL), 0);
	t0 = t_ms();
	stored = t_publish(cluster, seq, 64);
	print_message("publish: %d of 64 chunks stored in %llu ms\n", stored,
		      (unsigned long long)(t_ms() - t0));
	got = t_fetch(cluster, "r1", seq, 64, 15000, &found);
	print_message("fetch after it: %d chunks (lookup %zu)\n", got, found);
	/* what the lookup saw is there; a SET whose reply the budget cut off
	 * may still have landed, so the fetch may find more, never less */
	T_EQ(got >= (int)found, 1);
}

/* Runs "$KVMM_TEST_KVMMCTL ARGS" (the registry from the environment); its output. */
static void t_kvmmctl(const char *args, char *out, size_t cap)
{
	const char *bin = getenv("KVMM_TEST_KVMMCTL");
	char cmd[512];
	size_t n = 0;
	FILE *p;

	t_need(bin, "KVMM_TEST_KVMMCTL");
	snprintf(cmd, sizeof(cmd), "%s %s", bin, args);
	p = popen(cmd, "r");
	assert_non_null(p);
	while (n + 1 < cap && !feof(p))
		n += fread(out + n, 1, cap - 1 - n, p);
	out[n] = 0;
	assert_int_equal(pclose(p), 0);
}

/* The number after "KEY": in the JSON object of kvmmctl's output that has "pid": PID. */
static long long t_json_field(const char *out, pid_t pid, const char *key)
{
	char pat[64];
	const char *o, *k;

	snprintf(pat, sizeof(pat), "\"pid\": %d,", (int)pid);
	o = strstr(out, pat);
	if (!o) {
		snprintf(pat, sizeof(pat), "\"pid\":%d,", (int)pid);
		o = strstr(out, pat);
	}
	if (!o)
		return -1;
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	k = strstr(o, pat);
	return k ? strtoll(k + strlen(pat), NULL, 10) : -1;
}

/*
 * kvmmctl remote and kvmmctl metrics show what a live handle counted, from
 * its registry file; a handle that is closed, or whose process was killed,
 * is not shown; a registry directory that others may write is not used.
 */
static void kvmmctl_shows_a_handles_hits_misses_bytes_and_errors(void **state)
{
	char dir[] = "/tmp/kvmm-remote-test.XXXXXX", path[512], out[65536], buf[4096], want[160];
	struct kvmm_hash256 h[3];
	struct kvmm_remote_stats st;
	struct kvmm_remote *r;
	size_t found;
	pid_t child;
	int status;

	(void)state;
	t_need(server, "KVMM_TEST_REDIS/VALKEY");
	t_need(getenv("KVMM_TEST_KVMMCTL"), "KVMM_TEST_KVMMCTL");
	assert_non_null(mkdtemp(dir));
	setenv("KVMM_REMOTE_REGISTRY", dir, 1);
	T_OK(t_remote_open(server, "r1", 0, &r));
	for (int i = 0; i < 3; i++)
		t_random_hash(&h[i]);
	t_fill(buf, sizeof(buf), 7);
	T_EQ(t_put(r, &h[0], buf, sizeof(buf)), 1);
	T_EQ(t_put(r, &h[1], buf, sizeof(buf)), 1);
	T_EQ(t_get(r, &h[0], buf, sizeof(buf), 0), 1);
	T_EQ(t_get(r, &h[1], buf, sizeof(buf), 0), 1);
	T_EQ(t_get(r, &h[2], buf, sizeof(buf), 0), 0);
	T_OK(kvmm_remote_lookup(r, h, 3, 0, &found));
	T_EQ(found, 2);
	T_OK(kvmm_remote_stats(r, &st)); /* writes the file now */
	T_EQ(st.gets, 3);
	assert_true(st.get_ns_max > 0 && st.get_ns_max <= st.get_ns);
	assert_true(st.lookup_ns > 0);

	t_kvmmctl("--json remote", out, sizeof(out));
	T_EQ(t_json_field(out, getpid(), "gets"), 3);
	T_EQ(t_json_field(out, getpid(), "get_hits"), 2);
	T_EQ(t_json_field(out, getpid(), "get_misses"), 1);
	T_EQ(t_json_field(out, getpid(), "puts"), 2);
	T_EQ(t_json_field(out, getpid(), "put_new"), 2);
	T_EQ(t_json_field(out, getpid(), "lookup_hits"), 2);
	T_EQ(t_json_field(out, getpid(), "bytes_read"), (long long)st.bytes_read);
	T_EQ(t_json_field(out, getpid(), "bytes_written"), (long long)st.bytes_written);
	T_EQ(t_json_field(out, getpid(), "errors"), (long long)st.errors);
	t_kvmmctl("remote", out, sizeof(out));
	snprintf(want, sizeof(want), "%7d ", (int)getpid());
	if (!strstr(out, want) || !strstr(out, "kvmm-test/tiny"))
		fail_msg("kvmmctl remote does not show pid %d's handle:\n%s", (int)getpid(), out);
	t_kvmmctl("metrics", out, sizeof(out));
	snprintf(want, sizeof(want), "kvmm_remote_get_hits_total{pid=\"%d\",", (int)getpid());
	if (!strstr(out, want) || !strstr(out, "# TYPE kvmm_remote_get_seconds_max gauge"))
		fail_msg("kvmmctl metrics lacks pid %d's remote counters:\n%.4000s", (int)getpid(),
			 out);

	/* A process killed with its handle open leaves a file that is not shown. */
	child = fork();
	assert_true(child >= 0);
	if (!child) {
		struct kvmm_remote *cr;
		struct kvmm_remote_stats cs;

		if (t_remote_open(server, "r1", 0, &cr) || kvmm_remote_stats(cr, &cs))
			_exit(1);
		raise(SIGKILL);
		_exit(2);
	}
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFSIGNALED(status));
	/* its file is PID-N, N counting the handles that process opened */
	path[0] = 0;
	DIR *d = opendir(dir);
	assert_non_null(d);
	snprintf(want, sizeof(want), "%d-", (int)child);
	for (struct dirent *e; (e = readdir(d));)
		if (!strncmp(e->d_name, want, strlen(want)))
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
	closedir(d);
	if (!path[0])
		fail_msg("the killed process %d left no registry file in %s", (int)child, dir);
	t_kvmmctl("--json remote", out, sizeof(out));
	T_EQ(t_json_field(out, child, "gets"), -1);
	T_EQ(t_json_field(out, getpid(), "gets"), 3);
	unlink(path);

	/* Closed: gone. */
	kvmm_remote_close(r);
	t_kvmmctl("--json remote", out, sizeof(out));
	T_EQ(t_json_field(out, getpid(), "gets"), -1);
	assert_non_null(strstr(out, "\"count\": 0"));

	/* A directory others may write is never written into (a symbolic link
	 * or file of theirs there could be overwritten); the handle still works. */
	assert_int_equal(chmod(dir, 0777), 0);
	T_OK(t_remote_open(server, "r1", 0, &r));
	T_OK(kvmm_remote_stats(r, &st));
	t_kvmmctl("--json remote", out, sizeof(out));
	T_EQ(t_json_field(out, getpid(), "gets"), -1);
	T_EQ(t_get(r, &h[0], buf, sizeof(buf), 0), 1);
	kvmm_remote_close(r);
	unsetenv("KVMM_REMOTE_REGISTRY");
	assert_int_equal(rmdir(dir), 0);
}

/* Each single-server test runs on Redis and on Valkey. */
#define BOTH(fn)                                                                                   \
	static void redis_##fn(void **state)                                                       \
	{                                                                                          \
		server = getenv("KVMM_TEST_REDIS");                                                \
		fn(state);                                                                         \
	}                                                                                          \
	static void valkey_##fn(void **state)                                                      \
	{                                                                                          \
		server = getenv("KVMM_TEST_VALKEY");                                               \
		fn(state);                                                                         \
	}
BOTH(published_in_one_process_fetched_bitwise_in_another)
BOTH(a_different_fingerprint_never_hits)
BOTH(a_missing_chunk_ends_lookup_and_fetch)
BOTH(admission_shares_local_then_fetches_remote_then_publishes)
BOTH(the_first_writer_wins)
BOTH(corrupted_values_are_misses)
BOTH(a_paused_server_times_out_instead_of_hanging)
BOTH(evicted_values_are_misses)
BOTH(kvmmctl_shows_a_handles_hits_misses_bytes_and_errors)

#define SINGLE_TESTS(p)                                                                            \
	cmocka_unit_test(p##_published_in_one_process_fetched_bitwise_in_another),                 \
	    cmocka_unit_test(p##_a_different_fingerprint_never_hits),                              \
	    cmocka_unit_test(p##_a_missing_chunk_ends_lookup_and_fetch),                           \
	    cmocka_unit_test(p##_admission_shares_local_then_fetches_remote_then_publishes),       \
	    cmocka_unit_test(p##_the_first_writer_wins),                                           \
	    cmocka_unit_test(p##_corrupted_values_are_misses),                                     \
	    cmocka_unit_test(p##_a_paused_server_times_out_instead_of_hanging),                    \
	    cmocka_unit_test(p##_evicted_values_are_misses),                                       \
	    cmocka_unit_test(p##_kvmmctl_shows_a_handles_hits_misses_bytes_and_errors)

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    SINGLE_TESTS(redis),
	    SINGLE_TESTS(valkey),
	    cmocka_unit_test(the_cluster_spreads_chunks_over_its_masters),
	    cmocka_unit_test(moved_and_ask_redirections_are_followed),
	    cmocka_unit_test(a_killed_master_fails_over_without_wrong_reads),
	    cmocka_unit_test(a_publish_during_a_failover_stores_or_misses_never_corrupts),
	};

	cluster = getenv("KVMM_TEST_CLUSTER");
	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests_name("remote", tests, NULL, NULL);
}
