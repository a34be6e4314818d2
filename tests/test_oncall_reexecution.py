"""On-call: one (business day, shard) partition fails; re-executing exactly that partition makes
the warehouse identical to a clean run, with nothing half-written in between."""

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb

from assets.partitions import day_shard_key, partition_range_tags, shard_names
from pipelines.definitions import defs

TABLES = {
    "lake": ["orders", "order_items", "products", "quarantine"],
    "cleansing": ["cleansing_orders", "cleansing_order_items", "cleansing_products"],
    "fact": ["fact_orders"],
}
LOAD_TIME_COLUMNS = {"_loaded_at", "loaded_at"}


def fingerprint(path: Path) -> dict[str, tuple[int, int, str]]:
    """Per table: rows, distinct rows, and a checksum of the sorted rows (load times excluded)."""
    result = {}
    with duckdb.connect(str(path), read_only=True) as conn:
        for schema, tables in TABLES.items():
            for table in tables:
                columns = [
                    r[0]
                    for r in conn.execute(f"DESCRIBE {schema}.{table}").fetchall()
                    if r[0] not in LOAD_TIME_COLUMNS
                ]
                select = ", ".join(columns)
                result[f"{schema}.{table}"] = conn.execute(
                    f"SELECT count(*), count(DISTINCT t), "
                    f"md5(string_agg(CAST(t AS VARCHAR), '|' ORDER BY CAST(t AS VARCHAR))) "
                    f"FROM (SELECT {select} FROM {schema}.{table}) AS t"
                ).fetchall()[0]
    return result


def _ingest(instance: dg.DagsterInstance, key: dg.MultiPartitionKey) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("ingest_shards")
    return job.execute_in_process(instance=instance, partition_key=key, raise_on_error=False)


def _warehouse_stage(instance: dg.DagsterInstance, first: dt.date, last: dt.date) -> None:
    job = defs.resolve_job_def("warehouse_daily")
    result = job.execute_in_process(
        instance=instance,
        tags=partition_range_tags(first.isoformat(), last.isoformat()),
        # Only the warehouse layers matter here; the landing exports are not ingested.
        asset_selection=[
            dg.AssetKey(["cleansing", "cleansing_orders"]),
            dg.AssetKey(["cleansing", "cleansing_order_items"]),
            dg.AssetKey(["cleansing", "cleansing_products"]),
            dg.AssetKey(["fact", "fact_orders"]),
        ],
    )
    assert result.success


def test_reexecuting_the_failed_partition_equals_a_clean_run(seeded_demo, minato_env, instance):
    days = [seeded_demo.last_day - dt.timedelta(days=n) for n in (2, 1, 0)]
    keys = [day_shard_key(day, shard) for day in days for shard in shard_names()]

    # A clean run: every partition succeeds.
    for key in keys:
        assert _ingest(instance, key).success
    _warehouse_stage(instance, days[0], days[-1])
    clean = fingerprint(minato_env.duckdb_path)
    assert clean["lake.orders"][0] > 0

    # The same days again into a fresh warehouse, with shard_02 unreachable for one day only.
    minato_env.duckdb_path.unlink()
    broken = day_shard_key(days[1], "shard_02")
    shard_file = minato_env.data_dir / "shards" / "shard_02.sqlite"
    failed_runs = []
    for key in keys:
        if key == broken:
            shard_file.rename(shard_file.with_suffix(".away"))
            result = _ingest(instance, key)
            shard_file.with_suffix(".away").rename(shard_file)
            assert not result.success
            failed_runs.append(result.run_id)
        else:
            assert _ingest(instance, key).success

    # The failure names the shard and leaves nothing of that partition behind.
    failure = next(
        e
        for e in instance.all_logs(failed_runs[0])
        if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_FAILURE
    )
    assert "shard_02" in failure.dagster_event.step_failure_data.error.message
    with duckdb.connect(str(minato_env.duckdb_path), read_only=True) as conn:
        missing = conn.execute(
            "SELECT count(*) FROM lake.orders WHERE _business_day = ? AND _shard = 'shard_02'",
            [days[1]],
        ).fetchall()[0][0]
    assert missing == 0
    assert fingerprint_without_warehouse_stage_differs(minato_env.duckdb_path, clean)

    # On-call re-executes exactly the failed partition; then the downstream stage.
    assert instance.get_run_by_id(failed_runs[0]).tags["dagster/partition"] == str(broken)
    assert _ingest(instance, broken).success
    _warehouse_stage(instance, days[0], days[-1])
    assert fingerprint(minato_env.duckdb_path) == clean
    # The lake mirrors the source, exact duplicates included; from cleansing on, none remain.
    for table, (rows, distinct, _) in clean.items():
        if not table.startswith("lake."):
            assert rows == distinct, f"{table} holds duplicate rows"


def fingerprint_without_warehouse_stage_differs(path: Path, clean: dict) -> bool:
    with duckdb.connect(str(path), read_only=True) as conn:
        rows = conn.execute("SELECT count(*) FROM lake.orders").fetchall()[0][0]
    return rows < clean["lake.orders"][0]
