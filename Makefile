# AutoEditTATE: `make demo` edits the sample videos end to end, `make test` runs the suite.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP := .install.stamp

.PHONY: install system-deps demo test lint bench clean

system-deps:
	@command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null && command -v espeak-ng >/dev/null || \
	  ( $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq ffmpeg espeak-ng )

$(STAMP): pyproject.toml
	@$(PYTHON) -c "import sys; sys.exit(sys.version_info[:2] != (3, 11))" || { echo "Python 3.11 is required"; exit 1; }
	$(PIP) install -q -e ".[test]"
	@$(PIP) list 2>/dev/null | grep -i '^dagster' || true
	@touch $(STAMP)

install: system-deps $(STAMP)

demo: install
	$(PYTHON) scripts/demo.py

test: install
	$(PYTHON) -m pytest -q

lint: install
	$(PYTHON) -m ruff check . && $(PYTHON) -m ruff format --check .

bench: install
	$(PIP) install -q -e ".[test,bench]"
	$(PYTHON) -m bench.run

clean:
	rm -rf demo_out .pytest_cache $(STAMP)
