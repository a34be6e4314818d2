"""Where a change environment keeps its files, and its record.

Each environment owns one folder, `<data>/envs/<name>/`: the production manifest it was
created from (`state/manifest.json`, dbt's `--state`), its dbt profile, dbt's target folder,
on DuckDB its warehouse file, and `environment.json` (what `create` cloned and `build` built).
`drop` removes the folder, so nothing else may be written outside it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from resources import settings

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


class ChangeEnvironmentError(ValueError):
    """An environment that cannot be created, built, diffed or dropped as asked."""


def validate_name(name: str) -> str:
    """Names become file names, DuckDB database names and BigQuery dataset prefixes."""
    if not _NAME.match(name) or name in settings.ENVIRONMENTS:
        raise ChangeEnvironmentError(
            f"environment name {name!r}: use 1-40 lower-case letters, digits, '-' or '_', "
            f"starting with a letter, and not one of {', '.join(settings.ENVIRONMENTS)}"
        )
    return name


@dataclass
class Record:
    """What `environment.json` holds."""

    name: str
    warehouse: str  # duckdb | bigquery
    source: str  # the environment it was cloned from (`prod`)
    source_database: str  # DuckDB: the production file; BigQuery: its project
    prefix: str  # BigQuery: this environment's dataset prefix
    duckdb_file: str = ""  # DuckDB: this environment's file
    cloned: list[str] = field(default_factory=list)  # unique ids
    built: list[str] = field(default_factory=list)  # unique ids
    datasets: list[str] = field(default_factory=list)  # BigQuery datasets created


@dataclass(frozen=True)
class EnvironmentPaths:
    name: str
    root: Path

    @classmethod
    def of(cls, name: str, env: settings.Environment | None = None) -> EnvironmentPaths:
        return cls(validate_name(name), settings.data_dir(env) / "envs" / name)

    @property
    def prefix(self) -> str:
        """BigQuery: the environment's datasets are its name and production's, `pr_123_lake`."""
        return self.name.replace("-", "_") + "_"

    def duckdb_path(self, database: str) -> Path:
        """DuckDB names a database after its file: the environment's file has production's
        name, so that relations, sources included, are the same in both manifests (dbt's
        `state:modified` compares sources' rendered database) and a deferred `ref` reads the
        environment's own copy."""
        return self.root / f"{database}.duckdb"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def target_dir(self) -> Path:
        return self.root / "target"

    @property
    def record_path(self) -> Path:
        return self.root / "environment.json"

    def exists(self) -> bool:
        return self.record_path.exists()

    def read(self) -> Record:
        if not self.exists():
            raise ChangeEnvironmentError(
                f"environment {self.name!r} does not exist ({self.record_path} not found): "
                f"run `minato env create {self.name}` first"
            )
        return Record(**json.loads(self.record_path.read_text()))

    def write(self, record: Record) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.record_path.write_text(json.dumps(asdict(record), indent=2) + "\n")
