/* SPDX-License-Identifier: MIT */
/*
 * KVMM_PRELOAD_RULES: which allocations go to kvmm, and where.
 *
 *     RULES := RULE [';' RULE]...
 *     RULE  := KEY '=' VALUE [',' KEY '=' VALUE]... | 'skip' ...
 *
 * The first rule that matches an allocation decides it (kvmm-preload(7)
 * lists the keys). This file only parses and matches: it allocates
 * nothing, so it runs before the shim has a working allocator, and its
 * tests run it directly.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h"

int shim_parse_size(const char *s, const char *end, uint64_t *out)
{
	uint64_t v = 0, mul = 1;
	const char *p = s;

	if (p == end)
		return -EINVAL;
	for (; p < end && *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (p == s)
		return -EINVAL;
	if (p < end) {
		switch (*p) {
		case 'k':
		case 'K':
			mul = 1ULL << 10;
			break;
		case 'm':
		case 'M':
			mul = 1ULL << 20;
			break;
		case 'g':
		case 'G':
			mul = 1ULL << 30;
			break;
		case 't':
		case 'T':
			mul = 1ULL << 40;
			break;
		default:
			return -EINVAL;
		}
		p++;
		if (p < end && (*p == 'i' || *p == 'I'))
			p++;
		if (p < end && (*p == 'b' || *p == 'B'))
			p++;
	}
	if (p != end)
		return -EINVAL;
	if (v && mul > UINT64_MAX / v)
		return -ERANGE;
	*out = v * mul;
	return 0;
}

static int shim_parse_int(const char *s, const char *end, long lo, long hi, long *out)
{
	long v = 0;
	bool neg = false;
	const char *p = s;

	if (p < end && *p == '-') {
		neg = true;
		p++;
	}
	if (p == end)
		return -EINVAL;
	for (; p < end; p++) {
		if (*p < '0' || *p > '9' || v > 1000000000)
			return -EINVAL;
		v = v * 10 + (*p - '0');
	}
	v = neg ? -v : v;
	if (v < lo || v > hi)
		return -ERANGE;
	*out = v;
	return 0;
}

static bool shim_is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

struct shim_parse {
	struct shim_config *cfg;
	char *err;
	size_t errlen;
	bool have_err;
	int rule_no;
	const char *rule, *rule_end;
};

__attribute__((format(printf, 2, 3))) static int shim_bad(struct shim_parse *ps, const char *fmt,
							  ...)
{
	va_list ap;
	int n;

	if (ps->have_err || !ps->err || !ps->errlen)
		return -EINVAL;
	ps->have_err = true;
	n = snprintf(ps->err, ps->errlen, "rule %d '%.*s': ", ps->rule_no,
		     (int)(ps->rule_end - ps->rule), ps->rule);
	if (n < 0 || (size_t)n >= ps->errlen)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(ps->err + n, ps->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static bool shim_key(const char *k, const char *kend, const char *name)
{
	size_t n = strlen(name);

	return (size_t)(kend - k) == n && !memcmp(k, name, n);
}

static int shim_copy_name(char *dst, size_t cap, const char *s, const char *end)
{
	size_t n = (size_t)(end - s);

	if (!n || n >= cap)
		return -EINVAL;
	memcpy(dst, s, n);
	dst[n] = 0;
	return 0;
}

/* The pool named @name, made on first mention. */
static int shim_pool_index(struct shim_config *cfg, const char *name, uint32_t *idx)
{
	for (uint32_t i = 0; i < cfg->nr_pools; i++) {
		if (!strcmp(cfg->pools[i].name, name)) {
			*idx = i;
			return 0;
		}
	}
	if (cfg->nr_pools == SHIM_MAX_POOLS)
		return -ENOSPC;
	memset(&cfg->pools[cfg->nr_pools], 0, sizeof(cfg->pools[0]));
	strcpy(cfg->pools[cfg->nr_pools].name, name);
	*idx = cfg->nr_pools++;
	return 0;
}

/* Pool settings found in a rule, applied once the whole rule parsed. */
struct shim_pool_set {
	char pool[SHIM_NAME_MAX];
	bool has_limit, has_flash, has_fbytes, has_chunk;
	uint64_t limit, fbytes;
	uint32_t chunk;
	char flash[SHIM_PATH_MAX];
};

static int shim_parse_sizes(struct shim_parse *ps, struct shim_rule *r, const char *v,
			    const char *vend)
{
	while (v < vend) {
		const char *bar = memchr(v, '|', (size_t)(vend - v));
		const char *e = bar ? bar : vend;
		const char *dash = memchr(v, '-', (size_t)(e - v));
		struct shim_size_range sr = {0, UINT64_MAX};

		if (r->nr_sizes == SHIM_MAX_SIZES)
			return shim_bad(ps, "more than %d size ranges", SHIM_MAX_SIZES);
		if (!dash || shim_parse_size(v, dash, &sr.lo) ||
		    (dash + 1 < e && shim_parse_size(dash + 1, e, &sr.hi)) || sr.hi < sr.lo)
			return shim_bad(ps, "bad size range '%.*s' (LO-HI or LO-, e.g. 64M-1G)",
					(int)(e - v), v);
		r->sizes[r->nr_sizes++] = sr;
		v = bar ? bar + 1 : vend;
	}
	return 0;
}

static int shim_parse_calls(struct shim_parse *ps, struct shim_rule *r, const char *v,
			    const char *vend)
{
	r->calls = 0;
	while (v < vend) {
		const char *plus = memchr(v, '+', (size_t)(vend - v));
		const char *e = plus ? plus : vend;

		if (shim_key(v, e, "malloc"))
			r->calls |= SHIM_CALL_MALLOC;
		else if (shim_key(v, e, "aligned"))
			r->calls |= SHIM_CALL_ALIGNED;
		else if (shim_key(v, e, "mmap"))
			r->calls |= SHIM_CALL_MMAP;
		else if (shim_key(v, e, "all"))
			r->calls |= SHIM_CALL_ALL;
		else if (shim_key(v, e, "cuda"))
			r->calls |= SHIM_CALL_CUDA;
		else
			return shim_bad(ps,
					"unknown call '%.*s' (malloc, aligned, mmap, all, cuda)",
					(int)(e - v), v);
		v = plus ? plus + 1 : vend;
	}
	return r->calls ? 0 : shim_bad(ps, "calls= names no call");
}

static int shim_parse_libs(struct shim_parse *ps, struct shim_rule *r, const char *v,
			   const char *vend)
{
	while (v < vend) {
		const char *colon = memchr(v, ':', (size_t)(vend - v));
		const char *e = colon ? colon : vend;

		if (r->nr_libs == SHIM_MAX_LIBS)
			return shim_bad(ps, "more than %d libraries", SHIM_MAX_LIBS);
		if (shim_copy_name(r->libs[r->nr_libs], SHIM_NAME_MAX, v, e))
			return shim_bad(ps, "bad library name '%.*s'", (int)(e - v), v);
		r->nr_libs++;
		v = colon ? colon + 1 : vend;
	}
	return 0;
}

static int shim_parse_kv(struct shim_parse *ps, struct shim_rule *r, struct shim_pool_set *set,
			 const char *k, const char *kend, const char *v, const char *vend)
{
	uint64_t sz;
	long n;

	if (shim_key(k, kend, "skip") && v == NULL) {
		r->skip = true;
		return 0;
	}
	if (shim_key(k, kend, "scoped") && v == NULL) {
		r->scoped = true;
		return 0;
	}
	if (!v)
		return shim_bad(ps, "'%.*s' needs a value (KEY=VALUE)", (int)(kend - k), k);
	if (shim_key(k, kend, "name")) {
		if (shim_copy_name(r->name, SHIM_NAME_MAX, v, vend))
			return shim_bad(ps, "name must be 1..%d characters", SHIM_NAME_MAX - 1);
	} else if (shim_key(k, kend, "tag")) {
		if (shim_copy_name(r->tag, SHIM_NAME_MAX, v, vend))
			return shim_bad(ps, "tag must be 1..%d characters", SHIM_NAME_MAX - 1);
	} else if (shim_key(k, kend, "min")) {
		if (shim_parse_size(v, vend, &r->min_bytes))
			return shim_bad(ps, "bad size '%.*s' (a number with K, M, G or T)",
					(int)(vend - v), v);
	} else if (shim_key(k, kend, "sizes")) {
		return shim_parse_sizes(ps, r, v, vend);
	} else if (shim_key(k, kend, "lib")) {
		return shim_parse_libs(ps, r, v, vend);
	} else if (shim_key(k, kend, "calls")) {
		return shim_parse_calls(ps, r, v, vend);
	} else if (shim_key(k, kend, "pool")) {
		if (shim_copy_name(set->pool, SHIM_NAME_MAX, v, vend))
			return shim_bad(ps, "pool name must be 1..%d characters",
					SHIM_NAME_MAX - 1);
	} else if (shim_key(k, kend, "chunk")) {
		if (shim_parse_size(v, vend, &sz) || !shim_is_pow2(sz) || sz < 4096 ||
		    sz > (2u << 20))
			return shim_bad(ps, "chunk must be a power of two from 4K to 2M");
		r->chunk_bytes = (uint32_t)sz;
		set->has_chunk = true;
		set->chunk = (uint32_t)sz;
	} else if (shim_key(k, kend, "node")) {
		if (shim_parse_int(v, vend, -1, 1023, &n))
			return shim_bad(ps, "node must be -1..1023");
		r->numa_node = (int32_t)n;
	} else if (shim_key(k, kend, "prio") || shim_key(k, kend, "priority")) {
		if (shim_parse_int(v, vend, 0, 1000000, &n))
			return shim_bad(ps, "priority must be 0..1000000");
		r->priority = (uint32_t)n;
	} else if (shim_key(k, kend, "limit")) {
		if (shim_parse_size(v, vend, &set->limit))
			return shim_bad(ps, "bad pool limit '%.*s'", (int)(vend - v), v);
		set->has_limit = true;
	} else if (shim_key(k, kend, "flash")) {
		if (shim_copy_name(set->flash, SHIM_PATH_MAX, v, vend) || v[0] != '/')
			return shim_bad(ps, "flash must be an absolute directory");
		set->has_flash = true;
	} else if (shim_key(k, kend, "flash_bytes")) {
		if (shim_parse_size(v, vend, &set->fbytes) || !set->fbytes)
			return shim_bad(ps, "bad flash_bytes '%.*s'", (int)(vend - v), v);
		set->has_fbytes = true;
	} else {
		return shim_bad(ps,
				"unknown key '%.*s' (name, min, sizes, lib, calls, pool, chunk, "
				"node, prio, limit, flash, flash_bytes, tag, scoped, skip)",
				(int)(kend - k), k);
	}
	return 0;
}

/* Applies a rule's pool settings; a second, different value is an error. */
static int shim_pool_apply(struct shim_parse *ps, struct shim_rule *r,
			   const struct shim_pool_set *set)
{
	struct shim_config *cfg = ps->cfg;
	struct shim_pool_cfg *p;
	uint32_t idx, old = cfg->nr_pools;

	if (shim_pool_index(cfg, set->pool[0] ? set->pool : "default", &idx))
		return shim_bad(ps, "more than %d pools", SHIM_MAX_POOLS);
	p = &cfg->pools[idx];
	if ((set->has_limit && p->limit_bytes && p->limit_bytes != set->limit) ||
	    (set->has_flash && p->flash_dir[0] && strcmp(p->flash_dir, set->flash)) ||
	    (set->has_fbytes && p->flash_bytes && p->flash_bytes != set->fbytes)) {
		cfg->nr_pools = old;
		return shim_bad(ps, "pool '%s' already has another limit, flash or flash_bytes",
				p->name);
	}
	if (set->has_limit)
		p->limit_bytes = set->limit;
	if (set->has_flash)
		strcpy(p->flash_dir, set->flash);
	if (set->has_fbytes)
		p->flash_bytes = set->fbytes;
	if (set->has_chunk && set->chunk > p->chunk_bytes)
		p->chunk_bytes = set->chunk; /* the pool's flash slots fit every rule's chunk */
	r->pool = idx;
	return 0;
}

static int shim_parse_rule(struct shim_parse *ps, const char *s, const char *end)
{
	struct shim_rule r = {
	    .calls = SHIM_CALL_ALL, .min_bytes = SHIM_DEFAULT_MIN, .numa_node = -1};
	struct shim_pool_set set;
	int ret;

	memset(&set, 0, sizeof(set));
	snprintf(r.name, sizeof(r.name), "rule%d", ps->rule_no);
	while (s < end) {
		const char *comma = memchr(s, ',', (size_t)(end - s));
		const char *e = comma ? comma : end;
		const char *eq = memchr(s, '=', (size_t)(e - s));

		while (s < e && *s == ' ')
			s++;
		if (s < e) {
			ret = shim_parse_kv(ps, &r, &set, s, eq ? eq : e, eq ? eq + 1 : NULL, e);
			if (ret)
				return ret;
		}
		s = comma ? comma + 1 : end;
	}
	if (ps->cfg->nr_rules == SHIM_MAX_RULES)
		return shim_bad(ps, "more than %d rules", SHIM_MAX_RULES);
	ret = shim_pool_apply(ps, &r, &set);
	if (ret)
		return ret;
	ps->cfg->rules[ps->cfg->nr_rules++] = r;
	return 0;
}

int shim_rules_parse(const char *text, struct shim_config *cfg, char *err, size_t errlen)
{
	struct shim_parse ps = {.cfg = cfg, .err = err, .errlen = errlen};
	int bad = 0;

	memset(cfg, 0, sizeof(*cfg));
	if (err && errlen)
		err[0] = 0;
	if (!text || !*text)
		text = "min=64M";
	for (const char *s = text; *s;) {
		const char *semi = strchr(s, ';');
		const char *end = semi ? semi : s + strlen(s);

		ps.rule_no++;
		ps.rule = s;
		ps.rule_end = end;
		if (end > s && shim_parse_rule(&ps, s, end))
			bad++;
		s = semi ? semi + 1 : end;
	}
	return bad;
}

static bool shim_lib_matches(const char *want, const char *lib)
{
	size_t n = strlen(want);

	return !strncmp(lib, want, n) && (lib[n] == 0 || lib[n] == '.');
}

static bool shim_rule_size(const struct shim_rule *r, uint64_t bytes)
{
	if (!r->nr_sizes)
		return bytes >= r->min_bytes;
	for (uint32_t i = 0; i < r->nr_sizes; i++) {
		if (bytes >= r->sizes[i].lo && bytes <= r->sizes[i].hi)
			return true;
	}
	return false;
}

bool shim_rules_need_lib(const struct shim_config *cfg, uint32_t call, uint64_t bytes)
{
	for (uint32_t i = 0; i < cfg->nr_rules; i++) {
		const struct shim_rule *r = &cfg->rules[i];

		if ((r->calls & call) && shim_rule_size(r, bytes) && r->nr_libs)
			return true;
	}
	return false;
}

int shim_rules_match(const struct shim_config *cfg, uint32_t call, uint64_t bytes, const char *lib)
{
	return shim_rules_match_scoped(cfg, call, bytes, lib, false);
}

int shim_rules_match_scoped(const struct shim_config *cfg, uint32_t call, uint64_t bytes,
			    const char *lib, bool in_scope)
{
	for (uint32_t i = 0; i < cfg->nr_rules; i++) {
		const struct shim_rule *r = &cfg->rules[i];
		bool lib_ok = !r->nr_libs;

		if (!(r->calls & call) || !shim_rule_size(r, bytes) || (r->scoped && !in_scope))
			continue;
		for (uint32_t j = 0; lib && j < r->nr_libs && !lib_ok; j++)
			lib_ok = shim_lib_matches(r->libs[j], lib);
		if (lib_ok)
			return (int)i;
	}
	return -1;
}
