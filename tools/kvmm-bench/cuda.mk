# kvmm-bench-cuda: VMM call latency, decode-loop blocking with the mapper on
# and off, and slot swap bandwidth against pinned copies (GPU only; without
# one it says why and exits 77). Plain C: it needs cuda.h, never nvcc.
BENCH_CUDA := $(B)/tools/kvmm-bench-cuda

ALL += $(BENCH_CUDA)
INSTALL += install-bench-cuda

$(BENCH_CUDA): $(TOP)/tools/kvmm-bench/cuda_bench.c $(B)/lib/libkvmm.a \
		$(wildcard $(TOP)/userspace/lib/cuda_*.h)
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) $(KVMM_CUDA_CFLAGS) -I$(TOP)/userspace/lib -o $@ $< \
		$(B)/lib/libkvmm.a -luring -lnuma -lxxhash -lpthread

install-bench-cuda: $(BENCH_CUDA)
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BENCH_CUDA) $(DESTDIR)$(PREFIX)/bin/

.PHONY: install-bench-cuda

# kvmm-gpu-probe: the GPU host's device, driver and what its VMM calls
# allow, checked before a GPU run (scripts/gpu-validate.sh). Needs cuda.h.
GPU_PROBE := $(B)/tools/kvmm-gpu-probe

ifneq ($(KVMM_CUDA_H),)
ALL += $(GPU_PROBE)

$(GPU_PROBE): $(TOP)/tools/kvmm-bench/gpu_probe.c
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) $(KVMM_CUDA_CFLAGS) -o $@ $< -ldl
endif

# kvmm-bench-region: the CUDA decode kernel on a kvmm CUDA cache against the
# same kernel on cudaMalloc memory (needs the CUDA kernels: nvcc and cuda.h).
BENCH_REGION := $(B)/tools/kvmm-bench-region

ifneq ($(and $(HAVE_CUDA),$(KVMM_CUDA_H)),)
ALL += $(BENCH_REGION)

$(BENCH_REGION): $(TOP)/tools/kvmm-bench/region_attn.c $(B)/lib/libkvmm.a $(ATTN_CUDA_LIB) \
		$(ATTN_LIB) $(TOP)/include/kvmm/attention.h $(TOP)/include/kvmm/kvmm.h
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) -I$(CUDA_INC) -o $@ $< $(ATTN_CUDA_LIB) $(ATTN_LIB) $(B)/lib/libkvmm.a \
		-luring -lnuma -lxxhash -lpthread $(ATTN_CUDA_LIBS) $(ATTN_LIBS)
endif
