# The two set-up commands of the README: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DAGSTER_HOME ?= $(CURDIR)/.dagster_home
DATA_ROOT ?= $(CURDIR)/cube-data
export DAGSTER_HOME

.PHONY: install demo test dev validate clean instance backfill

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

test: $(STAMP)
	$(BIN)/pytest -q

validate: $(STAMP) instance
	$(BIN)/dagster definitions validate -w workspace.yaml

dev: $(STAMP) instance
	CUBE_ASSETS_DATA_ROOT=$(DATA_ROOT) $(BIN)/dagster dev -w workspace.yaml

# A backfill of one cube's job over the periods overlapping FROM..TO (YYYY-MM-DD), one run per
# partition, launched by the daemon of `make dev` (or `dagster-daemon run -w workspace.yaml`):
#   make backfill CUBE=s2_demo FROM=2024-01-01 TO=2024-01-16
backfill: $(STAMP) instance
	@test -n "$(CUBE)" -a -n "$(FROM)" -a -n "$(TO)" || { echo "usage: make backfill CUBE=name FROM=YYYY-MM-DD TO=YYYY-MM-DD"; exit 2; }
	CUBE_ASSETS_DATA_ROOT=$(DATA_ROOT) $(BIN)/cube-assets backfill --cube $(CUBE) --from $(FROM) --to $(TO)

clean:
	rm -rf $(VENV) .dagster_home cube-data .pytest_cache
