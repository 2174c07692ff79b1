# kvmm-bench: the benchmark command (serve, alloc, fault, swap, attn, all)
# and the serving simulator's own test suite (check-kvmm-bench).
KB_DIR := $(TOP)/tools/kvmm-bench
KB_BIN := $(B)/bin/kvmm-bench
KB_SIM_SRC := $(addprefix $(KB_DIR)/serve/,trace.c model.c manager.c sched.c)
KB_SRC := $(KB_DIR)/main.c $(KB_DIR)/micro.c $(KB_DIR)/kv_step.c $(KB_DIR)/sysinfo.c $(KB_DIR)/progress.c \
	$(KB_DIR)/serve/serve.c $(KB_DIR)/serve/report.c $(KB_DIR)/serve/plot.c \
	$(KB_DIR)/serve/real.c $(KB_SIM_SRC) \
	$(TOP)/tools/common/json.c $(TOP)/tools/common/fmt.c
KB_HDR := $(KB_DIR)/bench.h $(wildcard $(KB_DIR)/serve/*.h) $(wildcard $(TOP)/tools/common/*.h) \
	$(TOP)/include/kvmm/kvmm.h $(TOP)/include/uapi/linux/kvmm.h
# lib.mk may be read after this file: name its output here.
KB_LIBKVMM := $(B)/lib/libkvmm.a
KB_LIBS := -luring -lnuma -lxxhash -lpthread -ldl -lm

ALL += $(KB_BIN)
INSTALL += install-kvmm-bench

$(KB_BIN): $(KB_SRC) $(KB_HDR) $(KB_LIBKVMM)
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) -o $@ $(KB_SRC) $(KB_LIBKVMM) $(KB_LIBS)

install-kvmm-bench: $(KB_BIN)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(KB_BIN) $(DESTDIR)$(PREFIX)/bin/kvmm-bench
	install -m 644 $(TOP)/docs/man/kvmm-bench.1 $(DESTDIR)$(PREFIX)/share/man/man1/

.PHONY: install-kvmm-bench
