"""`monitoring/query_costs`: what each asset cost per business day, and a check that alerts when
an asset passes its budget or jumps over its trailing median.

On BigQuery the jobs come from `INFORMATION_SCHEMA.JOBS_BY_PROJECT`, always over a bounded
window of creation times (the view is partitioned by `creation_time`: an unbounded scan reads
the project's whole 180-day job history on every call), attributed by the `minato_asset` label
every Minato job carries (resources/warehouse/bigquery_labels.py). DuckDB bills nothing: there
the table stays empty.
"""

import datetime as dt
import statistics
from collections.abc import Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pyarrow as pa

from assets.constants import BUSINESS_TIMEZONE, MONITORING_SCHEMA
from assets.monitoring.query_budgets import DEFAULT_BUDGET, QueryBudget, budgets
from resources.notifications import Notifier
from resources.settings import minato_env
from resources.warehouse import BigQueryWarehouse, Warehouse
from resources.warehouse.bigquery_labels import label_value
from resources.warehouse.sql import sql_literal

QUERY_COSTS_TABLE = "query_costs"
QUERY_COSTS_KEY = dg.AssetKey([MONITORING_SCHEMA, QUERY_COSTS_TABLE])
WINDOW_DAYS = 15  # the checked day and its trailing days

JOBS_SCHEMA = pa.schema(
    [
        ("asset", pa.string()),
        ("creation_time", pa.timestamp("us", tz="UTC")),
        ("bytes_processed", pa.int64()),
        ("bytes_billed", pa.int64()),
        ("slot_ms", pa.int64()),
    ]
)
COSTS_SCHEMA = pa.schema(
    [
        ("business_day", pa.date32()),
        ("asset", pa.string()),
        ("jobs", pa.int64()),
        ("bytes_processed", pa.int64()),
        ("bytes_billed", pa.int64()),
        ("slot_ms", pa.int64()),
    ]
)


def window(today: dt.date, days: int = WINDOW_DAYS) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) in UTC covering the `days` business days (Asia/Tokyo) up to `today`."""
    zone = ZoneInfo(BUSINESS_TIMEZONE)
    start = dt.datetime.combine(today - dt.timedelta(days=days - 1), dt.time(), zone)
    end = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), zone)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def jobs_sql(project: str, location: str, env: str, start: dt.datetime, end: dt.datetime) -> str:
    """Minato's jobs of this environment created in [start, end): never an unbounded scan."""
    view = f"`{project}`.`region-{location.lower()}`.INFORMATION_SCHEMA.JOBS_BY_PROJECT"
    return (
        "SELECT (SELECT l.value FROM UNNEST(labels) AS l WHERE l.key = 'minato_asset') AS asset, "
        "creation_time, total_bytes_processed AS bytes_processed, "
        "total_bytes_billed AS bytes_billed, total_slot_ms AS slot_ms "
        f"FROM {view} "
        f"WHERE creation_time >= TIMESTAMP({sql_literal(start.isoformat(), dialect='bigquery')}) "
        f"AND creation_time < TIMESTAMP({sql_literal(end.isoformat(), dialect='bigquery')}) "
        "AND EXISTS (SELECT 1 FROM UNNEST(labels) AS l WHERE l.key = 'minato_env' "
        f"AND l.value = {sql_literal(env, dialect='bigquery')})"
    )


def daily_costs(jobs: pa.Table) -> pa.Table:
    """Per business day (Asia/Tokyo) and asset: jobs, bytes processed and billed, slot-ms."""
    jobs = jobs.select(JOBS_SCHEMA.names).cast(JOBS_SCHEMA)
    with duckdb.connect() as conn:
        conn.register("jobs", jobs)
        costs = conn.execute(
            "SELECT CAST(timezone(?, creation_time) AS DATE) AS business_day, "
            "coalesce(asset, 'unattributed') AS asset, count(*) AS jobs, "
            "coalesce(sum(bytes_processed), 0) AS bytes_processed, "
            "coalesce(sum(bytes_billed), 0) AS bytes_billed, "
            "coalesce(sum(slot_ms), 0) AS slot_ms "
            "FROM jobs GROUP BY ALL ORDER BY business_day, asset",
            [BUSINESS_TIMEZONE],
        ).to_arrow_table()
    return costs.cast(COSTS_SCHEMA)


def cost_alerts(
    costs: Sequence[Mapping[str, Any]], day: dt.date, rules: Mapping[str, QueryBudget]
) -> list[str]:
    """One line per asset whose bytes billed on `day` pass its budget, or `median_multiple`
    times its median over the trailing days (days without jobs count as zero)."""
    by_label = {label_value(name): budget for name, budget in rules.items()}
    billed: dict[str, dict[dt.date, int]] = {}
    for row in costs:
        billed.setdefault(row["asset"], {})[row["business_day"]] = row["bytes_billed"]
    alerts = []
    for asset, days in sorted(billed.items()):
        today = days.get(day, 0)
        rule = by_label.get(asset, DEFAULT_BUDGET)
        if rule.max_bytes_billed_per_day is not None and today > rule.max_bytes_billed_per_day:
            alerts.append(
                f"{asset}: {today:,} bytes billed on {day}, over its budget of "
                f"{rule.max_bytes_billed_per_day:,}"
            )
            continue
        trailing = [
            days.get(day - dt.timedelta(days=n), 0) for n in range(1, rule.trailing_days + 1)
        ]
        median = statistics.median(trailing)
        if median > 0 and today > rule.median_multiple * median:
            alerts.append(
                f"{asset}: {today:,} bytes billed on {day}, {today / median:.1f}x its "
                f"{rule.trailing_days}-day median of {median:,.0f}"
            )
    return alerts


def _jobs(warehouse: Warehouse, start: dt.datetime, end: dt.datetime) -> pa.Table:
    if isinstance(warehouse, BigQueryWarehouse):
        sql = jobs_sql(warehouse.project, warehouse.location, minato_env(), start, end)
        return warehouse.query_arrow(sql)
    return JOBS_SCHEMA.empty_table()  # DuckDB bills nothing


@dg.asset(
    key=QUERY_COSTS_KEY,
    group_name=MONITORING_SCHEMA,
    description="BigQuery bytes processed and billed and slot-ms per asset and business day "
    "(last 15 days, from the jobs' `minato_asset` labels).",
    check_specs=[dg.AssetCheckSpec("query_costs_within_budget", asset=QUERY_COSTS_KEY)],
)
def query_costs(
    context: dg.AssetExecutionContext, warehouse: Warehouse, notifier: Notifier
) -> dg.MaterializeResult:
    today = dt.datetime.now(ZoneInfo(BUSINESS_TIMEZONE)).date()
    start, end = window(today)
    costs = daily_costs(_jobs(warehouse, start, end))
    days = [(today - dt.timedelta(days=n),) for n in range(WINDOW_DAYS)]
    warehouse.replace_partitions(
        MONITORING_SCHEMA, QUERY_COSTS_TABLE, costs, ["business_day"], days
    )
    alerts = cost_alerts(costs.to_pylist(), today, budgets())
    for alert in alerts:
        notifier.send(f"Expensive BigQuery usage: {alert} ({notifier.run_url(context.run_id)})")
    return dg.MaterializeResult(
        metadata={
            "window_start": start.isoformat(),
            "window_end": end.isoformat(),
            "bytes_billed_today": int(
                sum(r["bytes_billed"] for r in costs.to_pylist() if r["business_day"] == today)
            ),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="query_costs_within_budget",
                passed=not alerts,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"alerts": "\n".join(alerts) or "none"},
            )
        ],
    )
