"""Late replies: at start-up, every message a crash or restart left unanswered (queued behind its chat, or with its
reply half-written) is answered without the person writing again, first in its chat; the half-written reply is
finished in place. Older than ``telegram.late_reply_max_age_minutes``: no late reply, the mood is kept.

The real-process version (a backlog and a half-streamed reply, SIGKILL, restart) is in test_cli_run.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from telegram import Bot

from bot.config import ConfigError, config_from_dict
from bot.views.texts import BUSY_TEXT
from engine import EngineBusy, Sentiment
from storage import Store
from tests.support.e2e import config_for, eventually, final_texts, rows, running_bot
from tests.support.fakebotapi import TEST_TOKEN, FakeBotApi
from tests.support.fakeengine import ScriptedEngine

MINUTE = 60.0


async def leave_owed(
    store: Store, chat: dict, user: dict, text: str, telegram_id: int, age_s: float, thread_id: int | None = None
) -> int:
    """Store ``text`` as a message that arrived ``age_s`` ago and is still waiting for its reply; return its id."""
    stored = await store.record_arrival(
        chat_id=chat["id"], chat_kind=chat["type"], chat_title=chat.get("title"), user_id=user["id"],
        first_name=user["first_name"], username=None, text=text, telegram_message_id=telegram_id,
        reply_owed=True, thread_id=thread_id, created_at=time.time() - age_s,
    )
    return stored.id


async def test_at_start_up_owed_replies_are_answered_first_and_old_ones_keep_only_their_mood(
    api: FakeBotApi, tmp_path: Path
) -> None:
    alice, bob = api.user(1, "Alice"), api.user(2, "Bob")
    chat, group = api.private_chat(alice), api.forum_chat(-100700, "Friends")
    database = tmp_path / "bot.db"
    # What the last run left: a reply half-streamed into Alice's chat, and messages stored but not answered. One
    # of them was never confirmed to Telegram, which delivers it again.
    async with Bot(TEST_TOKEN, base_url=api.base_url) as bot:
        draft = await bot.send_message(chat["id"], "The first half of a reply …")
    redelivered = api.send_text(chat, alice, "a bad day")
    async with await Store.open(database) as store:
        old = await leave_owed(store, chat, alice, "a good old day", 9001, age_s=120 * MINUTE)
        half = await leave_owed(store, chat, alice, "a good day", 9002, age_s=10 * MINUTE)
        await store.set_reply_draft(half, draft.message_id)
        await leave_owed(store, chat, alice, "a bad day", redelivered, age_s=9 * MINUTE)
        in_group = await leave_owed(store, group, bob, "how are you?", 9003, age_s=1 * MINUTE, thread_id=42)
    api.send_text(chat, alice, "hello again")  # written while moodbot was down
    engine = ScriptedEngine()
    async with running_bot(config_for(api, tmp_path), engine=engine):
        texts = await final_texts(api, chat["id"], 3)
        assert await final_texts(api, group["id"], 1) == ["echo: how are you?"]
        api.send_command(chat, alice, "/help")  # after the re-delivered update in this chat
        await api.wait_for_messages(chat["id"], count=4)
        await eventually(lambda: rows(database, "SELECT COUNT(*) FROM sentiments") == [(5,)])
    assert texts == ["echo: a good day", "echo: a bad day", "echo: hello again"], "late ones first, each once"
    assert api.sent_messages(chat["id"])[0]["message_id"] == draft.message_id, "the half reply was finished"
    [group_send] = [c for c in api.calls_of("sendMessage") if c.params["chat_id"] == group["id"]]
    assert group_send.params["reply_parameters"]["message_id"] == 9003, "in a group, quoting the message"
    assert group_send.params["message_thread_id"] == 42, "in its forum topic"
    assert rows(database, "SELECT reply_to, telegram_message_id FROM messages WHERE reply_to = ?", half) == [
        (half, draft.message_id)
    ]
    answered = rows(database, "SELECT reply_to FROM messages WHERE role = 'assistant' ORDER BY reply_to")
    assert old not in [r for (r,) in answered] and in_group in [r for (r,) in answered] and len(answered) == 4
    assert rows(database, "SELECT COUNT(*) FROM pending_replies") == [(0,)]
    assert rows(database, "SELECT label FROM sentiments WHERE message_id = ?", old) == [("positive",)], "mood kept"
    [history] = [h for h, message in engine.seen_histories if message == "a bad day"]
    assert [(t.role, t.text) for t in history] == [
        ("user", "a good old day"), ("user", "a good day"), ("assistant", "echo: a good day")
    ]


async def test_late_replies_can_be_turned_off(api: FakeBotApi, tmp_path: Path) -> None:
    from dataclasses import replace

    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    database = tmp_path / "bot.db"
    async with await Store.open(database) as store:
        await leave_owed(store, chat, alice, "a good day", 9001, age_s=1.0)
    config = config_for(api, tmp_path)
    config = replace(config, telegram=replace(config.telegram, late_reply_max_age_minutes=0))
    async with running_bot(config, engine=ScriptedEngine()):
        api.send_command(chat, alice, "/help")
        await api.wait_for_messages(chat["id"], count=1)
        await eventually(lambda: rows(database, "SELECT COUNT(*) FROM sentiments") == [(1,)])
    assert len(api.sent_messages(chat["id"])) == 1, "only /help"
    assert rows(database, "SELECT COUNT(*) FROM pending_replies") == [(0,)]


def test_late_reply_max_age_is_a_checked_key() -> None:
    assert config_from_dict({}).telegram.late_reply_max_age_minutes == 60
    assert config_from_dict({"telegram": {"late_reply_max_age_minutes": 5}}).telegram.late_reply_max_age_minutes == 5
    with pytest.raises(ConfigError, match=r"telegram\.late_reply_max_age_minutes"):
        config_from_dict({"telegram": {"late_reply_max_age_minutes": -1}})
    with pytest.raises(ConfigError, match=r"limits\.chat_backlog"):
        config_from_dict({"limits": {"chat_backlog": 0}})


async def test_a_half_reply_that_is_gone_is_replaced_and_a_busy_engine_says_so_over_it(
    api: FakeBotApi, tmp_path: Path
) -> None:
    alice, bob = api.user(1, "Alice"), api.user(2, "Bob")
    alice_chat, bob_chat = api.private_chat(alice), api.private_chat(bob)
    database = tmp_path / "bot.db"
    async with Bot(TEST_TOKEN, base_url=api.base_url) as bot:
        gone = await bot.send_message(alice_chat["id"], "The first half of a reply …")
        api.delete_message(alice_chat, gone.message_id)  # Alice deleted it meanwhile
        dangling = await bot.send_message(bob_chat["id"], "The first half of a reply …")
    async with await Store.open(database) as store:
        alices = await leave_owed(store, alice_chat, alice, "a good day", 9001, age_s=MINUTE)
        await store.set_reply_draft(alices, gone.message_id)
        bobs = await leave_owed(store, bob_chat, bob, "a bad day", 9002, age_s=MINUTE)
        await store.set_reply_draft(bobs, dangling.message_id)

    class BusyForBob(ScriptedEngine):
        async def classify(self, text: str) -> Sentiment:
            if text == "a bad day":
                raise EngineBusy()
            return await super().classify(text)

    async with running_bot(config_for(api, tmp_path), engine=BusyForBob()):
        assert await final_texts(api, alice_chat["id"], 1) == ["echo: a good day"]
        await api.wait_for(lambda a: a.sent_texts(bob_chat["id"]) == [BUSY_TEXT])
    [reply] = api.sent_messages(alice_chat["id"])
    assert reply["message_id"] != gone.message_id, "a new message replaced the one that was gone"
    assert api.sent_messages(bob_chat["id"])[0]["message_id"] == dangling.message_id, "the busy note is written over"
    assert rows(database, "SELECT telegram_message_id FROM messages WHERE role = 'assistant'") == [
        (reply["message_id"],)
    ]
    assert rows(database, "SELECT COUNT(*) FROM pending_replies") == [(0,)], "told busy: nothing owed"
