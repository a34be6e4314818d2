"""Alerts for on-call: the first line names what failed and why (no frames), then the run and the
runbook; one Slack thread per failure fingerprint; resolved when the partition succeeds; nothing
for a run that will be retried; every alert a row of monitoring.alerts (real DuckDB, real Dagster
instance, a fake Slack whose exact requests are asserted)."""

import re
import sqlite3

import dagster as dg
import pytest

from assets.monitoring.alerts import classify, read_alerts
from assets.partitions import day_shard_partitions
from assets.run_lanes import ADHOC_LANE, LANE_TAG
from pipelines.sensors import alert_resolution_sensor, run_failure_alert
from resources.notifications import Notifier
from resources.settings import REPO_ROOT
from resources.warehouse import DuckDBWarehouse
from tests.slack import TOKEN, FakeSlack, install_fake_slack

UI = "https://dagster.example.com"
RUNBOOK = "https://git.example.com/minato/blob/main/docs/runbook.md"


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> FakeSlack:
    return install_fake_slack(monkeypatch)


@pytest.fixture
def notifier() -> Notifier:
    return Notifier(
        slack_bot_token=TOKEN, slack_channel="#oncall", dagster_ui_url=UI, runbook_url=RUNBOOK
    )


@pytest.fixture
def warehouse(minato_env) -> DuckDBWarehouse:
    return DuckDBWarehouse(path=str(minato_env.duckdb_path))


def _lake_orders(broken: dict[str, bool]) -> dg.AssetsDefinition:
    """A stand-in for lake/orders whose partitions fail like a corrupt SQLite shard while
    `broken["now"]` is set (a driver error under Minato's own shard message)."""

    @dg.asset(key=["lake", "orders"], partitions_def=day_shard_partitions())
    def orders() -> None:
        if broken["now"]:
            try:
                raise sqlite3.DatabaseError("file is not a database")
            except sqlite3.DatabaseError as exc:
                raise RuntimeError("batch of 12 client tables failed after 3 retries") from exc

    return orders


def _run(asset: dg.AssetsDefinition, instance: dg.DagsterInstance, partition: str, **tags: str):
    job = dg.define_asset_job("ingest_shards", selection=[asset], tags={LANE_TAG: ADHOC_LANE})
    defs = dg.Definitions(assets=[asset], jobs=[job])
    return defs.resolve_job_def("ingest_shards").execute_in_process(
        instance=instance, partition_key=partition, raise_on_error=False, tags=tags
    )


def _on_failure(result, instance, notifier, warehouse) -> None:
    context = dg.build_run_status_sensor_context(
        sensor_name=run_failure_alert.name,
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id),
        resources={"notifier": notifier, "warehouse": warehouse},
    ).for_run_failure()
    run_failure_alert(context)


def _on_success(result, instance, notifier, warehouse) -> None:
    context = dg.build_run_status_sensor_context(
        sensor_name=alert_resolution_sensor.name,
        dagster_event=result.get_run_success_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"notifier": notifier, "warehouse": warehouse},
    )
    alert_resolution_sensor(context)


def test_alert_names_failure_and_cause_links_run_and_runbook_threads_and_resolves(
    slack, notifier, warehouse, instance
) -> None:
    broken = {"now": True}
    orders = _lake_orders(broken)

    first = _run(orders, instance, "2026-11-26|shard_02")
    assert not first.success
    _on_failure(first, instance, notifier, warehouse)

    [body] = slack.bodies()
    assert body["channel"] == "#oncall" and "thread_ts" not in body
    assert body["text"] == (
        ":rotating_light: lake/orders [2026-11-26|shard_02] (shard shard_02) table lake.orders "
        "failed: DatabaseError: file is not a database\n"
        f"Run: {UI}/runs/{first.run_id} (job ingest_shards)\n"
        f"Runbook: {RUNBOOK}#shard-unreachable"
    )
    assert "Traceback" not in body["text"] and "File " not in body["text"]
    [alert] = read_alerts(warehouse, "open")
    assert alert["failure_class"] == "shard-unreachable"
    assert alert["pending"] == ["lake/orders@2026-11-26|shard_02"]
    assert alert["slack_ts"] == "1767312000.000001"
    # Visible in the UI without Slack: an observation on the failed partition.
    [observation] = instance.fetch_observations(orders.key, limit=5).records
    assert observation.partition_key == "2026-11-26|shard_02"
    assert "file is not a database" in observation.asset_observation.metadata["alert"].value

    # The same failure on another day of the shard: a reply in the thread, not a new alert.
    again = _run(orders, instance, "2026-11-25|shard_02")
    _on_failure(again, instance, notifier, warehouse)
    assert slack.bodies()[1] == {
        "channel": "#oncall",
        "text": f"Again in run {UI}/runs/{again.run_id}",
        "thread_ts": "1767312000.000001",
    }
    [alert] = read_alerts(warehouse, "open")
    assert alert["occurrences"] == 2
    assert alert["pending"] == [
        "lake/orders@2026-11-25|shard_02",
        "lake/orders@2026-11-26|shard_02",
    ]
    # Evaluating the same run twice (a sensor retry) sends nothing more.
    _on_failure(again, instance, notifier, warehouse)
    assert len(slack.calls) == 2

    # The shard is repaired: one partition succeeding leaves the alert open ...
    broken["now"] = False
    _on_success(_run(orders, instance, "2026-11-26|shard_02"), instance, notifier, warehouse)
    assert len(slack.calls) == 2
    assert read_alerts(warehouse, "open")[0]["pending"] == ["lake/orders@2026-11-25|shard_02"]
    # ... and the last one resolves it, in its thread.
    fixed = _run(orders, instance, "2026-11-25|shard_02")
    _on_success(fixed, instance, notifier, warehouse)
    assert slack.bodies()[2] == {
        "channel": "#oncall",
        "text": ":white_check_mark: resolved: lake/orders [2026-11-25|shard_02, "
        "2026-11-26|shard_02] (shard shard_02) table lake.orders succeeded in run "
        f"{UI}/runs/{fixed.run_id}",
        "thread_ts": "1767312000.000001",
    }
    assert read_alerts(warehouse, "open") == []
    [resolved] = read_alerts(warehouse, "resolved")
    assert resolved["resolved_by_run_id"] == fixed.run_id


def test_a_run_that_will_be_retried_is_not_alerted(slack, notifier, warehouse, instance) -> None:
    orders = _lake_orders({"now": True})
    result = _run(orders, instance, "2026-11-26|shard_01")
    instance.add_run_tags(result.run_id, {"dagster/will_retry": "true"})

    _on_failure(result, instance, notifier, warehouse)

    assert slack.calls == []
    assert read_alerts(warehouse) == []


def test_minatos_own_failure_message_is_the_root_cause(
    slack, notifier, warehouse, instance
) -> None:
    @dg.asset(key=["lake", "products"], partitions_def=day_shard_partitions())
    def products() -> None:
        try:
            raise ConnectionError("(1045, \"Access denied for user 'etl'@'10.0.0.9'\")")
        except ConnectionError as exc:
            raise dg.Failure(
                "shard shard_03 (mysql+pymysql://etl:***@10.0.0.3/ec): authentication failed: "
                "check the user and the password variable in the URL",
                allow_retries=False,
            ) from exc

    result = _run(products, instance, "2026-11-26|shard_03")
    _on_failure(result, instance, notifier, warehouse)

    text = slack.bodies()[0]["text"]
    first_line = text.splitlines()[0]
    assert first_line == (
        ":rotating_light: lake/products [2026-11-26|shard_03] (shard shard_03) table "
        "lake.products failed: shard shard_03 (mysql+pymysql://etl:***@10.0.0.3/ec): "
        "authentication failed: check the user and the password variable in the URL"
    )
    assert text.endswith(f"{RUNBOOK}#authentication")


def test_without_slack_the_alert_is_recorded_and_logged(warehouse, instance, caplog) -> None:
    orders = _lake_orders({"now": True})
    result = _run(orders, instance, "2026-11-24|shard_04")

    _on_failure(result, instance, Notifier(), warehouse)

    [alert] = read_alerts(warehouse)
    assert alert["status"] == "open" and alert["slack_ts"] is None
    assert alert["run_url"] == f"http://localhost:3000/runs/{result.run_id}"
    assert alert["runbook_url"] == "docs/runbook.md#shard-unreachable"
    assert "file is not a database" in caplog.text


@pytest.mark.parametrize(
    ("cause", "failure_class"),
    [
        (
            "shard shard_01 (sqlite:///x): the SQLite file is not a database or is damaged: "
            "restore the shard's file",
            "shard-unreachable",
        ),
        (
            'shard shard_02 (mysql+pymysql://etl:***@h/ec): (2003, "Can\'t connect to MySQL")',
            "shard-unreachable",
        ),
        (
            "shard shard_02 (...): authentication failed: check the user and the password",
            "authentication",
        ),
        (
            "shard shard_01: column 'amount' is TEXT in orders_3 but INT in orders_4; these types "
            "cannot be unioned",
            "irreconcilable-schema",
        ),
        ("reconciles_with_source: 1 partition(s) do not reconcile", "reconciliation-mismatch"),
        (
            "missing shard shard_03 for business day 2026-11-24: the warehouse stage waits",
            "missing-shard",
        ),
        ("dbt build failed: 2 of 40 tests failed", "dbt-test-failure"),
        ("3 new anomalies in page_clicks", "anomaly"),
        ("sync crm_contacts: the destination rejected 12 rows", "rejected-sync-rows"),
        (
            "403 Quota exceeded: Your project exceeded quota for free query bytes scanned",
            "bigquery-quota-or-cost-guard",
        ),
        (
            "Query exceeded limit for bytes billed: 1000000. 20971520 or higher required.",
            "bigquery-quota-or-cost-guard",
        ),
        ("KeyError: 'x'", "unknown-failure"),
    ],
)
def test_every_failure_class_has_a_runbook_entry(cause: str, failure_class: str) -> None:
    assert classify(cause) == failure_class
    runbook = (REPO_ROOT / "docs" / "runbook.md").read_text()
    assert re.search(rf"^## {re.escape(failure_class)}$", runbook, re.M)
