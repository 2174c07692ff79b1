# Tests of the tools (suite "tools"): the serving simulator's accounting and
# traces, its kvmm accounting against a real libkvmm KV cache, the JSON
# validator, and the tools' --json output checked by it.
TT_DIR := $(TOP)/tools/tests
TT_BDIR := $(B)/tools/tests
TT_SIM_BIN := $(TT_BDIR)/test_serve_sim
TT_JSON_BIN := $(TT_BDIR)/test_json_output
TT_REAL_BIN := $(TT_BDIR)/test_serve_real
TT_SANITIZE := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

CHECK_SUITES += tools

TT_HDR := $(TOP)/tests/common/t_list.h

$(TT_SIM_BIN): $(TT_DIR)/test_serve_sim.c $(KB_SIM_SRC) $(TOP)/tools/kvmm-bench/serve/sim.h $(TT_HDR)
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) $(TT_SANITIZE) -o $@ $< $(KB_SIM_SRC) -lcmocka -lm

# lib.mk may be read after this file: name its output here.
$(TT_REAL_BIN): $(TT_DIR)/test_serve_real.c $(KB_SIM_SRC) $(KB_DIR)/serve/real.c \
		$(KB_DIR)/serve/real.h $(KB_DIR)/serve/sim.h $(TT_HDR) $(B)/lib/asan/libkvmm.a
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) $(TT_SANITIZE) -o $@ $< $(KB_SIM_SRC) $(KB_DIR)/serve/real.c \
		$(B)/lib/asan/libkvmm.a -lcmocka $(KB_LIBS)

$(TT_JSON_BIN): $(TT_DIR)/test_json_output.c $(TOP)/tools/common/jsoncheck.h $(TT_HDR)
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) $(TT_SANITIZE) -o $@ $< -lcmocka

tools-tests: $(TT_SIM_BIN) $(TT_REAL_BIN) $(TT_JSON_BIN)

check-tools: $(TT_SIM_BIN) $(TT_REAL_BIN) $(TT_JSON_BIN) $(KB_BIN) $(KVMMCTL_BIN)
	@KVMM_BENCH=$(KB_BIN) KVMMCTL=$(KVMMCTL_BIN) $(TOP)/tests/unit/run.sh tools \
		$(TT_SIM_BIN) $(TT_REAL_BIN) $(TT_JSON_BIN)

.PHONY: tools-tests check-tools
