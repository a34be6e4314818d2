"""AWS in tests: moto as a real HTTP server on a free port, and the exact requests boto3 sent.

Clients built from boto3's default session (Minato's RDS resource, dagster-aws' ECS launcher)
inherit the hooks `AwsRequests` registers on it, so a test sees the bytes that went out.
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import boto3
from moto.server import ThreadedMotoServer

from devtools.dagster_ui import free_port

REGION = "ap-northeast-1"


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A moto server's endpoint URL, with moto's state reset (it is per process, not server)."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
    try:
        yield endpoint
    finally:
        server.stop()


@dataclass
class AwsRequests:
    """Every request sent through clients of boto3's default session: (operation, params)."""

    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def _record(self, request: Any, **_: Any) -> None:
        body = request.body or b""
        body = body.decode() if isinstance(body, bytes) else body
        target = request.headers.get("X-Amz-Target")
        if target:  # JSON protocol (ECS): the operation is a header, the body is JSON
            self.sent.append((target.decode().rsplit(".", 1)[-1], json.loads(body or "{}")))
        else:  # query protocol (RDS): Action=...&Key=value
            params = dict(parse_qsl(body, keep_blank_values=True))
            self.sent.append((params.pop("Action", "?"), params))

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.sent if name == operation]

    def operations(self) -> list[str]:
        return [name for name, _ in self.sent]


@contextlib.contextmanager
def recorded_requests(monkeypatch: Any, endpoint: str) -> Iterator[AwsRequests]:
    """A fresh default session pointed at moto (credentials, region, endpoint) that records
    every request its clients send."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    boto3.setup_default_session()
    requests = AwsRequests()
    boto3.DEFAULT_SESSION.events.register("before-send", requests._record)
    try:
        yield requests
    finally:
        boto3.DEFAULT_SESSION = None
