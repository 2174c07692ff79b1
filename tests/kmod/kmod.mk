# Tests of kvmm.ko, run inside a QEMU VM (TCG) booting $(VM_KERNEL).
#
#   make check-kmod    build the module and tests/kmod/test_*.c, boot the VM, run them
#   make bench-kmod    the same VM running tests/kmod/bench_*.c, printing their output
#   make vm-shell      the same VM with a shell on the console (Ctrl-A x quits)
#   make check-kmod-harness  check the harness's result parser (no VM)
#
# Variables:
#   KMOD_TESTS         names to run (test_foo or foo; bench_bar or bar), default all
#   KMOD_PARAMS        insmod parameters, e.g. "pool_limit_mb=64"
#   KMOD_TEST_TIMEOUT  limit per program in seconds (default 300)
#   KMOD_VERBOSE=1     print every line the programs and the kernel log print
#   VM_KERNEL          kernel image (default $(KDIR)/arch/x86/boot/bzImage when KDIR
#                      is a kernel build tree, else /boot/vmlinuz-$(KVER))
#   VM_TIMEOUT         limit for the whole VM in seconds (default 900)
#   VM_EXTRA_CMDLINE   appended to the kernel command line
#   KMOD_VM_EXTRA      more executables for the guest's /usr/bin (with their shared
#                      libraries); fragments add the tools their tests run (kvmmctl)
#   KMOD_STRESS_NG     stress-ng copied into the guest for test_stress (default: the
#                      host's /usr/bin/stress-ng; empty: test_stress skips)
#
# Each test program is linked with tests/kmod/common/*.c (when it exists),
# -lcmocka and -lpthread; include <linux/kvmm.h> for the ABI. Logs land in
# $(B)/kmod: console.log (serial console), results.log (program output, kernel log).

KMOD_TDIR := $(TOP)/tests/kmod
KMOD_BDIR := $(B)/kmod
KMOD_COMMON_SRC := $(wildcard $(KMOD_TDIR)/common/*.c)
KMOD_COMMON_HDR := $(wildcard $(KMOD_TDIR)/common/*.h) $(TOP)/tests/common/t_list.h
KMOD_COMMON_OBJ := $(patsubst $(KMOD_TDIR)/common/%.c,$(KMOD_BDIR)/common/%.o,$(KMOD_COMMON_SRC))
KMOD_TEST_BINS := $(patsubst $(KMOD_TDIR)/%.c,$(KMOD_BDIR)/%,$(wildcard $(KMOD_TDIR)/test_*.c))
KMOD_BENCH_BINS := $(patsubst $(KMOD_TDIR)/%.c,$(KMOD_BDIR)/%,$(wildcard $(KMOD_TDIR)/bench_*.c))
KMOD_TEST_CFLAGS := $(USER_CFLAGS) $(if $(findstring include/uapi,$(USER_CFLAGS)),,-I$(TOP)/include/uapi) \
	-I$(KMOD_TDIR)/common
KMOD_TEST_LDLIBS := -lcmocka -lpthread

KMOD_TESTS ?=
KMOD_PARAMS ?=
KMOD_TEST_TIMEOUT ?= 300
KMOD_VERBOSE ?=
VM_KERNEL ?= $(if $(wildcard $(KDIR)/arch/x86/boot/bzImage),$(KDIR)/arch/x86/boot/bzImage,/boot/vmlinuz-$(KVER))
VM_TIMEOUT ?= 900
VM_EXTRA_CMDLINE ?=
KMOD_STRESS_NG ?= $(firstword $(wildcard /usr/bin/stress-ng))

ALL += kmod-tests
CHECK_SUITES += kmod kmod-harness

kmod-tests: $(KMOD_TEST_BINS) $(KMOD_BENCH_BINS)

$(KMOD_COMMON_OBJ): $(KMOD_BDIR)/common/%.o: $(KMOD_TDIR)/common/%.c $(KMOD_COMMON_HDR) \
		$(TOP)/include/uapi/linux/kvmm.h
	@mkdir -p $(@D)
	$(CC) $(KMOD_TEST_CFLAGS) -c -o $@ $<

$(KMOD_TEST_BINS) $(KMOD_BENCH_BINS): $(KMOD_BDIR)/%: $(KMOD_TDIR)/%.c $(KMOD_COMMON_OBJ) \
		$(KMOD_COMMON_HDR) $(TOP)/include/uapi/linux/kvmm.h
	@mkdir -p $(@D)
	$(CC) $(KMOD_TEST_CFLAGS) -o $@ $< $(KMOD_COMMON_OBJ) $(USER_LDFLAGS) $(KMOD_TEST_LDLIBS)

# Programs picked by KMOD_TESTS (with or without their test_/bench_ prefix).
kmod_pick = $(if $(strip $(KMOD_TESTS)),$(foreach t,$(sort $(KMOD_TESTS)),$(or \
	$(filter $(KMOD_BDIR)/$(t) $(KMOD_BDIR)/$(2)_$(t),$(1)),\
	$(error KMOD_TESTS: no $(2) program named $(t)))),$(1))

# $(call kmod_vm_run,KERNEL,MODULE,WORKDIR,LABEL) --mode test|bench|shell PROGRAMS...
# runs the VM with the settings above; usable for other kernels or modules too.
kmod_vm_run = $(KMOD_TDIR)/vm/run.sh --kernel $(1) --module $(2) --dir $(3) --label $(4) \
	--params "$(KMOD_PARAMS)" --timeout $(VM_TIMEOUT) --test-timeout $(KMOD_TEST_TIMEOUT) \
	--cmdline "$(VM_EXTRA_CMDLINE)" $(if $(KMOD_VERBOSE),--verbose) \
	$(foreach e,$(KMOD_VM_EXTRA),--extra $(e)) \
	$(if $(KMOD_STRESS_NG),--extra $(KMOD_STRESS_NG))
# The programs KMOD_TESTS selects.
KMOD_TEST_PROGS = $(call kmod_pick,$(KMOD_TEST_BINS),test)
KMOD_BENCH_PROGS = $(call kmod_pick,$(KMOD_BENCH_BINS),bench)

check-kmod: $(KMOD) $(KMOD_TEST_BINS) $$(KMOD_VM_EXTRA)
	@$(call kmod_vm_run,$(VM_KERNEL),$(KMOD),$(KMOD_BDIR),kmod) --mode test $(KMOD_TEST_PROGS)

bench-kmod: $(KMOD) $(KMOD_BENCH_BINS) $$(KMOD_VM_EXTRA)
	@$(call kmod_vm_run,$(VM_KERNEL),$(KMOD),$(KMOD_BDIR),bench-kmod) --mode bench \
		$(KMOD_BENCH_PROGS)

vm-shell: $(KMOD) $(KMOD_TEST_BINS) $(KMOD_BENCH_BINS) $$(KMOD_VM_EXTRA)
	@$(call kmod_vm_run,$(VM_KERNEL),$(KMOD),$(KMOD_BDIR),kmod) --mode shell \
		$(KMOD_TEST_BINS) $(KMOD_BENCH_BINS)

# The harness's own result parser, on made-up VM output (no VM, no module).
check-kmod-harness:
	@$(KMOD_TDIR)/vm/selftest.sh

.PHONY: kmod-tests check-kmod bench-kmod vm-shell check-kmod-harness
