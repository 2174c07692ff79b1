# make check-mutations: each tests/mutations/*.patch is a realistic bug the
# suite named in its header must catch (tests/mutations/run.sh). Slow (one
# suite run per patch, QEMU for kvmm.ko's), so not part of `make check`.
check-mutations:
	@$(TOP)/tests/mutations/run.sh

.PHONY: check-mutations
