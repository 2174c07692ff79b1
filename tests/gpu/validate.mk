# make gpu-validate: the whole GPU run in one command (tests/gpu/README.md).
#   make gpu-validate-build   everything the run needs, into build/ (on a CPU
#                             build machine; copy the tree and build/ to the
#                             GPU host and run scripts/gpu-validate.sh there)
#   make gpu-validate         build, then run it here (a GPU host with the
#                             toolchain); GPU_DRY_RUN=1 runs it against the
#                             driver stand-in instead; OUT=DIR for the report
# Suite "gpu-validate" (make check-gpu-validate, part of make check): the
# dry run and the script's failure paths, on any machine with cuda.h and nvcc.
# Read before tools/ and userspace/: their outputs are named with $$(...).
GPU_VALIDATE_LIBS := $(B)/gpu/lib
OUT ?= $(B)/gpu-report
GPU_DRY_RUN ?=

CHECK_SUITES += gpu-validate

ifneq ($(and $(HAVE_CUDA),$(KVMM_CUDA_H)),)
GPU_VALIDATE_BINS = $(GPU_TEST_BIN) $(GPU_KV_BIN) $(BENCH_CUDA) $(ATTN_BENCH_BIN) $(GPU_PROBE) \
	$(BENCH_REGION) $(CUDA_TEST_MOCK) \
	$(if $(GPU_PRELOAD_RT),$(GPU_PRELOAD_BIN) $(B)/lib/libkvmm-preload.so)

# The shared libraries the programs link (not glibc's own) travel in
# build/gpu/lib: a bare GPU host has only the driver.
gpu-validate-build: $$(GPU_VALIDATE_BINS)
	@rm -rf $(GPU_VALIDATE_LIBS) && mkdir -p $(GPU_VALIDATE_LIBS)
	@for f in $(GPU_VALIDATE_BINS); do ldd $$f; done | \
		awk '$$2 == "=>" && $$3 ~ /^\// { print $$3 }' | sort -u | \
		grep -vE '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*)\.so' | \
		while read -r l; do cp -L "$$l" $(GPU_VALIDATE_LIBS)/; done
	@echo "gpu-validate-build: programs in $(B), libraries in $(GPU_VALIDATE_LIBS):" \
		"$$(ls $(GPU_VALIDATE_LIBS) | tr '\n' ' ')"

gpu-validate: gpu-validate-build
	@GPU_DRY_RUN=$(GPU_DRY_RUN) OUT=$(OUT) $(TOP)/scripts/gpu-validate.sh

check-gpu-validate: gpu-validate-build
	@$(TOP)/tests/gpu/validate_test.sh
else
GPU_VALIDATE_WHY := built without CUDA: $(if $(KVMM_NO_CUDA),KVMM_NO_CUDA is set,$(if \
	$(HAVE_CUDA),no cuda.h,no nvcc) (CUDA_HOME=$(CUDA_HOME)); install the CUDA toolkit)
gpu-validate-build gpu-validate:
	@echo "gpu-validate: $(GPU_VALIDATE_WHY)"; exit 1

check-gpu-validate:
	@echo "SKIP validate_test: dry_run: $(GPU_VALIDATE_WHY)"
	@echo "gpu-validate: 0 passed, 0 failed, 1 skipped"
endif

.PHONY: gpu-validate-build gpu-validate check-gpu-validate
