# The two set-up commands of the README: `make demo` and `make test`. Both create .venv first.
# `make docs` builds the documentation site (docs/, mkdocs.yml) into DOCS_SITE, failing on any warning.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DAGSTER_HOME ?= $(CURDIR)/.dagster_home
DATA_ROOT ?= $(CURDIR)/cube-data
DOCS_SITE ?= site
export DAGSTER_HOME

.PHONY: install demo test lint dev validate docs clean instance backfill system-packages

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

# The embedded default instance: the repository's dagster.yaml under DAGSTER_HOME.
instance:
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

demo: $(STAMP) instance
	CUBE_ASSETS_DATA_ROOT=$(DATA_ROOT) $(BIN)/cube-assets demo

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

validate: $(STAMP) instance
	$(BIN)/dagster definitions validate -w workspace.yaml

# NO_MKDOCS_2_WARNING: silences the banner mkdocs-material prints about MkDocs 2 on every build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir $(DOCS_SITE)

dev: $(STAMP) instance
	CUBE_ASSETS_DATA_ROOT=$(DATA_ROOT) $(BIN)/dagster dev -w workspace.yaml

# A backfill of one cube's job over the periods overlapping FROM..TO (YYYY-MM-DD), one run per
# partition, launched by the daemon of `make dev` (or `dagster-daemon run -w workspace.yaml`):
#   make backfill CUBE=s2_demo FROM=2024-01-01 TO=2024-01-16
backfill: $(STAMP) instance
	@test -n "$(CUBE)" -a -n "$(FROM)" -a -n "$(TO)" || { echo "usage: make backfill CUBE=name FROM=YYYY-MM-DD TO=YYYY-MM-DD"; exit 2; }
	CUBE_ASSETS_DATA_ROOT=$(DATA_ROOT) $(BIN)/cube-assets backfill --cube $(CUBE) --from $(FROM) --to $(TO)

clean:
	rm -rf $(VENV) .dagster_home cube-data .pytest_cache site
