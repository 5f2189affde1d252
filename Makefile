# The two set-up commands of the README: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DAGSTER_HOME ?= $(CURDIR)/.dagster_home
DATA_ROOT ?= $(CURDIR)/cube-data
export DAGSTER_HOME

.PHONY: install demo test dev validate clean instance

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

clean:
	rm -rf $(VENV) .dagster_home cube-data .pytest_cache
