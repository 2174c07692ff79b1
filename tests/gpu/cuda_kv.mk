# libkvmm's CUDA KV cache on a GPU (suite "gpu-kv"): built wherever nvcc
# and cuda.h exist, run only where a GPU and libcuda.so.1 exist; otherwise
# every test prints why it skipped.
GPU_KV_BIN := $(B)/tests/gpu/test_cuda_kv

CHECK_SUITES += gpu-kv

ifneq ($(and $(HAVE_CUDA),$(KVMM_CUDA_H)),)
ALL += $(GPU_KV_BIN)

$(B)/tests/gpu/cuda_kv_kernels.o: $(TOP)/tests/gpu/cuda_kv_kernels.cu $(TOP)/tests/gpu/cuda_kv_kernels.h
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) -I$(TOP)/tests/gpu -c $< -o $@

$(GPU_KV_BIN): $(TOP)/tests/gpu/test_cuda_kv.c $(TOP)/tests/gpu/cuda_kv_kernels.h \
		$(B)/tests/gpu/cuda_kv_kernels.o $(B)/lib/libkvmm.a $(ATTN_CUDA_LIB) $(ATTN_LIB) $(TOP)/tests/unit/helpers.h \
		$(TOP)/tests/gpu/gpu_test.h $(TOP)/tests/common/t_list.h
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) $(KVMM_CUDA_CFLAGS) -I$(TOP)/userspace/lib -I$(TOP)/tests/unit \
		-I$(TOP)/tests/gpu -I$(CUDA_INC) -o $@ $< $(B)/tests/gpu/cuda_kv_kernels.o \
		$(B)/lib/libkvmm.a $(ATTN_CUDA_LIB) $(ATTN_LIB) -lcmocka -luring -lnuma -lxxhash -lpthread $(ATTN_CUDA_LIBS)

check-gpu-kv: $(GPU_KV_BIN)
	@$(GPU_KV_BIN)
else
# Not built: every test its source holds is skipped, with the reason.
GPU_KV_WHY := $(if $(KVMM_NO_CUDA),KVMM_NO_CUDA is set,$(if $(HAVE_CUDA),no cuda.h,no nvcc) \
	(CUDA_HOME=$(CUDA_HOME)); install the CUDA toolkit or set CUDA_HOME to it)
check-gpu-kv:
	@n=0; for t in $$($(TOP)/tests/common/test-names.sh $(TOP)/tests/gpu/test_cuda_kv.c); do \
		echo "SKIP test_cuda_kv: $$t: built without CUDA: $(GPU_KV_WHY)"; \
		n=$$((n + 1)); done; \
	echo "gpu-kv: 0 passed, 0 failed, $$n skipped"
endif

.PHONY: check-gpu-kv
