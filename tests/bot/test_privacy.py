"""Privacy commands through the fake Bot API with a scripted engine: /forget's confirmation, /export, /privacy,
retention, and the retention_days setting."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.config import Config, ConfigError, StorageConfig, load_config
from bot.telegram import jobs
from bot.views import privacy as privacy_view
from bot.views import texts as bot_texts
from engine import EngineSettings, LocalEngine
from storage import Store
from tests.support.e2e import MENTION, answered, config_for, last_message_with, rows, running_bot
from tests.support.fakebotapi import BOT_USER, FakeBotApi
from tests.support.fakeengine import ScriptedEngine

ROOT = Path(__file__).resolve().parents[2]



async def wait_rows(database: Path, sql: str, expected: list[tuple], timeout: float = 5.0) -> None:
    """Poll the database until ``sql`` returns ``expected``."""
    deadline = time.monotonic() + timeout
    while (found := rows(database, sql)) != expected:
        assert time.monotonic() < deadline, f"{sql} gave {found}, expected {expected}"
        await asyncio.sleep(0.05)


async def say(api: FakeBotApi, chat: dict, user: dict, text: str) -> None:
    """Send ``text`` and wait until the bot's echo is complete (no streaming "…" left)."""
    api.send_text(chat, user, text)
    expected = f"echo: {text.replace(MENTION, '').strip()}"

    def done(fake: FakeBotApi) -> bool:
        return expected in fake.sent_texts(chat["id"])

    await api.wait_for(done)


def buttons(message: dict[str, Any]) -> list[tuple[str, str]]:
    markup = message.get("reply_markup") or {}
    return [(b["text"], b["callback_data"]) for row in markup.get("inline_keyboard", []) for b in row]


USER_ROWS = "SELECT COUNT(*) FROM messages WHERE user_id = {}"
SENTIMENT_ROWS = "SELECT COUNT(*) FROM sentiments s JOIN messages m ON m.id = s.message_id WHERE m.user_id = {}"


# -- /forget ---------------------------------------------------------------------------------------------------


async def test_forget_asks_first_and_deletes_only_after_yes(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    database = tmp_path / "bot.db"
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        await say(api, chat, alice, "a good day")
        await say(api, chat, alice, "a bad night")
        api.send_command(chat, alice, "/forget")
        confirm = await last_message_with(api, chat, bot_texts.FORGET_CONFIRM_TEXT)
        assert buttons(confirm) == [
            (bot_texts.FORGET_YES_BUTTON, "forget:yes:1"), (bot_texts.FORGET_NO_BUTTON, "forget:no:1")
        ]
        assert rows(database, USER_ROWS.format(1)) == [(4,)], "nothing is deleted before yes"

        query_id = api.press_button(chat, alice, confirm["message_id"], "forget:yes:1")
        edited = await last_message_with(api, chat, "deleted everything")
        assert await answered(api, query_id)
    assert edited["message_id"] == confirm["message_id"], "the question itself becomes the confirmation"
    assert edited["text"] == bot_texts.forget_text(4)
    assert "reply_markup" not in edited, "the buttons are gone"
    assert rows(database, USER_ROWS.format(1)) == [(0,)]
    assert rows(database, SENTIMENT_ROWS.format(1)) == [(0,)]


async def test_forget_cancel_deletes_nothing(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    database = tmp_path / "bot.db"
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        await say(api, chat, alice, "a good day")
        api.send_command(chat, alice, "/forget")
        confirm = await last_message_with(api, chat, bot_texts.FORGET_CONFIRM_TEXT)
        query_id = api.press_button(chat, alice, confirm["message_id"], button_text=bot_texts.FORGET_NO_BUTTON)
        edited = await last_message_with(api, chat, bot_texts.FORGET_CANCELLED_TEXT)
        assert await answered(api, query_id)
    assert edited["message_id"] == confirm["message_id"] and "reply_markup" not in edited
    assert rows(database, USER_ROWS.format(1)) == [(2,)]
    assert rows(database, SENTIMENT_ROWS.format(1)) == [(1,)]


async def test_another_member_cannot_answer_someone_elses_forget(api: FakeBotApi, tmp_path: Path) -> None:
    alice, bob = api.user(1, "Alice"), api.user(2, "Bob")
    group = api.group_chat()
    database = tmp_path / "bot.db"
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        await say(api, group, alice, f"{MENTION} a good day")
        await say(api, group, bob, f"{MENTION} a bad day")
        api.send_command(group, alice, "/forget")
        confirm = await last_message_with(api, group, bot_texts.FORGET_CONFIRM_TEXT)

        bob_query = api.press_button(group, bob, confirm["message_id"], "forget:yes:1")
        answer = await answered(api, bob_query)
        assert answer.get("show_alert") is True and answer["text"] == bot_texts.FORGET_NOT_YOURS_TEXT
        assert api.sent_messages(group["id"])[-1]["text"] == bot_texts.FORGET_CONFIRM_TEXT, "the question stands"
        assert rows(database, USER_ROWS.format(1)) == [(2,)] and rows(database, USER_ROWS.format(2)) == [(2,)]

        alice_query = api.press_button(group, alice, confirm["message_id"], "forget:yes:1")
        await last_message_with(api, group, "deleted everything")
        assert await answered(api, alice_query)
    assert rows(database, USER_ROWS.format(1)) == [(0,)]
    assert rows(database, USER_ROWS.format(2)) == [(2,)], "Bob's rows stay"


async def test_a_refused_users_button_press_gets_an_alert_and_no_work(api: FakeBotApi, tmp_path: Path) -> None:
    alice, eve = api.user(1, "Alice"), api.user(5, "Eve")
    group = api.group_chat()
    config = config_for(api, tmp_path)
    config = replace(config, telegram=replace(config.telegram, allowed_user_ids=(1,)))
    database = tmp_path / "bot.db"
    async with running_bot(config, engine=ScriptedEngine()):
        await say(api, group, alice, f"{MENTION} a good day")
        api.send_command(group, alice, "/forget")
        confirm = await last_message_with(api, group, bot_texts.FORGET_CONFIRM_TEXT)
        sent_before = len(api.sent_messages(group["id"]))

        query_id = api.press_button(group, eve, confirm["message_id"], "forget:yes:1")
        answer = await answered(api, query_id)
        assert answer.get("show_alert") is True and answer["text"] == bot_texts.refusal_text(5)
        api.send_command(group, alice, "/privacy")  # handled after Eve's press (same chat, in order)
        await last_message_with(api, group, "What I keep")
    assert len(api.sent_messages(group["id"])) == sent_before + 1, "no refusal message in the group"
    assert api.sent_messages(group["id"])[-2]["text"] == bot_texts.FORGET_CONFIRM_TEXT
    assert not [c for c in api.calls_of("editMessageText") if c.params["message_id"] == confirm["message_id"]]
    assert rows(database, USER_ROWS.format(1)) == [(2,)]


# -- /export ---------------------------------------------------------------------------------------------------


async def test_export_sends_own_messages_with_sentiments_as_json(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        await say(api, chat, alice, "a good day")
        await say(api, chat, alice, "a bad night")
        api.send_command(chat, alice, "/export")
        [call] = await api.wait_for_call("sendDocument")
    assert call.params["chat_id"] == 1 and call.filenames["document"] == "moodbot-export-1-1.json"
    assert call.params["caption"] == bot_texts.EXPORT_CAPTION
    data = json.loads(call.files["document"])
    assert data["chat_id"] == 1 and data["user_id"] == 1 and data["user"]["first_name"] == "Alice"
    users = [(m["role"], m["text"], (m["sentiment"] or {}).get("label")) for m in data["messages"]]
    assert users == [
        ("user", "a good day", "positive"),
        ("assistant", "echo: a good day", None),
        ("user", "a bad night", "negative"),
        ("assistant", "echo: a bad night", None),
    ]


async def test_export_in_a_group_arrives_privately_and_the_group_only_hears_where(
    api: FakeBotApi, tmp_path: Path
) -> None:
    api.strict_private_chats = True  # as on Telegram: the bot may write only to people who opened a chat with it
    alice, bob = api.user(1, "Alice"), api.user(2, "Bob")
    group = api.group_chat(title="Friends")
    api.private_chat(alice)  # Alice has started the bot before
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        await say(api, group, alice, f"{MENTION} a good day")
        await say(api, group, bob, f"{MENTION} Bob's secret")
        sent_before = len(api.sent_messages(group["id"]))
        api.send_command(group, alice, "/export")
        notice = await last_message_with(api, group, bot_texts.EXPORT_SENT_PRIVATELY_TEXT)
    [call] = api.calls_of("sendDocument")
    assert call.params["chat_id"] == 1, "to Alice's private chat, not the group"
    assert call.filenames["document"] == f"moodbot-export-{group['id']}-1.json"
    assert call.params["caption"] == bot_texts.export_group_caption("Friends")
    data = json.loads(call.files["document"])
    assert data["chat_id"] == group["id"] and data["user_id"] == 1
    assert [m["text"] for m in data["messages"]] == ["a good day", "echo: a good day"]
    assert "Bob's secret" not in call.files["document"].decode()
    assert api.sent_messages(group["id"])[sent_before:] == [notice], "one notice in the group and nothing else"
    assert "a good day" not in notice["text"]


async def test_export_in_a_group_for_someone_who_never_started_the_bot_asks_them_to(
    api: FakeBotApi, tmp_path: Path
) -> None:
    api.strict_private_chats = True
    alice = api.user(1, "Alice")
    group = api.group_chat()
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        await say(api, group, alice, f"{MENTION} a good day")
        sent_before = len(api.sent_messages(group["id"]))
        api.send_command(group, alice, "/export")
        notice = await last_message_with(api, group, "press Start")
    assert notice["text"] == bot_texts.export_open_private_chat_text(BOT_USER["username"])
    [refused] = api.calls_of("sendDocument")
    assert refused.params["chat_id"] == 1 and refused.status == 403, "Telegram refused the private chat"
    assert api.sent_messages(group["id"])[sent_before:] == [notice], "no file and no words of hers in the group"
    assert not [c for c in api.calls_of("sendDocument") if c.params["chat_id"] == group["id"]]


async def test_export_after_forget_says_nothing_is_stored(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        await say(api, chat, alice, "a good day")
        api.send_command(chat, alice, "/forget")
        confirm = await last_message_with(api, chat, bot_texts.FORGET_CONFIRM_TEXT)
        api.press_button(chat, alice, confirm["message_id"], "forget:yes:1")
        await last_message_with(api, chat, "deleted everything")
        api.send_command(chat, alice, "/export")
        await last_message_with(api, chat, bot_texts.EXPORT_NOTHING_TEXT)
    assert not api.calls_of("sendDocument")


# -- /privacy and the command list -----------------------------------------------------------------------------


async def test_privacy_explains_and_commands_are_listed(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()):
        api.send_command(chat, alice, "/privacy")
        privacy_message = await last_message_with(api, chat, "What I keep")
        text = privacy_message["text"]
        api.send_command(chat, alice, "/help")
        help_text = (await last_message_with(api, chat, "/mood"))["text"]
    assert "/forget" in text and "/export" in text and "SQLite" in text
    assert "until you delete it with /forget" in text
    assert "<b>" not in text and "bold" in {e["type"] for e in privacy_message["entities"]}, "sent as HTML"
    assert "/export" in help_text and "/privacy" in help_text
    assert {c["command"] for c in api.commands()} >= {"export", "privacy", "forget"}


def test_privacy_text_names_the_retention_period() -> None:
    assert "older than 30 days are deleted" in privacy_view.privacy_text(30)
    assert "older than 1 day are deleted" in privacy_view.privacy_text(1)
    assert "mention me or reply to me" in privacy_view.privacy_text(0)
    assert "asked in a group, it arrives in a private chat with me, never in the group" in privacy_view.privacy_text(0)
    posted_as_chat = "sent as a channel or as an anonymous admin are neither kept nor answered"
    assert posted_as_chat in privacy_view.privacy_text(0, True)


# -- retention ---------------------------------------------------------------------------------------------------


def with_retention(config: Config, days: int) -> Config:
    return replace(config, storage=StorageConfig(path=config.storage.path, retention_days=days))


async def test_retention_job_purges_old_messages(
    api: FakeBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "bot.db"
    async with await Store.open(database) as store:
        await store.add_user_message(
            chat_id=1, user_id=1, text="an old day", telegram_message_id=None, created_at=time.time() - 3 * 86_400
        )
        await store.add_user_message(chat_id=1, user_id=1, text="today", telegram_message_id=None)
    monkeypatch.setattr(jobs, "RETENTION_FIRST_RUN_S", 0.5)  # an interval job never starts in the past
    async with running_bot(with_retention(config_for(api, tmp_path), 1), engine=ScriptedEngine()) as application:
        [job] = application.job_queue.get_jobs_by_name("retention")
        await wait_rows(database, "SELECT text FROM messages", [("today",)])
    assert job.job.trigger.interval.total_seconds() == 86_400


async def test_no_retention_job_when_keeping_forever(api: FakeBotApi, tmp_path: Path) -> None:
    async with running_bot(config_for(api, tmp_path), engine=ScriptedEngine()) as application:
        assert application.job_queue.get_jobs_by_name("retention") == ()


def test_retention_days_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[storage]\nretention_days = -1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^storage\.retention_days: must be 0"):
        load_config(path, environ={})
    path.write_text('[storage]\nretention_days = "30"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^storage\.retention_days: expected an int"):
        load_config(path, environ={})
    path.write_text("[storage]\nretention_days = 30\n", encoding="utf-8")
    assert load_config(path, environ={}).storage.retention_days == 30
    assert load_config(ROOT / "config.example.toml", environ={}).storage.retention_days == 0


# -- nothing left behind: the database folder and the engine's memory -------------------------------------------

DISTINCTIVE = "zebracorn-quasar"  # Alice's words, to be looked for byte by byte


def database_files(database: Path) -> dict[str, bytes]:
    """Every file in the database's folder (the database, its -wal and -shm), read as raw bytes."""
    return {path.name: path.read_bytes() for path in database.parent.iterdir() if path.is_file()}


def files_holding(database: Path, words: str) -> list[str]:
    return [name for name, data in database_files(database).items() if words.encode() in data]


def cached_texts(engine: LocalEngine) -> list[str]:
    """The prompt cache's conversations, as text."""
    tokenizer = engine.loaded.tokenizer
    return [tokenizer.decode(list(entry.token_ids)) for entry in engine.prompt_cache.entries.values()]


@pytest.fixture
async def tiny_engine(tiny_model_dir: Path) -> AsyncIterator[LocalEngine]:
    """The tiny random model with its prompt cache on (the app doesn't own it)."""
    engine = LocalEngine(
        EngineSettings(model=str(tiny_model_dir), precision="fp32", threads=1, max_new_tokens=4, temperature=0.0)
    )
    await engine.start()
    yield engine
    await engine.close()


async def turn(api: FakeBotApi, chat: dict, user: dict, text: str) -> None:
    """Send ``text``; return once the bot is done with it (the chat's updates run in order, so /help answered
    after it means its reply is finished and stored)."""

    def helps(fake: FakeBotApi) -> int:
        return sum("/privacy" in text for text in fake.sent_texts(chat["id"]))

    before = helps(api)
    api.send_text(chat, user, text)
    api.send_command(chat, user, "/help")
    await api.wait_for(lambda fake: helps(fake) > before, timeout=60)


async def test_forget_leaves_their_words_in_no_file_and_not_in_the_prompt_cache(
    api: FakeBotApi, tmp_path: Path, tiny_engine: LocalEngine
) -> None:
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    database = tmp_path / "bot.db"
    async with running_bot(config_for(api, tmp_path), engine=tiny_engine):
        await turn(api, chat, alice, f"my {DISTINCTIVE} is a secret")
        await turn(api, chat, alice, "tell me more")  # the first message is now history in a cached prompt
        assert files_holding(database, DISTINCTIVE), "written to the database folder"
        assert any(DISTINCTIVE in text for text in cached_texts(tiny_engine)), "held in the prompt cache"

        api.send_command(chat, alice, "/forget")
        confirm = await last_message_with(api, chat, bot_texts.FORGET_CONFIRM_TEXT)
        api.press_button(chat, alice, confirm["message_id"], "forget:yes:1")
        await last_message_with(api, chat, "deleted everything")
        # The bot is still running: no close-time checkpoint has helped.
        assert files_holding(database, DISTINCTIVE) == []
        assert not any(DISTINCTIVE in text for text in cached_texts(tiny_engine))
        assert set(database_files(database)) >= {"bot.db", "bot.db-wal", "bot.db-shm"}, "all three were looked at"


async def test_the_retention_purge_leaves_old_words_in_no_file_and_not_in_the_prompt_cache(
    api: FakeBotApi, tmp_path: Path, tiny_engine: LocalEngine
) -> None:
    database = tmp_path / "bot.db"
    three_days_ago = time.time() - 3 * 86_400
    async with await Store.open(database) as store:
        old = await store.add_user_message(
            chat_id=1, user_id=1, text=f"an old {DISTINCTIVE} day", telegram_message_id=None, created_at=three_days_ago
        )
        await store.add_reply(
            chat_id=1, user_id=1, text="I see.", reply_to=old.id, telegram_message_id=None, created_at=three_days_ago
        )
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    async with running_bot(with_retention(config_for(api, tmp_path), 1), engine=tiny_engine) as application:
        await turn(api, chat, alice, "and today?")  # the old message is history in this reply's prompt
        assert files_holding(database, DISTINCTIVE)
        assert any(DISTINCTIVE in text for text in cached_texts(tiny_engine))

        [job] = application.job_queue.get_jobs_by_name("retention")
        await job.run(application)  # what the daily schedule does, now
        assert rows(database, "SELECT text FROM messages WHERE created_at < ?", time.time() - 86_400) == []
        assert files_holding(database, DISTINCTIVE) == []
        assert not any(DISTINCTIVE in text for text in cached_texts(tiny_engine))


# -- /privacy with a remote model server, and backups ------------------------------------------------------------


def test_privacy_text_says_corrections_are_kept_may_improve_the_analysis_and_go_with_forget() -> None:
    text = privacy_view.privacy_text(0)
    assert "• the moods you set yourself with “Fix a mood”" in text
    assert "kept apart from my estimates" in text
    assert "may use them, with the words of those messages, to improve the mood analysis" in text
    assert "moodbot labels" in text and "/forget deletes them along with your messages" in text


def test_privacy_text_says_where_the_model_runs_and_what_backups_hold() -> None:
    local = privacy_view.privacy_text(0)
    assert "nothing leaves that server – the language model runs there too" in local
    remote = privacy_view.privacy_text(0, model_host="llm.example.org")
    assert "also sent to a language-model server, llm.example.org" in remote
    assert "nothing leaves" not in remote
    for text in (local, remote):
        assert "every backup of it" in text and "/forget and the automatic deletion can't reach those copies" in text


async def test_privacy_names_the_remote_servers_host_only(api: FakeBotApi, tmp_path: Path) -> None:
    alice = api.user(1, "Alice")
    chat = api.private_chat(alice)
    config = config_for(api, tmp_path)
    remote = EngineSettings(backend="openai", model="qwen", base_url="https://bot:pa55word@llm.example.org:8443/v1")
    async with running_bot(replace(config, engine=remote), engine=ScriptedEngine()):
        api.send_command(chat, alice, "/privacy")
        text = (await last_message_with(api, chat, "What I keep"))["text"]
    assert "language-model server, llm.example.org;" in text
    assert "pa55word" not in text and "8443" not in text
    assert "Backups:" in text
