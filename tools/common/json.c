/* SPDX-License-Identifier: MIT */
/* Streaming JSON writer; see json.h. */
#include <math.h>
#include <string.h>

#include "json.h"

void jw_init(struct jw *w, FILE *f)
{
	memset(w, 0, sizeof(*w));
	w->f = f;
	w->first[0] = true;
}

static void jw_indent(struct jw *w)
{
	for (int i = 0; i < w->depth; i++)
		fputs("  ", w->f);
}

static void jw_escaped(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				fprintf(f, "\\u%04x", *p);
			else
				fputc(*p, f);
		}
	}
	fputc('"', f);
}

/* Separator, indentation and "key": before a value. */
static void jw_member(struct jw *w, const char *key)
{
	if (w->depth > 0) {
		fputs(w->first[w->depth] ? "\n" : ",\n", w->f);
		w->first[w->depth] = false;
		jw_indent(w);
		if (!w->in_array[w->depth]) {
			jw_escaped(w->f, key ? key : "");
			fputs(": ", w->f);
		}
	}
}

static void jw_open(struct jw *w, const char *key, bool array)
{
	jw_member(w, key);
	fputc(array ? '[' : '{', w->f);
	if (w->depth + 1 < JW_MAX_DEPTH)
		w->depth++;
	w->in_array[w->depth] = array;
	w->first[w->depth] = true;
}

void jw_obj(struct jw *w, const char *key)
{
	jw_open(w, key, false);
}

void jw_arr(struct jw *w, const char *key)
{
	jw_open(w, key, true);
}

void jw_end(struct jw *w)
{
	bool array = w->in_array[w->depth];
	bool empty = w->first[w->depth];

	if (w->depth > 0)
		w->depth--;
	if (!empty) {
		fputc('\n', w->f);
		jw_indent(w);
	}
	fputc(array ? ']' : '}', w->f);
	if (w->depth == 0)
		fputc('\n', w->f);
}

void jw_str(struct jw *w, const char *key, const char *val)
{
	jw_member(w, key);
	if (val)
		jw_escaped(w->f, val);
	else
		fputs("null", w->f);
}

void jw_u64(struct jw *w, const char *key, uint64_t val)
{
	jw_member(w, key);
	fprintf(w->f, "%llu", (unsigned long long)val);
}

void jw_i64(struct jw *w, const char *key, int64_t val)
{
	jw_member(w, key);
	fprintf(w->f, "%lld", (long long)val);
}

void jw_f64(struct jw *w, const char *key, double val)
{
	jw_member(w, key);
	if (isfinite(val))
		fprintf(w->f, "%.6g", val);
	else
		fputs("null", w->f);
}

void jw_bool(struct jw *w, const char *key, bool val)
{
	jw_member(w, key);
	fputs(val ? "true" : "false", w->f);
}

void jw_null(struct jw *w, const char *key)
{
	jw_member(w, key);
	fputs("null", w->f);
}

void jw_raw(struct jw *w, const char *key, const char *json)
{
	size_t n = strlen(json);

	jw_member(w, key);
	while (n && (json[n - 1] == '\n' || json[n - 1] == ' '))
		n--;
	fwrite(json, 1, n, w->f);
}
