/* SPDX-License-Identifier: MIT */
/*
 * Without a usable CUDA driver the backend says so cleanly: -ENODEV from
 * create, a reason string, nothing leaked, the host cache unaffected.
 */
#include "helpers.h"

#include "cuda_drv.h"

static struct kvmm_kv_config cuda_cfg(void)
{
	struct kvmm_kv_config c = KVMM_KV_CONFIG_INIT;

	c.layers = 2, c.kv_heads = 2, c.head_dim = 64, c.dtype_bytes = 2;
	c.max_slots = 4, c.max_tokens = 128, c.device = KVMM_DEVICE_CUDA;
	return c;
}

static void missing_driver_is_enodev(void **state)
{
	struct kvmm_ctx *ctx = t_open(0, 0);
	struct kvmm_kv_config c = cuda_cfg();
	const struct kvmm_cuda_drv *d;
	struct kvmm_kv *kv = NULL;

	(void)state;
	T_EQ(kvmm_kv_create(ctx, &c, &kv), -ENODEV);
	assert_null(kv);
	T_EQ(kvmm_cuda_drv_get(&d), -ENODEV); /* the same answer every time */
	print_message("reason: %s\n", kvmm_cuda_why());
	assert_true(strlen(kvmm_cuda_why()) > 0);
	assert_non_null(kvmm_strerror(-ENODEV));
	T_OK(kvmm_close(ctx)); /* nothing was left behind */
}

static void public_api_reports_the_missing_device(void **state)
{
	struct kvmm_ctx *ctx = t_open(0, 0);
	struct kvmm_kv_config c = cuda_cfg();
	struct kvmm_kv_cuda_stats cst;
	struct kvmm_kv *kv = NULL;

	(void)state;
	T_EQ(kvmm_kv_create(ctx, &c, &kv), -ENODEV);
	assert_null(kv);
	assert_true(strlen(kvmm_cuda_why()) > 0); /* and says why */
	c.device = KVMM_DEVICE_HOST;
	T_OK(kvmm_kv_create(ctx, &c, &kv));
	T_EQ(kvmm_kv_set_stream(kv, NULL), -EINVAL); /* host caches have no stream */
	T_EQ(kvmm_kv_cuda_stats(kv, &cst), -EINVAL); /* nor driver counters */
	T_EQ(kvmm_kv_swap_in_wait_layer(kv, 0, 0, NULL), -EAGAIN);
	T_EQ(kvmm_kv_swap_in_wait_layer(kv, 0, 2, NULL), -EINVAL);
	T_OK(kvmm_kv_destroy(kv));
	T_OK(kvmm_close(ctx));
}

/* The slot core checks a CUDA config as a host one: -EINVAL comes before
 * the driver is asked (which here says -ENODEV). */
static void bad_config_is_einval_before_the_driver(void **state)
{
	struct kvmm_ctx *ctx = t_open(0, 0);
	struct kvmm_kv_config c = cuda_cfg(), b;
	struct kvmm_kv *kv = NULL;

	(void)state;
	c.device_index = 3;
	T_EQ(kvmm_kv_create(ctx, &c, &kv), -ENODEV);
#define BAD(field, val)                                                                            \
	do {                                                                                       \
		b = c, b.field = val;                                                              \
		T_EQ(kvmm_kv_create(ctx, &b, &kv), -EINVAL);                                       \
		assert_null(kv);                                                                   \
	} while (0)
	BAD(device_index, 1U << 31);
	BAD(dtype_bytes, 3);
	BAD(layers, 0);
	BAD(layout, 2);
	BAD(flags, 1U << 5);
	BAD(evict_cb, (kvmm_kv_evict_fn)1);
#undef BAD
	T_OK(kvmm_close(ctx));
}

static void abi_version_is_capped_at_the_header(void **state)
{
	(void)state;
	T_EQ(kvmm_cuda_abi_version(12040, 13000), 12040);
	T_EQ(kvmm_cuda_abi_version(13020, 13000), 13000);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(missing_driver_is_enodev),
	    cmocka_unit_test(public_api_reports_the_missing_device),
	    cmocka_unit_test(bad_config_is_einval_before_the_driver),
	    cmocka_unit_test(abi_version_is_capped_at_the_header),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	/* A driver that is never there, even on a GPU machine. */
	setenv("KVMM_CUDA_LIBRARY",
	       getenv("KVMM_TEST_NODEV_LIBRARY") ? getenv("KVMM_TEST_NODEV_LIBRARY")
						 : "libcuda-absent.so.1",
	       1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
