"""A shard's wall clock: shards store naive DATETIMEs in their own zone, so instants are
written in that zone before they reach a query, and MySQL sessions render TIMESTAMPs in it."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo


def wall_clock_bounds(
    timezone: str, start: dt.datetime | None, end: dt.datetime
) -> tuple[str | None, str]:
    """[start, end) as the naive wall-clock text a shard in `timezone` stores."""
    zone = ZoneInfo(timezone)
    low = None if start is None else start.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
    return low, end.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def session_time_zone(timezone: str, year: int) -> str:
    """What `SET time_zone` should say so TIMESTAMP columns render in the shard's zone.

    A fixed offset needs no time-zone tables on the server; only zones with daylight saving
    time are passed by name (the server then needs its zone tables loaded).
    """
    zone = ZoneInfo(timezone)
    offsets = {dt.datetime(year, month, 1, tzinfo=zone).utcoffset() for month in (1, 7)}
    if len(offsets) > 1:
        return timezone
    minutes = int(next(iter(offsets)).total_seconds() // 60)  # type: ignore[union-attr]
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
