"""Change detection in the warehouse: only rows that differ from the last acknowledged send leave.

Each sync keeps a state table `sync_state.<sync name>` with the primary key, `_row_hash` (a hash
of the mapped columns as last acknowledged by the destination) and `_synced_at`. Comparing the
source's hashes with it by key yields the added, changed and removed rows; the comparison runs as
SQL in DuckDB or BigQuery, and only its result is fetched.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pyarrow as pa

from assets.sync.specs import SyncSpec
from resources.warehouse import Warehouse

STATE_SCHEMA = "sync_state"
MAX_KEYS_REPORTED = 10


class SourceKeyError(ValueError):
    """Duplicate or NULL primary keys in the source: rows cannot be matched to the destination."""


def row_hash_sql(kind: str, columns: Sequence[str]) -> str:
    """SQL for a hex MD5 of `columns` as a JSON object.

    JSON keeps NULL apart from '' and cannot be confused by separators inside values; the column
    names in it mean that mapping a new column re-sends every row, which the destination needs.
    """
    if kind == "duckdb":
        fields = ", ".join(f"{c} := {c}" for c in columns)
        return f"md5(CAST(to_json(struct_pack({fields})) AS VARCHAR))"
    if kind == "bigquery":
        fields = ", ".join(f"{c} AS {c}" for c in columns)
        return f"TO_HEX(MD5(TO_JSON_STRING(STRUCT({fields}))))"
    raise ValueError(f"no row hash SQL for warehouse kind {kind!r}")


def _join(keys: Sequence[str], left: str, right: str) -> str:
    return " AND ".join(f"{left}.{k} = {right}.{k}" for k in keys)


def _sql_repr(value: object) -> str:
    return "NULL" if value is None else repr(value)


def check_source_keys(warehouse: Warehouse, spec: SyncSpec) -> None:
    """Refuse a source whose primary key is NULL or not unique, naming up to 10 such keys."""
    source = warehouse.qualified(spec.source_schema, spec.source_model)
    keys = ", ".join(spec.primary_key)
    null_key = " OR ".join(f"{k} IS NULL" for k in spec.primary_key)
    offending = warehouse.query_arrow(
        f"SELECT {keys}, COUNT(*) AS _rows, COUNT(*) OVER () AS _offending "
        f"FROM {source} GROUP BY {keys} HAVING COUNT(*) > 1 OR {null_key} "
        f"ORDER BY _rows DESC, {keys} LIMIT {MAX_KEYS_REPORTED}"
    ).to_pylist()
    if not offending:
        return
    examples = "; ".join(
        ", ".join(f"{k}={_sql_repr(row[k])}" for k in spec.primary_key) + f" ({row['_rows']} rows)"
        for row in offending
    )
    raise SourceKeyError(
        f"sync {spec.name}: {offending[0]['_offending']} duplicate or NULL primary key(s) "
        f"({keys}) in {spec.source_schema}.{spec.source_model}; nothing was sent. "
        f"First {len(offending)}: {examples}"
    )


def _state_sql(warehouse: Warehouse, spec: SyncSpec) -> str | None:
    if warehouse.table_exists(STATE_SCHEMA, spec.name):
        return warehouse.qualified(STATE_SCHEMA, spec.name)
    return None


def pending_upserts(warehouse: Warehouse, spec: SyncSpec) -> pa.Table:
    """Rows added to or changed in the source since their last acknowledged send.

    Columns: the primary key, the mapped columns, `_row_hash` and `_change` ('added' or
    'changed'); ordered by key so that batches are stable between runs.
    """
    source = warehouse.qualified(spec.source_schema, spec.source_model)
    state = _state_sql(warehouse, spec)
    columns = ", ".join([*spec.primary_key, *spec.columns])
    keys = ", ".join(f"s.{k}" for k in spec.primary_key)
    # Before the first acknowledged batch there is no state table: compare against no rows.
    state_rows = (
        f"SELECT {', '.join(spec.primary_key)}, _row_hash FROM {state}"
        if state
        else f"SELECT {', '.join(spec.primary_key)}, CAST(NULL AS STRING) AS _row_hash "
        f"FROM {source} WHERE FALSE"
    )
    return warehouse.query_arrow(
        f"WITH source AS (SELECT {columns}, {row_hash_sql(warehouse.kind, spec.columns)} "
        f"AS _row_hash FROM {source}), state AS ({state_rows}) "
        "SELECT s.*, CASE WHEN t._row_hash IS NULL THEN 'added' ELSE 'changed' END AS _change "
        f"FROM source AS s LEFT JOIN state AS t ON {_join(spec.primary_key, 's', 't')} "
        f"WHERE t._row_hash IS NULL OR t._row_hash <> s._row_hash ORDER BY {keys}"
    )


def pending_removals(warehouse: Warehouse, spec: SyncSpec) -> pa.Table:
    """Keys acknowledged earlier that are no longer in the source, ordered by key."""
    state = _state_sql(warehouse, spec)
    if state is None:
        return pa.table({k: pa.array([], pa.string()) for k in spec.primary_key})
    source = warehouse.qualified(spec.source_schema, spec.source_model)
    keys = ", ".join(spec.primary_key)
    state_keys = ", ".join(f"t.{k}" for k in spec.primary_key)
    # Source keys are known to be non-NULL (check_source_keys), so NULL means "no match".
    return warehouse.query_arrow(
        f"SELECT {state_keys} FROM {state} AS t "
        f"LEFT JOIN (SELECT {keys} FROM {source}) AS s ON {_join(spec.primary_key, 't', 's')} "
        f"WHERE s.{spec.primary_key[0]} IS NULL ORDER BY {state_keys}"
    )


def _batch_keys(spec: SyncSpec, batch: pa.Table) -> list[tuple[object, ...]]:
    return list(zip(*(batch.column(k).to_pylist() for k in spec.primary_key), strict=True))


def commit_upserted(warehouse: Warehouse, spec: SyncSpec, batch: pa.Table) -> None:
    """Record an acknowledged upsert batch: its keys now carry the hashes that were sent."""
    state = batch.select([*spec.primary_key, "_row_hash"]).append_column(
        "_synced_at",
        pa.array([dt.datetime.now(dt.UTC)] * batch.num_rows, pa.timestamp("us", tz="UTC")),
    )
    # One replace (delete these keys, insert them) in one transaction: a crash leaves either
    # the old or the new state of the batch, never a mix.
    warehouse.replace_partitions(
        STATE_SCHEMA, spec.name, state, spec.primary_key, _batch_keys(spec, batch)
    )


def commit_removed(warehouse: Warehouse, spec: SyncSpec, keys: pa.Table) -> None:
    """Forget keys whose deletion the destination acknowledged."""
    nothing = keys.slice(0, 0).select(list(spec.primary_key))
    nothing = nothing.append_column("_row_hash", pa.array([], pa.string())).append_column(
        "_synced_at", pa.array([], pa.timestamp("us", tz="UTC"))
    )
    warehouse.replace_partitions(
        STATE_SCHEMA, spec.name, nothing, spec.primary_key, _batch_keys(spec, keys)
    )
