/* SPDX-License-Identifier: MIT */
/*
 * Seeded request traces. The generator is xoshiro256** seeded through
 * splitmix64, so a seed gives the same trace on every machine and libc.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

struct rng {
	uint64_t s[4];
};

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

/* Uniform in (0, 1]. */
static double rng_unit(struct rng *r)
{
	return ((double)(rng_next(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
}

static double rng_normal(struct rng *r)
{
	double u1 = rng_unit(r), u2 = rng_unit(r);

	return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static uint32_t dist_draw(const struct sim_dist *d, struct rng *r)
{
	double v;

	switch (d->kind) {
	case SIM_DIST_FIXED:
		return (uint32_t)d->a;
	case SIM_DIST_UNIFORM:
		return (uint32_t)d->a + (uint32_t)(rng_next(r) % ((uint64_t)(d->b - d->a) + 1));
	default:
		v = round(d->a * exp(d->b * rng_normal(r)));
		if (v < d->lo)
			v = d->lo;
		if (v > d->hi)
			v = d->hi;
		return (uint32_t)v;
	}
}

static struct sim_dist lognormal(double median, double sigma, uint32_t lo, uint32_t hi)
{
	return (struct sim_dist){SIM_DIST_LOGNORMAL, median, sigma, lo, hi};
}

int sim_trace_preset(const char *name, struct sim_trace_config *cfg)
{
	uint64_t seed = cfg->seed;

	memset(cfg, 0, sizeof(*cfg));
	cfg->seed = seed;
	if (!strcmp(name, "chat")) {
		/* Conversational traffic: short prompts and answers, long tails. */
		cfg->requests = 600;
		cfg->rate_per_s = 24.0;
		cfg->prompt = lognormal(400, 1.0, 8, 6144);
		cfg->output = lognormal(160, 0.9, 4, 2048);
		cfg->max_context = 8192;
	} else if (!strcmp(name, "long-context")) {
		/* Documents and code bases in the prompt, short answers. */
		cfg->requests = 80;
		cfg->rate_per_s = 1.0;
		cfg->prompt = lognormal(12000, 0.5, 2048, 30000);
		cfg->output = lognormal(300, 0.7, 16, 2048);
		cfg->max_context = 32768;
	} else if (!strcmp(name, "system-prompt")) {
		/* Chat behind one long system prompt that every request carries. */
		cfg->requests = 600;
		cfg->rate_per_s = 24.0;
		cfg->prompt = lognormal(200, 1.0, 8, 4096);
		cfg->output = lognormal(160, 0.9, 4, 2048);
		cfg->max_context = 8192;
		cfg->share_tokens = 2000;
		cfg->share_groups = 1;
	} else if (!strcmp(name, "few-shot")) {
		/* Few-shot prompts: one of 8 example sets, then a short question. */
		cfg->requests = 600;
		cfg->rate_per_s = 24.0;
		cfg->prompt = lognormal(100, 0.8, 8, 2048);
		cfg->output = lognormal(60, 0.8, 4, 1024);
		cfg->max_context = 8192;
		cfg->share_tokens = 1500;
		cfg->share_groups = 8;
	} else if (!strcmp(name, "batch-offline")) {
		/* Everything queued at once; memory decides the batch. */
		cfg->requests = 600;
		cfg->rate_per_s = 0.0;
		cfg->prompt = lognormal(600, 0.8, 16, 4096);
		cfg->output = lognormal(300, 0.8, 16, 2048);
		cfg->max_context = 8192;
	} else {
		return -1;
	}
	return 0;
}

int sim_dist_parse(const char *s, struct sim_dist *d)
{
	double a, b;
	unsigned lo, hi;
	int n;
	char tail;

	if (sscanf(s, "fixed:%lf%c", &a, &tail) == 1 && a >= 1 && a == floor(a)) {
		*d = (struct sim_dist){SIM_DIST_FIXED, a, a, (uint32_t)a, (uint32_t)a};
		return 0;
	}
	if (sscanf(s, "uniform:%lf:%lf%c", &a, &b, &tail) == 2 && a >= 1 && b >= a &&
	    a == floor(a) && b == floor(b)) {
		*d = (struct sim_dist){SIM_DIST_UNIFORM, a, b, (uint32_t)a, (uint32_t)b};
		return 0;
	}
	n = sscanf(s, "lognormal:%lf:%lf:%u:%u%c", &a, &b, &lo, &hi, &tail);
	if ((n == 2 || n == 4) && a >= 1 && b >= 0) {
		if (n == 2) {
			lo = 1;
			hi = 1u << 20;
		}
		if (lo < 1 || hi < lo)
			return -1;
		*d = lognormal(a, b, lo, hi);
		return 0;
	}
	return -1;
}

void sim_dist_describe(const struct sim_dist *d, char *buf, int len)
{
	switch (d->kind) {
	case SIM_DIST_FIXED:
		snprintf(buf, len, "fixed %u", d->lo);
		break;
	case SIM_DIST_UNIFORM:
		snprintf(buf, len, "uniform in [%u, %u]", d->lo, d->hi);
		break;
	default:
		snprintf(buf, len, "lognormal(median %.0f, sigma %.2f) in [%u, %u]", d->a, d->b,
			 d->lo, d->hi);
	}
}

struct sim_request *sim_trace_generate(const struct sim_trace_config *cfg)
{
	struct sim_request *r = calloc(cfg->requests ? cfg->requests : 1, sizeof(*r));
	struct rng g;
	double t = 0.0;

	if (!r)
		return NULL;
	rng_seed(&g, cfg->seed);
	for (uint32_t i = 0; i < cfg->requests; i++) {
		if (cfg->rate_per_s > 0)
			t += -log(rng_unit(&g)) / cfg->rate_per_s;
		r[i].id = i;
		r[i].arrival_s = t;
		r[i].prompt_tokens = dist_draw(&cfg->prompt, &g);
		r[i].output_tokens = dist_draw(&cfg->output, &g);
		if (!r[i].prompt_tokens)
			r[i].prompt_tokens = 1;
		if (!r[i].output_tokens)
			r[i].output_tokens = 1;
		if (cfg->share_tokens && cfg->share_groups) {
			/* The drawn prompt is the request's own part, after the prefix. */
			r[i].share_group = (uint32_t)(rng_next(&g) % cfg->share_groups);
			r[i].share_tokens = cfg->share_tokens;
			r[i].prompt_tokens += cfg->share_tokens;
		}
	}
	return r;
}
