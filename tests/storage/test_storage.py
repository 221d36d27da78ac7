"""The Store: idempotent inserts, per-user history, /reset, /forget, mood queries, export, retention, restart."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import storage.connection as connection_module
from storage import DayMood, HistoryTurn, SentimentRecord, Store, StoredMessage

GROUP = -100123
OTHER_GROUP = -100456
ALICE = 11
BOB = 22

# 2024-03-10 00:00:00 UTC
DAY0 = datetime(2024, 3, 10, tzinfo=UTC).timestamp()
HOUR = 3600.0


def sentiment(label: str, score: float) -> SentimentRecord:
    return SentimentRecord(label=label, score=score, probs={label: 0.9}, model="test-model")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "moodbot.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(db_path)
    try:
        yield store
    finally:
        await store.close()


async def say(
    store: Store,
    user_id: int,
    text: str,
    *,
    chat_id: int = GROUP,
    at: float | None = None,
    tg: int | None = None,
    reply: str | None = None,
    mood: SentimentRecord | None = None,
) -> StoredMessage:
    """Store a user message, optionally its sentiment and the bot's reply to it."""
    message = await store.add_user_message(
        chat_id=chat_id, user_id=user_id, text=text, telegram_message_id=tg, created_at=at
    )
    if mood is not None:
        assert await store.add_sentiment(message.id, mood)
    if reply is not None:
        await store.add_reply(
            chat_id=chat_id, user_id=user_id, text=reply, reply_to=message.id, telegram_message_id=None, created_at=at
        )
    return message


# -- opening and closing ---------------------------------------------------------------------------------------


async def test_open_sets_wal_foreign_keys_and_friends(store: Store, db_path: Path) -> None:
    pragmas = await store.pragmas()
    assert pragmas["journal_mode"] == "wal"
    assert pragmas["foreign_keys"] == 1
    assert pragmas["busy_timeout"] == 5000
    assert pragmas["synchronous"] == 1  # NORMAL
    assert pragmas["secure_delete"] == 1
    assert pragmas["journal_size_limit"] == 0  # the WAL is cut back whenever it starts over
    assert pragmas["user_version"] >= 1
    assert db_path.parent.is_dir()


async def test_memory_store_and_context_manager() -> None:
    async with await Store.open(":memory:") as store:
        await say(store, ALICE, "hello")
        assert (await store.counts())["messages"] == 1
    assert store.closed
    await store.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await store.counts()


async def test_reopening_the_file_keeps_everything(db_path: Path) -> None:
    async with await Store.open(db_path) as store:
        await store.upsert_chat(GROUP, "supergroup", "Friends")
        await store.upsert_user(ALICE, "Alice", "alice")
        first = await say(store, ALICE, "before restart", tg=1, reply="noted", mood=sentiment("neutral", 0.0))
        before = await store.counts()

    async with await Store.open(db_path) as store:
        assert await store.counts() == before
        assert await store.history(chat_id=GROUP, user_id=ALICE) == [
            HistoryTurn("user", "before restart"),
            HistoryTurn("assistant", "noted"),
        ]
        again = await store.add_user_message(chat_id=GROUP, user_id=ALICE, text="before restart", telegram_message_id=1)
        assert again.id == first.id
        assert not again.is_new
        assert await store.has_reply(first.id)


# -- chats, users, messages ------------------------------------------------------------------------------------


async def test_add_user_message_is_idempotent_per_telegram_message(store: Store) -> None:
    first = await store.add_user_message(
        chat_id=GROUP, user_id=ALICE, text="hi", telegram_message_id=7, created_at=DAY0
    )
    assert first.is_new
    assert (first.chat_id, first.user_id, first.role, first.text, first.created_at) == (
        GROUP,
        ALICE,
        "user",
        "hi",
        DAY0,
    )
    assert first.telegram_message_id == 7

    again = await store.add_user_message(chat_id=GROUP, user_id=ALICE, text="hi", telegram_message_id=7)
    assert again == StoredMessage(**{**first.__dict__, "is_new": False})

    # The same Telegram id in another chat is another message; messages without an id never collide.
    other_chat = await store.add_user_message(chat_id=OTHER_GROUP, user_id=ALICE, text="hi", telegram_message_id=7)
    assert other_chat.is_new and other_chat.id != first.id
    no_id_1 = await store.add_user_message(chat_id=GROUP, user_id=ALICE, text="x", telegram_message_id=None)
    no_id_2 = await store.add_user_message(chat_id=GROUP, user_id=ALICE, text="x", telegram_message_id=None)
    assert no_id_1.is_new and no_id_2.is_new and no_id_1.id != no_id_2.id

    counts = await store.counts()
    assert counts["messages"] == 4
    assert counts["chats"] == 2  # created on the fly, no foreign key errors
    assert counts["users"] == 1


async def test_upserts_update_names(store: Store) -> None:
    await store.upsert_chat(GROUP, "group", "Old title")
    await store.upsert_chat(GROUP, "supergroup", "New title")
    await store.upsert_user(ALICE, "Alice", None)
    await store.upsert_user(ALICE, "Alicia", "alicia")
    await say(store, ALICE, "hi")
    assert (await store.export_user(chat_id=GROUP, user_id=ALICE))["user"] == {
        "first_name": "Alicia",
        "username": "alicia",
    }
    assert (await store.counts())["chats"] == 1


async def test_concurrent_writers_are_serialised(store: Store) -> None:
    messages = await asyncio.gather(
        *(say(store, ALICE if i % 2 else BOB, f"message {i}", tg=i, reply=f"reply {i}") for i in range(30))
    )
    assert len({message.id for message in messages}) == 30
    assert (await store.counts())["messages"] == 60


async def test_sentiment_is_replaced_and_bad_scores_roll_back(store: Store) -> None:
    message = await say(store, ALICE, "meh", mood=sentiment("neutral", 0.0))
    assert await store.add_sentiment(message.id, sentiment("negative", -0.5))
    summary = await store.mood_summary(chat_id=GROUP, user_id=ALICE, since=0)
    assert (summary.messages, summary.average_score, summary.negative_share) == (1, -0.5, 1.0)

    with pytest.raises(sqlite3.IntegrityError):
        await store.add_sentiment(message.id, sentiment("positive", 1.5))
    assert (await store.mood_summary(chat_id=GROUP, user_id=ALICE, since=0)).average_score == -0.5
    await say(store, ALICE, "still usable")  # the failed transaction was rolled back


async def test_replies(store: Store) -> None:
    question = await say(store, ALICE, "how are you?")
    assert not await store.has_reply(question.id)
    reply_id = await store.add_reply(
        chat_id=GROUP, user_id=ALICE, text="fine", reply_to=question.id, telegram_message_id=99
    )
    assert isinstance(reply_id, int) and reply_id > question.id
    assert await store.has_reply(question.id)

    with pytest.raises(ValueError, match="not a user message"):
        await store.add_reply(chat_id=GROUP, user_id=BOB, text="x", reply_to=question.id, telegram_message_id=None)
    with pytest.raises(ValueError, match="not a user message"):
        await store.add_reply(chat_id=GROUP, user_id=ALICE, text="x", reply_to=reply_id, telegram_message_id=None)

    # The user ran /forget while the reply was being generated: nothing is stored.
    await store.forget(chat_id=GROUP, user_id=ALICE)
    assert (
        await store.add_reply(chat_id=GROUP, user_id=ALICE, text="late", reply_to=question.id, telegram_message_id=None)
        is None
    )
    assert not await store.add_sentiment(question.id, sentiment("positive", 0.5))
    assert (await store.counts())["messages"] == 0


async def test_edited_message_updates_text_and_drops_stale_sentiment(store: Store) -> None:
    original = await say(store, ALICE, "I am sad", tg=5, mood=sentiment("negative", -0.8))
    edited = await store.update_user_message_text(chat_id=GROUP, telegram_message_id=5, text="I am glad")
    assert edited is not None
    assert (edited.id, edited.text, edited.is_new) == (original.id, "I am glad", False)
    assert await store.history(chat_id=GROUP, user_id=ALICE) == [HistoryTurn("user", "I am glad")]
    assert [m.id for m in await store.unclassified_messages()] == [original.id]
    assert await store.update_user_message_text(chat_id=GROUP, telegram_message_id=6, text="?") is None
    assert await store.update_user_message_text(chat_id=OTHER_GROUP, telegram_message_id=5, text="?") is None


# -- history and /reset ----------------------------------------------------------------------------------------


async def test_history_order_limit_and_before_id(store: Store) -> None:
    messages = [await say(store, ALICE, f"q{i}", reply=f"a{i}") for i in range(5)]
    turns = await store.history(chat_id=GROUP, user_id=ALICE)
    assert [t.text for t in turns] == ["q0", "a0", "q1", "a1", "q2", "a2", "q3", "a3", "q4", "a4"]
    assert [t.role for t in turns[:2]] == ["user", "assistant"]

    assert [t.text for t in await store.history(chat_id=GROUP, user_id=ALICE, limit=3)] == ["a3", "q4", "a4"]
    assert await store.history(chat_id=GROUP, user_id=ALICE, limit=0) == []

    # Everything before the message being answered, not the message itself.
    before = await store.history(chat_id=GROUP, user_id=ALICE, before_id=messages[3].id, limit=4)
    assert [t.text for t in before] == ["q1", "a1", "q2", "a2"]


async def test_history_is_per_user_and_per_chat(store: Store) -> None:
    await say(store, ALICE, "alice 1", reply="to alice 1")
    await say(store, BOB, "bob 1", reply="to bob 1")
    await say(store, ALICE, "alice 2", reply="to alice 2")
    await say(store, BOB, "bob 2")
    await say(store, ALICE, "alice elsewhere", chat_id=OTHER_GROUP, reply="to alice elsewhere")

    alice = [t.text for t in await store.history(chat_id=GROUP, user_id=ALICE)]
    bob = [t.text for t in await store.history(chat_id=GROUP, user_id=BOB)]
    elsewhere = [t.text for t in await store.history(chat_id=OTHER_GROUP, user_id=ALICE)]
    assert alice == ["alice 1", "to alice 1", "alice 2", "to alice 2"]
    assert bob == ["bob 1", "to bob 1", "bob 2"]
    assert elsewhere == ["alice elsewhere", "to alice elsewhere"]
    assert await store.history(chat_id=OTHER_GROUP, user_id=BOB) == []


async def test_reset_context_empties_history_but_keeps_mood(store: Store) -> None:
    await say(store, ALICE, "old", at=DAY0, reply="old reply", mood=sentiment("negative", -1.0))
    await say(store, BOB, "bob", at=DAY0, reply="bob reply", mood=sentiment("positive", 1.0))
    before = await store.counts()

    await store.reset_context(chat_id=GROUP, user_id=ALICE)
    assert await store.history(chat_id=GROUP, user_id=ALICE) == []
    assert len(await store.history(chat_id=GROUP, user_id=BOB)) == 2  # only Alice's context was reset
    counts = await store.counts()
    assert counts["messages"] == before["messages"]
    assert counts["sentiments"] == before["sentiments"]
    assert (await store.mood_summary(chat_id=GROUP, user_id=ALICE, since=0)).messages == 1

    await say(store, ALICE, "new", reply="new reply")
    assert [t.text for t in await store.history(chat_id=GROUP, user_id=ALICE)] == ["new", "new reply"]
    await store.reset_context(chat_id=GROUP, user_id=ALICE)  # again, updates the marker
    assert await store.history(chat_id=GROUP, user_id=ALICE) == []

    # /reset before ever writing works too (no foreign key errors).
    await store.reset_context(chat_id=OTHER_GROUP, user_id=BOB)


# -- /forget ---------------------------------------------------------------------------------------------------


async def test_forget_deletes_only_that_users_rows(store: Store) -> None:
    await store.upsert_user(ALICE, "Alice", "alice")
    await store.upsert_user(BOB, "Bob", None)
    for i in range(3):
        await say(store, ALICE, f"alice {i}", at=DAY0 + i, reply=f"to alice {i}", mood=sentiment("negative", -0.5))
        await say(store, BOB, f"bob {i}", at=DAY0 + i, reply=f"to bob {i}", mood=sentiment("positive", 0.5))
    await store.reset_context(chat_id=GROUP, user_id=ALICE)
    await store.reset_context(chat_id=GROUP, user_id=BOB)
    await say(store, BOB, "bob after reset", tg=42)
    assert await store.add_care_event(1, 0.9)  # Alice's first message
    assert (await store.counts())["care_events"] == 1

    assert await store.forget(chat_id=GROUP, user_id=ALICE) == 6  # 3 messages + 3 replies
    assert await store.counts() == {
        "chats": 1, "users": 1, "messages": 7, "sentiments": 3, "conversations": 1, "care_events": 0,
        "corrections": 0, "person_settings": 0, "self_reports": 0,
    }
    assert not await store.add_care_event(1, 0.9), "a forgotten message can't get a care event"
    assert await store.history(chat_id=GROUP, user_id=ALICE) == []
    assert (await store.export_user(chat_id=GROUP, user_id=ALICE)) == {
        "chat_id": GROUP,
        "user_id": ALICE,
        "user": None,
        "messages": [],
    }
    assert (await store.mood_summary(chat_id=GROUP, user_id=ALICE, since=0)).messages == 0
    assert [mood.user_id for mood in await store.mood_by_user(chat_id=GROUP, since=0)] == [BOB]
    assert [t.text for t in await store.history(chat_id=GROUP, user_id=BOB)] == ["bob after reset"]

    assert await store.forget(chat_id=GROUP, user_id=ALICE) == 0  # nothing left


async def test_forget_keeps_user_row_while_they_have_other_chats(store: Store) -> None:
    await store.upsert_user(ALICE, "Alice", None)
    await say(store, ALICE, "group", reply="r")
    await say(store, ALICE, "private", chat_id=ALICE, reply="r")
    assert await store.forget(chat_id=GROUP, user_id=ALICE) == 2
    counts = await store.counts()
    assert (counts["users"], counts["chats"], counts["messages"]) == (1, 1, 2)
    assert (await store.export_user(chat_id=ALICE, user_id=ALICE))["user"] == {"first_name": "Alice", "username": None}

    assert await store.forget(chat_id=ALICE, user_id=ALICE) == 2
    assert await store.counts() == {
        "chats": 0, "users": 0, "messages": 0, "sentiments": 0, "conversations": 0, "care_events": 0,
        "corrections": 0, "person_settings": 0, "self_reports": 0,
    }


async def _forget_secret_and_read_files(db_path: Path, secret: str) -> list[bytes]:
    """Store Alice's secret between Bob's messages, /forget Alice, close; return the bytes of every db file."""
    async with await Store.open(db_path) as store:
        await store.upsert_user(ALICE, "Alice", "alice")
        await say(store, BOB, "bob keeps talking " * 20, reply="sure " * 20)
        for i in range(5):
            await say(store, ALICE, f"{secret} {i}", reply=f"echo {secret} {i}", mood=sentiment("negative", -0.9))
        await say(store, BOB, "bob again " * 20)
    raw = db_path.read_bytes()
    assert secret.encode() in raw  # in the main file after the checkpoint on close
    assert b"alice" in raw

    async with await Store.open(db_path) as store:
        assert await store.forget(chat_id=GROUP, user_id=ALICE) == 10
    assert b"bob again" in db_path.read_bytes()
    return [path.read_bytes() for path in db_path.parent.iterdir() if path.name.startswith(db_path.name)]


async def test_forgotten_text_is_gone_from_the_file(db_path: Path) -> None:
    secret = "zebra-7f3a-unforgettable-secret"
    for data in await _forget_secret_and_read_files(db_path, secret):
        assert secret.encode() not in data
        assert b"alice" not in data


async def test_without_secure_delete_the_text_would_survive(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Control for the test above: SQLite may be built with secure_delete on by default, so switch it off."""
    pragmas = tuple(p.replace("secure_delete = ON", "secure_delete = OFF") for p in connection_module.PRAGMAS)
    monkeypatch.setattr(connection_module, "PRAGMAS", pragmas)
    secret = "zebra-7f3a-unforgettable-secret"
    files = await _forget_secret_and_read_files(db_path, secret)
    assert any(secret.encode() in data for data in files)


def database_files(db_path: Path) -> dict[str, bytes]:
    """Every file in the database's folder (the database, its -wal and -shm), read as raw bytes."""
    return {path.name: path.read_bytes() for path in db_path.parent.iterdir() if path.is_file()}


async def _delete_secret_while_open(db_path: Path, secret: str, how: str) -> dict[str, bytes]:
    """Store Alice's secret between Bob's messages, delete it (``forget`` or ``purge``) and read every file of the
    folder while the store is still open (no close-time checkpoint)."""
    long_ago = DAY0 - 30 * 86_400
    async with await Store.open(db_path) as store:
        await say(store, BOB, "bob keeps talking " * 20, reply="sure " * 20)
        for i in range(5):
            await say(store, ALICE, f"{secret} {i}", at=long_ago, reply=f"echo {secret} {i}")
        await say(store, BOB, "bob again " * 20)
        assert any(secret.encode() in data for data in database_files(db_path).values())
        if how == "forget":
            assert await store.forget(chat_id=GROUP, user_id=ALICE) == 10
        else:
            assert await store.purge_older_than(DAY0) == 10
        files = database_files(db_path)
        assert (await store.counts())["messages"] == 3, "Bob's rows stay"
    assert {f"{db_path.name}-wal", f"{db_path.name}-shm"} <= set(files)
    return files


@pytest.mark.parametrize("how", ["forget", "purge"])
async def test_deleted_text_is_gone_from_every_file_while_the_store_is_open(db_path: Path, how: str) -> None:
    secret = "quokka-41c9-whispered-secret"
    for name, data in (await _delete_secret_while_open(db_path, secret, how)).items():
        assert secret.encode() not in data, name


async def test_without_the_checkpoint_the_wal_would_keep_deleted_text(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Control for the test above: secure_delete alone leaves the old pages in the write-ahead log."""

    async def no_checkpoint(self: Store) -> bool:
        return True

    monkeypatch.setattr(Store, "checkpoint", no_checkpoint)
    secret = "quokka-41c9-whispered-secret"
    files = await _delete_secret_while_open(db_path, secret, "forget")
    assert secret.encode() in files[f"{db_path.name}-wal"]


# -- mood ------------------------------------------------------------------------------------------------------


async def _three_days_of_alice(store: Store) -> None:
    # 20:00 and 23:00 UTC on the 10th, 10:00 UTC on the 11th.
    await say(store, ALICE, "evening", at=DAY0 + 20 * HOUR, mood=sentiment("positive", 0.8))
    await say(
        store, ALICE, "late", at=DAY0 + 23 * HOUR, reply="bot words are not mood", mood=sentiment("negative", -0.4)
    )
    await say(store, ALICE, "morning", at=DAY0 + 34 * HOUR, mood=sentiment("neutral", 0.1))
    await say(store, ALICE, "not classified yet", at=DAY0 + 35 * HOUR)
    await say(store, BOB, "bob", at=DAY0 + 21 * HOUR, mood=sentiment("negative", -1.0))
    await say(store, ALICE, "other chat", chat_id=OTHER_GROUP, at=DAY0 + 21 * HOUR, mood=sentiment("positive", 1.0))


async def test_mood_by_day_groups_by_local_day(store: Store) -> None:
    await _three_days_of_alice(store)

    utc = await store.mood_by_day(chat_id=GROUP, user_id=ALICE, since=DAY0)
    assert utc == [
        DayMood("2024-03-10", messages=2, average_score=pytest.approx(0.2), positive=1, neutral=0, negative=1),
        DayMood("2024-03-11", messages=1, average_score=pytest.approx(0.1), positive=0, neutral=1, negative=0),
    ]

    # UTC+3: 23:00 UTC is already 02:00 on the 11th.
    east = await store.mood_by_day(chat_id=GROUP, user_id=ALICE, since=DAY0, zone=timezone(timedelta(hours=3)))
    assert [(d.day, d.messages, d.positive, d.neutral, d.negative) for d in east] == [
        ("2024-03-10", 1, 1, 0, 0),
        ("2024-03-11", 2, 0, 1, 1),
    ]

    # UTC-11: 10:00 UTC on the 11th is still 23:00 on the 10th.
    west = await store.mood_by_day(chat_id=GROUP, user_id=ALICE, since=DAY0, zone=timezone(timedelta(hours=-11)))
    assert [(d.day, d.messages) for d in west] == [("2024-03-10", 3)]

    # The whole chat, and a window.
    chat = await store.mood_by_day(chat_id=GROUP, user_id=None, since=DAY0)
    assert [(d.day, d.messages, d.negative) for d in chat] == [("2024-03-10", 3, 2), ("2024-03-11", 1, 0)]
    window = await store.mood_by_day(chat_id=GROUP, user_id=None, since=DAY0 + 21 * HOUR, until=DAY0 + 23 * HOUR)
    assert [(d.day, d.messages) for d in window] == [("2024-03-10", 1)]  # until is exclusive

    with pytest.raises(ValueError):  # a zone SQL could not rebuild from its key
        await store.mood_by_day(chat_id=GROUP, user_id=None, since=0, zone=timezone(timedelta(seconds=30)))


async def test_mood_days_follow_daylight_saving_time(store: Store) -> None:
    """Berlin moves from UTC+1 to UTC+2 at 01:00 UTC on 2024-03-31: each message's day uses its own offset."""
    berlin = ZoneInfo("Europe/Berlin")
    before = datetime(2024, 3, 30, 22, 30, tzinfo=UTC).timestamp()  # 23:30 on the 30th in Berlin (UTC+1)
    after = datetime(2024, 3, 31, 22, 30, tzinfo=UTC).timestamp()  # 00:30 on April 1st in Berlin (UTC+2)
    await say(store, ALICE, "before the change", at=before, mood=sentiment("positive", 0.5))
    await say(store, ALICE, "after the change", at=after, mood=sentiment("negative", -0.5))

    days = await store.mood_by_day(chat_id=GROUP, user_id=ALICE, since=0, zone=berlin)
    assert [(d.day, d.positive, d.negative) for d in days] == [("2024-03-30", 1, 0), ("2024-04-01", 0, 1)]
    # Either fixed offset gets one of the two wrong.
    winter = await store.mood_by_day(chat_id=GROUP, user_id=ALICE, since=0, zone=timezone(timedelta(hours=1)))
    summer = await store.mood_by_day(chat_id=GROUP, user_id=ALICE, since=0, zone=timezone(timedelta(hours=2)))
    assert [d.day for d in winter] == ["2024-03-30", "2024-03-31"]
    assert [d.day for d in summer] == ["2024-03-31", "2024-04-01"]


async def test_mood_days_in_a_plus_eight_zone(store: Store) -> None:
    await say(store, ALICE, "late in UTC", at=DAY0 + 17 * HOUR, mood=sentiment("positive", 0.5))  # 01:00 on the 11th
    await say(store, ALICE, "early in UTC", at=DAY0 + 15 * HOUR, mood=sentiment("neutral", 0.0))  # 23:00 on the 10th
    for zone in (ZoneInfo("Asia/Shanghai"), ZoneInfo("Etc/GMT-8"), timezone(timedelta(hours=8))):
        days = await store.mood_by_day(chat_id=GROUP, user_id=ALICE, since=0, zone=zone)
        assert [(d.day, d.messages) for d in days] == [("2024-03-10", 1), ("2024-03-11", 1)], zone
        members = await store.mood_by_user(chat_id=GROUP, since=0, zone=zone)
        assert [d.day for d in members[0].summary.days] == ["2024-03-10", "2024-03-11"]


async def test_mood_summary_shares(store: Store) -> None:
    await _three_days_of_alice(store)
    await say(store, ALICE, "more", at=DAY0 + 36 * HOUR, mood=sentiment("positive", 0.5))

    summary = await store.mood_summary(chat_id=GROUP, user_id=ALICE, since=DAY0)
    assert summary.messages == 4
    assert summary.average_score == pytest.approx((0.8 - 0.4 + 0.1 + 0.5) / 4)
    assert (summary.positive_share, summary.neutral_share, summary.negative_share) == (0.5, 0.25, 0.25)
    assert [d.day for d in summary.days] == ["2024-03-10", "2024-03-11"]

    empty = await store.mood_summary(chat_id=GROUP, user_id=ALICE, since=DAY0 + 100 * HOUR)
    assert (empty.messages, empty.average_score, empty.positive_share, empty.days) == (0, None, 0.0, [])


async def test_mood_by_user_names_and_members(store: Store) -> None:
    carol, dave = 33, 44
    await store.upsert_user(ALICE, "Alice", "alice")
    await store.upsert_user(BOB, None, "bobby")
    await _three_days_of_alice(store)
    await say(store, carol, "only unclassified", at=DAY0 + 22 * HOUR)
    await say(store, dave, "long ago", at=DAY0 - 48 * HOUR, mood=sentiment("positive", 1.0))

    moods = await store.mood_by_user(chat_id=GROUP, since=DAY0)
    assert [(m.user_id, m.display_name, m.summary.messages) for m in moods] == [
        (ALICE, "Alice", 3),
        (BOB, "@bobby", 1),
        (carol, "user 33", 0),
    ]
    assert moods[1].summary.negative_share == 1.0
    assert moods[2].summary.average_score is None and moods[2].summary.days == []
    assert [d.day for d in moods[0].summary.days] == ["2024-03-10", "2024-03-11"]

    east = await store.mood_by_user(
        chat_id=GROUP, since=DAY0, until=DAY0 + 24 * HOUR, zone=timezone(timedelta(hours=3))
    )
    assert [(m.user_id, [d.day for d in m.summary.days]) for m in east] == [
        (ALICE, ["2024-03-10", "2024-03-11"]),
        (BOB, ["2024-03-11"]),
        (carol, []),
    ]


# -- back-fill, export, retention ------------------------------------------------------------------------------


async def test_unclassified_messages_oldest_first(store: Store) -> None:
    first = await say(store, ALICE, "one", reply="bot replies are never classified")
    await say(store, BOB, "two", mood=sentiment("neutral", 0.0))
    third = await say(store, BOB, "three")
    fourth = await say(store, ALICE, "four", chat_id=OTHER_GROUP)

    pending = await store.unclassified_messages()
    assert [(m.id, m.role, m.is_new) for m in pending] == [
        (first.id, "user", False),
        (third.id, "user", False),
        (fourth.id, "user", False),
    ]
    assert [m.text for m in await store.unclassified_messages(limit=2)] == ["one", "three"]

    await store.add_sentiment(first.id, sentiment("positive", 0.3))
    assert [m.id for m in await store.unclassified_messages()] == [third.id, fourth.id]


async def test_export_user(store: Store) -> None:
    await store.upsert_user(ALICE, "Alice", "alice")
    question = await say(store, ALICE, "export me", at=DAY0 + 1.5, tg=10, mood=sentiment("positive", 0.6))
    reply_id = await store.add_reply(
        chat_id=GROUP, user_id=ALICE, text="done", reply_to=question.id, telegram_message_id=11, created_at=DAY0 + 2
    )
    await say(store, BOB, "not mine", at=DAY0)
    await say(store, ALICE, "other chat", chat_id=OTHER_GROUP, at=DAY0)

    exported = await store.export_user(chat_id=GROUP, user_id=ALICE)
    assert json.loads(json.dumps(exported)) == exported  # JSON-ready
    assert exported == {
        "chat_id": GROUP,
        "user_id": ALICE,
        "user": {"first_name": "Alice", "username": "alice"},
        "messages": [
            {
                "id": question.id,
                "role": "user",
                "text": "export me",
                "created_at": "2024-03-10T00:00:01.500000+00:00",
                "edited_at": None,
                "telegram_message_id": 10,
                "reply_to": None,
                "sentiment": {
                    "label": "positive", "score": 0.6, "probs": {"positive": 0.9}, "model": "test-model", "care": 0.0
                },
                "your_label": None,
                "help_offered_at": None,
            },
            {
                "id": reply_id,
                "role": "assistant",
                "text": "done",
                "created_at": "2024-03-10T00:00:02+00:00",
                "edited_at": None,
                "telegram_message_id": 11,
                "reply_to": question.id,
                "sentiment": None,
                "your_label": None,
                "help_offered_at": None,
            },
        ],
    }


async def test_purge_older_than(store: Store) -> None:
    old = await say(store, ALICE, "old", at=DAY0, mood=sentiment("neutral", 0.0))
    await store.add_reply(
        chat_id=GROUP, user_id=ALICE, text="reply", reply_to=old.id, telegram_message_id=None, created_at=DAY0 + 10
    )
    await say(store, BOB, "old too", at=DAY0 + 1)
    await say(store, BOB, "new", at=DAY0 + 100 * HOUR, mood=sentiment("positive", 0.5))

    assert await store.purge_older_than(DAY0 + HOUR) == 3
    counts = await store.counts()
    assert (counts["messages"], counts["sentiments"]) == (1, 1)
    assert await store.purge_older_than(DAY0 + 5) == 0

    # A reply newer than the cutoff goes with the message it answers (cascade).
    question = await say(store, ALICE, "q", at=DAY0 + 200 * HOUR)
    await store.add_reply(
        chat_id=GROUP,
        user_id=ALICE,
        text="a",
        reply_to=question.id,
        telegram_message_id=None,
        created_at=DAY0 + 300 * HOUR,
    )
    assert await store.purge_older_than(DAY0 + 250 * HOUR) == 3  # "new" (100 h), "q" (200 h) and its reply
    assert await store.history(chat_id=GROUP, user_id=ALICE) == []
    assert (await store.counts())["messages"] == 0


# -- what is still owed: replies and moods ---------------------------------------------------------------------


async def arrive(store: Store, text: str, *, tg: int | None, owed: bool = True, user_id: int = ALICE) -> StoredMessage:
    return await store.record_arrival(
        chat_id=GROUP, chat_kind="supergroup", chat_title="Friends", user_id=user_id, first_name="Alice",
        username="alice", text=text, telegram_message_id=tg, reply_owed=owed,
    )


async def count_transactions(store: Store) -> list[str]:
    """Every BEGIN the store's connection runs from now on."""
    begins: list[str] = []
    await store._connection().set_trace_callback(lambda sql: begins.append(sql) if sql.startswith("BEGIN") else None)
    return begins


async def test_an_arriving_message_is_stored_with_who_and_where_owed_a_reply_in_one_transaction(store: Store) -> None:
    begins = await count_transactions(store)
    message = await arrive(store, "hello", tg=5)
    assert len(begins) == 1
    assert message.is_new and message.text == "hello"
    assert await store.reply_owed(message.id)
    assert [m.id for m in await store.unclassified_messages()] == [message.id]
    [owed] = await store.owed_replies()
    assert (owed.message.id, owed.chat_kind, owed.draft_message_id) == (message.id, "supergroup", None)
    counts = await store.counts()
    assert (counts["chats"], counts["users"]) == (1, 1)

    again = await arrive(store, "hello", tg=5)  # a re-delivered update: same row, nothing else changes
    assert (again.id, again.is_new) == (message.id, False)
    assert len(await store.owed_replies()) == 1

    chatter = await arrive(store, "not for the bot", tg=6, owed=False)
    assert not await store.reply_owed(chatter.id)
    assert [m.id for m in await store.unclassified_messages()] == [message.id, chatter.id]
    assert [m.id for m in await store.unclassified_messages(skip_owed=True)] == [chatter.id], "its reply classifies it"


async def test_the_reply_settles_what_is_owed_and_the_draft_is_remembered_until_then(store: Store) -> None:
    message = await arrive(store, "hello", tg=5)
    await store.set_reply_draft(message.id, 77)
    [owed] = await store.owed_replies()
    assert owed.draft_message_id == 77
    begins = await count_transactions(store)
    await store.add_reply(chat_id=GROUP, user_id=ALICE, text="hi", reply_to=message.id, telegram_message_id=77)
    assert len(begins) == 1, "the reply and the settling are one transaction"
    assert await store.owed_replies() == [] and not await store.reply_owed(message.id)

    other = await arrive(store, "are you there?", tg=6)
    await store.settle_replies([other.id])
    assert await store.owed_replies() == []
    await store.settle_replies([])


async def test_a_sentiment_settles_the_mood_unless_the_text_changed_meanwhile(store: Store) -> None:
    message = await arrive(store, "I am sad", tg=5)
    await store.update_user_message_text(chat_id=GROUP, telegram_message_id=5, text="I am glad")
    assert not await store.add_sentiment(message.id, sentiment("negative", -0.8), text="I am sad"), "stale"
    assert [m.id for m in await store.unclassified_messages()] == [message.id]
    assert await store.add_sentiment(message.id, sentiment("positive", 0.8), text="I am glad")
    assert await store.unclassified_messages() == []

    await store.update_user_message_text(chat_id=GROUP, telegram_message_id=5, text="I am sad again")
    assert [m.text for m in await store.unclassified_messages()] == ["I am sad again"], "an edit owes a new mood"


async def test_failed_classifications_are_counted_and_give_up_after_the_limit(store: Store) -> None:
    first = await arrive(store, "one", tg=1, owed=False)
    second = await arrive(store, "two", tg=2, owed=False)
    assert await store.record_classify_failure(first.id) == 1
    assert await store.record_classify_failure(first.id) == 2
    assert [m.id for m in await store.unclassified_messages(max_attempts=2)] == [second.id]
    assert [m.id for m in await store.unclassified_messages()] == [first.id, second.id]
    assert [m.id for m in await store.unclassified_messages(after_id=first.id)] == [second.id]
    await store.update_user_message_text(chat_id=GROUP, telegram_message_id=1, text="one, edited")
    assert len(await store.unclassified_messages(max_attempts=2)) == 2, "a new text starts again from 0"
    await store.add_sentiment(second.id, sentiment("neutral", 0.0))
    assert await store.record_classify_failure(second.id) == 0, "not owed a mood any more"


async def test_history_follows_the_conversation_when_a_message_arrived_before_the_last_reply(store: Store) -> None:
    first = await arrive(store, "first", tg=1)
    second = await arrive(store, "second", tg=2)  # stored on arrival, while the first was being answered
    await store.add_reply(chat_id=GROUP, user_id=ALICE, text="to first", reply_to=first.id, telegram_message_id=None)
    before_second = await store.history(chat_id=GROUP, user_id=ALICE, before_id=second.id)
    assert [t.text for t in before_second] == ["first", "to first"]
    await store.add_reply(chat_id=GROUP, user_id=ALICE, text="to second", reply_to=second.id, telegram_message_id=None)
    turns = await store.history(chat_id=GROUP, user_id=ALICE)
    assert [t.text for t in turns] == ["first", "to first", "second", "to second"]
    assert [t.text for t in await store.history(chat_id=GROUP, user_id=ALICE, limit=3)] == [
        "to first", "second", "to second"
    ]


async def test_reset_keeps_the_messages_that_arrived_after_it(store: Store) -> None:
    first = await arrive(store, "before the reset", tg=1)
    after = await arrive(store, "after the reset", tg=2)  # stored on arrival, queued behind /reset
    await store.add_reply(chat_id=GROUP, user_id=ALICE, text="to before", reply_to=first.id, telegram_message_id=None)
    await store.reset_context(chat_id=GROUP, user_id=ALICE)  # its turn comes after the first was answered
    assert await store.history(chat_id=GROUP, user_id=ALICE, before_id=after.id) == []
    await store.add_reply(chat_id=GROUP, user_id=ALICE, text="to after", reply_to=after.id, telegram_message_id=None)
    assert [t.text for t in await store.history(chat_id=GROUP, user_id=ALICE)] == ["after the reset", "to after"]


async def test_forget_takes_what_is_owed_along(store: Store) -> None:
    message = await arrive(store, "hello", tg=5)
    await store.set_reply_draft(message.id, 77)
    await store.forget(chat_id=GROUP, user_id=ALICE)
    assert await store.owed_replies() == [] and await store.unclassified_messages() == []
