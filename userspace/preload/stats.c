/* SPDX-License-Identifier: MIT */
/*
 * What the shim did: counters, one line per fallback reason (printed the
 * first time), the KVMM_PRELOAD_STATS summary at exit, and the registry
 * file that shows each routed region with its process and rule to
 * whoever reads it (KVMM_PRELOAD_REGISTRY, default /tmp/kvmm-preload-UID,
 * one file per process named by its pid). Nothing here allocates: messages
 * are formatted on the stack and written with write(2).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/internal.h"
#include "shim.h"

struct shim_stats shim_stats;
static atomic_bool shim_said[SHIM_FB_NR];
static const char *const shim_fb_names[SHIM_FB_NR] = {
    [SHIM_FB_NO_KVMM] = "no kvmm (kvmm_open failed)",
    [SHIM_FB_REGION] = "region not made (address space, pool)",
    [SHIM_FB_TABLE_FULL] = "range table full",
    [SHIM_FB_BAD_RULE] = "rules left out (did not parse)",
    [SHIM_FB_GPU] = "GPU allocation not backed (driver, memory, ledger)",
    [SHIM_FB_GPU_PARKED] = "GPU allocation for a parked tag",
};

static void shim_vsay(int fd, const char *fmt, va_list ap)
{
	char buf[1024];
	int n = snprintf(buf, sizeof(buf), "kvmm-preload: ");

	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	if (write(fd, buf, (size_t)n) < 0)
		return;
}

void shim_say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	shim_vsay(2, fmt, ap);
	va_end(ap);
}

void shim_fallback(enum shim_fallback why, const char *fmt, ...)
{
	va_list ap;

	atomic_fetch_add(&shim_stats.fallbacks[why], 1);
	if (atomic_exchange(&shim_said[why], true))
		return;
	va_start(ap, fmt);
	shim_vsay(2, fmt, ap);
	va_end(ap);
}

static void shim_out(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void shim_out(int fd, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0 && write(fd, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1) < 0)
		return;
}

/* Resident and flash bytes of every routed region now (shim_lock held). */
static void shim_totals_locked(uint64_t *resident, uint64_t *flash)
{
	struct kvmm_region_stats st;

	*resident = *flash = 0;
	for (struct shim_region *r = shim_regions; r; r = r->next) {
		if (r->kr && !kvmm_region_stats(r->kr, &st)) {
			*resident += st.resident_bytes;
			*flash += st.flash_bytes;
		}
	}
	if (*resident > atomic_load(&shim_stats.resident_peak))
		atomic_store(&shim_stats.resident_peak, *resident);
}

/* The summary, as "key: value" lines (docs/preload.md lists them). */
void shim_stats_print(int fd)
{
	struct shim_stats *s = &shim_stats;
	uint64_t resident, flash, fb = 0;
	char comm[64];
	int mode = 0;

	shim_depth++;
	pthread_mutex_lock(&shim_lock);
	shim_totals_locked(&resident, &flash);
	for (uint32_t i = 0; i < SHIM_MAX_POOLS; i++)
		mode = shim_pools[i].ctx ? shim_pools[i].mode : mode;
	pthread_mutex_unlock(&shim_lock);
	for (int i = 0; i < SHIM_FB_NR; i++)
		fb += atomic_load(&s->fallbacks[i]);
	shim_out(fd, "kvmm-preload: pid %d (%s), %s mode\n", (int)getpid(),
		 kvmm_proc_comm(comm, sizeof(comm)),
		 mode == KVMM_MODE_KERNEL ? "kernel"
		 : mode == KVMM_MODE_USER ? "user"
					  : "no");
	shim_out(fd, "  routed_allocations: %llu\n", (unsigned long long)atomic_load(&s->routed));
	shim_out(fd, "  routed_bytes: %llu\n", (unsigned long long)atomic_load(&s->routed_bytes));
	shim_out(fd, "  freed: %llu\n", (unsigned long long)atomic_load(&s->freed));
	shim_out(fd, "  reserved_bytes: %llu\n",
		 (unsigned long long)atomic_load(&s->reserved_bytes));
	shim_out(fd, "  resident_bytes: %llu\n", (unsigned long long)resident);
	shim_out(fd, "  resident_peak_bytes: %llu\n",
		 (unsigned long long)atomic_load(&s->resident_peak));
	shim_out(fd, "  flash_bytes: %llu\n", (unsigned long long)flash);
	shim_out(fd, "  zero_calls: %llu\n", (unsigned long long)atomic_load(&s->zero_calls));
	shim_out(fd, "  zero_elided_bytes: %llu\n",
		 (unsigned long long)atomic_load(&s->zero_elided_bytes));
	shim_out(fd, "  zero_written_bytes: %llu\n",
		 (unsigned long long)atomic_load(&s->zero_written_bytes));
	shim_out(fd, "  zero_discarded_chunks: %llu\n",
		 (unsigned long long)atomic_load(&s->zero_discarded_chunks));
	shim_out(fd, "  madvise_chunks: %llu\n",
		 (unsigned long long)atomic_load(&s->madvise_chunks));
	shim_out(fd, "  prefaults: %llu\n", (unsigned long long)atomic_load(&s->prefaults));
	shim_out(fd, "  reallocs_copied: %llu\n",
		 (unsigned long long)atomic_load(&s->reallocs_copied));
	shim_out(fd, "  evicted_chunks: %llu\n",
		 (unsigned long long)atomic_load(&s->evicted_chunks));
	shim_gpu_stats_print(fd);
	shim_out(fd, "  fallbacks: %llu\n", (unsigned long long)fb);
	for (int i = 0; i < SHIM_FB_NR; i++) {
		if (atomic_load(&s->fallbacks[i]))
			shim_out(fd, "  fallback: %llu %s\n",
				 (unsigned long long)atomic_load(&s->fallbacks[i]),
				 shim_fb_names[i]);
	}
	shim_depth--;
}

static void shim_stats_exit(void)
{
	const char *v = getenv("KVMM_PRELOAD_STATS");

	if (v && v[0] == '/') {
		int fd = open(v, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

		if (fd >= 0) {
			shim_stats_print(fd);
			close(fd);
		}
	} else if (v && strcmp(v, "0") && v[0]) {
		shim_stats_print(2);
	}
	shim_registry_remove();
}

void shim_stats_atexit(void)
{
	atexit(shim_stats_exit);
}

/* ----------------------------------------------------------- registry */

const char *shim_registry_dir(char *buf, size_t len)
{
	return kvmm_registry_dir("KVMM_PRELOAD_REGISTRY", "kvmm-preload", buf, len);
}

static const char *const shim_call_names[] = {"", "malloc", "aligned", "", "mmap", "", "", ""};

void shim_registry_write_locked(void)
{
	char dir[SHIM_PATH_MAX], name[24], comm[64];
	struct kvmm_registry_file f;
	uint64_t resident, flash;
	int fd, mode = 0;

	if (!shim_regions && !atomic_load(&shim_stats.routed) &&
	    !atomic_load(&shim_stats.gpu_routed))
		return;
	if (!shim_registry_dir(dir, sizeof(dir)))
		return;
	shim_depth++;
	shim_totals_locked(&resident, &flash);
	snprintf(name, sizeof(name), "%d", (int)getpid());
	if (kvmm_registry_begin(&f, dir, name)) {
		shim_depth--;
		return;
	}
	fd = f.fd;
	for (uint32_t i = 0; i < SHIM_MAX_POOLS; i++)
		mode = shim_pools[i].ctx ? shim_pools[i].mode : mode;
	shim_out(fd,
		 "process pid=%d start=%llu comm=%s mode=%s routed=%llu reserved_bytes=%llu "
		 "resident_bytes=%llu resident_peak_bytes=%llu flash_bytes=%llu "
		 "zero_elided_bytes=%llu fallbacks=%llu\n",
		 (int)getpid(), kvmm_proc_start_time(), kvmm_proc_comm(comm, sizeof(comm)),
		 mode == KVMM_MODE_KERNEL ? "kernel"
		 : mode == KVMM_MODE_USER ? "user"
					  : "none",
		 (unsigned long long)atomic_load(&shim_stats.routed),
		 (unsigned long long)atomic_load(&shim_stats.reserved_bytes),
		 (unsigned long long)resident,
		 (unsigned long long)atomic_load(&shim_stats.resident_peak),
		 (unsigned long long)flash,
		 (unsigned long long)atomic_load(&shim_stats.zero_elided_bytes),
		 (unsigned long long)(atomic_load(&shim_stats.fallbacks[0]) +
				      atomic_load(&shim_stats.fallbacks[1]) +
				      atomic_load(&shim_stats.fallbacks[2])));
	for (struct shim_region *r = shim_regions; r; r = r->next) {
		struct kvmm_region_stats st = {0};

		if (r->kr)
			kvmm_region_stats(r->kr, &st);
		shim_out(fd,
			 "region id=%u kvmm_id=%u rule=%s pool=%s call=%s base=%p bytes=%llu "
			 "asked_bytes=%llu chunk_bytes=%u resident_bytes=%llu flash_bytes=%llu "
			 "node=%d priority=%u\n",
			 r->id, st.id, shim_cfg.rules[r->rule].name, r->pool->cfg.name,
			 shim_call_names[r->call & 7], (void *)r->base,
			 (unsigned long long)r->bytes, (unsigned long long)r->user_bytes,
			 r->chunk_bytes, (unsigned long long)st.resident_bytes,
			 (unsigned long long)st.flash_bytes, r->numa_node, r->priority);
	}
	shim_gpu_registry_write(fd);
	kvmm_registry_end(&f, true);
	shim_depth--;
}

void shim_registry_remove(void)
{
	char dir[SHIM_PATH_MAX], name[24];

	if (!shim_registry_dir(dir, sizeof(dir)))
		return;
	snprintf(name, sizeof(name), "%d", (int)getpid());
	kvmm_registry_remove(dir, name);
}
