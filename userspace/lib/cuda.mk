# libkvmm's CUDA backend (userspace/lib/cuda_*.c, added to lib.mk's
# LIBKVMM_EXTRA_SRC): built against the toolkit's cuda.h when there is one, else
# as a backend that reports -ENODEV. libcuda is never linked: it is
# dlopen()ed at run time. KVMM_NO_CUDA=1 builds the -ENODEV backend anyway.
# tests/cuda/cuda.mk, read first, detects the same way.
CUDA_HOME ?= /usr/local/cuda
KVMM_CUDA_H ?= $(if $(KVMM_NO_CUDA),,$(firstword $(wildcard $(CUDA_HOME)/include/cuda.h)))
KVMM_CUDA_CFLAGS ?= $(if $(KVMM_CUDA_H),-DKVMM_HAVE_CUDA_H -isystem $(dir $(KVMM_CUDA_H)))
KVMM_CUDA_HDR := $(wildcard $(TOP)/userspace/lib/cuda_*.h)
LIBKVMM_EXTRA_SRC += $(sort $(wildcard $(TOP)/userspace/lib/cuda_*.c))

$(B)/lib/obj/cuda_%.o $(B)/lib/asan/cuda_%.o: LIBKVMM_CFLAGS += $(KVMM_CUDA_CFLAGS)
$(B)/lib/obj/cuda_%.o $(B)/lib/asan/cuda_%.o: $(KVMM_CUDA_HDR)
