"""Forum topics through the fake Bot API with a scripted engine: whatever the bot sends in answer to a message in a
topic (streamed replies and their continuations, typing, care, busy and error texts, refusals, /mood's chart, the
/export notice, /forget's question, help) goes to that topic, never to the forum's General topic."""

from __future__ import annotations

from pathlib import Path

from bot.views import texts as bot_texts
from tests.support.e2e import MENTION, config_for, last_message_with, running_bot
from tests.support.fakebotapi import FakeBotApi
from tests.support.fakeengine import ScriptedEngine

TOPIC = 42
SENDS = {"sendmessage", "sendphoto", "senddocument", "sendchataction"}


async def test_every_answer_in_a_forum_topic_stays_in_that_topic(api: FakeBotApi, tmp_path: Path) -> None:
    api.strict_private_chats = True  # Alice never opened a private chat: /export answers with a notice
    long_reply = "word " * 1000  # more than Telegram allows in one message: a second message follows
    engine = ScriptedEngine(replies=[[long_reply]])
    alice, eve = api.user(1, "Alice"), api.user(5, "Eve")
    forum = api.forum_chat()
    config = config_for(api, tmp_path, allowed_user_ids=(1,))

    async def say(user: dict, text: str, needle: str) -> None:
        api.send_text(forum, user, text, message_thread_id=TOPIC)
        await last_message_with(api, forum, needle)

    async with running_bot(config, engine=engine):
        await say(alice, f"{MENTION} a good day", "word word")
        await say(alice, f"{MENTION} I want to hurt myself", "findahelpline.com")
        await say(alice, f"{MENTION} {'long ' * 450}", "long message")
        engine.replies.append(RuntimeError("model exploded"))
        await say(alice, f"{MENTION} a bad day", bot_texts.FAILED_SAVED_TEXT)
        engine.busy = True
        await say(alice, f"{MENTION} anyone there?", bot_texts.BUSY_TEXT)
        engine.busy = False
        await say(eve, f"{MENTION} hello?", bot_texts.refusal_text(5))
        api.send_as_chat(forum, forum, f"{MENTION} an anonymous admin", message_thread_id=TOPIC)
        await last_message_with(api, forum, bot_texts.POSTED_AS_CHAT_TEXT)
        for command, needle in (
            ("/mood", "This chat's mood"), ("/export", "press Start"), ("/forget", bot_texts.FORGET_CONFIRM_TEXT),
            ("/help", "/privacy"),
        ):
            api.send_command(forum, alice, command, message_thread_id=TOPIC)
            await last_message_with(api, forum, needle)

    sends = [c for c in api.calls if c.method.lower() in SENDS and c.params.get("chat_id") == forum["id"]]
    assert {c.method for c in sends} == {"sendMessage", "sendPhoto", "sendChatAction"}
    assert [c for c in sends if c.params.get("message_thread_id") != TOPIC] == [], "everything in the topic"
    messages = api.sent_messages(forum["id"])
    expected = (
        "the reply in two parts, care, the long-message note, a half reply and the apology, busy, the refusal, "
        "the note to the anonymous admin, the chart, the export notice, /forget's question, help"
    )
    assert len(messages) == 15, expected
    assert {m.get("message_thread_id") for m in messages} == {TOPIC}
