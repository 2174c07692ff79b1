/* SPDX-License-Identifier: MIT */
/*
 * Running a test program under the shim, for the preload suites
 * (test_preload_exec, test_preload_cuda): its stdout and stderr, and the
 * shim's KVMM_PRELOAD_STATS file, captured; numbers read back out of them.
 */
#ifndef KVMM_TEST_PROBE_RUN_H
#define KVMM_TEST_PROBE_RUN_H

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../unit/helpers.h"

struct probe_run {
	int status;
	char out[16384]; /* stdout */
	char err[8192];	 /* stderr */
	char stats[4096];
};

static inline void probe_read_all(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	ssize_t got;

	while (n + 1 < cap && (got = read(fd, buf + n, cap - n - 1)) > 0)
		n += (size_t)got;
	buf[n] = 0;
}

/*
 * Runs @prog with @argv (argv[0] first, NULL-terminated) and
 * LD_PRELOAD=@preload (NULL: none). In the child, before the exec:
 * KVMM_PRELOAD_STATS names a fresh file (read into r->stats),
 * KVMM_PRELOAD_REGISTRY is /tmp/kvmm-preload-test, then @setup runs (may be
 * NULL) and the "NAME=VALUE" strings of @env (NULL-terminated, may be
 * NULL) are added.
 */
static inline void probe_run(struct probe_run *r, const char *prog, char *const *argv,
			     const char *preload, void (*setup)(void), const char *const *env)
{
	char stats[] = "/tmp/kvmm-preload-stats-XXXXXX";
	int out[2], err[2], sfd = mkstemp(stats);
	pid_t pid;

	memset(r, 0, sizeof(*r));
	assert_true(sfd >= 0 && !pipe(out) && !pipe(err));
	pid = fork();
	if (!pid) {
		dup2(out[1], 1);
		dup2(err[1], 2);
		close(out[0]);
		close(err[0]);
		setenv("KVMM_PRELOAD_STATS", stats, 1);
		setenv("KVMM_PRELOAD_REGISTRY", "/tmp/kvmm-preload-test", 1);
		if (setup)
			setup();
		for (size_t i = 0; env && env[i]; i++)
			putenv((char *)env[i]);
		if (preload)
			setenv("LD_PRELOAD", preload, 1);
		else
			unsetenv("LD_PRELOAD");
		execv(prog, argv);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	probe_read_all(out[0], r->out, sizeof(r->out));
	probe_read_all(err[0], r->err, sizeof(r->err));
	close(out[0]);
	close(err[0]);
	assert_int_equal(waitpid(pid, &r->status, 0), pid);
	probe_read_all(sfd, r->stats, sizeof(r->stats));
	close(sfd);
	unlink(stats);
	if (!WIFEXITED(r->status) || WEXITSTATUS(r->status))
		print_message("%s %s: status %d\nstdout:\n%s\nstderr:\n%s\nstats:\n%s\n", argv[0],
			      argv[1] ? argv[1] : "", r->status, r->out, r->err, r->stats);
}

/* The number after @key in @text; fails the test if @key is not there. */
static inline unsigned long long probe_value(const char *text, const char *key)
{
	const char *p = strstr(text, key);

	if (!p)
		fail_msg("'%s' not in:\n%s", key, text);
	return strtoull(p + strlen(key), NULL, 10);
}

#endif
