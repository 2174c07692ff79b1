/* SPDX-License-Identifier: MIT */
/*
 * Iteration-level continuous batching (Orca/vLLM style) over one memory
 * manager and a memory budget.
 *
 * A request of prompt p and output o is admitted with p tokens of KV and
 * produces its first output token in that iteration (prefill); each later
 * iteration appends one token of KV and produces one more output token, so
 * it finishes holding p + o - 1 tokens. Every iteration:
 *   1. resume preempted requests, oldest arrival first: swapped ones when
 *      their memory fits again; recomputed ones wait at the head of the queue;
 *   2. admit arrived requests first come first served while their prompt
 *      fits the budget, the batch limit and the prefill limit;
 *   3. grow every running request by one token, oldest admission first;
 *      when that does not fit, preempt the most recently admitted running
 *      request (vLLM's policy): kvmm managers swap it out (DRAM until
 *      dram_swap_bytes is used, then flash) and back in later, the others
 *      drop its KV and recompute it on readmission.
 * Simulated iteration time = iter_base_s + KV bytes read / hbm_bytes_per_s
 * + prefill tokens / prefill_tok_per_s + swap bytes / tier bandwidth.
 *
 * With prefix sharing (mgr.share) the whole units of a request's shared
 * prefix belong to its group: held once while any request uses them (a
 * swapped-out request keeps using them; one dropped for recompute does
 * not), then kept as a cache, dropped least recently used first when
 * memory is needed, before any running request is preempted. A request
 * admitted while its group's prefix is held skips that prefill. Each
 * request holds only its own part (held = its bytes - the group's).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

enum rstate { R_PENDING, R_WAITING, R_RUNNING, R_SWAPPED, R_DONE };

struct group {
	uint64_t bytes; /* the shared units of the prefix */
	uint64_t saved; /* prefill tokens they stand for */
	uint32_t refs;	/* requests using them (running or swapped) */
	bool held;	/* in memory: used, or cached */
	double last_use;
};

struct rq {
	enum rstate state;
	struct group *g;	 /* its prefix group, or NULL */
	bool ref;		 /* it uses g's held prefix: held excludes g->bytes */
	uint32_t prompt, output; /* output trimmed to max_context */
	uint32_t tokens;	 /* KV tokens held (or to recompute, or swapped) */
	uint32_t generated;
	uint64_t held;	  /* bytes held in the budget */
	uint64_t swapped; /* bytes swapped out */
	bool on_flash;
	uint64_t admit_seq;
	double finish_s;
};

struct sched {
	const struct sim_config *cfg;
	const struct sim_request *reqs;
	const struct sim_backend *be;
	struct sim_result *res;
	struct rq *rq;
	uint32_t n;
	uint32_t *running, nr_running; /* admission order */
	uint32_t *waiting, nr_waiting; /* queue order; preempted-for-recompute at the head */
	struct group *groups;
	uint32_t nr_groups;
	uint32_t next_arrival;
	uint64_t held, dram_used, flash_used, admit_seq;
	double now, iter_swap_s;
	uint64_t iter_prefill;
};

static uint64_t bytes_for(const struct sched *s, uint64_t tokens)
{
	return sim_manager_bytes(&s->cfg->mgr, &s->cfg->model, tokens);
}

/* Bytes request @i holds itself at @tokens tokens (without its group's). */
static uint64_t own_bytes(const struct sched *s, uint32_t i, uint64_t tokens)
{
	const struct rq *r = &s->rq[i];

	return bytes_for(s, tokens) - (r->ref ? r->g->bytes : 0);
}

static void group_put(struct sched *s, struct rq *r)
{
	if (!r->ref)
		return;
	r->ref = false;
	r->g->refs--;
	r->g->last_use = s->now;
}

/* Drops the least recently used cached prefix other than @keep; false if none. */
static bool drop_cached(struct sched *s, const struct group *keep)
{
	struct group *v = NULL;

	for (uint32_t k = 0; k < s->nr_groups; k++) {
		struct group *g = &s->groups[k];

		if (g != keep && g->held && !g->refs && (!v || g->last_use < v->last_use))
			v = g;
	}
	if (!v)
		return false;
	v->held = false;
	s->held -= v->bytes;
	s->res->prefix_evictions++;
	return true;
}

static void be_err(struct sched *s, int ret)
{
	if (ret)
		s->res->backend_errors++;
}

static void waiting_push_front(struct sched *s, uint32_t i)
{
	memmove(s->waiting + 1, s->waiting, s->nr_waiting * sizeof(*s->waiting));
	s->waiting[0] = i;
	s->nr_waiting++;
}

static void waiting_pop_front(struct sched *s)
{
	s->nr_waiting--;
	memmove(s->waiting, s->waiting + 1, s->nr_waiting * sizeof(*s->waiting));
}

static void running_remove(struct sched *s, uint32_t i)
{
	uint32_t k = 0;

	for (uint32_t j = 0; j < s->nr_running; j++) {
		if (s->running[j] != i)
			s->running[k++] = s->running[j];
	}
	s->nr_running = k;
}

static void start_running(struct sched *s, uint32_t i)
{
	struct rq *r = &s->rq[i];

	r->state = R_RUNNING;
	r->admit_seq = ++s->admit_seq;
	s->running[s->nr_running++] = i;
}

static void arrivals(struct sched *s)
{
	while (s->next_arrival < s->n && s->reqs[s->next_arrival].arrival_s <= s->now) {
		s->rq[s->next_arrival].state = R_WAITING;
		s->waiting[s->nr_waiting++] = s->next_arrival++;
	}
}

/* The swapped request that arrived first, or -1. */
static int64_t first_swapped(const struct sched *s)
{
	for (uint32_t i = 0; i < s->n; i++) {
		if (s->rq[i].state == R_SWAPPED)
			return i;
	}
	return -1;
}

static double tier_time(const struct sched *s, uint64_t bytes, bool flash)
{
	const struct sim_costs *c = &s->cfg->costs;

	return (double)bytes / (flash ? c->flash_bytes_per_s : c->dram_bytes_per_s);
}

/* Step 1a: swap requests back in while they fit. Returns false if one waits. */
static bool resume_swapped(struct sched *s)
{
	int64_t i;

	while ((i = first_swapped(s)) >= 0) {
		struct rq *r = &s->rq[i];
		uint64_t need = own_bytes(s, (uint32_t)i, r->tokens);

		if (s->nr_running >= s->cfg->max_batch)
			return false;
		while (s->held + need > s->cfg->budget_bytes)
			if (!drop_cached(s, NULL))
				return false;
		s->held += need;
		r->held = need;
		if (r->on_flash) {
			s->flash_used -= r->swapped;
			s->res->swap_in_flash_bytes += r->swapped;
		} else {
			s->dram_used -= r->swapped;
			s->res->swap_in_dram_bytes += r->swapped;
		}
		s->iter_swap_s += tier_time(s, r->swapped, r->on_flash);
		r->swapped = 0;
		start_running(s, (uint32_t)i);
		if (s->be && s->be->swap_in)
			be_err(s, s->be->swap_in(s->be->ctx, (uint32_t)i));
	}
	return true;
}

/* Step 2: admit from the queue while the head fits. */
static void admit(struct sched *s)
{
	while (s->nr_waiting && s->nr_running < s->cfg->max_batch) {
		uint32_t i = s->waiting[0];
		struct rq *r = &s->rq[i];
		/* Readmitted after preemption: the prefill redoes every generated token too. */
		uint32_t tokens = r->generated ? r->tokens + 1 : r->tokens;
		bool hit = r->g && r->g->held;
		uint64_t full = bytes_for(s, tokens), need = hit ? full - r->g->bytes : full;
		uint32_t prefill = tokens - (hit ? (uint32_t)r->g->saved : 0);
		bool room = true;

		if (s->iter_prefill && s->iter_prefill + prefill > s->cfg->max_prefill_tokens)
			break;
		while (room && s->held + need > s->cfg->budget_bytes)
			room = drop_cached(s, r->g);
		if (!room)
			break;
		waiting_pop_front(s);
		s->held += need;
		if (r->g) {
			r->g->held = true;
			r->g->refs++;
			r->ref = true;
		}
		/* First admissions only: a readmission's prefill is recompute. */
		if (r->g && !r->generated) {
			if (hit)
				s->res->prefix_hits++;
			else
				s->res->prefix_misses++;
			if (hit)
				s->res->prefill_saved_tokens += r->g->saved;
		}
		r->held = own_bytes(s, i, tokens);
		s->iter_prefill += prefill;
		if (!r->generated)
			s->res->prefill_tokens += prefill;
		if (r->generated)
			s->res->recomputed_tokens += prefill;
		r->tokens = tokens;
		r->generated++;
		start_running(s, i);
		if (s->be && s->be->admit)
			be_err(s, s->be->admit(s->be->ctx, i, r->tokens));
	}
}

static void preempt(struct sched *s, uint32_t v)
{
	struct rq *r = &s->rq[v];
	const struct sim_costs *c = &s->cfg->costs;

	running_remove(s, v);
	s->held -= r->held;
	s->res->preemptions++;
	if (sim_manager_swaps(&s->cfg->mgr)) {
		bool flash = s->dram_used + r->held > s->cfg->dram_swap_bytes;

		r->swapped = r->held;
		r->on_flash = flash;
		if (flash) {
			s->flash_used += r->swapped;
			s->res->swap_out_flash_bytes += r->swapped;
			s->res->swap_outs_flash++;
			if (s->flash_used > s->res->peak_flash_swap_bytes)
				s->res->peak_flash_swap_bytes = s->flash_used;
		} else {
			s->dram_used += r->swapped;
			s->res->swap_out_dram_bytes += r->swapped;
			s->res->swap_outs_dram++;
			if (s->dram_used > s->res->peak_dram_swap_bytes)
				s->res->peak_dram_swap_bytes = s->dram_used;
		}
		s->iter_swap_s += tier_time(s, r->swapped, flash);
		s->res->swap_as_recompute_s += (double)r->tokens / c->prefill_tok_per_s;
		r->state = R_SWAPPED;
		if (s->be && s->be->swap_out)
			be_err(s, s->be->swap_out(s->be->ctx, v, flash));
	} else {
		group_put(s, r); /* readmitted, it finds the prefix again if still held */
		r->state = R_WAITING;
		waiting_push_front(s, v);
		if (s->be && s->be->drop)
			s->be->drop(s->be->ctx, v);
	}
	r->held = 0;
}

/* The running request admitted last, or -1. */
static int64_t victim(const struct sched *s)
{
	int64_t best = -1;

	for (uint32_t j = 0; j < s->nr_running; j++) {
		uint32_t i = s->running[j];

		if (best < 0 || s->rq[i].admit_seq > s->rq[best].admit_seq)
			best = i;
	}
	return best;
}

/* Step 3: one more token for each request that was running before this iteration. */
static void grow(struct sched *s, uint64_t first_new_seq)
{
	for (uint32_t j = 0; j < s->nr_running; j++) {
		uint32_t i = s->running[j];
		struct rq *r = &s->rq[i];
		uint64_t need;

		if (r->admit_seq > first_new_seq)
			continue; /* admitted (prefilled) this iteration */
		need = own_bytes(s, i, r->tokens + 1);
		while (s->held - r->held + need > s->cfg->budget_bytes) {
			int64_t v;

			if (drop_cached(s, NULL))
				continue; /* a cached prefix goes before a running request */
			v = victim(s);

			preempt(s, (uint32_t)v);
			if (v == (int64_t)i)
				break;
		}
		if (r->state != R_RUNNING) {
			j--; /* running[] shifted down over it */
			continue;
		}
		/* Victims come after i in running[], so j still points at i. */
		s->held += need - r->held;
		r->held = need;
		r->tokens++;
		r->generated++;
	}
}

static void finish(struct sched *s)
{
	uint32_t k = 0;

	for (uint32_t j = 0; j < s->nr_running; j++) {
		uint32_t i = s->running[j];
		struct rq *r = &s->rq[i];

		if (r->generated < r->output) {
			s->running[k++] = i;
			continue;
		}
		s->held -= r->held;
		r->held = 0;
		group_put(s, r); /* its prefix stays cached */
		r->state = R_DONE;
		r->finish_s = s->now;
		s->res->finished++;
		s->res->output_tokens += r->output;
		if (s->be && s->be->finish)
			s->be->finish(s->be->ctx, i);
	}
	s->nr_running = k;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int sched_init(struct sched *s, const struct sim_config *cfg, const struct sim_request *reqs,
		      uint32_t n)
{
	s->cfg = cfg;
	s->reqs = reqs;
	s->n = n;
	s->rq = calloc(n ? n : 1, sizeof(*s->rq));
	s->running = calloc(n ? n : 1, sizeof(*s->running));
	s->waiting = calloc(n ? n : 1, sizeof(*s->waiting));
	if (!s->rq || !s->running || !s->waiting)
		return -ENOMEM;
	for (uint32_t i = 0; cfg->mgr.share && i < n; i++)
		if (reqs[i].share_tokens && reqs[i].share_group >= s->nr_groups)
			s->nr_groups = reqs[i].share_group + 1;
	if (s->nr_groups) {
		s->groups = calloc(s->nr_groups, sizeof(*s->groups));
		if (!s->groups)
			return -ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct rq *r = &s->rq[i];
		uint32_t max = cfg->max_context;

		r->prompt = reqs[i].prompt_tokens < max ? reqs[i].prompt_tokens : max - 1;
		r->output = reqs[i].output_tokens;
		/* The last token's KV is never written: p + o - 1 <= max_context. */
		if (r->prompt + r->output - 1 > max)
			r->output = max - r->prompt + 1;
		r->tokens = r->prompt;
		if (bytes_for(s, r->prompt + r->output - 1) > cfg->budget_bytes)
			return -EINVAL;
		/* A group's prefix: what its first request says (the trace gives one length). */
		if (s->groups && reqs[i].share_tokens && reqs[i].share_tokens <= r->prompt) {
			struct group *g = &s->groups[reqs[i].share_group];

			if (!g->bytes)
				g->bytes = sim_manager_shared_bytes(
				    &cfg->mgr, &cfg->model, reqs[i].share_tokens, &g->saved);
			r->g = g->bytes ? g : NULL;
		}
	}
	return 0;
}

static void sched_free(struct sched *s)
{
	free(s->rq);
	free(s->running);
	free(s->waiting);
	free(s->groups);
}

int sim_run(const struct sim_config *cfg, const struct sim_request *reqs, uint32_t n,
	    const struct sim_backend *be, sim_progress_fn progress, void *parg,
	    struct sim_result *res)
{
	struct sched s = {.be = be, .res = res};
	const struct sim_costs *c = &cfg->costs;
	uint64_t cap = 1024, nw = 0;
	double *waste = NULL, running_sum = 0, latency_sum = 0;
	uint32_t last_done = 0;
	int ret;

	memset(res, 0, sizeof(*res));
	res->requests = n;
	ret = sched_init(&s, cfg, reqs, n);
	waste = malloc(cap * sizeof(*waste));
	if (!ret && !waste)
		ret = -ENOMEM;
	while (!ret && res->finished < n) {
		uint64_t kv_read = 0, used = 0, first_new;
		bool swapped_wait;

		arrivals(&s);
		if (!s.nr_running && !s.nr_waiting && first_swapped(&s) < 0) {
			if (s.next_arrival >= n) {
				ret = -EINVAL;
				break;
			}
			s.now = reqs[s.next_arrival].arrival_s; /* idle until the next arrival */
			continue;
		}
		s.iter_swap_s = 0;
		s.iter_prefill = 0;
		first_new = s.admit_seq;
		swapped_wait = !resume_swapped(&s);
		if (!swapped_wait)
			admit(&s);
		grow(&s, first_new);
		if (!s.nr_running) {
			ret = -EINVAL; /* nothing fits the budget: cannot make progress */
			break;
		}
		for (uint32_t j = 0; j < s.nr_running; j++) {
			const struct rq *r = &s.rq[s.running[j]];

			/* A shared prefix is used once, below; its reads count per request. */
			used += (uint64_t)(r->tokens - (r->ref ? r->g->saved : 0)) *
				sim_model_token_bytes(&cfg->model);
			kv_read += (uint64_t)r->tokens * sim_model_token_bytes(&cfg->model);
		}
		for (uint32_t k = 0; k < s.nr_groups; k++)
			if (s.groups[k].refs)
				used += s.groups[k].saved * sim_model_token_bytes(&cfg->model);
		if (used > s.held)
			used = s.held; /* a chunk that ends inside a token */
		if (be && be->step) {
			uint32_t *ids = malloc(s.nr_running * sizeof(*ids));
			uint32_t *toks = malloc(s.nr_running * sizeof(*toks));

			if (ids && toks) {
				for (uint32_t j = 0; j < s.nr_running; j++) {
					ids[j] = s.running[j];
					toks[j] = s.rq[s.running[j]].tokens;
				}
				be_err(&s, be->step(be->ctx, s.nr_running, ids, toks));
			} else {
				res->backend_errors++;
			}
			free(ids);
			free(toks);
		}
		/* Iteration statistics, after the step, before completions free memory. */
		if (s.nr_running > res->peak_running)
			res->peak_running = s.nr_running;
		if (s.held > res->peak_held_bytes)
			res->peak_held_bytes = s.held;
		running_sum += s.nr_running;
		if (nw == cap) {
			double *w = realloc(waste, 2 * cap * sizeof(*w));

			if (!w) {
				ret = -ENOMEM;
				break;
			}
			waste = w;
			cap *= 2;
		}
		waste[nw++] = s.held ? 100.0 * (double)(s.held - used) / (double)s.held : 0.0;
		if (cfg->sample_every && res->iterations % cfg->sample_every == 0) {
			struct sim_sample *sm =
			    realloc(res->samples, (res->nr_samples + 1) * sizeof(*sm));

			if (sm) {
				res->samples = sm;
				sm[res->nr_samples++] =
				    (struct sim_sample){s.now, s.nr_running, s.held, used};
			}
		}
		s.now += c->iter_base_s + (double)kv_read / c->hbm_bytes_per_s +
			 (double)s.iter_prefill / c->prefill_tok_per_s + s.iter_swap_s;
		res->swap_time_s += s.iter_swap_s;
		res->iterations++;
		finish(&s);
		if (progress && res->finished != last_done) {
			last_done = res->finished;
			progress(parg, res->finished, n);
		}
	}
	if (!ret) {
		double sum = 0;

		for (uint64_t k = 0; k < nw; k++)
			sum += waste[k];
		res->waste_mean_pct = nw ? sum / (double)nw : 0;
		qsort(waste, nw, sizeof(*waste), cmp_double);
		res->waste_p99_pct = nw ? waste[(nw * 99 + 99) / 100 - 1] : 0;
		res->mean_running = res->iterations ? running_sum / (double)res->iterations : 0;
		res->sim_time_s = s.now;
		res->throughput_tok_s = s.now > 0 ? (double)res->output_tokens / s.now : 0;
		res->recompute_time_s = (double)res->recomputed_tokens / c->prefill_tok_per_s;
		for (uint32_t i = 0; i < n; i++)
			latency_sum += s.rq[i].finish_s - reqs[i].arrival_s;
		res->mean_latency_s = n ? latency_sum / n : 0;
	}
	free(waste);
	sched_free(&s);
	return ret;
}

void sim_result_free(struct sim_result *res)
{
	free(res->samples);
	res->samples = NULL;
}
