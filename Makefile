# Tollgate — `make run` serves the API on embedded defaults, `make test` runs the whole suite.
# Both start from nothing but Python 3.11: they install uv into .uv/ and the locked dependencies
# into .venv/ (uv.lock), then go.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.9
UV := .uv/bin/uv
VENV := .venv
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON := $(PYTHON)

.PHONY: install run test lint browser format migrate bench clean

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet --compile-bytecode
	touch $@

install: $(VENV)/.synced

run: install  ## serve on http://127.0.0.1:8000 (SQLite file + private Redis under ./data)
	$(VENV)/bin/tollgate run

test: install lint browser  ## the whole suite: real Redis, PostgreSQL, fake Stripe, headless Chromium
	$(VENV)/bin/pytest -q -p no:cacheprovider

browser:  ## Debian's Chromium, which the billing page's Playwright tests drive (no browser download)
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "the browser tests need Debian's chromium: sudo apt-get install chromium" >&2; exit 1; fi; \
	fi

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check app tests
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format app tests
	$(VENV)/bin/ruff check --fix .

migrate: install
	$(VENV)/bin/tollgate db upgrade

clean:
	rm -rf .uv $(VENV) data .pytest_cache .mypy_cache .ruff_cache
