"""Sharded source databases: SQLite files on the embedded default, MySQL/MariaDB in production.

The shard list lives in a YAML file (`shards.yaml`, or the file named by `MINATO_SHARDS_FILE`).
URLs may reference environment variables as `${NAME}`, so passwords never sit in the file:

    shards:
      - name: shard_01
        url: mysql+pymysql://etl:${SHARD_01_PASSWORD}@10.0.0.1:3306/ec
        timezone: Asia/Tokyo   # the zone the shard's DATETIME values are written in

Sources are read only: SQLite files are opened read-only, so a wrong path fails loudly instead
of creating an empty database that would look like an empty shard.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pyarrow as pa
import sqlalchemy as sa
import yaml
from pydantic import Field

from resources.identifiers import validate_identifier

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ShardConfigError(ValueError):
    """The shards file is missing, malformed or references an unset environment variable."""


@dataclass(frozen=True)
class ShardSpec:
    name: str
    url_template: str
    timezone: str

    def url(self) -> str:
        """The URL with `${VAR}` references resolved; only called when connecting."""

        def resolve(match: re.Match[str]) -> str:
            value = os.environ.get(match.group(1))
            if value is None:
                raise ShardConfigError(
                    f"shard {self.name}: environment variable {match.group(1)} is not set"
                )
            return value

        return _ENV_REFERENCE.sub(resolve, self.url_template)


def load_shard_specs(path: str | Path) -> list[ShardSpec]:
    """Read and validate the shards file. Needs no credential: URLs are resolved lazily."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ShardConfigError(f"{path}: shards file not found") from exc
    entries = (document or {}).get("shards")
    if not isinstance(entries, list) or not entries:
        raise ShardConfigError(f"{path}: expected a non-empty list under 'shards'")
    specs: list[ShardSpec] = []
    for index, entry in enumerate(entries):
        where = f"{path}: shards[{index}]"
        if not isinstance(entry, dict):
            raise ShardConfigError(f"{where}: expected a mapping")
        missing = {"name", "url", "timezone"} - set(entry)
        if missing:
            raise ShardConfigError(f"{where}: missing key(s) {sorted(missing)}")
        try:
            validate_identifier(entry["name"], what="shard name")
            ZoneInfo(entry["timezone"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ShardConfigError(f"{where}: {exc}") from exc
        specs.append(ShardSpec(entry["name"], str(entry["url"]), entry["timezone"]))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ShardConfigError(f"{path}: duplicate shard names in {names}")
    return specs


@dataclass(frozen=True)
class PhysicalTable:
    """One client's table on a shard, e.g. `orders_101` of logical table `orders`."""

    logical: str
    client_id: str
    name: str


def _as_text(value: Any) -> str | None:
    """Lake values are the source's text: types are decided, reviewed, in `cleansing`."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, decimal.Decimal | int | float | dt.date | str):
        return str(value)
    return str(value)


class ShardConnection:
    """An open connection to one shard, reused for discovery and every table read."""

    def __init__(self, spec: ShardSpec, conn: sa.Connection) -> None:
        self.spec = spec
        self._conn = conn

    def discover(self, logical_tables: Sequence[str]) -> list[PhysicalTable]:
        """All client tables of the given logical tables, from the catalog in one query."""
        for name in logical_tables:
            validate_identifier(name, what="logical table")
        pattern = re.compile(rf"^({'|'.join(map(re.escape, logical_tables))})_(\d+)$")
        if self._conn.dialect.name == "sqlite":
            query = "SELECT name FROM sqlite_master WHERE type = 'table'"
        else:
            query = (
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'"
            )
        found = []
        for (name,) in self._conn.exec_driver_sql(query):
            match = pattern.fullmatch(name)
            if match:
                found.append(PhysicalTable(match.group(1), match.group(2), name))
        return sorted(found, key=lambda t: (t.logical, int(t.client_id)))

    def read_window(
        self, table: PhysicalTable, column: str, start: dt.datetime, end: dt.datetime
    ) -> pa.Table:
        """Rows whose `column` lies in [start, end) as text columns.

        `start`/`end` are aware instants; the shard stores naive wall-clock values in its own
        timezone, so the bounds are converted to that zone before they reach the query.
        """
        validate_identifier(table.name, what="table")
        validate_identifier(column, what="column")
        zone = ZoneInfo(self.spec.timezone)
        low = start.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
        high = end.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
        quote = self._conn.dialect.identifier_preparer.quote
        result = self._conn.execute(
            sa.text(
                f"SELECT * FROM {quote(table.name)} "
                f"WHERE {quote(column)} >= :low AND {quote(column)} < :high"
            ),
            {"low": low, "high": high},
        )
        names = list(result.keys())
        rows = result.fetchall()
        columns = {
            name: pa.array([_as_text(row[i]) for row in rows], type=pa.string())
            for i, name in enumerate(names)
        }
        return pa.table(columns)


class ShardSource(dg.ConfigurableResource):
    """The sharded order-management databases."""

    shards_file: str = Field(description="YAML file listing shards (name, url, timezone).")

    def specs(self) -> list[ShardSpec]:
        return load_shard_specs(self.shards_file)

    def spec(self, name: str) -> ShardSpec:
        for spec in self.specs():
            if spec.name == name:
                return spec
        raise ShardConfigError(f"{self.shards_file}: no shard named {name!r}")

    @contextlib.contextmanager
    def connect(self, name: str) -> Iterator[ShardConnection]:
        spec = self.spec(name)
        url = sa.make_url(spec.url())
        if url.get_backend_name() == "sqlite" and url.database:
            # Read-only: a wrong path must fail, not silently create an empty shard.
            url = url.set(database=f"file:{url.database}?mode=ro", query={"uri": "true"})
        engine = sa.create_engine(url, pool_pre_ping=True)
        try:
            with engine.connect() as conn:
                yield ShardConnection(spec, conn)
        finally:
            engine.dispose()
