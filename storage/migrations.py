"""Numbered schema migrations, recorded by name in the ``_migrations`` table.

A migration is a plain ``async def mNNN_description(db)`` registered with ``@migration``. ``migrate()`` applies
each one that is not yet recorded, in registration order, each in its own transaction together with its record
and the new ``PRAGMA user_version`` (the number of applied migrations). A migration that raises is rolled back
completely: nothing it created is left and it is not recorded.

Migrations must run their statements one by one with ``db.execute``: ``executescript`` commits first and would
break the transaction.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterator

import aiosqlite

log = logging.getLogger(__name__)

Migration = Callable[[aiosqlite.Connection], Awaitable[None]]

_NAME = re.compile(r"^m(\d{3,})_\w+$")


class MigrationRegistry:
    """An ordered set of migrations; numbers must increase and names must be unique."""

    def __init__(self) -> None:
        self._migrations: dict[str, Migration] = {}
        self._last_number = 0

    def __call__(self, fn: Migration) -> Migration:
        """Register ``fn`` (use as a decorator); refuse bad, duplicate or out-of-order names."""
        name = fn.__name__
        match = _NAME.match(name)
        if match is None:
            raise ValueError(f"migration name {name!r} must look like 'm001_description'")
        if name in self._migrations:
            raise ValueError(f"migration {name!r} is already registered")
        number = int(match.group(1))
        if number <= self._last_number:
            raise ValueError(f"migration {name!r} must be numbered above {self._last_number:03d}")
        self._migrations[name] = fn
        self._last_number = number
        return fn

    def __iter__(self) -> Iterator[tuple[str, Migration]]:
        return iter(self._migrations.items())

    def __len__(self) -> int:
        return len(self._migrations)

    @property
    def names(self) -> list[str]:
        """Registered migration names, in the order they are applied."""
        return list(self._migrations)


MIGRATIONS = MigrationRegistry()
migration = MIGRATIONS


async def migrate(db: aiosqlite.Connection, registry: MigrationRegistry | None = None) -> list[str]:
    """Apply every migration of ``registry`` (default: the built-in one) not yet recorded; return the names applied.

    Each migration, its ``_migrations`` row and the new ``user_version`` are one transaction. On failure that
    transaction is rolled back and the exception is raised; migrations applied before it stay applied.
    """
    if db.in_transaction:
        raise RuntimeError("migrate() must be called outside a transaction")
    registry = MIGRATIONS if registry is None else registry
    await _ensure_migrations_table(db)
    applied_now: list[str] = []
    for name, fn in registry:
        await db.execute("BEGIN IMMEDIATE")
        try:
            # Checked inside the write transaction, so two processes opening one file cannot both apply it.
            if await _is_applied(db, name):
                await db.rollback()
                continue
            await fn(db)
            await _record(db, name)
            await _set_user_version(db, await _applied_count(db))
        except BaseException:
            await db.rollback()
            log.exception("migration %s failed and was rolled back", name)
            raise
        await db.commit()
        log.info("applied migration %s", name)
        applied_now.append(name)
    return applied_now


async def applied_migrations(db: aiosqlite.Connection) -> list[str]:
    """Names recorded in ``_migrations``, oldest first (empty if the table does not exist yet)."""
    await _ensure_migrations_table(db)
    rows = await db.execute_fetchall("SELECT name FROM _migrations ORDER BY applied_at, name")
    return [row[0] for row in rows]


async def _ensure_migrations_table(db: aiosqlite.Connection) -> None:
    await db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    await db.commit()


async def _is_applied(db: aiosqlite.Connection, name: str) -> bool:
    rows = await db.execute_fetchall("SELECT 1 FROM _migrations WHERE name = :name", {"name": name})
    return bool(list(rows))


async def _record(db: aiosqlite.Connection, name: str) -> None:
    await db.execute(
        "INSERT INTO _migrations (name, applied_at) VALUES (:name, :applied_at)",
        {"name": name, "applied_at": time.time()},
    )


async def _applied_count(db: aiosqlite.Connection) -> int:
    rows = list(await db.execute_fetchall("SELECT COUNT(*) FROM _migrations"))
    return int(rows[0][0])


async def _set_user_version(db: aiosqlite.Connection, version: int) -> None:
    # PRAGMA takes no bound parameters; version is an int we computed, never user input.
    await db.execute(f"PRAGMA user_version = {int(version)}")


async def _run(db: aiosqlite.Connection, *statements: str) -> None:
    for statement in statements:
        await db.execute(statement)


@migration
async def m001_initial(db: aiosqlite.Connection) -> None:
    """Chats, users, messages (user turns and bot replies), their sentiments, and /reset markers."""
    await _run(
        db,
        """
        CREATE TABLE chats (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            title TEXT,
            created_at REAL NOT NULL
        )
        """,
        """
        CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            first_name TEXT,
            username TEXT,
            created_at REAL NOT NULL
        )
        """,
        """
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
            text TEXT NOT NULL,
            created_at REAL NOT NULL,  -- unix seconds, UTC
            telegram_message_id INTEGER,
            reply_to INTEGER REFERENCES messages(id) ON DELETE CASCADE,
            edited_at REAL
        )
        """,
        # history, export, forget: WHERE user_id = ? AND chat_id = ? ORDER BY id; also "any messages left for
        # this user?" and the users -> messages foreign key.
        "CREATE INDEX messages_user_chat_id ON messages (user_id, chat_id, id)",
        # mood queries: WHERE chat_id = ? AND created_at >= ?; also the chats -> messages foreign key.
        "CREATE INDEX messages_chat_created ON messages (chat_id, created_at)",
        # retention: WHERE created_at < ?
        "CREATE INDEX messages_created ON messages (created_at)",
        # has_reply and the messages -> messages (reply_to) foreign key.
        "CREATE INDEX messages_reply_to ON messages (reply_to)",
        # a Telegram message is stored once: re-delivered updates find the existing row; edits look it up.
        """
        CREATE UNIQUE INDEX messages_telegram_id ON messages (chat_id, telegram_message_id)
        WHERE role = 'user' AND telegram_message_id IS NOT NULL
        """,
        """
        CREATE TABLE sentiments (
            message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
            label TEXT NOT NULL,
            score REAL NOT NULL CHECK (score BETWEEN -1 AND 1),
            probs TEXT NOT NULL,  -- JSON object label -> probability
            model TEXT NOT NULL,
            created_at REAL NOT NULL
        )
        """,
        """
        CREATE TABLE conversations (
            chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            context_start_id INTEGER NOT NULL DEFAULT 0,  -- history only shows messages with id > this
            PRIMARY KEY (chat_id, user_id)
        )
        """,
    )


@migration
async def m002_care(db: aiosqlite.Connection) -> None:
    """The analyst's crisis probability per sentiment, and a log of the times help resources were offered."""
    await db.execute("ALTER TABLE sentiments ADD COLUMN care REAL NOT NULL DEFAULT 0 CHECK (care BETWEEN 0 AND 1)")
    await db.execute(
        """
        CREATE TABLE care_events (
            message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
            probability REAL NOT NULL,
            created_at REAL NOT NULL
        )
        """
    )


@migration
async def m003_pending_work(db: aiosqlite.Connection) -> None:
    """What is still owed for a stored message: a reply (in which forum topic, and the Telegram id of the message
    it was being streamed into, once one was sent) and a mood (with how often classifying it failed)."""
    await _run(
        db,
        """
        CREATE TABLE pending_replies (
            message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
            thread_id INTEGER,  -- the forum topic the message was written in; NULL outside topics
            draft_message_id INTEGER  -- the bot's Telegram message holding a reply in progress; NULL before it
        )
        """,
        """
        CREATE TABLE pending_moods (
            message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
            attempts INTEGER NOT NULL DEFAULT 0  -- failed classifications; the back-fill gives up after a few
        )
        """,
        # history: a turn's place in the conversation is its own id for a message, the id of the message it answers
        # for a reply (messages are stored on arrival, so a reply can be stored after the next message).
        "CREATE INDEX messages_conversation ON messages (user_id, chat_id, COALESCE(reply_to, id))",
        # Every user message stored so far without a sentiment is owed one; no reply is owed for them (the
        # replies they lacked were cut by a crash before this version, when nobody could say which).
        """
        INSERT INTO pending_moods (message_id)
        SELECT id FROM messages AS m
        WHERE m.role = 'user' AND NOT EXISTS (SELECT 1 FROM sentiments AS s WHERE s.message_id = m.id)
        """,
    )


@migration
async def m004_conversations_user(db: aiosqlite.Connection) -> None:
    """Index the conversations -> users foreign key: deleting a user (/forget) looks up their /reset markers by
    user_id, which the (chat_id, user_id) primary key cannot serve."""
    await db.execute("CREATE INDEX conversations_user ON conversations (user_id)")


@migration
async def m005_corrections(db: aiosqlite.Connection) -> None:
    """The mood a person gave one of their own messages ("Fix a mood"), kept apart from the model's sentiment: one
    row per message, the latest correction wins. The person is the message's author (``messages.user_id``), so it is
    not stored twice; the row goes with its message (/forget, retention)."""
    await db.execute(
        """
        CREATE TABLE corrections (
            message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
            label TEXT NOT NULL CHECK (label IN ('positive', 'neutral', 'negative')),
            corrected_at REAL NOT NULL  -- unix seconds, UTC
        )
        """
    )


@migration
async def m006_person_settings(db: aiosqlite.Connection) -> None:
    """A person's own settings (/settings), the moods they report themselves (check-ins) and when the bot last asked.

    Keyed by the Telegram user id without a foreign key to ``users``: someone may choose settings before their first
    message is stored. They are personal (not per chat): a /forget in the private chat deletes them.
    """
    await _run(
        db,
        """
        CREATE TABLE person_settings (
            user_id INTEGER PRIMARY KEY,
            language TEXT,  -- 'en' / 'zh'; NULL: follow Telegram's language_code
            time_zone TEXT,  -- IANA name; NULL: the configured default offset
            checkin_enabled INTEGER NOT NULL DEFAULT 0 CHECK (checkin_enabled IN (0, 1)),
            checkin_time TEXT NOT NULL DEFAULT '20:00',  -- local HH:MM
            quiet_start TEXT,  -- local HH:MM; both NULL: no quiet hours
            quiet_end TEXT,
            weekly_enabled INTEGER NOT NULL DEFAULT 0 CHECK (weekly_enabled IN (0, 1)),
            weekly_day INTEGER NOT NULL DEFAULT 6 CHECK (weekly_day BETWEEN 0 AND 6),  -- 0 Monday ... 6 Sunday
            weekly_time TEXT NOT NULL DEFAULT '19:00',
            reply_length TEXT NOT NULL DEFAULT 'normal' CHECK (reply_length IN ('short', 'normal')),
            analyse_mood INTEGER NOT NULL DEFAULT 1 CHECK (analyse_mood IN (0, 1)),
            checkin_offered INTEGER NOT NULL DEFAULT 0 CHECK (checkin_offered IN (0, 1)),
            last_checkin_day TEXT,  -- local 'YYYY-MM-DD' of the last check-in sent (never two a day)
            last_weekly_day TEXT,  -- local 'YYYY-MM-DD' of the last weekly summary sent
            updated_at REAL NOT NULL
        )
        """,
        """
        CREATE TABLE self_reports (
            user_id INTEGER NOT NULL,
            day TEXT NOT NULL,  -- the person's local 'YYYY-MM-DD'
            score REAL NOT NULL CHECK (score BETWEEN -1 AND 1),
            note TEXT,
            reported_at REAL NOT NULL,  -- unix seconds, UTC
            PRIMARY KEY (user_id, day)
        )
        """,
    )
