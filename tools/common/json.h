/* SPDX-License-Identifier: MIT */
/*
 * A small streaming JSON writer for the tools' --json output: the caller
 * opens objects and arrays and adds members; commas, indentation and string
 * escaping are handled here. Keys are ignored inside arrays.
 */
#ifndef KVMM_TOOLS_JSON_H
#define KVMM_TOOLS_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define JW_MAX_DEPTH 32

struct jw {
	FILE *f;
	int depth;
	bool in_array[JW_MAX_DEPTH];
	bool first[JW_MAX_DEPTH];
};

void jw_init(struct jw *w, FILE *f);
/* Opens an object or array; @key is NULL at the top level and in arrays. */
void jw_obj(struct jw *w, const char *key);
void jw_arr(struct jw *w, const char *key);
/* Closes the innermost object or array; after the last one prints "\n". */
void jw_end(struct jw *w);
void jw_str(struct jw *w, const char *key, const char *val);
void jw_u64(struct jw *w, const char *key, uint64_t val);
void jw_i64(struct jw *w, const char *key, int64_t val);
/* Non-finite values are written as null (JSON has no NaN). */
void jw_f64(struct jw *w, const char *key, double val);
void jw_bool(struct jw *w, const char *key, bool val);
void jw_null(struct jw *w, const char *key);
/* A value that is already JSON text (another program's --json output), as is. */
void jw_raw(struct jw *w, const char *key, const char *json);

#endif
