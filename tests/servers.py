"""Tests that need a real server: skipped on a laptop without it, failed in CI."""

import contextlib
import os
import socket
from collections.abc import Iterator

import pytest


def in_ci() -> bool:
    # CI systems set CI=true; an explicit CI=false/0 is treated like a laptop.
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_server(host: str, port: int, what: str) -> None:
    """Skip the test if `host:port` does not accept TCP connections, unless in CI: there, fail."""
    try:
        with socket.create_connection((host, port), timeout=2.0):
            return
    except OSError as exc:
        reason = f"{what} is not reachable on {host}:{port} ({exc})"
    if in_ci():
        pytest.fail(f"{reason}; CI is set, so the server must be running", pytrace=False)
    pytest.skip(f"{reason}; start it to run this test (CI would fail here)")


@contextlib.contextmanager
def mariadb_database(name: str, host: str = "127.0.0.1", port: int = 3306) -> Iterator:
    """A fresh utf8mb4 database on the local MariaDB, in use on the yielded root connection,
    dropped afterwards."""
    import pymysql

    require_server(host, port, "MariaDB")
    admin = pymysql.connect(host=host, port=port, user="root", password="", autocommit=True)
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        cursor.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        cursor.execute(f"USE {name}")
    try:
        yield admin
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()
