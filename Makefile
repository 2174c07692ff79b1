# kvmm top-level build.
#   make            build kvmm.ko and everything else that exists
#   make check      run every test suite (prints "N passed, N failed")
#   make install    install libraries, headers and tools (PREFIX, DESTDIR)
# Each part of the tree adds itself through a fragment (*.mk) included below.

.DEFAULT_GOAL := all
.SUFFIXES:

TOP := $(CURDIR)
B := $(TOP)/build
PREFIX ?= /usr/local
DESTDIR ?=

CC ?= cc
OPT ?= -O2 -g
WARN := -Wall -Wextra -Werror
USER_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) $(OPT) -I$(TOP)/include -I$(TOP)/include/uapi
USER_LDFLAGS :=

# Filled in by the fragments.
ALL :=
CHECK_SUITES :=
INSTALL :=
KMOD_VM_EXTRA :=

# Prerequisites written $$(VAR) are expanded after every fragment is read,
# so a rule can name what a later fragment adds (KMOD_VM_EXTRA).
.SECONDEXPANSION:

include kmod/kmod.mk
include $(sort $(wildcard userspace/*/*.mk kernels/*.mk tools/*.mk tools/*/*.mk tests/*/*.mk))

all: $(ALL)

# Install missing Debian packages (a no-op when everything is there).
deps:
	@$(TOP)/scripts/install-deps.sh

# Run every suite even when one fails; scripts/check-all.sh prints the total.
# A new make reads the fragments again after deps, so that what deps has
# just installed (the 6.12 kernel, stress-ng) decides which suites run.
check: deps
	@$(MAKE) --no-print-directory check-suites

check-suites: all
	@scripts/check-all.sh $(CHECK_SUITES)

install: $(INSTALL)

clean:
	rm -rf $(B)
	$(MAKE) -C $(KDIR) M=$(TOP) clean >/dev/null 2>&1 || true

format:
	clang-format -i $$(git ls-files '*.c' '*.h' | grep -v '^kmod/\|^include/uapi/')

.PHONY: all deps check check-suites install clean format
