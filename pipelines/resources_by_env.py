"""The resources of the code location, chosen by environment variables: the embedded default or
production, never by editing code.

| variable                 | embedded default | production |
| `MINATO_WAREHOUSE`       | `duckdb`         | `bigquery` |
| `MINATO_LANDING`         | `local`          | `s3`       |
| `MINATO_CRM_DESTINATION` | `sqlite`         | `postgres` |

The README lists every variable; resources/settings.py gives the defaults. A variable that is
set reaches its resource as a `dg.EnvVar`, so the Dagster UI shows which variable configures
what and secrets never appear in run config; an unset one leaves the field unset, and the
resource takes the embedded default when it is used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource

from assets.dbt_models.project import dbt_cli
from resources import settings
from resources.destinations import PostgresDestination, SQLiteDestination, SyncDestination
from resources.landing import LandingStore, LocalLandingStore, S3LandingStore
from resources.notifications import Notifier
from resources.rds import RdsApi
from resources.shards import ShardSource
from resources.warehouse import BigQueryWarehouse, DuckDBWarehouse, Warehouse


class ConfigurationError(ValueError):
    """An environment variable names an unknown choice."""


def _choice(env: Mapping[str, str], variable: str, choices: set[str]) -> str:
    value = env.get(variable)
    if value is None:
        raise ConfigurationError(f"{variable} is not set: expected one of {sorted(choices)}")
    if value not in choices:
        raise ConfigurationError(f"{variable}={value!r}: expected one of {sorted(choices)}")
    return value


def _optional(variable: str) -> Any:
    """An EnvVar if the variable is set, else None: the resource's own default applies, read
    from resources/settings.py when the resource is used (so it follows the run's
    environment, not the one the code location was loaded in)."""
    return dg.EnvVar(variable) if os.environ.get(variable) else None


def build_warehouse(env: Mapping[str, str] | None = None) -> Warehouse:
    env = os.environ if env is None else env
    if _choice(env, "MINATO_WAREHOUSE", {"duckdb", "bigquery"}) == "bigquery":
        bigquery_settings: dict[str, Any] = {
            "project": dg.EnvVar("MINATO_BIGQUERY_PROJECT"),
            # Unset, the prefix is MINATO_ENV's (dev: per user), as dbt computes it.
            "dataset_prefix": settings.dataset_prefix(env),
        }
        for field, variable in (
            ("location", "MINATO_BIGQUERY_LOCATION"),
            ("dataset_prefix", "MINATO_BIGQUERY_DATASET_PREFIX"),
        ):
            if os.environ.get(variable):
                bigquery_settings[field] = dg.EnvVar(variable)
        if os.environ.get("MINATO_BIGQUERY_MAX_BYTES_BILLED"):
            bigquery_settings["maximum_bytes_billed"] = dg.EnvVar.int(
                "MINATO_BIGQUERY_MAX_BYTES_BILLED"
            )
        return BigQueryWarehouse(**bigquery_settings)
    return DuckDBWarehouse(path=_optional("MINATO_DUCKDB_PATH"))


def build_landing(env: Mapping[str, str] | None = None) -> LandingStore:
    env = os.environ if env is None else env
    if _choice(env, "MINATO_LANDING", {"local", "s3"}) == "s3":
        s3 = S3Resource(endpoint_url=_optional("MINATO_S3_ENDPOINT_URL"))
        return S3LandingStore(
            s3=s3,
            bucket=dg.EnvVar("MINATO_LANDING_S3_BUCKET"),
            prefix=os.environ.get("MINATO_LANDING_S3_PREFIX", ""),
        )
    return LocalLandingStore(root=_optional("MINATO_LANDING_DIR"))


def build_crm_destination(env: Mapping[str, str] | None = None) -> SyncDestination:
    env = os.environ if env is None else env
    if _choice(env, "MINATO_CRM_DESTINATION", {"sqlite", "postgres"}) == "postgres":
        return PostgresDestination(url=dg.EnvVar("MINATO_CRM_POSTGRES_URL"))
    return SQLiteDestination(path=_optional("MINATO_CRM_SQLITE_PATH"))


def build_resources() -> dict[str, Any]:
    """Every resource the code location binds, from the environment and its defaults."""
    env = settings.effective()
    return {
        "warehouse": build_warehouse(env),
        "shards": ShardSource(shards_file=_optional("MINATO_SHARDS_FILE")),
        "landing": build_landing(env),
        "crm_destination": build_crm_destination(env),
        "notifier": Notifier(
            slack_bot_token=_optional("SLACK_BOT_TOKEN"),
            slack_channel=settings.deployment(env).alert_channel,
            dagster_ui_url=os.environ.get("MINATO_DAGSTER_UI_URL", "http://localhost:3000"),
            runbook_url=os.environ.get("MINATO_RUNBOOK_URL", "docs/runbook.md"),
        ),
        "dbt": dbt_cli(),
        "rds": RdsApi(
            endpoint_url=_optional("MINATO_RDS_ENDPOINT_URL"),
            connect_through=_optional("MINATO_RDS_CONNECT_THROUGH"),
        ),
    }
