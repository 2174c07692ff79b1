/* SPDX-License-Identifier: MIT */
/*
 * Park and unpark requests: the mover thread and the control socket.
 *
 * The mover runs moves one at a time, in the order they were asked for,
 * on its own thread (started for a request, ended when none is left): the
 * server's threads go on while a tag is copied out or back, and kvmm_preload_park(...,
 * KVMM_PRELOAD_ASYNC) returns at once (kvmm_preload_wait() gives the result). A synchronous request
 * waits on its own record.
 *
 * The control socket is the abstract unix socket "kvmm-preload.PID"
 * (no file to clean up, gone with the process), served by a second thread
 * started with the first routed GPU block (KVMM_PRELOAD_CONTROL=0: never).
 * A peer whose SO_PEERCRED uid is neither ours nor root gets one refusal
 * line and nothing else. One request per connection, one line each way:
 *
 *     park TAG HOW      TAG a tag or "*" (all), HOW host, flash or discard
 *     unpark TAG
 *     status            gpu_tag lines, then "ok"
 *
 * answered "ok MESSAGE" or "error ERRNO MESSAGE". kvmmctl park/unpark
 * (tools/kvmmctl/park.c) is the client; it checks that the socket's owner
 * is the process it asked for.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "shim.h"

struct shim_move_req {
	struct shim_move_req *next;
	enum shim_move op;
	char tag[SHIM_NAME_MAX];
	uint32_t how;
	bool async, done;
	int result;
	char msg[320];
};

static pthread_mutex_t mv_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t mv_cond = PTHREAD_COND_INITIALIZER;
static struct shim_move_req *mv_head, *mv_tail; /* queued */
static struct shim_move_req *mv_done;		/* finished asynchronous ones */
static struct shim_move_req *mv_running;
static bool mv_started;
static pthread_t mv_thread;

static bool ctl_started;
static int ctl_fd = -1;
static pthread_t ctl_thread;

/* Helper threads take no signal of the program's and route nothing. */
static void shim_thread_quiet(void)
{
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	shim_depth = 1;
}

/* Runs the queue until it is empty, then ends: no thread stays behind
 * between moves (the next request starts another). */
static void *shim_mover_main(void *arg)
{
	(void)arg;
	shim_thread_quiet();
	pthread_mutex_lock(&mv_lock);
	while (mv_head) {
		struct shim_move_req *q = mv_head;

		mv_head = q->next;
		if (!mv_head)
			mv_tail = NULL;
		mv_running = q;
		pthread_mutex_unlock(&mv_lock);
		if (q->op == SHIM_MOVE_PARK)
			q->result = shim_gpu_park_now(q->tag, q->how, q->msg, sizeof(q->msg));
		else
			q->result = shim_gpu_unpark_now(q->tag, q->msg, sizeof(q->msg));
		pthread_mutex_lock(&mv_lock);
		mv_running = NULL;
		q->done = true;
		if (q->async) {
			q->next = mv_done;
			mv_done = q;
		}
		pthread_cond_broadcast(&mv_cond);
	}
	mv_started = false;
	pthread_mutex_unlock(&mv_lock);
	return NULL;
}

/* mv_lock held. */
static int shim_mover_start_locked(void)
{
	int ret;

	if (mv_started)
		return 0;
	ret = pthread_create(&mv_thread, NULL, shim_mover_main, NULL);
	if (ret)
		return -ret;
	pthread_detach(mv_thread);
	mv_started = true;
	return 0;
}

int shim_move(enum shim_move op, const char *tag, uint32_t how, bool async, char *msg,
	      size_t msglen)
{
	struct shim_move_req *q;
	int ret;

	if (tag && strlen(tag) >= SHIM_NAME_MAX)
		return -EINVAL;
	if (op == SHIM_MOVE_PARK && how > KVMM_CUDA_SLEEP_FLASH)
		return -EINVAL;
	shim_depth++;
	q = shim_real.malloc(sizeof(*q));
	shim_depth--;
	if (!q)
		return -ENOMEM;
	memset(q, 0, sizeof(*q));
	q->op = op;
	snprintf(q->tag, sizeof(q->tag), "%s", tag && strcmp(tag, "*") ? tag : "");
	q->how = how;
	q->async = async;
	pthread_mutex_lock(&mv_lock);
	ret = shim_mover_start_locked();
	if (ret) {
		pthread_mutex_unlock(&mv_lock);
		shim_real.free(q);
		return ret;
	}
	if (mv_tail)
		mv_tail->next = q;
	else
		mv_head = q;
	mv_tail = q;
	pthread_cond_broadcast(&mv_cond);
	if (async) {
		pthread_mutex_unlock(&mv_lock);
		return 0;
	}
	while (!q->done)
		pthread_cond_wait(&mv_cond, &mv_lock);
	pthread_mutex_unlock(&mv_lock);
	ret = q->result;
	if (msg && msglen)
		snprintf(msg, msglen, "%s", q->msg);
	shim_real.free(q);
	return ret;
}

static bool shim_move_for(const struct shim_move_req *q, const char *tag)
{
	return !tag || !tag[0] || !strcmp(tag, "*") || !q->tag[0] || !strcmp(q->tag, tag);
}

int shim_move_wait(const char *tag)
{
	struct shim_move_req **pp, *q;
	bool pending, first = true;
	int ret = 0;

	pthread_mutex_lock(&mv_lock);
	do {
		pending = mv_running && shim_move_for(mv_running, tag);
		for (q = mv_head; q && !pending; q = q->next)
			pending = shim_move_for(q, tag);
		if (pending)
			pthread_cond_wait(&mv_cond, &mv_lock);
	} while (pending);
	/* The finished ones, newest first: the first is the result. */
	for (pp = &mv_done; (q = *pp);) {
		if (!shim_move_for(q, tag)) {
			pp = &q->next;
			continue;
		}
		if (first)
			ret = q->result;
		first = false;
		*pp = q->next;
		shim_real.free(q);
	}
	pthread_mutex_unlock(&mv_lock);
	return ret;
}

/* ------------------------------------------------------- control socket */

void shim_control_name(int pid, char *buf, size_t len)
{
	snprintf(buf, len, "kvmm-preload.%d", pid);
}

static void shim_ctl_reply(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void shim_ctl_reply(int fd, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	if (send(fd, buf, (size_t)n, MSG_NOSIGNAL) < 0)
		return;
}

static int shim_ctl_how(const char *s, uint32_t *how)
{
	if (!strcmp(s, "host"))
		*how = KVMM_CUDA_SLEEP_HOST;
	else if (!strcmp(s, "flash"))
		*how = KVMM_CUDA_SLEEP_FLASH;
	else if (!strcmp(s, "discard"))
		*how = KVMM_CUDA_SLEEP_DISCARD;
	else
		return -EINVAL;
	return 0;
}

static void shim_ctl_serve(int fd)
{
	struct timeval tv = {.tv_sec = 5};
	struct ucred cr;
	socklen_t crlen = sizeof(cr);
	char line[256], cmd[16], tag[SHIM_NAME_MAX + 1], how[16], msg[320];
	size_t n = 0;
	ssize_t got;
	uint32_t h = KVMM_CUDA_SLEEP_HOST;
	int ret, fields;

	/* The request is read before the peer is checked: a peer refused
	 * with its request unread would see a reset instead of the reason. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (n < sizeof(line) - 1 && (got = recv(fd, line + n, sizeof(line) - 1 - n, 0)) > 0) {
		n += (size_t)got;
		if (memchr(line, '\n', n))
			break;
	}
	line[n] = 0;
	line[strcspn(line, "\r\n")] = 0;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen)) {
		shim_ctl_reply(fd, "error %d cannot read the peer's credentials", EPERM);
		return;
	}
	if (cr.uid != getuid() && cr.uid != 0) {
		shim_ctl_reply(fd,
			       "error %d uid %u may not control this process (uid %u or root only)",
			       EPERM, (unsigned)cr.uid, (unsigned)getuid());
		return;
	}
	tag[0] = how[0] = 0;
	fields = sscanf(line, "%15s %32s %15s", cmd, tag, how);
	if (fields < 1) {
		shim_ctl_reply(fd, "error %d empty request", EINVAL);
		return;
	}
	if (!strcmp(cmd, "status")) {
		shim_gpu_registry_write(fd);
		shim_ctl_reply(fd, "ok");
		return;
	}
	if (strlen(tag) >= SHIM_NAME_MAX) {
		shim_ctl_reply(fd, "error %d tag too long", EINVAL);
		return;
	}
	if (!strcmp(cmd, "park") && fields >= 2) {
		if (fields == 3 && shim_ctl_how(how, &h)) {
			shim_ctl_reply(fd,
				       "error %d unknown destination '%s' (host, flash, discard)",
				       EINVAL, how);
			return;
		}
		ret = shim_move(SHIM_MOVE_PARK, tag, h, false, msg, sizeof(msg));
	} else if (!strcmp(cmd, "unpark") && fields >= 2) {
		ret = shim_move(SHIM_MOVE_UNPARK, tag, 0, false, msg, sizeof(msg));
	} else {
		shim_ctl_reply(fd,
			       "error %d unknown request '%s' (park TAG HOW, unpark TAG, status)",
			       EINVAL, line);
		return;
	}
	if (ret)
		shim_ctl_reply(fd, "error %d %s", -ret, msg[0] ? msg : kvmm_strerror(ret));
	else
		shim_ctl_reply(fd, "ok %s", msg);
}

static void *shim_ctl_main(void *arg)
{
	(void)arg;
	shim_thread_quiet();
	for (;;) {
		int c = accept4(ctl_fd, NULL, NULL, SOCK_CLOEXEC);

		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EBADF || errno == EINVAL)
				return NULL; /* closed (fork child) */
			usleep(10000);
			continue;
		}
		shim_ctl_serve(c);
		close(c);
	}
	return NULL;
}

void shim_control_start(void)
{
	const char *v = getenv("KVMM_PRELOAD_CONTROL");
	struct sockaddr_un sa;
	socklen_t len;
	int fd;

	if (v && !strcmp(v, "0"))
		return;
	pthread_mutex_lock(&mv_lock);
	if (ctl_started) {
		pthread_mutex_unlock(&mv_lock);
		return;
	}
	ctl_started = true; /* tried once, success or not */
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	shim_control_name((int)getpid(), sa.sun_path + 1, sizeof(sa.sun_path) - 1);
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(sa.sun_path + 1));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, len) || listen(fd, 8)) {
		shim_say("no control socket @%s: %s; kvmmctl park/unpark cannot reach this "
			 "process (the C API still works)",
			 sa.sun_path + 1, strerror(errno));
		if (fd >= 0)
			close(fd);
		pthread_mutex_unlock(&mv_lock);
		return;
	}
	ctl_fd = fd;
	if (pthread_create(&ctl_thread, NULL, shim_ctl_main, NULL)) {
		shim_say("no control thread; kvmmctl park/unpark cannot reach this process");
		close(fd);
		ctl_fd = -1;
	} else {
		pthread_detach(ctl_thread);
	}
	pthread_mutex_unlock(&mv_lock);
}

void shim_control_fork_child(void)
{
	/* Neither thread exists in the child; the socket is the parent's. */
	if (ctl_fd >= 0)
		close(ctl_fd);
	ctl_fd = -1;
	ctl_started = false;
	mv_started = false;
	mv_head = mv_tail = mv_done = mv_running = NULL;
	pthread_mutex_init(&mv_lock, NULL);
	pthread_cond_init(&mv_cond, NULL);
}
