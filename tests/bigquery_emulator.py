"""A real BigQuery emulator (`bqemulator`, DuckDB-backed) for the suite: started once per session
on a free port from its own venv (`make bqemulator`), stopped at the end.

Skipped with the reason on a machine without it; in CI (`tests/servers.py::in_ci`) a missing or
failing emulator fails the tests instead. Emulator gaps are worked around here, never in the
product's SQL: see `EmulatorWarehouse`.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from resources.settings import REPO_ROOT
from resources.warehouse import BigQueryWarehouse
from tests.servers import in_ci

EMULATOR_DIR = REPO_ROOT / ".bqemulator"
PROJECT = "minato-test"
START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Emulator:
    rest_url: str
    project: str

    def client(self) -> Any:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(
            project=self.project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=self.rest_url),
        )


def _unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"BigQuery emulator: {reason}; CI is set, so it must run", pytrace=False)
    pytest.skip(f"BigQuery emulator: {reason} (run `make bqemulator`; CI would fail here)")


def _listening_port(log: Path) -> int | None:
    for line in log.read_text(errors="replace").splitlines():
        if '"rest.listen"' in line:
            return int(json.loads(line)["port"])
    return None


@pytest.fixture(scope="session")
def bigquery_emulator() -> Iterator[Emulator]:
    executable = EMULATOR_DIR / "venv" / "bin" / "bqemulator"
    if not executable.exists():
        _unavailable(f"{executable} is not installed")
    with tempfile.TemporaryDirectory(prefix="minato_bqemulator_") as tmp:
        log = Path(tmp) / "emulator.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    str(executable),
                    "start",
                    "--rest-port=0",
                    "--grpc-port=0",
                    f"--project={PROJECT}",
                    "--log-format=json",
                    "--log-level=info",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                # HOME holds the spatial extension: without it DuckDB would try to download it.
                env={**os.environ, "HOME": str(EMULATOR_DIR / "home")},
            )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            port = None
            while port is None and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
                port = _listening_port(log)
            if port is None:
                tail = log.read_text(errors="replace")[-2000:]
                _unavailable(f"did not start (exit code {process.poll()}):\n{tail}")
            yield Emulator(f"http://127.0.0.1:{port}", PROJECT)
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class EmulatorWarehouse(BigQueryWarehouse):
    """The product's BigQuery warehouse, its client pointed at the emulator."""

    rest_url: str

    def _client(self) -> Any:
        return Emulator(self.rest_url, self.project).client()

    def _view_query(self, view_id: str) -> str:
        # The emulator counts the wildcard's `_TABLE_SUFFIX` among `*`; BigQuery does not.
        return super()._view_query(view_id).replace("SELECT *", "SELECT * EXCEPT (_TABLE_SUFFIX)")


def emulator_warehouse(emulator: Emulator, **fields: Any) -> EmulatorWarehouse:
    return EmulatorWarehouse(project=emulator.project, rest_url=emulator.rest_url, **fields)


# The emulator cannot run `TIMESTAMP(datetime, <zone column>)` (a literal zone works): the copy
# of the project run against it spells the conversion as one CASE branch per zone the shards
# declare. Same result; the product's macro is untouched.
_ZONE_MACRO = re.compile(
    r"(\{% macro bigquery__to_jst_datetime\(.*?\) -%\}).*?(\{%- endmacro %\})", re.S
)


def _zone_by_literal(zones: Sequence[str]) -> str:
    parsed = (
        "PARSE_DATETIME('%Y-%m-%d %H:%M:%S', SUBSTR(REPLACE({{ text_column }}, 'T', ' '), 1, 19))"
    )
    branches = " ".join(
        f"WHEN '{zone}' THEN DATETIME(TIMESTAMP({parsed}, '{zone}'), 'Asia/Tokyo')"
        for zone in zones
    )
    return f"CASE {{{{ source_tz }}}} {branches} END"


def dbt_project_for(
    emulator: Emulator, dataset_prefix: str, folder: Path, zones: Sequence[str]
) -> list[str]:
    """A copy of the dbt project and a profile whose `bigquery` target is the emulator; returns
    the arguments that point `dbt` at them."""
    project = folder / "dbt_project"
    shutil.copytree(
        REPO_ROOT / "dbt_project", project, ignore=shutil.ignore_patterns("target", "logs")
    )
    macro = project / "macros" / "timezones.sql"
    text, replaced = _ZONE_MACRO.subn(
        lambda m: f"{m.group(1)}\n    {_zone_by_literal(zones)}\n{m.group(2)}", macro.read_text()
    )
    assert replaced == 1, "macros/timezones.sql changed: update the emulator's workaround"
    macro.write_text(text)
    profiles = folder / "profiles"
    profiles.mkdir()
    (profiles / "profiles.yml").write_text(
        yaml.safe_dump(
            {
                "minato": {
                    "target": "bigquery",
                    "outputs": {
                        "bigquery": {
                            "type": "bigquery",
                            # A dummy token: the emulator checks none.
                            "method": "oauth-secrets",
                            "token": "emulator",
                            "project": emulator.project,
                            "dataset": f"{dataset_prefix}lake",
                            "location": "asia-northeast1",
                            "api_endpoint": emulator.rest_url,
                            "threads": 2,
                            "job_execution_timeout_seconds": 300,
                            "job_retries": 0,
                        }
                    },
                }
            }
        )
    )
    return ["--project-dir", str(project), "--profiles-dir", str(profiles), "--target", "bigquery"]


@dataclass(frozen=True)
class SentJob:
    """One job as the product's client sent it."""

    sql: str  # "" for a load job
    labels: dict[str, str]
    maximum_bytes_billed: int | None


@dataclass(frozen=True)
class AnsweredJob:
    """Stands in for a query job the emulator cannot run: its rows, no bytes billed."""

    table: Any
    labels: dict[str, str]
    total_bytes_billed: int = 0

    def result(self) -> None:
        # The warehouse's own methods wait for their job before they read it.
        return None

    def to_arrow(self) -> Any:
        return self.table


class _RecordingClient:
    def __init__(self, client: Any, recorder: "JobRecorder") -> None:
        self._client = client
        self._recorder = recorder

    def query(self, sql: str, job_config: Any = None, **kwargs: Any) -> Any:
        labels = dict(job_config.labels) if job_config is not None else {}
        limit = job_config.maximum_bytes_billed if job_config is not None else None
        self._recorder.jobs.append(SentJob(sql, labels, limit))
        for marker, answer in self._recorder.answers.items():
            if marker in sql:
                return AnsweredJob(answer(sql), labels)
        return self._client.query(sql, job_config=job_config, **kwargs)

    def load_table_from_file(self, file: Any, destination: Any, job_config: Any, **kw: Any) -> Any:
        self._recorder.jobs.append(SentJob("", dict(job_config.labels), None))
        return self._client.load_table_from_file(file, destination, job_config=job_config, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@dataclass
class JobRecorder:
    """Every job the emulator warehouses start, as sent. The emulator keeps a load job's labels
    but lists a query job's as empty, so labels are read from the requests. `answers` maps a
    marker to the rows of statements containing it that the emulator cannot run (they are
    recorded, not sent)."""

    jobs: list[SentJob]
    answers: dict[str, Any]


def record_jobs(
    monkeypatch: pytest.MonkeyPatch, answers: dict[str, Any] | None = None
) -> JobRecorder:
    """Record the jobs of every EmulatorWarehouse for the rest of the test."""
    recorder = JobRecorder([], dict(answers or {}))
    client = EmulatorWarehouse._client
    monkeypatch.setattr(
        EmulatorWarehouse, "_client", lambda self: _RecordingClient(client(self), recorder)
    )
    return recorder
