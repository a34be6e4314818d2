"""Syncs into an HTTP JSON API (HttpJsonDestination) against a local server that injects 429 with
Retry-After, 500s, timeouts, per-record and whole-batch refusals, and a process killed mid-sync.
The server counts every application of every record: none may be lost or applied twice."""

import collections
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from assets.sync.delivery import RateLimiter
from assets.sync.engine import run_sync
from assets.sync.specs import SyncSpec
from bench.sync_api_server import ApiServer, ApiState
from resources.destinations import HttpJsonDestination
from resources.destinations.http import retry_after_seconds
from resources.settings import REPO_ROOT
from resources.warehouse import DuckDBWarehouse
from tests.tables import replace_table

LOG = logging.getLogger("test_sync_http")
SPEC = SyncSpec(
    name="scores",
    source_schema="marts",
    source_model="usage_scores",
    destination="marketing_api",
    destination_table="contacts",
    primary_key={"account_id": "external_id"},
    columns={"score": "usage_score", "segment": "segment"},
    mode="mirror",
    batch_size=3,
    concurrency=2,
)


def source(warehouse: DuckDBWarehouse, ids: range, segment: str = "a", **special: str) -> None:
    segments = [special.get(f"a{i}", segment) for i in ids]
    table = pa.table(
        {
            "account_id": [f"a{i}" for i in ids],
            "score": pa.array([float(i) for i in ids]),
            "segment": segments,
        }
    )
    replace_table(warehouse, "marts", "usage_scores", table)


def destination(api: ApiServer, **settings: object) -> HttpJsonDestination:
    defaults: dict[str, object] = {"timeout_s": 2.0, "backoff_initial_s": 0.01}
    return HttpJsonDestination(base_url=api.url, token="t0ken", **{**defaults, **settings})


def applied_once(state: ApiState, operation: str, ids: range) -> bool:
    counts = {key[0]: n for (op, key), n in state.applied.items() if op == operation}
    return counts == {f"a{i}": 1 for i in ids}


@pytest.fixture
def warehouse(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))


def test_requests_carry_mapping_token_and_idempotency_key(warehouse: DuckDBWarehouse) -> None:
    source(warehouse, range(2))
    with ApiServer(ApiState(captured=[])) as api:
        run_sync(SPEC, warehouse, destination(api), LOG)
    ((path, headers, body),) = api.state.captured
    assert path == "/contacts/upsert"
    assert headers["Authorization"] == "Bearer t0ken"
    assert headers["Idempotency-Key"].startswith("scores/")
    assert body == {
        "key_columns": ["external_id"],
        "records": [
            {"external_id": "a0", "usage_score": 0.0, "segment": "a"},
            {"external_id": "a1", "usage_score": 1.0, "segment": "a"},
        ],
    }
    assert "t0ken" not in repr(destination(api))


def test_429_500_and_timeouts_are_retried_without_doubling(warehouse: DuckDBWarehouse) -> None:
    source(warehouse, range(10))
    faults = collections.deque(["429", "500", "timeout", "500"])
    state = ApiState(faults=faults, retry_after="1", timeout_sleep_s=1.0)
    with ApiServer(state) as api:
        report = run_sync(SPEC, warehouse, destination(api, timeout_s=0.5), LOG)
        assert (report.sent, report.rejected, report.retries) == (10, 0, 4)
        assert (
            state.replays == 1
        )  # The timed-out call had been applied: its replay changed nothing.
        assert applied_once(state, "upsert", range(10))

        source(warehouse, range(2, 10), segment="b")  # a0, a1 leave; the rest change.
        second = run_sync(SPEC, warehouse, destination(api), LOG)
    assert (second.changed, second.removed, second.sent) == (8, 2, 10)
    assert applied_once(state, "delete", range(2))
    assert {r["segment"] for r in state.records["contacts"].values()} == {"b"}
    assert sorted(k[0] for k in state.records["contacts"]) == [f"a{i}" for i in range(2, 10)]


def test_refused_records_are_isolated_kept_and_retried(warehouse: DuckDBWarehouse) -> None:
    # a4 is refused alone by the API (per-record error); a7 makes its whole batch refused (400).
    source(warehouse, range(9), a4="invalid", a7="poison")
    state = ApiState(reject_values=frozenset({"invalid"}), poison_values=frozenset({"poison"}))
    with ApiServer(state) as api:
        first = run_sync(SPEC, warehouse, destination(api), LOG)
        assert (first.sent, first.rejected, first.rejected_outstanding) == (7, 2, 2)
        assert first.splits == 2  # [a6 a7 a8] -> [a6] + [a7 a8] -> [a7] + [a8]
        rejected = warehouse.query_arrow(
            "SELECT account_id, _reason FROM sync_state.scores__rejected ORDER BY 1"
        ).to_pylist()
        assert [r["account_id"] for r in rejected] == ["a4", "a7"]
        assert "invalid record" in rejected[0]["_reason"]
        assert "HTTP 400" in rejected[1]["_reason"]

        state.reject_values = state.poison_values = frozenset()  # Fixed on the API side.
        second = run_sync(SPEC, warehouse, destination(api), LOG)
    assert (second.sent, second.rejected, second.rejected_outstanding) == (2, 0, 0)
    assert applied_once(state, "upsert", range(9))


RESUMABLE_SYNC = """
import logging, sys
from assets.sync.engine import run_sync
from resources.destinations import HttpJsonDestination
from resources.warehouse import DuckDBWarehouse
from tests.test_sync_http import SPEC
destination = HttpJsonDestination(base_url=sys.argv[2], backoff_initial_s=0.01)
run_sync(SPEC, DuckDBWarehouse(path=sys.argv[1]), destination, logging.getLogger("sync"))
"""


def test_killed_sync_resumes_and_applies_every_row_exactly_once(
    warehouse: DuckDBWarehouse,
) -> None:
    rows = range(60)
    source(warehouse, rows)
    with ApiServer(ApiState()) as api:
        process = subprocess.Popen(
            [sys.executable, "-c", RESUMABLE_SYNC, warehouse.path, api.url],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )

        def kill_on_the_fifth_call(calls: int) -> None:
            if calls == 5:  # Applied by the API; the process dies before it hears so.
                os.kill(process.pid, signal.SIGKILL)

        api.state.after_apply = kill_on_the_fifth_call
        assert process.wait(timeout=120) == -signal.SIGKILL
        api.state.after_apply = None
        applied_before = len(api.state.applied)
        assert 0 < applied_before < len(rows)

        report = run_sync(SPEC, warehouse, destination(api), LOG)
    assert report.resumed_batches > 0
    assert api.state.replays >= 1  # The batch applied at the kill was replayed with its key.
    assert applied_once(api.state, "upsert", rows)  # None lost, none applied twice.
    assert report.sent + applied_before >= len(rows)
    assert run_sync(SPEC, warehouse, destination(api), LOG).sent == 0


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # In the past.
    assert retry_after_seconds("soon") is None


def test_rate_limiter_spaces_calls_catches_up_briefly_and_pauses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "sleep", lambda seconds: now.__setitem__(0, now[0] + seconds))
    limiter = RateLimiter(10, clock=lambda: now[0])
    starts = []
    for _ in range(3):
        limiter.acquire()
        starts.append(round(now[0], 3))
    now[0] += 1.0  # Senders held up for a second: only 0.1 s of slots is made up.
    for _ in range(3):
        limiter.acquire()
        starts.append(round(now[0], 3))
    limiter.pause_until(now[0] + 5)  # Retry-After: 5
    limiter.acquire()
    starts.append(round(now[0], 3))
    assert starts == [100.0, 100.1, 100.2, 101.2, 101.2, 101.3, 106.3]
