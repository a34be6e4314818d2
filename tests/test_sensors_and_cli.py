"""The warehouse sensor waits for every shard of a day; the `minato` CLI seeds and ingests."""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
from click.testing import CliRunner

from assets.ingestion.shard_tables import UNRECONCILED_METADATA, shard_table_assets
from assets.partitions import day_shard_key, shard_names
from pipelines.cli import main
from pipelines.sensors import warehouse_after_ingestion_sensor


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


def _evaluate(instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    context = dg.build_sensor_context(instance=instance)
    return list(warehouse_after_ingestion_sensor(context) or [])


def test_warehouse_stage_waits_for_every_shard_of_the_day(instance) -> None:
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


def test_warehouse_stage_skips_a_day_that_does_not_reconcile(instance) -> None:
    yesterday = (dt.datetime.now(ZoneInfo("Asia/Tokyo")).date() - dt.timedelta(days=1)).isoformat()
    all_shards = shard_names()
    _report(instance, yesterday, all_shards[:-1])
    _report(instance, yesterday, all_shards[-1:], unreconciled=True)
    assert _evaluate(instance) == []  # rows went missing on one shard: nothing downstream

    _report(instance, yesterday, all_shards[-1:])  # on-call re-ingested it, and it reconciles
    (request,) = _evaluate(instance)
    assert request.partition_key == yesterday
