# Reliability runs of kvmm.ko (not part of `make check`; see docs/reliability.md).
#
#   make check-debug   build (once, cached in ~/.cache/kvmm) a kernel with KASAN, lockdep,
#                      kmemleak and fault injection (scripts/build-debug-kernel.sh), build
#                      kvmm.ko against it in $(B)/kmod-debug, and run there the whole
#                      tests/kmod suite, test_stress with stress-ng, a short fuzz pass and
#                      a kmemleak scan; any kernel report fails it
#   make fuzz          the fuzzer on the stock kernel: SECONDS=N (default 180), SEED=S
#   make fuzz-debug    the fuzzer on the debug kernel (with fault injection)
#   make stress        test_stress (stress-ng beside kvmm) on the stock kernel
#
# Variables: SECONDS, SEED, FUZZ_THREADS, CHECK_DEBUG_FUZZ_SECONDS (60),
# DEBUG_VM_TIMEOUT (VM limit on the debug kernel, 7200 s), DEBUG_TEST_TIMEOUT
# (per program there, 2400 s), STRESS_SECONDS (test_stress's duration, 15), and
# those of tests/kmod/kmod.mk (KMOD_TESTS picks the suite's programs).

FUZZ_DIR := $(TOP)/tests/kmod/fuzz
FUZZ_SRC := $(wildcard $(FUZZ_DIR)/*.c)
FUZZ_BIN := $(B)/kmod/fuzz/kvmm_fuzz
KMOD_DEBUG_DIR := $(B)/kmod-debug
KMOD_DEBUG := $(KMOD_DEBUG_DIR)/src/kmod/kvmm.ko
# tests/kmod/kmod.mk (and the tools' fragments) are read after this file: their lists
# are not known yet here, so the runs below depend on `all`, which builds the test
# programs and the tools the harness copies into the guest.
DEBUG_TEST_BINS := $(patsubst $(TOP)/tests/kmod/%.c,$(B)/kmod/%,$(wildcard $(TOP)/tests/kmod/test_*.c))

SECONDS ?= 180
SEED ?= 1
FUZZ_THREADS ?= 3
CHECK_DEBUG_FUZZ_SECONDS ?= 60
STRESS_SECONDS ?= 15
DEBUG_VM_TIMEOUT ?= 7200
DEBUG_TEST_TIMEOUT ?= 2400

ALL += $(FUZZ_BIN)

$(FUZZ_BIN): $(FUZZ_SRC) $(wildcard $(FUZZ_DIR)/*.h) $(TOP)/include/uapi/linux/kvmm.h
	@mkdir -p $(@D)
	$(CC) $(KMOD_TEST_CFLAGS) -o $@ $(FUZZ_SRC) $(USER_LDFLAGS) -lpthread

# The harness options every run here adds (kmod_vm_run brings stress-ng): the fuzzer's settings.
debug_vm_extra = --env KVMM_FUZZ_SEED=$(SEED) --env KVMM_FUZZ_THREADS=$(FUZZ_THREADS) \
	--env KVMM_STRESS_SECONDS=$(STRESS_SECONDS)

# The debug kernel tree; the script builds it the first time and prints its path.
# kvmm.ko is built from a copy of the sources so its objects never mix with the stock build.
# (The kernel build is kept out of the $(MAKE) line, which make -n would run.)
module-debug:
	@mkdir -p $(KMOD_DEBUG_DIR)
	@kdir=$$($(TOP)/scripts/build-debug-kernel.sh) && echo "$$kdir" >$(KMOD_DEBUG_DIR)/kdir && \
	echo "debug kernel: $$kdir (kernel build took $$(cat $$kdir/../.built) s)"
	@rm -rf $(KMOD_DEBUG_DIR)/src && mkdir -p $(KMOD_DEBUG_DIR)/src/kmod && \
	cp -a $(TOP)/Kbuild $(KMOD_DEBUG_DIR)/src/ && \
	cp -a $(TOP)/kmod/Kbuild $(filter-out %.mod.c,$(wildcard $(TOP)/kmod/*.c)) \
		$(wildcard $(TOP)/kmod/*.h) $(KMOD_DEBUG_DIR)/src/kmod/ && \
	cp -a $(TOP)/include $(KMOD_DEBUG_DIR)/src/
	$(MAKE) -C "$$(cat $(KMOD_DEBUG_DIR)/kdir)" M=$(KMOD_DEBUG_DIR)/src W=1 modules

# The whole suite, test_stress and a short fuzz pass on the debug kernel, then kmemleak.
check-debug: module-debug all $(DEBUG_TEST_BINS) $(FUZZ_BIN)
	@$(if $(KMOD_STRESS_NG),,echo "check-debug: no stress-ng (scripts/install-deps.sh): test_stress skips";) \
	kdir=$$(cat $(KMOD_DEBUG_DIR)/kdir); t0=$$(date +%s); \
	$(call kmod_vm_run,$$kdir/arch/x86/boot/bzImage,$(KMOD_DEBUG),$(KMOD_DEBUG_DIR),kmod-debug) \
		--mode test $(debug_vm_extra) --env KVMM_FUZZ_SECONDS=$(CHECK_DEBUG_FUZZ_SECONDS) \
		$(KMOD_TEST_PROGS) $(FUZZ_BIN); rc=$$?; \
	echo "check-debug: VM ran $$(( $$(date +%s) - t0 )) s; kernel build took $$(cat $$kdir/../.built) s; logs in $(KMOD_DEBUG_DIR)"; \
	exit $$rc
check-debug: VM_TIMEOUT = $(DEBUG_VM_TIMEOUT)
check-debug: KMOD_TEST_TIMEOUT = $(DEBUG_TEST_TIMEOUT)

# The fuzzer alone for SECONDS, on the stock kernel or the debug one.
fuzz: all $(FUZZ_BIN)
	@$(call kmod_vm_run,$(VM_KERNEL),$(KMOD),$(B)/kmod-fuzz,fuzz) --mode test \
		$(debug_vm_extra) --env KVMM_FUZZ_SECONDS=$(SECONDS) $(FUZZ_BIN)
fuzz: KMOD_TEST_TIMEOUT = $(shell echo $$(( $(SECONDS) + 600 )))
fuzz: VM_TIMEOUT = $(shell echo $$(( $(SECONDS) + 900 )))

fuzz-debug: module-debug all $(FUZZ_BIN)
	@kdir=$$(cat $(KMOD_DEBUG_DIR)/kdir); \
	$(call kmod_vm_run,$$kdir/arch/x86/boot/bzImage,$(KMOD_DEBUG),$(B)/kmod-debug-fuzz,fuzz-debug) \
		--mode test $(debug_vm_extra) --env KVMM_FUZZ_SECONDS=$(SECONDS) $(FUZZ_BIN)
fuzz-debug: KMOD_TEST_TIMEOUT = $(shell echo $$(( $(SECONDS) + 1800 )))
fuzz-debug: VM_TIMEOUT = $(shell echo $$(( $(SECONDS) + 2400 )))

# stress-ng beside kvmm on the stock kernel.
stress: all $(B)/kmod/test_stress
	@$(call kmod_vm_run,$(VM_KERNEL),$(KMOD),$(B)/kmod-stress,stress) --mode test \
		$(debug_vm_extra) $(B)/kmod/test_stress

.PHONY: module-debug check-debug fuzz fuzz-debug stress
