"""dbt assets, one definition per warehouse stage so partitioning can differ between them.

- `warehouse_models`: cleansing, cleansing_secret and the products snapshot (rebuilt per run);
- `fact_models`: incremental facts, partitioned by business day; each run passes the
  partition window to dbt as vars `min_date`/`max_date`, and dbt touches only those days;
- `mart_models`: widetable, role_*, service_*, monitoring.

The specs are translated once per manifest and cached (specs_cache.py), so the code location
loads fast at thousands of models; each stage is a list of multi-assets (one unless the stage
has more than specs_cache.CHUNK_MODELS models).

`dbt build` runs each model's tests right after it; a failing `severity: error` test stops the
step, so nothing downstream (later stages, anomaly detection, syncs) runs on bad data.
"""

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource

from assets.dbt_models.project import minato_dbt_project
from assets.dbt_models.specs_cache import minato_dbt_assets
from assets.dbt_models.translator import MinatoDbtTranslator
from assets.partitions import business_days

translator = MinatoDbtTranslator()


def business_day_vars(window: dg.TimeWindow) -> dict[str, str]:
    """dbt vars for a partition window: [start, end) in Asia/Tokyo -> inclusive dates."""
    return {
        "min_date": window.start.date().isoformat(),
        "max_date": (window.end - dt.timedelta(days=1)).date().isoformat(),
    }


def _rebuilt_stage(name: str, select: str) -> list[dg.AssetsDefinition]:
    """An unpartitioned stage: every run builds (and tests) all of its models."""

    @minato_dbt_assets(
        project=minato_dbt_project,
        translator=translator,
        select=select,
        name=name,
        pool="warehouse",
    )
    def _build(context: dg.AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
        yield from dbt.cli(["build"], context=context).stream()

    return _build


warehouse_models = _rebuilt_stage(
    "warehouse_models",
    "path:models/warehouse/cleansing path:models/warehouse/cleansing_secret path:snapshots",
)


@minato_dbt_assets(
    project=minato_dbt_project,
    translator=translator,
    select="path:models/warehouse/fact",
    name="fact_models",
    partitions_def=business_days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="warehouse",
)
def fact_models(context: dg.AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
    dbt_vars = business_day_vars(context.partition_time_window)
    yield from dbt.cli(["build", "--vars", json.dumps(dbt_vars)], context=context).stream()


mart_models = _rebuilt_stage("mart_models", "path:models/marts")

dbt_model_assets = [*warehouse_models, *fact_models, *mart_models]
