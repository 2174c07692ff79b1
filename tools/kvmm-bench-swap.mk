# kvmm-bench-swap: libkvmm's user-mode flash store against fio (docs/benchmarks.md).
BENCH_SWAP := $(B)/tools/kvmm-bench-swap

ALL += $(BENCH_SWAP)
INSTALL += install-bench-swap

$(BENCH_SWAP): $(TOP)/tools/kvmm-bench/swap.c $(TOP)/include/kvmm/kvmm.h $(B)/lib/libkvmm.a
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) -o $@ $< $(B)/lib/libkvmm.a -luring -lnuma -lxxhash -lpthread

install-bench-swap: $(BENCH_SWAP)
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BENCH_SWAP) $(DESTDIR)$(PREFIX)/bin/

.PHONY: install-bench-swap
