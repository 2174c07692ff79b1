# userspace/python: the kvmm package (ctypes over libkvmm.so, nothing to
# compile). Suite "python" runs its pytest tests against this tree's
# libkvmm.so in user mode (or kernel mode where /dev/kvmm exists), with
# the CUDA driver stand-in for the allocator tests; its last line is
# "python: N passed, N failed, N skipped". Debian's python3 is used
# (python3-torch, -numpy, -pytest: scripts/install-deps.sh).
PYTHON ?= /usr/bin/python3
PY_DIR := $(TOP)/userspace/python
PY_SRC := $(wildcard $(PY_DIR)/kvmm/*.py $(PY_DIR)/tests/*.py $(PY_DIR)/examples/*.py)
PY_ENV = PYTHONDONTWRITEBYTECODE=1 KVMM_LIBRARY=$(LIBKVMM_SO_PATH) OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2}
# PREFIX/lib/python3.X/dist-packages: on Debian's sys.path for /usr/local and /usr.
PY_SITE = $(PREFIX)/lib/python$(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)/dist-packages

CHECK_SUITES += python
INSTALL += install-python

# lib.mk and tests/cuda/cuda.mk are read after this file: $$() expands late.
LIBKVMM_SO_PATH = $(B)/lib/libkvmm.so.0

check-python: libkvmm $$(CUDA_TEST_MOCK)
	@if ! $(PYTHON) -c 'import numpy, pytest, torch' 2>/dev/null; then \
		echo "SKIP pytest: userspace/python: $(PYTHON) lacks numpy, pytest or torch (scripts/install-deps.sh installs python3-numpy python3-pytest python3-torch)"; \
		echo "python: 0 passed, 0 failed, 1 skipped"; exit 0; fi; \
	cd $(PY_DIR) && $(PY_ENV) KVMM_TEST_MOCK_CUDA=$(CUDA_TEST_MOCK) \
		KVMM_MODE=$${KVMM_MODE:-auto} timeout -s KILL $${KVMM_TEST_TIMEOUT:-900} \
		$(PYTHON) -m pytest -p no:cacheprovider -q -rs tests $(PYTEST_ARGS)

# pip builds a wheel from the tree (setuptools, offline) and puts it in
# PREFIX/lib/python3.X/dist-packages, so the package finds libkvmm.so.0 in
# PREFIX/lib first. (--target: Debian's pip would add /local to --prefix.)
install-python: install-libkvmm
	cd $(PY_DIR) && PYTHONDONTWRITEBYTECODE=1 $(PYTHON) -m pip install --quiet --no-deps \
		--no-index --no-build-isolation --upgrade --target=$(DESTDIR)$(PY_SITE) .
	rm -rf $(PY_DIR)/build $(PY_DIR)/kvmm.egg-info

.PHONY: check-python install-python
