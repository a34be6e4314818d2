"""Sensors: landed files, a complete business day of ingestion, and failed runs."""

import datetime as dt
import json
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import dagster as dg

from assets.constants import BUSINESS_TIMEZONE
from assets.ingestion.landing_files import (
    CRM_CONTACTS_KEY,
    CRM_CONTACTS_PREFIX,
    SEARCH_CONSOLE_PAGES_KEY,
    SEARCH_CONSOLE_PREFIX,
    is_crm_contacts_file,
    search_console_day,
)
from assets.ingestion.shard_tables import UNRECONCILED_METADATA, shard_table_assets
from assets.partitions import day_partition_keys
from pipelines.jobs import warehouse_daily_job
from resources.landing import LandedFile, LandingStore
from resources.notifications import Notifier

# Object stores report modification times in whole seconds, and a file can land in the same
# second as the previous evaluation's newest file: files this close to the high-water mark are
# remembered by identity rather than skipped by time.
_CLOCK_MARGIN_S = 2.0
# The op of an asset is named after its key: how run config addresses the CRM export's file.
CRM_CONTACTS_OP = CRM_CONTACTS_KEY.to_python_identifier()


@dataclass(frozen=True)
class LandingCursor:
    """High-water mark of modification times, plus the files handled just below it."""

    since: float = float("-inf")
    handled: frozenset[str] = frozenset()

    @staticmethod
    def _identity(landed: LandedFile) -> str:
        return f"{landed.key}@{landed.modified}"

    @classmethod
    def from_json(cls, text: str | None) -> "LandingCursor":
        if not text:
            return cls()
        data = json.loads(text)
        return cls(data["since"], frozenset(data["handled"]))

    def to_json(self) -> str:
        return json.dumps({"since": self.since, "handled": sorted(self.handled)})

    def is_new(self, landed: LandedFile) -> bool:
        return landed.modified >= self.since and self._identity(landed) not in self.handled

    def advance(self, listed: list[LandedFile]) -> "LandingCursor":
        if not listed:
            return self
        since = max(self.since, max(f.modified for f in listed) - _CLOCK_MARGIN_S)
        recent = {self._identity(f) for f in listed if f.modified >= since}
        kept = {i for i in self.handled if float(i.rsplit("@", 1)[1]) >= since}
        return LandingCursor(since, frozenset(recent | kept))


@dg.sensor(
    target=[SEARCH_CONSOLE_PAGES_KEY, CRM_CONTACTS_KEY],
    minimum_interval_seconds=60,
    # Automation starts switched off (like the schedule): a deployment turns it on in the UI
    # once its sources are real, instead of replaying every file already in the landing zone.
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Loads each SaaS export once, in arrival order, from the landing folder or "
    "bucket; a file re-uploaded later is loaded again.",
)
def landing_sensor(context: dg.SensorEvaluationContext, landing: LandingStore) -> dg.SensorResult:
    files = sorted(
        landing.list_files(SEARCH_CONSOLE_PREFIX) + landing.list_files(CRM_CONTACTS_PREFIX)
    )
    cursor = LandingCursor.from_json(context.cursor)
    new = [f for f in files if cursor.is_new(f)]
    requests = []
    for landed in new:
        run_key = f"{landed.key}@{landed.modified}"
        day = search_console_day(landed.key)
        if day is not None:
            requests.append(
                dg.RunRequest(
                    run_key=run_key,
                    asset_selection=[SEARCH_CONSOLE_PAGES_KEY],
                    partition_key=day,
                )
            )
        elif is_crm_contacts_file(landed.key):
            requests.append(
                dg.RunRequest(
                    run_key=run_key,
                    asset_selection=[CRM_CONTACTS_KEY],
                    run_config={"ops": {CRM_CONTACTS_OP: {"config": {"file_key": landed.key}}}},
                )
            )
        else:
            context.log.warning(f"ignoring unexpected landed file {landed.key}")
    return dg.SensorResult(run_requests=requests, cursor=cursor.advance(files).to_json())


@dg.sensor(
    job=warehouse_daily_job,
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Starts the warehouse stage for a business day once every shard of it is in the "
    "lake; re-ingesting a partition later starts it again.",
)
def warehouse_after_ingestion_sensor(context: dg.SensorEvaluationContext) -> list[dg.RunRequest]:
    today = dt.datetime.now(ZoneInfo(BUSINESS_TIMEZONE)).date()
    requests = []
    for days_back in (1, 2, 3):
        day = (today - dt.timedelta(days=days_back)).isoformat()
        expected = set(day_partition_keys(day))
        latest: list[int] = []
        for asset in shard_table_assets():
            by_partition = context.instance.get_latest_storage_id_by_partition(
                asset.key, dg.DagsterEventType.ASSET_MATERIALIZATION, expected
            )
            if set(by_partition) != expected:
                break  # a shard of that day is missing: wait for it
            unreconciled = _unreconciled(context.instance, asset.key, by_partition)
            if unreconciled:
                # The blocking check failed and alerted; re-ingesting the partition (on-call)
                # materializes it again, and the next evaluation goes on.
                context.log.warning(
                    f"{day}: {asset.key.to_user_string()} does not reconcile with the source "
                    f"for {sorted(unreconciled)}; not starting the warehouse stage"
                )
                break
            latest.append(max(by_partition.values()))
        else:
            # The run key changes whenever any partition of the day is re-materialized.
            requests.append(dg.RunRequest(run_key=f"{day}@{max(latest)}", partition_key=day))
    return requests


def _unreconciled(
    instance: dg.DagsterInstance, key: dg.AssetKey, storage_ids: dict[str, int]
) -> set[str]:
    """Partitions whose latest materialization recorded a reconciliation mismatch."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, storage_ids=sorted(set(storage_ids.values()))),
        limit=len(storage_ids),
    ).records
    flagged: set[str] = set()
    for record in records:
        materialization = record.asset_materialization
        value = materialization.metadata.get(UNRECONCILED_METADATA) if materialization else None
        if value is not None:
            flagged.update(value.value)  # type: ignore[arg-type]
    return flagged & set(storage_ids)


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts failed runs to Slack (SLACK_BOT_TOKEN) or logs them.",
)
def run_failure_alert(context: dg.RunFailureSensorContext, notifier: Notifier) -> None:
    run = context.dagster_run
    partition = run.tags.get("dagster/partition", "-")
    notifier.send(
        f":rotating_light: run {run.run_id} of job `{run.job_name}` failed "
        f"(partition {partition}): {context.failure_event.message}\n"
        "On-call: open the run in the Dagster UI and re-execute from failure, or select the "
        "failed partitions of the asset and materialize them."
    )
