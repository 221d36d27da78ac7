"""When a person's daily check-in and weekly summary are due: pure, with the clock handed in.

Everything is decided on the person's local wall clock: their IANA ``time_zone``, or the configured default offset
(``[mood] utc_offset_minutes``) when they have none. A check-in is due on a local day once the local time has reached
the chosen time, and until it went out that day (``last_checkin_day``); so one missed while the bot was down goes out
once, late, the same day, and never on the next day (that day's own time has not come yet). Quiet hours hold it back
while they last. The store's ``claim_checkin`` / ``claim_weekly`` make "never twice a day" hold even when two ticks
race; this module only says what to try.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from bot.zones import person_zone
from storage import PersonSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Due:
    """What is due for one person at one moment: the local day of a check-in and/or of a weekly summary."""

    user_id: int
    checkin_day: str | None  # 'YYYY-MM-DD', the person's local day, or None: no check-in due
    weekly_day: str | None


def local_now(settings: PersonSettings, now: datetime, default_offset_minutes: int) -> datetime:
    """``now`` (an aware datetime) on the person's wall clock."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    return now.astimezone(person_zone(settings.time_zone, default_offset_minutes))


def local_day(settings: PersonSettings, now: datetime, default_offset_minutes: int) -> date:
    """The person's local date at ``now``."""
    return local_now(settings, now, default_offset_minutes).date()


def clock_time(text: str) -> time:
    """``'20:00'`` → ``time(20, 0)``."""
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def in_quiet_hours(moment: time, start: str | None, end: str | None) -> bool:
    """True when ``moment`` lies in the quiet hours [start, end); they may wrap midnight (22:00–07:00). Without
    both ends, or with equal ends, there are none."""
    if not start or not end or start == end:
        return False
    begins, ends = clock_time(start), clock_time(end)
    if begins < ends:
        return begins <= moment < ends
    return moment >= begins or moment < ends


def _due_today(
    settings: PersonSettings, local: datetime, chosen: str, last_day: str | None
) -> str | None:
    """The local day when ``chosen`` has passed on it, nothing went out that day yet, and it isn't quiet."""
    today = local.date().isoformat()
    wall = local.time().replace(tzinfo=None)
    if last_day is not None and last_day >= today:
        return None
    if wall < clock_time(chosen) or in_quiet_hours(wall, settings.quiet_start, settings.quiet_end):
        return None
    return today


def checkin_due(settings: PersonSettings, now: datetime, default_offset_minutes: int) -> str | None:
    """The person's local day when their daily check-in is due at ``now``, else None."""
    if not settings.checkin_enabled:
        return None
    local = local_now(settings, now, default_offset_minutes)
    return _due_today(settings, local, settings.checkin_time, settings.last_checkin_day)


def weekly_due(settings: PersonSettings, now: datetime, default_offset_minutes: int) -> str | None:
    """The person's local day when their weekly summary is due at ``now`` (on ``weekly_day``, 0 = Monday), else
    None."""
    if not settings.weekly_enabled:
        return None
    local = local_now(settings, now, default_offset_minutes)
    if local.weekday() != settings.weekly_day:
        return None
    return _due_today(settings, local, settings.weekly_time, settings.last_weekly_day)


def plan(people: Iterable[PersonSettings], now: datetime, default_offset_minutes: int) -> list[Due]:
    """Who gets what at ``now``: one ``Due`` per person with something due, in the order given."""
    due = []
    for settings in people:
        checkin = checkin_due(settings, now, default_offset_minutes)
        weekly = weekly_due(settings, now, default_offset_minutes)
        if checkin or weekly:
            due.append(Due(settings.user_id, checkin, weekly))
    return due


def utc_now() -> datetime:
    """The current time, aware, in UTC (the default clock)."""
    return datetime.now(UTC)
