"""Environment variables that switch resources between the embedded default and production.

Every resource is configured through `dg.EnvVar`; this module gives each variable its embedded
default (local files under `data/`) when it is unset, so a fresh checkout runs with no setup
while production only sets variables, never edits code. dbt reads the same variables from
`profiles.yml`, which is why defaults are written into `os.environ` rather than kept in Python.
"""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def embedded_defaults() -> dict[str, str]:
    data_dir = Path(os.environ.get("MINATO_DATA_DIR", REPO_ROOT / "data"))
    return {
        "MINATO_DATA_DIR": str(data_dir),
        "MINATO_WAREHOUSE": "duckdb",
        "MINATO_DUCKDB_PATH": str(data_dir / "warehouse.duckdb"),
        "MINATO_SHARDS_FILE": str(REPO_ROOT / "shards.yaml"),
        "MINATO_LANDING": "local",
        "MINATO_LANDING_DIR": str(data_dir / "landing"),
        "MINATO_CRM_DESTINATION": "sqlite",
        "MINATO_CRM_SQLITE_PATH": str(data_dir / "crm.sqlite"),
    }


def apply_embedded_defaults() -> None:
    for name, value in embedded_defaults().items():
        os.environ.setdefault(name, value)
