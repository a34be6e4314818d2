"""Reverse-ETL destinations: where synced warehouse rows are written.

`SyncDestination.write(batch)` is the whole adapter interface (base.py); the SQL engines share
one flow through SqlDestination (sql.py). The retries, rate limit and batch splitting every
adapter gets are the sync engine's (assets/sync/delivery.py).
"""

from resources.destinations.base import (
    Batch,
    BatchRejectedError,
    DestinationConnectionError,
    Operation,
    Rejection,
    SyncDestination,
    TransientDestinationError,
)
from resources.destinations.http import HttpJsonDestination, HttpRequest
from resources.destinations.postgres import PostgresDestination
from resources.destinations.sqlite import SQLiteDestination

__all__ = [
    "Batch",
    "BatchRejectedError",
    "DestinationConnectionError",
    "HttpJsonDestination",
    "HttpRequest",
    "Operation",
    "PostgresDestination",
    "Rejection",
    "SQLiteDestination",
    "SyncDestination",
    "TransientDestinationError",
]
