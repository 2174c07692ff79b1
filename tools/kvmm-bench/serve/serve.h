/* SPDX-License-Identifier: MIT */
/* kvmm-bench serve's options and per-manager results, shared by serve.c,
 * report.c (tables and JSON) and plot.c (time series and gnuplot). */
#ifndef KVMM_BENCH_SERVE_H
#define KVMM_BENCH_SERVE_H

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

/* report.c */
void serve_print_human(const struct serve_opts *o, const struct bench_sys *sys,
		       struct serve_run *runs, int n);
void serve_print_json(const struct serve_opts *o, const struct bench_sys *sys,
		      struct serve_run *runs, int n);

/* plot.c: data files and a gnuplot script in o->plot_dir; PNGs where gnuplot exists. */
void serve_write_plots(const struct serve_opts *o, struct serve_run *runs, int n, bool quiet);

#endif
