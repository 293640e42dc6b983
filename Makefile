# citynode: the README's two commands are `make demo` and `make test`.
# Everything a target needs (virtual environment, Python packages, mosquitto, npm packages) is set up here.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint firmware bench generate check-generated sysdeps nodedeps clean help

help:
	@echo "make demo      set up and run the main job"
	@echo "make test      set up and run every test (unit, MicroPython, QuickJS, brokers, HIL on the virtual device)"
	@echo "make test-fast the everyday loop: every test not marked slow, stop at the first failure"
	@echo "make lint      ruff over the whole tree (make test runs it too)"
	@echo "make firmware  compile the node app with mpy-cross into build/firmware"
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

test: $(STAMP) sysdeps nodedeps lint
	$(BIN)/python -m pytest

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

bench: $(STAMP) sysdeps
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build tests/js/node_modules .pytest_cache .hypothesis
