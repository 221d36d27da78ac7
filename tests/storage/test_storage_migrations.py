"""Migrations: applied once, recorded, versioned, and rolled back completely when one fails."""

from __future__ import annotations

from pathlib import Path

import aiosqlite
import pytest

from storage import Store
from storage.migrations import MIGRATIONS, MigrationRegistry, applied_migrations, migrate


async def _user_version(db: aiosqlite.Connection) -> int:
    rows = list(await db.execute_fetchall("PRAGMA user_version"))
    return int(rows[0][0])


async def _tables(db: aiosqlite.Connection) -> set[str]:
    rows = await db.execute_fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {row[0] for row in rows}


async def test_migrations_apply_once_and_are_recorded(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "m.db") as db:
        applied = await migrate(db)
        assert applied == MIGRATIONS.names
        assert applied[0] == "m001_initial"
        assert await applied_migrations(db) == applied
        assert await _user_version(db) == len(MIGRATIONS)
        assert {"chats", "users", "messages", "sentiments", "conversations", "_migrations"} <= await _tables(db)

        assert await migrate(db) == []
        assert await _user_version(db) == len(MIGRATIONS)

    async with aiosqlite.connect(tmp_path / "m.db") as db:
        assert await migrate(db) == []
        assert await applied_migrations(db) == MIGRATIONS.names


async def test_initial_schema_has_the_query_indexes(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "m.db") as db:
        await migrate(db)
        rows = await db.execute_fetchall("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        indexes = {row[0]: row[1] for row in rows}
    assert {
        "messages_user_chat_id",
        "messages_chat_created",
        "messages_created",
        "messages_reply_to",
        "messages_telegram_id",
    } <= set(indexes)
    assert "UNIQUE" in indexes["messages_telegram_id"]
    assert "WHERE role = 'user'" in indexes["messages_telegram_id"]


async def test_store_open_reports_applied_version(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "folder" / "bot.db"
    async with await Store.open(path) as store:
        assert (await store.pragmas())["user_version"] == len(MIGRATIONS)
    assert path.exists()
    async with await Store.open(path) as store:  # reopening applies nothing and keeps the version
        assert (await store.pragmas())["user_version"] == len(MIGRATIONS)


async def test_failing_migration_rolls_back_completely(tmp_path: Path) -> None:
    registry = MigrationRegistry()

    @registry
    async def m001_first(db: aiosqlite.Connection) -> None:
        await db.execute("CREATE TABLE first (id INTEGER PRIMARY KEY)")

    @registry
    async def m002_broken(db: aiosqlite.Connection) -> None:
        await db.execute("CREATE TABLE broken (id INTEGER PRIMARY KEY)")
        await db.execute("INSERT INTO broken (id) VALUES (1)")
        await db.execute("CREATE INDEX first_id ON first (id)")
        raise RuntimeError("boom")

    async with aiosqlite.connect(tmp_path / "m.db") as db:
        with pytest.raises(RuntimeError, match="boom"):
            await migrate(db, registry=registry)

        assert not db.in_transaction
        tables = await _tables(db)
        assert "first" in tables
        assert "broken" not in tables
        indexes = await db.execute_fetchall("SELECT name FROM sqlite_master WHERE type = 'index'")
        assert "first_id" not in {row[0] for row in indexes}
        assert await applied_migrations(db) == ["m001_first"]
        assert await _user_version(db) == 1

    # Fixed, it applies on the next start, and only it.
    fixed = MigrationRegistry()
    fixed(m001_first)

    @fixed
    async def m002_broken(db: aiosqlite.Connection) -> None:  # noqa: F811 - the same migration, repaired
        await db.execute("CREATE TABLE broken (id INTEGER PRIMARY KEY)")

    async with aiosqlite.connect(tmp_path / "m.db") as db:
        assert await migrate(db, registry=fixed) == ["m002_broken"]
        assert "broken" in await _tables(db)
        assert await _user_version(db) == 2


async def test_failing_sql_statement_rolls_back(tmp_path: Path) -> None:
    registry = MigrationRegistry()

    @registry
    async def m001_bad_sql(db: aiosqlite.Connection) -> None:
        await db.execute("CREATE TABLE half (id INTEGER PRIMARY KEY)")
        await db.execute("CREATE TABLE half (id INTEGER PRIMARY KEY)")  # already exists

    async with aiosqlite.connect(tmp_path / "m.db") as db:
        with pytest.raises(aiosqlite.OperationalError):
            await migrate(db, registry=registry)
        assert "half" not in await _tables(db)
        assert await applied_migrations(db) == []
        assert await _user_version(db) == 0


def test_registry_refuses_duplicate_bad_and_out_of_order_names() -> None:
    registry = MigrationRegistry()

    async def m001_one(db: aiosqlite.Connection) -> None:
        pass

    async def m002_two(db: aiosqlite.Connection) -> None:
        pass

    async def add_things(db: aiosqlite.Connection) -> None:
        pass

    registry(m002_two)
    with pytest.raises(ValueError, match="already registered"):
        registry(m002_two)
    with pytest.raises(ValueError, match="numbered above"):
        registry(m001_one)
    with pytest.raises(ValueError, match="must look like"):
        registry(add_things)
    assert registry.names == ["m002_two"]


async def test_migrate_refuses_an_open_transaction(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "m.db", isolation_level=None) as db:
        await db.execute("BEGIN")
        with pytest.raises(RuntimeError, match="outside a transaction"):
            await migrate(db)
        await db.rollback()


async def test_upgrading_owes_a_mood_to_every_unclassified_message_and_no_reply(tmp_path: Path) -> None:
    before = MigrationRegistry()
    for name, fn in MIGRATIONS:
        if name < "m003":
            before(fn)
    async with aiosqlite.connect(tmp_path / "m.db") as db:
        await migrate(db, before)
        await db.execute("INSERT INTO chats (id, kind, created_at) VALUES (1, 'private', 0)")
        await db.execute("INSERT INTO users (id, created_at) VALUES (1, 0)")
        for message_id, role in ((1, "user"), (2, "assistant"), (3, "user")):
            await db.execute(
                "INSERT INTO messages (id, chat_id, user_id, role, text, created_at, reply_to) "
                "VALUES (?, 1, 1, ?, 'x', 0, ?)",
                (message_id, role, 1 if role == "assistant" else None),
            )
        await db.execute(
            "INSERT INTO sentiments (message_id, label, score, probs, model, created_at) "
            "VALUES (1, 'neutral', 0, '{}', 'm', 0)"
        )
        await db.commit()
        assert await migrate(db) == [name for name in MIGRATIONS.names if name >= "m003"]
        assert list(await db.execute_fetchall("SELECT message_id, attempts FROM pending_moods")) == [(3, 0)]
        assert list(await db.execute_fetchall("SELECT COUNT(*) FROM pending_replies")) == [(0,)]
