# kvmm-bench-remote: the remote tier against a Redis/Valkey server, beside
# redis-benchmark (tools/kvmm-bench/remote.sh starts the server; docs/benchmarks.md).
BENCH_REMOTE := $(B)/tools/kvmm-bench-remote

ALL += $(BENCH_REMOTE)

$(BENCH_REMOTE): $(TOP)/tools/kvmm-bench/remote.c $(TOP)/include/kvmm/remote.h $(B)/lib/libkvmm.a
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) -o $@ $< $(B)/lib/libkvmm.a -luring -lnuma -lxxhash -lhiredis \
		-lcrypto -lpthread

bench-remote: $(BENCH_REMOTE)
	@$(TOP)/tools/kvmm-bench/remote.sh $(BENCH_REMOTE)

.PHONY: bench-remote
