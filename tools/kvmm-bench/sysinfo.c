/* SPDX-License-Identifier: MIT */
/* The machine a result was measured on. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvmm.h>

#include "bench.h"

static void cpu_model(char *buf, size_t len)
{
	char line[256];
	FILE *f = fopen("/proc/cpuinfo", "re");

	snprintf(buf, len, "unknown");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *p = strchr(line, ':');

		if (!strncmp(line, "model name", 10) && p) {
			p += 2;
			p[strcspn(p, "\n")] = 0;
			snprintf(buf, len, "%s", p);
			break;
		}
	}
	fclose(f);
}

static uint64_t ram_bytes(void)
{
	unsigned long long kb = 0;
	char line[256];
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "MemTotal: %llu kB", &kb) == 1)
			break;
	}
	fclose(f);
	return kb * 1024;
}

void bench_sys_get(struct bench_sys *s)
{
	struct kvmm_version v = {0};
	struct utsname u;
	time_t t = time(NULL);
	int fd;

	memset(s, 0, sizeof(*s));
	cpu_model(s->cpu, sizeof(s->cpu));
	s->cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
	s->ram_bytes = ram_bytes();
	if (!uname(&u))
		snprintf(s->kernel, sizeof(s->kernel), "%s %s", u.sysname, u.release);
	strftime(s->date, sizeof(s->date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
	fd = open(KVMM_DEVICE_PATH, O_RDWR | O_CLOEXEC);
	if (fd >= 0 && !ioctl(fd, KVMM_IOC_VERSION, &v)) {
		snprintf(s->kvmm_module, sizeof(s->kvmm_module),
			 "loaded, version %u.%u.%u (abi %u)", v.major, v.minor, v.patch,
			 v.abi_version);
		snprintf(s->kvmm_mode, sizeof(s->kvmm_mode), "%s",
			 v.abi_version == KVMM_ABI_VERSION ? "kernel" : "user");
	} else {
		snprintf(s->kvmm_module, sizeof(s->kvmm_module), "not loaded");
		snprintf(s->kvmm_mode, sizeof(s->kvmm_mode), "user");
	}
	if (fd >= 0)
		close(fd);
}

void bench_sys_json(struct jw *w, const struct bench_sys *s)
{
	jw_obj(w, "machine");
	jw_str(w, "cpu", s->cpu);
	jw_i64(w, "cores", s->cores);
	jw_u64(w, "ram_bytes", s->ram_bytes);
	jw_str(w, "kernel", s->kernel);
	jw_str(w, "date_utc", s->date);
	jw_str(w, "kvmm_module", s->kvmm_module);
	jw_str(w, "kvmm_mode", s->kvmm_mode);
	jw_end(w);
}

void bench_sys_print(FILE *f, const struct bench_sys *s)
{
	fprintf(f, "machine: %s, %d cores, %.1f GiB RAM; %s; kvmm.ko %s (libkvmm %s mode); %s\n",
		s->cpu, s->cores, (double)s->ram_bytes / (1u << 30), s->kernel, s->kvmm_module,
		s->kvmm_mode, s->date);
}
