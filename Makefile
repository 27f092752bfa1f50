# AutoEditTATE: `make demo` edits the sample videos end to end, `make test` runs the suite.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP := .install.stamp

.PHONY: install system-deps demo demo-cli ui test lint bench clean

system-deps:
	@command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null && command -v espeak-ng >/dev/null || \
	  ( $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq ffmpeg espeak-ng )

$(STAMP): pyproject.toml
	@$(PYTHON) -c "import sys; sys.exit(sys.version_info[:2] != (3, 11))" || { echo "Python 3.11 is required"; exit 1; }
	$(PIP) install -q -e ".[test]"
	@$(PIP) list 2>/dev/null | grep -i '^dagster' || true
	@touch $(STAMP)

install: system-deps $(STAMP)

# The embedded default: a SQLite instance and a storage folder in the repo (both git-ignored).
DAGSTER_HOME_DIR := $(CURDIR)/.dagster_home
STORAGE_DIR := $(CURDIR)/.storage
DAGSTER_ENV := DAGSTER_HOME=$(DAGSTER_HOME_DIR) AUTOEDIT_STORAGE=$(STORAGE_DIR)

$(DAGSTER_HOME_DIR)/dagster.yaml: deploy/dagster.local.yaml
	@mkdir -p $(DAGSTER_HOME_DIR)
	cp deploy/dagster.local.yaml $@

# The sample videos through the real upload sensor and runs; prints results and render paths.
demo: install $(DAGSTER_HOME_DIR)/dagster.yaml
	$(DAGSTER_ENV) $(PYTHON) scripts/dagster_demo.py

# The same edits with the engine alone (`autoedit edit`, no Dagster), into demo_out/.
demo-cli: install
	$(PYTHON) scripts/demo.py

# The Dagster UI (and daemon) on the same instance and storage: http://127.0.0.1:3000
ui: install $(DAGSTER_HOME_DIR)/dagster.yaml
	$(DAGSTER_ENV) $(PYTHON) -m dagster dev -w workspace.yaml -p 3000

test: install
	$(PYTHON) -m pytest -q

# ruff (with autoedit_dagster/engine/ruff.toml: the engine imports no Dagster and nothing above it),
# the formatter, and mypy on the engine ([tool.mypy] in pyproject.toml).
lint: install
	$(PYTHON) -m ruff check . && $(PYTHON) -m ruff format --check . && $(PYTHON) -m mypy

bench: install
	$(PIP) install -q -e ".[test,bench]"
	$(PIP) install -q --no-deps "scenedetect>=0.6.4,<0.7"
	$(PYTHON) -m bench.run

clean:
	rm -rf demo_out .pytest_cache $(STAMP)
