# Suite "cuda": libkvmm's CUDA backend on any machine. test_cuda_plan and
# test_cuda_nodev need nothing; test_cuda_mock runs the backend against a
# host-memory stand-in for libcuda.so.1 (built where cuda.h exists, else
# that program skips). The GPU itself is tested by tests/gpu.
# Read before userspace/lib/cuda.mk: the same cuda.h detection.
CUDA_HOME ?= /usr/local/cuda
KVMM_CUDA_H ?= $(if $(KVMM_NO_CUDA),,$(firstword $(wildcard $(CUDA_HOME)/include/cuda.h)))
KVMM_CUDA_CFLAGS ?= $(if $(KVMM_CUDA_H),-DKVMM_HAVE_CUDA_H -isystem $(dir $(KVMM_CUDA_H)))
CUDA_TEST_DIR := $(TOP)/tests/cuda
CUDA_TEST_SRC := $(sort $(wildcard $(CUDA_TEST_DIR)/test_*.c))
CUDA_TEST_BIN := $(patsubst $(CUDA_TEST_DIR)/%.c,$(B)/tests/cuda/%,$(CUDA_TEST_SRC))
CUDA_TEST_MOCK := $(B)/tests/cuda/libcuda-mock.so.1
CUDA_TEST_CFLAGS := $(USER_CFLAGS) $(KVMM_CUDA_CFLAGS) -I$(TOP)/userspace/lib -I$(TOP)/tests/unit \
	-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
CUDA_TEST_LIBS := $(B)/lib/asan/libkvmm.a -lcmocka -luring -lnuma -lxxhash -lpthread -ldl -lm

CHECK_SUITES += cuda
ALL += cuda-tests

$(B)/tests/cuda/%: $(CUDA_TEST_DIR)/%.c $(CUDA_TEST_DIR)/mock_cuda.h $(TOP)/tests/unit/helpers.h \
		$(B)/lib/asan/libkvmm.a
	@mkdir -p $(@D)
	$(CC) $(CUDA_TEST_CFLAGS) -o $@ $< $(CUDA_TEST_LIBS)

ifneq ($(KVMM_CUDA_H),)
$(CUDA_TEST_MOCK): $(CUDA_TEST_DIR)/mock_cuda.c $(CUDA_TEST_DIR)/mock_cuda.h
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) $(KVMM_CUDA_CFLAGS) -fPIC -shared -fvisibility=hidden -o $@ $< -lpthread
CUDA_TEST_ENV := KVMM_TEST_MOCK_CUDA=$(CUDA_TEST_MOCK)
else
CUDA_TEST_MOCK :=
CUDA_TEST_ENV :=
endif

cuda-tests: $(CUDA_TEST_BIN) $(CUDA_TEST_MOCK)

check-cuda: cuda-tests
	@$(CUDA_TEST_ENV) KVMM_MODE=$${KVMM_MODE:-user} ASAN_OPTIONS=detect_leaks=1 \
		UBSAN_OPTIONS=print_stacktrace=1 $(TOP)/tests/unit/run.sh cuda $(CUDA_TEST_BIN)

.PHONY: cuda-tests check-cuda
