/* SPDX-License-Identifier: MIT */
/*
 * kvmm-bench serve --plot: running requests, held memory and waste over
 * simulated time, one line per manager; PNGs where gnuplot is installed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "serve.h"

void serve_write_plots(const struct serve_opts *o, struct serve_run *runs, int n, bool quiet)
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
	fprintf(f,
		"set terminal pngcairo size 1000,600\nset xlabel 'simulated time (s)'\n"
		"set key outside right\nset title 'kvmm-bench serve: trace %s'\n",
		o->trace_name);
	for (int plot = 0; plot < 3; plot++) {
		static const char *const files[] = {"capacity", "held", "waste"};
		static const char *const labels[] = {"running requests", "held KV memory (GiB)",
						     "held memory not holding tokens (%)"};
		static const char *const cols[] = {"2", "($3/1073741824)", "5"};

		fprintf(f, "set output '%s/%s.png'\nset ylabel '%s'\nplot ", o->plot_dir,
			files[plot], labels[plot]);
		for (int i = 0; i < n; i++)
			fprintf(f, "%s'%s/%s.dat' using 1:%s with lines title '%s'", i ? ", " : "",
				o->plot_dir, runs[i].name, cols[plot], runs[i].name);
		fprintf(f, "\n");
	}
	fclose(f);
	if (system("command -v gnuplot >/dev/null 2>&1") == 0) {
		char cmd[sizeof(path) + 16];

		snprintf(cmd, sizeof(cmd), "gnuplot '%s'", path);
		if (system(cmd) == 0 && !quiet)
			fprintf(
			    stderr,
			    "kvmm-bench serve: plots in %s/capacity.png, held.png and waste.png\n",
			    o->plot_dir);
	} else if (!quiet) {
		fprintf(stderr, "kvmm-bench serve: gnuplot not installed; data and %s written\n",
			path);
	}
}
