# Suite "cuda": libkvmm's CUDA backend on any machine. test_cuda_plan and
# test_cuda_nodev need nothing; test_cuda_mock runs the backend against a
# host-memory stand-in for libcuda.so.1 (built where cuda.h exists, else
# that program skips), test_cuda_stand_in checks the stand-in's own
# contract. test_cuda_mock runs twice: with work deferred in stream order,
# then as test_cuda_mock-seeded with it also delayed and reordered across
# streams (MOCK_CUDA_SEED=$(CUDA_MOCK_SEED); make check-cuda
# CUDA_MOCK_SEED=N tries another schedule). Suite "cuda-valgrind" runs
# the stand-in programs, built without sanitizers, under valgrind. The
# GPU itself is tested by tests/gpu.
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
CUDA_TEST_LIBS := $(B)/lib/asan/libkvmm_test.a $(B)/lib/asan/libkvmm.a -lcmocka -luring -lnuma \
	-lxxhash -lpthread -ldl -lm

CUDA_TEST_PLAIN_SRC := $(CUDA_TEST_DIR)/test_cuda_stand_in.c $(CUDA_TEST_DIR)/test_cuda_mock.c
CUDA_TEST_PLAIN_BIN := $(patsubst $(CUDA_TEST_DIR)/%.c,$(B)/tests/cuda/plain/%,$(CUDA_TEST_PLAIN_SRC))
CUDA_MOCK_SEED ?= 1

CHECK_SUITES += cuda cuda-valgrind
ALL += cuda-tests

$(B)/tests/cuda/%: $(CUDA_TEST_DIR)/%.c $(CUDA_TEST_DIR)/mock_cuda.h $(TOP)/tests/unit/helpers.h \
		$(TOP)/tests/common/t_list.h $(B)/lib/asan/libkvmm_test.a $(B)/lib/asan/libkvmm.a
	@mkdir -p $(@D)
	$(CC) $(CUDA_TEST_CFLAGS) -o $@ $< $(CUDA_TEST_LIBS)

$(B)/tests/cuda/plain/%: $(CUDA_TEST_DIR)/%.c $(CUDA_TEST_DIR)/mock_cuda.h \
		$(TOP)/tests/unit/helpers.h $(TOP)/tests/common/t_list.h $(B)/lib/libkvmm_test.a \
		$(B)/lib/libkvmm.a
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) $(KVMM_CUDA_CFLAGS) -I$(TOP)/userspace/lib -I$(TOP)/tests/unit -o $@ $< \
		$(B)/lib/libkvmm_test.a $(B)/lib/libkvmm.a -lcmocka -luring -lnuma -lxxhash -lpthread \
		-ldl -lm

ifneq ($(KVMM_CUDA_H),)
$(CUDA_TEST_MOCK): $(CUDA_TEST_DIR)/mock_cuda.c $(CUDA_TEST_DIR)/mock_cuda.h
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) $(KVMM_CUDA_CFLAGS) -fPIC -shared -fvisibility=hidden -o $@ $< -lpthread
CUDA_TEST_ENV := KVMM_TEST_MOCK_CUDA=$(CUDA_TEST_MOCK)
# test_cuda_mock once more, in seeded mode (run.sh takes programs: a wrapper).
CUDA_TEST_SEEDED := $(B)/tests/cuda/test_cuda_mock-seeded
$(CUDA_TEST_SEEDED): $(B)/tests/cuda/test_cuda_mock
	printf '#!/bin/sh\nMOCK_CUDA_SEED=$${KVMM_TEST_CUDA_SEED:-1} exec %s "$$@"\n' '$<' >$@
	chmod +x $@
else
CUDA_TEST_MOCK :=
CUDA_TEST_ENV :=
CUDA_TEST_SEEDED :=
endif

cuda-tests: $(CUDA_TEST_BIN) $(CUDA_TEST_MOCK) $(CUDA_TEST_SEEDED) $(CUDA_TEST_PLAIN_BIN)

check-cuda: $(CUDA_TEST_BIN) $(CUDA_TEST_MOCK) $(CUDA_TEST_SEEDED)
	@env -u MOCK_CUDA_SEED $(CUDA_TEST_ENV) KVMM_TEST_CUDA_SEED=$(CUDA_MOCK_SEED) \
		KVMM_MODE=$${KVMM_MODE:-user} ASAN_OPTIONS=detect_leaks=1 \
		UBSAN_OPTIONS=print_stacktrace=1 $(TOP)/tests/unit/run.sh cuda $(CUDA_TEST_BIN) \
		$(CUDA_TEST_SEEDED)

check-cuda-valgrind: $(CUDA_TEST_PLAIN_BIN) $(CUDA_TEST_MOCK)
	@env -u MOCK_CUDA_SEED $(CUDA_TEST_ENV) KVMM_MODE=$${KVMM_MODE:-user} \
		$(TOP)/tests/unit/run.sh cuda-valgrind --valgrind $(CUDA_TEST_PLAIN_BIN)

.PHONY: cuda-tests check-cuda check-cuda-valgrind
