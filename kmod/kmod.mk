# kvmm.ko, built against Debian's cloud kernel headers unless KDIR says otherwise.
KVER ?= $(shell $(TOP)/scripts/kernel-release.sh)
KDIR ?= /lib/modules/$(KVER)/build
KMOD := $(TOP)/kmod/kvmm.ko
KMOD_SRC := $(wildcard $(TOP)/kmod/*.c $(TOP)/kmod/*.h) $(TOP)/include/uapi/linux/kvmm.h

ALL += module

module: $(KMOD)

# Always ask kbuild: it rebuilds when the sources or the target kernel changed.
$(KMOD): FORCE
	@test -d $(KDIR) || { echo "kvmm: no kernel headers at $(KDIR) (run scripts/install-deps.sh or set KDIR)"; exit 1; }
	$(MAKE) -C $(KDIR) M=$(TOP) W=1 modules

# sparse over every file of the module; any warning fails.
module-sparse:
	@test -d $(KDIR) || { echo "kvmm: no kernel headers at $(KDIR)"; exit 1; }
	@mkdir -p $(B)
	@$(MAKE) -C $(KDIR) M=$(TOP) W=1 C=2 modules 2>&1 | tee $(B)/sparse.log
	@! grep -E 'warning|error' $(B)/sparse.log

.PHONY: module module-sparse

# Suite kmod-build: the module builds warning-free with W=1 and is sparse-clean.
CHECK_SUITES += kmod-build
check-kmod-build:
	@mkdir -p $(B)
	@p=0; f=0; \
	if $(MAKE) -s -C $(KDIR) M=$(TOP) W=1 modules >$(B)/kmod-w1.log 2>&1 && \
	   ! grep -q 'warning:' $(B)/kmod-w1.log; then \
		echo "  PASS  kvmm.ko builds with W=1 and no warnings"; p=$$((p+1)); \
	else echo "  FAIL  kvmm.ko builds with W=1 and no warnings"; cat $(B)/kmod-w1.log; f=$$((f+1)); fi; \
	if $(MAKE) --no-print-directory module-sparse >$(B)/kmod-sparse.log 2>&1; then \
		echo "  PASS  sparse (C=2) reports nothing"; p=$$((p+1)); \
	else echo "  FAIL  sparse (C=2) reports nothing"; grep -E 'warning|error' $(B)/kmod-sparse.log; f=$$((f+1)); fi; \
	echo "kmod-build: $$p passed, $$f failed"; [ $$f -eq 0 ]

.PHONY: check-kmod-build

# The same module and QEMU suite on bookworm-backports' 6.12 cloud kernel, so
# the compat.h paths are run, not only compiled. The sources are copied to a
# build directory of their own so the two builds never share objects.
KVER_612 := $(shell KVMM_KERNEL_SERIES=6.12 $(TOP)/scripts/kernel-release.sh)
KDIR_612 := /lib/modules/$(KVER_612)/build
KMOD_612_DIR := $(B)/kmod-6.12
KMOD_612 := $(KMOD_612_DIR)/src/kmod/kvmm.ko
# tests/kmod/kmod.mk is read after this file: its list of programs is named here.
KMOD_612_TEST_BINS := $(patsubst $(TOP)/tests/kmod/%.c,$(B)/kmod/%,$(wildcard $(TOP)/tests/kmod/test_*.c))

# Listed always: without the kernel the suite says why it skips.
CHECK_SUITES += kmod-6.12

module-6.12:
	@test -d $(KDIR_612) || { echo "kvmm: no 6.12 cloud kernel headers (scripts/install-deps.sh installs them)"; exit 1; }
	@mkdir -p $(KMOD_612_DIR)/src
	@cp -a $(TOP)/Kbuild $(TOP)/kmod $(TOP)/include $(KMOD_612_DIR)/src/
	$(MAKE) -C $(KDIR_612) M=$(KMOD_612_DIR)/src W=1 modules

ifneq ($(filter 6.12.%,$(KVER_612)),)
check-kmod-6.12: module-6.12 $(KMOD_612_TEST_BINS) $$(KMOD_VM_EXTRA)
	@$(call kmod_vm_run,/boot/vmlinuz-$(KVER_612),$(KMOD_612),$(KMOD_612_DIR),kmod-6.12) \
		--mode test $(KMOD_TEST_PROGS)
else
# Every test of the programs the suite would run counts as skipped.
KMOD_612_WHY := no 6.12 cloud kernel and headers installed (scripts/install-deps.sh installs \
	them from bookworm-backports)
check-kmod-6.12: $(KMOD_612_TEST_BINS)
	@$(TOP)/tests/common/skip-all.sh kmod-6.12 "$(KMOD_612_WHY)" $(KMOD_TEST_PROGS)
endif

.PHONY: module-6.12 check-kmod-6.12
FORCE:
