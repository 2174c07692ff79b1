/* SPDX-License-Identifier: MIT */
/*
 * The strict JSON validator and Prometheus parser on hand-written cases,
 * then the tools' real output checked by them: kvmm-bench --json (serve,
 * alloc, fault) and kvmmctl --json and metrics against a made-up sysfs
 * tree. $KVMM_BENCH and $KVMMCTL name the binaries (make check-tools).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../tests/common/t_list.h"
#include "../common/jsoncheck.h"
#include "../common/promcheck.h"

static int is_json(const char *s)
{
	char why[128];

	return json_check(s, strlen(s), why, sizeof(why)) == 0;
}

static void test_validator_accepts_valid_json(void **state)
{
	(void)state;
	assert_true(is_json("{}"));
	assert_true(is_json(" [1, -2.5e+3, 0.1, true, false, null, \"a\\u00e9\\n\"] \n"));
	assert_true(is_json("{\"a\": {\"b\": [[], {}]}}"));
	assert_true(is_json("-0"));
}

static void test_validator_refuses_invalid_json(void **state)
{
	(void)state;
	assert_false(is_json(""));
	assert_false(is_json("{\"a\": 1,}"));
	assert_false(is_json("[1 2]"));
	assert_false(is_json("{a: 1}"));
	assert_false(is_json("01"));
	assert_false(is_json("1."));
	assert_false(is_json("NaN"));
	assert_false(is_json("\"tab\tinside\""));
	assert_false(is_json("\"\\x\""));
	assert_false(is_json("{} {}"));
	assert_false(is_json("[\"open"));
}

static int is_prom(const char *s)
{
	static struct prom pr;
	char why[256];

	return prom_parse(s, &pr, why, sizeof(why)) == 0;
}

static void test_prometheus_parser_accepts_the_format(void **state)
{
	(void)state;
	assert_true(is_prom("# HELP a_total Things.\n# TYPE a_total counter\na_total 3\n"
			    "# TYPE b gauge\nb{x=\"1\",y=\"q\\\"\\n\"} +Inf 1700000000\n"));
	assert_true(is_prom(""));
}

static void test_prometheus_parser_refuses_broken_text(void **state)
{
	(void)state;
	assert_false(is_prom("a 1"));				   /* no final newline */
	assert_false(is_prom("1a 1\n"));			   /* bad name */
	assert_false(is_prom("a{x=1} 1\n"));			   /* unquoted label */
	assert_false(is_prom("a{x=\"\\t\"} 1\n"));		   /* bad escape */
	assert_false(is_prom("a one\n"));			   /* bad value */
	assert_false(is_prom("# TYPE a gauge\n# TYPE a gauge\n")); /* TYPE twice */
	assert_false(is_prom("# TYPE a sometype\n"));		   /* unknown type */
	assert_false(is_prom("a 1\n# TYPE a gauge\n"));		   /* TYPE after samples */
	assert_false(is_prom("a 1\nb 1\na 2\n"));		   /* interleaved */
}

/* Runs @cmd, returns its stdout (malloc'ed) and exit status. */
static char *run(const char *cmd, int *status)
{
	FILE *f = popen(cmd, "r");
	size_t len = 0, cap = 4096;
	char *out = malloc(cap);
	size_t n;

	assert_non_null(f);
	while ((n = fread(out + len, 1, cap - len - 1, f)) > 0) {
		len += n;
		if (cap - len < 2)
			out = realloc(out, cap *= 2);
	}
	out[len] = 0;
	*status = pclose(f);
	*status = WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
	return out;
}

static void expect_json(const char *cmd, int want_status)
{
	char why[128];
	int status;
	char *out = run(cmd, &status);

	if (json_check(out, strlen(out), why, sizeof(why)))
		fail_msg("'%s' printed invalid JSON (%s):\n%s", cmd, why, out);
	if (status != want_status)
		fail_msg("'%s' exited %d, expected %d", cmd, status, want_status);
	free(out);
}

/* The path of a tool, from the variable check-tools sets; skips without it. */
static const char *tool(const char *env)
{
	const char *path = getenv(env);

	if (!path || !*path) {
		print_message("skip: %s is not set (make check-tools sets it to the tool it "
			      "builds)\n",
			      env);
		skip();
	}
	return path;
}

static void test_kvmm_bench_json_is_valid(void **state)
{
	const char *kb = tool("KVMM_BENCH");
	char cmd[1024];

	(void)state;
	snprintf(cmd, sizeof(cmd), "%s --json --quiet serve --requests 40 --no-real", kb);
	expect_json(cmd, 0);
	snprintf(cmd, sizeof(cmd),
		 "%s --quiet serve --json --requests 30 --trace batch-offline "
		 "--managers paged,kvmm-token --real-bytes 32M",
		 kb);
	expect_json(cmd, 0);
	snprintf(cmd, sizeof(cmd), "%s --json alloc --bytes 4M --rounds 1", kb);
	expect_json(cmd, 0);
	snprintf(cmd, sizeof(cmd), "KVMMCTL_DEV=/nonexistent %s --json fault", kb);
	expect_json(cmd, 0);
}

/* A made-up /sys/kernel/kvmm with every kind of file kvmmctl reads. */
static char fake[64];

static void put(const char *rel, const char *val)
{
	char p[256];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", fake, rel);
	f = fopen(p, "w");
	assert_non_null(f);
	fprintf(f, "%s\n", val);
	fclose(f);
}

static int fake_sysfs(void **state)
{
	char p[128];

	(void)state;
	snprintf(fake, sizeof(fake), "/tmp/kvmmctl-test-XXXXXX");
	if (!mkdtemp(fake))
		return -1;
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", fake,
			 (const char *[]){"stats", "nodes", "gpus"}[i]);
		mkdir(p, 0755);
	}
	put("version", "0.1.0");
	put("abi_version", "1");
	put("pool_limit_bytes", "1073741824");
	put("pool_used_bytes", "2097152");
	put("pool_high_wmark_pct", "90");
	put("pool_low_wmark_pct", "80");
	put("default_chunk_bytes", "65536");
	put("regions", "1");
	put("refault_window_ms", "1000");
	put("default_backing", "none");
	put("flash_bytes", "0");
	put("stats/faults", "12");
	put("stats/flash_bytes_written", "4096");
	put("nodes/node0_used_bytes", "2097152");
	put("nodes/node1_used_bytes", "0");
	put("gpus/gpu0_budget_bytes", "max");
	put("gpus/gpu0_charged_bytes", "0");
	setenv("KVMMCTL_SYSFS", fake, 1);
	setenv("KVMMCTL_DEV", "/nonexistent/kvmm", 1);
	return 0;
}

static int fake_sysfs_remove(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", fake);
	return system(cmd) ? -1 : 0;
}

static void test_kvmmctl_json_is_valid(void **state)
{
	const char *k = tool("KVMMCTL");
	char cmd[512];

	(void)state;
	snprintf(cmd, sizeof(cmd), "%s --json status", k);
	expect_json(cmd, 0);
	snprintf(cmd, sizeof(cmd), "%s --json get pool_limit_bytes", k);
	expect_json(cmd, 0);
	snprintf(cmd, sizeof(cmd), "%s knobs --json", k);
	expect_json(cmd, 0);
	snprintf(cmd, sizeof(cmd), "%s --json set pool_limit_bytes 2G", k);
	expect_json(cmd, 0);
	snprintf(cmd, sizeof(cmd), "KVMMCTL_SYSFS=/nonexistent %s --json status", k);
	expect_json(cmd, 0);
}

static void test_kvmmctl_set_checks_values_before_writing(void **state)
{
	const char *k = tool("KVMMCTL");
	char cmd[512], *out;
	int status;

	(void)state;
	snprintf(cmd, sizeof(cmd), "%s set default_chunk_bytes 3000 2>&1", k);
	out = run(cmd, &status);
	assert_int_equal(status, 1);
	assert_non_null(strstr(out, "power of two"));
	free(out);
	snprintf(cmd, sizeof(cmd), "%s get default_chunk_bytes", k);
	out = run(cmd, &status);
	assert_string_equal(out, "65536\n");
	free(out);
	snprintf(cmd, sizeof(cmd), "%s set pool_used_bytes 1 2>&1", k);
	out = run(cmd, &status);
	assert_int_equal(status, 1);
	assert_non_null(strstr(out, "read-only"));
	free(out);
	snprintf(cmd, sizeof(cmd), "%s set no_such_knob 1 2>&1", k);
	out = run(cmd, &status);
	assert_int_equal(status, 1);
	assert_non_null(strstr(out, "unknown knob"));
	free(out);
	snprintf(cmd, sizeof(cmd), "%s set pool_high_wmark_pct 101 2>&1", k);
	out = run(cmd, &status);
	assert_int_equal(status, 1);
	free(out);
}

static void test_kvmmctl_metrics_parse_as_prometheus_text(void **state)
{
	static struct prom pr;
	const char *k = tool("KVMMCTL");
	const struct prom_family *f;
	const struct prom_sample *s;
	char cmd[512], why[256], *out;
	int status;

	(void)state;
	snprintf(cmd, sizeof(cmd), "%s metrics", k);
	out = run(cmd, &status);
	assert_int_equal(status, 0);
	if (prom_parse(out, &pr, why, sizeof(why)))
		fail_msg("invalid exposition text: %s\n%s", why, out);
	for (int i = 0; i < pr.nr_families; i++) {
		assert_memory_equal(pr.families[i].name, "kvmm_", 5);
		assert_true(pr.families[i].help);
		if (!strcmp(pr.families[i].type, "counter"))
			assert_non_null(strstr(pr.families[i].name, "_total"));
	}
	f = prom_find_family(&pr, "kvmm_faults_total");
	assert_non_null(f);
	assert_string_equal(f->type, "counter");
	s = prom_find(&pr, "kvmm_faults_total", "");
	assert_non_null(s);
	assert_float_equal(s->value, 12, 0);
	s = prom_find(&pr, "kvmm_flash_written_bytes_total", "");
	assert_non_null(s);
	assert_float_equal(s->value, 4096, 0);
	s = prom_find(&pr, "kvmm_node_used_bytes", "node=\"0\"");
	assert_non_null(s);
	assert_float_equal(s->value, 2097152, 0);
	s = prom_find(&pr, "kvmm_pool_high_watermark_ratio", "");
	assert_non_null(s);
	assert_float_equal(s->value, 0.9, 1e-12);
	free(out);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_validator_accepts_valid_json),
	    cmocka_unit_test(test_validator_refuses_invalid_json),
	    cmocka_unit_test(test_prometheus_parser_accepts_the_format),
	    cmocka_unit_test(test_prometheus_parser_refuses_broken_text),
	    cmocka_unit_test(test_kvmm_bench_json_is_valid),
	};
	const struct CMUnitTest ctl[] = {
	    cmocka_unit_test(test_kvmmctl_json_is_valid),
	    cmocka_unit_test(test_kvmmctl_set_checks_values_before_writing),
	    cmocka_unit_test(test_kvmmctl_metrics_parse_as_prometheus_text),
	};
	int failed;

	T_LIST(argc, argv, T_GROUP(tests), T_GROUP(ctl));
	failed = cmocka_run_group_tests(tests, NULL, NULL);
	return failed + cmocka_run_group_tests_name("kvmmctl on a made-up sysfs", ctl, fake_sysfs,
						    fake_sysfs_remove);
}
