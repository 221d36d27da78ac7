"""Bot behaviour through the fake Bot API with a scripted engine: ordering, concurrency, crashes, busy, groups."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bot.config import LimitsConfig
from bot.telegram.context import SERVICES_KEY
from bot.views.telegram_text import TELEGRAM_TEXT_LIMIT, telegram_length
from bot.views.texts import BACKLOG_TEXT, BUSY_TEXT, FAILED_SAVED_TEXT, FAILED_TEXT
from storage import Store, StoredMessage
from tests.support.e2e import config_for, final_texts, rows, running_bot
from tests.support.fakebotapi import FakeBotApi
from tests.support.fakeengine import ScriptedEngine


async def test_a_slow_reply_in_one_chat_does_not_delay_another_chat(api: FakeBotApi, tmp_path: Path) -> None:
    engine = ScriptedEngine(gates={"slow one": asyncio.Event()})
    alice, bob = api.user(1, "Alice"), api.user(2, "Bob")
    async with running_bot(config_for(api, tmp_path), engine=engine):
        api.send_text(api.private_chat(alice), alice, "slow one")
        api.send_text(api.private_chat(bob), bob, "quick one")
        try:
            assert await final_texts(api, 2, 1) == ["echo: quick one"]
            assert api.sent_messages(1) == [], "Alice's reply is still waiting on its gate"
            assert "slow one" in engine.classified, "Alice's message was classified even though her reply waits"
        finally:
            engine.gates["slow one"].set()
        assert await final_texts(api, 1, 1) == ["echo: slow one"]


async def test_messages_of_one_chat_are_handled_in_order_with_history(api: FakeBotApi, tmp_path: Path) -> None:
    engine = ScriptedEngine(gates={"first": asyncio.Event()})
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    async with running_bot(config_for(api, tmp_path), engine=engine):
        api.send_text(chat, alice, "first")
        api.send_text(chat, alice, "second")
        try:
            assert await asyncio.wait_for(engine.replies_started.get(), timeout=5) == "first"
            await api.wait_for(lambda a: not a.pending_updates)  # PTB has fetched "second" too
            await asyncio.sleep(0.2)  # room for "second" to jump the queue, if it could
            assert [m for _, m in engine.seen_histories] == ["first"], "the second waits for the first to finish"
        finally:
            engine.gates["first"].set()
        texts = await final_texts(api, 1, 2)
    assert texts == ["echo: first", "echo: second"]
    history, message = engine.seen_histories[1]
    assert message == "second"
    assert [(t.role, t.text) for t in history] == [("user", "first"), ("assistant", "echo: first")]


async def test_a_crash_mid_reply_keeps_the_message_and_no_half_reply(api: FakeBotApi, tmp_path: Path) -> None:
    engine = ScriptedEngine(replies=[RuntimeError("model exploded")])
    alice = api.user(1, "Alice")
    async with running_bot(config_for(api, tmp_path), engine=engine):
        api.send_text(api.private_chat(alice), alice, "a good day")
        await api.wait_for(lambda a: FAILED_SAVED_TEXT in a.sent_texts(1))
    database = tmp_path / "bot.db"
    assert rows(database, "SELECT role, text FROM messages") == [("user", "a good day")]
    assert rows(database, "SELECT label FROM sentiments") == [("positive",)]


async def test_the_apology_says_saved_only_when_the_store_holds_the_message(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()) as application:
        store = application.bot_data[SERVICES_KEY].store

        async def disk_full(**kwargs: object) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        async def broken_summary(**kwargs: object) -> None:
            raise RuntimeError("mood query failed")

        store.record_arrival = disk_full  # on arrival, and again in the handler
        api.send_text(chat, alice, "a good day")
        await api.wait_for(lambda a: len(a.sent_texts(1)) == 1)
        store.mood_summary = broken_summary
        api.send_command(chat, alice, "/mood")  # commands are never saved, so no apology may claim they are
        await api.wait_for(lambda a: len(a.sent_texts(1)) == 2)
    assert api.sent_texts(1) == [FAILED_TEXT, FAILED_TEXT]
    assert "saved" not in FAILED_TEXT and "saved" in FAILED_SAVED_TEXT
    assert rows(tmp_path / "bot.db", "SELECT COUNT(*) FROM messages") == [(0,)]


async def test_busy_engine_gets_a_polite_answer_and_the_backfill_classifies_later(
    api: FakeBotApi, tmp_path: Path
) -> None:
    engine = ScriptedEngine(busy=True)
    alice = api.user(1, "Alice")
    config = config_for(api, tmp_path)
    async with running_bot(config, engine=engine):
        api.send_text(api.private_chat(alice), alice, "a bad day")
        [busy] = await api.wait_for_messages(1)
        assert busy["text"] == BUSY_TEXT
    database = tmp_path / "bot.db"
    assert rows(database, "SELECT text FROM messages") == [("a bad day",)]
    assert rows(database, "SELECT COUNT(*) FROM sentiments") == [(0,)]
    engine.busy = False
    async with running_bot(config, engine=engine):  # start-up runs the back-fill job
        await api.wait_for(lambda a: "a bad day" in engine.classified or None, timeout=5)
        api.send_command(api.private_chat(alice), alice, "/help")
        await api.wait_for_messages(1, count=2)
    assert rows(database, "SELECT label FROM sentiments") == [("negative",)]


async def test_an_engine_error_on_classify_is_treated_like_busy(api: FakeBotApi, tmp_path: Path) -> None:
    """A remote inference server that is down (after its retries) costs a polite answer, never the message."""
    from engine import EngineError

    class Unreachable(ScriptedEngine):
        async def classify(self, text: str):  # type: ignore[no-untyped-def]
            raise EngineError("cannot reach the inference server at http://127.0.0.1:9/v1")

    alice = api.user(1, "Alice")
    async with running_bot(config_for(api, tmp_path), engine=Unreachable()):
        api.send_text(api.private_chat(alice), alice, "a bad day")
        [busy] = await api.wait_for_messages(1)
    assert busy["text"] == BUSY_TEXT
    assert rows(tmp_path / "bot.db", "SELECT text FROM messages") == [("a bad day",)]


async def test_a_redelivered_update_is_answered_once(api: FakeBotApi, tmp_path: Path) -> None:
    engine = ScriptedEngine()
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    async with running_bot(config_for(api, tmp_path), engine=engine):
        message_id = api.send_text(chat, alice, "hello")
        await api.wait_for_messages(1, count=1)
        duplicate = {"message_id": message_id, "date": 0, "chat": chat, "from": alice, "text": "hello"}
        api.queue_update({"message": duplicate})
        api.send_command(chat, alice, "/help")
        await api.wait_for_messages(1, count=2)
    assert api.sent_texts(1)[0] == "echo: hello"
    assert len(api.sent_messages(1)) == 2
    assert rows(tmp_path / "bot.db", "SELECT COUNT(*) FROM messages") == [(2,)]


async def test_an_edit_updates_text_and_mood_without_a_second_reply(api: FakeBotApi, tmp_path: Path) -> None:
    engine = ScriptedEngine()
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    async with running_bot(config_for(api, tmp_path), engine=engine):
        message_id = api.send_text(chat, alice, "a good day")
        await api.wait_for_messages(1, count=1)
        api.edit_text(chat, alice, message_id, "actually a bad day")
        api.send_command(chat, alice, "/help")
        await api.wait_for_messages(1, count=2)
    database = tmp_path / "bot.db"
    assert rows(database, "SELECT text FROM messages WHERE role = 'user'") == [("actually a bad day",)]
    assert rows(database, "SELECT label FROM sentiments") == [("negative",)]
    assert len(api.sent_messages(1)) == 2  # the reply and /help, nothing for the edit


async def test_in_groups_the_bot_answers_only_when_addressed(api: FakeBotApi, tmp_path: Path) -> None:
    engine = ScriptedEngine()
    alice = api.user(1, "Alice")
    group = api.group_chat(-100500, "Friends")
    async with running_bot(config_for(api, tmp_path), engine=engine):
        api.send_text(group, alice, "just chatting among friends")
        api.send_text(group, alice, "@moodbot_test_bot how are you?")
        await final_texts(api, group["id"], 1)
        bot_message_id = api.sent_messages(group["id"])[0]["message_id"]
        api.send_text(group, alice, "thanks!", reply_to_message_id=bot_message_id)
        texts = await final_texts(api, group["id"], 2)
    assert texts == ["echo: how are you?", "echo: thanks!"]
    assert [m for _, m in engine.seen_histories] == ["how are you?", "thanks!"]


async def test_mood_command_summarises_the_week(api: FakeBotApi, tmp_path: Path) -> None:
    engine = ScriptedEngine()
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    async with running_bot(config_for(api, tmp_path), engine=engine):
        for text in ("a good day", "a bad day", "a good morning"):
            api.send_text(chat, alice, text)
        api.send_command(chat, alice, "/mood")
        messages = await api.wait_for_messages(1, count=4)
        api.send_command(chat, alice, "/mood fortnight")
        messages = await api.wait_for_messages(1, count=5)
    summary, complaint = messages[3]["caption"], messages[4]["text"]
    assert "Messages: 3" in summary and "+0.27" in summary and "67% positive" in summary
    assert "/mood 30d" in complaint


async def test_a_very_long_message_is_stored_whole_answered_on_its_beginning(api: FakeBotApi, tmp_path: Path) -> None:
    engine = ScriptedEngine()
    alice = api.user(1, "Alice")
    text = "a good day " * 910  # 10,010 characters
    async with running_bot(config_for(api, tmp_path), engine=engine):
        api.send_text(api.private_chat(alice), alice, text)
        texts = await final_texts(api, 1, 2)
    assert texts[0].startswith("echo: a good day") and len(texts[0]) <= 4096
    assert "long message" in texts[1] and "2000" in texts[1]
    assert rows(tmp_path / "bot.db", "SELECT length(text) FROM messages WHERE role = 'user'") == [(len(text),)]
    assert len(engine.classified[0]) == 2000 and len(engine.seen_histories[0][1]) == 2000


async def test_a_reply_of_emoji_is_measured_as_telegram_counts_it(api: FakeBotApi, tmp_path: Path) -> None:
    """Telegram counts 🌱 as two UTF-16 code units: 2,500 of them (5,000 units, fewer than 4,096 characters) are
    streamed within the limit and sent as two messages, never refused as too long."""
    reply = "🌱" * 2500
    engine = ScriptedEngine(replies=[[reply]])
    alice = api.user(1, "Alice")
    async with running_bot(config_for(api, tmp_path), engine=engine):
        api.send_text(api.private_chat(alice), alice, "hello")
        texts = await final_texts(api, 1, 2)
    assert "".join(texts) == reply and all(telegram_length(text) <= TELEGRAM_TEXT_LIMIT for text in texts)
    assert all(call.status == 200 for call in api.calls_of("sendMessage") + api.calls_of("editMessageText"))
    assert rows(tmp_path / "bot.db", "SELECT text FROM messages WHERE role = 'assistant'") == [(reply,)]


async def test_a_429_from_send_message_is_waited_out_and_the_reply_arrives(api: FakeBotApi, tmp_path: Path) -> None:
    engine = ScriptedEngine()
    alice = api.user(1, "Alice")
    api.fail_next("sendMessage", status=429, retry_after=1)
    async with running_bot(config_for(api, tmp_path), engine=engine):
        api.send_text(api.private_chat(alice), alice, "hello")
        assert await final_texts(api, 1, 1) == ["echo: hello"]
    statuses = [call.status for call in api.calls_of("sendMessage")]
    assert statuses[0] == 429 and statuses[-1] == 200
    assert rows(tmp_path / "bot.db", "SELECT role FROM messages ORDER BY id") == [("user",), ("assistant",)]


async def test_every_common_non_text_kind_gets_a_friendly_answer(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    senders = [api.send_sticker, api.send_photo, api.send_voice, api.send_audio, api.send_video, api.send_video_note,
               api.send_animation, api.send_document, api.send_location, api.send_contact, api.send_poll]
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        for send in senders:
            send(chat, alice)
        texts = await final_texts(api, 1, len(senders))
    assert len(texts) == len(senders)
    assert all(text and "error" not in text.lower() and "wrong" not in text.lower() for text in texts)
    assert len(set(texts)) >= 9, "each kind gets its own wording"


@pytest.mark.parametrize("include_text", [False, True])
async def test_one_log_line_per_handled_message_with_text_only_when_asked(
    api: FakeBotApi, tmp_path: Path, caplog: pytest.LogCaptureFixture, include_text: bool
) -> None:
    from dataclasses import replace

    from bot.config import LoggingConfig

    alice = api.user(1, "Alice")
    config = replace(config_for(api, tmp_path), logging=LoggingConfig(include_text=include_text))
    with caplog.at_level(logging.INFO, logger="bot.flow.conversations"):
        async with running_bot(config, engine=ScriptedEngine()):
            api.send_text(api.private_chat(alice), alice, "a very private good thought")
            await final_texts(api, 1, 1)
    [line] = [r.getMessage() for r in caplog.records if "handled message" in r.getMessage()]
    assert "classify" in line and "reply" in line and "queue 0" in line
    assert ("a very private good thought" in line) is include_text


async def test_a_chat_with_hundreds_of_messages_waiting_does_not_hold_up_another_chat(
    api: FakeBotApi, tmp_path: Path
) -> None:
    """Alice forwards 300 messages while her first reply is held; Bob, who wrote after all of them, is answered
    first. Her chat's backlog is capped: beyond it messages are stored (not answered), with one "slow down"."""
    engine = ScriptedEngine(gates={"flood 0": asyncio.Event()})
    alice, bob = api.user(1, "Alice"), api.user(2, "Bob")
    config = config_for(api, tmp_path, limits=LimitsConfig(messages_per_minute=0, chat_backlog=100))
    async with running_bot(config, engine=engine):
        for n in range(300):
            api.send_text(api.private_chat(alice), alice, f"flood {n}")
        api.send_text(api.private_chat(bob), bob, "quick one")
        try:
            assert await final_texts(api, 2, 1, timeout=60) == ["echo: quick one"]
            assert [t for t in api.sent_texts(1) if t.startswith("echo")] == [], "Alice's first reply is still held"
            assert engine.replies_started.get_nowait() == "flood 0"
        finally:
            engine.gates["flood 0"].set()
        texts = await final_texts(api, 1, 102, timeout=60)
    assert texts.count(BACKLOG_TEXT) == 1, "one notice for the 199 messages beyond the backlog"
    assert [t for t in texts if t != BACKLOG_TEXT] == [f"echo: flood {n}" for n in range(101)], "in order"
    database = tmp_path / "bot.db"
    assert rows(database, "SELECT COUNT(*) FROM messages WHERE user_id = 1 AND role = 'user'") == [(300,)]
    assert rows(database, "SELECT COUNT(*) FROM messages WHERE user_id = 1 AND role = 'assistant'") == [(101,)]
    assert rows(database, "SELECT COUNT(*) FROM pending_replies") == [(0,)], "no late reply owed for the rest"


async def test_a_message_costs_three_transactions(api: FakeBotApi, tmp_path: Path) -> None:
    """Arrival (chat, user, message, owed reply and mood), sentiment, the reply (settling what was owed). In a private
    chat the reply is streamed as a draft, so there is no half-sent message whose id must be remembered (in a group
    that is a fourth)."""
    alice = api.user(1, "Alice")
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()) as application:
        begins: list[str] = []
        connection = application.bot_data[SERVICES_KEY].store._connection()
        await connection.set_trace_callback(lambda sql: begins.append(sql) if sql.startswith("BEGIN") else None)
        api.send_text(api.private_chat(alice), alice, "a good day")
        api.send_command(api.private_chat(alice), alice, "/help")  # answered once the turn before it is done
        await api.wait_for_messages(1, count=2)
    assert len(begins) == 3


async def test_an_update_is_confirmed_to_telegram_only_once_its_message_is_stored(
    api: FakeBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PTB confirms updates with its next getUpdates; that call waits until the messages it confirms are stored,
    so a crash in between loses nothing (Telegram delivers them again)."""
    confirmed_before_stored: list[bool] = []
    record = Store.record_arrival

    async def slow_record(self: Store, **message: Any) -> StoredMessage:
        await asyncio.sleep(0.5)  # a slow disk: room for an early confirmation, if there could be one
        stored = await record(self, **message)
        confirmed_before_stored.append(
            any(c.params.get("offset", 0) > update_id for c in api.calls_of("getUpdates"))
        )
        return stored

    monkeypatch.setattr(Store, "record_arrival", slow_record)
    alice = api.user(1, "Alice")
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        api.send_text(api.private_chat(alice), alice, "hello")
        update_id = api.pending_updates[-1]["update_id"]
        await final_texts(api, 1, 1)
        await api.wait_for(lambda a: not a.pending_updates)
    assert confirmed_before_stored == [False]
