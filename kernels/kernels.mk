# Attention kernels: libkvmm-attn.a (CPU kernels, parameter checks) and,
# where nvcc exists, libkvmm-attn-cuda.a (sm_80 + sm_90 SASS and compute_90 PTX
# in one fatbinary).

ATTN_CPU_SRC := $(wildcard $(TOP)/kernels/cpu/*.c)
ATTN_CPU_OBJ := $(patsubst $(TOP)/%.c,$(B)/%.o,$(ATTN_CPU_SRC))
ATTN_HDR := $(TOP)/include/kvmm/attention.h $(wildcard $(TOP)/kernels/cpu/*.h)
ATTN_LIB := $(B)/kernels/libkvmm-attn.a
ATTN_LIBS := -lm -pthread

ALL += attn-lib
INSTALL += install-attn

attn-lib: $(ATTN_LIB)

$(B)/kernels/cpu/%.o: $(TOP)/kernels/cpu/%.c $(ATTN_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(USER_CFLAGS) -fPIC -c $< -o $@

$(ATTN_LIB): $(ATTN_CPU_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# CUDA: found through CUDA_HOME or PATH; absent means skipped, never a failure.
CUDA_HOME ?= /usr/local/cuda
NVCC ?= $(firstword $(wildcard $(CUDA_HOME)/bin/nvcc) $(shell command -v nvcc 2>/dev/null))
CUDA_ARCHS ?= 80 90
# SASS for each arch, and PTX of the newest beside it, so GPUs newer than
# the list (Blackwell ...) JIT-compile the kernels instead of failing.
CUDA_PTX_ARCH ?= $(lastword $(CUDA_ARCHS))
NVCC_FLAGS := -std=c++17 -O3 -lineinfo -Xcompiler -fPIC,-Wall,-Wextra -Werror all-warnings \
	-I$(TOP)/include $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
	-gencode arch=compute_$(CUDA_PTX_ARCH),code=compute_$(CUDA_PTX_ARCH)
ATTN_CUDA_SRC := $(wildcard $(TOP)/kernels/cuda/*.cu)
ATTN_CUDA_OBJ := $(patsubst $(TOP)/%.cu,$(B)/%.o,$(ATTN_CUDA_SRC))
ATTN_CUDA_HDR := $(wildcard $(TOP)/kernels/cuda/*.cuh)
ATTN_CUDA_LIB := $(B)/kernels/libkvmm-attn-cuda.a
# Static cudart: programs start without libcuda.so.1 and report no GPU instead.
ATTN_CUDA_LIBS := -L$(CUDA_HOME)/lib64 -l:libcudart_static.a -ldl -lrt -lstdc++
CUDA_INC := $(dir $(NVCC))../include

ifneq ($(NVCC),)
HAVE_CUDA := 1
ALL += attn-cuda
attn-cuda: $(ATTN_CUDA_LIB)
else
HAVE_CUDA :=
ALL += attn-cuda
attn-cuda:
	@echo "kernels: nvcc not found (CUDA_HOME=$(CUDA_HOME)); skipping the CUDA kernels"
endif

$(B)/kernels/cuda/%.o: $(TOP)/kernels/cuda/%.cu $(ATTN_CUDA_HDR) $(TOP)/include/kvmm/attention.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) -c $< -o $@

$(ATTN_CUDA_LIB): $(ATTN_CUDA_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

install-attn: $(ATTN_LIB) $(if $(HAVE_CUDA),$(ATTN_CUDA_LIB))
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/kvmm
	install -m 644 $(ATTN_LIB) $(DESTDIR)$(PREFIX)/lib/
	install -m 644 $(TOP)/include/kvmm/attention.h $(DESTDIR)$(PREFIX)/include/kvmm/
	$(if $(HAVE_CUDA),install -m 644 $(ATTN_CUDA_LIB) $(DESTDIR)$(PREFIX)/lib/)

.PHONY: attn-lib attn-cuda install-attn
