"""Sync specs: which warehouse model goes to which destination, and how.

Analysts declare syncs in YAML under `assets/sync/syncs/` (one or more per file, under the key
`syncs`); no Python is needed to add one. Every name in a spec ends up in SQL or a request, so
each is validated when the files are loaded, and an error names the file, the line, the sync,
the key and the problem (resources/config_files.py).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

import dagster as dg
from pydantic import Field, field_validator, model_validator

from assets.constants import BUSINESS_TIMEZONE
from resources.config_files import StrictModel, entries, entry_label, read_yaml, validate_entry
from resources.destinations import Operation
from resources.identifiers import validate_identifier

SYNCS_DIR = Path(__file__).with_name("syncs")

# Columns the sync adds itself (state, plan and rejected-rows tables); a spec may not use them.
RESERVED_COLUMNS = frozenset(
    {"_row_hash", "_synced_at", "_change", "_op", "_batch", "_reason", "_rejected_at", "_attempts"}
)

Mode = Literal["upsert", "update", "insert", "mirror"]


class SyncSpecError(ValueError):
    """A sync spec file that cannot be used."""


def _mapping(value: Any) -> Any:
    """`[a, b]` means the same names on both sides; `{a: x}` sends warehouse column a as x."""
    if isinstance(value, list | tuple):
        if len(set(value)) != len(value):
            raise ValueError(f"columns listed twice in {list(value)!r}")
        return {name: name for name in value}
    return value


class SyncSpec(StrictModel):
    """One reverse-ETL sync from a warehouse model to a destination table or object."""

    name: str = Field(description="Sync name: asset `sync/<name>`, state `sync_state.<name>`.")
    description: str = ""
    source_schema: str = Field(description="Warehouse schema (dataset) of the dbt model.")
    source_model: str = Field(description="The dbt model; the sync is an asset downstream of it.")
    destination: str = Field(description="Resource key of the SyncDestination.")
    destination_table: str = Field(description="Table (database) or object (API) written to.")
    primary_key: dict[str, str] = Field(
        min_length=1,
        description="Columns identifying a row on both sides, never NULL: a list (same names) "
        "or a mapping warehouse column -> destination field.",
    )
    columns: dict[str, str] = Field(
        min_length=1,
        description="Further columns sent: a list (same names) or a mapping warehouse column "
        "-> destination field.",
    )
    mode: Mode = Field(
        description="upsert: create or update; update: only records the destination has; "
        "insert: only new keys, never changed afterwards; mirror: upsert and delete rows whose "
        "key left the model."
    )
    batch_size: int = Field(default=500, gt=0, le=50_000, description="Records per call.")
    rate_limit_per_s: float | None = Field(
        default=None, gt=0, description="At most this many destination calls per second."
    )
    concurrency: int = Field(default=1, ge=1, le=32, description="Calls in flight at once.")
    schedule: str | None = Field(
        default=None,
        description=f"Cron ({BUSINESS_TIMEZONE}): sync after each tick once the model has been "
        "updated.",
    )
    automation_condition: Literal["eager"] | None = Field(
        default=None, description="`eager`: sync whenever the model has been updated."
    )

    @field_validator("primary_key", "columns", mode="before")
    @classmethod
    def _lists_are_mappings(cls, value: Any) -> Any:
        return _mapping(value)

    @field_validator("name", "source_schema", "source_model", "destination", "destination_table")
    @classmethod
    def _identifier(cls, value: str) -> str:
        return validate_identifier(value)

    @field_validator("primary_key", "columns")
    @classmethod
    def _column_names(cls, value: dict[str, str]) -> dict[str, str]:
        for source, target in value.items():
            validate_identifier(source, what="column")
            validate_identifier(target, what="destination field")
            if source in RESERVED_COLUMNS or target in RESERVED_COLUMNS:
                raise ValueError(f"column {source!r} is reserved for the sync's own bookkeeping")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        from dagster._utils.schedules import is_valid_cron_string

        if value is not None and not is_valid_cron_string(value):
            raise ValueError(f"{value!r} is not a cron expression such as '0 7 * * *'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SyncSpec:
        overlap = sorted(set(self.primary_key) & set(self.columns))
        if overlap:
            raise ValueError(
                f"key 'columns': primary key columns {overlap!r} must not be repeated here"
            )
        targets = [*self.primary_key.values(), *self.columns.values()]
        twice = sorted({t for t in targets if targets.count(t) > 1})
        if twice:
            raise ValueError(f"key 'columns': destination fields {twice!r} are mapped twice")
        if self.schedule and self.automation_condition:
            raise ValueError("key 'schedule': set either schedule or automation_condition")
        return self

    @property
    def key_columns(self) -> tuple[str, ...]:
        """Primary key, warehouse names."""
        return tuple(self.primary_key)

    @property
    def value_columns(self) -> tuple[str, ...]:
        """Mapped columns besides the key, warehouse names (their hash detects changes)."""
        return tuple(self.columns)

    @property
    def destination_names(self) -> dict[str, str]:
        return {**self.primary_key, **self.columns}

    @property
    def destination_key(self) -> tuple[str, ...]:
        return tuple(self.primary_key.values())

    def operation(self, change: str) -> Operation:
        """Destination operation for a diff row ('added', 'changed' or 'removed')."""
        if change == "removed":
            return "delete"
        return "upsert" if self.mode == "mirror" else self.mode

    @property
    def source_key(self) -> dg.AssetKey:
        return dg.AssetKey([self.source_schema, self.source_model])

    @property
    def asset_key(self) -> dg.AssetKey:
        return dg.AssetKey(["sync", self.name])

    def dagster_automation_condition(self) -> dg.AutomationCondition | None:
        if self.schedule:
            return dg.AutomationCondition.on_cron(self.schedule, BUSINESS_TIMEZONE)
        if self.automation_condition == "eager":
            return dg.AutomationCondition.eager()
        return None


def _load_file(path: Path) -> list[tuple[SyncSpec, int]]:
    """The file's syncs, each with the line its name is on."""
    document = read_yaml(path, SyncSpecError)
    specs = []
    for location, entry in entries(document, "syncs", SyncSpecError):
        label = entry_label("sync", entry, int(location[-1]))
        spec = validate_entry(document, SyncSpec, entry, location, label, SyncSpecError)
        specs.append((spec, document.line((*location, "name"))))
    return specs


def load_sync_specs(path: Path) -> list[SyncSpec]:
    """Read and validate every sync in `path`: one YAML file, or every *.yaml in a folder."""
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    specs: list[SyncSpec] = []
    defined_in: dict[str, Path] = {}
    for file in files:
        for spec, line in _load_file(file):
            if spec.name in defined_in:
                raise SyncSpecError(
                    f"{file}:{line}: sync {spec.name!r}: key 'name': sync defined twice "
                    f"(also in {defined_in[spec.name]})"
                )
            defined_in[spec.name] = file
            specs.append(spec)
    return specs


@functools.cache
def sync_specs() -> tuple[SyncSpec, ...]:
    """The syncs declared in assets/sync/syncs/, read once per process."""
    return tuple(load_sync_specs(SYNCS_DIR))
