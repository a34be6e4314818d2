"""Sensors: landed files, a complete business day of ingestion, failed runs and their recovery."""

import datetime as dt
import json
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import dagster as dg

from assets.constants import BUSINESS_TIMEZONE
from assets.dbt_models.layers import dbt_stages
from assets.ingestion.landing_files import (
    CRM_CONTACTS_KEY,
    CRM_CONTACTS_PREFIX,
    SEARCH_CONSOLE_PAGES_KEY,
    SEARCH_CONSOLE_PREFIX,
    is_crm_contacts_file,
    search_console_day,
)
from assets.ingestion.shard_tables import UNRECONCILED_METADATA, shard_table_assets
from assets.monitoring.alerts import (
    FailedPartition,
    Failure,
    raise_alert,
    resolve_alerts,
    runbook_link,
)
from assets.monitoring.run_events import materialized, run_failure, will_be_retried
from assets.monitoring.slos import slos
from assets.partitions import day_partition_keys
from assets.run_lanes import CORE_LANE, lane_tags
from pipelines.jobs import warehouse_daily_job
from resources import settings
from resources.landing import LandedFile, LandingStore
from resources.notifications import Notifier
from resources.warehouse import Warehouse

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
                    tags=lane_tags(CORE_LANE),
                )
            )
        elif is_crm_contacts_file(landed.key):
            requests.append(
                dg.RunRequest(
                    run_key=run_key,
                    asset_selection=[CRM_CONTACTS_KEY],
                    run_config={"ops": {CRM_CONTACTS_OP: {"config": {"file_key": landed.key}}}},
                    tags=lane_tags(CORE_LANE),
                )
            )
        else:
            context.log.warning(f"ignoring unexpected landed file {landed.key}")
    return dg.SensorResult(run_requests=requests, cursor=cursor.advance(files).to_json())


# How far back the warehouse sensor looks for late or repaired lake partitions: far enough for
# a long weekend's repairs, never the whole history (a fresh deployment does not replay it).
WAREHOUSE_LOOKBACK_DAYS = 7


def shards_due(day: dt.date) -> dt.datetime | None:
    """When every shard of `day` is due: the latest deadline of the per-shard freshness SLOs
    (metadata/slos.yml); a day still missing a shard then raises an alert naming it."""
    deadlines = [spec.deadline(day) for spec in slos() if spec.per == "day_shard"]
    return max(deadlines) if deadlines else None


def _stage_ran_after(instance: dg.DagsterInstance, day: str, storage_id: int) -> bool:
    """Whether every day-partitioned warehouse asset was materialized for `day` after the lake
    write `storage_id`: then the stage is up to date for that day."""
    for asset in dbt_stages().fact:
        for key in asset.keys:
            latest = instance.get_latest_storage_id_by_partition(
                key, dg.DagsterEventType.ASSET_MATERIALIZATION, {day}
            )
            if latest.get(day, -1) < storage_id:
                return False
    return True


def _missing_shard_failure(day: str, missing: dict[str, set[str]]) -> Failure:
    shards = sorted({key.split("|")[1] for keys in missing.values() for key in keys})
    failed = tuple(
        FailedPartition(asset, key) for asset, keys in sorted(missing.items()) for key in keys
    )
    cause = (
        f"missing shard {', '.join(shards)} for business day {day}: the warehouse stage for "
        "that day waits until it is ingested"
    )
    return Failure(warehouse_daily_job.name, "", failed, cause)


@dg.sensor(
    job=warehouse_daily_job,
    minimum_interval_seconds=settings.sensor_interval_s(120),
    # On by default: downstream follows late data and repairs without anyone remembering to
    # launch it, and looks back only WAREHOUSE_LOOKBACK_DAYS days.
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Runs the warehouse stage for a business day (of the last 7) once every shard "
    "of it is in the lake and reconciles, and again when a partition of that day is re-ingested "
    "later; alerts when a shard is still missing at its deadline (metadata/slos.yml).",
)
def warehouse_after_ingestion_sensor(
    context: dg.SensorEvaluationContext, notifier: Notifier, warehouse: Warehouse
) -> dg.SensorResult:
    now = dt.datetime.now(ZoneInfo(BUSINESS_TIMEZONE))
    requests = []
    for days_back in range(1, WAREHOUSE_LOOKBACK_DAYS + 1):
        day_date = now.date() - dt.timedelta(days=days_back)
        day = day_date.isoformat()
        expected = set(day_partition_keys(day))
        latest: list[int] = []
        missing: dict[str, set[str]] = {}
        unreconciled: set[str] = set()
        for asset in shard_table_assets():
            by_partition = context.instance.get_latest_storage_id_by_partition(
                asset.key, dg.DagsterEventType.ASSET_MATERIALIZATION, expected
            )
            if set(by_partition) != expected:
                missing[asset.key.to_user_string()] = expected - set(by_partition)
            if by_partition:
                unreconciled |= _unreconciled(context.instance, asset.key, by_partition)
                latest.append(max(by_partition.values()))
        if not latest:
            continue  # nothing of that day landed: the schedule's and freshness' business
        if missing:
            due = shards_due(day_date)
            if due is not None and now >= due:
                failure = _missing_shard_failure(day, missing)
                outcome = raise_alert(warehouse, notifier, failure, now.astimezone(dt.UTC))
                context.log.warning(outcome.text)
            continue  # never aggregate half the shards
        if unreconciled:
            # The blocking check failed and alerted; re-ingesting the partition (on-call)
            # materializes it again, and the next evaluation goes on.
            context.log.warning(
                f"{day}: {sorted(unreconciled)} do not reconcile with the source; not starting "
                "the warehouse stage"
            )
            continue
        if _stage_ran_after(context.instance, day, max(latest)):
            continue
        # The run key changes whenever any partition of the day is re-materialized.
        context.log.info(f"{day}: every shard is in the lake; starting the warehouse stage")
        requests.append(
            dg.RunRequest(
                run_key=f"{day}@{max(latest)}", partition_key=day, tags=lane_tags(CORE_LANE)
            )
        )
    return dg.SensorResult(run_requests=requests)


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
    minimum_interval_seconds=settings.sensor_interval_s(30),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts on a failed run that will not be retried: what failed, the root cause, "
    "the run and runbook links; recorded in monitoring.alerts, posted to Slack (one thread per "
    "failure fingerprint) when SLACK_BOT_TOKEN is set.",
)
def run_failure_alert(
    context: dg.RunFailureSensorContext, notifier: Notifier, warehouse: Warehouse
) -> None:
    run = context.dagster_run
    if will_be_retried(run):
        context.log.info(f"run {run.run_id} failed and will be retried: no alert yet")
        return
    failure = run_failure(context.instance, run, context.failure_event.message or "")
    outcome = raise_alert(warehouse, notifier, failure, dt.datetime.now(dt.UTC))
    # The sensor's tick log in the UI shows the alert too, Slack or not.
    context.log.warning(outcome.text)
    for failed in failure.failed:
        # Shown on the asset's page (Events), beside the partition that failed.
        context.instance.report_runless_asset_event(
            dg.AssetObservation(
                asset_key=dg.AssetKey.from_user_string(failed.asset),
                partition=failed.partition or None,
                metadata={
                    "alert": outcome.text,
                    "root_cause": failure.root_cause,
                    "runbook": dg.MetadataValue.url(runbook_link(notifier, failure.failure_class)),
                    "run": dg.MetadataValue.url(notifier.run_url(run.run_id)),
                },
            )
        )


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    minimum_interval_seconds=settings.sensor_interval_s(30),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Resolves open alerts once every asset partition they list has succeeded "
    "(monitoring.alerts; a reply in the alert's Slack thread).",
)
def alert_resolution_sensor(
    context: dg.RunStatusSensorContext, notifier: Notifier, warehouse: Warehouse
) -> None:
    run = context.dagster_run
    succeeded = materialized(context.instance, run.run_id)
    for alert_id in resolve_alerts(
        warehouse, notifier, succeeded, run.run_id, dt.datetime.now(dt.UTC)
    ):
        context.log.info(f"alert {alert_id} resolved by run {run.run_id}")
