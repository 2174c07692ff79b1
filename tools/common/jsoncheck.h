/* SPDX-License-Identifier: MIT */
/*
 * A strict JSON (RFC 8259) validator for tests of the tools' --json
 * output: one value, nothing after it but whitespace; strings with valid
 * escapes and no raw control characters; numbers in JSON's grammar (no
 * NaN, no leading zeros, no "+"); no trailing commas; no duplicate-free
 * guarantee (keys are not compared). Header-only so that test programs
 * built by other fragments (tests/kmod) include it without a library.
 */
#ifndef KVMM_TOOLS_JSONCHECK_H
#define KVMM_TOOLS_JSONCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

struct jc {
	const char *s;
	size_t i, n;
	int depth;
	const char *err;
};

static void jc_ws(struct jc *c)
{
	while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t' || c->s[c->i] == '\n' ||
			       c->s[c->i] == '\r'))
		c->i++;
}

static int jc_fail(struct jc *c, const char *why)
{
	if (!c->err)
		c->err = why;
	return -1;
}

static int jc_digits(struct jc *c)
{
	size_t start = c->i;

	while (c->i < c->n && c->s[c->i] >= '0' && c->s[c->i] <= '9')
		c->i++;
	return c->i > start ? 0 : jc_fail(c, "digit expected");
}

static int jc_number(struct jc *c)
{
	if (c->s[c->i] == '-')
		c->i++;
	if (c->i < c->n && c->s[c->i] == '0')
		c->i++;
	else if (jc_digits(c))
		return -1;
	if (c->i < c->n && c->s[c->i] == '.') {
		c->i++;
		if (jc_digits(c))
			return -1;
	}
	if (c->i < c->n && (c->s[c->i] == 'e' || c->s[c->i] == 'E')) {
		c->i++;
		if (c->i < c->n && (c->s[c->i] == '+' || c->s[c->i] == '-'))
			c->i++;
		if (jc_digits(c))
			return -1;
	}
	return 0;
}

static int jc_string(struct jc *c)
{
	c->i++; /* opening quote */
	while (c->i < c->n) {
		unsigned char ch = (unsigned char)c->s[c->i++];

		if (ch == '"')
			return 0;
		if (ch < 0x20)
			return jc_fail(c, "raw control character in a string");
		if (ch != '\\')
			continue;
		if (c->i >= c->n)
			break;
		ch = (unsigned char)c->s[c->i++];
		if (ch == 'u') {
			for (int k = 0; k < 4; k++, c->i++) {
				char h = c->i < c->n ? c->s[c->i] : 0;

				if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') ||
				      (h >= 'A' && h <= 'F')))
					return jc_fail(c, "bad \\u escape");
			}
		} else if (!strchr("\"\\/bfnrt", ch) || !ch) {
			return jc_fail(c, "bad escape");
		}
	}
	return jc_fail(c, "unterminated string");
}

static int jc_value(struct jc *c);

static int jc_container(struct jc *c, char close)
{
	bool first = true;

	if (++c->depth > 64)
		return jc_fail(c, "nested too deeply");
	c->i++;
	for (;;) {
		jc_ws(c);
		if (c->i >= c->n)
			return jc_fail(c, "unterminated object or array");
		if (c->s[c->i] == close && first) {
			c->i++;
			break;
		}
		if (close == '}') {
			if (c->s[c->i] != '"')
				return jc_fail(c, "object key expected");
			if (jc_string(c))
				return -1;
			jc_ws(c);
			if (c->i >= c->n || c->s[c->i] != ':')
				return jc_fail(c, "':' expected");
			c->i++;
		}
		if (jc_value(c))
			return -1;
		jc_ws(c);
		first = false;
		if (c->i < c->n && c->s[c->i] == ',') {
			c->i++;
			continue;
		}
		if (c->i < c->n && c->s[c->i] == close) {
			c->i++;
			break;
		}
		return jc_fail(c, "',' or closing bracket expected");
	}
	c->depth--;
	return 0;
}

static int jc_value(struct jc *c)
{
	jc_ws(c);
	if (c->i >= c->n)
		return jc_fail(c, "value expected");
	switch (c->s[c->i]) {
	case '{':
		return jc_container(c, '}');
	case '[':
		return jc_container(c, ']');
	case '"':
		return jc_string(c);
	case 't':
		if (c->n - c->i >= 4 && !strncmp(c->s + c->i, "true", 4))
			return c->i += 4, 0;
		break;
	case 'f':
		if (c->n - c->i >= 5 && !strncmp(c->s + c->i, "false", 5))
			return c->i += 5, 0;
		break;
	case 'n':
		if (c->n - c->i >= 4 && !strncmp(c->s + c->i, "null", 4))
			return c->i += 4, 0;
		break;
	default:
		if (c->s[c->i] == '-' || (c->s[c->i] >= '0' && c->s[c->i] <= '9'))
			return jc_number(c);
	}
	return jc_fail(c, "unexpected character");
}

/*
 * Checks that @s (@n bytes) is exactly one JSON value. Returns 0, or -1
 * with a message "why at byte N" in @why.
 */
static inline int json_check(const char *s, size_t n, char *why, size_t len)
{
	struct jc c = {.s = s, .n = n};

	if (!jc_value(&c)) {
		jc_ws(&c);
		if (c.i == c.n)
			return 0;
		jc_fail(&c, "text after the value");
	}
	snprintf(why, len, "%s at byte %zu", c.err ? c.err : "invalid", c.i);
	return -1;
}

#endif
