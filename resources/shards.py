"""Sharded source databases: SQLite files on the embedded default, MySQL/MariaDB in production.

The shard list lives in a YAML file (`shards.yaml`, or the file named by `MINATO_SHARDS_FILE`).
URLs may reference environment variables as `${NAME}`, so passwords never sit in the file:

    shards:
      - name: shard_01
        url: mysql+pymysql://etl:${SHARD_01_PASSWORD}@10.0.0.1:3306/ec
        timezone: Asia/Tokyo   # the zone the shard's DATETIME values are written in; if
                               # omitted (MySQL only), the server's time zone is used

Sources are read only: SQLite files are opened read-only, so a wrong path fails loudly instead
of creating an empty database that would look like an empty shard.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import sqlalchemy as sa
import yaml
from pydantic import Field

from resources.identifiers import validate_identifier
from resources.shard_catalog import PhysicalTable, catalog_query, discover, physical_tables
from resources.shard_reader import ReadEvent, connectorx_url, read_windows

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ShardConfigError(ValueError):
    """The shards file is missing, malformed or references an unset environment variable."""


@dataclass(frozen=True)
class ShardSpec:
    name: str
    url_template: str
    timezone: str | None  # None: ask the server (MySQL), see ShardConnection.timezone

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
        missing = {"name", "url"} - set(entry)
        if missing:
            raise ShardConfigError(f"{where}: missing key(s) {sorted(missing)}")
        try:
            validate_identifier(entry["name"], what="shard name")
            if entry.get("timezone") is not None:
                ZoneInfo(entry["timezone"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ShardConfigError(f"{where}: {exc}") from exc
        specs.append(ShardSpec(entry["name"], str(entry["url"]), entry.get("timezone")))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ShardConfigError(f"{path}: duplicate shard names in {names}")
    return specs


# Abbreviations MySQL reports for @@system_time_zone, mapped to the zone they stand for here.
_ZONE_ABBREVIATIONS = {"JST": "Asia/Tokyo", "UTC": "UTC", "GMT": "UTC"}
_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")


def server_zone(shard: str, reported: str) -> str:
    """An IANA zone for what a MySQL server reports (`+09:00`, `JST`, `Asia/Tokyo`)."""
    if reported in _ZONE_ABBREVIATIONS:
        return _ZONE_ABBREVIATIONS[reported]
    match = _OFFSET.fullmatch(reported)
    if match and match.group(3) == "00":
        hours = int(match.group(2))
        # POSIX Etc/ zones count the other way round: UTC+9 is Etc/GMT-9.
        return "UTC" if hours == 0 else f"Etc/GMT{'-' if match.group(1) == '+' else '+'}{hours}"
    try:
        ZoneInfo(reported)
    except (ValueError, KeyError) as exc:
        raise ShardConfigError(
            f"shard {shard}: the server's time zone {reported!r} is not a zone Minato knows; "
            "declare `timezone` in the shards file"
        ) from exc
    return reported


class ShardConnection:
    """An open connection to one shard: its catalog, and batched reads of its client tables."""

    def __init__(self, spec: ShardSpec, conn: sa.Connection) -> None:
        self.spec = spec
        self._conn = conn

    def discover(self, logical_tables: Sequence[str]) -> list[PhysicalTable]:
        if self._conn.dialect.name == "sqlite":
            return discover(self._conn, logical_tables)
        # ~12 catalog rows per client table: 1.4 million on a shard of the seed platform, read
        # as Arrow (measured: pymysql spent 4 s in Python on 60,000 rows).
        import connectorx

        catalog = connectorx.read_sql(
            connectorx_url(sa.make_url(self.spec.url())),
            catalog_query("mysql"),
            return_type="arrow",
        )
        rows = zip(*(column.to_pylist() for column in catalog.columns), strict=True)
        return physical_tables(rows, logical_tables)

    def read_windows(
        self,
        tables: Sequence[PhysicalTable],
        change_column: str,
        start: dt.datetime | None,
        end: dt.datetime,
        key_columns: Sequence[str],
    ) -> Iterator[ReadEvent]:
        """Rows of `tables` whose `change_column` lies in [start, end), streamed as events.

        `start`/`end` are aware instants; the shard stores naive wall-clock values in its own
        timezone, so the bounds are converted to that zone before they reach the query.
        `start=None` reads everything before `end`.
        """
        # The configured URL, not the connection's (SQLite is opened through a read-only URI).
        url = sa.make_url(self.spec.url())
        return read_windows(url, self.timezone, tables, change_column, start, end, key_columns)

    @cached_property
    def timezone(self) -> str:
        """The zone the shard writes DATETIMEs in: declared, or else the server's own.

        Declaring it is safer: a snapshot restored onto a server running in another zone
        (the seed platform's 9-hour bug) reports the server's zone, not the data's.
        """
        if self.spec.timezone is not None:
            return self.spec.timezone
        if self._conn.dialect.name == "sqlite":
            raise ShardConfigError(f"shard {self.spec.name}: SQLite shards must declare timezone")
        session, system = self._conn.exec_driver_sql(
            "SELECT @@session.time_zone, @@system_time_zone"
        ).one()
        return server_zone(self.spec.name, system if session == "SYSTEM" else session)


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
