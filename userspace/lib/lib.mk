# libkvmm: libkvmm.so (with soname), libkvmm.a, kvmm.pc; plus a sanitized
# static copy for the unit tests, and the test hooks (test_hooks.c,
# kvmm_test.h) in archives of their own that only the tests link, so
# neither libkvmm.so nor the installed libkvmm.a carries them.
LIBKVMM_VERSION := 0.1.0
LIBKVMM_SONAME := libkvmm.so.0
LIBKVMM_DIR := $(TOP)/userspace/lib
# Sources are listed, not globbed: a file lands in the library when it is
# ready. Other parts of libkvmm (the CUDA backend) append to LIBKVMM_EXTRA_SRC.
LIBKVMM_FILES := ctx worker uffd staging flash region region_user share_user region_kernel \
	kv kv_policy kv_swap kv_host kv_share prefix attn_tier registry \
	remote_hash remote_value remote_slots remote_wire remote remote_report remote_kv
LIBKVMM_SRC := $(patsubst %,$(LIBKVMM_DIR)/%.c,$(LIBKVMM_FILES)) $(LIBKVMM_EXTRA_SRC)
LIBKVMM_HDR := $(wildcard $(LIBKVMM_DIR)/*.h) $(TOP)/include/kvmm/kvmm.h $(TOP)/include/kvmm/prefix.h $(TOP)/include/kvmm/attention.h \
	$(TOP)/include/kvmm/remote.h $(TOP)/include/uapi/linux/kvmm.h
LIBKVMM_LIBS := -luring -lnuma -lxxhash -lhiredis -lcrypto -lpthread
LIBKVMM_CFLAGS := $(USER_CFLAGS) -fPIC -fvisibility=default

LIBKVMM_OBJ := $(patsubst $(LIBKVMM_DIR)/%.c,$(B)/lib/obj/%.o,$(LIBKVMM_SRC))
LIBKVMM_ASAN_OBJ := $(patsubst $(LIBKVMM_DIR)/%.c,$(B)/lib/asan/%.o,$(LIBKVMM_SRC))
LIBKVMM_SO := $(B)/lib/libkvmm.so.$(LIBKVMM_VERSION)
LIBKVMM_A := $(B)/lib/libkvmm.a
LIBKVMM_ASAN_A := $(B)/lib/asan/libkvmm.a
LIBKVMM_TEST_A := $(B)/lib/libkvmm_test.a
LIBKVMM_TEST_ASAN_A := $(B)/lib/asan/libkvmm_test.a
LIBKVMM_PC := $(B)/lib/kvmm.pc
SANITIZE := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

ALL += libkvmm
INSTALL += install-libkvmm

libkvmm: $(LIBKVMM_SO) $(LIBKVMM_A) $(LIBKVMM_PC)

$(B)/lib/obj/%.o: $(LIBKVMM_DIR)/%.c $(LIBKVMM_HDR)
	@mkdir -p $(@D)
	$(CC) $(LIBKVMM_CFLAGS) -c -o $@ $<

$(B)/lib/asan/%.o: $(LIBKVMM_DIR)/%.c $(LIBKVMM_HDR)
	@mkdir -p $(@D)
	$(CC) $(LIBKVMM_CFLAGS) $(SANITIZE) -c -o $@ $<

$(LIBKVMM_SO): $(LIBKVMM_OBJ) $(LIBKVMM_DIR)/libkvmm.map
	$(CC) -shared -Wl,-soname,$(LIBKVMM_SONAME) -Wl,--version-script=$(LIBKVMM_DIR)/libkvmm.map \
		-Wl,-z,defs -o $@ $(LIBKVMM_OBJ) $(LIBKVMM_LIBS)
	ln -sf $(notdir $@) $(B)/lib/$(LIBKVMM_SONAME)
	ln -sf $(LIBKVMM_SONAME) $(B)/lib/libkvmm.so

# Archives are made again when the list of files changes (lib.mk).
$(LIBKVMM_A): $(LIBKVMM_OBJ) $(LIBKVMM_DIR)/lib.mk
	rm -f $@
	ar rcs $@ $(filter %.o,$^)

$(LIBKVMM_ASAN_A): $(LIBKVMM_ASAN_OBJ) $(LIBKVMM_DIR)/lib.mk
	rm -f $@
	ar rcs $@ $(filter %.o,$^)

$(LIBKVMM_TEST_A): $(B)/lib/obj/test_hooks.o
	rm -f $@
	ar rcs $@ $^

$(LIBKVMM_TEST_ASAN_A): $(B)/lib/asan/test_hooks.o
	rm -f $@
	ar rcs $@ $^

$(LIBKVMM_PC): $(LIBKVMM_DIR)/kvmm.pc.in
	@mkdir -p $(@D)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(LIBKVMM_VERSION)|' $< > $@

install-libkvmm: libkvmm
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/kvmm
	install -m 644 $(TOP)/include/kvmm/kvmm.h $(DESTDIR)$(PREFIX)/include/kvmm/kvmm.h
	install -m 644 $(TOP)/include/kvmm/prefix.h $(DESTDIR)$(PREFIX)/include/kvmm/prefix.h
	install -m 644 $(TOP)/include/kvmm/remote.h $(DESTDIR)$(PREFIX)/include/kvmm/remote.h
	install -m 755 $(LIBKVMM_SO) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libkvmm.so.$(LIBKVMM_VERSION) $(DESTDIR)$(PREFIX)/lib/$(LIBKVMM_SONAME)
	ln -sf $(LIBKVMM_SONAME) $(DESTDIR)$(PREFIX)/lib/libkvmm.so
	install -m 644 $(LIBKVMM_A) $(DESTDIR)$(PREFIX)/lib/
	# Written at install time: the prefix is the one installed to.
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(LIBKVMM_VERSION)|' \
		$(LIBKVMM_DIR)/kvmm.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/kvmm.pc

.PHONY: libkvmm install-libkvmm
