/* SPDX-License-Identifier: MIT */
/* Every invalid configuration and argument gets its errno, and changes nothing. */
#include <sys/stat.h>

#include "kv_helpers.h"

#define CHUNK (64u << 10)

static void test_open_rejects_bad_config_and_environment(void **state)
{
	struct kvmm_config c = KVMM_CONFIG_INIT;
	struct kvmm_ctx *ctx = (struct kvmm_ctx *)0x1;

	(void)state;
	T_EQ(kvmm_open(NULL, NULL), -EINVAL);
	c.size = 4;
	T_EQ(kvmm_open(&ctx, &c), -EINVAL);
	T_EQ((uintptr_t)ctx, 0x1); /* untouched on failure */
	c = (struct kvmm_config)KVMM_CONFIG_INIT;
	c.size = sizeof(c) + 8;
	T_EQ(kvmm_open(&ctx, &c), -EINVAL);
	c = (struct kvmm_config)KVMM_CONFIG_INIT;
	c.flags = 1;
	T_EQ(kvmm_open(&ctx, &c), -EINVAL);
	c = (struct kvmm_config)KVMM_CONFIG_INIT;
	c.mode = 7;
	T_EQ(kvmm_open(&ctx, &c), -EINVAL);
	c = (struct kvmm_config)KVMM_CONFIG_INIT;
	c.chunk_bytes = 3 << 12;
	T_EQ(kvmm_open(&ctx, &c), -EINVAL);
	c.chunk_bytes = 4 << 20;
	T_EQ(kvmm_open(&ctx, &c), -EINVAL);
	c.chunk_bytes = 1024;
	T_EQ(kvmm_open(&ctx, &c), -EINVAL);
	c = (struct kvmm_config)KVMM_CONFIG_INIT;
	c.queue_depth = 100000;
	T_EQ(kvmm_open(&ctx, &c), -EINVAL);
	c = (struct kvmm_config)KVMM_CONFIG_INIT;
	c.staging_node = -2;
	T_EQ(kvmm_open(&ctx, &c), -EINVAL);
	c = (struct kvmm_config)KVMM_CONFIG_INIT;
	c.flash_bytes = 4096; /* smaller than one chunk */
	T_EQ(kvmm_open(&ctx, &c), -EINVAL);

	c = (struct kvmm_config)KVMM_CONFIG_INIT;
	setenv("KVMM_QUEUE_DEPTH", "lots", 1);
	T_EQ(kvmm_open(&ctx, &c), -EINVAL);
	unsetenv("KVMM_QUEUE_DEPTH");
	setenv("KVMM_FLASH_BYTES", "12Q", 1);
	T_EQ(kvmm_open(&ctx, &c), -EINVAL);
	unsetenv("KVMM_FLASH_BYTES");
	setenv("KVMM_STAGING_NODE", "x", 1);
	T_EQ(kvmm_open(&ctx, &c), -EINVAL);
	unsetenv("KVMM_STAGING_NODE");
	setenv("KVMM_IO_THREADS", "0", 1);
	T_EQ(kvmm_open(&ctx, &c), -EINVAL);
	setenv("KVMM_IO_THREADS", "17", 1);
	T_EQ(kvmm_open(&ctx, &c), -EINVAL);
	unsetenv("KVMM_IO_THREADS");
}

static void test_mode_environment_selects_or_refuses(void **state)
{
	const char *old = getenv("KVMM_MODE");
	char *saved = old ? strdup(old) : NULL;
	struct kvmm_ctx *ctx;
	struct stat sb;

	(void)state;
	setenv("KVMM_MODE", "sideways", 1);
	T_EQ(kvmm_open(&ctx, NULL), -EINVAL);
	setenv("KVMM_MODE", "user", 1);
	T_OK(kvmm_open(&ctx, NULL));
	T_EQ(kvmm_mode(ctx), KVMM_MODE_USER);
	T_OK(kvmm_close(ctx));
	setenv("KVMM_MODE", "kernel", 1);
	if (stat("/dev/kvmm", &sb) != 0) {
		T_EQ(kvmm_open(&ctx, NULL), -ENODEV);
	} else {
		T_OK(kvmm_open(&ctx, NULL));
		T_EQ(kvmm_mode(ctx), KVMM_MODE_KERNEL);
		T_OK(kvmm_close(ctx));
	}
	if (saved)
		setenv("KVMM_MODE", saved, 1);
	else
		unsetenv("KVMM_MODE");
	free(saved);
	T_EQ(kvmm_mode(NULL), -EINVAL);
	T_EQ(kvmm_close(NULL), -EINVAL);
	assert_non_null(kvmm_strerror(-EIO));
	assert_non_null(kvmm_strerror(-12345));
}

static void test_region_rejects_bad_ranges_and_sizes(void **state)
{
	struct kvmm_ctx *ctx = t_open(CHUNK, 16ull << 20);
	struct kvmm_region_config rc = KVMM_REGION_CONFIG_INIT;
	struct kvmm_region *r;
	struct kvmm_region_stats st;
	uint8_t s[4];

	(void)state;
	T_EQ(kvmm_region_create(NULL, &rc, &r), -EINVAL);
	T_EQ(kvmm_region_create(ctx, NULL, &r), -EINVAL);
	T_EQ(kvmm_region_create(ctx, &rc, NULL), -EINVAL);
	rc.bytes = 0;
	T_EQ(kvmm_region_create(ctx, &rc, &r), -EINVAL);
	rc.bytes = CHUNK + 4096;
	T_EQ(kvmm_region_create(ctx, &rc, &r), -EINVAL);
	rc.bytes = 2ull << 40;
	T_EQ(kvmm_region_create(ctx, &rc, &r), -EINVAL);
	rc.bytes = 4 * CHUNK;
	rc.chunk_bytes = 3 << 12;
	T_EQ(kvmm_region_create(ctx, &rc, &r), -EINVAL);
	rc.chunk_bytes = 0;
	rc.addr = (void *)0x1001;
	T_EQ(kvmm_region_create(ctx, &rc, &r), -EINVAL);
	rc.addr = NULL;
	rc.numa_node = -5;
	T_EQ(kvmm_region_create(ctx, &rc, &r), -EINVAL);
	rc.numa_node = -1;
	rc.size = 3;
	T_EQ(kvmm_region_create(ctx, &rc, &r), -EINVAL);
	rc.size = sizeof(rc);
	T_OK(kvmm_region_create(ctx, &rc, &r));

	T_EQ(kvmm_region_ensure(r, 0, 0), -EINVAL);
	T_EQ(kvmm_region_ensure(r, 4096, CHUNK), -EINVAL);
	T_EQ(kvmm_region_ensure(r, 0, CHUNK + 4096), -EINVAL);
	T_EQ(kvmm_region_ensure(r, 4 * CHUNK, CHUNK), -EINVAL);
	T_EQ(kvmm_region_ensure(r, 3 * CHUNK, 2 * CHUNK), -EINVAL);
	T_EQ(kvmm_region_ensure(r, UINT64_MAX - CHUNK + 1, CHUNK), -EINVAL);
	T_EQ(kvmm_region_ensure(NULL, 0, CHUNK), -EINVAL);
	T_EQ(kvmm_region_discard(r, 0, 5 * CHUNK), -EINVAL);
	T_EQ(kvmm_region_evict(r, CHUNK / 2, CHUNK), -EINVAL);
	T_EQ(kvmm_region_prefetch(r, 0, 0, NULL), -EINVAL);
	T_EQ(kvmm_region_pin(r, 0, 8 * CHUNK), -EINVAL);
	T_EQ(kvmm_region_unpin(r, 0, CHUNK), -EINVAL); /* not pinned */
	T_EQ(kvmm_region_stats(r, NULL), -EINVAL);
	T_EQ(kvmm_region_stats(NULL, &st), -EINVAL);
	T_EQ(kvmm_region_query(r, 0, 0, s), -EINVAL);
	T_EQ(kvmm_region_query(r, 4, 1, s), -EINVAL);
	T_EQ(kvmm_region_query(r, 2, 3, s), -EINVAL);
	T_EQ(kvmm_region_query(r, 0, 1, NULL), -EINVAL);
	T_EQ(kvmm_region_destroy(NULL), -EINVAL);
	assert_null(kvmm_region_base(NULL));
	T_EQ(kvmm_wait(NULL), -EINVAL);
	T_EQ(kvmm_op_done(NULL), -EINVAL);
	/* Nothing above changed the region. */
	T_OK(kvmm_region_stats(r, &st));
	T_EQ(st.resident_bytes, 0);
	T_EQ(kvmm_close(ctx), -EBUSY); /* region still alive */
	T_OK(kvmm_region_destroy(r));
	T_OK(kvmm_close(ctx));
}

static void test_kv_create_rejects_bad_config(void **state)
{
	struct kvmm_ctx *ctx = t_open(CHUNK, 16ull << 20);
	struct kvmm_kv_config c;
	struct kvmm_kv *kv;

	(void)state;
#define BAD(field, value, err)                                                                     \
	do {                                                                                       \
		c = t_kv_config(KVMM_LAYOUT_LAYER_MAJOR, 2);                                       \
		c.field = value;                                                                   \
		T_EQ(kvmm_kv_create(ctx, &c, &kv), err);                                           \
	} while (0)
	BAD(size, 8, -EINVAL);
	BAD(layers, 0, -EINVAL);
	BAD(kv_heads, 0, -EINVAL);
	BAD(head_dim, 0, -EINVAL);
	BAD(dtype_bytes, 3, -EINVAL);
	BAD(dtype_bytes, 8, -EINVAL);
	BAD(max_slots, 0, -EINVAL);
	BAD(max_tokens, 0, -EINVAL);
	BAD(device, KVMM_DEVICE_CUDA, -ENODEV);
	BAD(device, 9, -EINVAL);
	BAD(device_index, 1, -EINVAL);
	BAD(chunk_bytes, 12345, -EINVAL);
	BAD(chunk_bytes, 4u << 20, -EINVAL);
	BAD(layout, 2, -EINVAL);
	BAD(flags, 2, -EINVAL);
	BAD(evict_cb, (kvmm_kv_evict_fn)abort, -EINVAL); /* callback without AUTO_SWAP */
	BAD(max_tokens, 1u << 31, -EOVERFLOW);
	BAD(head_dim, 1u << 30, -EOVERFLOW);
#undef BAD
	c = t_kv_config(KVMM_LAYOUT_LAYER_MAJOR, 2);
	T_EQ(kvmm_kv_create(NULL, &c, &kv), -EINVAL);
	T_EQ(kvmm_kv_create(ctx, NULL, &kv), -EINVAL);
	T_EQ(kvmm_kv_create(ctx, &c, NULL), -EINVAL);
	T_OK(kvmm_close(ctx)); /* nothing was left behind */
}

static void test_kv_calls_reject_bad_slots_and_states(void **state)
{
	struct kvmm_ctx *ctx = t_open(CHUNK, 16ull << 20);
	struct kvmm_kv_config c = t_kv_config(KVMM_LAYOUT_TOKEN_MAJOR, 2);
	struct kvmm_kv *kv;
	struct kvmm_kv_tensor t;
	struct kvmm_kv_stats st;
	uint32_t slot = 0, len = 10, bad = 4, big = 1025;
	struct kvmm_op *op;

	(void)state;
	T_OK(kvmm_kv_create(ctx, &c, &kv));
	T_EQ(kvmm_kv_tensor(kv, 4, KVMM_K, &t), -EINVAL);
	T_EQ(kvmm_kv_tensor(kv, 0, 2, &t), -EINVAL);
	T_EQ(kvmm_kv_tensor(kv, 0, KVMM_K, NULL), -EINVAL);
	T_EQ(kvmm_kv_tensor(NULL, 0, KVMM_K, &t), -EINVAL);
	T_EQ(kvmm_kv_step(kv, 1, &bad, &len), -EINVAL);
	T_EQ(kvmm_kv_step(kv, 1, &slot, &big), -EINVAL);
	T_EQ(kvmm_kv_step(kv, 1, NULL, &len), -EINVAL);
	T_EQ(kvmm_kv_step(NULL, 0, NULL, NULL), -EINVAL);
	T_OK(kvmm_kv_step(kv, 0, NULL, NULL));
	T_EQ(kvmm_kv_free_slot(kv, 0), -EINVAL); /* not active */
	T_EQ(kvmm_kv_free_slot(kv, 4), -EINVAL);
	T_EQ(kvmm_kv_swap_out(kv, 0, KVMM_TIER_HOST, &op), -EAGAIN); /* not active */
	T_EQ(kvmm_kv_swap_in(kv, 0, &op), -EAGAIN);		     /* not swapped */
	T_EQ(kvmm_kv_swap_out(kv, 4, KVMM_TIER_HOST, &op), -EINVAL);
	T_EQ(kvmm_kv_swap_in(kv, 4, &op), -EINVAL);
	T_OK(kvmm_kv_step(kv, 1, &slot, &len));
	T_EQ(kvmm_kv_swap_out(kv, 0, KVMM_SLOT_FREE, &op), -EINVAL); /* states, not tiers */
	T_EQ(kvmm_kv_swap_out(kv, 0, KVMM_SLOT_ACTIVE, &op), -EINVAL);
	T_EQ(kvmm_kv_swap_out(kv, 0, KVMM_SLOT_IN_FLIGHT, &op), -EINVAL);
	T_EQ(kvmm_kv_pin_slot(kv, 1), -EINVAL); /* free slot */
	T_EQ(kvmm_kv_pin_slot(kv, 9), -EINVAL);
	T_EQ(kvmm_kv_unpin_slot(kv, 0), -EINVAL);
	T_EQ(kvmm_kv_set_priority(kv, 9, 1), -EINVAL);
	T_EQ(kvmm_kv_slot_state(kv, 9), -EINVAL);
	T_EQ(kvmm_kv_alloc_slot(kv, 2000, &slot), -EINVAL);
	T_EQ(kvmm_kv_alloc_slot(kv, 1, NULL), -EINVAL);
	T_EQ(kvmm_kv_stats(kv, NULL), -EINVAL);
	T_OK(kvmm_kv_swap_out(kv, 0, KVMM_TIER_HOST, &op));
	T_OK(kvmm_wait(op));
	T_EQ(kvmm_kv_step(kv, 1, &slot, &len), -EAGAIN); /* swapped out */
	T_EQ(kvmm_kv_swap_out(kv, 0, KVMM_TIER_HOST, &op), -EAGAIN);
	T_OK(kvmm_kv_stats(kv, &st));
	T_EQ(st.active_slots, 0);
	T_EQ(kvmm_close(ctx), -EBUSY); /* cache still alive */
	T_EQ(kvmm_kv_destroy(NULL), -EINVAL);
	T_OK(kvmm_kv_destroy(kv));
	T_OK(kvmm_close(ctx));
}

/*
 * A flash directory in memory is no flash tier: tmpfs takes O_DIRECT since
 * Linux 6.6, so a store there would silently be RAM. User mode refuses it
 * (-EOPNOTSUPP), as kvmm.ko refuses such a backing file, and the chunk
 * stays resident with its bytes.
 */
static void test_flash_dir_in_memory_is_refused_and_keeps_the_data(void **state)
{
	struct kvmm_region_config rc = KVMM_REGION_CONFIG_INIT;
	struct kvmm_config c = KVMM_CONFIG_INIT;
	struct kvmm_region_stats st;
	struct kvmm_region *r;
	struct kvmm_ctx *ctx;
	struct statfs sfs;
	unsigned char *p;

	(void)state;
	if (statfs("/dev/shm", &sfs) || sfs.f_type != TMPFS_MAGIC)
		T_SKIP("/dev/shm is not a tmpfs here: no memory filesystem to put a store on");
	c.mode = KVMM_MODE_USER;
	c.flash_dir = "/dev/shm";
	c.chunk_bytes = CHUNK;
	c.flash_bytes = 4 * CHUNK;
	T_OK(kvmm_open(&ctx, &c));
	rc.bytes = CHUNK;
	T_OK(kvmm_region_create(ctx, &rc, &r));
	p = kvmm_region_base(r);
	T_OK(kvmm_region_ensure(r, 0, CHUNK));
	memset(p, 0x5a, CHUNK);
	T_EQ(kvmm_region_evict(r, 0, CHUNK), -EOPNOTSUPP);
	T_OK(kvmm_region_stats(r, &st));
	T_EQ(st.resident_bytes, CHUNK);
	T_EQ(p[0], 0x5a);
	T_EQ(p[CHUNK - 1], 0x5a);
	T_OK(kvmm_region_destroy(r));
	T_OK(kvmm_close(ctx));
}

/* One kernel-mode region with @dir as the config's flash_dir (NULL: none). */
static int kernel_region_with_flash_dir(const char *dir)
{
	struct kvmm_region_config rc = KVMM_REGION_CONFIG_INIT;
	struct kvmm_config c = KVMM_CONFIG_INIT;
	struct kvmm_region *r;
	struct kvmm_ctx *ctx;
	int err;

	c.mode = KVMM_MODE_KERNEL;
	c.flash_dir = dir;
	c.chunk_bytes = CHUNK;
	T_OK(kvmm_open(&ctx, &c));
	rc.bytes = 4 * CHUNK;
	err = kvmm_region_create(ctx, &rc, &r);
	if (!err)
		T_OK(kvmm_region_destroy(r));
	T_OK(kvmm_close(ctx));
	return err;
}

/*
 * Kernel mode: a flash directory the user asked for (config or
 * KVMM_FLASH_DIR) that cannot hold the region's backing file fails region
 * creation with its errno, instead of leaving the data to the module's
 * default store; a defaulted one ($TMPDIR) that fails still falls back.
 */
static void test_kernel_mode_refuses_an_asked_for_flash_dir_it_cannot_use(void **state)
{
	const char *old_tmp = getenv("TMPDIR"), *old_dir = getenv("KVMM_FLASH_DIR");
	char *saved_tmp = old_tmp ? strdup(old_tmp) : NULL;
	char *saved_dir = old_dir ? strdup(old_dir) : NULL;
	struct statfs sfs;
	struct stat sb;

	(void)state;
	if (stat("/dev/kvmm", &sb))
		T_SKIP("no /dev/kvmm: kernel mode only (make check-unit-kernel runs it)");
	T_EQ(kernel_region_with_flash_dir("/nonexistent-kvmm-dir"), -ENOENT);
	if (!statfs("/dev/shm", &sfs) && sfs.f_type == TMPFS_MAGIC)
		T_EQ(kernel_region_with_flash_dir("/dev/shm"), -EOPNOTSUPP);
	setenv("KVMM_FLASH_DIR", "/nonexistent-kvmm-dir", 1);
	T_EQ(kernel_region_with_flash_dir(NULL), -ENOENT);
	unsetenv("KVMM_FLASH_DIR");
	setenv("TMPDIR", "/nonexistent-kvmm-dir", 1);
	T_OK(kernel_region_with_flash_dir(NULL));
	if (saved_tmp)
		setenv("TMPDIR", saved_tmp, 1);
	else
		unsetenv("TMPDIR");
	if (saved_dir)
		setenv("KVMM_FLASH_DIR", saved_dir, 1);
	free(saved_tmp);
	free(saved_dir);
}

int main(int argc, char **argv)
{
	/* CUDA caches must fail cleanly where there is no driver, GPU or not. */
	setenv("KVMM_CUDA_LIBRARY", "libcuda-absent.so.1", 1);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_open_rejects_bad_config_and_environment),
	    cmocka_unit_test(test_mode_environment_selects_or_refuses),
	    cmocka_unit_test(test_region_rejects_bad_ranges_and_sizes),
	    cmocka_unit_test(test_kv_create_rejects_bad_config),
	    cmocka_unit_test(test_kv_calls_reject_bad_slots_and_states),
	    cmocka_unit_test(test_flash_dir_in_memory_is_refused_and_keeps_the_data),
	    cmocka_unit_test(test_kernel_mode_refuses_an_asked_for_flash_dir_it_cannot_use),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests_name("api_errors", tests, NULL, NULL);
}
