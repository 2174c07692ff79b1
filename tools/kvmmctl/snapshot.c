/* SPDX-License-Identifier: MIT */
/* Reads kvmm.ko's sysfs and /dev/kvmm into a struct snapshot. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "snapshot.h"

static void snap_u64(const struct ctl *c, const char *knob, uint64_t *v)
{
	if (ctl_read_u64(c, knob, v))
		*v = 0;
}

static void snap_dev(const struct ctl *c, struct snapshot *s)
{
	int fd;

	s->dev_present = access(c->dev, F_OK) == 0;
	fd = open(c->dev, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		s->dev_err = -errno;
		return;
	}
	memset(&s->ioc_version, 0, sizeof(s->ioc_version));
	s->have_ioc_version = ioctl(fd, KVMM_IOC_VERSION, &s->ioc_version) == 0;
	close(fd);
}

static void snap_indexed(const struct ctl *c, struct snapshot *s)
{
	char names[SNAP_MAX_ENTRIES][64], knob[160];
	int n = ctl_list(c, "nodes", names, SNAP_MAX_ENTRIES);

	for (int i = 0; i < n; i++) {
		struct snap_entry *e = &s->nodes[s->nr_nodes];

		if (sscanf(names[i], "node%63[0-9]_used_bytes", e->name) != 1)
			continue;
		snprintf(knob, sizeof(knob), "nodes/%.63s", names[i]);
		snap_u64(c, knob, &e->value);
		s->nr_nodes++;
	}
	for (int g = 0; g < KVMM_MAX_GPUS; g++) {
		uint64_t budget, charged;

		snprintf(knob, sizeof(knob), "gpus/gpu%d_budget_bytes", g);
		if (ctl_read_u64(c, knob, &budget))
			continue;
		snprintf(knob, sizeof(knob), "gpus/gpu%d_charged_bytes", g);
		snap_u64(c, knob, &charged);
		s->gpus[s->nr_gpus].index = g;
		s->gpus[s->nr_gpus].budget_bytes = budget;
		s->gpus[s->nr_gpus].charged_bytes = charged;
		s->nr_gpus++;
	}
	n = ctl_list(c, "stats", names, SNAP_MAX_ENTRIES);
	for (int i = 0; i < n; i++) {
		struct snap_entry *e = &s->counters[s->nr_counters];

		snprintf(knob, sizeof(knob), "stats/%.63s", names[i]);
		if (ctl_read_u64(c, knob, &e->value))
			continue;
		snprintf(e->name, sizeof(e->name), "%.63s", names[i]);
		s->nr_counters++;
	}
}

void snapshot_take(const struct ctl *c, struct snapshot *s)
{
	memset(s, 0, sizeof(*s));
	s->loaded = ctl_loaded(c);
	s->in_proc_modules = ctl_in_proc_modules();
	s->modules_supported = ctl_modules_supported();
	s->userfaultfd = ctl_userfaultfd_usable();
	if (!ctl_module_file(s->module_file, sizeof(s->module_file)))
		s->module_file[0] = 0;
	snap_dev(c, s);
	if (s->have_ioc_version && s->ioc_version.abi_version == KVMM_ABI_VERSION)
		s->mode = "kernel";
	else if (s->userfaultfd)
		s->mode = "user";
	else
		s->mode = "unavailable";
	if (!s->loaded)
		return;
	ctl_read(c, "version", s->version, sizeof(s->version));
	snap_u64(c, "abi_version", &s->abi_version);
	snap_u64(c, "pool_limit_bytes", &s->pool_limit_bytes);
	snap_u64(c, "pool_used_bytes", &s->pool_used_bytes);
	snap_u64(c, "pool_high_wmark_pct", &s->high_wmark_pct);
	snap_u64(c, "pool_low_wmark_pct", &s->low_wmark_pct);
	snap_u64(c, "default_chunk_bytes", &s->default_chunk_bytes);
	snap_u64(c, "regions", &s->regions);
	snap_u64(c, "refault_window_ms", &s->refault_window_ms);
	snap_u64(c, "flash_bytes", &s->flash_bytes);
	if (ctl_read(c, "default_backing", s->default_backing, sizeof(s->default_backing)))
		s->default_backing[0] = 0;
	snap_indexed(c, s);
}

uint64_t snapshot_counter(const struct snapshot *s, const char *name)
{
	for (int i = 0; i < s->nr_counters; i++) {
		if (!strcmp(s->counters[i].name, name))
			return s->counters[i].value;
	}
	return 0;
}
