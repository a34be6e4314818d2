"""`monitoring/slo_report`: each SLO of metadata/slos.yml, met or missed per business day over the
last 30 days, in `monitoring.slo_report`; its check names the shards that missed the latest day.
"""

import datetime as dt
import functools

import dagster as dg
import pyarrow as pa

from assets.constants import MONITORING_SCHEMA
from assets.monitoring.slos import DayVerdict, days_due, score, slos
from assets.partitions import shard_names
from resources import settings
from resources.warehouse import Warehouse

SLO_REPORT_KEY = dg.AssetKey([MONITORING_SCHEMA, "slo_report"])
SLO_REPORT_TABLE = "slo_report"
SHARDS_ON_TIME_CHECK = "every_shard_on_time"

SLO_REPORT_SCHEMA = pa.schema(
    [
        ("asset", pa.string()),
        ("business_day", pa.date32()),
        ("deadline", pa.timestamp("us", tz="UTC")),
        ("met", pa.bool_()),
        ("late", pa.list_(pa.string())),
        ("missing", pa.list_(pa.string())),
        ("owner", pa.string()),
        ("severity", pa.string()),
        ("reported_at", pa.timestamp("us", tz="UTC")),
    ]
)


def report_rows(verdicts: list[DayVerdict], now: dt.datetime) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "asset": v.asset,
                "business_day": v.business_day,
                "deadline": v.deadline.astimezone(dt.UTC),
                "met": v.met,
                "late": list(v.late),
                "missing": list(v.missing),
                "owner": v.owner,
                "severity": v.severity,
                "reported_at": now,
            }
            for v in verdicts
        ],
        schema=SLO_REPORT_SCHEMA,
    )


def summary_markdown(verdicts: list[DayVerdict]) -> str:
    lines = ["| asset | met | missed | owner | severity |", "|---|---|---|---|---|"]
    for spec in slos():
        mine = [v for v in verdicts if v.asset == spec.asset]
        met = sum(v.met for v in mine)
        lines.append(
            f"| {spec.asset} | {met} | {len(mine) - met} | {spec.owner} | {spec.severity} |"
        )
    return "\n".join(lines)


def shards_on_time(verdicts: list[DayVerdict]) -> dg.AssetCheckResult:
    """The latest scored day of every per-shard SLO: which shards were late or missing."""
    per_shard = {s.asset for s in slos() if s.per == "day_shard"}
    latest: dict[str, DayVerdict] = {}
    for verdict in verdicts:
        newer = (
            verdict.asset not in latest or verdict.business_day > latest[verdict.asset].business_day
        )
        if verdict.asset in per_shard and newer:
            latest[verdict.asset] = verdict
    missed = [v for v in latest.values() if not v.met]
    return dg.AssetCheckResult(
        check_name=SHARDS_ON_TIME_CHECK,
        asset_key=SLO_REPORT_KEY,
        passed=not missed,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(v.describe() for v in missed) or "every shard arrived on time",
        metadata={"missed": dg.MetadataValue.json([v.describe() for v in missed])},
    )


def build_slo_report() -> dg.AssetsDefinition:
    @dg.asset(
        key=SLO_REPORT_KEY,
        group_name=MONITORING_SCHEMA,
        description="Each freshness SLO of metadata/slos.yml (deadline in Asia/Tokyo, owner, "
        "severity), met or missed per business day over the last 30 days; late and missing "
        "shards named (monitoring.slo_report).",
        pool="warehouse",
        kinds={settings.warehouse_kind()},
        check_specs=[
            dg.AssetCheckSpec(
                SHARDS_ON_TIME_CHECK,
                asset=SLO_REPORT_KEY,
                description="Every shard of the latest business day arrived by its SLO deadline; "
                "a failure names the shards that were late or missing.",
            )
        ],
    )
    def slo_report(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
        now = dt.datetime.now(dt.UTC)
        first_day = dt.date.fromisoformat(settings.partitions_start())
        verdicts: list[DayVerdict] = []
        for spec in slos():
            days = [day for day in days_due(spec, now) if day >= first_day]
            verdicts.extend(score(context.instance, spec, days, shard_names()))
        # One partition per asset: a re-run replaces each asset's rows (idempotent).
        warehouse.replace_partitions(
            MONITORING_SCHEMA,
            SLO_REPORT_TABLE,
            report_rows(verdicts, now),
            ["asset"],
            [(spec.asset,) for spec in slos()],
        )
        missed = [v.describe() for v in verdicts if not v.met]
        return dg.MaterializeResult(
            metadata={
                "summary": dg.MetadataValue.md(summary_markdown(verdicts)),
                "days_missed": len(missed),
                "missed": dg.MetadataValue.json(missed[-50:]),
            },
            check_results=[shards_on_time(verdicts)],
        )

    return slo_report


@functools.cache
def slo_report_assets() -> tuple[dg.AssetsDefinition, ...]:
    return (build_slo_report(),)
