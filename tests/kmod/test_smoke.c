/* Smoke test: the module answers KVMM_IOC_VERSION with the ABI this tree was built against. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/kvmm.h>

#include "../common/t_list.h"

static void version_matches_abi(void **state)
{
	(void)state;
	int fd = open(KVMM_DEVICE_PATH, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		fail_msg("open %s: %s", KVMM_DEVICE_PATH, strerror(errno));

	struct kvmm_version v;
	memset(&v, 0xff, sizeof(v));
	if (ioctl(fd, KVMM_IOC_VERSION, &v) != 0) {
		int err = errno;
		close(fd);
		fail_msg("KVMM_IOC_VERSION: %s", strerror(err));
	}
	close(fd);

	assert_int_equal(v.abi_version, KVMM_ABI_VERSION);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(version_matches_abi),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests_name("smoke", tests, NULL, NULL);
}
