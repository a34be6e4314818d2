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
import re
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Annotated, Protocol
from urllib.parse import quote
from zoneinfo import ZoneInfo

import dagster as dg
import sqlalchemy as sa
from pydantic import Field, field_validator, model_validator

from resources import settings
from resources.config_files import (
    StrictModel,
    identifier,
    read_yaml,
    unique_entries,
)

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ShardConfigError(ValueError):
    """The shards file is missing, malformed or references an unset environment variable."""


def zone_name(value: str) -> str:
    """`value` if it names an IANA time zone; else a ValueError for the configuration file."""
    try:
        ZoneInfo(value)
    except (ValueError, KeyError) as exc:
        raise ValueError(f"no time zone named {value!r}") from exc
    return value


# Fargate's valid task sizes: CPU units (1024 = 1 vCPU) -> memory MiB (first, last, step).
FARGATE_SIZES = {
    256: (512, 2048, 512),
    512: (1024, 4096, 1024),
    1024: (2048, 8192, 1024),
    2048: (4096, 16384, 1024),
    4096: (8192, 30720, 1024),
    8192: (16384, 61440, 4096),
    16384: (32768, 122880, 8192),
}


class RunSize(StrictModel):
    """CPU and memory of one shard's run: a larger shard gets a larger task or pod."""

    cpu: int = Field(description="CPU units, 1024 = 1 vCPU (ECS task CPU).")
    memory: int = Field(description="Memory in MiB.")

    @model_validator(mode="after")
    def _fargate(self) -> RunSize:
        if self.cpu not in FARGATE_SIZES:
            raise ValueError(f"cpu {self.cpu} is not a Fargate size: {list(FARGATE_SIZES)}")
        first, last, step = FARGATE_SIZES[self.cpu]
        if self.memory not in range(first, last + 1, step):
            raise ValueError(
                f"Fargate runs cpu {self.cpu} with {first}..{last} MiB in steps "
                f"of {step}, not {self.memory}"
            )
        return self


class ShardSpec(StrictModel):
    """One entry of the shards file."""

    name: Annotated[str, identifier("shard name")] = Field(
        description="Shard name: a partition of every shard-ingested table."
    )
    url_template: str = Field(
        alias="url", description="SQLAlchemy URL; `${NAME}` is read from the environment."
    )
    timezone: str | None = Field(
        default=None,
        description="The zone the shard writes DATETIMEs in; unset (MySQL only): the server's.",
    )
    size: RunSize | None = Field(
        default=None, description="CPU and memory of the shard's run; unset: the launcher's."
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else zone_name(value)

    def url(self) -> str:
        """The URL with `${VAR}` references resolved; only called when connecting."""

        def resolve(match: re.Match[str]) -> str:
            value = settings.setting(match.group(1))
            if value is None:
                raise ShardConfigError(
                    f"shard {self.name}: environment variable {match.group(1)} is not set"
                )
            return value

        return _ENV_REFERENCE.sub(resolve, self.url_template)


def load_shard_specs(path: str | Path) -> list[ShardSpec]:
    """Read and validate the shards file. Needs no credential: URLs are resolved lazily."""
    document = read_yaml(path, ShardConfigError)
    return unique_entries(document, "shards", ShardSpec, ShardConfigError, "shard")


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
    """An open connection to one shard, and what reading it takes: its URL, dialect and zone.

    Discovery and batched reads of its client tables live in `assets/ingestion`.
    """

    def __init__(self, spec: ShardSpec, url: sa.URL, conn: sa.Connection) -> None:
        self.spec = spec
        # The configured URL, not the connection's (SQLite is opened through a read-only URI).
        self.url = url
        self.connection = conn

    @property
    def dialect(self) -> str:
        """`sqlite`, or `mysql` (MariaDB included): the SQL its queries are written in."""
        return "sqlite" if self.url.get_backend_name() == "sqlite" else "mysql"

    def connectorx_url(self) -> str:
        """The URL as connectorx spells it (MySQL and MariaDB only)."""
        backend = self.url.get_backend_name()
        if backend not in {"mysql", "mariadb"}:
            raise ValueError(f"no batched reader for {backend} shards")
        auth = quote(self.url.username or "", safe="")
        if self.url.password:
            auth += ":" + quote(str(self.url.password), safe="")
        host, port = self.url.host or "127.0.0.1", self.url.port or 3306
        return f"mysql://{auth}@{host}:{port}/{self.url.database}"

    @cached_property
    def timezone(self) -> str:
        """The zone the shard writes DATETIMEs in: declared, or else the server's own.

        Declaring it is safer: a snapshot restored onto a server running in another zone
        (the seed platform's 9-hour bug) reports the server's zone, not the data's.
        """
        if self.spec.timezone is not None:
            return self.spec.timezone
        if self.dialect == "sqlite":
            raise ShardConfigError(f"shard {self.spec.name}: SQLite shards must declare timezone")
        session, system = self.connection.exec_driver_sql(
            "SELECT @@session.time_zone, @@system_time_zone"
        ).one()
        return server_zone(self.spec.name, system if session == "SYSTEM" else session)


class ShardSource(dg.ConfigurableResource):
    """The sharded order-management databases."""

    shards_file: str | None = settings.path_field(
        "YAML file listing shards (name, url, timezone)", "MINATO_SHARDS_FILE"
    )

    @property
    def shards_path(self) -> Path:
        return settings.setting_path(self.shards_file, "MINATO_SHARDS_FILE")

    def specs(self) -> list[ShardSpec]:
        return load_shard_specs(self.shards_path)

    def spec(self, name: str) -> ShardSpec:
        for spec in self.specs():
            if spec.name == name:
                return spec
        raise ShardConfigError(f"{self.shards_path}: no shard named {name!r}")

    def connect(self, name: str) -> contextlib.AbstractContextManager[ShardConnection]:
        return connect_spec(self.spec(name))


class Shards(Protocol):
    """What shard ingestion reads through: the shards file (`ShardSource`), or one database
    known only at run time, such as an instance restored from a snapshot."""

    def spec(self, name: str) -> ShardSpec: ...

    def connect(self, name: str) -> contextlib.AbstractContextManager[ShardConnection]: ...


@contextlib.contextmanager
def connect_spec(spec: ShardSpec) -> Iterator[ShardConnection]:
    """An open connection to the shard `spec` describes, closed on exit."""
    url = engine_url = sa.make_url(spec.url())
    if url.get_backend_name() == "sqlite" and url.database:
        # Read-only: a wrong path must fail, not silently create an empty shard.
        engine_url = url.set(database=f"file:{url.database}?mode=ro", query={"uri": "true"})
    engine = sa.create_engine(engine_url, pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            yield ShardConnection(spec, url, conn)
    finally:
        engine.dispose()
