# Tollgate — `make run` serves the API on embedded defaults, `make test` runs the whole suite.
# Both start from nothing but Python 3.11: they install uv into .uv/ and the locked dependencies
# into .venv/ (uv.lock), then go.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.9
UV := .uv/bin/uv
VENV := .venv
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON := $(PYTHON)

.PHONY: install run test lint format migrate bench clean

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet --compile-bytecode
	touch $@

install: $(VENV)/.synced

run: install  ## serve on http://127.0.0.1:8000 (SQLite file + private Redis under ./data)
	$(VENV)/bin/tollgate run

test: install lint  ## the whole suite, real Redis and PostgreSQL started by the fixtures
	$(VENV)/bin/pytest -q -p no:cacheprovider

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
