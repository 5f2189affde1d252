# The two set-up commands of the README: `make demo` and `make test`. Both create .venv first.
# `make docs` builds the documentation site (docs/, mkdocs.yml) into DOCS_SITE, failing on any warning.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime-stamp
STAMP := $(VENV)/.installed-stamp
DAGSTER_HOME ?= $(CURDIR)/.dagster_home
DATA_ROOT ?= $(or $(CUBE_ASSETS_DATA_ROOT),$(CURDIR)/cube-data)
# `make prod-local`: the data folder of the local rehearsal of production (docs/operations.md).
PROD_ROOT ?= $(CURDIR)/.dagster_prod
DOCS_SITE ?= site
export DAGSTER_HOME
# Dagster 1.13 marks `dagster dev` and `dagster definitions validate` as superseded by `dg` (which
# the project does not install); they work as before, so `make dev` and `make validate` hide that warning.
QUIET_SUPERSEDED := PYTHONWARNINGS='ignore:Function `dev_command` is superseded,ignore:Function `definitions_validate_command` is superseded'

.PHONY: install demo test lint dev validate docs clean instance backfill system-packages serve prod-local prod-local-stop worker

install: $(STAMP)

# What the project runs with (`make demo`, `make dev`): the package, the viewer's
# MapLibre GL JS from the npm registry (served by the app: no CDN), and numba's compositing kernels
# for the demo cube compiled once into numba's cache (docs/operations.md). The test extras, about
# as long again to install, wait for the targets that need them.
$(RUNTIME_STAMP): pyproject.toml cube_assets/service/static/package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	if command -v npm >/dev/null 2>&1; then \
	  cd cube_assets/service/static && npm ci --no-audit --no-fund --loglevel=error; \
	else echo "npm missing: install Debian's npm, then run make install again (the /viewer page needs MapLibre GL JS)"; fi
	$(BIN)/cube-assets compile-kernels
	touch $(RUNTIME_STAMP)

# Everything besides, for the tests, the linters, the documentation site, `make prod-local` (moto's
# S3 server) and `make serve` (the README's odc-stac line after it).
$(STAMP): $(RUNTIME_STAMP)
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

# The embedded default instance: the repository's dagster.yaml under DAGSTER_HOME. A dagster.yaml
# already there is replaced only when it is the copy this target made (recorded beside it in
# .dagster.yaml.installed); any other one (the production instance, your edits) is kept, and said so.
instance:
	@mkdir -p "$(DAGSTER_HOME)"
	@target="$(DAGSTER_HOME)/dagster.yaml"; installed="$(DAGSTER_HOME)/.dagster.yaml.installed"; \
	if [ ! -e "$$target" ] || cmp -s "$$target" dagster.yaml || { [ -e "$$installed" ] && cmp -s "$$target" "$$installed"; }; then \
	  cp dagster.yaml "$$target.tmp" && mv "$$target.tmp" "$$target" && cp dagster.yaml "$$installed"; \
	else \
	  echo "keeping $$target: it differs from the repository's dagster.yaml (remove it to go back to the embedded SQLite instance)"; \
	fi

# The local rehearsal of production: PostgreSQL with PostGIS and moto's S3 server on loopback under
# PROD_ROOT, the databases and the bucket, PROD_ROOT/env.sh; `make prod-local-stop` stops them.
prod-local: $(STAMP)
	$(BIN)/cube-assets prod-local start --root "$(PROD_ROOT)"

prod-local-stop: $(STAMP)
	$(BIN)/cube-assets prod-local stop --root "$(PROD_ROOT)"

demo: $(RUNTIME_STAMP) instance
	CUBE_ASSETS_DATA_ROOT=$(DATA_ROOT) $(BIN)/cube-assets demo

# The STAC API over the demo's catalog (CUBE_ENV=prod: $CUBE_ASSETS_CATALOG_URL) on http://127.0.0.1:8000/.
serve: $(STAMP)
	CUBE_ASSETS_DATA_ROOT=$(DATA_ROOT) $(BIN)/cube-assets serve

# The servers and programs the tests start for real (PostgreSQL with PostGIS, Redis for Celery,
# Chromium for the viewer), from Debian's packages where they are missing and apt-get can install
# them (as root); otherwise say what to install.
PG_CTL_GLOB := /usr/lib/postgresql/*/bin/pg_ctl
POSTGIS_GLOB := /usr/share/postgresql/*/extension/postgis.control
APT_INSTALL := apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq
CAN_APT = [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1
system-packages:
	@if ! command -v pg_ctl >/dev/null 2>&1 && [ -z "$$(ls $(PG_CTL_GLOB) 2>/dev/null)" ]; then \
	  if $(CAN_APT); then \
	    echo "installing PostgreSQL (Debian package postgresql) for the tests"; \
	    $(APT_INSTALL) postgresql >/dev/null; \
	  else echo "PostgreSQL server missing: install Debian's postgresql package (its tests skip, or fail with CI=true)"; fi; \
	fi
	@if [ -n "$$(ls $(PG_CTL_GLOB) 2>/dev/null)" ] && [ -z "$$(ls $(POSTGIS_GLOB) 2>/dev/null)" ]; then \
	  pg_major="$$(ls /usr/lib/postgresql | sort -n | tail -n 1)"; \
	  if $(CAN_APT); then \
	    echo "installing PostGIS (Debian package postgresql-$$pg_major-postgis-3) for the tests"; \
	    $(APT_INSTALL) "postgresql-$$pg_major-postgis-3" >/dev/null; \
	  else echo "PostGIS missing: install Debian's postgresql-$$pg_major-postgis-3 (its tests skip, or fail with CI=true)"; fi; \
	fi
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium chromium-driver"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	command -v gdalinfo >/dev/null 2>&1 || missing="$$missing gdal-bin"; \
	if [ -n "$$missing" ]; then \
	  if $(CAN_APT); then \
	    echo "installing$$missing (Debian packages) for the tests"; \
	    $(APT_INSTALL) $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing (their tests skip, or fail with CI=true)"; fi; \
	fi

test: $(STAMP) system-packages
	$(BIN)/pytest -q

# ruff (lint and format) over the tree; mypy over the modules [tool.mypy] in pyproject.toml names.
lint: $(STAMP)
	$(BIN)/ruff check cube_assets cube_assets_tests benchmarks && $(BIN)/ruff format --check cube_assets cube_assets_tests benchmarks && $(BIN)/mypy

validate: $(RUNTIME_STAMP) instance
	$(QUIET_SUPERSEDED) $(BIN)/dagster definitions validate -w workspace.yaml

# NO_MKDOCS_2_WARNING: silences the banner mkdocs-material prints about MkDocs 2 on every build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir $(DOCS_SITE)

dev: $(RUNTIME_STAMP) instance
	$(QUIET_SUPERSEDED) CUBE_ASSETS_DATA_ROOT=$(DATA_ROOT) $(BIN)/dagster dev -w workspace.yaml

# A backfill of one cube's job over the periods overlapping FROM..TO (YYYY-MM-DD), one run per
# partition, launched by the daemon of `make dev` (or `dagster-daemon run -w workspace.yaml`):
#   make backfill CUBE=s2_demo FROM=2024-01-01 TO=2024-01-16
backfill: $(RUNTIME_STAMP) instance
	@test -n "$(CUBE)" -a -n "$(FROM)" -a -n "$(TO)" || { echo "usage: make backfill CUBE=name FROM=YYYY-MM-DD TO=YYYY-MM-DD"; exit 2; }
	CUBE_ASSETS_DATA_ROOT=$(DATA_ROOT) $(BIN)/cube-assets backfill --cube $(CUBE) --from $(FROM) --to $(TO)

# One Celery worker for runs with CUBE_ASSETS_EXECUTOR=celery, taking one step at a time from
# CUBE_ASSETS_CELERY_BROKER (default redis://localhost:6379/0); start one per core, on any machine
# with the same cube file and storage variables (docs/operations.md, "Scaling to a country"):
#   make worker CUBE_ENV=prod WORKER=gpu-box-1
WORKER ?= $(shell hostname)
worker: $(RUNTIME_STAMP) instance
	CUBE_ASSETS_DATA_ROOT=$(DATA_ROOT) CUBE_ASSETS_EXECUTOR=celery \
	  $(BIN)/dagster-celery worker start -A cube_assets.celery_app -n $(WORKER) -- --concurrency=1

clean:
	rm -rf $(VENV) .dagster_home cube-data .pytest_cache site
