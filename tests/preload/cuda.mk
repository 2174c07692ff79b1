# tests/preload/cuda.mk: suite "preload-cuda", the shim's GPU part against
# the driver stand-in (tests/cuda/mock_cuda.c, asynchronous completion in
# stream order), which the programs find as libcuda.so.1 through
# LD_LIBRARY_PATH, as a CUDA program finds the real driver.
#   test_shim_cuda     the GPU core (cuda.c, control.c) called directly,
#                      built with ASan/UBSan
#   test_preload_cuda  cuprobe, a plain CUDA program linked against the
#                      runtime stand-in libcudart-standin.so (cudart_standin.c:
#                      it reaches the driver through dlsym + cuGetProcAddress,
#                      as libcudart does), run under LD_PRELOAD; kvmmctl
#                      park/unpark from outside
# test_shim_cuda runs twice: as built, then as test_shim_cuda-seeded with the
# stand-in's seeded mode (work also delayed and reordered across streams,
# MOCK_CUDA_SEED=$(CUDA_MOCK_SEED)). Built without cuda.h both programs skip. Read after tests/cuda/cuda.mk
# (sorted: "cuda.mk" < "preload.mk" in tests/preload, tests/cuda first).
PRELOAD_CUDA_B := $(B)/tests/preload/cuda
PRELOAD_CUDA_BIN := $(PRELOAD_CUDA_B)/test_shim_cuda $(PRELOAD_CUDA_B)/test_preload_cuda

CHECK_SUITES += preload-cuda

$(PRELOAD_CUDA_B)/test_preload_cuda: $(TOP)/tests/preload/test_preload_cuda.c $(TOP)/tests/preload/probe_run.h \
		$(TOP)/tests/unit/helpers.h $(TOP)/tests/common/t_list.h $(B)/lib/libkvmm.a
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) -o $@ $< $(B)/lib/libkvmm.a -lcmocka $(LIBKVMM_LIBS)

$(PRELOAD_CUDA_B)/test_shim_cuda: $(TOP)/tests/preload/test_shim_cuda.c \
		$(TOP)/tests/unit/helpers.h $(TOP)/tests/common/t_list.h \
		$(TOP)/userspace/preload/shim.h $(TOP)/tests/cuda/mock_cuda.h \
		$(B)/preload/asan/libshim.a $(B)/lib/asan/libkvmm.a
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) $(KVMM_CUDA_CFLAGS) $(UNIT_SANITIZE) -o $@ $< \
		$(B)/preload/asan/libshim.a $(B)/lib/asan/libkvmm.a -ldl $(UNIT_LIBS)

ifneq ($(KVMM_CUDA_H),)
PRELOAD_CUDA_RT := $(PRELOAD_CUDA_B)/libcudart-standin.so
PRELOAD_CUDA_PROBE := $(PRELOAD_CUDA_B)/cuprobe
PRELOAD_CUDA_LIBDIR := $(PRELOAD_CUDA_B)/driver
PRELOAD_CUDA_DRV := $(PRELOAD_CUDA_LIBDIR)/libcuda.so.1
PRELOAD_CUDA_SEEDED := $(PRELOAD_CUDA_B)/test_shim_cuda-seeded

$(PRELOAD_CUDA_SEEDED): $(PRELOAD_CUDA_B)/test_shim_cuda
	printf '#!/bin/sh\nMOCK_CUDA_SEED=$${KVMM_TEST_CUDA_SEED:-1} exec %s "$$@"\n' '$<' >$@
	chmod +x $@

$(PRELOAD_CUDA_DRV): $(CUDA_TEST_MOCK)
	@mkdir -p $(@D)
	ln -sf $(CUDA_TEST_MOCK) $@

$(PRELOAD_CUDA_RT): $(TOP)/tests/preload/cudart_standin.c
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) $(KVMM_CUDA_CFLAGS) -fPIC -shared -fvisibility=hidden \
		-Wl,-soname,libcudart-standin.so -o $@ $< -ldl -lpthread

$(PRELOAD_CUDA_PROBE): $(TOP)/tests/preload/cuprobe.c $(TOP)/include/kvmm/preload.h \
		$(TOP)/tests/cuda/mock_cuda.h $(PRELOAD_CUDA_RT)
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) $(KVMM_CUDA_CFLAGS) -o $@ $< $(PRELOAD_CUDA_RT) \
		-Wl,-rpath,$(PRELOAD_CUDA_B) -ldl
else
PRELOAD_CUDA_RT :=
PRELOAD_CUDA_PROBE :=
PRELOAD_CUDA_LIBDIR :=
PRELOAD_CUDA_DRV :=
PRELOAD_CUDA_SEEDED :=
endif

preload-cuda-tests: $(PRELOAD_CUDA_BIN) $(PRELOAD_CUDA_PROBE) $(PRELOAD_CUDA_DRV) \
	$(PRELOAD_CUDA_SEEDED)

check-preload-cuda: preload-cuda-tests $(B)/lib/libkvmm-preload.so $$(KVMMCTL_BIN)
	@env -u MOCK_CUDA_SEED KVMM_TEST_CUDA_SEED=$(CUDA_MOCK_SEED) \
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
		KVMM_MODE=$${KVMM_MODE:-user} KVMM_TEST_MOCK_CUDA=$(CUDA_TEST_MOCK) \
		KVMM_TEST_PRELOAD_SO=$(B)/lib/libkvmm-preload.so \
		KVMM_TEST_CUPROBE=$(PRELOAD_CUDA_PROBE) KVMM_TEST_CUDA_LIBDIR=$(PRELOAD_CUDA_LIBDIR) \
		KVMM_TEST_KVMMCTL=$(KVMMCTL_BIN) \
		$(TOP)/tests/unit/run.sh preload-cuda $(PRELOAD_CUDA_BIN) $(PRELOAD_CUDA_SEEDED)

.PHONY: preload-cuda-tests check-preload-cuda
