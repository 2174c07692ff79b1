# tests/unit: libkvmm tests (cmocka). Suite "unit" runs them built with
# ASan/UBSan; suite "unit-valgrind" runs a plain build under valgrind.
# tests/unit/attn_* belong to the kernels' fragment, not to this one.
UNIT_DIR := $(TOP)/tests/unit
UNIT_SRC := $(sort $(wildcard $(UNIT_DIR)/test_*.c))
UNIT_ASAN_BIN := $(patsubst $(UNIT_DIR)/%.c,$(B)/tests/unit/asan/%,$(UNIT_SRC))
UNIT_PLAIN_BIN := $(patsubst $(UNIT_DIR)/%.c,$(B)/tests/unit/plain/%,$(UNIT_SRC))
# Linked into every program: release_check.c observes released memory.
UNIT_SUPPORT := $(UNIT_DIR)/release_check.c
UNIT_HDR := $(UNIT_DIR)/helpers.h $(UNIT_DIR)/kv_helpers.h $(UNIT_DIR)/release_check.h \
	$(TOP)/tests/common/t_list.h $(TOP)/include/kvmm/kvmm.h $(TOP)/include/uapi/linux/kvmm.h \
	$(TOP)/userspace/lib/kvmm_test.h $(TOP)/include/kvmm/attention.h
# lib.mk is read after this file: name its outputs here, not through its variables.
# The test hooks (kvmm_test.h) come from their own archive, before libkvmm.
# The attention kernels too (test_attn_tier), sanitized for the ASan build (attn.mk).
UNIT_LIB_ASAN := $(B)/lib/asan/libkvmm_test.a $(B)/lib/asan/libkvmm.a $(B)/tests/san/libkvmm-attn.a
UNIT_LIB_PLAIN := $(B)/lib/libkvmm_test.a $(B)/lib/libkvmm.a $(B)/kernels/libkvmm-attn.a
UNIT_LIBS := -lcmocka -luring -lnuma -lxxhash -lhiredis -lcrypto -lpthread -lm
UNIT_SANITIZE := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

CHECK_SUITES += unit unit-valgrind

$(B)/tests/unit/asan/%: $(UNIT_DIR)/%.c $(UNIT_SUPPORT) $(UNIT_HDR) $(UNIT_LIB_ASAN)
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) $(UNIT_SANITIZE) -o $@ $< $(UNIT_SUPPORT) $(UNIT_LIB_ASAN) \
		$(filter $(ATTN_LIB),$^) $(UNIT_LIBS)

$(B)/tests/unit/plain/%: $(UNIT_DIR)/%.c $(UNIT_SUPPORT) $(UNIT_HDR) $(UNIT_LIB_PLAIN)
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) -o $@ $< $(UNIT_SUPPORT) $(UNIT_LIB_PLAIN) $(filter $(ATTN_LIB),$^) \
		$(UNIT_LIBS)

# Attention over shared prefixes runs the project's CPU kernels.
$(B)/tests/unit/asan/test_kv_share $(B)/tests/unit/plain/test_kv_share: $(ATTN_LIB)

unit-tests: $(UNIT_ASAN_BIN) $(UNIT_PLAIN_BIN)

# test_exports looks names up in the shared library itself.
check-unit: $(UNIT_ASAN_BIN) libkvmm
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
		KVMM_TEST_LIBKVMM_SO=$(LIBKVMM_SO) KVMM_TEST_TOP=$(TOP) \
		$(UNIT_DIR)/run.sh unit $(UNIT_ASAN_BIN)

check-unit-valgrind: $(UNIT_PLAIN_BIN) libkvmm
	@KVMM_TEST_LIBKVMM_SO=$(LIBKVMM_SO) KVMM_TEST_TOP=$(TOP) \
		$(UNIT_DIR)/run.sh unit-valgrind --valgrind $(UNIT_PLAIN_BIN)

.PHONY: unit-tests check-unit check-unit-valgrind

# Suite unit-kernel: the same programs in kernel mode, against kvmm.ko in the
# QEMU guest (libkvmm picks kernel mode there because /dev/kvmm exists).
CHECK_SUITES += unit-kernel
check-unit-kernel: $(KMOD) $(UNIT_PLAIN_BIN) $$(KMOD_VM_EXTRA)
	@$(call kmod_vm_run,$(VM_KERNEL),$(KMOD),$(B)/unit-kernel,unit-kernel) --mode test \
		$(UNIT_PLAIN_BIN)

.PHONY: check-unit-kernel
