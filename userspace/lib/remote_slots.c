/* SPDX-License-Identifier: MIT */
/*
 * Redis Cluster key slots: CRC16 (the XMODEM variant: polynomial 0x1021,
 * initial value 0, no reflection) of the key's hash tag, modulo 16384. The
 * tag is what lies between the first '{' and the first '}' after it, when
 * that is not empty; otherwise the whole key is hashed.
 */
#include <string.h>

#include "remote.h"

static uint16_t crc16(const char *p, size_t n)
{
	uint16_t crc = 0;

	for (size_t i = 0; i < n; i++) {
		crc ^= (uint16_t)((uint8_t)p[i] << 8);
		for (int b = 0; b < 8; b++)
			crc = crc & 0x8000 ? (uint16_t)(crc << 1 ^ 0x1021) : (uint16_t)(crc << 1);
	}
	return crc;
}

uint16_t rm_key_slot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len), *close;

	if (open) {
		size_t rest = len - (size_t)(open + 1 - key);

		close = memchr(open + 1, '}', rest);
		if (close && close > open + 1)
			return crc16(open + 1, (size_t)(close - open - 1)) & (RM_SLOTS - 1);
	}
	return crc16(key, len) & (RM_SLOTS - 1);
}
