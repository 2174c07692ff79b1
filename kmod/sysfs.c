// SPDX-License-Identifier: GPL-2.0
/*
 * sysfs: knobs and counters of kvmm, one value per file, on the misc
 * device (so they exist before its uevent) and reachable as
 * /sys/kernel/kvmm. The whole list is documented in docs/abi.md.
 */
#include <linux/device.h>
#include <linux/kernel.h>
#include <linux/nodemask.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/sysfs.h>
#include "kvmm.h"

static ssize_t version_show(struct device *dev, struct device_attribute *attr,
			    char *buf)
{
	return sysfs_emit(buf, "%s\n", KVMM_VERSION_STRING);
}
static DEVICE_ATTR_RO(version);

static ssize_t abi_version_show(struct device *dev,
				struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%d\n", KVMM_ABI_VERSION);
}
static DEVICE_ATTR_RO(abi_version);

static ssize_t pool_limit_bytes_show(struct device *dev,
				     struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%llu\n", kvmm_pool_limit());
}

static ssize_t pool_limit_bytes_store(struct device *dev,
				      struct device_attribute *attr,
				      const char *buf, size_t len)
{
	u64 v;
	int err;

	err = kstrtou64(buf, 0, &v);
	if (err)
		return err;
	err = kvmm_pool_set_limit(v);
	return err ? err : len;
}
static DEVICE_ATTR_RW(pool_limit_bytes);

static ssize_t pool_used_bytes_show(struct device *dev,
				    struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%llu\n", kvmm_pool_used());
}
static DEVICE_ATTR_RO(pool_used_bytes);

static ssize_t default_chunk_bytes_show(struct device *dev,
					struct device_attribute *attr,
					char *buf)
{
	return sysfs_emit(buf, "%u\n", READ_ONCE(kvmm_default_chunk_bytes));
}

static ssize_t default_chunk_bytes_store(struct device *dev,
					 struct device_attribute *attr,
					 const char *buf, size_t len)
{
	u32 v;
	int err;

	err = kstrtou32(buf, 0, &v);
	if (err)
		return err;
	if (!kvmm_chunk_bytes_valid(v))
		return -EINVAL;
	WRITE_ONCE(kvmm_default_chunk_bytes, v);
	return len;
}
static DEVICE_ATTR_RW(default_chunk_bytes);

static ssize_t regions_show(struct device *dev, struct device_attribute *attr,
			    char *buf)
{
	return sysfs_emit(buf, "%u\n", READ_ONCE(kvmm_nr_regions));
}
static DEVICE_ATTR_RO(regions);

/* Watermarks: percent of pool_limit_bytes; low must stay below high. */
static DEFINE_MUTEX(kvmm_wmark_lock);

static ssize_t kvmm_wmark_store(const char *buf, size_t len, bool high)
{
	unsigned int v;
	int err = 0;

	err = kstrtouint(buf, 0, &v);
	if (err)
		return err;
	/* Check and set together, so concurrent writers keep low < high. */
	mutex_lock(&kvmm_wmark_lock);
	if (v > 100 || (high ? v <= kvmm_low_wmark_pct : v >= kvmm_high_wmark_pct))
		err = -EINVAL;
	else
		WRITE_ONCE(*(high ? &kvmm_high_wmark_pct : &kvmm_low_wmark_pct), v);
	mutex_unlock(&kvmm_wmark_lock);
	if (err)
		return err;
	if (high)
		kvmm_reclaim_kick();
	return len;
}

static ssize_t pool_high_wmark_pct_show(struct device *dev,
					struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", READ_ONCE(kvmm_high_wmark_pct));
}

static ssize_t pool_high_wmark_pct_store(struct device *dev,
					 struct device_attribute *attr,
					 const char *buf, size_t len)
{
	return kvmm_wmark_store(buf, len, true);
}
static DEVICE_ATTR_RW(pool_high_wmark_pct);

static ssize_t pool_low_wmark_pct_show(struct device *dev,
				       struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", READ_ONCE(kvmm_low_wmark_pct));
}

static ssize_t pool_low_wmark_pct_store(struct device *dev,
					struct device_attribute *attr,
					const char *buf, size_t len)
{
	return kvmm_wmark_store(buf, len, false);
}
static DEVICE_ATTR_RW(pool_low_wmark_pct);

static ssize_t refault_window_ms_show(struct device *dev,
				      struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", READ_ONCE(kvmm_refault_window_ms));
}

static ssize_t refault_window_ms_store(struct device *dev,
				       struct device_attribute *attr,
				       const char *buf, size_t len)
{
	unsigned int v;
	int err;

	err = kstrtouint(buf, 0, &v);
	if (err)
		return err;
	if (v > 3600 * 1000)
		return -EINVAL;
	WRITE_ONCE(kvmm_refault_window_ms, v);
	return len;
}
static DEVICE_ATTR_RW(refault_window_ms);

static ssize_t default_backing_show(struct device *dev,
				    struct device_attribute *attr, char *buf)
{
	return kvmm_store_default_show(buf);
}

static ssize_t default_backing_store(struct device *dev,
				     struct device_attribute *attr,
				     const char *buf, size_t len)
{
	char *path;
	int err;

	path = kstrndup(buf, len, GFP_KERNEL);
	if (!path)
		return -ENOMEM;
	strim(path);
	err = kvmm_store_set_default(strim(path));
	kfree(path);
	return err ? err : len;
}
static DEVICE_ATTR_RW(default_backing);

static ssize_t flash_bytes_show(struct device *dev,
				struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%lld\n", atomic64_read(&kvmm_flash_bytes));
}
static DEVICE_ATTR_RO(flash_bytes);


static struct attribute *kvmm_attrs[] = {
	&dev_attr_version.attr,
	&dev_attr_abi_version.attr,
	&dev_attr_pool_limit_bytes.attr,
	&dev_attr_pool_used_bytes.attr,
	&dev_attr_default_chunk_bytes.attr,
	&dev_attr_regions.attr,
	&dev_attr_pool_high_wmark_pct.attr,
	&dev_attr_pool_low_wmark_pct.attr,
	&dev_attr_refault_window_ms.attr,
	&dev_attr_default_backing.attr,
	&dev_attr_flash_bytes.attr,
	NULL,
};

static const struct attribute_group kvmm_group = {
	.attrs = kvmm_attrs,
};

/* stats/: module-wide counters since load. */
#define KVMM_STAT_ATTR(name)						\
static ssize_t name##_show(struct device *dev,				\
			   struct device_attribute *attr, char *buf)	\
{									\
	return sysfs_emit(buf, "%lld\n",				\
			  atomic64_read(&kvmm_stats.name));		\
}									\
static DEVICE_ATTR_RO(name)

KVMM_STAT_ATTR(faults);
KVMM_STAT_ATTR(zero_fills);
KVMM_STAT_ATTR(discards);
KVMM_STAT_ATTR(fault_failures);
KVMM_STAT_ATTR(ensure_failures);
KVMM_STAT_ATTR(bytes_read);
KVMM_STAT_ATTR(bytes_written);
KVMM_STAT_ATTR(regions_created);
KVMM_STAT_ATTR(evictions);
KVMM_STAT_ATTR(clean_drops);
KVMM_STAT_ATTR(flash_bytes_written);
KVMM_STAT_ATTR(prefetches);
KVMM_STAT_ATTR(fault_backs);
KVMM_STAT_ATTR(flash_bytes_read);
KVMM_STAT_ATTR(refaults);
KVMM_STAT_ATTR(csum_failures);
KVMM_STAT_ATTR(io_errors);
KVMM_STAT_ATTR(buffered_ios);
KVMM_STAT_ATTR(merged_ios);
KVMM_STAT_ATTR(merged_retries);
KVMM_STAT_ATTR(reclaim_runs);
KVMM_STAT_ATTR(shrinker_scans);
KVMM_STAT_ATTR(cow_copies);
KVMM_STAT_ATTR(shared_bytes);

static struct attribute *kvmm_stats_attrs[] = {
	&dev_attr_faults.attr,
	&dev_attr_zero_fills.attr,
	&dev_attr_discards.attr,
	&dev_attr_fault_failures.attr,
	&dev_attr_ensure_failures.attr,
	&dev_attr_bytes_read.attr,
	&dev_attr_bytes_written.attr,
	&dev_attr_regions_created.attr,
	&dev_attr_evictions.attr,
	&dev_attr_clean_drops.attr,
	&dev_attr_flash_bytes_written.attr,
	&dev_attr_prefetches.attr,
	&dev_attr_fault_backs.attr,
	&dev_attr_flash_bytes_read.attr,
	&dev_attr_refaults.attr,
	&dev_attr_csum_failures.attr,
	&dev_attr_io_errors.attr,
	&dev_attr_buffered_ios.attr,
	&dev_attr_merged_ios.attr,
	&dev_attr_merged_retries.attr,
	&dev_attr_reclaim_runs.attr,
	&dev_attr_shrinker_scans.attr,
	&dev_attr_cow_copies.attr,
	&dev_attr_shared_bytes.attr,
	NULL,
};

static const struct attribute_group kvmm_stats_group = {
	.name = "stats",
	.attrs = kvmm_stats_attrs,
};

/* nodes/: pool bytes placed on each NUMA node, node<N>_used_bytes. */
static struct dev_ext_attribute *node_attrs;
static char (*node_names)[24];

static ssize_t node_used_bytes_show(struct device *dev,
				    struct device_attribute *attr, char *buf)
{
	struct dev_ext_attribute *ea = container_of(attr, typeof(*ea), attr);

	return sysfs_emit(buf, "%llu\n",
			  kvmm_pool_node_used((long)ea->var));
}

static struct attribute_group kvmm_nodes_group = {
	.name = "nodes",
};

const struct attribute_group *kvmm_attr_groups[] = {
	&kvmm_group,
	&kvmm_stats_group,
	&kvmm_nodes_group,
	&kvmm_gpus_group,
	NULL,
};

int kvmm_sysfs_init(void)
{
	struct attribute **attrs;
	int nid;

	node_attrs = kcalloc(nr_node_ids, sizeof(*node_attrs), GFP_KERNEL);
	node_names = kcalloc(nr_node_ids, sizeof(*node_names), GFP_KERNEL);
	attrs = kcalloc(nr_node_ids + 1, sizeof(*attrs), GFP_KERNEL);
	if (!node_attrs || !node_names || !attrs) {
		kfree(attrs);
		kvmm_sysfs_exit();
		return -ENOMEM;
	}
	for (nid = 0; nid < nr_node_ids; nid++) {
		struct dev_ext_attribute *ea = &node_attrs[nid];

		snprintf(node_names[nid], sizeof(node_names[nid]),
			 "node%d_used_bytes", nid);
		sysfs_attr_init(&ea->attr.attr);
		ea->attr.attr.name = node_names[nid];
		ea->attr.attr.mode = 0444;
		ea->attr.show = node_used_bytes_show;
		ea->var = (void *)(long)nid;
		attrs[nid] = &ea->attr.attr;
	}
	kvmm_nodes_group.attrs = attrs;
	kvmm_ledger_sysfs_init();
	return 0;
}

void kvmm_sysfs_exit(void)
{
	kfree(kvmm_nodes_group.attrs);
	kvmm_nodes_group.attrs = NULL;
	kfree(node_names);
	kfree(node_attrs);
}
