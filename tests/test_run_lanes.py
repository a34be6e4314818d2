"""Run-queue lanes with the real daemon on PostgreSQL storage (deploy/dagster.prod.yaml's
concurrency block): 50 queued backfill runs do not delay a core run beyond one dequeue tick,
and no more backfill runs are in progress than their lane allows.

The probe job's runs wait until the test releases them, so the lanes stay full while the test
looks; every wait has a deadline, and the processes (one process group) are always stopped.
"""

import os
import sys
import time
from pathlib import Path

import pytest
import yaml

from devtools.dagster_ui import Served, free_port, graphql
from resources.settings import REPO_ROOT
from tests.test_dagster_postgres_storage import HOST, PORT, dagster_database  # noqa: F401

BACKFILL_RUNS = 50
# The daemon's dequeue loop runs every 5 s (QueuedRunCoordinator default); a core run must
# leave the queue in the first tick after it is submitted. The margin covers the daemon's own
# latency on a loaded machine (12.4 s measured at load average 10 on 2 cores). Were the lanes
# broken, the core run would wait for the blocked backfill runs, i.e. for ever.
ONE_TICK_S = 5 + 25
PROBE = """
import os, time
import dagster as dg

@dg.op
def wait_for_release() -> None:
    deadline = time.monotonic() + 600
    while not os.path.exists(os.environ["LANE_RELEASE_FILE"]) and time.monotonic() < deadline:
        time.sleep(0.5)

@dg.job
def lane_probe():
    wait_for_release()

defs = dg.Definitions(jobs=[lane_probe])
"""
LAUNCH = """mutation Launch($tags: [ExecutionTag!]) {
  launchRun(executionParams: {
    selector: {repositoryLocationName: "probe", repositoryName: "__repository__",
               jobName: "lane_probe"},
    executionMetadata: {tags: $tags}, runConfigData: {}, mode: "default"}) {
    __typename ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message } } }"""
RUNS = """{ runsOrError { ... on Runs { results { runId status tags { key value } } } } }"""


def _launch(port: int, lane: str) -> str:
    answer = graphql(port, LAUNCH, {"tags": [{"key": "minato/lane", "value": lane}]})
    launched = answer["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def _runs(port: int) -> list[dict]:
    return graphql(port, RUNS)["runsOrError"]["results"]


def _lane(run: dict) -> str:
    return {t["key"]: t["value"] for t in run["tags"]}.get("minato/lane", "")


ACTIVE = {"STARTING", "STARTED"}


@pytest.mark.postgres
def test_core_runs_pass_a_full_backfill_lane(dagster_database, tmp_path) -> None:  # noqa: F811
    home = tmp_path / "dagster_home"
    home.mkdir()
    prod = yaml.safe_load((REPO_ROOT / "deploy" / "dagster.prod.yaml").read_text())
    backfill_limit = next(
        limit["limit"]
        for limit in prod["concurrency"]["runs"]["tag_concurrency_limits"]
        if limit.get("value") == "backfill"
    )
    (home / "dagster.yaml").write_text((REPO_ROOT / "deploy" / "dagster.prod.yaml").read_text())
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        f"load_from:\n  - python_file:\n      relative_path: {probe}\n      location_name: probe\n"
    )
    release = tmp_path / "release"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": HOST,
        "DAGSTER_PG_PORT": str(PORT),
        "DAGSTER_PG_USERNAME": "postgres",
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": dagster_database,
        "LANE_RELEASE_FILE": str(release),
    }
    bin_dir = Path(sys.executable).parent
    port = free_port()
    webserver = [str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)]
    served = Served(
        [
            [*webserver, "-w", str(workspace)],
            [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)],
        ],
        env,
        tmp_path,
        port,
        tmp_path / "dagster.log",
    )
    try:
        with served:
            deadline = time.monotonic() + 300
            while True:  # until the webserver serves the location
                try:
                    backfill_ids = [_launch(port, "backfill")]
                    break
                except (OSError, RuntimeError, AssertionError, KeyError) as exc:
                    if time.monotonic() > deadline or served._exited():
                        pytest.fail(f"location not served: {exc}; see {served.log}")
                    time.sleep(2)
            backfill_ids += [_launch(port, "backfill") for _ in range(BACKFILL_RUNS - 1)]

            # The backfill lane fills up to its limit, and stays there.
            deadline = time.monotonic() + 300
            while True:
                runs = _runs(port)
                active = [r for r in runs if r["status"] in ACTIVE]
                assert len(active) <= backfill_limit, active
                if len(active) == backfill_limit:
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"backfill lane never filled: {len(active)} active")
                time.sleep(1)

            core_id = _launch(port, "core")
            submitted = time.monotonic()
            while True:
                runs = {r["runId"]: r for r in _runs(port)}
                active_backfill = [
                    r for r in runs.values() if r["status"] in ACTIVE and _lane(r) == "backfill"
                ]
                assert len(active_backfill) <= backfill_limit
                if runs[core_id]["status"] != "QUEUED":
                    break
                if time.monotonic() - submitted > ONE_TICK_S:
                    pytest.fail(f"core run still queued after {ONE_TICK_S} s; see {served.log}")
                time.sleep(0.5)
            waited = time.monotonic() - submitted
            print(f"core run left the queue {waited:.1f} s after submission")
            queued = [i for i in backfill_ids if runs[i]["status"] == "QUEUED"]
            assert len(queued) == BACKFILL_RUNS - backfill_limit
    finally:
        release.write_text("go")  # launched runs return, whatever happened
