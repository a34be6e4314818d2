"""The BigQuery path on a real BigQuery emulator (tests/bigquery_emulator.py): setup, the lake
tables' layout, shard ingestion giving the same rows as DuckDB, 24 concurrent shard writers."""

import concurrent.futures
import datetime as dt
import decimal
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
import sqlglot
from click.testing import CliRunner
from sqlglot import exp

from assets.dbt_models.costs import RUN_ID_VARIABLE, costs_by_model
from assets.ingestion.landing_files import landing_file_assets
from assets.ingestion.shard_tables import shard_table_assets
from assets.partitions import day_shard_key, partition_range_tags, shard_names
from pipelines import demo_data
from pipelines.cli import main
from resources.landing import LocalLandingStore
from resources.settings import REPO_ROOT
from resources.shards import ShardSource
from resources.warehouse import BigQueryWarehouse, DuckDBWarehouse, PartitionWrite, Warehouse
from resources.warehouse.datasets import datasets
from tests.bigquery_emulator import (
    Emulator,
    EmulatorWarehouse,
    dbt_project_for,
    emulator_warehouse,
)
from tests.test_bigquery_pruning import LARGE_LAKE_TABLES, is_shard_lake_table, unfiltered_reads

DAY = dt.date(2026, 11, 20)
DBT = REPO_ROOT / "dbt_project"
LOAD_TIME_COLUMNS = {"_loaded_at", "loaded_at", "checked_at"}
TABLES = [
    ("lake", "orders"),
    ("lake", "order_items"),
    ("lake", "products"),
    ("lake", "quarantine"),
    ("monitoring", "ingestion_reconciliation"),
]


def _fingerprint(warehouse: Warehouse, schema: str, table: str) -> tuple[int, str, list[str]]:
    """Rows, a checksum of the sorted rows (load times left out) and the columns compared."""
    rows = warehouse.query_arrow(f"SELECT * FROM {warehouse.qualified(schema, table)}")
    columns = sorted(c for c in rows.column_names if c not in LOAD_TIME_COLUMNS)
    lines = sorted(repr(tuple(row[c] for c in columns)) for row in rows.to_pylist())
    return len(lines), hashlib.md5("\n".join(lines).encode()).hexdigest(), columns


def test_setup_creates_the_catalog_and_the_lake_tables_idempotently(
    bigquery_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = bigquery_emulator.client()
    monkeypatch.setattr(BigQueryWarehouse, "_client", lambda self: client)
    monkeypatch.setenv("MINATO_BIGQUERY_PROJECT", bigquery_emulator.project)
    monkeypatch.setenv("MINATO_BIGQUERY_DATASET_PREFIX", "setup_")
    monkeypatch.setenv("MINATO_ENV", "staging")

    first = CliRunner().invoke(main, ["bigquery", "setup"], catch_exceptions=False)
    again = CliRunner().invoke(main, ["bigquery", "setup"], catch_exceptions=False)

    assert first.exit_code == again.exit_code == 0
    assert first.output == again.output
    for spec in datasets():
        dataset = client.get_dataset(f"{bigquery_emulator.project}.setup_{spec.name}")
        assert dataset.description == spec.description
        assert dataset.location == "asia-northeast1"
        assert dataset.labels == {
            "minato_layer": spec.layer,
            "minato_pii": str(spec.pii).lower(),
            "minato_env": "staging",
        }
        assert f"dataset {dataset.project}.setup_{spec.name}: ready" in first.output
    lake = f"{bigquery_emulator.project}.setup_lake"
    for name in ("orders", "order_items", "products"):
        # One table per shard of shards.yaml, read through a view of the lake table's name.
        for shard in shard_names():
            table = client.get_table(f"{lake}.{name}__{shard}")
            assert table.time_partitioning.field == "_business_day"
            assert table.time_partitioning.type_ == "DAY"
            assert table.clustering_fields == ["_shard", "_client_id"]
        view = client.get_table(f"{lake}.{name}")
        assert view.table_type == "VIEW"
        # (The emulator does not return a view's query: read through it instead.)
        [[rows]] = client.query(f"SELECT count(*) FROM `{lake}.{name}`").result()
        assert rows == 0
        assert f"view `{lake}.{name}` over {len(shard_names())} shard table(s): ready" in (
            first.output
        )


def test_setup_refuses_to_run_without_a_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MINATO_BIGQUERY_PROJECT", raising=False)

    result = CliRunner().invoke(main, ["bigquery", "setup"])

    assert result.exit_code == 2
    assert "MINATO_BIGQUERY_PROJECT is not set" in result.output


def test_shard_ingestion_on_bigquery_equals_duckdb(
    bigquery_emulator: Emulator, seeded_demo, minato_env, instance
) -> None:
    """The same partitions through the real assets into DuckDB and into the emulator (its first
    write creating the datasets and tables): per table, the same rows and checksums. One
    partition is written twice: re-runs replace, never duplicate."""
    duck = DuckDBWarehouse(path=str(minato_env.duckdb_path))
    bigquery = emulator_warehouse(bigquery_emulator, dataset_prefix="graph_")
    keys = [
        day_shard_key(DAY, "shard_01"),
        day_shard_key(DAY, "shard_02"),
        day_shard_key(DAY - dt.timedelta(days=1), "shard_01"),
        day_shard_key(seeded_demo.first_day, "shard_03"),  # the products are created then
        day_shard_key(DAY, "shard_01"),
    ]
    for warehouse in (duck, bigquery):
        for key in keys:
            result = dg.materialize(
                shard_table_assets(),
                partition_key=key,
                resources={"warehouse": warehouse, "shards": ShardSource()},
                instance=instance,
            )
            assert result.success

    compared = {t: _fingerprint(bigquery, *t) for t in TABLES}
    assert compared == {t: _fingerprint(duck, *t) for t in TABLES}
    rows = {table: count for (_, table), (count, _, _) in compared.items()}
    assert rows["orders"] > 0 and rows["order_items"] > 0 and rows["products"] > 0


def _shard_rows(shard: str, day: dt.date) -> pa.Table:
    return pa.table(
        {
            "order_id": pa.array([f"{shard}-{i}" for i in range(3)]),
            "_business_day": pa.array([day] * 3, pa.date32()),
            "_shard": pa.array([shard] * 3),
            "_client_id": pa.array(["1", "2", "3"]),
        }
    )


def test_24_shards_write_one_day_of_one_table_at_once(bigquery_emulator: Emulator) -> None:
    """The daily schedule's shape: 24 shard runs of one day replace their partitions of the same
    lake table concurrently. All succeed, each partition holds exactly its shard's rows, each
    in its shard's own physical table (no two runs' transactions mutate one table)."""
    warehouse = emulator_warehouse(bigquery_emulator, dataset_prefix="parallel_")
    shards = [f"shard_{n:02d}" for n in range(1, 25)]

    def write(shard: str) -> None:
        warehouse.replace_partitions_atomically(
            [
                PartitionWrite(
                    "lake",
                    "orders",
                    _shard_rows(shard, DAY),
                    ("_business_day", "_shard"),
                    ((DAY, shard),),
                    ("_shard",),
                )
            ]
        )

    for _ in range(2):  # the second round replaces what the first wrote
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(shards)) as pool:
            list(pool.map(write, shards))

    counts = warehouse.query_arrow(
        f"SELECT _shard, count(*) AS n FROM {warehouse.qualified('lake', 'orders')} "
        f"WHERE _business_day = '{DAY}' GROUP BY _shard ORDER BY _shard"
    ).to_pylist()
    assert counts == [{"_shard": shard, "n": 3} for shard in shards]
    for shard in (shards[0], shards[-1]):
        physical = warehouse.qualified("lake", f"orders__{shard}")
        assert warehouse.query_arrow(f"SELECT DISTINCT _shard FROM {physical}").to_pylist() == [
            {"_shard": shard}
        ]


def _comparable(value: object) -> object:
    """One spelling per number across engines: DuckDB's HUGEINT sums arrive as decimals where
    BigQuery's INT64 arrive as ints; float sums differ in the last bits."""
    if isinstance(value, decimal.Decimal | float | int) and not isinstance(value, bool):
        return round(float(value), 6)
    return value


def _model_fingerprint(rows: pa.Table) -> tuple[int, str]:
    columns = sorted(c for c in rows.column_names if c not in LOAD_TIME_COLUMNS)
    lines = sorted(repr(tuple(_comparable(row[c]) for c in columns)) for row in rows.to_pylist())
    return len(lines), hashlib.md5("\n".join(lines).encode()).hexdigest()


def _dbt(args: list[str], folder: Path, env: dict[str, str]) -> None:
    result = subprocess.run(
        [
            str(REPO_ROOT / ".venv" / "bin" / "dbt"),
            "build",
            *args,
            "--target-path",
            str(folder / "target"),
            "--log-path",
            str(folder / "logs"),
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-5000:]


def test_graph_on_bigquery_equals_duckdb(
    bigquery_emulator: Emulator, seeded_demo, minato_env, instance, tmp_path: Path
) -> None:
    """Ingestion (shards and landed files) and `dbt build` on the `bigquery` target against the
    emulator give every dbt model the same rows and checksums as the DuckDB run."""
    prefix = "dbt_"
    duck = DuckDBWarehouse(path=str(minato_env.duckdb_path))
    bigquery = emulator_warehouse(bigquery_emulator, dataset_prefix=prefix)
    first, last = seeded_demo.last_day - dt.timedelta(days=6), seeded_demo.last_day
    shards = shard_names()
    for warehouse in (duck, bigquery):
        resources = {
            "warehouse": warehouse,
            "shards": ShardSource(),
            "landing": LocalLandingStore(),
        }
        for assets, tags in (
            (
                shard_table_assets(),
                partition_range_tags(
                    str(day_shard_key(first, shards[0])), str(day_shard_key(last, shards[-1]))
                ),
            ),
            (
                [a for a in landing_file_assets() if a.partitions_def],
                partition_range_tags(str(first), str(last)),
            ),
            ([a for a in landing_file_assets() if not a.partitions_def], {}),
        ):
            assert dg.materialize(assets, resources=resources, instance=instance, tags=tags).success

    _dbt(
        ["--project-dir", str(DBT), "--profiles-dir", str(DBT), "--target", "duckdb"],
        tmp_path / "duckdb",
        {},
    )
    emulated = dbt_project_for(
        bigquery_emulator,
        prefix,
        tmp_path / "bigquery",
        list(dict.fromkeys(demo_data.SHARD_TIMEZONES.values())),
    )
    _dbt(
        emulated,
        tmp_path / "bigquery",
        {
            "MINATO_BIGQUERY_DATASET_PREFIX": prefix,
            "MINATO_BIGQUERY_PROJECT": bigquery_emulator.project,
            RUN_ID_VARIABLE: "0f9e8d7c-emulated",
        },
    )

    models = duck.query_arrow(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema NOT IN ('lake', 'monitoring', 'main') ORDER BY 1, 2"
    ).to_pylist()
    assert len(models) > 10
    compared = {
        (m["table_schema"], m["table_name"]): _model_fingerprint(
            bigquery.query_arrow(
                f"SELECT * FROM {bigquery.qualified(m['table_schema'], m['table_name'])}"
            )
        )
        for m in models
    }
    expected = {
        (m["table_schema"], m["table_name"]): _model_fingerprint(
            duck.query_arrow(f"SELECT * FROM {m['table_schema']}.{m['table_name']}")
        )
        for m in models
    }
    assert compared == expected

    # dbt's queries carry the labels as their JSON query comment, which dbt-bigquery turns into
    # job labels (`job-label: true`; the emulator keeps no labels of dbt's jobs to read back).
    log = (tmp_path / "bigquery" / "logs" / "dbt.log").read_text()
    assert (
        '/* {"minato_env": "dev", "dagster_run_id": "0f9e8d7c-emulated", '
        '"minato_asset": "cleansing/cleansing_orders"} */'
    ) in log
    # Each model's job, as dbt-bigquery reports it in run_results.json, reaches its
    # materialization's metadata (the emulator reports 0 bytes processed and no bytes billed).
    run_results = json.loads((tmp_path / "bigquery" / "target" / "run_results.json").read_text())
    costs = costs_by_model(run_results)
    built = [r["unique_id"] for r in run_results["results"] if r["unique_id"].startswith("model.")]
    assert len(built) > 10
    for unique_id in built:
        assert costs[unique_id]["bigquery_bytes_processed"] == 0
        assert costs[unique_id]["bigquery_job_id"]

    _incremental_cleansing_equals_rebuild(bigquery, duck, emulated, tmp_path, first, compared)
    _every_lake_query_names_its_days(bigquery_emulator, f"{prefix}lake")


def _every_lake_query_names_its_days(emulator: Emulator, lake: str) -> None:
    """Every job that ingestion and dbt (full build and incremental run) sent to the shard lake
    tables filters on the day: BigQuery refuses any other on a table with
    `require_partition_filter`. The emulator neither enforces the option nor reads it where
    BigQuery's API has it (the table's `requirePartitionFilter`; tests/test_bigquery_pruning.py
    checks the request), so its job history is checked instead."""
    client = emulator.client()
    jobs = client.list_jobs(max_results=100_000, page_size=100_000)
    # This test's lake only (other tests share the emulator, with other dataset prefixes).
    queries = [job.query for job in jobs if job.job_type == "query" and lake in job.query]
    touching = [
        sql
        for sql in queries
        if any(is_shard_lake_table(t, lake) for s in sqlglot.parse(sql, read="bigquery") if s
               for t in s.find_all(exp.Table))
    ]  # fmt: skip
    # Writes (one script per shard run) and dbt's builds of the cleansing models.
    assert sum("BEGIN TRANSACTION" in sql for sql in touching) >= len(LARGE_LAKE_TABLES)
    assert sum("1900-01-01" in sql for sql in touching) >= 4  # full builds: every day
    # Incremental runs: the window's rows go to a temporary table, then one MERGE.
    assert sum("__dbt_tmp" in sql for sql in touching) >= 3
    refused = {
        sql[:200]: unfiltered_reads(sql, lambda t: is_shard_lake_table(t, lake)) for sql in touching
    }
    assert {sql: tables for sql, tables in refused.items() if tables} == {}


INCREMENTAL_CLEANSING = ["cleansing_orders", "cleansing_order_items", "cleansing_secret_orders"]


def _incremental_cleansing_equals_rebuild(
    bigquery: BigQueryWarehouse,
    duck: DuckDBWarehouse,
    emulated: list[str],
    tmp_path: Path,
    first: dt.date,
    rebuilt: dict[tuple[str, str], tuple[int, str]],
) -> None:
    """An incremental run (`insert_overwrite` of a window of days) after the window's days were
    emptied gives exactly the full rebuild's rows, versions stored before the window included."""
    start, end = first + dt.timedelta(days=3), first + dt.timedelta(days=6)
    # The window holds versions also stored on an earlier day (kept there by a full rebuild):
    # without the exclusion they would come back twice.
    stored_before = duck.query_arrow(
        "SELECT count(*) AS n FROM lake.orders AS w WHERE w._business_day >= "
        f"DATE '{start}' AND EXISTS (SELECT 1 FROM lake.orders AS e WHERE e._business_day < "
        f"DATE '{start}' AND e._shard = w._shard AND e._client_id = w._client_id "
        "AND e.order_id = w.order_id AND e.updated_at = w.updated_at)"
    ).to_pylist()[0]["n"]
    assert stored_before > 0
    tables = [
        ("cleansing_secret" if m.startswith("cleansing_secret_") else "cleansing", m)
        for m in INCREMENTAL_CLEANSING
    ]
    for schema, table in tables:
        bigquery.execute(
            f"DELETE FROM {bigquery.qualified(schema, table)} WHERE business_day >= '{start}'"
        )
    _dbt(
        [
            *emulated,
            "--select",
            " ".join(INCREMENTAL_CLEANSING),
            "--vars",
            json.dumps({"min_date": start.isoformat(), "max_date": end.isoformat()}),
        ],
        tmp_path / "bigquery",
        {"MINATO_BIGQUERY_DATASET_PREFIX": "dbt_", "MINATO_BIGQUERY_PROJECT": bigquery.project},
    )
    run = tmp_path / "bigquery" / "target" / "run" / "minato" / "models" / "warehouse"
    for schema, table in tables:
        # Really the incremental run: a MERGE replacing the window's partitions.
        sql = (run / schema / f"{table}.sql").read_text().lower()
        assert "merge into" in sql and f"date('{start}')" in sql and f"date('{end}')" in sql
    for schema, table in tables:
        rows = bigquery.query_arrow(f"SELECT * FROM {bigquery.qualified(schema, table)}")
        assert _model_fingerprint(rows) == rebuilt[(schema, table)], table


def test_a_column_drifted_in_on_one_shard_shows_in_the_view_for_every_shard(
    bigquery_emulator: Emulator,
) -> None:
    """shard_01 and shard_02 of a day, then shard_02 again with a new INT column, then a new
    shard_03 without it: the view `lake.orders` has the column, with shard_02's values and NULL
    for the other shards, and every row of the three.

    The emulator does not resolve a wildcard's schema as BigQuery does (from the newest table,
    hiding what it lacks): it unions the tables by position and fails when their columns
    differ. So before every physical table got the union of the columns this read failed
    outright (it does without the fix); the exact metadata requests that keep the union are
    asserted on the fake client (tests/test_bigquery_warehouse.py)."""
    warehouse = _ColumnsAfterAlterWarehouse(
        project=bigquery_emulator.project,
        rest_url=bigquery_emulator.rest_url,
        dataset_prefix="drift_",
    )

    def write(shard: str, rows: pa.Table) -> None:
        warehouse.replace_partitions_atomically(
            [
                PartitionWrite(
                    "lake",
                    "orders",
                    rows,
                    ("_business_day", "_shard"),
                    ((DAY, shard),),
                    ("_shard",),
                )
            ]
        )

    write("shard_01", _shard_rows("shard_01", DAY))
    write("shard_02", _shard_rows("shard_02", DAY))
    points = pa.array([10, 20, None], pa.int64())
    write("shard_02", _shard_rows("shard_02", DAY).append_column("points", points))
    write("shard_03", _shard_rows("shard_03", DAY))

    rows = warehouse.query_arrow(
        f"SELECT order_id, _shard, points FROM {warehouse.qualified('lake', 'orders')} "
        "ORDER BY order_id"
    ).to_pylist()
    assert rows == [
        {"order_id": f"{shard}-{i}", "_shard": shard, "points": value}
        for shard, values in (
            ("shard_01", [None] * 3),
            ("shard_02", [10, 20, None]),
            ("shard_03", [None] * 3),
        )
        for i, value in enumerate(values)
    ]


class _ColumnsAfterAlterWarehouse(EmulatorWarehouse):
    """The emulator's tables.get does not show a column `ALTER TABLE … ADD COLUMN` added (the
    table has it: queries read it). Here a table's columns are those a query of it returns."""

    def _client(self) -> Any:
        client = super()._client()
        get_table = client.get_table

        def get_table_with_its_columns(table_id: str) -> Any:
            table = get_table(table_id)
            if table.table_type == "TABLE":
                table.schema = client.query(f"SELECT * FROM `{table_id}` LIMIT 0").result().schema
            return table

        client.get_table = get_table_with_its_columns
        return client
