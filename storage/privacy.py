"""What people can ask of their data, and what the retention period asks: forget, purge, export."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

from .connection import Database, fetch_all, fetch_one


class Privacy(Database):
    """Deleting a person's data (then emptying the write-ahead log), retention, and the /export document."""

    async def forget(self, *, chat_id: int, user_id: int) -> int:
        """Delete everything about this user in this chat; return the number of messages deleted.

        Their messages, the bot's replies to them, the sentiments, their own labels and the /reset marker go; the
        user row goes when they have no messages left anywhere, the chat row when it has no messages left. In the
        person's private chat (``chat_id == user_id``) their settings and self-reported moods go too. The
        write-ahead log is emptied afterwards, so no file in the database's folder holds their words any more.
        """
        params = {"chat_id": chat_id, "user_id": user_id}
        async with self._transaction() as db:
            # Counted first: deleting a message cascades to its reply, which DELETE's rowcount would then miss.
            counted = await fetch_one(
                db, "SELECT COUNT(*) AS n FROM messages WHERE user_id = :user_id AND chat_id = :chat_id", params
            )
            assert counted is not None
            await db.execute("DELETE FROM messages WHERE user_id = :user_id AND chat_id = :chat_id", params)
            await db.execute("DELETE FROM conversations WHERE chat_id = :chat_id AND user_id = :user_id", params)
            if chat_id == user_id:  # personal data lives with the private chat
                await db.execute("DELETE FROM person_settings WHERE user_id = :user_id", params)
                await db.execute("DELETE FROM self_reports WHERE user_id = :user_id", params)
            await db.execute(
                """
                DELETE FROM users
                WHERE id = :user_id AND NOT EXISTS (SELECT 1 FROM messages WHERE user_id = :user_id)
                """,
                params,
            )
            await db.execute(
                """
                DELETE FROM chats
                WHERE id = :chat_id AND NOT EXISTS (SELECT 1 FROM messages WHERE chat_id = :chat_id)
                """,
                params,
            )
        await self.checkpoint()
        return int(counted["n"])

    async def purge_older_than(self, cutoff: float) -> int:
        """Delete messages created before ``cutoff`` (unix seconds), the replies to them, their sentiments and
        their authors' own labels;
        return the number of messages deleted. The write-ahead log is emptied afterwards, as after ``forget``."""
        params = {"cutoff": cutoff}
        async with self._transaction() as db:
            # Replies first, so that each deleted row is counted once (a cascade would hide them from rowcount).
            replies = await db.execute(
                "DELETE FROM messages WHERE reply_to IN (SELECT id FROM messages WHERE created_at < :cutoff)", params
            )
            messages = await db.execute("DELETE FROM messages WHERE created_at < :cutoff", params)
            deleted = replies.rowcount + messages.rowcount
        await self.checkpoint()
        return deleted

    async def export_user(self, *, chat_id: int, user_id: int) -> dict[str, Any]:
        """Everything stored about this user in this chat, JSON-ready (times as ISO-8601 UTC); in the person's
        private chat also their settings and self-reported moods."""
        params = {"chat_id": chat_id, "user_id": user_id}
        async with self._reading() as db:
            user = await fetch_one(db, "SELECT first_name, username FROM users WHERE id = :user_id", params)
            rows = await fetch_all(
                db,
                """
                SELECT m.id, m.role, m.text, m.created_at, m.edited_at, m.telegram_message_id, m.reply_to,
                       s.label, s.score, s.probs, s.model, s.care, c.created_at AS care_offered_at,
                       own.label AS own_label, own.corrected_at
                FROM messages AS m
                LEFT JOIN sentiments AS s ON s.message_id = m.id
                LEFT JOIN care_events AS c ON c.message_id = m.id
                LEFT JOIN corrections AS own ON own.message_id = m.id
                WHERE m.user_id = :user_id AND m.chat_id = :chat_id
                ORDER BY m.id
                """,
                params,
            )
            personal = chat_id == user_id
            settings = await fetch_one(db, "SELECT * FROM person_settings WHERE user_id = :user_id", params)
            reports = await fetch_all(
                db, "SELECT day, score, note, reported_at FROM self_reports WHERE user_id = :user_id ORDER BY day",
                params,
            )
        document: dict[str, Any] = {
            "chat_id": chat_id,
            "user_id": user_id,
            "user": {"first_name": user["first_name"], "username": user["username"]} if user is not None else None,
            "messages": [_export_message(row) for row in rows],
        }
        if personal:
            document["settings"] = _export_settings(settings)
            document["self_reports"] = [
                {"day": r["day"], "score": r["score"], "note": r["note"], "reported_at": _iso(r["reported_at"])}
                for r in reports
            ]
        return document


def _export_settings(row: sqlite3.Row | None) -> dict[str, Any] | None:
    if row is None:
        return None
    values = {key: row[key] for key in row.keys() if key not in ("user_id", "updated_at")}  # noqa: SIM118 (a Row iterates values)
    values["updated_at"] = _iso(row["updated_at"])
    return values


def _export_message(row: sqlite3.Row) -> dict[str, Any]:
    sentiment = None
    if row["label"] is not None:
        sentiment = {
            "label": row["label"],
            "score": row["score"],
            "probs": json.loads(row["probs"]),
            "model": row["model"],
            "care": row["care"],
        }
    return {
        "id": row["id"],
        "role": row["role"],
        "text": row["text"],
        "created_at": _iso(row["created_at"]),
        "edited_at": _iso(row["edited_at"]),
        "telegram_message_id": row["telegram_message_id"],
        "reply_to": row["reply_to"],
        "sentiment": sentiment,
        "your_label": _own_label(row),
        "help_offered_at": _iso(row["care_offered_at"]),
    }


def _own_label(row: sqlite3.Row) -> dict[str, Any] | None:
    """The label the person gave the message themselves, beside the model's ``sentiment``: when, and whether the
    message was edited after it (the label stays with the message through edits)."""
    if row["own_label"] is None:
        return None
    edited_after = row["edited_at"] is not None and row["edited_at"] > row["corrected_at"]
    return {"label": row["own_label"], "set_at": _iso(row["corrected_at"]), "message_edited_since": edited_after}


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, tz=UTC).isoformat()
