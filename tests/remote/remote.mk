# tests/remote: the remote tier against real servers on loopback (Redis,
# Valkey, a 3-master/3-replica Redis Cluster), started and stopped by
# tests/remote/run.sh. Suite "remote"; it skips, saying why, where
# redis-server is not installed.
REMOTE_DIR := $(TOP)/tests/remote
REMOTE_BIN := $(B)/tests/remote/asan/test_remote
REMOTE_LIBS := -lcmocka -luring -lnuma -lxxhash -lhiredis -lcrypto -lpthread -lm

CHECK_SUITES += remote

$(REMOTE_BIN): $(REMOTE_DIR)/test_remote.c $$(UNIT_SUPPORT) $$(UNIT_HDR) $(TOP)/include/kvmm/remote.h \
		$$(UNIT_LIB_ASAN)
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) $(UNIT_SANITIZE) -o $@ $< $(UNIT_SUPPORT) $(UNIT_LIB_ASAN) $(REMOTE_LIBS)

remote-tests: $(REMOTE_BIN)

check-remote: $(REMOTE_BIN) $$(KVMMCTL_BIN)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
		KVMM_TEST_TOP=$(TOP) KVMM_TEST_KVMMCTL=$(KVMMCTL_BIN) $(REMOTE_DIR)/run.sh $(REMOTE_BIN)

.PHONY: remote-tests check-remote
