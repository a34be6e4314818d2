"""The four steps of a change environment: create (production's manifest as state, parents
cloned), build (`state:modified+` with `--defer`), diff (against production), drop.

Each step is idempotent: `create` again replaces the clones, `build` again rebuilds, `drop` of
an environment that is gone does nothing.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

from pipelines.environments import cloning
from pipelines.environments.data_diff import diff_bigquery, diff_environment
from pipelines.environments.dbt_runs import DbtEnvironment, production_database, production_manifest
from pipelines.environments.layout import ChangeEnvironmentError, EnvironmentPaths, Record
from pipelines.environments.report import markdown
from pipelines.environments.selection import clone_set, relation
from resources import settings
from resources.warehouse import BigQueryWarehouse

_BUILT_TYPES = ("model", "seed", "snapshot")


def _state_manifest(state: Path) -> Path:
    path = state / "manifest.json" if state.is_dir() else state
    if not path.is_file():
        raise ChangeEnvironmentError(
            f"production manifest not found at {path}: pass the manifest.json production was "
            "built from (or its folder) with --state"
        )
    return path


def _bigquery(record: Record) -> BigQueryWarehouse:
    return BigQueryWarehouse(project=record.source_database, location=settings.bigquery_location())


def create(
    name: str, state: Path, project_dir: Path, source: str = "prod",
    env: settings.Environment | None = None,
) -> Record:  # fmt: skip
    paths = EnvironmentPaths.of(name, env)
    manifest_file = _state_manifest(state)
    kind = settings.warehouse_kind(env)
    if kind == "duckdb":
        database = settings.effective(env)["MINATO_DUCKDB_PATH"]
        if not Path(database).is_file():
            raise ChangeEnvironmentError(f"production DuckDB file not found: {database}")
    else:
        database = settings.effective(env).get("MINATO_BIGQUERY_PROJECT") or ""
        if not database:
            raise ChangeEnvironmentError("MINATO_BIGQUERY_PROJECT is not set")
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(manifest_file, paths.state_dir / "manifest.json")
    record = Record(
        name=name,
        warehouse=kind,
        source=source,
        source_database=database,
        prefix=paths.prefix,
    )
    if kind == "duckdb":
        record.duckdb_file = str(paths.duckdb_path(production_database(paths)))
    dbt = DbtEnvironment(project_dir, paths, record)
    dbt.write_profile()
    built = dbt.modified_and_descendants()
    manifest, production = dbt.manifest(), production_manifest(paths)
    record.cloned = clone_set(built, manifest, production)
    record.built = built
    pairs = [
        (relation(_node(production, uid)), relation(_node(manifest, uid))) for uid in record.cloned
    ]
    if kind == "duckdb":
        paths.write(record)
        cloning.clone_duckdb(Path(record.duckdb_file), database, pairs)
        return record
    # A source keeps production's dataset (dbt_runs.py): it is read there, not cloned.
    pairs = [(source, target) for source, target in pairs if source != target]
    record.datasets = sorted({target.schema for _, target in pairs})
    paths.write(record)  # first: a clone that fails half-way still leaves `drop` its datasets
    location = settings.bigquery_location(env)
    cloning.run_bigquery(_bigquery(record), cloning.bigquery_clone_statements(pairs, location))
    return record


def _node(manifest: dict, unique_id: str) -> dict:
    return manifest["nodes"].get(unique_id) or manifest["sources"][unique_id]


def build(
    name: str, project_dir: Path, dbt_vars: str | None = None,
    env: settings.Environment | None = None,
) -> Record:  # fmt: skip
    paths = EnvironmentPaths.of(name, env)
    record = paths.read()
    dbt = DbtEnvironment(project_dir, paths, record)
    extra = ["--vars", dbt_vars] if dbt_vars else []
    dbt.run(
        "build", "--select", "state:modified+", "--defer", "--state", str(paths.state_dir), *extra
    )
    manifest = dbt.manifest()
    results = json.loads((paths.target_dir / "run_results.json").read_text())["results"]
    record.built = sorted(
        r["unique_id"]
        for r in results
        if r["unique_id"] in manifest["nodes"]
        and manifest["nodes"][r["unique_id"]]["resource_type"] in _BUILT_TYPES
    )
    if record.warehouse == "bigquery":  # `drop` removes every dataset dbt wrote into
        built_datasets = {manifest["nodes"][uid]["schema"] for uid in record.built}
        record.datasets = sorted(set(record.datasets) | built_datasets)
    paths.write(record)
    return record


def diff(name: str, env: settings.Environment | None = None) -> str:
    paths = EnvironmentPaths.of(name, env)
    record = paths.read()
    if not record.built:  # no model changed (or `build` has not run): an empty report
        return markdown(name, record.source, len(record.cloned), [])
    manifest = json.loads((paths.target_dir / "manifest.json").read_text())
    if record.warehouse == "duckdb":
        diffs = diff_environment(
            record.duckdb_file,
            record.source_database,
            record.built,
            manifest,
            production_manifest(paths),
        )
    else:
        diffs = diff_bigquery(_bigquery(record), record.built, manifest, production_manifest(paths))
    return markdown(name, record.source, len(record.cloned), diffs)


def drop(name: str, env: settings.Environment | None = None) -> bool:
    """False if there was nothing to drop."""
    paths = EnvironmentPaths.of(name, env)
    if not paths.root.exists():
        return False
    if paths.exists():
        record = paths.read()
        if record.warehouse == "bigquery" and record.datasets:
            statements = cloning.bigquery_drop_statements(record.source_database, record.datasets)
            cloning.run_bigquery(_bigquery(record), statements)
    shutil.rmtree(paths.root)
    with contextlib.suppress(OSError):  # the last environment takes `envs/` with it
        paths.root.parent.rmdir()
    return True
