/* SPDX-License-Identifier: MIT */
/*
 * Names for the remote tier: vLLM's prefix-caching block hash and the
 * layout fingerprint, both SHA-256 over canonical CBOR (RFC 8949 4.2.1: the
 * shortest head for every length and integer, definite lengths), written by
 * hand for the four kinds of item they need: unsigned integers, byte and
 * text strings, arrays, null. vLLM's sha256_cbor is
 * hashlib.sha256(cbor2.dumps(x, canonical=True)), and a Python tuple is a
 * CBOR array, so hash_block_tokens((parent, tokens, extra)) is
 * SHA-256 of [h'parent', [t0, t1, ...], extra].
 */
#include <errno.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "remote.h"

enum { CBOR_UINT = 0, CBOR_BYTES = 2, CBOR_TEXT = 3, CBOR_ARRAY = 4 };
#define CBOR_NULL 0xf6

/* The most a head takes: the initial byte and a 64-bit argument. */
#define CBOR_HEAD_MAX 9

static size_t cbor_head(uint8_t *p, unsigned major, uint64_t v)
{
	uint8_t m = (uint8_t)(major << 5);
	int n;

	if (v < 24) {
		p[0] = m | (uint8_t)v;
		return 1;
	}
	if (v <= UINT8_MAX) {
		p[0] = m | 24;
		n = 1;
	} else if (v <= UINT16_MAX) {
		p[0] = m | 25;
		n = 2;
	} else if (v <= UINT32_MAX) {
		p[0] = m | 26;
		n = 4;
	} else {
		p[0] = m | 27;
		n = 8;
	}
	for (int i = 0; i < n; i++)
		p[1 + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	return 1 + (size_t)n;
}

/* A growing CBOR buffer; on allocation failure it records -ENOMEM. */
struct cbor_buf {
	uint8_t *p;
	size_t len, cap;
	uint8_t stack[2048];
	int err;
};

static void cb_init(struct cbor_buf *b)
{
	b->p = b->stack;
	b->len = 0;
	b->cap = sizeof(b->stack);
	b->err = 0;
}

static void cb_free(struct cbor_buf *b)
{
	if (b->p != b->stack)
		free(b->p);
}

static uint8_t *cb_room(struct cbor_buf *b, size_t n)
{
	if (b->err)
		return NULL;
	if (b->len + n > b->cap) {
		size_t cap = b->cap * 2 > b->len + n ? b->cap * 2 : b->len + n;
		uint8_t *p = malloc(cap);

		if (!p) {
			b->err = -ENOMEM;
			return NULL;
		}
		memcpy(p, b->p, b->len);
		cb_free(b);
		b->p = p;
		b->cap = cap;
	}
	return b->p + b->len;
}

static void cb_head(struct cbor_buf *b, unsigned major, uint64_t v)
{
	uint8_t *p = cb_room(b, CBOR_HEAD_MAX);

	if (p)
		b->len += cbor_head(p, major, v);
}

static void cb_raw(struct cbor_buf *b, const void *src, size_t n)
{
	uint8_t *p = cb_room(b, n);

	if (p && n) {
		memcpy(p, src, n);
		b->len += n;
	}
}

static void cb_string(struct cbor_buf *b, unsigned major, const void *s, size_t n)
{
	cb_head(b, major, n);
	cb_raw(b, s, n);
}

static void cb_text(struct cbor_buf *b, const char *s)
{
	cb_string(b, CBOR_TEXT, s, strlen(s));
}

static int cb_sha256(struct cbor_buf *b, struct kvmm_hash256 *out)
{
	int err = b->err;

	if (!err)
		SHA256(b->p, b->len, out->b);
	cb_free(b);
	return err;
}

int kvmm_vllm_none_hash(const char *seed, struct kvmm_hash256 *out)
{
	struct cbor_buf b;

	if (!seed || !out)
		return -EINVAL;
	cb_init(&b);
	cb_text(&b, seed);
	return cb_sha256(&b, out);
}

int kvmm_vllm_block_hash(const struct kvmm_hash256 *parent, const uint32_t *tokens, size_t ntokens,
			 const void *extra_cbor, size_t extra_len, struct kvmm_hash256 *out)
{
	struct cbor_buf b;

	if (!parent || !out || (!tokens && ntokens) || (!extra_cbor && extra_len) ||
	    (extra_cbor && !extra_len))
		return -EINVAL;
	cb_init(&b);
	cb_head(&b, CBOR_ARRAY, 3);
	cb_string(&b, CBOR_BYTES, parent->b, sizeof(parent->b));
	cb_head(&b, CBOR_ARRAY, ntokens);
	for (size_t i = 0; i < ntokens; i++)
		cb_head(&b, CBOR_UINT, tokens[i]);
	if (extra_cbor) {
		cb_raw(&b, extra_cbor, extra_len);
	} else {
		uint8_t null = CBOR_NULL;

		cb_raw(&b, &null, 1);
	}
	return cb_sha256(&b, out);
}

long kvmm_vllm_hash_blocks(const struct kvmm_hash256 *parent, const uint32_t *tokens,
			   size_t ntokens, uint32_t block_tokens, struct kvmm_hash256 *out)
{
	size_t n;

	if (!parent || !block_tokens || (!tokens && ntokens) || (!out && ntokens >= block_tokens))
		return -EINVAL;
	n = ntokens / block_tokens;
	for (size_t i = 0; i < n; i++) {
		int err = kvmm_vllm_block_hash(i ? &out[i - 1] : parent, tokens + i * block_tokens,
					       block_tokens, NULL, 0, &out[i]);

		if (err)
			return err;
	}
	return (long)n;
}

int kvmm_remote_fingerprint(const struct kvmm_remote_layout *l, struct kvmm_hash256 *fp)
{
	struct cbor_buf b;
	const uint32_t nums[] = {l ? l->layers : 0,	  l ? l->kv_heads : 0,
				 l ? l->head_dim : 0,	  l ? l->dtype_bytes : 0,
				 l ? l->block_tokens : 0, l ? l->chunk_tokens : 0,
				 l ? l->tp_rank : 0,	  l ? l->tp_size : 0};

	if (!l || !fp || !l->model || !l->dtype || !l->layers || !l->kv_heads || !l->head_dim ||
	    !l->dtype_bytes || !l->block_tokens || !l->chunk_tokens ||
	    l->chunk_tokens % l->block_tokens || (l->tp_size && l->tp_rank >= l->tp_size))
		return -EINVAL;
	cb_init(&b);
	cb_head(&b, CBOR_ARRAY, 5 + sizeof(nums) / sizeof(nums[0]));
	cb_text(&b, "kvmm-remote-layout");
	cb_head(&b, CBOR_UINT, KVMM_REMOTE_FORMAT);
	cb_text(&b, l->model);
	cb_text(&b, l->revision ? l->revision : "");
	cb_text(&b, l->dtype);
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
		cb_head(&b, CBOR_UINT, nums[i]);
	return cb_sha256(&b, fp);
}
