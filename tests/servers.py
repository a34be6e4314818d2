"""Tests that need a real server: skipped on a laptop without it, failed in CI."""

import os
import socket

import pytest


def _in_ci() -> bool:
    # CI systems set CI=true; an explicit CI=false/0 is treated like a laptop.
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_server(host: str, port: int, what: str) -> None:
    """Skip the test if `host:port` does not accept TCP connections, unless in CI: there, fail."""
    try:
        with socket.create_connection((host, port), timeout=2.0):
            return
    except OSError as exc:
        reason = f"{what} is not reachable on {host}:{port} ({exc})"
    if _in_ci():
        pytest.fail(f"{reason}; CI is set, so the server must be running", pytrace=False)
    pytest.skip(f"{reason}; start it to run this test (CI would fail here)")
