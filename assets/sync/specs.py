"""Sync specs: which warehouse model goes to which destination table, and how.

Specs live in `syncs.yaml`, one entry per sync. Every name in a spec ends up in SQL, so each is
validated as an identifier when the file is loaded, and an error names the file, the sync and the
offending key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import dagster as dg
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from resources.identifiers import validate_identifier

# Columns the sync adds itself (state table and diff result); a spec may not use them.
RESERVED_COLUMNS = frozenset({"_row_hash", "_synced_at", "_change"})


class SyncSpecError(ValueError):
    """A sync spec file that cannot be used."""


class SyncSpec(BaseModel):
    """One reverse-ETL sync from a warehouse model to a destination table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Sync name: asset `sync/<name>`, state `sync_state.<name>`.")
    description: str = ""
    source_schema: str
    source_model: str
    destination: str = Field(description="Resource key of the SyncDestination.")
    destination_table: str
    primary_key: tuple[str, ...] = Field(min_length=1)
    columns: tuple[str, ...] = Field(
        min_length=1, description="Columns sent besides the primary key, same name on both sides."
    )
    mode: Literal["upsert", "mirror"] = Field(
        description="`mirror` also deletes destination rows whose key left the source."
    )
    batch_size: int = Field(default=500, gt=0, le=50_000)

    @field_validator("name", "source_schema", "source_model", "destination", "destination_table")
    @classmethod
    def _identifier(cls, value: str) -> str:
        return validate_identifier(value)

    @field_validator("primary_key", "columns")
    @classmethod
    def _column_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for column in value:
            validate_identifier(column, what="column")
            if column in RESERVED_COLUMNS:
                raise ValueError(f"column {column!r} is reserved for the sync's own bookkeeping")
        if len(set(value)) != len(value):
            raise ValueError(f"columns listed twice in {list(value)!r}")
        return value

    @field_validator("columns")
    @classmethod
    def _key_not_in_columns(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        overlap = sorted(set(info.data.get("primary_key", ())) & set(value))
        if overlap:
            raise ValueError(f"primary key columns {overlap!r} must not be repeated in `columns`")
        return value

    @property
    def source_key(self) -> dg.AssetKey:
        return dg.AssetKey([self.source_schema, self.source_model])

    @property
    def asset_key(self) -> dg.AssetKey:
        return dg.AssetKey(["sync", self.name])


def _describe(error: dict[str, Any]) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "(entry)"
    return f"key {location!r}: {error['msg']}"


def load_sync_specs(path: Path) -> list[SyncSpec]:
    """Read and validate every sync in `path`."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SyncSpecError(f"{path}: cannot read sync specs: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("syncs"), list):
        raise SyncSpecError(f"{path}: key 'syncs': expected a list of sync specs")
    specs: list[SyncSpec] = []
    for index, entry in enumerate(document["syncs"]):
        label = f"sync #{index + 1}"
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            label = f"sync {entry['name']!r}"
        if not isinstance(entry, dict):
            raise SyncSpecError(f"{path}: {label}: expected a mapping, got {type(entry).__name__}")
        try:
            spec = SyncSpec.model_validate(entry)
        except ValidationError as exc:
            problems = "; ".join(_describe(error) for error in exc.errors())
            raise SyncSpecError(f"{path}: {label}: {problems}") from None
        if any(existing.name == spec.name for existing in specs):
            raise SyncSpecError(f"{path}: {label}: key 'name': sync defined twice")
        specs.append(spec)
    return specs
