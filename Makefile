# citynode: the README's two commands are `make demo` and `make test`.
# Everything a target needs (virtual environment, Python packages, mosquitto, npm packages) is set up here.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint firmware firmware-unix multilib bench generate check-generated sysdeps nodedeps clean help

help:
	@echo "make demo      set up and run the main job"
	@echo "make test      set up and run every test (unit, MicroPython, QuickJS, brokers, HIL on the virtual device)"
	@echo "make test-fast the everyday loop: every test not marked slow, stop at the first failure"
	@echo "make lint      ruff over the whole tree (make test runs it too)"
	@echo "make firmware  compile the node app with mpy-cross into build/firmware"
	@echo "make firmware-unix  build the 32-bit MicroPython unix port with citynode frozen in (build/micropython-unix32)"
	@echo "make bench     run the benchmarks and rewrite bench/RESULTS.md"
	@echo "make generate  regenerate codec tables and the ChirpStack codec from codecs/schema.json"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "citynode needs Python >= 3.11, found " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# System packages the tests talk to for real. Installed only when missing (CI machines are root).
sysdeps:
	@command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || \
	  (echo "installing mosquitto"; apt-get update -qq && apt-get install -y -qq mosquitto >/dev/null)
	@command -v node >/dev/null 2>&1 || \
	  (echo "installing nodejs"; apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null)
	@command -v chromium >/dev/null 2>&1 || \
	  (echo "installing chromium"; apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# npm packages used by tests as independent implementations (lora-packet).
nodedeps: sysdeps tests/js/node_modules/.installed
tests/js/node_modules/.installed: tests/js/package.json
	cd tests/js && npm install --silent --no-audit --no-fund
	touch $@

demo: $(STAMP)
	$(BIN)/citynode demo

test: $(STAMP) sysdeps nodedeps lint firmware-unix
	CITYNODE_MICROPYTHON=$(CURDIR)/$(UNIX32) $(BIN)/python -m pytest

# The everyday loop: everything but the tests marked slow (brokers, browsers, 1000-cycle heap runs, demo).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -x -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .

# Fails when a generated file (codec tables, the ChirpStack codec) is older than codecs/schema.json.
check-generated: $(STAMP)
	$(BIN)/python -m pytest -q tests/contract/test_codec_generated.py

generate: $(STAMP)
	$(BIN)/citynode codec generate

firmware: $(STAMP)
	$(BIN)/citynode firmware build --out build/firmware

# ---------------------------------------------------------------------------------------------------
# MicroPython unix port, 32-bit (an ESP32 is 32-bit: objects and pointers take the bytes they take there).
#   build/micropython-unix32/micropython        the device package frozen in (FROZEN_MANIFEST), like an
#                                               ESP32 image built with firmware/manifest.py
#   build/micropython-unix32-stock/micropython  nothing of citynode frozen in: a stock board running the
#                                               .mpy files `citynode flash` copies
# Both have firmware/cmodules/* compiled in as user C modules, with the host shim of the ESP-IDF calls
# (tests/firmware/unix32/esp_host) beside them. Tests and tools use one of them through
# CITYNODE_MICROPYTHON=/path/to/micropython (`make test` sets it to the frozen build).
#
# The source: the reduced MicroPython release copy in shared/micropython/ beside the checkout (CI
# clones next to it; a git worktree finds it beside its main checkout), or MICROPYTHON_SRC_DIR=...
# Only when no copy is found is the upstream release asset downloaded (pinned, SHA-256 checked).
MICROPYTHON_VERSION := 1.28.0
MP_SRC_TARBALL      := micropython-$(MICROPYTHON_VERSION)-src.tar.gz
MP_SRC_SHA256       := 4981cd3e62d2b2a0bd81526221213447ce6b7e2ffcf1d590fa34ad558cc88ac6
MP_UPSTREAM_URL     := https://github.com/micropython/micropython/releases/download/v$(MICROPYTHON_VERSION)/micropython-$(MICROPYTHON_VERSION).tar.xz
MP_UPSTREAM_SHA256  := 4e43c59657b8da33b4bc503509a827cc3ea6cb66c446475c57776cf4467ba215
MP_GIT_COMMON       := $(shell git -C $(CURDIR) rev-parse --path-format=absolute --git-common-dir 2>/dev/null)
MP_SRC_CANDIDATES   := $(MICROPYTHON_SRC_DIR) $(CURDIR)/../shared/micropython \
                       $(if $(MP_GIT_COMMON),$(abspath $(MP_GIT_COMMON)/../../shared/micropython))
MP_SRC_FOUND        := $(firstword $(wildcard $(addsuffix /$(MP_SRC_TARBALL),$(MP_SRC_CANDIDATES))))
MP_DIR              := $(CURDIR)/build/micropython-src/micropython-$(MICROPYTHON_VERSION)
MP_CC               := gcc -m32
MP_UNIX_FLAGS        = VARIANT=standard CC="$(MP_CC)" MICROPY_PY_FFI=0 USER_C_MODULES=$(CURDIR)/build/micropython-usermods
UNIX32              := build/micropython-unix32/micropython
UNIX32_STOCK        := build/micropython-unix32-stock/micropython
FIRMWARE_SRC        := $(shell find firmware/lib firmware/cmodules tests/firmware/unix32 -type f -not -path '*/__pycache__/*' 2>/dev/null)

# gcc -m32 needs Debian's gcc-multilib (installed when missing, like sysdeps installs mosquitto).
multilib:
	@echo 'int main(void){return 0;}' | gcc -m32 -x c - -o /dev/null 2>/dev/null || \
	  (echo "installing gcc-multilib"; apt-get update -qq && apt-get install -y -qq gcc-multilib >/dev/null)

$(MP_DIR)/.extracted:
	mkdir -p build/micropython-src
ifneq ($(MP_SRC_FOUND),)
	@echo "MicroPython $(MICROPYTHON_VERSION) source: $(MP_SRC_FOUND)"
	echo "$(MP_SRC_SHA256)  $(MP_SRC_FOUND)" | sha256sum -c --quiet
	tar -xzf $(MP_SRC_FOUND) -C build/micropython-src
else
	@echo "no $(MP_SRC_TARBALL) beside the checkout (looked in: $(MP_SRC_CANDIDATES)): downloading the upstream release"
	curl -fsSL -o build/micropython-src/upstream.tar.xz $(MP_UPSTREAM_URL)
	echo "$(MP_UPSTREAM_SHA256)  build/micropython-src/upstream.tar.xz" | sha256sum -c --quiet
	tar -xJf build/micropython-src/upstream.tar.xz -C build/micropython-src
endif
	touch $@

# USER_C_MODULES: every module of firmware/cmodules plus the host shims (esp_host: the ESP-IDF Wi-Fi
# calls; romfs_host: a ROMFS image mapped like an ESP32's romfs flash partition), as links (the shims
# stay out of firmware/, so an ESP32 build never sees them).
build/micropython-usermods/.linked: $(MP_DIR)/.extracted Makefile
	rm -rf build/micropython-usermods build/micropython-unix32/obj build/micropython-unix32-stock/obj  # a new module set: build afresh
	mkdir -p build/micropython-usermods
	for d in firmware/cmodules/*/ tests/firmware/unix32/esp_host/ tests/firmware/unix32/romfs_host/; do \
	  ln -s $(CURDIR)/$${d%/} build/micropython-usermods/$$(basename $$d); done
	touch $@

$(UNIX32): $(MP_DIR)/.extracted build/micropython-usermods/.linked $(FIRMWARE_SRC) Makefile | multilib
	$(MAKE) -C $(MP_DIR)/mpy-cross -j2 >/dev/null
	$(MAKE) -C $(MP_DIR)/ports/unix -j2 $(MP_UNIX_FLAGS) BUILD=$(CURDIR)/build/micropython-unix32/obj \
	  FROZEN_MANIFEST=$(CURDIR)/tests/firmware/unix32/manifest.py >build/micropython-unix32.log 2>&1 \
	  || (tail -30 build/micropython-unix32.log; exit 1)
	cp build/micropython-unix32/obj/micropython $@.tmp && mv -f $@.tmp $@  # mv: a running copy keeps its inode

$(UNIX32_STOCK): $(MP_DIR)/.extracted build/micropython-usermods/.linked $(filter firmware/cmodules/% tests/firmware/unix32/%,$(FIRMWARE_SRC)) Makefile | multilib
	$(MAKE) -C $(MP_DIR)/mpy-cross -j2 >/dev/null
	$(MAKE) -C $(MP_DIR)/ports/unix -j2 $(MP_UNIX_FLAGS) BUILD=$(CURDIR)/build/micropython-unix32-stock/obj \
	  >build/micropython-unix32-stock.log 2>&1 || (tail -30 build/micropython-unix32-stock.log; exit 1)
	cp build/micropython-unix32-stock/obj/micropython $@.tmp && mv -f $@.tmp $@

firmware-unix: $(UNIX32) $(UNIX32_STOCK)

bench: $(STAMP) sysdeps firmware-unix
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build tests/js/node_modules .pytest_cache .hypothesis
