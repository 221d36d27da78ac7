"""Who a message is from: people posting as a channel or as an anonymous group admin share Telegram's placeholder
``from``, so the bot refuses such posts politely instead of pooling everyone into one history (bot/identity.py).
Through the fake Bot API with a scripted engine, plus the identity rule on plain PTB updates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from telegram import Update

from bot.config import GroupsConfig
from bot.telegram.identity import ANONYMOUS_ADMIN_ID, CHANNEL_BOT_ID, TELEGRAM_SERVICE_ID, Person, person_of
from bot.views import texts as bot_texts
from tests.support.e2e import MENTION, config_for, last_message_with, rows, running_bot
from tests.support.fakebotapi import ANONYMOUS_ADMIN_USER, CHANNEL_BOT_USER, FakeBotApi
from tests.support.fakeengine import ScriptedEngine


async def test_two_channels_and_an_anonymous_admin_share_nothing_and_reach_nobodys_prompt(
    api: FakeBotApi, tmp_path: Path
) -> None:
    engine = ScriptedEngine()
    alice = api.user(1, "Alice")
    group = api.group_chat(title="Friends")
    news, diary = api.channel(-1002000000001, "News"), api.channel(-1002000000002, "Diary")
    database = tmp_path / "bot.db"
    config = config_for(api, tmp_path, groups=GroupsConfig(log_all=True))
    async with running_bot(config, engine=engine):
        api.send_text(group, alice, f"{MENTION} a good day")
        await last_message_with(api, group, "echo: a good day")
        api.send_as_chat(group, news, f"{MENTION} the news channel's secret")
        api.send_as_chat(group, diary, f"{MENTION} the diary channel's secret")
        api.send_as_chat(group, group, f"{MENTION} an anonymous admin's secret")
        api.send_as_chat(group, news, f"{MENTION} what did the diary say?")  # a second post: no second note
        api.send_as_chat(group, news, "chatter as the news channel")  # not meant for the bot: silence
        for command in ("/export", "/forget", "/mood", "/reset"):
            api.send_as_chat(group, diary, command)
        api.send_text(group, alice, f"{MENTION} a bad night")
        await last_message_with(api, group, "echo: a bad night")
        api.send_command(group, alice, "/export")
        await last_message_with(api, group, "private chat")
    texts = api.sent_texts(group["id"])
    assert texts.count(bot_texts.POSTED_AS_CHAT_TEXT) == 3, "one note for each sender chat, however often it posts"
    assert not [t for t in texts if "secret" in t or "diary" in t], "nothing answered to a channel or an admin"
    heard = engine.classified + [text for _, text in engine.seen_histories]
    assert not [t for t in heard if "secret" in t or "channel" in t], "their words never reached the model"
    assert [[turn.text for turn in history] for history, _ in engine.seen_histories] == [
        [], ["a good day", "echo: a good day"]
    ], "Alice's prompt holds only her own words"
    assert rows(database, "SELECT DISTINCT user_id FROM messages") == [(1,)], "nothing kept for the posters"
    assert rows(database, "SELECT id FROM users") == [(1,)]
    assert not set(rows(database, "SELECT id FROM users")) & {(CHANNEL_BOT_ID,), (ANONYMOUS_ADMIN_ID,)}
    assert not [m for m in api.sent_messages(group["id"]) if m.get("reply_markup")], "the diary's /forget asked nothing"
    assert [call.params["chat_id"] for call in api.calls_of("sendDocument")] == [1], "only Alice got an export"


async def test_a_channel_cannot_forget_or_export_a_persons_rows(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(1, "Alice")
    group = api.group_chat()
    news = api.channel()
    database = tmp_path / "bot.db"
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        api.send_text(group, alice, f"{MENTION} a good day")
        await last_message_with(api, group, "echo: a good day")
        api.send_as_chat(group, news, "/forget")
        await last_message_with(api, group, bot_texts.POSTED_AS_CHAT_TEXT)
        api.send_as_chat(group, news, "/export")
        api.send_command(group, alice, "/help")  # handled after the channel's updates (same chat, in order)
        await last_message_with(api, group, "/mood")
    assert rows(database, "SELECT user_id, role FROM messages ORDER BY id") == [(1, "user"), (1, "assistant")]
    assert not api.calls_of("sendDocument")
    assert not [m for m in api.sent_messages(group["id"]) if m.get("reply_markup")], "no Yes/Cancel question"


async def test_a_button_press_in_a_group_is_the_real_presser_not_the_chat_they_post_as(
    api: FakeBotApi, tmp_path: Path
) -> None:
    """Bob posts as an anonymous admin (refused), but his button press carries his own account: pressing
    Alice's /forget question is still someone else's question, and deletes nothing."""
    alice, bob = api.user(1, "Alice"), api.user(2, "Bob")
    group = api.group_chat()
    database = tmp_path / "bot.db"
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        api.send_text(group, alice, f"{MENTION} a good day")
        await last_message_with(api, group, "echo: a good day")
        api.send_as_chat(group, group, f"{MENTION} hello from an admin")
        await last_message_with(api, group, bot_texts.POSTED_AS_CHAT_TEXT)
        api.send_command(group, alice, "/forget")
        question = await last_message_with(api, group, bot_texts.FORGET_CONFIRM_TEXT)
        query_id = api.press_button(group, bob, question["message_id"], "forget:yes:1")
        answer = await api.wait_for(lambda fake: fake.callback_answers.get(query_id))
    assert answer["text"] == bot_texts.FORGET_NOT_YOURS_TEXT
    assert rows(database, "SELECT COUNT(*) FROM messages WHERE user_id = 1") == [(2,)]


# -- the rule on plain updates --------------------------------------------------------------------------------------


GROUP = {"id": -100123, "type": "supergroup", "title": "Friends"}
CHANNEL = {"id": -100999, "type": "channel", "title": "News"}
ALICE = {"id": 1, "is_bot": False, "first_name": "Alice", "username": "alice"}


def message_update(sender: dict[str, Any], **extra: Any) -> Update:
    message = {"message_id": 5, "date": 0, "chat": GROUP, "from": sender, "text": "hi", **extra}
    return Update.de_json({"update_id": 1, "message": message}, None)


def test_person_of_is_the_real_person_or_nobody() -> None:
    assert person_of(message_update(ALICE)) == Person(1, "Alice", "alice")
    assert person_of(message_update(CHANNEL_BOT_USER, sender_chat=CHANNEL)) is None, "posted as a channel"
    assert person_of(message_update(ANONYMOUS_ADMIN_USER, sender_chat=GROUP)) is None, "an anonymous admin"
    telegram = {"id": TELEGRAM_SERVICE_ID, "is_bot": False, "first_name": "Telegram"}
    assert person_of(message_update(telegram, sender_chat=CHANNEL, is_automatic_forward=True)) is None
    assert person_of(message_update(CHANNEL_BOT_USER)) is None, "a placeholder is never a person, even alone"
    bot_message = {"message_id": 6, "date": 0, "chat": GROUP, "from": ANONYMOUS_ADMIN_USER, "sender_chat": GROUP}
    press = Update.de_json(
        {"update_id": 2, "callback_query": {"id": "7", "from": ALICE, "chat_instance": "1", "data": "x",
                                            "message": bot_message}},
        None,
    )
    assert person_of(press) == Person(1, "Alice", "alice"), "a button press is always the person who pressed"
    assert Person(3, None, "bob").display_name == "@bob" and Person(4, None, None).display_name == "4"
