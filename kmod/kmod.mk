# kvmm.ko, built against Debian's cloud kernel headers unless KDIR says otherwise.
KVER ?= $(shell $(TOP)/scripts/kernel-release.sh)
KDIR ?= /lib/modules/$(KVER)/build
KMOD := $(TOP)/kmod/kvmm.ko
KMOD_SRC := $(wildcard $(TOP)/kmod/*.c $(TOP)/kmod/*.h) $(TOP)/include/uapi/linux/kvmm.h

ALL += module

module: $(KMOD)

$(KMOD): $(KMOD_SRC) $(TOP)/Kbuild $(TOP)/kmod/Kbuild
	@test -d $(KDIR) || { echo "kvmm: no kernel headers at $(KDIR) (run scripts/install-deps.sh or set KDIR)"; exit 1; }
	$(MAKE) -C $(KDIR) M=$(TOP) W=1 modules

# sparse over every file of the module; any warning fails.
module-sparse:
	@test -d $(KDIR) || { echo "kvmm: no kernel headers at $(KDIR)"; exit 1; }
	@$(MAKE) -s -C $(KDIR) M=$(TOP) W=1 C=2 modules 2>&1 | tee $(B)/sparse.log
	@! grep -E 'warning|error' $(B)/sparse.log

.PHONY: module module-sparse
