"""`monitoring/query_costs`: cost attribution from job labels, the bounded jobs query, and the
budget / trailing-median check."""

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp

from assets.monitoring import query_costs as costs_module
from assets.monitoring.query_budgets import QueryBudget, QueryBudgetError, load_budgets
from assets.monitoring.query_costs import (
    JOBS_SCHEMA,
    cost_alerts,
    daily_costs,
    jobs_sql,
    query_costs,
    window,
)
from resources.notifications import Notifier
from resources.warehouse import DuckDBWarehouse

UTC = dt.UTC


def jobs(*rows: tuple) -> pa.Table:
    return pa.Table.from_pylist(
        [dict(zip(JOBS_SCHEMA.names, row, strict=True)) for row in rows], schema=JOBS_SCHEMA
    )


def test_costs_are_attributed_per_asset_and_business_day_exactly() -> None:
    table = jobs(
        # 14:59 UTC is 23:59 in Tokyo on the 25th; 15:00 UTC is already the 26th.
        ("lake_orders", dt.datetime(2026, 11, 25, 14, 59, tzinfo=UTC), 100, 10, 7),
        ("lake_orders", dt.datetime(2026, 11, 25, 15, 0, tzinfo=UTC), 200, 20, 8),
        ("lake_orders", dt.datetime(2026, 11, 26, 1, 0, tzinfo=UTC), 300, 30, None),
        ("sync_crm_contacts", dt.datetime(2026, 11, 26, 2, 0, tzinfo=UTC), 5, 0, 1),
        (None, dt.datetime(2026, 11, 26, 3, 0, tzinfo=UTC), 1, 1, 1),  # a job without labels
    )

    assert daily_costs(table).to_pylist() == [
        {"business_day": dt.date(2026, 11, 25), "asset": "lake_orders", "jobs": 1,
         "bytes_processed": 100, "bytes_billed": 10, "slot_ms": 7},
        {"business_day": dt.date(2026, 11, 26), "asset": "lake_orders", "jobs": 2,
         "bytes_processed": 500, "bytes_billed": 50, "slot_ms": 8},
        {"business_day": dt.date(2026, 11, 26), "asset": "sync_crm_contacts", "jobs": 1,
         "bytes_processed": 5, "bytes_billed": 0, "slot_ms": 1},
        {"business_day": dt.date(2026, 11, 26), "asset": "unattributed", "jobs": 1,
         "bytes_processed": 1, "bytes_billed": 1, "slot_ms": 1},
    ]  # fmt: skip


def test_the_jobs_query_is_bounded_to_the_window_and_the_environment() -> None:
    start, end = window(dt.date(2026, 11, 26))
    assert (start, end) == (
        dt.datetime(2026, 11, 11, 15, tzinfo=UTC),  # 2026-11-12 00:00 in Tokyo
        dt.datetime(2026, 11, 26, 15, tzinfo=UTC),  # 2026-11-27 00:00 in Tokyo
    )

    sql = jobs_sql("minato-prod", "asia-northeast1", "prod", start, end)

    [statement] = sqlglot.parse(sql, read="bigquery")
    where = statement.args["where"].sql("bigquery")
    assert "creation_time >= TIMESTAMP('2026-11-11T15:00:00+00:00')" in where
    assert "creation_time < TIMESTAMP('2026-11-26T15:00:00+00:00')" in where
    assert "l.key = 'minato_env' AND l.value = 'prod'" in where
    assert [t.name for t in statement.find_all(exp.Table)] == ["INFORMATION_SCHEMA.JOBS_BY_PROJECT"]
    assert "FROM `minato-prod`.`region-asia-northeast1`.INFORMATION_SCHEMA.JOBS_BY_PROJECT " in sql


DAY = dt.date(2026, 11, 26)


def history(today: int, asset: str = "lake_orders") -> list[dict]:
    """14 ordinary days of about 1 GB billed, then `today`."""
    rows = [
        {"business_day": DAY - dt.timedelta(days=n), "asset": asset,
         "bytes_billed": 10**9 + n * 10**7}
        for n in range(1, 15)
    ]  # fmt: skip
    return [*rows, {"business_day": DAY, "asset": asset, "bytes_billed": today}]


def test_an_injected_10x_day_alerts_and_a_normal_one_does_not() -> None:
    assert cost_alerts(history(10**10), DAY, {}) == [
        "lake_orders: 10,000,000,000 bytes billed on 2026-11-26, 9.3x its 14-day median of "
        "1,075,000,000"
    ]
    assert cost_alerts(history(12 * 10**8), DAY, {}) == []
    # A new asset without history has no median to jump over.
    assert cost_alerts([{"business_day": DAY, "asset": "x", "bytes_billed": 10**12}], DAY, {}) == []


def test_a_day_over_its_budget_alerts_whatever_the_median() -> None:
    rules = {"lake/orders": QueryBudget(name="lake/orders", max_bytes_billed_per_day=10**9)}

    assert cost_alerts(history(2 * 10**9), DAY, rules) == [
        "lake_orders: 2,000,000,000 bytes billed on 2026-11-26, over its budget of 1,000,000,000"
    ]
    assert cost_alerts(history(9 * 10**8), DAY, rules) == []


class RecordingNotifier(Notifier):
    def send(self, text: str) -> None:
        SENT.append(text)


SENT: list[str] = []


def test_the_asset_writes_the_window_and_fails_its_check_on_a_jump(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The asset end to end on DuckDB, with the jobs a BigQuery project would return."""
    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=9))).date()
    at_noon = [
        dt.datetime.combine(today - dt.timedelta(days=n), dt.time(3), UTC) for n in range(15)
    ]
    synthetic = jobs(
        *[("lake_orders", at_noon[n], 10**9, 10**9, 1000) for n in range(1, 15)],
        ("lake_orders", at_noon[0], 10**10, 10**10, 9000),
    )
    monkeypatch.setattr(costs_module, "_jobs", lambda warehouse, start, end: synthetic)
    SENT.clear()
    path = tmp_path / "w.duckdb"

    result = dg.materialize(
        [query_costs],
        resources={"warehouse": DuckDBWarehouse(path=str(path)), "notifier": RecordingNotifier()},
    )

    [check] = result.get_asset_check_evaluations()
    assert not check.passed
    assert len(SENT) == 1 and SENT[0].startswith("Expensive BigQuery usage: lake_orders: ")
    with duckdb.connect(str(path), read_only=True) as conn:
        rows = conn.sql("SELECT count(*), sum(bytes_billed) FROM monitoring.query_costs").fetchone()
    assert rows == (15, 14 * 10**9 + 10**10)

    # Re-running replaces the window: nothing doubles.
    dg.materialize(
        [query_costs],
        resources={"warehouse": DuckDBWarehouse(path=str(path)), "notifier": RecordingNotifier()},
    )
    with duckdb.connect(str(path), read_only=True) as conn:
        assert conn.sql("SELECT count(*) FROM monitoring.query_costs").fetchone() == (15,)


def test_the_repository_budgets_load() -> None:
    assert load_budgets()["lake/orders"].max_bytes_billed_per_day == 200_000_000_000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "budgets:\n  - name: lake/orders\n    max_bytes: 1\n",
            "q.yml:3: budget 'lake/orders': key 'max_bytes': unknown key",
        ),
        (
            "budgets:\n  - name: a\n  - name: a\n",
            "q.yml:3: budget 'a': key 'name': budget defined twice (first on line 2)",
        ),
        (
            "budgets:\n  - name: a\n    median_multiple: 1\n",
            "q.yml:3: budget 'a': key 'median_multiple':",
        ),
    ],
)
def test_budget_file_errors_name_file_line_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "q.yml"
    path.write_text(text)

    with pytest.raises(QueryBudgetError) as raised:
        load_budgets(path)

    assert str(raised.value).replace(str(tmp_path) + "/", "").startswith(message)
