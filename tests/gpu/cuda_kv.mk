# libkvmm's CUDA KV cache on a GPU (suite "gpu-kv"): built wherever nvcc
# and cuda.h exist, run only where a GPU and libcuda.so.1 exist; otherwise
# every test prints why it skipped.
GPU_KV_BIN := $(B)/tests/gpu/test_cuda_kv
GPU_KV_NAMES := gpu_kv_growth_layer_major gpu_kv_growth_token_major \
	gpu_kv_freed_slot_is_reused_without_new_maps gpu_kv_kernel_reads_zeros_past_seq_len \
	gpu_kv_reclaim_waits_for_a_running_kernel gpu_kv_swap_dram_layer_major \
	gpu_kv_swap_dram_token_major gpu_kv_swap_flash_layer_major gpu_kv_swap_flash_token_major

CHECK_SUITES += gpu-kv

ifneq ($(and $(HAVE_CUDA),$(KVMM_CUDA_H)),)
ALL += $(GPU_KV_BIN)

$(B)/tests/gpu/cuda_kv_kernels.o: $(TOP)/tests/gpu/cuda_kv_kernels.cu $(TOP)/tests/gpu/cuda_kv_kernels.h
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) -I$(TOP)/tests/gpu -c $< -o $@

$(GPU_KV_BIN): $(TOP)/tests/gpu/test_cuda_kv.c $(TOP)/tests/gpu/cuda_kv_kernels.h \
		$(B)/tests/gpu/cuda_kv_kernels.o $(B)/lib/libkvmm.a $(TOP)/tests/unit/helpers.h
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) $(KVMM_CUDA_CFLAGS) -I$(TOP)/userspace/lib -I$(TOP)/tests/unit \
		-I$(TOP)/tests/gpu -I$(CUDA_INC) -o $@ $< $(B)/tests/gpu/cuda_kv_kernels.o \
		$(B)/lib/libkvmm.a -lcmocka -luring -lnuma -lxxhash -lpthread $(ATTN_CUDA_LIBS)

check-gpu-kv: $(GPU_KV_BIN)
	@$(GPU_KV_BIN)
else
check-gpu-kv:
	@for t in $(GPU_KV_NAMES); do echo "$$t: skipped: built without CUDA (no nvcc or cuda.h)"; done
	@echo "gpu-kv: 0 passed, 0 failed, $(words $(GPU_KV_NAMES)) skipped"
endif

.PHONY: check-gpu-kv
