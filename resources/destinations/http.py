"""A generic HTTP JSON API destination, and the two hooks a SaaS adapter overrides.

The generic protocol: `POST {base_url}/{table}/{operation}` with
`{"key_columns": [...], "records": [{...}, ...]}` and an `Idempotency-Key` header (the same key
when a batch is replayed after a crash or a lost response, so the API can ignore the repeat). A 2xx
answer may list refused records as `{"errors": [{"index": 3, "reason": "..."}]}`. 429 and 503
(with `Retry-After`), 408, other 5xx, timeouts and lost connections are retried by the sync
engine; any other 4xx refuses the batch, which the engine then splits to find the bad records.

A Salesforce, HubSpot, Braze or Marketo adapter subclasses HttpJsonDestination and overrides
`build_request` (endpoint and body shape) and `parse_rejections` (where the API reports
per-record errors); retries, rate limits, batching and splitting stay the engine's.
"""

from __future__ import annotations

import datetime as dt
import decimal
import email.utils
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, PrivateAttr

from resources.destinations.base import (
    Batch,
    BatchRejectedError,
    Rejection,
    SyncDestination,
    TransientDestinationError,
    check_keys,
)

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def retry_after_seconds(header: str | None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


class HttpJsonDestination(SyncDestination):
    """Records as JSON over HTTP. The bearer token comes only from the environment."""

    base_url: str = Field(description="API root, e.g. https://api.example.com/v1.")
    token: str | None = Field(
        default=None,
        repr=False,
        description="Bearer token; configure it with dg.EnvVar. Never logged.",
    )
    timeout_s: float = Field(default=30.0, gt=0, description="Timeout of one request.")
    max_connections: int = Field(default=8, ge=1, description="Connection pool size.")

    _client: Any = PrivateAttr(default=None)
    _client_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def kind(self) -> str:
        return "http"

    def client(self) -> Any:
        """One pooled client per resource instance, shared by the engine's sender threads."""
        import httpx

        with self._client_lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=self.timeout_s,
                    limits=httpx.Limits(max_connections=self.max_connections),
                )
            return self._client

    def teardown_after_execution(self, context: Any) -> None:
        if self._client is not None:
            self._client.close()

    def headers(self, batch: Batch) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Idempotency-Key": batch.idempotency_key}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def build_request(self, batch: Batch) -> HttpRequest:
        """The request for one batch; override for an API's own endpoint and body."""
        return HttpRequest(
            "POST",
            f"{self.base_url.rstrip('/')}/{batch.table}/{batch.operation}",
            {"key_columns": list(batch.key_columns), "records": batch.rows.to_pylist()},
            self.headers(batch),
        )

    def parse_rejections(self, batch: Batch, status: int, body: Any) -> list[Rejection]:
        """Records a 2xx answer refused; override for an API's own error format."""
        errors = body.get("errors", []) if isinstance(body, dict) else []
        return [Rejection(int(e["index"]), str(e.get("reason", "rejected"))) for e in errors]

    def write(self, batch: Batch) -> list[Rejection]:
        import httpx

        check_keys(batch.key_columns, batch.rows.schema)
        request = self.build_request(batch)
        content = json.dumps(request.body, default=_json_value, ensure_ascii=False).encode()
        try:
            response = self.client().request(
                request.method, request.url, content=content, headers=request.headers
            )
        except httpx.TransportError as exc:  # Timeouts and lost connections.
            raise TransientDestinationError(f"{request.url}: {type(exc).__name__}") from None
        status = response.status_code
        if status in RETRY_STATUSES:
            raise TransientDestinationError(
                f"{request.url}: HTTP {status}",
                retry_after_seconds(response.headers.get("Retry-After")),
            )
        if not 200 <= status < 300:
            raise BatchRejectedError(f"HTTP {status}: {response.text[:500]}")
        body = response.json() if response.content else None
        return self.parse_rejections(batch, status, body)
