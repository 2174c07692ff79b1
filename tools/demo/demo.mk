# kvmm-demo: the README's main job (see scripts/demo.sh).
DEMO_BIN := $(B)/tools/kvmm-demo

ALL += $(DEMO_BIN)

$(DEMO_BIN): $(TOP)/tools/demo/kvmm-demo.c $(TOP)/include/uapi/linux/kvmm.h
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) -o $@ $<

# Install what is missing, build, boot the module in QEMU and run the demo.
demo: deps
	@$(MAKE) --no-print-directory demo-run

demo-run: $(KMOD) $(DEMO_BIN)
	@$(TOP)/tests/kmod/vm/run.sh --mode bench --label demo --kernel $(VM_KERNEL) \
		--module $(KMOD) --dir $(B)/demo --params "$(KMOD_PARAMS)" $(DEMO_BIN)

.PHONY: demo demo-run
