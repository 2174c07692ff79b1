/* SPDX-License-Identifier: MIT */
/* Failed flash writes keep data in memory; failed reads and corrupted
 * flash copies give -EIO and never wrong data. */
#include <signal.h>

#include "kv_helpers.h"
#include "release_check.h"

#define CHUNK (64u << 10)

static sigjmp_buf bus_jmp;

static void on_sigbus(int sig)
{
	(void)sig;
	siglongjmp(bus_jmp, 1);
}

struct fx {
	struct kvmm_ctx *ctx;
	struct kvmm_kv *kv;
	struct kvmm_kv_config c;
};

static int swap(struct fx *f, uint32_t slot, int out)
{
	struct kvmm_op *op;
	int ret = out ? kvmm_kv_swap_out(f->kv, slot, KVMM_TIER_FLASH, &op)
		      : kvmm_kv_swap_in(f->kv, slot, &op);

	return ret ? ret : kvmm_wait(op);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	uint32_t slot = 0, len = 1000;

	f->ctx = t_open(CHUNK, 64ull << 20);
	f->c = t_kv_config(KVMM_LAYOUT_LAYER_MAJOR, 2);
	T_OK(kvmm_kv_create(f->ctx, &f->c, &f->kv));
	T_OK(kvmm_kv_step(f->kv, 1, &slot, &len));
	t_kv_fill(f->kv, &f->c, 0, len, 9);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (!f)
		return 0;
	/* In kernel mode the hooks are the module's: never leave them armed. */
	T_OK(kvmm_test_fail_io(f->ctx, 0));
	T_OK(kvmm_kv_destroy(f->kv));
	T_OK(kvmm_close(f->ctx));
	free(f);
	*state = NULL;
	return 0;
}

static void test_failed_flash_write_keeps_slot_active_with_its_data(void **state)
{
	struct fx *f = *state;
	struct kvmm_kv_stats st;

	for (uint64_t nth = 1; nth <= 32; nth += 7) {
		/* Written again, so every chunk needs a write (kvmm.ko drops a
		 * chunk whose flash copy is current without one). */
		t_kv_fill(f->kv, &f->c, 0, 1000, 9);
		T_OK(kvmm_test_fail_io(f->ctx, nth));
		T_EQ(swap(f, 0, 1), -EIO);
		T_EQ(kvmm_kv_slot_state(f->kv, 0), KVMM_SLOT_ACTIVE);
		/* Active again means resident again, all of it. */
		T_KV_SLOT_BACKED(f->kv, &f->c, 0, t_kv_slot_bytes(&f->c, 1000));
		t_kv_check(f->kv, &f->c, 0, 1000, 9);
	}
	T_OK(kvmm_kv_stats(f->kv, &st));
	T_EQ(st.flash_bytes, 0);
	T_EQ(st.swap_outs, 0);
	T_OK(kvmm_test_fail_io(f->ctx, 0));
	T_OK(swap(f, 0, 1));
	T_OK(swap(f, 0, 0));
	t_kv_check(f->kv, &f->c, 0, 1000, 9);
}

static void test_failed_flash_read_leaves_slot_on_flash_and_retry_succeeds(void **state)
{
	struct fx *f = *state;

	T_OK(swap(f, 0, 1));
	T_OK(kvmm_test_fail_io(f->ctx, 3));
	T_EQ(swap(f, 0, 0), -EIO);
	T_EQ(kvmm_kv_slot_state(f->kv, 0), KVMM_SLOT_FLASH);
	T_OK(kvmm_test_fail_io(f->ctx, 0));
	T_OK(swap(f, 0, 0));
	T_EQ(kvmm_kv_slot_state(f->kv, 0), KVMM_SLOT_ACTIVE);
	t_kv_check(f->kv, &f->c, 0, 1000, 9);
}

static void test_corrupted_flash_copy_fails_swap_in_and_is_never_delivered(void **state)
{
	struct fx *f = *state;
	struct kvmm_region *r;
	struct kvmm_region_stats st;
	uint8_t s[4];

	r = kvmm_test_kv_region(f->kv, 3); /* layer 1, V */
	T_OK(swap(f, 0, 1));
	T_OK(kvmm_test_corrupt_chunk(r, 2));
	T_EQ(swap(f, 0, 0), -EIO);
	T_EQ(kvmm_kv_slot_state(f->kv, 0), KVMM_SLOT_FLASH);
	/* Every other chunk came back; the bad one stayed on flash. */
	T_OK(kvmm_region_query(r, 0, 4, s));
	T_EQ(s[0], KVMM_STATE_RESIDENT);
	T_EQ(s[1], KVMM_STATE_RESIDENT);
	T_EQ(s[2], KVMM_STATE_FLASH | KVMM_STATE_ERROR);
	T_EQ(s[3], KVMM_STATE_RESIDENT);
	T_EQ(swap(f, 0, 0), -EIO); /* and stays an error */
	T_OK(kvmm_region_stats(r, &st));
	T_EQ(st.flash_errors, 2);
	/* Rows outside the bad chunk are intact. */
	t_kv_check(f->kv, &f->c, 0, 2 * 256, 9);
}

/* Touches a corrupted chunk of slot 0; returns the signal it raised. */
static int touch_corrupted_chunk(void **state, int sig)
{
	struct fx *f = *state;
	struct kvmm_region *r;
	struct kvmm_region_stats st;
	struct sigaction sa = {.sa_handler = on_sigbus}, old;
	volatile int raised = 0;
	volatile char *p;

	r = kvmm_test_kv_region(f->kv, 0);
	p = (volatile char *)kvmm_region_base(r) + CHUNK; /* slot 0, chunk 1 */
	T_OK(swap(f, 0, 1));
	T_OK(kvmm_test_corrupt_chunk(r, 1));
	sigaction(sig, &sa, &old);
	if (sigsetjmp(bus_jmp, 1) == 0)
		(void)p[0];
	else
		raised = 1;
	sigaction(sig, &old, NULL);
	T_OK(kvmm_region_stats(r, &st));
	T_EQ(st.fault_failures, 1);
	/* Discarding the chunk clears it: it reads as zeros again. */
	T_OK(kvmm_region_discard(r, CHUNK, CHUNK));
	T_UNBACKED(r, CHUNK, CHUNK);
	T_READS_ZERO(r, CHUNK, CHUNK);
	return raised;
}

static void test_touching_corrupted_chunk_raises_sigbus_not_wrong_data(void **state)
{
	if (RUNNING_ON_VALGRIND) {
		teardown(state);
		T_SKIP("userfaultfd faults cannot be served under valgrind (check-unit runs it)");
	}
	T_EQ(touch_corrupted_chunk(state, SIGBUS), 1);
}

/* Kernels before 6.6 have no UFFDIO_POISON: the fault still fails, never hangs. */
static void test_without_uffd_poison_corrupted_chunk_raises_sigsegv(void **state)
{
	struct fx *f = *state;

	if (!t_user_mode(f->ctx)) {
		teardown(state);
		T_SKIP("kernel mode: this fallback is user-mode libkvmm's (check-unit runs it)");
	}
	if (RUNNING_ON_VALGRIND) {
		teardown(state);
		T_SKIP("not under valgrind, which cannot serve the fault (check-unit runs it)");
	}
	kvmm_test_no_poison(f->ctx);
	T_EQ(touch_corrupted_chunk(state, SIGSEGV), 1);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_failed_flash_write_keeps_slot_active_with_its_data,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_failed_flash_read_leaves_slot_on_flash_and_retry_succeeds, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_corrupted_flash_copy_fails_swap_in_and_is_never_delivered, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_touching_corrupted_chunk_raises_sigbus_not_wrong_data, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_without_uffd_poison_corrupted_chunk_raises_sigsegv,
					    setup, teardown),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	t_require_flash();
	return cmocka_run_group_tests_name("io_failures", tests, NULL, NULL);
}
