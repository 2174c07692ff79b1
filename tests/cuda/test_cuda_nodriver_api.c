/* SPDX-License-Identifier: MIT */
/*
 * A library that loads but is no CUDA driver (no cuGetProcAddress) is
 * -ENODEV with the reason, like a missing one.
 */
#include "helpers.h"

#include "cuda_drv.h"

static void library_without_driver_api_is_enodev(void **state)
{
	const struct kvmm_cuda_drv *d;

	(void)state;
	T_EQ(kvmm_cuda_drv_get(&d), -ENODEV);
	print_message("reason: %s\n", kvmm_cuda_why());
#ifdef KVMM_HAVE_CUDA_H
	assert_non_null(strstr(kvmm_cuda_why(), "cuGetProcAddress"));
#endif
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(library_without_driver_api_is_enodev),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	setenv("KVMM_CUDA_LIBRARY", "libm.so.6", 1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
