// SPDX-License-Identifier: GPL-2.0
/*
 * The GPU ledger: host-wide byte budgets per GPU, and the charges that
 * userspace drivers make against them through their /dev/kvmm fd.
 *
 * kvmm does not see GPU memory; the CUDA backend of libkvmm charges what it
 * maps before mapping it and uncharges what it unmaps. A charge past the
 * budget is refused, so the backend evicts or reports out of memory instead
 * of overcommitting the GPU that other servers on the host share. Charges
 * belong to the fd: closing it (or the death of its process) returns them.
 * Lowering a budget below what is charged refuses new charges and raises
 * EPOLLPRI on every fd holding a charge on that GPU, so servers can shed.
 *
 * kvmm_ledger_lock protects budgets, totals and every client's charges;
 * it nests inside nothing and nothing nests inside it.
 */
#include <linux/device.h>
#include <linux/fs.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include "kvmm.h"

static DEFINE_MUTEX(kvmm_ledger_lock);
static u64 kvmm_gpu_budget[KVMM_MAX_GPUS] = {
	[0 ... KVMM_MAX_GPUS - 1] = KVMM_BUDGET_UNLIMITED
};
static u64 kvmm_gpu_used[KVMM_MAX_GPUS];
static DECLARE_WAIT_QUEUE_HEAD(kvmm_ledger_wait);

struct kvmm_client *kvmm_client_alloc(void)
{
	return kzalloc(sizeof(struct kvmm_client), GFP_KERNEL);
}

/* The fd is closing: give back everything it charged. */
void kvmm_client_free(struct kvmm_client *cl)
{
	unsigned int gpu;

	mutex_lock(&kvmm_ledger_lock);
	for (gpu = 0; gpu < KVMM_MAX_GPUS; gpu++)
		kvmm_gpu_used[gpu] -= cl->charged[gpu];
	mutex_unlock(&kvmm_ledger_lock);
	kfree(cl);
}

long kvmm_ledger_ioctl(struct kvmm_client *cl, void __user *uarg, bool charge)
{
	struct kvmm_gpu_charge a;
	unsigned int gpu;
	long err = 0;

	if (copy_from_user(&a, uarg, sizeof(a)))
		return -EFAULT;
	if (a.flags || memchr_inv(a.reserved, 0, sizeof(a.reserved)))
		return -EINVAL;
	if (a.gpu >= KVMM_MAX_GPUS || !a.bytes)
		return -EINVAL;
	gpu = a.gpu;

	mutex_lock(&kvmm_ledger_lock);
	if (charge) {
		if (a.bytes > kvmm_gpu_budget[gpu] ||
		    kvmm_gpu_used[gpu] > kvmm_gpu_budget[gpu] - a.bytes)
			err = -EDQUOT;
		else if (cl->charged[gpu] + a.bytes < cl->charged[gpu])
			err = -EOVERFLOW;
		if (!err) {
			cl->charged[gpu] += a.bytes;
			kvmm_gpu_used[gpu] += a.bytes;
		}
	} else {
		if (a.bytes > cl->charged[gpu]) {
			err = -EINVAL;
		} else {
			cl->charged[gpu] -= a.bytes;
			kvmm_gpu_used[gpu] -= a.bytes;
		}
	}
	a.charged = cl->charged[gpu];
	a.used = kvmm_gpu_used[gpu];
	a.budget = kvmm_gpu_budget[gpu];
	mutex_unlock(&kvmm_ledger_lock);

	if (err)
		return err;
	if (!copy_to_user(uarg, &a, sizeof(a)))
		return 0;

	/*
	 * The caller cannot learn the result: it takes it as not done. Another
	 * thread on this fd may have uncharged meanwhile, so never take back
	 * more than the fd still holds.
	 */
	mutex_lock(&kvmm_ledger_lock);
	if (charge) {
		u64 back = min(a.bytes, cl->charged[gpu]);

		cl->charged[gpu] -= back;
		kvmm_gpu_used[gpu] -= back;
	} else {
		cl->charged[gpu] += a.bytes;
		kvmm_gpu_used[gpu] += a.bytes;
	}
	mutex_unlock(&kvmm_ledger_lock);
	wake_up_all(&kvmm_ledger_wait);
	return -EFAULT;
}

__poll_t kvmm_ledger_poll(struct kvmm_client *cl, struct file *file,
			  poll_table *wait)
{
	__poll_t mask = 0;
	unsigned int gpu;

	poll_wait(file, &kvmm_ledger_wait, wait);
	mutex_lock(&kvmm_ledger_lock);
	for (gpu = 0; gpu < KVMM_MAX_GPUS; gpu++)
		if (cl->charged[gpu] && kvmm_gpu_used[gpu] > kvmm_gpu_budget[gpu])
			mask |= EPOLLPRI;
	mutex_unlock(&kvmm_ledger_lock);
	return mask;
}

/* ---- sysfs: gpus/gpu<N>_budget_bytes (rw) and gpu<N>_charged_bytes ---- */

static struct dev_ext_attribute kvmm_gpu_attrs[2 * KVMM_MAX_GPUS];
static char kvmm_gpu_names[2 * KVMM_MAX_GPUS][32];
static struct attribute *kvmm_gpu_attr_ptrs[2 * KVMM_MAX_GPUS + 1];

static ssize_t gpu_budget_show(struct device *dev,
			       struct device_attribute *attr, char *buf)
{
	struct dev_ext_attribute *ea = container_of(attr, typeof(*ea), attr);
	unsigned int gpu = (unsigned long)ea->var;
	u64 v;

	mutex_lock(&kvmm_ledger_lock);
	v = kvmm_gpu_budget[gpu];
	mutex_unlock(&kvmm_ledger_lock);
	if (v == KVMM_BUDGET_UNLIMITED)
		return sysfs_emit(buf, "max\n");
	return sysfs_emit(buf, "%llu\n", v);
}

static ssize_t gpu_budget_store(struct device *dev,
				struct device_attribute *attr,
				const char *buf, size_t len)
{
	struct dev_ext_attribute *ea = container_of(attr, typeof(*ea), attr);
	unsigned int gpu = (unsigned long)ea->var;
	u64 v;
	int err;

	if (sysfs_streq(buf, "max")) {
		v = KVMM_BUDGET_UNLIMITED;
	} else {
		err = kstrtou64(buf, 0, &v);
		if (err)
			return err;
	}
	mutex_lock(&kvmm_ledger_lock);
	kvmm_gpu_budget[gpu] = v;
	mutex_unlock(&kvmm_ledger_lock);
	wake_up_all(&kvmm_ledger_wait);
	return len;
}

static ssize_t gpu_charged_show(struct device *dev,
				struct device_attribute *attr, char *buf)
{
	struct dev_ext_attribute *ea = container_of(attr, typeof(*ea), attr);
	unsigned int gpu = (unsigned long)ea->var;
	u64 v;

	mutex_lock(&kvmm_ledger_lock);
	v = kvmm_gpu_used[gpu];
	mutex_unlock(&kvmm_ledger_lock);
	return sysfs_emit(buf, "%llu\n", v);
}

struct attribute_group kvmm_gpus_group = {
	.name = "gpus",
	.attrs = kvmm_gpu_attr_ptrs,
};

void kvmm_ledger_sysfs_init(void)
{
	unsigned int i;

	for (i = 0; i < 2 * KVMM_MAX_GPUS; i++) {
		struct dev_ext_attribute *ea = &kvmm_gpu_attrs[i];
		unsigned int gpu = i / 2;
		bool budget = !(i % 2);

		snprintf(kvmm_gpu_names[i], sizeof(kvmm_gpu_names[i]),
			 budget ? "gpu%u_budget_bytes" : "gpu%u_charged_bytes", gpu);
		sysfs_attr_init(&ea->attr.attr);
		ea->attr.attr.name = kvmm_gpu_names[i];
		ea->attr.attr.mode = budget ? 0644 : 0444;
		ea->attr.show = budget ? gpu_budget_show : gpu_charged_show;
		ea->attr.store = budget ? gpu_budget_store : NULL;
		ea->var = (void *)(unsigned long)gpu;
		kvmm_gpu_attr_ptrs[i] = &ea->attr.attr;
	}
}
