"""People's own labels ("Fix a mood") in the store: only the author sets one, the latest wins, /mood counts it in
place of the model's, edits keep it, the export shows it beside the model's, and /forget and retention delete it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
import pytest

from storage import CorrectionOutcome, SentimentRecord, Store, StoredMessage
from storage.migrations import MIGRATIONS, MigrationRegistry, migrate

GROUP = -100123
ALICE = 11
BOB = 22
DAY0 = datetime(2024, 3, 10, tzinfo=UTC).timestamp()
HOUR = 3600.0


def mood(label: str, score: float) -> SentimentRecord:
    return SentimentRecord(label=label, score=score, probs={label: 0.9}, model="test-model")


async def say(
    store: Store, user_id: int, text: str, *, at: float = DAY0, sentiment: SentimentRecord | None = None,
    chat_id: int = GROUP, tg: int | None = None,
) -> StoredMessage:
    message = await store.add_user_message(
        chat_id=chat_id, user_id=user_id, text=text, telegram_message_id=tg, created_at=at
    )
    if sentiment is not None:
        assert await store.add_sentiment(message.id, sentiment)
    return message


async def test_only_the_author_sets_a_label_and_the_latest_wins(store: Store) -> None:
    message = await say(store, ALICE, "fine I guess", sentiment=mood("positive", 0.4))
    reply = await store.add_reply(
        chat_id=GROUP, user_id=ALICE, text="ok", reply_to=message.id, telegram_message_id=None
    )
    assert reply is not None

    assert await store.set_label(message_id=message.id, user_id=BOB, label="negative") == CorrectionOutcome.NOT_YOURS
    assert await store.set_label(message_id=reply, user_id=ALICE, label="negative") == CorrectionOutcome.GONE
    assert await store.set_label(message_id=message.id + 99, user_id=ALICE, label="negative") == CorrectionOutcome.GONE
    with pytest.raises(ValueError, match="label must be one of"):
        await store.set_label(message_id=message.id, user_id=ALICE, label="great")
    assert (await store.counts())["corrections"] == 0

    assert await store.set_label(message_id=message.id, user_id=ALICE, label="negative") == CorrectionOutcome.SAVED
    assert await store.set_label(message_id=message.id, user_id=ALICE, label="neutral") == CorrectionOutcome.SAVED
    [labelled] = await store.recent_labelled(chat_id=GROUP, user_id=ALICE)
    assert (labelled.text, labelled.model_label, labelled.person_label, labelled.label) == (
        "fine I guess", "positive", "neutral", "neutral"
    ), "the model's label is kept apart; the latest correction wins"
    assert (await store.counts())["corrections"] == 1


async def test_recent_labelled_is_the_persons_last_messages_here_oldest_first(store: Store) -> None:
    await store.upsert_chat(GROUP, "supergroup", "Friends")
    for i in range(7):
        await say(store, ALICE, f"alice {i}", at=DAY0 + i, sentiment=mood("neutral", 0.0) if i % 2 else None)
    await say(store, BOB, "bob", at=DAY0 + 10)
    await say(store, ALICE, "elsewhere", chat_id=ALICE, at=DAY0 + 11)
    recent = await store.recent_labelled(chat_id=GROUP, user_id=ALICE, limit=5)
    assert [m.text for m in recent] == ["alice 2", "alice 3", "alice 4", "alice 5", "alice 6"]
    assert [m.label for m in recent] == [None, "neutral", None, "neutral", None]
    assert {(m.chat_kind, m.chat_title) for m in recent} == {("supergroup", "Friends")}

    ids = [m.id for m in recent]
    bobs = await say(store, BOB, "bob again")
    again = await store.labelled_messages(user_id=ALICE, message_ids=[*reversed(ids[:2]), bobs.id, 10_000])
    assert [m.id for m in again] == ids[:2], "only Alice's, still stored, oldest first"


async def test_mood_counts_the_persons_label_in_place_of_the_models(store: Store) -> None:
    first = await say(store, ALICE, "was it good?", at=DAY0 + HOUR, sentiment=mood("positive", 0.6))
    await say(store, ALICE, "meh", at=DAY0 + 2 * HOUR, sentiment=mood("neutral", 0.1))
    unclassified = await say(store, ALICE, "not classified", at=DAY0 + 25 * HOUR)
    before = await store.mood_summary(chat_id=GROUP, user_id=ALICE, since=0)
    assert (before.messages, before.positive_share) == (2, 0.5)

    await store.set_label(message_id=first.id, user_id=ALICE, label="negative")
    await store.set_label(message_id=unclassified.id, user_id=ALICE, label="positive")
    after = await store.mood_summary(chat_id=GROUP, user_id=ALICE, since=0)
    assert after.messages == 3, "a message with only the person's label counts"
    day_one, day_two = after.days
    assert (day_one.negative, day_one.neutral, day_one.positive) == (1, 1, 0)
    assert day_one.average_score == pytest.approx((-1.0 + 0.1) / 2), "the person's label counts as certain"
    assert (day_two.positive, day_two.average_score) == (1, 1.0)
    [member] = await store.mood_by_user(chat_id=GROUP, since=0)
    assert member.summary == after


async def test_an_edit_keeps_the_label_and_the_export_shows_both_labels(store: Store) -> None:
    message = await say(store, ALICE, "a goood day", tg=5, sentiment=mood("positive", 0.7))
    await store.set_label(message_id=message.id, user_id=ALICE, label="neutral")
    [exported] = (await store.export_user(chat_id=GROUP, user_id=ALICE))["messages"]
    assert exported["sentiment"]["label"] == "positive", "the model's verdict, as it gave it"
    assert exported["your_label"]["label"] == "neutral" and exported["your_label"]["message_edited_since"] is False
    assert exported["your_label"]["set_at"].endswith("+00:00")

    assert await store.update_user_message_text(chat_id=GROUP, telegram_message_id=5, text="a good day")
    [labelled] = await store.recent_labelled(chat_id=GROUP, user_id=ALICE)
    assert (labelled.text, labelled.model_label, labelled.person_label) == ("a good day", None, "neutral")
    [exported] = (await store.export_user(chat_id=GROUP, user_id=ALICE))["messages"]
    assert exported["your_label"]["label"] == "neutral" and exported["your_label"]["message_edited_since"] is True


async def test_forget_and_retention_delete_the_labels(store: Store) -> None:
    old = await say(store, BOB, "old", at=DAY0 - 40 * 86_400)
    alices = await say(store, ALICE, "mine", at=DAY0)
    bobs = await say(store, BOB, "new", at=DAY0)
    for message in (old, alices, bobs):
        await store.set_label(message_id=message.id, user_id=message.user_id, label="positive")
    assert (await store.counts())["corrections"] == 3

    await store.purge_older_than(DAY0 - 86_400)
    assert [e.text for e in await store.corrected_examples()] == ["mine", "new"]
    await store.forget(chat_id=GROUP, user_id=ALICE)
    assert [e.text for e in await store.corrected_examples()] == ["new"]
    assert (await store.counts())["corrections"] == 1


async def test_corrected_examples_are_every_labelled_message_or_one_persons(store: Store) -> None:
    alices = [await say(store, ALICE, f"alice {i}", sentiment=mood("neutral", 0.0)) for i in range(3)]
    bobs = await say(store, BOB, "bob")
    await store.set_label(message_id=bobs.id, user_id=BOB, label="negative")
    await store.set_label(message_id=alices[2].id, user_id=ALICE, label="positive")
    await store.set_label(message_id=alices[0].id, user_id=ALICE, label="neutral")
    everyone = await store.corrected_examples()
    assert [(e.user_id, e.text, e.label) for e in everyone] == [
        (ALICE, "alice 0", "neutral"), (ALICE, "alice 2", "positive"), (BOB, "bob", "negative")
    ], "only corrected messages, oldest first; a message the model labelled alone is no example"
    assert [e.text for e in await store.corrected_examples(user_id=BOB)] == ["bob"]


async def test_the_migration_upgrades_a_database_of_the_previous_schema(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    previous = MigrationRegistry()
    for name, fn in MIGRATIONS:
        if name < "m005":
            previous(fn)
    async with aiosqlite.connect(path) as db:
        await migrate(db, previous)
        await db.execute("INSERT INTO chats (id, kind, created_at) VALUES (1, 'private', 0)")
        await db.execute("INSERT INTO users (id, created_at) VALUES (1, 0)")
        await db.execute(
            "INSERT INTO messages (id, chat_id, user_id, role, text, created_at) VALUES (7, 1, 1, 'user', 'so-so', ?)",
            (DAY0,),
        )
        await db.execute(
            "INSERT INTO sentiments (message_id, label, score, probs, model, created_at) "
            "VALUES (7, 'positive', 0.5, '{}', 'm', 0)"
        )
        await db.commit()
        tables = {row[0] for row in await db.execute_fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "corrections" not in tables

    async with await Store.open(path) as store:  # opening migrates
        assert (await store.pragmas())["user_version"] == len(MIGRATIONS)
        assert (await store.mood_summary(chat_id=1, user_id=1, since=0)).positive_share == 1.0, "the old mood stays"
        assert await store.set_label(message_id=7, user_id=1, label="negative") == CorrectionOutcome.SAVED
        summary = await store.mood_summary(chat_id=1, user_id=1, since=0)
        assert (summary.negative_share, summary.average_score) == (1.0, -1.0)
