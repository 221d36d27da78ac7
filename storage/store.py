"""The bot's only door to SQLite: one aiosqlite connection, explicit transactions, plain SQL."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiosqlite

from .migrations import migrate
from .models import DayMood, HistoryTurn, MoodSummary, SentimentRecord, StoredMessage, UserMood
from .mood import day_modifier, display_name, summarize

log = logging.getLogger(__name__)

MEMORY = ":memory:"

# busy_timeout first, so that switching to WAL waits for another process instead of failing.
_PRAGMAS = (
    "PRAGMA busy_timeout = 5000",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA secure_delete = ON",  # deleted content is overwritten in the file (/forget)
    # The write-ahead log is cut back to nothing whenever it starts over after a checkpoint, so frames holding
    # rows since deleted don't linger past it (by default the file keeps its largest size and its old frames).
    "PRAGMA journal_size_limit = 0",
)

_MESSAGE_COLUMNS = "id, chat_id, user_id, role, text, created_at, telegram_message_id"

Params = dict[str, Any]


class Store:
    """Chats, users, messages, sentiments and /reset markers in one SQLite file.

    All methods are coroutines and are serialised on the one connection; every write is one transaction
    (``BEGIN IMMEDIATE`` ... ``COMMIT``) that is committed before the method returns.
    """

    def __init__(self, db: aiosqlite.Connection) -> None:
        """Wrap an open, migrated connection (use ``Store.open``)."""
        self._db: aiosqlite.Connection | None = db
        self._lock = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------------------------------------

    @classmethod
    async def open(cls, path: str | Path) -> Store:
        """Open (creating parent folders) and migrate the database at ``path``; ``":memory:"`` is allowed.

        A new database's folder is made owner-only (0700) and its file too (0600); SQLite gives the ``-wal`` and
        ``-shm`` files the database file's mode. Existing files and folders keep the modes they have.
        """
        location = str(path)
        if location != MEMORY:
            create_private(Path(location))
        # isolation_level=None: sqlite3 opens no transactions behind our back; we BEGIN and COMMIT ourselves.
        db = await aiosqlite.connect(location, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            for pragma in _PRAGMAS:
                await db.execute(pragma)
            journal_mode = (await _fetchall(db, "PRAGMA journal_mode"))[0][0]
            if journal_mode != "wal" and location != MEMORY:
                log.warning("SQLite journal_mode is %r, not 'wal', for %s", journal_mode, location)
            await migrate(db)
        except BaseException:
            await db.close()
            raise
        return cls(db)

    async def checkpoint(self) -> bool:
        """Copy the write-ahead log into the main file and empty it; False when another connection's read kept it.

        Until then, pages as they were before a delete stay readable in ``<database>-wal`` (``secure_delete`` only
        overwrites the main file), so every deletion of people's text ends with this.
        """
        async with self._lock:
            [(busy, _, _)] = await _fetchall(self._connection(), "PRAGMA wal_checkpoint(TRUNCATE)")
        if busy:
            log.warning("could not empty the write-ahead log now (another connection is reading the database)")
        return not busy

    async def close(self) -> None:
        """Checkpoint the WAL into the main file and close; closing twice is fine."""
        if self._db is None:
            return
        async with self._lock:
            db, self._db = self._db, None
            if db is None:
                return
            try:
                await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                await db.close()

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._db is None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _connection(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("the store is closed")
        return self._db

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            yield self._connection()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            db = self._connection()
            await db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                await db.rollback()
                raise
            await db.commit()

    # -- chats and users ---------------------------------------------------------------------------------------

    async def upsert_chat(self, chat_id: int, kind: str, title: str | None) -> None:
        """Create the chat or update its kind and title."""
        async with self._transaction() as db:
            await db.execute(
                """
                INSERT INTO chats (id, kind, title, created_at)
                VALUES (:chat_id, :kind, :title, :now)
                ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, title = excluded.title
                WHERE chats.kind IS NOT excluded.kind OR chats.title IS NOT excluded.title
                """,
                {"chat_id": chat_id, "kind": kind, "title": title, "now": time.time()},
            )

    async def upsert_user(self, user_id: int, first_name: str | None, username: str | None) -> None:
        """Create the user or update their names."""
        async with self._transaction() as db:
            await db.execute(
                """
                INSERT INTO users (id, first_name, username, created_at)
                VALUES (:user_id, :first_name, :username, :now)
                ON CONFLICT (id) DO UPDATE SET first_name = excluded.first_name, username = excluded.username
                WHERE users.first_name IS NOT excluded.first_name OR users.username IS NOT excluded.username
                """,
                {"user_id": user_id, "first_name": first_name, "username": username, "now": time.time()},
            )

    # -- messages ----------------------------------------------------------------------------------------------

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
            await _ensure_chat(db, chat_id, now)
            await _ensure_user(db, user_id, now)
            inserted = await _insert_user_message(db, chat_id, user_id, text, telegram_message_id, now)
            if inserted is not None:
                return _message(inserted, is_new=True)
            assert telegram_message_id is not None  # only a Telegram id can conflict
            existing = await _message_by_telegram_id(db, chat_id, telegram_message_id)
            assert existing is not None
            return _message(existing, is_new=False)

    async def add_sentiment(self, message_id: int, sentiment: SentimentRecord) -> bool:
        """Store (or replace) the sentiment of a message; False if the message no longer exists (forgotten)."""
        async with self._transaction() as db:
            cursor = await db.execute(
                """
                INSERT INTO sentiments (message_id, label, score, probs, model, care, created_at)
                SELECT id, :label, :score, :probs, :model, :care, :now FROM messages WHERE id = :message_id
                ON CONFLICT (message_id) DO UPDATE SET
                    label = excluded.label, score = excluded.score, probs = excluded.probs,
                    model = excluded.model, care = excluded.care, created_at = excluded.created_at
                """,
                {
                    "message_id": message_id,
                    "label": sentiment.label,
                    "score": sentiment.score,
                    "probs": json.dumps(sentiment.probs, sort_keys=True),
                    "model": sentiment.model,
                    "care": min(1.0, max(0.0, sentiment.care)),
                    "now": time.time(),
                },
            )
            return cursor.rowcount > 0

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
        """Store the bot's complete reply to user message ``reply_to``; return its id.

        Returns None when ``reply_to`` no longer exists (the user ran /forget while the reply was generated);
        raises ValueError when ``reply_to`` is not a user message of this chat and user.
        """
        now = time.time() if created_at is None else created_at
        async with self._transaction() as db:
            reply_id = await _insert_reply(db, chat_id, user_id, text, reply_to, telegram_message_id, now)
            if reply_id is not None:
                return reply_id
            if await _message_exists(db, reply_to):
                raise ValueError(f"message {reply_to} is not a user message of chat {chat_id} and user {user_id}")
            return None

    async def has_reply(self, message_id: int) -> bool:
        """Whether the bot's reply to this user message is stored."""
        async with self._reading() as db:
            rows = await _fetchall(
                db,
                "SELECT EXISTS (SELECT 1 FROM messages WHERE reply_to = :message_id AND role = 'assistant')",
                {"message_id": message_id},
            )
        return bool(rows[0][0])

    async def has_user_message(self, *, chat_id: int, telegram_message_id: int) -> bool:
        """Whether this Telegram message of this chat is stored (committed) as a user message."""
        async with self._reading() as db:
            return await _message_by_telegram_id(db, chat_id, telegram_message_id) is not None

    async def update_user_message_text(
        self, *, chat_id: int, telegram_message_id: int, text: str
    ) -> StoredMessage | None:
        """Replace the text of an edited user message; None if that Telegram message is not stored.

        The old sentiment described the old text and is dropped: classify the returned message again, or let
        ``unclassified_messages`` pick it up.
        """
        async with self._transaction() as db:
            row = await _update_user_message_text(db, chat_id, telegram_message_id, text, time.time())
            if row is None:
                return None
            await _delete_sentiment(db, row["id"])
            return _message(row, is_new=False)

    # -- conversation context ----------------------------------------------------------------------------------

    async def history(
        self, *, chat_id: int, user_id: int, before_id: int | None = None, limit: int = 40
    ) -> list[HistoryTurn]:
        """This user's turns in this chat since their last reset, oldest first: at most ``limit`` newest ones,
        only ids below ``before_id`` when given."""
        if limit <= 0:
            return []
        async with self._reading() as db:
            rows = await _fetchall(
                db,
                """
                SELECT role, text
                FROM messages
                WHERE user_id = :user_id
                  AND chat_id = :chat_id
                  AND id > COALESCE(
                      (SELECT context_start_id FROM conversations WHERE chat_id = :chat_id AND user_id = :user_id), 0)
                  AND id < COALESCE(:before_id, 9223372036854775807)
                ORDER BY id DESC
                LIMIT :limit
                """,
                {"chat_id": chat_id, "user_id": user_id, "before_id": before_id, "limit": limit},
            )
        return [HistoryTurn(role=row["role"], text=row["text"]) for row in reversed(rows)]

    async def reset_context(self, *, chat_id: int, user_id: int) -> None:
        """Start this user's history afresh; their messages and sentiments stay for the mood log."""
        now = time.time()
        async with self._transaction() as db:
            await _ensure_chat(db, chat_id, now)
            await _ensure_user(db, user_id, now)
            # Ids only grow (AUTOINCREMENT), so every later message of this user gets an id above today's maximum.
            await db.execute(
                """
                INSERT INTO conversations (chat_id, user_id, context_start_id)
                VALUES (:chat_id, :user_id, (SELECT COALESCE(MAX(id), 0) FROM messages))
                ON CONFLICT (chat_id, user_id) DO UPDATE SET context_start_id = excluded.context_start_id
                """,
                {"chat_id": chat_id, "user_id": user_id},
            )

    # -- privacy and retention ---------------------------------------------------------------------------------

    async def forget(self, *, chat_id: int, user_id: int) -> int:
        """Delete everything about this user in this chat; return the number of messages deleted.

        Their messages, the bot's replies to them, the sentiments and the /reset marker go; the user row goes
        when they have no messages left anywhere, the chat row when it has no messages left. The write-ahead log
        is emptied afterwards, so no file in the database's folder holds their words any more.
        """
        params = {"chat_id": chat_id, "user_id": user_id}
        async with self._transaction() as db:
            # Counted first: deleting a message cascades to its reply, which DELETE's rowcount would then miss.
            deleted = await _count_messages_of(db, chat_id, user_id)
            await db.execute("DELETE FROM messages WHERE user_id = :user_id AND chat_id = :chat_id", params)
            await db.execute("DELETE FROM conversations WHERE chat_id = :chat_id AND user_id = :user_id", params)
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
        return deleted

    async def purge_older_than(self, cutoff: float) -> int:
        """Delete messages created before ``cutoff`` (unix seconds), the replies to them and their sentiments;
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
        """Everything stored about this user in this chat, JSON-ready (times as ISO-8601 UTC)."""
        async with self._reading() as db:
            user = await _fetchall(
                db, "SELECT first_name, username FROM users WHERE id = :user_id", {"user_id": user_id}
            )
            rows = await _fetchall(
                db,
                """
                SELECT m.id, m.role, m.text, m.created_at, m.edited_at, m.telegram_message_id, m.reply_to,
                       s.label, s.score, s.probs, s.model, s.care, c.created_at AS care_offered_at
                FROM messages AS m
                LEFT JOIN sentiments AS s ON s.message_id = m.id
                LEFT JOIN care_events AS c ON c.message_id = m.id
                WHERE m.user_id = :user_id AND m.chat_id = :chat_id
                ORDER BY m.id
                """,
                {"chat_id": chat_id, "user_id": user_id},
            )
        return {
            "chat_id": chat_id,
            "user_id": user_id,
            "user": {"first_name": user[0]["first_name"], "username": user[0]["username"]} if user else None,
            "messages": [_export_message(row) for row in rows],
        }

    # -- mood --------------------------------------------------------------------------------------------------

    async def mood_by_day(
        self,
        *,
        chat_id: int,
        user_id: int | None,
        since: float,
        until: float | None = None,
        utc_offset_minutes: int = 0,
    ) -> list[DayMood]:
        """Classified user messages in [since, until) per local day, oldest day first; user_id None = whole chat."""
        params = {
            "chat_id": chat_id,
            "user_id": user_id,
            "since": since,
            "until": until,
            "day": day_modifier(utc_offset_minutes),
        }
        async with self._reading() as db:
            rows = await _fetchall(
                db,
                """
                SELECT date(m.created_at, 'unixepoch', :day) AS day,
                       COUNT(*) AS messages,
                       AVG(s.score) AS average_score,
                       COUNT(*) FILTER (WHERE s.label = 'positive') AS positive,
                       COUNT(*) FILTER (WHERE s.label = 'neutral') AS neutral,
                       COUNT(*) FILTER (WHERE s.label = 'negative') AS negative
                FROM messages AS m
                JOIN sentiments AS s ON s.message_id = m.id
                WHERE m.chat_id = :chat_id
                  AND m.created_at >= :since
                  AND (:until IS NULL OR m.created_at < :until)
                  AND (:user_id IS NULL OR m.user_id = :user_id)
                  AND m.role = 'user'
                GROUP BY day
                ORDER BY day
                """,
                params,
            )
        return [_day_mood(row) for row in rows]

    async def mood_summary(
        self,
        *,
        chat_id: int,
        user_id: int | None,
        since: float,
        until: float | None = None,
        utc_offset_minutes: int = 0,
    ) -> MoodSummary:
        """``mood_by_day`` plus totals and label shares over the whole period."""
        days = await self.mood_by_day(
            chat_id=chat_id, user_id=user_id, since=since, until=until, utc_offset_minutes=utc_offset_minutes
        )
        return summarize(days)

    async def mood_by_user(
        self, *, chat_id: int, since: float, until: float | None = None, utc_offset_minutes: int = 0
    ) -> list[UserMood]:
        """Mood of every member who wrote in [since, until), most classified messages first.

        Members whose messages are not classified yet are listed with an empty summary.
        """
        params = {"chat_id": chat_id, "since": since, "until": until, "day": day_modifier(utc_offset_minutes)}
        async with self._reading() as db:
            rows = await _fetchall(
                db,
                """
                SELECT m.user_id, u.first_name, u.username,
                       date(m.created_at, 'unixepoch', :day) AS day,
                       COUNT(s.message_id) AS messages,
                       AVG(s.score) AS average_score,
                       COUNT(*) FILTER (WHERE s.label = 'positive') AS positive,
                       COUNT(*) FILTER (WHERE s.label = 'neutral') AS neutral,
                       COUNT(*) FILTER (WHERE s.label = 'negative') AS negative
                FROM messages AS m
                JOIN users AS u ON u.id = m.user_id
                LEFT JOIN sentiments AS s ON s.message_id = m.id
                WHERE m.chat_id = :chat_id
                  AND m.created_at >= :since
                  AND (:until IS NULL OR m.created_at < :until)
                  AND m.role = 'user'
                GROUP BY m.user_id, day
                ORDER BY m.user_id, day
                """,
                params,
            )
        names: dict[int, str] = {}
        days: dict[int, list[DayMood]] = {}
        for row in rows:
            names[row["user_id"]] = display_name(row["user_id"], row["first_name"], row["username"])
            user_days = days.setdefault(row["user_id"], [])
            if row["messages"]:
                user_days.append(_day_mood(row))
        moods = [UserMood(user_id, names[user_id], summarize(user_days)) for user_id, user_days in days.items()]
        moods.sort(key=lambda mood: (-mood.summary.messages, mood.display_name.casefold(), mood.user_id))
        return moods

    # -- back-fill and diagnostics -----------------------------------------------------------------------------

    async def unclassified_messages(self, limit: int = 100) -> list[StoredMessage]:
        """User messages that have no sentiment yet, oldest first (to back-fill after a crash or a busy spell)."""
        if limit <= 0:
            return []
        async with self._reading() as db:
            rows = await _fetchall(
                db,
                f"""
                SELECT {_MESSAGE_COLUMNS}
                FROM messages AS m
                WHERE m.role = 'user'
                  AND NOT EXISTS (SELECT 1 FROM sentiments AS s WHERE s.message_id = m.id)
                ORDER BY m.id
                LIMIT :limit
                """,
                {"limit": limit},
            )
        return [_message(row, is_new=False) for row in rows]

    async def counts(self) -> dict[str, int]:
        """Rows per table."""
        async with self._reading() as db:
            rows = await _fetchall(
                db,
                """
                SELECT (SELECT COUNT(*) FROM chats) AS chats,
                       (SELECT COUNT(*) FROM users) AS users,
                       (SELECT COUNT(*) FROM messages) AS messages,
                       (SELECT COUNT(*) FROM sentiments) AS sentiments,
                       (SELECT COUNT(*) FROM conversations) AS conversations,
                       (SELECT COUNT(*) FROM care_events) AS care_events
                """,
            )
        return dict(rows[0])

    async def pragmas(self) -> dict[str, Any]:
        """The connection settings that matter (journal_mode, foreign_keys, ...), for diagnostics and tests."""
        names = (
            "journal_mode", "foreign_keys", "synchronous", "secure_delete", "journal_size_limit", "busy_timeout",
            "user_version",
        )
        result: dict[str, Any] = {}
        async with self._reading() as db:
            for name in names:
                rows = await _fetchall(db, f"PRAGMA {name}")
                result[name] = rows[0][0]
        return result


# -- single queries used inside the Store's transactions -------------------------------------------------------


def create_private(database: Path) -> None:
    """Create the database's folder (0700) and an empty database file (0600) where they don't exist yet.

    SQLite takes an empty file as a new database. Creating it here, rather than letting SQLite create it under the
    process umask (usually world-readable 0644), keeps people's messages owner-only from the first byte.
    """
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the mode applies to the last folder only
    with suppress(FileExistsError):
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


async def _fetchall(db: aiosqlite.Connection, sql: str, params: Params | None = None) -> list[sqlite3.Row]:
    return list(await db.execute_fetchall(sql, params or {}))


async def _ensure_chat(db: aiosqlite.Connection, chat_id: int, now: float) -> None:
    await db.execute(
        """
        INSERT INTO chats (id, kind, title, created_at) VALUES (:chat_id, 'unknown', NULL, :now)
        ON CONFLICT (id) DO NOTHING
        """,
        {"chat_id": chat_id, "now": now},
    )


async def _ensure_user(db: aiosqlite.Connection, user_id: int, now: float) -> None:
    await db.execute(
        """
        INSERT INTO users (id, first_name, username, created_at) VALUES (:user_id, NULL, NULL, :now)
        ON CONFLICT (id) DO NOTHING
        """,
        {"user_id": user_id, "now": now},
    )


async def _insert_user_message(
    db: aiosqlite.Connection, chat_id: int, user_id: int, text: str, telegram_message_id: int | None, now: float
) -> sqlite3.Row | None:
    rows = await _fetchall(
        db,
        f"""
        INSERT INTO messages (chat_id, user_id, role, text, created_at, telegram_message_id)
        VALUES (:chat_id, :user_id, 'user', :text, :created_at, :telegram_message_id)
        ON CONFLICT (chat_id, telegram_message_id) WHERE role = 'user' AND telegram_message_id IS NOT NULL
        DO NOTHING
        RETURNING {_MESSAGE_COLUMNS}
        """,
        {
            "chat_id": chat_id,
            "user_id": user_id,
            "text": text,
            "created_at": now,
            "telegram_message_id": telegram_message_id,
        },
    )
    return rows[0] if rows else None


async def _message_by_telegram_id(
    db: aiosqlite.Connection, chat_id: int, telegram_message_id: int
) -> sqlite3.Row | None:
    rows = await _fetchall(
        db,
        f"""
        SELECT {_MESSAGE_COLUMNS} FROM messages
        WHERE chat_id = :chat_id AND telegram_message_id = :telegram_message_id AND role = 'user'
        """,
        {"chat_id": chat_id, "telegram_message_id": telegram_message_id},
    )
    return rows[0] if rows else None


async def _insert_reply(
    db: aiosqlite.Connection,
    chat_id: int,
    user_id: int,
    text: str,
    reply_to: int,
    telegram_message_id: int | None,
    now: float,
) -> int | None:
    rows = await _fetchall(
        db,
        """
        INSERT INTO messages (chat_id, user_id, role, text, created_at, telegram_message_id, reply_to)
        SELECT chat_id, user_id, 'assistant', :text, :created_at, :telegram_message_id, id
        FROM messages
        WHERE id = :reply_to AND chat_id = :chat_id AND user_id = :user_id AND role = 'user'
        RETURNING id
        """,
        {
            "chat_id": chat_id,
            "user_id": user_id,
            "text": text,
            "reply_to": reply_to,
            "created_at": now,
            "telegram_message_id": telegram_message_id,
        },
    )
    return int(rows[0]["id"]) if rows else None


async def _count_messages_of(db: aiosqlite.Connection, chat_id: int, user_id: int) -> int:
    rows = await _fetchall(
        db,
        "SELECT COUNT(*) FROM messages WHERE user_id = :user_id AND chat_id = :chat_id",
        {"chat_id": chat_id, "user_id": user_id},
    )
    return int(rows[0][0])


async def _message_exists(db: aiosqlite.Connection, message_id: int) -> bool:
    rows = await _fetchall(db, "SELECT 1 FROM messages WHERE id = :message_id", {"message_id": message_id})
    return bool(rows)


async def _update_user_message_text(
    db: aiosqlite.Connection, chat_id: int, telegram_message_id: int, text: str, now: float
) -> sqlite3.Row | None:
    rows = await _fetchall(
        db,
        f"""
        UPDATE messages SET text = :text, edited_at = :now
        WHERE chat_id = :chat_id AND telegram_message_id = :telegram_message_id AND role = 'user'
        RETURNING {_MESSAGE_COLUMNS}
        """,
        {"chat_id": chat_id, "telegram_message_id": telegram_message_id, "text": text, "now": now},
    )
    return rows[0] if rows else None


async def _delete_sentiment(db: aiosqlite.Connection, message_id: int) -> None:
    await db.execute("DELETE FROM sentiments WHERE message_id = :message_id", {"message_id": message_id})


# -- rows to values --------------------------------------------------------------------------------------------


def _message(row: sqlite3.Row, *, is_new: bool) -> StoredMessage:
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


def _day_mood(row: sqlite3.Row) -> DayMood:
    return DayMood(
        day=row["day"],
        messages=row["messages"],
        average_score=row["average_score"],
        positive=row["positive"],
        neutral=row["neutral"],
        negative=row["negative"],
    )


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, tz=UTC).isoformat()


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
        "help_offered_at": _iso(row["care_offered_at"]),
    }
