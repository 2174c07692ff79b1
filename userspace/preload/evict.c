/* SPDX-License-Identifier: MIT */
/*
 * The pool thread: keeps each pool under its limit (limit=), evicts every
 * routed region on request (KVMM_PRELOAD_SIGNAL, e.g. USR2), samples the
 * resident peak and keeps the registry file current. It starts with the
 * first routed region (at start when an evict signal is set), unless there
 * is nothing for it to do (no limit, no signal, KVMM_PRELOAD_REGISTRY=none).
 *
 * User mode: libkvmm's evict copies a chunk out and then drops its pages,
 * so a write that lands in between would be lost. The thread therefore
 * opens a write window first: the run of chunks it evicts is made
 * read-only, a thread that writes there takes SIGSEGV, and the shim's
 * handler waits until the window closes and returns, so the write is
 * retried and faults the chunk back. Reads go on during the window. A
 * SIGSEGV anywhere else goes to the handler that was there before. If the
 * program replaces the shim's handler, user-mode eviction stops (said
 * once). Kernel mode needs none of this: kvmm.ko unmaps before it writes.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "shim.h"

#define SHIM_EVICT_RUN 16 /* chunks per window */

static atomic_bool shim_thread_started;
static int shim_wake_fd = -1;
static atomic_int shim_evict_req;
static int shim_evict_sig;

/* The write window: odd epoch = open over [lo, hi). */
static _Atomic uintptr_t shim_wp_lo, shim_wp_hi;
static atomic_uint shim_wp_epoch;
static __thread unsigned shim_seg_epoch __attribute__((tls_model("initial-exec")));
static __thread uintptr_t shim_seg_addr __attribute__((tls_model("initial-exec")));
static struct sigaction shim_old_segv;
static atomic_bool shim_segv_installed, shim_segv_lost;

static void shim_segv(int sig, siginfo_t *info, void *uc)
{
	uintptr_t a = (uintptr_t)info->si_addr;
	unsigned e = atomic_load(&shim_wp_epoch);

	if ((e & 1) && a >= atomic_load(&shim_wp_lo) && a < atomic_load(&shim_wp_hi)) {
		while (atomic_load(&shim_wp_epoch) == e)
			sched_yield();
		return; /* the write runs again and faults the chunk back */
	}
	if (shim_ranges_maybe(a, 1) && shim_ranges_find(a, 1) &&
	    !(shim_seg_epoch == e && shim_seg_addr == a)) {
		/* A window that closed before we looked: retry once. */
		shim_seg_epoch = e;
		shim_seg_addr = a;
		return;
	}
	if (shim_old_segv.sa_flags & SA_SIGINFO) {
		shim_old_segv.sa_sigaction(sig, info, uc);
	} else if (shim_old_segv.sa_handler == SIG_DFL || shim_old_segv.sa_handler == SIG_IGN) {
		struct sigaction dfl;

		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		sigaction(SIGSEGV, &dfl, NULL); /* the fault repeats and ends the program */
	} else {
		shim_old_segv.sa_handler(sig);
	}
}

void shim_evict_install_segv(void)
{
	struct sigaction sa;

	if (atomic_exchange(&shim_segv_installed, true))
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = shim_segv;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &shim_old_segv);
}

static bool shim_segv_ours(void)
{
	struct sigaction cur;

	if (sigaction(SIGSEGV, NULL, &cur) || !(cur.sa_flags & SA_SIGINFO) ||
	    cur.sa_sigaction != shim_segv) {
		if (!atomic_exchange(&shim_segv_lost, true))
			shim_say("the program replaced the SIGSEGV handler: user-mode eviction "
				 "stops (pool limits are no longer kept)");
		return false;
	}
	return true;
}

/* Evicts chunks [first, first + nr) of @r (shim_lock held). */
static int shim_evict_run(struct shim_region *r, uint64_t first, uint64_t nr)
{
	char *p = r->base + first * r->chunk_bytes;
	uint64_t len = nr * r->chunk_bytes;
	bool user = r->pool->mode == KVMM_MODE_USER;
	int ret;

	if (user) {
		shim_evict_install_segv();
		if (!shim_segv_ours())
			return -EPERM;
		atomic_store(&shim_wp_lo, (uintptr_t)p);
		atomic_store(&shim_wp_hi, (uintptr_t)p + len);
		atomic_fetch_add(&shim_wp_epoch, 1);
		if (mprotect(p, len, PROT_READ)) {
			atomic_fetch_add(&shim_wp_epoch, 1);
			return -errno;
		}
	}
	ret = kvmm_region_evict(r->kr, first * r->chunk_bytes, len);
	if (user) {
		mprotect(p, len, PROT_READ | PROT_WRITE);
		atomic_fetch_add(&shim_wp_epoch, 1);
	}
	return ret;
}

/*
 * Evicts resident, unpinned chunks of @r from its hand on, until @want
 * bytes went (UINT64_MAX: all of them). Returns the bytes evicted.
 */
static uint64_t shim_evict_region(struct shim_region *r, uint64_t want)
{
	uint64_t nr = r->bytes / r->chunk_bytes, done = 0, seen = 0;
	uint8_t st[SHIM_EVICT_RUN];

	if (!r->kr || !r->pool->flash_ok)
		return 0;
	while (seen < nr && done < want) {
		uint64_t c = r->evict_hand % nr,
			 k = nr - c < SHIM_EVICT_RUN ? nr - c : SHIM_EVICT_RUN;
		uint64_t res = 0, first = k, last = 0;
		int ret;

		if (kvmm_region_query(r->kr, c, k, st))
			break;
		for (uint64_t i = 0; i < k; i++) {
			/* Kernel mode adds flags (DIRTY: no flash copy yet) to the state. */
			if ((st[i] & KVMM_STATE_MASK) == KVMM_STATE_RESIDENT &&
			    !(st[i] & KVMM_STATE_IN_FLIGHT) && res * r->chunk_bytes < want - done) {
				res++;
				first = i < first ? i : first;
				last = i + 1;
			}
		}
		if (res) {
			ret = shim_evict_run(r, c + first, last - first);
			if (ret) {
				r->pool->evict_failures++;
				if (r->pool->evict_failures == 1)
					shim_say("pool '%s': evict: %s", r->pool->cfg.name,
						 kvmm_strerror(ret));
				if (ret == -EOPNOTSUPP || ret == -ENODEV || ret == -EPERM)
					r->pool->flash_ok = false;
				break;
			}
			done += res * r->chunk_bytes;
			atomic_fetch_add(&shim_stats.evicted_chunks, res);
		}
		r->evict_hand = c + (res ? last : k);
		seen += res ? last : k;
	}
	r->pool->evicted_bytes += done;
	return done;
}

int shim_evict_all(void)
{
	pthread_mutex_lock(&shim_lock);
	for (struct shim_region *r = shim_regions; r; r = r->next) {
		r->evict_hand = 0;
		shim_evict_region(r, UINT64_MAX);
	}
	shim_registry_write_locked();
	pthread_mutex_unlock(&shim_lock);
	return 0;
}

/* Keeps @p under its limit: down to 7/8 of it, lowest priority first. */
static void shim_pool_keep(struct shim_pool *p)
{
	uint64_t resident = 0, low = p->cfg.limit_bytes / 8 * 7;

	for (struct shim_region *r = shim_regions; r; r = r->next)
		resident += r->pool == p ? shim_region_resident(r) : 0;
	if (resident > p->resident_peak)
		p->resident_peak = resident;
	if (resident <= p->cfg.limit_bytes || !p->flash_ok)
		return;
	p->limit_evictions++;
	while (resident > low) {
		struct shim_region *victim = NULL;
		uint64_t got;

		for (struct shim_region *r = shim_regions; r; r = r->next) {
			if (r->pool == p && r->kr && (!victim || r->priority < victim->priority) &&
			    shim_region_resident(r))
				victim = r;
		}
		if (!victim)
			break;
		got = shim_evict_region(victim, resident - low);
		if (!got)
			break;
		resident -= got < resident ? got : resident;
	}
}

static uint64_t shim_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void *shim_pool_thread(void *arg)
{
	struct pollfd pfd = {.fd = shim_wake_fd, .events = POLLIN};
	bool limits = false;
	uint64_t last_write = 0;

	(void)arg;
	shim_depth = 1; /* everything this thread allocates is the shim's own */
	for (uint32_t i = 0; i < shim_cfg.nr_pools; i++)
		limits |= shim_pools[i].cfg.limit_bytes != 0;
	for (;;) {
		uint64_t v;

		if (poll(&pfd, 1, limits ? 20 : 500) > 0 &&
		    read(shim_wake_fd, &v, sizeof(v)) == sizeof(v))
			atomic_store(&shim_evict_req, 1);
		if (atomic_exchange(&shim_evict_req, 0))
			shim_evict_all();
		pthread_mutex_lock(&shim_lock);
		for (uint32_t i = 0; i < shim_cfg.nr_pools; i++) {
			if (shim_pools[i].ctx && shim_pools[i].cfg.limit_bytes)
				shim_pool_keep(&shim_pools[i]);
		}
		if (shim_now_ms() - last_write >= 500) {
			shim_registry_write_locked(); /* also samples the resident peak */
			last_write = shim_now_ms();
		}
		pthread_mutex_unlock(&shim_lock);
	}
	return NULL;
}

static void shim_evict_signal(int sig)
{
	uint64_t one = 1;
	int saved = errno;

	(void)sig;
	atomic_store(&shim_evict_req, 1);
	if (shim_wake_fd >= 0 && write(shim_wake_fd, &one, sizeof(one)) < 0)
		(void)0;
	errno = saved;
}

static int shim_signal_number(const char *s)
{
	char *end;
	long n;

	if (!strncmp(s, "SIG", 3))
		s += 3;
	if (!strcmp(s, "USR1"))
		return SIGUSR1;
	if (!strcmp(s, "USR2"))
		return SIGUSR2;
	n = strtol(s, &end, 10);
	return *s && !*end && n > 0 && n < NSIG && n != SIGKILL && n != SIGSTOP && n != SIGSEGV
		   ? (int)n
		   : -1;
}

/* Called once per process (and again in a forked child). */
static void shim_evict_setup(void)
{
	const char *s = getenv("KVMM_PRELOAD_SIGNAL");
	struct sigaction sa;

	shim_wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!s || !*s)
		return;
	shim_evict_sig = shim_signal_number(s);
	if (shim_evict_sig < 0) {
		shim_say("KVMM_PRELOAD_SIGNAL=%s: not a signal (USR1, USR2 or a number); no "
			 "evict signal",
			 s);
		shim_evict_sig = 0;
		return;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = shim_evict_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(shim_evict_sig, &sa, NULL);
}

static pthread_once_t shim_evict_once = PTHREAD_ONCE_INIT;

void shim_evict_start(void)
{
	pthread_t t;
	pthread_attr_t attr;
	bool want = false;

	pthread_once(&shim_evict_once, shim_evict_setup);
	for (uint32_t i = 0; i < shim_cfg.nr_pools; i++)
		want |= shim_pools[i].cfg.limit_bytes != 0;
	{
		char dir[SHIM_PATH_MAX];

		/* the registry file's numbers are kept current too */
		want |= shim_evict_sig != 0 || shim_registry_dir(dir, sizeof(dir)) != NULL;
	}
	if (!want || shim_wake_fd < 0 || atomic_exchange(&shim_thread_started, true))
		return;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, shim_pool_thread, NULL)) {
		shim_say("cannot start the pool thread: pool limits are not kept");
		atomic_store(&shim_thread_started, false);
	}
	pthread_attr_destroy(&attr);
}

void shim_evict_fork_child(void)
{
	/* The thread is the parent's; the eventfd too (a child's signal must
	 * not wake the parent). The child starts its own when it routes. */
	if (shim_wake_fd >= 0)
		close(shim_wake_fd);
	shim_wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	atomic_store(&shim_thread_started, false);
	atomic_store(&shim_evict_req, 0);
}
