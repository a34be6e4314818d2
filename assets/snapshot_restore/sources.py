"""Snapshot sources: databases Minato never reads live. Their latest RDS snapshot is restored
into a temporary instance, copied into the lake and the instance deleted.

The list lives in the YAML file named by `MINATO_SNAPSHOT_SOURCES_FILE` (unset: no snapshot
sources; `metadata/snapshot_sources.yml` is the documented example):

    snapshot_sources:
      - name: billing                 # lake tables `lake.billing_<table>`; the `_shard` value
        instance: billing-prod        # whose snapshots are restored (never connected to)
        url: mysql+pymysql://etl:${BILLING_DB_PASSWORD}@{endpoint}/billing
        timezone: Asia/Tokyo
        max_snapshot_age_hours: 30
        instance_class: db.t3.large
        tables:
          - {name: invoices, primary_key: [invoice_id], datetime_columns: [issued_at, updated_at]}
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator

from assets.ingestion.lake_tables import LakeTable
from resources.config_files import (
    StrictModel,
    entries,
    entry_label,
    identifier,
    read_yaml,
    validate_entry,
)
from resources.shards import ShardSpec, zone_name

ENDPOINT_PLACEHOLDER = "{endpoint}"
# RDS instance identifiers: a letter, then letters, digits and single hyphens.
_RDS_IDENTIFIER = re.compile(r"^[A-Za-z](?:-?[A-Za-z0-9])*$")


class SnapshotSourceError(ValueError):
    """The snapshot sources file is missing or malformed."""


class SnapshotTable(StrictModel):
    name: Annotated[str, identifier("table name")] = Field(
        description="Logical name: the source's tables are `<name>_<client id>`."
    )
    primary_key: tuple[Annotated[str, identifier("column name")], ...] = Field(min_length=1)
    datetime_columns: tuple[Annotated[str, identifier("column name")], ...] = ()
    change_column: Annotated[str, identifier("column name")] = "updated_at"


class SnapshotSource(StrictModel):
    """One entry of the snapshot sources file."""

    name: Annotated[str, identifier("source name")]
    instance: str = Field(description="RDS instance identifier whose snapshots are restored.")
    url_template: str = Field(
        alias="url",
        description="SQLAlchemy URL of the restored database; `{endpoint}` becomes its "
        "host:port, `${NAME}` is read from the environment when connecting.",
    )
    timezone: str = Field(
        description="The zone the source writes DATETIMEs in. Required: a restored instance "
        "runs in UTC whatever zone the data was written in."
    )
    max_snapshot_age_hours: float = Field(gt=0)
    instance_class: str = "db.t3.medium"
    subnet_group: str | None = None
    security_groups: tuple[str, ...] = ()
    tables: tuple[SnapshotTable, ...] = Field(min_length=1)

    @field_validator("instance")
    @classmethod
    def _instance(cls, value: str) -> str:
        if not _RDS_IDENTIFIER.fullmatch(value) or len(value) > 63:
            raise ValueError(f"{value!r} is not an RDS instance identifier")
        return value

    @field_validator("url_template")
    @classmethod
    def _url(cls, value: str) -> str:
        if ENDPOINT_PLACEHOLDER not in value:
            raise ValueError(
                f"must contain {ENDPOINT_PLACEHOLDER}: the restored instance's host:port "
                "(the production instance is never contacted)"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return zone_name(value)

    def lake_tables(self) -> tuple[LakeTable, ...]:
        """`lake.<source>_<table>` for each table, read from the source's `<table>_<client>`."""
        return tuple(
            LakeTable(
                f"{self.name}_{table.name}",
                table.primary_key,
                table.datetime_columns,
                f"{table.name} of the {self.name} snapshot source, as stored (text).",
                change_column=table.change_column,
                source=table.name,
            )
            for table in self.tables
        )

    def shard_spec(self, address: str) -> ShardSpec:
        """The restored database as the shard reader sees it, at `address` (host:port)."""
        return ShardSpec.model_validate(
            {
                "name": self.name,
                "url": self.url_template.replace(ENDPOINT_PLACEHOLDER, address),
                "timezone": self.timezone,
            }
        )


@functools.cache
def load_snapshot_sources(path: str | Path) -> tuple[SnapshotSource, ...]:
    """Read and validate the snapshot sources file (no credential, no network)."""
    document = read_yaml(path, SnapshotSourceError)
    sources: list[SnapshotSource] = []
    for location, item in entries(document, "snapshot_sources", SnapshotSourceError):
        label = entry_label("snapshot source", item, int(location[-1]))
        source = validate_entry(
            document, SnapshotSource, item, location, label, SnapshotSourceError
        )
        if any(s.name == source.name for s in sources):
            raise SnapshotSourceError(
                document.problem((*location, "name"), "defined twice", label, "name")
            )
        sources.append(source)
    return tuple(sources)
