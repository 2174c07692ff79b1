# libkvmm-preload.so's GPU part on a GPU (suite "gpu-preload"): built
# wherever cuda.h and the CUDA runtime exist, run only where a GPU exists;
# otherwise every test prints why it skipped. test_preload_gpu links
# libcudart.so (cudaMalloc interposed by symbol), test_preload_gpu_static
# the static runtime (seen only through dlsym and cuGetProcAddress).
GPU_PRELOAD_BIN := $(B)/tests/gpu/test_preload_gpu $(B)/tests/gpu/test_preload_gpu_static
GPU_PRELOAD_RT := $(wildcard $(CUDA_HOME)/lib64/libcudart.so)
GPU_PRELOAD_DEPS := $(TOP)/tests/gpu/test_preload_gpu.c $(TOP)/tests/gpu/gpu_test.h \
	$(TOP)/tests/unit/helpers.h $(TOP)/tests/common/t_list.h $(TOP)/include/kvmm/preload.h \
	$(B)/lib/libkvmm.a

CHECK_SUITES += gpu-preload

ifneq ($(and $(KVMM_CUDA_H),$(GPU_PRELOAD_RT)),)
ALL += $(GPU_PRELOAD_BIN)

$(B)/tests/gpu/test_preload_gpu: $(GPU_PRELOAD_DEPS)
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) $(KVMM_CUDA_CFLAGS) -I$(TOP)/tests/unit -o $@ $< $(B)/lib/libkvmm.a \
		-lcmocka $(LIBKVMM_LIBS) -L$(CUDA_HOME)/lib64 -lcudart -Wl,-rpath,$(CUDA_HOME)/lib64 -ldl

$(B)/tests/gpu/test_preload_gpu_static: $(GPU_PRELOAD_DEPS)
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) $(KVMM_CUDA_CFLAGS) -I$(TOP)/tests/unit -o $@ $< $(B)/lib/libkvmm.a \
		-lcmocka $(LIBKVMM_LIBS) -L$(CUDA_HOME)/lib64 -l:libcudart_static.a -ldl -lrt -lpthread -lstdc++

# Each program ends with "NAME: N passed, N failed, N skipped"; the suite's
# closing line is their sum.
check-gpu-preload: $(GPU_PRELOAD_BIN) $(B)/lib/libkvmm-preload.so
	@rc=0; p=0; f=0; k=0; for t in $(GPU_PRELOAD_BIN); do \
		out=$$(KVMM_TEST_PRELOAD_SO=$(B)/lib/libkvmm-preload.so \
			KVMM_MODE=$${KVMM_MODE:-user} $$t 2>&1) || rc=1; printf '%s\n' "$$out"; \
		set -- $$(printf '%s\n' "$$out" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped$$/\1 \2 \3/p' | tail -n1); \
		if [ $$# -eq 3 ]; then p=$$((p + $$1)); f=$$((f + $$2)); k=$$((k + $$3)); \
		else f=$$((f + 1)); rc=1; fi; done; \
	echo "gpu-preload: $$p passed, $$f failed, $$k skipped"; exit $$rc
else
GPU_PRELOAD_WHY := $(if $(KVMM_NO_CUDA),KVMM_NO_CUDA is set,no cuda.h or libcudart.so \
	(CUDA_HOME=$(CUDA_HOME)); install the CUDA toolkit or set CUDA_HOME to it)
check-gpu-preload:
	@n=0; for t in $$($(TOP)/tests/common/test-names.sh $(TOP)/tests/gpu/test_preload_gpu.c); do \
		echo "SKIP test_preload_gpu: $$t: built without CUDA: $(GPU_PRELOAD_WHY)"; \
		n=$$((n + 1)); done; \
	echo "gpu-preload: 0 passed, 0 failed, $$n skipped"
endif

.PHONY: check-gpu-preload
