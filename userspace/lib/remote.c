/* SPDX-License-Identifier: MIT */
/*
 * The remote tier's client (include/kvmm/remote.h) over hiredis.
 *
 * Every server node has a queue of items (one GET or SET of one chunk) and
 * cfg.connections I/O threads, each with its own blocking connection whose
 * socket timeouts are the command timeout cut to what the item's batch has
 * left: a stopped or paused server costs a timeout, never a hang. A thread
 * takes an item, waits until the value's bytes fit under
 * max_inflight_bytes, runs the command and verifies the reply, then counts
 * the item done; the last item of a batch completes its struct kvmm_op.
 *
 * Routing: the slot map (16384 hash slots -> node) comes from CLUSTER
 * SLOTS; a server without cluster support is node 0 for every slot. MOVED
 * rewrites the slot's entry and requeues the item on the named node; ASK
 * sends it there once, after ASKING. A connection that fails (refused,
 * reset) makes the thread read the slot map again (at most every 100 ms)
 * and requeue the item after a short pause, while the budget lasts: a fetch
 * follows a failover to the promoted replica. Timeouts are not retried.
 *
 * Lookups run in the caller's thread on each node's control connection:
 * EXISTS pipelined lookup_window keys per node per round trip, every node
 * of a window sent before any reply is read.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "remote.h"

#define RM_REFRESH_NS	(100ULL * 1000 * 1000)
#define RM_BACKOFF_MS	50
#define RM_MAX_REDIRECT 16
#define RM_REPORT_NS	(1000ULL * 1000 * 1000)

struct rm_node {
	struct kvmm_remote *r;
	uint16_t idx;
	char host[64];
	int port;
	struct rm_item *head, *tail; /* under r->lock */
	pthread_cond_t cond;	     /* work queued here, or stopping */
	pthread_t threads[RM_MAX_CONN];
	uint32_t nthreads;
	pthread_mutex_t ctl_lock;
	redisContext *ctl; /* lookups and CLUSTER SLOTS, under ctl_lock */
};

struct kvmm_remote {
	struct kvmm_remote_config cfg; /* strings point at the copies below */
	char *servers, *model, *revision, *dtype;
	struct kvmm_hash256 fp, root;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* in-flight bytes freed (to inflight_waiters), a batch ended */
	uint32_t inflight_waiters;
	struct rm_node *nodes[RM_MAX_NODES];
	uint32_t nnodes;
	uint16_t slots[RM_SLOTS];
	bool cluster;
	bool stop;
	bool refreshing;
	uint64_t refreshed_ns;
	uint64_t inflight;
	uint32_t batches;
	struct kvmm_remote_stats st;
	/* kvmmctl's view (remote_report.c): where, and when last written */
	pthread_mutex_t report_lock;
	char report_dir[256], report_name[32];
	bool report_on;
	_Atomic uint64_t report_ns;
};

enum rm_act { RM_DONE, RM_AGAIN };

uint64_t rm_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int64_t rm_left_ms(uint64_t deadline_ns)
{
	uint64_t now = rm_now_ns();

	return now >= deadline_ns ? 0 : (int64_t)((deadline_ns - now) / 1000000);
}

static struct timeval rm_tv(int64_t ms)
{
	if (ms < 1)
		ms = 1;
	return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

static uint32_t rm_min(uint32_t a, int64_t b)
{
	return b < (int64_t)a ? (uint32_t)(b < 0 ? 0 : b) : a;
}

const struct kvmm_remote_layout *rm_layout(const struct kvmm_remote *r)
{
	return &r->cfg.layout;
}

const struct kvmm_hash256 *rm_root(const struct kvmm_remote *r)
{
	return &r->root;
}

/* A connection whose commands time out after @timeout_ms; NULL on failure (*err). */
static redisContext *rm_connect(struct kvmm_remote *r, const struct rm_node *nd,
				uint32_t connect_ms, uint32_t timeout_ms, int *err)
{
	redisContext *c = redisConnectWithTimeout(nd->host, nd->port, rm_tv(connect_ms));

	if (!c) {
		*err = -ENOMEM;
		return NULL;
	}
	if (c->err) {
		*err = c->err == REDIS_ERR_IO && errno ? -errno : -ECONNREFUSED;
		if (*err == -EINPROGRESS || *err == -EAGAIN)
			*err = -ETIMEDOUT;
		redisFree(c);
		pthread_mutex_lock(&r->lock);
		r->st.errors++;
		if (*err == -ETIMEDOUT)
			r->st.timeouts++;
		pthread_mutex_unlock(&r->lock);
		return NULL;
	}
	redisSetTimeout(c, rm_tv(timeout_ms));
	return c;
}

static void *rm_thread(void *arg);
static void rm_report(struct kvmm_remote *r, bool now);

/* The node at host:port, made (with its threads) if it is new; r->lock held. */
static int rm_node_get_locked(struct kvmm_remote *r, const char *host, int port)
{
	struct rm_node *nd;

	for (uint32_t i = 0; i < r->nnodes; i++)
		if (r->nodes[i]->port == port && !strcmp(r->nodes[i]->host, host))
			return (int)i;
	if (r->nnodes == RM_MAX_NODES || strlen(host) >= sizeof(nd->host))
		return -ENOSPC;
	nd = calloc(1, sizeof(*nd));
	if (!nd)
		return -ENOMEM;
	nd->r = r;
	nd->idx = (uint16_t)r->nnodes;
	strcpy(nd->host, host);
	nd->port = port;
	pthread_mutex_init(&nd->ctl_lock, NULL);
	pthread_cond_init(&nd->cond, NULL);
	for (uint32_t t = 0; t < r->cfg.connections; t++) {
		if (pthread_create(&nd->threads[t], NULL, rm_thread, nd))
			break;
		nd->nthreads++;
	}
	if (!nd->nthreads) {
		pthread_mutex_destroy(&nd->ctl_lock);
		pthread_cond_destroy(&nd->cond);
		free(nd);
		return -EAGAIN;
	}
	r->nodes[r->nnodes++] = nd;
	r->st.nodes = r->nnodes;
	return nd->idx;
}

/* "host:port" into @host (of @hlen) and *port; -EINVAL if malformed. */
static int rm_parse_endpoint(const char *s, size_t n, char *host, size_t hlen, int *port)
{
	const char *colon = NULL;
	char *end;
	long p;

	for (size_t i = 0; i < n; i++)
		if (s[i] == ':')
			colon = s + i;
	if (!colon || colon == s || (size_t)(colon - s) >= hlen)
		return -EINVAL;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	p = strtol(colon + 1, &end, 10);
	if (end != s + n || end == colon + 1 || p <= 0 || p > 65535)
		return -EINVAL;
	*port = (int)p;
	return 0;
}

/*
 * Applies a CLUSTER SLOTS reply got from a node at @asked_host: each entry
 * is [first, last, [host, port, id...], replicas...]; the first endpoint is
 * the master. r->lock held.
 */
static int rm_apply_slots_locked(struct kvmm_remote *r, const redisReply *rep,
				 const char *asked_host)
{
	int applied = 0;

	for (size_t i = 0; i < rep->elements; i++) {
		const redisReply *e = rep->element[i], *m;
		const char *host;
		int node;

		if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
		    e->element[0]->type != REDIS_REPLY_INTEGER ||
		    e->element[1]->type != REDIS_REPLY_INTEGER)
			continue;
		m = e->element[2];
		if (m->type != REDIS_REPLY_ARRAY || m->elements < 2 ||
		    m->element[0]->type != REDIS_REPLY_STRING ||
		    m->element[1]->type != REDIS_REPLY_INTEGER)
			continue;
		host = m->element[0]->len ? m->element[0]->str : asked_host;
		node = rm_node_get_locked(r, host, (int)m->element[1]->integer);
		if (node < 0)
			continue;
		for (long long s = e->element[0]->integer; s <= e->element[1]->integer; s++)
			if (s >= 0 && s < RM_SLOTS)
				r->slots[s] = (uint16_t)node;
		applied++;
	}
	return applied ? 0 : -EPROTO;
}

/* Reads the slot map again from any node that answers (cluster only, at
 * most every RM_REFRESH_NS unless @force). No lock held. */
static void rm_refresh(struct kvmm_remote *r, bool force)
{
	uint64_t now = rm_now_ns();
	uint32_t n;

	pthread_mutex_lock(&r->lock);
	if (!r->cluster || r->refreshing || (!force && now - r->refreshed_ns < RM_REFRESH_NS)) {
		pthread_mutex_unlock(&r->lock);
		return;
	}
	r->refreshing = true;
	n = r->nnodes;
	pthread_mutex_unlock(&r->lock);

	for (uint32_t i = 0; i < n; i++) {
		struct rm_node *nd = r->nodes[i]; /* nodes are never removed */
		redisReply *rep = NULL;
		int err = 0;

		pthread_mutex_lock(&nd->ctl_lock);
		if (nd->ctl && nd->ctl->err) {
			redisFree(nd->ctl);
			nd->ctl = NULL;
		}
		if (!nd->ctl)
			nd->ctl =
			    rm_connect(r, nd, r->cfg.connect_timeout_ms, r->cfg.timeout_ms, &err);
		if (nd->ctl)
			rep = redisCommand(nd->ctl, "CLUSTER SLOTS");
		pthread_mutex_unlock(&nd->ctl_lock);
		if (!rep)
			continue;
		pthread_mutex_lock(&r->lock);
		err = rep->type == REDIS_REPLY_ARRAY ? rm_apply_slots_locked(r, rep, nd->host)
						     : -EPROTO;
		if (!err)
			r->st.refreshes++;
		pthread_mutex_unlock(&r->lock);
		freeReplyObject(rep);
		if (!err)
			break;
	}
	pthread_mutex_lock(&r->lock);
	r->refreshing = false;
	r->refreshed_ns = rm_now_ns();
	pthread_mutex_unlock(&r->lock);
}

/* The node an item goes to now; r->lock held. */
static uint16_t rm_route_locked(struct kvmm_remote *r, const struct rm_item *it)
{
	uint16_t n;

	if (it->ask)
		return (uint16_t)(it->ask - 1);
	n = r->slots[it->slot];
	return n == RM_NO_NODE ? 0 : n;
}

static void rm_enqueue_locked(struct kvmm_remote *r, struct rm_item *it)
{
	struct rm_node *nd = r->nodes[rm_route_locked(r, it)];

	it->next = NULL;
	if (nd->tail)
		nd->tail->next = it;
	else
		nd->head = it;
	nd->tail = it;
	pthread_cond_signal(&nd->cond);
}

/* MOVED/ASK "<slot> <host>:<port>": the target node, or -errno. */
static int rm_redirect(struct kvmm_remote *r, const char *msg, bool ask, struct rm_item *it)
{
	const char *sp = strchr(msg, ' ');
	char host[64];
	long slot;
	int port, node;

	if (!sp)
		return -EPROTO;
	slot = strtol(msg, NULL, 10);
	sp++;
	if (slot < 0 || slot >= RM_SLOTS ||
	    rm_parse_endpoint(sp, strlen(sp), host, sizeof(host), &port))
		return -EPROTO;
	pthread_mutex_lock(&r->lock);
	node = rm_node_get_locked(r, host, port);
	if (node >= 0) {
		if (ask) {
			it->ask = (uint16_t)(node + 1);
			r->st.ask++;
		} else {
			r->slots[slot] = (uint16_t)node;
			r->st.moved++;
		}
	}
	pthread_mutex_unlock(&r->lock);
	return node < 0 ? node : 0;
}

static void rm_count(struct kvmm_remote *r, uint64_t *field, uint64_t v)
{
	pthread_mutex_lock(&r->lock);
	*field += v;
	pthread_mutex_unlock(&r->lock);
}

/* What a GET or SET reply means for @it. */
static enum rm_act rm_reply(struct kvmm_remote *r, struct rm_item *it, const redisReply *rep,
			    const uint8_t *value, size_t vlen)
{
	const struct kvmm_remote_layout *l = &r->cfg.layout;
	struct rm_hdr_want w = {&r->fp, &it->chunk, &it->parent, l->chunk_tokens, it->len};

	switch (rep->type) {
	case REDIS_REPLY_ERROR:
		if (!strncmp(rep->str, "MOVED ", 6) || !strncmp(rep->str, "ASK ", 4)) {
			bool ask = rep->str[1] == 'S';

			if (++it->redirects > RM_MAX_REDIRECT) {
				it->result = -ELOOP;
				return RM_DONE;
			}
			it->result = rm_redirect(r, rep->str + (ask ? 4 : 6), ask, it);
			return it->result ? RM_DONE : RM_AGAIN;
		}
		rm_count(r, &r->st.errors, 1);
		if (!strncmp(rep->str, "TRYAGAIN", 8) || !strncmp(rep->str, "CLUSTERDOWN", 11) ||
		    !strncmp(rep->str, "LOADING", 7)) {
			it->result = -EAGAIN;
			return RM_AGAIN;
		}
		it->result = strncmp(rep->str, "OOM", 3) ? -EIO : -ENOSPC;
		return RM_DONE;
	case REDIS_REPLY_NIL:
		it->result = 0;
		rm_count(r, it->put ? &r->st.put_existing : &r->st.get_misses, 1);
		return RM_DONE;
	case REDIS_REPLY_STATUS:
		if (it->put && !strcasecmp(rep->str, "OK")) {
			it->result = 1;
			pthread_mutex_lock(&r->lock);
			r->st.put_new++;
			r->st.bytes_written += vlen;
			pthread_mutex_unlock(&r->lock);
			return RM_DONE;
		}
		break;
	case REDIS_REPLY_STRING:
		if (it->put)
			break;
		rm_count(r, &r->st.bytes_read, rep->len);
		if (rm_value_check(value, rep->len, &w)) {
			it->result = 0;
			rm_count(r, &r->st.get_bad, 1);
			return RM_DONE;
		}
		it->result = it->deliver(it, value + RM_HDR_BYTES);
		if (!it->result) {
			it->result = 1;
			rm_count(r, &r->st.get_hits, 1);
		}
		return RM_DONE;
	default:
		break;
	}
	rm_count(r, &r->st.errors, 1);
	it->result = -EPROTO;
	return RM_DONE;
}

/* Runs @it on node @nd through *cp (made again when broken). No lock held. */
static enum rm_act rm_exec(struct rm_node *nd, struct rm_conn *k, struct rm_item *it)
{
	redisContext **cp = &k->c;
	struct kvmm_remote *r = nd->r;
	int64_t left = rm_left_ms(it->b->deadline_ns);
	size_t vlen = RM_HDR_BYTES + it->len;
	redisReply *rep = NULL, wrep = {0};
	enum rm_act act;
	int err = 0;

	if (!left) {
		rm_count(r, &r->st.timeouts, 1);
		it->result = it->result < 0 && it->result != -ETIMEDOUT ? it->result : -ETIMEDOUT;
		return RM_DONE;
	}
	if (*cp && (*cp)->err) {
		redisFree(*cp);
		*cp = NULL;
		rm_count(r, &r->st.reconnects, 1);
	}
	if (!*cp)
		*cp = rm_connect(r, nd, rm_min(r->cfg.connect_timeout_ms, left), r->cfg.timeout_ms,
				 &err);
	if (!*cp)
		goto again;
	redisSetTimeout(*cp, rm_tv(rm_min(r->cfg.timeout_ms, left)));
	if (it->ask) {
		it->ask = 0;
		rep = redisCommand(*cp, "ASKING");
		if (rep)
			freeReplyObject(rep);
		rep = NULL;
	}
	if (it->put) {
		struct rm_hdr_want w = {&r->fp, &it->chunk, &it->parent, r->cfg.layout.chunk_tokens,
					it->len};

		err = rm_conn_room(k, vlen);
		if (!err)
			err = it->fill(it, k->buf + RM_HDR_BYTES);
		if (err) {
			it->result = err;
			return RM_DONE;
		}
		rm_hdr_write(k->buf, &w, k->buf + RM_HDR_BYTES);
		err = rm_wire_set_nx(*cp, it->key, it->keylen, k->buf, vlen, &rep);
	} else {
		struct rm_wire_reply g;

		err = rm_wire_get(k, it->key, it->keylen, &g);
		wrep.type = g.type;
		wrep.str = g.str;
		wrep.len = g.len;
	}
	if (err == -ENOMEM || err == -EINVAL) {
		it->result = err;
		return RM_DONE;
	}
	if (err) {
		redisFree(*cp);
		*cp = NULL;
		if (err == -ETIMEDOUT) {
			rm_count(r, &r->st.timeouts, 1);
			it->result = -ETIMEDOUT;
			return RM_DONE;
		}
		rm_count(r, &r->st.errors, 1);
		goto again;
	}
	if (!rep)
		rep = &wrep;
	act = rm_reply(r, it, rep, rep->type == REDIS_REPLY_STRING ? (uint8_t *)rep->str : NULL,
		       vlen);
	if (rep != &wrep)
		freeReplyObject(rep);
	if (act == RM_DONE || it->result != -EAGAIN)
		return act;
	err = -EAGAIN;
again:
	/* The node is gone or not serving: read the map again, pause, retry. */
	it->result = err;
	rm_refresh(r, false);
	left = rm_left_ms(it->b->deadline_ns);
	if (left <= 0)
		return RM_DONE;
	struct timespec ts = {0, (long)rm_min(RM_BACKOFF_MS, left) * 1000000L};
	nanosleep(&ts, NULL);
	return RM_AGAIN;
}

static void rm_batch_end(struct rm_batch *b)
{
	struct kvmm_remote *r = b->r;
	struct kvmm_op *op = b->op;
	int result = b->result(b);

	rm_batch_free(b);
	rm_report(r, false);
	pthread_mutex_lock(&r->lock);
	r->batches--;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	kvmm_op_finish(op, result);
}

static void rm_item_done(struct kvmm_remote *r, struct rm_item *it)
{
	struct rm_batch *b = it->b;
	uint64_t ns = rm_now_ns() - b->start_ns;
	bool last;

	pthread_mutex_lock(&r->lock);
	if (it->put) {
		r->st.put_ns += ns;
		if (ns > r->st.put_ns_max)
			r->st.put_ns_max = ns;
		if (it->result < 0)
			r->st.put_failed++;
	} else {
		r->st.get_ns += ns;
		if (ns > r->st.get_ns_max)
			r->st.get_ns_max = ns;
		if (it->result < 0)
			r->st.get_failed++;
	}
	pthread_mutex_unlock(&r->lock);
	pthread_mutex_lock(&b->lock);
	last = !--b->pending;
	pthread_mutex_unlock(&b->lock);
	if (last)
		rm_batch_end(b);
}

static void *rm_thread(void *arg)
{
	struct rm_node *nd = arg;
	struct kvmm_remote *r = nd->r;
	struct rm_conn k = {0};

	pthread_mutex_lock(&r->lock);
	for (;;) {
		struct rm_item *it;
		uint64_t bytes;
		enum rm_act act;

		while (!nd->head && !r->stop)
			pthread_cond_wait(&nd->cond, &r->lock);
		it = nd->head;
		if (!it)
			break;
		nd->head = it->next;
		if (!nd->head)
			nd->tail = NULL;
		bytes = RM_HDR_BYTES + it->len;
		while (r->inflight && r->inflight + bytes > r->cfg.max_inflight_bytes) {
			r->inflight_waiters++;
			pthread_cond_wait(&r->cond, &r->lock);
			r->inflight_waiters--;
		}
		r->inflight += bytes;
		pthread_mutex_unlock(&r->lock);
		act = rm_exec(nd, &k, it);
		pthread_mutex_lock(&r->lock);
		r->inflight -= bytes;
		if (r->inflight_waiters)
			pthread_cond_broadcast(&r->cond);
		if (act == RM_AGAIN) {
			rm_enqueue_locked(r, it);
			continue;
		}
		pthread_mutex_unlock(&r->lock);
		rm_item_done(r, it);
		pthread_mutex_lock(&r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	if (k.c)
		redisFree(k.c);
	free(k.buf);
	return NULL;
}

struct rm_batch *rm_batch_new(struct kvmm_remote *r, uint32_t n, uint32_t budget_ms)
{
	struct rm_batch *b = calloc(1, sizeof(*b) + (size_t)n * sizeof(struct rm_item));

	if (!b)
		return NULL;
	b->r = r;
	b->n = n;
	b->start_ns = rm_now_ns();
	b->deadline_ns =
	    b->start_ns + (uint64_t)(budget_ms ? budget_ms : r->cfg.budget_ms) * 1000000ULL;
	pthread_mutex_init(&b->lock, NULL);
	return b;
}

void rm_batch_free(struct rm_batch *b)
{
	if (b->release)
		b->release(b);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

void rm_item_init(struct rm_batch *b, uint32_t i, const struct kvmm_hash256 *chunk,
		  const struct kvmm_hash256 *parent)
{
	struct rm_item *it = &b->items[i];

	it->b = b;
	it->chunk = *chunk;
	it->parent = parent ? *parent : b->r->root;
	it->idx = i;
	it->keylen = rm_key(&b->r->fp, chunk, it->key, sizeof(it->key));
	it->slot = rm_key_slot(it->key, (size_t)it->keylen);
}

int rm_batch_submit(struct rm_batch *b, struct kvmm_op **opp)
{
	struct kvmm_remote *r = b->r;

	b->op = kvmm_op_new(!opp);
	if (!b->op) {
		rm_batch_free(b);
		return -ENOMEM;
	}
	if (opp)
		*opp = b->op;
	if (!b->n) {
		pthread_mutex_lock(&r->lock);
		r->batches++;
		pthread_mutex_unlock(&r->lock);
		rm_batch_end(b);
		return 0;
	}
	b->pending = b->n;
	pthread_mutex_lock(&r->lock);
	r->batches++;
	for (uint32_t i = 0; i < b->n; i++) {
		if (b->items[i].put)
			r->st.puts++;
		else
			r->st.gets++;
		rm_enqueue_locked(r, &b->items[i]);
	}
	pthread_mutex_unlock(&r->lock);
	return 0;
}

/* ---- lookup ---- */

int kvmm_remote_lookup(struct kvmm_remote *r, const struct kvmm_hash256 *chunks, size_t n,
		       uint32_t budget_ms, size_t *found)
{
	uint64_t deadline, start = rm_now_ns();
	uint16_t *node;
	int8_t *res;
	bool stale = false;
	uint32_t w;
	size_t i;

	if (!r || (!chunks && n) || !found)
		return -EINVAL;
	deadline = start + (uint64_t)(budget_ms ? budget_ms : r->cfg.budget_ms) * 1000000ULL;
	w = r->cfg.lookup_window;
	*found = 0;
	node = calloc(w, sizeof(*node));
	res = calloc(w, sizeof(*res));
	if (!node || !res) {
		free(node);
		free(res);
		return -ENOMEM;
	}
	pthread_mutex_lock(&r->lock);
	r->st.lookups++;
	r->st.lookup_keys += n;
	pthread_mutex_unlock(&r->lock);

	for (i = 0; i < n;) {
		uint32_t m = n - i < w ? (uint32_t)(n - i) : w, lead = 0;
		bool used[RM_MAX_NODES] = {false}, failed = false;
		char key[RM_KEY_MAX];
		int64_t left = rm_left_ms(deadline);
		uint32_t nnodes;

		if (!left)
			break;
		pthread_mutex_lock(&r->lock);
		for (uint32_t j = 0; j < m; j++) {
			struct rm_item tmp = {.ask = 0};
			int kl = rm_key(&r->fp, &chunks[i + j], key, sizeof(key));

			tmp.slot = rm_key_slot(key, (size_t)kl);
			node[j] = rm_route_locked(r, &tmp);
			used[node[j]] = true;
			res[j] = 0;
		}
		nnodes = r->nnodes;
		pthread_mutex_unlock(&r->lock);

		/* Send every node its keys of the window, then read the replies. */
		for (uint32_t k = 0; k < nnodes; k++) {
			struct rm_node *nd = r->nodes[k];
			int err = 0, done = 0;

			if (!used[k])
				continue;
			pthread_mutex_lock(&nd->ctl_lock);
			if (nd->ctl && nd->ctl->err) {
				redisFree(nd->ctl);
				nd->ctl = NULL;
			}
			if (!nd->ctl)
				nd->ctl = rm_connect(r, nd, rm_min(r->cfg.connect_timeout_ms, left),
						     r->cfg.timeout_ms, &err);
			if (!nd->ctl) {
				used[k] = false; /* its keys stay misses */
				failed = true;
				pthread_mutex_unlock(&nd->ctl_lock);
				continue;
			}
			redisSetTimeout(nd->ctl, rm_tv(rm_min(r->cfg.timeout_ms, left)));
			for (uint32_t j = 0; j < m; j++) {
				if (node[j] != k)
					continue;
				int kl = rm_key(&r->fp, &chunks[i + j], key, sizeof(key));
				redisAppendCommand(nd->ctl, "EXISTS %b", key, (size_t)kl);
			}
			while (!done && redisBufferWrite(nd->ctl, &done) == REDIS_OK)
				;
			/* ctl_lock stays held until the replies are read */
		}
		for (uint32_t k = 0; k < nnodes; k++) {
			struct rm_node *nd = r->nodes[k];

			if (!used[k])
				continue;
			for (uint32_t j = 0; j < m; j++) {
				redisReply *rep = NULL;

				if (node[j] != k)
					continue;
				if (nd->ctl->err ||
				    redisGetReply(nd->ctl, (void **)&rep) != REDIS_OK) {
					rm_count(r, &r->st.errors, 1);
					failed = true;
					break; /* the connection is dropped on next use */
				}
				if (rep->type == REDIS_REPLY_INTEGER)
					res[j] = rep->integer > 0;
				else if (rep->type == REDIS_REPLY_ERROR &&
					 (!strncmp(rep->str, "MOVED", 5) ||
					  !strncmp(rep->str, "ASK", 3)))
					stale = failed = true;
				freeReplyObject(rep);
			}
			pthread_mutex_lock(&r->lock);
			r->st.lookup_round_trips++;
			pthread_mutex_unlock(&r->lock);
			pthread_mutex_unlock(&nd->ctl_lock);
		}
		while (lead < m && res[lead] == 1)
			lead++;
		if (lead < m && failed && r->cluster && rm_left_ms(deadline) > RM_BACKOFF_MS) {
			/* a node is gone or moved: a new map, the same window again */
			struct timespec ts = {0, RM_BACKOFF_MS * 1000000L};

			rm_refresh(r, false);
			nanosleep(&ts, NULL);
			continue;
		}
		i += lead;
		if (lead < m)
			break;
	}
	*found = i;
	pthread_mutex_lock(&r->lock);
	r->st.lookup_hits += i;
	r->st.lookup_ns += rm_now_ns() - start;
	pthread_mutex_unlock(&r->lock);
	free(node);
	free(res);
	if (stale)
		rm_refresh(r, true);
	rm_report(r, false);
	return 0;
}

/* ---- what kvmmctl sees ---- */

/*
 * The counters go to a registry file (remote_report.c) at open, when
 * kvmm_remote_stats() is called, and after a lookup or a batch at most
 * every RM_REPORT_NS; a writer already at it is not waited for, so no
 * I/O thread stalls on another's file write.
 */
static void rm_report(struct kvmm_remote *r, bool now)
{
	struct kvmm_remote_stats st;
	uint64_t t = rm_now_ns();

	if (!r->report_on || (!now && t - r->report_ns < RM_REPORT_NS))
		return;
	if (now)
		pthread_mutex_lock(&r->report_lock);
	else if (pthread_mutex_trylock(&r->report_lock))
		return;
	pthread_mutex_lock(&r->lock);
	st = r->st;
	pthread_mutex_unlock(&r->lock);
	r->report_ns = t;
	rm_report_write(r->report_dir, r->report_name, r->servers, &r->cfg.layout, &r->fp, &st);
	pthread_mutex_unlock(&r->report_lock);
}

static void rm_report_start(struct kvmm_remote *r)
{
	static atomic_uint seq;

	if (!kvmm_registry_dir("KVMM_REMOTE_REGISTRY", "kvmm-remote", r->report_dir,
			       sizeof(r->report_dir)))
		return;
	snprintf(r->report_name, sizeof(r->report_name), "%d-%u", (int)getpid(),
		 atomic_fetch_add(&seq, 1));
	r->report_on = true;
	rm_report(r, true);
}

/* ---- open, close, names ---- */

static char *rm_strdup(const char *s)
{
	return s ? strdup(s) : strdup("");
}

/* Connects to each of cfg->servers in turn until one answers CLUSTER SLOTS
 * (a cluster) or says it has no cluster support (a single server). */
static int rm_discover(struct kvmm_remote *r)
{
	const char *s = r->servers;
	int err = -EINVAL;

	while (*s) {
		const char *e = strchr(s, ',');
		size_t len = e ? (size_t)(e - s) : strlen(s);
		struct rm_node probe = {.r = r};
		redisContext *c;
		redisReply *rep;

		if (len &&
		    !rm_parse_endpoint(s, len, probe.host, sizeof(probe.host), &probe.port)) {
			c = rm_connect(r, &probe, r->cfg.connect_timeout_ms, r->cfg.timeout_ms,
				       &err);
			rep = c ? redisCommand(c, "CLUSTER SLOTS") : NULL;
			if (c && !rep)
				err = -ETIMEDOUT;
			if (rep) {
				pthread_mutex_lock(&r->lock);
				if (rep->type == REDIS_REPLY_ARRAY) {
					r->cluster = true;
					r->st.cluster = 1;
					err = rm_apply_slots_locked(r, rep, probe.host);
					r->st.refreshes += !err;
				} else if (rep->type == REDIS_REPLY_ERROR &&
					   strstr(rep->str, "cluster support disabled")) {
					err = rm_node_get_locked(r, probe.host, probe.port);
					if (err >= 0) {
						for (uint32_t k = 0; k < RM_SLOTS; k++)
							r->slots[k] = (uint16_t)err;
						err = 0;
					}
				} else {
					err = -EPROTO;
				}
				pthread_mutex_unlock(&r->lock);
				freeReplyObject(rep);
			}
			if (c)
				redisFree(c);
			if (!err)
				return 0;
		}
		s += len + (e ? 1 : 0);
	}
	return err;
}

static int rm_config(struct kvmm_remote *r, const struct kvmm_remote_config *cfg)
{
	const char *seed = cfg->hash_seed ? cfg->hash_seed : getenv("PYTHONHASHSEED");
	int err;

	if (!cfg->servers || !*cfg->servers || !seed || cfg->connections > RM_MAX_CONN)
		return -EINVAL;
	r->cfg = *cfg;
	r->servers = strdup(cfg->servers);
	r->model = rm_strdup(cfg->layout.model);
	r->revision = rm_strdup(cfg->layout.revision);
	r->dtype = rm_strdup(cfg->layout.dtype);
	if (!r->servers || !r->model || !r->revision || !r->dtype)
		return -ENOMEM;
	r->cfg.servers = r->servers;
	r->cfg.hash_seed = NULL;
	r->cfg.layout.model = r->model;
	r->cfg.layout.revision = r->revision;
	r->cfg.layout.dtype = r->dtype;
	if (!cfg->layout.model || !cfg->layout.dtype)
		return -EINVAL;
	err = kvmm_remote_fingerprint(&r->cfg.layout, &r->fp);
	if (!err)
		err = kvmm_vllm_none_hash(seed, &r->root);
	if (!r->cfg.connections)
		r->cfg.connections = 4;
	if (!r->cfg.timeout_ms)
		r->cfg.timeout_ms = 1000;
	if (!r->cfg.connect_timeout_ms)
		r->cfg.connect_timeout_ms = 500;
	if (!r->cfg.budget_ms)
		r->cfg.budget_ms = 2000;
	if (!r->cfg.max_inflight_bytes)
		r->cfg.max_inflight_bytes = 256ULL << 20;
	if (!r->cfg.lookup_window)
		r->cfg.lookup_window = 64;
	return err;
}

int kvmm_remote_open(const struct kvmm_remote_config *cfg, struct kvmm_remote **rp)
{
	struct kvmm_remote *r;
	int err;

	if (!cfg || !rp || cfg->size < sizeof(struct kvmm_remote_config))
		return -EINVAL;
	*rp = NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	pthread_mutex_init(&r->report_lock, NULL);
	for (uint32_t k = 0; k < RM_SLOTS; k++)
		r->slots[k] = RM_NO_NODE;
	err = rm_config(r, cfg);
	if (!err)
		err = rm_discover(r);
	if (err) {
		kvmm_remote_close(r);
		return err;
	}
	rm_report_start(r);
	*rp = r;
	return 0;
}

void kvmm_remote_close(struct kvmm_remote *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	while (r->batches)
		pthread_cond_wait(&r->cond, &r->lock);
	r->stop = true;
	for (uint32_t i = 0; i < r->nnodes; i++)
		pthread_cond_broadcast(&r->nodes[i]->cond);
	pthread_mutex_unlock(&r->lock);
	for (uint32_t i = 0; i < r->nnodes; i++) {
		struct rm_node *nd = r->nodes[i];

		for (uint32_t t = 0; t < nd->nthreads; t++)
			pthread_join(nd->threads[t], NULL);
		if (nd->ctl)
			redisFree(nd->ctl);
		pthread_mutex_destroy(&nd->ctl_lock);
		pthread_cond_destroy(&nd->cond);
		free(nd);
	}
	if (r->report_on)
		kvmm_registry_remove(r->report_dir, r->report_name);
	pthread_mutex_destroy(&r->report_lock);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	free(r->servers);
	free(r->model);
	free(r->revision);
	free(r->dtype);
	free(r);
}

void kvmm_remote_fp(const struct kvmm_remote *r, struct kvmm_hash256 *fp)
{
	*fp = r->fp;
}

int kvmm_remote_key(const struct kvmm_remote *r, const struct kvmm_hash256 *chunk, char *buf,
		    size_t len)
{
	if (!r || !chunk || !buf)
		return -EINVAL;
	return rm_key(&r->fp, chunk, buf, len);
}

long kvmm_remote_chunk_hashes(const struct kvmm_remote *r, const struct kvmm_hash256 *blocks,
			      size_t nblocks, struct kvmm_hash256 *out)
{
	size_t per, n;

	if (!r || (!blocks && nblocks))
		return -EINVAL;
	per = r->cfg.layout.chunk_tokens / r->cfg.layout.block_tokens;
	n = nblocks / per;
	if (n && !out)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		out[i] = blocks[(i + 1) * per - 1];
	return (long)n;
}

int kvmm_remote_stats(struct kvmm_remote *r, struct kvmm_remote_stats *st)
{
	if (!r || !st)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	*st = r->st;
	pthread_mutex_unlock(&r->lock);
	rm_report(r, true);
	return 0;
}

/* ---- single values ---- */

struct rm_one {
	const void *src;
	void *dst;
};

static int rm_one_fill(struct rm_item *it, uint8_t *dst)
{
	const struct rm_one *o = it->b->arg;

	memcpy(dst, o->src, it->len);
	return 0;
}

static int rm_one_deliver(struct rm_item *it, const uint8_t *src)
{
	const struct rm_one *o = it->b->arg;

	memcpy(o->dst, src, it->len);
	return 0;
}

/* put: the item's result; get: 1 hit, else 0 (a miss, whatever the cause). */
static int rm_one_result(struct rm_batch *b)
{
	const struct rm_item *it = &b->items[0];

	return it->put ? it->result : it->result == 1;
}

static void rm_one_release(struct rm_batch *b)
{
	free(b->arg);
}

static int rm_one(struct kvmm_remote *r, bool put, const struct kvmm_hash256 *chunk,
		  const struct kvmm_hash256 *parent, const void *src, void *dst, size_t len,
		  uint32_t budget_ms, struct kvmm_op **opp)
{
	struct rm_batch *b;
	struct rm_one *o;

	if (!r || !chunk || !len || (put ? !src : !dst))
		return -EINVAL;
	b = rm_batch_new(r, 1, budget_ms);
	o = calloc(1, sizeof(*o));
	if (!b || !o) {
		free(b);
		free(o);
		return -ENOMEM;
	}
	o->src = src;
	o->dst = dst;
	b->arg = o;
	b->release = rm_one_release;
	b->result = rm_one_result;
	rm_item_init(b, 0, chunk, parent);
	b->items[0].put = put;
	b->items[0].len = len;
	b->items[0].fill = rm_one_fill;
	b->items[0].deliver = rm_one_deliver;
	return rm_batch_submit(b, opp);
}

int kvmm_remote_put(struct kvmm_remote *r, const struct kvmm_hash256 *chunk,
		    const struct kvmm_hash256 *parent, const void *buf, size_t len,
		    uint32_t budget_ms, struct kvmm_op **opp)
{
	return rm_one(r, true, chunk, parent, buf, NULL, len, budget_ms, opp);
}

int kvmm_remote_get(struct kvmm_remote *r, const struct kvmm_hash256 *chunk,
		    const struct kvmm_hash256 *parent, void *buf, size_t len, uint32_t budget_ms,
		    struct kvmm_op **opp)
{
	return rm_one(r, false, chunk, parent, NULL, buf, len, budget_ms, opp);
}
