/* SPDX-License-Identifier: MIT */
/*
 * kvmmctl: watch and tune kvmm.ko. One file per subcommand family:
 *   status.c (status), regions.c (regions, top), knobs.c (get, set, the
 *   knob table), metrics.c (Prometheus text), sysfs.c (reading and writing
 *   /sys/kernel/kvmm), format.c (store headers), preload.c (the
 *   LD_PRELOAD shim's registry), remote.c (the remote tier's counters),
 *   registry.c (reading the files both come from), main.c (options and
 *   dispatch).
 */
#ifndef KVMMCTL_H
#define KVMMCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/kvmm.h>

/* Exit codes. */
#define CTL_OK	     0
#define CTL_ERR	     1 /* the operation failed */
#define CTL_USAGE    2 /* bad command line */
#define CTL_NOMODULE 3 /* kvmm.ko is not loaded */

struct ctl {
	bool json;
	const char *sysfs; /* /sys/kernel/kvmm, or $KVMMCTL_SYSFS */
	const char *dev;   /* /dev/kvmm, or $KVMMCTL_DEV */
};

/* sysfs.c */
bool ctl_loaded(const struct ctl *c);
/* Reads one value, without its trailing newline. 0 or -errno. */
int ctl_read(const struct ctl *c, const char *knob, char *buf, size_t len);
int ctl_read_u64(const struct ctl *c, const char *knob, uint64_t *v);
/* Whether the knob's file exists. */
bool ctl_exists(const struct ctl *c, const char *knob);
/* Writes @val to @knob. 0 or the kernel's -errno. */
int ctl_write(const struct ctl *c, const char *knob, const char *val);
/* Entries of a sysfs subdirectory, sorted; returns the count (<= max) or -errno. */
int ctl_list(const struct ctl *c, const char *dir, char names[][64], int max);
/* Whether kvmm.ko is listed in /proc/modules, and whether this kernel can load modules. */
bool ctl_in_proc_modules(void);
bool ctl_modules_supported(void);
/* Path of a kvmm.ko modprobe would find for the running kernel, or NULL. */
const char *ctl_module_file(char *buf, size_t len);
/* Whether userfaultfd (libkvmm's user mode) is usable by this process. */
bool ctl_userfaultfd_usable(void);

/* format.c */
int cmd_format(const struct ctl *c, int argc, char **argv);

/* regions.c: fills *infos (malloc'ed) with the live regions; count or -errno. */
int ctl_region_list(const struct ctl *c, struct kvmm_region_info **infos);
int cmd_regions(const struct ctl *c, int argc, char **argv);
int cmd_top(const struct ctl *c, int argc, char **argv);

/*
 * preload.c: the LD_PRELOAD shim's regions from its registry files, as a
 * table (@w NULL) or a "preload" JSON array; with !@print only counted.
 * Returns the number of live processes found.
 */
struct jw;
int ctl_preload_regions(struct jw *w, bool print);

/*
 * registry.c: files of key=value lines that libkvmm users write (see the
 * file). reg_word: the value of @key in @line ("" if absent), cut to @len;
 * reg_line: the line of @text that starts with "@tag ", or NULL.
 * ctl_registry_each calls @fn for each file in $@env or /tmp/@prefix-UID
 * (every user's, for root) named PID or PID-N, with its pid and text.
 */
typedef void (*ctl_registry_fn)(void *arg, const char *pid, const char *text);
const char *reg_word(const char *line, const char *key, char *buf, size_t len);
uint64_t reg_u64(const char *line, const char *key);
const char *reg_line(const char *text, const char *tag);
bool ctl_registry_alive(const char *pid, unsigned long long start);
void ctl_registry_each(const char *env, const char *prefix, ctl_registry_fn fn, void *arg);

/*
 * remote.c: the remote tier's handles. cmd_remote prints them; the
 * metrics as Prometheus text (every live handle, labelled by pid).
 */
int cmd_remote(const struct ctl *c, int argc, char **argv);
void ctl_remote_metrics(void);

/* knobs.c */
struct knob {
	const char *name; /* relative to /sys/kernel/kvmm */
	bool writable;
	const char *unit; /* "bytes", "percent", "ms", "count", "path", "" */
	const char *help; /* meaning, and for writable knobs what is accepted */
};
/* The knob named @name (also gpus/gpuN_* and nodes/nodeN_*), or NULL. */
const struct knob *knob_find(const char *name);
/* Description of a counter in stats/, or a generic one. */
const char *knob_counter_help(const char *counter);
int cmd_get(const struct ctl *c, int argc, char **argv);
int cmd_set(const struct ctl *c, int argc, char **argv);
int cmd_knobs(const struct ctl *c, int argc, char **argv);

/* status.c */
int cmd_status(const struct ctl *c, int argc, char **argv);

/* metrics.c; family prints # HELP and # TYPE, label_value escapes a label. */
int cmd_metrics(const struct ctl *c, int argc, char **argv);
void ctl_metric_family(const char *name, const char *type, const char *help);
void ctl_label_value(const char *s);

/* park.c: GPU memory of a process under libkvmm-preload.so (no module needed). */
int cmd_park(const struct ctl *c, int argc, char **argv);
int cmd_unpark(const struct ctl *c, int argc, char **argv);

/* Prints "kvmmctl: kvmm.ko is not loaded ..." to stderr; returns CTL_NOMODULE. */
int ctl_no_module(const struct ctl *c);

#endif
