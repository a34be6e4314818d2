"""The nightly snapshot-restore run: every snapshot source's previous business day, at 03:00
Asia/Tokyo, after the sources' automated snapshots (a snapshot taken before the day ended is
refused by the asset, so an early tick fails loudly rather than loading half a day)."""

import functools

import dagster as dg

from assets.partitions import business_days
from assets.snapshot_restore.assets import SOURCES_FILE_VARIABLE, snapshot_restore_assets
from resources import settings


def snapshot_restore_schedules() -> tuple[dg.ScheduleDefinition, ...]:
    """One schedule over every snapshot source; none when no source is configured."""
    return _schedules(settings.setting(SOURCES_FILE_VARIABLE))


@functools.cache
def _schedules(sources_file: str | None) -> tuple[dg.ScheduleDefinition, ...]:
    assets = snapshot_restore_assets()
    if not assets:
        return ()
    job = dg.define_asset_job(
        "snapshot_restore",
        selection=dg.AssetSelection.assets(*assets),
        partitions_def=business_days(),
        description="Restore each snapshot source's latest snapshot, copy it, delete it.",
    )
    return (
        dg.build_schedule_from_partitioned_job(
            job, hour_of_day=3, name="snapshot_restore_schedule"
        ),
    )
