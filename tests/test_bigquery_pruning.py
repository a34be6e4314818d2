"""Partition pruning on BigQuery: every query Minato issues on a large partitioned lake table,
and every query of an incremental model on a partitioned relation, filters on the partition
column. Checked on dbt's SQL compiled for the `bigquery` target (offline: a dummy token, no
cache, so no request is sent) and on the script Minato's own writes send (fake client); and
the window of days the warehouse stage passes to the incremental cleansing models."""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest
import sqlglot
import yaml
from sqlglot import exp

from assets.dbt_models.layers import cleansing_window_vars
from assets.ingestion.lake_tables import SHARD_LAKE_TABLES
from assets.ingestion.origin import LAKE_DAY_COLUMN
from assets.ingestion.shard_load import lake_target
from assets.partitions import partition_range_tags
from resources.settings import REPO_ROOT
from resources.warehouse import PartitionWrite
from resources.warehouse.bigquery import _bigquery_schema
from resources.warehouse.bigquery_layout import PHYSICAL_SEPARATOR
from tests.test_bigquery_warehouse import (
    ORDERS,
    PROJECT,
    FakeBigQueryClient,
    fake_client,
    warehouse,
)

__all__ = ["fake_client"]  # the fixture, used by name

# The lake tables that grow with every client table on every shard: BigQuery refuses queries on
# them without a day filter (`require_partition_filter`, set by `lake_target`).
LARGE_LAKE_TABLES = {table.name for table in SHARD_LAKE_TABLES}
WINDOW = {"min_date": "2026-11-20", "max_date": "2026-11-22"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """dbt's SQL of every model, snapshot and test for the bigquery target and a window of
    days, with each incremental model compiled as its incremental run (the table exists)."""
    folder = tmp_path_factory.mktemp("pruning")
    project = folder / "dbt_project"
    shutil.copytree(
        REPO_ROOT / "dbt_project", project, ignore=shutil.ignore_patterns("target", "logs")
    )
    # Offline, dbt cannot ask whether the table exists; an incremental run is the case to check.
    (project / "macros" / "test_is_incremental.sql").write_text(
        "{% macro is_incremental() %}"
        "{{ return(model.config.materialized == 'incremental') }}"
        "{% endmacro %}\n"
    )
    profile = {
        "type": "bigquery",
        "method": "oauth-secrets",
        "token": "offline",
        "project": "minato-prod",
        "dataset": "lake",
        "location": "asia-northeast1",
        "threads": 2,
        "job_retries": 0,
    }
    (folder / "profiles.yml").write_text(
        yaml.safe_dump({"minato": {"target": "bigquery", "outputs": {"bigquery": profile}}})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINATO_")}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("dbt")), "compile", "--no-populate-cache",
         "--project-dir", str(project), "--profiles-dir", str(folder),
         "--vars", json.dumps(WINDOW)],
        cwd=project, env={**env, "MINATO_ENV": "prod", "DO_NOT_TRACK": "1"},
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    manifest = json.loads((project / "target" / "manifest.json").read_text())
    return project, manifest


_BLOCKS = (exp.Select, exp.Delete, exp.Update, exp.Merge, exp.Insert)


def _filters_on(table: exp.Table, column: str) -> bool:
    """Whether the query block reading (or deleting from) `table` has a WHERE on `column` of
    that table: a condition of a nested subquery or on another table's column does not count."""
    block = table.find_ancestor(*_BLOCKS)
    where = block.args.get("where") if block else None
    return where is not None and any(
        c.name == column
        and c.find_ancestor(*_BLOCKS) is block
        and c.table in ("", table.alias_or_name)
        for c in where.find_all(exp.Column)
    )


def unfiltered_reads(sql: str, requires_filter: Callable[[exp.Table], bool]) -> list[str]:
    """The tables of a BigQuery script that `requires_filter` and that a block reads (or
    deletes from) without a WHERE on the lake's day column: what BigQuery would refuse on a
    table with `require_partition_filter`. An INSERT's target is written, not read."""
    return [
        table.sql(dialect="bigquery")
        for statement in sqlglot.parse(sql, read="bigquery")
        if statement is not None
        for table in statement.find_all(exp.Table)
        if requires_filter(table)
        and not isinstance(table.find_ancestor(*_BLOCKS), exp.Insert)
        and not _filters_on(table, LAKE_DAY_COLUMN)
    ]


def _statements(manifest: dict) -> list[tuple[dict, exp.Expression]]:
    nodes = [
        n
        for n in manifest["nodes"].values()
        if n["resource_type"] in ("model", "snapshot", "test") and n.get("compiled_code")
    ]
    assert len(nodes) > 20
    return [(node, sqlglot.parse_one(node["compiled_code"], read="bigquery")) for node in nodes]


def is_shard_lake_table(table: exp.Table, lake: str = "lake") -> bool:
    """A shard lake table, by its view's name or a physical table's (`orders__shard_02`)."""
    logical = table.name.split(PHYSICAL_SEPARATOR)[0]
    return table.db == lake and logical in LARGE_LAKE_TABLES


def test_every_read_of_a_large_lake_table_filters_on_the_business_day(compiled) -> None:
    _, manifest = compiled
    readers = []
    for node, statement in _statements(manifest):
        if any(is_shard_lake_table(t) for t in statement.find_all(exp.Table)):
            readers.append(node["name"])
        assert unfiltered_reads(node["compiled_code"], is_shard_lake_table) == [], node["name"]
    # The incremental models read the window's rows and the versions stored before it; the
    # latest-version model reads every day, by a literal range BigQuery accepts as a filter.
    assert sorted(readers) == [
        "cleansing_order_items",
        "cleansing_orders",
        "cleansing_products",
        "cleansing_secret_orders",
    ]


def test_a_read_without_a_day_filter_is_found() -> None:
    """The check above can fail: each of these reads would be refused by BigQuery."""
    assert unfiltered_reads(
        "SELECT * FROM lake.orders; "
        "SELECT * FROM lake.orders__shard_02 WHERE _shard = 'shard_02'; "
        "DELETE FROM lake.products__shard_01 WHERE _client_id = '3'; "
        "SELECT 1 FROM lake.order_items AS i WHERE EXISTS ("
        "SELECT 1 FROM lake.orders AS o WHERE o._business_day = '2026-11-20' AND o.x = i.x)",
        is_shard_lake_table,
    ) == [
        "lake.orders",
        "lake.orders__shard_02",
        "lake.products__shard_01",
        "lake.order_items AS i",
    ]
    assert (
        unfiltered_reads(
            "INSERT INTO lake.orders__shard_02 (a) SELECT a FROM lake._staging_orders_1",
            is_shard_lake_table,
        )
        == []
    )


def test_incremental_models_read_partitioned_relations_by_their_partition(compiled) -> None:
    _, manifest = compiled
    partitioned = {
        (n["schema"], n["alias"]): n["config"]["partition_by"]["field"]
        for n in manifest["nodes"].values()
        if n["resource_type"] == "model" and n["config"].get("partition_by")
    }
    incremental = [
        (node, statement)
        for node, statement in _statements(manifest)
        if node["config"].get("materialized") == "incremental"
    ]
    assert sorted(n["name"] for n, _ in incremental) == [
        "cleansing_order_items",
        "cleansing_orders",
        "cleansing_secret_orders",
        "fact_orders",
    ]
    for node, statement in incremental:
        # insert_overwrite replaces exactly the window's days (static partitions).
        assert node["config"]["incremental_strategy"] == "insert_overwrite"
        assert node["config"]["partitions"] == [
            "date('2026-11-20')",
            "date('2026-11-21')",
            "date('2026-11-22')",
        ]
        for table in statement.find_all(exp.Table):
            field = partitioned.get((table.db, table.name))
            if field:
                assert _filters_on(table, field), f"{node['name']} reads {table.sql()}"


def test_minato_writes_filter_the_lake_by_day(fake_client: FakeBigQueryClient) -> None:
    """The job Minato sends to replace a (day, shard) partition deletes and inserts only rows
    of that day in the shard's physical table."""
    warehouse().replace_partitions_atomically(
        [
            PartitionWrite(
                "lake",
                "orders",
                ORDERS,
                ("_business_day", "_shard"),
                (("2026-11-20", "shard_02"),),
                ("_shard",),
            )
        ]
    )
    [query] = fake_client.queries
    statements = sqlglot.parse(query["sql"], read="bigquery")
    mutations = [s for s in statements if isinstance(s, (exp.Delete, exp.Insert))]
    assert mutations
    for statement in mutations:
        assert statement.find(exp.Table).name == "orders__shard_02"
        where = statement.args.get("where") or statement.expression.args.get("where")
        assert any(c.name == "_business_day" for c in where.find_all(exp.Column))


def test_shard_lake_tables_require_a_day_filter_and_older_ones_get_it_once(
    fake_client: FakeBigQueryClient,
) -> None:
    """A shard lake table is created with `require_partition_filter`; one created before the
    option gets it by one metadata update, and later writes update nothing."""
    old = f"{PROJECT}.prod_lake.orders__shard_03"
    fake_client.tables[old] = _bigquery_schema(ORDERS.schema)
    for shard in ("shard_02", "shard_03", "shard_03"):
        target = lake_target("orders", [("2026-11-20", shard)])
        with warehouse().partition_sink([target]) as sink:
            sink.append(target, ORDERS)
    assert fake_client.require_filter == {f"{PROJECT}.prod_lake.orders__shard_02", old}
    assert [c for c in fake_client.calls if c[0] == "update_table"] == [
        ("update_table", "orders__shard_03", ["require_partition_filter"])
    ]
    # Tables without a day filter requirement (quarantine, reconciliation, landed files) stay so.
    warehouse().replace_partitions_atomically(
        [PartitionWrite("lake", "landed", ORDERS, ("_business_day",), (("2026-11-20",),))]
    )
    assert f"{PROJECT}.prod_lake.landed" not in fake_client.require_filter


def test_the_row_count_of_a_filtered_lake_table_comes_from_metadata(
    fake_client: FakeBigQueryClient,
) -> None:
    """`count(*)` is refused on a table that requires a day filter (and would bill a scan of
    the day column): the lake's row count is the sum of its physical tables' metadata."""
    fake_client.views.add(f"{PROJECT}.prod_lake.orders")
    for shard, rows in (("shard_01", 5), ("shard_02", 7)):
        fake_client.tables[f"{PROJECT}.prod_lake.orders__{shard}"] = _bigquery_schema(ORDERS.schema)
        fake_client.num_rows[f"{PROJECT}.prod_lake.orders__{shard}"] = rows
    # Another logical table's physical tables are not counted.
    fake_client.tables[f"{PROJECT}.prod_lake.order_items__shard_01"] = []
    fake_client.num_rows[f"{PROJECT}.prod_lake.order_items__shard_01"] = 100
    assert warehouse().row_count("lake", "orders") == 12
    assert fake_client.queries == []


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        # A day re-run replaces that day and every later one (versions move to earlier days).
        ({"dagster/partition": "2026-11-20"}, {"min_date": "2026-11-20", "max_date": "2026-11-24"}),
        (
            partition_range_tags("2026-11-18", "2026-11-19"),
            {"min_date": "2026-11-18", "max_date": "2026-11-24"},
        ),
        ({"dagster/partition": "2026-11-24"}, {"min_date": "2026-11-24", "max_date": "2026-11-24"}),
        # Runs without a business day rebuild cleansing whole.
        (partition_range_tags("2026-11-20|shard_01", "2026-11-20|shard_24"), {}),
        ({}, {}),
    ],
)  # fmt: skip
def test_the_warehouse_stage_window_runs_from_the_first_day_to_the_latest(
    tags: dict[str, str], expected: dict[str, str]
) -> None:
    days = dg.DailyPartitionsDefinition(
        start_date="2026-11-01", end_date="2026-11-25", timezone="Asia/Tokyo"
    )
    assert cleansing_window_vars(tags, days) == expected
