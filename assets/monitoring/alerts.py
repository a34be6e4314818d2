"""Alerts for people woken at night: what failed, why, where to look, and what to do.

An alert's first line names the failed asset partitions (shard and lake table included) and the
root cause: the innermost error message, without frames. Then the run link and the runbook entry
of its failure class (docs/runbook.md). Failures with the same fingerprint (assets, shard,
failure class and the cause with its numbers blanked) within `ALERT_WINDOW` are one alert and one
Slack thread; a later success of every asset partition it lists resolves it, with a reply in the
thread. Every alert is a row of `monitoring.alerts`, so it is visible without Slack.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from assets.constants import MONITORING_SCHEMA
from assets.partitions import DAY_DIMENSION, SHARD_DIMENSION
from resources.notifications import Notifier
from resources.warehouse import Warehouse

ALERTS_TABLE = "alerts"
# Repeats of one failure within this window go to the open alert's thread, not a new alert.
ALERT_WINDOW = dt.timedelta(hours=12)
# A root cause is one line; beyond this it is cut (the run page has the rest).
_CAUSE_CHARS = 400

# Failure class → runbook anchor, decided on the root cause's text (first match wins). The
# messages are Minato's own (assets/ingestion/shard_errors.py, shard_catalog.py, dbt, syncs).
FAILURE_CLASSES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("authentication", re.compile(r"authentication|access denied|password", re.I)),
    ("bigquery-quota-or-cost-guard", re.compile(r"quota|bytes billed|bytesbilled", re.I)),
    (
        "irreconcilable-schema",
        re.compile(r"cannot be unioned|would both be lake column|both client|has no column", re.I),
    ),
    ("reconciliation-mismatch", re.compile(r"reconcil", re.I)),
    ("missing-shard", re.compile(r"missing shard", re.I)),
    (
        "shard-unreachable",
        re.compile(
            r"cannot connect|can't connect|gone away|lost connection|unable to open database"
            r"|not a database|malformed|unknown host|does not exist|timed out|lock wait",
            re.I,
        ),
    ),
    ("dbt-test-failure", re.compile(r"\bdbt\b|test", re.I)),
    ("anomaly", re.compile(r"anomal", re.I)),
    ("rejected-sync-rows", re.compile(r"sync|rejected|rows_failed|destination", re.I)),
)
UNKNOWN_CLASS = "unknown-failure"

ALERTS_SCHEMA = pa.schema(
    [
        ("alert_id", pa.string()),
        ("fingerprint", pa.string()),
        ("status", pa.string()),  # open | resolved
        ("failure_class", pa.string()),
        ("title", pa.string()),
        ("root_cause", pa.string()),
        ("job_name", pa.string()),
        ("first_run_id", pa.string()),
        ("last_run_id", pa.string()),
        ("run_url", pa.string()),
        ("runbook_url", pa.string()),
        # Sorted `asset@partition` entries still failing; resolved when empty.
        ("pending", pa.list_(pa.string())),
        ("failed", pa.list_(pa.string())),
        ("occurrences", pa.int64()),
        ("opened_at", pa.timestamp("us", tz="UTC")),
        ("last_seen_at", pa.timestamp("us", tz="UTC")),
        ("resolved_at", pa.timestamp("us", tz="UTC")),
        ("resolved_by_run_id", pa.string()),
        ("slack_ts", pa.string()),
    ]
)


@dataclass(frozen=True)
class FailedPartition:
    """One asset partition that failed; `partition` is empty for an unpartitioned asset."""

    asset: str  # user string, e.g. `lake/orders`
    partition: str = ""

    @property
    def entry(self) -> str:
        return f"{self.asset}@{self.partition}"

    @property
    def shard(self) -> str | None:
        return _dimension(self.partition, SHARD_DIMENSION)

    @property
    def day(self) -> str | None:
        return _dimension(self.partition, DAY_DIMENSION) or (
            self.partition if re.fullmatch(r"\d{4}-\d{2}-\d{2}", self.partition) else None
        )


def _dimension(partition: str, dimension: str) -> str | None:
    # Day × shard keys are `<day>|<shard>` (assets/partitions.py: day first).
    parts = partition.split("|")
    if len(parts) != 2:
        return None
    return parts[0] if dimension == DAY_DIMENSION else parts[1]


@dataclass(frozen=True)
class Failure:
    """What went wrong in one run, as the alert tells it."""

    job_name: str
    run_id: str  # empty when a sensor found it (a missing shard), not a run
    failed: tuple[FailedPartition, ...]
    root_cause: str

    @property
    def failure_class(self) -> str:
        return classify(self.root_cause)

    @property
    def fingerprint(self) -> str:
        assets = sorted({f.asset for f in self.failed})
        shards = sorted({f.shard or "" for f in self.failed})
        # Numbers change from run to run (row counts, ids, ports); the cause's words do not.
        cause = re.sub(r"\d+", "#", self.root_cause)
        text = "\n".join([self.job_name, *assets, *shards, self.failure_class, cause])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def title(self) -> str:
        """The first line: what failed (assets, partitions, shard, table) and why."""
        return f"{describe_failed(self.failed)} failed: {self.root_cause}"


def describe_failed(failed: Sequence[FailedPartition]) -> str:
    assets = sorted({f.asset for f in failed})
    partitions = sorted({f.partition for f in failed if f.partition})
    shards = sorted({f.shard for f in failed if f.shard})
    what = ", ".join(assets[:3]) + (f" and {len(assets) - 3} more" if len(assets) > 3 else "")
    if partitions:
        shown = ", ".join(partitions[:3])
        what += f" [{shown}{f' and {len(partitions) - 3} more' if len(partitions) > 3 else ''}]"
    if shards:
        what += f" (shard {', '.join(shards)})"
    tables = sorted(a.replace("/", ".") for a in assets if a.startswith("lake/"))
    if tables:
        what += f" table {', '.join(tables)}"
    return what


def classify(root_cause: str) -> str:
    """The runbook entry (docs/runbook.md anchor) of a root cause."""
    for name, pattern in FAILURE_CLASSES:
        if pattern.search(root_cause):
            return name
    return UNKNOWN_CLASS


def one_line(message: str) -> str:
    """The first meaningful line of an error message, without Python's module path."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    line = lines[0] if lines else "unknown error"
    # `sqlalchemy.exc.DatabaseError: (sqlite3.DatabaseError) x` → `DatabaseError: x`
    line = re.sub(r"^(?:[A-Za-z_][\w]*\.)+(?=[A-Za-z_]\w*(?:Error|Exception|Failure)\b)", "", line)
    line = re.sub(r"^(\w+: )\([\w.]+\) ", r"\1", line)
    return line if len(line) <= _CAUSE_CHARS else line[: _CAUSE_CHARS - 1] + "…"


def alert_text(failure: Failure, notifier: Notifier) -> str:
    runbook = runbook_link(notifier, failure.failure_class)
    where = (
        f"Run: {notifier.run_url(failure.run_id)} (job {failure.job_name})"
        if failure.run_id
        else f"Job: {failure.job_name} (not started)"
    )
    return f":rotating_light: {failure.title()}\n{where}\nRunbook: {runbook}"


def runbook_link(notifier: Notifier, failure_class: str) -> str:
    return f"{notifier.runbook_url}#{failure_class}"


def ensure_alerts_table(warehouse: Warehouse) -> str:
    if not warehouse.table_exists(MONITORING_SCHEMA, ALERTS_TABLE):
        empty = ALERTS_SCHEMA.empty_table()
        warehouse.replace_partitions(MONITORING_SCHEMA, ALERTS_TABLE, empty, ["alert_id"], [])
    return warehouse.qualified(MONITORING_SCHEMA, ALERTS_TABLE)


def read_alerts(warehouse: Warehouse, status: str | None = None) -> list[dict]:
    """Alerts, newest first; only those of `status` (`open` | `resolved`) if given."""
    where = ""
    if status is not None:
        if status not in ("open", "resolved"):
            raise ValueError(f"status {status!r}: expected open or resolved")
        where = f"WHERE status = '{status}' "
    return warehouse.query_arrow(
        f"SELECT * FROM {ensure_alerts_table(warehouse)} {where}ORDER BY opened_at DESC"
    ).to_pylist()


def _parse(entries: Sequence[str]) -> list[FailedPartition]:
    return [FailedPartition(*entry.split("@", 1)) for entry in entries]


def _write(warehouse: Warehouse, row: dict) -> None:
    table = pa.Table.from_pylist([row], schema=ALERTS_SCHEMA)
    warehouse.replace_partitions(
        MONITORING_SCHEMA, ALERTS_TABLE, table, ["alert_id"], [(row["alert_id"],)]
    )


@dataclass(frozen=True)
class AlertOutcome:
    alert_id: str
    text: str
    new: bool


def raise_alert(
    warehouse: Warehouse, notifier: Notifier, failure: Failure, now: dt.datetime
) -> AlertOutcome:
    """Open an alert for `failure`, or add it to the open alert with its fingerprint (a reply in
    that alert's thread). Recorded in `monitoring.alerts` either way."""
    fingerprint = failure.fingerprint
    entries = sorted({f.entry for f in failure.failed})
    current = [
        row
        for row in read_alerts(warehouse, "open")
        if row["fingerprint"] == fingerprint and now - row["last_seen_at"] <= ALERT_WINDOW
    ]
    text = alert_text(failure, notifier)
    if current:
        row = current[0]
        if failure.run_id in (row["last_run_id"], row["first_run_id"]):
            return AlertOutcome(row["alert_id"], text, new=False)  # already counted
        notifier.send(f"Again in run {notifier.run_url(failure.run_id)}", row["slack_ts"])
        row = {
            **row,
            "last_run_id": failure.run_id,
            "run_url": notifier.run_url(failure.run_id),
            "pending": sorted(set(row["pending"]) | set(entries)),
            "failed": sorted(set(row["failed"]) | set(entries)),
            "occurrences": row["occurrences"] + 1,
            "last_seen_at": now,
        }
        _write(warehouse, row)
        return AlertOutcome(row["alert_id"], text, new=False)
    alert_id = f"{fingerprint}-{now:%Y%m%dT%H%M%S}"
    # Recorded before it is sent: a Slack outage must not lose the alert.
    row = {
        "alert_id": alert_id,
        "fingerprint": fingerprint,
        "status": "open",
        "failure_class": failure.failure_class,
        "title": failure.title(),
        "root_cause": failure.root_cause,
        "job_name": failure.job_name,
        "first_run_id": failure.run_id,
        "last_run_id": failure.run_id,
        "run_url": notifier.run_url(failure.run_id) if failure.run_id else None,
        "runbook_url": runbook_link(notifier, failure.failure_class),
        "pending": entries,
        "failed": entries,
        "occurrences": 1,
        "opened_at": now,
        "last_seen_at": now,
        "resolved_at": None,
        "resolved_by_run_id": None,
        "slack_ts": None,
    }
    _write(warehouse, row)
    ts = notifier.send(text)
    if ts:
        _write(warehouse, {**row, "slack_ts": ts})
    return AlertOutcome(alert_id, text, new=True)


def resolve_alerts(
    warehouse: Warehouse,
    notifier: Notifier,
    succeeded: Iterable[FailedPartition],
    run_id: str,
    now: dt.datetime,
) -> list[str]:
    """Take the asset partitions a successful run materialized off the open alerts; alerts with
    nothing left failing are resolved, with a reply in their thread. Their ids."""
    done = {p.entry for p in succeeded}
    if not done:
        return []
    resolved = []
    for row in read_alerts(warehouse, "open"):
        pending = sorted(set(row["pending"]) - done)
        if pending == row["pending"]:
            continue
        row = {**row, "pending": pending}
        if not pending:
            row.update(status="resolved", resolved_at=now, resolved_by_run_id=run_id)
            notifier.send(
                f":white_check_mark: resolved: {describe_failed(_parse(row['failed']))} "
                f"succeeded in run {notifier.run_url(run_id)}",
                row["slack_ts"],
            )
            resolved.append(row["alert_id"])
        _write(warehouse, row)
    return resolved
