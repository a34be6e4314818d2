"""`minato env diff` on BigQuery (the real emulator, tests/bigquery_emulator.py) gives the report
DuckDB gives for the same data: production's tables and an environment's, with a changed value,
an added and a removed row, an added, a removed and a retyped column, an unkeyed table with
duplicates, a new model, and a PII column whose values never reach the report."""

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.environments import lifecycle
from pipelines.environments.layout import EnvironmentPaths, Record
from resources.warehouse.sql import sql_literal
from tests.bigquery_emulator import Emulator, emulator_warehouse, record_jobs
from tests.test_environment_diff import UNIQUE_ID

NAME = "pr-9"
PREFIX = "pr_9_"
DATASET = "diffshop"  # unlike any other test's datasets on the shared emulator
# Column types as (DuckDB, BigQuery); rows as Python values, rendered per dialect.
INT, TEXT, DATE = ("BIGINT", "INT64"), ("VARCHAR", "STRING"), ("DATE", "DATE")
PRODUCTION = {
    "keyed": (
        {"id": INT, "a": INT, "email": TEXT, "day": DATE, "dropped": TEXT},
        [
            (1, 5, "ann@example.com", "2026-11-01", "d"),
            (2, 6, "bob@example.com", "2026-11-02", "d"),
            (3, 7, "cy@example.com", None, "d"),
        ],
    ),
    "bag": ({"x": INT, "y": TEXT}, [(1, "p"), (1, "p"), (2, "q"), (None, None)]),
}
ENVIRONMENT = {
    "keyed": (  # a retyped, email changed in row 2, day changed in row 1, 3 gone, 4 new
        {"id": INT, "a": TEXT, "email": TEXT, "day": DATE, "added": TEXT},
        [
            (1, "5", "ann@example.com", "2026-11-05", "n"),
            (2, "6", "bob.secret@example.com", "2026-11-02", "n"),
            (4, "8", "dee@example.com", "2026-11-04", "n"),
        ],
    ),
    "bag": ({"x": INT, "y": TEXT}, [(1, "p"), (3, "r"), (None, None)]),
    "fresh": ({"n": INT}, [(0,), (1,)]),
}
PII_VALUES = ["example.com", "ann", "bob", "secret", "dee"]


def _model(name: str, database: str, schema: str, **extra: Any) -> dict:
    return {
        "resource_type": "model",
        "database": database,
        "schema": schema,
        "alias": name,
        "name": name,
        "config": {},
        "columns": {},
        **extra,
    }


def _manifests(database: str, environment_schema: str) -> tuple[dict, dict]:
    """(environment's, production's): only the environment's names carry its prefix."""
    production = {
        "nodes": {f"model.p.{t}": _model(t, database, DATASET) for t in PRODUCTION},
        "sources": {},
    }
    environment = {
        "nodes": {
            **{f"model.p.{t}": _model(t, database, environment_schema) for t in ENVIRONMENT},
            "test.p.unique_keyed_id": UNIQUE_ID,
        },
        "sources": {},
    }
    environment["nodes"]["model.p.keyed"]["columns"] = {"email": {"meta": {"pii": "direct"}}}
    return environment, production


def _statements(tables: dict, qualified: str, dialect: str) -> list[str]:
    side = 0 if dialect == "duckdb" else 1
    statements = []
    for table, (columns, rows) in tables.items():
        name = qualified.format(table=table)
        listed = ", ".join(f"{c} {types[side]}" for c, types in columns.items())
        statements.append(f"CREATE OR REPLACE TABLE {name} ({listed})")
        values = ", ".join(
            "("
            + ", ".join(
                f"DATE {sql_literal(v, dialect=dialect)}"
                if types == DATE and v is not None
                else sql_literal(v, dialect=dialect)
                for v, types in zip(row, columns.values(), strict=True)
            )
            + ")"
            for row in rows
        )
        statements.append(f"INSERT INTO {name} VALUES {values}")
    return statements


def _write_environment(
    paths: EnvironmentPaths, record: Record, manifests: tuple[dict, dict]
) -> None:
    environment, production = manifests
    for folder, manifest in ((paths.target_dir, environment), (paths.state_dir, production)):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "manifest.json").write_text(json.dumps(manifest))
    paths.write(record)


def _duckdb_report(tmp_path: Path) -> str:
    production_file = tmp_path / "production" / "warehouse.duckdb"
    paths = EnvironmentPaths.of(NAME)
    environment_file = paths.duckdb_path("warehouse")
    for path, tables in ((production_file, PRODUCTION), (environment_file, ENVIRONMENT)):
        path.parent.mkdir(parents=True, exist_ok=True)
        with duckdb.connect(str(path)) as conn:
            conn.execute(f"CREATE SCHEMA {DATASET}")
            for statement in _statements(tables, f"{DATASET}.{{table}}", "duckdb"):
                conn.execute(statement)
    record = Record(NAME, "duckdb", "prod", str(production_file), PREFIX, str(environment_file))
    record.cloned, record.built = ["model.p.upstream"], sorted(f"model.p.{t}" for t in ENVIRONMENT)
    _write_environment(paths, record, _manifests("warehouse", DATASET))
    return lifecycle.diff(NAME)


def _bigquery_report(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> str:
    warehouse = emulator_warehouse(emulator)
    project = emulator.project
    for dataset, tables in ((DATASET, PRODUCTION), (PREFIX + DATASET, ENVIRONMENT)):
        warehouse.execute(f"CREATE SCHEMA IF NOT EXISTS `{project}.{dataset}`")
        for statement in _statements(tables, f"`{project}.{dataset}.{{table}}`", "bigquery"):
            warehouse.execute(statement)
    # `diff` reads through the product's warehouse for the record's project: the emulator's.
    monkeypatch.setattr(lifecycle, "_bigquery", lambda record: emulator_warehouse(emulator))
    paths = EnvironmentPaths.of(NAME)
    record = Record(NAME, "bigquery", "prod", project, PREFIX)
    record.cloned, record.built = ["model.p.upstream"], sorted(f"model.p.{t}" for t in ENVIRONMENT)
    record.datasets = [PREFIX + DATASET]
    _write_environment(paths, record, _manifests(project, PREFIX + DATASET))
    return lifecycle.diff(NAME)


# The differences the engines are allowed: their own type names, and the environment's datasets
# carry its prefix on BigQuery (DuckDB's environment is a file with production's names).
AS_DUCKDB = {"INT64": "BIGINT", "STRING": "VARCHAR", f"`{PREFIX}{DATASET}.": f"`{DATASET}."}


def test_bigquery_report_equals_duckdb_report(
    bigquery_emulator: Emulator, minato_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    duckdb_report = _duckdb_report(minato_env.data_dir)
    jobs = record_jobs(monkeypatch)

    bigquery_report = _bigquery_report(bigquery_emulator, monkeypatch)

    normalised = bigquery_report
    for engine_text, duckdb_text in AS_DUCKDB.items():
        normalised = normalised.replace(engine_text, duckdb_text)
    assert normalised == duckdb_report
    keyed = f"| `{PREFIX}{DATASET}.keyed` | 3 → 3 | 1 | 1 | 2 | +added, −dropped, a: INT64→STRING |"
    assert keyed in bigquery_report
    assert "| 1 | `day` | 2026-11-01 | 2026-11-05 |" in bigquery_report
    assert "| 2 | `email` | (PII) | (PII) |" in bigquery_report
    assert f"| `{PREFIX}{DATASET}.bag` | 4 → 3 | 1 | 2 | — | same |" in bigquery_report
    for report in (duckdb_report, bigquery_report):
        assert not [value for value in PII_VALUES if value in report]
    # Every job (the seeding's and the diff's) went through the warehouse: labels, cost guard.
    assert any("INFORMATION_SCHEMA.COLUMNS" in job.sql for job in jobs.jobs)
    assert any("__minato_key" in job.sql for job in jobs.jobs)
    assert all(job.labels.get("minato_env") and job.maximum_bytes_billed for job in jobs.jobs)
