"""The warehouse sensor waits for every shard of a day; the `minato` CLI seeds and ingests."""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
from click.testing import CliRunner

from assets.dbt_models.layers import dbt_stages
from assets.ingestion.shard_tables import UNRECONCILED_METADATA, shard_table_assets
from assets.monitoring.alerts import read_alerts
from assets.partitions import day_shard_key, shard_names
from assets.run_lanes import CORE_LANE, LANE_TAG
from pipelines.cli import main
from pipelines.sensors import WAREHOUSE_LOOKBACK_DAYS, warehouse_after_ingestion_sensor
from resources.notifications import Notifier
from resources.warehouse import DuckDBWarehouse
from tests.slack import TOKEN, install_fake_slack


def _report(
    instance: dg.DagsterInstance, day: str, shard_names: list[str], unreconciled: bool = False
) -> None:
    for asset in shard_table_assets():
        for shard in shard_names:
            key = day_shard_key(day, shard)
            flagged = [str(key)] if unreconciled and asset is shard_table_assets()[0] else []
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    asset_key=asset.key,
                    partition=str(key),
                    metadata={UNRECONCILED_METADATA: dg.MetadataValue.json(flagged)},
                )
            )


def _evaluate(
    instance: dg.DagsterInstance, notifier: Notifier | None = None
) -> list[dg.RunRequest]:
    warehouse = DuckDBWarehouse()  # the test's own file (minato_env)
    context = dg.build_sensor_context(
        instance=instance, resources={"notifier": notifier or Notifier(), "warehouse": warehouse}
    )
    return list(warehouse_after_ingestion_sensor(context).run_requests or [])


def _stage_ran(instance: dg.DagsterInstance, day: str) -> None:
    """The warehouse stage materialized the day's day-partitioned models."""
    for asset in dbt_stages().fact:
        for key in asset.keys:
            instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=day))


def _days_back(n: int) -> str:
    return (dt.datetime.now(ZoneInfo("Asia/Tokyo")).date() - dt.timedelta(days=n)).isoformat()


def test_warehouse_stage_waits_for_every_shard_of_the_day(minato_env, instance) -> None:
    yesterday = (dt.datetime.now(ZoneInfo("Asia/Tokyo")).date() - dt.timedelta(days=1)).isoformat()
    all_shards = shard_names()

    _report(instance, yesterday, all_shards[:-1])
    assert _evaluate(instance) == []  # one shard is late: nothing runs on partial data

    _report(instance, yesterday, all_shards[-1:])
    (request,) = _evaluate(instance)
    assert request.partition_key == yesterday
    assert request.run_key.startswith(f"{yesterday}@")

    # The same state asks for the same run (deduplicated by run key) ...
    assert [r.run_key for r in _evaluate(instance)] == [request.run_key]
    # ... and re-ingesting one partition of the day asks for a new one.
    _report(instance, yesterday, all_shards[:1])
    (again,) = _evaluate(instance)
    assert again.run_key != request.run_key


def test_cli_seeds_and_ingests(minato_env, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    runner = CliRunner()

    seeded = runner.invoke(main, ["demo", "seed", "--end-date", "2026-11-20", "--days", "3"])
    assert seeded.exit_code == 0, seeded.output
    assert "seeded 2026-11-18..2026-11-20" in seeded.output
    assert (minato_env.data_dir / "shards" / "shard_01.sqlite").exists()
    assert (minato_env.landing_dir / "search_console" / "pages_2026-11-20.csv").exists()

    ingested = runner.invoke(main, ["ingest", "--day", "2026-11-19", "--shard", "shard_02"])
    assert ingested.exit_code == 0, ingested.output
    assert "2026-11-19|shard_02: ok" in ingested.output

    # One lake table only (on-call re-reads what failed), and an unknown one is refused.
    one = ["ingest", "--day", "2026-11-19", "--shard", "shard_01", "--table", "orders"]
    only_orders = runner.invoke(main, one)
    assert only_orders.exit_code == 0, only_orders.output
    assert "lake/orders [shard_01]" in only_orders.output
    assert "lake/order_items" not in only_orders.output
    unknown = runner.invoke(main, [*one[:-1], "nope"])
    assert unknown.exit_code != 0
    assert "unknown ['nope']; one of order_items, orders, products" in unknown.output

    # A shard that cannot be read fails the command and names the partition.
    (minato_env.data_dir / "shards" / "shard_03.sqlite").unlink()
    failed = runner.invoke(main, ["ingest", "--day", "2026-11-19", "--shard", "shard_03"])
    assert failed.exit_code != 0
    assert "failed partitions: 2026-11-19|shard_03" in failed.output


def test_warehouse_stage_skips_a_day_that_does_not_reconcile(minato_env, instance) -> None:
    yesterday = (dt.datetime.now(ZoneInfo("Asia/Tokyo")).date() - dt.timedelta(days=1)).isoformat()
    all_shards = shard_names()
    _report(instance, yesterday, all_shards[:-1])
    _report(instance, yesterday, all_shards[-1:], unreconciled=True)
    assert _evaluate(instance) == []  # rows went missing on one shard: nothing downstream

    _report(instance, yesterday, all_shards[-1:])  # on-call re-ingested it, and it reconciles
    (request,) = _evaluate(instance)
    assert request.partition_key == yesterday


def test_a_late_partition_three_days_back_reruns_only_that_day(minato_env, instance) -> None:
    # Every day of the look-back is complete and its warehouse stage has run.
    for n in range(1, WAREHOUSE_LOOKBACK_DAYS + 1):
        _report(instance, _days_back(n), shard_names())
        _stage_ran(instance, _days_back(n))
    assert _evaluate(instance) == []  # nothing to catch up: no replay of history

    # shard_02's data for three days back arrived late (or was repaired) and is re-ingested.
    _report(instance, _days_back(3), ["shard_02"])

    (request,) = _evaluate(instance)
    assert request.partition_key == _days_back(3)
    assert request.tags[LANE_TAG] == CORE_LANE
    # Once the stage ran for that day, nothing is asked again.
    _stage_ran(instance, _days_back(3))
    assert _evaluate(instance) == []


def test_history_beyond_the_look_back_is_never_replayed(minato_env, instance) -> None:
    old = _days_back(WAREHOUSE_LOOKBACK_DAYS + 1)
    _report(instance, old, shard_names())
    assert _evaluate(instance) == []


def test_a_day_missing_a_shard_triggers_nothing_and_alerts_naming_it(
    minato_env, instance, monkeypatch
) -> None:
    slack = install_fake_slack(monkeypatch)
    notifier = Notifier(slack_bot_token=TOKEN, slack_channel="#oncall")
    day = _days_back(2)  # past its 06:00 JST deadline whatever the time of day
    _report(instance, day, [s for s in shard_names() if s != "shard_03"])

    assert _evaluate(instance, notifier) == []

    [body] = slack.bodies()
    first_line = body["text"].splitlines()[0]
    assert "shard_03" in first_line and day in first_line
    assert "missing shard shard_03 for business day" in first_line
    assert body["text"].endswith("docs/runbook.md#missing-shard")
    [alert] = read_alerts(DuckDBWarehouse(), "open")
    assert alert["failure_class"] == "missing-shard"
    assert sorted(alert["pending"]) == sorted(
        f"{asset.key.to_user_string()}@{day}|shard_03" for asset in shard_table_assets()
    )
    # The next evaluations do not alert again, and nothing runs until the shard arrives.
    assert _evaluate(instance, notifier) == []
    assert len(slack.calls) == 1
    _report(instance, day, ["shard_03"])
    (request,) = _evaluate(instance, notifier)
    assert request.partition_key == day
