"""Streaming that Telegram likes: in a private chat the reply grows as a message draft (sendMessageDraft) and is sent
once when complete; in groups one message is sent and edited; no "message is not modified", no refused call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from telegram import Bot

from bot.telegram.streaming import STREAM_SUFFIX, StreamedReply
from bot.views.telegram_text import TELEGRAM_TEXT_LIMIT
from tests.support.e2e import MENTION, config_for, final_texts, rows, running_bot
from tests.support.fakebotapi import TEST_TOKEN, FakeBotApi
from tests.support.fakeengine import ScriptedEngine


async def chunks(*parts: str) -> AsyncIterator[str]:
    for part in parts:
        yield part


def refused(api: FakeBotApi) -> list[str]:
    """Calls Telegram would have refused ("message is not modified", flood control, ...); a long poll cut short at
    shutdown is not one."""
    return [repr(c) for c in api.calls if c.status not in (200, None) and c.method != "getUpdates"]


async def test_a_private_reply_grows_as_a_draft_and_is_sent_once(api: FakeBotApi) -> None:
    alice = api.user(1, "Alice")
    api.private_chat(alice)
    async with Bot(TEST_TOKEN, base_url=api.base_url) as bot:
        writer = StreamedReply(bot, 1, edit_interval=0.0, draft_id=41)
        text = await writer.write(chunks("Hello", " there", "", " friend"))
        ids = await writer.finish(text)
    assert [d["text"] for d in api.drafts] == [f"Hello{STREAM_SUFFIX}", f"Hello there{STREAM_SUFFIX}",
                                                f"Hello there friend{STREAM_SUFFIX}"], "an unchanged text: no draft"
    assert {d["draft_id"] for d in api.drafts} == {41} and {d["chat_id"] for d in api.drafts} == {1}
    [sent] = api.calls_of("sendMessage")
    assert sent.params["text"] == "Hello there friend" and ids == [sent.result["message_id"]]
    assert api.calls_of("editMessageText") == [] and refused(api) == []


async def test_a_long_private_reply_drafts_its_beginning_and_is_split_when_sent(api: FakeBotApi) -> None:
    api.private_chat(api.user(1, "Alice"))
    reply = "word " * 1200  # 6,000 characters
    async with Bot(TEST_TOKEN, base_url=api.base_url) as bot:
        writer = StreamedReply(bot, 1, edit_interval=0.0, draft_id=7)
        ids = await writer.finish(await writer.write(chunks(reply[:3000], reply[3000:])))
    assert len(api.drafts) == 2 and all(len(d["text"]) <= TELEGRAM_TEXT_LIMIT for d in api.drafts)
    assert len(ids) == 2 and "".join(api.sent_texts(1)).replace(" ", "") == reply.replace(" ", "")
    assert refused(api) == []


async def test_a_refused_draft_falls_back_to_editing_a_message(api: FakeBotApi) -> None:
    api.private_chat(api.user(1, "Alice"))
    api.fail_next("sendMessageDraft", status=400, description="Bad Request: method is not available")
    async with Bot(TEST_TOKEN, base_url=api.base_url) as bot:
        writer = StreamedReply(bot, 1, edit_interval=0.0, draft_id=7)
        await writer.finish(await writer.write(chunks("Hello", " there")))
    assert len(api.calls_of("sendMessageDraft")) == 1 and api.drafts == [], "tried once, then never again"
    assert api.sent_texts(1) == ["Hello there"] and len(api.calls_of("editMessageText")) == 2


async def test_the_bot_drafts_in_private_chats_and_edits_in_groups(api: FakeBotApi, tmp_path: Path) -> None:
    engine = ScriptedEngine(replies=[["Glad ", "to hear ", "it!"], ["Hi ", "all!"]])
    alice = api.user(1, "Alice")
    group = api.group_chat()
    async with running_bot(config_for(api, tmp_path), engine=engine):
        api.send_text(api.private_chat(alice), alice, "a good day")
        assert await final_texts(api, 1, 1) == ["Glad to hear it!"]
        api.send_text(group, alice, f"{MENTION} hello")
        assert await final_texts(api, group["id"], 1) == ["Hi all!"]
    [message_id] = rows(tmp_path / "bot.db", "SELECT id FROM messages WHERE role = 'user' AND chat_id = 1")[0]
    assert api.drafts and {(d["chat_id"], d["draft_id"]) for d in api.drafts} == {(1, message_id)}
    assert [c.params["chat_id"] for c in api.calls_of("sendMessage")] == [1, group["id"]]
    assert {c.params["chat_id"] for c in api.calls_of("editMessageText")} == {group["id"]}
    assert refused(api) == []
