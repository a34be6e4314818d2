"""The full backfill from the command line: chunked, reconciled, and resumable after a crash
with exactly the result of an uninterrupted run."""

import datetime as dt
import os

import dagster as dg
import duckdb
import pytest

import assets.ingestion.shard_load as shard_load
from assets.ingestion.shard_tables import shard_table_assets
from pipelines.backfill import plan_chunks, run_backfill
from resources.shards import ShardSource
from resources.warehouse import DuckDBWarehouse

TABLES = ("lake.orders", "lake.order_items", "lake.products", "lake.quarantine")


def _resources(minato_env, duckdb_name: str) -> dict:
    return {
        "shards": ShardSource(shards_file=os.environ["MINATO_SHARDS_FILE"]),
        "warehouse": DuckDBWarehouse(path=str(minato_env.data_dir / duckdb_name)),
    }


def _contents(minato_env, duckdb_name: str) -> dict[str, list[tuple]]:
    with duckdb.connect(str(minato_env.data_dir / duckdb_name), read_only=True) as conn:
        contents = {
            table: conn.execute(
                f"SELECT * EXCLUDE (_loaded_at) FROM {table} ORDER BY ALL"
            ).fetchall()
            for table in TABLES
        }
        contents["reconciliation"] = conn.execute(
            "SELECT * EXCLUDE (checked_at) FROM monitoring.ingestion_reconciliation ORDER BY ALL"
        ).fetchall()
    return contents


def test_chunks_are_whole_days_across_every_shard() -> None:
    chunks = plan_chunks(dt.date(2026, 1, 1), dt.date(2026, 1, 5), days_per_run=2)
    assert [(c.first_day, c.last_day) for c in chunks] == [
        (dt.date(2026, 1, 1), dt.date(2026, 1, 2)),
        (dt.date(2026, 1, 3), dt.date(2026, 1, 4)),
        (dt.date(2026, 1, 5), dt.date(2026, 1, 5)),
    ]
    assert chunks[0].keys[0] == "2026-01-01|shard_01"
    assert chunks[0].keys[-1] == "2026-01-02|shard_04"
    assert len(chunks[0].keys) == 8
    with pytest.raises(ValueError, match="empty backfill"):
        plan_chunks(dt.date(2026, 1, 5), dt.date(2026, 1, 1), days_per_run=2)


def test_crashed_backfill_resumes_to_the_uninterrupted_result(
    seeded_demo, minato_env, monkeypatch
) -> None:
    start, end = seeded_demo.first_day, seeded_demo.first_day + dt.timedelta(days=5)
    with dg.DagsterInstance.ephemeral() as instance:
        clean = run_backfill(
            shard_table_assets(), _resources(minato_env, "clean.duckdb"), instance, start, end,
            days_per_run=2,
        )  # fmt: skip
    assert clean.failed is None and len(clean.ran) == 3

    real_load_day = shard_load._PartitionLoader.load_day
    crash_on = start + dt.timedelta(days=3)  # the second day of the second chunk

    def crashing_load_day(self, day, events):
        if day == crash_on:
            raise dg.Failure("simulated crash mid-chunk", allow_retries=False)
        return real_load_day(self, day, events)

    with dg.DagsterInstance.ephemeral() as instance:
        resources = _resources(minato_env, "resumed.duckdb")
        monkeypatch.setattr(shard_load._PartitionLoader, "load_day", crashing_load_day)
        crashed = run_backfill(
            shard_table_assets(), resources, instance, start, end, days_per_run=2
        )
        assert crashed.failed is not None and crashed.failed.first_day == start + dt.timedelta(2)
        assert len(crashed.ran) == 1
        # The crashed chunk left nothing behind: only the first chunk's days are loaded.
        loaded_days = _contents(minato_env, "resumed.duckdb")["reconciliation"]
        assert {row[1] for row in loaded_days} == {start, start + dt.timedelta(days=1)}

        monkeypatch.setattr(shard_load._PartitionLoader, "load_day", real_load_day)
        resumed = run_backfill(
            shard_table_assets(), resources, instance, start, end, days_per_run=2
        )
    assert resumed.failed is None
    assert [c.first_day for c in resumed.skipped] == [start]
    assert len(resumed.ran) == 2

    assert _contents(minato_env, "resumed.duckdb") == _contents(minato_env, "clean.duckdb")
    reconciliation = _contents(minato_env, "resumed.duckdb")["reconciliation"]
    assert len(reconciliation) == 3 * 6 * 4  # lake tables x days x shards
    assert all(row[-1] for row in reconciliation)  # every partition reconciled
