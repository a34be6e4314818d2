"""Shards disagree on time: JST and UTC wall-clock text must land on the same JST business day
and become the same JST DATETIME in `cleansing`."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pytest

from assets.ingestion.shard_load import business_day_bounds
from assets.ingestion.shard_tables import shard_table_assets
from pipelines import demo_data
from pipelines.schedules import daily_ingestion_schedule, previous_business_day
from resources.settings import REPO_ROOT
from resources.shards import ShardSource
from resources.warehouse import DuckDBWarehouse

JST = ZoneInfo("Asia/Tokyo")
UTC = dt.UTC
ORDERS_ASSET = next(a for a in shard_table_assets() if a.key == dg.AssetKey(["lake", "orders"]))
ALL_SHARDS = ["shard_01", "shard_02", "shard_03", "shard_04"]


def order(order_id: int, updated_at: str, **changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "order_id": order_id,
        "customer_name": "佐藤 太郎",
        "customer_email": f"sato.{order_id:05d}@example.jp",
        "customer_phone": None,
        "status": "shipped",
        "total_amount": "1280",
        "shipping_prefecture": "東京都",
        "note": None,
        "ordered_at": updated_at,
        "updated_at": updated_at,
    }
    row.update(changes)
    return row


def write_shards_file(tmp_path: Path, shards: dict[str, tuple[str, list[dict]]]) -> ShardSource:
    """SQLite shards `{name: (timezone, orders_101 rows)}` and a shards YAML listing them."""
    lines = ["shards:"]
    for name, (timezone, rows) in shards.items():
        path = tmp_path / f"{name}.sqlite"
        demo_data.write_shard(f"sqlite:///{path}", {"orders_101": rows})
        lines += [f"  - name: {name}", f"    url: sqlite:///{path}", f"    timezone: {timezone}"]
    shards_file = tmp_path / "shards.yaml"
    shards_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ShardSource(shards_file=str(shards_file))


def ingest(source: ShardSource, warehouse: DuckDBWarehouse, key: str, instance) -> None:
    result = dg.materialize(
        [ORDERS_ASSET],
        resources={"shards": source, "warehouse": warehouse},
        partition_key=key,
        instance=instance,
    )
    assert result.success


def lake_orders(warehouse: DuckDBWarehouse) -> list[tuple[str, str, int]]:
    rows = warehouse.query_arrow(
        "SELECT strftime(_business_day, '%Y-%m-%d') AS day, _shard, CAST(order_id AS INTEGER) "
        "AS order_id FROM lake.orders ORDER BY day, _shard, order_id"
    )
    return [tuple(r.values()) for r in rows.to_pylist()]


def test_utc_shard_late_evening_lands_on_next_jst_day(
    minato_env, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    source = write_shards_file(
        tmp_path,
        {
            "shard_02": (
                "UTC",
                [
                    order(1, "2026-01-01 23:30:00"),  # 08:30 JST on 2 January
                    order(2, "2026-01-01 14:59:59"),  # 23:59:59 JST on 1 January
                    order(3, "2026-01-01 15:00:00"),  # 00:00:00 JST on 2 January
                    order(4, "2025-12-31 15:00:00"),  # 00:00:00 JST on 1 January
                    order(5, "2026-01-02 15:00:00"),  # 00:00:00 JST on 3 January
                ],
            )
        },
    )
    warehouse = DuckDBWarehouse(path=str(minato_env.duckdb_path))

    ingest(source, warehouse, "2026-01-01|shard_02", instance)
    ingest(source, warehouse, "2026-01-02|shard_02", instance)

    assert lake_orders(warehouse) == [
        ("2026-01-01", "shard_02", 2),
        ("2026-01-01", "shard_02", 4),
        ("2026-01-02", "shard_02", 1),
        # Changed in the 30 minutes before 2 January began: read again by the overlap window
        # (a transaction that committed late is not missed); cleansing keeps one copy.
        ("2026-01-02", "shard_02", 2),
        ("2026-01-02", "shard_02", 3),
    ]
    source_tz = warehouse.query_arrow("SELECT DISTINCT _source_tz FROM lake.orders")
    assert source_tz.column(0).to_pylist() == ["UTC"]


def test_jst_shard_uses_its_own_wall_clock(
    minato_env, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    source = write_shards_file(
        tmp_path,
        {
            "shard_01": (
                "Asia/Tokyo",
                [
                    order(1, "2026-01-01 23:59:59"),
                    order(2, "2026-01-02 00:00:00"),
                    order(3, "2026-01-02 08:30:00"),
                    order(4, "2026-01-03 00:00:00"),
                ],
            )
        },
    )
    warehouse = DuckDBWarehouse(path=str(minato_env.duckdb_path))

    ingest(source, warehouse, "2026-01-02|shard_01", instance)

    assert lake_orders(warehouse) == [
        ("2026-01-02", "shard_01", 1),  # one second before the day: inside the overlap window
        ("2026-01-02", "shard_01", 2),
        ("2026-01-02", "shard_01", 3),
    ]


def run_dbt(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    dbt = str(Path(sys.executable).with_name("dbt"))
    return subprocess.run(
        [
            dbt,
            *args,
            "--project-dir",
            str(REPO_ROOT / "dbt_project"),
            "--profiles-dir",
            str(REPO_ROOT / "dbt_project"),
            "--target-path",
            str(tmp_path / "dbt_target"),
            "--log-path",
            str(tmp_path / "dbt_logs"),
        ],
        cwd=REPO_ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_same_instant_in_jst_and_utc_shards_cleanses_to_the_same_datetime(
    minato_env, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    source = write_shards_file(
        tmp_path,
        {
            "shard_01": (
                "Asia/Tokyo",
                [order(7, "2026-01-02 08:30:00", ordered_at="2026-01-02 08:00:00")],
            ),
            "shard_02": (
                "UTC",
                [order(7, "2026-01-01 23:30:00", ordered_at="2026-01-01T23:00:00.250")],
            ),
        },
    )
    warehouse = DuckDBWarehouse(path=str(minato_env.duckdb_path))
    ingest(source, warehouse, "2026-01-02|shard_01", instance)
    ingest(source, warehouse, "2026-01-02|shard_02", instance)

    completed = run_dbt(tmp_path, "build", "--select", "cleansing_orders")
    assert completed.returncode == 0, completed.stdout + completed.stderr

    with duckdb.connect(str(minato_env.duckdb_path), read_only=True) as conn:
        types = dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'cleansing' AND table_name = 'cleansing_orders'"
            ).fetchall()
        )
        rows = conn.execute(
            "SELECT shard, order_id, ordered_at, updated_at, business_day "
            "FROM cleansing.cleansing_orders ORDER BY shard"
        ).fetchall()
    # DATETIME: a naive JST wall clock, not an instant that a client would shift again.
    assert types["updated_at"] == "TIMESTAMP"
    assert types["ordered_at"] == "TIMESTAMP"
    assert rows == [
        (
            "shard_01",
            7,
            dt.datetime(2026, 1, 2, 8, 0),
            dt.datetime(2026, 1, 2, 8, 30),
            dt.date(2026, 1, 2),
        ),
        (
            "shard_02",
            7,
            dt.datetime(2026, 1, 2, 8, 0),
            dt.datetime(2026, 1, 2, 8, 30),
            dt.date(2026, 1, 2),
        ),
    ]


@pytest.mark.parametrize(
    ("scheduled", "expected"),
    [
        (dt.datetime(2026, 1, 2, 1, 0, tzinfo=JST), dt.date(2026, 1, 1)),
        # The same tick expressed in UTC is still 2 January in Tokyo.
        (dt.datetime(2026, 1, 1, 16, 0, tzinfo=UTC), dt.date(2026, 1, 1)),
        # 23:30 UTC on 1 January is 08:30 JST on 2 January: the previous JST day is 1 January,
        # not 31 December (what a UTC-based date would give).
        (dt.datetime(2026, 1, 1, 23, 30, tzinfo=UTC), dt.date(2026, 1, 1)),
        (dt.datetime(2026, 1, 1, 0, 0, tzinfo=JST), dt.date(2025, 12, 31)),
        (dt.datetime(2026, 3, 1, 1, 0, tzinfo=JST), dt.date(2026, 2, 28)),
    ],
)
def test_previous_business_day(scheduled: dt.datetime, expected: dt.date) -> None:
    assert previous_business_day(scheduled) == expected


def test_daily_schedule_requests_one_run_per_shard_for_the_previous_jst_day() -> None:
    assert daily_ingestion_schedule.cron_schedule == "0 1 * * *"
    assert daily_ingestion_schedule.execution_timezone == "Asia/Tokyo"
    context = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(2026, 1, 2, 1, 0, tzinfo=JST)
    )

    requests = daily_ingestion_schedule(context)

    assert [str(r.partition_key) for r in requests] == [f"2026-01-01|{s}" for s in ALL_SHARDS]
    assert [r.run_key for r in requests] == [f"2026-01-01|{s}" for s in ALL_SHARDS]
    assert [r.tags.get("minato/shard") for r in requests] == ALL_SHARDS
    assert [r.partition_key.keys_by_dimension for r in requests] == [
        {"business_day": "2026-01-01", "shard": s} for s in ALL_SHARDS
    ]


def test_daily_schedule_with_utc_tick_uses_the_jst_day() -> None:
    # 01:00 JST on 2 January is 16:00 UTC on 1 January.
    context = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(2026, 1, 1, 16, 0, tzinfo=UTC)
    )

    requests = daily_ingestion_schedule(context)

    assert {str(r.partition_key) for r in requests} == {f"2026-01-01|{s}" for s in ALL_SHARDS}


@pytest.mark.parametrize(
    "day", [dt.date(2026, 1, 2), dt.date(2026, 3, 8), dt.date(2026, 11, 1), dt.date(2024, 2, 29)]
)
def test_business_day_bounds_are_jst_midnights(day: dt.date) -> None:
    start, end = business_day_bounds(day)

    assert start.tzinfo is not None and end.tzinfo is not None
    assert start.astimezone(JST) == dt.datetime.combine(day, dt.time(0), JST)
    # JST has no daylight-saving time: every business day is 24 hours, starting 15:00 UTC.
    assert end - start == dt.timedelta(hours=24)
    assert start.astimezone(UTC) == dt.datetime.combine(
        day - dt.timedelta(days=1), dt.time(15), UTC
    )
    assert end.astimezone(JST).date() == day + dt.timedelta(days=1)
