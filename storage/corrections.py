"""People's own labels ("Fix a mood"): setting one on a message, the messages offered for it, and the corrected
messages as labelled examples.

A correction is kept apart from the model's sentiment and never replaces it; the mood log counts the person's label
where there is one (``storage.mood``). It belongs to its message: editing the message re-classifies it but keeps the
correction, and deleting the message (/forget, retention) deletes it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence

from .connection import Database, fetch_all, fetch_one
from .models import LABELS, CorrectedExample, CorrectionOutcome, LabelledMessage

# A person's user messages with both labels and their chat (``m`` messages, ``s`` sentiments, ``c`` corrections).
_LABELLED = """
    SELECT m.id, m.chat_id, ch.kind AS chat_kind, ch.title AS chat_title, m.text, m.created_at,
           s.label AS model_label, c.label AS person_label
    FROM messages AS m
    JOIN chats AS ch ON ch.id = m.chat_id
    LEFT JOIN sentiments AS s ON s.message_id = m.id
    LEFT JOIN corrections AS c ON c.message_id = m.id
"""


class Corrections(Database):
    """The ``corrections`` table: one person-given label per message, the latest one."""

    async def set_label(self, *, message_id: int, user_id: int, label: str) -> CorrectionOutcome:
        """Store ``label`` as ``user_id``'s own label for their message ``message_id`` (replacing an earlier one);
        refused when the message is someone else's, GONE when it is no longer stored (or is not a person's)."""
        if label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {label!r}")
        params = {"message_id": message_id, "user_id": user_id, "label": label, "now": time.time()}
        async with self._transaction() as db:
            owner = await fetch_one(
                db, "SELECT user_id FROM messages WHERE id = :message_id AND role = 'user'", params
            )
            if owner is None:
                return CorrectionOutcome.GONE
            if owner["user_id"] != user_id:
                return CorrectionOutcome.NOT_YOURS
            await db.execute(
                """
                INSERT INTO corrections (message_id, label, corrected_at) VALUES (:message_id, :label, :now)
                ON CONFLICT (message_id) DO UPDATE SET label = excluded.label, corrected_at = excluded.corrected_at
                """,
                params,
            )
        return CorrectionOutcome.SAVED

    async def recent_labelled(self, *, chat_id: int, user_id: int, limit: int = 5) -> list[LabelledMessage]:
        """This person's last ``limit`` messages in this chat, oldest first, with both labels."""
        async with self._reading() as db:
            rows = await fetch_all(
                db,
                f"""
                {_LABELLED}
                WHERE m.user_id = :user_id AND m.chat_id = :chat_id AND m.role = 'user'
                ORDER BY m.id DESC
                LIMIT :limit
                """,
                {"chat_id": chat_id, "user_id": user_id, "limit": limit},
            )
        return [_labelled(row) for row in reversed(rows)]

    async def labelled_messages(self, *, user_id: int, message_ids: Sequence[int]) -> list[LabelledMessage]:
        """Those of ``message_ids`` that are still stored and are ``user_id``'s, oldest first, with both labels."""
        async with self._reading() as db:
            rows = await fetch_all(
                db,
                f"""
                {_LABELLED}
                WHERE m.id IN (SELECT value FROM json_each(:message_ids))
                  AND m.user_id = :user_id AND m.role = 'user'
                ORDER BY m.id
                """,
                {"message_ids": json.dumps(list(message_ids)), "user_id": user_id},
            )
        return [_labelled(row) for row in rows]

    async def corrected_examples(self, *, user_id: int | None = None) -> list[CorrectedExample]:
        """Every message its author gave a label (only ``user_id``'s unless None), oldest first, with its current
        text: the examples ``moodbot labels`` writes."""
        async with self._reading() as db:
            # Reads all of corrections on purpose: it wants every row (a person's corrections are few).
            rows = await fetch_all(
                db,
                """
                SELECT m.id, m.user_id, m.text, corrected.label
                FROM corrections AS corrected
                JOIN messages AS m ON m.id = corrected.message_id
                WHERE :user_id IS NULL OR m.user_id = :user_id
                ORDER BY corrected.message_id
                """,
                {"user_id": user_id},
            )
        return [CorrectedExample(row["id"], row["user_id"], row["text"], row["label"]) for row in rows]


def _labelled(row: sqlite3.Row) -> LabelledMessage:
    return LabelledMessage(
        id=row["id"],
        chat_id=row["chat_id"],
        chat_kind=row["chat_kind"],
        chat_title=row["chat_title"],
        text=row["text"],
        created_at=row["created_at"],
        model_label=row["model_label"],
        person_label=row["person_label"],
    )
