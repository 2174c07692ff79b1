# userspace/preload: libkvmm-preload.so, the LD_PRELOAD shim (docs/preload.md,
# kvmm-preload(7)). libkvmm's PIC objects are linked in and kept local, so
# the shim needs no libkvmm.so and exports only the interposed functions.
# -fno-builtin and -fno-tree-loop-distribute-patterns: the compiler may not
# turn the shim's own loops into calls of the memset it defines.
PRELOAD_DIR := $(TOP)/userspace/preload
PRELOAD_FILES := real rules caller ranges route zero evict stats fork cuda control
PRELOAD_CORE_SRC := $(patsubst %,$(PRELOAD_DIR)/%.c,$(PRELOAD_FILES))
PRELOAD_SRC := $(PRELOAD_CORE_SRC) $(PRELOAD_DIR)/interpose.c $(PRELOAD_DIR)/cuda_entry.c
PRELOAD_HDR := $(PRELOAD_DIR)/shim.h $(TOP)/include/kvmm/kvmm.h $(TOP)/include/kvmm/preload.h \
	$(TOP)/userspace/lib/internal.h $(TOP)/userspace/lib/cuda_alloc.h $(TOP)/userspace/lib/cuda_drv.h
# The GPU part (cuda.c, cuda_entry.c) is built with cuda.h where there is one
# (tests/cuda/cuda.mk finds it); without, the shim is host-only.
PRELOAD_CFLAGS := $(USER_CFLAGS) -fPIC -fvisibility=hidden -fno-builtin \
	-fno-tree-loop-distribute-patterns -ftls-model=initial-exec $(KVMM_CUDA_CFLAGS)
PRELOAD_SO := $(B)/lib/libkvmm-preload.so
PRELOAD_OBJ := $(patsubst $(PRELOAD_DIR)/%.c,$(B)/preload/obj/%.o,$(PRELOAD_SRC))
# The shim's core (no interposed entry points) with ASan/UBSan, for its unit
# tests; and as built for the shim itself, for the same tests under valgrind.
PRELOAD_ASAN_A := $(B)/preload/asan/libshim.a
PRELOAD_PLAIN_A := $(B)/preload/plain/libshim.a
PRELOAD_ASAN_OBJ := $(patsubst $(PRELOAD_DIR)/%.c,$(B)/preload/asan/%.o,$(PRELOAD_CORE_SRC))

ALL += preload
INSTALL += install-preload

preload: $(PRELOAD_SO)

$(B)/preload/obj/%.o: $(PRELOAD_DIR)/%.c $(PRELOAD_HDR)
	@mkdir -p $(@D)
	$(CC) $(PRELOAD_CFLAGS) -c -o $@ $<

$(B)/preload/asan/%.o: $(PRELOAD_DIR)/%.c $(PRELOAD_HDR)
	@mkdir -p $(@D)
	$(CC) $(PRELOAD_CFLAGS) $(SANITIZE) -c -o $@ $<

# libkvmm's objects by name (lib.mk is read after this file).
$(PRELOAD_SO): $(PRELOAD_OBJ) $(PRELOAD_DIR)/preload.map $$(LIBKVMM_OBJ)
	@mkdir -p $(@D)
	$(CC) -shared -Wl,--version-script=$(PRELOAD_DIR)/preload.map -Wl,-z,defs \
		-o $@ $(PRELOAD_OBJ) $(LIBKVMM_OBJ) -ldl $(LIBKVMM_LIBS)

$(PRELOAD_ASAN_A): $(PRELOAD_ASAN_OBJ)
	rm -f $@
	ar rcs $@ $^

$(PRELOAD_PLAIN_A): $(patsubst $(PRELOAD_DIR)/%.c,$(B)/preload/obj/%.o,$(PRELOAD_CORE_SRC))
	@mkdir -p $(@D)
	rm -f $@
	ar rcs $@ $^

install-preload: preload
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/share/man/man7
	install -m 755 $(PRELOAD_SO) $(DESTDIR)$(PREFIX)/lib/
	install -m 644 $(TOP)/docs/man/kvmm-preload.7 $(DESTDIR)$(PREFIX)/share/man/man7/

.PHONY: preload install-preload
