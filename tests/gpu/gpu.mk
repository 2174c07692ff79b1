# CUDA kernel tests (suite "gpu"): built wherever nvcc exists, run only where
# a GPU and libcuda.so.1 exist; otherwise every test prints why it skipped.

GPU_TEST_BIN := $(B)/tests/gpu/attn_gpu_test
GPU_TEST_NAMES := gpu_rejects_misaligned_rows gpu_decode_matches_golden_over_shape_grid \
	gpu_decode_without_workspace_matches_golden gpu_split_decode_of_long_sequence_matches_golden \
	gpu_paged_twin_equals_contiguous_bitwise gpu_prefill_matches_golden_over_shape_grid

CHECK_SUITES += gpu

ifneq ($(HAVE_CUDA),)
ALL += $(GPU_TEST_BIN)

$(B)/tests/gpu/%.o: $(TOP)/tests/%.c $(ATTN_HDR) $(TOP)/tests/unit/attn_util.h \
		$(TOP)/tests/unit/attn_golden.h
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
check-gpu:
	@for t in $(GPU_TEST_NAMES); do echo "$$t: skipped: built without CUDA (no nvcc)"; done
	@echo "gpu: 0 passed, 0 failed, $(words $(GPU_TEST_NAMES)) skipped"
endif

.PHONY: check-gpu
