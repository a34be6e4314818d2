"""The on-call flow through the UI's own API: `dagster dev` (webserver, daemon, code server) on a
free port with a temporary DAGSTER_HOME serves the real code location; a (day, shard) partition
is launched and fails, the alert is recorded (monitoring.alerts, and an observation on the
failed partition), the run is re-executed from failure and succeeds, and the warehouse sensor
then runs the warehouse stage for exactly that day.

Every wait has a deadline that fails with what was last seen; the processes are stopped (their
own process group) whatever happens.
"""

import datetime as dt
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from assets.monitoring.alerts import read_alerts
from assets.partitions import day_shard_key, shard_names
from devtools.dagster_ui import dagster_dev, graphql
from pipelines import demo_data
from resources.settings import REPO_ROOT
from resources.warehouse import DuckDBWarehouse

BROKEN = "shard_02"
LOCATION = "from pipelines.definitions import defs  # noqa: F401\n"
RUN = """query Run($id: ID!) { runOrError(runId: $id) { __typename
  ... on Run { status jobName tags { key value } } } }"""
REEXECUTE = """mutation Reexecute($id: String!) {
  launchRunReexecution(reexecutionParams: {parentRunId: $id, strategy: FROM_FAILURE}) {
    __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
RUNS = """query Runs($job: String!) { runsOrError(filter: {pipelineName: $job}) {
  ... on Runs { results { runId status tags { key value } } } } }"""
OBSERVATIONS = """query Obs($key: AssetKeyInput!, $partition: String!) {
  assetOrError(assetKey: $key) { ... on Asset {
    assetObservations(partitions: [$partition]) { metadataEntries { label
      ... on TextMetadataEntry { text } } } } } }"""


def _wait(what: str, probe: Callable[[], Any], timeout: float, served) -> Any:
    """`probe()` until it returns something truthy; fail after `timeout` s with the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        exited = served._exited()
        if exited:
            pytest.fail(f"waiting for {what}: {exited}")
        try:
            last = probe()
        # The webserver or the code location is still starting.
        except (OSError, RuntimeError, DagsterGraphQLClientError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(2)
    pytest.fail(f"no {what} within {timeout} s; last seen: {last!r}; log: {served.log}")


def _run(port: int, run_id: str) -> dict:
    return graphql(port, RUN, {"id": run_id})["runOrError"]


def _finished(port: int, run_id: str) -> str | None:
    status = _run(port, run_id).get("status")
    return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None


def test_launch_fail_alert_reexecute_and_the_day_follows(minato_env, tmp_path) -> None:
    yesterday = dt.datetime.now(ZoneInfo("Asia/Tokyo")).date() - dt.timedelta(days=1)
    config = demo_data.DemoConfig(
        seed=7, end_date=yesterday, days=14, clients_per_shard=5, customers=200, crm_contacts=50
    )
    urls = {shard: minato_env.shard_url(shard) for shard in demo_data.SHARD_TIMEZONES}
    demo_data.seed(config, urls, minato_env.landing_dir)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")  # with the run-queue lanes
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "DAGSTER_HOME": str(home),
        # The sensors evaluate every few seconds instead of every 30–120: the flow is the same.
        "MINATO_SENSOR_INTERVAL_S": "5",
    }

    # The day's other shards and exports are in the lake already (as the schedule leaves them).
    from pipelines.definitions import defs

    day = yesterday.isoformat()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for shard in shard_names():
            if shard != BROKEN:
                job = defs.resolve_job_def("ingest_shards")
                assert job.execute_in_process(
                    instance=instance, partition_key=day_shard_key(day, shard)
                ).success
        search = defs.resolve_job_def("ingest_search_console")
        assert search.execute_in_process(instance=instance, partition_key=day).success
        assert (
            defs.resolve_job_def("ingest_crm_contacts")
            .execute_in_process(instance=instance)
            .success
        )

    shard_file = minato_env.data_dir / "shards" / f"{BROKEN}.sqlite"
    shard_file.rename(shard_file.with_suffix(".away"))  # the shard is unreachable
    location = tmp_path / "location.py"
    location.write_text(LOCATION)
    served = dagster_dev(Path(sys.executable).parent, location, env, tmp_path / "dagster_dev.log")
    with served:
        port = served.port
        client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=60)
        key = str(day_shard_key(day, BROKEN))
        run_id = _wait(
            "the code location and a launched run",
            lambda: client.submit_job_execution("ingest_shards", tags={"dagster/partition": key}),
            300,
            served,
        )
        assert _wait("the run to finish", lambda: _finished(port, run_id), 300, served) == (
            "FAILURE"
        )

        # The alert: recorded in the warehouse, and visible on the failed partition in the UI.
        warehouse = DuckDBWarehouse()
        alert = _wait(
            "the alert record",
            lambda: [a for a in read_alerts(warehouse, "open") if a["first_run_id"] == run_id],
            180,
            served,
        )[0]
        assert alert["failure_class"] == "shard-unreachable"
        assert f"lake/orders@{key}" in alert["pending"]
        assert BROKEN in alert["title"] and run_id in alert["run_url"]

        def alert_texts() -> list[str]:
            observed = graphql(
                port, OBSERVATIONS, {"key": {"path": ["lake", "orders"]}, "partition": key}
            )["assetOrError"]["assetObservations"]
            texts = [e.get("text", "") for o in observed for e in o["metadataEntries"]]
            return [t for t in texts if "Runbook:" in t and BROKEN in t]

        # The sensor records the alert first, then reports the observation.
        _wait("the alert on the partition's page", alert_texts, 60, served)

        # On-call repairs the shard and re-executes from failure: the partition succeeds.
        shard_file.with_suffix(".away").rename(shard_file)
        launched = graphql(port, REEXECUTE, {"id": run_id})["launchRunReexecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        retry_id = launched["run"]["runId"]
        assert _wait("the re-execution", lambda: _finished(port, retry_id), 300, served) == (
            "SUCCESS"
        )
        assert _run(port, retry_id)["jobName"] == "ingest_shards"  # re-execution keeps the job
        _wait(
            "the alert to resolve",
            lambda: [a for a in read_alerts(warehouse, "resolved") if a["first_run_id"] == run_id],
            180,
            served,
        )

        # The warehouse stage follows for exactly that day, in the core lane.
        def warehouse_runs() -> list[dict]:
            return graphql(port, RUNS, {"job": "warehouse_daily"})["runsOrError"]["results"]

        [stage] = _wait("the warehouse stage run", warehouse_runs, 300, served)
        tags = {t["key"]: t["value"] for t in stage["tags"]}
        assert tags["dagster/partition"] == day
        assert tags["minato/lane"] == "core"
        assert tags["dagster/sensor_name"] == "warehouse_after_ingestion_sensor"
        status = _wait("the stage to finish", lambda: _finished(port, stage["runId"]), 600, served)
        assert status == "SUCCESS", served.log.read_text()[-3000:]
