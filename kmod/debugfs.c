// SPDX-License-Identifier: GPL-2.0
/*
 * Test hooks, in debugfs (/sys/kernel/debug/kvmm/, root only) so that they
 * are not part of the production sysfs interface:
 *   fail_ios        the next N flash I/Os fail with -EIO ...
 *   fail_skip       ... after this many have passed (while fail_ios is set)
 *   fail_merged     the next N flash I/Os that move several chunks fail
 *                   as a whole, so that each chunk is tried again alone
 *   force_buffered  stores opened while it is nonzero use buffered I/O even
 *                   where the file allows direct I/O (tests that path on a
 *                   disk filesystem)
 * Without debugfs the hooks do not exist and nothing else changes.
 */
#include <linux/debugfs.h>
#include "kvmm.h"

atomic_t kvmm_fail_ios;
atomic_t kvmm_fail_skip;
atomic_t kvmm_fail_merged;
atomic_t kvmm_force_buffered;

static struct dentry *kvmm_debugfs_dir;

void kvmm_debugfs_init(void)
{
	kvmm_debugfs_dir = debugfs_create_dir("kvmm", NULL);
	debugfs_create_atomic_t("fail_ios", 0600, kvmm_debugfs_dir,
				&kvmm_fail_ios);
	debugfs_create_atomic_t("fail_skip", 0600, kvmm_debugfs_dir,
				&kvmm_fail_skip);
	debugfs_create_atomic_t("fail_merged", 0600, kvmm_debugfs_dir,
				&kvmm_fail_merged);
	debugfs_create_atomic_t("force_buffered", 0600, kvmm_debugfs_dir,
				&kvmm_force_buffered);
}

void kvmm_debugfs_exit(void)
{
	debugfs_remove(kvmm_debugfs_dir);
}
