/* SPDX-License-Identifier: MIT */
/* kvmm-bench serve's report: the human tables and the JSON document. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../../common/fmt.h"
#include "serve.h"

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

	printf("%-22s %9s %9s %10s %9s %9s %8s\n", "manager", "peak-reqs", "mean-reqs", "peak-held",
	       "waste-avg", "waste-p99", "preempt");
	for (int i = 0; i < n; i++) {
		const struct sim_result *r = &runs[i].res;

		printf("%-22s %9u %9.1f %10s %8.1f%% %8.1f%% %8llu\n", runs[i].name,
		       r->peak_running, r->mean_running, gib(a, sizeof(a), r->peak_held_bytes),
		       r->waste_mean_pct, r->waste_p99_pct, (unsigned long long)r->preemptions);
	}
	printf("\n%-22s %10s %10s %8s %10s %11s %9s %10s %9s\n", "manager", "swap-dram",
	       "swap-flash", "swap-s", "recomp-s", "recomp-eq-s", "sim-s", "tokens/s", "latency-s");
	for (int i = 0; i < n; i++) {
		const struct sim_result *r = &runs[i].res;

		printf("%-22s %10s %10s %8.2f %10.2f %11.2f %9.1f %10.0f %9.2f\n", runs[i].name,
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
		printf("  swapped-in tokens checked: %llu, mismatches: %llu; errors: %d%s%s\n",
		       (unsigned long long)s->verified_tokens, (unsigned long long)s->verify_errors,
		       s->errors, s->errors ? ", first: " : "", s->errors ? s->first_error : "");
		if (s->errors || s->verify_errors)
			printf("  DISAGREE: the real cache (inside the same budget) refused or "
			       "lost what "
			       "the simulation admitted: %d errors, %llu mismatched tokens\n",
			       s->errors, (unsigned long long)s->verify_errors);
		else
			printf(
			    "  the real cache, inside the same budget, did every step and swap the "
			    "simulation decided\n");
		if (s->flash_fallbacks)
			printf("  NOTE: %llu flash swap(s) done to DRAM, no flash tier here (%s)\n",
			       (unsigned long long)s->flash_fallbacks, s->flash_fallback_why);
	}
}

static const struct serve_run *find_share(const struct serve_run *runs, int n,
					  enum sim_manager_kind k, bool share)
{
	for (int i = 0; i < n; i++) {
		if (runs[i].mgr.kind == k && runs[i].mgr.share == share)
			return &runs[i];
	}
	return NULL;
}

/* The manager of kind @k without prefix sharing. */
static const struct serve_run *find_run(const struct serve_run *runs, int n,
					enum sim_manager_kind k)
{
	return find_share(runs, n, k, false);
}

static double saved_ratio(const struct serve_run *a, const struct serve_run *b)
{
	return a && b && b->res.prefill_saved_tokens
		   ? (double)a->res.prefill_saved_tokens / (double)b->res.prefill_saved_tokens
		   : NAN;
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
	for (int i = 0; i < n; i++) {
		const struct sim_result *r = &runs[i].res;

		if (!runs[i].mgr.share)
			continue;
		printf("%s: %llu of %llu admissions found their prefix held; prefill computed %llu "
		       "tokens, skipped %llu; %llu cached prefixes dropped for room\n",
		       runs[i].name, (unsigned long long)r->prefix_hits,
		       (unsigned long long)(r->prefix_hits + r->prefix_misses),
		       (unsigned long long)r->prefill_tokens,
		       (unsigned long long)r->prefill_saved_tokens,
		       (unsigned long long)r->prefix_evictions);
	}
	{
		const struct serve_run *tokp = find_share(runs, n, SIM_KVMM_TOKEN, true);
		const struct serve_run *pagp = find_share(runs, n, SIM_PAGED, true);

		if (tokp && pagp)
			printf("with prefix sharing: peak concurrent requests, kvmm token-major / "
			       "paged with prefix caching: %.3f; prefill tokens skipped: %.3f\n",
			       ratio(tokp, pagp), saved_ratio(tokp, pagp));
		if (tokp && lay)
			printf("peak concurrent requests, kvmm token-major with sharing / kvmm "
			       "layer-major without: %.2fx\n",
			       ratio(tokp, lay));
	}
}

void serve_print_json(const struct serve_opts *o, const struct bench_sys *sys,
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
		jw_bool(&w, "prefix_sharing", runs[i].mgr.share);
		jw_u64(&w, "prefill_tokens", r->prefill_tokens);
		jw_u64(&w, "prefill_saved_tokens", r->prefill_saved_tokens);
		jw_u64(&w, "prefix_hits", r->prefix_hits);
		jw_u64(&w, "prefix_misses", r->prefix_misses);
		jw_u64(&w, "prefix_evictions", r->prefix_evictions);
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
			jw_bool(&w, "agrees_with_simulation", !s->errors && !s->verify_errors);
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
	jw_f64(
	    &w, "shared_token_major_vs_prefix_cached_paged_peak_requests",
	    ratio(find_share(runs, n, SIM_KVMM_TOKEN, true), find_share(runs, n, SIM_PAGED, true)));
	jw_f64(&w, "shared_token_major_vs_layer_major_peak_requests",
	       ratio(find_share(runs, n, SIM_KVMM_TOKEN, true), find_run(runs, n, SIM_KVMM_LAYER)));
	jw_f64(&w, "shared_token_major_vs_prefix_cached_paged_prefill_saved",
	       saved_ratio(find_share(runs, n, SIM_KVMM_TOKEN, true),
			   find_share(runs, n, SIM_PAGED, true)));
	jw_end(&w);
	jw_end(&w);
}

void serve_print_human(const struct serve_opts *o, const struct bench_sys *sys,
		       struct serve_run *runs, int n)
{
	print_header(o, sys);
	print_tables(o, runs, n);
	print_summary(runs, n);
	print_real(o, runs, n);
}
