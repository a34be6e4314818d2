"""Which source errors retrying can fix, and which only a person can.

Permanent: the shard says who is wrong (authentication, an unknown database, a missing or
corrupt file, a statement it refuses). Failing at once, with the shard, its URL without the
password and what to do, spares on-call minutes of retries that end in the same message.
Transient: the connection or the server's load (a lost connection, a restart, a lock wait, a
deadlock, too many connections). Batches and partitions are retried with backoff.
"""

from __future__ import annotations

import re

import sqlalchemy as sa

# MySQL/MariaDB error numbers (https://mariadb.com/kb/en/mariadb-error-codes/) and what to do.
PERMANENT_MYSQL_ERRORS = {
    1044: "the user may not read this database: grant SELECT on it",
    1045: "authentication failed: check the user and the password variable in the URL",
    1049: "the database does not exist: check the database name in the URL",
    1064: "the shard refused Minato's SQL: report it with this message",
    1142: "the user may not read a table: grant SELECT on the database",
    1698: "authentication failed: check the user and the password variable in the URL",
    2005: "unknown host: check the host name in the URL",
}
TRANSIENT_MYSQL_ERRORS = {
    1040: "too many connections",
    1053: "server shutdown in progress",
    1205: "lock wait timeout",
    1213: "deadlock",
    1317: "query interrupted",
    1927: "connection killed",
    2002: "cannot connect (socket)",
    2003: "cannot connect",
    2006: "server has gone away",
    2013: "lost connection during query",
    2055: "lost connection",
}
# connectorx reports errors as text: `MySqlError { ERROR 1045 (28000): Access denied ... }`.
_MYSQL_CODE = re.compile(r"\bERROR (\d{4})\b")
# SQLite says this of a file that is not a database, or a damaged one.
_CORRUPT_SQLITE = ("file is not a database", "database disk image is malformed")


class PermanentShardError(RuntimeError):
    """A shard error that retrying cannot fix; the message says what to do."""


def mysql_error_code(exc: BaseException) -> int | None:
    """The MySQL error number behind `exc` (pymysql, SQLAlchemy or connectorx), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa.exc.DBAPIError) and current.orig is not None:
            current = current.orig
            continue
        args = getattr(current, "args", ())
        if args and isinstance(args[0], int) and 1000 <= args[0] < 3000:
            return args[0]
        match = _MYSQL_CODE.search(str(current))
        if match:
            return int(match.group(1))
        current = current.__cause__ or current.__context__
    return None


def permanent_reason(exc: BaseException) -> str | None:
    """What to do about `exc` if it is permanent; None if retrying may help."""
    code = mysql_error_code(exc)
    if code in PERMANENT_MYSQL_ERRORS:
        return PERMANENT_MYSQL_ERRORS[code]
    text = str(exc)
    if "unable to open database file" in text:
        return "the SQLite file does not exist or cannot be read: check the path in the URL"
    if any(marker in text for marker in _CORRUPT_SQLITE):
        return "the SQLite file is not a database or is damaged: restore the shard's file"
    return None


_PASSWORD = re.compile(r"(://[^/@:]*):[^/]*@")


def safe_url(url: str) -> str:
    """The URL as it may appear in an error or a log: its password (or `${VAR}`) as `***`."""
    return _PASSWORD.sub(r"\1:***@", url)
