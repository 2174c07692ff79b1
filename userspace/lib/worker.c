/* SPDX-License-Identifier: MIT */
/*
 * Asynchronous operations: a context's worker threads (io_threads) take
 * them from one queue in submission order and run them in parallel.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

static void kvmm_op_free(struct kvmm_op *op)
{
	pthread_mutex_destroy(&op->lock);
	pthread_cond_destroy(&op->cond);
	free(op);
}

static void kvmm_op_complete(struct kvmm_op *op, int result)
{
	bool detached;

	pthread_mutex_lock(&op->lock);
	op->result = result;
	atomic_store(&op->done, 1);
	detached = op->detached;
	pthread_cond_broadcast(&op->cond);
	pthread_mutex_unlock(&op->lock);
	if (detached)
		kvmm_op_free(op);
}

static void *kvmm_worker_main(void *arg)
{
	struct kvmm_worker *w = arg;
	struct kvmm_op *op;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->head && !w->stop)
			pthread_cond_wait(&w->cond, &w->lock);
		op = w->head;
		if (!op)
			break; /* stopping with an empty queue */
		w->head = op->next;
		if (!w->head)
			w->tail = NULL;
		pthread_mutex_unlock(&w->lock);
		kvmm_op_complete(op, op->fn(op->arg));
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* An op that its owner completes with kvmm_op_finish() (the remote tier's
 * I/O threads), not a queued job. Detached: it frees itself when finished. */
struct kvmm_op *kvmm_op_new(bool detached)
{
	struct kvmm_op *op = calloc(1, sizeof(*op));

	if (!op)
		return NULL;
	op->detached = detached;
	pthread_mutex_init(&op->lock, NULL);
	pthread_cond_init(&op->cond, NULL);
	return op;
}

void kvmm_op_finish(struct kvmm_op *op, int result)
{
	kvmm_op_complete(op, result);
}

/* Queues fn(arg); fn owns arg. With opp NULL the op frees itself. */
int kvmm_worker_submit(struct kvmm_ctx *ctx, int (*fn)(void *), void *arg, struct kvmm_op **opp)
{
	struct kvmm_worker *w = &ctx->worker;
	struct kvmm_op *op;

	op = calloc(1, sizeof(*op));
	if (!op)
		return -ENOMEM;
	op->fn = fn;
	op->arg = arg;
	op->detached = !opp;
	pthread_mutex_init(&op->lock, NULL);
	pthread_cond_init(&op->cond, NULL);

	pthread_mutex_lock(&w->lock);
	while (w->nr_threads < ctx->io_threads) {
		int err = pthread_create(&w->threads[w->nr_threads], NULL, kvmm_worker_main, w);

		if (err && !w->nr_threads) {
			pthread_mutex_unlock(&w->lock);
			kvmm_op_free(op);
			return -err;
		}
		if (err)
			break; /* fewer threads still work */
		w->nr_threads++;
	}
	if (w->tail)
		w->tail->next = op;
	else
		w->head = op;
	w->tail = op;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	if (opp)
		*opp = op;
	return 0;
}

/* Runs what is queued, then joins the thread. */
void kvmm_worker_stop(struct kvmm_ctx *ctx)
{
	struct kvmm_worker *w = &ctx->worker;

	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	for (uint32_t i = 0; i < w->nr_threads; i++)
		pthread_join(w->threads[i], NULL);
	w->nr_threads = 0;
	w->stop = false;
}

int kvmm_wait(struct kvmm_op *op)
{
	int result;

	if (!op)
		return -EINVAL;
	pthread_mutex_lock(&op->lock);
	while (!atomic_load(&op->done))
		pthread_cond_wait(&op->cond, &op->lock);
	result = op->result;
	pthread_mutex_unlock(&op->lock);
	kvmm_op_free(op);
	return result;
}

int kvmm_op_done(const struct kvmm_op *op)
{
	if (!op)
		return -EINVAL;
	return atomic_load(&op->done) ? 1 : 0;
}
