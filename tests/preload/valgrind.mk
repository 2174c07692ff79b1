# tests/preload/valgrind.mk: suite "preload-valgrind", the shim's core tests
# built without sanitizers and run under valgrind, as unit-valgrind does for
# libkvmm: test_shim_core (its tests that need userfaultfd faults served
# skip there, as libkvmm's do). Out of it: the programs that run under
# LD_PRELOAD (valgrind replaces malloc itself) and test_shim_cuda, whose
# parks keep GPU contents in user-mode host regions, i.e. userfaultfd
# faults valgrind cannot serve: it would hang rather than skip. Read after
# preload.mk (sorted).
PRELOAD_VG_B := $(B)/tests/preload/plain
PRELOAD_VG_BIN := $(PRELOAD_VG_B)/test_shim_core

CHECK_SUITES += preload-valgrind

$(PRELOAD_VG_B)/test_shim_core: $(PRELOAD_T)/test_shim_core.c $(PRELOAD_T_HDR) \
		$(B)/preload/plain/libshim.a $(B)/lib/libkvmm.a
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) -o $@ $< $(B)/preload/plain/libshim.a $(B)/lib/libkvmm.a -ldl $(UNIT_LIBS)

check-preload-valgrind: $(PRELOAD_VG_BIN)
	@KVMM_MODE=$${KVMM_MODE:-user} \
		$(TOP)/tests/unit/run.sh preload-valgrind --valgrind $(PRELOAD_VG_BIN)

.PHONY: check-preload-valgrind
