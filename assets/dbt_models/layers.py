"""dbt assets, one definition per warehouse stage so partitioning can differ between them.

- `warehouse`: cleansing, cleansing_secret, the staging models generated from source request
  forms (`minato generate source`) and the products snapshot (rebuilt per run; on BigQuery the
  incremental cleansing models replace only the days from the run's business day on, see
  `cleansing_window_vars`);
- `fact`: incremental facts, partitioned by business day; each run passes the partition window
  to dbt as vars `min_date`/`max_date`, and dbt touches only those days;
- `marts`: widetable, role_*, service_*, monitoring.

The specs are translated once per manifest and cached (specs_cache.py), so the code location
loads fast at thousands of models; each stage is a list of multi-assets (one unless the stage
has more than specs_cache.CHUNK_MODELS models).

`dbt build` runs each model's tests right after it; a failing `severity: error` test stops the
step, so nothing downstream (later stages, anomaly detection, syncs) runs on bad data.
"""

import datetime as dt
import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject

from assets.dbt_models.costs import run_id_for_dbt, stream_with_costs
from assets.dbt_models.project import dbt_project, parse_project, require_manifest
from assets.dbt_models.specs_cache import minato_dbt_assets, write_cached_specs
from assets.dbt_models.translator import MinatoDbtTranslator
from assets.partitions import RANGE_START_TAG, business_days
from resources import settings

WAREHOUSE_SELECT = (
    "path:models/warehouse/cleansing path:models/warehouse/cleansing_secret"
    " path:models/warehouse/staging path:snapshots"
)
FACT_SELECT = "path:models/warehouse/fact"
MARTS_SELECT = "path:models/marts"
STAGE_SELECTS = [WAREHOUSE_SELECT, FACT_SELECT, MARTS_SELECT]
PARTITION_TAG = "dagster/partition"


def translator() -> MinatoDbtTranslator:
    return MinatoDbtTranslator(warehouse_kind=settings.warehouse_kind())


def prepare_stages(project: DbtProject) -> Path:
    """Parse the project and cache every stage's specs: the build step behind `minato
    manifest` (and `dagster dev`'s preparation). Returns the manifest's path."""
    manifest = parse_project(project)
    write_cached_specs(project, translator(), STAGE_SELECTS)
    return manifest


def business_day_vars(window: dg.TimeWindow) -> dict[str, str]:
    """dbt vars for a partition window: [start, end) in Asia/Tokyo -> inclusive dates."""
    return {
        "min_date": window.start.date().isoformat(),
        "max_date": (window.end - dt.timedelta(days=1)).date().isoformat(),
    }


def cleansing_window_vars(
    tags: Mapping[str, str], days: dg.DailyPartitionsDefinition
) -> dict[str, str]:
    """dbt vars for the warehouse stage of a run of business days: from its first day to the
    latest one. The days after the run's are replaced too, because a version a re-run day now
    holds must leave the later day that held it (each version is kept at its earliest day).
    No vars (a full rebuild) for a run without a business day."""
    first = tags.get(RANGE_START_TAG) or tags.get(PARTITION_TAG)
    try:
        day = dt.date.fromisoformat(first or "")
    except ValueError:
        return {}
    latest = days.get_last_partition_key()
    last = max(day, dt.date.fromisoformat(latest)) if latest else day
    return {"min_date": day.isoformat(), "max_date": last.isoformat()}


@dataclass(frozen=True)
class DbtStages:
    warehouse: list[dg.AssetsDefinition]
    fact: list[dg.AssetsDefinition]
    marts: list[dg.AssetsDefinition]

    @property
    def assets(self) -> list[dg.AssetsDefinition]:
        return [*self.warehouse, *self.fact, *self.marts]


def _rebuilt_stage(
    project: DbtProject,
    models: MinatoDbtTranslator,
    name: str,
    select: str,
    *,
    windowed: bool = False,
) -> list[dg.AssetsDefinition]:
    """An unpartitioned stage: every run builds (and tests) all of its models; `windowed`
    passes the run's business days to the incremental models (cleansing on BigQuery)."""

    @minato_dbt_assets(
        project=project, translator=models, select=select, name=name, pool="warehouse"
    )
    def _build(context: dg.AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
        dbt_vars = cleansing_window_vars(context.run.tags, business_days()) if windowed else {}
        args = ["build", "--vars", json.dumps(dbt_vars)] if dbt_vars else ["build"]
        with run_id_for_dbt(context.run.run_id):
            invocation = dbt.cli(args, context=context)
        yield from stream_with_costs(invocation)

    return _build


def _fact_stage(project: DbtProject, models: MinatoDbtTranslator) -> list[dg.AssetsDefinition]:
    @minato_dbt_assets(
        project=project,
        translator=models,
        select=FACT_SELECT,
        name="fact_models",
        partitions_def=business_days(),
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="warehouse",
    )
    def fact_models(context: dg.AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
        dbt_vars = business_day_vars(context.partition_time_window)
        with run_id_for_dbt(context.run.run_id):
            invocation = dbt.cli(["build", "--vars", json.dumps(dbt_vars)], context=context)
        yield from stream_with_costs(invocation)

    return fact_models


def build_stages(project: DbtProject) -> DbtStages:
    """The three stages over a parsed project; a missing manifest is one clear error."""
    require_manifest(project)
    models = translator()
    return DbtStages(
        warehouse=_rebuilt_stage(
            project, models, "warehouse_models", WAREHOUSE_SELECT, windowed=True
        ),
        fact=_fact_stage(project, models),
        marts=_rebuilt_stage(project, models, "mart_models", MARTS_SELECT),
    )


@functools.cache
def dbt_stages() -> DbtStages:
    """The stages of the repository's dbt project."""
    return build_stages(dbt_project())


def dbt_model_assets() -> list[dg.AssetsDefinition]:
    return dbt_stages().assets
