# Parley: `make run` starts everything with embedded defaults, `make test`
# passes the tests.  Both install what they need first (`make deps`).

SHELL := /bin/bash
CC ?= cc
CFLAGS_COMMON := -std=c11 -D_GNU_SOURCE -g -Wall -Wextra -Werror -Ilib
CFLAGS ?= -O2
BUILD := build
BIN := $(BUILD)/bin

LIB_SRCS := $(wildcard lib/*.c)
LIB_HDRS := $(wildcard lib/*.h)
NGX_SRCS := $(wildcard ngx_modules/*.c ngx_modules/*.h) config
LIB_ASAN_OBJS := $(patsubst lib/%.c,$(BUILD)/lib-asan/%.o,$(LIB_SRCS))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))

MODULE := $(BUILD)/modules/ngx_parley_module.so
ASAN_NGINX := $(BUILD)/asan/sbin/nginx
PROGRAMS := $(BIN)/parley-devbroker $(BIN)/parleyctl

.PHONY: all deps build module asan programs unit run stop test clean fuzz

all: build

deps:
	@scripts/deps.sh

build: deps
	@$(MAKE) --no-print-directory module programs unit

module: $(MODULE)

$(MODULE): $(NGX_SRCS) $(LIB_SRCS) $(LIB_HDRS) scripts/build-module.sh
	@echo "build: ngx_parley_module.so"
	@scripts/build-module.sh

asan: $(ASAN_NGINX)

$(ASAN_NGINX): $(NGX_SRCS) $(LIB_SRCS) $(LIB_HDRS) scripts/build-asan.sh
	@echo "build: nginx 1.22.1 + Parley under ASan/UBSan (static)"
	@scripts/build-asan.sh

programs: $(PROGRAMS)

$(BIN)/parley-devbroker: $(wildcard consumers/devbroker/*.c consumers/devbroker/*.h)
	@mkdir -p $(BIN)
	$(CC) -std=c11 -g -Wall -Wextra -Werror $(CFLAGS) -o $@ consumers/devbroker/*.c \
	    $$(pkg-config --cflags --libs rdkafka) -ldl

$(BIN)/parleyctl: $(wildcard consumers/parleyctl/*.c consumers/parleyctl/*.h) $(LIB_SRCS) $(LIB_HDRS)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS_COMMON) $(CFLAGS) -o $@ consumers/parleyctl/*.c $(LIB_SRCS) \
	    $$(pkg-config --cflags --libs libmariadb libcrypto jansson) -lz

unit: $(UNIT_BINS)

# lib/ is compiled once under the sanitizers, then linked into every test
$(BUILD)/lib-asan/%.o: lib/%.c $(LIB_HDRS)
	@mkdir -p $(BUILD)/lib-asan
	$(CC) $(CFLAGS_COMMON) -O1 -fsanitize=address,undefined -c -o $@ $<

$(BUILD)/tests/test_%: tests/unit/test_%.c $(LIB_ASAN_OBJS)
	@mkdir -p $(BUILD)/tests
	$(CC) $(CFLAGS_COMMON) -O1 -fsanitize=address,undefined -o $@ $< $(LIB_ASAN_OBJS) \
	    -lcriterion -lcrypto -ljansson -lz $$(pkg-config --cflags --libs libmariadb)

run: build
	@scripts/stack.sh dev start
	@scripts/banner.sh

stop:
	@scripts/stack.sh dev stop

test: build
	@$(MAKE) --no-print-directory asan
	@scripts/test.sh

fuzz: deps
	@scripts/fuzz.sh

clean:
	@scripts/stack.sh dev stop >/dev/null 2>&1 || true
	@scripts/stack.sh test stop >/dev/null 2>&1 || true
	rm -rf $(BUILD) var
