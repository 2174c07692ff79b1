// SPDX-License-Identifier: GPL-2.0
/*
 * kvmm: demand-paged, virtually contiguous KV-cache memory.
 *
 * How userspace uses it:
 *
 *	int dev = open("/dev/kvmm", O_RDWR);
 *	struct kvmm_region_create c = { .size = 1UL << 30 };
 *	ioctl(dev, KVMM_IOC_REGION_CREATE, &c);
 *	char *kv = mmap(NULL, c.size, PROT_READ | PROT_WRITE, MAP_SHARED, c.fd, 0);
 *	kv[0] = 1;	// first touch: one zeroed chunk is allocated and mapped
 *
 * This file holds module init/exit, parameters and the /dev/kvmm device.
 */
#include <linux/cred.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mount.h>
#include <linux/namei.h>
#include <linux/poll.h>
#include <linux/uaccess.h>
#include "compat.h"
#include "kvmm.h"

static unsigned long pool_limit_bytes;
module_param(pool_limit_bytes, ulong, 0444);
MODULE_PARM_DESC(pool_limit_bytes,
		 "DRAM pool limit in bytes (0: half of RAM); changeable in sysfs");

unsigned int kvmm_default_chunk_bytes = 64 * 1024;
module_param_named(default_chunk_bytes, kvmm_default_chunk_bytes, uint, 0444);
MODULE_PARM_DESC(default_chunk_bytes,
		 "chunk size of regions created with chunk_bytes 0 (power of two, PAGE_SIZE..2 MiB; default 64 KiB)");

static int dev_gid = -1;
module_param(dev_gid, int, 0444);
MODULE_PARM_DESC(dev_gid, "group owning /dev/kvmm (mode 0660; default: root)");

struct kvmm_stats kvmm_stats;

bool kvmm_chunk_bytes_valid(u64 bytes)
{
	return bytes >= PAGE_SIZE && bytes <= KVMM_CHUNK_MAX_BYTES &&
	       is_power_of_2(bytes);
}

static long kvmm_dev_version(void __user *uarg)
{
	struct kvmm_version v = {
		.abi_version = KVMM_ABI_VERSION,
		.major = KVMM_VERSION_MAJOR,
		.minor = KVMM_VERSION_MINOR,
		.patch = KVMM_VERSION_PATCH,
		.page_size = PAGE_SIZE,
		.default_chunk_bytes = READ_ONCE(kvmm_default_chunk_bytes),
	};

	return copy_to_user(uarg, &v, sizeof(v)) ? -EFAULT : 0;
}

static long kvmm_dev_ioctl(struct file *file, unsigned int cmd,
			   unsigned long arg)
{
	struct kvmm_client *cl = file->private_data;
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case KVMM_IOC_VERSION:
		return kvmm_dev_version(uarg);
	case KVMM_IOC_REGION_CREATE:
		return kvmm_region_create(uarg);
	case KVMM_IOC_GPU_CHARGE:
		return kvmm_ledger_ioctl(cl, uarg, true);
	case KVMM_IOC_GPU_UNCHARGE:
		return kvmm_ledger_ioctl(cl, uarg, false);
	case KVMM_IOC_REGION_LIST:
		return kvmm_region_list(uarg);
	default:
		return -ENOTTY;
	}
}

/* misc_open() left the miscdevice in private_data; keep a client there. */
static int kvmm_dev_open(struct inode *inode, struct file *file)
{
	struct kvmm_client *cl = kvmm_client_alloc();

	if (!cl)
		return -ENOMEM;
	file->private_data = cl;
	return 0;
}

static int kvmm_dev_release(struct inode *inode, struct file *file)
{
	kvmm_client_free(file->private_data);
	return 0;
}

static __poll_t kvmm_dev_poll(struct file *file, poll_table *wait)
{
	return kvmm_ledger_poll(file->private_data, file, wait);
}

static const struct file_operations kvmm_dev_fops = {
	.owner = THIS_MODULE,
	.open = kvmm_dev_open,
	.release = kvmm_dev_release,
	.unlocked_ioctl = kvmm_dev_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.poll = kvmm_dev_poll,
	.llseek = noop_llseek,
};

static struct miscdevice kvmm_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "kvmm",
	.fops = &kvmm_dev_fops,
	.mode = 0660,
	.groups = kvmm_attr_groups,
};

/*
 * The misc class cannot name a group for the device node, so give the
 * devtmpfs node to dev_gid once it exists. Failure only leaves it root's.
 */
static void kvmm_dev_set_group(void)
{
	struct iattr attr = { .ia_valid = ATTR_GID };
	struct path path;
	struct inode *inode;
	int err;

	if (dev_gid < 0)
		return;
	attr.ia_gid = make_kgid(current_user_ns(), dev_gid);
	if (!gid_valid(attr.ia_gid)) {
		pr_warn("kvmm: dev_gid %d is not a valid group\n", dev_gid);
		return;
	}
	err = kern_path(KVMM_DEVICE_PATH, LOOKUP_FOLLOW, &path);
	if (err)
		goto out;
	err = mnt_want_write(path.mnt);
	if (!err) {
		inode = d_inode(path.dentry);
		inode_lock(inode);
		err = kvmm_notify_change(path.dentry, &attr);
		inode_unlock(inode);
		mnt_drop_write(path.mnt);
	}
	path_put(&path);
out:
	if (err)
		pr_warn("kvmm: could not give %s to group %d: %d\n",
			KVMM_DEVICE_PATH, dev_gid, err);
}

static int __init kvmm_init(void)
{
	u64 limit = pool_limit_bytes;
	int err;

	if (!kvmm_chunk_bytes_valid(kvmm_default_chunk_bytes)) {
		pr_err("kvmm: default_chunk_bytes %u is not a power of two in %lu..%u\n",
		       kvmm_default_chunk_bytes, PAGE_SIZE, KVMM_CHUNK_MAX_BYTES);
		return -EINVAL;
	}
	if (!limit)
		limit = ((u64)totalram_pages() << PAGE_SHIFT) / 2;
	err = kvmm_pool_init(limit);
	if (err)
		return err;
	err = kvmm_pool_set_limit(limit);
	if (err) {
		pr_err("kvmm: pool_limit_bytes %llu exceeds RAM\n", limit);
		goto pool_exit;
	}
	err = kvmm_sysfs_init();
	if (err)
		goto pool_exit;
	err = kvmm_flash_init();
	if (err)
		goto sysfs_exit;
	err = kvmm_reclaim_init();
	if (err)
		goto flash_exit;
	err = misc_register(&kvmm_misc);
	if (err)
		goto reclaim_exit;
	err = sysfs_create_link(kernel_kobj, &kvmm_misc.this_device->kobj,
				"kvmm");
	if (err)
		goto misc_exit;
	kvmm_dev_set_group();
	kvmm_debugfs_init();

	pr_info("kvmm: version %s, pool limit %llu bytes, default chunk %u bytes\n",
		KVMM_VERSION_STRING, limit, kvmm_default_chunk_bytes);
	return 0;

misc_exit:
	misc_deregister(&kvmm_misc);
reclaim_exit:
	kvmm_reclaim_exit();
flash_exit:
	kvmm_flash_exit();
sysfs_exit:
	kvmm_sysfs_exit();
pool_exit:
	kvmm_pool_exit();
	return err;
}

/*
 * Every region file holds a module reference, and the region filesystem's
 * superblock another until its last file's final mntput, so none is left.
 */
static void __exit kvmm_exit(void)
{
	kvmm_debugfs_exit();
	sysfs_remove_link(kernel_kobj, "kvmm");
	misc_deregister(&kvmm_misc);
	kvmm_reclaim_exit();
	kvmm_flash_exit();
	kvmm_sysfs_exit();
	kvmm_pool_exit();
}

module_init(kvmm_init);
module_exit(kvmm_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kvmm: demand-paged contiguous KV-cache memory with tiering");
MODULE_VERSION(KVMM_VERSION_STRING);
