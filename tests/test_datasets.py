"""The dataset catalog: the repository's file loads, and mistakes are refused with the line."""

from pathlib import Path

import pytest

from resources.warehouse.datasets import DatasetConfigError, datasets, load_datasets


def test_catalog_names_the_dbt_schemas_and_the_python_written_datasets() -> None:
    names = {spec.name for spec in datasets()}
    assert {"lake", "monitoring", "sync_state", "cleansing", "cleansing_secret"} <= names
    assert {spec.name for spec in datasets() if spec.pii} >= {"lake", "cleansing_secret"}


def test_duplicate_and_unknown_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "datasets.yml"
    entry = "  - {name: lake, description: x, layer: lake, pii: true}\n"
    path.write_text("datasets:\n" + entry + entry)
    with pytest.raises(DatasetConfigError, match=r"datasets.yml:3: dataset 'lake'.*defined twice"):
        load_datasets(path)
    path.write_text(
        "datasets:\n  - {name: lake, description: x, layer: lake, pii: true, piii: 1}\n"
    )
    with pytest.raises(DatasetConfigError, match="key 'piii': unknown key"):
        load_datasets(path)
