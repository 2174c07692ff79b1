/* SPDX-License-Identifier: MIT */
/*
 * The remote tier's internals (include/kvmm/remote.h is the API):
 *   remote_hash.c   vLLM block hashes, layout fingerprint (CBOR, SHA-256)
 *   remote_value.c  key names and the value format: header, verification
 *   remote_slots.c  CRC16 hash slots of keys (Redis Cluster routing)
 *   remote_wire.c   SET and GET of large values straight through the socket
 *   remote.c        the handle: nodes, their I/O threads and queues, batches
 *                   completing through struct kvmm_op, in-flight bytes, lookup
 *   remote_kv.c     chunks of a kvmm_kv slot: gather for publish, scatter for fetch
 *
 * Lock order (outer first): r->ctl_lock of nodes in index order (lookup,
 * refresh), r->lock (queues, slot map, node list, in-flight bytes, stats),
 * a batch's lock (its pending count). I/O threads hold no lock while they
 * talk to a server.
 */
#ifndef KVMM_LIB_REMOTE_H
#define KVMM_LIB_REMOTE_H

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <kvmm/remote.h>

#include "internal.h"

#define RM_SLOTS     16384
#define RM_NO_NODE   UINT16_MAX
#define RM_MAX_NODES 64
#define RM_MAX_CONN  32
#define RM_KEY_MAX   96

/* ---- remote_value.c: the value format ---- */

/* Little-endian on the wire, written and read field by field. */
#define RM_MAGIC      0x524d564bU /* "KVMR" */
#define RM_HDR_BYTES  144
#define RM_HDR_SUM_AT 136 /* the header checksum covers bytes [0, 136) */

struct rm_hdr_want {
	const struct kvmm_hash256 *fp;
	const struct kvmm_hash256 *chunk;
	const struct kvmm_hash256 *parent;
	uint32_t tokens;
	uint64_t len; /* payload bytes */
};

/* The key of @chunk under @fp into buf (RM_KEY_MAX); returns its length. */
int rm_key(const struct kvmm_hash256 *fp, const struct kvmm_hash256 *chunk, char *buf, size_t len);
/* Header for a payload of w->len bytes at @payload into hdr[RM_HDR_BYTES]. */
void rm_hdr_write(uint8_t *hdr, const struct rm_hdr_want *w, const void *payload);
/* 0 when value[0..vlen) is exactly what @w names, with a sound header and
 * payload; -EBADMSG otherwise. */
int rm_value_check(const uint8_t *value, size_t vlen, const struct rm_hdr_want *w);

/* ---- remote_slots.c: routing ---- */

/* Hash slot of a key: CRC16 (XMODEM) of its {hash tag}, or of the whole key. */
uint16_t rm_key_slot(const char *key, size_t len);

/* ---- remote_wire.c: large values straight through the socket ---- */

/* An I/O thread's connection and its staging buffer (values are built and
 * received there). */
struct rm_conn {
	redisContext *c;
	uint8_t *buf;
	size_t cap;
};

/* A GET's reply: REDIS_REPLY_STRING, _NIL or _ERROR; str points into the
 * connection's buffer (valid until its next command). */
struct rm_wire_reply {
	int type;
	char *str;
	size_t len;
};

int rm_conn_room(struct rm_conn *k, size_t n);
/* SET key v NX from v[0..vlen); *repp: the reply (freeReplyObject it). */
int rm_wire_set_nx(redisContext *c, const char *key, int kl, const uint8_t *v, size_t vlen,
		   redisReply **repp);
int rm_wire_get(struct rm_conn *k, const char *key, int kl, struct rm_wire_reply *out);

/* ---- remote.c ---- */

struct rm_item;
struct rm_batch;

/* put: copy the payload into dst; get: take the verified payload. 0 or -errno. */
typedef int (*rm_fill_fn)(struct rm_item *it, uint8_t *dst);
typedef int (*rm_deliver_fn)(struct rm_item *it, const uint8_t *src);

/* One GET or SET of one chunk. */
struct rm_item {
	struct rm_item *next; /* in a node's queue */
	struct rm_batch *b;
	bool put;
	struct kvmm_hash256 chunk, parent;
	uint64_t len; /* payload bytes */
	rm_fill_fn fill;
	rm_deliver_fn deliver;
	uint64_t idx; /* the caller's index (chunk number) */
	int result;   /* get: 1 hit, 0 miss; put: 1 new, 0 existing; < 0 error */
	uint16_t redirects;
	uint16_t ask; /* ASK target node + 1, 0: none */
	uint16_t slot;
	char key[RM_KEY_MAX];
	int keylen;
};

/* Items that complete one op together. */
struct rm_batch {
	struct kvmm_remote *r;
	struct kvmm_op *op;
	pthread_mutex_t lock;
	uint32_t pending;
	uint64_t deadline_ns;
	uint64_t start_ns;
	/* the op's result from the finished items */
	int (*result)(struct rm_batch *b);
	void *arg;			     /* the caller's (remote_kv.c's) context */
	void (*release)(struct rm_batch *b); /* frees arg; may be NULL */
	uint32_t n;
	struct rm_item items[];
};

uint64_t rm_now_ns(void);
/* A batch of @n items; deadline from budget_ms (0: the config's). */
struct rm_batch *rm_batch_new(struct kvmm_remote *r, uint32_t n, uint32_t budget_ms);
/* Name item @i (key, slot); fill in put/len/fill/deliver before submit. */
void rm_item_init(struct rm_batch *b, uint32_t i, const struct kvmm_hash256 *chunk,
		  const struct kvmm_hash256 *parent);
/* Queues every item; the op completes with b->result(b). Frees @b on error. */
int rm_batch_submit(struct rm_batch *b, struct kvmm_op **opp);
void rm_batch_free(struct rm_batch *b);

/* The handle's layout, fingerprint and root (the none hash). */
const struct kvmm_remote_layout *rm_layout(const struct kvmm_remote *r);
const struct kvmm_hash256 *rm_root(const struct kvmm_remote *r);

/* ---- remote_report.c ---- */

/* Writes the registry file @dir/@name that kvmmctl remote reads. */
void rm_report_write(const char *dir, const char *name, const char *servers,
		     const struct kvmm_remote_layout *l, const struct kvmm_hash256 *fp,
		     const struct kvmm_remote_stats *st);

/* worker.c: an op completed by its owner rather than by a worker thread. */
struct kvmm_op *kvmm_op_new(bool detached);
void kvmm_op_finish(struct kvmm_op *op, int result);

#endif /* KVMM_LIB_REMOTE_H */
