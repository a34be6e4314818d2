"""Freshness SLOs: the typed YAML (errors name file, line and key), per-(day, shard) scoring with
missing and late shards named, and the monitoring/slo_report asset on a real instance and DuckDB."""

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from assets.monitoring.slo_report import SHARDS_ON_TIME_CHECK, build_slo_report
from assets.monitoring.slos import SloConfigError, SloSpec, days_due, load_slos, score, slos
from assets.partitions import shard_names
from resources.warehouse import DuckDBWarehouse

JST = ZoneInfo("Asia/Tokyo")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "slos.yml"
    path.write_text(text)
    return path


def test_the_repositorys_slos_load_and_name_real_assets() -> None:
    from pipelines.definitions import defs

    keys = defs.resolve_asset_graph().get_all_asset_keys()
    assert {spec.key for spec in slos()} <= keys
    assert {spec.per for spec in slos()} == {"day", "day_shard"}


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ('    due: "06:00"\n    severity: loud\n', "slos.yml:7: slo 'lake/orders': key 'severity'"),
        ("    due: 6:00\n    severity: critical\n", "expected a quoted time"),
        ('    due: "06:00"\n    severity: critical\n    sla: 1\n', "key 'sla': unknown key"),
    ],
)
def test_slo_file_errors_name_file_line_and_key(tmp_path, entry: str, problem: str) -> None:
    path = _write(
        tmp_path,
        "slos:\n  - asset: lake/orders\n    per: day_shard\n    days_after: 1\n"
        f"    owner: platform\n{entry}",
    )
    with pytest.raises(SloConfigError) as raised:
        load_slos(path)
    assert problem in str(raised.value)
    assert str(raised.value).startswith(str(path))


def test_an_asset_with_two_slos_is_refused(tmp_path) -> None:
    one = (
        '  - {asset: fact/fact_orders, per: day, due: "08:00", days_after: 1, owner: a, '
        "severity: warning}\n"
    )
    with pytest.raises(
        SloConfigError, match=r"slos.yml:3: .*slo defined twice \(first on line 2\)"
    ):
        load_slos(_write(tmp_path, "slos:\n" + one + one))


def _report(instance: dg.DagsterInstance, day: dt.date, shards: list[str]) -> None:
    for shard in shards:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(dg.AssetKey(["lake", "orders"]), partition=f"{day}|{shard}")
        )


def test_per_shard_scoring_names_missing_and_late_shards(minato_env, instance) -> None:
    spec = SloSpec(
        asset="lake/orders",
        per="day_shard",
        due="06:00",
        days_after=1,
        owner="platform",
        severity="critical",
    )
    # Days whose deadline is still ahead whatever the time of day (today's is 06:00 tomorrow,
    # Tokyo time), so what arrives now is on time; and one whose deadline has passed.
    today = dt.datetime.now(JST).date()
    tomorrow = today + dt.timedelta(days=1)
    long_ago = today - dt.timedelta(days=3)  # its deadline has passed: arriving now is late
    shards = shard_names()
    _report(instance, tomorrow, shards)
    _report(instance, today, [s for s in shards if s != "shard_03"])
    _report(instance, long_ago, ["shard_01"])

    verdicts = {
        v.business_day: v for v in score(instance, spec, [long_ago, today, tomorrow], shards)
    }

    assert verdicts[tomorrow].met
    incomplete = verdicts[today]
    assert not incomplete.met and incomplete.missing == ("shard_03",) and incomplete.late == ()
    old = verdicts[long_ago]
    assert old.late == ("shard_01",)
    assert old.missing == ("shard_02", "shard_03", "shard_04")
    assert "MISSED (due " in old.describe() and "owner platform, critical" in old.describe()
    # The report only scores days whose deadline has passed, Tokyo time.
    now = dt.datetime.combine(today, dt.time(5, 59), JST)
    assert days_due(spec, now, 2) == [today - dt.timedelta(days=3), today - dt.timedelta(days=2)]
    now = dt.datetime.combine(today, dt.time(6, 0), JST)
    assert days_due(spec, now, 1) == [today - dt.timedelta(days=1)]


def test_slo_report_asset_writes_the_table_and_its_check_names_missing_shards(
    minato_env, instance, monkeypatch
) -> None:
    monkeypatch.setenv("MINATO_PARTITIONS_START", "2026-01-01")
    warehouse = DuckDBWarehouse()
    today = dt.datetime.now(JST).date()
    # Every lake table has all shards for the last days except shard_04.
    for asset in ("orders", "order_items", "products"):
        for n in range(1, 4):
            for shard in shard_names()[:-1]:
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(
                        dg.AssetKey(["lake", asset]),
                        partition=f"{today - dt.timedelta(days=n)}|{shard}",
                    )
                )

    result = dg.materialize(
        [build_slo_report()], instance=instance, resources={"warehouse": warehouse}
    )

    assert result.success
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == SHARDS_ON_TIME_CHECK and not check.passed
    assert "missing shard_04" in check.description
    rows = warehouse.query_arrow(
        "SELECT asset, count(*) AS days, count(*) FILTER (WHERE met) AS met "
        "FROM monitoring.slo_report GROUP BY asset ORDER BY asset"
    ).to_pylist()
    assert [r["asset"] for r in rows] == sorted(spec.asset for spec in slos())
    assert all(r["days"] == 30 and r["met"] == 0 for r in rows)
    # Re-running replaces the rows rather than adding to them.
    dg.materialize([build_slo_report()], instance=instance, resources={"warehouse": warehouse})
    again = warehouse.query_arrow("SELECT count(*) AS n FROM monitoring.slo_report")
    assert again["n"][0].as_py() == 30 * len(slos())
