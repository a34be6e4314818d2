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


@contextlib.contextmanager
def postgres_database(prefix: str, host: str = "127.0.0.1", port: int = 5432) -> Iterator[str]:
    """The name of a fresh database on the local PostgreSQL (user postgres, trust auth),
    dropped afterwards."""
    import uuid

    import psycopg

    require_server(host, port, "PostgreSQL")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = f"host={host} port={port} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def dagster_postgres_env(database: str, host: str = "127.0.0.1", port: int = 5432) -> dict:
    """The DAGSTER_PG_* variables the production instances read, for a local database."""
    return {
        "DAGSTER_PG_HOST": host,
        "DAGSTER_PG_PORT": str(port),
        "DAGSTER_PG_USERNAME": "postgres",
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": database,
    }
