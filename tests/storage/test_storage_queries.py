"""The Store's SQL against its schema: every write is one transaction, every query and foreign key has an index."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from storage import SentimentRecord, Store, StoredMessage

GROUP = -100123
ALICE = 11
BOB = 22

# What a query may read whole: the queue of owed replies (``owed_replies`` wants all of it; "p" is its alias there),
# json_each (the ids a query was handed) and the corrections ``corrected_examples`` writes out ("corrected").
WHOLE_READS_ALLOWED = {"pending_replies", "p", "json_each", "corrected"}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "moodbot.db")
    try:
        yield store
    finally:
        await store.close()


async def traced(store: Store) -> list[str]:
    """Every statement the store's connection runs from now on, with its parameters filled in."""
    statements: list[str] = []
    await store._connection().set_trace_callback(statements.append)
    return statements


async def arrive(store: Store, text: str, tg: int, *, user_id: int = ALICE) -> StoredMessage:
    return await store.record_arrival(
        chat_id=GROUP, chat_kind="supergroup", chat_title="Friends", user_id=user_id, first_name="Alice",
        username="alice", text=text, telegram_message_id=tg, reply_owed=True,
    )


MOOD = SentimentRecord(label="positive", score=0.5, probs={"positive": 0.9}, model="test-model", care=0.7)


async def every_operation(store: Store) -> None:
    """Every public read and write of the store once (``counts`` aside: it counts whole tables on purpose)."""
    await store.upsert_chat(GROUP, "supergroup", "Friends")
    await store.upsert_user(BOB, "Bob", "bob")
    first = await arrive(store, "hello", 1)
    await arrive(store, "hello", 1)  # re-delivered
    await store.add_user_message(chat_id=GROUP, user_id=BOB, text="hi all", telegram_message_id=2)
    await store.add_sentiment(first.id, MOOD, text="hello")
    await store.add_care_event(first.id, 0.7)
    await store.set_reply_draft(first.id, 90)
    await store.reply_owed(first.id)
    await store.owed_replies()
    await store.history(chat_id=GROUP, user_id=ALICE, before_id=first.id)
    await store.add_reply(chat_id=GROUP, user_id=ALICE, text="hi", reply_to=first.id, telegram_message_id=90)
    await store.has_reply(first.id)
    await store.has_user_message(chat_id=GROUP, telegram_message_id=1)
    second = await arrive(store, "still there?", 3)
    await store.settle_replies([second.id])
    await store.update_user_message_text(chat_id=GROUP, telegram_message_id=3, text="still here?")
    await store.record_classify_failure(second.id)
    await store.unclassified_messages(max_attempts=3, after_id=0, skip_owed=True)
    await store.reset_context(chat_id=GROUP, user_id=ALICE)
    await store.mood_summary(chat_id=GROUP, user_id=ALICE, since=0, until=2e9, zone=ZoneInfo("Europe/Berlin"))
    await store.discard_user_message(second.id)
    await store.mood_by_day(chat_id=GROUP, user_id=None, since=0)
    await store.mood_by_user(chat_id=GROUP, since=0)
    await store.set_label(message_id=first.id, user_id=ALICE, label="negative")
    await store.recent_labelled(chat_id=GROUP, user_id=ALICE)
    await store.labelled_messages(user_id=ALICE, message_ids=[first.id, second.id])
    await store.corrected_examples(user_id=ALICE)
    await store.export_user(chat_id=GROUP, user_id=ALICE)
    await store.update_settings(ALICE, analyse_mood=False)
    await store.person_settings(ALICE)
    await arrive(store, "not analysed", 4)
    await store.purge_older_than(0)
    await store.forget(chat_id=GROUP, user_id=ALICE)


async def test_no_query_reads_a_whole_table_it_could_search(store: Store) -> None:
    statements = await traced(store)
    await every_operation(store)
    checked = 0
    for sql in dict.fromkeys(statements):
        if not sql.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "DELETE")):
            continue  # BEGIN, COMMIT, PRAGMA, and foreign key actions ("-- ...")
        plan = [row["detail"] for row in await store._connection().execute_fetchall(f"EXPLAIN QUERY PLAN {sql}")]
        scans = [step for step in plan if step.startswith("SCAN ") and step.split()[1] not in WHOLE_READS_ALLOWED]
        assert scans == [], f"{' '.join(sql.split())}\n{plan}"
        checked += 1
    assert checked > 30


def test_every_foreign_key_is_indexed(tmp_path: Path) -> None:
    """Deleting a row (/forget, retention) looks up the rows that refer to it: each referring column must lead an
    index or be the table's INTEGER PRIMARY KEY (its rowid), or every such delete reads the whole referring table."""
    path = tmp_path / "moodbot.db"
    asyncio.run(_create(path))
    db = sqlite3.connect(path)
    unindexed: list[str] = []
    for (table,) in db.execute("SELECT name FROM sqlite_schema WHERE type = 'table'").fetchall():
        keys = db.execute("SELECT name, type FROM pragma_table_info(?) WHERE pk > 0", (table,)).fetchall()
        searchable = {keys[0][0]} if len(keys) == 1 and keys[0][1].upper() == "INTEGER" else set()
        for (index,) in db.execute("SELECT name FROM pragma_index_list(?)", (table,)).fetchall():
            first = db.execute("SELECT name FROM pragma_index_info(?) WHERE seqno = 0", (index,)).fetchall()
            searchable.update(name for (name,) in first)
        for (column,) in db.execute('SELECT "from" FROM pragma_foreign_key_list(?)', (table,)).fetchall():
            if column not in searchable:
                unindexed.append(f"{table}.{column}")
    db.close()
    assert unindexed == []


async def _create(path: Path) -> None:
    await (await Store.open(path)).close()


WRITES: dict[str, Callable[[Store, StoredMessage], Awaitable[object]]] = {
    "upsert_chat": lambda s, m: s.upsert_chat(GROUP, "group", "Renamed"),
    "upsert_user": lambda s, m: s.upsert_user(ALICE, "Alicia", None),
    "record_arrival": lambda s, m: arrive(s, "another", 50),
    "record_arrival, re-delivered": lambda s, m: arrive(s, m.text, 7),
    "add_user_message": lambda s, m: s.add_user_message(chat_id=-1, user_id=BOB, text="x", telegram_message_id=1),
    "add_sentiment": lambda s, m: s.add_sentiment(m.id, MOOD, text=m.text),
    "add_care_event": lambda s, m: s.add_care_event(m.id, 0.7),
    "set_reply_draft": lambda s, m: s.set_reply_draft(m.id, 90),
    "settle_replies": lambda s, m: s.settle_replies([m.id, m.id + 1]),
    "add_reply": lambda s, m: s.add_reply(
        chat_id=GROUP, user_id=ALICE, text="hi", reply_to=m.id, telegram_message_id=None
    ),
    "update_user_message_text": lambda s, m: s.update_user_message_text(chat_id=GROUP, telegram_message_id=7, text="y"),
    "record_classify_failure": lambda s, m: s.record_classify_failure(m.id),
    "reset_context": lambda s, m: s.reset_context(chat_id=GROUP, user_id=ALICE),
    "set_label": lambda s, m: s.set_label(message_id=m.id, user_id=ALICE, label="neutral"),
    "forget": lambda s, m: s.forget(chat_id=GROUP, user_id=ALICE),
    "purge_older_than": lambda s, m: s.purge_older_than(2e9),
}


@pytest.mark.parametrize("write", WRITES)
async def test_every_write_is_one_transaction(store: Store, write: str) -> None:
    message = await arrive(store, "hello", 7)
    await arrive(store, "and you?", 8)
    statements = await traced(store)
    await WRITES[write](store, message)
    assert [sql for sql in statements if sql.startswith("BEGIN")] == ["BEGIN IMMEDIATE"]
    assert statements.count("COMMIT") == 1
