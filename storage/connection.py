"""The one aiosqlite connection: opening it (file modes, pragmas, migrations), transactions, checkpoints, closing."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiosqlite

from .migrations import migrate
from .zones import LOCAL_DAY_FUNCTION, local_day

log = logging.getLogger(__name__)

MEMORY = ":memory:"

# busy_timeout first, so that switching to WAL waits for another process instead of failing.
PRAGMAS = (
    "PRAGMA busy_timeout = 5000",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA secure_delete = ON",  # deleted content is overwritten in the file (/forget)
    # The write-ahead log is cut back to nothing whenever it starts over after a checkpoint, so frames holding
    # rows since deleted don't linger past it (by default the file keeps its largest size and its old frames).
    "PRAGMA journal_size_limit = 0",
)

# The settings ``pragmas()`` reports.
REPORTED_PRAGMAS = (
    "journal_mode", "foreign_keys", "synchronous", "secure_delete", "journal_size_limit", "busy_timeout",
    "user_version",
)

Params = dict[str, Any]


def create_private(database: Path) -> None:
    """Create the database's folder (0700) and an empty database file (0600) where they don't exist yet.

    SQLite takes an empty file as a new database. Creating it here, rather than letting SQLite create it under the
    process umask (usually world-readable 0644), keeps people's messages owner-only from the first byte.
    """
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the mode applies to the last folder only
    with suppress(FileExistsError):
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


async def fetch_all(db: aiosqlite.Connection, sql: str, params: Params | None = None) -> list[sqlite3.Row]:
    """Run one statement and return all its rows."""
    return list(await db.execute_fetchall(sql, params or {}))


async def fetch_one(db: aiosqlite.Connection, sql: str, params: Params | None = None) -> sqlite3.Row | None:
    """Run one statement and return its first row, None when it returned none."""
    rows = await fetch_all(db, sql, params)
    return rows[0] if rows else None


class Database:
    """One open, migrated connection, serialised by a lock: each read holds it for its query, each write for its
    one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``), committed before the method returns."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        """Wrap an open, migrated connection (use ``open``)."""
        self._db: aiosqlite.Connection | None = db
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path) -> Self:
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
            for pragma in PRAGMAS:
                await db.execute(pragma)
            # The per-day mood aggregate groups by each message's day in the reader's own zone (storage/zones.py).
            await db.create_function(LOCAL_DAY_FUNCTION, 2, local_day, deterministic=True)
            [row] = await fetch_all(db, "PRAGMA journal_mode")
            journal_mode = row[0]
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
        async with self._reading() as db:
            [row] = await fetch_all(db, "PRAGMA wal_checkpoint(TRUNCATE)")
        busy = row[0]  # (busy, log frames, frames checkpointed)
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

    async def pragmas(self) -> dict[str, Any]:
        """The connection settings that matter (journal_mode, foreign_keys, ...), for diagnostics and tests."""
        result: dict[str, Any] = {}
        async with self._reading() as db:
            for name in REPORTED_PRAGMAS:
                [row] = await fetch_all(db, f"PRAGMA {name}")  # PRAGMA takes no parameters; a name from above
                result[name] = row[0]
        return result

    def _connection(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("the store is closed")
        return self._db

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, for reads (and pragmas) outside a transaction."""
        async with self._lock:
            yield self._connection()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection inside one write transaction: committed when the block ends, rolled back if it raises."""
        async with self._lock:
            db = self._connection()
            await db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                await db.rollback()
                raise
            await db.commit()
