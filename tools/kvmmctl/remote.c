/* SPDX-License-Identifier: MIT */
/*
 * kvmmctl remote and the remote tier's metrics: every open kvmm_remote
 * handle of a live process, from its registry file (libkvmm's
 * remote_report.c: $KVMM_REMOTE_REGISTRY or /tmp/kvmm-remote-UID, one
 * file PID-N per handle, rewritten at most every second while it works).
 * Needs no module: the remote tier is all userspace.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/fmt.h"
#include "../common/json.h"
#include "kvmmctl.h"

/* The counters of the "stats" line, in the order shown in JSON and metrics. */
static const struct {
	const char *key, *help;
	bool gauge_ns; /* a longest time, not a counter */
} stats[] = {
    {"lookups", "Lookups (pipelined EXISTS of a prefix's chunks).", false},
    {"lookup_keys", "Chunk keys asked by lookups.", false},
    {"lookup_hits", "Leading chunks lookups found.", false},
    {"lookup_round_trips", "Pipelined EXISTS windows sent, per node.", false},
    {"lookup_ns", "Time spent in lookups.", false},
    {"gets", "Chunk fetches tried.", false},
    {"get_hits", "Fetches that returned a verified chunk.", false},
    {"get_misses", "Fetches of chunks the store did not have.", false},
    {"get_bad", "Fetched values that failed a check (a miss, never used).", false},
    {"get_failed", "Fetches lost to errors or the time budget.", false},
    {"puts", "Chunk stores tried.", false},
    {"put_new", "Stores that wrote a new value.", false},
    {"put_existing", "Stores of values already there (SET NX).", false},
    {"put_failed", "Stores lost to errors or the time budget.", false},
    {"bytes_read", "Value bytes fetched (headers included).", false},
    {"bytes_written", "Value bytes stored (headers included).", false},
    {"timeouts", "Commands or connections that ran past their time.", false},
    {"errors", "Connection and protocol errors, server error replies.", false},
    {"moved", "MOVED redirections followed.", false},
    {"ask", "ASK redirections followed.", false},
    {"reconnects", "Connections made again after a failure.", false},
    {"refreshes", "Cluster slot maps read.", false},
    {"get_ns", "Time summed over fetches, queue to reply.", false},
    {"put_ns", "Time summed over stores, queue to reply.", false},
    {"get_ns_max", "Longest fetch, queue to reply.", true},
    {"put_ns_max", "Longest store, queue to reply.", true},
};

#define NSTATS (sizeof(stats) / sizeof(stats[0]))

struct handle {
	char pid[16], comm[64], servers[256], model[128], dtype[32], fp[20], tp[24];
	uint64_t nodes, cluster, chunk_tokens, v[NSTATS];
};

struct handles {
	struct handle *h;
	size_t n, cap;
};

static void one_file(void *arg, const char *pid, const char *text)
{
	const char *head = reg_line(text, "remote"), *st = reg_line(text, "stats");
	struct handles *hs = arg;
	struct handle *h;

	if (!head || !st || !ctl_registry_alive(pid, reg_u64(head, "start")))
		return; /* not a remote file, or its process is gone */
	if (hs->n == hs->cap) {
		size_t cap = hs->cap ? 2 * hs->cap : 8;
		struct handle *nh = realloc(hs->h, cap * sizeof(*nh));

		if (!nh)
			return;
		hs->h = nh;
		hs->cap = cap;
	}
	h = &hs->h[hs->n++];
	memset(h, 0, sizeof(*h));
	snprintf(h->pid, sizeof(h->pid), "%s", pid);
	reg_word(head, "comm", h->comm, sizeof(h->comm));
	reg_word(head, "servers", h->servers, sizeof(h->servers));
	reg_word(head, "model", h->model, sizeof(h->model));
	reg_word(head, "dtype", h->dtype, sizeof(h->dtype));
	reg_word(head, "fingerprint", h->fp, sizeof(h->fp));
	reg_word(head, "tp", h->tp, sizeof(h->tp));
	h->nodes = reg_u64(head, "nodes");
	h->cluster = reg_u64(head, "cluster");
	h->chunk_tokens = reg_u64(head, "chunk_tokens");
	for (size_t i = 0; i < NSTATS; i++)
		h->v[i] = reg_u64(st, stats[i].key);
}

static uint64_t val(const struct handle *h, const char *key)
{
	for (size_t i = 0; i < NSTATS; i++)
		if (!strcmp(stats[i].key, key))
			return h->v[i];
	return 0;
}

static void collect(struct handles *hs)
{
	ctl_registry_each("KVMM_REMOTE_REGISTRY", "kvmm-remote", one_file, hs);
}

/* Mean of @ns_key over @n_key in milliseconds (0 when nothing was counted). */
static double mean_ms(const struct handle *h, const char *ns_key, const char *n_key)
{
	uint64_t n = val(h, n_key);

	return n ? (double)val(h, ns_key) / (double)n / 1e6 : 0;
}

static void print_json(const struct handles *hs)
{
	struct jw w;

	jw_init(&w, stdout);
	jw_obj(&w, NULL);
	jw_u64(&w, "count", hs->n);
	jw_arr(&w, "remote");
	for (size_t i = 0; i < hs->n; i++) {
		const struct handle *h = &hs->h[i];

		jw_obj(&w, NULL);
		jw_i64(&w, "pid", strtol(h->pid, NULL, 10));
		jw_str(&w, "comm", h->comm);
		jw_str(&w, "servers", h->servers);
		jw_str(&w, "model", h->model);
		jw_str(&w, "dtype", h->dtype);
		jw_str(&w, "tp", h->tp);
		jw_u64(&w, "chunk_tokens", h->chunk_tokens);
		jw_str(&w, "fingerprint", h->fp);
		jw_u64(&w, "nodes", h->nodes);
		jw_bool(&w, "cluster", h->cluster != 0);
		for (size_t k = 0; k < NSTATS; k++)
			jw_u64(&w, stats[k].key, h->v[k]);
		jw_end(&w);
	}
	jw_end(&w);
	jw_end(&w);
}

static void print_table(const struct handles *hs)
{
	char a[32], b[32];

	if (!hs->n) {
		printf("no remote tier open (no live kvmm_remote handle in the registry)\n");
		return;
	}
	printf("%7s %-14s %-22s %-18s %5s %8s %8s %8s %6s %6s %8s %8s %9s %9s %8s %8s %6s %6s\n",
	       "PID", "COMM", "SERVERS", "MODEL", "NODES", "LOOKUPS", "GETS", "HITS", "MISS",
	       "BAD", "FAILED", "PUTS", "READ", "WRITTEN", "GET-MS", "PUT-MS", "TMOUT", "ERR");
	for (size_t i = 0; i < hs->n; i++) {
		const struct handle *h = &hs->h[i];

		printf("%7s %-14.14s %-22.22s %-18.18s %5llu %8llu %8llu %8llu %6llu %6llu %8llu "
		       "%8llu %9s %9s %8.2f %8.2f %6llu %6llu\n",
		       h->pid, h->comm, h->servers, h->model, (unsigned long long)h->nodes,
		       (unsigned long long)val(h, "lookups"), (unsigned long long)val(h, "gets"),
		       (unsigned long long)val(h, "get_hits"),
		       (unsigned long long)val(h, "get_misses"),
		       (unsigned long long)val(h, "get_bad"),
		       (unsigned long long)(val(h, "get_failed") + val(h, "put_failed")),
		       (unsigned long long)val(h, "puts"),
		       fmt_bytes(a, sizeof(a), val(h, "bytes_read")),
		       fmt_bytes(b, sizeof(b), val(h, "bytes_written")),
		       mean_ms(h, "get_ns", "gets"), mean_ms(h, "put_ns", "puts"),
		       (unsigned long long)val(h, "timeouts"), (unsigned long long)val(h, "errors"));
	}
}

int cmd_remote(const struct ctl *c, int argc, char **argv)
{
	struct handles hs = {0};

	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: kvmmctl [--json] remote\n");
		return CTL_USAGE;
	}
	collect(&hs);
	if (c->json)
		print_json(&hs);
	else
		print_table(&hs);
	free(hs.h);
	return CTL_OK;
}

void ctl_remote_metrics(void)
{
	struct handles hs = {0};

	collect(&hs);
	ctl_metric_family("kvmm_remote_handles", "gauge",
			  "Open remote tier handles of live processes.");
	printf("kvmm_remote_handles %zu\n", hs.n);
	for (size_t k = 0; k < NSTATS; k++) {
		bool ns = strstr(stats[k].key, "_ns") != NULL;
		char name[96];

		/* Times in seconds, as Prometheus names them. */
		if (ns)
			snprintf(name, sizeof(name), "kvmm_remote_%.*s_seconds%s",
				 (int)(strstr(stats[k].key, "_ns") - stats[k].key), stats[k].key,
				 stats[k].gauge_ns ? "_max" : "_total");
		else
			snprintf(name, sizeof(name), "kvmm_remote_%s_total", stats[k].key);
		ctl_metric_family(name, stats[k].gauge_ns ? "gauge" : "counter", stats[k].help);
		for (size_t i = 0; i < hs.n; i++) {
			const struct handle *h = &hs.h[i];

			printf("%s{pid=\"%s\",comm=\"", name, h->pid);
			ctl_label_value(h->comm);
			printf("\",servers=\"");
			ctl_label_value(h->servers);
			if (ns)
				printf("\"} %.9f\n", (double)h->v[k] / 1e9);
			else
				printf("\"} %llu\n", (unsigned long long)h->v[k]);
		}
	}
	free(hs.h);
}
