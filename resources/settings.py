"""Settings: what the environment variables say, with the embedded default where they are unset.

Pure functions of the environment (`os.environ` unless another mapping is given): they read,
never write. Production sets variables; a fresh checkout sets none and runs on local files under
`data/`. dbt reads the same variables in `dbt_project/profiles.yml`, whose `env_var` defaults
say the same thing in Jinja (tests/test_settings.py renders the profile to prove they agree).

| variable                 | embedded default            | production             |
| `MINATO_DATA_DIR`        | `<repo>/data`               | (unused)               |
| `MINATO_WAREHOUSE`       | `duckdb` (dev)              | `bigquery`             |
| `MINATO_DUCKDB_PATH`     | `<data>/warehouse.duckdb`   | —                      |
| `MINATO_SHARDS_FILE`     | `<repo>/shards.yaml`        | your shards file       |
| `MINATO_LANDING`         | `local`                     | `s3`                   |
| `MINATO_LANDING_DIR`     | `<data>/landing`            | —                      |
| `MINATO_CRM_DESTINATION` | `sqlite`                    | `postgres`             |
| `MINATO_CRM_SQLITE_PATH` | `<data>/crm.sqlite`         | —                      |
| `MINATO_PARTITIONS_START`| `2025-01-01`                | first day of history   |
| `MINATO_ENV`             | `dev`                       | `prod`                 |
| `MINATO_BIGQUERY_MAX_BYTES_BILLED` | `100000000000` (100 GB) | your guard     |

The README lists every variable, production-only ones included.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"

Environment = Mapping[str, str]

DEFAULT_MAX_BYTES_BILLED = 100 * 10**9  # 100 GB


def _env(env: Environment | None) -> Environment:
    return os.environ if env is None else env


def data_dir(env: Environment | None = None) -> Path:
    """Where the embedded default keeps its files (relative paths: from the repository)."""
    return REPO_ROOT / _env(env).get("MINATO_DATA_DIR", "data")


def embedded_defaults(env: Environment | None = None) -> dict[str, str]:
    """The value every defaulted variable takes when it is unset."""
    data = data_dir(env)
    deployment = _env(env).get("MINATO_ENV", "dev")
    return {
        "MINATO_DATA_DIR": str(data),
        "MINATO_WAREHOUSE": "duckdb" if deployment == "dev" else "bigquery",
        "MINATO_DUCKDB_PATH": str(data / "warehouse.duckdb"),
        "MINATO_SHARDS_FILE": str(REPO_ROOT / "shards.yaml"),
        "MINATO_LANDING": "local",
        "MINATO_LANDING_DIR": str(data / "landing"),
        "MINATO_CRM_DESTINATION": "sqlite",
        "MINATO_CRM_SQLITE_PATH": str(data / "crm.sqlite"),
        "MINATO_PARTITIONS_START": "2025-01-01",
        "MINATO_ENV": "dev",
        # The cost guard of every BigQuery job Minato starts, dbt's included (profiles.yml).
        "MINATO_BIGQUERY_MAX_BYTES_BILLED": str(DEFAULT_MAX_BYTES_BILLED),
    }


def effective(env: Environment | None = None) -> dict[str, str]:
    """The environment as Minato sees it: defaults, overridden by what is set."""
    env = _env(env)
    return {**embedded_defaults(env), **env}


def setting(name: str, env: Environment | None = None) -> str | None:
    """One variable's value, its embedded default, or None."""
    return effective(env).get(name)


def setting_path(value: str | None, variable: str, env: Environment | None = None) -> Path:
    """A resource's configured path, or else `variable`'s value or embedded default."""
    return Path(value) if value else Path(effective(env)[variable])


def path_field(what: str, variable: str) -> Any:
    """A resource field for a path that may be left unset: the resource then reads
    `setting_path(None, variable)` when it is used, i.e. in the run's environment."""
    return Field(
        default=None,
        description=f"{what}; unset: {variable}, or its embedded default (resources/settings.py).",
    )


def warehouse_kind(env: Environment | None = None) -> str:
    """`duckdb` | `bigquery`: also the dbt target and the anomaly engine."""
    return effective(env)["MINATO_WAREHOUSE"]


def shards_file(env: Environment | None = None) -> Path:
    return setting_path(None, "MINATO_SHARDS_FILE", env)


def partitions_start(env: Environment | None = None) -> str:
    return effective(env)["MINATO_PARTITIONS_START"]


def sensor_interval_s(default: int, env: Environment | None = None) -> int:
    """How often the warehouse and alert sensors evaluate: MINATO_SENSOR_INTERVAL_S, else each
    sensor's own default (a deployment that wants recovery to follow sooner sets it lower)."""
    value = effective(env).get("MINATO_SENSOR_INTERVAL_S")
    if value is None:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"MINATO_SENSOR_INTERVAL_S={value!r}: expected whole seconds >= 1")
    return int(value)


ENVIRONMENTS = ("dev", "staging", "prod")


def minato_env(env: Environment | None = None) -> str:
    """`dev` | `staging` | `prod`: the deployment environment (labels, prefixes, alert channel)."""
    value = effective(env)["MINATO_ENV"]
    if value not in ENVIRONMENTS:
        raise ValueError(f"MINATO_ENV={value!r}: expected one of {', '.join(ENVIRONMENTS)}")
    return value


def bigquery_location(env: Environment | None = None) -> str:
    return effective(env).get("MINATO_BIGQUERY_LOCATION") or "asia-northeast1"


def dataset_prefix(env: Environment | None = None) -> str:
    """BigQuery's dataset prefix: MINATO_BIGQUERY_DATASET_PREFIX, else the environment's:
    none in prod, `staging_` in staging, `dev_<user>_` in dev, so that two developers never
    write the same datasets. dbt computes the same default in Jinja (sources.yml and
    generate_schema_name.sql; tests/test_settings.py renders both)."""
    values = effective(env)
    if "MINATO_BIGQUERY_DATASET_PREFIX" in values:
        return values["MINATO_BIGQUERY_DATASET_PREFIX"]
    name = minato_env(env)
    if name != "dev":
        return {"prod": "", "staging": "staging_"}[name]
    user = values.get("USER", "local").lower().replace(".", "_").replace("-", "_")
    if not re.fullmatch(r"[a-z0-9_]+", user):
        raise ValueError(
            f"USER={values.get('USER')!r} cannot name a dataset: set MINATO_BIGQUERY_DATASET_PREFIX"
        )
    return f"dev_{user}_"


_INSTANCE_FILES = {"dev": "dagster.yaml", "staging": "deploy/dagster.prod.yaml"}
_ALERT_CHANNELS = {"dev": "#data-alerts-dev", "staging": "#data-alerts-staging"}


@dataclass(frozen=True)
class Deployment:
    """What MINATO_ENV sets; each part still yields to its own variable where it has one."""

    name: str  # dev | staging | prod
    dbt_target: str  # = MINATO_WAREHOUSE: duckdb in dev, bigquery in staging and prod
    dataset_prefix: str  # BigQuery datasets
    dagster_instance: Path  # the file to install as $DAGSTER_HOME/dagster.yaml
    alert_channel: str  # MINATO_SLACK_CHANNEL


def deployment(env: Environment | None = None) -> Deployment:
    name = minato_env(env)
    values = effective(env)
    return Deployment(
        name=name,
        dbt_target=warehouse_kind(env),
        dataset_prefix=dataset_prefix(env),
        dagster_instance=REPO_ROOT / _INSTANCE_FILES.get(name, "deploy/dagster.prod.yaml"),
        alert_channel=values.get("MINATO_SLACK_CHANNEL")
        or _ALERT_CHANNELS.get(name, "#data-alerts"),
    )


def maximum_bytes_billed(env: Environment | None = None) -> int:
    """The cost guard of every BigQuery job: queries that would bill more fail."""
    return int(effective(env)["MINATO_BIGQUERY_MAX_BYTES_BILLED"])
