# kvmmctl: watch and tune kvmm.ko (status, regions, top, get/set, metrics).
KVMMCTL_BIN := $(B)/bin/kvmmctl
KVMMCTL_SRC := $(sort $(wildcard $(TOP)/tools/kvmmctl/*.c)) \
	$(TOP)/tools/common/json.c $(TOP)/tools/common/fmt.c
KVMMCTL_HDR := $(wildcard $(TOP)/tools/kvmmctl/*.h) $(wildcard $(TOP)/tools/common/*.h) \
	$(TOP)/include/uapi/linux/kvmm.h

ALL += $(KVMMCTL_BIN)
INSTALL += install-kvmmctl

$(KVMMCTL_BIN): $(KVMMCTL_SRC) $(KVMMCTL_HDR)
	@mkdir -p $(@D)
	$(CC) $(USER_CFLAGS) -o $@ $(KVMMCTL_SRC) -lm

install-kvmmctl: $(KVMMCTL_BIN)
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/share/man/man8
	install -m 755 $(KVMMCTL_BIN) $(DESTDIR)$(PREFIX)/sbin/kvmmctl
	install -m 644 $(TOP)/docs/man/kvmmctl.8 $(DESTDIR)$(PREFIX)/share/man/man8/

.PHONY: install-kvmmctl

# tests/kmod/test_kvmmctl runs kvmmctl in the QEMU guest.
KMOD_VM_EXTRA += $(KVMMCTL_BIN)
