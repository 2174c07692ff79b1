# tests/preload: suite "preload". test_shim_core runs the shim's parts
# directly, built with ASan/UBSan; test_preload_exec runs the plain program
# probe under LD_PRELOAD=libkvmm-preload.so (a sanitizer cannot sit under
# an interposed malloc), with countmalloc.so as another interposer.
# Suite "preload-engines" (engines.mk) runs llama.cpp and PyTorch under it.
PRELOAD_T := $(TOP)/tests/preload
PRELOAD_T_B := $(B)/tests/preload
PRELOAD_T_HDR := $(TOP)/tests/unit/helpers.h $(TOP)/tests/common/t_list.h \
	$(TOP)/userspace/preload/shim.h $(TOP)/include/kvmm/kvmm.h $(TOP)/tests/preload/probe_run.h

CHECK_SUITES += preload

$(PRELOAD_T_B)/test_shim_core: $(PRELOAD_T)/test_shim_core.c $(PRELOAD_T_HDR) \
		$(B)/preload/asan/libshim.a $(B)/lib/asan/libkvmm.a
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) $(UNIT_SANITIZE) -o $@ $< $(B)/preload/asan/libshim.a \
		$(B)/lib/asan/libkvmm.a -ldl $(UNIT_LIBS)

$(PRELOAD_T_B)/test_preload_exec: $(PRELOAD_T)/test_preload_exec.c $(PRELOAD_T_HDR) $(B)/lib/libkvmm.a
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) -o $@ $< $(B)/lib/libkvmm.a -lcmocka $(LIBKVMM_LIBS)

$(PRELOAD_T_B)/probe: $(PRELOAD_T)/probe.c
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) -o $@ $< -lpthread

$(PRELOAD_T_B)/countmalloc.so: $(PRELOAD_T)/countmalloc.c
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) -fPIC -shared -o $@ $< -ldl

PRELOAD_T_BIN := $(PRELOAD_T_B)/test_shim_core $(PRELOAD_T_B)/test_preload_exec
preload-tests: $(PRELOAD_T_BIN) $(PRELOAD_T_B)/probe $(PRELOAD_T_B)/countmalloc.so

check-preload: preload-tests $(B)/lib/libkvmm-preload.so $(B)/bin/kvmmctl
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:allow_user_segv_handler=1 \
		UBSAN_OPTIONS=print_stacktrace=1 KVMM_TEST_KVMMCTL=$(B)/bin/kvmmctl \
		KVMM_TEST_PRELOAD_SO=$(B)/lib/libkvmm-preload.so KVMM_TEST_PROBE=$(PRELOAD_T_B)/probe \
		KVMM_TEST_COUNTMALLOC=$(PRELOAD_T_B)/countmalloc.so \
		$(TOP)/tests/unit/run.sh preload $(PRELOAD_T_BIN)

.PHONY: preload-tests check-preload

# Suite preload-engines: llama-server and PyTorch, unmodified, under the shim
# (tests/preload/engines.py). The first run builds llama.cpp into
# ~/.cache/kvmm (about 5 minutes on 2 cores); later runs take about a minute.
CHECK_SUITES += preload-engines

check-preload-engines: $(B)/lib/libkvmm-preload.so
	@/usr/bin/python3 $(PRELOAD_T)/engines.py --so $(B)/lib/libkvmm-preload.so --top $(TOP)

.PHONY: check-preload-engines
