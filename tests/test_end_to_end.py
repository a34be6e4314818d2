"""The whole graph on the embedded default: shards and exports -> lake -> dbt -> anomalies ->
CRM sync, through a real Dagster instance, real dbt and DuckDB."""

import datetime as dt
import sqlite3
from zoneinfo import ZoneInfo

import duckdb
import pytest

from assets.ingestion.lake_tables import SHARD_LAKE_TABLES
from pipelines import demo, demo_data
from resources.warehouse import DuckDBWarehouse


@pytest.fixture
def two_windows(seeded_demo, instance, minato_env):
    """The demo's two steps: the history, then the last 7 business days on top of it."""
    history_end = seeded_demo.last_day - dt.timedelta(days=demo.RECENT_DAYS)
    first = demo.run_window(instance, seeded_demo.first_day, history_end)
    with duckdb.connect(str(minato_env.duckdb_path), read_only=True) as conn:
        fact_history = conn.sql(
            "SELECT business_day, count(*), max(loaded_at) FROM fact.fact_orders "
            "GROUP BY 1 ORDER BY 1"
        ).fetchall()
    second = demo.run_window(instance, history_end + dt.timedelta(days=1), seeded_demo.last_day)
    return first, second, fact_history


def test_whole_graph(two_windows, seeded_demo, minato_env, instance) -> None:
    first, second, fact_history = two_windows
    conn = duckdb.connect(str(minato_env.duckdb_path), read_only=True)

    def scalar(sql: str):
        return conn.execute(sql).fetchall()[0][0]

    # Ingestion: every source row is loaded or quarantined, never dropped.
    source_orders = _source_rows_in_windows(seeded_demo, "orders_")
    lake_orders = scalar("SELECT count(*) FROM lake.orders")
    ledger = conn.execute(
        "SELECT sum(source_rows), sum(quarantined_rows), bool_and(reconciled) "
        "FROM monitoring.ingestion_reconciliation WHERE logical_table = 'orders'"
    ).fetchall()[0]
    assert ledger == (source_orders, source_orders - lake_orders, True)
    reasons = conn.sql(
        "SELECT reason, count(DISTINCT _shard) FROM lake.quarantine GROUP BY 1 ORDER BY 1"
    ).fetchall()
    shards = len(demo_data.SHARD_TIMEZONES)
    assert reasons == [
        # The shards' exact duplicate rows (tables without a primary key): newest kept.
        ("duplicate key (a newer or identical version of this row was loaded)", shards),
        ("unparseable datetime: '2026-02-30 25:61:00'", shards),  # one per shard
    ]

    # Cleansing: deduplicated, typed, PII only in cleansing_secret.
    distinct_versions = scalar(
        "SELECT count(*) FROM (SELECT DISTINCT _shard, _client_id, order_id, updated_at "
        "FROM lake.orders)"
    )
    assert scalar("SELECT count(*) FROM cleansing.cleansing_orders") == distinct_versions
    assert distinct_versions < lake_orders  # versions read twice by the overlap window
    cleansing_columns = {r[0] for r in conn.sql("DESCRIBE cleansing.cleansing_orders").fetchall()}
    assert not {"customer_name", "customer_email", "customer_phone"} & cleansing_columns
    assert (
        scalar(
            "SELECT count(*) FROM cleansing_secret.cleansing_secret_orders "
            "WHERE customer_email LIKE '%@example.jp'"
        )
        > 0
    )
    assert scalar("SELECT typeof(ordered_at) FROM cleansing.cleansing_orders LIMIT 1") == (
        "TIMESTAMP"
    )
    assert scalar("SELECT typeof(total_amount_jpy) FROM cleansing.cleansing_orders LIMIT 1") == (
        "BIGINT"
    )

    # fact_orders is really incremental: the second run left the history days untouched.
    assert scalar("SELECT count(*) FROM fact.fact_orders") == distinct_versions
    after = conn.sql(
        "SELECT business_day, count(*), max(loaded_at) FROM fact.fact_orders "
        f"WHERE business_day <= DATE '{fact_history[-1][0]}' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert after == fact_history

    # Marts exist and agree with the fact table.
    assert scalar("SELECT count(*) FROM snapshot.snapshot_products") > 0
    assert (
        scalar(
            "SELECT count(DISTINCT order_id || shard || client_id) FROM widetable.widetable_orders"
        )
        > 0
    )
    assert scalar("SELECT sum(orders) FROM role_sales.role_sales_daily_gmv") > 0

    # Anomaly detection finds both injected incidents in the last 7 days.
    found = {
        (metric, series, day)
        for metric, series, day in conn.sql(
            "SELECT metric, series_id, metric_day FROM monitoring.anomalies WHERE is_anomaly"
        ).fetchall()
    }
    spike_day = seeded_demo.last_day - dt.timedelta(days=demo_data.SPIKE_DAYS_BEFORE_END)
    assert ("page_clicks", demo_data.SPIKE_PAGE, spike_day) in found
    assert ("gmv_by_category", demo_data.DROP_CATEGORY, seeded_demo.last_day) in found

    # The latest-day check on the metric mart warns about the GMV drop.
    checks = {check.check_name: check for check in second_run_check_evaluations(second, instance)}
    gmv_check = checks["gmv_by_category_latest_day_not_anomalous"]
    assert not gmv_check.passed
    assert gmv_check.severity.value == "WARN"

    # Reverse ETL: the CRM received every contact once; the second sync sent only the diff.
    contacts = scalar("SELECT count(*) FROM service_crm.service_crm_contacts")
    with sqlite3.connect(minato_env.crm_sqlite_path) as crm:
        assert crm.execute("SELECT count(*) FROM crm_contacts").fetchone()[0] == contacts
    assert first["sync/crm_contacts"]["rows_added"] == contacts
    assert second["sync/crm_contacts"]["rows_added"] == 0
    assert second["sync/crm_contacts"]["rows_sent"] == second["sync/crm_contacts"]["rows_changed"]
    assert second["sync/crm_contacts"]["rows_failed"] == 0
    conn.close()

    # Partner sharing: the demo creates the thresholded views over the partner's mart.
    shares = demo.partner_shares(DuckDBWarehouse(path=str(minato_env.duckdb_path)))
    assert len(shares) == 1 and "of >= 5 distinct customer_key" in shares[0], shares


def _source_rows_in_windows(config: demo_data.DemoConfig, prefix: str) -> int:
    """Source rows each business day's partition reads: the JST day plus the overlap before it
    (the lake table's `overlap`), counted independently of the extraction code."""
    overlap = SHARD_LAKE_TABLES[0].overlap
    count = 0
    for shard, tables in demo_data.shard_tables(config).items():
        zone = ZoneInfo(demo_data.SHARD_TIMEZONES[shard])
        for name, rows in tables.items():
            if not name.startswith(prefix):
                continue
            for row in rows:
                stored = dt.datetime.fromisoformat(row["updated_at"]).replace(tzinfo=zone)
                jst = stored.astimezone(ZoneInfo("Asia/Tokyo"))
                day = jst.date()
                count += config.first_day <= day <= config.last_day
                # Read again by the next day's partition if changed just before it began.
                next_day_start = dt.datetime.combine(
                    day + dt.timedelta(days=1), dt.time(0), jst.tzinfo
                )
                count += (
                    next_day_start - jst <= overlap
                    and config.first_day <= day + dt.timedelta(days=1) <= config.last_day
                )
    return count


def second_run_check_evaluations(_, instance):
    import dagster as dg

    records = instance.get_records_for_run(
        run_id=instance.get_runs(limit=1)[0].run_id,
        of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION,
    ).records
    return [r.event_log_entry.dagster_event.event_specific_data for r in records]
