"""A person's settings and the moods they report themselves: /settings, check-ins, the weekly summary.

Settings are personal, not per chat: one row per Telegram user id, created on the first change (reading a person
with no row gives the defaults). Self-reports are one per person and local day; a later tap that day replaces the
score and keeps the note.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import fields
from typing import Any

from .connection import Database, fetch_all, fetch_one
from .models import PersonSettings, SelfReport

_CHANGEABLE = frozenset(f.name for f in fields(PersonSettings)) - {"user_id"}
_BOOLEANS = frozenset({"checkin_enabled", "weekly_enabled", "analyse_mood", "checkin_offered"})
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class Settings(Database):
    """The ``person_settings`` and ``self_reports`` tables."""

    async def person_settings(self, user_id: int) -> PersonSettings:
        """The person's settings (the defaults when they never changed any)."""
        async with self._reading() as db:
            row = await fetch_one(db, "SELECT * FROM person_settings WHERE user_id = :user_id", {"user_id": user_id})
        return PersonSettings(user_id=user_id) if row is None else _settings(row)

    async def update_settings(self, user_id: int, /, **changes: Any) -> PersonSettings:
        """Change some of the person's settings (creating their row) and return all of them.

        Unknown names and malformed times/days raise ``ValueError`` before anything is written.
        """
        unknown = set(changes) - _CHANGEABLE
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        for name in ("checkin_time", "weekly_time", "quiet_start", "quiet_end"):
            value = changes.get(name)
            if value is not None and not _TIME.match(value):
                raise ValueError(f"{name} must be HH:MM, got {value!r}")
        for name in ("last_checkin_day", "last_weekly_day"):
            value = changes.get(name)
            if value is not None and not _DAY.match(value):
                raise ValueError(f"{name} must be YYYY-MM-DD, got {value!r}")
        values = {name: int(value) if name in _BOOLEANS else value for name, value in changes.items()}
        params = {"user_id": user_id, "now": time.time(), **values}
        assignments = "".join(f", {name} = :{name}" for name in values)
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO person_settings (user_id, updated_at) VALUES (:user_id, :now) ON CONFLICT DO NOTHING",
                params,
            )
            # The names come from PersonSettings' fields (checked above), never from input.
            await db.execute(
                f"UPDATE person_settings SET updated_at = :now{assignments} WHERE user_id = :user_id", params
            )
            row = await fetch_one(db, "SELECT * FROM person_settings WHERE user_id = :user_id", params)
        assert row is not None
        return _settings(row)

    async def scheduled_people(self) -> list[PersonSettings]:
        """Everyone with check-ins or the weekly summary switched on (to rebuild the schedule at start)."""
        async with self._reading() as db:
            rows = await fetch_all(
                db, "SELECT * FROM person_settings WHERE checkin_enabled = 1 OR weekly_enabled = 1 ORDER BY user_id"
            )
        return [_settings(row) for row in rows]

    async def claim_checkin(self, user_id: int, day: str) -> bool:
        """Record that today's (``day``, local) check-in goes out now; False when one already went out that day,
        so a restart or a second job can never ask twice."""
        return await self._claim(user_id, day, "last_checkin_day")

    async def claim_weekly(self, user_id: int, day: str) -> bool:
        """Record that the weekly summary for ``day`` (local) goes out now; False when it already did."""
        return await self._claim(user_id, day, "last_weekly_day")

    async def _claim(self, user_id: int, day: str, column: str) -> bool:
        if not _DAY.match(day):
            raise ValueError(f"day must be YYYY-MM-DD, got {day!r}")
        params = {"user_id": user_id, "day": day, "now": time.time()}
        async with self._transaction() as db:
            cursor = await db.execute(
                f"""
                UPDATE person_settings SET {column} = :day, updated_at = :now
                WHERE user_id = :user_id AND ({column} IS NULL OR {column} < :day)
                """,
                params,
            )
            return cursor.rowcount == 1

    async def stop_schedules(self, user_id: int) -> None:
        """Switch the person's check-ins and weekly summary off (they blocked the bot)."""
        async with self._transaction() as db:
            await db.execute(
                """
                UPDATE person_settings SET checkin_enabled = 0, weekly_enabled = 0, updated_at = :now
                WHERE user_id = :user_id
                """,
                {"user_id": user_id, "now": time.time()},
            )

    async def report_mood(self, user_id: int, day: str, score: float) -> SelfReport:
        """Store the mood the person reported for their local ``day`` (replacing an earlier tap that day)."""
        if not -1.0 <= score <= 1.0:
            raise ValueError(f"score must be in [-1, 1], got {score}")
        if not _DAY.match(day):
            raise ValueError(f"day must be YYYY-MM-DD, got {day!r}")
        params = {"user_id": user_id, "day": day, "score": score, "now": time.time()}
        async with self._transaction() as db:
            await db.execute(
                """
                INSERT INTO self_reports (user_id, day, score, reported_at) VALUES (:user_id, :day, :score, :now)
                ON CONFLICT (user_id, day) DO UPDATE SET score = excluded.score, reported_at = excluded.reported_at
                """,
                params,
            )
            row = await fetch_one(db, "SELECT * FROM self_reports WHERE user_id = :user_id AND day = :day", params)
        assert row is not None
        return _report(row)

    async def note_day(self, user_id: int, day: str, note: str) -> bool:
        """Keep ``note`` as the day's note beside the person's self-report; False when there is no report that day."""
        params = {"user_id": user_id, "day": day, "note": note}
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE self_reports SET note = :note WHERE user_id = :user_id AND day = :day", params
            )
            return cursor.rowcount == 1

    async def self_reports(self, user_id: int, *, since_day: str | None = None) -> list[SelfReport]:
        """The person's self-reports, oldest first, from ``since_day`` (local 'YYYY-MM-DD') on when given."""
        params = {"user_id": user_id, "since": since_day or ""}
        async with self._reading() as db:
            rows = await fetch_all(
                db, "SELECT * FROM self_reports WHERE user_id = :user_id AND day >= :since ORDER BY day", params
            )
        return [_report(row) for row in rows]


def _settings(row: sqlite3.Row) -> PersonSettings:
    values = {f.name: row[f.name] for f in fields(PersonSettings)}
    for name in _BOOLEANS:
        values[name] = bool(values[name])
    return PersonSettings(**values)


def _report(row: sqlite3.Row) -> SelfReport:
    return SelfReport(day=row["day"], score=row["score"], note=row["note"], reported_at=row["reported_at"])
