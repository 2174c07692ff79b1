# kvmm-bench-attn: attention kernel benchmark (CPU always; GPU parts where nvcc exists).
ATTN_BENCH_BIN := $(B)/tools/kvmm-bench-attn
# attn_flash.c decodes over libkvmm regions: the bench links libkvmm too.
ATTN_BENCH_SRC := $(TOP)/tools/kvmm-bench/attn_bench.c $(TOP)/tools/kvmm-bench/attn_flash.c
ATTN_BENCH_LIBKVMM := $(B)/lib/libkvmm.a
ATTN_BENCH_LIBS := $(ATTN_BENCH_LIBKVMM) -luring -lnuma -lxxhash -ldl
ATTN_BENCH_DEPS := $(ATTN_BENCH_SRC) $(TOP)/tools/kvmm-bench/attn_bench.h $(ATTN_LIB) \
	$(ATTN_BENCH_LIBKVMM) $(TOP)/include/kvmm/kvmm.h

ALL += $(ATTN_BENCH_BIN)
INSTALL += install-bench-attn

ifneq ($(HAVE_CUDA),)
ATTN_BENCH_GPU_OBJ := $(B)/tools/kvmm-bench/attn_bench_gpu.o
$(ATTN_BENCH_GPU_OBJ): $(TOP)/tools/kvmm-bench/attn_bench_gpu.c $(TOP)/tools/kvmm-bench/attn_bench.h \
		$(TOP)/include/kvmm/attention.h
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) -I$(CUDA_INC) -c $< -o $@

$(ATTN_BENCH_BIN): $(ATTN_BENCH_DEPS) $(ATTN_BENCH_GPU_OBJ) $(ATTN_CUDA_LIB)
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) -DKVMM_BENCH_CUDA -o $@ $(ATTN_BENCH_SRC) $(ATTN_BENCH_GPU_OBJ) \
		$(ATTN_CUDA_LIB) $(ATTN_LIB) $(ATTN_BENCH_LIBS) $(ATTN_CUDA_LIBS) $(ATTN_LIBS)
else
$(ATTN_BENCH_BIN): $(ATTN_BENCH_DEPS)
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) -o $@ $(ATTN_BENCH_SRC) $(ATTN_LIB) $(ATTN_BENCH_LIBS) $(ATTN_LIBS)
endif

install-bench-attn: $(ATTN_BENCH_BIN)
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(ATTN_BENCH_BIN) $(DESTDIR)$(PREFIX)/bin/

.PHONY: install-bench-attn
