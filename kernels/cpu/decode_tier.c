/*
 * Decode over K/V that is partly not resident (opts->tier): every item's
 * reads are started before any compute, in plan order, so they go out as
 * large asynchronous I/Os while the threads compute the items that were
 * resident; the other items follow in plan order, each once its bytes are
 * in and held (acquire) until it is done (release). Only the order in
 * which items run changes, never the plan or the merge, so the result is
 * bitwise that of the same call with everything resident.
 *
 * An item reads two ranges, K and V; where they overlap (token-major: one
 * region holds both) the union is fetched and held once.
 */
#include <errno.h>
#include <stdlib.h>

#include "decode.h"

/* The ranges item i holds: 1 (K and V overlap or touch: their union) or 2. */
static int item_ranges(const struct attn_job *job, int i, const char *a[2], size_t len[2])
{
	attn_item_range(job, i, 0, &a[0], &len[0]);
	attn_item_range(job, i, 1, &a[1], &len[1]);
	if (a[1] <= a[0] + len[0] && a[0] <= a[1] + len[1]) {
		const char *lo = a[0] < a[1] ? a[0] : a[1];
		const char *hi = a[0] + len[0] > a[1] + len[1] ? a[0] + len[0] : a[1] + len[1];

		a[0] = lo;
		len[0] = (size_t)(hi - lo);
		return 1;
	}
	return 2;
}

int attn_tier_begin(struct attn_job *job, int *rank)
{
	const struct kvmm_attn_tier *t = job->tier;
	int n = job->plan.nitems, r = 0, err = 0, i;

	job->ticket = calloc((size_t)(2 * n + 1), sizeof(*job->ticket));
	job->fetched = calloc((size_t)(n + 1), 1);
	if (!job->ticket || !job->fetched)
		return -ENOMEM;
	for (i = 0; i < n && !err; i++) {
		const char *a[2];
		size_t len[2];
		int nr = item_ranges(job, i, a, len);

		for (int k = 0; k < nr; k++) {
			int ret = t->fetch(t->arg, a[k], len[k], &job->ticket[2 * i + k]);

			if (ret < 0) {
				err = ret;
				break;
			}
			if (ret == 0)
				job->fetched[i] = 1;
		}
		job->nfetched += job->fetched[i];
	}
	if (err) {
		/* Items up to i fetched (item i partly): their tickets go back. */
		for (int j = 0; j < i; j++)
			attn_tier_drop(job, j);
		return err;
	}
	for (i = 0; i < n; i++)
		if (!job->fetched[i])
			rank[r++] = i;
	for (i = 0; i < n; i++)
		if (job->fetched[i])
			rank[r++] = i;
	return 0;
}

int attn_tier_acquire(struct attn_job *job, int i)
{
	const struct kvmm_attn_tier *t = job->tier;
	const char *a[2];
	size_t len[2];
	int nr = item_ranges(job, i, a, len), err = 0, k;

	for (k = 0; k < nr; k++) {
		void *ticket = job->ticket[2 * i + k];

		job->ticket[2 * i + k] = NULL;
		err = t->acquire(t->arg, a[k], len[k], ticket);
		if (err)
			break;
	}
	if (err) {
		for (int j = k + 1; j < nr; j++) {
			if (job->ticket[2 * i + j])
				t->drop(t->arg, job->ticket[2 * i + j]);
			job->ticket[2 * i + j] = NULL;
		}
		while (k-- > 0)
			t->release(t->arg, a[k], len[k]);
	}
	return err;
}

void attn_tier_release(struct attn_job *job, int i)
{
	const struct kvmm_attn_tier *t = job->tier;
	const char *a[2];
	size_t len[2];
	int nr = item_ranges(job, i, a, len);

	for (int k = 0; k < nr; k++)
		t->release(t->arg, a[k], len[k]);
}

void attn_tier_drop(struct attn_job *job, int i)
{
	const struct kvmm_attn_tier *t = job->tier;

	for (int k = 0; job->ticket && k < 2; k++) {
		if (job->ticket[2 * i + k])
			t->drop(t->arg, job->ticket[2 * i + k]);
		job->ticket[2 * i + k] = NULL;
	}
}

void attn_tier_end(struct attn_job *job)
{
	free(job->ticket);
	free(job->fetched);
	job->ticket = NULL;
	job->fetched = NULL;
}
