# CPU attention kernel tests (suite "attn"): the kernels are rebuilt here
# with the sanitizers so the tests see their memory errors too.

ATTN_TEST_CFLAGS := $(USER_CFLAGS) -I$(TOP)/kernels -fsanitize=address,undefined \
	-fno-omit-frame-pointer -fno-sanitize-recover=undefined
ATTN_TEST_BIN := $(B)/tests/unit/attn_test
ATTN_TEST_OBJ := $(patsubst $(TOP)/%.c,$(B)/tests/san/%.o,$(ATTN_CPU_SRC)) \
	$(B)/tests/san/tests/unit/attn_golden.o $(B)/tests/san/tests/unit/attn_util.o \
	$(B)/tests/san/tests/unit/attn_test.o
ATTN_TEST_HDR := $(TOP)/tests/unit/attn_util.h $(TOP)/tests/unit/attn_golden.h

ALL += $(ATTN_TEST_BIN)
CHECK_SUITES += attn

$(B)/tests/san/%.o: $(TOP)/%.c $(ATTN_HDR) $(ATTN_TEST_HDR) $(TOP)/tests/common/t_list.h
	@mkdir -p $(dir $@)
	$(CC) $(ATTN_TEST_CFLAGS) -c $< -o $@

# The golden and the test data are built without kernels/ on the include
# path: they must not share a line of code with what they check.
ATTN_GOLD_OBJ := $(B)/tests/san/tests/unit/attn_golden.o $(B)/tests/san/tests/unit/attn_util.o
$(ATTN_GOLD_OBJ): $(B)/tests/san/tests/unit/%.o: $(TOP)/tests/unit/%.c \
		$(TOP)/include/kvmm/attention.h $(ATTN_TEST_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -I$(TOP)/kernels,$(ATTN_TEST_CFLAGS)) -c $< -o $@

$(ATTN_TEST_BIN): $(ATTN_TEST_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ATTN_TEST_CFLAGS) $^ -o $@ -lcmocka $(ATTN_LIBS)

# The kernels alone, sanitized, for the libkvmm unit tests that decode over regions.
ATTN_SAN_LIB := $(B)/tests/san/libkvmm-attn.a
$(ATTN_SAN_LIB): $(patsubst $(TOP)/%.c,$(B)/tests/san/%.o,$(ATTN_CPU_SRC))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

check-attn: $(ATTN_TEST_BIN)
	@$(ATTN_TEST_BIN)

.PHONY: check-attn
