"""Time zones as /settings offers them: the city buttons, whole-hour UTC offsets, city names typed by people, and
the zone a person's days are counted in. Every choice is stored as an IANA name, so daylight saving time follows.
Pure and synchronous."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone, tzinfo
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from bot.i18n import _

logger = logging.getLogger(__name__)

# The city buttons: (the city's English name, its IANA zone). The names are translated where they are shown.
CITY_ZONES: tuple[tuple[str, str], ...] = (
    (_("Shanghai"), "Asia/Shanghai"),
    (_("Hong Kong"), "Asia/Hong_Kong"),
    (_("Taipei"), "Asia/Taipei"),
    (_("Singapore"), "Asia/Singapore"),
    (_("Tokyo"), "Asia/Tokyo"),
    (_("London"), "Europe/London"),
    (_("Berlin"), "Europe/Berlin"),
    (_("New York"), "America/New_York"),
    (_("Los Angeles"), "America/Los_Angeles"),
    (_("Sydney"), "Australia/Sydney"),
)
# Whole-hour offsets from UTC on the offset grid: every one in use on Earth.
OFFSET_HOURS: tuple[int, ...] = tuple(range(-12, 15))
UTC_ZONE = "Etc/UTC"
# The regions of canonical IANA names; the rest are legacy aliases ("US/Pacific", "Japan", "PRC") or Etc/ zones.
_REGIONS = ("Africa", "America", "Antarctica", "Asia", "Atlantic", "Australia", "Europe", "Indian", "Pacific")
# Names people type that are not the city in any IANA name (the zone's city is another one nearby).
_ALIASES = {
    "beijing": "Asia/Shanghai", "北京": "Asia/Shanghai", "上海": "Asia/Shanghai", "深圳": "Asia/Shanghai",
    "广州": "Asia/Shanghai", "廣州": "Asia/Shanghai", "香港": "Asia/Hong_Kong", "台北": "Asia/Taipei",
    "臺北": "Asia/Taipei", "新加坡": "Asia/Singapore", "东京": "Asia/Tokyo", "東京": "Asia/Tokyo",
    "伦敦": "Europe/London", "倫敦": "Europe/London", "柏林": "Europe/Berlin", "纽约": "America/New_York",
    "紐約": "America/New_York", "洛杉矶": "America/Los_Angeles", "洛杉磯": "America/Los_Angeles",
    "san francisco": "America/Los_Angeles", "悉尼": "Australia/Sydney", "雪梨": "Australia/Sydney",
}
_TYPED_OFFSET = re.compile(r"^(?:utc|gmt)?\s*([+-−])\s*(\d{1,2})(?::?00)?$")
MAX_QUERY_CHARS = 64


def offset_zone(hours: int) -> str:
    """The IANA name of the fixed zone ``hours`` ahead of UTC, e.g. ``Etc/GMT-8`` for UTC+8.

    The ``Etc/GMT`` names keep the POSIX sign, the opposite of everyday use: ``Etc/GMT-8`` is eight hours *ahead*
    of Greenwich, ``Etc/GMT+5`` five hours behind. UTC itself is ``Etc/UTC``.
    """
    if hours not in OFFSET_HOURS:
        raise ValueError(f"no zone is {hours} hours from UTC")
    return UTC_ZONE if hours == 0 else f"Etc/GMT{-hours:+d}"


@cache
def known_zones() -> frozenset[str]:
    """Every IANA name this system's (or the tzdata package's) database has, read once."""
    return frozenset(available_timezones())


def is_zone(name: str) -> bool:
    """True for an IANA name this system knows (only those are stored)."""
    return name in known_zones() or name == UTC_ZONE


def person_zone(time_zone: str | None, default_offset_minutes: int) -> tzinfo:
    """The zone a person's days are counted in: their own (an IANA name), else the configured default offset
    (``[mood] utc_offset_minutes``); a stored name this system no longer knows also falls back to the default."""
    if time_zone:
        try:
            return ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            logger.warning("unknown time zone %r stored; using the default offset", time_zone)
    return timezone(timedelta(minutes=default_offset_minutes))


def utc_offset_text(zone: tzinfo, now: datetime) -> str:
    """The zone's offset from UTC at ``now``: ``UTC+08:00``, ``UTC−03:30``, ``UTC±00:00``."""
    offset = now.astimezone(zone).utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes > 0 else "−" if minutes < 0 else "±"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{rest:02d}"


def city_of(name: str) -> str:
    """The place an IANA name is named after, as people write it: ``America/Los_Angeles`` → ``Los Angeles``."""
    return name.rsplit("/", 1)[-1].replace("_", " ")


def _normalised(text: str) -> str:
    return " ".join(text.casefold().replace("_", " ").replace("-", " ").split())


@cache
def _cities() -> tuple[tuple[str, str], ...]:
    """(normalised city, IANA name) of every canonical zone, by name."""
    names = sorted(name for name in known_zones() if name.split("/", 1)[0] in _REGIONS and "/" in name)
    return tuple((_normalised(city_of(name)), name) for name in names)


def find_zones(query: str, limit: int = 8) -> list[str]:
    """The IANA names a typed city (or ``UTC+8``, or an IANA name) may mean, best first, at most ``limit``.

    A name that is exactly the city comes first, then cities beginning with what was typed, then those containing
    it; a few common names that are no zone's city (Beijing, Chinese names of the city buttons) are known too.
    """
    typed = query.strip()[:MAX_QUERY_CHARS]
    if is_zone(typed) and "/" in typed:
        return [typed]
    offset = _TYPED_OFFSET.match(typed.casefold())
    if offset and int(offset[2]) * (-1 if offset[1] in "-−" else 1) in OFFSET_HOURS:
        return [offset_zone(int(offset[2]) * (-1 if offset[1] in "-−" else 1))]
    wanted = _normalised(typed)
    if not wanted:
        return []
    if wanted in _ALIASES:
        return [_ALIASES[wanted]]
    exact = [name for city, name in _cities() if city == wanted]
    starting = [name for city, name in _cities() if city.startswith(wanted) and city != wanted]
    containing = [name for city, name in _cities() if wanted in city and not city.startswith(wanted)]
    return (exact + starting + containing)[:limit]
