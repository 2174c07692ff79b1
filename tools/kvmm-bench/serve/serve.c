/* SPDX-License-Identifier: MIT */
/*
 * kvmm-bench serve: one seeded trace, one memory budget, every memory
 * manager; a table of capacity, waste, preemptions, swap cost and
 * simulated throughput. The kvmm managers also run for real through
 * libkvmm (scaled down; see real.c).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../common/fmt.h"
#include "../bench.h"
#include "real.h"
#include "sim.h"

#define MAX_MANAGERS 8

struct serve_opts {
	char trace_name[32];
	struct sim_trace_config trace;
	struct sim_config sim;
	struct sim_manager mgrs[MAX_MANAGERS];
	int nr_mgrs;
	bool real;
	uint32_t scale;	     /* 0: pick from real_bytes */
	uint64_t real_bytes; /* real memory the budget is scaled down to */
	const char *plot_dir;
};

struct serve_run {
	char name[32];
	struct sim_manager mgr;
	struct sim_result res;
	bool has_real;
	uint32_t scale;
	struct real_stats real;
	char real_error[200];
};

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: kvmm-bench [--json] serve [options]\n"
	    "trace:\n"
	    "  --trace chat|long-context|batch-offline   preset (default chat)\n"
	    "  --seed N             trace seed (default 1)\n"
	    "  --requests N         requests in the trace\n"
	    "  --rate R             Poisson arrivals per second (0: all at t = 0)\n"
	    "  --prompt DIST        prompt tokens: fixed:N, uniform:A:B, "
	    "lognormal:MEDIAN:SIGMA[:LO:HI]\n"
	    "  --output DIST        output tokens, same forms\n"
	    "model and memory:\n"
	    "  --model NAME         %s (default llama-3-8b)\n"
	    "  --budget BYTES       KV memory of the fast tier (default 16G)\n"
	    "  --dram BYTES         DRAM for swapped-out requests before flash (default 256M)\n"
	    "  --max-context N      tokens per request at most (default: the preset's)\n"
	    "  --max-batch N        running requests at most (default 256)\n"
	    "  --max-prefill N      prompt tokens admitted per iteration at most (default 8192)\n"
	    "managers:\n"
	    "  --managers LIST      of static, paged, kvmm-layer, kvmm-token (default all)\n"
	    "  --chunk BYTES        kvmm chunk size (default 2M)\n"
	    "  --block N            paged block in tokens (default 16)\n"
	    "costs:\n"
	    "  --prefill-speed N    prefill tokens per second (default 8000)\n"
	    "  --iter-ms MS         fixed time of a decode iteration (default 15)\n"
	    "  --hbm-gbps G         KV read bandwidth of decode (default 2000)\n"
	    "  --dram-gbps G        swap bandwidth to and from DRAM (default 25)\n"
	    "  --flash-gbps G       swap bandwidth to and from flash (default 3)\n"
	    "real memory operations (kvmm managers):\n"
	    "  --no-real            accounting only\n"
	    "  --real-bytes BYTES   scale the budget down to about this much (default 128M)\n"
	    "  --scale N            or give the scale (a power of two)\n"
	    "output:\n"
	    "  --plot DIR           data and gnuplot scripts (PNG where gnuplot is installed)\n"
	    "  --quiet              no progress lines\n",
	    sim_model_list());
}

static int parse_managers(struct serve_opts *o, const char *list)
{
	char buf[256], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", list);
	o->nr_mgrs = 0;
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		struct sim_manager *m = &o->mgrs[o->nr_mgrs];

		if (o->nr_mgrs == MAX_MANAGERS)
			return -1;
		memset(m, 0, sizeof(*m));
		if (!strcmp(t, "static"))
			m->kind = SIM_STATIC;
		else if (!strcmp(t, "paged"))
			m->kind = SIM_PAGED;
		else if (!strcmp(t, "kvmm-layer"))
			m->kind = SIM_KVMM_LAYER;
		else if (!strcmp(t, "kvmm-token"))
			m->kind = SIM_KVMM_TOKEN;
		else
			return -1;
		o->nr_mgrs++;
	}
	return o->nr_mgrs ? 0 : -1;
}

static int bad(const char *opt, const char *val, const char *what)
{
	fprintf(stderr, "kvmm-bench serve: bad %s '%s': %s\n", opt, val, what);
	return 2;
}

static double parse_pos(const char *s, bool *ok)
{
	char *end;
	double v = strtod(s, &end);

	*ok = *s && !*end && isfinite(v) && v > 0;
	return v;
}

static int serve_parse(struct serve_opts *o, int argc, char **argv)
{
	enum {
		O_TRACE = 256,
		O_SEED,
		O_REQ,
		O_RATE,
		O_PROMPT,
		O_OUTPUT,
		O_MODEL,
		O_BUDGET,
		O_DRAM,
		O_MAXCTX,
		O_BATCH,
		O_PREFILL,
		O_MGRS,
		O_CHUNK,
		O_BLOCK,
		O_PSPEED,
		O_ITER,
		O_HBM,
		O_DRAMBW,
		O_FLASHBW,
		O_NOREAL,
		O_REALB,
		O_SCALE,
		O_PLOT,
		O_HELP
	};
	static const struct option lo[] = {
	    {"trace", 1, 0, O_TRACE},	   {"seed", 1, 0, O_SEED},
	    {"requests", 1, 0, O_REQ},	   {"rate", 1, 0, O_RATE},
	    {"prompt", 1, 0, O_PROMPT},	   {"output", 1, 0, O_OUTPUT},
	    {"model", 1, 0, O_MODEL},	   {"budget", 1, 0, O_BUDGET},
	    {"dram", 1, 0, O_DRAM},	   {"max-context", 1, 0, O_MAXCTX},
	    {"max-batch", 1, 0, O_BATCH},  {"max-prefill", 1, 0, O_PREFILL},
	    {"managers", 1, 0, O_MGRS},	   {"chunk", 1, 0, O_CHUNK},
	    {"block", 1, 0, O_BLOCK},	   {"prefill-speed", 1, 0, O_PSPEED},
	    {"iter-ms", 1, 0, O_ITER},	   {"hbm-gbps", 1, 0, O_HBM},
	    {"dram-gbps", 1, 0, O_DRAMBW}, {"flash-gbps", 1, 0, O_FLASHBW},
	    {"no-real", 0, 0, O_NOREAL},   {"real-bytes", 1, 0, O_REALB},
	    {"scale", 1, 0, O_SCALE},	   {"plot", 1, 0, O_PLOT},
	    {"help", 0, 0, O_HELP},	   {0},
	};
	const char *preset = "chat", *prompt = NULL, *output = NULL;
	uint64_t seed = 1, v;
	long requests = -1, maxctx = -1;
	double rate = -1;
	uint32_t chunk = 2u << 20, block = 16;
	int c;

	memset(o, 0, sizeof(*o));
	sim_model_find("llama-3-8b", &o->sim.model);
	o->sim.budget_bytes = 16ULL << 30;
	o->sim.dram_swap_bytes = 256ULL << 20;
	o->sim.max_batch = 256;
	o->sim.max_prefill_tokens = 8192;
	o->sim.costs = (struct sim_costs){0.015, 2000e9, 8000, 25e9, 3e9};
	o->real = true;
	o->real_bytes = 128ULL << 20;
	parse_managers(o, "static,paged,kvmm-layer,kvmm-token");
	optind = 1;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		bool ok = true;
		char *end;
		double d;

		switch (c) {
		case O_TRACE:
			preset = optarg;
			break;
		case O_SEED:
			if (parse_u64(optarg, &seed))
				return bad("--seed", optarg, "not a number");
			break;
		case O_REQ:
			if (parse_u64(optarg, &v) || !v || v > 1000000)
				return bad("--requests", optarg, "1..1000000");
			requests = (long)v;
			break;
		case O_RATE:
			rate = strtod(optarg, &end);
			if (!*optarg || *end || !(rate >= 0) || !isfinite(rate))
				return bad("--rate", optarg, "requests per second >= 0");
			break;
		case O_PROMPT:
			prompt = optarg;
			break;
		case O_OUTPUT:
			output = optarg;
			break;
		case O_MODEL:
			if (sim_model_find(optarg, &o->sim.model) &&
			    sim_model_parse(optarg, &o->sim.model))
				return bad("--model", optarg, sim_model_list());
			break;
		case O_BUDGET:
		case O_DRAM:
			if (parse_bytes(optarg, &v) || (c == O_BUDGET && !v))
				return bad(c == O_BUDGET ? "--budget" : "--dram", optarg,
					   "bytes, with K, M, G or T");
			*(c == O_BUDGET ? &o->sim.budget_bytes : &o->sim.dram_swap_bytes) = v;
			break;
		case O_MAXCTX:
			if (parse_u64(optarg, &v) || v < 2 || v > (1u << 20))
				return bad("--max-context", optarg, "2..1048576 tokens");
			maxctx = (long)v;
			break;
		case O_BATCH:
		case O_PREFILL:
			if (parse_u64(optarg, &v) || !v || v > (1u << 24))
				return bad(c == O_BATCH ? "--max-batch" : "--max-prefill", optarg,
					   "a positive number");
			*(c == O_BATCH ? &o->sim.max_batch : &o->sim.max_prefill_tokens) =
			    (uint32_t)v;
			break;
		case O_MGRS:
			if (parse_managers(o, optarg))
				return bad("--managers", optarg,
					   "a comma list of static, paged, kvmm-layer, kvmm-token");
			break;
		case O_CHUNK:
			if (parse_bytes(optarg, &v) || v < 4096 || v > (2u << 20) || (v & (v - 1)))
				return bad("--chunk", optarg, "a power of two from 4K to 2M");
			chunk = (uint32_t)v;
			break;
		case O_BLOCK:
			if (parse_u64(optarg, &v) || !v || v > 65536)
				return bad("--block", optarg, "1..65536 tokens");
			block = (uint32_t)v;
			break;
		case O_PSPEED:
		case O_ITER:
		case O_HBM:
		case O_DRAMBW:
		case O_FLASHBW:
			d = parse_pos(optarg, &ok);
			if (!ok)
				return bad(lo[c - O_TRACE].name, optarg, "a positive number");
			if (c == O_PSPEED)
				o->sim.costs.prefill_tok_per_s = d;
			else if (c == O_ITER)
				o->sim.costs.iter_base_s = d / 1e3;
			else if (c == O_HBM)
				o->sim.costs.hbm_bytes_per_s = d * 1e9;
			else if (c == O_DRAMBW)
				o->sim.costs.dram_bytes_per_s = d * 1e9;
			else
				o->sim.costs.flash_bytes_per_s = d * 1e9;
			break;
		case O_NOREAL:
			o->real = false;
			break;
		case O_REALB:
			if (parse_bytes(optarg, &v) || v < (1u << 20))
				return bad("--real-bytes", optarg, "bytes, at least 1M");
			o->real_bytes = v;
			break;
		case O_SCALE:
			if (parse_u64(optarg, &v) || !v || (v & (v - 1)) || v > 65536)
				return bad("--scale", optarg, "a power of two up to 65536");
			o->scale = (uint32_t)v;
			break;
		case O_PLOT:
			o->plot_dir = optarg;
			break;
		case O_HELP:
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	o->trace.seed = seed;
	if (sim_trace_preset(preset, &o->trace))
		return bad("--trace", preset, "chat, long-context or batch-offline");
	snprintf(o->trace_name, sizeof(o->trace_name), "%s", preset);
	if (requests > 0)
		o->trace.requests = (uint32_t)requests;
	if (rate >= 0)
		o->trace.rate_per_s = rate;
	if (prompt && sim_dist_parse(prompt, &o->trace.prompt))
		return bad("--prompt", prompt,
			   "fixed:N, uniform:A:B or lognormal:MEDIAN:SIGMA[:LO:HI]");
	if (output && sim_dist_parse(output, &o->trace.output))
		return bad("--output", output,
			   "fixed:N, uniform:A:B or lognormal:MEDIAN:SIGMA[:LO:HI]");
	o->sim.max_context = maxctx > 0 ? (uint32_t)maxctx : o->trace.max_context;
	for (int i = 0; i < o->nr_mgrs; i++) {
		o->mgrs[i].block_tokens = block;
		o->mgrs[i].chunk_bytes = chunk;
		o->mgrs[i].max_context = o->sim.max_context;
	}
	return 0;
}

struct prog_arg {
	struct progress *p;
};

static void on_progress(void *arg, uint32_t done, uint32_t total)
{
	progress_update(arg, done, total, "requests");
}

static int run_one(const struct bench_opts *bo, struct serve_opts *o, struct serve_run *run,
		   const struct sim_request *reqs)
{
	struct sim_config cfg = o->sim;
	struct sim_backend be, *bep = NULL;
	struct real *real = NULL;
	struct progress p;
	char label[64];
	int ret;

	cfg.mgr = run->mgr;
	cfg.sample_every = o->plot_dir ? 10 : 0;
	sim_manager_name(&run->mgr, run->name, sizeof(run->name));
	if (o->real && sim_manager_swaps(&run->mgr)) {
		struct real_config rc = {
		    .model = o->sim.model,
		    .chunk_bytes = run->mgr.chunk_bytes,
		    .token_major = run->mgr.kind == SIM_KVMM_TOKEN,
		    .max_tokens = o->sim.max_context,
		    .budget_bytes = o->sim.budget_bytes,
		    .dram_swap_bytes = o->sim.dram_swap_bytes,
		    .requests = o->trace.requests,
		};
		uint64_t want = o->scale ? o->scale : 1;

		if (!o->scale)
			while (o->sim.budget_bytes / want > o->real_bytes && want < 65536)
				want *= 2;
		rc.scale = real_scale(&o->sim.model, run->mgr.chunk_bytes, (uint32_t)want);
		rc.max_slots = o->trace.requests < 768 ? o->trace.requests : 768;
		run->scale = rc.scale;
		ret = real_open(&rc, &real, run->real_error, sizeof(run->real_error));
		if (ret) {
			fprintf(stderr, "kvmm-bench serve: %s: no real operations: %s\n", run->name,
				run->real_error);
		} else {
			real_backend(real, &be);
			bep = &be;
			run->has_real = true;
		}
	}
	snprintf(label, sizeof(label), "serve %s", run->name);
	progress_init(&p, label, bo->quiet);
	ret = sim_run(&cfg, reqs, o->trace.requests, bep, on_progress, &p, &run->res);
	progress_end(&p);
	if (real) {
		real_stats(real, &run->real);
		real_close(real);
	}
	return ret;
}

static const char *gib(char *buf, size_t len, uint64_t bytes)
{
	return fmt_bytes(buf, len, bytes);
}

static void print_header(const struct serve_opts *o, const struct bench_sys *sys)
{
	char pd[96], od[96], b[32], d[32];
	const struct sim_model *m = &o->sim.model;
	uint64_t tok = sim_model_token_bytes(m);

	sim_dist_describe(&o->trace.prompt, pd, sizeof(pd));
	sim_dist_describe(&o->trace.output, od, sizeof(od));
	printf("kvmm-bench serve: trace %s, seed %llu: %u requests, ", o->trace_name,
	       (unsigned long long)o->trace.seed, o->trace.requests);
	if (o->trace.rate_per_s > 0)
		printf("Poisson arrivals at %.1f requests/s\n", o->trace.rate_per_s);
	else
		printf("all arriving at t = 0 s\n");
	printf("  prompt tokens %s; output tokens %s; at most %u tokens per request\n", pd, od,
	       o->sim.max_context);
	printf(
	    "model %s: %u layers, %u KV heads, head_dim %u, %u-byte elements = %llu KiB of KV per "
	    "token\n",
	    m->name, m->layers, m->kv_heads, m->head_dim, m->dtype_bytes,
	    (unsigned long long)(tok >> 10));
	printf(
	    "budget %s of KV memory (%llu tokens); %s of DRAM for swapped requests, then flash; "
	    "batch <= %u, prefill <= %u tokens per iteration\n",
	    gib(b, sizeof(b), o->sim.budget_bytes), (unsigned long long)(o->sim.budget_bytes / tok),
	    gib(d, sizeof(d), o->sim.dram_swap_bytes), o->sim.max_batch, o->sim.max_prefill_tokens);
	printf(
	    "costs: iteration %.1f ms + KV reads at %.0f GB/s + prefill at %.0f tokens/s; swaps at "
	    "%.0f GB/s (DRAM), %.1f GB/s (flash)\n",
	    o->sim.costs.iter_base_s * 1e3, o->sim.costs.hbm_bytes_per_s / 1e9,
	    o->sim.costs.prefill_tok_per_s, o->sim.costs.dram_bytes_per_s / 1e9,
	    o->sim.costs.flash_bytes_per_s / 1e9);
	bench_sys_print(stdout, sys);
	printf("\n");
}

static void print_tables(const struct serve_opts *o, struct serve_run *runs, int n)
{
	char a[32], b[32];

	printf("%-18s %9s %9s %10s %9s %9s %8s\n", "manager", "peak-reqs", "mean-reqs", "peak-held",
	       "waste-avg", "waste-p99", "preempt");
	for (int i = 0; i < n; i++) {
		const struct sim_result *r = &runs[i].res;

		printf("%-18s %9u %9.1f %10s %8.1f%% %8.1f%% %8llu\n", runs[i].name,
		       r->peak_running, r->mean_running, gib(a, sizeof(a), r->peak_held_bytes),
		       r->waste_mean_pct, r->waste_p99_pct, (unsigned long long)r->preemptions);
	}
	printf("\n%-18s %10s %10s %8s %10s %11s %9s %10s %9s\n", "manager", "swap-dram",
	       "swap-flash", "swap-s", "recomp-s", "recomp-eq-s", "sim-s", "tokens/s", "latency-s");
	for (int i = 0; i < n; i++) {
		const struct sim_result *r = &runs[i].res;

		printf("%-18s %10s %10s %8.2f %10.2f %11.2f %9.1f %10.0f %9.2f\n", runs[i].name,
		       gib(a, sizeof(a), r->swap_out_dram_bytes + r->swap_in_dram_bytes),
		       gib(b, sizeof(b), r->swap_out_flash_bytes + r->swap_in_flash_bytes),
		       r->swap_time_s, r->recompute_time_s, r->swap_as_recompute_s, r->sim_time_s,
		       r->throughput_tok_s, r->mean_latency_s);
	}
	printf("\npeak-reqs: most requests running at once; waste: held bytes not holding a token, "
	       "per iteration;\nswap-dram/flash: bytes moved out and back in; swap-s: simulated "
	       "seconds of those moves;\nrecomp-s: seconds spent recomputing preempted requests; "
	       "recomp-eq-s: what recomputing\nthe swapped requests instead would have cost at "
	       "%.0f tokens/s; tokens/s: output tokens per simulated second.\n",
	       o->sim.costs.prefill_tok_per_s);
}

static void print_real(const struct serve_opts *o, struct serve_run *runs, int n)
{
	char a[32], b[32];
	bool any = false;

	for (int i = 0; i < n; i++) {
		const struct real_stats *s = &runs[i].real;

		if (!runs[i].has_real) {
			if (o->real && sim_manager_swaps(&runs[i].mgr))
				printf("%s: no real operations (%s)\n", runs[i].name,
				       runs[i].real_error);
			continue;
		}
		if (!any)
			printf(
			    "\nreal libkvmm operations (host device), model scaled down 1/N: same "
			    "layers and tokens per chunk, K/V bytes per token and chunk / N\n");
		any = true;
		printf("%s: %s mode, 1/%u scale (chunk %s); kvmm_kv_step %llu calls, %.3f s "
		       "(%.1f us mean, %.2f ms max)\n",
		       runs[i].name, s->mode, runs[i].scale,
		       gib(a, sizeof(a), runs[i].mgr.chunk_bytes / runs[i].scale),
		       (unsigned long long)s->step_calls, s->step_s,
		       s->step_calls ? s->step_s / (double)s->step_calls * 1e6 : 0.0,
		       s->step_max_s * 1e3);
		printf("  wrote %llu tokens (%s); peak mapped %s real (freed slots kept for reuse "
		       "included) = %s at full scale; swaps %llu "
		       "out in %.3f s, %llu in in %.3f s\n",
		       (unsigned long long)s->tokens_written, gib(a, sizeof(a), s->bytes_written),
		       gib(b, sizeof(b), s->peak_mapped_bytes),
		       fmt_bytes((char[32]){0}, 32, s->peak_mapped_bytes * runs[i].scale),
		       (unsigned long long)s->swap_outs, s->swap_out_s,
		       (unsigned long long)s->swap_ins, s->swap_in_s);
		printf("  swapped-in tokens checked: %llu, mismatches: %llu%s; errors: %d%s%s\n",
		       (unsigned long long)s->verified_tokens, (unsigned long long)s->verify_errors,
		       s->flash_fallbacks ? "; flash swaps done to DRAM (no flash tier here: set "
					    "kvmm.ko default_backing)"
					  : "",
		       s->errors, s->errors ? ", first: " : "", s->errors ? s->first_error : "");
	}
}

static const struct serve_run *find_run(const struct serve_run *runs, int n,
					enum sim_manager_kind k)
{
	for (int i = 0; i < n; i++) {
		if (runs[i].mgr.kind == k)
			return &runs[i];
	}
	return NULL;
}

static double ratio(const struct serve_run *a, const struct serve_run *b)
{
	return a && b && b->res.peak_running ? (double)a->res.peak_running / b->res.peak_running
					     : NAN;
}

static void print_summary(struct serve_run *runs, int n)
{
	const struct serve_run *tok = find_run(runs, n, SIM_KVMM_TOKEN);
	const struct serve_run *lay = find_run(runs, n, SIM_KVMM_LAYER);
	const struct serve_run *pag = find_run(runs, n, SIM_PAGED);
	const struct serve_run *sta = find_run(runs, n, SIM_STATIC);

	printf("\n");
	if (tok && pag)
		printf("peak concurrent requests, kvmm token-major / ideal paged: %.3f\n",
		       ratio(tok, pag));
	if (tok && lay)
		printf("peak concurrent requests, kvmm token-major / kvmm layer-major: %.2fx\n",
		       ratio(tok, lay));
	if (tok && sta)
		printf("peak concurrent requests, kvmm token-major / static reservation: %.2fx\n",
		       ratio(tok, sta));
	if (tok && (tok->res.swap_outs_dram + tok->res.swap_outs_flash))
		printf(
		    "kvmm token-major swapped %llu requests (%llu to DRAM, %llu to flash) in %.2f "
		    "simulated s; recomputing them would have taken %.2f s\n",
		    (unsigned long long)(tok->res.swap_outs_dram + tok->res.swap_outs_flash),
		    (unsigned long long)tok->res.swap_outs_dram,
		    (unsigned long long)tok->res.swap_outs_flash, tok->res.swap_time_s,
		    tok->res.swap_as_recompute_s);
}

static void print_json(const struct serve_opts *o, const struct bench_sys *sys,
		       struct serve_run *runs, int n)
{
	const struct serve_run *tok = find_run(runs, n, SIM_KVMM_TOKEN);
	struct jw w;

	jw_init(&w, stdout);
	jw_obj(&w, NULL);
	jw_str(&w, "benchmark", "serve");
	bench_sys_json(&w, sys);
	jw_obj(&w, "parameters");
	jw_str(&w, "trace", o->trace_name);
	jw_u64(&w, "seed", o->trace.seed);
	jw_u64(&w, "requests", o->trace.requests);
	jw_f64(&w, "rate_per_s", o->trace.rate_per_s);
	{
		char d[96];

		sim_dist_describe(&o->trace.prompt, d, sizeof(d));
		jw_str(&w, "prompt_tokens", d);
		sim_dist_describe(&o->trace.output, d, sizeof(d));
		jw_str(&w, "output_tokens", d);
	}
	jw_str(&w, "model", o->sim.model.name);
	jw_u64(&w, "layers", o->sim.model.layers);
	jw_u64(&w, "kv_heads", o->sim.model.kv_heads);
	jw_u64(&w, "head_dim", o->sim.model.head_dim);
	jw_u64(&w, "dtype_bytes", o->sim.model.dtype_bytes);
	jw_u64(&w, "token_bytes", sim_model_token_bytes(&o->sim.model));
	jw_u64(&w, "budget_bytes", o->sim.budget_bytes);
	jw_u64(&w, "dram_swap_bytes", o->sim.dram_swap_bytes);
	jw_u64(&w, "max_context_tokens", o->sim.max_context);
	jw_u64(&w, "max_batch", o->sim.max_batch);
	jw_u64(&w, "max_prefill_tokens", o->sim.max_prefill_tokens);
	jw_u64(&w, "chunk_bytes", o->mgrs[0].chunk_bytes);
	jw_u64(&w, "block_tokens", o->mgrs[0].block_tokens);
	jw_f64(&w, "iter_base_s", o->sim.costs.iter_base_s);
	jw_f64(&w, "hbm_bytes_per_s", o->sim.costs.hbm_bytes_per_s);
	jw_f64(&w, "prefill_tokens_per_s", o->sim.costs.prefill_tok_per_s);
	jw_f64(&w, "dram_bytes_per_s", o->sim.costs.dram_bytes_per_s);
	jw_f64(&w, "flash_bytes_per_s", o->sim.costs.flash_bytes_per_s);
	jw_bool(&w, "real", o->real);
	jw_end(&w);
	jw_arr(&w, "managers");
	for (int i = 0; i < n; i++) {
		const struct sim_result *r = &runs[i].res;

		jw_obj(&w, NULL);
		jw_str(&w, "manager", runs[i].name);
		jw_u64(&w, "peak_concurrent_requests", r->peak_running);
		jw_f64(&w, "mean_concurrent_requests", r->mean_running);
		jw_u64(&w, "peak_held_bytes", r->peak_held_bytes);
		jw_f64(&w, "waste_mean_pct", r->waste_mean_pct);
		jw_f64(&w, "waste_p99_pct", r->waste_p99_pct);
		jw_u64(&w, "preemptions", r->preemptions);
		jw_u64(&w, "recomputed_tokens", r->recomputed_tokens);
		jw_u64(&w, "swap_outs_dram", r->swap_outs_dram);
		jw_u64(&w, "swap_outs_flash", r->swap_outs_flash);
		jw_u64(&w, "swap_out_dram_bytes", r->swap_out_dram_bytes);
		jw_u64(&w, "swap_in_dram_bytes", r->swap_in_dram_bytes);
		jw_u64(&w, "swap_out_flash_bytes", r->swap_out_flash_bytes);
		jw_u64(&w, "swap_in_flash_bytes", r->swap_in_flash_bytes);
		jw_u64(&w, "peak_dram_swap_bytes", r->peak_dram_swap_bytes);
		jw_u64(&w, "peak_flash_swap_bytes", r->peak_flash_swap_bytes);
		jw_f64(&w, "swap_time_s", r->swap_time_s);
		jw_f64(&w, "recompute_time_s", r->recompute_time_s);
		jw_f64(&w, "swap_as_recompute_s", r->swap_as_recompute_s);
		jw_u64(&w, "iterations", r->iterations);
		jw_u64(&w, "output_tokens", r->output_tokens);
		jw_f64(&w, "sim_time_s", r->sim_time_s);
		jw_f64(&w, "throughput_tokens_per_s", r->throughput_tok_s);
		jw_f64(&w, "mean_latency_s", r->mean_latency_s);
		if (runs[i].has_real) {
			const struct real_stats *s = &runs[i].real;

			jw_obj(&w, "real");
			jw_str(&w, "mode", s->mode);
			jw_u64(&w, "scale", runs[i].scale);
			jw_u64(&w, "chunk_bytes", runs[i].mgr.chunk_bytes / runs[i].scale);
			jw_u64(&w, "step_calls", s->step_calls);
			jw_f64(&w, "step_s", s->step_s);
			jw_f64(&w, "step_max_s", s->step_max_s);
			jw_u64(&w, "tokens_written", s->tokens_written);
			jw_u64(&w, "bytes_written", s->bytes_written);
			jw_u64(&w, "peak_mapped_bytes", s->peak_mapped_bytes);
			jw_u64(&w, "swap_outs", s->swap_outs);
			jw_u64(&w, "swap_ins", s->swap_ins);
			jw_f64(&w, "swap_out_s", s->swap_out_s);
			jw_f64(&w, "swap_in_s", s->swap_in_s);
			jw_u64(&w, "flash_swaps_done_to_dram", s->flash_fallbacks);
			jw_u64(&w, "verified_tokens", s->verified_tokens);
			jw_u64(&w, "verify_errors", s->verify_errors);
			jw_i64(&w, "errors", s->errors);
			jw_str(&w, "first_error", s->errors ? s->first_error : NULL);
			jw_end(&w);
		}
		jw_end(&w);
	}
	jw_end(&w);
	jw_obj(&w, "ratios");
	jw_f64(&w, "token_major_vs_paged_peak_requests", ratio(tok, find_run(runs, n, SIM_PAGED)));
	jw_f64(&w, "token_major_vs_layer_major_peak_requests",
	       ratio(tok, find_run(runs, n, SIM_KVMM_LAYER)));
	jw_f64(&w, "token_major_vs_static_peak_requests",
	       ratio(tok, find_run(runs, n, SIM_STATIC)));
	jw_end(&w);
	jw_end(&w);
}

/* Data files and a gnuplot script per series; PNGs when gnuplot is installed. */
static void write_plots(const struct serve_opts *o, struct serve_run *runs, int n, bool quiet)
{
	char path[8192];
	FILE *f;

	mkdir(o->plot_dir, 0755);
	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s.dat", o->plot_dir, runs[i].name);
		f = fopen(path, "w");
		if (!f) {
			fprintf(stderr, "kvmm-bench serve: %s: %s\n", path, strerror(errno));
			return;
		}
		fprintf(f, "# time_s running held_bytes used_bytes waste_pct\n");
		for (uint32_t k = 0; k < runs[i].res.nr_samples; k++) {
			const struct sim_sample *s = &runs[i].res.samples[k];

			fprintf(f, "%.3f %u %llu %llu %.2f\n", s->t_s, s->running,
				(unsigned long long)s->held_bytes,
				(unsigned long long)s->used_bytes,
				s->held_bytes ? 100.0 * (double)(s->held_bytes - s->used_bytes) /
						    (double)s->held_bytes
					      : 0.0);
		}
		fclose(f);
	}
	snprintf(path, sizeof(path), "%s/serve.gp", o->plot_dir);
	f = fopen(path, "w");
	if (!f)
		return;
	fprintf(f, "set terminal pngcairo size 1000,600\nset xlabel 'simulated time (s)'\n");
	for (int plot = 0; plot < 2; plot++) {
		fprintf(f, "set output '%s/%s.png'\nset ylabel '%s'\nplot ", o->plot_dir,
			plot ? "waste" : "capacity",
			plot ? "held memory not holding tokens (%)" : "running requests");
		for (int i = 0; i < n; i++)
			fprintf(f, "%s'%s/%s.dat' using 1:%d with lines title '%s'", i ? ", " : "",
				o->plot_dir, runs[i].name, plot ? 5 : 2, runs[i].name);
		fprintf(f, "\n");
	}
	fclose(f);
	if (system("command -v gnuplot >/dev/null 2>&1") == 0) {
		char cmd[sizeof(path) + 16];

		snprintf(cmd, sizeof(cmd), "gnuplot '%s'", path);
		if (system(cmd) == 0 && !quiet)
			fprintf(stderr,
				"kvmm-bench serve: plots in %s/capacity.png and waste.png\n",
				o->plot_dir);
	} else if (!quiet) {
		fprintf(stderr, "kvmm-bench serve: gnuplot not installed; data and %s written\n",
			path);
	}
}

int bench_serve(const struct bench_opts *bo, int argc, char **argv)
{
	struct serve_opts o;
	struct serve_run runs[MAX_MANAGERS];
	struct sim_request *reqs;
	struct bench_sys sys;
	int ret = serve_parse(&o, argc, argv);

	if (ret)
		return ret == 1 ? 0 : ret;
	for (int i = 0; i < o.nr_mgrs; i++) {
		if (sim_manager_bytes(&o.mgrs[i], &o.sim.model, o.sim.max_context) >
		    o.sim.budget_bytes) {
			char nm[32], b[32];

			sim_manager_name(&o.mgrs[i], nm, sizeof(nm));
			fprintf(stderr,
				"kvmm-bench serve: budget %s cannot hold one %u-token request with "
				"%s; raise --budget or lower --max-context\n",
				fmt_bytes(b, sizeof(b), o.sim.budget_bytes), o.sim.max_context, nm);
			return 2;
		}
	}
	reqs = sim_trace_generate(&o.trace);
	if (!reqs) {
		fprintf(stderr, "kvmm-bench serve: out of memory\n");
		return 1;
	}
	bench_sys_get(&sys);
	memset(runs, 0, sizeof(runs));
	for (int i = 0; i < o.nr_mgrs && !ret; i++) {
		runs[i].mgr = o.mgrs[i];
		ret = run_one(bo, &o, &runs[i], reqs);
		if (ret)
			fprintf(stderr, "kvmm-bench serve: %s: simulation failed: %s\n",
				runs[i].name, strerror(-ret));
	}
	if (!ret) {
		if (bo->json) {
			print_json(&o, &sys, runs, o.nr_mgrs);
		} else {
			print_header(&o, &sys);
			print_tables(&o, runs, o.nr_mgrs);
			print_summary(runs, o.nr_mgrs);
			print_real(&o, runs, o.nr_mgrs);
		}
		if (o.plot_dir)
			write_plots(&o, runs, o.nr_mgrs, bo->quiet);
	}
	for (int i = 0; i < o.nr_mgrs; i++) {
		if (runs[i].has_real && (runs[i].real.errors || runs[i].real.verify_errors))
			ret = ret ? ret : -EIO;
		sim_result_free(&runs[i].res);
	}
	free(reqs);
	return ret ? 1 : 0;
}
