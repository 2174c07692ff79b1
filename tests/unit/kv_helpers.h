/* SPDX-License-Identifier: MIT */
/* KV-cache helpers: fill and check a slot through the strided tensors. */
#ifndef KVMM_TEST_KV_HELPERS_H
#define KVMM_TEST_KV_HELPERS_H

#include "helpers.h"

/* A small model: 4 layers, 2 KV heads of 64, with the given dtype size. */
static inline struct kvmm_kv_config t_kv_config(uint32_t layout, uint32_t dtype)
{
	struct kvmm_kv_config c = KVMM_KV_CONFIG_INIT;

	c.layers = 4;
	c.kv_heads = 2;
	c.head_dim = 64;
	c.dtype_bytes = dtype;
	c.max_slots = 4;
	c.max_tokens = 1024;
	c.chunk_bytes = 64 << 10;
	c.layout = layout;
	return c;
}

static inline uint64_t t_row_seed(uint32_t slot, uint32_t layer, uint32_t which, uint32_t tok,
				  uint64_t gen)
{
	return gen << 48 ^ (uint64_t)slot << 36 ^ (uint64_t)layer << 28 ^ (uint64_t)which << 24 ^
	       tok;
}

/* Bytes of one token of one layer's K or V: the heads are contiguous. */
static inline size_t t_row_bytes(const struct kvmm_kv_config *c)
{
	return (size_t)c->kv_heads * c->head_dim * c->dtype_bytes;
}

/* Memory a slot of @tokens tokens holds: whole chunks in each region it spans. */
static inline uint64_t t_kv_slot_bytes(const struct kvmm_kv_config *c, uint32_t tokens)
{
	bool lm = c->layout == KVMM_LAYOUT_LAYER_MAJOR;
	uint64_t per_tok = t_row_bytes(c) * (lm ? 1 : 2 * c->layers);
	uint64_t part = (per_tok * tokens + c->chunk_bytes - 1) / c->chunk_bytes * c->chunk_bytes;

	return part * (lm ? 2 * c->layers : 1);
}

static inline char *t_row(struct kvmm_kv *kv, uint32_t layer, uint32_t which, uint32_t slot,
			  uint32_t tok)
{
	struct kvmm_kv_tensor t;

	T_OK(kvmm_kv_tensor(kv, layer, which, &t));
	return (char *)t.base + slot * t.slot_stride_bytes + tok * t.token_stride_bytes;
}

/* Writes generation @gen of tokens [0, len) of @slot, every layer, K and V. */
static inline void t_kv_fill(struct kvmm_kv *kv, const struct kvmm_kv_config *c, uint32_t slot,
			     uint32_t len, uint64_t gen)
{
	size_t n = t_row_bytes(c);

	for (uint32_t l = 0; l < c->layers; l++)
		for (uint32_t w = 0; w < 2; w++)
			for (uint32_t tok = 0; tok < len; tok++)
				t_fill(t_row(kv, l, w, slot, tok), n,
				       t_row_seed(slot, l, w, tok, gen));
}

/* Checks what t_kv_fill wrote, byte for byte. */
static inline void t_kv_check(struct kvmm_kv *kv, const struct kvmm_kv_config *c, uint32_t slot,
			      uint32_t len, uint64_t gen)
{
	size_t n = t_row_bytes(c);
	unsigned char ref[4096];

	assert_true(n <= sizeof(ref));
	for (uint32_t l = 0; l < c->layers; l++)
		for (uint32_t w = 0; w < 2; w++)
			for (uint32_t tok = 0; tok < len; tok++) {
				const char *row = t_row(kv, l, w, slot, tok);
				long d;

				t_fill(ref, n, t_row_seed(slot, l, w, tok, gen));
				d = t_diff(row, ref, n);
				if (d >= 0) {
					fail_msg("slot %u layer %u %c token %u byte %ld: expected "
						 "0x%02x, seen 0x%02x",
						 slot, l, w ? 'V' : 'K', tok, d, ref[d],
						 (unsigned char)row[d]);
				}
			}
}

#endif
