"""Sentiments and the mood log: storing verdicts and care events, and the per-day aggregate every mood view reads."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, tzinfo

import aiosqlite

from .connection import Database, fetch_all
from .models import DayMood, MoodSummary, SentimentRecord, UserMood
from .zones import zone_key


class Mood(Database):
    """Sentiments of user messages, care events, and mood per local day, per member and over a period."""

    # -- verdicts ------------------------------------------------------------------------------------------------

    async def add_sentiment(self, message_id: int, sentiment: SentimentRecord, *, text: str | None = None) -> bool:
        """Store (or replace) the sentiment of a message; False if the message no longer exists (forgotten) or,
        with ``text``, no longer reads ``text`` (edited meanwhile: the edit's own classification will follow)."""
        async with self._transaction() as db:
            cursor = await db.execute(
                """
                INSERT INTO sentiments (message_id, label, score, probs, model, care, created_at)
                SELECT id, :label, :score, :probs, :model, :care, :now FROM messages
                WHERE id = :message_id AND (:text IS NULL OR text = :text)
                ON CONFLICT (message_id) DO UPDATE SET
                    label = excluded.label, score = excluded.score, probs = excluded.probs,
                    model = excluded.model, care = excluded.care, created_at = excluded.created_at
                """,
                {
                    "message_id": message_id,
                    "text": text,
                    "label": sentiment.label,
                    "score": sentiment.score,
                    "probs": json.dumps(sentiment.probs, sort_keys=True),
                    "model": sentiment.model,
                    "care": min(1.0, max(0.0, sentiment.care)),
                    "now": time.time(),
                },
            )
            if cursor.rowcount <= 0:
                return False
            await db.execute("DELETE FROM pending_moods WHERE message_id = :message_id", {"message_id": message_id})
            return True

    async def add_care_event(self, message_id: int, probability: float) -> bool:
        """Record that help resources were offered for a message; False if the message no longer exists."""
        async with self._transaction() as db:
            cursor = await db.execute(
                """
                INSERT OR IGNORE INTO care_events (message_id, probability, created_at)
                SELECT id, :probability, :now FROM messages WHERE id = :message_id
                """,
                {"message_id": message_id, "probability": probability, "now": time.time()},
            )
            return cursor.rowcount > 0

    # -- the mood log --------------------------------------------------------------------------------------------

    async def mood_by_day(
        self,
        *,
        chat_id: int,
        user_id: int | None,
        since: float,
        until: float | None = None,
        zone: tzinfo = UTC,
    ) -> list[DayMood]:
        """Classified user messages in [since, until) per day in ``zone`` (a ``ZoneInfo``, daylight saving time
        included, or a fixed ``datetime.timezone``), oldest day first; user_id None = whole chat."""
        key = zone_key(zone)
        async with self._reading() as db:
            rows = await _day_rows(
                db, chat_id=chat_id, user_id=user_id, since=since, until=until, zone=key, per_member=False
            )
        return [_day_mood(row) for row in rows if row["messages"]]

    async def mood_summary(
        self,
        *,
        chat_id: int,
        user_id: int | None,
        since: float,
        until: float | None = None,
        zone: tzinfo = UTC,
    ) -> MoodSummary:
        """``mood_by_day`` plus totals and label shares over the whole period."""
        days = await self.mood_by_day(chat_id=chat_id, user_id=user_id, since=since, until=until, zone=zone)
        return summarize(days)

    async def mood_by_user(
        self, *, chat_id: int, since: float, until: float | None = None, zone: tzinfo = UTC
    ) -> list[UserMood]:
        """Mood of every member who wrote in [since, until), most classified messages first, by day in ``zone``.

        Members whose messages are not classified yet are listed with an empty summary.
        """
        key = zone_key(zone)
        async with self._reading() as db:
            rows = await _day_rows(
                db, chat_id=chat_id, user_id=None, since=since, until=until, zone=key, per_member=True
            )
            members = {row["member"] for row in rows}
            users = await fetch_all(
                db,
                "SELECT id, first_name, username FROM users WHERE id IN (SELECT value FROM json_each(:user_ids))",
                {"user_ids": json.dumps(sorted(members))},
            )
        days: dict[int, list[DayMood]] = {member: [] for member in sorted(members)}
        for row in rows:
            if row["messages"]:
                days[row["member"]].append(_day_mood(row))
        names = {user["id"]: display_name(user["id"], user["first_name"], user["username"]) for user in users}
        moods = [UserMood(member, names[member], summarize(member_days)) for member, member_days in days.items()]
        moods.sort(key=lambda mood: (-mood.summary.messages, mood.display_name.casefold(), mood.user_id))
        return moods


async def _day_rows(
    db: aiosqlite.Connection,
    *,
    chat_id: int,
    user_id: int | None,
    since: float,
    until: float | None,
    zone: str,
    per_member: bool,
) -> list[sqlite3.Row]:
    """The per-day aggregate: the user messages of ``chat_id`` in [since, until) (only ``user_id``'s unless None),
    per local day and, with ``per_member``, per member (``member`` is NULL without).

    Each message's day is its own timestamp's date in ``zone`` (a ``zone_key``), through the connection's
    ``local_day`` function: around a daylight-saving change the offset differs between the messages of one query,
    which no single ``date(…, '+N minutes')`` modifier could express.

    A message's mood is the label its author gave it ("Fix a mood") where there is one, scored as certain (+1, 0,
    −1: the analyst's P(positive) − P(negative) for that label alone), else the model's label and score.
    ``messages`` counts the messages with a mood; a day whose messages have none has a row with 0, so that members
    who only wrote such messages are still seen.
    """
    return await fetch_all(
        db,
        """
        SELECT CASE WHEN :per_member THEN m.user_id END AS member,
               local_day(m.created_at, :zone) AS day,
               COUNT(COALESCE(c.message_id, s.message_id)) AS messages,
               AVG(CASE c.label WHEN 'positive' THEN 1.0 WHEN 'neutral' THEN 0.0 WHEN 'negative' THEN -1.0
                   ELSE s.score END) AS average_score,
               COUNT(*) FILTER (WHERE COALESCE(c.label, s.label) = 'positive') AS positive,
               COUNT(*) FILTER (WHERE COALESCE(c.label, s.label) = 'neutral') AS neutral,
               COUNT(*) FILTER (WHERE COALESCE(c.label, s.label) = 'negative') AS negative
        FROM messages AS m
        LEFT JOIN sentiments AS s ON s.message_id = m.id
        LEFT JOIN corrections AS c ON c.message_id = m.id
        WHERE m.chat_id = :chat_id
          AND m.created_at >= :since
          AND (:until IS NULL OR m.created_at < :until)
          AND (:user_id IS NULL OR m.user_id = :user_id)
          AND m.role = 'user'
        GROUP BY member, day
        ORDER BY member, day
        """,
        {
            "chat_id": chat_id, "user_id": user_id, "since": since, "until": until, "zone": zone,
            "per_member": per_member,
        },
    )


def _day_mood(row: sqlite3.Row) -> DayMood:
    return DayMood(
        day=row["day"],
        messages=row["messages"],
        average_score=row["average_score"],
        positive=row["positive"],
        neutral=row["neutral"],
        negative=row["negative"],
    )


# -- pure helpers --------------------------------------------------------------------------------------------------


def display_name(user_id: int, first_name: str | None, username: str | None) -> str:
    """First name, else @username, else 'user <id>'."""
    if first_name:
        return first_name
    if username:
        return f"@{username}"
    return f"user {user_id}"


def summarize(days: Sequence[DayMood]) -> MoodSummary:
    """Totals and label shares over ``days``; ``average_score`` is None when nothing was classified."""
    total = sum(day.messages for day in days)
    if total == 0:
        return MoodSummary(0, None, 0.0, 0.0, 0.0, list(days))
    return MoodSummary(
        messages=total,
        average_score=sum(day.average_score * day.messages for day in days) / total,
        positive_share=sum(day.positive for day in days) / total,
        neutral_share=sum(day.neutral for day in days) / total,
        negative_share=sum(day.negative for day in days) / total,
        days=list(days),
    )
