"""Where a streamed write waits until it commits: local Parquet files, one per append."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from resources.warehouse.base import PartitionSink, PartitionTarget, RowScope


class ParquetSpool(PartitionSink):
    """Appends wait in local Parquet files, one per append, until the write commits.

    Memory holds one chunk at a time whatever the partition's size, and a scope is taken back
    by deleting its files (nothing has reached the warehouse yet).
    """

    def __init__(self, targets: Sequence[PartitionTarget], spool: Path) -> None:
        self._targets = list(targets)
        self._spool = spool
        self._parts: dict[PartitionTarget, list[tuple[RowScope | None, Path, pa.Schema]]] = {
            target: [] for target in self._targets
        }
        self._written = 0

    def append(
        self, target: PartitionTarget, data: pa.Table, scope: RowScope | None = None
    ) -> None:
        if target not in self._parts:
            raise KeyError(f"{target.schema}.{target.table} is not a target of this write")
        self._written += 1
        path = self._spool / f"part_{self._written:06d}.parquet"
        # Uncompressed: the file lives for one run, and writing it must not cost more than
        # reading the rows did.
        pq.write_table(data, path, compression="none", use_dictionary=False, write_statistics=False)
        self._parts[target].append((scope, path, data.schema))

    def discard(self, scope: RowScope) -> None:
        for parts in self._parts.values():
            for part in [p for p in parts if p[0] == scope]:
                part[1].unlink()
                parts.remove(part)

    def files(self, target: PartitionTarget) -> list[Path]:
        return [path for _, path, _ in self._parts[target]]

    def schema(self, target: PartitionTarget) -> pa.Schema:
        """The union of the columns appended to `target`."""
        schemas = [schema for _, _, schema in self._parts[target]]
        return pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])

    def merged(self) -> Iterator[tuple[PartitionTarget, Path, pa.Schema]]:
        """Per target, its parts as one Parquet file with the union of their columns (for a
        warehouse that loads one file per table); every target needs at least one append."""
        for target in self._targets:
            parts = self._parts[target]
            if not parts:
                raise ValueError(
                    f"nothing appended to {target.schema}.{target.table}: append an empty "
                    "table to declare its schema"
                )
            if len(parts) == 1:
                yield target, parts[0][1], parts[0][2]
                continue
            schema = self.schema(target)
            path = self._spool / f"{target.schema}.{target.table}.parquet"
            with pq.ParquetWriter(path, schema) as writer:
                for _, part, _ in parts:
                    # One part at a time: memory holds a chunk, never the whole partition.
                    data = pq.read_table(part)
                    for field in schema:
                        if field.name not in data.column_names:
                            data = data.append_column(field, pa.nulls(len(data), field.type))
                    writer.write_table(data.select(schema.names).cast(schema))
            yield target, path, schema
