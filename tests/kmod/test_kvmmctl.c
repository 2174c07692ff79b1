/*
 * kvmmctl against the real module: status, regions and top see what this
 * process creates, set refuses bad values (before the kernel, and with
 * the kernel's errno explained when it refuses), get and set round-trip,
 * metrics parse as strict Prometheus text, and --json output parses as
 * strict JSON. kvmmctl is /usr/bin/kvmmctl in the guest (or $KVMMCTL).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/kvmm.h>

#include "common/kmod_test.h"
#include "../../tools/common/jsoncheck.h"
#include "../../tools/common/promcheck.h"

static const char *ctl;

static const char *kvmmctl(void)
{
	static const char *const where[] = {"/usr/bin/kvmmctl", "/usr/sbin/kvmmctl"};

	if (getenv("KVMMCTL"))
		return getenv("KVMMCTL");
	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		if (!access(where[i], X_OK))
			return where[i];
	}
	return NULL;
}

/* Runs "kvmmctl ARGS" (stderr too when @err); returns stdout, sets *status. */
static char *run(const char *args, bool err, int *status)
{
	char cmd[512];
	size_t len = 0, cap = 8192, n;
	char *out = malloc(cap);
	FILE *f;

	snprintf(cmd, sizeof(cmd), "%s %s%s", ctl, args, err ? " 2>&1" : " 2>/dev/null");
	f = popen(cmd, "r");
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

static char *run_ok(const char *args)
{
	int status;
	char *out = run(args, true, &status);

	if (status)
		fail_msg("kvmmctl %s exited %d:\n%s", args, status, out);
	return out;
}

static void expect_json(const char *args)
{
	char why[128], *out = run_ok(args);

	if (json_check(out, strlen(out), why, sizeof(why)))
		fail_msg("kvmmctl %s printed invalid JSON (%s):\n%s", args, why, out);
	free(out);
}

static int setup(void **state)
{
	(void)state;
	ctl = kvmmctl();
	return 0;
}

#define NEED_CTL()                                                                                 \
	do {                                                                                       \
		if (!ctl) {                                                                        \
			printf("skip: kvmmctl is not in the VM (make check-kmod copies it there "  \
			       "with run.sh --extra)\n");                                          \
			skip();                                                                    \
		}                                                                                  \
	} while (0)

static void status_reports_the_loaded_module_in_kernel_mode(void **state)
{
	char *out;

	(void)state;
	NEED_CTL();
	out = run_ok("status");
	assert_non_null(strstr(out, "module          loaded, version"));
	assert_non_null(strstr(out, "mode            kernel"));
	assert_non_null(strstr(out, "faults"));
	free(out);
	out = run_ok("--json status");
	assert_non_null(strstr(out, "\"loaded\": true"));
	assert_non_null(strstr(out, "\"mode\": \"kernel\""));
	free(out);
	expect_json("--json status");
}

/* A region of this process: 8 MiB, 64 KiB chunks, its first 1 MiB resident. */
static int make_region(uint32_t *id)
{
	struct kvmm_region_create c = {
	    .size = 8 * MiB, .chunk_bytes = 64 * KiB, .numa_node = KVMM_NUMA_LOCAL};
	int dev = kt_dev_open();

	assert_int_equal(ioctl(dev, KVMM_IOC_REGION_CREATE, &c), 0);
	close(dev);
	assert_int_equal(kt_range_ioctl(c.fd, KVMM_IOC_ENSURE, 0, 1 * MiB), 0);
	*id = c.id;
	return c.fd;
}

static void regions_lists_a_region_with_its_owner_and_tiers(void **state)
{
	char want[256], *out;
	uint32_t id;
	int fd;

	(void)state;
	NEED_CTL();
	fd = make_region(&id);
	out = run_ok("--json regions");
	snprintf(want, sizeof(want),
		 "\"id\": %u,\n      \"owner_pid\": %d,\n      \"owner_comm\": \"test_kvmmctl\",\n"
		 "      \"size_bytes\": 8388608,\n      \"chunk_bytes\": 65536",
		 id, (int)getpid());
	if (!strstr(out, want))
		fail_msg("expected\n%s\nin\n%s", want, out);
	assert_non_null(strstr(out, "\"resident_bytes\": 1048576"));
	free(out);
	expect_json("--json regions");
	out = run_ok("regions");
	snprintf(want, sizeof(want), "%d test_kvmmctl", (int)getpid());
	assert_non_null(strstr(out, want));
	assert_non_null(strstr(out, "8.00 MiB"));
	assert_non_null(strstr(out, "1.00 MiB"));
	free(out);
	close(fd);
}

static void top_runs_a_given_number_of_frames_without_a_terminal(void **state)
{
	char *out, *p;
	uint32_t id;
	int fd, frames = 0;

	(void)state;
	NEED_CTL();
	fd = make_region(&id);
	out = run_ok("top --count 3 --interval 0.1");
	for (p = out; (p = strstr(p, "faults ")); p++)
		frames++;
	assert_int_equal(frames, 3);
	assert_null(strstr(out, "\033[")); /* no screen clearing into a pipe */
	free(out);
	expect_json("--json top --count 2 --interval 0.1");
	close(fd);
}

static void expect_refused(const char *args, const char *because)
{
	int status;
	char *out = run(args, true, &status);

	if (status != 1 || !strstr(out, because))
		fail_msg("kvmmctl %s: exit %d, expected 1 with '%s':\n%s", args, status, because,
			 out);
	free(out);
}

static void set_refuses_bad_values_and_explains_why(void **state)
{
	uint64_t chunk = kt_sysfs_u64("default_chunk_bytes");
	uint64_t high = kt_sysfs_u64("pool_high_wmark_pct");
	uint64_t limit = kt_sysfs_u64("pool_limit_bytes");

	(void)state;
	NEED_CTL();
	/* Refused by kvmmctl before writing. */
	expect_refused("set default_chunk_bytes 3000", "not a power of two");
	expect_refused("set pool_high_wmark_pct 101", "above 100");
	expect_refused("set pool_limit_bytes lots", "not a number");
	expect_refused("set pool_used_bytes 0", "read-only");
	expect_refused("set no_such_knob 1", "unknown knob");
	expect_refused("get no_such_knob", "unknown knob");
	/* Refused by the kernel: the errno and what is accepted. */
	expect_refused("set pool_high_wmark_pct 1", "EINVAL");
	expect_refused("set pool_high_wmark_pct 1", "above pool_low_wmark_pct");
	expect_refused("set pool_limit_bytes 1024T", "the kernel refused");
	expect_refused("set default_backing /nonexistent/file", "the kernel refused");
	assert_int_equal(kt_sysfs_u64("default_chunk_bytes"), chunk);
	assert_int_equal(kt_sysfs_u64("pool_high_wmark_pct"), high);
	assert_int_equal(kt_sysfs_u64("pool_limit_bytes"), limit);
}

static void set_then_get_round_trips_a_knob(void **state)
{
	uint64_t old = kt_sysfs_u64("refault_window_ms");
	uint64_t chunk = kt_sysfs_u64("default_chunk_bytes");
	char args[64], *out;

	(void)state;
	NEED_CTL();
	free(run_ok("set refault_window_ms 1234"));
	assert_int_equal(kt_sysfs_u64("refault_window_ms"), 1234);
	out = run_ok("get refault_window_ms");
	assert_string_equal(out, "1234\n");
	free(out);
	free(run_ok("set default_chunk_bytes 128K"));
	assert_int_equal(kt_sysfs_u64("default_chunk_bytes"), 128 * KiB);
	expect_json("--json get default_chunk_bytes");
	snprintf(args, sizeof(args), "set refault_window_ms %llu", (unsigned long long)old);
	free(run_ok(args));
	snprintf(args, sizeof(args), "set default_chunk_bytes %llu", (unsigned long long)chunk);
	free(run_ok(args));
	assert_int_equal(kt_sysfs_u64("default_chunk_bytes"), chunk);
}

static void metrics_parse_as_prometheus_text(void **state)
{
	static struct prom pr;
	const struct prom_sample *s;
	const struct prom_family *f;
	char labels[128], why[256], *out;
	uint32_t id;
	int fd, status;

	(void)state;
	NEED_CTL();
	fd = make_region(&id);
	out = run("metrics", false, &status);
	assert_int_equal(status, 0);
	if (prom_parse(out, &pr, why, sizeof(why)))
		fail_msg("invalid exposition text: %s\n%s", why, out);
	for (int i = 0; i < pr.nr_families; i++) {
		const struct prom_family *g = &pr.families[i];

		if (strncmp(g->name, "kvmm_", 5) || !g->help || !g->type[0])
			fail_msg("family %s: needs the kvmm_ prefix, HELP and TYPE", g->name);
		if (!strcmp(g->type, "counter") != !!strstr(g->name, "_total"))
			fail_msg("family %s: counters and only counters end in _total", g->name);
	}
	s = prom_find(&pr, "kvmm_module_loaded", "");
	assert_non_null(s);
	assert_float_equal(s->value, 1, 0);
	s = prom_find(&pr, "kvmm_pool_limit_bytes", "");
	assert_non_null(s);
	assert_float_equal(s->value, (double)kt_sysfs_u64("pool_limit_bytes"), 0);
	f = prom_find_family(&pr, "kvmm_faults_total");
	assert_non_null(f);
	assert_string_equal(f->type, "counter");
	snprintf(labels, sizeof(labels), "id=\"%u\",pid=\"%d\",comm=\"test_kvmmctl\"", id,
		 (int)getpid());
	s = prom_find(&pr, "kvmm_region_resident_bytes", labels);
	if (!s)
		fail_msg("no kvmm_region_resident_bytes{%s} in\n%s", labels, out);
	assert_float_equal(s->value, 1048576, 0);
	free(out);
	close(fd);
}

static void without_the_module_status_says_so_and_regions_fails(void **state)
{
	int status;
	char *out;

	(void)state;
	NEED_CTL();
	setenv("KVMMCTL_SYSFS", "/nonexistent", 1);
	out = run("status", true, &status);
	assert_int_equal(status, 0);
	assert_non_null(strstr(out, "not loaded"));
	free(out);
	out = run("regions", true, &status);
	assert_int_equal(status, 3);
	assert_non_null(strstr(out, "not loaded"));
	free(out);
	out = run("metrics", false, &status);
	assert_int_equal(status, 0);
	assert_non_null(strstr(out, "kvmm_module_loaded 0"));
	free(out);
	unsetenv("KVMMCTL_SYSFS");
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(status_reports_the_loaded_module_in_kernel_mode),
	    cmocka_unit_test(regions_lists_a_region_with_its_owner_and_tiers),
	    cmocka_unit_test(top_runs_a_given_number_of_frames_without_a_terminal),
	    cmocka_unit_test(set_refuses_bad_values_and_explains_why),
	    cmocka_unit_test(set_then_get_round_trips_a_knob),
	    cmocka_unit_test(metrics_parse_as_prometheus_text),
	    cmocka_unit_test(without_the_module_status_says_so_and_regions_fails),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests_name("kvmmctl", tests, setup, NULL);
}
