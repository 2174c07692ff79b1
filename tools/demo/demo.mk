# make demo: the README's main job. Installs what is missing, builds, serves
# part of the trace through llama-server with and without libkvmm-preload.so,
# and runs
# `kvmm-bench serve` on the default trace plus `kvmmctl status` with kvmm.ko:
# on this machine when it can load the module, else in QEMU (tools/demo/demo.sh).
demo: deps
	@$(MAKE) --no-print-directory demo-run

# kvmm-bench.mk and kvmmctl.mk are read after this file: name their outputs here.
demo-run: $(KMOD) $(B)/bin/kvmm-bench $(B)/bin/kvmmctl $(B)/lib/libkvmm-preload.so
	@$(TOP)/tools/demo/demo.sh --module $(KMOD) --kernel $(VM_KERNEL) --bench $(B)/bin/kvmm-bench \
		--ctl $(B)/bin/kvmmctl --dir $(B)/demo --params "$(KMOD_PARAMS)" \
		--preload $(B)/lib/libkvmm-preload.so

.PHONY: demo demo-run
