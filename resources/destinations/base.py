"""What every reverse-ETL destination implements, and the errors through which it answers.

A destination applies one batch per call and says, per record, what it refused. The sync
engine (assets/sync) records a batch as delivered only after that call returned, so the call must
be all-or-nothing for the records it did not refuse, and idempotent under its `idempotency_key`:
after a crash the same batch may arrive again with the same key.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import dagster as dg
import pyarrow as pa
from pydantic import Field

# upsert: insert or replace by key; update: only keys the destination has (others are refused);
# insert: only keys it does not have (existing ones are left as they are); delete: remove keys.
Operation = Literal["upsert", "update", "insert", "delete"]


@dataclass(frozen=True)
class Batch:
    """Records for one destination call. `rows` holds the key columns (and, except for deletes,
    the mapped columns) under their destination names."""

    table: str
    key_columns: tuple[str, ...]
    operation: Operation
    rows: pa.Table
    idempotency_key: str

    @property
    def num_rows(self) -> int:
        return self.rows.num_rows

    def part(self, offset: int, length: int, suffix: str) -> Batch:
        return Batch(
            self.table,
            self.key_columns,
            self.operation,
            self.rows.slice(offset, length),
            f"{self.idempotency_key}.{suffix}",
        )


@dataclass(frozen=True)
class Rejection:
    """A record of the batch (by row index) that the destination refused, and why."""

    index: int
    reason: str


class BatchRejectedError(Exception):
    """The destination refused the batch as a whole (bad data, not a passing failure): the sync
    splits it to find the records at fault."""


class TransientDestinationError(Exception):
    """A failure worth retrying (rate limit, 5xx, timeout, lost connection).

    `retry_after_s` is the destination's own request to wait (HTTP `Retry-After`), if any.
    """

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DestinationConnectionError(TransientDestinationError):
    """The destination could not be reached; the message never contains a password."""


class SyncDestination(dg.ConfigurableResource, ABC):
    """A system that receives synced rows, keyed by a primary key.

    Adapters implement `write`; retries, rate limits, concurrency and splitting are the sync
    engine's (assets/sync/delivery.py), tuned by the fields below.
    """

    max_attempts: int = Field(
        default=8, ge=1, description="Tries per batch on transient errors before the run fails."
    )
    backoff_initial_s: float = Field(
        default=0.5, gt=0, description="First retry waits up to this long (full jitter)."
    )
    backoff_max_s: float = Field(default=60.0, gt=0, description="Longest wait between tries.")

    @property
    @abstractmethod
    def kind(self) -> str:
        """Short engine name for metadata and alerts, e.g. `sqlite` or `postgres`."""

    @abstractmethod
    def write(self, batch: Batch) -> list[Rejection]:
        """Apply `batch`; return the records refused one by one (the rest are applied).

        Raises BatchRejectedError when the batch is refused as a whole and
        TransientDestinationError when it should be tried again.
        """


def check_keys(key_columns: Sequence[str], schema: pa.Schema) -> None:
    if not key_columns:
        raise ValueError("at least one key column is required")
    missing = [c for c in key_columns if c not in schema.names]
    if missing:
        raise ValueError(f"key columns {missing!r} are not in the batch columns {schema.names!r}")
