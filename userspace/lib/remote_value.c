/* SPDX-License-Identifier: MIT */
/*
 * The remote tier's keys and values. A key is
 *     kvmm:<format>:{<chunk hash, 64 hex>}:<fingerprint, first 8 bytes in hex>
 * so a cluster places a chunk by its hash (the {tag}) and two layouts never
 * share a key. A value is a 144-byte header and the payload; the header,
 * little-endian:
 *     0  magic "KVMR"        4  format version (u16)   6  header bytes (u16)
 *     8  tokens (u32)       12  flags (u32, 0)        16  payload bytes (u64)
 *    24  fingerprint (32)   56  chunk hash (32)       88  parent hash (32)
 *   120  XXH3-64 of the payload                       128  reserved (0)
 *   136  XXH3-64 of bytes [0, 136)
 * A value is good only if every field is what the reader asked for, both
 * checksums match and its length is exactly header + payload.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "remote.h"

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

int rm_key(const struct kvmm_hash256 *fp, const struct kvmm_hash256 *chunk, char *buf, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	char h[65], f[17];
	int n;

	for (int i = 0; i < 32; i++) {
		h[2 * i] = hex[chunk->b[i] >> 4];
		h[2 * i + 1] = hex[chunk->b[i] & 15];
	}
	h[64] = 0;
	for (int i = 0; i < 8; i++) {
		f[2 * i] = hex[fp->b[i] >> 4];
		f[2 * i + 1] = hex[fp->b[i] & 15];
	}
	f[16] = 0;
	n = snprintf(buf, len, "kvmm:%d:{%s}:%s", KVMM_REMOTE_FORMAT, h, f);
	return n < 0 || (size_t)n >= len ? -ENOSPC : n;
}

void rm_hdr_write(uint8_t *hdr, const struct rm_hdr_want *w, const void *payload)
{
	memset(hdr, 0, RM_HDR_BYTES);
	put32(hdr, RM_MAGIC);
	put16(hdr + 4, KVMM_REMOTE_FORMAT);
	put16(hdr + 6, RM_HDR_BYTES);
	put32(hdr + 8, w->tokens);
	put64(hdr + 16, w->len);
	memcpy(hdr + 24, w->fp->b, 32);
	memcpy(hdr + 56, w->chunk->b, 32);
	memcpy(hdr + 88, w->parent->b, 32);
	put64(hdr + 120, XXH3_64bits(payload, w->len));
	put64(hdr + RM_HDR_SUM_AT, XXH3_64bits(hdr, RM_HDR_SUM_AT));
}

int rm_value_check(const uint8_t *v, size_t vlen, const struct rm_hdr_want *w)
{
	if (vlen < RM_HDR_BYTES || vlen - RM_HDR_BYTES != w->len)
		return -EBADMSG;
	if (get_le(v + RM_HDR_SUM_AT, 8) != XXH3_64bits(v, RM_HDR_SUM_AT))
		return -EBADMSG;
	if (get_le(v, 4) != RM_MAGIC || get_le(v + 4, 2) != KVMM_REMOTE_FORMAT ||
	    get_le(v + 6, 2) != RM_HDR_BYTES || get_le(v + 8, 4) != w->tokens ||
	    get_le(v + 12, 4) != 0 || get_le(v + 16, 8) != w->len || get_le(v + 128, 8) != 0)
		return -EBADMSG;
	if (memcmp(v + 24, w->fp->b, 32) || memcmp(v + 56, w->chunk->b, 32) ||
	    memcmp(v + 88, w->parent->b, 32))
		return -EBADMSG;
	if (get_le(v + 120, 8) != XXH3_64bits(v + RM_HDR_BYTES, w->len))
		return -EBADMSG;
	return 0;
}
