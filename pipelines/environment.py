"""Resources chosen by environment variables: the embedded default or production, no code edits.

| variable                | embedded default | production                 |
| `MINATO_WAREHOUSE`      | `duckdb`         | `bigquery`                 |
| `MINATO_LANDING`        | `local`          | `s3`                       |
| `MINATO_CRM_DESTINATION`| `sqlite`         | `postgres`                 |

The README lists every variable. Values are read through `dg.EnvVar` so the Dagster UI shows
which variable configures what, and secrets never appear in run config.
"""

import os
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource

from assets.dbt_models.project import dbt_cli
from resources.destinations import PostgresDestination, SQLiteDestination, SyncDestination
from resources.environment import apply_embedded_defaults
from resources.landing import LandingStore, LocalLandingStore, S3LandingStore
from resources.notifications import Notifier
from resources.shards import ShardSource
from resources.warehouse import BigQueryWarehouse, DuckDBWarehouse, Warehouse


class ConfigurationError(ValueError):
    """An environment variable names an unknown choice."""


def _choice(variable: str, choices: set[str]) -> str:
    value = os.environ.get(variable)
    if value is None:
        raise ConfigurationError(f"{variable} is not set: expected one of {sorted(choices)}")
    if value not in choices:
        raise ConfigurationError(f"{variable}={value!r}: expected one of {sorted(choices)}")
    return value


def _optional(variable: str) -> Any:
    """An EnvVar if the variable is set, else None (the resource's own default applies)."""
    return dg.EnvVar(variable) if os.environ.get(variable) else None


def build_warehouse() -> Warehouse:
    if _choice("MINATO_WAREHOUSE", {"duckdb", "bigquery"}) == "bigquery":
        settings: dict[str, Any] = {"project": dg.EnvVar("MINATO_BIGQUERY_PROJECT")}
        if os.environ.get("MINATO_BIGQUERY_LOCATION"):
            settings["location"] = dg.EnvVar("MINATO_BIGQUERY_LOCATION")
        if os.environ.get("MINATO_BIGQUERY_DATASET_PREFIX"):
            settings["dataset_prefix"] = dg.EnvVar("MINATO_BIGQUERY_DATASET_PREFIX")
        if os.environ.get("MINATO_BIGQUERY_MAX_BYTES_BILLED"):
            settings["maximum_bytes_billed"] = dg.EnvVar.int("MINATO_BIGQUERY_MAX_BYTES_BILLED")
        return BigQueryWarehouse(**settings)
    return DuckDBWarehouse(path=dg.EnvVar("MINATO_DUCKDB_PATH"))


def build_landing() -> LandingStore:
    if _choice("MINATO_LANDING", {"local", "s3"}) == "s3":
        s3 = S3Resource(endpoint_url=_optional("MINATO_S3_ENDPOINT_URL"))
        return S3LandingStore(
            s3=s3,
            bucket=dg.EnvVar("MINATO_LANDING_S3_BUCKET"),
            prefix=os.environ.get("MINATO_LANDING_S3_PREFIX", ""),
        )
    return LocalLandingStore(root=dg.EnvVar("MINATO_LANDING_DIR"))


def build_crm_destination() -> SyncDestination:
    if _choice("MINATO_CRM_DESTINATION", {"sqlite", "postgres"}) == "postgres":
        return PostgresDestination(url=dg.EnvVar("MINATO_CRM_POSTGRES_URL"))
    return SQLiteDestination(path=dg.EnvVar("MINATO_CRM_SQLITE_PATH"))


def build_resources() -> dict[str, Any]:
    apply_embedded_defaults()
    return {
        "warehouse": build_warehouse(),
        "shards": ShardSource(shards_file=dg.EnvVar("MINATO_SHARDS_FILE")),
        "landing": build_landing(),
        "crm_destination": build_crm_destination(),
        "notifier": Notifier(
            slack_bot_token=_optional("SLACK_BOT_TOKEN"),
            slack_channel=os.environ.get("MINATO_SLACK_CHANNEL", "#data-alerts"),
            dagster_ui_url=os.environ.get("MINATO_DAGSTER_UI_URL", "http://localhost:3000"),
        ),
        "dbt": dbt_cli(),
    }
