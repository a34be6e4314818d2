"""The dataset catalog (`metadata/datasets.yml`): every warehouse dataset Minato knows.

One list serves whoever needs the datasets by name: the BigQuery setup creates them, the access
matrix refuses grants on datasets that are not in it, and `pii` marks the datasets whose
readers must hold a role flagged for PII.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from resources.config_files import StrictModel, identifier, read_yaml, unique_entries
from resources.settings import REPO_ROOT

DATASETS_FILE = REPO_ROOT / "metadata" / "datasets.yml"


class DatasetConfigError(ValueError):
    """The dataset catalog is missing, malformed or names a dataset twice."""


class DatasetSpec(StrictModel):
    """One dataset: its unprefixed name, what it holds, and whether it holds PII."""

    name: Annotated[str, identifier("dataset name")]
    description: str = Field(min_length=1)
    layer: Literal["lake", "warehouse", "mart", "monitoring", "sharing", "sandbox"]
    pii: bool


def load_datasets(path: Path | str = DATASETS_FILE) -> tuple[DatasetSpec, ...]:
    """Read and validate the catalog; a name given twice is an error naming both lines."""
    document = read_yaml(path, DatasetConfigError)
    return tuple(unique_entries(document, "datasets", DatasetSpec, DatasetConfigError, "dataset"))


@cache
def datasets() -> tuple[DatasetSpec, ...]:
    """The repository's catalog, read once per process."""
    return load_datasets()
