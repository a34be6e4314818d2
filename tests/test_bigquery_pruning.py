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
from pathlib import Path

import dagster as dg
import pytest
import sqlglot
import yaml
from sqlglot import exp

from assets.dbt_models.layers import cleansing_window_vars
from assets.partitions import partition_range_tags
from resources.settings import REPO_ROOT
from resources.warehouse import PartitionWrite
from tests.test_bigquery_warehouse import ORDERS, FakeBigQueryClient, fake_client, warehouse

__all__ = ["fake_client"]  # the fixture, used by name

# The lake tables that grow with every business day; the others (products, CRM contacts,
# Search Console) are read whole by models that keep each row's latest version.
LARGE_LAKE_TABLES = {"orders", "order_items"}
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


def _filters_on(table: exp.Table, column: str) -> bool:
    """Whether the query block reading `table` has a WHERE on `column`."""
    select = table.find_ancestor(exp.Select)
    where = select.args.get("where") if select else None
    return where is not None and any(c.name == column for c in where.find_all(exp.Column))


def _statements(manifest: dict) -> list[tuple[dict, exp.Expression]]:
    nodes = [
        n
        for n in manifest["nodes"].values()
        if n["resource_type"] in ("model", "snapshot", "test") and n.get("compiled_code")
    ]
    assert len(nodes) > 20
    return [(node, sqlglot.parse_one(node["compiled_code"], read="bigquery")) for node in nodes]


def test_every_read_of_a_large_lake_table_filters_on_the_business_day(compiled) -> None:
    _, manifest = compiled
    readers = []
    for node, statement in _statements(manifest):
        for table in statement.find_all(exp.Table):
            if table.db == "lake" and table.name in LARGE_LAKE_TABLES:
                readers.append(node["name"])
                assert _filters_on(table, "_business_day"), f"{node['name']} reads {table.sql()}"
    # Both the window's rows and the versions stored before it are read with a day filter.
    assert sorted(readers) == sorted(
        ["cleansing_orders"] * 2 + ["cleansing_secret_orders"] * 2 + ["cleansing_order_items"] * 2
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
