/* SPDX-License-Identifier: MIT */
/*
 * kvmmctl park PID [--tag T] [--to host|flash|discard]
 * kvmmctl unpark PID [--tag T]
 *
 * Asks a process running under libkvmm-preload.so to park or unpark its
 * GPU allocations, over the process's control socket: the abstract unix
 * socket "kvmm-preload.PID" (userspace/preload/control.c). The process
 * serves its own uid and root only; kvmmctl checks in turn that the
 * socket belongs to process PID (SO_PEERCRED), so nothing else that took
 * the name can answer. No kvmm.ko is needed.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "kvmmctl.h"
#include "../common/json.h"

static int park_usage(const char *cmd)
{
	fprintf(stderr,
		"usage: kvmmctl park PID [--tag TAG] [--to host|flash|discard]\n"
		"       kvmmctl unpark PID [--tag TAG]\n"
		"(%s: TAG defaults to every tag; park keeps the contents in host memory "
		"unless --to says otherwise)\n",
		cmd);
	return CTL_USAGE;
}

/* Sends @req to process @pid; its one-line answer in @reply. 0 or -errno. */
static int park_ask(int pid, const char *req, char *reply, size_t len)
{
	struct sockaddr_un sa;
	struct timeval tv = {.tv_sec = 600}; /* a park of many GiB to flash takes a while */
	struct ucred cr;
	socklen_t crlen = sizeof(cr), sl;
	size_t n = 0;
	ssize_t got;
	int fd, err;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "kvmm-preload.%d", pid);
	sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(sa.sun_path + 1));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sl)) {
		err = -errno;
		close(fd);
		return err;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) || cr.pid != pid) {
		close(fd);
		return -EPROTO; /* someone else holds the name */
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (send(fd, req, strlen(req), MSG_NOSIGNAL) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	while (n + 1 < len && (got = recv(fd, reply + n, len - 1 - n, 0)) > 0)
		n += (size_t)got;
	reply[n] = 0;
	close(fd);
	if (!n)
		return -ECONNRESET;
	reply[strcspn(reply, "\n")] = 0;
	return 0;
}

static int park_cmd(const struct ctl *c, int argc, char **argv, bool park)
{
	const char *tag = "*", *to = "host";
	char req[128], reply[512], *end;
	long pid;
	int ret, code = 0;

	if (argc < 2)
		return park_usage(argv[0]);
	pid = strtol(argv[1], &end, 10);
	if (*end || pid <= 0 || pid > 0x3fffffff) {
		fprintf(stderr, "kvmmctl: %s: '%s' is not a process id\n", argv[0], argv[1]);
		return CTL_USAGE;
	}
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--tag") && i + 1 < argc) {
			tag = argv[++i];
		} else if (park && !strcmp(argv[i], "--to") && i + 1 < argc) {
			to = argv[++i];
			if (strcmp(to, "host") && strcmp(to, "flash") && strcmp(to, "discard")) {
				fprintf(stderr,
					"kvmmctl: park: --to %s: not host, flash or discard\n", to);
				return CTL_USAGE;
			}
		} else {
			fprintf(stderr, "kvmmctl: %s: unknown argument '%s'\n", argv[0], argv[i]);
			return park_usage(argv[0]);
		}
	}
	if (!tag[0] || strlen(tag) > 31 || strpbrk(tag, " \t\r\n")) {
		fprintf(stderr, "kvmmctl: %s: bad tag '%s' (1..31 characters, no spaces)\n",
			argv[0], tag);
		return CTL_USAGE;
	}
	if (park)
		snprintf(req, sizeof(req), "park %s %s\n", tag, to);
	else
		snprintf(req, sizeof(req), "unpark %s\n", tag);
	ret = park_ask((int)pid, req, reply, sizeof(reply));
	if (ret) {
		if (ret == -ECONNREFUSED || ret == -ENOENT)
			fprintf(stderr,
				"kvmmctl: %s: process %ld has no kvmm-preload control socket (not "
				"running under libkvmm-preload.so, or no GPU memory routed yet)\n",
				argv[0], pid);
		else if (ret == -EPROTO)
			fprintf(stderr,
				"kvmmctl: %s: the socket kvmm-preload.%ld is not process %ld's; "
				"refused\n",
				argv[0], pid, pid);
		else
			fprintf(stderr, "kvmmctl: %s: process %ld: %s\n", argv[0], pid,
				strerror(-ret));
		return CTL_ERR;
	}
	if (strncmp(reply, "ok", 2)) {
		/* "error ERRNO MESSAGE" */
		code = (int)strtol(reply + 6, &end, 10);
		if (!strncmp(reply, "error ", 6) && *end == ' ')
			end++;
		else
			end = reply;
	}
	if (c->json) {
		struct jw w;

		jw_init(&w, stdout);
		jw_obj(&w, NULL);
		jw_i64(&w, "pid", pid);
		jw_str(&w, "command", argv[0]);
		jw_str(&w, "tag", tag);
		if (park)
			jw_str(&w, "to", to);
		jw_bool(&w, "ok", code == 0 && !strncmp(reply, "ok", 2));
		if (code)
			jw_i64(&w, "errno", code);
		jw_str(&w, "message", !strncmp(reply, "ok", 2) ? reply + (reply[2] ? 3 : 2) : end);
		jw_end(&w);
	} else if (!strncmp(reply, "ok", 2)) {
		printf("process %ld: %s\n", pid, reply[2] ? reply + 3 : argv[0]);
	} else {
		fprintf(stderr, "kvmmctl: %s: process %ld: %s\n", argv[0], pid, end);
	}
	return !strncmp(reply, "ok", 2) ? CTL_OK : CTL_ERR;
}

int cmd_park(const struct ctl *c, int argc, char **argv)
{
	return park_cmd(c, argc, argv, true);
}

int cmd_unpark(const struct ctl *c, int argc, char **argv)
{
	return park_cmd(c, argc, argv, false);
}
