"""`minato oncall status|rerun` on a real Dagster instance: 3 assets × 4 shards with 5 injected
failures; status groups them by failure, rerun re-executes exactly those 5 asset partitions in
the backfill lane, and then nothing is failing."""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from click.testing import CliRunner

from assets.partitions import day_shard_key, day_shard_partitions, shard_names
from assets.run_lanes import BACKFILL_LANE, LANE_TAG
from pipelines.cli import main
from pipelines.oncall import failing_now, rerun_failing, status_lines

DAY = "2026-11-24"
INJECTED = {
    ("a", "shard_01"),
    ("a", "shard_02"),
    ("b", "shard_02"),
    ("c", "shard_03"),
    ("c", "shard_04"),
}


def _toy_defs(failing: set[tuple[str, str]]) -> dg.Definitions:
    def build(name: str) -> dg.AssetsDefinition:
        @dg.asset(name=name, key_prefix="toy", partitions_def=day_shard_partitions())
        def _asset(context: dg.AssetExecutionContext) -> None:
            shard = context.partition_key.keys_by_dimension["shard"]
            if (name, shard) in failing:
                raise ConnectionError(f"cannot connect to the shard (attempt {len(failing)})")

        return _asset

    assets = [build(name) for name in ("a", "b", "c")]
    job = dg.define_asset_job("toy_ingest", selection=assets)
    return dg.Definitions(assets=assets, jobs=[job])


def _materializations(instance: dg.DagsterInstance, asset: str, shard: str) -> int:
    return len(
        instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(["toy", asset]),
                asset_partitions=[str(day_shard_key(DAY, shard))],
            ),
            limit=100,
        ).records
    )


@pytest.fixture
def home_instance(tmp_path, monkeypatch, minato_env):
    """The instance `minato` opens (DAGSTER_HOME), on a temporary folder."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    with dg.DagsterInstance.get() as instance:
        yield instance


def test_status_groups_the_failures_and_rerun_reexecutes_exactly_them(home_instance) -> None:
    failing = set(INJECTED)
    defs = _toy_defs(failing)
    job = defs.resolve_job_def("toy_ingest")
    for shard in shard_names():
        job.execute_in_process(
            instance=home_instance, partition_key=day_shard_key(DAY, shard), raise_on_error=False
        )
    now = dt.datetime.now(dt.UTC)

    groups = failing_now(home_instance, now)
    entries = {e for g in groups for e in g.partitions}
    assert entries == {f"toy/{a}@{DAY}|{s}" for a, s in INJECTED}
    assert {g.failure.failure_class for g in groups} == {"shard-unreachable"}
    # One group per failed run here: the fingerprint holds the assets and the shard.
    assert sorted(len(g.partitions) for g in groups) == [1, 1, 1, 2]

    printed = CliRunner().invoke(main, ["oncall", "status"])
    assert printed.exit_code == 0, printed.output
    lines = printed.output.splitlines()
    assert lines[0] == "5 asset partition(s) failing, 4 failure(s)"
    assert f"  toy/b {DAY}|shard_02" in lines
    assert "JST" in lines[1] and "cannot connect to the shard" in lines[1]
    assert lines == status_lines(groups, ZoneInfo("Asia/Tokyo"))

    failing.clear()  # the shards are back
    reruns = rerun_failing(defs, home_instance, groups, echo=lambda _: None)

    assert all(r.success for r in reruns)
    rerun_partitions = {(a, r.partition) for r in reruns for a in r.assets}
    assert rerun_partitions == {(f"toy/{a}", f"{DAY}|{s}") for a, s in INJECTED}
    for run in reruns:
        assert home_instance.get_run_by_id(run.run_id).tags[LANE_TAG] == BACKFILL_LANE
    for asset in ("a", "b", "c"):
        for shard in shard_names():
            # Exactly the failed ones ran again; the 7 healthy ones were not touched.
            assert _materializations(home_instance, asset, shard) == 1, (asset, shard)
    assert failing_now(home_instance, dt.datetime.now(dt.UTC)) == []
    after = CliRunner().invoke(main, ["oncall", "status"])
    assert after.output.strip() == "nothing is failing"
