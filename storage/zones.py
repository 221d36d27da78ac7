"""Local days in a person's own time zone, for the per-day mood aggregate.

A day's boundaries move with daylight saving time, so a fixed offset per query is not enough: the day of each
message is computed from its own timestamp. SQLite's ``date(x, 'unixepoch', '+N minutes')`` only knows fixed
offsets, so every connection gets a ``local_day(created_at, zone)`` function (Python's ``zoneinfo`` does the
conversion) and the aggregate stays one ``GROUP BY`` query. A zone travels into SQL as a short text key: an IANA
name (``Europe/Berlin``) or a fixed offset in minutes (``+330``), the self-hoster's default for people without a
zone of their own.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

LOCAL_DAY_FUNCTION = "local_day"


def zone_key(zone: tzinfo) -> str:
    """The text key ``local_day`` reads for ``zone``: a ``ZoneInfo``'s IANA name, or a fixed ``datetime.timezone``
    as signed minutes; ValueError for anything else (a zone SQL could not rebuild)."""
    if isinstance(zone, ZoneInfo) and zone.key:
        return zone.key
    if isinstance(zone, timezone):
        offset = zone.utcoffset(None)
        minutes, rest = divmod(int(offset.total_seconds()), 60)
        if rest == 0:
            return f"{minutes:+d}"
    raise ValueError(f"a time zone must be a ZoneInfo or a whole-minute datetime.timezone, not {zone!r}")


@lru_cache(maxsize=256)
def zone_of_key(key: str) -> tzinfo:
    """The time zone ``zone_key`` wrote as ``key``."""
    if key[:1] in ("+", "-"):
        return timezone(timedelta(minutes=int(key)))
    return ZoneInfo(key)


def local_day(created_at: float, key: str) -> str:
    """The local date ('YYYY-MM-DD') of unix time ``created_at`` in the zone ``key`` (SQL's ``local_day``)."""
    return datetime.fromtimestamp(created_at, zone_of_key(key)).date().isoformat()
