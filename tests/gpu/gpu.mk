# CUDA kernel tests (suite "gpu"): built wherever nvcc exists, run only where
# a GPU and libcuda.so.1 exist; otherwise every test prints why it skipped.

GPU_TEST_BIN := $(B)/tests/gpu/attn_gpu_test

CHECK_SUITES += gpu

ifneq ($(HAVE_CUDA),)
ALL += $(GPU_TEST_BIN)

$(B)/tests/gpu/%.o: $(TOP)/tests/%.c $(ATTN_HDR) $(TOP)/tests/unit/attn_util.h \
		$(TOP)/tests/unit/attn_golden.h $(TOP)/tests/gpu/gpu_test.h $(TOP)/tests/common/t_list.h
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) -I$(TOP)/tests/unit -I$(CUDA_INC) -c $< -o $@

$(GPU_TEST_BIN): $(B)/tests/gpu/gpu/attn_gpu_test.o $(B)/tests/gpu/unit/attn_util.o \
		$(B)/tests/gpu/unit/attn_golden.o \
		$(ATTN_CUDA_LIB) $(ATTN_LIB)
	$(CC) -o $@ $(filter %.o,$^) $(ATTN_CUDA_LIB) $(ATTN_LIB) -lcmocka $(ATTN_CUDA_LIBS) \
		$(ATTN_LIBS)

check-gpu: $(GPU_TEST_BIN)
	@$(GPU_TEST_BIN)
else
# Not built: every test its source holds is skipped, with the reason.
check-gpu:
	@n=0; for t in $$($(TOP)/tests/common/test-names.sh $(TOP)/tests/gpu/attn_gpu_test.c); do \
		echo "SKIP attn_gpu_test: $$t: built without CUDA: no nvcc (CUDA_HOME=$(CUDA_HOME)); install the" \
			"CUDA toolkit, or set CUDA_HOME to it"; n=$$((n + 1)); done; \
	echo "gpu: 0 passed, 0 failed, $$n skipped"
endif

.PHONY: check-gpu
