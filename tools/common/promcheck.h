/* SPDX-License-Identifier: MIT */
/*
 * A strict parser of the Prometheus text exposition format (0.0.4) for
 * tests of `kvmmctl metrics`: every line is a # HELP, a # TYPE, another
 * comment, or a sample `name{label="value",...} value`; names and label
 * names follow the format's grammar, label values only use the \\, \" and
 * \n escapes, values are floats (or NaN, +Inf, -Inf). A family's TYPE and
 * HELP come at most once and before its samples, and its samples are not
 * interleaved with another family's. Header-only, for test programs.
 */
#ifndef KVMM_TOOLS_PROMCHECK_H
#define KVMM_TOOLS_PROMCHECK_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROM_MAX 512

struct prom_sample {
	char name[96];
	char labels[256]; /* as written, without the braces */
	double value;
};

struct prom_family {
	char name[96];
	char type[16]; /* "" when no TYPE line */
	bool help, samples_seen, closed;
};

struct prom {
	int nr_samples, nr_families;
	struct prom_sample samples[PROM_MAX];
	struct prom_family families[PROM_MAX];
};

static bool prom_name_char(char c, bool first, bool colon)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
	       (colon && c == ':') || (!first && c >= '0' && c <= '9');
}

/* Reads a name at *p into @out; false if there is none. */
static bool prom_name(const char **p, char *out, size_t len, bool colon)
{
	size_t n = 0;

	if (!prom_name_char(**p, true, colon))
		return false;
	while (prom_name_char(**p, n == 0, colon)) {
		if (n + 1 < len)
			out[n++] = **p;
		(*p)++;
	}
	out[n] = 0;
	return true;
}

static bool prom_value(const char *s, double *v)
{
	char *end;

	if (!strcmp(s, "+Inf") || !strcmp(s, "Inf")) {
		*v = __builtin_inf();
		return true;
	}
	if (!strcmp(s, "-Inf")) {
		*v = -__builtin_inf();
		return true;
	}
	if (!strcmp(s, "NaN")) {
		*v = __builtin_nan("");
		return true;
	}
	if (!*s || strchr(s, 'x') || strchr(s, 'X') || strchr(s, 'n') || strchr(s, 'N'))
		return false;
	*v = strtod(s, &end);
	return *end == 0;
}

/* The family a sample named @name belongs to (histogram/summary suffixes aside). */
static struct prom_family *prom_family(struct prom *pr, const char *name, bool create)
{
	for (int i = 0; i < pr->nr_families; i++) {
		if (!strcmp(pr->families[i].name, name))
			return &pr->families[i];
	}
	if (!create || pr->nr_families == PROM_MAX)
		return NULL;
	memset(&pr->families[pr->nr_families], 0, sizeof(pr->families[0]));
	snprintf(pr->families[pr->nr_families].name, sizeof(pr->families[0].name), "%.95s", name);
	return &pr->families[pr->nr_families++];
}

static int prom_comment(struct prom *pr, const char *line, struct prom_family **cur, char *why,
			size_t len)
{
	const char *p = line + 1;
	char name[96];
	bool help;
	struct prom_family *f;

	while (*p == ' ' || *p == '\t')
		p++;
	help = !strncmp(p, "HELP ", 5);
	if (!help && strncmp(p, "TYPE ", 5))
		return 0; /* another comment */
	p += 5;
	while (*p == ' ')
		p++;
	if (!prom_name(&p, name, sizeof(name), true) || (*p != ' ' && *p != 0))
		return snprintf(why, len, "bad metric name in '%.100s'", line), -1;
	f = prom_family(pr, name, true);
	if (!f)
		return snprintf(why, len, "too many families"), -1;
	if (f->samples_seen)
		return snprintf(why, len, "%.100s after samples of %.100s", help ? "HELP" : "TYPE",
				name),
		       -1;
	while (*p == ' ')
		p++;
	if (help) {
		if (f->help)
			return snprintf(why, len, "second HELP for %.100s", name), -1;
		f->help = true;
		for (const char *q = p; *q; q++) {
			if (*q == '\\' && q[1] != '\\' && q[1] != 'n')
				return snprintf(why, len, "bad escape in HELP of %.100s", name), -1;
			if (*q == '\\')
				q++;
		}
	} else {
		static const char *const types[] = {"counter", "gauge", "histogram", "summary",
						    "untyped"};
		bool ok = false;

		if (f->type[0])
			return snprintf(why, len, "second TYPE for %.100s", name), -1;
		for (int i = 0; i < 5; i++)
			ok |= !strcmp(p, types[i]);
		if (!ok)
			return snprintf(why, len, "unknown type '%.100s' for %.100s", p, name), -1;
		snprintf(f->type, sizeof(f->type), "%.15s", p);
	}
	if (*cur && *cur != f)
		(*cur)->closed = true;
	*cur = f;
	return 0;
}

static int prom_labels(const char **pp, char *out, size_t len, char *why, size_t wlen)
{
	const char *p = *pp + 1, *start = p;

	while (*p != '}') {
		char lname[96];

		if (!prom_name(&p, lname, sizeof(lname), false))
			return snprintf(why, wlen, "bad label name"), -1;
		if (*p++ != '=' || *p++ != '"')
			return snprintf(why, wlen, "label %.100s: '=\"' expected", lname), -1;
		while (*p != '"') {
			if (!*p || *p == '\n')
				return snprintf(why, wlen, "unterminated label value"), -1;
			if (*p == '\\') {
				if (p[1] != '\\' && p[1] != '"' && p[1] != 'n')
					return snprintf(why, wlen, "bad escape in label value"), -1;
				p++;
			}
			p++;
		}
		p++;
		if (*p == ',')
			p++;
		else if (*p != '}')
			return snprintf(why, wlen, "',' or '}' expected after a label"), -1;
	}
	snprintf(out, len, "%.*s", (int)(p - start), start);
	*pp = p + 1;
	return 0;
}

static int prom_sample_line(struct prom *pr, const char *line, struct prom_family **cur, char *why,
			    size_t len)
{
	struct prom_sample s;
	const char *p = line;
	char val[64], ts[32], extra[8];
	struct prom_family *f;
	int n;

	memset(&s, 0, sizeof(s));
	if (!prom_name(&p, s.name, sizeof(s.name), true))
		return snprintf(why, len, "bad sample line '%.100s'", line), -1;
	if (*p == '{' && prom_labels(&p, s.labels, sizeof(s.labels), why, len))
		return -1;
	if (*p != ' ')
		return snprintf(why, len, "space expected before the value in '%.100s'", line), -1;
	n = sscanf(p, " %63s %31s %7s", val, ts, extra);
	if (n < 1 || n > 2 || !prom_value(val, &s.value))
		return snprintf(why, len, "bad value in '%.100s'", line), -1;
	if (n == 2 && strspn(ts, "-0123456789") != strlen(ts))
		return snprintf(why, len, "bad timestamp in '%.100s'", line), -1;
	f = prom_family(pr, s.name, false);
	if (!f) {
		/* name_bucket / _sum / _count of a histogram or summary, or untyped. */
		f = *cur && !strncmp(s.name, (*cur)->name, strlen((*cur)->name))
			? *cur
			: prom_family(pr, s.name, true);
	}
	if (!f || f->closed || (*cur && *cur != f && f->samples_seen))
		return snprintf(why, len, "samples of %.100s are not together", s.name), -1;
	if (*cur && *cur != f)
		(*cur)->closed = true;
	*cur = f;
	f->samples_seen = true;
	if (pr->nr_samples == PROM_MAX)
		return snprintf(why, len, "too many samples"), -1;
	pr->samples[pr->nr_samples++] = s;
	return 0;
}

/* Parses @text into @pr. 0, or -1 with the reason and line in @why. */
static inline int prom_parse(const char *text, struct prom *pr, char *why, size_t len)
{
	struct prom_family *cur = NULL;
	const char *p = text;
	int lineno = 0;

	memset(pr, 0, sizeof(*pr));
	if (*text && text[strlen(text) - 1] != '\n')
		return snprintf(why, len, "the text does not end with a newline"), -1;
	while (*p) {
		size_t n = strcspn(p, "\n");
		char line[1024];
		int ret = 0;

		lineno++;
		if (n >= sizeof(line))
			return snprintf(why, len, "line %d too long", lineno), -1;
		memcpy(line, p, n);
		line[n] = 0;
		p += n + (p[n] == '\n');
		if (!n)
			continue;
		if (line[0] == '#')
			ret = prom_comment(pr, line, &cur, why, len);
		else
			ret = prom_sample_line(pr, line, &cur, why, len);
		if (ret) {
			char msg[256];

			snprintf(msg, sizeof(msg), "line %d: %.200s", lineno, why);
			snprintf(why, len, "%.255s", msg);
			return -1;
		}
	}
	return 0;
}

/* The sample @name with exactly @labels ("" for none), or NULL. */
static inline const struct prom_sample *prom_find(const struct prom *pr, const char *name,
						  const char *labels)
{
	for (int i = 0; i < pr->nr_samples; i++) {
		if (!strcmp(pr->samples[i].name, name) && !strcmp(pr->samples[i].labels, labels))
			return &pr->samples[i];
	}
	return NULL;
}

static inline const struct prom_family *prom_find_family(const struct prom *pr, const char *name)
{
	for (int i = 0; i < pr->nr_families; i++) {
		if (!strcmp(pr->families[i].name, name))
			return &pr->families[i];
	}
	return NULL;
}

#endif
