"""Groups through the fake Bot API with a scripted engine: which messages are stored, classified and answered with
``[groups] log_all`` off (the default) and on, and what group ``/mood`` and ``/privacy`` say about it."""

from __future__ import annotations

from pathlib import Path

from bot.config import GroupsConfig
from bot.views import mood as mood_view
from bot.views import privacy as privacy_view
from tests.support.e2e import MENTION, config_for, last_message_with, rows, running_bot
from tests.support.fakebotapi import FakeBotApi
from tests.support.fakeengine import ScriptedEngine


async def chatter_then_mention(api: FakeBotApi, group: dict, alice: dict, bob: dict) -> None:
    """Alice chats among friends (not to the bot), Bob talks to the bot; waits for the bot's answer to Bob."""
    api.send_text(group, alice, "a good day among friends")
    api.send_text(group, bob, f"{MENTION} a bad day")
    await last_message_with(api, group, "echo: a bad day")


async def test_without_log_all_unaddressed_group_messages_are_neither_stored_nor_classified(
    api: FakeBotApi, tmp_path: Path
) -> None:
    engine = ScriptedEngine()
    alice, bob = api.user(1, "Alice"), api.user(2, "Bob")
    group = api.group_chat()
    database = tmp_path / "bot.db"
    async with running_bot(config_for(api, tmp_path), engine=engine):
        await chatter_then_mention(api, group, alice, bob)
        api.send_command(group, bob, "/mood")
        mood = await last_message_with(api, group, "This chat's mood")
        api.send_command(group, alice, "/privacy")
        privacy = await last_message_with(api, group, "What I keep")
    assert engine.classified == ["a bad day"], "Alice's chatter never reached the model"
    assert rows(database, "SELECT user_id, role, text FROM messages ORDER BY id") == [
        (2, "user", "a bad day"), (2, "assistant", "echo: a bad day")
    ]
    assert rows(database, "SELECT id FROM users") == [(2,)], "nothing about Alice is kept"
    assert "Messages: 1" in mood["caption"] and "Alice" not in mood["caption"]
    assert mood_view.GROUP_MOOD_ADDRESSED_NOTE in mood["caption"]
    assert privacy_view.GROUP_LOGS_ADDRESSED_TEXT in privacy["text"]


async def test_with_log_all_every_group_message_is_stored_and_classified_but_only_mentions_answered(
    api: FakeBotApi, tmp_path: Path
) -> None:
    engine = ScriptedEngine()
    alice, bob = api.user(1, "Alice"), api.user(2, "Bob")
    group = api.group_chat()
    database = tmp_path / "bot.db"
    config = config_for(api, tmp_path, groups=GroupsConfig(log_all=True))
    async with running_bot(config, engine=engine):
        await chatter_then_mention(api, group, alice, bob)
        api.send_command(group, bob, "/mood")
        mood = await last_message_with(api, group, "This chat's mood")
        api.send_command(group, alice, "/privacy")
        privacy = await last_message_with(api, group, "What I keep")
    assert sorted(engine.classified) == ["a bad day", "a good day among friends"]
    assert [m for _, m in engine.seen_histories] == ["a bad day"], "the chatter got no reply"
    assert rows(database, "SELECT user_id, role, text FROM messages ORDER BY id") == [
        (1, "user", "a good day among friends"), (2, "user", "a bad day"), (2, "assistant", "echo: a bad day")
    ]
    assert rows(database, "SELECT label FROM sentiments ORDER BY message_id") == [("positive",), ("negative",)]
    answered = [m for m in api.sent_messages(group["id"]) if "echo" in m.get("text", "")]
    assert len(answered) == 1
    caption = mood["caption"]
    assert "Messages: 2" in caption and "Alice" in caption and "Bob" in caption
    assert mood_view.GROUP_MOOD_ALL_NOTE in caption
    assert privacy_view.GROUP_LOGS_ALL_TEXT in privacy["text"]


async def test_with_log_all_an_edit_of_group_chatter_updates_its_mood_without_a_reply(
    api: FakeBotApi, tmp_path: Path
) -> None:
    engine = ScriptedEngine()
    alice = api.user(1, "Alice")
    group = api.group_chat()
    database = tmp_path / "bot.db"
    async with running_bot(config_for(api, tmp_path, groups=GroupsConfig(log_all=True)), engine=engine):
        message_id = api.send_text(group, alice, "a good day")
        api.edit_text(group, alice, message_id, "actually a bad day")
        api.send_command(group, alice, "/help")
        await last_message_with(api, group, "/mood")
    assert rows(database, "SELECT text FROM messages") == [("actually a bad day",)]
    assert rows(database, "SELECT label FROM sentiments") == [("negative",)]
    assert len(api.sent_messages(group["id"])) == 1, "only /help was answered"


def test_privacy_text_says_which_group_messages_are_kept() -> None:
    assert "only read messages that mention me or reply to me" in privacy_view.privacy_text(0, False)
    kept_all = privacy_view.privacy_text(0, True)
    assert "each text message" in kept_all and "only answer messages that mention me" in kept_all
    assert "<" not in kept_all, "the plain version has no markup"
