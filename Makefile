# streamgate build.
#   make                      build/streamgate, build/sgback, build/wsload (gcc or $CC)
#   make CC=clang             the same with clang
#   make BUILD=build-asan SAN=1   ASan+UBSan build of everything
#   make unit                 Criterion unit tests (build/unit-tests)
#   make fuzz                 libFuzzer targets (clang), in build-fuzz/
CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
CSTD     = -std=c11 -D_GNU_SOURCE
WARN     = -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CFLAGS  += $(OPT) -g $(CSTD) $(WARN) -pthread -Isrc -MMD -MP
LDLIBS  += -pthread $(shell pkg-config --libs libpcre2-8 libnghttp2 libssl libcrypto zlib libcares)
ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

LIB_SRC  = $(wildcard src/*/*.c)
LIB_OBJ  = $(LIB_SRC:%.c=$(BUILD)/%.o)
BACK_SRC = $(wildcard tools/sgback/*.c)
BACK_OBJ = $(BACK_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC = $(wildcard tests/unit/*.c)
UNIT_OBJ = $(UNIT_SRC:%.c=$(BUILD)/%.o)
FUZZ_SRC = $(wildcard tests/fuzz/*.c)

.PHONY: all unit fuzz clean
all: $(BUILD)/streamgate $(BUILD)/sgback $(BUILD)/wsload

$(BUILD)/libstreamgate.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/streamgate: $(BUILD)/src/main.o $(BUILD)/libstreamgate.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# sgback reuses the project's HTTP/1.1 parser (so the fuzzed parser is the one it runs).
$(BUILD)/sgback: $(BACK_OBJ) $(BUILD)/libstreamgate.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# wsload: the WebSocket load tool and echo backend of bench/ws_idle.py (libcrypto
# only; its framing is ws_frame.c's, the one object it takes from the archive).
$(BUILD)/wsload: $(BUILD)/tools/wsload/wsload.o $(BUILD)/libstreamgate.a
	$(CC) $(LDFLAGS) -o $@ $^ $(shell pkg-config --libs libcrypto)

$(BUILD)/unit-tests: $(UNIT_OBJ) $(BUILD)/libstreamgate.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcriterion

unit: $(BUILD)/unit-tests

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# libFuzzer needs clang; each tests/fuzz/fuzz_X.c becomes build-fuzz/fuzz_X.
# The library is compiled once (coverage-instrumented, -fsanitize=fuzzer-no-link)
# into one archive that every target links: compiling all sources per target
# made `make fuzz` the slowest step of CI.
FUZZ_CFLAGS = -g -O1 $(CSTD) -DSG_FUZZING -Isrc -pthread -MMD -MP
FUZZ_SAN    = address,undefined
FUZZ_OBJ    = $(filter-out build-fuzz/src/main.o,$(LIB_SRC:%.c=build-fuzz/%.o))
fuzz: $(FUZZ_SRC:tests/fuzz/%.c=build-fuzz/%)
build-fuzz/src/%.o: src/%.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,$(FUZZ_SAN) -c -o $@ $<
build-fuzz/libstreamgate.a: $(FUZZ_OBJ)
	@rm -f $@
	ar rcs $@ $^
build-fuzz/%: tests/fuzz/%.c build-fuzz/libstreamgate.a
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer,$(FUZZ_SAN) -o $@ $< build-fuzz/libstreamgate.a $(LDLIBS)

clean:
	rm -rf build build-asan build-clang build-fuzz

-include $(LIB_OBJ:.o=.d) $(BACK_OBJ:.o=.d) $(UNIT_OBJ:.o=.d) $(BUILD)/src/main.d
-include $(BUILD)/tools/wsload/wsload.d
-include $(FUZZ_OBJ:.o=.d) $(FUZZ_SRC:tests/fuzz/%.c=build-fuzz/%.d)
