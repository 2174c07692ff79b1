/* SPDX-License-Identifier: MIT */
/*
 * Large values on a hiredis connection's socket, without hiredis's copies:
 * a SET goes out with writev() straight from the thread's staging buffer
 * (hiredis would first format the whole value into its output buffer), and
 * a GET's bulk reply is read with large recv() calls straight into that
 * buffer (hiredis reads 16 KiB at a time into its reader buffer and copies
 * the reply out again). Both run only between whole hiredis commands, when
 * hiredis has nothing buffered either way, so the connection stays usable
 * by hiredis. The socket's timeouts (redisSetTimeout) bound every call; a
 * return other than 0 leaves the connection out of step: drop it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "remote.h"

int rm_conn_room(struct rm_conn *k, size_t n)
{
	uint8_t *p;

	if (n <= k->cap)
		return 0;
	p = realloc(k->buf, n);
	if (!p)
		return -ENOMEM;
	k->buf = p;
	k->cap = n;
	return 0;
}

static int rm_io_err(ssize_t n)
{
	if (n == 0)
		return -ECONNRESET;
	return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -ECONNRESET;
}

static int rm_writev_all(int fd, struct iovec *v, int n)
{
	while (n) {
		ssize_t w = writev(fd, v, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return rm_io_err(w);
		while (n && (size_t)w >= v->iov_len) {
			w -= (ssize_t)v->iov_len;
			v++, n--;
		}
		if (n) {
			v->iov_base = (char *)v->iov_base + w;
			v->iov_len -= (size_t)w;
		}
	}
	return 0;
}

int rm_wire_set_nx(redisContext *c, const char *key, int kl, const uint8_t *v, size_t vlen,
		   redisReply **repp)
{
	char head[160];
	static const char tail[] = "\r\n$2\r\nNX\r\n";
	int hl = snprintf(head, sizeof(head), "*4\r\n$3\r\nSET\r\n$%d\r\n%.*s\r\n$%zu\r\n", kl, kl,
			  key, vlen);
	struct iovec iov[3] = {
	    {head, (size_t)hl}, {(void *)v, vlen}, {(void *)tail, sizeof(tail) - 1}};
	int err;

	*repp = NULL;
	if (hl < 0 || (size_t)hl >= sizeof(head))
		return -EINVAL;
	err = rm_writev_all(c->fd, iov, 3);
	if (err)
		return err;
	if (redisGetReply(c, (void **)repp) != REDIS_OK || !*repp)
		return c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)
			   ? -ETIMEDOUT
			   : -ECONNRESET;
	return 0;
}

/* Reads at least @want bytes into k->buf from *have on. */
static int rm_read_to(struct rm_conn *k, size_t *have, size_t want)
{
	while (*have < want) {
		ssize_t n = recv(k->c->fd, k->buf + *have, k->cap - *have, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return rm_io_err(n);
		*have += (size_t)n;
	}
	return 0;
}

int rm_wire_get(struct rm_conn *k, const char *key, int kl, struct rm_wire_reply *out)
{
	char cmd[160];
	int cl = snprintf(cmd, sizeof(cmd), "*2\r\n$3\r\nGET\r\n$%d\r\n%.*s\r\n", kl, kl, key);
	struct iovec iov = {cmd, (size_t)cl};
	size_t have = 0, line = 0;
	char *end;
	long long len;
	int err;

	memset(out, 0, sizeof(*out));
	if (cl < 0 || (size_t)cl >= sizeof(cmd))
		return -EINVAL;
	err = rm_conn_room(k, 64 << 10);
	if (!err)
		err = rm_writev_all(k->c->fd, &iov, 1);
	/* the first line: "$<len>", "$-1" or "-<error>" */
	while (!err && !line) {
		uint8_t *nl;

		if (have == k->cap)
			return -EPROTO; /* a line longer than 64 KiB */
		err = rm_read_to(k, &have, have + 1);
		nl = err ? NULL : memmem(k->buf, have, "\r\n", 2);
		if (nl)
			line = (size_t)(nl - k->buf) + 2;
	}
	if (err)
		return err;
	k->buf[line - 2] = 0;
	if (k->buf[0] == '-') {
		if (have != line)
			return -EPROTO;
		out->type = REDIS_REPLY_ERROR;
		out->str = (char *)k->buf + 1;
		out->len = line - 3;
		return 0;
	}
	if (k->buf[0] != '$')
		return -EPROTO;
	len = strtoll((char *)k->buf + 1, &end, 10);
	if (end != (char *)k->buf + line - 2 || len < -1)
		return -EPROTO;
	if (len == -1) {
		out->type = REDIS_REPLY_NIL;
		return have == line ? 0 : -EPROTO;
	}
	/* keep the line's bytes in place: the payload follows them */
	err = rm_conn_room(k, line + (size_t)len + 2);
	if (!err)
		err = rm_read_to(k, &have, line + (size_t)len + 2);
	if (err)
		return err;
	if (have != line + (size_t)len + 2 || memcmp(k->buf + line + len, "\r\n", 2))
		return -EPROTO;
	out->type = REDIS_REPLY_STRING;
	out->str = (char *)k->buf + line;
	out->len = (size_t)len;
	return 0;
}
