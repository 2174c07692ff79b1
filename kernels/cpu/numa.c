/*
 * NUMA placement for the decode: where each item's bytes live and which
 * items a thread takes first. With one node (or no NUMA) there is one queue
 * in plan order. With several, items are grouped by the node of their K
 * bytes (move_pages(2) asked for the nodes of resident pages: kvmm regions
 * are placed by the module or by the caller's policy, the kernels only
 * look), and a thread drains its own node's group before it helps the
 * others. The syscalls are made directly, so the kernels need no libnuma.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cpu.h"

static int nodes;
static pthread_once_t nodes_once = PTHREAD_ONCE_INIT;

/* Nodes listed under /sys/devices/system/node: node0, node1, ... */
static void nodes_init(void)
{
	DIR *d = opendir("/sys/devices/system/node");
	struct dirent *e;

	nodes = 0;
	while (d && (e = readdir(d)))
		if (!strncmp(e->d_name, "node", 4) && e->d_name[4] >= '0' && e->d_name[4] <= '9')
			nodes++;
	if (d)
		closedir(d);
	if (nodes < 1)
		nodes = 1;
}

int attn_numa_nodes(void)
{
	pthread_once(&nodes_once, nodes_init);
	return nodes;
}

int attn_numa_self(void)
{
	unsigned cpu, node;

	if (syscall(SYS_getcpu, &cpu, &node, NULL) != 0)
		return -1;
	return (int)node;
}

int attn_numa_where(const void *const *addrs, int n, int *nodes_out)
{
	long page = sysconf(_SC_PAGESIZE);
	void **pages;
	int *status, err = 0;

	if (n <= 0)
		return 0;
	pages = malloc(sizeof(*pages) * (size_t)n);
	status = malloc(sizeof(*status) * (size_t)n);
	if (!pages || !status) {
		free(pages);
		free(status);
		return -ENOMEM;
	}
	for (int i = 0; i < n; i++)
		pages[i] = (void *)((uintptr_t)addrs[i] & ~(uintptr_t)(page - 1));
	/* nodes NULL: only report where each page is (negative errno if nowhere). */
	if (syscall(SYS_move_pages, 0, (unsigned long)n, pages, NULL, status, 0) != 0)
		err = -errno;
	for (int i = 0; i < n; i++)
		nodes_out[i] = err || status[i] < 0 ? -1 : status[i];
	free(pages);
	free(status);
	return err;
}

int attn_queue_init(struct attn_queue *q, const struct attn_item *items, int n, const int *rank,
		    int nnodes)
{
	int g = nnodes > 1 ? nnodes : 1;

	*q = (struct attn_queue){.n = n, .ngroups = g};
	q->order = malloc(sizeof(*q->order) * (size_t)(n ? n : 1));
	q->group_first = calloc((size_t)g + 1, sizeof(*q->group_first));
	q->cursor = malloc(sizeof(*q->cursor) * (size_t)g);
	if (!q->order || !q->group_first || !q->cursor) {
		attn_queue_free(q);
		return -ENOMEM;
	}
	/* Counting sort by group, stable: each group keeps the given order. */
	for (int i = 0; i < n; i++) {
		int node = items[i].node;

		q->group_first[(g > 1 && node > 0 && node < g ? node : 0) + 1]++;
	}
	for (int k = 0; k < g; k++) {
		q->group_first[k + 1] += q->group_first[k];
		atomic_init(&q->cursor[k], q->group_first[k]);
	}
	for (int j = 0; j < n; j++) {
		int i = rank ? rank[j] : j, node = items[i].node;
		int k = g > 1 && node > 0 && node < g ? node : 0;

		q->order[atomic_fetch_add(&q->cursor[k], 1)] = i;
	}
	for (int k = 0; k < g; k++)
		atomic_init(&q->cursor[k], q->group_first[k]);
	return 0;
}

int attn_queue_next(struct attn_queue *q, int node)
{
	int home = node > 0 && node < q->ngroups ? node : 0;

	for (int step = 0; step < q->ngroups; step++) {
		int k = (home + step) % q->ngroups, pos;

		if (atomic_load(&q->cursor[k]) >= q->group_first[k + 1])
			continue;
		pos = atomic_fetch_add(&q->cursor[k], 1);
		if (pos < q->group_first[k + 1])
			return q->order[pos];
	}
	return -1;
}

void attn_queue_free(struct attn_queue *q)
{
	free(q->order);
	free(q->group_first);
	free((void *)q->cursor);
	q->order = NULL;
	q->group_first = NULL;
	q->cursor = NULL;
}
