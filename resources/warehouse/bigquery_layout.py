"""What Minato creates in BigQuery before it writes: the catalog's datasets and the layout of
each written table (day partitioning, clustering).

`minato bigquery setup` runs `ensure_datasets`; every write runs it once per process too, so a
fresh project never fails with "Not found: Dataset". Both are idempotent (`exists_ok`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from resources.warehouse.bigquery_labels import labels
from resources.warehouse.datasets import DatasetSpec

# Clustering takes at most four columns (BigQuery's limit).
_MAX_CLUSTER_COLUMNS = 4


def dataset_labels(spec: DatasetSpec, env: str) -> dict[str, str]:
    return labels(
        {
            "minato_layer": spec.layer,
            "minato_pii": "true" if spec.pii else "false",
            "minato_env": env,
        }
    )


def ensure_datasets(
    client: Any, project: str, prefix: str, location: str, specs: Sequence[DatasetSpec], env: str
) -> list[str]:
    """Create every dataset of the catalog that does not exist yet; return the dataset ids.

    Looked up first: a writer holding only `roles/bigquery.dataEditor` on existing datasets
    may not create datasets, and BigQuery answers a create with 403 before it says "exists"."""
    from google.api_core.exceptions import NotFound
    from google.cloud import bigquery

    ids = []
    for spec in specs:
        dataset = bigquery.Dataset(f"{project}.{prefix}{spec.name}")
        ids.append(dataset.dataset_id)
        try:
            client.get_dataset(dataset.reference)
            continue
        except NotFound:
            pass
        dataset.location = location
        dataset.description = spec.description
        dataset.labels = dataset_labels(spec, env)
        client.create_dataset(dataset, exists_ok=True)  # a parallel writer may be first
    return ids


@dataclass(frozen=True)
class TableLayout:
    """How a table is stored: day partitions on a DATE column, clustered by the other columns
    that identify a write's partitions (shard, then client), so that replacing a (day, shard)
    partition reads one day's blocks of that shard, not the whole table."""

    partition_column: str | None
    cluster_columns: tuple[str, ...]

    def apply(self, table: Any) -> Any:
        from google.cloud import bigquery

        if self.partition_column:
            table.time_partitioning = bigquery.TimePartitioning(
                type_=bigquery.TimePartitioningType.DAY, field=self.partition_column
            )
        if self.cluster_columns:
            table.clustering_fields = list(self.cluster_columns)
        return table


def table_layout(schema: pa.Schema, partition_columns: Sequence[str]) -> TableLayout:
    """Partition by the first DATE column among `partition_columns`; cluster by the others and
    `_client_id` when the table has it."""
    dates = [c for c in partition_columns if pa.types.is_date32(schema.field(c).type)]
    partition = dates[0] if dates else None
    cluster = [c for c in partition_columns if c != partition]
    if "_client_id" in schema.names and "_client_id" not in cluster:
        cluster.append("_client_id")
    return TableLayout(partition, tuple(cluster[:_MAX_CLUSTER_COLUMNS]))
