"""Work still owed for stored messages: replies (to send late after a crash) and moods (for the back-fill)."""

from __future__ import annotations

import json

from .connection import Database, fetch_all, fetch_one
from .messages import M_MESSAGE_COLUMNS, message_from_row
from .models import OwedReply, StoredMessage


class PendingWork(Database):
    """The ``pending_replies`` and ``pending_moods`` queues. A message joins them when it is stored
    (``record_arrival``, ``update_user_message_text``) and leaves them when its reply (``add_reply``) or its
    sentiment (``add_sentiment``) is stored, or here."""

    # -- replies owed --------------------------------------------------------------------------------------------

    async def reply_owed(self, message_id: int) -> bool:
        """Whether user message ``message_id`` still waits for its reply."""
        async with self._reading() as db:
            row = await fetch_one(
                db, "SELECT 1 FROM pending_replies WHERE message_id = :message_id", {"message_id": message_id}
            )
        return row is not None

    async def set_reply_draft(self, message_id: int, draft_message_id: int) -> None:
        """Remember the Telegram message a reply to ``message_id`` is being streamed into (to finish it after a
        crash)."""
        async with self._transaction() as db:
            await db.execute(
                "UPDATE pending_replies SET draft_message_id = :draft WHERE message_id = :message_id",
                {"message_id": message_id, "draft": draft_message_id},
            )

    async def settle_replies(self, message_ids: list[int]) -> None:
        """Owe no reply to these messages any more (answered some other way, or too old to answer late)."""
        if not message_ids:
            return
        async with self._transaction() as db:
            await db.execute(
                "DELETE FROM pending_replies WHERE message_id IN (SELECT value FROM json_each(:message_ids))",
                {"message_ids": json.dumps(message_ids)},
            )

    async def owed_replies(self) -> list[OwedReply]:
        """Every user message still waiting for its reply, oldest first, with its chat's kind, its forum topic and
        the Telegram id of the unfinished reply message, if one was sent."""
        async with self._reading() as db:
            # Ordered by the queue's own key, so that the plan walks the short queue, not every stored message.
            rows = await fetch_all(
                db,
                f"""
                SELECT {M_MESSAGE_COLUMNS}, c.kind AS chat_kind, p.thread_id, p.draft_message_id
                FROM pending_replies AS p
                JOIN messages AS m ON m.id = p.message_id
                JOIN chats AS c ON c.id = m.chat_id
                ORDER BY p.message_id
                """,
            )
        return [
            OwedReply(message_from_row(row), row["chat_kind"], row["thread_id"], row["draft_message_id"])
            for row in rows
        ]

    # -- moods owed ----------------------------------------------------------------------------------------------

    async def unclassified_messages(
        self, limit: int = 100, *, max_attempts: int | None = None, after_id: int = 0, skip_owed: bool = False
    ) -> list[StoredMessage]:
        """User messages that have no sentiment yet, oldest first (to back-fill after a crash or a busy spell):
        only ids above ``after_id``; with ``max_attempts``, only those whose classification failed fewer times;
        with ``skip_owed``, not those still waiting for their reply (answering one classifies it). Never those of
        people who turned mood analysis off (/settings), while it is off."""
        if limit <= 0:
            return []
        async with self._reading() as db:
            rows = await fetch_all(
                db,
                f"""
                SELECT {M_MESSAGE_COLUMNS}
                FROM pending_moods AS p
                JOIN messages AS m ON m.id = p.message_id
                WHERE p.message_id > :after_id
                  AND (:max_attempts IS NULL OR p.attempts < :max_attempts)
                  AND NOT (:skip_owed AND EXISTS (SELECT 1 FROM pending_replies AS r WHERE r.message_id = p.message_id))
                  AND NOT EXISTS (
                      SELECT 1 FROM person_settings AS s WHERE s.user_id = m.user_id AND s.analyse_mood = 0
                  )
                ORDER BY p.message_id
                LIMIT :limit
                """,
                {"limit": limit, "max_attempts": max_attempts, "after_id": after_id, "skip_owed": skip_owed},
            )
        return [message_from_row(row) for row in rows]

    async def record_classify_failure(self, message_id: int) -> int:
        """Count one more failed classification of ``message_id``; return how many it has had (0: not owed a
        mood any more)."""
        async with self._transaction() as db:
            row = await fetch_one(
                db,
                """
                UPDATE pending_moods SET attempts = attempts + 1 WHERE message_id = :message_id
                RETURNING attempts
                """,
                {"message_id": message_id},
            )
        return int(row["attempts"]) if row is not None else 0
