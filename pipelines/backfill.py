"""Full historical backfill from the command line: chunked, resumable, reconciled.

The range is cut into chunks of whole business days across every shard; each chunk is one run
(one transaction per lake table), so a crash loses at most the chunk in flight. Running the same
command again skips every chunk whose partitions are already materialized in the Dagster
instance and goes on from there. The Dagster UI does the same with a backfill of the lake
assets (a bounded number of partitions per run) and "re-execute failed".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from assets.partitions import day_shard_key, partition_range_tags, shard_names
from assets.run_lanes import BACKFILL_LANE, lane_tags
from pipelines.jobs import ingest_shards_job


@dataclass(frozen=True)
class BackfillChunk:
    first_day: dt.date
    last_day: dt.date
    keys: tuple[str, ...]

    @property
    def tags(self) -> dict[str, str]:
        return {**partition_range_tags(self.keys[0], self.keys[-1]), **lane_tags(BACKFILL_LANE)}


def plan_chunks(start: dt.date, end: dt.date, days_per_run: int) -> list[BackfillChunk]:
    if end < start or days_per_run < 1:
        raise ValueError(f"empty backfill: {start}..{end} in runs of {days_per_run} day(s)")
    shards = sorted(shard_names())
    chunks, first = [], start
    while first <= end:
        last = min(first + dt.timedelta(days=days_per_run - 1), end)
        days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
        keys = tuple(str(day_shard_key(day, shard)) for day in days for shard in shards)
        chunks.append(BackfillChunk(first, last, keys))
        first = last + dt.timedelta(days=1)
    return chunks


@dataclass(frozen=True)
class BackfillResult:
    ran: list[BackfillChunk]
    skipped: list[BackfillChunk]
    failed: BackfillChunk | None


def run_backfill(
    assets: Sequence[dg.AssetsDefinition],
    resources: Mapping[str, Any],
    instance: dg.DagsterInstance,
    start: dt.date,
    end: dt.date,
    *,
    days_per_run: int = 7,
    force: bool = False,
    echo: Callable[[str], None] = print,
) -> BackfillResult:
    """Materialize `assets` for every (day, shard) in [start, end], chunk by chunk.

    Stops at the first failed chunk (its partitions are left exactly as they were); run again
    to resume. `force` re-runs chunks that are already materialized.
    """
    chunks = plan_chunks(start, end, days_per_run)
    # The runs bear the ingestion job's name in the UI, not an anonymous one.
    job = dg.Definitions(
        assets=assets,
        resources=resources,
        jobs=[dg.define_asset_job(ingest_shards_job.name, selection=list(assets))],
    ).resolve_job_def(ingest_shards_job.name)
    ran: list[BackfillChunk] = []
    skipped: list[BackfillChunk] = []
    for number, chunk in enumerate(chunks, start=1):
        where = f"chunk {number}/{len(chunks)} {chunk.first_day}..{chunk.last_day}"
        if not force and _materialized(instance, assets, chunk):
            skipped.append(chunk)
            echo(f"{where}: already loaded, skipped")
            continue
        result = job.execute_in_process(instance=instance, tags=chunk.tags, raise_on_error=False)
        if not result.success:
            echo(f"{where}: FAILED (run {result.run_id}); run the same command again to resume")
            return BackfillResult(ran, skipped, chunk)
        ran.append(chunk)
        echo(f"{where}: loaded {len(chunk.keys)} partitions (run {result.run_id})")
    return BackfillResult(ran, skipped, None)


def _materialized(
    instance: dg.DagsterInstance, assets: Sequence[dg.AssetsDefinition], chunk: BackfillChunk
) -> bool:
    wanted = set(chunk.keys)
    return all(
        wanted <= instance.get_materialized_partitions(key)
        for asset in assets
        for key in asset.keys
    )
