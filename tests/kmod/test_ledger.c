/*
 * The GPU ledger (budgets, charges refused past them, charges returned when
 * an fd closes or its process dies, EPOLLPRI under pressure) and the region
 * list that tools read.
 */
#include "common/kmod_test.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static int charge(int dev, unsigned long cmd, uint32_t gpu, uint64_t bytes,
		  struct kvmm_gpu_charge *out)
{
	struct kvmm_gpu_charge c = {.gpu = gpu, .bytes = bytes};
	int ret = ioctl(dev, cmd, &c) ? -errno : 0;

	if (out)
		*out = c;
	return ret;
}

static void set_budget(uint32_t gpu, const char *v)
{
	char name[64];

	snprintf(name, sizeof(name), "gpus/gpu%u_budget_bytes", gpu);
	assert_int_equal(kt_sysfs_write(name, v), 0);
}

static uint64_t charged(uint32_t gpu)
{
	char name[64];

	snprintf(name, sizeof(name), "gpus/gpu%u_charged_bytes", gpu);
	return kt_sysfs_u64(name);
}

static void budgets_default_to_max_and_validate_input(void **state)
{
	char buf[32] = "";
	FILE *f = fopen(KVMM_SYSFS "/gpus/gpu3_budget_bytes", "r");

	(void)state;
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	assert_string_equal(buf, "max\n");
	assert_int_equal(kt_sysfs_write("gpus/gpu3_budget_bytes", "lots"), -EINVAL);
	assert_int_equal(kt_sysfs_write("gpus/gpu3_budget_bytes", "-5"), -EINVAL);
	assert_int_equal(kt_sysfs_write("gpus/gpu3_charged_bytes", "0"), -EACCES);
	assert_int_equal(access(KVMM_SYSFS "/gpus/gpu15_budget_bytes", F_OK), 0);
	assert_int_equal(access(KVMM_SYSFS "/gpus/gpu16_budget_bytes", F_OK), -1);
}

static void charges_are_refused_past_the_budget(void **state)
{
	int dev = kt_dev_open(), dev2 = kt_dev_open();
	struct kvmm_gpu_charge c;

	(void)state;
	set_budget(0, "1073741824");
	assert_int_equal(charge(dev, KVMM_IOC_GPU_CHARGE, 0, 600 * MiB, &c), 0);
	assert_int_equal(c.charged, 600 * MiB);
	assert_int_equal(c.used, 600 * MiB);
	assert_int_equal(c.budget, 1 * GiB);
	assert_int_equal(charge(dev2, KVMM_IOC_GPU_CHARGE, 0, 500 * MiB, NULL), -EDQUOT);
	assert_int_equal(charged(0), 600 * MiB);
	assert_int_equal(charge(dev2, KVMM_IOC_GPU_CHARGE, 0, 424 * MiB, &c), 0);
	assert_int_equal(c.charged, 424 * MiB);
	assert_int_equal(c.used, 1 * GiB);
	assert_int_equal(charge(dev, KVMM_IOC_GPU_CHARGE, 0, 1, NULL), -EDQUOT);
	/* Other GPUs are independent. */
	assert_int_equal(charge(dev, KVMM_IOC_GPU_CHARGE, 1, 8 * GiB, NULL), 0);
	assert_int_equal(charge(dev, KVMM_IOC_GPU_UNCHARGE, 0, 100 * MiB, &c), 0);
	assert_int_equal(c.charged, 500 * MiB);
	assert_int_equal(charge(dev2, KVMM_IOC_GPU_CHARGE, 0, 100 * MiB, NULL), 0);
	close(dev);
	close(dev2);
	assert_int_equal(charged(0), 0);
	assert_int_equal(charged(1), 0);
	set_budget(0, "max");
}

static void bad_ledger_requests_change_nothing(void **state)
{
	int dev = kt_dev_open(), fd = kt_region(1 * MiB, 0);
	struct kvmm_gpu_charge c = {.gpu = 0, .bytes = 4096, .flags = 1};

	(void)state;
	assert_int_equal(charge(dev, KVMM_IOC_GPU_CHARGE, KVMM_MAX_GPUS, 4096, NULL), -EINVAL);
	assert_int_equal(charge(dev, KVMM_IOC_GPU_CHARGE, 0, 0, NULL), -EINVAL);
	assert_int_equal(ioctl(dev, KVMM_IOC_GPU_CHARGE, &c), -1);
	assert_int_equal(errno, EINVAL);
	c.flags = 0;
	c.reserved[2] = 1;
	assert_int_equal(ioctl(dev, KVMM_IOC_GPU_CHARGE, &c), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(ioctl(dev, KVMM_IOC_GPU_CHARGE, (void *)8), -1);
	assert_int_equal(errno, EFAULT);
	assert_int_equal(charge(dev, KVMM_IOC_GPU_CHARGE, 2, 4096, NULL), 0);
	assert_int_equal(charge(dev, KVMM_IOC_GPU_UNCHARGE, 2, 8192, NULL), -EINVAL);
	assert_int_equal(charged(2), 4096);
	/* The ledger lives on /dev/kvmm fds only. */
	c.reserved[2] = 0;
	assert_int_equal(ioctl(fd, KVMM_IOC_GPU_CHARGE, &c), -1);
	assert_int_equal(errno, ENOTTY);
	close(dev);
	close(fd);
	assert_int_equal(charged(2), 0);
}

static void a_killed_process_returns_its_charges(void **state)
{
	int pipefd[2], status;
	pid_t pid;
	char ok;

	(void)state;
	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		int dev = kt_dev_open();

		if (charge(dev, KVMM_IOC_GPU_CHARGE, 4, 3 * GiB, NULL))
			_exit(2);
		ok = 1;
		if (write(pipefd[1], &ok, 1) != 1)
			_exit(3);
		pause();
		_exit(0);
	}
	assert_int_equal(read(pipefd[0], &ok, 1), 1);
	assert_int_equal(charged(4), 3 * GiB);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(charged(4), 0);
	close(pipefd[0]);
	close(pipefd[1]);
}

static void lowering_a_budget_below_charges_raises_epollpri(void **state)
{
	int dev = kt_dev_open(), other = kt_dev_open();
	struct pollfd p[2] = {{.fd = dev, .events = POLLPRI}, {.fd = other, .events = POLLPRI}};

	(void)state;
	assert_int_equal(charge(dev, KVMM_IOC_GPU_CHARGE, 5, 2 * GiB, NULL), 0);
	assert_int_equal(poll(p, 2, 0), 0);
	set_budget(5, "1073741824");
	/* Only the fd holding a charge on that GPU sees the pressure. */
	assert_int_equal(poll(p, 2, 1000), 1);
	assert_true(p[0].revents & POLLPRI);
	assert_int_equal(p[1].revents, 0);
	assert_int_equal(charge(dev, KVMM_IOC_GPU_CHARGE, 5, 4096, NULL), -EDQUOT);
	/* Shedding below the budget clears it. */
	assert_int_equal(charge(dev, KVMM_IOC_GPU_UNCHARGE, 5, 1 * GiB + 4096, NULL), 0);
	assert_int_equal(poll(p, 1, 0), 0);
	set_budget(5, "max");
	close(dev);
	close(other);
}

static void region_list_names_every_live_region(void **state)
{
	int dev = kt_dev_open();
	int a = kt_region_create(dev, 8 * MiB, 2 * MiB, 0);
	int b = kt_region_create(dev, 4 * MiB, 64 * KiB, KVMM_NUMA_LOCAL);
	struct kvmm_region_info info[4];
	struct kvmm_region_list l = {.regions = (uintptr_t)info, .capacity = 4};
	struct kvmm_region_stat sa, sb;

	(void)state;
	assert_true(a >= 0 && b >= 0);
	assert_int_equal(kt_range_ioctl(a, KVMM_IOC_ENSURE, 0, 4 * MiB), 0);
	assert_int_equal(kt_stat(a, &sa), 0);
	assert_int_equal(kt_stat(b, &sb), 0);
	memset(info, 0xff, sizeof(info));
	assert_int_equal(ioctl(dev, KVMM_IOC_REGION_LIST, &l), 0);
	assert_int_equal(l.count, 2);
	assert_true(info[0].id < info[1].id);
	for (int i = 0; i < 2; i++) {
		int is_a = info[i].id == sa.id;

		assert_int_equal(info[i].owner_pid, getpid());
		assert_int_equal(info[i].size, is_a ? 8 * MiB : 4 * MiB);
		assert_int_equal(info[i].chunk_bytes, is_a ? 2 * MiB : 64 * KiB);
		assert_int_equal(info[i].resident_bytes, is_a ? 4 * MiB : 0);
		assert_int_equal(info[i].numa_node, is_a ? 0 : KVMM_NUMA_LOCAL);
		assert_string_equal(info[i].owner_comm, "test_ledger");
		assert_int_equal(info[i].shared_bytes, 0);
		for (int j = 0; j < 3; j++)
			assert_int_equal(info[i].reserved[j], 0);
	}
	/* Capacity 0 only counts; a small array gets the first entries. */
	l.capacity = 0;
	assert_int_equal(ioctl(dev, KVMM_IOC_REGION_LIST, &l), 0);
	assert_int_equal(l.count, 2);
	l.capacity = 1;
	assert_int_equal(ioctl(dev, KVMM_IOC_REGION_LIST, &l), 0);
	assert_int_equal(l.count, 2);
	l.flags = 1;
	assert_int_equal(ioctl(dev, KVMM_IOC_REGION_LIST, &l), -1);
	assert_int_equal(errno, EINVAL);
	l.flags = 0;
	l.regions = 8;
	l.capacity = 2;
	assert_int_equal(ioctl(dev, KVMM_IOC_REGION_LIST, &l), -1);
	assert_int_equal(errno, EFAULT);
	close(a);
	close(b);
	l.regions = (uintptr_t)info;
	assert_int_equal(ioctl(dev, KVMM_IOC_REGION_LIST, &l), 0);
	assert_int_equal(l.count, 0);
	close(dev);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(budgets_default_to_max_and_validate_input),
	    cmocka_unit_test(charges_are_refused_past_the_budget),
	    cmocka_unit_test(bad_ledger_requests_change_nothing),
	    cmocka_unit_test(a_killed_process_returns_its_charges),
	    cmocka_unit_test(lowering_a_budget_below_charges_raises_epollpri),
	    cmocka_unit_test(region_list_names_every_live_region),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
