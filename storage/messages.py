"""Chats, users and their messages: arrival, the bot's replies, edits, and each person's conversation history."""

from __future__ import annotations

import sqlite3
import time

import aiosqlite

from .connection import Database, fetch_all, fetch_one
from .models import HistoryTurn, StoredMessage

# The columns a StoredMessage is read from, in every query that returns one (``m.`` where messages is ``m``).
MESSAGE_COLUMNS = "id, chat_id, user_id, role, text, created_at, telegram_message_id"
M_MESSAGE_COLUMNS = "m.id, m.chat_id, m.user_id, m.role, m.text, m.created_at, m.telegram_message_id"


def message_from_row(row: sqlite3.Row, *, is_new: bool = False) -> StoredMessage:
    """The StoredMessage in a row of ``MESSAGE_COLUMNS``."""
    return StoredMessage(
        id=row["id"],
        chat_id=row["chat_id"],
        user_id=row["user_id"],
        role=row["role"],
        text=row["text"],
        created_at=row["created_at"],
        telegram_message_id=row["telegram_message_id"],
        is_new=is_new,
    )


class Messages(Database):
    """Writes and reads of chats, users, messages and replies."""

    # -- chats and users ---------------------------------------------------------------------------------------

    async def upsert_chat(self, chat_id: int, kind: str, title: str | None) -> None:
        """Create the chat or update its kind and title."""
        async with self._transaction() as db:
            await _upsert_chat(db, chat_id=chat_id, kind=kind, title=title, now=time.time())

    async def upsert_user(self, user_id: int, first_name: str | None, username: str | None) -> None:
        """Create the user or update their names."""
        async with self._transaction() as db:
            await _upsert_user(db, user_id=user_id, first_name=first_name, username=username, now=time.time())

    # -- incoming messages -------------------------------------------------------------------------------------

    async def record_arrival(
        self,
        *,
        chat_id: int,
        chat_kind: str,
        chat_title: str | None,
        user_id: int,
        first_name: str | None,
        username: str | None,
        text: str,
        telegram_message_id: int | None,
        reply_owed: bool,
        thread_id: int | None = None,
        created_at: float | None = None,
    ) -> StoredMessage:
        """Store a message the moment it arrives, with who sent it where, in one transaction; ``reply_owed``
        marks it as waiting for a reply (in forum topic ``thread_id``) until ``add_reply`` (or
        ``settle_replies``). A Telegram message already stored is returned with is_new=False and left as it was."""
        now = time.time() if created_at is None else created_at
        async with self._transaction() as db:
            await _upsert_chat(db, chat_id=chat_id, kind=chat_kind, title=chat_title, now=now)
            await _upsert_user(db, user_id=user_id, first_name=first_name, username=username, now=now)
            message = await _insert_user_message(
                db, chat_id=chat_id, user_id=user_id, text=text, telegram_message_id=telegram_message_id, now=now
            )
            if message.is_new and reply_owed:
                await db.execute(
                    "INSERT INTO pending_replies (message_id, thread_id) VALUES (:message_id, :thread_id)",
                    {"message_id": message.id, "thread_id": thread_id},
                )
            return message

    async def add_user_message(
        self,
        *,
        chat_id: int,
        user_id: int,
        text: str,
        telegram_message_id: int | None,
        created_at: float | None = None,
    ) -> StoredMessage:
        """Store an incoming message and commit; a Telegram message already stored is returned with is_new=False.

        Missing chat and user rows are created (kind 'unknown', no names) so callers cannot trip foreign keys.
        """
        now = time.time() if created_at is None else created_at
        async with self._transaction() as db:
            await _ensure_chat_and_user(db, chat_id=chat_id, user_id=user_id, now=now)
            return await _insert_user_message(
                db, chat_id=chat_id, user_id=user_id, text=text, telegram_message_id=telegram_message_id, now=now
            )

    async def has_user_message(self, *, chat_id: int, telegram_message_id: int) -> bool:
        """Whether this Telegram message of this chat is stored (committed) as a user message."""
        async with self._reading() as db:
            row = await fetch_one(
                db,
                """
                SELECT 1 FROM messages
                WHERE chat_id = :chat_id AND telegram_message_id = :telegram_message_id AND role = 'user'
                """,
                {"chat_id": chat_id, "telegram_message_id": telegram_message_id},
            )
        return row is not None

    async def update_user_message_text(
        self, *, chat_id: int, telegram_message_id: int, text: str
    ) -> StoredMessage | None:
        """Replace the text of an edited user message; None if that Telegram message is not stored.

        The old sentiment described the old text and is dropped: classify the returned message again, or let
        ``unclassified_messages`` pick it up (its failed attempts start again from 0). The label the person gave the
        message themselves stays (an edit mostly fixes words, not the mood meant; they can fix it again, and
        ``export_user`` says it was given before the edit).
        """
        async with self._transaction() as db:
            row = await fetch_one(
                db,
                f"""
                UPDATE messages SET text = :text, edited_at = :now
                WHERE chat_id = :chat_id AND telegram_message_id = :telegram_message_id AND role = 'user'
                RETURNING {MESSAGE_COLUMNS}
                """,
                {"chat_id": chat_id, "telegram_message_id": telegram_message_id, "text": text, "now": time.time()},
            )
            if row is None:
                return None
            await db.execute("DELETE FROM sentiments WHERE message_id = :message_id", {"message_id": row["id"]})
            await _owe_mood(db, message_id=row["id"])
            return message_from_row(row)

    # -- the bot's replies -------------------------------------------------------------------------------------

    async def add_reply(
        self,
        *,
        chat_id: int,
        user_id: int,
        text: str,
        reply_to: int,
        telegram_message_id: int | None,
        created_at: float | None = None,
    ) -> int | None:
        """Store the bot's complete reply to user message ``reply_to`` (which then owes no reply); return its id.

        Returns None when ``reply_to`` no longer exists (the user ran /forget while the reply was generated);
        raises ValueError when ``reply_to`` is not a user message of this chat and user.
        """
        now = time.time() if created_at is None else created_at
        params = {
            "chat_id": chat_id,
            "user_id": user_id,
            "text": text,
            "reply_to": reply_to,
            "created_at": now,
            "telegram_message_id": telegram_message_id,
        }
        async with self._transaction() as db:
            reply = await fetch_one(
                db,
                """
                INSERT INTO messages (chat_id, user_id, role, text, created_at, telegram_message_id, reply_to)
                SELECT chat_id, user_id, 'assistant', :text, :created_at, :telegram_message_id, id
                FROM messages
                WHERE id = :reply_to AND chat_id = :chat_id AND user_id = :user_id AND role = 'user'
                RETURNING id
                """,
                params,
            )
            if reply is not None:
                await db.execute("DELETE FROM pending_replies WHERE message_id = :reply_to", params)
                return int(reply["id"])
            if await fetch_one(db, "SELECT 1 FROM messages WHERE id = :reply_to", params) is not None:
                raise ValueError(f"message {reply_to} is not a user message of chat {chat_id} and user {user_id}")
            return None

    async def has_reply(self, message_id: int) -> bool:
        """Whether the bot's reply to this user message is stored."""
        async with self._reading() as db:
            row = await fetch_one(
                db,
                "SELECT 1 FROM messages WHERE reply_to = :message_id AND role = 'assistant' LIMIT 1",
                {"message_id": message_id},
            )
        return row is not None

    # -- conversation context ----------------------------------------------------------------------------------

    async def history(
        self, *, chat_id: int, user_id: int, before_id: int | None = None, limit: int = 40
    ) -> list[HistoryTurn]:
        """This user's turns in this chat since their last reset, oldest first: at most ``limit`` newest ones,
        only those before user message ``before_id`` when given.

        A turn's place in the conversation is its own id for a message, the id of the message it answers for a
        reply: messages are stored when they arrive, so the reply to one can be stored after the next arrived.
        """
        if limit <= 0:
            return []
        async with self._reading() as db:
            # COALESCE(reply_to, id) is the messages_conversation index's expression: range and order come from it.
            rows = await fetch_all(
                db,
                """
                SELECT role, text
                FROM messages
                WHERE user_id = :user_id
                  AND chat_id = :chat_id
                  AND COALESCE(reply_to, id) > COALESCE(
                      (SELECT context_start_id FROM conversations WHERE chat_id = :chat_id AND user_id = :user_id), 0)
                  AND COALESCE(reply_to, id) < COALESCE(:before_id, 9223372036854775807)
                ORDER BY COALESCE(reply_to, id) DESC, id DESC
                LIMIT :limit
                """,
                {"chat_id": chat_id, "user_id": user_id, "before_id": before_id, "limit": limit},
            )
        return [HistoryTurn(role=row["role"], text=row["text"]) for row in reversed(rows)]

    async def reset_context(self, *, chat_id: int, user_id: int) -> None:
        """Start this user's history afresh; their messages and sentiments stay for the mood log."""
        async with self._transaction() as db:
            await _ensure_chat_and_user(db, chat_id=chat_id, user_id=user_id, now=time.time())
            # Ids only grow (AUTOINCREMENT), so every later message of this user gets an id above today's maximum.
            # Their messages still waiting for a reply arrived after the reset (a chat's updates are handled in
            # order, so those before it are answered by now), though they were stored before it: they stay in.
            await db.execute(
                """
                INSERT INTO conversations (chat_id, user_id, context_start_id)
                VALUES (:chat_id, :user_id, COALESCE(
                    (SELECT MIN(m.id) - 1 FROM pending_replies AS p JOIN messages AS m ON m.id = p.message_id
                     WHERE m.chat_id = :chat_id AND m.user_id = :user_id),
                    (SELECT COALESCE(MAX(id), 0) FROM messages)))
                ON CONFLICT (chat_id, user_id) DO UPDATE SET context_start_id = excluded.context_start_id
                """,
                {"chat_id": chat_id, "user_id": user_id},
            )

    async def discard_user_message(self, message_id: int) -> bool:
        """Delete a stored user message that turned out to answer a question of the bot's (a city typed for
        /settings) rather than say something to it: it owes no reply and no mood, and joins no history. False when
        there was no such message."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "DELETE FROM messages WHERE id = :message_id AND role = 'user'", {"message_id": message_id}
            )
            return cursor.rowcount > 0



# -- statements that more than one write above runs inside its transaction -------------------------------------


async def _upsert_chat(db: aiosqlite.Connection, *, chat_id: int, kind: str, title: str | None, now: float) -> None:
    await db.execute(
        """
        INSERT INTO chats (id, kind, title, created_at)
        VALUES (:chat_id, :kind, :title, :now)
        ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, title = excluded.title
        WHERE chats.kind IS NOT excluded.kind OR chats.title IS NOT excluded.title
        """,
        {"chat_id": chat_id, "kind": kind, "title": title, "now": now},
    )


async def _upsert_user(
    db: aiosqlite.Connection, *, user_id: int, first_name: str | None, username: str | None, now: float
) -> None:
    await db.execute(
        """
        INSERT INTO users (id, first_name, username, created_at)
        VALUES (:user_id, :first_name, :username, :now)
        ON CONFLICT (id) DO UPDATE SET first_name = excluded.first_name, username = excluded.username
        WHERE users.first_name IS NOT excluded.first_name OR users.username IS NOT excluded.username
        """,
        {"user_id": user_id, "first_name": first_name, "username": username, "now": now},
    )


async def _ensure_chat_and_user(db: aiosqlite.Connection, *, chat_id: int, user_id: int, now: float) -> None:
    """Create the chat (kind 'unknown') and the user (no names) where they are not stored yet."""
    params = {"chat_id": chat_id, "user_id": user_id, "now": now}
    await db.execute(
        """
        INSERT INTO chats (id, kind, title, created_at) VALUES (:chat_id, 'unknown', NULL, :now)
        ON CONFLICT (id) DO NOTHING
        """,
        params,
    )
    await db.execute(
        """
        INSERT INTO users (id, first_name, username, created_at) VALUES (:user_id, NULL, NULL, :now)
        ON CONFLICT (id) DO NOTHING
        """,
        params,
    )


async def _insert_user_message(
    db: aiosqlite.Connection, *, chat_id: int, user_id: int, text: str, telegram_message_id: int | None, now: float
) -> StoredMessage:
    """Store a user message, owed a mood; a Telegram message already stored is returned as it is (is_new=False)."""
    params = {
        "chat_id": chat_id,
        "user_id": user_id,
        "text": text,
        "created_at": now,
        "telegram_message_id": telegram_message_id,
    }
    inserted = await fetch_one(
        db,
        f"""
        INSERT INTO messages (chat_id, user_id, role, text, created_at, telegram_message_id)
        VALUES (:chat_id, :user_id, 'user', :text, :created_at, :telegram_message_id)
        ON CONFLICT (chat_id, telegram_message_id) WHERE role = 'user' AND telegram_message_id IS NOT NULL
        DO NOTHING
        RETURNING {MESSAGE_COLUMNS}
        """,
        params,
    )
    if inserted is not None:
        await _owe_mood(db, message_id=inserted["id"])  # every new user message is owed a mood until it has one
        return message_from_row(inserted, is_new=True)
    # Only a Telegram id can conflict: a re-delivered update.
    existing = await fetch_one(
        db,
        f"""
        SELECT {MESSAGE_COLUMNS} FROM messages
        WHERE chat_id = :chat_id AND telegram_message_id = :telegram_message_id AND role = 'user'
        """,
        params,
    )
    assert existing is not None, "a conflict on insert means the row exists"
    return message_from_row(existing)


async def _owe_mood(db: aiosqlite.Connection, *, message_id: int) -> None:
    """Mark the message as owed a sentiment (again), with no failed attempts; not when its author turned mood
    analysis off (/settings): what they write then is never classified, not even once they turn it back on."""
    await db.execute(
        """
        INSERT INTO pending_moods (message_id)
        SELECT m.id FROM messages AS m
        WHERE m.id = :message_id
          AND NOT EXISTS (SELECT 1 FROM person_settings AS s WHERE s.user_id = m.user_id AND s.analyse_mood = 0)
        ON CONFLICT (message_id) DO UPDATE SET attempts = 0
        """,
        {"message_id": message_id},
    )
