# CPU attention kernel tests (suite "attn"): the kernels are rebuilt here
# with the sanitizers so the tests see their memory errors too.

ATTN_TEST_CFLAGS := $(USER_CFLAGS) -I$(TOP)/kernels -fsanitize=address,undefined \
	-fno-omit-frame-pointer -fno-sanitize-recover=undefined
ATTN_TEST_BIN := $(B)/tests/unit/attn_test
ATTN_TEST_OBJ := $(patsubst $(TOP)/%.c,$(B)/tests/san/%.o,$(ATTN_CPU_SRC)) \
	$(B)/tests/san/tests/unit/attn_util.o $(B)/tests/san/tests/unit/attn_test.o

ALL += $(ATTN_TEST_BIN)
CHECK_SUITES += attn

$(B)/tests/san/%.o: $(TOP)/%.c $(ATTN_HDR) $(TOP)/tests/unit/attn_util.h $(TOP)/tests/common/t_list.h
	@mkdir -p $(dir $@)
	$(CC) $(ATTN_TEST_CFLAGS) -c $< -o $@

$(ATTN_TEST_BIN): $(ATTN_TEST_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ATTN_TEST_CFLAGS) $^ -o $@ -lcmocka $(ATTN_LIBS)

check-attn: $(ATTN_TEST_BIN)
	@$(ATTN_TEST_BIN)

.PHONY: check-attn
