# tests/preload/kernel.mk: suite "preload-kernel", test_preload_exec in the
# QEMU guest with kvmm.ko loaded, so the shim routes to kvmm.ko regions
# (kernel mode) instead of libkvmm's userfaultfd regions. The probe, the
# shim and the second interposer travel as extras into the guest's /usr/bin;
# libkvmm picks kernel mode there because /dev/kvmm exists.
CHECK_SUITES += preload-kernel

check-preload-kernel: $(KMOD) $(B)/tests/preload/test_preload_exec $(B)/tests/preload/probe \
		$(B)/tests/preload/countmalloc.so $(B)/lib/libkvmm-preload.so $$(KMOD_VM_EXTRA)
	@$(call kmod_vm_run,$(VM_KERNEL),$(KMOD),$(B)/preload-kernel,preload-kernel) --mode test \
		--extra $(B)/tests/preload/probe --extra $(B)/tests/preload/countmalloc.so \
		--extra $(B)/lib/libkvmm-preload.so \
		--env KVMM_TEST_PRELOAD_SO=/usr/bin/libkvmm-preload.so \
		--env KVMM_TEST_PROBE=/usr/bin/probe --env KVMM_TEST_COUNTMALLOC=/usr/bin/countmalloc.so \
		--env KVMM_TEST_KVMMCTL=/usr/bin/kvmmctl \
		$(B)/tests/preload/test_preload_exec

.PHONY: check-preload-kernel
