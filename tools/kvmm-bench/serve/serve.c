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

#include "../../common/fmt.h"
#include "serve.h"

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: kvmm-bench [--json] serve [options]\n"
	    "trace:\n"
	    "  --trace chat|long-context|batch-offline|system-prompt|few-shot   preset (default "
	    "chat;\n"
	    "                       system-prompt: one 2000-token prefix in every prompt; "
	    "few-shot:\n"
	    "                       one of 8 prefixes of 1500 tokens)\n"
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
	    "  --managers LIST      of static, paged, kvmm-layer, kvmm-token (default all), each\n"
	    "                       but static also as NAME+prefix: shared prefixes held once\n"
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
		if (strlen(t) > 7 && !strcmp(t + strlen(t) - 7, "+prefix")) {
			m->share = true;
			t[strlen(t) - 7] = 0;
		}
		if (!strcmp(t, "static") && !m->share)
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
		return bad("--trace", preset,
			   "chat, long-context, batch-offline, system-prompt or few-shot");
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
	if (o->real && sim_manager_swaps(&run->mgr) && run->mgr.share)
		snprintf(run->real_error, sizeof(run->real_error),
			 "simulated only: the real cache does not follow the simulated prefix "
			 "groups yet (their cached prefixes have no slot to share from)");
	if (o->real && sim_manager_swaps(&run->mgr) && !run->mgr.share) {
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
		if (bo->json)
			serve_print_json(&o, &sys, runs, o.nr_mgrs);
		else
			serve_print_human(&o, &sys, runs, o.nr_mgrs);
		if (o.plot_dir)
			serve_write_plots(&o, runs, o.nr_mgrs, bo->quiet);
	}
	for (int i = 0; i < o.nr_mgrs; i++) {
		if (runs[i].has_real && (runs[i].real.errors || runs[i].real.verify_errors))
			ret = ret ? ret : -EIO;
		sim_result_free(&runs[i].res);
	}
	free(reqs);
	return ret ? 1 : 0;
}
