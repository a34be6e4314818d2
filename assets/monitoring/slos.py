"""Freshness SLOs (`metadata/slos.yml`): when each asset's business day is due, scored per day.

A deadline is Tokyo wall-clock time on a day after the business day. `per: day_shard` asks for
every shard's partition of the day (Dagster's freshness policies judge an asset as a whole, not
each shard, so this check is Minato's own); `per: day` for the day's partition. A day is met
when every partition it asks for was first materialized by the deadline; the report names the
shards that were late or never came.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import dagster as dg
from pydantic import Field, field_validator

from assets.constants import BUSINESS_TIMEZONE
from resources.config_files import StrictModel, read_yaml, unique_entries
from resources.identifiers import validate_identifier
from resources.settings import REPO_ROOT

SLOS_FILE = REPO_ROOT / "metadata" / "slos.yml"
REPORT_DAYS = 30


class SloConfigError(ValueError):
    """The SLO file is missing, malformed or names an asset twice."""


class SloSpec(StrictModel):
    """One asset's deadline, owner and severity."""

    asset: str
    per: Literal["day", "day_shard"]
    due: dt.time
    days_after: int = Field(ge=0, le=7)
    owner: str = Field(min_length=1)
    severity: Literal["critical", "warning"]

    @field_validator("asset")
    @classmethod
    def _asset_path(cls, value: str) -> str:
        parts = value.split("/")
        if len(parts) < 2:
            raise ValueError(f"{value!r}: expected an asset key such as lake/orders")
        for part in parts:
            validate_identifier(part, what="asset key part")
        return value

    @field_validator("due", mode="before")
    @classmethod
    def _hh_mm(cls, value: object) -> object:
        # YAML 1.1 reads an unquoted 6:00 as 360 (base 60): insist on "HH:MM" text.
        if not isinstance(value, str) or not re.fullmatch(r"\d{2}:\d{2}", value):
            raise ValueError(f'{value!r}: expected a quoted time such as "06:00" (Asia/Tokyo)')
        return value

    @property
    def key(self) -> dg.AssetKey:
        return dg.AssetKey(self.asset.split("/"))

    def deadline(self, day: dt.date) -> dt.datetime:
        """When business day `day` is due, as an aware datetime in Asia/Tokyo."""
        due_day = day + dt.timedelta(days=self.days_after)
        return dt.datetime.combine(due_day, self.due, ZoneInfo(BUSINESS_TIMEZONE))


def load_slos(path: Path | str = SLOS_FILE) -> tuple[SloSpec, ...]:
    document = read_yaml(path, SloConfigError)
    return tuple(unique_entries(document, "slos", SloSpec, SloConfigError, "slo", key="asset"))


@cache
def slos() -> tuple[SloSpec, ...]:
    return load_slos()


@dataclass(frozen=True)
class DayVerdict:
    asset: str
    business_day: dt.date
    deadline: dt.datetime
    met: bool
    late: tuple[str, ...]  # partitions materialized after the deadline
    missing: tuple[str, ...]  # partitions never materialized
    owner: str
    severity: str

    def describe(self) -> str:
        if self.met:
            return f"{self.asset} {self.business_day}: met"
        parts = []
        if self.missing:
            parts.append(f"missing {', '.join(self.missing)}")
        if self.late:
            parts.append(f"late {', '.join(self.late)}")
        return (
            f"{self.asset} {self.business_day}: MISSED (due {self.deadline:%Y-%m-%d %H:%M} JST; "
            f"{'; '.join(parts)}; owner {self.owner}, {self.severity})"
        )


def first_materialized(
    instance: dg.DagsterInstance, key: dg.AssetKey, partitions: Sequence[str]
) -> dict[str, dt.datetime]:
    """When each partition was first materialized (UTC), for those that were."""
    first: dict[str, dt.datetime] = {}
    cursor = None
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=list(partitions)),
            limit=1000,
            cursor=cursor,
            ascending=True,
        )
        for record in page.records:
            if record.partition_key is not None and record.partition_key not in first:
                first[record.partition_key] = dt.datetime.fromtimestamp(record.timestamp, dt.UTC)
        if not page.has_more:
            return first
        cursor = page.cursor


def score(
    instance: dg.DagsterInstance,
    spec: SloSpec,
    days: Sequence[dt.date],
    shards: Sequence[str],
) -> list[DayVerdict]:
    """Met or missed, per business day, for the days whose deadline has passed."""
    wanted = {
        day: [f"{day}|{shard}" for shard in shards] if spec.per == "day_shard" else [str(day)]
        for day in days
    }
    first = first_materialized(instance, spec.key, [p for ps in wanted.values() for p in ps])
    verdicts = []
    for day, partitions in wanted.items():
        deadline = spec.deadline(day)
        missing = tuple(p for p in partitions if p not in first)
        late = tuple(p for p in partitions if p in first and first[p] > deadline)
        verdicts.append(
            DayVerdict(
                asset=spec.asset,
                business_day=day,
                deadline=deadline,
                met=not missing and not late,
                late=_short(late, spec),
                missing=_short(missing, spec),
                owner=spec.owner,
                severity=spec.severity,
            )
        )
    return verdicts


def _short(partitions: tuple[str, ...], spec: SloSpec) -> tuple[str, ...]:
    # A day × shard partition of a known day is named by its shard.
    return tuple(p.split("|")[1] for p in partitions) if spec.per == "day_shard" else partitions


def days_due(spec: SloSpec, now: dt.datetime, count: int = REPORT_DAYS) -> list[dt.date]:
    """The last `count` business days whose deadline has passed at `now`."""
    today = now.astimezone(ZoneInfo(BUSINESS_TIMEZONE)).date()
    last = today - dt.timedelta(days=spec.days_after)
    if spec.deadline(last) > now:
        last -= dt.timedelta(days=1)
    return [last - dt.timedelta(days=n) for n in range(count - 1, -1, -1)]
