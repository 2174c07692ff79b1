/* SPDX-License-Identifier: MIT */
/* Human formatting and parsing of sizes for the tools. */
#ifndef KVMM_TOOLS_FMT_H
#define KVMM_TOOLS_FMT_H

#include <stddef.h>
#include <stdint.h>

/* "0 B", "512 B", "64.0 KiB", "2.00 GiB": binary units, 3 significant digits. */
const char *fmt_bytes(char *buf, size_t len, uint64_t bytes);

/*
 * Parses a byte count: decimal or 0x hex, optionally followed by a binary
 * suffix K, M, G, T (or KiB, MiB, GiB, TiB; case-insensitive).
 * Return: 0, or -EINVAL for anything else, -ERANGE on overflow.
 */
int parse_bytes(const char *s, uint64_t *out);

/* Parses a plain unsigned decimal (or 0x hex) number; same returns. */
int parse_u64(const char *s, uint64_t *out);

#endif
