"""The check-in planner, pure: local days and times per time zone, quiet hours (wrapping midnight too), late but the
same day only, never twice a day, the weekly day; and the pacer that spaces scheduled sends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time

import pytest

from bot.flow.schedule import (
    Due,
    checkin_due,
    in_quiet_hours,
    local_now,
    person_zone,
    plan,
    weekly_due,
)
from bot.telegram.scheduled import Pacer
from storage import PersonSettings


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


SHANGHAI = PersonSettings(1, time_zone="Asia/Shanghai", checkin_enabled=True, checkin_time="20:00")
NEW_YORK = PersonSettings(2, time_zone="America/New_York", checkin_enabled=True, checkin_time="20:00")


def test_a_check_in_is_due_from_the_chosen_local_time_on() -> None:
    assert checkin_due(SHANGHAI, at(2026, 6, 1, 11, 59), 0) is None  # 19:59 in Shanghai
    assert checkin_due(SHANGHAI, at(2026, 6, 1, 12, 0), 0) == "2026-06-01"  # 20:00
    assert checkin_due(SHANGHAI, at(2026, 6, 1, 15, 59), 0) == "2026-06-01"  # 23:59: late, the same day
    assert checkin_due(SHANGHAI, at(2026, 6, 1, 16, 0), 0) is None  # 00:00 the next day: that day's time is later
    assert checkin_due(NEW_YORK, at(2026, 6, 1, 12, 0), 0) is None  # 08:00 in New York (EDT)
    assert checkin_due(NEW_YORK, at(2026, 6, 2, 0, 0), 0) == "2026-06-01"  # 20:00 on 1 June in New York
    assert checkin_due(NEW_YORK, at(2026, 12, 2, 0, 59), 0) is None  # 19:59 in winter (EST, UTC-5)
    assert checkin_due(NEW_YORK, at(2026, 12, 2, 1, 0), 0) == "2026-12-01"


def test_never_twice_a_day_and_never_when_off() -> None:
    sent = PersonSettings(1, time_zone="Asia/Shanghai", checkin_enabled=True, last_checkin_day="2026-06-01")
    assert checkin_due(sent, at(2026, 6, 1, 13, 0), 0) is None
    assert checkin_due(sent, at(2026, 6, 2, 12, 0), 0) == "2026-06-02"
    off = PersonSettings(1, checkin_enabled=False)
    assert checkin_due(off, at(2026, 6, 1, 23, 0), 0) is None


def test_without_a_time_zone_the_configured_offset_is_used() -> None:
    person = PersonSettings(3, checkin_enabled=True, checkin_time="20:00")
    assert checkin_due(person, at(2026, 6, 1, 19, 59), 0) is None
    assert checkin_due(person, at(2026, 6, 1, 20, 0), 0) == "2026-06-01"
    assert checkin_due(person, at(2026, 6, 1, 14, 30), 330) == "2026-06-01"  # UTC+05:30: 20:00
    unknown = PersonSettings(3, time_zone="Mars/Olympus_Mons", checkin_enabled=True)
    assert person_zone(unknown.time_zone, 60).utcoffset(None).total_seconds() == 3600  # type: ignore[union-attr]
    assert local_now(NEW_YORK, at(2026, 6, 2), 0).hour == 20
    with pytest.raises(ValueError):
        local_now(SHANGHAI, datetime(2026, 6, 1), 0)


@pytest.mark.parametrize(
    ("moment", "start", "end", "quiet"),
    [
        (time(21, 0), "22:00", "07:00", False),
        (time(22, 0), "22:00", "07:00", True),
        (time(3, 0), "22:00", "07:00", True),  # after midnight, still quiet
        (time(7, 0), "22:00", "07:00", False),  # the end is not quiet any more
        (time(13, 0), "12:00", "14:00", True),
        (time(14, 0), "12:00", "14:00", False),
        (time(13, 0), None, "14:00", False),  # one end alone means none
        (time(13, 0), "13:00", "13:00", False),  # equal ends mean none
    ],
)
def test_quiet_hours_may_wrap_midnight(moment: time, start: str | None, end: str | None, quiet: bool) -> None:
    assert in_quiet_hours(moment, start, end) is quiet


def test_quiet_hours_hold_a_check_in_back_until_they_end_the_same_day() -> None:
    person = PersonSettings(4, checkin_enabled=True, checkin_time="20:00", quiet_start="19:30", quiet_end="21:00")
    assert checkin_due(person, at(2026, 6, 1, 20, 0), 0) is None
    assert checkin_due(person, at(2026, 6, 1, 20, 59), 0) is None
    assert checkin_due(person, at(2026, 6, 1, 21, 0), 0) == "2026-06-01"
    early = PersonSettings(5, checkin_enabled=True, checkin_time="06:00", quiet_start="22:00", quiet_end="07:00")
    assert checkin_due(early, at(2026, 6, 1, 6, 30), 0) is None
    assert checkin_due(early, at(2026, 6, 1, 7, 0), 0) == "2026-06-01"
    night = PersonSettings(6, checkin_enabled=True, checkin_time="23:00", quiet_start="22:00", quiet_end="07:00")
    assert [checkin_due(night, at(2026, 6, 1, h, 0), 0) for h in (22, 23)] == [None, None]
    assert checkin_due(night, at(2026, 6, 2, 7, 0), 0) is None, "the next morning is another day, before 23:00"


def test_the_weekly_summary_is_due_on_its_day_from_its_time() -> None:
    person = PersonSettings(7, time_zone="Asia/Shanghai", weekly_enabled=True, weekly_day=6, weekly_time="19:00")
    assert weekly_due(person, at(2026, 6, 7, 10, 59), 0) is None  # Sunday 18:59 in Shanghai
    assert weekly_due(person, at(2026, 6, 7, 11, 0), 0) == "2026-06-07"
    assert weekly_due(person, at(2026, 6, 6, 11, 0), 0) is None  # a Saturday
    assert weekly_due(person, at(2026, 6, 7, 16, 0), 0) is None  # Monday 00:00 there: missed, not late next day
    done = PersonSettings(7, weekly_enabled=True, weekly_day=6, last_weekly_day="2026-06-07")
    assert weekly_due(done, at(2026, 6, 7, 21, 0), 0) is None
    assert weekly_due(PersonSettings(7, weekly_day=6), at(2026, 6, 7, 21, 0), 0) is None


def test_plan_lists_only_who_has_something_due() -> None:
    both = PersonSettings(8, checkin_enabled=True, checkin_time="18:00", weekly_enabled=True, weekly_day=6)
    assert plan([SHANGHAI, NEW_YORK, both], at(2026, 6, 7, 19, 30), 0) == [
        Due(8, "2026-06-07", "2026-06-07")
    ]
    assert plan([SHANGHAI, NEW_YORK], at(2026, 6, 7, 12, 0), 0) == [Due(1, "2026-06-07", None)]


async def test_the_pacer_spaces_starts_and_bounds_how_many_run_at_once() -> None:
    now = [0.0]
    starts: list[float] = []
    running = [0, 0]  # now, most

    async def sleep(seconds: float) -> None:
        now[0] += seconds
        await asyncio.sleep(0)

    pacer = Pacer(per_second=20, concurrency=3, clock=lambda: now[0], sleep=sleep)

    async def send() -> None:
        async with pacer.slot():
            starts.append(now[0])
            running[0] += 1
            running[1] = max(running[1], running[0])
            for _ in range(5):  # a request that takes a while: other sends get their turn meanwhile
                await asyncio.sleep(0)
            running[0] -= 1

    await asyncio.gather(*(send() for _ in range(10)))
    assert starts == pytest.approx([i * 0.05 for i in range(10)])
    assert running[1] == 3
