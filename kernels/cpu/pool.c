/* Fork-join helper: run one function on n threads, the caller being one. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "cpu.h"

struct attn_thread {
	pthread_t id;
	void (*fn)(void *arg);
	void *arg;
};

static void *thread_main(void *p)
{
	struct attn_thread *t = p;

	t->fn(t->arg);
	return NULL;
}

int attn_threads(const struct kvmm_attn_cpu_opts *opts)
{
	long n;

	if (opts && opts->threads > 0)
		return opts->threads;
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

int attn_parallel(int n, void (*fn)(void *arg), void *arg)
{
	struct attn_thread *t;
	int started = 0, err = 0;

	if (n <= 1) {
		fn(arg);
		return 0;
	}
	t = calloc((size_t)n - 1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	for (; started < n - 1; started++) {
		t[started].fn = fn;
		t[started].arg = arg;
		err = pthread_create(&t[started].id, NULL, thread_main, &t[started]);
		if (err)
			break; /* the threads that did start share the work */
	}
	fn(arg);
	for (int i = 0; i < started; i++)
		pthread_join(t[i].id, NULL);
	free(t);
	return 0;
}
