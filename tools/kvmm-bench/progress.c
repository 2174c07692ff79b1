/* SPDX-License-Identifier: MIT */
/* Progress lines on stderr: \r-updated on a terminal, a line every 5 s otherwise. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

static double mono_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* \r updates on a terminal; lines on a serial console, a dumb terminal or a file. */
static bool progress_redraws(void)
{
	const char *term = getenv("TERM"), *name;

	if (!isatty(STDERR_FILENO) || !term || !strcmp(term, "dumb"))
		return false;
	name = ttyname(STDERR_FILENO);
	return name && strncmp(name, "/dev/ttyS", 9) && strcmp(name, "/dev/console");
}

void progress_init(struct progress *p, const char *label, bool quiet)
{
	p->label = label;
	p->start = p->last = mono_s();
	p->tty = progress_redraws();
	p->quiet = quiet;
	p->shown = false;
}

void progress_update(struct progress *p, uint64_t done, uint64_t total, const char *unit)
{
	double t = mono_s();

	if (p->quiet || t - p->start < 2.0 || t - p->last < (p->tty ? 0.5 : 5.0))
		return;
	p->last = t;
	p->shown = true;
	fprintf(stderr, "%s%s: %llu/%llu %s (%.0f %%), %.0f s%s", p->tty ? "\r" : "", p->label,
		(unsigned long long)done, (unsigned long long)total, unit,
		total ? 100.0 * (double)done / (double)total : 0.0, t - p->start,
		p->tty ? "   " : "\n");
	fflush(stderr);
}

void progress_end(struct progress *p)
{
	if (p->shown && p->tty && !p->quiet)
		fprintf(stderr, "\r%*s\r", 72, "");
	p->shown = false;
}
